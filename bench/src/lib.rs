//! Benchmarks and the load-test harness: inputs shared by the criterion
//! benches in `benches/` (realistic SMTP transcripts and captures built with
//! the test synthesiser).

use sensor_tests::synth::scenarios::{self, rich_message};
use sensor_tests::synth::session::Side;
use sensor_tests::synth::smtp::SmtpConversation;
use smtp_sensor::net::{Direction, Ts};

/// One direction's bytes of an SMTP session, in the order they were sent.
pub type Transcript = Vec<(Direction, Vec<u8>)>;

/// A realistic session: EHLO, three messages with a Received chain,
/// folded headers, To/Cc lists, two attachments and a ~20 KB body each.
pub fn transcript() -> Transcript {
    let body =
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
            .repeat(250);
    let mut b = SmtpConversation::builder();
    for i in 0..3 {
        b = b
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .rcpt("carol@example.net")
            .message(rich_message(&format!("bench{i}")).body(&body));
    }
    let conv = b.build();
    conv.session()
        .segments()
        .into_iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| {
            let dir = if s.from == Side::Client {
                Direction::Orig
            } else {
                Direction::Resp
            };
            (dir, s.payload)
        })
        .collect()
}

/// Frames of `connections` interleaved SMTP connections.
pub fn capture(connections: usize) -> Vec<(Ts, Vec<u8>)> {
    scenarios::load(connections, 3, 1_700_000_000)
}
