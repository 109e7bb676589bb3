//! Files of a message (Zeek's file analysis for SMTP): the body of each
//! MIME leaf entity is decoded as it streams past (base64,
//! quoted-printable, 7bit/8bit/binary with Zeek's line-end rules), counted,
//! sniffed for its MIME type and hashed (MD5, SHA-1, SHA-256), one line at
//! a time, never buffered. A finished file is a [`FileInfo`]: a files.log
//! row, joined to smtp.log by its `fuid`.

use std::borrow::Cow;
use std::net::IpAddr;

use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::net::{ConnId, Ts, Uid};
use crate::output::extract::{ExtractTx, file_name};

use super::anomaly::SmtpAnomaly;

/// The hashes a file gets (Zeek's `hash-all-files` policy: all three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashSet {
    pub md5: bool,
    pub sha1: bool,
    pub sha256: bool,
}

impl HashSet {
    pub const ALL: HashSet = HashSet {
        md5: true,
        sha1: true,
        sha256: true,
    };
    pub const NONE: HashSet = HashSet {
        md5: false,
        sha1: false,
        sha256: false,
    };
    /// The default of `file_hashes`: SHA-256 only. Zeek's hash-all-files
    /// policy computes all three, but on one core MD5 and SHA-1 cost more
    /// than the rest of the sensor together (docs/PERFORMANCE.md, "files.log:
    /// hashing cost"): with all three the load capture no longer holds
    /// 1 Mpps live, with SHA-256 alone it does, and SHA-256 is the hash
    /// threat-intelligence lookups key on. `file_hashes = ["md5", "sha1",
    /// "sha256"]` gives Zeek's set.
    pub const DEFAULT: HashSet = HashSet {
        md5: false,
        sha1: false,
        sha256: true,
    };
    /// The hash names, as config values and Zeek's analyzer names.
    pub const NAMES: [&'static str; 3] = ["md5", "sha1", "sha256"];

    /// Parses one name of [`HashSet::NAMES`] (any case) into `self`.
    pub fn add(&mut self, name: &str) -> bool {
        match name.trim().to_ascii_lowercase().as_str() {
            "md5" => self.md5 = true,
            "sha1" => self.sha1 = true,
            "sha256" => self.sha256 = true,
            _ => return false,
        }
        true
    }

    /// The names of the hashes in the set, in [`HashSet::NAMES`] order.
    pub fn names(self) -> Vec<&'static str> {
        let on = [self.md5, self.sha1, self.sha256];
        HashSet::NAMES
            .iter()
            .zip(on)
            .filter_map(|(n, on)| on.then_some(*n))
            .collect()
    }
}

impl Default for HashSet {
    fn default() -> Self {
        HashSet::DEFAULT
    }
}

/// What the file analysis is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileConfig {
    pub hashes: HashSet,
    /// Bytes of one file hashed at most; past it the hashes are dropped
    /// (unknown, not wrong) and `mime_file_hash_truncated` is counted.
    pub hash_max_bytes: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            hashes: HashSet::DEFAULT,
            hash_max_bytes: DEFAULT_HASH_MAX_BYTES,
        }
    }
}

/// Default of `file_hash_max_bytes`: 64 MiB, above the message size limit
/// of every common mail server (so no real attachment is cut).
pub const DEFAULT_HASH_MAX_BYTES: u64 = 64 << 20;

/// Zeek's file id: `F` and 17 base62 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fuid([u8; FUID_LEN]);

const FUID_LEN: usize = 18;

impl Fuid {
    /// The id of the `n`th file of connection `uid`: a hash of the two, so
    /// the same capture gives the same ids whatever the worker count, and
    /// two files of a run share one only by a 2^-100 accident.
    pub fn new(uid: &Uid, n: u32) -> Self {
        const ALPHABET: &[u8; 62] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        // Two FNV-1a passes with different offsets: 128 bits for 101 bits
        // of base62 digits.
        let fnv = |offset: u64| {
            let mut h = offset;
            for &b in uid.as_str().as_bytes().iter().chain(&n.to_be_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        };
        let mut v = u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64
            | u128::from(fnv(0x8422_2325_cbf2_9ce4).rotate_left(17));
        let mut id = [b'F'; FUID_LEN];
        for c in id.iter_mut().skip(1) {
            *c = ALPHABET[(v % 62) as usize];
            v /= 62;
        }
        Fuid(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from the alphabet above.
        std::str::from_utf8(&self.0).unwrap_or("F")
    }
}

impl std::fmt::Debug for Fuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A MIME type: the common ones (what sniffing gives, the usual
/// Content-Types) without an allocation.
pub type MimeType = Cow<'static, str>;

/// Content-Types met often enough to be kept without a copy.
const COMMON_TYPES: &[&str] = &[
    "text/plain",
    "text/html",
    "application/octet-stream",
    "application/pdf",
    "application/zip",
    "image/png",
    "image/jpeg",
    "image/gif",
    "message/rfc822",
    "text/calendar",
    "text/csv",
    "text/x-diff",
    "text/x-patch",
    "application/msword",
    "application/vnd.ms-excel",
];

/// Longest Content-Type media type kept for files.log (`type/subtype`).
const MAX_MEDIA_LEN: usize = 128;

/// The media type of a Content-Type value's `type/subtype` (trimmed), in
/// lower case; `None` when it is not one or is too long.
pub fn media_type(media: &[u8]) -> Option<MimeType> {
    if !media.contains(&b'/') || media.len() > MAX_MEDIA_LEN {
        return None;
    }
    if let Some(t) = COMMON_TYPES
        .iter()
        .find(|t| t.as_bytes().eq_ignore_ascii_case(media))
    {
        return Some(Cow::Borrowed(t));
    }
    Some(Cow::Owned(
        String::from_utf8_lossy(media).to_ascii_lowercase(),
    ))
}

/// The transfer encoding of an entity (Content-Transfer-Encoding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary, or anything unknown: the bytes as they are.
    #[default]
    Identity,
    QuotedPrintable,
    Base64,
}

impl Encoding {
    /// From a Content-Transfer-Encoding value (its first token, any case).
    pub fn from_header(value: &[u8]) -> Self {
        let token = value
            .split(|&b| b == b';' || b == b' ' || b == b'\t' || b == b'(')
            .find(|t| !t.is_empty())
            .unwrap_or_default();
        if token.eq_ignore_ascii_case(b"base64") {
            Encoding::Base64
        } else if token.eq_ignore_ascii_case(b"quoted-printable") {
            Encoding::QuotedPrintable
        } else {
            Encoding::Identity
        }
    }
}

/// The hashes of a finished file; `None` for one that is off or was cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hashes {
    pub md5: Option<[u8; 16]>,
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
}

/// One finished file: a row of files.log.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    /// Time of the file's first byte.
    pub ts: Ts,
    pub fuid: Fuid,
    pub uid: Uid,
    pub id: ConnId,
    /// Zeek's SMTP depth: the number of MIME entities the connection had
    /// begun when this file's entity began (containers count too).
    pub depth: u32,
    /// The hashes that ran on it (Zeek's `analyzers`).
    pub analyzers: HashSet,
    pub mime_type: Option<MimeType>,
    pub filename: Option<String>,
    /// From the first byte to the last, in microseconds.
    pub duration_us: u64,
    /// Whether `id.orig_h` is in `local_nets`; unknown without them.
    pub local_orig: Option<bool>,
    pub seen_bytes: u64,
    pub missing_bytes: u64,
    /// The connection ended inside the part.
    pub timedout: bool,
    pub hashes: Hashes,
    /// Its extraction, when extraction is on (files.log's `extracted`
    /// columns are there only then).
    pub extract: Option<Extracted>,
}

/// What extraction did with a file (files.log `extracted`,
/// `extracted_cutoff`, `extracted_size`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The file's name in `extract_dir`; `None`: not extracted (not an
    /// attachment, or the writer's queue was full at its start).
    pub name: Option<String>,
    /// A cap or a full queue stopped it: the file holds its first bytes.
    pub cutoff: bool,
    /// Bytes handed to the writer.
    pub size: u64,
}

/// The extraction of the open file.
struct Extracting {
    tx: ExtractTx,
    fuid: Fuid,
    /// Opened with the writer (at the first byte).
    name: Option<String>,
    sent: u64,
    cutoff: bool,
}

/// Bytes of a file's start kept for sniffing its type.
const SNIFF_LEN: usize = 64;

/// How a file's type is told from its first bytes: (magic at offset 0,
/// MIME type), the types libmagic (Zeek) reports for them.
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"MZ", "application/x-dosexec"),
    (b"\x7fELF", "application/x-executable"),
    (b"\x1f\x8b", "application/x-gzip"),
    (b"Rar!\x1a\x07", "application/x-rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "application/vnd.ms-office",
    ),
    (b"{\\rtf", "text/rtf"),
    (b"%!PS", "application/postscript"),
    (b"BZh", "application/x-bzip2"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/x-ms-bmp"),
    (b"<?xml", "application/xml"),
    (b"Index: ", "text/x-diff"),
];

/// Bytes of a file's start searched for a patch (Zeek's file signatures
/// match the first 4096 bytes, its `default_file_bof_buffer_size`).
const DIFF_SCAN_LEN: u32 = 4096;

/// Finds a patch in a file's first [`DIFF_SCAN_LEN`] bytes as it streams:
/// a line starting `diff ` (git, `diff -u`), or a `--- ` line followed by
/// a `+++ ` line (a unified diff without its command line). Mail carries
/// patches after their description, so the signature is not at offset 0.
/// Only line starts are looked at (memchr finds them); the first bytes of
/// a line cut between two deliveries are kept, so any cutting of the same
/// bytes finds the same.
#[derive(Clone, Copy, Debug)]
struct DiffScan {
    seen: u32,
    /// The first bytes of the line that started last, while fewer than
    /// `PREFIX` of them have come (`open`).
    tail: [u8; PREFIX],
    tail_len: u8,
    open: bool,
    minus_seen: bool,
    found: bool,
}

/// Bytes of a line start compared: the longest pattern, `diff `.
const PREFIX: usize = 5;

impl Default for DiffScan {
    fn default() -> Self {
        DiffScan::new()
    }
}

impl DiffScan {
    fn new() -> Self {
        // The start of the file is a line start.
        DiffScan {
            seen: 0,
            tail: [0; PREFIX],
            tail_len: 0,
            open: true,
            minus_seen: false,
            found: false,
        }
    }

    /// A line start's first bytes (fewer when the line is shorter).
    fn check(&mut self, start: &[u8]) {
        if start.starts_with(b"diff ") {
            self.found = true;
        } else if start.starts_with(b"--- ") {
            self.minus_seen = true;
        } else if start.starts_with(b"+++ ") && self.minus_seen {
            self.found = true;
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.found || self.seen >= DIFF_SCAN_LEN {
            return;
        }
        let room = (DIFF_SCAN_LEN - self.seen) as usize;
        let bytes = bytes.get(..room.min(bytes.len())).unwrap_or_default();
        self.seen += bytes.len() as u32;
        let mut i = 0;
        // Complete the line start the last delivery ended in.
        while self.open && i < bytes.len() {
            let Some(&b) = bytes.get(i) else { break };
            i += 1;
            if b == b'\n' {
                let tail = self.tail;
                self.check(tail.get(..usize::from(self.tail_len)).unwrap_or_default());
                self.tail_len = 0;
                continue;
            }
            if let Some(t) = self.tail.get_mut(usize::from(self.tail_len)) {
                *t = b;
            }
            self.tail_len += 1;
            if usize::from(self.tail_len) == PREFIX {
                let tail = self.tail;
                self.check(&tail);
                self.open = false;
            }
        }
        let rest = bytes.get(i..).unwrap_or_default();
        let mut last_start = None;
        for nl in memchr::memchr_iter(b'\n', rest) {
            let line = rest.get(nl + 1..).unwrap_or_default();
            if line.len() >= PREFIX {
                self.check(line.get(..PREFIX).unwrap_or_default());
            } else {
                last_start = Some(line);
            }
        }
        // A line start too close to the end: its bytes wait for the next
        // delivery (a shorter line among them was checked above as far as
        // it goes: its own line end is in `rest`, so it is not the last).
        if let Some(line) = last_start
            && !line.contains(&b'\n')
        {
            self.tail = [0; PREFIX];
            if let Some(t) = self.tail.get_mut(..line.len()) {
                t.copy_from_slice(line);
            }
            self.tail_len = line.len() as u8;
            self.open = true;
        }
    }
}

/// Tags that open an HTML document (after blanks, any case).
const HTML_STARTS: &[&[u8]] = &[b"<!doctype html", b"<html", b"<head", b"<body"];

/// The MIME type of content starting with `head`, if its bytes tell it.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return Some(t);
    }
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let text = head.get(start..).unwrap_or_default();
    if HTML_STARTS.iter().any(|t| {
        text.get(..t.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(t))
    }) {
        return Some("text/html");
    }
    None
}

/// Text that libmagic calls `text/plain`: no control bytes but blanks and
/// line ends (UTF-8 and Latin-1 bytes allowed).
fn looks_like_text(head: &[u8]) -> bool {
    !head.is_empty()
        && head
            .iter()
            .all(|&b| b >= 0x20 && b != 0x7f || matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
}

/// The base64 alphabet's values; 0xff: not in it.
const B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t
};

/// The running hashes of a file.
#[derive(Clone, Default)]
struct Hashers {
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

/// The file of the entity whose body is streaming (at most one is open:
/// the innermost entity of a message). Kept by the MIME tracker and reused
/// from file to file.
#[derive(Default)]
pub struct OpenFile {
    open: bool,
    /// A byte was delivered (the file exists for Zeek).
    started: bool,
    pub depth: u32,
    encoding: Encoding,
    /// Lines of an entity inside a multipart end with a CRLF that belongs
    /// to the next boundary: it is added only when another line follows.
    hold_last_crlf: bool,
    held_crlf: bool,
    /// Base64 quantum being collected and its length.
    quad: [u8; 4],
    quad_len: u8,
    pads: u8,
    bad_encoding: bool,
    encoding_counted: bool,
    header_type: Option<MimeType>,
    filename: Option<String>,
    first: Ts,
    last: Ts,
    seen: u64,
    missing: u64,
    hashed: u64,
    hash_cut: bool,
    hashers: Hashers,
    head: Vec<u8>,
    diff: DiffScan,
    /// A decoded line (quoted-printable, base64), reused.
    out: Vec<u8>,
    /// `None` unless extraction is on: nothing to do per byte then.
    extract: Option<Box<Extracting>>,
    /// Extraction is on (the row gets the extraction columns).
    extract_on: bool,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("open", &self.open)
            .field("depth", &self.depth)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

/// What opening a file needs to know about its entity.
pub struct EntityFacts {
    pub depth: u32,
    pub encoding: Encoding,
    /// The parent is a multipart entity (Zeek's CRLF rule).
    pub in_multipart: bool,
    /// The entity's media type from its Content-Type, lower case.
    pub header_type: Option<MimeType>,
    pub filename: Option<String>,
    /// Where the file's bytes go when it is extracted, and its fuid.
    pub extract: Option<(ExtractTx, Fuid)>,
    /// Extraction is on for the run (whether or not this file is taken).
    pub extract_on: bool,
}

impl OpenFile {
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Forgets an open file without a row (its connection is gone).
    pub fn discard(&mut self) {
        self.open = false;
        self.hashers = Hashers::default();
        self.end_extract();
    }

    /// Tells the writer the file ended; what it did, for the row.
    fn end_extract(&mut self) -> Option<Extracted> {
        let x = self.extract.take()?;
        if x.name.is_some() {
            x.tx.close(x.fuid);
        }
        Some(Extracted {
            name: x.name,
            cutoff: x.cutoff,
            size: x.sent,
        })
    }

    /// Hands delivered bytes to the extraction writer (opened at the
    /// first byte: its name carries the file's time).
    fn extract_bytes(&mut self, bytes: &[u8]) {
        let first = self.first;
        let Some(x) = self.extract.as_deref_mut() else {
            return;
        };
        if x.cutoff {
            return;
        }
        if x.name.is_none() {
            let name = file_name(first, &x.fuid);
            if !x.tx.open(x.fuid, name.clone()) {
                // Not extracted at all: the row says so (no name).
                self.extract = None;
                return;
            }
            x.name = Some(name);
        }
        let (n, cut) = x.tx.data(x.fuid, x.sent, bytes);
        x.sent += n;
        x.cutoff = cut.is_some();
    }

    /// Starts the file of an entity whose body begins.
    pub fn open(&mut self, facts: EntityFacts, cfg: &FileConfig) {
        let h = cfg.hashes;
        *self = OpenFile {
            open: true,
            depth: facts.depth,
            encoding: facts.encoding,
            hold_last_crlf: facts.in_multipart,
            header_type: facts.header_type,
            filename: facts.filename,
            hashers: Hashers {
                md5: h.md5.then(Md5::new),
                sha1: h.sha1.then(Sha1::new),
                sha256: h.sha256.then(Sha256::new),
            },
            head: std::mem::take(&mut self.head),
            diff: DiffScan::new(),
            out: std::mem::take(&mut self.out),
            extract: facts.extract.map(|(tx, fuid)| {
                Box::new(Extracting {
                    tx,
                    fuid,
                    name: None,
                    sent: 0,
                    cutoff: false,
                })
            }),
            extract_on: facts.extract_on,
            ..OpenFile::default()
        };
        self.head.clear();
        self.out.clear();
    }

    /// One body line (without its line end), at network time `now`.
    pub fn line(&mut self, line: &[u8], now: Ts, cfg: &FileConfig, an: &mut Vec<SmtpAnomaly>) {
        if !self.open {
            return;
        }
        match self.encoding {
            Encoding::Identity => {
                if self.held_crlf {
                    self.held_crlf = false;
                    self.deliver(b"\r\n", now, cfg, an);
                }
                self.deliver(line, now, cfg, an);
                if self.hold_last_crlf {
                    self.held_crlf = true;
                } else {
                    self.deliver(b"\r\n", now, cfg, an);
                }
            }
            Encoding::QuotedPrintable => {
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                if decode_qp_line(line, &mut out) {
                    self.illegal_encoding(an);
                }
                self.deliver(&out, now, cfg, an);
                self.out = out;
            }
            Encoding::Base64 => self.base64(line, now, cfg, an),
        }
    }

    /// Complete lines with their line ends, stepped over by the body fast
    /// path: the same as handing in each line.
    pub fn lines(&mut self, data: &[u8], now: Ts, cfg: &FileConfig, an: &mut Vec<SmtpAnomaly>) {
        if !self.open {
            return;
        }
        match self.encoding {
            // Line ends are not base64: the decoder skips them anyway.
            Encoding::Base64 => return self.base64(data, now, cfg, an),
            // Lines that all end in exactly CRLF are, decoded, the run
            // itself: one delivery (and one hash update) for the run.
            Encoding::Identity if crlf_lines_only(data) => {
                if self.held_crlf {
                    self.held_crlf = false;
                    self.deliver(b"\r\n", now, cfg, an);
                }
                let body = data.get(..data.len() - 2).unwrap_or_default();
                self.deliver(body, now, cfg, an);
                if self.hold_last_crlf {
                    self.held_crlf = true;
                } else {
                    self.deliver(b"\r\n", now, cfg, an);
                }
                return;
            }
            _ => {}
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            let body = data.get(start..end).unwrap_or_default();
            self.line(super::lines::strip_crs(body), now, cfg, an);
            start = end + 1;
        }
        if let Some(rest) = data.get(start..).filter(|r| !r.is_empty()) {
            // Not a complete line (the caller hands complete ones).
            self.line(rest, now, cfg, an);
        }
    }

    fn base64(&mut self, data: &[u8], now: Ts, cfg: &FileConfig, an: &mut Vec<SmtpAnomaly>) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(data.len() / 4 * 3 + 3);
        let mut i = 0;
        while i < data.len() {
            // Whole groups of four alphabet bytes, the usual case.
            if self.quad_len == 0 {
                while let Some(&[w, x, y, z]) = data.get(i..i + 4) {
                    let (a, b, c, d) = (
                        B64[usize::from(w)],
                        B64[usize::from(x)],
                        B64[usize::from(y)],
                        B64[usize::from(z)],
                    );
                    // 0xff (not in the alphabet) is the only value >= 64.
                    if (a | b | c | d) & 0xc0 != 0 {
                        break;
                    }
                    out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
                    i += 4;
                }
            }
            let Some(&ch) = data.get(i) else {
                break;
            };
            i += 1;
            self.base64_byte(ch, &mut out);
        }
        if self.bad_encoding {
            self.illegal_encoding(an);
        }
        self.deliver(&out, now, cfg, an);
        self.out = out;
    }

    /// One byte of base64 outside a whole group: padding, line ends,
    /// junk, or a group split across lines.
    fn base64_byte(&mut self, c: u8, out: &mut Vec<u8>) {
        let v = B64[usize::from(c)];
        if v == 0xff {
            match c {
                b'\r' | b'\n' | b' ' | b'\t' => return,
                b'=' => {
                    self.pads += 1;
                    if let Some(q) = self.quad.get_mut(usize::from(self.quad_len)) {
                        *q = 0;
                    }
                    self.quad_len += 1;
                }
                _ => {
                    self.bad_encoding = true;
                    return;
                }
            }
        } else {
            if self.pads > 0 {
                // Data after padding: a new group (Zeek decodes on).
                self.bad_encoding = true;
                self.pads = 0;
            }
            if let Some(q) = self.quad.get_mut(usize::from(self.quad_len)) {
                *q = v;
            }
            self.quad_len += 1;
        }
        if self.quad_len == 4 {
            let [a, b, c, d] = self.quad;
            let bytes = [a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d];
            let n = 3usize.saturating_sub(usize::from(self.pads));
            out.extend_from_slice(bytes.get(..n).unwrap_or_default());
            self.quad_len = 0;
            self.pads = 0;
        }
    }

    /// `mime_illegal_encoding`, counted once per file.
    fn illegal_encoding(&mut self, an: &mut Vec<SmtpAnomaly>) {
        if !self.encoding_counted {
            self.encoding_counted = true;
            an.push(SmtpAnomaly::IllegalEncoding);
        }
    }

    fn deliver(&mut self, bytes: &[u8], now: Ts, cfg: &FileConfig, an: &mut Vec<SmtpAnomaly>) {
        if bytes.is_empty() {
            return;
        }
        if !self.started {
            self.started = true;
            self.first = now;
        }
        self.last = now;
        self.seen += bytes.len() as u64;
        if self.head.len() < SNIFF_LEN {
            let room = SNIFF_LEN - self.head.len();
            self.head
                .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        }
        self.diff.feed(bytes);
        if self.extract.is_some() {
            self.extract_bytes(bytes);
        }
        if self.hash_cut {
            return;
        }
        if self.hashed + bytes.len() as u64 > cfg.hash_max_bytes {
            self.hash_cut = true;
            self.hashers = Hashers::default();
            an.push(SmtpAnomaly::FileHashTruncated);
            return;
        }
        self.hashed += bytes.len() as u64;
        let h = &mut self.hashers;
        if let Some(m) = h.md5.as_mut() {
            m.update(bytes);
        }
        if let Some(s) = h.sha1.as_mut() {
            s.update(bytes);
        }
        if let Some(s) = h.sha256.as_mut() {
            s.update(bytes);
        }
    }

    /// `len` bytes of the part are missing (a TCP gap).
    pub fn gap(&mut self, len: u64, now: Ts) {
        if !self.open {
            return;
        }
        if !self.started {
            self.started = true;
            self.first = now;
        }
        self.last = now;
        self.missing = self.missing.saturating_add(len);
        // Hashes of a file with a hole are of no use for a lookup; an
        // extracted file would have a hole nobody sees: it ends here.
        if let Some(x) = self.extract.as_deref_mut() {
            x.cutoff = true;
        }
        self.hash_cut = true;
        self.hashers = Hashers::default();
    }

    /// Ends the file. `None` when it never got a byte (no file for Zeek).
    /// `timedout`: the connection ended inside the part.
    pub fn close(
        &mut self,
        timedout: bool,
        conn: (&Uid, &ConnId, Option<bool>),
        n: u32,
        cfg: &FileConfig,
        an: &mut Vec<SmtpAnomaly>,
    ) -> Option<FileInfo> {
        if !self.open {
            return None;
        }
        self.open = false;
        if self.encoding == Encoding::Base64 && self.quad_len != 0 {
            // An incomplete group: its whole bytes, as Zeek's decoder.
            let len = usize::from(self.quad_len);
            let [a, b, c, _] = self.quad;
            let bytes = [a << 2 | b >> 4, b << 4 | c >> 2];
            let whole = (len * 6 / 8).saturating_sub(usize::from(self.pads));
            self.quad_len = 0;
            self.illegal_encoding(an);
            let now = self.last;
            self.deliver(bytes.get(..whole).unwrap_or_default(), now, cfg, an);
        }
        let extracted = self.end_extract();
        if !self.started {
            return None;
        }
        let extract = extracted.or_else(|| self.extract_on.then(Extracted::default));
        let hashers = std::mem::take(&mut self.hashers);
        let hashes = if self.hash_cut {
            Hashes::default()
        } else {
            Hashes {
                md5: hashers.md5.map(|h| h.finalize().into()),
                sha1: hashers.sha1.map(|h| h.finalize().into()),
                sha256: hashers.sha256.map(|h| h.finalize().into()),
            }
        };
        let mime_type = sniff(&self.head)
            .or(self.diff.found.then_some("text/x-diff"))
            .map(Cow::Borrowed)
            .or_else(|| self.header_type.take())
            .or_else(|| looks_like_text(&self.head).then_some(Cow::Borrowed("text/plain")));
        let (uid, id, local_orig) = conn;
        Some(FileInfo {
            ts: self.first,
            fuid: Fuid::new(uid, n),
            uid: *uid,
            id: *id,
            depth: self.depth,
            analyzers: cfg.hashes,
            mime_type,
            filename: self.filename.take(),
            duration_us: self.last.0.saturating_sub(self.first.0),
            local_orig,
            seen_bytes: self.seen,
            missing_bytes: self.missing,
            timedout,
            hashes,
            extract,
        })
    }
}

/// Decodes one quoted-printable line as Zeek does: trailing blanks
/// dropped, `=XX` decoded, a final `=` a soft line break, else CRLF
/// appended; bytes that are not legal pass as they are. Returns whether
/// any was illegal.
fn decode_qp_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    let end = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let body = line.get(..end).unwrap_or_default();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut illegal = false;
    let mut soft = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'=' {
            if i + 1 == body.len() {
                soft = true;
                i += 1;
                continue;
            }
            // Zeek looks for the two digits within the whole line
            // (trailing blanks included).
            match (
                line.get(i + 1).and_then(|&c| hex(c)),
                line.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) if i + 2 < line.len() => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    illegal = true;
                    out.push(b);
                    i += 1;
                }
            }
            continue;
        }
        if !(b == b'\t' || (b' '..=b'~').contains(&b)) {
            illegal = true;
        }
        out.push(b);
        i += 1;
    }
    if !soft {
        out.extend_from_slice(b"\r\n");
    }
    illegal
}

/// Whether `data` is lines that each end in exactly CRLF (no bare LF, no
/// `\r\r\n`), so that decoding them line by line gives `data` back.
fn crlf_lines_only(data: &[u8]) -> bool {
    data.ends_with(b"\r\n")
        && memchr::memchr_iter(b'\n', data).all(|i| {
            i.checked_sub(1).and_then(|p| data.get(p)) == Some(&b'\r')
                && i.checked_sub(2).and_then(|p| data.get(p)) != Some(&b'\r')
        })
}

/// Lower-case hex of a digest, for the logs.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Whether `addr` is local for `local_orig` (unknown without `local_nets`).
pub fn local_orig(local_nets: &[ipnet::IpNet], addr: IpAddr) -> Option<bool> {
    if local_nets.is_empty() {
        None
    } else {
        Some(local_nets.iter().any(|n| n.contains(&addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(encoding: Encoding, in_multipart: bool) -> EntityFacts {
        EntityFacts {
            depth: 1,
            encoding,
            in_multipart,
            header_type: media_type(b"Application/X-Test"),
            filename: None,
            extract: None,
            extract_on: false,
        }
    }

    fn conn() -> (Uid, ConnId) {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 1,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        (Uid::new(&id, Ts(1)), id)
    }

    /// The file of `lines` (handed in one by one), and the anomalies.
    fn decode(
        encoding: Encoding,
        in_multipart: bool,
        lines: &[&[u8]],
        cfg: &FileConfig,
    ) -> (Option<FileInfo>, Vec<SmtpAnomaly>) {
        let mut f = OpenFile::default();
        let mut an = Vec::new();
        f.open(facts(encoding, in_multipart), cfg);
        for l in lines {
            f.line(l, Ts(5), cfg, &mut an);
        }
        let (uid, id) = conn();
        (f.close(false, (&uid, &id, None), 0, cfg, &mut an), an)
    }

    /// Every hash (the default is SHA-256 only): the decoder tests check
    /// the SHA-1 of the decoded bytes.
    fn all_hashes() -> FileConfig {
        FileConfig {
            hashes: HashSet::ALL,
            ..FileConfig::default()
        }
    }

    fn sha1_of(bytes: &[u8]) -> [u8; 20] {
        Sha1::digest(bytes).into()
    }

    #[test]
    fn identity_keeps_line_ends_but_the_one_before_a_boundary() {
        let cfg = all_hashes();
        let (f, _) = decode(Encoding::Identity, true, &[b"a", b"b", b""], &cfg);
        let f = f.unwrap();
        assert_eq!(f.seen_bytes, 6);
        assert_eq!(f.hashes.sha1, Some(sha1_of(b"a\r\nb\r\n")));
        // Outside a multipart (a message's only entity) every line ends.
        let (f, _) = decode(Encoding::Identity, false, &[b"a", b"b"], &cfg);
        assert_eq!(f.unwrap().hashes.sha1, Some(sha1_of(b"a\r\nb\r\n")));
    }

    #[test]
    fn quoted_printable_as_zeek_decodes_it() {
        let cfg = all_hashes();
        let lines: &[&[u8]] = &[
            b"caf=C3=A9 =3D x  \t",
            b"soft=",
            b"break",
            b"bad=ZZ=4",
            b"end=",
        ];
        let (f, an) = decode(Encoding::QuotedPrintable, true, lines, &cfg);
        let want = b"caf\xc3\xa9 = x\r\nsoftbreak\r\nbad=ZZ=4\r\nend";
        assert_eq!(f.unwrap().hashes.sha1, Some(sha1_of(want)));
        assert_eq!(an, [SmtpAnomaly::IllegalEncoding]);
    }

    #[test]
    fn base64_skips_junk_and_decodes_what_it_can() {
        let cfg = all_hashes();
        // "hello world" in base64, cut across lines, with padding.
        let (f, an) = decode(
            Encoding::Base64,
            true,
            &[b"aGVsbG8g", b"d29y", b"bGQ="],
            &cfg,
        );
        assert_eq!(f.unwrap().hashes.sha1, Some(sha1_of(b"hello world")));
        assert!(an.is_empty());
        // Junk bytes are skipped and counted once; an incomplete last group
        // gives its whole bytes.
        let (f, an) = decode(Encoding::Base64, true, &[b"aG!V*s", b"bG8gd2"], &cfg);
        let f = f.unwrap();
        assert_eq!(f.hashes.sha1, Some(sha1_of(b"hello w")));
        assert_eq!(an, [SmtpAnomaly::IllegalEncoding]);
        // Only junk: no byte, no file (Zeek makes none either).
        let (f, an) = decode(Encoding::Base64, true, &[b"!!!!", b"*"], &cfg);
        assert!(f.is_none());
        assert_eq!(an, [SmtpAnomaly::IllegalEncoding]);
    }

    #[test]
    fn fast_path_lines_equal_lines_one_by_one() {
        let cfg = FileConfig::default();
        let (uid, id) = conn();
        let mixed: &[u8] = b"line one\r\nline two\r\r\n\r\nbare lf\nlast\r\n";
        let crlf: &[u8] = b"aGVs\r\nbG8=\r\n\r\nx=3D\r\n";
        for raw in [mixed, crlf] {
            let lines: Vec<&[u8]> = raw
                .split(|&b| b == b'\n')
                .map(crate::smtp::lines::strip_crs)
                .collect();
            let lines = &lines[..lines.len() - 1];
            for enc in [
                Encoding::Identity,
                Encoding::QuotedPrintable,
                Encoding::Base64,
            ] {
                for in_multipart in [true, false] {
                    let mut a = OpenFile::default();
                    let mut b = OpenFile::default();
                    let mut an = Vec::new();
                    a.open(facts(enc, in_multipart), &cfg);
                    b.open(facts(enc, in_multipart), &cfg);
                    // Twice: the held line end between two runs too.
                    a.lines(raw, Ts(1), &cfg, &mut an);
                    a.lines(raw, Ts(1), &cfg, &mut an);
                    for l in lines.iter().chain(lines) {
                        b.line(l, Ts(1), &cfg, &mut an);
                    }
                    let fa = a.close(false, (&uid, &id, None), 0, &cfg, &mut an);
                    let fb = b.close(false, (&uid, &id, None), 0, &cfg, &mut an);
                    assert_eq!(fa, fb, "{enc:?} {in_multipart}");
                }
            }
        }
    }

    #[test]
    fn hash_cap_drops_hashes_not_sizes() {
        let cfg = FileConfig {
            hashes: HashSet::ALL,
            hash_max_bytes: 5,
        };
        let (f, an) = decode(Encoding::Identity, true, &[b"abc", b"def"], &cfg);
        let f = f.unwrap();
        assert_eq!(f.seen_bytes, 8);
        assert_eq!(f.hashes, Hashes::default());
        assert_eq!(an, [SmtpAnomaly::FileHashTruncated]);
        let none = FileConfig {
            hashes: HashSet::NONE,
            ..FileConfig::default()
        };
        let (f, an) = decode(Encoding::Identity, true, &[b"abc"], &none);
        assert_eq!(f.unwrap().hashes, Hashes::default());
        assert!(an.is_empty());
    }

    #[test]
    fn sniffing_magic_html_patches_then_the_header() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"MZ\x90\0"), Some("application/x-dosexec"));
        assert_eq!(sniff(b"  \r\n<!DOCTYPE HTML PUBLIC"), Some("text/html"));
        assert_eq!(sniff(b"hello"), None);
        let cfg = FileConfig::default();
        let (f, _) = decode(Encoding::Identity, true, &[b"%PDF-1.4", b"x"], &cfg);
        assert_eq!(f.unwrap().mime_type.as_deref(), Some("application/pdf"));
        // A patch after its description.
        let (f, _) = decode(
            Encoding::Identity,
            true,
            &[
                b"Fix a bug.",
                b"",
                b"diff --git a/x b/x",
                b"--- a/x",
                b"+++ b/x",
            ],
            &cfg,
        );
        assert_eq!(f.unwrap().mime_type.as_deref(), Some("text/x-diff"));
        // However the bytes are cut, the same patches are found.
        let texts: [&[u8]; 4] = [
            b"Fix.\r\n\r\ndiff --git a/x b/x\r\n",
            b"text\n--- a/x\n+++ b/x\n@@",
            b"--- \n+++ x",
            b"+++ b/x\n--- a/x\nno plus after\ndif",
        ];
        for (t, want) in texts.iter().zip([true, true, true, false]) {
            let mut whole = DiffScan::new();
            whole.feed(t);
            assert_eq!(whole.found, want, "{t:?}");
            for at in 0..t.len() {
                let mut two = DiffScan::new();
                two.feed(&t[..at]);
                two.feed(&t[at..]);
                assert_eq!(two.found, want, "{t:?} cut at {at}");
            }
            let mut bytewise = DiffScan::new();
            for b in t.iter() {
                bytewise.feed(std::slice::from_ref(b));
            }
            assert_eq!(bytewise.found, want, "{t:?} byte by byte");
        }
        // Nothing to tell: the part's Content-Type.
        let (f, _) = decode(Encoding::Identity, true, &[b"plain words"], &cfg);
        assert_eq!(f.unwrap().mime_type.as_deref(), Some("application/x-test"));
    }

    #[test]
    fn fuids_are_zeeks_form_and_differ() {
        let (uid, _) = conn();
        let a = Fuid::new(&uid, 0);
        let b = Fuid::new(&uid, 1);
        assert_ne!(a, b);
        assert_eq!(a, Fuid::new(&uid, 0));
        for f in [a, b] {
            let s = f.as_str();
            assert_eq!(s.len(), 18);
            assert!(s.starts_with('F') && s.bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_eq!(Encoding::from_header(b" BASE64 "), Encoding::Base64);
        assert_eq!(
            Encoding::from_header(b"quoted-printable (x)"),
            Encoding::QuotedPrintable
        );
        assert_eq!(Encoding::from_header(b"8bit"), Encoding::Identity);
    }

    #[test]
    fn extraction_hands_the_decoded_bytes_and_a_gap_cuts_it() {
        use crate::output::extract::{ExtractMode, ExtractSettings, spawn};
        let dir = std::env::temp_dir().join(format!("files-extract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, writer) = spawn(&ExtractSettings {
            mode: ExtractMode::All,
            dir: dir.clone(),
            max_bytes: 1 << 20,
            total_bytes: 1 << 20,
            wait_when_full: false,
        })
        .unwrap();
        let cfg = FileConfig::default();
        let (uid, id) = conn();
        let run = |gap: bool| {
            let mut f = OpenFile::default();
            let mut an = Vec::new();
            let fuid = Fuid::new(&uid, u32::from(gap));
            f.open(
                EntityFacts {
                    extract: Some((tx.clone(), fuid)),
                    extract_on: true,
                    ..facts(Encoding::Base64, true)
                },
                &cfg,
            );
            f.line(b"aGVsbG8g", Ts(2_000_001), &cfg, &mut an);
            if gap {
                f.gap(10, Ts(2_000_002));
            }
            f.line(b"d29ybGQ=", Ts(2_000_003), &cfg, &mut an);
            f.close(false, (&uid, &id, None), u32::from(gap), &cfg, &mut an)
                .unwrap()
        };
        let whole = run(false);
        let cut = run(true);
        drop(tx);
        writer.join();
        let x = whole.extract.unwrap();
        let name = x.name.unwrap();
        assert_eq!(
            name,
            format!("extract-2.000001-SMTP-{}", whole.fuid.as_str())
        );
        assert_eq!((x.cutoff, x.size), (false, 11));
        assert_eq!(std::fs::read(dir.join(&name)).unwrap(), b"hello world");
        let x = cut.extract.unwrap();
        assert_eq!((x.cutoff, x.size), (true, 6));
        assert_eq!(std::fs::read(dir.join(x.name.unwrap())).unwrap(), b"hello ");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gap_counts_and_drops_the_hashes() {
        let cfg = FileConfig::default();
        let mut f = OpenFile::default();
        let mut an = Vec::new();
        f.open(facts(Encoding::Identity, true), &cfg);
        f.line(b"before", Ts(1), &cfg, &mut an);
        f.gap(1000, Ts(2));
        let (uid, id) = conn();
        let info = f
            .close(false, (&uid, &id, Some(true)), 3, &cfg, &mut an)
            .unwrap();
        assert_eq!((info.seen_bytes, info.missing_bytes), (6, 1000));
        assert_eq!(info.hashes, Hashes::default());
        assert_eq!(info.local_orig, Some(true));
        assert_eq!(info.duration_us, 1);
        assert_eq!(info.fuid, Fuid::new(&uid, 3));
    }
}
