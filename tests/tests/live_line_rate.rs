//! The live path at line rate (issue 8 "Evidence"): the project's load
//! capture (30 000 interleaved SMTP connections, 1.24 M frames) replayed
//! with `smtp-replay` (BPF_PROG_RUN live frames, far beyond what tcpreplay
//! can send into a veth) at one million frames a second into a veth pair,
//! `smtp-sensor -i` with default settings on the other end (release
//! builds: the rate is the point). No frame may be lost anywhere, and
//! smtp.log and notice.log must be what `smtp-sensor -r` writes for the
//! same capture, field by field but for the clock fields.
//!
//! Performance itself is measured by `cargo xtask loadtest`, not asserted
//! here: this test checks correctness and zero loss at a rate that matters.
//!
//! Needs root, like the other live tests; creates and removes its own
//! network namespaces.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use sensor_tests::live_sensor::LiveSensor;
use sensor_tests::logs::{assert_same, read_logs};
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::release_bins;

/// Connections in the capture (1.24 M frames, 45 000 messages).
const CONNECTIONS: u32 = 30_000;
/// The rate asked of the replayer: it offers a few per cent less (each of
/// its calls starts with a pause of about 20 ms), and on a slow hour of
/// this VM up to 12 % less (0.98 Mpps of 1.1 asked was seen), so it is
/// asked well above [`MIN_PPS`]; one core of the sensor holds 1.4–2 Mpps
/// of this capture without loss (docs/PERFORMANCE.md).
const PPS: u32 = 1_250_000;
/// The offered rate the test needs: about three times what tcpreplay
/// reaches on a veth.
const MIN_PPS: f64 = 1_000_000.0;
/// Time for the last frames to reach the logs before the stop.
const SETTLE: Duration = Duration::from_secs(2);

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("no counter {} in {v}", path.join(".")))
}

/// Frames the veth could not hand to the sensor's end (`ethtool -S`).
fn veth_drops(pair: &VethPair) -> u64 {
    let out = run_ok(
        pair.peer_cmd("ethtool").args(["-S", &pair.peer_if]),
        "ethtool -S",
    );
    out.lines()
        .filter(|l| l.contains("xdp_xmit_errors"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn a_million_frames_a_second_lose_nothing_and_log_what_offline_logs() {
    require_root();
    let bins = release_bins();
    let s = Scratch::new("line-rate");
    let pcap = s.join("load.pcap");
    run_ok(
        Command::new(&bins.synth)
            .arg("load")
            .arg(&pcap)
            .args(["--connections", &CONNECTIONS.to_string()]),
        "synth load",
    );

    let offline = s.dir("offline");
    run_ok(
        Command::new(&bins.sensor)
            .arg("-r")
            .arg(&pcap)
            .arg("-l")
            .arg(&offline)
            .arg("-q"),
        "smtp-sensor -r",
    );
    let expected = read_logs(&offline);
    assert!(
        expected.records.len() > 40_000,
        "{}",
        expected.records.len()
    );

    let pair = VethPair::create("lr", 1);
    let live = s.dir("live");
    let stats_path = s.join("stats.json");
    let sensor = LiveSensor::start_bin(
        &bins.sensor,
        &pair,
        &live,
        &["--stats-json", stats_path.to_str().expect("UTF-8 path")],
    );
    let before = veth_drops(&pair);
    let report_path = s.join("replay.json");
    run_ok(
        pair.peer_cmd(bins.replay.to_str().expect("UTF-8 path"))
            .arg(&pcap)
            .args(["-i", &pair.peer_if, "--pps", &PPS.to_string(), "--json"])
            .arg(&report_path),
        "smtp-replay",
    );
    std::thread::sleep(SETTLE);
    let veth = veth_drops(&pair) - before;
    let (status, stderr) = sensor.stop_with(libc::SIGINT);
    assert!(
        status.success(),
        "smtp-sensor: {status}\n{}",
        stderr.join("\n")
    );

    let report = read_json(&report_path);
    let stats = read_json(&stats_path);
    let frames = num(&report, &["frames_per_pass"]);
    assert_eq!(
        num(&report, &["frames"]),
        frames,
        "one whole pass: {report}"
    );
    assert_eq!(num(&report, &["failed"]), 0, "{report}");
    let pps = report["pps"].as_f64().unwrap_or(0.0);
    assert!(
        pps >= MIN_PPS,
        "the replayer offered only {pps:.0} frames/s: {report}"
    );
    assert_eq!(
        veth, 0,
        "the veth dropped frames before the sensor saw them"
    );
    // Every frame reached userspace: nothing dropped by the socket, the
    // rings or the log writer.
    assert_eq!(num(&stats, &["xdp", "xdp_redirected"]), frames, "{stats}");
    assert_eq!(num(&stats, &["rx_frames"]), frames, "{stats}");
    for counter in [
        "sock_rx_dropped",
        "sock_rx_ring_full",
        "sock_fill_ring_empty",
    ] {
        assert_eq!(num(&stats, &[counter]), 0, "{counter}: {stats}");
    }
    // The end-of-run summary names frames a worker could not take and
    // records the log writer could not take, when there are any.
    let summary_drops: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("smtp-sensor: ") && l.contains(" dropped: "))
        .collect();
    assert!(summary_drops.is_empty(), "{summary_drops:?}");

    let got = read_logs(&live);
    assert_same("smtp.log", &got.records, &expected.records);
    assert_same("notice.log", &got.notices, &expected.notices);
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
