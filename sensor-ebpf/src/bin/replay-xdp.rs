//! The replayer's XDP program: each run turns the kernel's test frame into
//! the next frame of the capture and sends it (`XDP_TX`), so one
//! `BPF_PROG_RUN` call with `BPF_F_TEST_XDP_LIVE_FRAMES` and `repeat = n`
//! puts the next `n` frames of a lane on the wire of a veth pair.
//!
//! The capture is in maps filled by `smtp-replay` (layout in
//! `sensor_common::replay`). The loader says which lane a call is for in
//! `REPLAY_CURRENT_LANE` before the call. On every
//! pass after the first the addresses are shifted (inside the benchmark
//! ranges) and the checksums updated, so each pass is a set of new
//! connections.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_adjust_tail, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use sensor_common::replay::{
    CHUNK_SPAN, Chunk, FrameRef, IpKind, Lane, MAX_FRAME, MAX_L3_OFFSET, MAX_LANES, ReplayCounter,
    csum_replace4, shift_v4, shift_v6_low,
};
use sensor_ebpf::ptr_at;

// Map statics are named exactly as the constants in
// `sensor_common::replay`; the loader sets their sizes to the capture's.

#[map]
static REPLAY_CHUNKS: Array<Chunk> = Array::with_max_entries(1, 0);

#[map]
static REPLAY_FRAMES: Array<FrameRef> = Array::with_max_entries(1, 0);

#[map]
static REPLAY_LANES: Array<Lane> = Array::with_max_entries(MAX_LANES, 0);

#[map]
static REPLAY_CURRENT_LANE: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static REPLAY_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ReplayCounter::COUNT, 0);

/// `data_size_in` of the runs (set by the loader).
#[unsafe(no_mangle)]
static REPLAY_BASE_LEN: u32 = MAX_FRAME;

/// Non-zero: shift addresses on passes after the first (set by the loader).
#[unsafe(no_mangle)]
static REPLAY_SHIFT: u32 = 0;

#[xdp]
pub fn smtp_replay(ctx: XdpContext) -> u32 {
    match try_smtp_replay(&ctx) {
        Ok(len) => {
            add(ReplayCounter::Sent, 1);
            add(ReplayCounter::Bytes, u64::from(len));
            xdp_action::XDP_TX
        }
        // Not sent: dropped at once (an idle run of a paced lane, or a
        // failure, counted apart).
        Err(c) => {
            add(c, 1);
            xdp_action::XDP_DROP
        }
    }
}

/// Builds the lane's next frame in place; returns its length.
#[inline(always)]
fn try_smtp_replay(ctx: &XdpContext) -> Result<u32, ReplayCounter> {
    let current = *REPLAY_CURRENT_LANE.get(0).ok_or(ReplayCounter::NoLane)?;
    let lane = REPLAY_LANES
        .get_ptr_mut(current)
        .ok_or(ReplayCounter::NoLane)?;
    // SAFETY: a valid map value; the loader's calls are the only runs of
    // this program, one at a time, so nothing else writes it meanwhile.
    let l = unsafe { &mut *lane };
    let count = u64::from(l.count);
    if count == 0 {
        return Err(ReplayCounter::NoLane);
    }
    if l.interval_ns != 0 {
        if l.budget == 0 {
            return Err(ReplayCounter::Idle);
        }
        if l.burst_left == 0 {
            // SAFETY: helper without arguments.
            let now = unsafe { bpf_ktime_get_ns() };
            if now < l.next_ns {
                return Err(ReplayCounter::Idle);
            }
            // Behind the schedule (after the pause between two calls):
            // catch up at twice the rate at most, not in one burst at top
            // speed.
            let late = now > l.next_ns + l.interval_ns;
            if late && now < l.last_ns + l.interval_ns / 2 {
                return Err(ReplayCounter::Idle);
            }
            l.last_ns = now;
            let next = l.next_ns + l.interval_ns;
            let floor = now.saturating_sub(l.max_lag_ns);
            l.next_ns = if next < floor { floor } else { next };
            l.burst_left = if l.burst == 0 { 1 } else { l.burst };
        }
        l.burst_left -= 1;
        l.budget -= 1;
    }
    let sent = l.sent;
    l.sent = sent + 1;
    // `count` is not zero; checked all the same, so no panic path is left
    // for the verifier to refuse.
    let pass = sent.checked_div(count).ok_or(ReplayCounter::NoLane)?;
    let nth = sent.checked_rem(count).ok_or(ReplayCounter::NoLane)?;
    let index = l.first.wrapping_add(nth as u32);
    let f = REPLAY_FRAMES.get(index).ok_or(ReplayCounter::Failed)?;
    let chunk = REPLAY_CHUNKS
        .get_ptr(f.chunk)
        .ok_or(ReplayCounter::Failed)?;
    let len = u32::from(f.len);
    let offset = f.offset;
    if len == 0 || len > MAX_FRAME || offset >= CHUNK_SPAN {
        return Err(ReplayCounter::Failed);
    }
    // SAFETY: reading a global the loader may have set before loading.
    let base = unsafe { core::ptr::read_volatile(&REPLAY_BASE_LEN) };
    if len > base {
        return Err(ReplayCounter::Failed);
    }
    // The run starts from a `base`-byte frame: cut it to `len`.
    // SAFETY: helper call on this program's context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, len as i32 - base as i32) } != 0 {
        return Err(ReplayCounter::Failed);
    }
    // SAFETY: `offset < CHUNK_SPAN` and `len <= MAX_FRAME`, so the source
    // range lies inside the chunk (`CHUNK_BYTES = CHUNK_SPAN + MAX_FRAME`).
    let src = unsafe { (*chunk).bytes.as_ptr().add(offset as usize) };
    // SAFETY: helper call; `src` points at `len` readable bytes.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, src as *mut _, len) } != 0 {
        return Err(ReplayCounter::Failed);
    }
    // SAFETY: reading a global the loader may have set before loading.
    let shift = unsafe { core::ptr::read_volatile(&REPLAY_SHIFT) };
    if shift != 0 && pass > 0 {
        shift_addresses(ctx, f, pass as u32).ok_or(ReplayCounter::Failed)?;
    }
    Ok(len)
}

/// Moves both addresses of the frame to those of pass `pass` and updates
/// the checksums that cover them (IPv4 header; TCP/UDP pseudo-header).
#[inline(always)]
fn shift_addresses(ctx: &XdpContext, f: &FrameRef, pass: u32) -> Option<()> {
    let l3 = usize::from(f.l3);
    if f.l3 > MAX_L3_OFFSET {
        return None;
    }
    let l4_csum = usize::from(f.l4_csum);
    if f.kind == IpKind::V4 as u8 {
        let src = ptr_at::<[u8; 4]>(ctx, l3 + 12)?;
        let dst = ptr_at::<[u8; 4]>(ctx, l3 + 16)?;
        let ip_csum = ptr_at::<[u8; 2]>(ctx, l3 + 10)?;
        // SAFETY: `ptr_at` checked each field lies inside the frame.
        unsafe {
            let s = u32::from_be_bytes(*src);
            let d = u32::from_be_bytes(*dst);
            let (s2, d2) = (shift_v4(s, pass), shift_v4(d, pass));
            *src = s2.to_be_bytes();
            *dst = d2.to_be_bytes();
            let c = u16::from_be_bytes(*ip_csum);
            *ip_csum = csum_replace4(csum_replace4(c, s, s2), d, d2).to_be_bytes();
            if l4_csum != 0 {
                fix_l4(ctx, l4_csum, [(s, s2), (d, d2)])?;
            }
        }
    } else if f.kind == IpKind::V6 as u8 {
        // The last 32 bits of each address.
        let src = ptr_at::<[u8; 4]>(ctx, l3 + 8 + 12)?;
        let dst = ptr_at::<[u8; 4]>(ctx, l3 + 24 + 12)?;
        // SAFETY: `ptr_at` checked each field lies inside the frame.
        unsafe {
            let s = u32::from_be_bytes(*src);
            let d = u32::from_be_bytes(*dst);
            let (s2, d2) = (shift_v6_low(s, pass), shift_v6_low(d, pass));
            *src = s2.to_be_bytes();
            *dst = d2.to_be_bytes();
            if l4_csum != 0 {
                fix_l4(ctx, l4_csum, [(s, s2), (d, d2)])?;
            }
        }
    }
    Some(())
}

/// Applies address word changes to the L4 checksum at `off`.
#[inline(always)]
fn fix_l4(ctx: &XdpContext, off: usize, changes: [(u32, u32); 2]) -> Option<()> {
    // Bounded for the verifier: the loader only stores offsets inside the
    // first headers.
    if off > 255 {
        return None;
    }
    let p = ptr_at::<[u8; 2]>(ctx, off)?;
    // SAFETY: `ptr_at` checked both bytes are inside the frame.
    unsafe {
        let mut c = u16::from_be_bytes(*p);
        for (old, new) in changes {
            c = csum_replace4(c, old, new);
        }
        *p = c.to_be_bytes();
    }
    Some(())
}

#[inline(always)]
fn add(c: ReplayCounter, n: u64) {
    if let Some(p) = REPLAY_COUNTERS.get_ptr_mut(c.index()) {
        // SAFETY: a per-CPU slot: no other writer while this program runs
        // on this CPU.
        unsafe { *p += n };
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
