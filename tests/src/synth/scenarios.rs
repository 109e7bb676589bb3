//! Named captures built from SMTP conversations: the golden-test scenarios,
//! the demo capture, and large interleaved loads for benchmarks and the
//! worker-count equivalence test.

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
