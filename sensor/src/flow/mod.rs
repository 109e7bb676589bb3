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
pub use table::{FlowConfig, FlowStats, FlowTable};

use crate::net::{Direction, Ts};

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
    /// An ACK far beyond anything plausible for the stream; ignored.
    AckAboveWindow,
    /// A SYN with a new sequence number on a live flow (port reuse); the old
    /// connection was closed and a new one started.
    SynReuse,
    /// Data that overlaps bytes already buffered but differs from them; the
    /// first copy is kept.
    InconsistentRetransmission,
}

impl FlowAnomaly {
    pub const fn name(self) -> &'static str {
        match self {
            FlowAnomaly::ContentGap => "content_gap",
            FlowAnomaly::OutOfOrderLimit => "tcp_out_of_order_limit",
            FlowAnomaly::FlowEvicted => "flow_table_full_evicted",
            FlowAnomaly::AckAboveWindow => "TCP_ack_above_window",
            FlowAnomaly::SynReuse => "SYN_seq_jump",
            FlowAnomaly::InconsistentRetransmission => "retransmission_inconsistency",
        }
    }
}
