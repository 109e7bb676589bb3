//! `cargo xtask compare-zeek [<dir>]`: runs `smtp-sensor` on every capture
//! of the Zeek corpus (default `../shared/corpus/zeek`), compares each
//! smtp.log record field by field with the `zeek-smtp.log` Zeek wrote for
//! the same capture, prints the mismatches and `fields matched: M/N`, and
//! fails on any mismatch that is not a documented deliberate difference
//! (`ALLOWED`, explained in docs/ZEEK-DIFFERENCES.md). Where the corpus has
//! Zeek's files.log (`zeek-files.log`, or the cut columns of
//! `zeek-files.log.cut`), our files.log is compared the same way.
//!
//! The comparison itself (`parse_tsv`, `compare`) is plain functions so the
//! corpus integration test (tests/tests/zeek_corpus.rs) reuses it on logs
//! written through the library.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The corpus folder, relative to the workspace root.
pub const DEFAULT_DIR: &str = "../shared/corpus/zeek";

/// Columns never compared: `ts` and `uid` are masked in the corpus logs
/// (or Zeek's own random ones), and so are file ids (`fuid`); of smtp.log's
/// `fuids` only the number of files is compared (`COUNTED`).
pub const SKIPPED: &[&str] = &["ts", "uid", "fuid"];

/// List columns compared by their length only: Zeek's file ids are random.
pub const COUNTED: &[&str] = &["fuids"];

/// Settings the sensor runs with for the comparison. Zeek's default
/// `mail_path_capture` is `ALL_HOSTS`; ours is `local` (SEMANTICS), so the
/// comparison asks for `all`.
/// Zeek takes its private address space for local
/// (`Site::private_address_space_is_local`), which files.log's
/// `local_orig` shows; the sensor has no local networks unless given.
pub const SENSOR_SETS: &[&str] = &[
    "mail_path_capture=all",
    // Zeek's hash-all-files set (the sensor's default is SHA-256 only).
    "file_hashes=md5,sha1,sha256",
    "local_nets=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,100.64.0.0/10,fc00::/7,fe80::/10,::1/128",
];

/// Deliberate differences: (log and capture folder, field, reason).
pub const ALLOWED: &[(&str, &str, &str)] = &[(
    "files:basic",
    "analyzers",
    "Zeek's baseline for this trace ran without hashing; the comparison runs the sensor with Zeek's hash-all-files set (MD5, SHA1, SHA256)",
)];

/// One Zeek TSV log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub fields: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Log {
    fn column(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == name)
    }
}

/// Parses a Zeek TSV log (`#fields` / `#types` header lines, tab-separated
/// rows).
pub fn parse_tsv(text: &str) -> Result<Log, String> {
    let mut log = Log::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#fields\t") {
            log.fields = rest.split('\t').map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("#types\t") {
            log.types = rest.split('\t').map(str::to_string).collect();
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            if log.fields.is_empty() {
                return Err(
                    "a data line comes before the #fields line; is this a Zeek TSV log?".into(),
                );
            }
            log.rows
                .push(line.split('\t').map(str::to_string).collect());
        }
    }
    if log.fields.is_empty() {
        return Err("no #fields line; is this a Zeek TSV log (--log-format zeek)?".into());
    }
    Ok(log)
}

/// A field value made comparable: sets sorted (Zeek writes sets in hash
/// order), and for sets and vectors `-` (unset) and `(empty)` both mean "no
/// entries" (Zeek distinguishes a set never created from an empty one; the
/// sensor's record does not).
fn normalize(value: &str, zeek_type: &str) -> Vec<String> {
    let is_set = zeek_type.starts_with("set[");
    let is_list = is_set || zeek_type.starts_with("vector[");
    if !is_list {
        return vec![value.to_string()];
    }
    if value == "-" || value == "(empty)" {
        return Vec::new();
    }
    let mut items: Vec<String> = value.split(',').map(str::to_string).collect();
    if is_set {
        items.sort();
    }
    items
}

/// A field that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub capture: String,
    /// Index of the record in the log (0-based).
    pub record: usize,
    pub field: String,
    pub zeek: String,
    pub ours: String,
    /// The documented reason, if this difference is deliberate.
    pub allowed: Option<&'static str>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} record {} field {}:\n    zeek: {}\n    ours: {}",
            self.capture,
            self.record + 1,
            self.field,
            self.zeek,
            self.ours
        )?;
        if let Some(why) = self.allowed {
            write!(f, "\n    (allowed: {why})")?;
        }
        Ok(())
    }
}

/// The result of comparing one or more captures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub matched: usize,
    pub total: usize,
    pub mismatches: Vec<Mismatch>,
}

impl Report {
    pub fn merge(&mut self, other: Report) {
        self.matched += other.matched;
        self.total += other.total;
        self.mismatches.extend(other.mismatches);
    }

    /// Mismatches that are not documented deliberate differences.
    pub fn failures(&self) -> impl Iterator<Item = &Mismatch> {
        self.mismatches.iter().filter(|m| m.allowed.is_none())
    }
}

fn allowed(capture: &str, field: &str) -> Option<&'static str> {
    ALLOWED
        .iter()
        .find(|(c, f, _)| *c == capture && *f == field)
        .map(|(_, _, why)| *why)
}

/// Compares our log with Zeek's for one capture: records paired in order,
/// every Zeek column except `SKIPPED`. A record missing on one side counts
/// all its fields as mismatches.
pub fn compare(capture: &str, zeek: &Log, ours: &Log) -> Report {
    compare_as(capture, capture, zeek, ours)
}

/// [`compare`] with the name `ALLOWED` knows the log by (`files:basic`).
/// A Zeek value that is empty (a column of a cut baseline left blank) is
/// not compared.
pub fn compare_as(capture: &str, allowed_as: &str, zeek: &Log, ours: &Log) -> Report {
    let mut report = Report::default();
    let records = zeek.rows.len().max(ours.rows.len());
    for rec in 0..records {
        let zrow = zeek.rows.get(rec);
        let orow = ours.rows.get(rec);
        for (col, field) in zeek.fields.iter().enumerate() {
            if SKIPPED.contains(&field.as_str()) {
                continue;
            }
            let ztype = zeek.types.get(col).map_or("string", String::as_str);
            let zval = zrow.and_then(|r| r.get(col)).map(String::as_str);
            if zval == Some("") {
                continue;
            }
            report.total += 1;
            let oval = ours
                .column(field)
                .and_then(|c| orow.and_then(|r| r.get(c)))
                .map(String::as_str);
            let same = match (zval, oval) {
                (Some(z), Some(o)) if COUNTED.contains(&field.as_str()) => {
                    normalize(z, ztype).len() == normalize(o, ztype).len()
                }
                (Some(z), Some(o)) => normalize(z, ztype) == normalize(o, ztype),
                _ => false,
            };
            if same {
                report.matched += 1;
            } else {
                report.mismatches.push(Mismatch {
                    capture: capture.to_string(),
                    record: rec,
                    field: field.clone(),
                    zeek: zval.unwrap_or("<no record>").to_string(),
                    ours: oval
                        .unwrap_or(if orow.is_none() {
                            "<no record>"
                        } else {
                            "<no such column>"
                        })
                        .to_string(),
                    allowed: allowed(allowed_as, field),
                });
            }
        }
    }
    report
}

/// A corpus capture: its folder name, capture file and Zeek's smtp.log
/// (and files.log, where the corpus has it).
#[derive(Clone, Debug)]
pub struct Capture {
    pub name: String,
    pub pcap: PathBuf,
    pub zeek_log: PathBuf,
    /// `zeek-files.log` (a whole Zeek TSV log) or `zeek-files.log.cut`
    /// (some columns, a header line of names).
    pub zeek_files: Option<PathBuf>,
}

/// Parses a cut Zeek log (`zeek-cut` output): `#` comment lines, a line of
/// column names, then tab-separated rows. Every column is a string.
pub fn parse_cut(text: &str) -> Result<Log, String> {
    let mut log = Log::default();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let cells: Vec<String> = line.split('\t').map(str::to_string).collect();
        if log.fields.is_empty() {
            log.types = vec!["string".into(); cells.len()];
            log.fields = cells;
        } else {
            log.rows.push(cells);
        }
    }
    if log.fields.is_empty() {
        return Err("no header line of column names; is this zeek-cut output?".into());
    }
    Ok(log)
}

/// Compares one capture's files.log given ours (empty if it has no Zeek
/// files.log).
pub fn compare_files(cap: &Capture, ours_text: &str) -> Result<Report, String> {
    let Some(path) = &cap.zeek_files else {
        return Ok(Report::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let zeek = if path.extension().is_some_and(|e| e == "cut") {
        parse_cut(&text)
    } else {
        parse_tsv(&text)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let ours = ours_or_empty(&zeek, ours_text)
        .map_err(|e| format!("our files.log for {}: {e}", cap.name))?;
    let name = format!("files:{}", cap.name);
    Ok(compare_as(&name, &name, &zeek, &ours))
}

/// The captures of a corpus folder, in name order: every sub-folder holding
/// a `.pcap`/`.pcapng` file and a `zeek-smtp.log`.
pub fn captures(dir: &Path) -> Result<Vec<Capture>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read corpus folder {}: {e}; pass the folder as argument",
            dir.display()
        )
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let zeek_log = path.join("zeek-smtp.log");
        if !path.is_dir() || !zeek_log.is_file() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&path) else {
            continue;
        };
        let pcap = files
            .flatten()
            .map(|f| f.path())
            .find(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
        if let Some(pcap) = pcap {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let zeek_files = ["zeek-files.log", "zeek-files.log.cut"]
                .iter()
                .map(|f| path.join(f))
                .find(|p| p.is_file());
            out.push(Capture {
                name,
                pcap,
                zeek_log,
                zeek_files,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        return Err(format!(
            "no capture folders (with a pcap and zeek-smtp.log) in {}",
            dir.display()
        ));
    }
    Ok(out)
}

/// Our log parsed; no records at all is an empty log with Zeek's columns.
fn ours_or_empty(zeek: &Log, ours_text: &str) -> Result<Log, String> {
    if ours_text.trim().is_empty() {
        return Ok(Log {
            fields: zeek.fields.clone(),
            types: zeek.types.clone(),
            rows: Vec::new(),
        });
    }
    parse_tsv(ours_text)
}

/// Compares one capture given our smtp.log text.
pub fn compare_capture(cap: &Capture, ours_text: &str) -> Result<Report, String> {
    let zeek_text = std::fs::read_to_string(&cap.zeek_log)
        .map_err(|e| format!("cannot read {}: {e}", cap.zeek_log.display()))?;
    let zeek = parse_tsv(&zeek_text).map_err(|e| format!("{}: {e}", cap.zeek_log.display()))?;
    let ours = ours_or_empty(&zeek, ours_text)
        .map_err(|e| format!("our smtp.log for {}: {e}", cap.name))?;
    Ok(compare(&cap.name, &zeek, &ours))
}

/// Prints a report: mismatches, then the totals line.
pub fn print_report(report: &Report) {
    for m in &report.mismatches {
        println!("{m}");
    }
    println!("fields matched: {}/{}", report.matched, report.total);
}

fn usage() -> String {
    "usage: cargo xtask compare-zeek [<corpus-dir>] [--bin <smtp-sensor>] [--no-build]".into()
}

/// Entry point of `cargo xtask compare-zeek`.
pub fn run(args: &[String]) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut dir: Option<PathBuf> = None;
    let mut bin: Option<PathBuf> = None;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => bin = Some(it.next().ok_or_else(usage)?.into()),
            "--no-build" => build = false,
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{}", usage())),
            s => dir = Some(s.into()),
        }
    }
    let dir = dir.unwrap_or_else(|| root.join(DEFAULT_DIR));
    let bin = match bin {
        Some(b) => b,
        None => {
            if build {
                let status =
                    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                        .args(["build", "-p", "smtp-sensor", "--bin", "smtp-sensor"])
                        .current_dir(&root)
                        .status()
                        .map_err(|e| format!("cannot run cargo build: {e}"))?;
                if !status.success() {
                    return Err("cargo build -p smtp-sensor failed; fix the build first".into());
                }
            }
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root.join("target"), PathBuf::from);
            target.join("debug").join("smtp-sensor")
        }
    };
    if !bin.is_file() {
        return Err(format!(
            "{} not found; build it or pass --bin <path>",
            bin.display()
        ));
    }
    let mut total = Report::default();
    for cap in captures(&dir)? {
        let out =
            std::env::temp_dir().join(format!("compare-zeek-{}-{}", std::process::id(), cap.name));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-r")
            .arg(&cap.pcap)
            .arg("-l")
            .arg(&out)
            .args(["--log-format", "zeek"]);
        for s in SENSOR_SETS {
            cmd.args(["--set", s]);
        }
        let output = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&out);
            return Err(format!(
                "smtp-sensor failed on {} ({}): {}",
                cap.pcap.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let ours = std::fs::read_to_string(out.join("smtp.log")).unwrap_or_default();
        let ours_files = std::fs::read_to_string(out.join("files.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&out);
        let report = compare_capture(&cap, &ours)?;
        println!(
            "{}: {}/{} fields matched",
            cap.name, report.matched, report.total
        );
        total.merge(report);
        if cap.zeek_files.is_some() {
            let report = compare_files(&cap, &ours_files)?;
            println!(
                "{} files.log: {}/{} fields matched",
                cap.name, report.matched, report.total
            );
            total.merge(report);
        }
    }
    print_report(&total);
    let failures = total.failures().count();
    if failures > 0 {
        return Err(format!(
            "{failures} field(s) differ from Zeek and are not documented in docs/ZEEK-DIFFERENCES.md"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "#separator \\x09\n#fields\tts\tuid\thelo\trcptto\tpath\tfuids\n#types\ttime\tstring\tstring\tset[string]\tvector[addr]\tvector[string]\n";

    #[test]
    fn sets_compare_unordered_and_vectors_ordered() {
        let zeek = parse_tsv(&format!("{HEADER}1\tC1\th\ta,b\t1.1.1.1,2.2.2.2\tF1\n")).unwrap();
        let ours = parse_tsv(&format!("{HEADER}2\tC2\th\tb,a\t1.1.1.1,2.2.2.2\tF9\n")).unwrap();
        let r = compare("x", &zeek, &ours);
        assert_eq!((r.matched, r.total), (4, 4));
        let ours = parse_tsv(&format!("{HEADER}2\tC2\th\tb,a\t2.2.2.2,1.1.1.1\tF8\n")).unwrap();
        let r = compare("x", &zeek, &ours);
        assert_eq!((r.matched, r.total), (3, 4));
        assert_eq!(r.failures().count(), 1);
        assert_eq!(r.mismatches[0].field, "path");
    }

    #[test]
    fn unset_and_empty_sets_are_equal_and_missing_records_count() {
        let zeek = parse_tsv(&format!(
            "{HEADER}1\tC\t-\t-\t1.1.1.1\t-\n1\tC\th\t-\t1.1.1.1\t-\n"
        ))
        .unwrap();
        let ours = parse_tsv(&format!("{HEADER}1\tC\t-\t(empty)\t1.1.1.1\t-\n")).unwrap();
        let r = compare("x", &zeek, &ours);
        assert_eq!((r.matched, r.total), (4, 8));
        assert!(
            r.mismatches
                .iter()
                .all(|m| m.record == 1 && m.ours == "<no record>")
        );
    }

    #[test]
    fn cut_logs_parse_and_blank_cells_are_not_compared() {
        let zeek = parse_cut("### btest\nuid\tdepth\tsha1\nC1\t2\t\nC1\t3\tab\n").unwrap();
        assert_eq!(zeek.fields, ["uid", "depth", "sha1"]);
        let ours = parse_tsv(
            "#fields\tuid\tdepth\tsha1\n#types\tstring\tcount\tstring\nC9\t2\tzz\nC9\t3\tab\n",
        )
        .unwrap();
        let r = compare("x", &zeek, &ours);
        // uid skipped, the blank sha1 not compared.
        assert_eq!((r.matched, r.total), (3, 3));
        assert!(parse_cut("# only comments\n").is_err());
    }

    #[test]
    fn fuids_compare_by_count() {
        let zeek = parse_tsv(&format!("{HEADER}1\tC\th\t-\t-\tFa,Fb\n")).unwrap();
        let ours = parse_tsv(&format!("{HEADER}1\tC\th\t-\t-\tFx,Fy\n")).unwrap();
        assert_eq!(compare("x", &zeek, &ours).failures().count(), 0);
        let ours = parse_tsv(&format!("{HEADER}1\tC\th\t-\t-\tFx\n")).unwrap();
        let r = compare("x", &zeek, &ours);
        assert_eq!(r.mismatches.len(), 1);
        assert_eq!(r.mismatches[0].field, "fuids");
    }

    #[test]
    fn non_zeek_text_is_an_error() {
        assert!(parse_tsv("{\"json\": true}\n").is_err());
        assert!(parse_tsv("").is_err());
    }
}
