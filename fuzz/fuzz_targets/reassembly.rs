//! TCP reassembly fed arbitrary segment sequences, two ways:
//!
//! 1. One direction's `Reassembler`, against an oracle: every segment is
//!    cut from one known stream ([`stream_byte`]) at any offset and length,
//!    in any order, retransmitted, overlapping, with SYN and FIN anywhere,
//!    the peer's ACKs in between, a byte limit from one byte up. Whatever
//!    it delivers must be that stream's bytes at their offsets (except
//!    where a segment carried different bytes for the same offsets), data
//!    and gaps must add up to the offset reached, and the buffer must keep
//!    within its byte limit.
//! 2. A `FlowTable` of at most two flows over three port pairs, both
//!    directions, raw flag bytes, time steps past the idle timeout and
//!    `expire` calls: every parser made is closed exactly once and gets
//!    nothing after its close.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use smtp_sensor::anomaly::AnomalyCounts;
use smtp_sensor::decode::{Packet, SegmentHeader, TcpFlags};
use smtp_sensor::flow::{Chunk, FlowConfig, FlowTable, Reassembler, StreamParser};
use smtp_sensor::net::{ConnInfo, Direction, Ts};
use smtp_sensor_fuzz::{addr, stream, stream_byte};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Out-of-order byte limit (0 is taken as 1).
    cap: u16,
    /// Sequence number of stream offset 0, client side.
    isn: u32,
    /// Server side.
    server_isn: u32,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Op {
    /// Which of three connections (the flow table run), and bit 2: from the
    /// server.
    who: u8,
    /// TCP flags byte.
    flags: u8,
    /// Stream offset of the first payload byte.
    off: u16,
    len: u8,
    /// Offset of the peer's stream acknowledged.
    ack: u16,
    /// Microseconds since the previous segment, times 2^(dt >> 5) (so
    /// that the five-minute idle timeout is within reach).
    dt: u8,
    /// Bit 0: the payload differs from the stream (an inconsistent
    /// retransmission); bit 1: call `expire` after this segment.
    quirks: u8,
}

impl Op {
    fn sent_by_server(&self) -> bool {
        self.who & 4 != 0
    }
    fn syn(&self) -> bool {
        self.flags & TcpFlags::SYN != 0
    }
    fn fin(&self) -> bool {
        self.flags & TcpFlags::FIN != 0
    }
    fn corrupt(&self) -> bool {
        self.quirks & 1 != 0
    }
    fn payload(&self) -> Vec<u8> {
        let mut p = stream(u64::from(self.off), usize::from(self.len));
        if self.corrupt() {
            p.iter_mut().for_each(|b| *b ^= 0x5a);
        }
        p
    }
    /// A SYN's sequence number is the one before its first data byte.
    fn seq(&self, isn: u32) -> u32 {
        isn.wrapping_add(u32::from(self.off))
            .wrapping_sub(u32::from(self.syn()))
    }
}

fuzz_target!(|input: Input| {
    reassembler_against_stream(&input);
    flow_table(&input);
});

/// What the reassembler must deliver: the input stream from `base` on.
struct Oracle {
    /// Input-stream offset of the reassembler's offset 0 (its first
    /// segment's first byte).
    base: u64,
    /// Data and gap bytes handed up so far.
    delivered: u64,
    /// Offsets some segment carried wrong bytes for.
    corrupt: Vec<bool>,
}

impl Oracle {
    fn chunk(&mut self, c: Chunk<'_>) {
        match c {
            Chunk::Data(d) => {
                assert!(!d.is_empty(), "empty data chunk");
                for (i, &b) in d.iter().enumerate() {
                    let off = self.base + self.delivered + i as u64;
                    if !self.corrupt.get(off as usize).copied().unwrap_or(false) {
                        assert_eq!(b, stream_byte(off), "wrong byte at stream offset {off}");
                    }
                }
                self.delivered += d.len() as u64;
            }
            Chunk::Gap(n) => {
                assert!(n > 0, "empty gap");
                self.delivered += n;
            }
        }
    }
}

fn reassembler_against_stream(input: &Input) {
    let cap = usize::from(input.cap.max(1));
    let mut r = Reassembler::new(cap);
    let mut o = Oracle {
        base: 0,
        delivered: 0,
        corrupt: vec![false; usize::from(u16::MAX) + 256],
    };
    let mut started = false;
    for op in input.ops.iter().filter(|o| o.who & 3 == 0) {
        if op.sent_by_server() {
            // The server acknowledges the client's bytes.
            if op.flags & TcpFlags::ACK != 0 {
                r.ack(input.isn.wrapping_add(u32::from(op.ack)), &mut |c| {
                    o.chunk(c)
                });
            }
        } else {
            if !started {
                started = true;
                o.base = u64::from(op.off);
            }
            if op.corrupt() {
                let at = usize::from(op.off);
                o.corrupt[at..at + usize::from(op.len)].fill(true);
            }
            let payload = op.payload();
            r.segment(op.seq(input.isn), op.syn(), op.fin(), &payload, &mut |c| {
                o.chunk(c)
            });
        }
        assert!(
            r.buffered_bytes() <= cap,
            "{} bytes buffered",
            r.buffered_bytes()
        );
        assert!(r.buffered_segments() <= r.buffered_bytes());
        assert_eq!(
            r.offset(),
            o.delivered,
            "offset and what was handed up differ"
        );
    }
    r.flush(&mut |c| o.chunk(c));
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(r.buffered_segments(), 0);
    assert_eq!(r.offset(), o.delivered);
}

/// What the table hands a parser, checked as it comes.
struct Probe {
    id: usize,
    closed: bool,
}

#[derive(Default)]
struct Log {
    closes: HashMap<usize, usize>,
}

impl StreamParser<Log> for Probe {
    fn on_data(&mut self, _dir: Direction, _ts: Ts, data: &[u8], _log: &mut Log) {
        assert!(!self.closed, "data after close");
        assert!(!data.is_empty(), "empty data");
    }
    fn on_gap(&mut self, _dir: Direction, _ts: Ts, len: u64, _log: &mut Log) {
        assert!(!self.closed, "gap after close");
        assert!(len > 0, "empty gap");
    }
    fn on_close(&mut self, _ts: Ts, log: &mut Log) {
        assert!(!self.closed, "closed twice");
        self.closed = true;
        *log.closes.entry(self.id).or_default() += 1;
    }
}

fn flow_table(input: &Input) {
    let cfg = FlowConfig {
        smtp_ports: vec![25, 587],
        idle_timeout_us: 5 * 60 * 1_000_000,
        max_flows: 2,
        max_silent_flows: 2,
        max_ooo_bytes: usize::from(input.cap),
    };
    let mut table: FlowTable<Probe> = FlowTable::new(cfg);
    let mut log = Log::default();
    let mut an = AnomalyCounts::new();
    let mut now = 1_000_000u64;
    let made_before = MADE.with(std::cell::Cell::get);
    for op in &input.ops {
        now = now.saturating_add(u64::from(op.dt & 31) << ((op.dt >> 5) * 5));
        let conn = op.who & 3;
        let client = addr(conn);
        let server = addr(conn.wrapping_add(1) | (op.who & 0x80));
        let (cport, sport) = (40000 + u16::from(conn), if conn == 2 { 587 } else { 25 });
        let (src, dst, s, d, isn, peer_isn) = if op.sent_by_server() {
            (server, client, sport, cport, input.server_isn, input.isn)
        } else {
            (client, server, cport, sport, input.isn, input.server_isn)
        };
        let payload = op.payload();
        let pkt = Packet {
            header: SegmentHeader {
                ts: Ts(now),
                src,
                dst,
                sport: s,
                dport: d,
                seq: op.seq(isn),
                ack: peer_isn.wrapping_add(u32::from(op.ack)),
                flags: TcpFlags(op.flags),
                window: 65535,
                vlan_tags: 0,
                truncated: false,
                bad_ip_checksum: false,
                bad_tcp_checksum: false,
                spans: Default::default(),
            },
            payload: &payload,
        };
        table.process(&pkt, &mut log, &mut an, &mut |_c: &ConnInfo| new_probe());
        if op.quirks & 2 != 0 {
            table.expire(Ts(now), &mut log, &mut an);
        }
        // Each store within its own bound: the flows that have spoken
        // (`max_flows`) and the silent ones (`max_silent_flows`).
        let silent = table.silent_len();
        assert!(silent <= 2, "{silent} silent flows");
        assert!(table.len() - silent <= 2, "{} full flows", table.len() - silent);
    }
    table.flush_all(Ts(now), &mut log, &mut an);
    assert!(table.is_empty());
    let _ = an.total();
    for id in made_before + 1..=MADE.with(std::cell::Cell::get) {
        let n = log.closes.get(&id).copied().unwrap_or(0);
        assert_eq!(n, 1, "parser {id} closed {n} times");
    }
}

thread_local! {
    static MADE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A new parser with a fresh id.
fn new_probe() -> Probe {
    let id = MADE.with(|m| {
        m.set(m.get() + 1);
        m.get()
    });
    Probe { id, closed: false }
}
