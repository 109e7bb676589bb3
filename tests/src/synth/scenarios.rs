//! Named captures built from SMTP conversations: the golden-test scenarios,
//! the demo capture, and large interleaved loads for benchmarks and the
//! worker-count equivalence test.

use std::fmt::Write as _;
use std::net::SocketAddr;

use smtp_sensor::net::Ts;

use super::session::{Effect, Side, interleave};
use super::smtp::{Ending, Message, SmtpConversation};

/// Frames of one capture, in time order.
pub type Frames = Vec<(Ts, Vec<u8>)>;

const T0: u64 = 1_700_000_000;

fn v4(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, a, b], port))
}

fn server() -> SocketAddr {
    SocketAddr::from(([198, 19, 0, 25], 25))
}

/// A message with everything smtp.log extracts: a Received chain, folded
/// headers, To/Cc lists, X-Originating-IP, a mailer and two attachments.
pub fn rich_message(tag: &str) -> Message {
    Message::new()
        .header("Received", "from relay2.example.net (relay2.example.net [198.19.7.7])\r\n\tby mx.example.net with ESMTP id 1; Mon, 23 Nov 2026 09:00:02 +0000")
        .header("Received", "from relay1.example.org (relay1.example.org [198.18.9.9])\r\n\tby relay2.example.net with ESMTP id 2; Mon, 23 Nov 2026 09:00:01 +0000")
        .header("Received", "from [10.1.2.3] (helo=laptop)\r\n\tby relay1.example.org; Mon, 23 Nov 2026 09:00:00 +0000")
        .header("From", "\"Alice Example\" <alice@example.com>")
        .header("To", "bob@example.net, \"Carol, C.\" <carol@example.net>")
        .header("Cc", "dave@example.net")
        .header("Reply-To", "alice+replies@example.com")
        .header("Subject", &format!("Quarterly report {tag}\r\n folded continuation"))
        .header("Date", "Mon, 23 Nov 2026 09:00:00 +0000")
        .header("Message-ID", &format!("<{tag}.123@example.com>"))
        .header("In-Reply-To", "<previous.1@example.net>")
        .header("X-Originating-IP", "[198.18.200.1]")
        .header("X-Mailer", "SynthMailer 1.0")
        .body("Please find the report attached.\r\n.leading dot line\r\n")
        .attachment("report.pdf", "JVBERi0xLjQKJcfsj6IKNSAwIG9iago=")
        .attachment("data.csv", "a,b,c\r\n1,2,3")
}

fn base(client: SocketAddr, start: u64) -> super::smtp::ConversationBuilder {
    SmtpConversation::builder()
        .client(client)
        .server(server())
        .start(Ts::from_secs(start))
}

fn standard(client: SocketAddr, start: u64, tag: &str) -> SmtpConversation {
    base(client, start)
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .rcpt("carol@example.net")
        .message(rich_message(tag))
        .build()
}

/// The golden-test scenarios: `(name, frames)`.
pub fn golden() -> Vec<(&'static str, Frames)> {
    let mut out: Vec<(&'static str, Frames)> =
        vec![("basic", standard(v4(0, 1, 40001), T0, "basic").frames())];

    out.push((
        "pipelining",
        base(v4(0, 2, 40002), T0)
            .pipelining()
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .rcpt("nobody@example.net")
            .reject_rcpt_with(
                550,
                "5.1.1 <nobody@example.net>: Recipient address rejected",
            )
            .message(Message::simple(
                "alice@example.com",
                "bob@example.net",
                "first",
            ))
            .mail("alice@example.com")
            .rcpt("carol@example.net")
            .message(Message::simple(
                "alice@example.com",
                "carol@example.net",
                "second",
            ))
            .mail("alice@example.com")
            .rcpt("eve@example.net")
            .message(Message::simple(
                "alice@example.com",
                "eve@example.net",
                "third",
            ))
            .data_reply(
                554,
                "5.7.1 Message rejected as spam, see https://www.spamhaus.org/query/ip/198.18.0.2",
            )
            .build()
            .frames(),
    ));

    out.push((
        "bdat",
        base(v4(0, 3, 40003), T0)
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .message(rich_message("bdat"))
            .bdat(300)
            .build()
            .frames(),
    ));

    // RFC 3030's empty last chunk, then a DATA transaction on the same
    // connection (BDAT must hand the client side back to commands).
    out.push((
        "bdat_zero_last",
        base(v4(0, 12, 40012), T0)
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .message(rich_message("bdat0"))
            .bdat_then_zero_last(512)
            .mail("alice@example.com")
            .rcpt("carol@example.net")
            .message(Message::simple(
                "alice@example.com",
                "carol@example.net",
                "after bdat",
            ))
            .build()
            .frames(),
    ));

    out.push((
        "starttls",
        base(v4(0, 4, 40004), T0)
            .starttls()
            .mail("hidden@example.com")
            .rcpt("x@example.net")
            .build()
            .frames(),
    ));

    out.push((
        "rejected",
        base(v4(0, 5, 40005), T0)
            .helo("spammer.example")
            .mail("spam@example.biz")
            .rcpt("a@example.net")
            .reject_rcpt_with(554, "5.7.1 Service unavailable; Client host [198.18.0.5] blocked using zen.spamhaus.org/query")
            .rcpt("b@example.net")
            .reject_rcpt_with(550, "5.7.1 relay denied")
            .message(Message::simple("spam@example.biz", "a@example.net", "buy now"))
            .ending(Ending::QuitReset)
            .build()
            .frames(),
    ));

    let mut reordered = standard(v4(0, 6, 40006), T0, "reorder");
    reordered.mss = 200;
    reordered.effects = vec![
        Effect::Reorder {
            side: Side::Client,
            n: 5,
        },
        Effect::Retransmit {
            side: Side::Client,
            n: 7,
        },
        Effect::Retransmit {
            side: Side::Server,
            n: 2,
        },
        Effect::Reorder {
            side: Side::Client,
            n: 9,
        },
    ];
    out.push(("reorder_retransmit", reordered.frames()));

    let mut gap = standard(v4(0, 7, 40007), T0, "gap");
    gap.mss = 200;
    // A segment in the middle of the message body is lost.
    gap.effects = vec![Effect::Drop {
        side: Side::Client,
        n: 8,
    }];
    out.push(("gap", gap.frames()));

    let v6 = base(
        "[2001:db8::10]:40008".parse().unwrap_or(v4(0, 8, 40008)),
        T0,
    )
    .server("[2001:db8::25]:587".parse().unwrap_or(server()))
    .vlans(&[100, 200])
    .mail("alice@example.com")
    .rcpt("bob@example.net")
    .message(rich_message("v6"))
    .build();
    out.push(("ipv6_qinq", v6.frames()));

    let mut one = standard(v4(0, 9, 40009), T0, "onesided");
    one.effects = vec![Effect::OnlySide(Side::Client)];
    out.push(("one_sided", one.frames()));

    // Mid-stream pickup on a VLAN: the capture starts after the handshake
    // and the greeting, at the client's EHLO (no SYN: the originator is the
    // side not on port 25; the first reply answers EHLO, not a greeting).
    let mut late = base(v4(0, 11, 40011), T0)
        .vlans(&[42])
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .message(rich_message("midstream"))
        .build();
    late.effects = vec![Effect::StartLate(5)];
    out.push(("midstream_vlan", late.frames()));

    // Both sides' sequence numbers cross 2^32 during the message.
    let mut w = super::session::TcpSession::new(v4(0, 10, 40010), server(), Ts::from_secs(T0))
        .with_isns(u32::MAX - 500, u32::MAX - 20)
        .with_mss(300);
    w.handshake()
        .server("220 mx ESMTP\r\n")
        .client("EHLO wrap.example\r\n")
        .server("250 mx\r\n")
        .client("MAIL FROM:<alice@example.com>\r\n")
        .server("250 ok\r\n")
        .client("RCPT TO:<bob@example.net>\r\n")
        .server("250 ok\r\n")
        .client("DATA\r\n")
        .server("354 go\r\n")
        .client(rich_message("wrap").data_payload())
        .server("250 queued\r\n")
        .client("QUIT\r\n")
        .server("221 bye\r\n")
        .close(Side::Client);
    out.push(("seq_wraparound", w.frames()));

    out.push(("interleaved", load(40, 7, T0)));
    out
}

/// A small capture showing every feature, for `synth demo`.
pub fn demo() -> Frames {
    interleave(golden().into_iter().map(|(_, f)| f))
}

/// `connections` interleaved connections starting at `t0` seconds, from
/// many clients, mixing delivered mail, rejected recipients and block-list
/// replies; `seed` varies the mix deterministically. Every fourth client
/// is "noisy" (most of its recipients rejected) so spam rules can fire.
pub fn load(connections: usize, seed: u64, t0: u64) -> Frames {
    let mut out = Vec::new();
    for chunk_start in (0..connections).step_by(64) {
        let chunk_end = (chunk_start + 64).min(connections);
        let convs = (chunk_start..chunk_end).map(|i| load_conversation(i, seed, t0).frames());
        out.extend(interleave(convs));
    }
    out
}

/// Connection `i` of a load capture (deterministic in `i` and `seed`).
pub fn load_conversation(i: usize, seed: u64, t0: u64) -> SmtpConversation {
    let mix = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
    let host = (i % 97) as u16;
    let client = SocketAddr::from((
        [198, 18, 1 + (host >> 8) as u8, (host & 0xff) as u8],
        1024 + (i % 60_000) as u16,
    ));
    // Connections start 5 ms apart and overlap.
    let start_us = t0 * 1_000_000 + (i as u64) * 5_000;
    let noisy = host.is_multiple_of(4);
    let mut b = SmtpConversation::builder()
        .client(client)
        .server(server())
        .start(Ts(start_us))
        .step_us(300 + mix % 700)
        .ehlo(&format!("host{host}.example.com"));
    if mix.is_multiple_of(5) {
        b = b.pipelining();
    }
    let messages = 1 + (mix >> 8) % 2;
    for m in 0..messages {
        let from = format!("user{}@example.com", (mix >> 16) % 1000);
        let to = format!("rcpt{}@example.net", (mix >> 24) % 1000 + m);
        b = b.mail(&from).rcpt(&to);
        if noisy && !(mix >> 32).is_multiple_of(3) {
            b = b.reject_rcpt_with(
                550,
                "5.7.1 blocked, see http://www.spamhaus.org/query/bl?ip=198.18.1.1",
            );
        }
        let mut msg = Message::simple(&from, &to, &format!("load {i} {m}"))
            .header(
                "Received",
                &format!("from host{host} ([198.18.1.{host}]) by relay.example.com"),
            )
            .header("X-Mailer", "LoadGen 2")
            .body(
                &"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"
                    .repeat(20 + (mix % 150) as usize),
            );
        if mix.is_multiple_of(3) {
            msg = msg.attachment(
                &format!("file{i}.bin"),
                &"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n".repeat(30),
            );
        }
        b = b.message(msg);
    }
    b.build()
}

/// Connections per pass of `synth bulk` by default: about 265 MB of
/// frames (some 410 KB per connection), so that a fast sender needs a
/// fraction of a second per pass and the replayer's maps stay well within
/// their memory limit.
pub const BULK_CONNECTIONS: usize = 640;

/// Smallest and largest message body of a bulk connection, in bytes.
const BULK_BODY: (usize, usize) = (100 * 1024, 400 * 1024);

/// Connection `i` of a bulk capture (deterministic in `i` and `seed`):
/// the load capture's address scheme, but one or two large messages
/// (100–400 KiB of text lines, every third message half text and half a
/// base64 attachment) sent back to back, so that most frames are
/// full-size (1514-byte) DATA segments: the mix of a link that carries
/// mail bodies rather than dialogue, where the sensor's cost per byte
/// rather than per command shows. Every message is accepted, so an
/// offline run logs exactly one record per message.
pub fn bulk_conversation(i: usize, seed: u64, t0: u64) -> SmtpConversation {
    // Few connections: every bit of the mix must vary from one to the
    // next (the load's multiplicative mix leaves the low bits alike).
    let mix = splitmix((i as u64) ^ seed.rotate_left(32));
    let host = (i % 97) as u16;
    let client = SocketAddr::from((
        [198, 18, 1 + (host >> 8) as u8, (host & 0xff) as u8],
        1024 + (i % 60_000) as u16,
    ));
    // Connections start 5 ms apart; segments follow each other 20–50 µs
    // apart (a fast transfer), so a connection lasts a few tens of ms and
    // only a handful overlap.
    let mut b = SmtpConversation::builder()
        .client(client)
        .server(server())
        .start(Ts(t0 * 1_000_000 + (i as u64) * 5_000))
        .step_us(20 + mix % 31)
        .ehlo(&format!("host{host}.example.com"));
    let messages = 1 + (mix >> 8) % 2;
    for m in 0..messages {
        let mut rng = mix.rotate_left(17 * m as u32 + 5) | 1;
        let (lo, hi) = BULK_BODY;
        let size = lo + (xorshift(&mut rng) as usize) % (hi - lo + 1);
        let from = format!("user{}@example.com", (mix >> 16) % 1000);
        let to = format!("rcpt{}@example.net", (mix >> 24) % 1000 + m);
        let mut msg = Message::simple(&from, &to, &format!("bulk {i} {m}"))
            .header(
                "Received",
                &format!("from host{host} ([198.18.1.{host}]) by relay.example.com"),
            )
            .header("X-Mailer", "BulkGen 1");
        if (mix >> 4).wrapping_add(m).is_multiple_of(3) {
            msg = msg.body(&text_lines(size / 2, &mut rng)).attachment(
                &format!("archive{i}-{m}.bin"),
                &base64_lines(size / 2, &mut rng),
            );
        } else {
            msg = msg.body(&text_lines(size, &mut rng));
        }
        b = b.mail(&from).rcpt(&to).message(msg);
    }
    b.build()
}

/// splitmix64's finaliser: a well-spread 64-bit value for each input.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A step of xorshift64 (`state` must not be 0): cheap, deterministic
/// filler for the bulk bodies.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// About `bytes` of numbered text lines of ten words each (CRLF).
fn text_lines(bytes: usize, rng: &mut u64) -> String {
    const WORDS: [&str; 16] = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "magna",
    ];
    let mut out = String::with_capacity(bytes + 80);
    let mut n = 0u32;
    while out.len() < bytes {
        n += 1;
        let _ = write!(out, "{n:05}");
        let mut r = xorshift(rng);
        for _ in 0..10 {
            out.push(' ');
            out.push_str(WORDS[(r & 15) as usize]);
            r >>= 4;
        }
        out.push_str(".\r\n");
    }
    out
}

/// About `bytes` of base64 (of pseudo-random data) in 76-character lines,
/// as a mailer encodes an attachment.
fn base64_lines(bytes: usize, rng: &mut u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes + 80);
    while out.len() < bytes {
        // 57 input bytes make one 76-character line: 19 groups of 3.
        for _ in 0..19 {
            let r = xorshift(rng);
            for k in 0..4 {
                out.push(char::from(ALPHABET[((r >> (6 * k)) & 63) as usize]));
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// One connection of the evasion scenarios: the handshake, a greeting and
/// EHLO on port `port` of `client` (198.18.1.x), then what `talk` sends.
fn evasion_session(
    host: u8,
    server_port: u16,
    talk: impl FnOnce(&mut super::session::TcpSession),
) -> Frames {
    let server = SocketAddr::from(([198, 19, 0, 25], server_port));
    let mut s = super::session::TcpSession::new(
        v4(1, host, 41000 + u16::from(host)),
        server,
        Ts::from_secs(T0 + u64::from(host)),
    );
    s.handshake();
    talk(&mut s);
    s.close(Side::Client);
    s.frames()
}

/// Greeting, EHLO, MAIL FROM and RCPT TO, each answered.
fn evasion_envelope(s: &mut super::session::TcpSession, from: &str, to: &str) {
    s.server("220 mx.example.net ESMTP\r\n")
        .client("EHLO client.example.com\r\n")
        .server("250-mx.example.net\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
        .client(format!("MAIL FROM:<{from}>\r\n"))
        .server("250 2.1.0 Ok\r\n")
        .client(format!("RCPT TO:<{to}>\r\n"))
        .server("250 2.1.5 Ok\r\n");
}

/// DATA with `message` (sent as is: its own end of data), then QUIT.
fn evasion_data(s: &mut super::session::TcpSession, message: &str, replies: &str) {
    s.client("DATA\r\n")
        .server("354 go ahead\r\n")
        .client(message)
        .server(replies)
        .client("QUIT\r\n")
        .server("221 2.0.0 bye\r\n");
}

/// The state and evasion scenarios of issue 10 (points 1–5): `(name, frames)`,
/// each a capture of its own; `tests/tests/golden_evasion.rs` says what
/// each must log and count.
pub fn evasion() -> Vec<(&'static str, Frames)> {
    let mut out: Vec<(&'static str, Frames)> = Vec::new();

    // Point 1: the client pipelines past the end of a message (`.`, then
    // the next MAIL, RCPT and DATA in the same flight); the server's
    // `250 … queued` comes after them and belongs to the first message.
    out.push((
        "pipelined_end_of_data",
        evasion_session(40, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            s.client("DATA\r\n")
                .server("354 go ahead\r\n")
                .client(
                    "From: <alice@example.com>\r\nSubject: first\r\n\r\none\r\n.\r\n\
                     MAIL FROM:<carol@example.com>\r\nRCPT TO:<dave@example.net>\r\nDATA\r\n",
                )
                .server(
                    "250 2.0.0 Ok: queued as P1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
                     354 go ahead\r\n",
                )
                .client("From: <carol@example.com>\r\nSubject: second\r\n\r\ntwo\r\n.\r\n")
                .server("250 2.0.0 Ok: queued as P2\r\n")
                .client("QUIT\r\n")
                .server("221 2.0.0 bye\r\n");
        }),
    ));

    // Point 2: a DATA refused, then a DATA accepted with a whole message:
    // the message's headers belong to the record.
    out.push((
        "refused_data_then_data",
        evasion_session(41, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            s.client("DATA\r\n")
                .server("554 5.5.1 Error: no valid recipients\r\n");
            evasion_data(
                s,
                "From: <alice@example.com>\r\nTo: <bob@example.net>\r\n\
                 Subject: second try\r\n\r\nhello\r\n.\r\n",
                "250 2.0.0 Ok: queued as R2\r\n",
            );
        }),
    ));

    // Point 3: an accepted EHLO, then a bare EHLO the server refuses: helo
    // keeps the accepted name (RFC 5321 §4.1.4).
    out.push((
        "refused_ehlo",
        evasion_session(42, 25, |s| {
            s.server("220 mx.example.net ESMTP\r\n")
                .client("EHLO good.example.com\r\n")
                .server("250 mx.example.net\r\n")
                .client("EHLO\r\n")
                .server("501 5.5.4 Syntax: EHLO hostname\r\n")
                .client("MAIL FROM:<alice@example.com>\r\n")
                .server("250 2.1.0 Ok\r\n")
                .client("RCPT TO:<bob@example.net>\r\n")
                .server("250 2.1.5 Ok\r\n");
            evasion_data(
                s,
                "From: <alice@example.com>\r\nSubject: after a bad EHLO\r\n\r\nhi\r\n.\r\n",
                "250 2.0.0 Ok: queued as E1\r\n",
            );
        }),
    ));

    // A 5 KiB greeting without CRLF: the client's EHLO follows it, the
    // EHLO's reply must not be taken for the rest of the greeting.
    out.push((
        "endless_greeting",
        evasion_session(1, 25, |s| {
            s.server(format!("220 {}", "mx.example.net ".repeat(350)))
                .client("EHLO client.example.com\r\n")
                .server("250 mx.example.net AUTH LOGIN PLAIN\r\n")
                .client("AUTH LOGIN\r\n")
                .server("334 VXNlcm5hbWU6\r\n")
                .client("YWxpY2U=\r\n")
                .server("334 UGFzc3dvcmQ6\r\n")
                .client("c2VjcmV0\r\n")
                .server("235 2.7.0 Authentication successful\r\n")
                .client("MAIL FROM:<alice@example.com>\r\n")
                .server("250 2.1.0 Ok\r\n")
                .client("RCPT TO:<bob@example.net>\r\n")
                .server("250 2.1.5 Ok\r\n");
            evasion_data(
                s,
                "From: <alice@example.com>\r\nSubject: after a long greeting\r\n\r\nhi\r\n.\r\n",
                "250 2.0.0 Ok: queued as G1\r\n",
            );
        }),
    ));

    // SMTP smuggling: a message ending with a non-CRLF end of data, then a
    // second transaction inside what a strict server reads as message text.
    // The first two servers accept the short end (five replies), the last
    // two do not (one reply, to the real end).
    let smuggle = |host: u8, end: &'static str, lax: bool| {
        evasion_session(host, 25, move |s| {
            evasion_envelope(s, "user@example.com", "bob@example.net");
            let message = format!(
                "From: <user@example.com>\r\nSubject: cover\r\n\r\nhello{end}\
                 MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n\
                 From: <admin@example.com>\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\n"
            );
            let replies = if lax {
                "250 2.0.0 Ok: queued as S1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
                 354 go ahead\r\n250 2.0.0 Ok: queued as S2\r\n"
            } else {
                "250 2.0.0 Ok: queued as S1\r\n"
            };
            evasion_data(s, &message, replies);
        })
    };
    let smuggling = vec![
        smuggle(10, "\n.\n", true),
        smuggle(11, "\r\n.\n", true),
        smuggle(12, "\n.\r\n", false),
        smuggle(13, "\r\n.\r\r\n", false),
        // A bare CR is no line end: the message goes on to the real end.
        smuggle(14, "\r.\r", false),
        // Nor after a line start: named, as Zeek ends the data there.
        smuggle(15, "\r\n.\r", false),
    ];
    out.push(("smuggling", interleave(smuggling)));

    // A whole session with bare LF line ends, ending its data with `\n.\n`.
    out.push((
        "bare_lf",
        evasion_session(20, 587, |s| {
            s.server("220 mx.example.net ESMTP\n")
                .client("EHLO lf.example.com\n")
                .server("250 mx.example.net\n")
                .client("MAIL FROM:<lf@example.com>\n")
                .server("250 ok\n")
                .client("RCPT TO:<bob@example.net>\n")
                .server("250 ok\n")
                .client("DATA\n")
                .server("354 go ahead\n")
                .client("From: <lf@example.com>\nTo: <bob@example.net>\nSubject: bare LF\n\nbody\n..dot\n.\n")
                .server("250 queued\n")
                .client("QUIT\n")
                .server("221 bye\n");
        }),
    ));

    // NUL bytes: in a command word (not a command), in a header name (not
    // the header), in a header value (kept).
    out.push((
        "nul_bytes",
        evasion_session(30, 25, |s| {
            s.server("220 mx.example.net ESMTP\r\n")
                .client("EHLO client.example.com\r\n")
                .server("250 mx.example.net\r\n")
                .client("MAIL\0 FROM:<hidden@example.com>\r\n")
                .server("500 5.5.2 Error: bad syntax\r\n")
                .client("MAIL FROM:<alice@example.com>\r\n")
                .server("250 ok\r\n")
                .client("RCPT TO:<bob@example.net>\r\n")
                .server("250 ok\r\n");
            evasion_data(
                s,
                "Fr\0om: <ceo@example.com>\r\nFrom: <alice@example.com>\r\n\
                 Subject: nul\0inside\r\n\r\nbody\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // Two From and two Subject headers: the last of each is logged.
    out.push((
        "duplicate_headers",
        evasion_session(40, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            evasion_data(
                s,
                "From: <ceo@bank.example>\r\nSubject: invoice\r\nTo: <bob@example.net>\r\n\
                 From: <alice@example.com>\r\nSubject: urgent\r\nMessage-ID: <a@x>\r\n\
                 Message-ID: <b@x>\r\n\r\nbody\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // Header names with blanks before the colon still name the header.
    out.push((
        "header_space_colon",
        evasion_session(50, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            evasion_data(
                s,
                "From : <alice@example.com>\r\nSubject\t: spaced out\r\nTo  : <bob@example.net>\r\n\
                 \r\nbody\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // RFC 2047 encoded words across folds, one split inside the word.
    out.push((
        "rfc2047_folded",
        evasion_session(60, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            evasion_data(
                s,
                "From: =?UTF-8?Q?Al=C3=AFce?=\r\n <alice@example.com>\r\n\
                 Subject: =?UTF-8?B?SGVsbG8g?=\r\n =?UTF-8?B?V29ybGQ=?=\r\n\t=?UTF-8?Q?spl\r\n it?=\r\n\
                 \r\nbody\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // RFC 2231 continuations: in order and encoded, out of order, with a
    // repeated section number, with a missing one.
    out.push((
        "rfc2231_continuations",
        evasion_session(70, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            evasion_data(
                s,
                "From: <alice@example.com>\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"P\"\r\n\r\n\
                 --P\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
                 --P\r\nContent-Disposition: attachment;\r\n filename*0*=UTF-8''r%C3%A9sum;\r\n filename*1=\"e.pdf\"\r\n\r\nx\r\n\
                 --P\r\nContent-Disposition: attachment; filename*1=\".txt\"; filename*0=\"notes\"\r\n\r\nx\r\n\
                 --P\r\nContent-Disposition: attachment; filename*0=\"invoice\"; filename*0=\"harmless\"; filename*1=\".exe\"\r\n\r\nMZ\r\n\
                 --P\r\nContent-Type: application/octet-stream; name*0=\"a\"; name*2=\"c.bin\"\r\n\r\nx\r\n\
                 --P--\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // A delimiter inside a text part starts a part; a nested multipart
    // whose boundary begins with the outer one loses its delimiters to it.
    out.push((
        "boundary_in_part",
        evasion_session(80, 25, |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            evasion_data(
                s,
                "From: <alice@example.com>\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
                 --B\r\nContent-Type: text/plain\r\n\r\nquoted:\r\n\
                 --B\r\nContent-Disposition: attachment; filename=\"hidden.exe\"\r\n\r\nMZ\r\n\
                 --B\r\nContent-Type: multipart/alternative; boundary=\"B-inner\"\r\n\r\n\
                 --B-inner\r\nContent-Type: text/plain; name=\"inner.txt\"\r\n\r\nx\r\n\
                 --B-inner--\r\n\
                 --B\r\nContent-Disposition: attachment; filename=\"last.pdf\"\r\n\r\nx\r\n\
                 --B--\r\n.\r\n",
                "250 queued\r\n",
            );
        }),
    ));

    // DATA after a BDAT chunk in one transaction: refused by one server,
    // accepted by a lax one.
    let mixed = |host: u8, data_reply: &'static str| {
        evasion_session(host, 25, move |s| {
            evasion_envelope(s, "alice@example.com", "bob@example.net");
            let chunk = "From: <alice@example.com>\r\nSubject: chunked\r\n\r\nfirst part\r\n";
            s.client(format!("BDAT {}\r\n{chunk}", chunk.len()))
                .server(format!("250 2.0.0 {} octets received\r\n", chunk.len()))
                .client("DATA\r\n")
                .server(data_reply);
            if data_reply.starts_with("354") {
                s.client("From: <mallory@example.com>\r\nSubject: by DATA\r\n\r\nsecond\r\n.\r\n")
                    .server("250 2.0.0 Ok: queued\r\n");
            } else {
                s.client("RSET\r\n").server("250 2.0.0 Ok\r\n");
            }
            s.client("QUIT\r\n").server("221 2.0.0 bye\r\n");
        })
    };
    out.push((
        "data_bdat_mixed",
        interleave([
            mixed(90, "503 5.5.1 Error: DATA after BDAT\r\n"),
            mixed(91, "354 go ahead\r\n"),
        ]),
    ));

    // Other protocols on SMTP ports: an HTTP exchange on port 25, and a
    // client that keeps sending SMTP commands to a server that answers in
    // binary (a TLS-only service on 587).
    let http = evasion_session(100, 25, |s| {
        s.client("GET / HTTP/1.1\r\nHost: mx.example.net\r\nUser-Agent: probe\r\n\r\n")
            .server(
                "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n\
                 Content-Length: 11\r\nConnection: close\r\n\r\nbad request",
            );
    });
    let binary = evasion_session(101, 587, |s| {
        s.server(
            b"\x15\x03\x01\x00\x02\x02\x46\n\x16\x03\x03\n\x00\x00\n\xff\xfe\n\x01\x02\n"
                .as_slice(),
        );
        let mut flood = String::new();
        for i in 0..40 {
            let _ = write!(flood, "RCPT TO:<user{i}@example.net>\r\nDATA\r\n");
        }
        s.client(flood)
            .server(b"\x15\x03\x03\x00\x02\x02\x32\n".as_slice());
    });
    out.push(("not_smtp", interleave([http, binary])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;
    use crate::synth::pcap::write_pcap;
    use smtp_sensor::config::Config;
    use smtp_sensor::decode::DecodeOptions;
    use smtp_sensor::output::LogFormat;
    use smtp_sensor::pipeline::{RunOptions, run_offline};

    #[test]
    fn bulk_is_full_size_frames_and_one_record_per_message() {
        let convs: Vec<SmtpConversation> = (0..6).map(|i| bulk_conversation(i, 1, T0)).collect();
        let messages: usize = convs.iter().map(|c| c.transactions.len()).sum();
        // The mix this sample must show: two-message connections and
        // attachments.
        assert!(messages > convs.len(), "no connection has two messages");
        assert!(
            convs.iter().flat_map(|c| &c.transactions).any(|t| t
                .message
                .as_ref()
                .is_some_and(|m| !m.attachments.is_empty())),
            "no message has an attachment"
        );
        let frames = interleave(convs.iter().map(SmtpConversation::frames));
        let bytes: usize = frames.iter().map(|(_, f)| f.len()).sum();
        let average = bytes / frames.len();
        assert!(average > 1000, "average frame {average} bytes");
        assert!(frames.iter().all(|(_, f)| f.len() <= 1514));

        let dir = Scratch::new("bulk-offline");
        let pcap = dir.join("bulk.pcap");
        write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        let opts = RunOptions {
            log_dir: dir.path().to_path_buf(),
            format: LogFormat::Json,
            workers: 1,
            decode: DecodeOptions::default(),
        };
        let summary = run_offline(&Config::default(), &pcap, &opts).unwrap();
        let log = std::fs::read_to_string(dir.join("smtp.log")).unwrap();
        assert_eq!(summary.records as usize, messages);
        assert_eq!(log.lines().count(), messages, "{log}");
    }
}
