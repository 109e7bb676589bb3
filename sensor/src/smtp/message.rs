//! The mail transaction being built: the smtp.log record and the flags that
//! decide when it is written (Zeek's `SMTP::Info` and `has_client_activity`).
//! Applies envelope commands, replies and message headers to the record.

use std::net::IpAddr;

use std::hash::BuildHasher;

use crate::net::{ConnInfo, KeyedMap, Ts};

use super::anomaly::SmtpAnomaly;
use super::config::SmtpConfig;
use super::files::FileInfo;
use super::lines::KEEP_CAPACITY;
use super::mime::HeaderSink;
use super::parser::{first_ip_addr, for_each_mime_address};
use super::received::PathWalker;
use super::record::{ListField, MessageRecord, TextField};
use super::text::lossy;

/// One transaction in progress. A session keeps one `Transaction` for its
/// whole life and takes finished records out of it, so the reply buffers
/// are allocated once per session, and a transaction that is never written
/// (the one opened after a connection's last message) allocates nothing.
#[derive(Debug)]
pub struct Transaction {
    /// The record being built. Its `path` is filled when the first Received
    /// header arrives or the record is finished, its helo and replies when
    /// it is finished.
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
    /// `id.resp_h`, `id.orig_h`: where every record's path starts.
    ends: [IpAddr; 2],
    /// `last_reply` / `last_error` so far (`"<code> <text>"`, empty when
    /// unset). They change with every server reply, thousands of times in a
    /// hostile transaction, so they are kept out of the record's arena and
    /// copied into it once, when the record is finished.
    last_reply: String,
    last_error: String,
    /// The record's address-list entries by hash.
    addresses: AddressIndex,
}

/// What adding an address to a list did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// Already on the list: not added again.
    Duplicate,
    /// The list is at its limit: dropped.
    Full,
    /// A duplicate, and more of them on this list than the list's limit:
    /// said once per list and transaction (`smtp_duplicate_address_flood`).
    DuplicateFlood,
}

/// The entries of a record's address lists by hash, so that a duplicate is
/// found in O(1) whatever the list's length: a message repeating one
/// address in 250 folded 16 KiB To headers, or RCPT lines naming the
/// thousandth recipient again and again, would otherwise cost a scan of
/// the whole list per address. The hash is seeded at random (the
/// addresses are the sender's choice); two addresses with one hash fall
/// back to a scan.
#[derive(Debug, Default)]
struct AddressIndex {
    /// Hash of (list, address) → index of the record's first list entry
    /// with that hash.
    by_hash: KeyedMap<u64, u32>,
    hasher: foldhash::fast::RandomState,
    /// Duplicates met per list in this transaction.
    duplicates: [usize; ListField::ALL.len()],
    /// Lookups that had to scan a list (a hash shared by two addresses).
    #[cfg(test)]
    slow_scans: u64,
}

impl AddressIndex {
    fn clear(&mut self) {
        self.by_hash.clear();
        self.duplicates = [0; ListField::ALL.len()];
    }
}

impl Transaction {
    /// An empty transaction of `conn`.
    pub fn new(conn: &ConnInfo) -> Self {
        Transaction {
            record: MessageRecord::default(),
            ts: None,
            client_activity: false,
            body_seen: false,
            path: PathWalker::default(),
            ends: [conn.id.resp_h, conn.id.orig_h],
            last_reply: String::new(),
            last_error: String::new(),
            addresses: AddressIndex::default(),
        }
    }

    /// Starts the next transaction; what the current one holds is dropped.
    pub fn reset(&mut self) {
        self.record.clear();
        self.ts = None;
        self.client_activity = false;
        self.body_seen = false;
        self.path = PathWalker::default();
        self.last_reply.clear();
        self.last_error.clear();
        self.addresses.clear();
    }

    /// [`Transaction::reset`] for a transaction of another connection,
    /// keeping the reply buffers and the address index (capacity up to
    /// [`KEEP_CAPACITY`] for the text).
    pub fn recycle(&mut self, conn: &ConnInfo) {
        self.reset();
        self.ends = [conn.id.resp_h, conn.id.orig_h];
        self.last_reply.shrink_to(KEEP_CAPACITY);
        self.last_error.shrink_to(KEEP_CAPACITY);
    }

    /// Records the time of the first packet of the transaction.
    pub fn touch(&mut self, ts: Ts) {
        if self.ts.is_none() {
            self.ts = Some(ts);
        }
    }

    /// Adds a RCPT TO address (no duplicates, at most `max_rcptto`).
    pub fn add_rcpt(&mut self, addr: &str, max: usize) -> Added {
        self.add_unique(ListField::Rcptto, addr, max)
    }

    /// Adds `item` to a list that holds no duplicates and at most `max`
    /// entries, in O(1) (see [`AddressIndex`]).
    pub fn add_unique(&mut self, field: ListField, item: &str, max: usize) -> Added {
        let index = &mut self.addresses;
        let hash = index.hasher.hash_one((field as u8, item));
        let known = match index.by_hash.get(&hash) {
            Some(&i) if self.record.list_entry(i as usize) == Some((field, item)) => true,
            // Another address with the same hash: look the slow way.
            Some(_) => {
                #[cfg(test)]
                {
                    index.slow_scans += 1;
                }
                self.record.list(field).iter().any(|x| x == item)
            }
            None => false,
        };
        if known {
            let dups = &mut index.duplicates[field as usize];
            *dups += 1;
            return if *dups == max.saturating_add(1) {
                Added::DuplicateFlood
            } else {
                Added::Duplicate
            };
        }
        if self.record.list(field).len() >= max {
            return Added::Full;
        }
        let i = self.record.push_list(field, item);
        if let Ok(i) = u32::try_from(i) {
            index.by_hash.entry(hash).or_insert(i);
        }
        Added::New
    }

    /// Sets `last_reply` (and `last_error` for codes >= 400 other than 421)
    /// to `"<code> <text>"`, reusing the strings' allocations.
    pub fn set_reply(&mut self, code: u16, text: &str) {
        let last = &mut self.last_reply;
        last.clear();
        // Room for most replies at once, not a regrowth per longer one.
        last.reserve(REPLY_START);
        last.push_str(itoa::Buffer::new().format(code));
        last.push(' ');
        last.push_str(text);
        if code >= 400 && code != 421 {
            self.last_error.clear();
            self.last_error.reserve(REPLY_START);
            self.last_error.push_str(last);
        }
    }

    /// A Received header: it becomes `first_received`, and its address
    /// extends the path while the path is followed.
    fn received(&mut self, value: &[u8], cfg: &SmtpConfig, anomalies: &mut Vec<SmtpAnomaly>) {
        self.record.push_received(&lossy(value));
        start_path(&mut self.record.path, self.ends);
        let followed = self
            .path
            .received(value, cfg, &mut self.record.path, anomalies);
        if let Some(ip) = followed {
            self.record.originating_addr = Some(ip);
        }
    }

    /// Takes out the finished record, with its start time (`fallback_ts`
    /// if no packet was seen), its depth (known only when it is written:
    /// pipelined transactions end out of step with their replies), the
    /// session's `helo` and the last replies. Call `reset` before the next
    /// transaction.
    pub fn finish(
        &mut self,
        fallback_ts: Ts,
        trans_depth: u32,
        helo: Option<&str>,
    ) -> MessageRecord {
        start_path(&mut self.record.path, self.ends);
        let mut record = std::mem::take(&mut self.record);
        record.ts = self.ts.unwrap_or(fallback_ts);
        record.trans_depth = trans_depth;
        if let Some(helo) = helo {
            record.set_text(TextField::Helo, helo);
        }
        if !self.last_reply.is_empty() {
            record.set_text(TextField::LastReply, &self.last_reply);
        }
        if !self.last_error.is_empty() {
            record.set_text(TextField::LastError, &self.last_error);
        }
        record
    }
}

/// Room the reply buffers get at first: a usual reply line fits.
const REPLY_START: usize = 128;

/// Room for the two connection addresses and two Received hops before the
/// path grows.
const PATH_START: usize = 4;

/// Starts an empty path with the connection's addresses.
fn start_path(path: &mut Vec<IpAddr>, ends: [IpAddr; 2]) {
    if path.is_empty() {
        path.reserve(PATH_START);
        path.extend(ends);
    }
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
        let value = lossy(value);
        let limits = &self.cfg.limits;
        let (list, max, anomaly) = if cc {
            (ListField::Cc, limits.max_cc, SmtpAnomaly::TooManyCc)
        } else {
            (ListField::To, limits.max_to, SmtpAnomaly::TooManyTo)
        };
        let tx = &mut *self.tx;
        // Zeek creates the set at the header, whatever it holds.
        tx.record.mark_list_set(list);
        let anomalies = &mut *self.anomalies;
        let mut full = false;
        for_each_mime_address(&value, |a| {
            if full {
                return;
            }
            match tx.add_unique(list, a, max) {
                Added::Full => full = true,
                Added::DuplicateFlood => anomalies.push(SmtpAnomaly::DuplicateAddressFlood),
                Added::New | Added::Duplicate => {}
            }
        });
        if full {
            self.anomalies.push(anomaly);
        }
    }
}

impl HeaderApplier<'_> {
    /// A header RFC 5322 allows once: a second one replaces the first, as
    /// in Zeek, and is counted (a filter and a mail reader may each show
    /// another one).
    fn single(&mut self, field: TextField, value: &[u8]) {
        let rec = &mut self.tx.record;
        if rec.text(field).is_some() {
            self.anomalies.push(SmtpAnomaly::DuplicateHeader);
        }
        rec.set_text_lossy(field, value);
    }
}

impl HeaderSink for HeaderApplier<'_> {
    fn top_header(&mut self, name: &[u8], value: &[u8]) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let rec = &mut self.tx.record;
        if is("message-id") {
            self.single(TextField::MsgId, value);
        } else if is("received") {
            self.tx.received(value, self.cfg, self.anomalies);
        } else if is("in-reply-to") {
            self.single(TextField::InReplyTo, value);
        } else if is("subject") {
            self.single(TextField::Subject, value);
        } else if is("from") {
            self.single(TextField::From, value);
        } else if is("reply-to") {
            self.single(TextField::ReplyTo, value);
        } else if is("date") {
            self.single(TextField::Date, value);
        } else if is("to") {
            self.addresses(value, false);
        } else if is("cc") {
            self.addresses(value, true);
        } else if is("x-originating-ip") {
            if let Some(ip) = first_ip_addr(value) {
                rec.x_originating_ip = Some(ip);
            }
        } else if is("x-mailer") || is("user-agent") || is("x-user-agent") {
            rec.set_text_lossy(TextField::UserAgent, value);
        }
    }

    fn file(&mut self, name: &str) {
        let rec = &mut self.tx.record;
        if rec.list(ListField::Files).len() >= self.cfg.limits.max_files {
            self.anomalies.push(SmtpAnomaly::TooManyFiles);
        } else {
            rec.push_list(ListField::Files, name);
        }
    }

    fn file_done(&mut self, file: FileInfo) {
        let files = &mut self.tx.record.files;
        if files.len() >= self.cfg.limits.max_files {
            self.anomalies.push(SmtpAnomaly::TooManyFiles);
        } else {
            files.push(file);
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
    fn finished_record_gets_path_helo_and_time() {
        let mut tx = Transaction::new(&conn());
        assert!(tx.record.path.is_empty());
        tx.touch(Ts(7));
        let r = tx.finish(Ts(9), 2, Some("GP"));
        assert_eq!(r.trans_depth, 2);
        assert_eq!(r.ts, Ts(7));
        assert_eq!(r.text(TextField::Helo), Some("GP"));
        assert_eq!(r.path, [conn().id.resp_h, conn().id.orig_h]);
        tx.reset();
        let r = tx.finish(Ts(9), 3, None);
        assert_eq!((r.trans_depth, r.ts), (3, Ts(9)));
        assert_eq!(r.text(TextField::Helo), None);
    }

    #[test]
    fn replies_set_last_reply_and_last_error() {
        let mut tx = Transaction::new(&conn());
        tx.set_reply(550, "no such user");
        tx.set_reply(421, "closing");
        tx.set_reply(250, "OK");
        let r = tx.finish(Ts(1), 1, None);
        assert_eq!(r.text(TextField::LastReply), Some("250 OK"));
        assert_eq!(r.text(TextField::LastError), Some("550 no such user"));
        // The next transaction starts without replies.
        tx.reset();
        let r = tx.finish(Ts(1), 2, None);
        assert_eq!(r.text(TextField::LastReply), None);
        assert_eq!(r.text(TextField::LastError), None);
    }

    #[test]
    fn headers_fill_the_record() {
        let cfg = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..SmtpConfig::default()
        };
        let mut tx = Transaction::new(&conn());
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
        ap.file("a.pdf");
        let r = &tx.record;
        assert_eq!(r.text(TextField::Subject), Some("Hi"));
        assert_eq!(r.list(ListField::To), ["a@b", "\"C, D\" <c@d>", "e@f"]);
        assert_eq!(r.list(ListField::Cc), ["x@y"]);
        assert_eq!(
            r.text(TextField::FirstReceived),
            Some("from c ([198.51.100.7]) by d")
        );
        assert_eq!(
            r.text(TextField::SecondReceived),
            Some("from a ([192.0.2.1]) by b")
        );
        assert_eq!(r.path.len(), 4);
        assert_eq!(r.originating_addr, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(r.x_originating_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(r.text(TextField::UserAgent), Some("mutt"));
        assert_eq!(r.text(TextField::MsgId), Some("<id@x>"));
        assert_eq!(r.list(ListField::Files), ["a.pdf"]);
        assert!(an.is_empty());
    }

    #[test]
    fn address_limits_count_anomalies() {
        let mut cfg = SmtpConfig::default();
        cfg.limits.max_to = 2;
        cfg.limits.max_files = 1;
        let mut tx = Transaction::new(&conn());
        let mut an = Vec::new();
        let mut ap = HeaderApplier {
            tx: &mut tx,
            cfg: &cfg,
            anomalies: &mut an,
        };
        ap.top_header(b"To", b"a@b, c@d, e@f");
        ap.file("1");
        ap.file("2");
        assert_eq!(tx.record.list(ListField::To).len(), 2);
        assert_eq!(tx.record.list(ListField::Files), ["1"]);
        assert_eq!(an, [SmtpAnomaly::TooManyTo, SmtpAnomaly::TooManyFiles]);
        let mut tx = Transaction::new(&conn());
        assert_eq!(tx.add_rcpt("a", 1), Added::New);
        assert_eq!(tx.add_rcpt("a", 1), Added::Duplicate);
        assert_eq!(tx.add_rcpt("b", 1), Added::Full);
    }

    #[test]
    fn duplicate_floods_cost_one_lookup_each_and_are_named() {
        let cfg = SmtpConfig::default();
        let max = cfg.limits.max_to;
        let mut tx = Transaction::new(&conn());
        let mut an = Vec::new();
        let distinct: Vec<String> = (0..max).map(|i| format!("u{i}@example.com")).collect();
        let last = distinct.last().cloned().unwrap_or_default();
        let mut ap = HeaderApplier {
            tx: &mut tx,
            cfg: &cfg,
            anomalies: &mut an,
        };
        ap.top_header(b"To", distinct.join(", ").as_bytes());
        // Then folded To headers repeating the last address, 100 000 times.
        let repeat = vec![last.as_str(); 1000].join(", ");
        for _ in 0..100 {
            ap.top_header(b"To", repeat.as_bytes());
        }
        assert_eq!(tx.record.list(ListField::To).len(), max);
        assert_eq!(an, [SmtpAnomaly::DuplicateAddressFlood]);
        // Every repeat was found by its hash, none by scanning the list:
        // the cost is linear in the input, not in input × list length.
        assert_eq!(tx.addresses.slow_scans, 0);
        // RCPT TO the same way, its own count.
        for i in 0..cfg.limits.max_rcptto + 2 {
            let got = tx.add_rcpt("r@example.net", cfg.limits.max_rcptto);
            let want = match i {
                0 => Added::New,
                n if n == cfg.limits.max_rcptto + 1 => Added::DuplicateFlood,
                _ => Added::Duplicate,
            };
            assert_eq!(got, want, "repeat {i}");
        }
        // The next transaction starts from nothing.
        tx.reset();
        assert_eq!(tx.add_rcpt("r@example.net", 1), Added::New);
    }

    proptest::proptest! {
        /// Any mix of new and repeated addresses over the lists: the same
        /// outcome as a plain list-scanning model, and every repeat found
        /// by its hash (no scan: each address costs O(1), so a flood costs
        /// O(n) in its size whatever the lists hold).
        #[test]
        fn prop_address_lists_match_a_scanning_model_without_scans(
            ops in proptest::collection::vec((0usize..3, 0u16..300), 0..3000),
            max in 1usize..200,
        ) {
            let mut tx = Transaction::new(&conn());
            let fields = [ListField::Rcptto, ListField::To, ListField::Cc];
            let mut model: [Vec<String>; 3] = Default::default();
            let mut dups = [0usize; 3];
            for (f, a) in ops {
                let addr = format!("u{a}@example.com");
                let want = if model[f].contains(&addr) {
                    dups[f] += 1;
                    if dups[f] == max + 1 { Added::DuplicateFlood } else { Added::Duplicate }
                } else if model[f].len() >= max {
                    Added::Full
                } else {
                    model[f].push(addr.clone());
                    Added::New
                };
                proptest::prop_assert_eq!(tx.add_unique(fields[f], &addr, max), want);
            }
            for (f, field) in fields.iter().enumerate() {
                let got: Vec<&str> = tx.record.list(*field).iter().collect();
                proptest::prop_assert_eq!(got, model[f].iter().map(String::as_str).collect::<Vec<_>>());
            }
            proptest::prop_assert_eq!(tx.addresses.slow_scans, 0);
        }
    }

    #[test]
    fn hostile_replies_and_headers_keep_the_transaction_bounded() {
        let cfg = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..SmtpConfig::default()
        };
        let mut tx = Transaction::new(&conn());
        assert_eq!(tx.add_rcpt("a@example.com", 10), Added::New);
        let mut an = Vec::new();
        let reply = "x".repeat(cfg.limits.max_reply_len - 4);
        let received = format!("from h ([192.0.2.1]) by relay {}", "y".repeat(400));
        let mut most = 0;
        for i in 0..10_000usize {
            tx.set_reply(if i % 2 == 0 { 550 } else { 250 }, &reply);
            let mut ap = HeaderApplier {
                tx: &mut tx,
                cfg: &cfg,
                anomalies: &mut an,
            };
            ap.top_header(b"Received", received.as_bytes());
            ap.top_header(b"Subject", "s".repeat(i % 300).as_bytes());
            let bytes =
                tx.record.heap_bytes() + tx.last_reply.capacity() + tx.last_error.capacity();
            most = most.max(bytes);
        }
        let r = tx.finish(Ts(1), 1, Some("client.example"));
        assert_eq!(r.text(TextField::Helo), Some("client.example"));
        assert_eq!(r.list(ListField::Rcptto), ["a@example.com"]);
        assert_eq!(r.text(TextField::FirstReceived), Some(received.as_str()));
        assert_eq!(r.text(TextField::SecondReceived), Some(received.as_str()));
        assert_eq!(
            r.text(TextField::Subject),
            Some("s".repeat(9_999 % 300).as_str())
        );
        let last = format!("250 {reply}");
        assert_eq!(r.text(TextField::LastReply), Some(last.as_str()));
        assert_eq!(
            r.text(TextField::LastError),
            Some(format!("550 {reply}").as_str())
        );
        // Under 2 KiB live (two Received headers, a subject, two replies
        // outside the arena) while ~12 MB of values were written.
        assert!(most <= 16 * 1024, "{most} bytes");
    }
}
