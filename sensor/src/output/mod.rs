//! Log output: one writer for every log, in Zeek TSV or JSON lines.
//!
//! A log record type describes its columns once (`LogRecord`); the writers
//! format any record from that description, so smtp.log, files.log and
//! notice.log share
//! every formatting rule (escaping, set/vector syntax, absent fields).

use std::fmt;
use std::net::IpAddr;

use crate::net::Ts;

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
    /// `set[string]` / `vector[string]`; an empty list is absent in JSON and
    /// `(empty)` in TSV.
    Strs(&'a dyn StrList),
    /// `vector[addr]`.
    Addrs(&'a [IpAddr]),
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
    /// Columns a run may add after `COLUMNS` (files.log's extraction
    /// columns, there when extraction is on, as Zeek adds them): a writer
    /// made with them on writes them in its header, and the records then
    /// visit them too.
    const EXTRA_COLUMNS: &'static [Column] = &[];
    /// The name of column `i` of `COLUMNS` then `EXTRA_COLUMNS`.
    fn column_name(i: usize) -> &'static str {
        Self::COLUMNS
            .get(i)
            .or_else(|| Self::EXTRA_COLUMNS.get(i.wrapping_sub(Self::COLUMNS.len())))
            .map_or("", |c| c.name)
    }
    /// Calls `f` once per column, in `COLUMNS` order (then the extra ones,
    /// when the record has them).
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
pub use writer::{LogFormat, LogWriter};
