//! Software prefetch of frames the pipeline will read next.
//!
//! A frame's bytes are cold when the pipeline reaches it: live, the kernel
//! copied it into the UMEM on another core; offline, it is the next stretch
//! of a mapped file. The first code to read it (offline the checksum, live
//! the line framing, as no checksum is verified there) then waits on
//! memory for every cache line, ≈ a tenth of the per-packet cost on the
//! load capture. Both inputs know which bytes come next (the rest of the
//! batch, the rest of the file), so they ask for them a few frames ahead,
//! as DPDK applications do with `rte_prefetch0`: the loads then overlap the
//! work on the frames before.
//!
//! A prefetch is a hint: it never faults, and on targets without one these
//! functions do nothing.

use super::Frame;

/// Cache line size assumed for stepping through a range.
const LINE: usize = 64;

/// Asks for the cache line holding `p`.
#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it reads nothing the program sees and
    // does not fault on any address. SSE is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the first `max` bytes of `frame`.
#[inline]
pub fn frame(frame: &[u8], max: usize) {
    let end = frame.len().min(max);
    let mut at = 0;
    while at < end {
        if let Some(b) = frame.get(at) {
            line(b);
        }
        at += LINE;
    }
}

/// How many frames of a batch ahead of the one being processed are
/// requested ([`BATCH_BYTES`] of each): a miss to memory takes about as long as processing one
/// or two small frames.
pub const BATCH_AHEAD: usize = 3;

/// Bytes of each batch frame requested: all of it (a UMEM frame is 2 KiB).
/// Live frames have no checksum verified, so their payload is first read
/// by the line framing (`memrchr`, `memmem`), which took ≈ 10 % of the
/// capture thread in misses when only the headers were requested.
pub const BATCH_BYTES: usize = 2048;

/// The frames of `batch` in order, each one's successor [`BATCH_AHEAD`]
/// places on requested as it is handed out.
pub fn batch<'b, 'a>(batch: &'b [Frame<'a>]) -> impl Iterator<Item = &'b Frame<'a>> {
    for f in batch.iter().take(BATCH_AHEAD) {
        frame(f.data, BATCH_BYTES);
    }
    batch.iter().enumerate().map(move |(i, f)| {
        if let Some(next) = batch.get(i + BATCH_AHEAD) {
            frame(next.data, BATCH_BYTES);
        }
        f
    })
}

/// Sequential read-ahead over a buffer read front to back: keeps the cache
/// lines up to [`Ahead::DISTANCE`] bytes past the cursor requested.
#[derive(Debug, Default)]
pub struct Ahead {
    /// Offset up to which lines have been requested.
    done: usize,
}

impl Ahead {
    /// How far ahead of the cursor: a few frames of the load capture
    /// (≈ 250 bytes each), so a line is asked for about a microsecond
    /// before it is read, long enough for a miss to memory.
    pub const DISTANCE: usize = 2048;

    /// The cursor is at `pos` in `data`: request what lies ahead of it.
    #[inline]
    pub fn advance(&mut self, data: &[u8], pos: usize) {
        let target = pos.saturating_add(Self::DISTANCE).min(data.len());
        // After a jump (the first call, a resumed read) start at the cursor.
        let mut at = self.done.max(pos);
        while at < target {
            if let Some(b) = data.get(at) {
                line(b);
            }
            at += LINE;
        }
        // Never behind `done`: the loop starts there or later.
        self.done = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_requests_each_line_once_and_stops_at_the_end() {
        let data = vec![0u8; 10_000];
        let mut a = Ahead::default();
        a.advance(&data, 0);
        assert_eq!(a.done, Ahead::DISTANCE);
        a.advance(&data, 100);
        // Only the lines past what was asked before.
        assert_eq!(a.done, Ahead::DISTANCE + 128);
        a.advance(&data, 9_000);
        assert!(a.done >= data.len() && a.done < data.len() + LINE);
        a.advance(&data, 10_000);
        assert!(a.done < data.len() + LINE);
    }

    #[test]
    fn batch_hands_out_every_frame_in_order() {
        let bufs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 * usize::from(i)]).collect();
        let frames: Vec<Frame<'_>> = bufs
            .iter()
            .map(|b| Frame {
                ts: crate::net::Ts(0),
                data: b,
                flow_hash: None,
            })
            .collect();
        for n in [0, 1, 2, 3, 10] {
            let seen: Vec<usize> = batch(&frames[..n]).map(|f| f.data.len()).collect();
            let want: Vec<usize> = bufs[..n].iter().map(Vec::len).collect();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn frame_prefetch_takes_any_length() {
        frame(&[], 256);
        frame(&[1, 2, 3], 256);
        frame(&[0; 3000], 256);
    }
}
