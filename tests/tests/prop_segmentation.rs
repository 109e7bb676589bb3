//! Property: however a session's two byte streams are cut into TCP
//! segments, the sensor writes the same smtp.log records as for the
//! unsegmented session.
//!
//! A conversation of the generator (`synth::smtp`: plain, pipelined, BDAT,
//! BDAT with an empty last chunk, STARTTLS, rejected recipients, the load
//! mix with attachments) is reduced to its turns: the bytes one side sends
//! before the other side speaks. The reference capture sends each turn as
//! one segment; the capture under test cuts every turn at arbitrary points
//! (down to one byte per segment). Every segment of a turn carries the
//! turn's time, so the records may not differ in anything. Both go through
//! the real offline pipeline.

use std::net::SocketAddr;

use proptest::prelude::*;
use sensor_tests::offline::run_frames;
use sensor_tests::synth::scenarios::{load_conversation, rich_message};
use sensor_tests::synth::session::{Side, TcpSession};
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use smtp_sensor::net::Ts;

/// Largest turn sent as one segment: a frame must fit the pcap's snaplen.
const MAX_SEGMENT: usize = 60_000;

fn client() -> SocketAddr {
    "198.18.0.10:40000".parse().unwrap()
}

fn server() -> SocketAddr {
    "198.19.0.25:25".parse().unwrap()
}

/// The conversation of recipe `n` (`i` varies the load mix).
fn conversation(n: u8, i: usize) -> SmtpConversation {
    let b = SmtpConversation::builder()
        .client(client())
        .server(server())
        .start(Ts::from_secs(1_000));
    match n % 6 {
        0 => b
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .rcpt("carol@example.net")
            .message(rich_message("basic"))
            .build(),
        1 => b
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
                "one",
            ))
            .mail("alice@example.com")
            .rcpt("eve@example.net")
            .message(Message::simple(
                "alice@example.com",
                "eve@example.net",
                "two",
            ))
            .data_reply(554, "5.7.1 rejected as spam")
            .build(),
        2 => b
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .message(rich_message("bdat"))
            .bdat(300)
            .build(),
        3 => b
            .mail("alice@example.com")
            .rcpt("bob@example.net")
            .message(rich_message("bdat0"))
            .bdat_then_zero_last(512)
            .mail("alice@example.com")
            .rcpt("carol@example.net")
            .message(Message::simple(
                "alice@example.com",
                "carol@example.net",
                "after",
            ))
            .build(),
        4 => b.mail("alice@example.com").starttls().build(),
        _ => load_conversation(i, 7, 1_000),
    }
}

/// The conversation's turns: `(side, bytes)`, in order.
fn turns(c: &SmtpConversation) -> Vec<(Side, Vec<u8>)> {
    let mut out: Vec<(Side, Vec<u8>)> = Vec::new();
    for s in c.session().segments() {
        if s.payload.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((side, bytes)) if *side == s.from => bytes.extend_from_slice(&s.payload),
            _ => out.push((s.from, s.payload)),
        }
    }
    out
}

/// A capture of `turns`: handshake, each turn cut where `cut` says (the
/// lengths of its segments, given the turn's length and index), the
/// peer's ACK after each segment, all of a turn at one time; then FINs.
fn capture(
    turns: &[(Side, Vec<u8>)],
    cut: impl Fn(usize, usize) -> Vec<usize>,
) -> Vec<(Ts, Vec<u8>)> {
    let mut s = TcpSession::new(client(), server(), Ts::from_secs(1_000));
    s.handshake();
    for (t, (side, bytes)) in turns.iter().enumerate() {
        s.step_us = 0;
        let mut pos = 0;
        for len in cut(bytes.len(), t) {
            let end = (pos + len.max(1)).min(bytes.len());
            s.mss = end - pos;
            s.send(*side, &bytes[pos..end]);
            pos = end;
            if pos == bytes.len() {
                break;
            }
        }
        assert_eq!(pos, bytes.len(), "the cut covers the turn");
        s.step_us = 1000;
        s.wait(1000);
    }
    s.close(Side::Client);
    s.frames()
}

/// The whole turn as one segment (or as few as the snaplen allows).
fn whole(len: usize, _turn: usize) -> Vec<usize> {
    vec![MAX_SEGMENT; len.div_ceil(MAX_SEGMENT).max(1)]
}

/// Runs the offline pipeline on `frames`; smtp.log's lines.
fn smtp_log(frames: &[(Ts, Vec<u8>)]) -> Vec<String> {
    let (dir, _) = run_frames("prop-segmentation", frames, 1);
    std::fs::read_to_string(dir.join("smtp.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How a turn is cut: segment lengths taken in turn from `sizes`, starting
/// at an offset that differs per turn so that turns are not cut alike;
/// with `bytewise`, every byte its own segment for the turns it names.
#[derive(Clone, Debug)]
struct Cut {
    sizes: Vec<usize>,
    bytewise: Vec<bool>,
}

impl Cut {
    fn lengths(&self, len: usize, turn: usize) -> Vec<usize> {
        if self.bytewise[turn % self.bytewise.len()] && len <= 4096 {
            return vec![1; len.max(1)];
        }
        let mut out = Vec::new();
        let mut total = 0;
        let mut i = turn;
        while total < len.max(1) {
            let n = self.sizes[i % self.sizes.len()];
            out.push(n);
            total += n;
            i += 1;
        }
        out
    }
}

fn cuts() -> impl Strategy<Value = Cut> {
    let size = prop_oneof![
        6 => 1usize..=16,
        3 => 17usize..=600,
        1 => 601usize..=3000,
    ];
    (
        prop::collection::vec(size, 1..24),
        prop::collection::vec(prop::bool::weighted(0.1), 1..8),
    )
        .prop_map(|(sizes, bytewise)| Cut { sizes, bytewise })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    })]

    #[test]
    fn segmentation_changes_no_record(recipe in 0u8..6, i in 0usize..500, cut in cuts()) {
        let conv = conversation(recipe, i);
        let turns = turns(&conv);
        let reference = smtp_log(&capture(&turns, whole));
        prop_assert!(!reference.is_empty(), "recipe {} writes records", recipe);
        let cut_up = smtp_log(&capture(&turns, |len, t| cut.lengths(len, t)));
        prop_assert_eq!(reference, cut_up);
    }
}

/// The property holds for the tightest cut, one byte per segment, on every
/// recipe (the random cases above may miss one).
#[test]
fn one_byte_segments_change_no_record() {
    for recipe in 0..5 {
        let turns = turns(&conversation(recipe, 0));
        let reference = smtp_log(&capture(&turns, whole));
        assert!(!reference.is_empty());
        let bytewise = smtp_log(&capture(&turns, |len, _| vec![1; len]));
        assert_eq!(reference, bytewise, "recipe {recipe}");
    }
}
