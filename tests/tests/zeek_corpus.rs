//! The Zeek corpus through the real offline pipeline: every capture under
//! `../shared/corpus/zeek` must give an smtp.log whose records match, field
//! by field, the smtp.log Zeek wrote for it (except the documented
//! deliberate differences). Uses the same comparison as
//! `cargo xtask compare-zeek`.

#[allow(dead_code)]
#[path = "../../xtask/src/compare_zeek.rs"]
mod compare_zeek;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, run_offline};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(compare_zeek::DEFAULT_DIR)
}

/// A log directory removed when the test ends, even when it fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        // Tests run in parallel in one process: a counter keeps dirs apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("zeek-corpus-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp log dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn our_log(cap: &compare_zeek::Capture, workers: usize) -> String {
    let mut cfg = Config::default();
    for s in compare_zeek::SENSOR_SETS {
        cfg.apply_set(s).expect("corpus setting applies");
    }
    let dir = TempDir::new(&format!("{}-{workers}", cap.name));
    let opts = RunOptions {
        log_dir: dir.0.clone(),
        format: LogFormat::Zeek,
        workers,
        decode: DecodeOptions::default(),
    };
    run_offline(&cfg, &cap.pcap, &opts).unwrap_or_else(|e| panic!("{}: {e}", cap.name));
    std::fs::read_to_string(dir.0.join("smtp.log")).unwrap_or_default()
}

fn compare_all(workers: usize) -> compare_zeek::Report {
    let caps = compare_zeek::captures(&corpus_dir()).expect("corpus present");
    assert_eq!(caps.len(), 9, "the corpus README lists nine captures");
    let mut total = compare_zeek::Report::default();
    for cap in &caps {
        let report =
            compare_zeek::compare_capture(cap, &our_log(cap, workers)).expect("logs parse");
        assert!(report.total > 0, "{}: Zeek's log has records", cap.name);
        total.merge(report);
    }
    total
}

#[test]
fn every_corpus_field_matches_zeek() {
    let report = compare_all(1);
    compare_zeek::print_report(&report);
    let failures: Vec<String> = report.failures().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "fields differing from Zeek:\n{}",
        failures.join("\n")
    );
    // 15 records of 23 compared fields each.
    assert_eq!(report.total, 15 * 23);
}

#[test]
fn worker_count_does_not_change_the_records() {
    let one = compare_all(1);
    let two = compare_all(2);
    assert_eq!(one.matched, two.matched);
    assert_eq!(one.total, two.total);
}
