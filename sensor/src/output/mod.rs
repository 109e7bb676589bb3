//! Log output: one writer for every log, in Zeek TSV or JSON lines.
//!
//! A log record type describes its columns once (`LogRecord`); the writers
//! format any record from that description, so smtp.log, files.log and
//! notice.log share
//! every formatting rule (escaping, set/vector syntax, absent fields).

use std::fmt;
use std::net::IpAddr;

use crate::net::{ConnId, Ts};

/// One column of a log: its Zeek name (`id.orig_h`) and Zeek type (`addr`,
/// `set[string]`, …) for the TSV `#fields` / `#types` header lines.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub zeek_type: &'static str,
}

/// A column, short enough for the schema tables of each log.
pub const fn col(name: &'static str, zeek_type: &'static str) -> Column {
    Column { name, zeek_type }
}

/// A field value, borrowed from the record being written.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// Unknown / unset: left out of JSON, `-` in TSV.
    Absent,
    Time(Ts),
    Interval(f64),
    Double(f64),
    Str(&'a str),
    Count(u64),
    Port(u16),
    Addr(IpAddr),
    Bool(bool),
    /// `set[string]` / `vector[string]` that is set: an empty one is `[]`
    /// in JSON and `(empty)` in TSV, as Zeek writes a set that exists but
    /// holds nothing (an unset one is [`Value::Absent`]).
    Strs(&'a dyn StrList),
    /// `vector[addr]`, set (an empty one as for `Strs`).
    Addrs(&'a [IpAddr]),
    /// The `community_id` of this TCP connection: the writer computes it
    /// with its seed ([`LineOptions`]) as it writes the line, so no record
    /// carries the hash from the packet path.
    CommunityId(ConnId),
}

impl<'a> Value<'a> {
    /// A text field that may be unset.
    pub fn opt_str(s: Option<&'a str>) -> Self {
        s.map_or(Value::Absent, Value::Str)
    }
}

/// A list of strings lent to the writers: a record's list read out of its
/// text arena (`smtp::record::List`), or a plain `Vec<String>`.
pub trait StrList: fmt::Debug {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with each string, in order.
    fn for_each_str(&self, f: &mut dyn FnMut(&str));
}

impl StrList for Vec<String> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str)) {
        self.iter().for_each(|s| f(s));
    }
}

impl<const N: usize> StrList for [&str; N] {
    fn len(&self) -> usize {
        N
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str)) {
        self.iter().for_each(|s| f(s));
    }
}

/// A record that can be written as one log line.
pub trait LogRecord {
    /// Zeek's `#path`: the log's name without extension (`smtp`, `notice`).
    const PATH: &'static str;
    /// The columns in output order.
    const COLUMNS: &'static [Column];
    /// Columns a run may add (files.log's extraction columns, there when
    /// extraction is on, as Zeek adds them): a writer made with them on
    /// writes them in its header, and the records then visit them too.
    const EXTRA_COLUMNS: &'static [Column] = &[];
    /// Where in `COLUMNS` the extra columns go: Zeek's columns come first,
    /// the sensor's own (`community_id`) stay last.
    const EXTRA_AT: usize = Self::COLUMNS.len();
    /// The columns of a log, `EXTRA_COLUMNS` among them when `extra`.
    fn columns(extra: bool) -> impl Iterator<Item = &'static Column> {
        let at = Self::EXTRA_AT.min(Self::COLUMNS.len());
        let (head, tail) = Self::COLUMNS.split_at(at);
        let extra = if extra { Self::EXTRA_COLUMNS } else { &[] };
        head.iter().chain(extra).chain(tail)
    }
    /// The name of the `i`th column [`LogRecord::columns`] lists.
    fn column_name(i: usize, extra: bool) -> &'static str {
        let at = Self::EXTRA_AT.min(Self::COLUMNS.len());
        let n = if extra { Self::EXTRA_COLUMNS.len() } else { 0 };
        let c = if i < at {
            Self::COLUMNS.get(i)
        } else if i < at + n {
            Self::EXTRA_COLUMNS.get(i - at)
        } else {
            Self::COLUMNS.get(i - n)
        };
        c.map_or("", |c| c.name)
    }
    /// Calls `f` once per column, in [`LogRecord::columns`] order (the
    /// extra ones when the record has them).
    fn visit(&self, f: &mut dyn FnMut(Value<'_>));
}

pub mod community_id;
pub mod extract;
pub mod files_log;
pub mod log_file;
pub mod smtp_log;
pub mod weird_log;
pub mod writer;

pub use log_file::{LogFile, LogFileCounts, LogFileError, OnError, OpenMode};
pub use writer::{LineOptions, LogFormat, LogWriter};
