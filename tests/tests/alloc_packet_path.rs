//! The packet path allocates nothing per packet: a counting global
//! allocator watches one worker (decode, flow table, reassembly, SMTP
//! command/reply/body framing, MIME tracking, detection) while it takes
//! generated mail three times over. The same conversations with short and
//! with long bodies (four times the packets, the same records) must cost the
//! same number of allocations once the worker is warm, and a finished
//! record a bounded number (at most 10, connection set-up included: about
//! 8 measured, with closed flows' sessions and windows of recent bytes
//! reused by new ones; 21 before that pool).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use sensor_tests::synth::session::interleave;
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use smtp_sensor::config::Config;
use smtp_sensor::decode::{DecodeOptions, Decoded, LinkType, decode};
use smtp_sensor::detect::Detection;
use smtp_sensor::flow::FlowConfig;
use smtp_sensor::net::Ts;
use smtp_sensor::pipeline::{Worker, smtp_flow};

/// Counts the allocations (and reallocations) of the current thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: a thread being torn down has no counter any more.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const CONNECTIONS: usize = 60;

/// `CONNECTIONS` interleaved conversations, two messages each (one with an
/// attachment), bodies of `lines` lines; `pass` moves the clients to new
/// ports and the time on, so a second pass is new connections.
fn capture(lines: usize, pass: u16) -> Vec<(Ts, Vec<u8>)> {
    let t0 = 1_700_000_000 + u64::from(pass) * 3600;
    let convs = (0..CONNECTIONS).map(|i| {
        let client = SocketAddr::from((
            [198, 18, 1, (i % 50) as u8],
            20_000 + pass * 1000 + i as u16,
        ));
        let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(lines);
        let plain = Message::simple("a@example.com", "b@example.net", "plain")
            .header("Received", "from h ([198.18.1.9]) by relay.example.com")
            .body(&body);
        let attached = Message::simple("a@example.com", "c@example.net", "attached")
            .body(&body)
            .attachment(
                "f.bin",
                &"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n".repeat(lines),
            );
        SmtpConversation::builder()
            .client(client)
            .start(Ts(t0 * 1_000_000 + i as u64 * 7_000))
            .pipelining()
            .mss(256)
            .mail("a@example.com")
            .rcpt("b@example.net")
            .message(plain)
            .mail("a@example.com")
            .rcpt("c@example.net")
            .reject_rcpt_with(
                550,
                "5.7.1 blocked, see http://www.spamhaus.org/query/bl?ip=198.18.1.1",
            )
            .rcpt("d@example.net")
            .message(attached)
            .build()
            .frames()
    });
    interleave(convs)
}

/// Allocations of one worker over the third of three passes, frames of
/// that pass, and records written in it.
fn third_pass(lines: usize) -> (u64, usize, usize) {
    let cfg = Config::default();
    let Ok(det) = Detection::from_config(&cfg) else {
        panic!("the default configuration builds its detection");
    };
    let mut w = Worker::new(
        0,
        FlowConfig::from_config(&cfg),
        Arc::new(det),
        smtp_flow::factory(&cfg),
    );
    let opts = DecodeOptions::default();
    let mut run = |frames: &[(Ts, Vec<u8>)]| {
        let mut records = 0;
        for (ts, f) in frames {
            if let Decoded::Tcp(p) = decode(f, LinkType::Ethernet, *ts, opts) {
                w.packet(&p);
            }
        }
        // Every connection closed by its FIN: the records are all out.
        let r = w.tick(Ts(u64::MAX / 4), None);
        records += r.records.len();
        drop(r);
        records
    };
    // Two passes warm the worker up (tables and buffers reach their
    // sizes); the third is measured.
    for pass in 0..2 {
        assert_eq!(
            run(&capture(lines, pass)),
            CONNECTIONS * 2,
            "every message is recorded"
        );
    }
    let third = capture(lines, 2);
    let before = allocs();
    let records = run(&third);
    (allocs() - before, third.len(), records)
}

#[test]
fn allocations_do_not_grow_with_packets() {
    let (short_allocs, short_frames, short_records) = third_pass(4);
    let (long_allocs, long_frames, long_records) = third_pass(200);
    eprintln!(
        "short bodies: {short_frames} frames, {short_records} records, {short_allocs} allocations; \
         long bodies: {long_frames} frames, {long_records} records, {long_allocs} allocations"
    );
    assert!(
        long_frames > 4 * short_frames,
        "long bodies are many more packets"
    );
    assert_eq!(short_records, CONNECTIONS * 2);
    assert_eq!(long_records, short_records);
    // The same conversations, several times the packets: no allocation
    // more, but for a hash table that may still double once (whether its
    // deleted slots fill it up before it is half full depends on the
    // table's random seed). One allocation per packet would be thousands.
    assert!(
        long_allocs <= short_allocs + 2,
        "allocations that grow with the packet count: {short_allocs} for \
         {short_frames} frames, {long_allocs} for {long_frames}"
    );
    let per_record = short_allocs as f64 / short_records as f64;
    assert!(
        per_record <= 10.0,
        "{per_record:.1} allocations per record (connection set-up included)"
    );
}
