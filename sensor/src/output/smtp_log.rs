//! smtp.log's schema: `ConnRecord` as a `LogRecord`, columns in Zeek's order
//! (`last_error` follows `last_reply`, as SEMANTICS.md defines; `fuids`
//! follows `tls` as in Zeek, and the file names, `files`, come last).

use super::files_log::Fuids;
use super::{Column, LogRecord, Value, col};
use crate::smtp::record::{ConnRecord, List, ListField, TextField};

impl LogRecord for ConnRecord {
    const PATH: &'static str = "smtp";
    const COLUMNS: &'static [Column] = &[
        col("ts", "time"),
        col("uid", "string"),
        col("id.orig_h", "addr"),
        col("id.orig_p", "port"),
        col("id.resp_h", "addr"),
        col("id.resp_p", "port"),
        col("trans_depth", "count"),
        col("helo", "string"),
        col("mailfrom", "string"),
        col("rcptto", "set[string]"),
        col("date", "string"),
        col("from", "string"),
        col("to", "set[string]"),
        col("cc", "set[string]"),
        col("reply_to", "string"),
        col("msg_id", "string"),
        col("in_reply_to", "string"),
        col("subject", "string"),
        col("x_originating_ip", "addr"),
        col("first_received", "string"),
        col("second_received", "string"),
        col("last_reply", "string"),
        col("last_error", "string"),
        col("path", "vector[addr]"),
        col("user_agent", "string"),
        col("tls", "bool"),
        col("fuids", "vector[string]"),
        col("files", "vector[string]"),
    ];

    fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
        let r = &self.record;
        let id = &self.conn.id;
        let s = |field| Value::opt_str(r.text(field));
        // rcptto/to/cc are `&optional` sets in Zeek: unset (`-`) when
        // nothing was seen; `fuids` and `files` are defaulted vectors,
        // `(empty)` in TSV.
        fn set<'a>(l: &'a List<'a>) -> Value<'a> {
            if l.is_empty() {
                Value::Absent
            } else {
                Value::Strs(l)
            }
        }
        let (rcptto, to, cc, files) = (
            r.list(ListField::Rcptto),
            r.list(ListField::To),
            r.list(ListField::Cc),
            r.list(ListField::Files),
        );
        f(Value::Time(r.ts));
        f(Value::Str(self.conn.uid.as_str()));
        f(Value::Addr(id.orig_h));
        f(Value::Port(id.orig_p));
        f(Value::Addr(id.resp_h));
        f(Value::Port(id.resp_p));
        f(Value::Count(u64::from(r.trans_depth)));
        f(s(TextField::Helo));
        f(s(TextField::Mailfrom));
        f(set(&rcptto));
        f(s(TextField::Date));
        f(s(TextField::From));
        f(set(&to));
        f(set(&cc));
        f(s(TextField::ReplyTo));
        f(s(TextField::MsgId));
        f(s(TextField::InReplyTo));
        f(s(TextField::Subject));
        f(r.x_originating_ip.map_or(Value::Absent, Value::Addr));
        f(s(TextField::FirstReceived));
        f(s(TextField::SecondReceived));
        f(s(TextField::LastReply));
        f(s(TextField::LastError));
        f(Value::Addrs(&r.path));
        f(s(TextField::UserAgent));
        f(Value::Bool(r.tls));
        f(Value::Strs(&Fuids(&r.files)));
        f(Value::Strs(&files));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ConnId, ConnInfo, Ts};
    use crate::output::writer::{format_json, format_tsv};
    use crate::smtp::record::MessageRecord;

    fn sample() -> ConnRecord {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        let conn = ConnInfo::new(id, Ts(5));
        let mut record = MessageRecord::default();
        record.ts = Ts(1_000_000);
        record.trans_depth = 1;
        record.path = vec![id.resp_h, id.orig_h];
        record.set_text(TextField::Helo, "client");
        record.set_text(TextField::Mailfrom, "a@example.com");
        record.push_list(ListField::Rcptto, "b@example.com");
        ConnRecord { conn, record }
    }

    #[test]
    fn columns_and_values_line_up() {
        let r = sample();
        let mut n = 0;
        r.visit(&mut |_| n += 1);
        assert_eq!(n, ConnRecord::COLUMNS.len());
        let mut tsv = Vec::new();
        format_tsv(&r, &mut tsv);
        let tsv = String::from_utf8(tsv).unwrap();
        let fields: Vec<_> = tsv.trim_end().split('\t').collect();
        assert_eq!(fields.len(), ConnRecord::COLUMNS.len());
        assert_eq!(fields[2], "198.18.0.1");
        assert_eq!(fields[9], "b@example.com");
        assert_eq!(fields[23], "198.18.0.2,198.18.0.1");
        assert_eq!(fields[25], "F");
        // No files: `fuids` is `(empty)`, like Zeek's defaulted vector.
        assert_eq!(fields[26], "(empty)");
        // Unset optional sets are `-` (as Zeek writes them), an empty
        // `files` vector is `(empty)`.
        assert_eq!(fields[12], "-");
        assert_eq!(fields[13], "-");
        assert_eq!(fields[27], "(empty)");
    }

    #[test]
    fn json_uses_zeek_names() {
        let mut out = Vec::new();
        format_json(&sample(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id.orig_h"], "198.18.0.1");
        assert_eq!(v["id.resp_p"], 25);
        assert_eq!(v["ts"].as_f64(), Some(1.0));
        assert_eq!(v["rcptto"], serde_json::json!(["b@example.com"]));
        assert_eq!(v["tls"], false);
        assert!(v.get("subject").is_none());
    }
}
