//! smtp.log and notice.log (JSON lines) as aligned text tables, for
//! `cargo xtask demo`: an operator watching the demo reads who sent what
//! and which notices fired, not raw JSON.
//!
//! Columns are as wide as their widest cell up to a cap; longer cells are
//! cut with `…`. Rows are in time order. Lines that are not JSON objects
//! are an error naming the line (the sensor must not write them).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

/// A text table with per-column width caps.
struct Table {
    columns: Vec<(&'static str, usize)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `columns`: header and the widest a cell may be shown.
    fn new(columns: &[(&'static str, usize)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, cap))| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([name.len()])
                    .max()
                    .unwrap_or(0)
                    .min(*cap)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(n, _)| (*n).to_owned()).collect();
        line(&mut out, &header, &widths);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, &rule, &widths);
        for r in &self.rows {
            line(&mut out, r, &widths);
        }
        out
    }
}

/// One row: cells cut or padded to their widths, two blanks apart, no
/// trailing blanks.
fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut l = String::new();
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            l.push_str("  ");
        }
        let cell = cells.get(i).map_or("", String::as_str);
        let _ = write!(l, "{:<w$}", cut(cell, *w));
    }
    out.push_str(l.trim_end());
    out.push('\n');
}

/// `s` cut to `max` characters, the last one `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Time of day (UTC) of an epoch-seconds timestamp, `HH:MM:SS.mmm`.
fn clock(ts: f64) -> String {
    if !ts.is_finite() || ts < 0.0 {
        return "?".into();
    }
    let ms = (ts * 1000.0).round() as u64;
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// A field as text: strings as they are, lists joined with `, `, numbers
/// printed, absent fields empty.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// The log's JSON objects, in time order.
fn parse(log: &str, name: &str) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for (i, l) in log
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(l)
            .with_context(|| format!("{name} line {} is not JSON: {l}", i + 1))?;
        anyhow::ensure!(v.is_object(), "{name} line {} is not a JSON object", i + 1);
        rows.push(v);
    }
    let ts = |v: &Value| v.get("ts").and_then(Value::as_f64).unwrap_or(0.0);
    rows.sort_by(|a, b| ts(a).total_cmp(&ts(b)));
    Ok(rows)
}

/// smtp.log as a table: one row per record.
pub fn smtp_table(log: &str) -> Result<String> {
    let rows = parse(log, "smtp.log")?;
    let mut t = Table::new(&[
        ("time", 12),
        ("uid", 18),
        ("client", 22),
        ("from", 28),
        ("to", 36),
        ("subject", 30),
        ("attachments", 36),
        ("last error", 36),
    ]);
    for r in &rows {
        t.push(vec![
            clock(r.get("ts").and_then(Value::as_f64).unwrap_or(f64::NAN)),
            text(r, "uid"),
            text(r, "id.orig_h"),
            text(r, "mailfrom"),
            text(r, "rcptto"),
            text(r, "subject"),
            text(r, "files"),
            text(r, "last_error"),
        ]);
    }
    Ok(format!("{} smtp.log records\n{}", rows.len(), t.render()))
}

/// notice.log as a table: one row per notice, `SMTP::` left out of the note.
pub fn notice_table(log: &str) -> Result<String> {
    let rows = parse(log, "notice.log")?;
    let mut t = Table::new(&[
        ("time", 12),
        ("uid", 18),
        ("note", 24),
        ("src", 22),
        ("n", 6),
        ("msg", 64),
        ("sub", 60),
    ]);
    for r in &rows {
        let note = text(r, "note");
        t.push(vec![
            clock(r.get("ts").and_then(Value::as_f64).unwrap_or(f64::NAN)),
            text(r, "uid"),
            note.strip_prefix("SMTP::").unwrap_or(&note).to_owned(),
            text(r, "src"),
            text(r, "n"),
            text(r, "msg"),
            text(r, "sub"),
        ]);
    }
    Ok(format!("{} notices\n{}", rows.len(), t.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(1_795_424_400.0), "09:00:00.000");
        assert_eq!(clock(1_795_424_461.234_5), "09:01:01.235");
        assert_eq!(clock(f64::NAN), "?");
    }

    #[test]
    fn cells_are_cut_and_columns_aligned() {
        let log = concat!(
            r#"{"ts":1795424402.5,"uid":"CB","id.orig_h":"198.18.0.2","mailfrom":"b@example.com","rcptto":["x@example.net","y@example.net"],"subject":"a subject far too long to be shown whole in the table","files":["a.pdf"]}"#,
            "\n",
            r#"{"ts":1795424401.0,"uid":"CA","id.orig_h":"198.18.0.1","mailfrom":"a@example.com","last_error":"550 5.1.1 no"}"#,
            "\n"
        );
        let t = smtp_table(log).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "2 smtp.log records");
        assert!(lines[1].starts_with("time          uid  client"), "{t}");
        // Sorted by time: CA first.
        assert!(lines[3].starts_with("09:00:01.000  CA   198.18.0.1"), "{t}");
        assert!(lines[3].ends_with("550 5.1.1 no"), "{t}");
        assert!(lines[4].contains("x@example.net, y@example.net"), "{t}");
        assert!(lines[4].contains("a subject far too long to be …"), "{t}");
        // The subject column starts at the same offset in every row.
        let col = lines[1].find("subject").unwrap();
        assert_eq!(
            lines[4].chars().skip(col).take(9).collect::<String>(),
            "a subject"
        );
    }

    #[test]
    fn notices_drop_the_namespace_prefix() {
        let log = r#"{"ts":1795424415.0,"note":"SMTP::SMTP_PossibleSpam","msg":"198.18.66.6 - sent: 304 rejected: 79 percent","src":"198.18.66.6","n":304,"suppress_for":3600.0}"#;
        let t = notice_table(log).unwrap();
        let row = t.lines().nth(3).unwrap();
        assert!(row.contains("SMTP_PossibleSpam  198.18.66.6  304"), "{t}");
        assert!(!row.contains("SMTP::"), "{t}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let e = smtp_table("{}\nnot json\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        assert!(notice_table("[1]").is_err());
    }
}
