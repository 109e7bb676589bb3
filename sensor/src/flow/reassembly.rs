//! One direction of a TCP stream: turns segments, in whatever order they
//! were captured, into in-order bytes and explicit gaps.
//!
//! Sequence numbers are unwrapped into 64-bit stream offsets relative to the
//! first byte, so wraparound of the 32-bit space is invisible above this
//! module. Retransmissions and overlaps keep the bytes seen first (as Zeek's
//! reassembler does), and an overlap whose bytes differ from the first copy
//! is reported (Zeek's `rexmit_inconsistency`): compared with the buffered
//! out-of-order data it overlaps and with the last [`RECENT_BYTES`] bytes
//! delivered. Out-of-order data waits in a buffer bounded by a byte limit;
//! when the limit is hit, or when the peer acknowledges bytes that were
//! never captured, the hole is given up and reported as a gap, so the
//! parser above always makes progress.
//!
//! Sequence numbers nobody checks can be forged by anyone who knows the
//! four-tuple, so the flow layer asks this module whether a RST
//! ([`Reassembler::rst_in_window`]) or an ACK ([`Reassembler::ack`]) is
//! plausible for the stream before it acts on one.

/// What the reassembler hands upward, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes of the stream will never be delivered.
    Gap(u64),
}

/// An ACK further than this (bytes) beyond every byte seen of the stream is
/// taken as forged (`TCP_ack_above_window`), not as a sign of lost data:
/// the capture would have had to lose a megabyte at the end of a burst.
/// Zeek distrusts sequence numbers that jump as far
/// (`TOO_LARGE_SEQ_DELTA`, 1 MiB). Whatever the distance, an ACK beyond the
/// bytes seen never makes a gap there: only a hole before data that was
/// captured is given up, so a blind ACK cannot skip the stream.
pub const MAX_ACK_AHEAD: u64 = 1 << 20;

/// How near the stream a RST's sequence number must be to end the
/// connection: from this many bytes before the next byte expected to as
/// many beyond the last byte seen (or the FIN). RFC 5961 accepts a RST only
/// inside the receive window; the window scale is not known here, so this
/// is the largest unscaled window (RFC 793's 16-bit field). A blind RST then
/// hits about one time in 32 768; a stack's own RST carries its next
/// sequence number, which the capture has seen unless it lost over 64 KiB
/// of the stream's tail.
pub const RST_WINDOW: u64 = 64 * 1024;

/// Delivered bytes kept per direction to compare retransmissions with: a
/// bounded window of the most recent ones, not everything not yet
/// acknowledged (as Zeek keeps): a constant cost per byte delivered (one
/// copy into a ring of this size, made with the first byte) and a constant
/// memory per talking flow. It covers a whole segment of an Ethernet MSS,
/// so a crafted segment followed by the real one at the same sequence
/// numbers (or the reverse) is compared over the whole overlap; older
/// overlaps are compared over their most recent part.
pub const RECENT_BYTES: usize = 2048;

/// The window of [`RECENT_BYTES`], a heap block of its own (a thin box:
/// the flow slot stays small), which the flow table hands from a closed
/// flow to a new one ([`Reassembler::take_recent`],
/// [`Reassembler::lend_recent`]).
pub type RecentRing = Box<[u8; RECENT_BYTES]>;

/// Buffered out-of-order segments are also limited in number: one per this
/// many bytes of the byte limit. Without it, a peer sending thousands of
/// one-byte segments in descending order would make every insertion (and
/// every delivery) shift the whole buffer: quadratic work per flow within
/// the byte limit. Each segment really costs about this much (its vector
/// and allocation), so the byte limit stays an honest memory bound too.
pub const OOO_BYTES_PER_SEGMENT: usize = 64;

/// What happened to a segment, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentEvents {
    /// Every byte had been seen before (a pure retransmission).
    pub retransmission: bool,
    /// The segment was buffered out of order.
    pub out_of_order: bool,
    /// The out-of-order buffer limit forced a gap.
    pub ooo_limit: bool,
    /// Overlapping bytes differed from the first copy (buffered or
    /// delivered): one per segment that does.
    pub inconsistent: bool,
}

#[derive(Debug)]
struct Segment {
    off: u64,
    data: Vec<u8>,
}

impl Segment {
    fn end(&self) -> u64 {
        self.off + self.data.len() as u64
    }
}

/// All there is of a direction that has carried no byte (nothing delivered,
/// skipped or buffered): whether it started, its first sequence number and
/// its FIN. What a silent flow keeps in place of two [`Reassembler`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    pub started: bool,
    pub isn: u32,
    /// Stream offset of the FIN, once seen. With nothing delivered it is
    /// below 2^31 (a sequence number's distance from the first).
    pub fin: Option<u32>,
}

/// Reassembly state of one direction.
#[derive(Debug)]
pub struct Reassembler {
    started: bool,
    /// Sequence number of stream offset 0.
    isn: u32,
    /// Offset of the next byte to deliver.
    next: u64,
    /// Offset the FIN occupies, once seen.
    fin: Option<u64>,
    /// Buffered out-of-order data: sorted by offset, non-overlapping, every
    /// segment starting after `next`.
    ooo: Vec<Segment>,
    ooo_bytes: usize,
    ooo_cap: usize,
    /// The last [`RECENT_BYTES`] delivered bytes, byte `o` of the stream
    /// at `o % RECENT_BYTES`; made with the first byte delivered.
    recent: Option<RecentRing>,
    /// First offset `recent` holds (a gap empties it).
    recent_from: u64,
}

impl Reassembler {
    /// `ooo_cap`: most bytes this direction may hold out of order.
    pub fn new(ooo_cap: usize) -> Self {
        Reassembler {
            started: false,
            isn: 0,
            next: 0,
            fin: None,
            ooo: Vec::new(),
            ooo_bytes: 0,
            ooo_cap,
            recent: None,
            recent_from: 0,
        }
    }

    /// The state of a direction that has carried no byte; `None` once it
    /// has (or holds anything a [`Handshake`] cannot say).
    pub fn handshake(&self) -> Option<Handshake> {
        if self.next != 0 || !self.ooo.is_empty() || self.recent.is_some() || self.recent_from != 0
        {
            return None;
        }
        let fin = match self.fin {
            Some(f) => Some(u32::try_from(f).ok()?),
            None => None,
        };
        Some(Handshake {
            started: self.started,
            isn: self.isn,
            fin,
        })
    }

    /// A direction in state `h`, as [`Reassembler::new`] and the segments
    /// `h` sums up would have made it.
    pub fn from_handshake(h: Handshake, ooo_cap: usize) -> Self {
        Reassembler {
            started: h.started,
            isn: h.isn,
            fin: h.fin.map(u64::from),
            ..Reassembler::new(ooo_cap)
        }
    }

    /// Gives this direction a window for its recent bytes, if it has none
    /// yet. What the window held before is never compared: only offsets
    /// delivered since the last gap, from this stream's first byte on, are
    /// (see `differs_from_delivered`), and each was written when delivered.
    pub fn lend_recent(&mut self, ring: RecentRing) {
        if self.recent.is_none() {
            self.recent = Some(ring);
        }
    }

    /// Takes the window of recent bytes back (the flow is over), for
    /// [`Reassembler::lend_recent`] to a later one.
    pub fn take_recent(&mut self) -> Option<RecentRing> {
        self.recent.take()
    }

    /// Whether this direction has a window for its recent bytes yet.
    pub fn has_recent(&self) -> bool {
        self.recent.is_some()
    }

    /// Sequence number of the stream's first byte (the SYN's plus one).
    pub fn isn(&self) -> u32 {
        self.isn
    }

    /// Whether any segment of this direction has been seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The sequence number the next in-order byte will carry.
    pub fn next_seq(&self) -> u32 {
        self.isn.wrapping_add(self.next as u32)
    }

    /// Bytes delivered or skipped so far.
    pub fn offset(&self) -> u64 {
        self.next
    }

    pub fn buffered_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// Out-of-order segments buffered.
    pub fn buffered_segments(&self) -> usize {
        self.ooo.len()
    }

    /// Most out-of-order segments buffered at once (see
    /// [`OOO_BYTES_PER_SEGMENT`]).
    pub fn max_segments(&self) -> usize {
        (self.ooo_cap / OOO_BYTES_PER_SEGMENT).max(1)
    }

    /// Whether buffering `extra` more bytes (as a new segment) would go
    /// over the byte or the segment limit.
    fn is_full(&self, extra: usize) -> bool {
        self.ooo_bytes + extra > self.ooo_cap || self.ooo.len() >= self.max_segments()
    }

    /// Whether this side's FIN was seen.
    pub fn fin_seen(&self) -> bool {
        self.fin.is_some()
    }

    /// True once every byte up to the FIN has been delivered.
    pub fn finished(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }

    /// Signed stream offset of `seq`, taking the interpretation nearest to
    /// the next expected byte (this is what survives wraparound).
    fn rel(&self, seq: u32) -> i64 {
        let diff = seq.wrapping_sub(self.next_seq()) as i32;
        self.next as i64 + i64::from(diff)
    }

    /// Offset just past every byte seen of the stream: delivered, buffered,
    /// or the FIN.
    fn seen_end(&self) -> u64 {
        let buffered = self.ooo.last().map_or(0, Segment::end);
        let fin = self.fin.map_or(0, |f| f + 1);
        self.next.max(buffered).max(fin)
    }

    /// Whether a RST with sequence number `seq` is near enough the stream to
    /// be this side's own ([`RST_WINDOW`]). True before any segment of this
    /// side was seen: there is nothing to check against.
    pub fn rst_in_window(&self, seq: u32) -> bool {
        if !self.started {
            return true;
        }
        let at = self.rel(seq);
        let lo = self.next as i64 - RST_WINDOW as i64;
        let hi = (self.seen_end() + RST_WINDOW) as i64;
        (lo..=hi).contains(&at)
    }

    /// Takes one segment of this direction. `syn`/`fin` are the segment's
    /// flags; `out` receives whatever becomes deliverable.
    pub fn segment<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        out: &mut F,
    ) -> SegmentEvents {
        let mut ev = SegmentEvents::default();
        if !self.started {
            // A SYN occupies one sequence number before the first data byte.
            // Without one the connection is picked up mid-stream here.
            self.started = true;
            self.isn = if syn { seq.wrapping_add(1) } else { seq };
            self.next = 0;
        }
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let start = self.rel(data_seq);
        let end = start + payload.len() as i64;
        if fin && end >= 0 && self.fin.is_none() {
            self.fin = Some(end as u64);
        }
        if payload.is_empty() {
            return ev;
        }
        let next = self.next as i64;
        if start < next {
            // The rare case: some of it was delivered already.
            ev.inconsistent = self.differs_from_delivered(start, payload);
        }
        if end <= next {
            ev.retransmission = true;
            return ev;
        }
        if start <= next {
            let skip = (next - start) as usize;
            if let Some(fresh) = payload.get(skip..) {
                self.deliver_from(self.next, fresh, out, &mut ev);
            }
            return ev;
        }
        ev.out_of_order = true;
        self.buffer(start as u64, payload, out, &mut ev);
        ev
    }

    /// Whether the part of `payload` (starting at stream offset `start`)
    /// that overlaps the delivered bytes still held differs from them.
    fn differs_from_delivered(&self, start: i64, payload: &[u8]) -> bool {
        let Some(recent) = self.recent.as_deref() else {
            return false;
        };
        let recent = recent.as_slice();
        let held_from = self
            .recent_from
            .max(self.next.saturating_sub(RECENT_BYTES as u64));
        let from = start.max(held_from as i64);
        let to = (start + payload.len() as i64).min(self.next as i64);
        if from >= to {
            return false;
        }
        let (from, to) = (from as u64, to as u64);
        let mine = payload.get((from as i64 - start) as usize..(to as i64 - start) as usize);
        let at = (from % RECENT_BYTES as u64) as usize;
        let len = (to - from) as usize;
        let first = len.min(RECENT_BYTES - at);
        let (Some(mine), Some(a), Some(b)) =
            (mine, recent.get(at..at + first), recent.get(..len - first))
        else {
            return false;
        };
        mine.get(..first) != Some(a) || mine.get(first..) != Some(b)
    }

    /// Keeps the tail of `data`, about to be delivered at `self.next`, in
    /// the window of recent bytes.
    fn remember(&mut self, data: &[u8]) {
        // Made on the heap directly (a boxed array literal would be built
        // on the stack first).
        let recent = self.recent.get_or_insert_with(|| {
            vec![0; RECENT_BYTES]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| Box::new([0; RECENT_BYTES]))
        });
        let tail = data
            .get(data.len().saturating_sub(RECENT_BYTES)..)
            .unwrap_or(data);
        let off = self.next + (data.len() - tail.len()) as u64;
        let at = (off % RECENT_BYTES as u64) as usize;
        let first = tail.len().min(RECENT_BYTES - at);
        let (a, b) = tail.split_at(first);
        if let Some(dst) = recent.get_mut(at..at + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = recent.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
    }

    fn deliver<F: FnMut(Chunk<'_>)>(&mut self, data: &[u8], out: &mut F) {
        self.remember(data);
        self.next += data.len() as u64;
        out(Chunk::Data(data));
    }

    /// `len` bytes of the stream will never be delivered.
    fn gap<F: FnMut(Chunk<'_>)>(&mut self, len: u64, out: &mut F) {
        self.next += len;
        self.recent_from = self.next;
        out(Chunk::Gap(len));
    }

    /// Delivers what `payload` (at `start`, not after the next byte) adds to
    /// the stream. Where it reaches buffered segments those keep their bytes
    /// (first copy wins) and the overlap is compared.
    fn deliver_from<F: FnMut(Chunk<'_>)>(
        &mut self,
        start: u64,
        payload: &[u8],
        out: &mut F,
        ev: &mut SegmentEvents,
    ) {
        let end = start + payload.len() as u64;
        while self.next < end {
            let pos = self.next;
            let upto = match self.ooo.first() {
                Some(seg) if seg.off <= pos => {
                    let ov_end = seg.end().min(end);
                    let a = payload.get((pos - start) as usize..(ov_end - start) as usize);
                    let b = seg
                        .data
                        .get((pos - seg.off) as usize..(ov_end - seg.off) as usize);
                    ev.inconsistent |= a != b;
                    self.drain(out);
                    continue;
                }
                Some(seg) if seg.off < end => seg.off,
                _ => end,
            };
            match payload.get((pos - start) as usize..(upto - start) as usize) {
                Some(fresh) => self.deliver(fresh, out),
                None => break,
            }
        }
        self.drain(out);
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain<F: FnMut(Chunk<'_>)>(&mut self, out: &mut F) {
        while let Some(first) = self.ooo.first() {
            if first.off > self.next {
                break;
            }
            let seg = self.ooo.remove(0);
            self.ooo_bytes -= seg.data.len();
            if seg.end() > self.next {
                let skip = (self.next - seg.off) as usize;
                if let Some(fresh) = seg.data.get(skip..) {
                    self.deliver(fresh, out);
                }
            }
        }
    }

    /// Gives up the hole before the first buffered segment: reports it as a
    /// gap and delivers what then becomes contiguous.
    fn skip_hole<F: FnMut(Chunk<'_>)>(&mut self, out: &mut F) {
        if let Some(first) = self.ooo.first()
            && first.off > self.next
        {
            let len = first.off - self.next;
            self.gap(len, out);
        }
        self.drain(out);
    }

    fn buffer<F: FnMut(Chunk<'_>)>(
        &mut self,
        start: u64,
        payload: &[u8],
        out: &mut F,
        ev: &mut SegmentEvents,
    ) {
        // Only the bytes not buffered yet count against the limit: a
        // retransmission of buffered data must not give up a hole.
        let fresh = self.unbuffered(start, payload.len());
        if fresh > 0 && self.is_full(fresh) {
            ev.ooo_limit = true;
            while !self.ooo.is_empty() && self.is_full(self.unbuffered(start, payload.len())) {
                self.skip_hole(out);
            }
            // Progress may have reached or passed this segment.
            if start <= self.next {
                ev.inconsistent |= self.differs_from_delivered(start as i64, payload);
                let skip = (self.next - start) as usize;
                if let Some(fresh) = payload.get(skip..)
                    && !fresh.is_empty()
                {
                    self.deliver_from(self.next, fresh, out, ev);
                }
                return;
            }
            if payload.len() > self.ooo_cap {
                // Larger than the whole buffer: give up the hole before it.
                self.gap(start - self.next, out);
                self.deliver(payload, out);
                self.drain(out);
                return;
            }
        }
        // Insert the parts not already buffered (first copy wins).
        let end = start + payload.len() as u64;
        let mut pos = start;
        let mut i = self.ooo.partition_point(|s| s.end() <= start);
        while pos < end {
            let (piece_end, skip_to) = match self.ooo.get(i) {
                Some(seg) if seg.off < end => {
                    if seg.off > pos {
                        (seg.off, None)
                    } else {
                        // Overlap with a buffered segment: compare and skip.
                        let ov_end = seg.end().min(end);
                        let a = payload.get((pos - start) as usize..(ov_end - start) as usize);
                        let b = seg
                            .data
                            .get((pos - seg.off) as usize..(ov_end - seg.off) as usize);
                        if a != b {
                            ev.inconsistent = true;
                        }
                        (pos, Some(seg.end()))
                    }
                }
                _ => (end, None),
            };
            if let Some(next_pos) = skip_to {
                pos = next_pos.min(end);
                i += 1;
                continue;
            }
            if let Some(piece) = payload.get((pos - start) as usize..(piece_end - start) as usize) {
                self.ooo.insert(
                    i,
                    Segment {
                        off: pos,
                        data: piece.to_vec(),
                    },
                );
                self.ooo_bytes += piece.len();
                i += 1;
            }
            pos = piece_end;
        }
    }

    /// Bytes of `[start, start + len)` that no buffered segment holds.
    fn unbuffered(&self, start: u64, len: usize) -> usize {
        let end = start + len as u64;
        let first = self.ooo.partition_point(|s| s.end() <= start);
        let held: u64 = self
            .ooo
            .get(first..)
            .unwrap_or_default()
            .iter()
            .take_while(|s| s.off < end)
            .map(|s| s.end().min(end) - s.off.max(start))
            .sum();
        len.saturating_sub(held as usize)
    }

    /// The peer acknowledged everything before `ack`. Bytes acknowledged but
    /// never captured, before data that was, are given up as a gap (Zeek's
    /// "ack above hole"), so the parser does not wait for data that will
    /// not come. An ACK beyond every byte seen makes no gap there (the
    /// sender's next segments, or a later ACK, will show whether bytes were
    /// lost); beyond them by more than [`MAX_ACK_AHEAD`] it is implausible:
    /// ignored, and false returned.
    pub fn ack<F: FnMut(Chunk<'_>)>(&mut self, ack: u32, out: &mut F) -> bool {
        if !self.started {
            return true;
        }
        let mut target = self.rel(ack);
        if let Some(f) = self.fin {
            // The FIN takes a sequence number of its own, no data.
            target = target.min(f as i64);
        }
        let next = self.next as i64;
        if target <= next {
            return true;
        }
        let seen = self.seen_end();
        if target as u64 > seen + MAX_ACK_AHEAD {
            return false;
        }
        let target = (target as u64).min(seen);
        while self.next < target {
            match self.ooo.first() {
                Some(seg) if seg.off < target => self.skip_hole(out),
                _ => {
                    self.gap(target - self.next, out);
                    self.drain(out);
                }
            }
        }
        true
    }

    /// End of the connection: hands up everything still buffered, with gaps
    /// for the holes between.
    pub fn flush<F: FnMut(Chunk<'_>)>(&mut self, out: &mut F) {
        while !self.ooo.is_empty() {
            self.skip_hole(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a reassembler delivers, gaps as `None` runs.
    #[derive(Default)]
    struct Sink {
        data: Vec<u8>,
        gaps: Vec<u64>,
        events: Vec<String>,
    }
    impl Sink {
        fn cb(&mut self) -> impl FnMut(Chunk<'_>) + '_ {
            |c| match c {
                Chunk::Data(d) => {
                    self.data.extend_from_slice(d);
                    self.events.push(String::from_utf8_lossy(d).into_owned());
                }
                Chunk::Gap(n) => {
                    self.gaps.push(n);
                    self.events.push(format!("<gap {n}>"));
                }
            }
        }
    }

    const ISN: u32 = 1000;

    fn syn(r: &mut Reassembler, s: &mut Sink) {
        r.segment(ISN, true, false, b"", &mut s.cb());
    }

    /// Data byte `off` of the stream carries sequence number ISN + 1 + off.
    fn seg(r: &mut Reassembler, s: &mut Sink, off: u32, data: &[u8]) -> SegmentEvents {
        r.segment(ISN + 1 + off, false, false, data, &mut s.cb())
    }

    #[test]
    fn in_order_delivery() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"HELO a\r\n");
        seg(&mut r, &mut s, 8, b"QUIT\r\n");
        assert_eq!(s.data, b"HELO a\r\nQUIT\r\n");
        assert!(s.gaps.is_empty());
        assert_eq!(r.offset(), 14);
    }

    #[test]
    fn reorder_is_buffered_then_delivered() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        let ev = seg(&mut r, &mut s, 4, b"efgh");
        assert!(ev.out_of_order);
        assert!(s.data.is_empty());
        assert_eq!(r.buffered_bytes(), 4);
        seg(&mut r, &mut s, 8, b"ijkl");
        seg(&mut r, &mut s, 0, b"abcd");
        assert_eq!(s.data, b"abcdefghijkl");
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn retransmission_and_partial_overlap() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"abcd");
        let ev = seg(&mut r, &mut s, 0, b"abcd");
        assert!(ev.retransmission);
        // Overlaps the delivered tail and adds two bytes.
        seg(&mut r, &mut s, 2, b"cdef");
        assert_eq!(s.data, b"abcdef");
    }

    #[test]
    fn overlapping_buffered_segments_keep_first_copy() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 4, b"EFGH");
        // Covers the buffered segment and both sides of it, with different
        // bytes where it overlaps.
        let ev = seg(&mut r, &mut s, 2, b"cdxxxxij");
        assert!(ev.inconsistent);
        assert_eq!(r.buffered_bytes(), 8);
        seg(&mut r, &mut s, 0, b"ab");
        assert_eq!(s.data, b"abcdEFGHij");
    }

    #[test]
    fn ooo_cap_forces_gap() {
        let (mut r, mut s) = (Reassembler::new(8), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"ab");
        seg(&mut r, &mut s, 4, b"efgh");
        // 4 + 6 > 8: the hole at 2..4 is given up.
        let ev = seg(&mut r, &mut s, 8, b"ijklmn");
        assert!(ev.ooo_limit);
        assert_eq!(s.events, ["ab", "<gap 2>", "efgh", "ijklmn"]);
        assert_eq!(r.buffered_bytes(), 0);
        assert!(r.buffered_bytes() <= 8);
    }

    #[test]
    fn ooo_cap_never_exceeded() {
        let (mut r, mut s) = (Reassembler::new(16), Sink::default());
        syn(&mut r, &mut s);
        for i in 0..100u32 {
            seg(&mut r, &mut s, 1 + i * 3, b"xy");
            assert!(r.buffered_bytes() <= 16);
        }
        r.flush(&mut s.cb());
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(s.data.len(), 200);
    }

    #[test]
    fn tiny_segments_are_limited_in_number_too() {
        // One-byte segments in descending order, every other byte: within
        // the byte limit, but each would be inserted at the front.
        let cap = 4096;
        let (mut r, mut s) = (Reassembler::new(cap), Sink::default());
        syn(&mut r, &mut s);
        assert_eq!(r.max_segments(), cap / OOO_BYTES_PER_SEGMENT);
        let mut limited = false;
        for k in (1..2000u32).rev() {
            let ev = seg(&mut r, &mut s, 2 * k, b"x");
            limited |= ev.ooo_limit;
            assert!(r.buffered_segments() <= r.max_segments());
            assert!(r.buffered_bytes() <= cap);
        }
        assert!(limited, "the segment limit forced gaps");
        // The stream still adds up: every offset was delivered once or
        // reported as a gap (bytes arriving behind a given-up hole are old).
        r.flush(&mut s.cb());
        assert_eq!(r.buffered_segments(), 0);
        assert!(s.data.len() >= r.max_segments());
        assert_eq!(s.data.len() as u64 + s.gaps.iter().sum::<u64>(), r.offset());
    }

    #[test]
    fn segment_larger_than_cap_skips_hole() {
        let (mut r, mut s) = (Reassembler::new(4), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 3, b"0123456789");
        assert_eq!(s.events, ["<gap 3>", "0123456789"]);
    }

    #[test]
    fn ack_above_hole_reports_gap() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"abc");
        seg(&mut r, &mut s, 6, b"ghi");
        // The peer acknowledged up to offset 9: bytes 3..6 were lost.
        assert!(r.ack(ISN + 1 + 9, &mut s.cb()));
        assert_eq!(s.events, ["abc", "<gap 3>", "ghi"]);
        // A lost tail, acknowledged with nothing buffered: no gap until
        // the sender shows it went on (its next segment).
        assert!(r.ack(ISN + 1 + 12, &mut s.cb()));
        assert_eq!(s.gaps, [3]);
        seg(&mut r, &mut s, 12, b"mno");
        assert!(r.ack(ISN + 1 + 15, &mut s.cb()));
        assert_eq!(s.gaps, [3, 3]);
        assert_eq!(s.events.last().map(String::as_str), Some("mno"));
        // Stale and duplicate ACKs change nothing.
        assert!(r.ack(ISN + 1, &mut s.cb()));
        assert_eq!(s.gaps.len(), 2);
    }

    #[test]
    fn far_ack_makes_no_gap() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"MAIL FROM:<a@b>\r\n");
        // 500 MB ahead: under 2^31, so not a sequence number in the past.
        assert!(!r.ack(ISN + 1 + 500_000_000, &mut s.cb()));
        // Just beyond the bytes seen: plausible (a lost tail), still no gap.
        assert!(r.ack(ISN + 1 + 17 + 1000, &mut s.cb()));
        seg(&mut r, &mut s, 17, b"RCPT TO:<c@d>\r\n");
        assert!(s.gaps.is_empty());
        assert_eq!(s.data, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    }

    #[test]
    fn rst_must_be_near_the_stream() {
        let mut r = Reassembler::new(1024);
        // Nothing seen yet: nothing to check against.
        assert!(r.rst_in_window(12345));
        let mut s = Sink::default();
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, &[b'x'; 100]);
        let next = ISN + 1 + 100;
        assert!(r.rst_in_window(next));
        assert!(r.rst_in_window(next + RST_WINDOW as u32));
        assert!(r.rst_in_window(next.wrapping_sub(RST_WINDOW as u32)));
        assert!(!r.rst_in_window(next + RST_WINDOW as u32 + 1));
        assert!(!r.rst_in_window(next.wrapping_sub(RST_WINDOW as u32 + 1)));
        assert!(!r.rst_in_window(next.wrapping_add(0x8000_0000)));
        // Buffered data and the FIN widen it.
        seg(&mut r, &mut s, 1000, b"later");
        assert!(r.rst_in_window(ISN + 1 + 1005 + RST_WINDOW as u32));
    }

    #[test]
    fn retransmission_over_delivered_bytes_is_compared() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"RCPT TO:<bob@example.net>\r\n");
        // The same bytes again: a plain retransmission.
        let ev = seg(&mut r, &mut s, 0, b"RCPT TO:<bob@example.net>\r\n");
        assert!(ev.retransmission && !ev.inconsistent);
        // Other bytes at the same sequence numbers: the first copy stays.
        let ev = seg(&mut r, &mut s, 0, b"RCPT TO:<eve@example.net>\r\n");
        assert!(ev.retransmission && ev.inconsistent);
        // A partial overlap that differs where it overlaps, then goes on.
        let ev = seg(&mut r, &mut s, 20, b"XXXXXXXDATA\r\n");
        assert!(ev.inconsistent && !ev.retransmission);
        assert_eq!(s.data, b"RCPT TO:<bob@example.net>\r\nDATA\r\n");
        let ev = seg(&mut r, &mut s, 20, b".net>\r\nDATA\r\n");
        assert!(!ev.inconsistent);
    }

    #[test]
    fn only_the_recent_window_is_compared() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        let a = vec![b'a'; RECENT_BYTES + 100];
        seg(&mut r, &mut s, 0, &a);
        // The first 100 bytes are out of the window: not compared.
        assert!(!seg(&mut r, &mut s, 0, &[b'z'; 100]).inconsistent);
        // A segment over both sides of the window's edge: compared where held.
        assert!(seg(&mut r, &mut s, 50, &[b'z'; 100]).inconsistent);
        assert!(!seg(&mut r, &mut s, 50, &[b'a'; 100]).inconsistent);
        // The window wraps: the newest bytes are compared.
        seg(&mut r, &mut s, a.len() as u32, b"0123456789");
        assert!(seg(&mut r, &mut s, a.len() as u32 - 5, b"aaaaa01x3").inconsistent);
        assert!(!seg(&mut r, &mut s, a.len() as u32 - 5, b"aaaaa0123").inconsistent);
    }

    #[test]
    fn bytes_of_a_gap_are_not_compared() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"abcd");
        seg(&mut r, &mut s, 8, b"ijkl");
        assert!(r.ack(ISN + 1 + 12, &mut s.cb()));
        assert_eq!(s.gaps, [4]);
        // Bytes 4..8 never arrived; arriving now they are old, not different.
        assert!(!seg(&mut r, &mut s, 4, b"efgh").inconsistent);
        assert!(seg(&mut r, &mut s, 8, b"IJKL").inconsistent);
    }

    #[test]
    fn filling_a_hole_keeps_buffered_bytes() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 4, b"EFGH");
        // Fills the hole and covers the buffered segment with other bytes.
        let ev = seg(&mut r, &mut s, 0, b"abcdxxxxij");
        assert!(ev.inconsistent);
        assert_eq!(s.data, b"abcdEFGHij");
        // The same fill with the same bytes is consistent.
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 4, b"EFGH");
        assert!(!seg(&mut r, &mut s, 0, b"abcdEFGHij").inconsistent);
        assert_eq!(s.data, b"abcdEFGHij");
    }

    #[test]
    fn ack_of_fin_is_not_a_gap() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        r.segment(ISN + 1, false, true, b"bye", &mut s.cb());
        assert!(r.finished());
        assert!(r.ack(ISN + 1 + 4, &mut s.cb()));
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn implausible_ack_is_ignored() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        assert!(!r.ack(ISN.wrapping_add(1 << 31).wrapping_sub(5), &mut s.cb()));
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn sequence_wraparound() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        let isn = u32::MAX - 3;
        r.segment(isn, true, false, b"", &mut s.cb());
        r.segment(isn.wrapping_add(1), false, false, b"abcd", &mut s.cb());
        // Crosses 2^32: sequence numbers 0.. now.
        r.segment(isn.wrapping_add(9), false, false, b"ijkl", &mut s.cb());
        r.segment(isn.wrapping_add(5), false, false, b"efgh", &mut s.cb());
        assert_eq!(s.data, b"abcdefghijkl");
        assert_eq!(r.next_seq(), isn.wrapping_add(13));
        assert!(r.ack(isn.wrapping_add(13), &mut s.cb()));
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn long_stream_crosses_wrap_many_times_in_order() {
        let (mut r, mut s) = (Reassembler::new(64), Sink::default());
        let mut seq = 0xfff0_0000u32;
        r.segment(seq, true, false, b"", &mut s.cb());
        seq = seq.wrapping_add(1);
        let chunk = [7u8; 60_000];
        let mut total = 0u64;
        for _ in 0..200_000 {
            r.segment(seq, false, false, &chunk, &mut |_| {});
            seq = seq.wrapping_add(chunk.len() as u32);
            total += chunk.len() as u64;
        }
        assert_eq!(r.offset(), total);
        assert!(total > 2 * (1u64 << 32));
    }

    #[test]
    fn mid_stream_pickup() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        r.segment(5_000_000, false, false, b"250 OK\r\n", &mut s.cb());
        r.segment(5_000_008, false, false, b"354 go\r\n", &mut s.cb());
        assert_eq!(s.data, b"250 OK\r\n354 go\r\n");
        // Earlier bytes than the pickup point are old, not a new stream.
        let ev = r.segment(4_999_990, false, false, b"0123456789", &mut s.cb());
        assert!(ev.retransmission);
    }

    #[test]
    fn flush_delivers_buffered_with_gaps() {
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 2, b"cd");
        seg(&mut r, &mut s, 6, b"gh");
        r.flush(&mut s.cb());
        assert_eq!(s.events, ["<gap 2>", "cd", "<gap 2>", "gh"]);
    }

    #[test]
    fn one_side_only_without_acks() {
        // Only this direction is captured, so no ACK ever reaches it: a
        // dropped segment shows up at the close.
        let (mut r, mut s) = (Reassembler::new(1024), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 0, b"MAIL FROM:<a@b>\r\n");
        seg(&mut r, &mut s, 30, b"DATA\r\n");
        assert_eq!(s.data, b"MAIL FROM:<a@b>\r\n");
        r.flush(&mut s.cb());
        assert_eq!(s.gaps, [13]);
        assert!(s.data.ends_with(b"DATA\r\n"));
    }

    /// Found by the reordering property test (tests/tests/prop_reassembly.rs):
    /// with the buffer full, a retransmission of a segment already buffered
    /// counted its whole length against the limit and gave up the hole
    /// before it, though it added nothing.
    #[test]
    fn retransmission_of_buffered_data_keeps_the_hole() {
        let (mut r, mut s) = (Reassembler::new(4), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 4, b"efgh");
        assert_eq!(r.buffered_bytes(), 4);
        let ev = seg(&mut r, &mut s, 4, b"efgh");
        assert!(!ev.ooo_limit);
        // A part of it too.
        let ev = seg(&mut r, &mut s, 5, b"fg");
        assert!(!ev.ooo_limit);
        seg(&mut r, &mut s, 0, b"abcd");
        assert_eq!(s.data, b"abcdefgh");
        assert!(s.gaps.is_empty());
        // Bytes beyond what is buffered still count.
        seg(&mut r, &mut s, 12, b"mnop");
        let ev = seg(&mut r, &mut s, 12, b"mnopq");
        assert!(ev.ooo_limit);
        assert_eq!(s.gaps, [4]);
    }

    /// A silent direction rebuilt from its handshake answers every later
    /// segment, ACK and RST as the original does; one that carried a byte
    /// has no handshake form.
    #[test]
    fn handshake_round_trips_while_silent() {
        let (mut r, mut s) = (Reassembler::new(64), Sink::default());
        assert_eq!(r.handshake(), Some(Handshake::default()));
        syn(&mut r, &mut s);
        // A FIN ahead of bytes never seen.
        r.segment(ISN + 1 + 10, false, true, b"", &mut s.cb());
        let h = r.handshake().unwrap();
        assert_eq!(
            h,
            Handshake {
                started: true,
                isn: ISN + 1,
                fin: Some(10)
            }
        );
        let mut copy = Reassembler::from_handshake(h, 64);
        for seq in [ISN, ISN + 1, ISN + 0x2_0000, ISN.wrapping_sub(0x2_0000)] {
            assert_eq!(copy.rst_in_window(seq), r.rst_in_window(seq));
        }
        let (mut s2, ack) = (Sink::default(), ISN + 1 + 11);
        assert_eq!(copy.ack(ack, &mut s2.cb()), r.ack(ack, &mut s.cb()));
        assert_eq!((s2.gaps, s.gaps.clone()), (vec![10], vec![10]));
        assert_eq!(r.handshake(), None);
        let (mut r, mut s) = (Reassembler::new(64), Sink::default());
        syn(&mut r, &mut s);
        seg(&mut r, &mut s, 1, b"x");
        assert_eq!(r.handshake(), None, "buffered out of order");
    }
}
