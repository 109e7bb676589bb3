//! The demo end to end (issue 5 "Evidence"): the demo capture (ordinary
//! mail, a spamming host, a block-listed host) replayed with tcpreplay into
//! a four-queue veth pair, inside network namespaces this test creates and
//! removes, with `smtp-sensor -i` live on the other end (real XDP and
//! AF_XDP), then SIGINT. Its smtp.log records and notice.log notices must
//! be those `smtp-sensor -r` writes for the same capture, field by field,
//! apart from the fields that come from the clock: `ts` (live frames are
//! stamped on arrival; the spam notice of the unfinished period is raised
//! at the stop) and `uid` (random per run). No frame may be lost on the
//! way: the final statistics must count every replayed frame and no drop.
//!
//! Needs root, like the other live tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use sensor_tests::live_sensor::{LiveSensor, replay};
use sensor_tests::logs::{Logs, assert_same, read_logs};
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::demo;
use sensor_tests::synth::pcap::write_pcap;

/// Veth queues, as in `cargo xtask demo`.
const QUEUES: u32 = 4;
/// Replay rate: far below what a veth and a debug-build sensor handle.
const REPLAY_PPS: u32 = 3000;
/// Time for the last frames to get through before the stop.
const SETTLE: Duration = Duration::from_secs(2);

/// One live run at a time: the runs share two cores with tcpreplay, and a
/// starved sensor would drop frames for reasons this test is not about.
static LIVE: Mutex<()> = Mutex::new(());

/// Writes the demo capture; returns its path and frame count.
fn demo_pcap(s: &Scratch) -> (PathBuf, u64) {
    let pcap = s.join("demo.pcap");
    let frames = demo::capture();
    let n = write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    (pcap, n)
}

/// `smtp-sensor -r` with default flags.
fn offline(pcap: &Path, s: &Scratch) -> Logs {
    let dir = s.dir("offline");
    let out = std::process::Command::new(sensor_bin())
        .arg("-r")
        .arg(pcap)
        .arg("-l")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtp-sensor -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_logs(&dir)
}

/// Within one run, a notice tied to a connection carries the uid of that
/// connection's records.
fn assert_notice_uids_match_records(logs: &Logs) {
    for n in &logs.notices {
        let Some(uid) = n.get("uid") else { continue };
        let rec = logs
            .records
            .iter()
            .find(|r| r.get("uid") == Some(uid))
            .unwrap_or_else(|| panic!("notice {n} has a uid no record has"));
        assert_eq!(rec.get("id.orig_h"), n.get("id.orig_h"), "{n} vs {rec}");
        assert_eq!(rec.get("id.orig_p"), n.get("id.orig_p"), "{n} vs {rec}");
    }
}

/// Every counter in the statistics whose name says it counts a loss
/// (`*drop*`, `*ring_full*`, `*failed*`), with its path, when not zero.
fn losses(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let lossy = ["drop", "ring_full", "failed"]
                    .iter()
                    .any(|w| k.contains(w));
                if lossy && v.as_u64().is_some_and(|n| n > 0) {
                    out.push(format!("{p}={v}"));
                }
                losses(v, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                losses(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What a live run left behind.
struct LiveRun {
    logs: Logs,
    stats: Value,
    stderr: Vec<String>,
}

/// `smtp-sensor -i` (default flags plus `extra`) on a fresh veth pair, the
/// capture replayed into the peer, then SIGINT.
fn live(tag: &str, extra: &[&str], pcap: &Path, s: &Scratch) -> LiveRun {
    let _one = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = s.dir(tag);
    let stats = s.join(format!("{tag}-stats.json"));
    let pair = VethPair::create(tag, QUEUES);
    let stats_arg = stats.to_str().expect("UTF-8 path");
    let args: Vec<&str> = ["--stats-json", stats_arg]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let sensor = LiveSensor::start(&pair, &dir, &args);
    replay(&pair, pcap, REPLAY_PPS);
    std::thread::sleep(SETTLE);
    let (status, stderr) = sensor.stop_with(libc::SIGINT);
    assert!(status.success(), "the sensor exited with {status}");
    assert!(!pair.xdp_attached(), "XDP still attached after the stop");
    drop(pair);
    let stats = std::fs::read_to_string(&stats).expect("the sensor wrote no --stats-json");
    LiveRun {
        logs: read_logs(&dir),
        stats: serde_json::from_str(&stats).unwrap(),
        stderr,
    }
}

/// Every frame arrived and nothing was lost anywhere.
fn assert_no_loss(run: &LiveRun, frames: u64) {
    let rx = run.stats.get("rx_frames").and_then(Value::as_u64);
    assert_eq!(
        rx,
        Some(frames),
        "frames received vs replayed; stats: {}",
        run.stats
    );
    let redirected = run
        .stats
        .pointer("/xdp/xdp_redirected")
        .and_then(Value::as_u64);
    assert_eq!(redirected, Some(frames), "stats: {}", run.stats);
    let mut lost = Vec::new();
    losses(&run.stats, "", &mut lost);
    assert!(lost.is_empty(), "losses: {lost:?}; stats: {}", run.stats);
    assert!(
        !run.stderr.iter().any(|l| l.contains("records dropped")),
        "the summary reports drops: {:?}",
        run.stderr
    );
}

/// The notices as `(note, src, msg)`, sorted.
fn notice_keys(logs: &Logs) -> Vec<(String, String, String)> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut k: Vec<_> = logs
        .notices
        .iter()
        .map(|n| (s(n, "note"), s(n, "src"), s(n, "msg")))
        .collect();
    k.sort();
    k
}

fn check_live_run(tag: &str, extra: &[&str]) {
    require_root();
    let s = Scratch::new(&format!("live-demo-{tag}"));
    let (pcap, frames) = demo_pcap(&s);
    let want = offline(&pcap, &s);
    let run = live(tag, extra, &pcap, &s);
    assert_no_loss(&run, frames);
    assert_same("smtp.log", &run.logs.records, &want.records);
    assert_same("notice.log", &run.logs.notices, &want.notices);
    assert_notice_uids_match_records(&run.logs);
    // And not equal by both being empty or wrong.
    assert_eq!(run.logs.records.len(), demo::RECORDS);
    assert_eq!(notice_keys(&run.logs), demo::expected_notices());
}

/// The capture is what the demo promises, offline with the default config:
/// the reference the live runs are compared with.
#[test]
fn demo_capture_raises_its_notices_offline() {
    let s = Scratch::new("live-demo-offline");
    let (pcap, _) = demo_pcap(&s);
    let logs = offline(&pcap, &s);
    assert_eq!(logs.records.len(), demo::RECORDS, "{:#?}", logs.records);
    assert_eq!(notice_keys(&logs), demo::expected_notices());
    assert_notice_uids_match_records(&logs);
    let spam = logs
        .notices
        .iter()
        .find(|n| n["note"] == "SMTP::SMTP_PossibleSpam")
        .unwrap();
    assert_eq!(spam["n"], demo::SPAM_CONNECTIONS);
    let bl = logs
        .notices
        .iter()
        .find(|n| n["note"] == "SMTP::SMTP_BL_Blocked_Host")
        .unwrap();
    assert_eq!(bl["sub"], demo::BLOCKLIST_REPLY);
    // Ordinary mail with its attachments made it into smtp.log.
    let files: Vec<&str> = logs
        .records
        .iter()
        .filter_map(|r| r.get("files").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for f in ["report-q3.pdf", "beach.jpg", "invoice-2026-1187.pdf"] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
}

/// The live sensor with default flags (four queues: packets are sharded to
/// their flow's worker).
#[test]
fn live_demo_matches_offline() {
    check_live_run("ldd", &[]);
}

/// The same with two workers for four queues.
#[test]
fn live_demo_with_two_workers_matches_offline() {
    check_live_run("ldw", &["--workers", "2"]);
}
