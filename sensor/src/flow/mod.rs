//! Flows: which packets belong together, in which order their bytes were
//! sent, and when a connection is over.
//!
//! `key` makes a canonical, direction-free key (and the symmetric hash the
//! dispatcher shards on), `reassembly` turns one direction's segments into
//! in-order bytes and gaps, `table` owns live connections, decides who the
//! originator is and drives a `StreamParser` with what reassembly delivers.

pub mod key;
pub mod reassembly;
pub mod table;

pub use key::{FlowKey, flow_hash, packet_flow_hash, random_flow_key};
pub use reassembly::{Chunk, Reassembler};
pub use table::{FlowConfig, FlowStats, FlowTable, FlowWeird};

use crate::net::{ConnInfo, Direction, Ts};

/// What a protocol analyser (the SMTP session) gets from the flow layer, in
/// the manner of Retina's parsers: in-order bytes per direction, gaps where
/// bytes were lost, and one close. `S` is where it reports what it found.
pub trait StreamParser<S: ?Sized> {
    /// In-order bytes of one direction.
    fn on_data(&mut self, dir: Direction, ts: Ts, data: &[u8], sink: &mut S);
    /// `len` bytes of `dir` that will never arrive (capture loss, a buffer
    /// limit). The parser resynchronises as Zeek does.
    fn on_gap(&mut self, dir: Direction, ts: Ts, len: u64, sink: &mut S);
    /// The connection is over (FIN/RST, idle timeout, eviction, end of
    /// input); called exactly once.
    fn on_close(&mut self, ts: Ts, sink: &mut S);
    /// Makes this parser, closed (`on_close`), the parser of a new
    /// connection `conn` as a new one would be, keeping what it allocated;
    /// false if it cannot be (the flow table then makes a new one). The
    /// table keeps a few closed parsers for this ([`table::SPARE_PARSERS`]).
    fn reuse(&mut self, _conn: &ConnInfo) -> bool {
        false
    }
}

/// Anomalies of the flow layer (Zeek weird names where Zeek has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowAnomaly {
    /// Bytes were skipped in a stream (capture loss or buffer limit).
    ContentGap,
    /// A direction's out-of-order buffer reached its byte limit; the oldest
    /// hole was declared a gap to make room.
    OutOfOrderLimit,
    /// The flow table was full; the least recently active flow was closed
    /// to make room.
    FlowEvicted,
    /// The silent flows (half-open, handshake only) were at their limit
    /// (`max_silent_flows_per_worker`); the least recently active was
    /// dropped to make room. Under a SYN flood, the flood's own flows.
    SilentFlowEvicted,
    /// An ACK more than `reassembly::MAX_ACK_AHEAD` beyond every byte seen
    /// of the stream it acknowledges (a forged or broken ACK); ignored.
    AckAboveWindow,
    /// A RST whose sequence number is not near its sender's stream
    /// (`reassembly::RST_WINDOW`): a blind reset; ignored, the connection
    /// goes on.
    RstOutsideWindow,
    /// A SYN with a new sequence number on a flow whose handshake has not
    /// carried data yet; ignored unless the responder answers it.
    SynSeqJump,
    /// A SYN with a new sequence number on a flow that carries data and is
    /// not closing (no FIN): ignored unless the responder answers it with a
    /// SYN-ACK, which starts a new connection (port reuse whose close was
    /// not captured).
    ActiveConnectionReuse,
    /// Data that overlaps bytes already buffered or delivered but differs
    /// from them; the first copy is kept.
    InconsistentRetransmission,
}

impl FlowAnomaly {
    pub const fn name(self) -> &'static str {
        match self {
            FlowAnomaly::ContentGap => "content_gap",
            FlowAnomaly::OutOfOrderLimit => "tcp_out_of_order_limit",
            FlowAnomaly::FlowEvicted => "flow_table_full_evicted",
            FlowAnomaly::SilentFlowEvicted => "silent_flow_table_full_evicted",
            FlowAnomaly::AckAboveWindow => "TCP_ack_above_window",
            FlowAnomaly::RstOutsideWindow => "RST_outside_window",
            FlowAnomaly::SynSeqJump => "SYN_seq_jump",
            FlowAnomaly::ActiveConnectionReuse => "active_connection_reuse",
            FlowAnomaly::InconsistentRetransmission => "rexmit_inconsistency",
        }
    }
}
