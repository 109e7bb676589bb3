//! Live connections of one worker: lookup by canonical key, who the
//! originator is, per-direction reassembly, the connection's lifecycle, and
//! the protocol parser it feeds.
//!
//! A flow that has not carried a byte (half-open, handshake only) is kept as
//! a compact entry among the silent flows (`silent`: ~100 bytes, its own
//! bound and LRU eviction), so that a flood of spoofed SYNs costs little per
//! SYN and ages out its own flows, never a live mail session. A flow that
//! has spoken lives in a full slot (`Flow`: reassembly, addresses, its
//! parser) in a slab threaded on intrusive LRU lists (`lru`); with the
//! compact store off (`max_silent_flows = 0`) silent flows take full slots
//! too, on a list of their own, evicted first. A packet of a silent flow
//! rebuilds it from its entry and runs through the same code as a full
//! flow's (`step`), so where a flow is kept never changes what is logged.
//! The idle-timeout scan and the eviction are O(1) per flow and take no
//! per-packet allocation.
//!
//! A flow's parser (an SMTP session, over a kilobyte) is made only when the
//! first payload byte or gap reaches the flow, and its uid with it.
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
    /// Most full flows (those that have carried a byte); the least recently
    /// active is closed to make room.
    pub max_flows: usize,
    /// Most silent flows (half-open, handshake only) kept as compact
    /// entries apart from the full flows; the least recently active goes to
    /// make room. 0: silent flows are full flows (evicted first).
    pub max_silent_flows: usize,
    /// Out-of-order bytes buffered per direction.
    pub max_ooo_bytes: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            smtp_ports: vec![25, 587],
            idle_timeout_us: 5 * 60 * 1_000_000,
            max_flows: 1 << 20,
            max_silent_flows: 1 << 20,
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
            max_silent_flows: c.max_silent_flows_per_worker.min((u32::MAX - 1) as usize),
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

mod lru;
mod silent;

use lru::LruSlab;
use silent::{Silent, SilentFlows};

/// The two LRU lists of the full table: flows that have not carried a byte
/// (only when they cannot be kept as compact entries: see `silent`) and
/// flows that have.
const SILENT: usize = 0;
const SPEAKING: usize = 1;

struct Flow<P> {
    /// Whether the originator is endpoint `a` of the key.
    orig_is_a: bool,
    /// The originator's bytes, then the responder's.
    reasm: [Reassembler; 2],
    /// The connection and its first packet's time, for the parser made when
    /// the first byte arrives (its uid is computed then, not per SYN).
    id: ConnId,
    start: Ts,
    /// `None` until the flow carries a payload byte or a gap: half-open
    /// and handshake-only flows never pay for one.
    parser: Option<Box<P>>,
    /// The sequence number of the last SYN from the originator that did
    /// not match the connection (ignored): a SYN-ACK answering it shows the
    /// port pair was reused.
    other_syn: Option<u32>,
    last: Ts,
    /// The flow anomalies already given a weird.log row (one bit per
    /// [`FlowAnomaly`]): one row per connection and name, as Zeek's
    /// `ACTION_LOG_PER_CONN`.
    weirds_logged: u16,
}

/// A flow anomaly of one connection, for weird.log: the first of its
/// name on the connection (every one is counted besides).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowWeird {
    pub ts: Ts,
    pub conn: ConnInfo,
    pub anomaly: FlowAnomaly,
}

/// Notes anomaly `a` of flow `f` for weird.log, unless the flow has had
/// a row of that name.
fn note_weird<P>(f: &mut Flow<P>, ts: Ts, a: FlowAnomaly, out: &mut Vec<FlowWeird>) {
    let bit = 1u16 << (a as u16);
    if f.weirds_logged & bit == 0 {
        f.weirds_logged |= bit;
        out.push(FlowWeird {
            ts,
            conn: ConnInfo::new(f.id, f.start),
            anomaly: a,
        });
    }
}

/// Notes the anomalies one segment caused on flow `f`.
fn note_segment_weirds<P>(f: &mut Flow<P>, ts: Ts, s: &SegmentStats, out: &mut Vec<FlowWeird>) {
    for (hit, a) in [
        (s.rst_outside, FlowAnomaly::RstOutsideWindow),
        (s.ack_above, FlowAnomaly::AckAboveWindow),
        (s.gaps > 0, FlowAnomaly::ContentGap),
        (s.ooo_limit > 0, FlowAnomaly::OutOfOrderLimit),
        (s.inconsistent > 0, FlowAnomaly::InconsistentRetransmission),
    ] {
        if hit {
            note_weird(f, ts, a, out);
        }
    }
}

impl<P> Flow<P> {
    fn list(&self) -> usize {
        if self.parser.is_some() {
            SPEAKING
        } else {
            SILENT
        }
    }

    fn key(&self) -> FlowKey {
        let id = &self.id;
        FlowKey::new(id.orig_h, id.orig_p, id.resp_h, id.resp_p).0
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

impl<P> Spares<P> {
    /// Keeps what ended flow `f` leaves, if there is room.
    fn keep(&mut self, f: &mut Flow<P>) {
        if let Some(parser) = f.parser.take()
            && self.parsers.len() < SPARE_PARSERS
        {
            self.parsers.push(parser);
        }
        for r in &mut f.reasm {
            if let Some(ring) = r.take_recent()
                && self.rings.len() < 2 * SPARE_PARSERS
            {
                self.rings.push(ring);
            }
        }
    }
}

/// The flow's parser, made now if it has none (see [`made_parser`]).
fn parser_of<'a, P: StreamParser<S>, S: ?Sized>(
    parser: &'a mut Option<Box<P>>,
    reasm: &mut [Reassembler],
    id: &ConnId,
    start: Ts,
    new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    spares: &mut Spares<P>,
) -> &'a mut P {
    parser.get_or_insert_with(|| made_parser(reasm, &ConnInfo::new(*id, start), new_parser, spares))
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

/// Whether packet `pkt` for flow `f` ends that connection to start a new
/// one on the same port pair (or is to be ignored). Past the idle check
/// only SYNs get here: the rare case.
fn reuse<P>(f: &Flow<P>, idle_timeout_us: u64, pkt: &Packet<'_>, src_is_a: bool) -> Reuse {
    if pkt.ts.saturating_sub(f.last) > idle_timeout_us {
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
        // A new SYN once either side has closed: the port pair is being
        // reused (as Zeek does).
        if f.reasm.iter().any(Reassembler::fin_seen) {
            return Reuse::Closed;
        }
        // On a live connection anyone who knows the port pair can send one;
        // the responder's SYN-ACK decides (see `Answered`).
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

/// Runs segment `pkt` through flow `f`, wherever the flow is kept: `None`
/// when it is not activity of the connection (a blind reset, counted), else
/// whether it ended the connection.
#[allow(clippy::too_many_arguments)]
fn step<P: StreamParser<S>, S: ?Sized>(
    f: &mut Flow<P>,
    pkt: &Packet<'_>,
    src_is_a: bool,
    sink: &mut S,
    anomalies: &mut AnomalyCounts,
    new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    spares: &mut Spares<P>,
    stats: &mut SegmentStats,
) -> Option<bool> {
    let dir = if src_is_a == f.orig_is_a {
        Direction::Orig
    } else {
        Direction::Resp
    };
    if pkt.flags.rst() && !rst_in_window(f, dir, pkt) {
        // A blind reset: the connection goes on, and the RST is not
        // activity of it.
        anomalies.add(FlowAnomaly::RstOutsideWindow);
        stats.rst_outside = true;
        return None;
    }
    f.last = pkt.ts;
    let Flow {
        reasm,
        parser,
        id,
        start,
        ..
    } = f;
    let start = *start;
    // Payload may be buffered out of order before anything is delivered:
    // the parser exists from the first payload byte on, so that whatever a
    // flow holds has a parser to go to.
    if !pkt.payload.is_empty() {
        parser_of(parser, reasm, id, start, new_parser, spares);
    }
    let ts = pkt.ts;
    let [orig, resp] = reasm;
    let (mine, theirs) = match dir {
        Direction::Orig => (orig, resp),
        Direction::Resp => (resp, orig),
    };
    let mut deliver_other = |c: Chunk<'_>| {
        let p = parser_of(parser, &mut [], id, start, new_parser, spares);
        deliver(p, dir.flip(), ts, c, sink, stats);
    };
    if pkt.flags.ack() && !theirs.ack(pkt.ack, &mut deliver_other) {
        anomalies.add(FlowAnomaly::AckAboveWindow);
        stats.ack_above = true;
    }
    let mut deliver_mine = |c: Chunk<'_>| {
        let p = parser_of(parser, &mut [], id, start, new_parser, spares);
        deliver(p, dir, ts, c, sink, stats);
    };
    let ev = mine.segment(
        pkt.seq,
        pkt.flags.syn(),
        pkt.flags.fin(),
        pkt.payload,
        &mut deliver_mine,
    );
    stats.events(ev);
    Some(pkt.flags.rst() || (mine.finished() && theirs.finished()))
}

/// Why a flow ends, for counters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    TimedOut,
    Evicted,
    Flushed,
}

/// Where a packet's flow is kept. A value of one packet's processing, on
/// the stack: boxing the rebuilt flow would allocate per packet.
#[allow(clippy::large_enum_variant)]
enum Place<P> {
    Nowhere,
    Full(u32),
    /// Entry `.0` of the silent flows, and the flow rebuilt from it for
    /// this packet.
    Silent(u32, Flow<P>),
}

/// The flows of one worker, each with its parser `P`.
pub struct FlowTable<P> {
    cfg: FlowConfig,
    /// Full flows: every flow that has carried a byte, and silent ones only
    /// when the compact store is off.
    index: KeyedMap<FlowKey, u32>,
    flows: LruSlab<Flow<P>, 2>,
    /// Flows that have not carried a byte, in compact entries.
    silent: SilentFlows,
    /// Ended flows' parsers and windows, for new flows.
    spares: Spares<P>,
    pub stats: FlowStats,
    /// Flow anomalies for weird.log since the caller last took them
    /// (connections kept in the full table: those that have spoken).
    pub weirds: Vec<FlowWeird>,
}

impl<P> FlowTable<P> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            silent: SilentFlows::new(cfg.max_silent_flows),
            cfg,
            index: KeyedMap::default(),
            flows: LruSlab::default(),
            spares: Spares {
                parsers: Vec::new(),
                rings: Vec::new(),
            },
            stats: FlowStats::default(),
            weirds: Vec::new(),
        }
    }

    /// Live flows, silent ones included.
    pub fn len(&self) -> usize {
        self.index.len() + self.silent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live flows that have not carried a byte, in compact entries.
    pub fn silent_len(&self) -> usize {
        self.silent.len()
    }

    fn flow(&self, i: u32) -> Option<&Flow<P>> {
        self.flows.get(i)
    }

    /// Slot `i` was active: to the head of its list (`was`: the list it was
    /// on before this packet, which differs when it has just spoken).
    fn touch(&mut self, i: u32, was: usize) {
        let now = self.flow(i).map_or(was, Flow::list);
        self.flows.touch(i, was, now);
    }

    /// The least recently active full flow, silent ones first: what to
    /// evict.
    fn victim(&self) -> Option<u32> {
        self.flows
            .tail(SILENT)
            .or_else(|| self.flows.tail(SPEAKING))
    }

    fn locate(&self, key: &FlowKey) -> Place<P> {
        if let Some(&i) = self.index.get(key) {
            return Place::Full(i);
        }
        if self.silent.len() == 0 {
            return Place::Nowhere;
        }
        match self
            .silent
            .find(key)
            .and_then(|j| Some((j, self.silent.get(j)?)))
        {
            Some((j, s)) => Place::Silent(j, s.flow(self.cfg.max_ooo_bytes)),
            None => Place::Nowhere,
        }
    }

    fn is_smtp_port(&self, p: u16) -> bool {
        self.cfg.smtp_ports.contains(&p)
    }

    fn count_end(&mut self, end: End) {
        match end {
            End::Closed => self.stats.flows_closed += 1,
            End::TimedOut => self.stats.flows_timed_out += 1,
            End::Evicted => self.stats.flows_evicted += 1,
            End::Flushed => {}
        }
    }

    /// A new flow for the first packet of a connection, kept nowhere yet.
    fn new_flow(&mut self, src_is_a: bool, pkt: &Packet<'_>) -> Flow<P> {
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
        self.stats.flows_created += 1;
        Flow {
            orig_is_a: src_is_a == sender_is_orig,
            reasm: [
                Reassembler::new(self.cfg.max_ooo_bytes),
                Reassembler::new(self.cfg.max_ooo_bytes),
            ],
            id: ConnId {
                orig_h: orig.0,
                orig_p: orig.1,
                resp_h: resp.0,
                resp_p: resp.1,
            },
            start: pkt.ts,
            parser: None,
            other_syn: None,
            last: pkt.ts,
            weirds_logged: 0,
        }
    }

    /// Keeps silent flow `s` as a compact entry, ending the least recently
    /// active one if they are at their limit.
    fn insert_silent(&mut self, s: Silent, anomalies: &mut AnomalyCounts) {
        if self.silent.is_full()
            && let Some(v) = self.silent.oldest()
        {
            anomalies.add(FlowAnomaly::SilentFlowEvicted);
            self.silent.remove(v);
            self.count_end(End::Evicted);
        }
        self.silent.insert(s);
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
        let mut place = self.locate(&key);
        let idle = self.cfg.idle_timeout_us;
        let verdict = match &place {
            Place::Nowhere => Reuse::No,
            Place::Full(i) => self
                .flow(*i)
                .map_or(Reuse::No, |f| reuse(f, idle, pkt, src_is_a)),
            Place::Silent(_, f) => reuse(f, idle, pkt, src_is_a),
        };
        // The originator's SYN that the responder has just answered, when
        // that starts a new connection on the port pair.
        let mut answered_syn = None;
        match verdict {
            Reuse::No => {}
            Reuse::Idle(at) => {
                self.end(&place, at, End::TimedOut, sink, anomalies);
                place = Place::Nowhere;
            }
            Reuse::Closed => {
                self.end(&place, pkt.ts, End::Closed, sink, anomalies);
                place = Place::Nowhere;
            }
            Reuse::Answered(syn) => {
                self.end(&place, pkt.ts, End::Closed, sink, anomalies);
                place = Place::Nowhere;
                answered_syn = Some(syn);
            }
            Reuse::Suspect(a) => {
                // Not activity of the connection: it goes on as if the SYN
                // had not been sent.
                anomalies.add(a);
                match place {
                    Place::Full(i) => {
                        let FlowTable { flows, weirds, .. } = self;
                        if let Some(f) = flows.get_mut(i) {
                            f.other_syn = Some(pkt.seq);
                            note_weird(f, pkt.ts, a, weirds);
                        }
                    }
                    Place::Silent(j, _) => {
                        if let Some(s) = self.silent.get_mut(j) {
                            s.set_other_syn(pkt.seq);
                        }
                    }
                    Place::Nowhere => {}
                }
                return;
            }
        }
        match place {
            Place::Full(i) => self.step_full(i, pkt, src_is_a, sink, anomalies, new_parser),
            Place::Silent(j, f) => {
                self.step_apart(Some(j), key, f, pkt, src_is_a, sink, anomalies, new_parser)
            }
            Place::Nowhere => {
                if pkt.flags.rst() || (pkt.payload.is_empty() && !pkt.flags.syn()) {
                    self.stats.untracked_segments += 1;
                    return;
                }
                if self.silent.enabled()
                    && answered_syn.is_none()
                    && pkt.payload.is_empty()
                    && pkt.flags.syn()
                    && !pkt.flags.ack()
                    && !pkt.flags.fin()
                {
                    // The SYN flood's path: straight to a compact entry.
                    self.stats.flows_created += 1;
                    self.insert_silent(Silent::syn(&key, src_is_a, pkt), anomalies);
                    return;
                }
                let mut f = self.new_flow(src_is_a, pkt);
                if let Some(syn) = answered_syn {
                    f.reasm[0].segment(syn, true, false, &[], &mut |_| {});
                }
                if pkt.payload.is_empty() && self.silent.enabled() {
                    self.step_apart(None, key, f, pkt, src_is_a, sink, anomalies, new_parser);
                } else {
                    let i = self.insert_full(key, f, pkt.ts, sink, anomalies);
                    self.step_full(i, pkt, src_is_a, sink, anomalies, new_parser);
                }
            }
        }
    }

    /// Ends the flow at `place` (see `remove`).
    fn end<S: ?Sized>(
        &mut self,
        place: &Place<P>,
        ts: Ts,
        end: End,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
    ) where
        P: StreamParser<S>,
    {
        match place {
            Place::Full(i) => self.remove(*i, ts, end, sink, anomalies),
            Place::Silent(j, _) => {
                // Silent: nothing to flush, no parser to close.
                self.silent.remove(*j);
                self.count_end(end);
            }
            Place::Nowhere => {}
        }
    }

    /// `pkt` for full flow `i`.
    fn step_full<S: ?Sized>(
        &mut self,
        i: u32,
        pkt: &Packet<'_>,
        src_is_a: bool,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
        new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    ) where
        P: StreamParser<S>,
    {
        let was = self.flow(i).map_or(SILENT, Flow::list);
        let mut stats = SegmentStats::default();
        let FlowTable {
            flows,
            spares,
            weirds,
            ..
        } = self;
        let Some(f) = flows.get_mut(i) else { return };
        let stepped = step(
            f, pkt, src_is_a, sink, anomalies, new_parser, spares, &mut stats,
        );
        note_segment_weirds(f, pkt.ts, &stats, weirds);
        let Some(closed) = stepped else {
            return;
        };
        self.touch(i, was);
        self.account(&stats, anomalies);
        if closed {
            self.remove(i, pkt.ts, End::Closed, sink, anomalies);
        }
    }

    /// `pkt` for flow `f`, kept apart from the full table: silent entry
    /// `j`, or a new flow (`None`). Afterwards the flow is kept where its
    /// state says: a compact entry while it is silent, the full table once
    /// it has spoken.
    #[allow(clippy::too_many_arguments)]
    fn step_apart<S: ?Sized>(
        &mut self,
        j: Option<u32>,
        key: FlowKey,
        mut f: Flow<P>,
        pkt: &Packet<'_>,
        src_is_a: bool,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
        new_parser: &mut dyn FnMut(&ConnInfo) -> P,
    ) where
        P: StreamParser<S>,
    {
        let mut stats = SegmentStats::default();
        let closed = match step(
            &mut f,
            pkt,
            src_is_a,
            sink,
            anomalies,
            new_parser,
            &mut self.spares,
            &mut stats,
        ) {
            Some(closed) => closed,
            // Nothing changed: the entry stays as it was.
            None if j.is_some() => return,
            None => false,
        };
        self.account(&stats, anomalies);
        match (Silent::of(&f), j) {
            (Some(_), j) if closed => {
                if let Some(j) = j {
                    self.silent.remove(j);
                }
                self.count_end(End::Closed);
            }
            (Some(s), Some(j)) => {
                self.silent.set(j, s);
                self.silent.touch(j);
            }
            (Some(s), None) => self.insert_silent(s, anomalies),
            (None, j) => {
                // It has spoken: a full flow from now on.
                if let Some(j) = j {
                    self.silent.remove(j);
                }
                let i = self.insert_full(key, f, pkt.ts, sink, anomalies);
                if closed {
                    self.remove(i, pkt.ts, End::Closed, sink, anomalies);
                }
            }
        }
    }

    /// Keeps `f` in the full table, ending the least recently active full
    /// flow (silent ones first) if it is at its limit.
    fn insert_full<S: ?Sized>(
        &mut self,
        key: FlowKey,
        f: Flow<P>,
        ts: Ts,
        sink: &mut S,
        anomalies: &mut AnomalyCounts,
    ) -> u32
    where
        P: StreamParser<S>,
    {
        if self.index.len() >= self.cfg.max_flows
            && let Some(v) = self.victim()
        {
            anomalies.add(FlowAnomaly::FlowEvicted);
            self.remove(v, ts, End::Evicted, sink, anomalies);
        }
        let i = self.flows.insert(f.list(), f);
        self.index.insert(key, i);
        i
    }

    /// Ends full flow `i`: remaining buffered data (with gaps) goes to the
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
        let Some(list) = self.flow(i).map(Flow::list) else {
            return;
        };
        let Some(mut f) = self.flows.remove(i, list) else {
            return;
        };
        self.index.remove(&f.key());
        let mut stats = SegmentStats::default();
        // A flow without a parser never carried a payload byte, so it
        // holds nothing to flush and has nothing to close.
        if let Some(parser) = f.parser.as_deref_mut() {
            let [orig, resp] = &mut f.reasm;
            orig.flush(&mut |c| deliver(parser, Direction::Orig, ts, c, sink, &mut stats));
            resp.flush(&mut |c| deliver(parser, Direction::Resp, ts, c, sink, &mut stats));
            parser.on_close(ts, sink);
        }
        self.spares.keep(&mut f);
        self.account(&stats, anomalies);
        self.count_end(end);
    }

    /// Ends every flow idle for longer than the timeout at `now`: the
    /// silent ones, then the full table's lists, each from its least
    /// recently active end.
    pub fn expire<S: ?Sized>(&mut self, now: Ts, sink: &mut S, anomalies: &mut AnomalyCounts)
    where
        P: StreamParser<S>,
    {
        let idle = self.cfg.idle_timeout_us;
        while let Some(j) = self.silent.oldest() {
            match self.silent.get(j) {
                Some(s) if now.saturating_sub(s.last()) > idle => {
                    self.silent.remove(j);
                    self.count_end(End::TimedOut);
                }
                _ => break,
            }
        }
        for list in [SILENT, SPEAKING] {
            while let Some(i) = self.flows.tail(list) {
                let Some(last) = self.flow(i).map(|f| f.last) else {
                    break;
                };
                if now.saturating_sub(last) <= idle {
                    break;
                }
                self.remove(i, last, End::TimedOut, sink, anomalies);
            }
        }
    }

    /// End of input: ends every flow, the silent ones first (they log
    /// nothing), then the others in order of last activity.
    pub fn flush_all<S: ?Sized>(&mut self, now: Ts, sink: &mut S, anomalies: &mut AnomalyCounts)
    where
        P: StreamParser<S>,
    {
        while let Some(j) = self.silent.oldest() {
            self.silent.remove(j);
        }
        for list in [SILENT, SPEAKING] {
            while let Some(i) = self.flows.tail(list) {
                self.remove(i, now, End::Flushed, sink, anomalies);
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
    /// The segment was a RST outside the window (ignored).
    rst_outside: bool,
    /// It acknowledged bytes far beyond any seen.
    ack_above: bool,
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
