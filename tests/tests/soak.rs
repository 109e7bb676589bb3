//! The soak at small scale (issue 11): every attack capture of
//! `synth::attacks`, interleaved with ordinary sessions, through the real
//! offline pipeline with 1 and 2 workers. The ordinary sessions' records
//! must be exactly those of a run of the ordinary sessions alone, the
//! anomalies the attack is named by (`Attack::anomalies`) must be counted,
//! and no thread may panic. `cargo xtask soak --scale full` runs the same captures
//! at full size, timed, for docs/PERFORMANCE.md.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use sensor_tests::scratch::Scratch;
use sensor_tests::synth::attacks::{self, Attack, Scale};
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, RunSummary, run_offline};

/// Panics in any thread of this process (a worker's panic does not fail
/// `run_offline`).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Runs the pipeline; returns the ordinary sessions' smtp.log lines, sorted,
/// and the summary.
fn run(pcap: &Path, out: &Path, sets: &[String], workers: usize) -> (Vec<String>, RunSummary) {
    let cfg = Config::load(None, sets).unwrap();
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let opts = RunOptions {
        log_dir: out.to_path_buf(),
        format: LogFormat::Json,
        workers,
        decode: DecodeOptions::default(),
    };
    let summary = run_offline(&cfg, pcap, &opts).unwrap();
    let text = std::fs::read_to_string(out.join("smtp.log")).unwrap_or_default();
    (attacks::ordinary_lines(&text), summary)
}

#[test]
fn ordinary_sessions_are_logged_exactly_under_every_attack() {
    count_panics();
    let dir = Scratch::new("soak");
    for attack in Attack::ALL {
        let name = attack.name();
        let sets = attack.sets(Scale::Small);
        let clean = dir.join(format!("{name}-clean.pcap"));
        let dirty = dir.join(format!("{name}.pcap"));
        let c = attacks::write(&clean, attack, Scale::Small, true).unwrap();
        let d = attacks::write(&dirty, attack, Scale::Small, false).unwrap();
        assert_eq!(c.ordinary, d.ordinary);
        assert!(d.frames > c.frames, "{name}: no attack frames");
        let (expected, _) = run(&clean, &dir.join(format!("{name}-clean")), &sets, 1);
        assert!(
            expected.len() >= c.ordinary,
            "{name}: {} records of {} ordinary sessions",
            expected.len(),
            c.ordinary
        );
        for workers in [1, 2] {
            let before = PANICS.load(Ordering::SeqCst);
            let (got, summary) = run(
                &dirty,
                &dir.join(format!("{name}-{workers}")),
                &sets,
                workers,
            );
            assert_eq!(
                PANICS.load(Ordering::SeqCst),
                before,
                "{name}: a thread panicked"
            );
            assert_eq!(summary.worker_panics, 0, "{name}: a worker panicked");
            assert!(!summary.stopped_early && !summary.truncated_tail, "{name}");
            eprintln!(
                "soak {name} --workers {workers}: {} frames, {} ordinary records; {:?}",
                d.frames,
                got.len(),
                summary.anomalies.iter().collect::<Vec<_>>()
            );
            for a in attack.anomalies() {
                assert!(
                    summary.anomalies.get(a) > 0,
                    "{name} --workers {workers}: {a} not counted"
                );
            }
            let missing: Vec<&String> = expected.iter().filter(|l| !got.contains(l)).collect();
            let extra: Vec<&String> = got.iter().filter(|l| !expected.contains(l)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{name} --workers {workers}: ordinary records differ\nmissing: {missing:#?}\nextra: {extra:#?}"
            );
        }
    }
}
