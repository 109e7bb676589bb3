//! Line framing for one direction of a connection: finds line ends with
//! `memchr`, hands out complete lines without copying when a line lies
//! inside one segment, and keeps a bounded buffer for a line split across
//! segments. Lines longer than the limit are cut and the rest skipped.

use memchr::{memchr, memchr_iter, memmem, memrchr};

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

/// A complete line as handed out (`cut`: the limit was reached first).
fn line(bytes: &[u8], truncated: bool, cut: bool) -> Line<'_> {
    let (bytes, one_cr) = strip_cr(bytes);
    Line {
        bytes,
        truncated,
        crlf: one_cr && !cut,
    }
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
        if self.handed_out {
            self.buf.clear();
            self.handed_out = false;
        }
        loop {
            let rest = data.get(*pos..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            match memchr(b'\n', rest) {
                Some(i) => {
                    let chunk = rest.get(..i).unwrap_or_default();
                    *pos += i + 1;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.buf.is_empty() {
                        let truncated = chunk.len() > max;
                        let bytes = chunk.get(..max.min(chunk.len())).unwrap_or_default();
                        return Some(line(bytes, truncated, truncated));
                    }
                    let room = max.saturating_sub(self.buf.len());
                    let truncated = chunk.len() > room;
                    self.buf
                        .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                    self.handed_out = true;
                    return Some(line(&self.buf, truncated, truncated));
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
                        return None;
                    }
                    // The limit is passed without a line end: hand out
                    // what fits and drop the rest of this line.
                    self.buf
                        .extend_from_slice(rest.get(..room).unwrap_or_default());
                    self.handed_out = true;
                    self.skipping = true;
                    return Some(line(&self.buf, true, true));
                }
            }
        }
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
    pub fn take_partial(&mut self) -> Option<&[u8]> {
        if self.handed_out {
            self.buf.clear();
            self.handed_out = false;
        }
        self.skipping = false;
        if self.buf.is_empty() {
            return None;
        }
        self.handed_out = true;
        Some(&self.buf)
    }

    /// Forgets the partial line (Zeek's "skip partial" after a content
    /// gap). The bytes after the gap start a new line: if they begin inside
    /// a line, that fragment is one garbage line, which the session ignores
    /// or counts, rather than losing a whole line when the gap ended at a
    /// line boundary.
    pub fn skip_partial(&mut self) {
        self.buf.clear();
        self.handed_out = false;
        self.skipping = false;
    }

    /// Forgets everything, keeping the allocation.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.handed_out = false;
        self.skipping = false;
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
        if let Some(i) = memmem::find(complete, &[b'\n', m]) {
            run = run.min(i + 1);
        }
    }
    run
}

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
        assert_eq!(lb.take_partial(), Some(&b"c"[..]));
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
