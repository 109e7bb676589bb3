//! Live capture with the workers on threads of their own: each capture
//! thread hashes a frame's connection (symmetric, so both directions agree)
//! and copies it into a batch for that connection's worker; full batches
//! cross over one lock-free SPSC ring per (queue, worker) pair and come back
//! empty on a return ring, so steady state allocates nothing per packet.
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

use crate::capture::{Frame, FrameSink};
use crate::decode::{DecodeOptions, Decoded, LinkType, decode};
use crate::flow::{StreamParser, symmetric_hash};
use crate::net::Ts;
use crate::telemetry::Telemetry;

use super::dispatch::{Backoff, Batch, Dispatcher};
use super::worker::WorkerSink;

/// Batches a (queue, worker) ring holds.
pub const SHARD_RING_SLOTS: usize = 256;

/// The capture side of one (queue, worker) ring.
struct Lane {
    ring: rtrb::Producer<Box<Batch>>,
    returns: rtrb::Consumer<Box<Batch>>,
    current: Option<Box<Batch>>,
}

/// The worker side of one (queue, worker) ring.
pub struct ShardInput {
    ring: rtrb::Consumer<Box<Batch>>,
    returns: rtrb::Producer<Box<Batch>>,
}

/// Makes the rings between `queues` capture threads and `workers` workers:
/// per queue its lanes (in worker order), per worker its inputs.
pub fn rings(queues: usize, workers: usize) -> (Vec<Vec<LaneSet>>, Vec<Vec<ShardInput>>) {
    let mut by_queue: Vec<Vec<LaneSet>> = (0..queues).map(|_| Vec::new()).collect();
    let mut by_worker: Vec<Vec<ShardInput>> = (0..workers).map(|_| Vec::new()).collect();
    for lanes in by_queue.iter_mut() {
        for inputs in by_worker.iter_mut() {
            let (ring, ring_rx) = rtrb::RingBuffer::new(SHARD_RING_SLOTS);
            let (ret_tx, returns) = rtrb::RingBuffer::new(SHARD_RING_SLOTS + 2);
            lanes.push(LaneSet(Lane {
                ring,
                returns,
                current: None,
            }));
            inputs.push(ShardInput {
                ring: ring_rx,
                returns: ret_tx,
            });
        }
    }
    (by_queue, by_worker)
}

/// One lane, opaque outside this module.
pub struct LaneSet(Lane);

/// The [`FrameSink`] of one capture thread: shards frames to the workers.
pub struct ShardSink {
    queue: usize,
    lanes: Vec<Lane>,
    telemetry: Arc<Telemetry>,
}

impl ShardSink {
    pub fn new(queue: usize, lanes: Vec<LaneSet>, telemetry: Arc<Telemetry>) -> Self {
        ShardSink {
            queue,
            lanes: lanes.into_iter().map(|l| l.0).collect(),
            telemetry,
        }
    }

    /// The worker owning `frame`'s connection: both directions hash alike.
    /// Anything that is not a TCP segment goes to worker 0, which counts it.
    fn owner(&self, frame: &[u8], ts: Ts) -> usize {
        let n = self.lanes.len().max(1) as u64;
        match decode(frame, LinkType::Ethernet, ts, NO_CHECKSUMS) {
            Decoded::Tcp(p) => (symmetric_hash(p.src, p.sport, p.dst, p.dport) % n) as usize,
            _ => 0,
        }
    }

    /// Hands every non-empty batch to its worker.
    fn flush(&mut self) {
        for i in 0..self.lanes.len() {
            self.flush_lane(i);
        }
    }

    fn flush_lane(&mut self, i: usize) {
        let Some(lane) = self.lanes.get_mut(i) else {
            return;
        };
        let Some(b) = lane.current.take() else { return };
        let n = b.len() as u64;
        if n == 0 {
            lane.current = Some(b);
            return;
        }
        let hops = self.telemetry.hops.get(self.queue);
        match lane.ring.push(b) {
            Ok(()) => {
                if let Some(h) = hops {
                    h.add_hops(n);
                }
            }
            Err(rtrb::PushError::Full(mut b)) => {
                // The worker is behind: drop this batch, keep capturing.
                if let Some(h) = hops {
                    h.add_drops(n);
                }
                b.clear();
                lane.current = Some(b);
            }
        }
    }
}

/// Frames were already checked by the XDP program; checksums are left to
/// the worker's decode.
const NO_CHECKSUMS: DecodeOptions = DecodeOptions {
    verify_checksums: false,
};

impl FrameSink for ShardSink {
    fn frames(&mut self, _queue: u32, batch: &[Frame<'_>]) {
        for f in batch {
            let i = self.owner(f.data, f.ts);
            let Some(lane) = self.lanes.get_mut(i) else {
                continue;
            };
            let b = lane.current.get_or_insert_with(|| {
                lane.returns
                    .pop()
                    .unwrap_or_else(|_| Batch::with_capacity())
            });
            b.push(f.ts, LinkType::Ethernet, f.data);
            if b.full() {
                self.flush_lane(i);
            }
        }
    }

    /// Partial batches go at each tick (every 100 ms): on a quiet link a
    /// worker wakes for a batch ten times a second instead of for every
    /// frame; records are written per one-second window anyway.
    fn tick(&mut self, _now: Ts) {
        self.flush();
    }

    fn finish(&mut self) {
        // Give workers a moment to make room for the last batches.
        let mut backoff = Backoff::default();
        for _ in 0..1000 {
            self.flush();
            if self
                .lanes
                .iter()
                .all(|l| l.current.as_ref().is_none_or(|b| b.len() == 0))
            {
                break;
            }
            backoff.snooze();
        }
        // Dropping the producers tells the workers this queue is done.
        self.lanes.clear();
    }
}

/// Body of one worker thread: feeds every batch from its rings into its
/// dispatcher until every capture thread has finished, driving time with
/// the wall clock while idle; then flushes everything. Returns the
/// dispatcher for its counters.
pub fn worker_loop<P: StreamParser<WorkerSink> + Send + 'static>(
    mut d: Dispatcher<P>,
    mut inputs: Vec<ShardInput>,
    clock: impl Fn() -> Ts,
) -> Dispatcher<P> {
    let mut backoff = Backoff::default();
    loop {
        // Read "abandoned" before draining: a producer that finished after
        // this load is caught by the next round.
        let done = inputs.iter().all(|i| i.ring.is_abandoned());
        let mut got = false;
        for input in inputs.iter_mut() {
            while let Ok(mut b) = input.ring.pop() {
                got = true;
                for (ts, link, frame) in b.iter() {
                    d.feed(ts, Some(link), frame);
                }
                b.clear();
                // A full return ring means the capture side has spares.
                let _ = input.returns.push(b);
            }
        }
        if got {
            backoff.reset();
            continue;
        }
        if done {
            break;
        }
        d.advance(clock());
        backoff.snooze();
    }
    d.finish();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn rings_connect_every_queue_to_every_worker() {
        let (q, w) = rings(3, 2);
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|l| l.len() == 2));
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|i| i.len() == 3));
    }

    #[test]
    fn a_full_ring_drops_and_counts_instead_of_waiting() {
        let telemetry = Telemetry::live("t0", 1, 1);
        let (mut q, mut w) = rings(1, 1);
        let mut sink = ShardSink::new(0, q.remove(0), telemetry.clone());
        let frame = [0u8; 64];
        let batch = [Frame {
            ts: Ts(1),
            data: &frame,
        }];
        // Nobody drains the ring: after SHARD_RING_SLOTS hops, frames drop.
        for _ in 0..SHARD_RING_SLOTS + 5 {
            sink.frames(0, &batch);
            sink.tick(Ts(1));
        }
        let hops = &telemetry.hops[0];
        assert_eq!(hops.frames.load(Ordering::Relaxed), SHARD_RING_SLOTS as u64);
        assert_eq!(hops.ring_full_drops.load(Ordering::Relaxed), 5);
        let input = w.remove(0).remove(0);
        assert_eq!(input.ring.slots(), SHARD_RING_SLOTS);
    }
}
