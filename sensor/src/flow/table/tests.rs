use super::*;
use crate::decode::{SegmentHeader, TcpFlags};
use std::net::IpAddr;

/// Records what the table hands a parser, one line per event.
struct Rec {
    conn: ConnInfo,
}

#[derive(Default)]
struct Log(Vec<String>);

impl StreamParser<Log> for Rec {
    fn on_data(&mut self, dir: Direction, _ts: Ts, data: &[u8], log: &mut Log) {
        log.0.push(format!(
            "{}:{dir:?}:{}",
            self.conn.id.orig_p,
            String::from_utf8_lossy(data)
        ));
    }
    fn on_gap(&mut self, dir: Direction, _ts: Ts, len: u64, log: &mut Log) {
        log.0
            .push(format!("{}:{dir:?}:gap{len}", self.conn.id.orig_p));
    }
    fn on_close(&mut self, ts: Ts, log: &mut Log) {
        log.0
            .push(format!("{}:close@{}", self.conn.id.orig_p, ts.0));
    }
}

const C: &str = "198.18.0.1";
const S: &str = "198.18.0.2";

fn pkt<'a>(
    ts: u64,
    from_client: bool,
    cport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &'a [u8],
) -> Packet<'a> {
    let c: IpAddr = C.parse().unwrap();
    let s: IpAddr = S.parse().unwrap();
    let (src, dst, sport, dport) = if from_client {
        (c, s, cport, 25)
    } else {
        (s, c, 25, cport)
    };
    Packet {
        header: SegmentHeader {
            ts: Ts(ts),
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1000,
            vlan_tags: 0,
            truncated: false,
            bad_ip_checksum: false,
            bad_tcp_checksum: false,
            spans: Default::default(),
        },
        payload,
    }
}

const SYN: u8 = TcpFlags::SYN;
const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const ACK: u8 = TcpFlags::ACK;
const FINACK: u8 = TcpFlags::FIN | TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;

struct Harness {
    t: FlowTable<Rec>,
    log: Log,
    an: AnomalyCounts,
}

impl Harness {
    fn new(cfg: FlowConfig) -> Self {
        Harness {
            t: FlowTable::new(cfg),
            log: Log::default(),
            an: AnomalyCounts::new(),
        }
    }
    fn feed(&mut self, p: Packet<'_>) {
        self.t
            .process(&p, &mut self.log, &mut self.an, &mut |c| Rec { conn: *c });
    }
}

#[test]
fn full_session_with_handshake_and_fin() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40000, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40000, 500, 101, SYNACK, b""));
    h.feed(pkt(3, true, 40000, 101, 501, ACK, b""));
    h.feed(pkt(4, false, 40000, 501, 101, ACK, b"220 hi\r\n"));
    h.feed(pkt(5, true, 40000, 101, 509, ACK, b"QUIT\r\n"));
    h.feed(pkt(6, false, 40000, 509, 107, FINACK, b"221 bye\r\n"));
    assert_eq!(h.t.len(), 1);
    h.feed(pkt(7, true, 40000, 107, 519, FINACK, b""));
    assert_eq!(h.t.len(), 0);
    assert_eq!(
        h.log.0,
        [
            "40000:Resp:220 hi\r\n",
            "40000:Orig:QUIT\r\n",
            "40000:Resp:221 bye\r\n",
            "40000:close@7"
        ]
    );
    // The last ACK finds no flow and creates none.
    h.feed(pkt(8, false, 40000, 518, 108, ACK, b""));
    assert_eq!(h.t.len(), 0);
    assert_eq!(h.t.stats.untracked_segments, 1);
    assert_eq!(h.t.stats.flows_closed, 1);
    assert!(h.an.is_empty(), "{:?}", h.an);
}

#[test]
fn originator_without_syn_is_the_non_smtp_side() {
    let mut h = Harness::new(FlowConfig::default());
    // First packet seen comes from the server.
    h.feed(pkt(1, false, 40001, 500, 101, ACK, b"250 ok\r\n"));
    h.t.flush_all(Ts(9), &mut h.log, &mut h.an);
    assert_eq!(h.log.0, ["40001:Resp:250 ok\r\n", "40001:close@9"]);
}

#[test]
fn syn_ack_seen_first_makes_receiver_originator() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, false, 40002, 500, 101, SYNACK, b""));
    h.feed(pkt(2, true, 40002, 101, 501, ACK, b"x"));
    h.t.flush_all(Ts(3), &mut h.log, &mut h.an);
    assert_eq!(h.log.0, ["40002:Orig:x", "40002:close@3"]);
}

#[test]
fn rst_closes() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40003, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40003, 0, 101, RST | ACK, b""));
    assert_eq!(h.t.len(), 0);
    assert_eq!(h.t.stats.flows_closed, 1);
    // It never carried a byte: no parser was made, none is closed.
    assert!(h.log.0.is_empty(), "{:?}", h.log.0);
}

#[test]
fn silent_flows_are_evicted_first() {
    // Apart from the full flows with a bound of their own, or (store off)
    // in the full table on a list evicted first: either way a SYN flood
    // ends silent flows only.
    for (max_silent_flows, name) in [
        (2, "silent_flow_table_full_evicted"),
        (0, "flow_table_full_evicted"),
    ] {
        let cfg = FlowConfig {
            max_flows: 3,
            max_silent_flows,
            ..FlowConfig::default()
        };
        let mut h = Harness::new(cfg);
        // A mail session, then a flood of SYNs from other ports.
        h.feed(pkt(1, true, 43000, 100, 0, SYN, b""));
        h.feed(pkt(2, false, 43000, 500, 101, ACK, b"220 hi\r\n"));
        for p in 0..50u16 {
            h.feed(pkt(3 + u64::from(p), true, 43001 + p, 7, 0, SYN, b""));
        }
        // The session is the least recently active flow, yet it stays.
        h.feed(pkt(60, true, 43000, 101, 508, ACK, b"QUIT\r\n"));
        assert_eq!(h.t.len(), 3);
        assert_eq!(h.t.silent_len(), max_silent_flows);
        assert_eq!(h.t.stats.flows_evicted, 48);
        assert_eq!(h.an.get(name), 48);
        assert_eq!(h.log.0, ["43000:Resp:220 hi\r\n", "43000:Orig:QUIT\r\n"]);
        // With only speaking flows, the least recently active goes.
        h.feed(pkt(61, true, 44000, 1, 0, ACK, b"a"));
        h.feed(pkt(62, true, 44001, 1, 0, ACK, b"b"));
        h.feed(pkt(63, true, 44002, 1, 0, ACK, b"c"));
        assert!(
            h.log.0.contains(&"43000:close@63".to_string()),
            "{:?}",
            h.log.0
        );
    }
}

#[test]
fn silent_flows_are_small() {
    use crate::smtp::SmtpSession;
    // A half-open flow is a compact entry: no slot, no session (boxed,
    // made with the first byte). What a SYN flood costs per flow.
    let slot = std::mem::size_of::<Option<Flow<SmtpSession>>>();
    let entry = std::mem::size_of::<Silent>();
    let session = std::mem::size_of::<SmtpSession>();
    assert!(slot <= 320, "a full flow takes {slot} bytes");
    assert!(3 * entry <= slot, "a silent flow takes {entry} bytes");
    assert!(
        session > 2 * slot,
        "the session ({session} bytes) is the big part"
    );
    eprintln!(
        "silent flow entry: {entry} bytes; full flow slot: {slot} bytes; SMTP session: {session} bytes"
    );
}

#[test]
fn a_silent_flow_speaks_into_the_full_table() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40030, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40030, 500, 101, SYNACK, b""));
    h.feed(pkt(3, true, 40030, 101, 501, ACK, b""));
    assert_eq!((h.t.len(), h.t.silent_len()), (1, 1));
    h.feed(pkt(4, false, 40030, 501, 101, ACK, b"220 hi\r\n"));
    assert_eq!((h.t.len(), h.t.silent_len()), (1, 0));
    // A silent flow that closes ends without a trace but its counter.
    h.feed(pkt(5, true, 40031, 100, 0, SYN, b""));
    h.feed(pkt(6, false, 40031, 0, 101, RST | ACK, b""));
    assert_eq!((h.t.len(), h.t.silent_len()), (1, 0));
    assert_eq!(h.t.stats.flows_closed, 1);
    assert_eq!(h.log.0, ["40030:Resp:220 hi\r\n"]);
    assert_eq!(h.t.stats.flows_created, 2);
}

/// xorshift64*: deterministic packets for the equivalence test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Where a flow is kept never changes what the table does: random
/// handshakes, data, FINs, RSTs (in and out of the window), new SYNs and
/// idle gaps over a few port pairs, with the compact store on and off, give
/// the same parser events, anomalies and counters.
#[test]
fn compact_silent_flows_change_nothing() {
    for seed in 1..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut on = Harness::new(FlowConfig {
            idle_timeout_us: 50,
            ..FlowConfig::default()
        });
        let mut off = Harness::new(FlowConfig {
            idle_timeout_us: 50,
            max_silent_flows: 0,
            ..FlowConfig::default()
        });
        let mut ts = 1;
        for n in 0..400 {
            let r = rng.next();
            ts += r % 8;
            let port = 45000 + (r >> 8) as u16 % 4;
            let from_client = r >> 12 & 1 == 1;
            let base: u32 = if from_client { 1000 } else { 9000 };
            let flags =
                [SYN, SYNACK, ACK, ACK, ACK, FINACK, RST, RST | ACK][(r >> 16) as usize % 8];
            let seq = match r >> 20 & 7 {
                0 => base + (r >> 24) as u32 % 8,
                1 => 0x8000_0000,
                _ => base + 1 + (r >> 24) as u32 % 24,
            };
            let ack = (if from_client { 9001 } else { 1001 }) + (r >> 32) as u32 % 24;
            let payload: &[u8] = [&b""[..], b"", b"", b"ab", b"cdef"][(r >> 40) as usize % 5];
            let p = pkt(ts, from_client, port, seq, ack, flags, payload);
            on.feed(p);
            off.feed(p);
            if n % 50 == 49 {
                on.t.expire(Ts(ts), &mut on.log, &mut on.an);
                off.t.expire(Ts(ts), &mut off.log, &mut off.an);
            }
            assert_eq!(on.t.len(), off.t.len(), "seed {seed}, packet {n}");
        }
        on.t.flush_all(Ts(ts), &mut on.log, &mut on.an);
        off.t.flush_all(Ts(ts), &mut off.log, &mut off.an);
        assert_eq!(on.log.0, off.log.0, "seed {seed}");
        assert_eq!(on.an, off.an, "seed {seed}");
        assert_eq!(on.t.stats, off.t.stats, "seed {seed}");
        assert!(on.t.stats.flows_created > 4, "seed {seed}");
    }
}

#[test]
fn ack_above_hole_gives_gap_to_parser() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40004, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40004, 500, 101, SYNACK, b""));
    h.feed(pkt(3, true, 40004, 101, 501, ACK, b"AAAA"));
    // bytes 105..109 lost in capture
    h.feed(pkt(4, true, 40004, 109, 501, ACK, b"CCCC"));
    h.feed(pkt(5, false, 40004, 501, 113, ACK, b"ok"));
    assert_eq!(
        h.log.0,
        [
            "40004:Orig:AAAA",
            "40004:Orig:gap4",
            "40004:Orig:CCCC",
            "40004:Resp:ok"
        ]
    );
    assert_eq!(h.an.get("content_gap"), 1);
    assert_eq!(h.t.stats.gap_bytes, 4);
}

#[test]
fn idle_timeout_lazily_and_by_scan() {
    let cfg = FlowConfig {
        idle_timeout_us: 100,
        ..FlowConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.feed(pkt(1, true, 40005, 100, 0, ACK, b"a"));
    h.feed(pkt(2, true, 40006, 100, 0, ACK, b"b"));
    h.feed(pkt(90, true, 40006, 101, 0, ACK, b"c"));
    h.t.expire(Ts(150), &mut h.log, &mut h.an);
    // 40005 idle since 1 (> 100 before 150), 40006 active at 90.
    assert_eq!(h.t.len(), 1);
    assert!(h.log.0.contains(&"40005:close@1".to_string()));
    // A packet after the timeout on the same tuple starts a new connection.
    h.feed(pkt(500, true, 40006, 102, 0, ACK, b"d"));
    assert!(h.log.0.contains(&"40006:close@90".to_string()));
    assert_eq!(h.t.stats.flows_timed_out, 2);
    assert_eq!(h.t.len(), 1);
}

#[test]
fn full_table_evicts_least_recently_active() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.feed(pkt(1, true, 41000, 1, 0, ACK, b"a"));
    h.feed(pkt(2, true, 41001, 1, 0, ACK, b"b"));
    h.feed(pkt(3, true, 41000, 2, 0, ACK, b"c")); // 41000 active again
    h.feed(pkt(4, true, 41002, 1, 0, ACK, b"d"));
    assert_eq!(h.t.len(), 2);
    assert!(h.log.0.contains(&"41001:close@4".to_string()));
    assert_eq!(h.an.get("flow_table_full_evicted"), 1);
    h.t.flush_all(Ts(10), &mut h.log, &mut h.an);
    assert!(h.t.is_empty());
}

#[test]
fn port_reuse_after_a_fin_starts_new_connection() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40007, 100, 0, SYN, b""));
    h.feed(pkt(2, true, 40007, 101, 0, ACK, b"old"));
    h.feed(pkt(3, true, 40007, 104, 0, FINACK, b""));
    h.feed(pkt(4, true, 40007, 9000, 0, SYN, b""));
    h.feed(pkt(5, true, 40007, 9001, 0, ACK, b"new"));
    assert_eq!(
        h.log.0,
        ["40007:Orig:old", "40007:close@4", "40007:Orig:new"]
    );
    assert!(h.an.is_empty(), "{:?}", h.an);
}

#[test]
fn new_syn_on_a_live_connection_is_ignored() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40017, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40017, 500, 101, SYNACK, b""));
    h.feed(pkt(3, false, 40017, 501, 101, ACK, b"220 hi\r\n"));
    h.feed(pkt(4, true, 40017, 101, 509, ACK, b"EHLO a\r\n"));
    // Injected: a SYN with another sequence number, which the server
    // answers with a challenge ACK (RFC 5961), not a SYN-ACK.
    h.feed(pkt(5, true, 40017, 7_777_777, 0, SYN, b""));
    h.feed(pkt(6, false, 40017, 509, 109, ACK, b""));
    h.feed(pkt(7, true, 40017, 109, 509, ACK, b"QUIT\r\n"));
    assert_eq!(
        h.log.0,
        [
            "40017:Resp:220 hi\r\n",
            "40017:Orig:EHLO a\r\n",
            "40017:Orig:QUIT\r\n"
        ]
    );
    assert_eq!(h.an.get("active_connection_reuse"), 1);
    assert_eq!(h.t.stats.flows_created, 1);
    // On a flow that has not carried data, Zeek's name for it.
    h.feed(pkt(8, true, 40018, 100, 0, SYN, b""));
    h.feed(pkt(9, true, 40018, 5_000, 0, SYN, b""));
    assert_eq!(h.an.get("SYN_seq_jump"), 1);
}

#[test]
fn new_syn_answered_by_the_responder_starts_new_connection() {
    // Port reuse whose close was not captured: the server's SYN-ACK
    // acknowledges the new SYN, so the old connection is over.
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40007, 100, 0, SYN, b""));
    h.feed(pkt(2, true, 40007, 101, 0, ACK, b"old"));
    h.feed(pkt(3, true, 40007, 9000, 0, SYN, b""));
    // A SYN-ACK for something else changes nothing.
    h.feed(pkt(4, false, 40007, 300, 5, SYNACK, b""));
    assert_eq!(h.t.stats.flows_created, 1);
    h.feed(pkt(5, false, 40007, 700, 9001, SYNACK, b""));
    h.feed(pkt(6, true, 40007, 9001, 701, ACK, b"new"));
    h.feed(pkt(7, false, 40007, 701, 9004, ACK, b"ok"));
    assert_eq!(
        h.log.0,
        [
            "40007:Orig:old",
            "40007:close@5",
            "40007:Orig:new",
            "40007:Resp:ok"
        ]
    );
    assert_eq!(h.an.get("active_connection_reuse"), 1);
    assert_eq!(h.an.get("content_gap"), 0);
}

#[test]
fn rst_outside_the_window_is_ignored() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40019, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40019, 500, 101, SYNACK, b""));
    h.feed(pkt(3, false, 40019, 501, 101, ACK, b"220 hi\r\n"));
    // Blind resets from either side, far from its stream.
    h.feed(pkt(4, true, 40019, 101 + 3_000_000, 0, RST, b""));
    h.feed(pkt(5, false, 40019, 0x9000_0000, 101, RST | ACK, b""));
    h.feed(pkt(6, true, 40019, 101, 509, ACK, b"QUIT\r\n"));
    assert_eq!(h.an.get("RST_outside_window"), 2);
    assert_eq!(h.t.len(), 1);
    // The server's own reset, at its next sequence number, ends it.
    h.feed(pkt(7, false, 40019, 509, 107, RST | ACK, b""));
    assert_eq!(h.t.len(), 0);
    assert_eq!(
        h.log.0,
        [
            "40019:Resp:220 hi\r\n",
            "40019:Orig:QUIT\r\n",
            "40019:close@7"
        ]
    );
}

#[test]
fn far_ack_is_counted_not_a_gap() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40020, 100, 0, SYN, b""));
    h.feed(pkt(2, false, 40020, 500, 101, SYNACK, b""));
    h.feed(pkt(3, false, 40020, 501, 101, ACK, b"220 hi\r\n"));
    // A pure ACK 500 MB beyond the server's bytes, "from" the client.
    h.feed(pkt(4, true, 40020, 101, 509 + 500_000_000, ACK, b""));
    h.feed(pkt(5, false, 40020, 509, 101, ACK, b"250 ok\r\n"));
    assert_eq!(h.an.get("TCP_ack_above_window"), 1);
    assert_eq!(h.an.get("content_gap"), 0);
    assert_eq!(h.log.0, ["40020:Resp:220 hi\r\n", "40020:Resp:250 ok\r\n"]);
}

#[test]
fn contradictory_retransmissions_are_counted_each() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40021, 100, 0, SYN, b""));
    h.feed(pkt(2, true, 40021, 101, 0, ACK, b"RCPT TO:<bob@x>\r\n"));
    for k in 0..50u8 {
        let fake = format!("RCPT TO:<e{:02}@x>\r\n", k);
        h.feed(pkt(
            3 + u64::from(k),
            true,
            40021,
            101,
            0,
            ACK,
            fake.as_bytes(),
        ));
    }
    // An identical copy is not counted.
    h.feed(pkt(60, true, 40021, 101, 0, ACK, b"RCPT TO:<bob@x>\r\n"));
    assert_eq!(h.an.get("rexmit_inconsistency"), 50);
    assert_eq!(h.log.0, ["40021:Orig:RCPT TO:<bob@x>\r\n"]);
}

#[test]
fn retransmitted_syn_is_not_reuse() {
    let mut h = Harness::new(FlowConfig::default());
    h.feed(pkt(1, true, 40008, 100, 0, SYN, b""));
    h.feed(pkt(2, true, 40008, 100, 0, SYN, b""));
    h.feed(pkt(3, true, 40008, 101, 0, ACK, b"x"));
    assert_eq!(h.t.len(), 1);
    assert_eq!(h.log.0, ["40008:Orig:x"]);
}

#[test]
fn many_flows_slots_are_reused() {
    let mut h = Harness::new(FlowConfig::default());
    for round in 0..3u64 {
        for p in 0..100u16 {
            h.feed(pkt(round * 10 + 1, true, 42000 + p, 1, 0, ACK, b"x"));
        }
        for p in 0..100u16 {
            h.feed(pkt(round * 10 + 2, true, 42000 + p, 2, 0, RST, b""));
        }
        assert!(h.t.is_empty());
    }
    assert!(h.t.flows.places() <= 100);
    assert_eq!(h.t.stats.flows_created, 300);
}

/// The SYN flood's shortcut makes the entry the general path makes.
#[test]
fn a_bare_syn_entry_is_the_general_one() {
    let mut h = Harness::new(FlowConfig::default());
    for (from_client, seq) in [(true, 100), (false, u32::MAX)] {
        let p = pkt(7, from_client, 40040, seq, 0, SYN, b"");
        let (key, src_is_a) = FlowKey::new(p.src, p.sport, p.dst, p.dport);
        let mut f = h.t.new_flow(src_is_a, &p);
        let mut stats = SegmentStats::default();
        let closed = step(
            &mut f,
            &p,
            src_is_a,
            &mut h.log,
            &mut h.an,
            &mut |c| Rec { conn: *c },
            &mut h.t.spares,
            &mut stats,
        );
        assert_eq!(closed, Some(false));
        assert_eq!(Silent::of(&f), Some(Silent::syn(&key, src_is_a, &p)));
    }
}
