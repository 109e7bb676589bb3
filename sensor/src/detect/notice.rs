//! Notices (notice.log rows) and the one place they pass through before
//! being written: network-time ordering across workers and the one-hour
//! suppression of identical notices.
//!
//! Workers raise notices independently; the merger feeds them all into one
//! [`NoticeQueue`], which releases them in a total order that does not depend
//! on how connections were spread over workers, and drops a notice when an
//! identical one (same `note` and `src`) was released less than
//! [`SUPPRESS_FOR`] earlier in network time.

use std::net::IpAddr;
use std::sync::Arc;

use super::geoip::Location;
use crate::net::{ConnId, ConnInfo, KeyedMap, Ts, Uid};
use crate::output::{Column, LogRecord, Value, col};

/// How long an identical notice is suppressed (SEMANTICS: one hour).
pub const SUPPRESS_FOR_SECS: u64 = 3600;
const SUPPRESS_FOR: u64 = SUPPRESS_FOR_SECS * 1_000_000;

/// Identical-notice keys remembered at once. Past this, expired keys are
/// dropped; if all are live, the notice is written unsuppressed and counted.
pub const MAX_SUPPRESSION_KEYS: usize = 1 << 20;

/// Notices held back waiting for the other workers' time to pass them. Past
/// this, the oldest are released early (counted) rather than growing memory.
pub const MAX_PENDING_NOTICES: usize = 1 << 16;

/// The notice types this sensor raises, with Zeek's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Note {
    StrangeRejectBehavior,
    PossibleInternalSpam,
    PossibleSpam,
    BlBlockedHost,
    BlErrorMessage,
    SuspiciousOrigination,
}

impl Note {
    /// Every note, in declaration order (`index` is the position here).
    pub const ALL: [Note; 6] = [
        Note::StrangeRejectBehavior,
        Note::PossibleInternalSpam,
        Note::PossibleSpam,
        Note::BlBlockedHost,
        Note::BlErrorMessage,
        Note::SuspiciousOrigination,
    ];

    /// A dense index, for per-note counters.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The `note` field, as Zeek's scripts name it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Note::StrangeRejectBehavior => "SMTP::SMTP_StrangeRejectBehavior",
            Note::PossibleInternalSpam => "SMTP::SMTP_PossibleInternalSpam",
            Note::PossibleSpam => "SMTP::SMTP_PossibleSpam",
            Note::BlBlockedHost => "SMTP::SMTP_BL_Blocked_Host",
            Note::BlErrorMessage => "SMTP::SMTP_BL_Error_Message",
            Note::SuspiciousOrigination => "SMTP::SMTP_Suspicious_Origination",
        }
    }
}

/// The connection a notice is tied to (its `uid` and `id.*` fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeConn {
    pub uid: Uid,
    pub id: ConnId,
}

impl From<&ConnInfo> for NoticeConn {
    fn from(c: &ConnInfo) -> Self {
        NoticeConn {
            uid: c.uid,
            id: c.id,
        }
    }
}

/// One row of notice.log.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Network time the notice was raised.
    pub ts: Ts,
    pub conn: Option<NoticeConn>,
    pub note: Note,
    pub msg: String,
    pub sub: Option<String>,
    /// The host the notice is about; with `note` the suppression key.
    pub src: Option<IpAddr>,
    /// For spam notices: the host's connection total.
    pub n: Option<u64>,
    /// For origination notices: where `src` is (`remote_location.*`).
    pub location: Option<Box<Location>>,
    /// Filled by the log writer as it writes the notice: the sensor's name
    /// (`peer_descr`). The connection's `community_id` is the writer's
    /// ([`Value::CommunityId`]).
    pub written_by: Option<WrittenBy>,
}

/// What the log writer adds to a notice (see [`Notice::written_by`]).
#[derive(Clone, Debug, PartialEq)]
pub struct WrittenBy {
    pub peer_descr: Arc<str>,
}

/// notice.log's `actions`: this sensor only logs (Zeek's default action).
const ACTIONS: [&str; 1] = ["Notice::ACTION_LOG"];
/// notice.log's `email_dest`: never mailed, an empty set.
const EMAIL_DEST: [&str; 0] = [];

impl Notice {
    /// The order notices are written in: time, then fields that make ties
    /// deterministic whatever worker raised them.
    fn order_key(&self) -> (Ts, Note, Option<IpAddr>, Option<&str>, &str) {
        (
            self.ts,
            self.note,
            self.src,
            self.conn.as_ref().map(|c| c.uid.as_str()),
            &self.msg,
        )
    }
}

impl LogRecord for Notice {
    const PATH: &'static str = "notice";
    /// Zeek's notice.log columns in Zeek's order (SEMANTICS.md "Zeek log
    /// schemas"), then `community_id` where Zeek's community-id policy puts
    /// it, after the last.
    const COLUMNS: &'static [Column] = &[
        col("ts", "time"),
        col("uid", "string"),
        col("id.orig_h", "addr"),
        col("id.orig_p", "port"),
        col("id.resp_h", "addr"),
        col("id.resp_p", "port"),
        col("fuid", "string"),
        col("file_mime_type", "string"),
        col("file_desc", "string"),
        col("proto", "enum"),
        col("note", "enum"),
        col("msg", "string"),
        col("sub", "string"),
        col("src", "addr"),
        col("dst", "addr"),
        col("p", "port"),
        col("n", "count"),
        col("peer_descr", "string"),
        col("actions", "set[enum]"),
        col("email_dest", "set[string]"),
        col("suppress_for", "interval"),
        col("remote_location.country_code", "string"),
        col("remote_location.region", "string"),
        col("remote_location.city", "string"),
        col("remote_location.latitude", "double"),
        col("remote_location.longitude", "double"),
        col("community_id", "string"),
    ];

    fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
        f(Value::Time(self.ts));
        match &self.conn {
            Some(c) => {
                f(Value::Str(c.uid.as_str()));
                f(Value::Addr(c.id.orig_h));
                f(Value::Port(c.id.orig_p));
                f(Value::Addr(c.id.resp_h));
                f(Value::Port(c.id.resp_p));
            }
            None => {
                for _ in 0..5 {
                    f(Value::Absent);
                }
            }
        }
        // fuid, file_mime_type, file_desc: no notice is about a file.
        for _ in 0..3 {
            f(Value::Absent);
        }
        // As Zeek's `Notice::populate`: a connection's notice takes its
        // protocol, responder and port from the connection.
        let id = self.conn.as_ref().map(|c| c.id);
        f(if id.is_some() {
            Value::Str("tcp")
        } else {
            Value::Absent
        });
        f(Value::Str(self.note.as_str()));
        f(Value::Str(&self.msg));
        f(Value::opt_str(self.sub.as_deref()));
        f(self.src.map_or(Value::Absent, Value::Addr));
        f(id.map_or(Value::Absent, |i| Value::Addr(i.resp_h)));
        f(id.map_or(Value::Absent, |i| Value::Port(i.resp_p)));
        f(self.n.map_or(Value::Absent, Value::Count));
        let by = self.written_by.as_ref();
        f(Value::opt_str(by.map(|b| &*b.peer_descr)));
        f(Value::Strs(&ACTIONS));
        f(Value::Strs(&EMAIL_DEST));
        f(Value::Interval(SUPPRESS_FOR_SECS as f64));
        let l = self.location.as_deref();
        f(Value::opt_str(l.and_then(|l| l.country_code.as_deref())));
        f(Value::opt_str(l.and_then(|l| l.region.as_deref())));
        f(Value::opt_str(l.and_then(|l| l.city.as_deref())));
        f(l.and_then(|l| l.latitude)
            .map_or(Value::Absent, Value::Double));
        f(l.and_then(|l| l.longitude)
            .map_or(Value::Absent, Value::Double));
        f(id.map_or(Value::Absent, Value::CommunityId));
    }
}

/// Drops a notice when an identical one (same `note` and `src`) was let
/// through less than an hour of network time before (or after, for a notice
/// that arrives late). Notices without `src` are never suppressed.
#[derive(Debug, Default)]
pub struct Suppressor {
    last: KeyedMap<(Note, IpAddr), Ts>,
    /// Notices written unsuppressed because the key table was full of live keys.
    pub table_full: u64,
}

impl Suppressor {
    /// True if `n` is to be written; records it as the start of a window.
    pub fn admit(&mut self, n: &Notice) -> bool {
        let Some(src) = n.src else {
            return true;
        };
        let key = (n.note, src);
        if let Some(&prev) = self.last.get(&key) {
            let gap = n.ts.micros().abs_diff(prev.micros());
            if gap < SUPPRESS_FOR {
                return false;
            }
        }
        if self.last.len() >= MAX_SUPPRESSION_KEYS && !self.last.contains_key(&key) {
            let now = n.ts.micros();
            self.last
                .retain(|_, t| now.abs_diff(t.micros()) < SUPPRESS_FOR);
            if self.last.len() >= MAX_SUPPRESSION_KEYS {
                self.table_full += 1;
                return true;
            }
        }
        self.last.insert(key, n.ts);
        true
    }
}

/// Collects the notices of all workers and releases them in one
/// deterministic order, suppressed. The pipeline pushes every notice here and
/// calls [`release`](Self::release) with a watermark: a time before which no
/// worker will raise another notice (the oldest "current time" among the
/// workers), and [`finish`](Self::finish) at the end of input.
#[derive(Debug, Default)]
pub struct NoticeQueue {
    pending: Vec<Notice>,
    suppressor: Suppressor,
    /// Notices that were suppressed.
    pub suppressed: u64,
    /// Times the pending buffer hit `MAX_PENDING_NOTICES` and was released early.
    pub early_releases: u64,
}

impl NoticeQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, n: Notice) {
        self.pending.push(n);
    }

    /// Whether the pending buffer is full and should be released now
    /// (the caller then calls `release` with its current watermark, or
    /// `release_all` when none has advanced).
    pub fn is_full(&self) -> bool {
        self.pending.len() >= MAX_PENDING_NOTICES
    }

    /// Appends to `out`, in order and suppressed, every pending notice with
    /// `ts < watermark`.
    pub fn release(&mut self, watermark: Ts, out: &mut Vec<Notice>) {
        if self.pending.len() >= MAX_PENDING_NOTICES {
            self.early_releases += 1;
            self.release_all(out);
            return;
        }
        self.pending
            .sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let cut = self.pending.partition_point(|n| n.ts < watermark);
        let ready: Vec<Notice> = self.pending.drain(..cut).collect();
        self.admit_all(ready, out);
    }

    /// Releases everything pending (end of input).
    pub fn finish(&mut self, out: &mut Vec<Notice>) {
        self.release_all(out);
    }

    fn release_all(&mut self, out: &mut Vec<Notice>) {
        self.pending
            .sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let ready = std::mem::take(&mut self.pending);
        self.admit_all(ready, out);
    }

    fn admit_all(&mut self, ready: Vec<Notice>, out: &mut Vec<Notice>) {
        for n in ready {
            if self.suppressor.admit(&n) {
                out.push(n);
            } else {
                self.suppressed += 1;
            }
        }
    }

    /// Notices written unsuppressed because the suppression table was full.
    pub fn suppression_table_full(&self) -> u64 {
        self.suppressor.table_full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_notice_fills_zeeks_columns_in_zeeks_order() {
        let id = ConnId {
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        let mut n = notice(7, Note::SuspiciousOrigination, "81.2.69.142");
        n.conn = Some(NoticeConn::from(&ConnInfo::new(id, Ts(1))));
        n.location = Some(Box::new(Location {
            country_code: Some("GB".into()),
            region: Some("ENG".into()),
            city: Some("London".into()),
            latitude: Some(51.5142),
            longitude: Some(-0.0931),
        }));
        n.written_by = Some(WrittenBy {
            peer_descr: "mx-1".into(),
        });
        let mut line = Vec::new();
        crate::output::writer::format_tsv(&n, &mut line);
        let line = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields.len(), Notice::COLUMNS.len(), "{line}");
        let at = |name: &str| {
            let i = Notice::COLUMNS.iter().position(|c| c.name == name).unwrap();
            fields[i]
        };
        assert_eq!(at("fuid"), "-");
        assert_eq!(at("proto"), "tcp");
        assert_eq!(at("src"), "81.2.69.142");
        assert_eq!((at("dst"), at("p")), ("198.18.0.25", "25"));
        assert_eq!(at("peer_descr"), "mx-1");
        assert_eq!(at("actions"), "Notice::ACTION_LOG");
        assert_eq!(at("email_dest"), "(empty)");
        assert_eq!(at("suppress_for"), "3600.000000");
        assert_eq!(at("remote_location.city"), "London");
        assert_eq!(at("remote_location.latitude"), "51.514200");
        let cid = crate::output::community_id::of_tcp(&id, 0).unwrap();
        assert_eq!(at("community_id"), cid);
        let mut json = Vec::new();
        crate::output::writer::format_json(&n, &mut json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["remote_location.longitude"], -0.0931);
        assert_eq!(v["actions"], serde_json::json!(["Notice::ACTION_LOG"]));
        // Zeek's `email_dest` is a defaulted set: `[]`, not left out.
        assert_eq!(v["email_dest"], serde_json::json!([]));
        assert_eq!(v["community_id"], cid.as_str());

        // Not tied to a connection (a spam notice): no proto, dst or p.
        let host = notice(7, Note::PossibleSpam, "198.18.0.9");
        let mut line = Vec::new();
        crate::output::writer::format_tsv(&host, &mut line);
        let line = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        for name in ["uid", "proto", "dst", "p", "peer_descr", "community_id"] {
            let i = Notice::COLUMNS.iter().position(|c| c.name == name).unwrap();
            assert_eq!(fields[i], "-", "{name}: {line}");
        }
    }

    fn notice(secs: u64, note: Note, src: &str) -> Notice {
        Notice {
            ts: Ts::from_secs(secs),
            conn: None,
            note,
            msg: format!("{src} msg"),
            sub: None,
            src: Some(src.parse().unwrap()),
            n: None,
            location: None,
            written_by: None,
        }
    }

    #[test]
    fn every_note_is_listed_at_its_index() {
        for (i, n) in Note::ALL.iter().enumerate() {
            assert_eq!(n.index(), i, "{n:?}");
        }
    }

    #[test]
    fn note_names_are_zeeks() {
        assert_eq!(Note::PossibleSpam.as_str(), "SMTP::SMTP_PossibleSpam");
        assert_eq!(Note::BlBlockedHost.as_str(), "SMTP::SMTP_BL_Blocked_Host");
        assert_eq!(
            Note::SuspiciousOrigination.as_str(),
            "SMTP::SMTP_Suspicious_Origination"
        );
    }

    #[test]
    fn identical_notices_suppressed_for_one_hour() {
        let mut s = Suppressor::default();
        assert!(s.admit(&notice(1000, Note::PossibleSpam, "198.18.0.1")));
        assert!(!s.admit(&notice(1000 + 3599, Note::PossibleSpam, "198.18.0.1")));
        // Other note or other src: not identical.
        assert!(s.admit(&notice(1001, Note::PossibleInternalSpam, "198.18.0.1")));
        assert!(s.admit(&notice(1001, Note::PossibleSpam, "198.18.0.2")));
        // The window runs from the first notice, not the suppressed ones.
        assert!(s.admit(&notice(1000 + 3600, Note::PossibleSpam, "198.18.0.1")));
        assert!(!s.admit(&notice(1000 + 3601, Note::PossibleSpam, "198.18.0.1")));
    }

    #[test]
    fn notices_without_src_are_never_suppressed() {
        let mut s = Suppressor::default();
        let mut n = notice(5, Note::BlErrorMessage, "198.18.0.1");
        n.src = None;
        assert!(s.admit(&n) && s.admit(&n));
    }

    #[test]
    fn queue_orders_across_workers_and_respects_watermark() {
        let mut q = NoticeQueue::new();
        // Worker 2 reports first, with the later notice.
        q.push(notice(200, Note::BlErrorMessage, "198.18.0.1"));
        q.push(notice(100, Note::BlErrorMessage, "198.18.0.1"));
        q.push(notice(5000, Note::BlErrorMessage, "198.18.0.3"));
        let mut out = Vec::new();
        q.release(Ts::from_secs(300), &mut out);
        // Only the first of the two identical ones, and not the one past the watermark.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ts, Ts::from_secs(100));
        assert_eq!(q.suppressed, 1);
        q.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].ts, Ts::from_secs(5000));
    }

    #[test]
    fn queue_order_is_independent_of_push_order() {
        let make = || {
            vec![
                notice(7, Note::PossibleSpam, "198.18.0.9"),
                notice(7, Note::PossibleSpam, "198.18.0.2"),
                notice(7, Note::BlBlockedHost, "198.18.0.2"),
                notice(3, Note::SuspiciousOrigination, "2001:db8::1"),
            ]
        };
        let run = |ns: Vec<Notice>| {
            let mut q = NoticeQueue::new();
            for n in ns {
                q.push(n);
            }
            let mut out = Vec::new();
            q.finish(&mut out);
            out
        };
        let forward = run(make());
        let mut rev = make();
        rev.reverse();
        assert_eq!(forward, run(rev));
        assert_eq!(forward[0].note, Note::SuspiciousOrigination);
    }

    #[test]
    fn visit_yields_one_value_per_column() {
        let mut n = notice(1, Note::BlBlockedHost, "198.18.0.1");
        for conn in [None, Some(())] {
            let id = ConnId {
                orig_h: "198.18.0.1".parse().unwrap(),
                orig_p: 1,
                resp_h: "198.18.0.2".parse().unwrap(),
                resp_p: 25,
            };
            n.conn = conn.map(|_| NoticeConn {
                uid: Uid::new(&id, Ts(1)),
                id,
            });
            let mut count = 0;
            n.visit(&mut |_| count += 1);
            assert_eq!(count, Notice::COLUMNS.len());
        }
    }
}
