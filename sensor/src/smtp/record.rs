//! The value one mail transaction produces: a row of smtp.log.
//!
//! All text of a record (helo, envelope addresses, header values, replies,
//! file names) lives in one arena string, and each field is a span into it.
//! A finished record so costs three heap blocks (the arena, the list spans
//! and the path) instead of one per field and list entry (~30 for a usual
//! mail): fewer mallocs on the worker that builds records and fewer frees on
//! the log writer that drops them.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use crate::net::{ConnInfo, Ts};
use crate::output::StrList;

use super::files::FileInfo;
use super::text::lossy;

/// The single-valued text fields of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextField {
    Helo,
    Mailfrom,
    Date,
    From,
    ReplyTo,
    MsgId,
    InReplyTo,
    Subject,
    FirstReceived,
    SecondReceived,
    LastReply,
    LastError,
    UserAgent,
}

impl TextField {
    pub const ALL: [TextField; 13] = [
        TextField::Helo,
        TextField::Mailfrom,
        TextField::Date,
        TextField::From,
        TextField::ReplyTo,
        TextField::MsgId,
        TextField::InReplyTo,
        TextField::Subject,
        TextField::FirstReceived,
        TextField::SecondReceived,
        TextField::LastReply,
        TextField::LastError,
        TextField::UserAgent,
    ];
}

/// The list fields of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListField {
    Rcptto,
    To,
    Cc,
    Files,
}

impl ListField {
    pub const ALL: [ListField; 4] = [
        ListField::Rcptto,
        ListField::To,
        ListField::Cc,
        ListField::Files,
    ];
}

/// Where one value lies in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }

    fn end(self) -> usize {
        self.range().end
    }
}

/// Room the arena gets at its first value: a usual record's text (helo,
/// addresses, a few headers, replies) fits after a doubling or two.
const ARENA_START: usize = 256;

/// Dead bytes (replaced values) below which the arena is never compacted.
const COMPACT_MIN: usize = 4096;

/// One mail transaction, with the fields of SEMANTICS.md "Message records".
/// An unset text field or an empty list means "unknown" and is left out of
/// the log line.
#[derive(Clone, Default)]
pub struct MessageRecord {
    /// Time of the transaction's first packet.
    pub ts: Ts,
    pub trans_depth: u32,
    pub x_originating_ip: Option<IpAddr>,
    /// `id.resp_h`, `id.orig_h`, then the Received-path relay addresses.
    pub path: Vec<IpAddr>,
    pub tls: bool,
    /// Not logged: the address of the last Received header followed, the
    /// message's originating address for suspicious-origination checks.
    pub originating_addr: Option<IpAddr>,
    /// The message's files (files.log rows; their fuids are smtp.log's
    /// `fuids`), at most `max_files`.
    pub files: Vec<FileInfo>,
    /// The text of every field, back to back.
    arena: String,
    /// Span of each `TextField`, indexed by it.
    texts: [Option<Span>; TextField::ALL.len()],
    /// Entries of all lists in insertion order (one allocation for the four).
    lists: Vec<(ListField, Span)>,
    /// Entries per `ListField`, indexed by it.
    list_lens: [u32; ListField::ALL.len()],
    /// Lists that exist even if empty (a To: header without an address:
    /// Zeek's set is created, and logged `(empty)`), indexed by field.
    lists_set: [bool; ListField::ALL.len()],
    /// Bytes of `arena` no span points at any more: replaced values
    /// (`last_reply` changes with every server reply).
    dead: usize,
}

impl MessageRecord {
    /// A field's value, `None` when it was never set.
    pub fn text(&self, field: TextField) -> Option<&str> {
        self.texts[field as usize].map(|s| self.get(s))
    }

    /// Sets a field, replacing its value.
    pub fn set_text(&mut self, field: TextField, value: &str) {
        self.clear_text(field);
        let span = self.append(value);
        self.texts[field as usize] = Some(span);
    }

    /// Sets a field to `value` as text, invalid UTF-8 replaced.
    pub fn set_text_lossy(&mut self, field: TextField, value: &[u8]) {
        self.set_text(field, &lossy(value));
    }

    /// Unsets a field.
    pub fn clear_text(&mut self, field: TextField) {
        if let Some(old) = self.texts[field as usize].take() {
            self.discard(old);
        }
    }

    /// A new Received header: the first one seen so far becomes
    /// `second_received` (its text does not move) and `value` becomes
    /// `first_received`.
    pub fn push_received(&mut self, value: &str) {
        self.clear_text(TextField::SecondReceived);
        self.texts[TextField::SecondReceived as usize] =
            self.texts[TextField::FirstReceived as usize].take();
        self.set_text(TextField::FirstReceived, value);
    }

    /// A list, in insertion order.
    pub fn list(&self, field: ListField) -> List<'_> {
        List {
            arena: &self.arena,
            entries: &self.lists,
            field,
            len: self.list_lens[field as usize] as usize,
        }
    }

    /// Marks a list as set even while it has no entry (see `lists_set`).
    pub fn mark_list_set(&mut self, field: ListField) {
        self.lists_set[field as usize] = true;
    }

    /// Whether a list was set: it has an entry, or was marked.
    pub fn list_is_set(&self, field: ListField) -> bool {
        self.list_lens[field as usize] > 0 || self.lists_set[field as usize]
    }

    pub fn list_contains(&self, field: ListField, item: &str) -> bool {
        self.list(field).iter().any(|x| x == item)
    }

    /// Appends `item` to a list; returns its entry's index (for
    /// [`MessageRecord::list_entry`]).
    pub fn push_list(&mut self, field: ListField, item: &str) -> usize {
        let span = self.append(item);
        self.lists.push((field, span));
        self.list_lens[field as usize] += 1;
        self.lists.len() - 1
    }

    /// Entry `i` of the lists (in insertion order over all four), with the
    /// list it belongs to.
    pub fn list_entry(&self, i: usize) -> Option<(ListField, &str)> {
        self.lists
            .get(i)
            .map(|&(field, span)| (field, self.get(span)))
    }

    /// Bytes of heap the record holds (arena, list spans, path): what the
    /// limits bound.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.lists.capacity() * std::mem::size_of::<(ListField, Span)>()
            + self.path.capacity() * std::mem::size_of::<IpAddr>()
            + self.files.capacity() * std::mem::size_of::<FileInfo>()
    }

    /// Empties the record for a new transaction, keeping its allocations.
    pub fn clear(&mut self) {
        let MessageRecord {
            ts,
            trans_depth,
            x_originating_ip,
            path,
            tls,
            originating_addr,
            files,
            arena,
            texts,
            lists,
            list_lens,
            lists_set,
            dead,
        } = self;
        *ts = Ts::default();
        *trans_depth = 0;
        *x_originating_ip = None;
        path.clear();
        *tls = false;
        *originating_addr = None;
        files.clear();
        arena.clear();
        *texts = Default::default();
        lists.clear();
        *list_lens = Default::default();
        *lists_set = Default::default();
        *dead = 0;
    }

    fn get(&self, span: Span) -> &str {
        self.arena.get(span.range()).unwrap_or_default()
    }

    /// A value no longer referenced: cut off if it ends the arena, else
    /// counted as dead until the next compaction.
    fn discard(&mut self, span: Span) {
        if span.end() == self.arena.len() {
            self.arena.truncate(span.start as usize);
        } else {
            self.dead += span.len as usize;
        }
    }

    /// Appends `value` and returns its span.
    fn append(&mut self, value: &str) -> Span {
        self.compact_if_wasteful();
        let start = self.arena.len();
        // The limits keep a record's text far below 4 GiB; should they not,
        // the value is dropped rather than a span wrapped.
        let (Ok(start32), Ok(end32)) = (u32::try_from(start), u32::try_from(start + value.len()))
        else {
            return Span { start: 0, len: 0 };
        };
        if self.arena.capacity() == 0 {
            self.arena.reserve(ARENA_START.max(value.len()));
        }
        self.arena.push_str(value);
        Span {
            start: start32,
            len: end32 - start32,
        }
    }

    /// Replaced values leave dead bytes behind. Once they are over
    /// `COMPACT_MIN` and at least half the arena, the live values are
    /// copied into a fresh arena: a record so holds at most about twice its
    /// live text (which the limits bound) however often a field is
    /// replaced, and each compaction copies no more than the dead bytes
    /// written since the last one.
    fn compact_if_wasteful(&mut self) {
        if self.dead < COMPACT_MIN || self.dead * 2 < self.arena.len() {
            return;
        }
        let live = self.arena.len() - self.dead;
        let mut fresh = String::with_capacity(live + live / 2);
        let old = &self.arena;
        let spans = self
            .texts
            .iter_mut()
            .flatten()
            .chain(self.lists.iter_mut().map(|(_, s)| s));
        for span in spans {
            let start = fresh.len() as u32;
            fresh.push_str(old.get(span.range()).unwrap_or_default());
            span.start = start;
        }
        self.arena = fresh;
        self.dead = 0;
    }
}

/// Two records are equal when their fields are, however their arenas are
/// laid out.
impl PartialEq for MessageRecord {
    fn eq(&self, other: &Self) -> bool {
        self.ts == other.ts
            && self.trans_depth == other.trans_depth
            && self.x_originating_ip == other.x_originating_ip
            && self.path == other.path
            && self.tls == other.tls
            && self.originating_addr == other.originating_addr
            && self.files == other.files
            && TextField::ALL
                .iter()
                .all(|&f| self.text(f) == other.text(f))
            && ListField::ALL
                .iter()
                .all(|&f| self.list(f).iter().eq(other.list(f).iter()))
            && ListField::ALL
                .iter()
                .all(|&f| self.list_is_set(f) == other.list_is_set(f))
    }
}

impl fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("MessageRecord");
        d.field("ts", &self.ts)
            .field("trans_depth", &self.trans_depth)
            .field("x_originating_ip", &self.x_originating_ip)
            .field("path", &self.path)
            .field("tls", &self.tls)
            .field("originating_addr", &self.originating_addr);
        if !self.files.is_empty() {
            d.field("files", &self.files);
        }
        for field in TextField::ALL {
            if let Some(t) = self.text(field) {
                d.field("text", &(field, t));
            }
        }
        for field in ListField::ALL {
            let l = self.list(field);
            if !l.is_empty() {
                d.field("list", &(field, l));
            }
        }
        d.finish()
    }
}

/// One list of a record, read through its arena.
#[derive(Clone, Copy)]
pub struct List<'a> {
    arena: &'a str,
    entries: &'a [(ListField, Span)],
    field: ListField,
    len: usize,
}

impl<'a> List<'a> {
    /// A list with no entries (for replies outside any record).
    pub const EMPTY: List<'static> = List {
        arena: "",
        entries: &[],
        field: ListField::Rcptto,
        len: 0,
    };

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> ListIter<'a> {
        ListIter {
            arena: self.arena,
            entries: self.entries.iter(),
            field: self.field,
            left: self.len,
        }
    }
}

impl<'a> IntoIterator for List<'a> {
    type Item = &'a str;
    type IntoIter = ListIter<'a>;
    fn into_iter(self) -> ListIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for List<'_> {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

impl StrList for List<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str)) {
        self.iter().for_each(f);
    }
}

/// The entries of one list, in insertion order.
#[derive(Clone)]
pub struct ListIter<'a> {
    arena: &'a str,
    entries: std::slice::Iter<'a, (ListField, Span)>,
    field: ListField,
    /// Entries of `field` not yet returned.
    left: usize,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        let (_, span) = self.entries.find(|(f, _)| *f == self.field)?;
        self.left -= 1;
        Some(self.arena.get(span.range()).unwrap_or_default())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ListIter<'_> {}

/// A finished record together with the connection it belongs to: what the
/// smtp.log writer and the origination check consume.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub conn: ConnInfo,
    pub record: MessageRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lists_read_back() {
        let mut r = MessageRecord::default();
        assert_eq!(r.text(TextField::Subject), None);
        r.set_text(TextField::Subject, "hi");
        r.push_list(ListField::To, "a@b");
        r.set_text_lossy(TextField::From, b"x\xffy");
        r.push_list(ListField::Rcptto, "r@s");
        r.push_list(ListField::To, "c@d");
        r.set_text(TextField::Subject, "again");
        assert_eq!(r.text(TextField::Subject), Some("again"));
        assert_eq!(r.text(TextField::From), Some("x\u{fffd}y"));
        assert_eq!(r.list(ListField::To), ["a@b", "c@d"]);
        assert_eq!(r.list(ListField::To).iter().len(), 2);
        assert_eq!(r.list(ListField::Rcptto), ["r@s"]);
        assert!(r.list(ListField::Cc).is_empty());
        assert!(r.list_contains(ListField::To, "c@d"));
        assert!(!r.list_contains(ListField::Rcptto, "c@d"));
        r.clear_text(TextField::Subject);
        assert_eq!(r.text(TextField::Subject), None);
        assert_eq!(r.list(ListField::To), ["a@b", "c@d"]);
    }

    #[test]
    fn equality_ignores_the_arena_layout() {
        let mut a = MessageRecord::default();
        a.set_text(TextField::Helo, "h");
        a.set_text(TextField::Subject, "s");
        let mut b = MessageRecord::default();
        b.set_text(TextField::Subject, "old");
        b.set_text(TextField::Helo, "h");
        b.set_text(TextField::Subject, "s");
        assert_eq!(a, b);
        assert_eq!(b.push_list(ListField::Files, "f"), 0);
        assert_eq!(b.list_entry(0), Some((ListField::Files, "f")));
        assert_ne!(a, b);
    }

    #[test]
    fn replaced_fields_keep_the_arena_bounded() {
        let mut r = MessageRecord::default();
        r.set_text(TextField::Helo, "client.example");
        r.push_list(ListField::Rcptto, "a@example.com");
        let mut most = 0;
        for i in 0..10_000 {
            // A reply, an error and a Received header per round, each
            // leaving the previous value dead in the middle of the arena.
            let reply = format!("{} {}", 500 + i % 100, "x".repeat(i % 512));
            r.set_text(TextField::LastReply, &reply);
            r.set_text(TextField::LastError, &reply);
            r.push_received(&format!("from h{i} ([192.0.2.{}]) by relay", i % 256));
            most = most.max(r.heap_bytes());
            assert_eq!(r.text(TextField::LastReply), Some(reply.as_str()));
            assert_eq!(r.text(TextField::LastError), Some(reply.as_str()));
        }
        assert_eq!(r.text(TextField::Helo), Some("client.example"));
        assert_eq!(r.list(ListField::Rcptto), ["a@example.com"]);
        assert_eq!(
            r.text(TextField::SecondReceived),
            Some("from h9998 ([192.0.2.14]) by relay")
        );
        // Live text is at most ~1.1 KiB; the arena stays within a small
        // multiple of it plus the compaction threshold, not the ~10 MB
        // written.
        assert!(most <= 4 * COMPACT_MIN, "{most} bytes");
    }
}
