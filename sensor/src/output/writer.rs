//! Formats `LogRecord`s as JSON lines or Zeek TSV into any `io::Write`.
//!
//! JSON follows Zeek's JSON writer: flat dotted names (`"id.orig_h"`), `ts`
//! as a float number, unset fields left out, a set that is set but empty as
//! `[]` (where TSV writes `(empty)`), booleans as `true`/`false`, sets and
//! vectors as arrays. TSV follows Zeek's ASCII writer: the `#separator …
//! #types` header, `-` for unset, `(empty)` for an empty string or set,
//! `\xNN` escapes for separators and control bytes, and a `#close` trailer.
//!
//! [`LineOptions`] adds what the sensor's configuration says to every line:
//! the seed of `community_id`, and Zeek's log extension fields `_path` and
//! `_write_ts` (`Log::default_ext_prefix = "_"`), which log shippers route
//! on; like Zeek's extension fields they come before the record's columns.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use std::net::IpAddr;

use super::{LogRecord, Value, community_id};
use crate::net::Ts;

/// Output format of every log of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// Zeek's tab-separated ASCII format with `#` header lines.
    Zeek,
}

/// What every line of a log gets besides its record's own columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// Seed of the Community ID of [`Value::CommunityId`] columns.
    pub community_id_seed: u16,
    /// Write the extension fields `_path` (the log's name) and `_write_ts`
    /// (the wall-clock time the line was written) first.
    pub path_fields: bool,
    /// The log lists its record's extra columns (`LogRecord::EXTRA_COLUMNS`:
    /// files.log's extraction columns when extraction is on).
    pub extra_columns: bool,
}

/// The extension columns of [`LineOptions::path_fields`], as Zeek's
/// `#fields` and `#types` name them.
const EXT_COLUMNS: [super::Column; 2] = [
    super::col("_path", "string"),
    super::col("_write_ts", "time"),
];

/// Writes records of one log type. The line is built in a reused buffer, so
/// writing a record allocates nothing once the buffer has grown.
pub struct LogWriter<R: LogRecord, W: Write> {
    out: W,
    format: LogFormat,
    opts: LineOptions,
    line: Vec<u8>,
    closed: bool,
    _record: PhantomData<fn(&R)>,
}

impl<R: LogRecord, W: Write> LogWriter<R, W> {
    /// Starts a log; in Zeek format this writes the header lines, with
    /// `#open` set to the wall-clock time (as Zeek does).
    pub fn new(out: W, format: LogFormat, opts: LineOptions) -> io::Result<Self> {
        let mut w = Self::without_header(out, format, opts);
        if format == LogFormat::Zeek {
            w.write_zeek_header()?;
        }
        Ok(w)
    }

    fn without_header(out: W, format: LogFormat, opts: LineOptions) -> Self {
        LogWriter {
            out,
            format,
            opts,
            line: Vec::with_capacity(1024),
            closed: false,
            _record: PhantomData,
        }
    }

    /// Gives access to the underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Gives mutable access to the underlying writer (to take out what
    /// was written to an in-memory buffer).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn write_zeek_header(&mut self) -> io::Result<()> {
        let mut h = String::new();
        h.push_str("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n");
        let _ = writeln!(h, "#path\t{}", R::PATH);
        let _ = writeln!(h, "#open\t{}", zeek_wallclock());
        let ext: &[super::Column] = if self.opts.path_fields {
            &EXT_COLUMNS
        } else {
            &[]
        };
        h.push_str("#fields");
        let extra = self.opts.extra_columns;
        for c in ext.iter().chain(R::columns(extra)) {
            h.push('\t');
            h.push_str(c.name);
        }
        h.push_str("\n#types");
        for c in ext.iter().chain(R::columns(extra)) {
            h.push('\t');
            h.push_str(c.zeek_type);
        }
        h.push('\n');
        self.out.write_all(h.as_bytes())
    }

    /// Appends one record as one line.
    pub fn write(&mut self, record: &R) -> io::Result<()> {
        self.line.clear();
        match self.format {
            LogFormat::Json => format_json_with::<R>(record, &self.opts, &mut self.line),
            LogFormat::Zeek => format_tsv_with::<R>(record, &self.opts, &mut self.line),
        }
        self.out.write_all(&self.line)
    }

    /// Writes the Zeek `#close` trailer (TSV) and flushes. Idempotent.
    pub fn close(&mut self) -> io::Result<()> {
        if !self.closed {
            self.closed = true;
            if self.format == LogFormat::Zeek {
                writeln!(self.out, "#close\t{}", zeek_wallclock())?;
            }
        }
        self.out.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Gives back the underlying writer (after `close`).
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<R: LogRecord> LogWriter<R, Vec<u8>> {
    /// A writer into memory (`output::log_file` hands the buffer to the
    /// file in whole lines); writing into a Vec cannot fail.
    pub fn in_memory(out: Vec<u8>, format: LogFormat, opts: LineOptions) -> Self {
        let mut w = Self::without_header(out, format, opts);
        if format == LogFormat::Zeek {
            let _ = w.write_zeek_header();
        }
        w
    }
}

/// The wall-clock time now, for `_write_ts`.
fn now() -> Ts {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Ts(0), |d| {
            Ts(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        })
}

/// Wall-clock time as Zeek writes `#open`/`#close`: `2026-11-23-09-15-00`.
fn zeek_wallclock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}-{:02}-{:02}-{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// [`format_json_with`] without extension fields, seed 0.
pub fn format_json<R: LogRecord>(record: &R, out: &mut Vec<u8>) {
    format_json_with(record, &LineOptions::default(), out);
}

/// Formats one record as a JSON object line into `out`.
///
/// This runs once per record on the collector thread, which shares a core
/// with capture on small machines, so the common cases skip `core::fmt`:
/// column names are plain identifiers written as they are, strings without
/// bytes to escape are copied, numbers and IPv4 addresses are formatted by
/// hand ([`itoa`]).
pub fn format_json_with<R: LogRecord>(record: &R, opts: &LineOptions, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    if opts.path_fields {
        out.extend_from_slice(b"\"_path\":");
        json_str(out, R::PATH);
        out.extend_from_slice(b",\"_write_ts\":");
        time(out, now());
        first = false;
    }
    let mut col = 0usize;
    record.visit(&mut |v| {
        let name = R::column_name(col, opts.extra_columns);
        col += 1;
        let cid;
        let v = match v {
            Value::CommunityId(id) => {
                cid = community_id::of_tcp(&id, opts.community_id_seed);
                Value::opt_str(cid.as_deref())
            }
            v => v,
        };
        if matches!(v, Value::Absent) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, name);
        out.push(b':');
        json_value(out, v);
    });
    out.extend_from_slice(b"}\n");
}

/// A JSON string: copied between quotes when nothing in it needs an
/// escape (the usual case), else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_json_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json's escaping of a &str cannot fail when writing to a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// True when `b` holds a byte JSON must escape: `"`, `\\` or a control
/// byte below 0x20. Eight bytes at a time (SWAR: a byte of `x ^ pattern`
/// is zero where `x` matches; `x - 0x20…` borrows where a byte is below
/// 0x20).
fn needs_json_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        if zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | below_space
            != 0
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// An integer, without `core::fmt`.
fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A time as Zeek writes it: seconds with six decimals.
fn time(out: &mut Vec<u8>, ts: Ts) {
    int(out, ts.micros() / 1_000_000);
    let frac = ts.micros() % 1_000_000;
    let mut digits = [b'0'; 7];
    digits[0] = b'.';
    let mut rest = frac;
    for d in digits[1..].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

/// An address in its usual text form (IPv4 by hand, IPv6 by `core::fmt`).
fn addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                int(out, o);
            }
        }
        IpAddr::V6(v6) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

fn json_value(out: &mut Vec<u8>, v: Value<'_>) {
    // Writing into a Vec cannot fail: the io::Result is always Ok.
    match v {
        // Resolved by `format_json_with` before it gets here.
        Value::Absent | Value::CommunityId(_) => out.extend_from_slice(b"null"),
        Value::Time(ts) => time(out, ts),
        Value::Interval(f) => {
            let _ = write!(out, "{f:.6}");
        }
        // The shortest text that reads back as the same number, as Zeek's
        // JSON writer; JSON has no NaN or infinity.
        Value::Double(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::Double(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => json_str(out, s),
        Value::Count(n) => int(out, n),
        Value::Port(p) => int(out, p),
        Value::Addr(a) => {
            out.push(b'"');
            addr(out, a);
            out.push(b'"');
        }
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Strs(list) => {
            out.push(b'[');
            let mut first = true;
            list.for_each_str(&mut |s| {
                if !first {
                    out.push(b',');
                }
                first = false;
                json_str(out, s);
            });
            out.push(b']');
        }
        Value::Addrs(list) => {
            out.push(b'[');
            for (i, a) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                addr(out, *a);
                out.push(b'"');
            }
            out.push(b']');
        }
    }
}

/// [`format_tsv_with`] without extension fields, seed 0.
pub fn format_tsv<R: LogRecord>(record: &R, out: &mut Vec<u8>) {
    format_tsv_with(record, &LineOptions::default(), out);
}

/// Formats one record as a Zeek TSV line into `out`.
pub fn format_tsv_with<R: LogRecord>(record: &R, opts: &LineOptions, out: &mut Vec<u8>) {
    let mut first = true;
    if opts.path_fields {
        tsv_str(out, R::PATH, false);
        out.push(b'\t');
        time(out, now());
        first = false;
    }
    record.visit(&mut |v| {
        if !first {
            out.push(b'\t');
        }
        first = false;
        // Writing into a Vec cannot fail: the io::Result is always Ok.
        match v {
            Value::Absent => out.push(b'-'),
            Value::CommunityId(id) => match community_id::of_tcp(&id, opts.community_id_seed) {
                Some(c) => tsv_str(out, &c, false),
                None => out.push(b'-'),
            },
            Value::Time(ts) => time(out, ts),
            Value::Interval(f) | Value::Double(f) => {
                let _ = write!(out, "{f:.6}");
            }
            Value::Str(s) => tsv_str(out, s, false),
            Value::Count(n) => int(out, n),
            Value::Port(p) => int(out, p),
            Value::Addr(a) => addr(out, a),
            Value::Bool(b) => out.push(if b { b'T' } else { b'F' }),
            Value::Strs(list) => {
                if list.is_empty() {
                    out.extend_from_slice(b"(empty)");
                }
                let mut first = true;
                list.for_each_str(&mut |s| {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    tsv_str(out, s, true);
                });
            }
            Value::Addrs(list) => {
                if list.is_empty() {
                    out.extend_from_slice(b"(empty)");
                }
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    addr(out, *a);
                }
            }
        }
    });
    out.push(b'\n');
}

/// A string field as Zeek's ASCII writer escapes it: `\` as `\\`, the
/// separator, control bytes and DEL as `\xNN`, a `,` inside a set element as
/// `\x2c`, and a value that would read as unset/empty escaped so it does not.
fn tsv_str(out: &mut Vec<u8>, s: &str, in_set: bool) {
    if s.is_empty() {
        out.extend_from_slice(b"(empty)");
        return;
    }
    if s == "-" {
        out.extend_from_slice(b"\\x2d");
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b',' if in_set => out.extend_from_slice(b"\\x2c"),
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Ts;
    use crate::output::Column;
    use std::net::IpAddr;

    #[test]
    fn escape_check_finds_every_byte_that_needs_one() {
        for len in 0..20 {
            for at in 0..len {
                for bad in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(needs_json_escape(&v), "{v:?}");
                }
                let mut v = vec![b'a'; len];
                for ok in [b' ', 0x7f, 0x80, 0xff, b'~'] {
                    v[at] = ok;
                    assert!(!needs_json_escape(&v), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn hand_formatted_values_match_core_fmt() {
        let mut out = Vec::new();
        for ts in [Ts(0), Ts(5), Ts(1_254_722_767_875_996), Ts(u64::MAX)] {
            out.clear();
            time(&mut out, ts);
            assert_eq!(String::from_utf8_lossy(&out), ts.to_string());
        }
        for a in [
            "198.18.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let a: IpAddr = a.parse().unwrap();
            out.clear();
            addr(&mut out, a);
            assert_eq!(String::from_utf8_lossy(&out), a.to_string());
        }
        for s in [
            "plain",
            "",
            "quote \" here",
            "back\\slash",
            "ctl\u{1}",
            "ünïcode ✓",
            "del\u{7f}",
        ] {
            out.clear();
            json_str(&mut out, s);
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    struct T {
        s: Option<String>,
        list: Vec<String>,
        addrs: Vec<IpAddr>,
    }
    impl LogRecord for T {
        const PATH: &'static str = "t";
        const COLUMNS: &'static [Column] = &[
            Column {
                name: "ts",
                zeek_type: "time",
            },
            Column {
                name: "id.orig_h",
                zeek_type: "addr",
            },
            Column {
                name: "s",
                zeek_type: "string",
            },
            Column {
                name: "list",
                zeek_type: "set[string]",
            },
            Column {
                name: "path",
                zeek_type: "vector[addr]",
            },
            Column {
                name: "tls",
                zeek_type: "bool",
            },
        ];
        fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
            f(Value::Time(Ts(1_254_722_767_875_996)));
            f(Value::Addr("198.18.0.1".parse().unwrap()));
            f(self.s.as_deref().map_or(Value::Absent, Value::Str));
            f(Value::Strs(&self.list));
            f(Value::Addrs(&self.addrs));
            f(Value::Bool(false));
        }
    }

    #[test]
    fn json_omits_unset_writes_empty_sets_and_escapes() {
        let t = T {
            s: Some("a\"b\tc".into()),
            list: vec![],
            addrs: vec![],
        };
        let mut out = Vec::new();
        format_json(&t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":1254722767.875996,\"id.orig_h\":\"198.18.0.1\",\"s\":\"a\\\"b\\tc\",\"list\":[],\"path\":[],\"tls\":false}\n"
        );
        let t = T {
            s: None,
            list: vec!["x".into(), "y".into()],
            addrs: vec!["2001:db8::1".parse().unwrap()],
        };
        let mut out = Vec::new();
        format_json(&t, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["list"], serde_json::json!(["x", "y"]));
        assert_eq!(v["path"], serde_json::json!(["2001:db8::1"]));
        assert!(v.get("s").is_none());
    }

    #[test]
    fn tsv_escapes_like_zeek() {
        let t = T {
            s: Some("a\tb\\".into()),
            list: vec!["x,y".into(), "z".into()],
            addrs: vec![],
        };
        let mut out = Vec::new();
        format_tsv(&t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1254722767.875996\t198.18.0.1\ta\\x09b\\\\\tx\\x2cy,z\t(empty)\tF\n"
        );
        let t = T {
            s: None,
            list: vec![],
            addrs: vec![],
        };
        let mut out = Vec::new();
        format_tsv(&t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1254722767.875996\t198.18.0.1\t-\t(empty)\t(empty)\tF\n"
        );
    }

    #[test]
    fn zeek_header_and_close() {
        let mut w =
            LogWriter::<T, Vec<u8>>::new(Vec::new(), LogFormat::Zeek, LineOptions::default())
                .unwrap();
        w.write(&T {
            s: None,
            list: vec![],
            addrs: vec![],
        })
        .unwrap();
        w.close().unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "#separator \\x09");
        assert_eq!(lines[1], "#set_separator\t,");
        assert_eq!(lines[2], "#empty_field\t(empty)");
        assert_eq!(lines[3], "#unset_field\t-");
        assert_eq!(lines[4], "#path\tt");
        assert!(lines[5].starts_with("#open\t20"));
        assert_eq!(lines[6], "#fields\tts\tid.orig_h\ts\tlist\tpath\ttls");
        assert_eq!(
            lines[7],
            "#types\ttime\taddr\tstring\tset[string]\tvector[addr]\tbool"
        );
        assert!(lines[9].starts_with("#close\t20"));
        assert_eq!(lines.len(), 10);
    }

    /// `_path` and `_write_ts` come first, in both formats, and name the
    /// log; `_write_ts` is the wall clock, not the record's time.
    #[test]
    fn path_fields_come_first() {
        let t = T {
            s: None,
            list: vec![],
            addrs: vec![],
        };
        let opts = LineOptions {
            community_id_seed: 0,
            path_fields: true,
            ..LineOptions::default()
        };
        let before = now().micros() as f64 / 1e6;
        let mut out = Vec::new();
        format_json_with(&t, &opts, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("{\"_path\":\"t\",\"_write_ts\":"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let wts = v["_write_ts"].as_f64().unwrap();
        assert!(wts >= before.floor() && wts < before + 3600.0, "{wts}");
        let mut w = LogWriter::<T, Vec<u8>>::new(Vec::new(), LogFormat::Zeek, opts).unwrap();
        w.write(&t).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[6],
            "#fields\t_path\t_write_ts\tts\tid.orig_h\ts\tlist\tpath\ttls"
        );
        assert!(
            lines[7].starts_with("#types\tstring\ttime\ttime\t"),
            "{}",
            lines[7]
        );
        let row: Vec<&str> = lines[8].split('\t').collect();
        assert_eq!(row.len(), 8);
        assert_eq!(row[0], "t");
        assert_eq!(row[2], "1254722767.875996");
    }

    struct Flow(crate::net::ConnId);
    impl LogRecord for Flow {
        const PATH: &'static str = "flow";
        const COLUMNS: &'static [Column] = &[super::super::col("community_id", "string")];
        fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
            f(Value::CommunityId(self.0));
        }
    }

    /// The writer's seed makes the column (the published vector of
    /// 1.2.3.4:1122 → 5.6.7.8:3344).
    #[test]
    fn community_id_uses_the_writers_seed() {
        let id = crate::net::ConnId {
            orig_h: "1.2.3.4".parse().unwrap(),
            orig_p: 1122,
            resp_h: "5.6.7.8".parse().unwrap(),
            resp_p: 3344,
        };
        for (seed, want) in [
            (0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
            (1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        ] {
            let opts = LineOptions {
                community_id_seed: seed,
                path_fields: false,
                ..LineOptions::default()
            };
            let mut out = Vec::new();
            format_tsv_with(&Flow(id), &opts, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{want}\n"));
            let mut out = Vec::new();
            format_json_with(&Flow(id), &opts, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{{\"community_id\":\"{want}\"}}\n")
            );
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }
}
