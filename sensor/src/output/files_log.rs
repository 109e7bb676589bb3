//! files.log's schema: `FileInfo` as a `LogRecord`, Zeek's columns in
//! Zeek's order (`source` is always `SMTP`, `is_orig` always true: the
//! sensor's files are message parts the client sent), then the sensor's
//! `community_id` of the file's connection after Zeek's last column.

use super::{Column, LogRecord, StrList, Value, col};
use crate::smtp::files::{FileInfo, hex};

/// Zeek's analyzer names of the hashes that ran (`analyzers`).
#[derive(Debug)]
struct Analyzers(Vec<&'static str>);

impl StrList for Analyzers {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str)) {
        self.0.iter().for_each(|s| f(s));
    }
}

/// The fuids of a message's files: smtp.log's `fuids`.
#[derive(Debug)]
pub struct Fuids<'a>(pub &'a [FileInfo]);

impl StrList for Fuids<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str)) {
        self.0.iter().for_each(|file| f(file.fuid.as_str()));
    }
}

impl LogRecord for FileInfo {
    const PATH: &'static str = "files";
    const COLUMNS: &'static [Column] = &[
        col("ts", "time"),
        col("fuid", "string"),
        col("uid", "string"),
        col("id.orig_h", "addr"),
        col("id.orig_p", "port"),
        col("id.resp_h", "addr"),
        col("id.resp_p", "port"),
        col("source", "string"),
        col("depth", "count"),
        col("analyzers", "set[string]"),
        col("mime_type", "string"),
        col("filename", "string"),
        col("duration", "interval"),
        col("local_orig", "bool"),
        col("is_orig", "bool"),
        col("seen_bytes", "count"),
        col("total_bytes", "count"),
        col("missing_bytes", "count"),
        col("overflow_bytes", "count"),
        col("timedout", "bool"),
        col("parent_fuid", "string"),
        col("md5", "string"),
        col("sha1", "string"),
        col("sha256", "string"),
        col("community_id", "string"),
    ];
    /// After `sha256`, as Zeek's extract script adds them; `community_id`
    /// stays last.
    const EXTRA_AT: usize = Self::COLUMNS.len() - 1;
    const EXTRA_COLUMNS: &'static [Column] = &[
        col("extracted", "string"),
        col("extracted_cutoff", "bool"),
        col("extracted_size", "count"),
    ];

    fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
        let a = self.analyzers;
        // Zeek lists its extraction analyzer with the hashes.
        let extracted = self.extract.as_ref().is_some_and(|x| x.name.is_some());
        let analyzers = Analyzers(
            [
                (a.md5, "MD5"),
                (a.sha1, "SHA1"),
                (a.sha256, "SHA256"),
                (extracted, "EXTRACT"),
            ]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect(),
        );
        let h = &self.hashes;
        let (md5, sha1, sha256) = (
            h.md5.map(|d| hex(&d)),
            h.sha1.map(|d| hex(&d)),
            h.sha256.map(|d| hex(&d)),
        );
        f(Value::Time(self.ts));
        f(Value::Str(self.fuid.as_str()));
        f(Value::Str(self.uid.as_str()));
        f(Value::Addr(self.id.orig_h));
        f(Value::Port(self.id.orig_p));
        f(Value::Addr(self.id.resp_h));
        f(Value::Port(self.id.resp_p));
        f(Value::Str("SMTP"));
        f(Value::Count(u64::from(self.depth)));
        f(Value::Strs(&analyzers));
        f(Value::opt_str(self.mime_type.as_deref()));
        f(Value::opt_str(self.filename.as_deref()));
        f(Value::Interval(self.duration_us as f64 / 1e6));
        f(self.local_orig.map_or(Value::Absent, Value::Bool));
        f(Value::Bool(true));
        f(Value::Count(self.seen_bytes));
        f(Value::Absent);
        f(Value::Count(self.missing_bytes));
        f(Value::Count(0));
        f(Value::Bool(self.timedout));
        f(Value::Absent);
        f(Value::opt_str(md5.as_deref()));
        f(Value::opt_str(sha1.as_deref()));
        f(Value::opt_str(sha256.as_deref()));
        if let Some(x) = &self.extract {
            match &x.name {
                Some(name) => {
                    f(Value::Str(name));
                    f(Value::Bool(x.cutoff));
                    f(Value::Count(x.size));
                }
                None => (0..3).for_each(|_| f(Value::Absent)),
            }
        }
        f(Value::CommunityId(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ConnId, Ts, Uid};
    use crate::output::writer::{format_json, format_tsv};
    use crate::smtp::files::{Fuid, HashSet, Hashes};

    #[test]
    fn extraction_columns_go_after_sha256_and_community_id_stays_last() {
        let names = |extra| FileInfo::columns(extra).map(|c| c.name).collect::<Vec<_>>();
        let (off, on) = (names(false), names(true));
        assert_eq!(off.len() + 3, on.len());
        assert_eq!(
            on[22..],
            [
                "sha1",
                "sha256",
                "extracted",
                "extracted_cutoff",
                "extracted_size",
                "community_id"
            ]
        );
        for (extra, list) in [(false, &off), (true, &on)] {
            for (i, n) in list.iter().enumerate() {
                assert_eq!(FileInfo::column_name(i, extra), *n);
            }
            assert_eq!(FileInfo::column_name(list.len(), extra), "");
        }
    }

    fn sample() -> FileInfo {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        let uid = Uid::new(&id, Ts(5));
        FileInfo {
            ts: Ts(1_000_000),
            fuid: Fuid::new(&uid, 0),
            uid,
            id,
            depth: 3,
            analyzers: HashSet {
                md5: true,
                sha1: true,
                sha256: false,
            },
            mime_type: Some("image/png".into()),
            filename: Some("a b.png".into()),
            duration_us: 61,
            local_orig: None,
            seen_bytes: 77,
            missing_bytes: 0,
            timedout: false,
            hashes: Hashes {
                md5: Some([0xab; 16]),
                sha1: Some([1; 20]),
                sha256: None,
            },
            extract: None,
        }
    }

    #[test]
    fn columns_are_zeeks_and_values_line_up() {
        let names: Vec<&str> = FileInfo::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names.join(" "),
            "ts fuid uid id.orig_h id.orig_p id.resp_h id.resp_p source depth analyzers \
             mime_type filename duration local_orig is_orig seen_bytes total_bytes \
             missing_bytes overflow_bytes timedout parent_fuid md5 sha1 sha256 community_id"
        );
        let r = sample();
        let mut tsv = Vec::new();
        format_tsv(&r, &mut tsv);
        let tsv = String::from_utf8(tsv).unwrap();
        let f: Vec<&str> = tsv.trim_end().split('\t').collect();
        assert_eq!(f.len(), FileInfo::COLUMNS.len());
        assert_eq!(f[1], r.fuid.as_str());
        assert_eq!(f[1].len(), 18);
        assert!(f[1].starts_with('F'));
        assert_eq!(&f[7..12], ["SMTP", "3", "MD5,SHA1", "image/png", "a b.png"]);
        assert_eq!(
            &f[12..21],
            ["0.000061", "-", "T", "77", "-", "0", "0", "F", "-"]
        );
        assert_eq!(f[21], "ab".repeat(16));
        assert_eq!(f[22], "01".repeat(20));
        assert_eq!(f[23], "-");
        assert_eq!(
            f[24],
            crate::output::community_id::of_tcp(&r.id, 0).unwrap()
        );
    }

    #[test]
    fn json_leaves_unknowns_out() {
        let mut out = Vec::new();
        format_json(&sample(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["source"], "SMTP");
        assert_eq!(v["analyzers"], serde_json::json!(["MD5", "SHA1"]));
        assert_eq!(v["seen_bytes"], 77);
        assert!(v.get("sha256").is_none() && v.get("total_bytes").is_none());
    }
}
