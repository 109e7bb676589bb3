//! Shared support of the `detect*` tests: generated SMTP connections, a run
//! of the real offline pipeline on them, and notice.log reading.

#![allow(dead_code)] // each test file uses a subset

pub use sensor_tests::scratch::Scratch;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::session::interleave;
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::net::Ts;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, RunSummary, run_offline};

pub type Frames = Vec<(Ts, Vec<u8>)>;

/// Capture start used by every scenario.
pub const T0: u64 = 1_700_000_000;

pub const SERVER: &str = "198.19.0.25:25";

pub fn addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap(), port)
}

/// One connection from `host:port` at `start_us` (µs after `T0`): EHLO,
/// a transaction to `rcpts`; if `reject` is set the last recipient gets
/// that code (the connection is rejected), else the message is delivered.
pub fn conn(host: &str, port: u16, start_us: u64, rcpts: &[&str], reject: Option<u16>) -> Frames {
    conn_to(SERVER, host, port, start_us, rcpts, reject)
}

/// IPv6 server of [`conn6`].
pub const SERVER6: &str = "[2001:db8:25::25]:25";

/// [`conn`] from an IPv6 host, to [`SERVER6`].
pub fn conn6(host: &str, port: u16, start_us: u64, rcpts: &[&str], reject: Option<u16>) -> Frames {
    conn_to(SERVER6, host, port, start_us, rcpts, reject)
}

/// [`conn`] to `server`.
pub fn conn_to(
    server: &str,
    host: &str,
    port: u16,
    start_us: u64,
    rcpts: &[&str],
    reject: Option<u16>,
) -> Frames {
    let mut b = SmtpConversation::builder()
        .client(addr(host, port))
        .server(server.parse().unwrap())
        .start(Ts(T0 * 1_000_000 + start_us))
        .mail("sender@example.com");
    for r in rcpts {
        b = b.rcpt(r);
    }
    match reject {
        Some(code) => b = b.reject_rcpt_with(code, "5.7.1 Relaying denied"),
        None => {
            b = b.message(Message::simple(
                "sender@example.com",
                rcpts.first().copied().unwrap_or("x@y"),
                "hi",
            ))
        }
    }
    b.build().frames()
}

/// `total` connections from `host`, the first `rejected` of them rejected
/// with 550, one every `gap_us` from `t_us`; ports from `port0`.
pub fn host_traffic(
    host: &str,
    total: u16,
    rejected: u16,
    t_us: u64,
    gap_us: u64,
    port0: u16,
) -> Vec<Frames> {
    (0..total)
        .map(|i| {
            let start = t_us + u64::from(i) * gap_us;
            let rc = format!("user{i}@example.net");
            let reject = (i < rejected).then_some(550);
            conn(host, port0 + i, start, &[rc.as_str()], reject)
        })
        .collect()
}

/// Writes `sessions` as one time-ordered pcap.
pub fn pcap(dir: &Scratch, name: &str, sessions: Vec<Frames>) -> PathBuf {
    let frames = interleave(sessions);
    let p = dir.join(name);
    write_pcap(&p, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    p
}

/// Runs the offline pipeline on `pcap` with `sets` and `workers`, returns
/// notice.log's text.
pub fn run(dir: &Scratch, pcap: &Path, sets: &[&str], workers: usize) -> String {
    run_summary(dir, pcap, sets, workers).0
}

/// `run`, also returning the run's summary (counters, anomalies).
pub fn run_summary(
    dir: &Scratch,
    pcap: &Path,
    sets: &[&str],
    workers: usize,
) -> (String, RunSummary) {
    let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
    let cfg = Config::load(None, &sets).unwrap();
    let out = dir.join(format!("logs-{workers}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let opts = RunOptions {
        log_dir: out.clone(),
        format: LogFormat::Json,
        workers,
        decode: DecodeOptions::default(),
    };
    let summary = run_offline(&cfg, pcap, &opts).unwrap();
    let notices = std::fs::read_to_string(out.join("notice.log")).unwrap_or_default();
    (notices, summary)
}

/// Runs with 1 and with 4 workers, asserts notice.log is byte-for-byte the
/// same, and returns the parsed lines.
pub fn run_both(dir: &Scratch, pcap: &Path, sets: &[&str]) -> Vec<serde_json::Value> {
    let one = run(dir, pcap, sets, 1);
    let four = run(dir, pcap, sets, 4);
    assert_eq!(
        one, four,
        "notice.log differs between --workers 1 and --workers 4"
    );
    parse(&one)
}

pub fn parse(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `(note, msg)` of each notice.
pub fn notes(ns: &[serde_json::Value]) -> Vec<(String, String)> {
    ns.iter()
        .map(|n| {
            (
                n["note"].as_str().unwrap_or_default().to_owned(),
                n["msg"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
