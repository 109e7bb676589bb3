//! Injection and evasion: ordinary mail sessions, some of them attacked
//! with forged TCP segments before their DATA (a RST with an arbitrary
//! sequence number, a pure ACK 500 MB ahead, a SYN with a new initial
//! sequence number, contradictory retransmissions), and a connection whose
//! client announces a huge BDAT chunk the server refuses. Every ordinary
//! session must be logged exactly as in the capture without the attack, and
//! each attack must be named by its anomaly counter.

use std::net::SocketAddr;

use sensor_tests::logs::{assert_same, read_log};
use sensor_tests::offline::run_frames;
use sensor_tests::synth::frame::{TcpFrame, tcp_flags};
use sensor_tests::synth::scenarios::{Frames, load_conversation};
use sensor_tests::synth::session::{Segment, Side, TcpSession, interleave};
use sensor_tests::synth::smtp::SmtpConversation;
use serde_json::Value;
use smtp_sensor::anomaly::AnomalyCounts;
use smtp_sensor::net::Ts;

const T0: u64 = 1_700_000_000;

/// Runs the offline pipeline on `frames` with `workers` workers: smtp.log's
/// records and the anomaly counts.
fn run(frames: &Frames, workers: usize) -> (Vec<Value>, AnomalyCounts) {
    let (records, _, counts) = run_with_weirds(frames, workers);
    (records, counts)
}

/// As [`run`], with weird.log's rows.
fn run_with_weirds(frames: &Frames, workers: usize) -> (Vec<Value>, Vec<Value>, AnomalyCounts) {
    let (dir, s) = run_frames("golden-injection", frames, workers);
    (
        read_log(&dir.join("smtp.log")),
        read_log(&dir.join("weird.log")),
        s.anomalies,
    )
}

/// One segment as an Ethernet frame of `conv`'s connection.
fn frame(conv: &SmtpConversation, s: &Segment) -> (Ts, Vec<u8>) {
    let (src, dst) = match s.from {
        Side::Client => (conv.client, conv.server),
        Side::Server => (conv.server, conv.client),
    };
    let f = TcpFrame {
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        payload: &s.payload,
        ..TcpFrame::new(src, dst)
    };
    (s.ts, f.build())
}

/// The ordinary sessions around the victims: load conversations 0..n.
fn bystanders(n: usize) -> Vec<Frames> {
    (0..n)
        .map(|i| load_conversation(i, 11, T0).frames())
        .collect()
}

/// A victim: a load conversation with `forged` segments (made from the
/// client's segment that carries DATA: its sequence number and ACK, and its
/// time) captured just before that segment. Returns the clean and the
/// attacked frames.
fn victim(i: usize, forged: impl Fn(&Segment) -> Vec<Segment>) -> (Frames, Frames) {
    let conv = load_conversation(i, 11, T0);
    let segs = conv.session().segments();
    let at = segs
        .iter()
        .position(|s| s.from == Side::Client && s.payload.windows(6).any(|w| w == b"DATA\r\n"))
        .expect("the conversation sends DATA");
    let mut attacked = segs.clone();
    let extra = forged(&segs[at]);
    for (k, s) in extra.into_iter().enumerate() {
        attacked.insert(at + k, s);
    }
    let clean = segs.iter().map(|s| frame(&conv, s)).collect();
    let attacked = attacked.iter().map(|s| frame(&conv, s)).collect();
    (clean, attacked)
}

fn forged(base: &Segment, from: Side, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Segment {
    Segment {
        ts: base.ts,
        from,
        seq,
        ack,
        flags,
        payload: payload.to_vec(),
    }
}

/// Interleaves the bystanders with the victims' clean frames, then with
/// their attacked frames: both runs must log the same records (with 1 and
/// 2 workers), and the attacked run must count `anomaly` at least `min`
/// times.
fn check(victims: Vec<(Frames, Frames)>, anomaly: &str, min: u64) {
    let n_victims = victims.len();
    let (clean, attacked): (Vec<Frames>, Vec<Frames>) = victims.into_iter().unzip();
    let mut clean_all = bystanders(12);
    clean_all.extend(clean);
    let mut attacked_all = bystanders(12);
    attacked_all.extend(attacked);
    let clean = interleave(clean_all);
    let attacked = interleave(attacked_all);
    assert!(attacked.len() > clean.len());
    for workers in [1, 2] {
        let (want, clean_weirds, base) = run_with_weirds(&clean, workers);
        let (got, weirds, counts) = run_with_weirds(&attacked, workers);
        // weird.log: one row per attacked connection (however often it was
        // attacked), from the TCP layer, with that connection's uid.
        let rows: Vec<&Value> = weirds.iter().filter(|w| w["name"] == anomaly).collect();
        assert_eq!(rows.len(), n_victims, "{anomaly} rows: {weirds:?}");
        for w in &rows {
            assert_eq!(w["source"], "TCP", "{w}");
            assert!(
                got.iter()
                    .any(|r| r["uid"] == w["uid"] && r["id.orig_p"] == w["id.orig_p"]),
                "{w}: no smtp.log record of its connection"
            );
        }
        assert!(
            !clean_weirds.iter().any(|w| w["name"] == anomaly),
            "{clean_weirds:?}"
        );
        assert!(want.len() >= 14, "{} records", want.len());
        assert_same("smtp.log", &got, &want);
        assert!(
            counts.get(anomaly) >= min,
            "{anomaly}: {} (workers {workers}): {counts:?}",
            counts.get(anomaly)
        );
        assert_eq!(base.get(anomaly), 0, "the clean capture counts {anomaly}");
    }
}

#[test]
fn blind_rst_does_not_end_the_session() {
    let victims = (100..104)
        .map(|i| {
            victim(i, |d| {
                vec![
                    // From the client, far from its stream; from the
                    // server, as far from its own.
                    forged(
                        d,
                        Side::Client,
                        d.seq.wrapping_add(0x4000_0000),
                        0,
                        tcp_flags::RST,
                        b"",
                    ),
                    forged(
                        d,
                        Side::Server,
                        d.ack.wrapping_add(0x9000_0000),
                        d.seq,
                        tcp_flags::RST | tcp_flags::ACK,
                        b"",
                    ),
                ]
            })
        })
        .collect();
    check(victims, "RST_outside_window", 8);
}

#[test]
fn far_ack_does_not_skip_the_stream() {
    let victims = (100..104)
        .map(|i| {
            victim(i, |d| {
                // A pure ACK "from the client" of 500 MB of server data never
                // sent, and one "from the server" of client data.
                vec![
                    forged(
                        d,
                        Side::Client,
                        d.seq,
                        d.ack.wrapping_add(500_000_000),
                        tcp_flags::ACK,
                        b"",
                    ),
                    forged(
                        d,
                        Side::Server,
                        d.ack,
                        d.seq.wrapping_add(500_000_000),
                        tcp_flags::ACK,
                        b"",
                    ),
                ]
            })
        })
        .collect();
    check(victims, "TCP_ack_above_window", 8);
}

#[test]
fn injected_syn_does_not_restart_the_session() {
    let victims = (100..104)
        .map(|i| {
            victim(i, |d| {
                vec![forged(
                    d,
                    Side::Client,
                    d.seq.wrapping_add(0x2345_6789),
                    0,
                    tcp_flags::SYN,
                    b"",
                )]
            })
        })
        .collect();
    check(victims, "active_connection_reuse", 4);
}

#[test]
fn contradictory_retransmissions_are_each_counted() {
    // The client's segment before DATA sent again, many times, with other
    // bytes (the first copy wins), and once more unchanged.
    let victims = (100..104)
        .map(|i| {
            victim(i, |d| {
                let mut v: Vec<Segment> = (0..500u32)
                    .map(|k| {
                        let mut p = d.payload.clone();
                        if let Some(b) = p.get_mut(k as usize % d.payload.len()) {
                            *b ^= 0x20;
                        }
                        forged(d, Side::Client, d.seq, d.ack, d.flags, &p)
                    })
                    .collect();
                v.push(forged(d, Side::Client, d.seq, d.ack, d.flags, &d.payload));
                // What arrives first wins: send the real one first.
                v.insert(0, d.clone());
                v
            })
        })
        .collect();
    check(victims, "rexmit_inconsistency", 4 * 500);
}

/// A client announces a chunk of about a petabyte, which the server refuses;
/// then it sends a real message with DATA on the same connection.
fn bdat_victim(port: u16, code: &str) -> Frames {
    let client = SocketAddr::from(([198, 18, 9, 9], port));
    let server = SocketAddr::from(([198, 19, 0, 25], 25));
    let mut s = TcpSession::new(client, server, Ts::from_secs(T0));
    s.handshake()
        .server("220 mx ESMTP\r\n")
        .client("EHLO x.example\r\n")
        .server("250-mx\r\n250 CHUNKING\r\n")
        .client("MAIL FROM:<x@evil.example>\r\n")
        .server("250 ok\r\n")
        .client("RCPT TO:<y@example.net>\r\n")
        .server("250 ok\r\n")
        .client("BDAT 999999999999999 LAST\r\n")
        .server(format!("{code}\r\n"))
        .client("RSET\r\n")
        .server("250 ok\r\n")
        .client("MAIL FROM:<alice@example.com>\r\n")
        .server("250 ok\r\n")
        .client("RCPT TO:<bob@example.net>\r\n")
        .server("250 ok\r\n")
        .client("DATA\r\n")
        .server("354 go\r\n")
        .client(
            "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: after the refusal\r\n\
             Message-ID: <real.1@example.com>\r\n\r\nhello\r\n.\r\n",
        )
        .server("250 queued\r\n")
        .client("QUIT\r\n")
        .server("221 bye\r\n")
        .close(Side::Client);
    s.frames()
}

#[test]
fn refused_huge_bdat_does_not_swallow_the_connection() {
    let mut all = bystanders(12);
    let clean = run(&interleave(bystanders(12)), 1).0;
    all.push(bdat_victim(
        45001,
        "552 5.3.4 Message size exceeds fixed limit",
    ));
    all.push(bdat_victim(45002, "501 5.5.4 Syntax error in chunk size"));
    let frames = interleave(all);
    for workers in [1, 2] {
        let (got, counts) = run(&frames, workers);
        let (victims, others): (Vec<Value>, Vec<Value>) = got
            .into_iter()
            .partition(|r| r["id.orig_h"] == "198.18.9.9");
        assert_same("smtp.log", &others, &clean);
        for port in [45001, 45002] {
            let real: Vec<&Value> = victims
                .iter()
                .filter(|r| r["id.orig_p"] == port && r["mailfrom"] == "alice@example.com")
                .collect();
            assert_eq!(real.len(), 1, "port {port}: {victims:?}");
            let r = real[0];
            assert_eq!(r["from"], "alice@example.com");
            assert_eq!(r["to"], serde_json::json!(["bob@example.net"]));
            assert_eq!(r["subject"], "after the refusal");
            assert_eq!(r["msg_id"], "<real.1@example.com>");
            assert_eq!(r["last_reply"], "250 queued");
        }
        assert_eq!(counts.get("smtp_bdat_chunk_refused"), 2, "{counts:?}");
    }
}
