//! `--cpus`: the live sensor's capture threads take the first CPUs of the
//! list and its workers the next ones, round robin, as the kernel reports
//! for each thread (`/proc/<pid>/task/*/status`). Needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sensor_tests::live_sensor::LiveSensor;
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;

/// Thread name → `Cpus_allowed_list` of every thread of `pid`.
fn affinities(pid: u32) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.filter_map(Result::ok) {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default();
        out.insert(name.trim().to_owned(), cpus.trim().to_owned());
    }
    out
}

#[test]
fn cpus_pin_capture_threads_then_workers() {
    require_root();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The list reversed, so pinning differs from where threads would be.
    let list = if cpus >= 2 { "1,0" } else { "0" };
    let dir = Scratch::new("live-pinning");
    let pair = VethPair::create("pin", 2);
    let sensor = LiveSensor::start(
        &pair,
        dir.path(),
        &["--workers", "2", "--cpus", list, "--stats-interval", "0"],
    );
    let expect = |n: usize| -> String {
        let l: Vec<&str> = list.split(',').collect();
        l[n % l.len()].to_owned()
    };
    let want: BTreeMap<String, String> = [
        ("capture-q0", expect(0)),
        ("capture-q1", expect(1)),
        ("worker-0", expect(2)),
        ("worker-1", expect(3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Threads pin themselves as they start: look until they all did.
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let all = affinities(sensor.pid());
        let got: BTreeMap<String, String> = all
            .into_iter()
            .filter(|(k, _)| want.contains_key(k))
            .collect();
        if got == want || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got, want);
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");
}
