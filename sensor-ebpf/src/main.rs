//! The XDP program: hands TCP segments to or from a watched SMTP port to the
//! AF_XDP socket of the rx queue they arrived on, and everything else back to
//! the kernel (or drops it on a dedicated tap port).
//!
//! The header walk is `sensor_common::parse::classify`, the same code the
//! userspace tests exercise; this file only supplies packet bytes, maps and
//! counters. Logging (aya-log) happens only on the rare paths (malformed
//! headers, no socket on a queue) and only when userspace set the `Log` slot
//! of the `CONFIG` map.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_adjust_meta,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};
use aya_log_ebpf::{info, warn};
use sensor_common::{
    flowhash::{FlowHashKey, FrameMeta, frame_flow_hash},
    maps::{
        ConfigSlot, Counter, NON_SMTP_DROP, PORT_WATCHED, SMTP_PORTS_ENTRIES, XSKS_MAX_ENTRIES,
    },
    parse::{SmtpSegment, Verdict, smtp_segment},
};
use sensor_ebpf::XdpBytes;

// Map statics are named exactly as the constants in `sensor_common::maps`:
// aya names a map after its static.

/// Watched TCP ports (index = port, value `PORT_WATCHED`).
#[map]
static SMTP_PORTS: Array<u8> = Array::with_max_entries(SMTP_PORTS_ENTRIES, 0);

/// AF_XDP socket per rx queue.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(XSKS_MAX_ENTRIES, 0);

/// Per-CPU counters, indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Run-time switches, indexed by `ConfigSlot`.
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(ConfigSlot::COUNT, 0);

/// The flow hash's per-run key (set by the loader).
#[unsafe(no_mangle)]
static FLOW_HASH_KEY: FlowHashKey = FlowHashKey([0, 0]);

/// Non-zero: put the flow hash in front of SMTP frames (set by the loader).
#[unsafe(no_mangle)]
static WRITE_FLOW_HASH: u32 = 0;

#[xdp]
pub fn smtp_sensor(ctx: XdpContext) -> u32 {
    match try_smtp_sensor(&ctx) {
        Ok(action) => action,
        Err(()) => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn try_smtp_sensor(ctx: &XdpContext) -> Result<u32, ()> {
    count(Counter::Seen);
    let action = match smtp_segment(&XdpBytes(ctx), is_smtp_port) {
        Ok(seg) => {
            // SAFETY: reading a global the loader may have set.
            if unsafe { core::ptr::read_volatile(&WRITE_FLOW_HASH) } != 0 {
                put_flow_hash(ctx, &seg);
            }
            redirect(ctx)
        }
        Err(Verdict::Smtp | Verdict::NotSmtp) => not_smtp(),
        // No ports in a later fragment: the kernel reassembles it.
        Err(Verdict::NonFirstFragment) => pass(),
        Err(Verdict::Malformed(e)) => {
            count(Counter::Malformed);
            if config(ConfigSlot::Log) != 0 {
                info!(ctx, "malformed frame: {}", e.as_str());
            }
            not_smtp()
        }
    };
    Ok(action)
}

/// Puts the connection's flow hash in front of the frame (metadata), so
/// the capture thread routes it without decoding; counts a driver that has
/// no room for it.
#[inline(always)]
fn put_flow_hash(ctx: &XdpContext, seg: &SmtpSegment) {
    // SAFETY: reading a global the loader set before attaching.
    let key = unsafe { core::ptr::read_volatile(&FLOW_HASH_KEY) };
    let Some(hash) = frame_flow_hash(&key, &XdpBytes(ctx), &seg.loc, seg.sport, seg.dport) else {
        return;
    };
    // SAFETY: helper call on this program's context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(FrameMeta::LEN as i32)) } != 0 {
        count(Counter::MetaFailed);
        return;
    }
    let meta = ctx.metadata();
    // The verifier wants the metadata checked against the start of data.
    if meta + FrameMeta::LEN > ctx.data() {
        count(Counter::MetaFailed);
        return;
    }
    let p = meta as *mut FrameMeta;
    // SAFETY: `FrameMeta::LEN` bytes at `meta` lie before `data`, inside
    // the metadata area the helper just made.
    unsafe {
        (*p).hash = hash;
        (*p).magic = FrameMeta::MAGIC;
    }
}

/// Redirects to the queue's AF_XDP socket; passes when there is none.
#[inline(always)]
fn redirect(ctx: &XdpContext) -> u32 {
    let queue = ctx.rx_queue_index();
    // flags 0: a missing entry yields XDP_ABORTED, reported as Err.
    match XSKS.redirect(queue, 0) {
        Ok(action) => {
            count(Counter::Redirected);
            action
        }
        Err(_) => {
            count(Counter::RedirectFailed);
            if config(ConfigSlot::Log) != 0 {
                warn!(
                    ctx,
                    "no AF_XDP socket on rx queue {}; SMTP frame passed", queue
                );
            }
            pass()
        }
    }
}

#[inline(always)]
fn not_smtp() -> u32 {
    if config(ConfigSlot::NonSmtpAction) == NON_SMTP_DROP {
        count(Counter::Dropped);
        xdp_action::XDP_DROP
    } else {
        pass()
    }
}

#[inline(always)]
fn pass() -> u32 {
    count(Counter::Passed);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn is_smtp_port(port: u16) -> bool {
    SMTP_PORTS
        .get(u32::from(port))
        .is_some_and(|v| *v == PORT_WATCHED)
}

#[inline(always)]
fn config(slot: ConfigSlot) -> u32 {
    CONFIG.get(slot.index()).copied().unwrap_or(0)
}

#[inline(always)]
fn count(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c.index()) {
        // Per-CPU slot: no other writer while this program runs here.
        unsafe { *p += 1 };
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
