//! Line framing for one direction of a connection: finds line ends with
//! `memchr`, hands out complete lines without copying when a line lies
//! inside one segment, and keeps a bounded buffer for a line split across
//! segments. Lines longer than the limit are cut and the rest skipped.

use memchr::{memchr, memchr_iter};

/// One complete line: without its `\n` and without trailing `\r`s (Zeek
/// accepts `(\r)*\n` as a line end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
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

fn strip_cr(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
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
                        return Some(Line {
                            bytes: strip_cr(bytes),
                            truncated,
                        });
                    }
                    let room = max.saturating_sub(self.buf.len());
                    let truncated = chunk.len() > room;
                    self.buf
                        .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                    self.handed_out = true;
                    return Some(Line {
                        bytes: strip_cr(&self.buf),
                        truncated,
                    });
                }
                None => {
                    *pos = data.len();
                    if self.skipping {
                        return None;
                    }
                    let room = max.saturating_sub(self.buf.len());
                    if rest.len() < room {
                        self.buf.extend_from_slice(rest);
                        return None;
                    }
                    // The limit is reached without a line end: hand out
                    // what fits and drop the rest of this line.
                    self.buf
                        .extend_from_slice(rest.get(..room).unwrap_or_default());
                    self.handed_out = true;
                    self.skipping = true;
                    return Some(Line {
                        bytes: strip_cr(&self.buf),
                        truncated: true,
                    });
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

/// Length of the run of complete lines at the start of `data` for which
/// `inert(line)` holds: lines ended by `\n` (the line as `next_line` would
/// hand it out, trailing `\r`s removed), none longer than `max` bytes before
/// its `\n`. The caller may step over them without framing each; the first
/// line that fails, is too long or is unfinished starts where the run ends.
pub fn inert_prefix(data: &[u8], max: usize, inert: impl Fn(&[u8]) -> bool) -> usize {
    let mut start = 0;
    for end in memchr_iter(b'\n', data) {
        let chunk = data.get(start..end).unwrap_or_default();
        if chunk.len() > max || !inert(strip_cr(chunk)) {
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

    #[test]
    fn inert_prefix_stops_at_the_first_line_that_matters() {
        let not_dot = |l: &[u8]| l.first() != Some(&b'.');
        assert_eq!(inert_prefix(b"ab\r\ncd\n.\r\nef\r\n", 100, not_dot), 7);
        // An unfinished line is never part of the run.
        assert_eq!(inert_prefix(b"ab\r\ncd", 100, not_dot), 4);
        // Nor a line over the limit (the framing cuts and counts it).
        assert_eq!(inert_prefix(b"ab\r\n0123456789ABC\r\nx\n", 10, not_dot), 4);
        assert_eq!(inert_prefix(b"0123456789\n", 10, not_dot), 11);
        assert_eq!(inert_prefix(b"", 10, not_dot), 0);
        // The line is judged without its trailing CRs, like `next_line`.
        assert_eq!(inert_prefix(b"\r\r\n", 10, |l| !l.is_empty()), 0);
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
