//! The demo capture (`synth demo`, `cargo xtask demo`, the live end-to-end
//! test): a quarter of a minute of a mail server's port 25/587 traffic with
//! the three things the sensor is for.
//!
//! - Ordinary mail: five messages from four clients (IPv4 and IPv6, DATA
//!   and BDAT, PIPELINING, two messages on one connection), with Received
//!   chains, To/Cc lists, mailers and attachments, plus one recipient typo
//!   rejected with 550.
//! - A spamming host, [`SPAMMER`]: [`SPAM_CONNECTIONS`] short connections,
//!   most of them refused (a 554 greeting, or a 550 to a guessed recipient).
//!   That is over the default `spam_threshold` (300) and `spam_percent`
//!   (30), so `SMTP::SMTP_PossibleSpam` fires with the default config: the
//!   demo shows what a real deployment would report, no tuned thresholds.
//!   The refused-at-greeting connections write no smtp.log record (no
//!   client activity), which keeps the log readable.
//! - A block-listed host, [`BLOCKLISTED`]: the server answers its RCPT with
//!   a Spamhaus reply naming the client's own address, so
//!   `SMTP::SMTP_BL_Blocked_Host` fires.
//!
//! Everything is deterministic; addresses are from 198.18.0.0/15 and
//! 2001:db8::/32. About 4 200 frames, 280 kB.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smtp_sensor::net::Ts;

use super::scenarios::Frames;
use super::session::interleave;
use super::smtp::{ConversationBuilder, Message, SmtpConversation};

/// Network time of the first connection: 2026-11-23 09:00:00 UTC, the day
/// the messages' Date headers give.
pub const T0_SECS: u64 = 1_795_424_400;

/// The host that opens many connections, most of them refused.
pub const SPAMMER: Ipv4Addr = Ipv4Addr::new(198, 18, 66, 6);
/// Connections the spamming host opens (default `spam_threshold` is 300).
pub const SPAM_CONNECTIONS: u64 = 304;
const _: () = assert!(
    SPAM_CONNECTIONS >= 300,
    "the demo must reach the default spam_threshold"
);
/// The host whose RCPT gets a block-list reply naming it.
pub const BLOCKLISTED: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 7);
/// The mail exchanger every IPv4 client talks to.
pub const MX: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 25)), 25);
/// The submission server (port 587).
pub const SUBMISSION: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 26)), 587);

/// smtp.log records the capture yields: five ordinary transactions, the
/// recipient typo's, the block-listed host's and one per spam connection
/// that got as far as RCPT.
pub const RECORDS: usize = 7 + SPAM_RCPT_TRIES;

/// Spam connections that reach RCPT TO (and are refused there).
const SPAM_RCPT_TRIES: usize = 8;

/// The Spamhaus reply the block-listed host gets.
pub const BLOCKLIST_REPLY: &str = "5.7.1 Service unavailable; Client host [198.18.77.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/198.18.77.7";

/// How one of the spamming host's connections goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpamTry {
    /// 220, EHLO, QUIT: counted, not rejected.
    Probe,
    /// EHLO, MAIL, RCPT to a guessed address: 550.
    GuessedRcpt,
    /// A 554 greeting: refused before any command.
    RefusedAtGreeting,
}

fn spam_try(i: u64) -> SpamTry {
    if i.is_multiple_of(5) {
        SpamTry::Probe
    } else if i % 40 == 1 {
        SpamTry::GuessedRcpt
    } else {
        SpamTry::RefusedAtGreeting
    }
}

/// Connections of [`SPAMMER`] counted as rejected (first reply code in the
/// default `reject_codes`).
pub fn spam_rejected() -> u64 {
    (0..SPAM_CONNECTIONS)
        .filter(|&i| spam_try(i) != SpamTry::Probe)
        .count() as u64
}

/// The notices the capture must raise with the default config, as
/// `(note, src, msg)`.
pub fn expected_notices() -> Vec<(String, String, String)> {
    let percent = spam_rejected() * 100 / SPAM_CONNECTIONS;
    vec![
        (
            "SMTP::SMTP_BL_Blocked_Host".into(),
            BLOCKLISTED.to_string(),
            format!("{BLOCKLISTED} is on an SMTP block list"),
        ),
        (
            "SMTP::SMTP_PossibleSpam".into(),
            SPAMMER.to_string(),
            format!("{SPAMMER} - sent: {SPAM_CONNECTIONS} rejected: {percent} percent"),
        ),
    ]
}

fn at(ms: u64) -> Ts {
    Ts(T0_SECS * 1_000_000 + ms * 1000)
}

fn v4(c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, c, d], port))
}

fn conversation(client: SocketAddr, server: SocketAddr, ms: u64) -> ConversationBuilder {
    SmtpConversation::builder()
        .client(client)
        .server(server)
        .start(at(ms))
        .greeting(220, "mx.example.net ESMTP Postfix")
}

/// The whole capture, frames in time order.
pub fn capture() -> Frames {
    let mut sessions: Vec<Frames> = ordinary().iter().map(SmtpConversation::frames).collect();
    sessions.push(blocklisted().frames());
    sessions.extend((0..SPAM_CONNECTIONS).map(|i| spam(i).frames()));
    interleave(sessions)
}

/// The ordinary mail: what an analyst expects to read in smtp.log.
fn ordinary() -> Vec<SmtpConversation> {
    let report = Message::new()
        .header(
            "Received",
            "from laptop-alice.corp.example.com (laptop-alice.corp.example.com [198.18.200.10])\r\n\
             \tby relay.example.com with ESMTPSA id 4Fq2; Mon, 23 Nov 2026 08:59:58 +0000",
        )
        .header("From", "\"Alice Martin\" <alice@example.com>")
        .header("To", "bob@example.net, \"Carol Jones\" <carol@example.net>")
        .header("Cc", "finance@example.com")
        .header("Subject", "Q3 report and figures")
        .header("Date", "Mon, 23 Nov 2026 08:59:57 +0000")
        .header("Message-ID", "<q3-report.4711@example.com>")
        .header("X-Mailer", "Microsoft Outlook 16.0")
        .body(
            "Hello both,\r\n\r\nthe Q3 report is attached, figures in the sheet.\r\n\r\nAlice\r\n",
        )
        .attachment(
            "report-q3.pdf",
            &"JVBERi0xLjQKJcfsj6IKNSAwIG9iago=\r\n".repeat(40),
        )
        .attachment(
            "figures-q3.xlsx",
            &"UEsDBBQABgAIAAAAIQBi7p1oXgEAAJAEAAAT\r\n".repeat(30),
        );
    let minutes = Message::new()
        .header(
            "Received",
            "from laptop-alice.corp.example.com (laptop-alice.corp.example.com [198.18.200.10])\r\n\
             \tby relay.example.com with ESMTPSA id 4Fq3; Mon, 23 Nov 2026 08:59:59 +0000",
        )
        .header("From", "\"Alice Martin\" <alice@example.com>")
        .header("To", "team@example.net")
        .header("Subject", "Minutes of Monday's meeting")
        .header("Date", "Mon, 23 Nov 2026 08:59:59 +0000")
        .header("Message-ID", "<minutes.4712@example.com>")
        .header("X-Mailer", "Microsoft Outlook 16.0")
        .body("Minutes attached.\r\n")
        .attachment(
            "minutes-2026-11-23.docx",
            &"UEsDBBQABgAIAAAAIQDfpNJsWgEAACAFAAAT\r\n".repeat(20),
        );
    let relay = conversation(v4(10, 11, 41_001), MX, 400)
        .ehlo("relay.example.com")
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .rcpt("carol@example.net")
        .message(report)
        .mail("alice@example.com")
        .rcpt("team@example.net")
        .message(minutes)
        .build();

    let lunch = Message::new()
        .header(
            "Received",
            "from [IPv6:2001:db8:10::99] (phone.home.example.org [2001:db8:10::99])\r\n\
             \tby smtp.example.org with ESMTPSA; Mon, 23 Nov 2026 09:00:01 +0000",
        )
        .header("From", "Dan Okafor <dan@example.org>")
        .header("To", "alice@example.com")
        .header("Subject", "Re: Lunch on Friday?")
        .header("Date", "Mon, 23 Nov 2026 09:00:01 +0000")
        .header("Message-ID", "<lunch-re.17@example.org>")
        .header("In-Reply-To", "<lunch.16@example.com>")
        .header("User-Agent", "Mozilla Thunderbird 140.2")
        .body("Friday works, 12:30 at the usual place?\r\n");
    let v6 = conversation(
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x12)),
            41_002,
        ),
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x25, 0, 0, 0, 0, 0x25)),
            25,
        ),
        3_200,
    )
    .ehlo("smtp.example.org")
    .pipelining()
    .mail("dan@example.org")
    .rcpt("alice@example.com")
    .message(lunch)
    .build();

    let photos = Message::new()
        .header("From", "Erin Blake <erin@example.com>")
        .header("To", "grandma@example.net")
        .header("Subject", "Holiday photos")
        .header("Date", "Mon, 23 Nov 2026 09:00:06 +0000")
        .header("Message-ID", "<photos.2026@example.com>")
        .header("User-Agent", "Mozilla Thunderbird 140.2")
        .body("Some pictures from the trip.\r\n")
        .attachment(
            "beach.jpg",
            &"/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAgGBgcG\r\n".repeat(50),
        )
        .attachment(
            "mountains.jpg",
            &"/9j/4AAQSkZJRgABAQEAYABgAAD/2wBDAAMCAgMC\r\n".repeat(50),
        );
    let submission = conversation(v4(10, 13, 41_003), SUBMISSION, 6_700)
        .ehlo("erin-pc.example.com")
        .mail("erin@example.com")
        .rcpt("grandma@example.net")
        .message(photos)
        .bdat(1_000)
        .build();

    let newsletter = Message::new()
        .header(
            "Received",
            "from app3.lists.example.org (app3.lists.example.org [198.18.30.3])\r\n\
             \tby out.lists.example.org with ESMTP id 77a; Mon, 23 Nov 2026 09:00:10 +0000",
        )
        .header("From", "Example Weekly <news@lists.example.org>")
        .header("To", "subscribers@lists.example.org")
        .header("Reply-To", "no-reply@lists.example.org")
        .header("Subject", "Example Weekly #48: what's new")
        .header("Date", "Mon, 23 Nov 2026 09:00:10 +0000")
        .header("Message-ID", "<weekly-48@lists.example.org>")
        .header("X-Mailer", "ListMailer 3.2")
        .body("This week: new releases, events and a survey.\r\n");
    let lists = conversation(v4(10, 14, 41_004), MX, 9_100)
        .ehlo("out.lists.example.org")
        .mail("bounce-48@lists.example.org")
        .rcpt("bob@example.net")
        .rcpt("caorl@example.net")
        .reject_rcpt_with(
            550,
            "5.1.1 <caorl@example.net>: Recipient address rejected: User unknown in local recipient table",
        )
        .rcpt("dave@example.net")
        .message(newsletter)
        .build();

    let invoice = Message::new()
        .header(
            "Received",
            "from billing.example.net (billing.example.net [198.18.40.4])\r\n\
             \tby gw.example.net with ESMTP id 9k1; Mon, 23 Nov 2026 09:00:11 +0000",
        )
        .header(
            "Received",
            "from [10.20.0.5] (helo=erp01)\r\n\tby billing.example.net; Mon, 23 Nov 2026 09:00:11 +0000",
        )
        .header("From", "Billing <billing@example.net>")
        .header("To", "accounts@example.com")
        .header("Subject", "Invoice 2026-1187")
        .header("Date", "Mon, 23 Nov 2026 09:00:11 +0000")
        .header("Message-ID", "<inv-2026-1187@example.net>")
        .body("Please find invoice 2026-1187 attached.\r\n")
        .attachment("invoice-2026-1187.pdf", &"JVBERi0xLjcKJeLjz9MKMSAwIG9iago=\r\n".repeat(30));
    let billing = conversation(v4(10, 15, 41_005), MX, 11_400)
        .ehlo("gw.example.net")
        .mail("billing@example.net")
        .rcpt("accounts@example.com")
        .message(invoice)
        .build();

    vec![relay, v6, submission, lists, billing]
}

/// The block-listed host: its RCPT is refused with a Spamhaus reply.
fn blocklisted() -> SmtpConversation {
    conversation(SocketAddr::new(IpAddr::V4(BLOCKLISTED), 45_555), MX, 8_300)
        .ehlo("mail.bulk-offers.example")
        .mail("offers@bulk-offers.example")
        .rcpt("bob@example.net")
        .reject_rcpt_with(554, BLOCKLIST_REPLY)
        .message(Message::simple(
            "offers@bulk-offers.example",
            "bob@example.net",
            "You have won",
        ))
        .build()
}

/// Connection `i` of the spamming host: one every 40 ms from 2 s on.
fn spam(i: u64) -> SmtpConversation {
    let client = SocketAddr::new(IpAddr::V4(SPAMMER), 50_000 + i as u16);
    let b = conversation(client, MX, 2_000 + i * 40).ehlo("ylmf-pc");
    match spam_try(i) {
        SpamTry::Probe => b.build(),
        SpamTry::GuessedRcpt => {
            let rcpt = format!(
                "{}@example.net",
                ["info", "sales", "admin", "office"][(i / 40 % 4) as usize]
            );
            b.mail("winner@prizes.example")
                .rcpt(&rcpt)
                .reject_rcpt_with(
                    550,
                    &format!("5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table"),
                )
                .build()
        }
        SpamTry::RefusedAtGreeting => b
            .greeting(
                554,
                "5.7.1 mx.example.net: Client host [198.18.66.6] rejected: too many connections",
            )
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_counts_pass_the_default_thresholds() {
        let tries = (0..SPAM_CONNECTIONS)
            .filter(|&i| spam_try(i) == SpamTry::GuessedRcpt)
            .count();
        assert_eq!(tries, SPAM_RCPT_TRIES);
        assert!(spam_rejected() * 100 / SPAM_CONNECTIONS >= 30);
        assert!(spam_rejected() < SPAM_CONNECTIONS);
    }

    #[test]
    fn capture_is_small_and_in_order() {
        let frames = capture();
        assert!(
            frames.len() > 3_000 && frames.len() < 6_000,
            "{}",
            frames.len()
        );
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0));
        // Well under the default conn_idle_timeout and inspect_period.
        let span = frames[frames.len() - 1].0.micros() - frames[0].0.micros();
        assert!(span < 60_000_000, "{span}");
    }
}
