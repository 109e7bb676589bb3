//! Property: any reordering of a stream's segments that stays within the
//! out-of-order window gives the same delivered bytes from reassembly, the
//! stream itself, with no gap; so do retransmissions mixed in. The window
//! is the reassembler's limits: at most `cap` bytes, and at most
//! `cap / OOO_BYTES_PER_SEGMENT` segments, waiting for a hole to fill.
//!
//! The segments of a window are shuffled among themselves; windows follow
//! each other, so everything buffered within one is delivered before the
//! next begins. The initial sequence number is arbitrary (wraparound
//! included), with or without a SYN first (without one, the stream's first
//! segment is captured first: whatever comes first starts the stream).

use proptest::prelude::*;
use smtp_sensor::flow::reassembly::OOO_BYTES_PER_SEGMENT;
use smtp_sensor::flow::{Chunk, Reassembler};

/// One stream, cut into segments, and the order they are captured in.
#[derive(Clone, Debug)]
struct Case {
    isn: u32,
    syn: bool,
    cap: usize,
    data: Vec<u8>,
    /// `(offset, length)` of each segment, in capture order.
    order: Vec<(usize, usize)>,
}

/// What the reassembler hands up.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delivered {
    data: Vec<u8>,
    gaps: Vec<u64>,
}

fn reassemble(c: &Case) -> Delivered {
    let mut r = Reassembler::new(c.cap);
    let mut d = Delivered::default();
    let mut out = |ch: Chunk<'_>| match ch {
        Chunk::Data(b) => d.data.extend_from_slice(b),
        Chunk::Gap(n) => d.gaps.push(n),
    };
    if c.syn {
        r.segment(c.isn.wrapping_sub(1), true, false, &[], &mut out);
    }
    for &(off, len) in &c.order {
        let seq = c.isn.wrapping_add(off as u32);
        r.segment(seq, false, false, &c.data[off..off + len], &mut out);
    }
    r.flush(&mut out);
    assert_eq!(r.buffered_bytes(), 0);
    d
}

/// Cuts `data` at the points `cuts` gives, into segments of at most
/// `cap` bytes; groups consecutive segments into windows that the
/// reassembler can hold entirely; shuffles each window with `keys`; adds
/// the retransmissions `dups` names (a copy of a segment of the same
/// window, at some later place in it).
fn case(
    isn: u32,
    syn: bool,
    cap: usize,
    data: Vec<u8>,
    cuts: &[usize],
    keys: &[u32],
    dups: &[(usize, usize)],
) -> Case {
    let mut segs = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let len = cuts[i % cuts.len()].clamp(1, cap).min(data.len() - pos);
        segs.push((pos, len));
        pos += len;
        i += 1;
    }
    let max_segments = (cap / OOO_BYTES_PER_SEGMENT).max(1);
    let mut order = Vec::new();
    let mut k = 0;
    let mut start = 0;
    while start < segs.len() {
        // A window: while the segments after its first one (those that
        // may have to wait) fit the byte and the segment limits.
        let mut end = start + 1;
        let mut bytes = 0;
        while let Some(&(_, len)) = segs.get(end) {
            if bytes + len > cap || end - start > max_segments {
                break;
            }
            bytes += len;
            end += 1;
        }
        let mut window: Vec<(u32, (usize, usize))> = segs[start..end]
            .iter()
            .map(|&s| {
                k += 1;
                (keys[k % keys.len()], s)
            })
            .collect();
        window.sort_by_key(|&(key, _)| key);
        let mut window: Vec<(usize, usize)> = window.into_iter().map(|(_, s)| s).collect();
        for &(from, to) in dups {
            if window.len() > 1 {
                let at = from % window.len();
                let copy = window[at];
                let to = (at + 1 + to % window.len()).min(window.len());
                window.insert(to, copy);
            }
        }
        order.extend(window);
        start = end;
    }
    if !syn {
        // Without a SYN the first segment captured starts the stream (a
        // connection picked up mid-stream): it must be the stream's first.
        if let Some(i) = order.iter().position(|&(off, _)| off == 0) {
            let first = order.remove(i);
            order.insert(0, first);
        }
    }
    Case {
        isn,
        syn,
        cap,
        data,
        order,
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        any::<u32>(),
        any::<bool>(),
        prop_oneof![64usize..=256, 257usize..=4096, Just(65_536usize)],
        prop::collection::vec(any::<u8>(), 1..6000),
        prop::collection::vec(1usize..=700, 1..16),
        prop::collection::vec(any::<u32>(), 1..32),
        prop::collection::vec((any::<usize>(), any::<usize>()), 0..3),
    )
        .prop_map(|(isn, syn, cap, data, cuts, keys, dups)| {
            case(isn, syn, cap, data, &cuts, &keys, &dups)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reordering_within_the_window_delivers_the_stream(c in cases()) {
        let got = reassemble(&c);
        prop_assert!(got.gaps.is_empty(), "gaps {:?}", got.gaps);
        prop_assert_eq!(got.data, c.data);
    }
}

/// The window matters: one segment more out of order than the segment
/// limit allows makes the reassembler give up the hole (so the property
/// above tests the limit it claims to, not a buffer without one).
#[test]
fn reordering_past_the_window_gives_a_gap() {
    let cap = 4 * OOO_BYTES_PER_SEGMENT;
    let data: Vec<u8> = (0..=255u8).cycle().take(10 * 8).collect();
    // Segment 0 comes last: the nine after it wait, over the limit of 4.
    let mut order: Vec<(usize, usize)> = (1..10).map(|i| (i * 8, 8)).collect();
    order.push((0, 8));
    // With a SYN first, offset 0 is the SYN's (else the first segment
    // captured would start the stream).
    let c = Case {
        isn: 7,
        syn: true,
        cap,
        data,
        order,
    };
    let got = reassemble(&c);
    assert!(!got.gaps.is_empty(), "a hole was given up");
    assert_ne!(got.data, c.data);
}
