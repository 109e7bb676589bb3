//! The one hand-over between threads, offline and live: frames are copied
//! into batches, batches and control messages cross lock-free SPSC rings
//! (rtrb), and emptied batches come back on a return ring to be reused, so
//! steady state allocates nothing per packet.
//!
//! Producers are the offline dispatcher (one lane per worker, waiting when a
//! ring is full: the output must be complete) and the live capture threads
//! (one lane per worker each, dropping a batch when its ring is full and
//! counting it: capture never waits, like a NIC whose ring is full). The
//! consumer side is [`drain`], the single worker loop both use: it walks a
//! worker's inboxes and hands each frame, batch end, control message and
//! idle moment to the worker's handler.

use crate::decode::{LinkType, Packet, SegmentHeader};
use crate::net::Ts;

/// Frames per batch.
pub const BATCH_FRAMES: usize = 256;
/// Bytes per batch.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Messages a ring holds when its producer drops on a full ring (live):
/// enough batches to ride out a worker's hiccup of a few milliseconds at
/// line rate before frames are lost.
pub const RING_SLOTS: usize = 256;
/// Messages a ring holds when its producer waits (offline): the producer
/// only runs ahead, so a few batches keep the worker busy, and fewer
/// batches in flight keep memory small (a batch holds up to 320 KiB).
pub const WAITING_RING_SLOTS: usize = 64;

/// One entry of a batch; its bytes are `data[start..start + len]`.
#[derive(Clone, Copy)]
enum Entry {
    /// A raw frame, decoded by the worker (live capture threads route by
    /// the XDP program's flow hash without decoding).
    Frame { ts: Ts, link: LinkType },
    /// A segment the producer already decoded (offline): its header, the
    /// bytes being its payload only, or (`tcp_header` > 0) the whole TCP
    /// segment, whose checksum the worker verifies.
    Segment {
        header: SegmentHeader,
        tcp_header: u8,
    },
}

/// Frames or decoded segments copied for one worker, back to back.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    entries: Vec<(Entry, u32, u32)>,
}

impl Batch {
    pub(crate) fn with_capacity() -> Box<Batch> {
        Box::new(Batch {
            data: Vec::with_capacity(BATCH_BYTES + 65_536),
            entries: Vec::with_capacity(BATCH_FRAMES),
        })
    }

    fn push_bytes(&mut self, entry: Entry, bytes: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.entries.push((entry, start, bytes.len() as u32));
    }

    pub(crate) fn push(&mut self, ts: Ts, link: LinkType, frame: &[u8]) {
        self.push_bytes(Entry::Frame { ts, link }, frame);
    }

    /// `tcp`: the whole TCP segment (header, then `p.payload`) when the
    /// worker is to verify its checksum.
    pub(crate) fn push_segment(&mut self, p: &Packet<'_>, tcp: Option<&[u8]>) {
        let header = p.header;
        // The payload is the segment's tail (both from one frame): what
        // comes before it is the TCP header, 20 to 60 bytes.
        let with_header = tcp.and_then(|seg| {
            let len = seg.len().checked_sub(p.payload.len())?;
            u8::try_from(len).ok().filter(|&h| h > 0).map(|h| (seg, h))
        });
        match with_header {
            Some((seg, tcp_header)) => {
                self.push_bytes(Entry::Segment { header, tcp_header }, seg);
            }
            None => self.push_bytes(
                Entry::Segment {
                    header,
                    tcp_header: 0,
                },
                p.payload,
            ),
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.entries.len() >= BATCH_FRAMES || self.data.len() >= BATCH_BYTES
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The frames and segments, in the order they were pushed.
    fn events(&self) -> impl Iterator<Item = Event<'_>> + '_ {
        self.entries.iter().filter_map(|&(entry, start, len)| {
            let bytes = self.data.get(start as usize..(start + len) as usize)?;
            Some(match entry {
                Entry::Frame { ts, link } => Event::Frame(ts, link, bytes),
                Entry::Segment { header, tcp_header } => {
                    let payload = bytes.get(usize::from(tcp_header)..).unwrap_or_default();
                    let whole = (tcp_header > 0).then_some(bytes);
                    Event::Segment(Packet { header, payload }, whole)
                }
            })
        })
    }
}

/// What crosses a ring.
pub enum Msg {
    Batch(Box<Batch>),
    /// Network time reached `now` (offline: the dispatcher keeps the clock
    /// and sends ticks in packet order); `period_end` when a period ended.
    Tick {
        now: Ts,
        period_end: Option<Ts>,
    },
    /// End of input at `now`: the worker flushes everything.
    Finish {
        now: Ts,
    },
}

/// What a producer does when a worker's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for the worker (offline: nothing may be lost).
    Wait,
    /// Drop the batch and say so (live: capture never waits).
    Drop,
}

/// How a hand-over went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handed {
    /// Frames that reached the ring.
    pub frames: u64,
    /// Frames dropped because the ring was full ([`WhenFull::Drop`]).
    pub dropped: u64,
}

impl std::ops::AddAssign for Handed {
    fn add_assign(&mut self, o: Handed) {
        self.frames += o.frames;
        self.dropped += o.dropped;
    }
}

/// The producer side of one ring.
pub struct Lane {
    ring: rtrb::Producer<Msg>,
    returns: rtrb::Consumer<Box<Batch>>,
    current: Option<Box<Batch>>,
    when_full: WhenFull,
}

/// The consumer side of one ring.
pub struct Inbox {
    ring: rtrb::Consumer<Msg>,
    returns: rtrb::Producer<Box<Batch>>,
    /// A `Finish` came, or the producer went away with the ring empty.
    done: bool,
}

/// Rings from each of `producers` to each of `consumers`: per producer its
/// lanes (in consumer order), per consumer its inboxes (in producer order).
pub fn mesh(
    producers: usize,
    consumers: usize,
    when_full: WhenFull,
) -> (Vec<Vec<Lane>>, Vec<Vec<Inbox>>) {
    let mut lanes: Vec<Vec<Lane>> = (0..producers).map(|_| Vec::new()).collect();
    let mut inboxes: Vec<Vec<Inbox>> = (0..consumers).map(|_| Vec::new()).collect();
    let slots = match when_full {
        WhenFull::Wait => WAITING_RING_SLOTS,
        WhenFull::Drop => RING_SLOTS,
    };
    for out in lanes.iter_mut() {
        for into in inboxes.iter_mut() {
            let (ring, ring_rx) = rtrb::RingBuffer::new(slots);
            // Two more than the ring: every batch in flight plus the two a
            // producer can hold (current, and one just popped).
            let (returns_tx, returns) = rtrb::RingBuffer::new(slots + 2);
            out.push(Lane {
                ring,
                returns,
                current: None,
                when_full,
            });
            into.push(Inbox {
                ring: ring_rx,
                returns: returns_tx,
                done: false,
            });
        }
    }
    (lanes, inboxes)
}

impl Lane {
    /// Copies `frame` into the current batch; hands the batch over when it
    /// is full.
    pub fn push(&mut self, ts: Ts, link: LinkType, frame: &[u8]) -> Handed {
        self.push_with(|b| b.push(ts, link, frame))
    }

    /// Copies a decoded segment (its header and payload, or its whole TCP
    /// segment `tcp` for the worker to verify) into the current batch;
    /// hands the batch over when it is full.
    pub fn push_segment(&mut self, p: &Packet<'_>, tcp: Option<&[u8]>) -> Handed {
        self.push_with(|b| b.push_segment(p, tcp))
    }

    fn push_with(&mut self, put: impl FnOnce(&mut Batch)) -> Handed {
        let returns = &mut self.returns;
        let b = self
            .current
            .get_or_insert_with(|| returns.pop().unwrap_or_else(|_| Batch::with_capacity()));
        put(b);
        if b.full() {
            self.flush()
        } else {
            Handed::default()
        }
    }

    /// Hands the current batch over, if it holds frames.
    pub fn flush(&mut self) -> Handed {
        let Some(b) = self.current.take() else {
            return Handed::default();
        };
        let n = b.len() as u64;
        if n == 0 {
            self.current = Some(b);
            return Handed::default();
        }
        match self.when_full {
            WhenFull::Wait => {
                push_waiting(&mut self.ring, Msg::Batch(b));
                Handed {
                    frames: n,
                    dropped: 0,
                }
            }
            WhenFull::Drop => match self.ring.push(Msg::Batch(b)) {
                Ok(()) => Handed {
                    frames: n,
                    dropped: 0,
                },
                Err(rtrb::PushError::Full(Msg::Batch(mut b))) => {
                    b.clear();
                    self.current = Some(b);
                    Handed {
                        frames: 0,
                        dropped: n,
                    }
                }
                Err(rtrb::PushError::Full(_)) => Handed::default(),
            },
        }
    }

    /// True when the current batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.current.as_ref().is_none_or(|b| b.len() == 0)
    }

    /// Hands the current batch over, then `msg`, waiting for room (control
    /// messages are few and must arrive).
    pub fn control(&mut self, msg: Msg) {
        self.flush();
        push_waiting(&mut self.ring, msg);
    }

    /// Sends `msg` without waiting if the ring is full (a dropped producer
    /// unblocking its worker).
    pub fn try_control(&mut self, msg: Msg) {
        let _ = self.ring.push(msg);
    }
}

/// Pushes onto a ring, waiting while it is full (the worker drains it);
/// gives up when the worker is gone.
fn push_waiting(ring: &mut rtrb::Producer<Msg>, mut msg: Msg) {
    let mut backoff = Backoff::default();
    loop {
        match ring.push(msg) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(m)) => {
                if ring.is_abandoned() {
                    return;
                }
                msg = m;
                backoff.snooze();
            }
        }
    }
}

/// What a worker's handler is told.
pub enum Event<'a> {
    /// One frame of a batch.
    Frame(Ts, LinkType, &'a [u8]),
    /// One segment of a batch, decoded by the producer; with its whole TCP
    /// segment when its checksum is still to be verified.
    Segment(Packet<'a>, Option<&'a [u8]>),
    /// The frames of one batch have all been handed over.
    BatchEnd,
    Tick {
        now: Ts,
        period_end: Option<Ts>,
    },
    Finish {
        now: Ts,
    },
    /// Nothing arrived: time may have moved on (live workers keep a
    /// clock of their own).
    Idle,
}

/// The worker loop: hands everything arriving on `inboxes` to `on`, in
/// ring order, until every inbox is done (a `Finish` arrived, or its
/// producer went away and the ring is empty); sleeps with a backoff while
/// nothing arrives.
pub fn drain(inboxes: &mut [Inbox], mut on: impl FnMut(Event<'_>)) {
    let mut backoff = Backoff::default();
    loop {
        let mut got = false;
        for inbox in inboxes.iter_mut().filter(|i| !i.done) {
            // Read "abandoned" before popping: a producer that leaves after
            // this load is caught by the next round.
            let abandoned = inbox.ring.is_abandoned();
            let mut popped = false;
            while let Ok(msg) = inbox.ring.pop() {
                popped = true;
                match msg {
                    Msg::Batch(mut b) => {
                        for event in b.events() {
                            on(event);
                        }
                        on(Event::BatchEnd);
                        b.clear();
                        // A full return ring means the producer has spares.
                        let _ = inbox.returns.push(b);
                    }
                    Msg::Tick { now, period_end } => on(Event::Tick { now, period_end }),
                    Msg::Finish { now } => {
                        on(Event::Finish { now });
                        inbox.done = true;
                        break;
                    }
                }
            }
            got |= popped;
            if abandoned && !popped {
                inbox.done = true;
            }
        }
        if inboxes.iter().all(|i| i.done) {
            return;
        }
        if got {
            backoff.reset();
        } else {
            on(Event::Idle);
            backoff.snooze();
        }
    }
}

/// Frames already on `inboxes`' rings (taken off them): for tests that
/// check what a producer handed over without running a worker loop.
#[cfg(test)]
pub(crate) fn waiting_frames(inboxes: &mut [Inbox]) -> usize {
    let mut n = 0;
    for inbox in inboxes {
        while let Ok(msg) = inbox.ring.pop() {
            if let Msg::Batch(b) = msg {
                n += b.len();
            }
        }
    }
    n
}

/// Spin, then yield, then sleep ever longer (50 µs doubling to 1.6 ms):
/// waiting on a ring without a lock, and without burning a core when the
/// ring stays empty (a worker of a quiet link sleeps nearly all the time).
#[derive(Default)]
pub(crate) struct Backoff(u32);

/// Spins, then yields, before the first sleep.
const SPINS: u32 = 16;
const YIELDS: u32 = 32;
/// Longest sleep: 50 µs << 5.
const MAX_SLEEP_SHIFT: u32 = 5;

impl Backoff {
    pub(crate) fn snooze(&mut self) {
        self.0 = self.0.saturating_add(1);
        if self.0 < SPINS {
            std::hint::spin_loop();
        } else if self.0 < YIELDS {
            std::thread::yield_now();
        } else {
            let shift = (self.0 - YIELDS).min(MAX_SLEEP_SHIFT);
            std::thread::sleep(std::time::Duration::from_micros(50 << shift));
        }
    }

    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_frames_and_segments_back_to_back() {
        let mut b = Batch::with_capacity();
        b.push(Ts(1), LinkType::Ethernet, b"abc");
        let frame = crate::decode::tests::tcp_frame(b"MAIL FROM:<a@b>\r\n");
        let crate::decode::Decoded::Tcp(seg) = crate::decode::decode(
            &frame,
            LinkType::Ethernet,
            Ts(2),
            crate::decode::DecodeOptions::default(),
        ) else {
            panic!("the test frame decodes");
        };
        b.push_segment(&seg, None);
        b.push(Ts(3), LinkType::RawIp, b"de");
        assert_eq!(b.len(), 3);
        // A segment's payload only is copied.
        assert_eq!(b.data, b"abcMAIL FROM:<a@b>\r\nde");
        let got: Vec<String> = b
            .events()
            .map(|e| match e {
                Event::Frame(ts, link, f) => format!("frame {ts:?} {link:?} {f:?}"),
                Event::Segment(p, _) => format!(
                    "segment {:?} {}->{} {:?}",
                    p.ts,
                    p.sport,
                    p.dport,
                    String::from_utf8_lossy(p.payload)
                ),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            got,
            [
                format!("frame {:?} {:?} {:?}", Ts(1), LinkType::Ethernet, b"abc"),
                format!(
                    "segment {:?} {}->{} {:?}",
                    Ts(2),
                    seg.sport,
                    seg.dport,
                    "MAIL FROM:<a@b>\r\n"
                ),
                format!("frame {:?} {:?} {:?}", Ts(3), LinkType::RawIp, b"de"),
            ]
        );
        assert!(!b.full());
        b.clear();
        assert!(b.entries.is_empty() && b.data.is_empty());
    }

    #[test]
    fn mesh_connects_every_producer_to_every_consumer() {
        let (lanes, inboxes) = mesh(3, 2, WhenFull::Drop);
        assert_eq!(lanes.len(), 3);
        assert!(lanes.iter().all(|l| l.len() == 2));
        assert_eq!(inboxes.len(), 2);
        assert!(inboxes.iter().all(|i| i.len() == 3));
    }

    #[test]
    fn a_dropping_lane_never_waits_and_counts() {
        let (mut lanes, inboxes) = mesh(1, 1, WhenFull::Drop);
        let lane = &mut lanes[0][0];
        let mut handed = Handed::default();
        for _ in 0..RING_SLOTS + 5 {
            lane.push(Ts(1), LinkType::Ethernet, &[0u8; 64]);
            let h = lane.flush();
            handed.frames += h.frames;
            handed.dropped += h.dropped;
        }
        assert_eq!(handed.frames, RING_SLOTS as u64);
        assert_eq!(handed.dropped, 5);
        assert_eq!(inboxes[0][0].ring.slots(), RING_SLOTS);
    }

    #[test]
    fn drain_delivers_in_order_until_finish_or_abandon() {
        let (mut lanes, mut inboxes) = mesh(2, 1, WhenFull::Wait);
        let a = &mut lanes[0][0];
        a.push(Ts(1), LinkType::Ethernet, b"one");
        a.push(Ts(2), LinkType::Ethernet, b"two");
        a.control(Msg::Tick {
            now: Ts(3),
            period_end: None,
        });
        a.control(Msg::Finish { now: Ts(4) });
        let b = &mut lanes[1][0];
        b.push(Ts(5), LinkType::Ethernet, b"three");
        b.flush();
        // Producer `b` goes away without a Finish.
        drop(lanes);
        let mut seen = Vec::new();
        drain(&mut inboxes[0], |e| match e {
            Event::Frame(ts, _, f) => seen.push(format!("{}:{}", ts.0, String::from_utf8_lossy(f))),
            Event::Segment(p, _) => seen.push(format!("segment {}", p.ts.0)),
            Event::BatchEnd => seen.push("end".into()),
            Event::Tick { now, .. } => seen.push(format!("tick {}", now.0)),
            Event::Finish { now } => seen.push(format!("finish {}", now.0)),
            Event::Idle => {}
        });
        assert_eq!(
            seen,
            [
                "1:one", "2:two", "end", "tick 3", "finish 4", "5:three", "end"
            ]
        );
    }
}
