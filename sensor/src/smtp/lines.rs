//! Line framing for one direction of a connection: finds line ends with
//! `memchr`, hands out complete lines without copying when a line lies
//! inside one segment, and keeps a bounded buffer for a line split across
//! segments. Lines longer than the limit are cut and the rest skipped.
//! The search for the line end also finds NUL bytes (`NUL_in_line`), so
//! that a command, reply or header line is not searched a second time.

use std::sync::LazyLock;

use memchr::{memchr, memchr_iter, memchr2, memmem, memrchr};

/// Capacity a buffer kept for the next connection keeps at most
/// ([`LineBuf::recycle`]): what a usual line or header needs, so that a
/// pool of idle sessions does not hold what one long line once took.
pub const KEEP_CAPACITY: usize = 1024;

/// One complete line: without its `\n` and without trailing `\r`s (Zeek
/// accepts `(\r)*\n` as a line end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
    /// It ended with exactly `\r\n` (not a bare `\n`, not `\r\r\n`, not
    /// cut): what RFC 5321 allows. The end of DATA is checked with it.
    pub crlf: bool,
    /// `bytes` hold a NUL (found by the same search as the line end).
    pub nul: bool,
}

/// The partial-line state of one direction. The buffer grows to at most the
/// line limit and is reused for the whole connection.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    /// The buffer holds a line already handed out; clear it before reuse.
    handed_out: bool,
    /// Dropping bytes until the next line end (after a cut line or a gap).
    skipping: bool,
    /// `buf` holds a NUL (when not `buf_unsearched`).
    buf_nul: bool,
    /// Bytes were buffered without looking for NULs (`find_nul` false).
    buf_unsearched: bool,
}

/// The line without its trailing `\r`s, and whether there was exactly one.
fn strip_cr(mut line: &[u8]) -> (&[u8], bool) {
    let mut crs = 0usize;
    while let [rest @ .., b'\r'] = line {
        line = rest;
        crs += 1;
    }
    (line, crs == 1)
}

/// A line's bytes as [`LineBuf`] hands them out: without trailing `\r`s
/// (for callers that split a run of complete lines themselves).
pub fn strip_crs(line: &[u8]) -> &[u8] {
    strip_cr(line).0
}

/// A complete line as handed out (`cut`: the limit was reached first;
/// `nul`: `bytes` hold a NUL, which stripping `\r`s does not change).
fn line(bytes: &[u8], truncated: bool, cut: bool, nul: bool) -> Line<'_> {
    let (bytes, one_cr) = strip_cr(bytes);
    Line {
        bytes,
        truncated,
        crlf: one_cr && !cut,
        nul,
    }
}

/// The first `\n` of `data` and the first NUL before it, in one pass
/// while there is no NUL (`memchr2`); after a NUL only the line end is
/// searched for, so a line full of NULs costs no more than one without.
fn scan(data: &[u8]) -> (Option<usize>, Option<usize>) {
    match memchr2(b'\n', 0, data) {
        Some(i) if data.get(i) == Some(&0) => {
            let end = data
                .get(i + 1..)
                .and_then(|rest| memchr(b'\n', rest))
                .map(|j| i + 1 + j);
            (end, Some(i))
        }
        end => (end, None),
    }
}

/// Whether the first NUL (at `nul`, if any) lies in the first `kept` bytes.
fn nul_within(nul: Option<usize>, kept: usize) -> bool {
    nul.is_some_and(|n| n < kept)
}

/// Whether a run of complete lines (starting at a line start, ending with
/// `\n`) ends with exactly `\r\n`: [`Line::crlf`] of its last line.
pub fn ends_with_crlf(run: &[u8]) -> bool {
    matches!(run, [.., b'\r', b'\n']) && !matches!(run, [.., b'\r', b'\r', b'\n'])
}

impl LineBuf {
    /// Returns the next complete line from `data[*pos..]` and advances
    /// `pos` past it, or consumes everything into the partial buffer and
    /// returns `None`. A line longer than `max` is returned cut to `max`
    /// bytes as soon as the limit is reached.
    pub fn next_line<'a>(
        &'a mut self,
        data: &'a [u8],
        pos: &mut usize,
        max: usize,
    ) -> Option<Line<'a>> {
        self.next_line_with(data, pos, max, true)
    }

    /// [`LineBuf::next_line`], looking for NULs only if `find_nul`: a body
    /// line's NUL means nothing, and the search for `\n` alone is cheaper.
    /// Without it [`Line::nul`] is false. Bytes of a partial line buffered
    /// without the search are searched by the call that wants it and
    /// completes the line, so the flag is exact whenever it was asked for.
    pub fn next_line_with<'a>(
        &'a mut self,
        data: &'a [u8],
        pos: &mut usize,
        max: usize,
        find_nul: bool,
    ) -> Option<Line<'a>> {
        if self.handed_out {
            self.clear_buf();
        }
        loop {
            let rest = data.get(*pos..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            // NULs are looked for only in the bytes handed out: not in the
            // rest of a cut line, nor in a line being dropped.
            let (end, nul) = if find_nul {
                scan(rest)
            } else {
                (memchr(b'\n', rest), None)
            };
            match end {
                Some(i) => {
                    let chunk = rest.get(..i).unwrap_or_default();
                    *pos += i + 1;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.buf.is_empty() {
                        let truncated = chunk.len() > max;
                        let kept = max.min(chunk.len());
                        let bytes = chunk.get(..kept).unwrap_or_default();
                        return Some(line(bytes, truncated, truncated, nul_within(nul, kept)));
                    }
                    let room = max.saturating_sub(self.buf.len());
                    let truncated = chunk.len() > room;
                    let kept = room.min(chunk.len());
                    self.buf
                        .extend_from_slice(chunk.get(..kept).unwrap_or_default());
                    self.buf_nul |= nul_within(nul, kept);
                    self.handed_out = true;
                    let nul = self.buf_nul_if(find_nul);
                    return Some(line(&self.buf, truncated, truncated, nul));
                }
                None => {
                    *pos = data.len();
                    if self.skipping {
                        return None;
                    }
                    let room = max.saturating_sub(self.buf.len());
                    if rest.len() <= room {
                        // A line of exactly `max` bytes is not too long:
                        // whether one comes is known from the next byte.
                        self.buf.extend_from_slice(rest);
                        self.buf_nul |= nul.is_some();
                        self.buf_unsearched |= !find_nul;
                        return None;
                    }
                    // The limit is passed without a line end: hand out
                    // what fits and drop the rest of this line.
                    self.buf
                        .extend_from_slice(rest.get(..room).unwrap_or_default());
                    self.buf_nul |= nul_within(nul, room);
                    self.handed_out = true;
                    self.skipping = true;
                    let nul = self.buf_nul_if(find_nul);
                    return Some(line(&self.buf, true, true, nul));
                }
            }
        }
    }

    /// Whether the buffered line holds a NUL, if that is wanted; bytes
    /// buffered without the search are searched now.
    fn buf_nul_if(&mut self, find_nul: bool) -> bool {
        if find_nul && self.buf_unsearched {
            self.buf_nul = memchr(0, &self.buf).is_some();
            self.buf_unsearched = false;
        }
        find_nul && self.buf_nul
    }

    fn clear_buf(&mut self) {
        self.buf.clear();
        self.buf_nul = false;
        self.buf_unsearched = false;
        self.handed_out = false;
    }

    /// Whether bytes of an unfinished line are held (or the rest of a cut
    /// line is being dropped): the next line handed out does not start at
    /// the next byte given.
    pub fn holds_partial(&self) -> bool {
        self.skipping || (!self.handed_out && !self.buf.is_empty())
    }

    /// Ends a cut line whose end has not come: the next bytes start a new
    /// line. Returns whether there was one.
    pub fn end_cut_line(&mut self) -> bool {
        std::mem::replace(&mut self.skipping, false)
    }

    /// Hands out a partial line left at the end of a stream (the last BDAT
    /// chunk ends without CRLF), or `None` if there is none.
    pub fn take_partial(&mut self) -> Option<Line<'_>> {
        if self.handed_out {
            self.clear_buf();
        }
        self.skipping = false;
        if self.buf.is_empty() {
            return None;
        }
        self.handed_out = true;
        let nul = self.buf_nul_if(true);
        // Not a line end: the bytes as they are, no `\r` stripped.
        Some(Line {
            bytes: &self.buf,
            truncated: false,
            crlf: false,
            nul,
        })
    }

    /// Forgets the partial line (Zeek's "skip partial" after a content
    /// gap). The bytes after the gap start a new line: if they begin inside
    /// a line, that fragment is one garbage line, which the session ignores
    /// or counts, rather than losing a whole line when the gap ended at a
    /// line boundary.
    pub fn skip_partial(&mut self) {
        self.clear_buf();
        self.skipping = false;
    }

    /// Forgets everything, keeping the allocation.
    pub fn reset(&mut self) {
        self.clear_buf();
        self.skipping = false;
    }

    /// [`LineBuf::reset`] for a new connection: the buffer keeps its
    /// capacity up to [`KEEP_CAPACITY`] (a usual line), not the limit a
    /// long line made it grow to.
    pub fn recycle(&mut self) {
        self.reset();
        self.buf.shrink_to(KEEP_CAPACITY);
    }
}

/// Length of the run of complete lines at the start of `data` whose first
/// byte is none of `marks`: lines ended by `\n`, none longer than `max`
/// bytes before it. The caller may step over them without framing each;
/// the first line that starts with a mark, is too long or is unfinished
/// starts where the run ends. (The first byte is the one `next_line` hands
/// out, trailing `\r`s removed, unless the line is only `\r`s; with marks
/// other than `\r` the two agree.)
///
/// When no line can be too long (`data` up to its last line end is at most
/// `max + 1` bytes, the usual segment), this is one search per mark for
/// `\n<mark>`, not a look at every line.
pub fn inert_prefix(data: &[u8], max: usize, marks: &[u8]) -> usize {
    let Some(last_end) = memrchr(b'\n', data) else {
        return 0;
    };
    let complete = data.get(..=last_end).unwrap_or_default();
    if data.first().is_some_and(|b| marks.contains(b)) {
        return 0;
    }
    if complete.len() > max.saturating_add(1) {
        return inert_prefix_by_line(complete, max, marks);
    }
    let mut run = complete.len();
    for &m in marks {
        let found = match m {
            b'.' => DOT_LINE.find(complete),
            b'-' => DASH_LINE.find(complete),
            _ => memmem::find(complete, &[b'\n', m]),
        };
        if let Some(i) = found {
            run = run.min(i + 1);
        }
    }
    run
}

/// Searchers for a line starting with `.` or `-` (the marks the session
/// asks for), built once: `memmem::find` builds a searcher on every call,
/// which costs about as much as searching a full segment with it.
static DOT_LINE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\n."));
static DASH_LINE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\n-"));

/// [`inert_prefix`] line by line, for data that may hold too long a line.
fn inert_prefix_by_line(data: &[u8], max: usize, marks: &[u8]) -> usize {
    let mut start = 0;
    for end in memchr_iter(b'\n', data) {
        let chunk = data.get(start..end).unwrap_or_default();
        if chunk.len() > max || chunk.first().is_some_and(|b| marks.contains(b)) {
            break;
        }
        start = end + 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(lb: &mut LineBuf, segments: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for seg in segments {
            let mut pos = 0;
            while let Some(l) = lb.next_line(seg, &mut pos, max) {
                out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.truncated));
            }
        }
        out
    }

    #[test]
    fn lines_inside_and_across_segments() {
        let mut lb = LineBuf::default();
        let got = all_lines(
            &mut lb,
            &[b"EHLO a\r\nMAIL FR", b"OM:<x@y>\r", b"\n.\r\n"],
            100,
        );
        assert_eq!(
            got,
            [
                ("EHLO a".into(), false),
                ("MAIL FROM:<x@y>".into(), false),
                (".".into(), false)
            ]
        );
    }

    /// Found by the session fuzz target (a split data step must change no
    /// anomaly): a line of exactly the limit (the bytes before `\n`), its
    /// line end in the next segment, was cut and counted too long; in one
    /// segment it was not.
    #[test]
    fn line_of_exactly_the_limit_across_segments() {
        let cases: [(&[&[u8]], &str, bool); 8] = [
            (&[b"0123456789\nok\n"], "0123456789", false),
            (&[b"0123456789", b"\nok\n"], "0123456789", false),
            (&[b"01234", b"56789", b"\nok\n"], "0123456789", false),
            (&[b"012345678\r\nok\n"], "012345678", false),
            (&[b"012345678\r", b"\nok\n"], "012345678", false),
            // One byte more (a `\r` too) is too long, wherever it comes.
            (&[b"0123456789\r\nok\n"], "0123456789", true),
            (&[b"0123456789", b"\r\nok\n"], "0123456789", true),
            (&[b"0123456789", b"X", b"\nok\n"], "0123456789", true),
        ];
        for (segments, line, truncated) in cases {
            let mut lb = LineBuf::default();
            let got = all_lines(&mut lb, segments, 10);
            assert_eq!(
                got,
                [(line.into(), truncated), ("ok".into(), false)],
                "{segments:?}"
            );
        }
    }

    #[test]
    fn bare_lf_and_multiple_cr_end_lines() {
        let mut lb = LineBuf::default();
        let got = all_lines(&mut lb, &[b"a\nb\r\r\nc"], 100);
        assert_eq!(got, [("a".into(), false), ("b".into(), false)]);
        assert_eq!(lb.take_partial().map(|l| l.bytes), Some(&b"c"[..]));
        assert_eq!(lb.take_partial(), None);
    }

    #[test]
    fn long_lines_are_cut_and_rest_skipped() {
        let mut lb = LineBuf::default();
        let got = all_lines(&mut lb, &[b"0123456789ABC\r\nok\r\n"], 10);
        assert_eq!(got, [("0123456789".into(), true), ("ok".into(), false)]);
        // Across segments: the cut happens when the buffer is full.
        let got = all_lines(&mut lb, &[b"01234", b"56789XYZ", b"more\r\nnext\r\n"], 10);
        assert_eq!(got, [("0123456789".into(), true), ("next".into(), false)]);
    }

    fn crlf_flags(segments: &[&[u8]]) -> Vec<(String, bool)> {
        let mut lb = LineBuf::default();
        let mut out = Vec::new();
        for seg in segments {
            let mut pos = 0;
            while let Some(l) = lb.next_line(seg, &mut pos, 10) {
                out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.crlf));
            }
        }
        out
    }

    #[test]
    fn crlf_tells_the_exact_line_end() {
        let got = crlf_flags(&[b"a\r\nb\nc\r\r\n\r\n.\n"]);
        assert_eq!(
            got,
            [
                ("a".into(), true),
                ("b".into(), false),
                ("c".into(), false),
                ("".into(), true),
                (".".into(), false)
            ]
        );
        // The CR and the LF in different segments; a cut line never counts.
        let got = crlf_flags(&[b"x\r", b"\n0123456789AB\r\n", b"y\n"]);
        assert_eq!(
            got,
            [
                ("x".into(), true),
                ("0123456789".into(), false),
                ("y".into(), false)
            ]
        );
        assert!(ends_with_crlf(b"ab\r\n"));
        assert!(ends_with_crlf(b"\r\n"));
        assert!(!ends_with_crlf(b"ab\n"));
        assert!(!ends_with_crlf(b"ab\r\r\n"));
        assert!(!ends_with_crlf(b"\n"));
    }

    #[test]
    fn a_cut_line_can_be_ended_before_its_line_end() {
        let mut lb = LineBuf::default();
        let mut pos = 0;
        let l = lb.next_line(b"220 0123456789 and more", &mut pos, 10);
        assert_eq!(
            l.map(|l| (l.bytes.to_vec(), l.truncated)),
            Some((b"220 012345".to_vec(), true))
        );
        // True: the rest of the cut line was being dropped.
        assert!(lb.end_cut_line());
        assert!(!lb.end_cut_line(), "only once");
        // Without it, the next line would be dropped up to its end.
        let got = all_lines(&mut lb, &[b"250 ok\r\n"], 10);
        assert_eq!(got, [("250 ok".into(), false)]);
    }

    #[test]
    fn inert_prefix_stops_at_the_first_line_that_matters() {
        for max in [100, 12] {
            // Both ways (one search per mark, line by line) agree.
            assert_eq!(inert_prefix(b"ab\r\ncd\n.\r\nef\r\n", max, b"."), 7);
            assert_eq!(inert_prefix(b"ab\r\ncd\n-x\r\n.\r\n", max, b".-"), 7);
            assert_eq!(inert_prefix(b"ab\r\ncd\n-x\r\n.\r\n", max, b"."), 11);
            assert_eq!(inert_prefix(b".ab\r\ncd\n", max, b"."), 0);
            // An unfinished line is never part of the run.
            assert_eq!(inert_prefix(b"ab\r\ncd", max, b"."), 4);
            assert_eq!(inert_prefix(b"ab\r\n.d", max, b"."), 4);
            assert_eq!(inert_prefix(b"", max, b"."), 0);
            assert_eq!(inert_prefix(b"a\r\n\r\r\nb\n", max, b""), 8);
        }
        // Nor a line over the limit (the framing cuts and counts it).
        assert_eq!(inert_prefix(b"ab\r\n0123456789ABC\r\nx\n", 10, b"."), 4);
        assert_eq!(inert_prefix(b"0123456789\n", 10, b"."), 11);
        assert_eq!(inert_prefix(b"0123456789\nab\n", 10, b"."), 14);
    }

    /// `(line, nul)` of every line handed out for `segments`.
    fn nul_flags(segments: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut lb = LineBuf::default();
        let mut out = Vec::new();
        for seg in segments {
            let mut pos = 0;
            while let Some(l) = lb.next_line(seg, &mut pos, max) {
                out.push((l.bytes.to_vec(), l.nul));
            }
        }
        if let Some(l) = lb.take_partial() {
            out.push((l.bytes.to_vec(), l.nul));
        }
        out
    }

    #[test]
    fn nul_is_found_in_the_bytes_handed_out_only() {
        let flags = |segments: &[&[u8]]| -> Vec<bool> {
            nul_flags(segments, 10).into_iter().map(|l| l.1).collect()
        };
        assert_eq!(flags(&[b"a\0b\r\nok\r\n\0\n"]), [true, false, true]);
        // In the buffered part, in the part that ends it, in neither.
        assert_eq!(flags(&[b"a\0", b"b\r\nc"]), [true, false]);
        assert_eq!(flags(&[b"ab", b"\0\r\nc\0"]), [true, true]);
        assert_eq!(flags(&[b"ab", b"cd\r\n"]), [false]);
        // Past the limit: cut off, not counted; nor in the dropped rest.
        assert_eq!(flags(&[b"0123456789\0\r\nok\n"]), [false, false]);
        assert_eq!(flags(&[b"012345678\0AB\nok\n"]), [true, false]);
        assert_eq!(flags(&[b"01234", b"56789A\0", b"\0\nok\n"]), [false, false]);
        // A NUL after the line end belongs to the next line.
        assert_eq!(flags(&[b"ab\n\0", b"\n"]), [false, true]);
    }

    #[test]
    fn a_line_buffered_without_the_search_is_searched_when_it_matters() {
        let mut lb = LineBuf::default();
        let mut pos = 0;
        assert!(lb.next_line_with(b"a\0b", &mut pos, 100, false).is_none());
        pos = 0;
        let l = lb.next_line_with(b"c\r\nd\0\n", &mut pos, 100, true);
        assert_eq!(l.map(|l| (l.bytes, l.nul)), Some((&b"a\0bc"[..], true)));
        // Not asked for: not said.
        let l = lb.next_line_with(b"d\0\n", &mut 0, 100, false);
        assert_eq!(l.map(|l| (l.bytes, l.nul)), Some((&b"d\0"[..], false)));
    }

    /// The flag is what a search of each line handed out would say, for
    /// lines of NULs, CRs, LFs and letters cut into segments anyhow, with
    /// and without the search for the bytes before the line's last part.
    #[test]
    fn nul_flag_equals_a_search_of_the_line() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 60) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| [b'a', b'b', 0, b'\r', b'\n'][(next() % 5) as usize])
                .collect();
            let mut segments = Vec::new();
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                let (a, b) = rest.split_at(1 + (next() as usize) % rest.len());
                segments.push(a);
                rest = b;
            }
            let max = 1 + (next() % 12) as usize;
            for (bytes, nul) in nul_flags(&segments, max) {
                assert_eq!(nul, bytes.contains(&0), "{data:?} {segments:?} {max}");
            }
            // Asked for at random: exact wherever it was.
            let mut lb = LineBuf::default();
            for seg in &segments {
                let mut pos = 0;
                loop {
                    let find = next() % 2 == 0;
                    let Some(l) = lb.next_line_with(seg, &mut pos, max, find) else {
                        break;
                    };
                    assert_eq!(l.nul, find && l.bytes.contains(&0), "{data:?} {segments:?}");
                }
            }
        }
    }

    #[test]
    fn holds_partial_follows_the_buffer() {
        let mut lb = LineBuf::default();
        let mut pos = 0;
        assert!(!lb.holds_partial());
        assert!(lb.next_line(b"half", &mut pos, 100).is_none());
        assert!(lb.holds_partial());
        pos = 0;
        assert!(lb.next_line(b" line\r\n", &mut pos, 100).is_some());
        assert!(!lb.holds_partial());
        pos = 0;
        assert!(lb.next_line(b"0123456789ABC", &mut pos, 10).is_some());
        assert!(lb.holds_partial(), "dropping the rest of a cut line");
    }

    #[test]
    fn skip_partial_drops_the_buffered_part() {
        let mut lb = LineBuf::default();
        let mut pos = 0;
        assert!(lb.next_line(b"half a li", &mut pos, 100).is_none());
        lb.skip_partial();
        let got = all_lines(&mut lb, &[b"ne\r\nRSET\r\n"], 100);
        assert_eq!(got, [("ne".into(), false), ("RSET".into(), false)]);
    }
}
