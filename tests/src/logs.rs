//! The logs a run wrote, read back as JSON, and compared between a live and
//! an offline run of the same frames.
//!
//! A live record differs from the offline one only in what comes from the
//! clock or the run: `ts` (live frames are stamped on arrival; a notice of
//! an unfinished period is raised at the stop), `uid` (random per run) and
//! `fuids` (derived from the uid).
//! Everything else must be equal, field by field.

use std::path::Path;

use serde_json::Value;

/// Fields that depend on the capture clock or the run, not the traffic.
pub const CLOCK_FIELDS: [&str; 3] = ["ts", "uid", "fuids"];

/// smtp.log and notice.log of one run, as JSON objects.
#[derive(Debug)]
pub struct Logs {
    pub records: Vec<Value>,
    pub notices: Vec<Value>,
}

/// One JSON-lines log; panics naming the file and line when it is not.
pub fn read_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// smtp.log and notice.log in `dir`.
pub fn read_logs(dir: &Path) -> Logs {
    Logs {
        records: read_log(&dir.join("smtp.log")),
        notices: read_log(&dir.join("notice.log")),
    }
}

/// A record or notice without its clock-derived fields, as canonical JSON
/// (keys sorted).
pub fn canonical(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for f in CLOCK_FIELDS {
            m.remove(f);
        }
    }
    v.to_string()
}

/// Asserts `live` and `offline` hold the same entries (any order), and
/// names the entries found on one side only when they do not.
pub fn assert_same(kind: &str, live: &[Value], offline: &[Value]) {
    let mut l: Vec<String> = live.iter().map(canonical).collect();
    let mut o: Vec<String> = offline.iter().map(canonical).collect();
    l.sort_unstable();
    o.sort_unstable();
    if l == o {
        return;
    }
    // Sorted multisets: a merge walk finds what is on one side only.
    let (mut only_l, mut only_o) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < l.len() || j < o.len() {
        match (l.get(i), o.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                only_l.push(a.clone());
                i += 1;
            }
            (Some(_), Some(b)) => {
                only_o.push(b.clone());
                j += 1;
            }
            (Some(a), None) => {
                only_l.push(a.clone());
                i += 1;
            }
            (None, Some(b)) => {
                only_o.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    const SHOWN: usize = 20;
    panic!(
        "{kind}: live {} vs offline {} entries; {} only live, {} only offline\nonly live (first {SHOWN}):\n  {}\nonly offline (first {SHOWN}):\n  {}",
        l.len(),
        o.len(),
        only_l.len(),
        only_o.len(),
        only_l
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  "),
        only_o
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_fields_do_not_count_and_differences_are_named() {
        let a: Value = serde_json::json!({"ts": 1.0, "uid": "Ca", "mailfrom": "x@example.com"});
        let b: Value = serde_json::json!({"ts": 2.0, "uid": "Cb", "mailfrom": "x@example.com"});
        assert_same("smtp.log", std::slice::from_ref(&a), &[b]);
        let c: Value = serde_json::json!({"ts": 2.0, "uid": "Cb", "mailfrom": "y@example.com"});
        let e = std::panic::catch_unwind(|| assert_same("smtp.log", &[a], &[c]))
            .expect_err("different records must not compare equal");
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("1 only live, 1 only offline"), "{msg}");
        assert!(msg.contains("y@example.com"), "{msg}");
    }
}
