//! The mail transaction being built: the smtp.log record and the flags that
//! decide when it is written (Zeek's `SMTP::Info` and `has_client_activity`).
//! Applies envelope commands, replies and message headers to the record.

use crate::net::{ConnInfo, Ts};

use super::anomaly::SmtpAnomaly;
use super::config::SmtpConfig;
use super::mime::HeaderSink;
use super::parser::{first_ip_addr, for_each_mime_address};
use super::received::PathWalker;
use super::record::MessageRecord;

/// One transaction in progress.
#[derive(Debug)]
pub struct Transaction {
    pub record: MessageRecord,
    /// Time of the transaction's first packet; set by the first line seen
    /// after the previous record closed.
    pub ts: Option<Ts>,
    /// MAIL FROM, RCPT TO or an accepted STARTTLS was seen: the record is
    /// written when the transaction ends.
    pub client_activity: bool,
    /// A message body was already begun in this transaction; the headers of
    /// later bodies are not read (Zeek reads the first entity only).
    pub body_seen: bool,
    path: PathWalker,
}

impl Transaction {
    /// An empty transaction of `conn` at depth `trans_depth`, with `helo`
    /// carried over.
    pub fn new(conn: &ConnInfo, trans_depth: u32, helo: Option<String>) -> Self {
        Transaction {
            record: MessageRecord {
                trans_depth,
                helo,
                path: vec![conn.id.resp_h, conn.id.orig_h],
                ..MessageRecord::default()
            },
            ts: None,
            client_activity: false,
            body_seen: false,
            path: PathWalker::default(),
        }
    }

    /// Records the time of the first packet of the transaction.
    pub fn touch(&mut self, ts: Ts) {
        if self.ts.is_none() {
            self.ts = Some(ts);
        }
    }

    /// Adds a RCPT TO address (no duplicates, at most `max_rcptto`).
    /// Returns false if the limit dropped it.
    pub fn add_rcpt(&mut self, addr: String, max: usize) -> bool {
        if self.record.rcptto.contains(&addr) {
            return true;
        }
        if self.record.rcptto.len() >= max {
            return false;
        }
        self.record.rcptto.push(addr);
        true
    }

    /// Sets `last_reply` (and `last_error` for codes >= 400 other than 421)
    /// to `"<code> <text>"`, reusing the strings' allocations.
    pub fn set_reply(&mut self, code: u16, text: &str) {
        let last = self.record.last_reply.get_or_insert_with(String::new);
        last.clear();
        last.push_str(itoa::Buffer::new().format(code));
        last.push(' ');
        last.push_str(text);
        if code >= 400 && code != 421 {
            let err = self.record.last_error.get_or_insert_with(String::new);
            err.clear();
            err.push_str(last);
        }
    }

    /// The finished record, with its start time.
    pub fn into_record(mut self, fallback_ts: Ts) -> MessageRecord {
        self.record.ts = self.ts.unwrap_or(fallback_ts);
        self.record
    }
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn add_unique(list: &mut Vec<String>, item: &str, max: usize) -> bool {
    if list.iter().any(|x| x == item) {
        return true;
    }
    if list.len() >= max {
        return false;
    }
    list.push(item.to_string());
    true
}

/// Applies the top-level headers and file names of a message body to the
/// transaction.
pub struct HeaderApplier<'a> {
    pub tx: &'a mut Transaction,
    pub cfg: &'a SmtpConfig,
    pub anomalies: &'a mut Vec<SmtpAnomaly>,
}

impl HeaderApplier<'_> {
    fn addresses(&mut self, value: &[u8], cc: bool) {
        let value = String::from_utf8_lossy(value);
        let limits = &self.cfg.limits;
        let (list, max, anomaly) = if cc {
            (
                &mut self.tx.record.cc,
                limits.max_cc,
                SmtpAnomaly::TooManyCc,
            )
        } else {
            (
                &mut self.tx.record.to,
                limits.max_to,
                SmtpAnomaly::TooManyTo,
            )
        };
        let mut full = false;
        for_each_mime_address(&value, |a| {
            if !full && !add_unique(list, a, max) {
                full = true;
            }
        });
        if full {
            self.anomalies.push(anomaly);
        }
    }
}

impl HeaderSink for HeaderApplier<'_> {
    fn top_header(&mut self, name: &[u8], value: &[u8]) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let rec = &mut self.tx.record;
        if is("message-id") {
            rec.msg_id = Some(text(value));
        } else if is("received") {
            rec.second_received = rec.first_received.take();
            rec.first_received = Some(text(value));
            let followed = self
                .tx
                .path
                .received(value, self.cfg, &mut rec.path, self.anomalies);
            if let Some(ip) = followed {
                rec.originating_addr = Some(ip);
            }
        } else if is("in-reply-to") {
            rec.in_reply_to = Some(text(value));
        } else if is("subject") {
            rec.subject = Some(text(value));
        } else if is("from") {
            rec.from = Some(text(value));
        } else if is("reply-to") {
            rec.reply_to = Some(text(value));
        } else if is("date") {
            rec.date = Some(text(value));
        } else if is("to") {
            self.addresses(value, false);
        } else if is("cc") {
            self.addresses(value, true);
        } else if is("x-originating-ip") {
            if let Some(ip) = first_ip_addr(value) {
                rec.x_originating_ip = Some(ip);
            }
        } else if is("x-mailer") || is("user-agent") || is("x-user-agent") {
            rec.user_agent = Some(text(value));
        }
    }

    fn file(&mut self, name: String) {
        if self.tx.record.files.len() >= self.cfg.limits.max_files {
            self.anomalies.push(SmtpAnomaly::TooManyFiles);
        } else {
            self.tx.record.files.push(name);
        }
    }

    fn anomaly(&mut self, a: SmtpAnomaly) {
        self.anomalies.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnId;
    use crate::smtp::config::PathCapture;

    fn conn() -> ConnInfo {
        let id = ConnId {
            orig_h: "10.10.1.4".parse().unwrap(),
            orig_p: 1470,
            resp_h: "74.53.140.153".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(1))
    }

    #[test]
    fn new_transaction_starts_path_and_carries_helo() {
        let tx = Transaction::new(&conn(), 2, Some("GP".into()));
        assert_eq!(tx.record.trans_depth, 2);
        assert_eq!(tx.record.helo.as_deref(), Some("GP"));
        assert_eq!(tx.record.path, [conn().id.resp_h, conn().id.orig_h]);
    }

    #[test]
    fn replies_set_last_reply_and_last_error() {
        let mut tx = Transaction::new(&conn(), 1, None);
        tx.set_reply(550, "no such user");
        tx.set_reply(421, "closing");
        tx.set_reply(250, "OK");
        assert_eq!(tx.record.last_reply.as_deref(), Some("250 OK"));
        assert_eq!(tx.record.last_error.as_deref(), Some("550 no such user"));
    }

    #[test]
    fn headers_fill_the_record() {
        let cfg = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..SmtpConfig::default()
        };
        let mut tx = Transaction::new(&conn(), 1, None);
        let mut an = Vec::new();
        let mut ap = HeaderApplier {
            tx: &mut tx,
            cfg: &cfg,
            anomalies: &mut an,
        };
        ap.top_header(b"SUBJECT", b"Hi");
        ap.top_header(b"To", b"a@b, \"C, D\" <c@d>");
        ap.top_header(b"to", b"a@b, e@f");
        ap.top_header(b"Cc", b"x@y");
        ap.top_header(b"Received", b"from a ([192.0.2.1]) by b");
        ap.top_header(b"Received", b"from c ([198.51.100.7]) by d");
        ap.top_header(b"X-Originating-IP", b"[203.0.113.5]");
        ap.top_header(b"X-Mailer", b"mutt");
        ap.top_header(b"Message-ID", b"<id@x>");
        ap.file("a.pdf".into());
        let r = &tx.record;
        assert_eq!(r.subject.as_deref(), Some("Hi"));
        assert_eq!(r.to, ["a@b", "\"C, D\" <c@d>", "e@f"]);
        assert_eq!(r.cc, ["x@y"]);
        assert_eq!(
            r.first_received.as_deref(),
            Some("from c ([198.51.100.7]) by d")
        );
        assert_eq!(
            r.second_received.as_deref(),
            Some("from a ([192.0.2.1]) by b")
        );
        assert_eq!(r.path.len(), 4);
        assert_eq!(r.originating_addr, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(r.x_originating_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(r.user_agent.as_deref(), Some("mutt"));
        assert_eq!(r.msg_id.as_deref(), Some("<id@x>"));
        assert_eq!(r.files, ["a.pdf"]);
        assert!(an.is_empty());
    }

    #[test]
    fn address_limits_count_anomalies() {
        let mut cfg = SmtpConfig::default();
        cfg.limits.max_to = 2;
        cfg.limits.max_files = 1;
        let mut tx = Transaction::new(&conn(), 1, None);
        let mut an = Vec::new();
        let mut ap = HeaderApplier {
            tx: &mut tx,
            cfg: &cfg,
            anomalies: &mut an,
        };
        ap.top_header(b"To", b"a@b, c@d, e@f");
        ap.file("1".into());
        ap.file("2".into());
        assert_eq!(tx.record.to.len(), 2);
        assert_eq!(tx.record.files, ["1"]);
        assert_eq!(an, [SmtpAnomaly::TooManyTo, SmtpAnomaly::TooManyFiles]);
        let mut tx = Transaction::new(&conn(), 1, None);
        assert!(tx.add_rcpt("a".into(), 1));
        assert!(tx.add_rcpt("a".into(), 1));
        assert!(!tx.add_rcpt("b".into(), 1));
    }
}
