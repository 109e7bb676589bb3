//! Golden tests: each scenario of `synth::scenarios::golden()` is written as
//! a pcap, run through the real offline pipeline, and its smtp.log compared
//! field by field with `tests/golden/<name>.smtp.log`.
//!
//! Regenerate the expected logs after a deliberate change with
//! `UPDATE_GOLDEN=1 cargo test -p sensor-tests --test golden`, then review
//! the diff; the test never rewrites them on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::scenarios;
use serde_json::Value;
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, run_offline};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("golden-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the sensor on `frames`, returns smtp.log's text.
fn run(name: &str, frames: &[(smtp_sensor::net::Ts, Vec<u8>)], workers: usize) -> String {
    let dir = scratch(name);
    let pcap = dir.join("in.pcap");
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let opts = RunOptions {
        log_dir: dir.clone(),
        format: LogFormat::Json,
        workers,
        decode: DecodeOptions::default(),
    };
    let cfg = Config::default();
    let summary = run_offline(&cfg, &pcap, &opts).unwrap();
    assert_eq!(summary.packets.packets, frames.len() as u64);
    let log = std::fs::read_to_string(dir.join("smtp.log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    log
}

fn parse(text: &str) -> Vec<BTreeMap<String, Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Field-by-field comparison; returns one line per difference.
fn diff(
    name: &str,
    got: &[BTreeMap<String, Value>],
    want: &[BTreeMap<String, Value>],
) -> Vec<String> {
    let mut out = Vec::new();
    if got.len() != want.len() {
        out.push(format!(
            "{name}: {} records, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
        for k in keys {
            if g.get(k) != w.get(k) {
                out.push(format!(
                    "{name} record {i} field {k}: got {:?}, expected {:?}",
                    g.get(k),
                    w.get(k)
                ));
            }
        }
    }
    out
}

#[test]
fn golden_scenarios() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, frames) in scenarios::golden() {
        let log = run(name, &frames, 1);
        let path = golden_dir().join(format!("{name}.smtp.log"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &log).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        });
        failures.extend(diff(name, &parse(&log), &parse(&want)));
    }
    assert!(
        failures.is_empty(),
        "golden differences:\n{}",
        failures.join("\n")
    );
}

/// Capture effects that lose nothing (reordering, retransmission) give
/// exactly the records of the clean capture, apart from ts/uid which depend
/// on the (identical) first packet anyway.
#[test]
fn reorder_and_retransmit_change_nothing() {
    use sensor_tests::synth::session::{Effect, Side};
    let clean = scenarios::golden()
        .into_iter()
        .find(|(n, _)| *n == "basic")
        .map(|(_, f)| f)
        .unwrap();
    let mut conv = scenarios::load_conversation(3, 1, 1_700_000_000);
    conv.mss = 100;
    let plain = parse(&run("plain", &conv.frames(), 1));
    conv.effects = vec![
        Effect::Reorder {
            side: Side::Client,
            n: 4,
        },
        Effect::Reorder {
            side: Side::Client,
            n: 10,
        },
        Effect::Retransmit {
            side: Side::Client,
            n: 6,
        },
        Effect::Retransmit {
            side: Side::Server,
            n: 1,
        },
    ];
    let shuffled = parse(&run("shuffled", &conv.frames(), 1));
    assert!(!plain.is_empty());
    assert_eq!(plain, shuffled);
    assert!(!clean.is_empty());
}

/// A lost segment is reported as a gap and the session still produces its
/// record with the envelope (helo, mailfrom, rcptto) intact.
#[test]
fn gap_keeps_envelope() {
    let gap = scenarios::golden()
        .into_iter()
        .find(|(n, _)| *n == "gap")
        .map(|(_, f)| f)
        .unwrap();
    let recs = parse(&run("gap-env", &gap, 1));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["mailfrom"], "alice@example.com");
    assert_eq!(
        recs[0]["rcptto"],
        serde_json::json!(["bob@example.net", "carol@example.net"])
    );
}

/// Anomalies the SMTP parser reports reach the run summary, next to the
/// flow layer's, with one worker and with several.
#[test]
fn smtp_and_flow_anomalies_reach_the_summary() {
    let frames: Vec<_> = scenarios::golden()
        .into_iter()
        .filter(|(n, _)| ["basic", "gap"].contains(n))
        .flat_map(|(_, f)| f)
        .collect();
    let dir = sensor_tests::scratch::Scratch::new("golden-anomalies");
    let pcap = dir.join("in.pcap");
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    // Lines longer than 40 bytes are cut and counted.
    let cfg = Config::load(None, &["max_line_len=40".to_owned()]).unwrap();
    for workers in [1, 2] {
        let opts = RunOptions {
            log_dir: dir.dir(&format!("w{workers}")),
            format: LogFormat::Json,
            workers,
            decode: DecodeOptions::default(),
        };
        let s = run_offline(&cfg, &pcap, &opts).unwrap();
        assert!(
            s.anomalies.get("line_too_long") > 0,
            "workers {workers}: {:?}",
            s.anomalies
        );
        assert!(
            s.anomalies.get("content_gap") > 0,
            "workers {workers}: {:?}",
            s.anomalies
        );
        // weird.log: the gap once for its connection (from the TCP layer),
        // the cut lines under Zeek's name.
        let weird = std::fs::read_to_string(opts.log_dir.join("weird.log")).unwrap();
        let rows: Vec<Value> = parse(&weird)
            .into_iter()
            .map(|m| m.into_iter().collect())
            .collect();
        let named = |n: &str| rows.iter().filter(|r| r["name"] == n).count();
        assert_eq!(named("content_gap"), 1, "{weird}");
        assert!(
            rows.iter()
                .any(|r| r["name"] == "content_gap" && r["source"] == "TCP")
        );
        assert!(named("contentline_size_exceeded") >= 1, "{weird}");
        assert_eq!(named("line_too_long"), 0, "{weird}");
    }
}
