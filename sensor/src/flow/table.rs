//! Live connections of one worker: lookup by canonical key, who the
//! originator is, per-direction reassembly, the connection's lifecycle, and
//! the protocol parser it feeds.
//!
//! Flows sit in a slab threaded on two intrusive LRU lists (most recently
//! active at the head): flows that have not carried a byte yet (half-open,
//! handshake only) and flows that have. The idle-timeout scan and the
//! eviction when the table is full are O(1) per flow and take no per-packet
//! allocation; eviction takes a silent flow first, so that a flood of
//! spoofed SYNs cannot push a live mail session out.
//!
//! A flow's parser (an SMTP session, over a kilobyte) is made only when the
//! first payload byte or gap reaches the flow: a silent flow is its slot
//! alone (key, addresses, reassembly state; see `tests::silent_flows_are_small`).
//!
//! Timeouts are decided in network time and only at two points — when a
//! packet of the flow arrives (`last + timeout < now`) and at `expire(now)`,
//! which the pipeline calls at its ticks — so the outcome does not depend on
//! which worker owns a flow or how many workers there are.

use super::key::FlowKey;
use super::reassembly::{Chunk, Reassembler, RecentRing, SegmentEvents};
use super::{FlowAnomaly, StreamParser};
use crate::anomaly::AnomalyCounts;
use crate::decode::Packet;
use crate::net::{ConnId, ConnInfo, Direction, KeyedMap, Ts};

/// Limits and timing of a flow table.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Ports that mark the server side when no SYN was seen.
    pub smtp_ports: Vec<u16>,
    /// Network-time microseconds without a packet after which a flow ends.
    pub idle_timeout_us: u64,
    /// Most live flows; the least recently active is closed to make room.
    pub max_flows: usize,
    /// Out-of-order bytes buffered per direction.
    pub max_ooo_bytes: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            smtp_ports: vec![25, 587],
            idle_timeout_us: 5 * 60 * 1_000_000,
            max_flows: 1 << 20,
            max_ooo_bytes: 64 * 1024,
        }
    }
}

impl FlowConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        FlowConfig {
            smtp_ports: c.smtp_ports.clone(),
            idle_timeout_us: c.conn_idle_timeout_us(),
            // Slots are numbered with u32 (u32::MAX marks "none").
            max_flows: c.max_flows_per_worker.clamp(1, (u32::MAX - 1) as usize),
            max_ooo_bytes: c.max_ooo_bytes_per_flow,
        }
    }
}

/// Counters a table keeps (summed over workers for the summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub flows_created: u64,
    pub flows_closed: u64,
    pub flows_timed_out: u64,
    pub flows_evicted: u64,
    /// Segments without payload or SYN for which no flow existed (the tail
    /// of a connection already closed, stray ACKs): not tracked.
    pub untracked_segments: u64,
    pub retransmissions: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
}

impl FlowStats {
    pub fn merge(&mut self, o: &FlowStats) {
        self.flows_created += o.flows_created;
        self.flows_closed += o.flows_closed;
        self.flows_timed_out += o.flows_timed_out;
        self.flows_evicted += o.flows_evicted;
        self.untracked_segments += o.untracked_segments;
        self.retransmissions += o.retransmissions;
        self.out_of_order += o.out_of_order;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
    }
}

const NIL: u32 = u32::MAX;

/// The two LRU lists a flow can be on.
const SILENT: usize = 0;
const SPEAKING: usize = 1;

/// An intrusive doubly linked list of slots: most recently active first.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

struct Flow<P> {
    /// Whether the originator is endpoint `a` of the key.
    orig_is_a: bool,
    /// The originator's bytes, then the responder's.
    reasm: [Reassembler; 2],
    /// The connection, for the parser made when the first byte arrives
    /// (and the flow's key, derived from it).
    conn: ConnInfo,
    /// `None` until the flow carries a payload byte or a gap: half-open
    /// and handshake-only flows never pay for one.
    parser: Option<Box<P>>,
    /// The sequence number of the last SYN from the originator that did
    /// not match the connection (ignored): a SYN-ACK answering it shows the
    /// port pair was reused.
    other_syn: Option<u32>,
    last: Ts,
    prev: u32,
    next: u32,
}

impl<P> Flow<P> {
    fn list(&self) -> usize {
        if self.parser.is_some() {
            SPEAKING
        } else {
            SILENT
        }
    }
}

/// Closed flows' parsers and windows of recent bytes kept for new flows,
/// at most this many parsers (and twice as many windows) per table: a new
/// connection then reuses a session's buffers instead of making a dozen
/// allocations, while flows end and begin at about the same rate. Bounded
/// so that a burst of closes (an idle timeout over many flows) does not
/// keep their memory for good; each kept session keeps at most a usual
/// line's capacity in its buffers (`SmtpSession::reuse`).
pub const SPARE_PARSERS: usize = 64;

/// What [`SPARE_PARSERS`] keeps.
struct Spares<P> {
    parsers: Vec<Box<P>>,
    rings: Vec<RecentRing>,
}

/// The flow's parser, made now if it has none (see [`made_parser`]).
fn parser_of<'a, P: StreamParser<S>, S: ?Sized>(
    parser: &'a mut Option<Box<P>>,
    reasm: &mut [Reassembler],
    conn: &ConnInfo,
    new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    spares: &mut Spares<P>,
) -> &'a mut P {
    parser.get_or_insert_with(|| made_parser(reasm, conn, new_parser, spares))
}

/// A new flow's parser: a spare one reused if there is one that can be,
/// else a new one; the flow's directions get spare windows of recent
/// bytes too. Once per connection, out of line: the packet path only asks
/// whether the flow has its parser.
#[cold]
#[inline(never)]
fn made_parser<P: StreamParser<S>, S: ?Sized>(
    reasm: &mut [Reassembler],
    conn: &ConnInfo,
    new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    spares: &mut Spares<P>,
) -> Box<P> {
    for r in reasm.iter_mut() {
        if !r.has_recent()
            && let Some(ring) = spares.rings.pop()
        {
            r.lend_recent(ring);
        }
    }
    if let Some(mut p) = spares.parsers.pop()
        && p.reuse(conn)
    {
        return p;
    }
    Box::new(new_parser(conn))
}

/// What a packet means for the connection its flow holds.
#[derive(Clone, Copy)]
enum Reuse {
    /// It belongs to it.
    No,
    /// The connection timed out (at its last packet) before it came.
    Idle(Ts),
    /// A new SYN after a FIN: the port pair is reused.
    Closed,
    /// The responder's SYN-ACK to the originator's SYN that did not match
    /// the live connection (the SYN's sequence number): the responder took
    /// it for a new connection, so the old one was closed unseen. A blind
    /// SYN gets no SYN-ACK from a real stack (RFC 5961 §4: a challenge ACK).
    Answered(u32),
    /// A SYN with a new sequence number on a live connection: counted and
    /// ignored.
    Suspect(FlowAnomaly),
}

/// Whether a RST from `dir` is near enough its sender's stream to end the
/// connection: checked by its sequence number, or, while nothing of its
/// sender was seen, by its ACK against the other side's stream.
fn rst_in_window<P>(f: &Flow<P>, dir: Direction, pkt: &Packet<'_>) -> bool {
    let [orig, resp] = &f.reasm;
    let (mine, theirs) = match dir {
        Direction::Orig => (orig, resp),
        Direction::Resp => (resp, orig),
    };
    if mine.started() {
        mine.rst_in_window(pkt.seq)
    } else if pkt.flags.ack() {
        theirs.rst_in_window(pkt.ack)
    } else {
        true
    }
}

/// Why a flow ends, for counters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    TimedOut,
    Evicted,
    Flushed,
}

/// The flows of one worker, each with its parser `P`.
pub struct FlowTable<P> {
    cfg: FlowConfig,
    index: KeyedMap<FlowKey, u32>,
    slab: Vec<Option<Flow<P>>>,
    free: Vec<u32>,
    /// `SILENT` and `SPEAKING` flows, each in order of last activity.
    lists: [List; 2],
    spares: Spares<P>,
    pub stats: FlowStats,
}

impl<P> FlowTable<P> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            index: KeyedMap::default(),
            slab: Vec::new(),
            free: Vec::new(),
            lists: [EMPTY; 2],
            spares: Spares {
                parsers: Vec::new(),
                rings: Vec::new(),
            },
            stats: FlowStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn flow(&self, i: u32) -> Option<&Flow<P>> {
        self.slab.get(i as usize).and_then(Option::as_ref)
    }

    fn flow_mut(&mut self, i: u32) -> Option<&mut Flow<P>> {
        self.slab.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// Takes slot `i` off `list`.
    fn unlink_from(&mut self, i: u32, list: usize) {
        let Some((prev, next)) = self.flow(i).map(|f| (f.prev, f.next)) else {
            return;
        };
        match self.flow_mut(prev) {
            Some(p) => p.next = next,
            None => self.lists[list].head = next,
        }
        match self.flow_mut(next) {
            Some(n) => n.prev = prev,
            None => self.lists[list].tail = prev,
        }
    }

    /// Takes slot `i` off the list it is on.
    fn unlink(&mut self, i: u32) {
        if let Some(list) = self.flow(i).map(Flow::list) {
            self.unlink_from(i, list);
        }
    }

    /// Puts slot `i` at the head of the list its state says.
    fn push_front(&mut self, i: u32) {
        let Some(list) = self.flow(i).map(Flow::list) else {
            return;
        };
        let old = self.lists[list].head;
        if let Some(f) = self.flow_mut(i) {
            f.prev = NIL;
            f.next = old;
        }
        match self.flow_mut(old) {
            Some(h) => h.prev = i,
            None => self.lists[list].tail = i,
        }
        self.lists[list].head = i;
    }

    /// Slot `i` was active: to the head of its list (`was`: the list it was
    /// on before this packet, which differs when it has just spoken).
    fn touch(&mut self, i: u32, was: usize) {
        let now = self.flow(i).map_or(was, Flow::list);
        if now != was || self.lists[now].head != i {
            self.unlink_from(i, was);
            self.push_front(i);
        }
    }

    /// The least recently active flow, silent ones first: what to evict.
    fn victim(&self) -> u32 {
        if self.lists[SILENT].tail != NIL {
            self.lists[SILENT].tail
        } else {
            self.lists[SPEAKING].tail
        }
    }

    /// Whether packet `pkt` for flow `i` ends that connection to start a
    /// new one on the same port pair (or is to be ignored). Past the idle
    /// check only SYNs get here: the rare case.
    fn reuse(&self, i: u32, pkt: &Packet<'_>, src_is_a: bool) -> Reuse {
        let Some(f) = self.flow(i) else {
            return Reuse::No;
        };
        if pkt.ts.saturating_sub(f.last) > self.cfg.idle_timeout_us {
            return Reuse::Idle(f.last);
        }
        if !pkt.flags.syn() {
            return Reuse::No;
        }
        let sender_is_orig = src_is_a == f.orig_is_a;
        let orig = &f.reasm[0];
        if sender_is_orig && !pkt.flags.ack() {
            // A retransmitted SYN, or the first one of a flow the responder
            // opened: nothing to decide.
            if !orig.started() || pkt.seq.wrapping_add(1) == orig.isn() {
                return Reuse::No;
            }
            // A new SYN once either side has closed: the port pair is
            // being reused (as Zeek does).
            if f.reasm.iter().any(Reassembler::fin_seen) {
                return Reuse::Closed;
            }
            // On a live connection anyone who knows the port pair can send
            // one; the responder's SYN-ACK decides (see `Answered`).
            return Reuse::Suspect(if f.parser.is_some() {
                FlowAnomaly::ActiveConnectionReuse
            } else {
                FlowAnomaly::SynSeqJump
            });
        }
        if !sender_is_orig
            && pkt.flags.ack()
            && let Some(syn) = f.other_syn
            && pkt.ack == syn.wrapping_add(1)
        {
            return Reuse::Answered(syn);
        }
        Reuse::No
    }

    fn is_smtp_port(&self, p: u16) -> bool {
        self.cfg.smtp_ports.contains(&p)
    }
}

impl<P> FlowTable<P> {
    /// Processes one TCP segment. `new_parser` makes the parser of a new
    /// connection; `sink` receives what parsers report.
    pub fn process<S: ?Sized>(
        &mut self,
        pkt: &Packet<'_>,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
        new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    ) where
        P: StreamParser<S>,
    {
        let (key, src_is_a) = FlowKey::new(pkt.src, pkt.sport, pkt.dst, pkt.dport);
        let mut slot = self.index.get(&key).copied();
        // The originator's SYN that the responder has just answered, when
        // that starts a new connection on the port pair.
        let mut answered_syn = None;
        if let Some(i) = slot {
            match self.reuse(i, pkt, src_is_a) {
                Reuse::No => {}
                Reuse::Idle(at) => {
                    self.remove(i, at, End::TimedOut, sink, anomalies);
                    slot = None;
                }
                Reuse::Closed => {
                    self.remove(i, pkt.ts, End::Closed, sink, anomalies);
                    slot = None;
                }
                Reuse::Answered(syn) => {
                    self.remove(i, pkt.ts, End::Closed, sink, anomalies);
                    slot = None;
                    answered_syn = Some(syn);
                }
                Reuse::Suspect(a) => {
                    // Not activity of the connection: it goes on as if the
                    // SYN had not been sent.
                    anomalies.add(a);
                    if let Some(f) = self.flow_mut(i) {
                        f.other_syn = Some(pkt.seq);
                    }
                    return;
                }
            }
        }
        let i = match slot {
            Some(i) => i,
            None => {
                if pkt.payload.is_empty() && !pkt.flags.syn() {
                    self.stats.untracked_segments += 1;
                    return;
                }
                if pkt.flags.rst() {
                    self.stats.untracked_segments += 1;
                    return;
                }
                let i = self.insert(key, src_is_a, pkt, sink, anomalies);
                if let Some(syn) = answered_syn
                    && let Some(f) = self.flow_mut(i)
                {
                    f.reasm[0].segment(syn, true, false, &[], &mut |_| {});
                }
                i
            }
        };
        let was = self.flow(i).map_or(SILENT, Flow::list);
        let mut stats = SegmentStats::default();
        let closed = {
            let spares = &mut self.spares;
            let Some(f) = self.slab.get_mut(i as usize).and_then(Option::as_mut) else {
                return;
            };
            let dir = if src_is_a == f.orig_is_a {
                Direction::Orig
            } else {
                Direction::Resp
            };
            if pkt.flags.rst() && !rst_in_window(f, dir, pkt) {
                // A blind reset: the connection goes on, and the RST is
                // not activity of it.
                anomalies.add(FlowAnomaly::RstOutsideWindow);
                return;
            }
            f.last = pkt.ts;
            let Flow {
                reasm,
                parser,
                conn,
                ..
            } = f;
            // Payload may be buffered out of order before anything is
            // delivered: the parser exists from the first payload byte on,
            // so that whatever a flow holds has a parser to go to.
            if !pkt.payload.is_empty() {
                parser_of(parser, reasm, conn, new_parser, spares);
            }
            let ts = pkt.ts;
            let [orig, resp] = reasm;
            let (mine, theirs) = match dir {
                Direction::Orig => (orig, resp),
                Direction::Resp => (resp, orig),
            };
            let mut deliver_other = |c: Chunk<'_>| {
                let p = parser_of(parser, &mut [], conn, new_parser, spares);
                deliver(p, dir.flip(), ts, c, sink, &mut stats);
            };
            if pkt.flags.ack() && !theirs.ack(pkt.ack, &mut deliver_other) {
                anomalies.add(FlowAnomaly::AckAboveWindow);
            }
            let mut deliver_mine = |c: Chunk<'_>| {
                let p = parser_of(parser, &mut [], conn, new_parser, spares);
                deliver(p, dir, ts, c, sink, &mut stats);
            };
            let ev = mine.segment(
                pkt.seq,
                pkt.flags.syn(),
                pkt.flags.fin(),
                pkt.payload,
                &mut deliver_mine,
            );
            stats.events(ev);
            pkt.flags.rst() || (mine.finished() && theirs.finished())
        };
        self.touch(i, was);
        self.account(&stats, anomalies);
        if closed {
            self.remove(i, pkt.ts, End::Closed, sink, anomalies);
        }
    }

    fn insert<S: ?Sized>(
        &mut self,
        key: FlowKey,
        src_is_a: bool,
        pkt: &Packet<'_>,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
    ) -> u32
    where
        P: StreamParser<S>,
    {
        if self.index.len() >= self.cfg.max_flows && self.victim() != NIL {
            anomalies.add(FlowAnomaly::FlowEvicted);
            self.remove(self.victim(), pkt.ts, End::Evicted, sink, anomalies);
        }
        // The originator: the side that sent the SYN; without one, the
        // side not on an SMTP port (the sender if both or neither are).
        let sender_is_orig = if pkt.flags.syn() {
            !pkt.flags.ack()
        } else if self.is_smtp_port(pkt.dport) {
            true
        } else {
            !self.is_smtp_port(pkt.sport)
        };
        let (orig, resp) = if sender_is_orig {
            ((pkt.src, pkt.sport), (pkt.dst, pkt.dport))
        } else {
            ((pkt.dst, pkt.dport), (pkt.src, pkt.sport))
        };
        let id = ConnId {
            orig_h: orig.0,
            orig_p: orig.1,
            resp_h: resp.0,
            resp_p: resp.1,
        };
        let flow = Flow {
            orig_is_a: src_is_a == sender_is_orig,
            reasm: [
                Reassembler::new(self.cfg.max_ooo_bytes),
                Reassembler::new(self.cfg.max_ooo_bytes),
            ],
            conn: ConnInfo::new(id, pkt.ts),
            parser: None,
            other_syn: None,
            last: pkt.ts,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slab.get_mut(i as usize) {
                    *s = Some(flow);
                }
                i
            }
            None => {
                self.slab.push(Some(flow));
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.push_front(i);
        self.stats.flows_created += 1;
        i
    }

    fn account(&mut self, s: &SegmentStats, anomalies: &mut AnomalyCounts) {
        self.stats.retransmissions += s.retransmissions;
        self.stats.out_of_order += s.out_of_order;
        self.stats.gaps += s.gaps;
        self.stats.gap_bytes += s.gap_bytes;
        anomalies.add_n(FlowAnomaly::ContentGap, s.gaps);
        anomalies.add_n(FlowAnomaly::OutOfOrderLimit, s.ooo_limit);
        anomalies.add_n(FlowAnomaly::InconsistentRetransmission, s.inconsistent);
    }

    /// Ends flow `i`: remaining buffered data (with gaps) goes to the
    /// parser, then its `on_close`.
    fn remove<S: ?Sized>(
        &mut self,
        i: u32,
        ts: Ts,
        end: End,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
    ) where
        P: StreamParser<S>,
    {
        self.unlink(i);
        let Some(mut f) = self.slab.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        let id = &f.conn.id;
        self.index
            .remove(&FlowKey::new(id.orig_h, id.orig_p, id.resp_h, id.resp_p).0);
        self.free.push(i);
        let mut stats = SegmentStats::default();
        // A flow without a parser never carried a payload byte, so it
        // holds nothing to flush and has nothing to close.
        if let Some(parser) = f.parser.as_deref_mut() {
            let [orig, resp] = &mut f.reasm;
            orig.flush(&mut |c| deliver(parser, Direction::Orig, ts, c, sink, &mut stats));
            resp.flush(&mut |c| deliver(parser, Direction::Resp, ts, c, sink, &mut stats));
            parser.on_close(ts, sink);
        }
        let spares = &mut self.spares;
        if let Some(parser) = f.parser.take()
            && spares.parsers.len() < SPARE_PARSERS
        {
            spares.parsers.push(parser);
        }
        for r in &mut f.reasm {
            if let Some(ring) = r.take_recent()
                && spares.rings.len() < 2 * SPARE_PARSERS
            {
                spares.rings.push(ring);
            }
        }
        self.account(&stats, anomalies);
        match end {
            End::Closed => self.stats.flows_closed += 1,
            End::TimedOut => self.stats.flows_timed_out += 1,
            End::Evicted => self.stats.flows_evicted += 1,
            End::Flushed => {}
        }
    }

    /// Ends every flow idle for longer than the timeout at `now`.
    pub fn expire<S: ?Sized>(&mut self, now: Ts, sink: &mut S, anomalies: &mut AnomalyCounts)
    where
        P: StreamParser<S>,
    {
        for list in [SILENT, SPEAKING] {
            while let Some(f) = self.flow(self.lists[list].tail) {
                if now.saturating_sub(f.last) <= self.cfg.idle_timeout_us {
                    break;
                }
                let last = f.last;
                self.remove(self.lists[list].tail, last, End::TimedOut, sink, anomalies);
            }
        }
    }

    /// End of input: ends every flow, the silent ones first (they log
    /// nothing), then the others in order of last activity.
    pub fn flush_all<S: ?Sized>(&mut self, now: Ts, sink: &mut S, anomalies: &mut AnomalyCounts)
    where
        P: StreamParser<S>,
    {
        for list in [SILENT, SPEAKING] {
            while self.lists[list].tail != NIL {
                self.remove(self.lists[list].tail, now, End::Flushed, sink, anomalies);
            }
        }
    }
}

#[derive(Default)]
struct SegmentStats {
    retransmissions: u64,
    out_of_order: u64,
    gaps: u64,
    gap_bytes: u64,
    ooo_limit: u64,
    inconsistent: u64,
}

impl SegmentStats {
    fn events(&mut self, ev: SegmentEvents) {
        self.retransmissions += u64::from(ev.retransmission);
        self.out_of_order += u64::from(ev.out_of_order);
        self.ooo_limit += u64::from(ev.ooo_limit);
        self.inconsistent += u64::from(ev.inconsistent);
    }
}

fn deliver<P: StreamParser<S>, S: ?Sized>(
    parser: &mut P,
    dir: Direction,
    ts: Ts,
    c: Chunk<'_>,
    sink: &mut S,
    stats: &mut SegmentStats,
) {
    match c {
        Chunk::Data(d) => parser.on_data(dir, ts, d, sink),
        Chunk::Gap(n) => {
            stats.gaps += 1;
            stats.gap_bytes += n;
            parser.on_gap(dir, ts, n, sink);
        }
    }
}

#[cfg(test)]
mod tests;
