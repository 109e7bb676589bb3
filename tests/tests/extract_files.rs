//! File extraction through the real offline pipeline: generated captures
//! (a message with a body, a base64 attachment and a quoted-printable
//! one, and the load generator's mail) run with `extract_files = "all"`,
//! `"attachments"` and `"none"`. Every extracted file must hash to the
//! SHA-256 files.log gives it and be named from its time and fuid only;
//! the per-file and the per-run caps cut files (files.log says so, the
//! summary counts it); an unusable directory is counted and capture goes
//! on with smtp.log complete.

use sensor_tests::synth::content::{base64_lines, binary};
use std::path::Path;

use sensor_tests::offline::run_frames_with;
use sensor_tests::scratch::Scratch;
use sensor_tests::synth::scenarios;
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use serde_json::Value;
use sha2::Digest as _;
use smtp_sensor::config::Config;
use smtp_sensor::net::Ts;
use smtp_sensor::pipeline::RunSummary;

/// The attachment's decoded bytes.
fn attachment() -> Vec<u8> {
    let mut b = b"%PDF-1.4\n".to_vec();
    b.extend(binary(5000, 11));
    b
}

/// A message with a body without a name and two named attachments.
fn message() -> Vec<(Ts, Vec<u8>)> {
    let body = format!(
        "--B\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Hello, the report is attached.\r\n\
         --B\r\n\
         Content-Type: application/pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\
         \r\n\
         {}\r\n\
         --B\r\n\
         Content-Type: text/plain; name=\"notes.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         caf=C3=A9 notes=\r\n\
         \r\n\
         --B--\r\n",
        base64_lines(&attachment())
    );
    let msg = Message::new()
        .header("From", "<alice@example.com>")
        .header("Subject", "report")
        .header("MIME-Version", "1.0")
        .header("Content-Type", "multipart/mixed; boundary=\"B\"")
        .body(&body);
    SmtpConversation::builder()
        .client("198.18.0.10:40000".parse().unwrap())
        .server("198.19.0.25:25".parse().unwrap())
        .start(Ts::from_secs(1_000))
        .mss(1460)
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .message(msg)
        .build()
        .frames()
}

fn cfg(sets: &[&str]) -> Config {
    let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
    Config::load(None, &sets).expect("the settings apply")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names in a directory (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `frames` with `sets`; the scratch directory, summary, files.log.
fn run(tag: &str, frames: &[(Ts, Vec<u8>)], sets: &[&str]) -> (Scratch, RunSummary, Vec<Value>) {
    let (dir, summary) = run_frames_with(&cfg(sets), tag, frames, 2);
    let files = lines(&dir.join("files.log"));
    (dir, summary, files)
}

/// Zeek's file name: `extract-<ts>-SMTP-<fuid>`, ts the row's.
fn zeek_name(row: &Value) -> String {
    let ts = row["ts"].as_f64().unwrap();
    format!(
        "extract-{ts:.6}-SMTP-{}",
        row["fuid"].as_str().expect("fuid")
    )
}

/// Every row with `extracted`: its file is there, named as Zeek names
/// it, complete, with the row's SHA-256. Returns how many.
fn check_extracted(dir: &Path, files: &[Value]) -> usize {
    let mut n = 0;
    for row in files.iter().filter(|r| r.get("extracted").is_some()) {
        n += 1;
        let name = row["extracted"].as_str().unwrap();
        assert_eq!(name, zeek_name(row), "{row}");
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(row["extracted_cutoff"], false, "{row}");
        assert_eq!(row["extracted_size"], bytes.len() as u64, "{row}");
        assert_eq!(row["seen_bytes"], bytes.len() as u64, "{row}");
        assert_eq!(row["sha256"], sha256_hex(&bytes).as_str(), "{row}");
        assert!(
            row["analyzers"]
                .as_array()
                .unwrap()
                .contains(&Value::from("EXTRACT")),
            "{row}"
        );
    }
    n
}

#[test]
fn all_extracts_every_file_with_its_hash() {
    let mut load = scenarios::load(40, 7, 2_000);
    load.extend(
        message()
            .into_iter()
            .map(|(t, f)| (Ts(t.0 + 10_000_000_000), f)),
    );
    let (dir, summary, files) = run("extract-all", &load, &["extract_files=all"]);
    assert!(files.len() > 40, "{}", files.len());
    let out = dir.join("extract_files");
    let n = check_extracted(&out, &files);
    assert_eq!(n, files.len(), "every row is extracted");
    // Only the finished files, nothing temporary; no name from the
    // message (its `../../etc/passwd`).
    let on_disk = names(&out);
    assert_eq!(on_disk.len(), n, "{on_disk:?}");
    assert!(on_disk.iter().all(|f| f.starts_with("extract-")));
    assert!(names(dir.path()).iter().all(|f| !f.contains("passwd")));
    assert_eq!(summary.anomalies.get("extract_files_written"), n as u64);
    let bytes: u64 = files
        .iter()
        .map(|r| r["seen_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(summary.anomalies.get("extract_bytes_written"), bytes);
    // The attachment's bytes are the ones the test encoded.
    let pdf = files
        .iter()
        .find(|r| r["filename"] == "../../etc/passwd")
        .expect("the attachment's row");
    assert_eq!(
        std::fs::read(out.join(pdf["extracted"].as_str().unwrap())).unwrap(),
        attachment()
    );
}

#[test]
fn attachments_are_the_named_files_only() {
    let (dir, summary, files) = run("extract-attach", &message(), &["extract_files=attachments"]);
    assert_eq!(files.len(), 3, "{files:#?}");
    let out = dir.join("extract_files");
    assert_eq!(check_extracted(&out, &files), 2);
    for row in &files {
        assert_eq!(
            row.get("extracted").is_some(),
            row.get("filename").is_some(),
            "{row}"
        );
    }
    assert_eq!(names(&out).len(), 2);
    assert_eq!(summary.anomalies.get("extract_files_written"), 2);
    let notes = files.iter().find(|r| r["filename"] == "notes.txt").unwrap();
    let text = std::fs::read(out.join(notes["extracted"].as_str().unwrap())).unwrap();
    // The empty line after the soft break is a line end (Zeek's decoder).
    assert_eq!(text, "café notes\r\n".as_bytes());
}

#[test]
fn none_writes_nothing_and_keeps_the_columns() {
    let (dir, summary, files) = run("extract-none", &message(), &[]);
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|r| r.get("extracted").is_none()));
    assert!(!dir.join("extract_files").exists());
    assert_eq!(summary.anomalies.get("extract_files_written"), 0);
    // Zeek TSV: the 24 columns without extraction, Zeek's three more
    // after sha256 with it.
    let fields = |sets: &[&str], tag: &str| {
        let d = Scratch::new(tag);
        let pcap = d.join("in.pcap");
        let frames = message();
        sensor_tests::synth::pcap::write_pcap(
            &pcap,
            frames.iter().map(|(t, f)| (*t, f.as_slice())),
        )
        .unwrap();
        let opts = smtp_sensor::pipeline::RunOptions {
            log_dir: d.path().to_path_buf(),
            format: smtp_sensor::output::LogFormat::Zeek,
            workers: 1,
            decode: smtp_sensor::decode::DecodeOptions::default(),
        };
        smtp_sensor::pipeline::run_offline(&cfg(sets), &pcap, &opts).unwrap();
        let text = std::fs::read_to_string(d.join("files.log")).unwrap();
        let header: Vec<String> = text
            .lines()
            .find(|l| l.starts_with("#fields"))
            .unwrap()
            .split('\t')
            .skip(1)
            .map(str::to_owned)
            .collect();
        let widths: Vec<usize> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('\t').count())
            .collect();
        (header, widths)
    };
    let (plain, widths) = fields(&[], "extract-tsv-none");
    // Zeek's 24 columns, then the sensor's community_id.
    assert_eq!(plain.len(), 25);
    assert_eq!(plain[23], "sha256");
    assert_eq!(plain[24], "community_id");
    assert!(widths.iter().all(|&w| w == 25));
    let (with, widths) = fields(&["extract_files=attachments"], "extract-tsv-on");
    // The extraction columns after sha256, as Zeek adds them; community_id
    // stays last.
    assert_eq!(with[..24], plain[..24]);
    assert_eq!(
        with[24..],
        [
            "extracted",
            "extracted_cutoff",
            "extracted_size",
            "community_id"
        ]
    );
    assert_eq!(widths, [28, 28, 28]);
}

#[test]
fn the_per_file_cap_cuts_and_keeps_the_first_bytes() {
    let (dir, summary, files) = run(
        "extract-cap",
        &message(),
        &["extract_files=all", "extract_max_bytes=100"],
    );
    let out = dir.join("extract_files");
    let mut cut = 0;
    for row in &files {
        let seen = row["seen_bytes"].as_u64().unwrap();
        let name = row["extracted"].as_str().expect("extracted");
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(row["extracted_size"], bytes.len() as u64);
        assert_eq!(row["extracted_cutoff"], seen > 100, "{row}");
        assert_eq!(bytes.len() as u64, seen.min(100), "{row}");
        if seen > 100 {
            cut += 1;
        }
    }
    assert_eq!(cut, 1, "the attachment only");
    assert_eq!(summary.anomalies.get("extract_file_limit"), 1);
    let pdf = files
        .iter()
        .find(|r| r["filename"] == "../../etc/passwd")
        .unwrap();
    let bytes = std::fs::read(out.join(pdf["extracted"].as_str().unwrap())).unwrap();
    assert_eq!(bytes, attachment()[..100]);
}

#[test]
fn the_total_cap_stops_extraction_for_the_run() {
    let load = scenarios::load(40, 7, 2_000);
    let (dir, summary, files) = run(
        "extract-total",
        &load,
        &["extract_files=all", "extract_total_bytes=3000"],
    );
    let out = dir.join("extract_files");
    let on_disk: u64 = names(&out)
        .iter()
        .map(|n| std::fs::metadata(out.join(n)).unwrap().len())
        .sum();
    assert_eq!(on_disk, 3000, "the cap is filled exactly");
    assert_eq!(summary.anomalies.get("extract_bytes_written"), 3000);
    assert!(summary.anomalies.get("extract_total_limit") >= 1);
    let sizes: u64 = files
        .iter()
        .filter_map(|r| r.get("extracted_size").and_then(Value::as_u64))
        .sum();
    assert_eq!(sizes, 3000, "files.log tells the same");
    assert!(files.iter().any(|r| r["extracted_cutoff"] == true));
}

#[test]
fn an_unusable_directory_is_counted_and_capture_goes_on() {
    let scratch = Scratch::new("extract-blocked");
    // A regular file where the directory should be created.
    let blocker = scratch.write("blocker", b"not a directory");
    let dir_set = format!("extract_dir={}", blocker.join("sub").display());
    let load = scenarios::load(40, 7, 2_000);
    let (dir, summary, files) = run("extract-bad-dir", &load, &["extract_files=all", &dir_set]);
    let (plain, _, plain_files) = run("extract-bad-dir-ref", &load, &[]);
    // The logs are those of a run without extraction.
    assert_eq!(
        lines(&dir.join("smtp.log")).len(),
        lines(&plain.join("smtp.log")).len()
    );
    assert_eq!(files.len(), plain_files.len());
    assert_eq!(
        summary.anomalies.get("extract_open_failed"),
        files.len() as u64
    );
    assert_eq!(summary.anomalies.get("extract_files_written"), 0);
}

/// Zeek's SMTP traces (the corpus): with `extract_files = "all"` every
/// files.log row of every capture is a file with the row's SHA-256.
#[test]
fn the_zeek_corpus_extracts_with_the_logged_hashes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/zeek");
    let mut pcaps: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus (../shared/corpus/zeek)")
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    assert!(pcaps.len() >= 5, "{pcaps:?}");
    let mut total = 0;
    for (i, pcap) in pcaps.iter().enumerate() {
        let dir = Scratch::new(&format!("extract-corpus-{i}"));
        let opts = smtp_sensor::pipeline::RunOptions {
            log_dir: dir.path().to_path_buf(),
            format: smtp_sensor::output::LogFormat::Json,
            workers: 1,
            decode: smtp_sensor::decode::DecodeOptions::default(),
        };
        let summary = smtp_sensor::pipeline::run_offline(&cfg(&["extract_files=all"]), pcap, &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
        let files = lines(&dir.join("files.log"));
        let n = check_extracted(&dir.join("extract_files"), &files);
        assert_eq!(n, files.len(), "{}", pcap.display());
        assert_eq!(summary.anomalies.get("extract_files_written"), n as u64);
        total += n;
    }
    assert!(total >= 5, "the corpus has files: {total}");
}

/// The binary, as an operator runs it: `--set` turns extraction on and
/// points it elsewhere; the summary on stderr counts the files.
#[test]
fn the_binary_extracts_with_set_options() {
    let dir = Scratch::new("extract-bin");
    let pcap = dir.join("in.pcap");
    let frames = message();
    sensor_tests::synth::pcap::write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice())))
        .unwrap();
    let logs = dir.dir("logs");
    let out = dir.join("elsewhere");
    let run = std::process::Command::new(sensor_tests::sensor_bin::sensor_bin())
        .arg("-r")
        .arg(&pcap)
        .arg("-l")
        .arg(&logs)
        .args(["--set", "extract_files=attachments", "--set"])
        .arg(format!("extract_dir={}", out.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("extract_files_written=2"), "{stderr}");
    let files = lines(&logs.join("files.log"));
    assert_eq!(check_extracted(&out, &files), 2);
    assert!(!logs.join("extract_files").exists());
}
