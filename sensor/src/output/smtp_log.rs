//! smtp.log's schema: `ConnRecord` as a `LogRecord`, Zeek's columns in
//! Zeek's order, `ts` to `fuids`, so positional parsers (zeek-cut by
//! position, Logstash `dissect`) read them where they read Zeek's; the
//! sensor's own columns come after Zeek's last: `last_error`, the file
//! names `files`, and `community_id` (where Zeek's community-id package
//! appends it to conn.log).

use super::files_log::Fuids;
use super::{Column, LogRecord, Value, col};
use crate::smtp::record::{ConnRecord, List, ListField, MessageRecord, TextField};

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
        col("path", "vector[addr]"),
        col("user_agent", "string"),
        col("tls", "bool"),
        col("fuids", "vector[string]"),
        col("last_error", "string"),
        col("files", "vector[string]"),
        col("community_id", "string"),
    ];

    fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
        let r = &self.record;
        let id = &self.conn.id;
        let s = |field| Value::opt_str(r.text(field));
        // rcptto/to/cc are `&optional` sets in Zeek, created by the first
        // RCPT TO / To: / Cc: header: unset (`-`, left out of JSON) when
        // there was none; a To: or Cc: header without an address leaves
        // the set created and empty (`(empty)`, JSON `[]`). `fuids` and
        // `files` are defaulted vectors: always set.
        fn set<'a>(r: &MessageRecord, field: ListField, l: &'a List<'a>) -> Value<'a> {
            if l.is_empty() && !r.list_is_set(field) {
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
        f(set(r, ListField::Rcptto, &rcptto));
        f(s(TextField::Date));
        f(s(TextField::From));
        f(set(r, ListField::To, &to));
        f(set(r, ListField::Cc, &cc));
        f(s(TextField::ReplyTo));
        f(s(TextField::MsgId));
        f(s(TextField::InReplyTo));
        f(s(TextField::Subject));
        f(r.x_originating_ip.map_or(Value::Absent, Value::Addr));
        f(s(TextField::FirstReceived));
        f(s(TextField::SecondReceived));
        f(s(TextField::LastReply));
        f(Value::Addrs(&r.path));
        f(s(TextField::UserAgent));
        f(Value::Bool(r.tls));
        f(Value::Strs(&Fuids(&r.files)));
        f(s(TextField::LastError));
        f(Value::Strs(&files));
        f(Value::CommunityId(*id));
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
        assert_eq!(fields[22], "198.18.0.2,198.18.0.1");
        assert_eq!(fields[24], "F");
        // No files: `fuids` is `(empty)`, like Zeek's defaulted vector.
        assert_eq!(fields[25], "(empty)");
        // Unset optional sets are `-` (as Zeek writes them), an empty
        // `files` vector is `(empty)`.
        assert_eq!(fields[12], "-");
        assert_eq!(fields[13], "-");
        assert_eq!(fields[27], "(empty)");
        let cid = crate::output::community_id::of_tcp(&r.conn.id, 0).unwrap();
        assert_eq!(fields[28], cid);
    }

    /// Zeek's smtp.log `#fields`, as its corpus logs have them, then the
    /// sensor's own columns.
    #[test]
    fn zeeks_columns_first_in_zeeks_order() {
        let names: Vec<&str> = ConnRecord::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names.join(" "),
            "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth helo mailfrom \
             rcptto date from to cc reply_to msg_id in_reply_to subject x_originating_ip \
             first_received second_received last_reply path user_agent tls fuids \
             last_error files community_id"
        );
    }

    /// A To: header without an address makes Zeek's `to` set, empty: `[]`
    /// in JSON, `(empty)` in TSV; without the header it stays unset.
    #[test]
    fn a_to_header_without_addresses_is_an_empty_set() {
        let mut r = sample();
        r.record.mark_list_set(ListField::To);
        let mut out = Vec::new();
        format_json(&r, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["to"], serde_json::json!([]));
        assert_eq!(v["fuids"], serde_json::json!([]));
        assert_eq!(v["files"], serde_json::json!([]));
        assert!(v.get("cc").is_none(), "{v}");
        let mut tsv = Vec::new();
        format_tsv(&r, &mut tsv);
        let tsv = String::from_utf8(tsv).unwrap();
        let fields: Vec<_> = tsv.trim_end().split('\t').collect();
        assert_eq!((fields[12], fields[13]), ("(empty)", "-"));
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
