//! `--cpus`: the live sensor's capture threads take the first CPUs of the
//! list and its workers the next ones, round robin, as the kernel reports
//! for each thread (`/proc/<pid>/task/*/status`); and the log writer yields
//! the CPU to capture (`SCHED_IDLE`, `/proc/<pid>/task/*/stat`). Needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sensor_tests::live_sensor::LiveSensor;
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;

/// Thread name → what `read` makes of the thread's directory
/// (`/proc/<pid>/task/<tid>`), for every thread of `pid` it gives a value.
fn per_thread<T>(pid: u32, read: impl Fn(&std::path::Path) -> Option<T>) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.filter_map(Result::ok) {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if let Some(v) = read(&t.path()) {
            out.insert(name.trim().to_owned(), v);
        }
    }
    out
}

/// Thread name → `Cpus_allowed_list` of every thread of `pid`.
fn affinities(pid: u32) -> BTreeMap<String, String> {
    per_thread(pid, |task| {
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default();
        Some(cpus.trim().to_owned())
    })
}

/// Thread name → scheduling policy (field 41 of `stat`) of every thread of
/// `pid`.
fn policies(pid: u32) -> BTreeMap<String, u32> {
    per_thread(pid, |task| {
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        // The fields after the command name, which ends at the last ')':
        // the first of them is field 3.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(41 - 3))
            .and_then(|p| p.parse().ok())
    })
}

#[test]
fn the_log_writer_yields_the_cpu_to_capture() {
    require_root();
    let dir = Scratch::new("live-policy");
    let pair = VethPair::create("pol", 1);
    let sensor = LiveSensor::start(&pair, dir.path(), &["--stats-interval", "0"]);
    // SCHED_IDLE for the log writer, the normal class for capture.
    let want = BTreeMap::from([
        ("capture-q0".to_owned(), libc::SCHED_OTHER as u32),
        ("collector".to_owned(), libc::SCHED_IDLE as u32),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got: BTreeMap<String, u32> = policies(sensor.pid())
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
