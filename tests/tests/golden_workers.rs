//! Worker-count equivalence: the same capture through 1, 2 and 4 workers
//! gives byte-identical smtp.log and notice.log (the collector writes each
//! tick window in a fixed order, so not even line order differs).

use sensor_tests::scratch::Scratch;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::scenarios;
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, run_offline};

fn dir(tag: &str) -> Scratch {
    Scratch::new(&format!("workers-{tag}"))
}

struct Out {
    smtp: String,
    notice: String,
    records: u64,
    notices: u64,
}

fn run(pcap: &std::path::Path, workers: usize, cfg: &Config, format: LogFormat) -> Out {
    let d = dir(&format!("{workers}-{format:?}"));
    let opts = RunOptions {
        log_dir: d.path().to_path_buf(),
        format,
        workers,
        decode: DecodeOptions::default(),
    };
    let s = run_offline(cfg, pcap, &opts).unwrap();
    Out {
        smtp: std::fs::read_to_string(d.join("smtp.log")).unwrap(),
        notice: std::fs::read_to_string(d.join("notice.log")).unwrap(),
        records: s.records,
        notices: s.notices,
    }
}

/// Drops the wall-clock `#open`/`#close` lines of Zeek TSV.
fn stable(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("#open") && !l.starts_with("#close"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn one_two_four_workers_agree() {
    // Many interleaved connections over several periods, with rejects and
    // block-list replies; a low threshold so spam notices fire.
    let d = dir("input");
    let pcap = d.join("load.pcap");
    let frames = scenarios::load(1500, 11, 1_700_000_000);
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let cfg = Config::load(
        None,
        &[
            "spam_threshold=5".to_owned(),
            "spam_percent=30".to_owned(),
            "inspect_period=2s".to_owned(),
            "conn_idle_timeout=1s".to_owned(),
        ],
    )
    .unwrap();
    let one = run(&pcap, 1, &cfg, LogFormat::Json);
    assert!(one.records > 1500, "records {}", one.records);
    assert!(one.notices > 0, "the load should raise notices");
    assert!(one.notice.contains("SMTP_PossibleSpam"), "{}", one.notice);
    assert!(one.notice.contains("SMTP_BL_Error_Message"));
    for n in [2, 4] {
        let other = run(&pcap, n, &cfg, LogFormat::Json);
        assert_eq!(other.records, one.records, "{n} workers");
        assert_eq!(other.notices, one.notices, "{n} workers");
        assert!(other.smtp == one.smtp, "smtp.log differs with {n} workers");
        assert!(
            other.notice == one.notice,
            "notice.log differs with {n} workers"
        );
    }
    let z1 = run(&pcap, 1, &cfg, LogFormat::Zeek);
    let z4 = run(&pcap, 4, &cfg, LogFormat::Zeek);
    assert_eq!(stable(&z1.smtp), stable(&z4.smtp));
    assert_eq!(stable(&z1.notice), stable(&z4.notice));
}

/// A parser with a bug: panics on the first payload byte.
struct Panicking;

impl smtp_sensor::flow::StreamParser<smtp_sensor::pipeline::WorkerSink> for Panicking {
    fn on_data(
        &mut self,
        _: smtp_sensor::net::Direction,
        _: smtp_sensor::net::Ts,
        _: &[u8],
        _: &mut smtp_sensor::pipeline::WorkerSink,
    ) {
        panic!("injected parser bug");
    }
    fn on_gap(
        &mut self,
        _: smtp_sensor::net::Direction,
        _: smtp_sensor::net::Ts,
        _: u64,
        _: &mut smtp_sensor::pipeline::WorkerSink,
    ) {
    }
    fn on_close(&mut self, _: smtp_sensor::net::Ts, _: &mut smtp_sensor::pipeline::WorkerSink) {}
}

/// A worker thread that dies is not a clean run: the summary says so (the
/// binary then exits 1) instead of the run looking complete.
#[test]
fn a_panicking_worker_is_counted_not_hidden() {
    let d = dir("panic");
    let pcap = d.join("in.pcap");
    let frames = scenarios::load(20, 3, 1_700_000_000);
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let opts = RunOptions {
        log_dir: d.path().to_path_buf(),
        format: LogFormat::Json,
        workers: 2,
        decode: DecodeOptions::default(),
    };
    let factory: smtp_sensor::pipeline::ParserFactory<Panicking> =
        std::sync::Arc::new(|_: &smtp_sensor::net::ConnInfo| Panicking);
    let s =
        smtp_sensor::pipeline::run_offline_with(&Config::default(), &pcap, &opts, factory).unwrap();
    assert_eq!(s.worker_panics, 2, "both workers had connections");
}
