//! The replayer's XDP program (`replay-xdp`) and its loader (`smtp-replay`):
//! map names, the layout of the frame table, counters, and the address
//! shift applied on every pass after the first.
//!
//! The replayer runs its program with `BPF_PROG_RUN` and
//! `BPF_F_TEST_XDP_LIVE_FRAMES` on the sending end of a veth pair. Each run
//! of the program turns the kernel's test frame into the next frame of the
//! capture and returns `XDP_TX`, which hands it to the peer end (where the
//! sensor's XDP program sees it as received traffic). The capture lives in
//! two maps:
//!
//! - [`CHUNKS`]: the frame bytes, packed into [`Chunk`]s. A frame starts
//!   below [`CHUNK_SPAN`] and may run into the [`MAX_FRAME`] bytes of slack
//!   after it, so the verifier can prove `offset + len <= CHUNK_BYTES` from
//!   the two bounds alone, and a frame never straddles two chunks.
//! - [`FRAMES`]: one [`FrameRef`] per frame, in capture order, grouped by
//!   lane (one lane per rx queue of the receiver).
//!
//! [`LANES`] holds, per lane, where its frames are and how many were sent,
//! so the position persists across runs; [`CURRENT_LANE`] says which lane
//! the runs of the current call are for (the loader sets it before each
//! call: live-frame runs always see `rx_queue_index` 0, whatever the
//! context passed in says).

/// Name of the replayer's XDP program function.
pub const PROGRAM_NAME: &str = "smtp_replay";

/// `Array<Chunk>`: the capture's frame bytes.
pub const CHUNKS: &str = "REPLAY_CHUNKS";
/// `Array<FrameRef>`: every frame's place in [`CHUNKS`], lane by lane.
pub const FRAMES: &str = "REPLAY_FRAMES";
/// `Array<Lane>`: per lane, its frames and its send position.
pub const LANES: &str = "REPLAY_LANES";
/// `Array<u32>` of one entry: the lane the current call sends.
pub const CURRENT_LANE: &str = "REPLAY_CURRENT_LANE";
/// `PerCpuArray<u64>` indexed by [`ReplayCounter`].
pub const COUNTERS: &str = "REPLAY_COUNTERS";

/// Global (`EbpfLoader::set_global`): the length of the test frame the
/// runs start from (`data_size_in`); every frame is cut down from it.
pub const GLOBAL_BASE_LEN: &str = "REPLAY_BASE_LEN";
/// Global: non-zero to shift addresses on every pass after the first.
pub const GLOBAL_SHIFT: &str = "REPLAY_SHIFT";

/// Frames start at an offset below this in their chunk.
pub const CHUNK_SPAN: u32 = 60 * 1024;
/// Largest frame the replayer sends: what fits in one page of a live-frames
/// run (4 KiB less the headroom and the shared info the kernel keeps).
pub const MAX_FRAME: u32 = 3_200;
/// Bytes in one chunk: the span plus room for a frame starting at its end.
pub const CHUNK_BYTES: usize = (CHUNK_SPAN + MAX_FRAME) as usize;
/// Largest IP header offset in a frame the program rewrites (Ethernet and
/// up to a few VLAN tags).
pub const MAX_L3_OFFSET: u8 = 64;
/// Rx queues of the receiver the replayer can feed, one lane each.
pub const MAX_LANES: u32 = 64;

/// Bytes of the capture, packed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Chunk {
    pub bytes: [u8; CHUNK_BYTES],
}

/// Where one frame is, and what the address shift must touch in it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameRef {
    /// Index into [`CHUNKS`].
    pub chunk: u32,
    /// Offset in the chunk (below [`CHUNK_SPAN`]).
    pub offset: u32,
    /// Frame length (1..=[`MAX_FRAME`]).
    pub len: u16,
    /// Offset of the IP header.
    pub l3: u8,
    /// [`IpKind`] as a byte.
    pub kind: u8,
    /// Offset of the L4 checksum that covers the addresses (TCP or UDP), 0
    /// for none (another protocol, a fragment, or a UDP checksum of zero).
    pub l4_csum: u16,
    pub _pad: u16,
}

/// What [`FrameRef::kind`] says about the IP header.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpKind {
    V4 = 4,
    V6 = 6,
}

/// One lane: its frames are `FRAMES[first .. first + count]`; `sent` is the
/// number of frames the program has produced on it so far (frame
/// `sent % count` of pass `sent / count` comes next).
///
/// Pacing happens in the program, against the kernel's monotonic clock
/// (`bpf_ktime_get_ns`, the same clock as userspace's `CLOCK_MONOTONIC`):
/// with `interval_ns` set, a run starts a burst of `burst` frames only when
/// `next_ns` has come, and otherwise drops the test frame at once
/// ([`ReplayCounter::Idle`]), so bursts leave evenly spaced within a call
/// instead of one burst per call. A burst is what a NIC hands the stack per
/// interrupt (see `smtp-replay --burst`); with `burst` 1 every frame is
/// spaced on its own, and each one is then flushed to the peer alone,
/// which costs the receiving side a wakeup per frame and caps the rate well
/// below top speed. A late program (after the pause between calls, or
/// slower than the rate) catches up at twice the rate, by at most
/// `max_lag_ns`. `budget` is what the current call may still send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lane {
    pub first: u32,
    pub count: u32,
    pub sent: u64,
    /// Nanoseconds between the starts of two bursts; 0: as fast as
    /// possible.
    pub interval_ns: u64,
    /// When the next burst is due (monotonic clock, ns).
    pub next_ns: u64,
    /// When the last burst started (ns): catching up, bursts are at least
    /// half an interval apart.
    pub last_ns: u64,
    /// Lag behind the schedule the program catches up at most.
    pub max_lag_ns: u64,
    /// Frames the current call may still send (paced lanes only).
    pub budget: u64,
    /// Frames per burst (paced lanes; 0 counts as 1).
    pub burst: u32,
    /// Frames of the current burst still to send.
    pub burst_left: u32,
}

crate::counters! {
    /// Per-CPU counters of the replayer's program.
    pub enum ReplayCounter {
        /// Frames handed to the peer (`XDP_TX`).
        Sent = 0 => "sent",
        /// Their bytes.
        Bytes = 1 => "bytes",
        /// Runs on a lane with no frames (a lane the loader did not fill).
        NoLane = 2 => "no_lane",
        /// Frames the program could not build (bad table entry, helper
        /// error).
        Failed = 3 => "failed",
        /// Runs of a paced lane that sent nothing (not due yet, or the
        /// call's budget spent): the program's way of waiting.
        Idle = 4 => "idle",
    }
}

/// Host bits of an IPv4 address inside 198.18.0.0/15, the benchmarking
/// range the replayer's captures use: a shift stays inside the /15.
pub const V4_SHIFT_MASK: u32 = 0x0001_FFFF;

/// The IPv4 address (host order) that `addr` becomes on pass `pass`: its
/// host bits inside the /15 advance by `pass`, wrapping inside the /15.
#[inline(always)]
pub const fn shift_v4(addr: u32, pass: u32) -> u32 {
    (addr & !V4_SHIFT_MASK) | (addr.wrapping_add(pass) & V4_SHIFT_MASK)
}

/// The last 32 bits (host order) of an IPv6 address on pass `pass`: they
/// advance by `pass`, wrapping, so the /96 prefix (inside 2001:db8::/32)
/// stays as it was.
#[inline(always)]
pub const fn shift_v6_low(low: u32, pass: u32) -> u32 {
    low.wrapping_add(pass)
}

/// The Internet checksum `csum` (as stored, network order read as a `u16`
/// of the two bytes) after one 32-bit word it covers changed from `old` to
/// `new` (both host order): RFC 1624, eqn. 3, `HC' = ~(~HC + ~m + m')`.
#[inline(always)]
pub const fn csum_replace4(csum: u16, old: u32, new: u32) -> u16 {
    let mut sum: u32 = (!csum) as u32;
    sum += (!(old >> 16) & 0xffff) + (!old & 0xffff);
    sum += (new >> 16) + (new & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data without padding holes the kernel
    // could leak (explicit `_pad`), valid for any bit pattern.
    unsafe impl aya::Pod for super::FrameRef {}
    // SAFETY: as above; two `u32`s, six `u64`s and two `u32`s have no
    // padding.
    unsafe impl aya::Pod for super::Lane {}
    // SAFETY: a byte array.
    unsafe impl aya::Pod for super::Chunk {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full Internet checksum of 16-bit words.
    fn checksum(words: &[u16]) -> u16 {
        let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut state = 0x1234_5678_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..10_000 {
            let mut words = [0u16; 8];
            for w in &mut words[..6] {
                *w = next() as u16;
            }
            let (old, new) = (next(), next());
            let mut with = |w: u32| {
                words[6] = (w >> 16) as u16;
                words[7] = w as u16;
                checksum(&words)
            };
            let before = with(old);
            assert_eq!(csum_replace4(before, old, new), with(new));
        }
    }

    #[test]
    fn v4_shift_stays_in_the_benchmark_range() {
        let base = u32::from_be_bytes([198, 18, 0, 0]);
        for (addr, pass) in [
            ([198, 18, 0, 1], 1),
            ([198, 19, 255, 255], 1),
            ([198, 19, 255, 200], 1000),
            ([198, 18, 3, 4], 0x2_0000),
        ] {
            let a = u32::from_be_bytes(addr);
            let s = shift_v4(a, pass);
            assert_eq!(s & !V4_SHIFT_MASK, base, "{addr:?} + {pass}");
        }
        let a = u32::from_be_bytes([198, 18, 0, 1]);
        assert_eq!(shift_v4(a, 0), a);
        assert_eq!(shift_v4(a, 0x2_0000), a);
        assert_eq!(
            shift_v4(u32::from_be_bytes([198, 19, 255, 255]), 1),
            base,
            "wraps inside the /15"
        );
        assert_eq!(shift_v6_low(u32::MAX, 2), 1);
    }

    #[test]
    fn layout_is_what_the_program_indexes() {
        assert_eq!(core::mem::size_of::<FrameRef>(), 16);
        assert_eq!(core::mem::size_of::<Lane>(), 64);
        assert!(CHUNK_SPAN as usize + MAX_FRAME as usize <= CHUNK_BYTES);
        for (i, c) in ReplayCounter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
    }
}
