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
