//! Live capture with the workers on threads of their own: each capture
//! thread sends a frame to its connection's worker over the
//! [`transport`](super::transport) (one ring per (queue, worker) pair),
//! choosing the worker from the flow hash the XDP program put in the
//! frame's metadata, so a capture thread routes without decoding. Frames
//! without that metadata (a driver without metadata support) are decoded
//! and hashed here with the same function and key.
//!
//! Used when the NIC's RSS cannot be trusted to keep a connection on one
//! queue, or when the worker count differs from the queue count. Capture
//! never waits on a worker: a batch that finds its ring full is dropped and
//! counted (`ring_full_drops`), like a NIC drops when its ring is full.
//!
//! Each worker thread runs an inline [`Dispatcher`] fed from all of its
//! rings, with its own clock (wall time) for ticks and periods: it is one
//! collector source, exactly like a queue in the receive-side mode.

use std::sync::Arc;

use sensor_common::flowhash::FlowHashKey;

use crate::capture::{Frame, FrameSink, prefetch};
use crate::decode::{DecodeOptions, Decoded, LinkType, decode};
use crate::flow::{StreamParser, packet_flow_hash};
use crate::net::Ts;
use crate::telemetry::Telemetry;

use super::dispatch::Dispatcher;
use super::transport::{self, Backoff, Event, Handed, Inbox, Lane};
use super::worker::WorkerSink;

/// The [`FrameSink`] of one capture thread: shards frames to the workers.
pub struct ShardSink {
    queue: usize,
    lanes: Vec<Lane>,
    key: FlowHashKey,
    telemetry: Arc<Telemetry>,
}

impl ShardSink {
    /// `key`: the flow-hash key the XDP program was loaded with.
    pub fn new(
        queue: usize,
        lanes: Vec<Lane>,
        key: FlowHashKey,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        ShardSink {
            queue,
            lanes,
            key,
            telemetry,
        }
    }

    /// The worker owning `frame`'s connection: both directions hash alike.
    /// Anything that is not a TCP segment goes to worker 0, which counts it.
    fn owner(&self, frame: &Frame<'_>) -> usize {
        let n = self.lanes.len().max(1) as u32;
        let hash = frame.flow_hash.or_else(|| {
            match decode(frame.data, LinkType::Ethernet, frame.ts, NO_CHECKSUMS) {
                Decoded::Tcp(p) => Some(packet_flow_hash(&self.key, &p)),
                _ => None,
            }
        });
        hash.map_or(0, |h| (h % n) as usize)
    }

    fn count(&self, h: Handed) {
        if let Some(c) = self.telemetry.hops.get(self.queue) {
            if h.frames > 0 {
                c.add_hops(h.frames);
            }
            if h.dropped > 0 {
                c.add_drops(h.dropped);
            }
        }
    }

    /// Hands every non-empty batch to its worker.
    fn flush_lanes(&mut self) -> Handed {
        let mut total = Handed::default();
        for lane in &mut self.lanes {
            total += lane.flush();
        }
        total
    }

    /// [`ShardSink::flush_lanes`], counted.
    fn flush(&mut self) {
        let h = self.flush_lanes();
        self.count(h);
    }
}

/// Frames were already checked by the XDP program; checksums are left to
/// the worker's decode.
const NO_CHECKSUMS: DecodeOptions = DecodeOptions {
    verify_checksums: false,
};

impl FrameSink for ShardSink {
    fn frames(&mut self, _queue: u32, batch: &[Frame<'_>]) {
        let mut total = Handed::default();
        let mut unhashed = 0u64;
        for f in prefetch::batch(batch) {
            unhashed += u64::from(f.flow_hash.is_none());
            let i = self.owner(f);
            if let Some(lane) = self.lanes.get_mut(i) {
                total += lane.push(f.ts, LinkType::Ethernet, f.data);
            }
        }
        // What this receive brought goes over now, partial batches too:
        // without symmetric RSS the two directions of a connection come
        // through two capture threads, and a batch held back on one of them
        // would let the other direction overtake it (a reply ahead of its
        // command). Under load the batches are full anyway.
        total += self.flush_lanes();
        self.count(total);
        if unhashed > 0
            && let Some(c) = self.telemetry.hops.get(self.queue)
        {
            c.add_unhashed(unhashed);
        }
    }

    /// Everything is handed over at the end of each receive; a tick has
    /// nothing left to send but keeps the rule explicit.
    fn tick(&mut self, _now: Ts) {
        self.flush();
    }

    fn finish(&mut self) {
        // Give workers a moment to make room for the last batches.
        let mut backoff = Backoff::default();
        for _ in 0..1000 {
            self.flush();
            if self.lanes.iter().all(Lane::is_empty) {
                break;
            }
            backoff.snooze();
        }
        // Dropping the producers tells the workers this queue is done.
        self.lanes.clear();
    }
}

/// Body of one worker thread: feeds every frame from its rings into its
/// dispatcher until every capture thread has finished, driving time with
/// the wall clock while idle; then flushes everything. Returns the
/// dispatcher for its counters.
pub fn worker_loop<P: StreamParser<WorkerSink> + Send + 'static>(
    mut d: Dispatcher<P>,
    mut inboxes: Vec<Inbox>,
    clock: impl Fn() -> Ts,
) -> Dispatcher<P> {
    transport::drain(&mut inboxes, |e| match e {
        Event::Frame(ts, link, frame) => d.feed(ts, Some(link), frame),
        Event::Idle => d.advance(clock()),
        // Capture threads send raw frames (routed by the XDP program's
        // hash, never decoded) and no control messages: the worker keeps
        // its own clock.
        Event::Segment(..) | Event::BatchEnd | Event::Tick { .. } | Event::Finish { .. } => {}
    });
    d.finish();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::transport::{RING_SLOTS, WhenFull, mesh};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_full_ring_drops_and_counts_instead_of_waiting() {
        let telemetry = Telemetry::live("t0", 1, 1);
        let (mut lanes, _inboxes) = mesh(1, 1, WhenFull::Drop);
        let mut sink = ShardSink::new(
            0,
            lanes.remove(0),
            FlowHashKey::default(),
            telemetry.clone(),
        );
        let frame = [0u8; 64];
        let batch = [Frame {
            ts: Ts(1),
            data: &frame,
            flow_hash: None,
        }];
        // Nobody drains the ring: after RING_SLOTS hops, frames drop.
        for _ in 0..RING_SLOTS + 5 {
            sink.frames(0, &batch);
            sink.tick(Ts(1));
        }
        let hops = &telemetry.hops[0];
        assert_eq!(hops.frames.load(Ordering::Relaxed), RING_SLOTS as u64);
        assert_eq!(hops.ring_full_drops.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_receive_is_handed_over_at_once_partial_batches_too() {
        // Without symmetric RSS the directions of a connection come through
        // different capture threads: neither may hold frames back.
        let telemetry = Telemetry::live("t0", 1, 2);
        let (mut lanes, mut inboxes) = mesh(1, 2, WhenFull::Drop);
        let mut sink = ShardSink::new(0, lanes.remove(0), FlowHashKey::default(), telemetry);
        let frame = [0u8; 64];
        let batch = [0u32, 1, 3].map(|h| Frame {
            ts: Ts(1),
            data: &frame,
            flow_hash: Some(h),
        });
        sink.frames(0, &batch);
        let got: Vec<usize> = inboxes
            .iter_mut()
            .map(|i| transport::waiting_frames(i))
            .collect();
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn the_metadata_hash_picks_the_worker_without_decoding() {
        let telemetry = Telemetry::live("t0", 1, 4);
        let (mut lanes, _inboxes) = mesh(1, 4, WhenFull::Drop);
        let sink = ShardSink::new(0, lanes.remove(0), FlowHashKey::default(), telemetry);
        // Not a decodable frame at all: only the hash can route it.
        let garbage = [0xffu8; 10];
        for h in 0..8u32 {
            let f = Frame {
                ts: Ts(1),
                data: &garbage,
                flow_hash: Some(h),
            };
            assert_eq!(sink.owner(&f), (h % 4) as usize);
        }
        let f = Frame {
            ts: Ts(1),
            data: &garbage,
            flow_hash: None,
        };
        assert_eq!(sink.owner(&f), 0);
    }
}
