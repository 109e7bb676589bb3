//! Packet capture: where frames come from before decoding.
//!
//! Live capture ([`live`]) loads the XDP program ([`xdp`]), opens one AF_XDP
//! socket per rx queue ([`afxdp`]) and hands frames, in batches, to a
//! [`FrameSink`] per queue. Offline capture reads pcap files (`pcap`). Both
//! feed the same consumer interface, so the pipeline behind it does not know
//! where its frames came from.

pub mod afxdp;
pub mod error;
pub mod link_watch;
pub mod live;
pub mod pcap;
pub mod prefetch;
pub mod sizing;
pub mod stats;
pub mod xdp;

use crate::net::Ts;

pub use error::CaptureError;
pub use live::{LiveOptions, LiveReport, run_live};

/// One captured frame: the Ethernet bytes and the time it was received.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time. Live capture stamps a whole batch with the time it was
    /// taken from the ring (AF_XDP carries no per-frame timestamp).
    pub ts: Ts,
    /// The frame, starting at the Ethernet header.
    pub data: &'a [u8],
    /// The connection's flow hash (`sensor_common::flowhash`) when the XDP
    /// program computed it (sharded live capture), from the frame's
    /// metadata; `None` otherwise.
    pub flow_hash: Option<u32>,
}

/// Consumer of captured frames. Live capture creates one per rx queue and
/// calls it from that queue's capture thread only, so an implementation
/// needs no locking; the frames borrow the socket's UMEM and are recycled
/// into the fill ring as soon as `frames` returns (copy what must outlive
/// the call).
pub trait FrameSink: Send {
    /// A batch of frames received on rx queue `queue`.
    fn frames(&mut self, queue: u32, batch: &[Frame<'_>]);

    /// Called when a queue is idle (no frame for a while) and about once a
    /// second otherwise, with the current time: drives time-based work
    /// (idle timeouts, period ends) while no traffic arrives.
    fn tick(&mut self, now: Ts);

    /// Called once when capture stops, before the capture thread exits.
    fn finish(&mut self);
}
