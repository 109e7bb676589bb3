//! MIME structure of a message body: which lines are headers of which
//! entity, where multipart boundaries start and end parts, attached
//! messages (message/rfc822), and the file name of each entity
//! (Content-Disposition `filename=`, or Content-Type `name=`, quotes
//! removed, RFC 2231 `filename*=` decoded).
//!
//! Only the headers the sensor uses are unfolded and kept: the top-level
//! entity's headers go to the transaction (through `HeaderSink`), nested
//! entities' headers are read for file names, types and transfer
//! encodings only, as Zeek does. The body of the innermost entity streams
//! into its file (`files::OpenFile`), which the sink gets when it ends.

use memchr::{memchr, memchr2};

use crate::net::{ConnId, ConnInfo, Ts, Uid};
use crate::output::extract::ExtractTx;

use super::anomaly::SmtpAnomaly;
use super::files::{
    Encoding, EntityFacts, FileConfig, FileInfo, Fuid, MimeType, OpenFile, media_type,
};
use super::limits::SmtpLimits;
use super::lines::KEEP_CAPACITY;
use super::parser::{bytes_into_string, parse_header, trim};
use super::text::lossy;

/// What the MIME tracker reports to the transaction it fills.
pub trait HeaderSink {
    /// A complete header of the top-level entity.
    fn top_header(&mut self, name: &[u8], value: &[u8]);
    /// The file name of an entity, once its headers are complete.
    fn file(&mut self, name: &str);
    /// A file (an entity's decoded body) ended.
    fn file_done(&mut self, _file: FileInfo) {}
    fn anomaly(&mut self, a: SmtpAnomaly);
}

/// Who the files of a message belong to, and how they are hashed.
#[derive(Clone, Debug)]
pub struct FileContext {
    pub uid: Uid,
    pub id: ConnId,
    pub local_orig: Option<bool>,
    pub cfg: FileConfig,
    /// The extraction writer, when extraction is on.
    pub extract: Option<ExtractTx>,
}

impl FileContext {
    pub fn new(
        conn: &ConnInfo,
        local_orig: Option<bool>,
        cfg: FileConfig,
        extract: Option<ExtractTx>,
    ) -> Self {
        FileContext {
            uid: conn.uid,
            id: conn.id,
            local_orig,
            cfg,
            extract,
        }
    }
}

impl Default for FileContext {
    fn default() -> Self {
        let id = ConnId {
            orig_h: std::net::Ipv4Addr::UNSPECIFIED.into(),
            orig_p: 0,
            resp_h: std::net::Ipv4Addr::UNSPECIFIED.into(),
            resp_p: 0,
        };
        FileContext {
            uid: Uid::new(&id, Ts(0)),
            id,
            local_orig: None,
            cfg: FileConfig::default(),
            extract: None,
        }
    }
}

/// Parameter sections of one RFC 2231 parameter kept at most.
const MAX_PARAM_SECTIONS: usize = 64;

/// Calls `f(attribute, value)` for each `; attr=value` parameter of a
/// structured header value (Content-Type, Content-Disposition). Quoted
/// values are unquoted (backslash escapes removed): handed out in place
/// when they have no escape (the usual `boundary="…"`), copied only when
/// one must be removed.
pub fn for_each_param(value: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    let Some(first) = value.iter().position(|&b| b == b';') else {
        return;
    };
    let mut i = first + 1;
    let n = value.len();
    let mut unquoted: Vec<u8> = Vec::new();
    while i < n {
        let rest = value.get(i..).unwrap_or_default();
        let seg_end = rest
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .unwrap_or(rest.len());
        if rest.get(seg_end) != Some(&b'=') {
            i += seg_end + 1;
            continue;
        }
        let attr = trim(rest.get(..seg_end).unwrap_or_default());
        i += seg_end + 1;
        while value.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
            i += 1;
        }
        if value.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let rest = value.get(i..).unwrap_or_default();
            match memchr2(b'"', b'\\', rest) {
                // No escape before the closing quote (or the end).
                None => {
                    i = n;
                    f(attr, rest);
                }
                Some(q) if rest.get(q) == Some(&b'"') => {
                    i = start + q + 1;
                    f(attr, rest.get(..q).unwrap_or_default());
                }
                Some(_) => {
                    unquoted.clear();
                    while let Some(&b) = value.get(i) {
                        i += 1;
                        match b {
                            b'"' => break,
                            b'\\' => {
                                if let Some(&e) = value.get(i) {
                                    unquoted.push(e);
                                    i += 1;
                                }
                            }
                            _ => unquoted.push(b),
                        }
                    }
                    f(attr, &unquoted);
                }
            }
            // Skip anything up to the next separator.
            while value.get(i).is_some_and(|&b| b != b';') {
                i += 1;
            }
            i += 1;
        } else {
            let rest = value.get(i..).unwrap_or_default();
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            f(attr, trim(rest.get(..end).unwrap_or_default()));
            i += end + 1;
        }
    }
}

/// The value of parameter `name` (ASCII, any case), decoded: a plain
/// `name=` value, or the RFC 2231 forms `name*=charset'lang'%xx…` and
/// `name*0=`, `name*1*=`… (continuations), which win over the plain form.
pub fn param(value: &[u8], name: &[u8]) -> Option<String> {
    param_checked(value, name, &mut false)
}

/// [`param`], setting `irregular` when RFC 2231 sections repeat a number
/// (the first one counts), leave a number out (the others are joined in
/// order) or exceed [`MAX_PARAM_SECTIONS`].
pub fn param_checked(value: &[u8], name: &[u8], irregular: &mut bool) -> Option<String> {
    let mut plain: Option<Vec<u8>> = None;
    let mut extended: Option<Vec<u8>> = None;
    // (section number, encoded?, raw bytes)
    let mut sections: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for_each_param(value, |attr, val| {
        let Some(prefix) = attr.get(..name.len()) else {
            return;
        };
        if !prefix.eq_ignore_ascii_case(name) {
            return;
        }
        let suffix = attr.get(name.len()..).unwrap_or_default();
        if suffix.is_empty() {
            plain.get_or_insert_with(|| val.to_vec());
        } else if suffix == b"*" {
            extended.get_or_insert_with(|| val.to_vec());
        } else if let Some(sec) = suffix.strip_prefix(b"*") {
            let (digits, encoded) = match sec.strip_suffix(b"*") {
                Some(d) => (d, true),
                None => (sec, false),
            };
            let num = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<u32>().ok());
            match num {
                Some(num) if sections.len() < MAX_PARAM_SECTIONS => {
                    sections.push((num, encoded, val.to_vec()));
                }
                _ => *irregular = true,
            }
        }
    });
    if let Some(ext) = extended {
        return Some(decode_rfc2231(&ext));
    }
    if !sections.is_empty() {
        // Stable: of sections with one number, the first sent stays first.
        sections.sort_by_key(|s| s.0);
        let sent = sections.len();
        sections.dedup_by_key(|s| s.0);
        if sections.len() != sent
            || sections
                .iter()
                .enumerate()
                .any(|(i, s)| u32::try_from(i).ok() != Some(s.0))
        {
            *irregular = true;
        }
        let mut charset: Option<Vec<u8>> = None;
        let mut bytes = Vec::new();
        for (i, (_, encoded, raw)) in sections.iter().enumerate() {
            if *encoded {
                let mut data = &raw[..];
                if i == 0 {
                    let (cs, rest) = split_charset(data);
                    charset = cs.map(<[u8]>::to_vec);
                    data = rest;
                }
                percent_decode_into(data, &mut bytes);
            } else {
                bytes.extend_from_slice(raw);
            }
        }
        return Some(bytes_to_string(&bytes, charset.as_deref()));
    }
    plain.map(bytes_into_string)
}

/// `charset'language'rest` → (charset, rest); without two quotes, no charset.
fn split_charset(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(q1) = data.iter().position(|&b| b == b'\'') else {
        return (None, data);
    };
    let after = data.get(q1 + 1..).unwrap_or_default();
    let Some(q2) = after.iter().position(|&b| b == b'\'') else {
        return (None, data);
    };
    (data.get(..q1), after.get(q2 + 1..).unwrap_or_default())
}

fn percent_decode_into(data: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                data.get(i + 1).and_then(|&c| hex(c)),
                data.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
}

fn bytes_to_string(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let latin1 = charset.is_some_and(|c| {
        c.eq_ignore_ascii_case(b"iso-8859-1")
            || c.eq_ignore_ascii_case(b"latin1")
            || c.eq_ignore_ascii_case(b"iso-8859-15")
            || c.eq_ignore_ascii_case(b"windows-1252")
    });
    if latin1 {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        lossy(bytes).into_owned()
    }
}

/// Decodes an RFC 2231 extended value `charset'lang'%xx…`.
pub fn decode_rfc2231(value: &[u8]) -> String {
    let (charset, data) = split_charset(value);
    let mut bytes = Vec::with_capacity(data.len());
    percent_decode_into(data, &mut bytes);
    bytes_to_string(&bytes, charset)
}

/// What the body of an entity is, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// A leaf: text, image, anything not containing entities.
    Leaf,
    /// multipart/*: parts between boundary lines.
    Multipart,
    /// message/rfc822 (and other message/*): one nested entity.
    Message,
}

/// One open MIME entity.
#[derive(Debug)]
struct Entity {
    in_header: bool,
    body: Body,
    boundary: Vec<u8>,
    /// After the closing boundary: the epilogue is ignored.
    closed: bool,
    headers: usize,
    disposition_name: Option<String>,
    type_name: Option<String>,
    /// Zeek's depth: entities the connection had begun, this one included.
    depth: u32,
    encoding: Encoding,
    /// Media type (`type/subtype`, lower case) from Content-Type.
    media: Option<MimeType>,
    /// The enclosing entity is a multipart.
    in_multipart: bool,
}

impl Entity {
    fn new(depth: u32, in_multipart: bool) -> Self {
        Entity {
            in_header: true,
            body: Body::Leaf,
            boundary: Vec::new(),
            closed: false,
            headers: 0,
            disposition_name: None,
            type_name: None,
            depth,
            encoding: Encoding::Identity,
            media: None,
            in_multipart,
        }
    }

    /// Whether body lines are this entity's content (when it is the
    /// innermost): a leaf, a multipart without a boundary (Zeek: opaque
    /// data), a message whose nested entity was past the depth limit.
    fn takes_data(&self) -> bool {
        !self.in_header
            && match self.body {
                Body::Leaf | Body::Message => true,
                Body::Multipart => self.boundary.is_empty(),
            }
    }
}

/// Which header is being unfolded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Not one the sensor uses: continuation lines are dropped.
    Skip,
    /// Kept in `header`.
    Keep,
}

/// Which body lines can change a tracker's state, so that the session can
/// step over the rest without handing each one in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineInterest {
    /// Every line (a header block is open).
    All,
    /// Lines starting with `--` (a multipart boundary is being watched).
    Boundaries,
    /// None: the open entities are leaves or closed.
    Nothing,
}

impl LineInterest {
    /// The first bytes of the lines that may matter, or `None` when every
    /// line does: `-` where a boundary is awaited, and `.` for DATA
    /// (`dot_stuffed`), where it ends the data or is unstuffed.
    pub fn marks(self, dot_stuffed: bool) -> Option<&'static [u8]> {
        match (self, dot_stuffed) {
            (LineInterest::All, _) => None,
            (LineInterest::Boundaries, true) => Some(b".-"),
            (LineInterest::Boundaries, false) => Some(b"-"),
            (LineInterest::Nothing, true) => Some(b"."),
            (LineInterest::Nothing, false) => Some(b""),
        }
    }
}

/// Tracks the MIME entities of one message body, line by line.
#[derive(Debug, Default)]
pub struct MimeTracker {
    /// Open entities, outermost first; empty before the first line.
    stack: Vec<Entity>,
    /// The header being unfolded (name and value), reused.
    header: Vec<u8>,
    keep: Option<Keep>,
    header_cut: bool,
    /// Whether the top-level entity's headers go to the transaction.
    top_headers: bool,
    /// Entities begun on the connection (Zeek's `mime_depth`).
    entities: u32,
    /// Files (rows) of the connection so far: the next fuid's number.
    files: u32,
    /// Files (rows) of the current message, at most `max_files`.
    message_files: usize,
    /// The innermost entity's file.
    file: OpenFile,
    files_ctx: FileContext,
    /// Network time of the bytes being handed in.
    now: Ts,
    /// The body is ending because the connection did (`timedout`).
    abandoned: bool,
    /// Anomalies of the file, passed on to the sink.
    file_anomalies: Vec<SmtpAnomaly>,
}

/// Headers of the top-level entity the transaction reads.
const TOP_HEADERS: &[&[u8]] = &[
    b"message-id",
    b"received",
    b"in-reply-to",
    b"subject",
    b"from",
    b"reply-to",
    b"date",
    b"to",
    b"cc",
    b"x-originating-ip",
    b"x-mailer",
    b"user-agent",
    b"x-user-agent",
    b"content-type",
    b"content-disposition",
    b"content-transfer-encoding",
];

fn header_name(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|&b| b == b':' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    line.get(..end).unwrap_or_default()
}

impl MimeTracker {
    /// Starts a new message body. `top_headers`: whether the top-level
    /// headers go to the transaction (Zeek reads them for the first body of
    /// a transaction only).
    pub fn begin(&mut self, top_headers: bool) {
        self.stack.clear();
        self.entities = self.entities.saturating_add(1);
        self.stack.push(Entity::new(self.entities, false));
        self.header.clear();
        self.keep = None;
        self.header_cut = false;
        self.top_headers = top_headers;
        self.message_files = 0;
        self.abandoned = false;
    }

    /// The connection and hashing the next messages' files get.
    pub fn set_files(&mut self, ctx: FileContext) {
        self.files_ctx = ctx;
    }

    /// Network time of the bytes handed in next.
    pub fn set_now(&mut self, now: Ts) {
        self.now = now;
    }

    /// Whether a file is streaming: the lines the session steps over on
    /// its fast path must go to [`MimeTracker::inert_lines`].
    pub fn file_open(&self) -> bool {
        self.file.is_open()
    }

    /// Complete lines (with their line ends) that change no MIME state,
    /// stepped over by the session's fast path: content of the open file.
    pub fn inert_lines(&mut self, data: &[u8], anomalies: &mut Vec<SmtpAnomaly>) {
        let cfg = self.files_ctx.cfg;
        self.file.lines(data, self.now, &cfg, anomalies);
    }

    /// `len` bytes of the body are missing (a TCP gap): the open file
    /// counts them (`missing_bytes`).
    pub fn gap(&mut self, len: u64) {
        self.file.gap(len, self.now);
    }

    /// The connection ends inside the body: the open file is `timedout`.
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Ends the open file, handing it to the sink.
    fn close_file(&mut self, sink: &mut dyn HeaderSink) {
        let ctx = &self.files_ctx;
        let done = self.file.close(
            self.abandoned,
            (&ctx.uid, &ctx.id, ctx.local_orig),
            self.files,
            &ctx.cfg,
            &mut self.file_anomalies,
        );
        if let Some(f) = done {
            self.files = self.files.saturating_add(1);
            self.message_files += 1;
            sink.file_done(f);
        }
        self.pass_file_anomalies(sink);
    }

    fn pass_file_anomalies(&mut self, sink: &mut dyn HeaderSink) {
        for a in self.file_anomalies.drain(..) {
            sink.anomaly(a);
        }
    }

    /// Opens the file of the innermost entity if its body is content.
    fn open_file(&mut self, limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        let Some(ent) = self.stack.last_mut() else {
            return;
        };
        if !ent.takes_data() || self.file.is_open() {
            return;
        }
        if self.message_files >= limits.max_files {
            sink.anomaly(SmtpAnomaly::TooManyFiles);
            return;
        }
        // The names go to the file: the record has its copy already.
        let filename = ent
            .disposition_name
            .take()
            .or_else(|| ent.type_name.take())
            .filter(|n| !n.is_empty());
        let ctx = &self.files_ctx;
        // Only one file is open at a time, so the next row's number is
        // this file's: its fuid is known before its first byte.
        let extract = ctx
            .extract
            .as_ref()
            .filter(|x| x.mode().takes(filename.is_some()))
            .map(|x| (x.clone(), Fuid::new(&ctx.uid, self.files)));
        let facts = EntityFacts {
            depth: ent.depth,
            encoding: ent.encoding,
            in_multipart: ent.in_multipart,
            header_type: ent.media.take(),
            filename,
            extract,
            extract_on: ctx.extract.is_some(),
        };
        self.file.open(facts, &self.files_ctx.cfg);
    }

    /// Whether an entity's header block is being read: a header line may
    /// come next (what would count a NUL in it).
    pub fn in_header(&self) -> bool {
        self.stack.iter().any(|e| e.in_header)
    }

    /// Forgets the body, for a new connection: buffers keep their capacity
    /// up to [`KEEP_CAPACITY`].
    pub fn recycle(&mut self) {
        let MimeTracker {
            stack,
            header,
            keep,
            header_cut,
            top_headers,
            entities,
            files,
            message_files,
            file,
            files_ctx: _,
            now,
            abandoned,
            file_anomalies,
        } = self;
        stack.clear();
        header.clear();
        header.shrink_to(KEEP_CAPACITY);
        *keep = None;
        *header_cut = false;
        *top_headers = false;
        *entities = 0;
        *files = 0;
        *message_files = 0;
        // A connection's last file ended with its body (else it is
        // dropped here); the buffers stay.
        file.discard();
        *now = Ts::default();
        *abandoned = false;
        file_anomalies.clear();
    }

    /// Which lines `line` would act on now. Holds until a line it does not
    /// ignore is handed in.
    pub fn interest(&self) -> LineInterest {
        if self.stack.iter().any(|e| e.in_header) {
            LineInterest::All
        } else if self
            .stack
            .iter()
            .any(|e| e.body == Body::Multipart && !e.boundary.is_empty())
        {
            LineInterest::Boundaries
        } else {
            LineInterest::Nothing
        }
    }

    /// One line of the body (dot-unstuffed, without line end).
    pub fn line(&mut self, line: &[u8], limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        self.framed_line(line, memchr(0, line).is_some(), limits, sink);
    }

    /// [`MimeTracker::line`] for a line whose framing already knows whether
    /// it holds a NUL (`nul`), which only header lines are counted for.
    pub fn framed_line(
        &mut self,
        line: &[u8],
        nul: bool,
        limits: &SmtpLimits,
        sink: &mut dyn HeaderSink,
    ) {
        let mut depth = 0;
        loop {
            let Some(ent) = self.stack.get(depth) else {
                return;
            };
            if ent.in_header {
                self.header_line(depth, line, nul, limits, sink);
                return;
            }
            if ent.body == Body::Multipart && !ent.boundary.is_empty() {
                if let Some((closing, exact)) = boundary_kind(line, &ent.boundary) {
                    if !exact {
                        sink.anomaly(SmtpAnomaly::BoundaryPrefixMatch);
                    }
                    // The open file is the innermost entity's, below this.
                    self.close_file(sink);
                    self.stack.truncate(depth + 1);
                    if closing {
                        if let Some(e) = self.stack.get_mut(depth) {
                            e.closed = true;
                        }
                    } else {
                        if let Some(e) = self.stack.get_mut(depth) {
                            e.closed = false;
                        }
                        self.push_child(limits, sink);
                    }
                    return;
                }
                if ent.closed {
                    return;
                }
            }
            if depth + 1 == self.stack.len() {
                if self.file.is_open() {
                    let cfg = self.files_ctx.cfg;
                    self.file
                        .line(line, self.now, &cfg, &mut self.file_anomalies);
                    self.pass_file_anomalies(sink);
                }
                return;
            }
            depth += 1;
        }
    }

    fn push_child(&mut self, limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        if self.stack.len() >= limits.max_mime_depth {
            sink.anomaly(SmtpAnomaly::MimeDepthExceeded);
            return;
        }
        let in_multipart = self.stack.last().is_some_and(|p| p.body == Body::Multipart);
        self.entities = self.entities.saturating_add(1);
        self.stack.push(Entity::new(self.entities, in_multipart));
    }

    fn header_line(
        &mut self,
        depth: usize,
        line: &[u8],
        nul: bool,
        limits: &SmtpLimits,
        sink: &mut dyn HeaderSink,
    ) {
        if line.is_empty() {
            self.finish_header(depth, sink);
            self.end_headers(depth, limits, sink);
            return;
        }
        if nul {
            sink.anomaly(SmtpAnomaly::NulInLine);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if self.keep == Some(Keep::Keep) {
                self.append(line, limits, sink);
            }
            return;
        }
        self.finish_header(depth, sink);
        let Some(ent) = self.stack.get_mut(depth) else {
            return;
        };
        ent.headers += 1;
        if ent.headers > limits.max_headers {
            if ent.headers == limits.max_headers + 1 {
                sink.anomaly(SmtpAnomaly::TooManyHeaders);
            }
            self.keep = Some(Keep::Skip);
            return;
        }
        let name = header_name(line);
        let wanted = if depth == 0 && self.top_headers {
            TOP_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
        } else {
            name.eq_ignore_ascii_case(b"content-type")
                || name.eq_ignore_ascii_case(b"content-disposition")
                || name.eq_ignore_ascii_case(b"content-transfer-encoding")
        };
        if wanted {
            self.keep = Some(Keep::Keep);
            self.header.clear();
            self.header_cut = false;
            self.append(line, limits, sink);
        } else {
            self.keep = Some(Keep::Skip);
        }
    }

    fn append(&mut self, part: &[u8], limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        let room = limits.max_header_len.saturating_sub(self.header.len());
        if part.len() > room {
            if !self.header_cut {
                sink.anomaly(SmtpAnomaly::HeaderTooLong);
                self.header_cut = true;
            }
            self.header
                .extend_from_slice(part.get(..room).unwrap_or_default());
        } else {
            self.header.extend_from_slice(part);
        }
    }

    /// Completes the header being unfolded, if any.
    fn finish_header(&mut self, depth: usize, sink: &mut dyn HeaderSink) {
        let keep = self.keep.take();
        if keep != Some(Keep::Keep) {
            return;
        }
        let header = std::mem::take(&mut self.header);
        if let Some((name, value)) = parse_header(&header) {
            // `Name :`: the colon is the first one, after the name's blanks.
            if memchr(b':', &header)
                .and_then(|c| c.checked_sub(1))
                .and_then(|b| header.get(b))
                .is_some_and(|&b| b == b' ' || b == b'\t')
            {
                sink.anomaly(SmtpAnomaly::HeaderSpaceBeforeColon);
            }
            self.structural_header(depth, name, value, sink);
            if depth == 0 && self.top_headers {
                sink.top_header(name, value);
            }
        }
        self.header = header;
        self.header.clear();
    }

    fn structural_header(
        &mut self,
        depth: usize,
        name: &[u8],
        value: &[u8],
        sink: &mut dyn HeaderSink,
    ) {
        let at = depth.min(self.stack.len());
        let (outer, inner) = self.stack.split_at_mut(at);
        let Some(ent) = inner.first_mut() else {
            return;
        };
        let mut irregular = false;
        if name.eq_ignore_ascii_case(b"content-type") {
            let media = trim(value.split(|&b| b == b';').next().unwrap_or_default());
            let top = media.split(|&b| b == b'/').next().unwrap_or_default();
            ent.media = media_type(media);
            if top.eq_ignore_ascii_case(b"multipart") {
                ent.body = Body::Multipart;
                ent.boundary.clear();
                if let Some(b) = param_checked(value, b"boundary", &mut irregular) {
                    ent.boundary.extend_from_slice(b.as_bytes());
                }
                // Enclosing entities are asked first: one whose boundary
                // begins this one's takes its delimiter lines.
                if !ent.boundary.is_empty()
                    && outer.iter().any(|o| {
                        o.body == Body::Multipart
                            && !o.boundary.is_empty()
                            && ent.boundary.starts_with(&o.boundary)
                    })
                {
                    sink.anomaly(SmtpAnomaly::BoundaryReused);
                }
            } else if top.eq_ignore_ascii_case(b"message") {
                ent.body = Body::Message;
            } else {
                ent.body = Body::Leaf;
            }
            if let Some(n) = param_checked(value, b"name", &mut irregular) {
                ent.type_name = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"content-disposition")
            && let Some(n) = param_checked(value, b"filename", &mut irregular)
        {
            ent.disposition_name = Some(n);
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            ent.encoding = Encoding::from_header(value);
        }
        if irregular {
            sink.anomaly(SmtpAnomaly::Rfc2231BadContinuation);
        }
    }

    fn end_headers(&mut self, depth: usize, limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        let Some(ent) = self.stack.get_mut(depth) else {
            return;
        };
        ent.in_header = false;
        if let Some(name) = ent
            .disposition_name
            .as_ref()
            .or(ent.type_name.as_ref())
            .filter(|n| !n.is_empty())
        {
            sink.file(name);
        }
        if ent.body == Body::Message {
            self.push_child(limits, sink);
        }
        self.open_file(limits, sink);
    }

    /// The body ended (end of data, gap, connection end): completes the
    /// open entities.
    pub fn finish(&mut self, limits: &SmtpLimits, sink: &mut dyn HeaderSink) {
        if let Some(depth) = self.stack.iter().position(|e| e.in_header) {
            self.finish_header(depth, sink);
            self.end_headers(depth, limits, sink);
        }
        self.close_file(sink);
        if self
            .stack
            .iter()
            .any(|e| e.body == Body::Multipart && !e.boundary.is_empty() && !e.closed)
        {
            sink.anomaly(SmtpAnomaly::MissingClosingBoundary);
        }
        self.stack.clear();
        self.keep = None;
        self.abandoned = false;
    }
}

/// `Some((false, _))` for a boundary line `--b…`, `Some((true, _))` for the
/// closing `--b--…`, `None` otherwise (Zeek compares the boundary as a
/// prefix). The second value: only blanks follow (RFC 2046's delimiter);
/// otherwise the line merely starts with one.
fn boundary_kind(line: &[u8], boundary: &[u8]) -> Option<(bool, bool)> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let closing = rest.starts_with(b"--");
    let after = if closing {
        rest.get(2..).unwrap_or_default()
    } else {
        rest
    };
    Some((closing, after.iter().all(|&b| b == b' ' || b == b'\t')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        headers: Vec<(String, String)>,
        files: Vec<String>,
        done: Vec<FileInfo>,
        anomalies: Vec<SmtpAnomaly>,
    }

    impl HeaderSink for Collect {
        fn top_header(&mut self, name: &[u8], value: &[u8]) {
            self.headers.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
        fn file(&mut self, name: &str) {
            self.files.push(name.to_owned());
        }
        fn file_done(&mut self, file: FileInfo) {
            self.done.push(file);
        }
        fn anomaly(&mut self, a: SmtpAnomaly) {
            self.anomalies.push(a);
        }
    }

    fn run(body: &str, limits: &SmtpLimits) -> Collect {
        let mut t = MimeTracker::default();
        let mut c = Collect::default();
        t.begin(true);
        for line in body.split("\r\n") {
            t.line(line.as_bytes(), limits, &mut c);
        }
        t.finish(limits, &mut c);
        c
    }

    #[test]
    fn params_plain_quoted_and_rfc2231() {
        let v = b"attachment; filename=\"NEWS.txt\"";
        assert_eq!(param(v, b"filename").as_deref(), Some("NEWS.txt"));
        let v = b"text/plain; charset=us-ascii; name=a.txt";
        assert_eq!(param(v, b"name").as_deref(), Some("a.txt"));
        assert_eq!(param(v, b"charset").as_deref(), Some("us-ascii"));
        let v = b"attachment; filename*=UTF-8''f%C3%BCnf%20x.pdf";
        assert_eq!(param(v, b"filename").as_deref(), Some("f\u{fc}nf x.pdf"));
        let v = b"attachment; filename*=iso-8859-1'en'%E9t%E9.txt";
        assert_eq!(param(v, b"filename").as_deref(), Some("\u{e9}t\u{e9}.txt"));
        let v = b"attachment; filename*0*=UTF-8''a%20; filename*1=\"b c\"; filename*2*=%41";
        assert_eq!(param(v, b"filename").as_deref(), Some("a b cA"));
        let v = b"attachment; FILENAME = \"q\\\"x\" ; size=3";
        assert_eq!(param(v, b"filename").as_deref(), Some("q\"x"));
        assert_eq!(param(b"attachment", b"filename"), None);
        // "filename" must not match the "name" parameter.
        assert_eq!(param(b"x; filename=a", b"name"), None);
    }

    /// Quoted values without an escape are handed out in place: the same
    /// values, separators and unterminated quotes as when unquoted by copy.
    #[test]
    fn quoted_params_in_place_and_by_copy_agree() {
        let params = |v: &[u8]| {
            let mut out = Vec::new();
            for_each_param(v, |a, b| out.push((a.to_vec(), b.to_vec())));
            out
        };
        let p = |a: &str, b: &str| (a.as_bytes().to_vec(), b.as_bytes().to_vec());
        assert_eq!(
            params(b"multipart/mixed; boundary=\"=_a;b\" ; x=\"1\"junk; y=2"),
            [p("boundary", "=_a;b"), p("x", "1"), p("y", "2")]
        );
        assert_eq!(params(b"x; a=\"open ; b=1"), [p("a", "open ; b=1")]);
        assert_eq!(
            params(b"x; a=\"\"; b=\"\\\\\\\"\""),
            [p("a", ""), p("b", "\\\"")]
        );
        assert_eq!(params(b"x; a=\"tail\\"), [p("a", "tail")]);
        assert_eq!(
            params(b"x; a=\"q\\\"x\"; b=\"y\""),
            [p("a", "q\"x"), p("b", "y")]
        );
    }

    #[test]
    fn top_headers_unfolded_and_nested_ignored() {
        let body = "From: a@b\r\nSubject: one\r\n two\r\nX-Ignored: x\r\n  y\r\nContent-Type: message/rfc822\r\n\r\nFrom: <inner@x>\r\nSubject: inner\r\n\r\nbody";
        let c = run(body, &SmtpLimits::default());
        let names: Vec<_> = c.headers.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            names,
            ["From=a@b", "Subject=one two", "Content-Type=message/rfc822"]
        );
        assert!(c.files.is_empty());
    }

    #[test]
    fn multipart_files_nested_and_rfc822_attachment() {
        let body = concat!(
            "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n",
            "\r\n",
            "preamble\r\n",
            "--OUT\r\n",
            "Content-Type: multipart/alternative;\r\n",
            "\tboundary=\"IN\"\r\n",
            "\r\n",
            "--IN\r\n",
            "Content-Type: text/plain\r\n",
            "\r\n",
            "hello\r\n",
            "--IN--\r\n",
            "--OUT\r\n",
            "Content-Type: text/plain;\r\n",
            "\tname=\"NEWS.txt\"\r\n",
            "Content-Disposition: attachment;\r\n",
            "\tfilename=\"NEWS-disp.txt\"\r\n",
            "\r\n",
            "data\r\n",
            "--OUT\r\n",
            "Content-Type: image/png; name=\"only-type.png\"\r\n",
            "\r\n",
            "--OUT\r\n",
            "Content-Type: message/rfc822\r\n",
            "Content-Disposition: attachment; filename=\"test.msg\"\r\n",
            "\r\n",
            "From: <attachment@example.com>\r\n",
            "Content-Disposition: attachment; filename=inner.bin\r\n",
            "\r\n",
            "--OUT--\r\n",
            "epilogue\r\n",
        );
        let c = run(body, &SmtpLimits::default());
        assert_eq!(
            c.files,
            ["NEWS-disp.txt", "only-type.png", "test.msg", "inner.bin"]
        );
        assert!(c.anomalies.is_empty());
    }

    #[test]
    fn rfc2231_sections_out_of_order_repeated_or_missing() {
        let mut odd = false;
        // Out of order is allowed: joined by number.
        let v = b"attachment; filename*1=\"b.txt\"; filename*0=\"a\"";
        assert_eq!(
            param_checked(v, b"filename", &mut odd).as_deref(),
            Some("ab.txt")
        );
        assert!(!odd);
        // A repeated number: the first one sent counts.
        let v = b"attachment; filename*0=\"evil\"; filename*0=\"fine\"; filename*1=\".exe\"";
        assert_eq!(
            param_checked(v, b"filename", &mut odd).as_deref(),
            Some("evil.exe")
        );
        assert!(odd);
        // A missing number: the others are still joined, and counted.
        let mut odd = false;
        let v = b"attachment; filename*0=\"a\"; filename*2=\"c\"";
        assert_eq!(
            param_checked(v, b"filename", &mut odd).as_deref(),
            Some("ac")
        );
        assert!(odd);
        // A plain fallback next to the extended form is ordinary.
        let mut odd = false;
        let v = b"attachment; filename=\"fallback.txt\"; filename*=UTF-8''r%C3%A9el.txt";
        assert_eq!(
            param_checked(v, b"filename", &mut odd).as_deref(),
            Some("r\u{e9}el.txt")
        );
        assert!(!odd);
        let body = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
                    Content-Disposition: attachment; filename*0=x; filename*0=y\r\n\r\n--B--";
        let c = run(body, &SmtpLimits::default());
        assert_eq!(c.files, ["x"]);
        assert_eq!(c.anomalies, [SmtpAnomaly::Rfc2231BadContinuation]);
    }

    #[test]
    fn a_boundary_inside_a_part_starts_a_part() {
        // The text of part one holds the delimiter: every MIME parser splits
        // there, and so does the tracker (no anomaly: nothing tells it from
        // a real delimiter).
        let body = concat!(
            "Content-Type: multipart/mixed; boundary=\"B\"\r\n",
            "\r\n",
            "--B\r\n",
            "Content-Type: text/plain\r\n",
            "\r\n",
            "quoted delimiter follows\r\n",
            "--B\r\n",
            "Content-Disposition: attachment; filename=\"hidden.exe\"\r\n",
            "\r\n",
            "MZ\r\n",
            "--B--\r\n",
        );
        let c = run(body, &SmtpLimits::default());
        assert_eq!(c.files, ["hidden.exe"]);
        assert!(c.anomalies.is_empty(), "{:?}", c.anomalies);
    }

    #[test]
    fn reused_and_prefix_boundaries_follow_zeek_and_are_counted() {
        // The inner multipart's boundary begins with the outer one: the
        // outer entity takes the inner delimiters (Zeek compares prefixes,
        // outermost first), so the inner attachment is a part of the outer.
        let body = concat!(
            "Content-Type: multipart/mixed; boundary=\"B\"\r\n",
            "\r\n",
            "--B\r\n",
            "Content-Type: multipart/alternative; boundary=\"B2\"\r\n",
            "\r\n",
            "--B2\r\n",
            "Content-Type: text/plain; name=\"inner.txt\"\r\n",
            "\r\n",
            "x\r\n",
            "--B2--\r\n",
            "--B \t\r\n",
            "Content-Type: text/plain; name=\"outer.txt\"\r\n",
            "\r\n",
            "--B--\r\n",
        );
        let c = run(body, &SmtpLimits::default());
        assert_eq!(c.files, ["inner.txt", "outer.txt"]);
        // "--B2" and "--B2--" match "B" only as a prefix; "--B \t" is exact.
        assert_eq!(
            c.anomalies,
            [
                SmtpAnomaly::BoundaryReused,
                SmtpAnomaly::BoundaryPrefixMatch,
                SmtpAnomaly::BoundaryPrefixMatch
            ]
        );
        assert_eq!(boundary_kind(b"--B--", b"B"), Some((true, true)));
        assert_eq!(boundary_kind(b"--B-- ", b"B"), Some((true, true)));
        assert_eq!(boundary_kind(b"--B--x", b"B"), Some((true, false)));
        assert_eq!(boundary_kind(b"--Bx", b"B"), Some((false, false)));
        assert_eq!(boundary_kind(b"-B", b"B"), None);
    }

    #[test]
    fn header_syntax_anomalies() {
        let c = run(
            "Subject : a\r\nFr\0om: b\r\nTo: c\0d\r\n\r\nbody\0\r\n",
            &SmtpLimits::default(),
        );
        assert_eq!(
            c.headers,
            [
                ("Subject".to_string(), "a".to_string()),
                ("To".into(), "c\0d".into())
            ]
        );
        // NUL in the header block only (the session counts it once); the
        // Subject is complete when the next header line arrives.
        assert_eq!(
            c.anomalies,
            [
                SmtpAnomaly::NulInLine,
                SmtpAnomaly::HeaderSpaceBeforeColon,
                SmtpAnomaly::NulInLine
            ]
        );
    }

    #[test]
    fn limits_cut_headers_and_depth() {
        let limits = SmtpLimits {
            max_header_len: 16,
            max_headers: 2,
            max_mime_depth: 2,
            ..SmtpLimits::default()
        };
        let c = run(
            "Subject: 0123456789abcdef\r\nFrom: a\r\nTo: b\r\n\r\n",
            &limits,
        );
        assert_eq!(
            c.headers,
            [
                ("Subject".to_string(), "0123456".to_string()),
                ("From".into(), "a".into())
            ]
        );
        assert_eq!(
            c.anomalies,
            [SmtpAnomaly::HeaderTooLong, SmtpAnomaly::TooManyHeaders]
        );
        let nested =
            "Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nx\r\n";
        let c = run(
            nested,
            &SmtpLimits {
                max_mime_depth: 2,
                ..SmtpLimits::default()
            },
        );
        assert_eq!(c.anomalies, [SmtpAnomaly::MimeDepthExceeded]);
    }

    /// The files of a body (line by line) and how deep they were.
    fn depths(c: &Collect) -> Vec<(u32, Option<&str>, u64)> {
        c.done
            .iter()
            .map(|f| (f.depth, f.mime_type.as_deref(), f.seen_bytes))
            .collect()
    }

    #[test]
    fn files_get_zeeks_depths_across_nesting_and_messages() {
        let body = concat!(
            "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n",
            "\r\n",
            "--OUT\r\n",
            "Content-Type: multipart/alternative; boundary=\"IN\"\r\n",
            "\r\n",
            "--IN\r\n",
            "\r\n",
            "hello\r\n",
            "--IN--\r\n",
            "--OUT\r\n",
            "Content-Type: message/rfc822\r\n",
            "\r\n",
            "Subject: inner\r\n",
            "\r\n",
            "inner body\r\n",
            "--OUT\r\n",
            "Content-Type: image/png\r\n",
            "\r\n",
            "--OUT--\r\n",
        );
        let limits = SmtpLimits::default();
        let mut t = MimeTracker::default();
        let mut c = Collect::default();
        for _ in 0..2 {
            t.begin(true);
            for line in body.split("\r\n") {
                t.line(line.as_bytes(), &limits, &mut c);
            }
            t.finish(&limits, &mut c);
        }
        // 1 OUT, 2 IN, 3 its part, 4 the message, 5 its entity, 6 the
        // empty PNG (no bytes: no file); the second message goes on at 7.
        assert_eq!(
            depths(&c),
            [
                (3, Some("text/plain"), 5),
                (5, Some("text/plain"), 12),
                (9, Some("text/plain"), 5),
                (11, Some("text/plain"), 12)
            ]
        );
        // The attached message's own entity is not in a multipart: its
        // last line keeps its CRLF ("inner body\r\n" and an empty line).
        assert!(c.anomalies.is_empty(), "{:?}", c.anomalies);
        // Each file its own fuid.
        let mut fuids: Vec<_> = c.done.iter().map(|f| f.fuid).collect();
        fuids.dedup();
        assert_eq!(fuids.len(), 4);
    }

    #[test]
    fn hostile_bodies_stay_bounded_and_are_named() {
        let limits = SmtpLimits::default();
        // 100 000 parts: rows stop at max_files, each extra counted.
        let mut t = MimeTracker::default();
        let mut c = Collect::default();
        t.begin(true);
        t.line(
            b"Content-Type: multipart/mixed; boundary=B",
            &limits,
            &mut c,
        );
        t.line(b"", &limits, &mut c);
        for _ in 0..100_000 {
            t.line(b"--B", &limits, &mut c);
            t.line(b"", &limits, &mut c);
            t.line(b"x", &limits, &mut c);
        }
        t.finish(&limits, &mut c);
        assert_eq!(c.done.len(), limits.max_files);
        let too_many = c
            .anomalies
            .iter()
            .filter(|&&a| a == SmtpAnomaly::TooManyFiles)
            .count();
        assert_eq!(too_many, 100_000 - limits.max_files);
        // ... and the closing boundary never came.
        assert_eq!(
            c.anomalies.last(),
            Some(&SmtpAnomaly::MissingClosingBoundary)
        );
        // A part that never ends: 7.8 MB of base64 lines through one file,
        // whose state does not grow (counted, not kept).
        let mut t = MimeTracker::default();
        let mut c = Collect::default();
        t.begin(true);
        t.line(b"Content-Transfer-Encoding: base64", &limits, &mut c);
        t.line(b"", &limits, &mut c);
        let line = [b'A'; 76];
        let mut lines = Vec::new();
        for _ in 0..1000 {
            lines.extend_from_slice(&line);
            lines.extend_from_slice(b"\r\n");
        }
        let mut an = Vec::new();
        for _ in 0..100 {
            t.inert_lines(&lines, &mut an);
        }
        t.abandon();
        t.finish(&limits, &mut c);
        assert_eq!(c.done.len(), 1);
        assert_eq!(c.done[0].seen_bytes, 100 * 1000 * 57);
        assert!(c.done[0].timedout);
        assert!(an.is_empty());
        // Broken base64 is named once per file; nesting past the limit
        // makes the deepest message's body opaque data, still one file.
        let nested = "Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\
                      Content-Transfer-Encoding: base64\r\n\r\n!!aGk=\r\n**\r\n";
        let c = run(
            nested,
            &SmtpLimits {
                max_mime_depth: 2,
                ..SmtpLimits::default()
            },
        );
        assert_eq!(
            c.anomalies,
            [SmtpAnomaly::MimeDepthExceeded, SmtpAnomaly::IllegalEncoding]
        );
        assert_eq!(c.done.len(), 1);
        assert_eq!(c.done[0].seen_bytes, 2);
    }
}
