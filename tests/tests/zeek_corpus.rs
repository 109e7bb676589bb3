//! The Zeek corpus through the real offline pipeline: every capture under
//! `../shared/corpus/zeek` must give an smtp.log whose records match, field
//! by field, the smtp.log Zeek wrote for it (except the documented
//! deliberate differences), and where the corpus has Zeek's files.log, a
//! files.log that matches it the same way. Uses the same comparison as
//! `cargo xtask compare-zeek`.

#[allow(dead_code)]
#[path = "../../xtask/src/compare_zeek.rs"]
mod compare_zeek;

use sensor_tests::scratch::Scratch;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use smtp_sensor::anomaly::AnomalyCounts;
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::flow::StreamParser;
use smtp_sensor::net::{ConnInfo, Direction, Ts};
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{ParserFactory, RunOptions, WorkerSink, run_offline, run_offline_with};
use smtp_sensor::smtp::anomaly::SmtpAnomaly;
use smtp_sensor::smtp::record::MessageRecord;
use smtp_sensor::smtp::sink::{Reply, SmtpSink};
use smtp_sensor::smtp::{SmtpConfig, SmtpSession};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(compare_zeek::DEFAULT_DIR)
}

/// Our smtp.log and files.log for a capture.
/// Runs `cap` through the offline pipeline with the comparison's settings
/// and `extra` after them, Zeek TSV logs; the logs are in the directory.
fn run_corpus(cap: &compare_zeek::Capture, workers: usize, extra: &[&str]) -> Scratch {
    let mut cfg = Config::default();
    for s in compare_zeek::SENSOR_SETS.iter().chain(extra) {
        cfg.apply_set(s).expect("corpus setting applies");
    }
    let dir = Scratch::new(&format!("zeek-corpus-{}-{workers}", cap.name));
    let opts = RunOptions {
        log_dir: dir.path().to_path_buf(),
        format: LogFormat::Zeek,
        workers,
        decode: DecodeOptions::default(),
    };
    run_offline(&cfg, &cap.pcap, &opts).unwrap_or_else(|e| panic!("{}: {e}", cap.name));
    dir
}

fn our_logs(cap: &compare_zeek::Capture, workers: usize) -> (String, String) {
    let dir = run_corpus(cap, workers, &[]);
    (
        std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("files.log")).unwrap_or_default(),
    )
}

fn compare_all(workers: usize) -> compare_zeek::Report {
    let caps = compare_zeek::captures(&corpus_dir()).expect("corpus present");
    assert_eq!(caps.len(), 9, "the corpus README lists nine captures");
    let mut total = compare_zeek::Report::default();
    for cap in &caps {
        let (smtp, files) = our_logs(cap, workers);
        let report = compare_zeek::compare_capture(cap, &smtp).expect("logs parse");
        assert!(report.total > 0, "{}: Zeek's log has records", cap.name);
        total.merge(report);
        let report = compare_zeek::compare_files(cap, &files).expect("files logs parse");
        assert_eq!(
            report.total > 0,
            cap.zeek_files.is_some(),
            "{}: files.log compared where Zeek's is given",
            cap.name
        );
        total.merge(report);
        // Every fuid of smtp.log is a row of files.log, and the reverse.
        let fuid_list = |text: &str, column: &str| -> Vec<String> {
            let log = compare_zeek::parse_tsv(text).expect("our log parses");
            let col = log.fields.iter().position(|f| f == column).expect(column);
            let mut all: Vec<String> = log
                .rows
                .iter()
                .filter_map(|r| r.get(col))
                .filter(|v| *v != "(empty)" && *v != "-")
                .flat_map(|v| v.split(',').map(str::to_string))
                .collect();
            all.sort();
            all
        };
        if !files.trim().is_empty() {
            assert_eq!(
                fuid_list(&smtp, "fuids"),
                fuid_list(&files, "fuid"),
                "{}: smtp.log and files.log join on fuid",
                cap.name
            );
        }
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
    // 15 records of 24 compared fields each (`fuids` by count); files.log:
    // basic's 4 rows of 18 fields (every column but ts, fuid and uid), the
    // cut baselines' 2 rows of 5 (bdat-multipart) and 4 (bdat-pipeline-
    // 8bitmime, sha1 left blank).
    assert_eq!(report.total, 15 * 24 + 4 * 18 + 2 * 5 + 2 * 4);
}

#[test]
fn worker_count_does_not_change_the_records() {
    let one = compare_all(1);
    let two = compare_all(2);
    assert_eq!(one.matched, two.matched);
    assert_eq!(one.total, two.total);
}

/// An SMTP session that also counts its anomalies into `counts`, so the
/// test sees exactly what the SMTP analysis reported for a capture.
struct Counted {
    session: SmtpSession,
    counts: Arc<Mutex<AnomalyCounts>>,
}

/// Forwards everything to the worker's sink and counts anomalies.
struct Tee<'a> {
    inner: &'a mut WorkerSink,
    counts: &'a Mutex<AnomalyCounts>,
}

impl SmtpSink for Tee<'_> {
    fn reply(&mut self, conn: &ConnInfo, reply: &Reply<'_>) {
        self.inner.reply(conn, reply);
    }
    fn record(&mut self, conn: &ConnInfo, record: MessageRecord) {
        self.inner.record(conn, record);
    }
    fn anomaly(&mut self, conn: &ConnInfo, anomaly: SmtpAnomaly) {
        self.counts.lock().expect("counts lock").add(anomaly);
        self.inner.anomaly(conn, anomaly);
    }
}

impl StreamParser<WorkerSink> for Counted {
    fn on_data(&mut self, dir: Direction, ts: Ts, data: &[u8], sink: &mut WorkerSink) {
        let mut tee = Tee {
            inner: sink,
            counts: &self.counts,
        };
        self.session.on_data(dir, ts, data, &mut tee);
    }
    fn on_gap(&mut self, dir: Direction, ts: Ts, len: u64, sink: &mut WorkerSink) {
        let mut tee = Tee {
            inner: sink,
            counts: &self.counts,
        };
        self.session.on_gap(dir, ts, len, &mut tee);
    }
    fn on_close(&mut self, ts: Ts, sink: &mut WorkerSink) {
        let mut tee = Tee {
            inner: sink,
            counts: &self.counts,
        };
        self.session.on_close(ts, &mut tee);
        let conn = *self.session.conn();
        sink.conn_end(&conn);
    }
}

/// The SMTP anomalies of one capture, counted at the session.
fn smtp_anomalies(cap: &compare_zeek::Capture) -> Vec<(&'static str, u64)> {
    let cfg = Config::default();
    let smtp = Arc::new(SmtpConfig::default());
    let counts = Arc::new(Mutex::new(AnomalyCounts::new()));
    let shared = counts.clone();
    let factory: ParserFactory<Counted> = Arc::new(move |conn: &ConnInfo| Counted {
        session: SmtpSession::new(*conn, smtp.clone()),
        counts: shared.clone(),
    });
    let dir = Scratch::new(&format!("zeek-corpus-anomalies-{}", cap.name));
    let opts = RunOptions {
        log_dir: dir.path().to_path_buf(),
        format: LogFormat::Json,
        workers: 1,
        decode: DecodeOptions::default(),
    };
    run_offline_with(&cfg, &cap.pcap, &opts, factory)
        .unwrap_or_else(|e| panic!("{}: {e}", cap.name));
    let counts = counts.lock().expect("counts lock");
    counts.iter().collect()
}

/// Zeek's weird.log for this capture names `smtp_mail_transaction_invalid`
/// (once: Zeek logs a weird once per connection); we count every
/// occurrence: RCPT without MAIL, then DATA without RCPT twice. The other
/// counts are the client lines the server itself refused as unknown.
#[test]
fn invalid_transactions_are_counted_like_zeeks_weird() {
    let caps = compare_zeek::captures(&corpus_dir()).expect("corpus present");
    let cap = caps
        .iter()
        .find(|c| c.name == "mail-transactions-invalid")
        .expect("capture present");
    let weird =
        std::fs::read_to_string(cap.pcap.with_file_name("zeek-weird.log")).expect("weird.log");
    assert!(weird.contains("smtp_mail_transaction_invalid"));
    assert_eq!(
        smtp_anomalies(cap),
        [
            ("smtp_mail_transaction_invalid", 3),
            ("smtp_unknown_command", 6)
        ]
    );
}

/// weird.log against Zeek's: every row Zeek wrote is ours too (same
/// connection, name, addl, notice, peer and source; the uid and ts are
/// ours), and each row more is of a name Zeek has no weird for
/// (docs/ZEEK-DIFFERENCES.md, "weird.log").
#[test]
fn weird_log_holds_zeeks_rows() {
    const OURS_ONLY: &[&str] = &["smtp_unknown_command"];
    let caps = compare_zeek::captures(&corpus_dir()).expect("corpus present");
    let mut compared = 0;
    for cap in &caps {
        let zeek_path = cap.pcap.with_file_name("zeek-weird.log");
        // Zeek standalone names itself `zeek` in `peer`.
        let dir = run_corpus(cap, 1, &["sensor_name=zeek"]);
        let ours =
            compare_zeek::parse_tsv(&std::fs::read_to_string(dir.join("weird.log")).unwrap())
                .expect("our weird.log parses");
        let key = |log: &compare_zeek::Log, row: &[String]| -> Vec<String> {
            [
                "id.orig_h",
                "id.orig_p",
                "id.resp_h",
                "id.resp_p",
                "name",
                "addl",
                "notice",
                "peer",
                "source",
            ]
            .iter()
            .map(|f| {
                let i = log.fields.iter().position(|x| x == f).expect("column");
                row.get(i).cloned().unwrap_or_default()
            })
            .collect()
        };
        let our_rows: Vec<Vec<String>> = ours.rows.iter().map(|r| key(&ours, r)).collect();
        let Ok(text) = std::fs::read_to_string(&zeek_path) else {
            // No weird.log from Zeek: only names Zeek lacks may appear.
            for r in &our_rows {
                assert!(OURS_ONLY.contains(&r[4].as_str()), "{}: {r:?}", cap.name);
            }
            continue;
        };
        let zeek = compare_zeek::parse_tsv(&text).expect("Zeek's weird.log parses");
        assert_eq!(ours.fields, zeek.fields, "weird.log columns");
        assert_eq!(ours.types, zeek.types, "weird.log types");
        let zeek_rows: Vec<Vec<String>> = zeek.rows.iter().map(|r| key(&zeek, r)).collect();
        for z in &zeek_rows {
            assert!(
                our_rows.contains(z),
                "{}: Zeek's row {z:?} missing from {our_rows:?}",
                cap.name
            );
            compared += 1;
        }
        for r in our_rows.iter().filter(|r| !zeek_rows.contains(r)) {
            assert!(
                OURS_ONLY.contains(&r[4].as_str()),
                "{}: extra row {r:?}",
                cap.name
            );
        }
    }
    assert_eq!(compared, 1, "the corpus has one weird.log with one row");
}

/// The clean captures give no SMTP anomaly at all.
#[test]
fn clean_captures_have_no_smtp_anomalies() {
    let caps = compare_zeek::captures(&corpus_dir()).expect("corpus present");
    let clean = caps
        .iter()
        .filter(|c| !matches!(c.name.as_str(), "mail-transactions-invalid" | "one-side"));
    for cap in clean {
        assert_eq!(smtp_anomalies(cap), [], "{}", cap.name);
    }
}
