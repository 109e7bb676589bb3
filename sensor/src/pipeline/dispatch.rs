//! The dispatcher: decodes each frame once, keeps global network time, and
//! drives the workers — inline on its own thread with one worker, or over
//! the [`transport`](super::transport) to worker threads, sharded by the
//! keyed symmetric flow hash so both directions of a connection reach the
//! same worker. Ticks (idle expiry, window ends, period ends) travel
//! in-band on the same rings, so each worker sees them in packet order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::thread::JoinHandle;

use sensor_common::flowhash::FlowHashKey;

use crate::anomaly::{AnomalyCounts, CaptureAnomaly};
use crate::decode::{
    DecodeAnomaly, DecodeOptions, Decoded, LinkType, PortSet, decode, tcp_segment,
    verify_checksums, verify_ip_checksum, verify_tcp_checksum,
};
use crate::detect::PeriodClock;
use crate::flow::{StreamParser, packet_flow_hash, random_flow_key};
use crate::net::Ts;

use super::collector::{FinalCounts, Report, ToCollector};
use super::transport::{self, Event, Inbox, Lane, Msg, WhenFull};
use super::worker::{PacketStats, Worker, WorkerSink, count_decoded};

/// Network time between ticks: how often idle flows are expired and the
/// collector gets a complete window.
pub const TICK_US: u64 = 1_000_000;

/// How reports reach the collector.
#[derive(Clone)]
enum Channel {
    /// Offline: a bounded channel; senders wait, so the output is complete.
    Blocking(SyncSender<ToCollector>),
    /// Live: never wait. Records are admitted against a shared budget of
    /// records the collector has not written yet; beyond it they are
    /// dropped and counted. What remains (window ends, period counters,
    /// notices, final counts) is small, about one message per worker and
    /// second, so the channel itself is unbounded: a stalled disk costs
    /// dropped records, never a stalled capture thread or unbounded memory.
    Budgeted {
        tx: Sender<ToCollector>,
        budget: Arc<RecordBudget>,
    },
}

/// Records handed to the collector and not written yet (live).
#[derive(Debug)]
pub struct RecordBudget {
    in_flight: AtomicU64,
    limit: u64,
}

impl RecordBudget {
    pub fn new(limit: u64) -> Arc<RecordBudget> {
        Arc::new(RecordBudget {
            in_flight: AtomicU64::new(0),
            limit,
        })
    }

    /// Admits `n` records, or none when that would pass the limit.
    fn try_take(&self, n: u64) -> bool {
        let before = self.in_flight.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit {
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// `n` records were written.
    pub fn release(&self, n: u64) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Records waiting for the collector at most, live (under 1 KB each for
/// ordinary mail: the record and its text arena). The log writer writes a
/// one-second window once it is complete, so up to two seconds of records
/// wait at any time: 52 000 records a second at 1.45 Mpps of the load
/// capture, more than an earlier budget of 65 536 held. 262 144 is five
/// seconds of that, at most ≈ 250 MB, and still small against a stalled
/// disk.
pub const LIVE_RECORD_BUDGET: u64 = 262_144;

/// A dispatcher's (and its workers') way to the collector.
#[derive(Clone)]
pub struct ReportTx {
    channel: Channel,
    /// The collector's source number of this dispatcher and its workers.
    source: usize,
    /// Records lost because the collector fell behind.
    pub dropped_records: Arc<AtomicU64>,
    /// Where the drops are also counted for the metrics.
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

impl ReportTx {
    /// Offline: waits when the collector is behind.
    pub fn blocking(tx: SyncSender<ToCollector>) -> Self {
        Self::with(Channel::Blocking(tx), 0)
    }

    /// Live, for source `source` (a worker with its own clock): never
    /// waits; records beyond `budget` are dropped and counted.
    pub fn budgeted(tx: Sender<ToCollector>, budget: Arc<RecordBudget>, source: usize) -> Self {
        Self::with(Channel::Budgeted { tx, budget }, source)
    }

    fn with(channel: Channel, source: usize) -> Self {
        ReportTx {
            channel,
            source,
            dropped_records: Arc::new(AtomicU64::new(0)),
            telemetry: None,
        }
    }

    /// Also counts dropped records in `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Arc<crate::telemetry::Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn send(&self, msg: ToCollector) {
        // A send fails only when the collector is gone (it failed and
        // reported why); there is nobody left to tell.
        match &self.channel {
            Channel::Blocking(tx) => {
                let _ = tx.send(msg);
            }
            Channel::Budgeted { tx, .. } => {
                let _ = tx.send(msg);
            }
        }
    }

    fn report(&self, mut r: Report) {
        r.source = self.source;
        if let Channel::Budgeted { budget, .. } = &self.channel {
            let n = r.records.len() as u64;
            if n > 0 && !budget.try_take(n) {
                self.dropped_records.fetch_add(n, Ordering::Relaxed);
                if let Some(t) = &self.telemetry {
                    t.collector.records_dropped.fetch_add(n, Ordering::Relaxed);
                }
                r.records.clear();
            }
        }
        self.send(ToCollector::Report(Box::new(r)));
    }
}

enum Mode<P> {
    Inline(Box<Worker<P>>),
    Threads {
        lanes: Vec<Lane>,
        handles: Vec<JoinHandle<()>>,
        /// Picks a frame's worker (per run, random).
        key: FlowHashKey,
    },
}

/// Frame-level counters of the dispatcher (each frame counted once here).
#[derive(Debug, Default)]
pub struct DispatchCounts {
    pub packets: PacketStats,
    pub anomalies: AnomalyCounts,
    /// Worker threads that panicked (a bug: the run must not look clean).
    pub worker_panics: u64,
}

/// Feeds frames into the workers. The same entry serves `-r` and live
/// capture: `feed` each frame, `advance` when time passes without frames,
/// `finish` at the end.
pub struct Dispatcher<P> {
    mode: Mode<P>,
    tx: ReportTx,
    clock: PeriodClock,
    next_tick: Option<u64>,
    window: u64,
    last_ts: Ts,
    decode_opts: DecodeOptions,
    /// The workers' SMTP ports: whose segments get their checksums checked.
    smtp_ports: PortSet,
    pub counts: DispatchCounts,
    finished: bool,
}

/// Decoding without checksums; [`Dispatcher::feed`] verifies them later.
const UNVERIFIED: DecodeOptions = DecodeOptions {
    verify_checksums: false,
};

impl<P: StreamParser<WorkerSink> + Send + 'static> Dispatcher<P> {
    /// `workers` built by the caller (one means inline processing).
    pub fn new(
        mut workers: Vec<Worker<P>>,
        tx: ReportTx,
        period_us: u64,
        decode_opts: DecodeOptions,
    ) -> Self {
        let smtp_ports = workers
            .first()
            .map_or_else(|| PortSet::new(&[]), |w| w.smtp_ports().clone());
        let mode = if workers.len() <= 1 {
            match workers.pop() {
                Some(w) => Mode::Inline(Box::new(w)),
                None => Mode::Threads {
                    lanes: Vec::new(),
                    handles: Vec::new(),
                    key: FlowHashKey::default(),
                },
            }
        } else {
            let (lanes, inboxes) = transport::mesh(1, workers.len(), WhenFull::Wait);
            let mut lanes = lanes.into_iter().next().unwrap_or_default();
            let mut handles = Vec::new();
            let mut kept = Vec::new();
            for ((w, inbox), lane) in workers.into_iter().zip(inboxes).zip(lanes.drain(..)) {
                let tx = tx.clone();
                let name = format!("worker-{}", w.id);
                let handle = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker_thread(w, inbox, tx));
                match handle {
                    Ok(h) => {
                        handles.push(h);
                        kept.push(lane);
                    }
                    Err(e) => eprintln!("smtp-sensor: cannot start a worker thread: {e}"),
                }
            }
            Mode::Threads {
                lanes: kept,
                handles,
                key: random_flow_key(),
            }
        };
        Dispatcher {
            mode,
            tx,
            clock: PeriodClock::new(period_us),
            next_tick: None,
            window: 0,
            last_ts: Ts(0),
            decode_opts,
            smtp_ports,
            counts: DispatchCounts::default(),
            finished: false,
        }
    }

    /// Epoch-aligned inspection periods (fleet mode): every sensor's period
    /// `k` is the same interval. Call before the first frame.
    pub fn with_aligned_periods(mut self, aligned: bool) -> Self {
        if aligned {
            self.clock = PeriodClock::aligned(self.clock.period_us());
        }
        self
    }

    /// One captured frame. `link: None` is a link type the decoder does not
    /// know (counted).
    pub fn feed(&mut self, ts: Ts, link: Option<LinkType>, frame: &[u8]) {
        self.counts.packets.packets += 1;
        self.counts.packets.bytes += frame.len() as u64;
        let Some(link) = link else {
            self.counts
                .anomalies
                .add(CaptureAnomaly::UnsupportedLinkType);
            return;
        };
        self.advance(ts);
        // Checksums are verified after the port check, for SMTP segments
        // only: nothing else is looked at, so nothing else pays for them.
        // With worker threads, the TCP checksum (the whole segment summed)
        // is the worker's work: the reading thread is the one that limits.
        let mut d = decode(frame, link, ts, UNVERIFIED);
        let mut deferred_tcp = None;
        if let Decoded::Tcp(p) = &mut d
            && self.decode_opts.verify_checksums
            && p.on_port(&self.smtp_ports)
        {
            match self.mode {
                Mode::Inline(_) => verify_checksums(frame, p),
                Mode::Threads { .. } => {
                    verify_ip_checksum(frame, p);
                    deferred_tcp = tcp_segment(frame, p);
                }
            }
        }
        count_decoded(&d, &mut self.counts.packets, &mut self.counts.anomalies);
        let Decoded::Tcp(p) = d else { return };
        match &mut self.mode {
            Mode::Inline(w) => {
                w.packet(&p);
                if let Some(r) = w.partial() {
                    self.tx.report(r);
                }
            }
            Mode::Threads { lanes, key, .. } => {
                let n = lanes.len().max(1) as u32;
                let idx = (packet_flow_hash(key, &p) % n) as usize;
                if let Some(lane) = lanes.get_mut(idx) {
                    // Decoded once: the worker gets the segment, not the
                    // frame.
                    lane.push_segment(&p, deferred_tcp);
                }
            }
        }
    }

    /// Network time moved to `now` (a frame's time, or a live clock tick):
    /// sends the ticks and period ends that are due, before anything later.
    pub fn advance(&mut self, now: Ts) {
        if now < self.last_ts {
            return;
        }
        self.last_ts = now;
        let started = self.clock.current_start();
        let period_end = self.clock.advance(now);
        let period_start = period_end.and(started);
        let tick_due = match self.next_tick {
            None => {
                self.next_tick = Some((now.micros() / TICK_US + 1) * TICK_US);
                false
            }
            Some(t) => now.micros() >= t,
        };
        if !(tick_due || period_end.is_some()) {
            return;
        }
        self.next_tick = Some((now.micros() / TICK_US + 1) * TICK_US);
        self.tx.send(ToCollector::Window {
            source: self.tx.source,
            window: self.window,
            end: now,
            period_end,
            period_start,
        });
        self.window += 1;
        match &mut self.mode {
            Mode::Inline(w) => {
                let r = w.tick(now, period_end);
                self.tx.report(r);
            }
            Mode::Threads { lanes, .. } => {
                for lane in lanes {
                    lane.control(Msg::Tick { now, period_end });
                }
            }
        }
    }

    /// End of input: every worker flushes its flows and sends its final
    /// report; worker threads are joined.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = self.last_ts;
        // The final window ends the last, partial period at the last packet.
        self.tx.send(ToCollector::Window {
            source: self.tx.source,
            window: self.window,
            end: now,
            period_end: Some(now),
            period_start: self.clock.current_start(),
        });
        match &mut self.mode {
            Mode::Inline(w) => {
                let r = w.finish(now);
                self.tx.report(r);
            }
            Mode::Threads { lanes, handles, .. } => {
                for lane in lanes.iter_mut() {
                    lane.control(Msg::Finish { now });
                }
                for h in handles.drain(..) {
                    if h.join().is_err() {
                        eprintln!("smtp-sensor: a worker thread panicked; its flows are lost");
                        self.counts.worker_panics += 1;
                    }
                }
            }
        }
    }

    /// Records lost to a full collector channel (live mode only).
    pub fn dropped_records(&self) -> u64 {
        self.tx.dropped_records.load(Ordering::Relaxed)
    }
}

impl<P> Drop for Dispatcher<P> {
    fn drop(&mut self) {
        // Unblock worker threads if `finish` was never called.
        if let Mode::Threads { lanes, handles, .. } = &mut self.mode {
            for lane in lanes.iter_mut() {
                lane.try_control(Msg::Finish { now: self.last_ts });
            }
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

/// Body of a worker thread: frames, ticks and the finish from the
/// dispatcher's ring, reports to the collector.
fn worker_thread<P: StreamParser<WorkerSink>>(
    mut w: Worker<P>,
    mut inbox: Vec<Inbox>,
    tx: ReportTx,
) {
    if let Some(cpu) = w.cpu {
        crate::affinity::pin_current_thread(cpu, &format!("worker {}", w.id));
    }
    transport::drain(&mut inbox, |e| match e {
        // The dispatcher decoded and counted every frame; it sends
        // segments only.
        Event::Segment(mut p, tcp) => {
            if let Some(seg) = tcp
                && verify_tcp_checksum(&mut p, seg)
            {
                w.count_anomaly(DecodeAnomaly::BadTcpChecksum);
            }
            w.packet(&p);
        }
        Event::Frame(..) => {}
        Event::BatchEnd => {
            if let Some(r) = w.partial() {
                tx.report(r);
            }
        }
        Event::Tick { now, period_end } => tx.report(w.tick(now, period_end)),
        Event::Finish { now } => tx.report(w.finish(now)),
        Event::Idle => {}
    });
}

/// The dispatcher's own final counts, in the collector's shape.
impl From<DispatchCounts> for FinalCounts {
    fn from(d: DispatchCounts) -> Self {
        FinalCounts {
            packets: d.packets,
            flows: Default::default(),
            anomalies: d.anomalies,
            worker_panics: d.worker_panics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ConnId, ConnInfo};
    use crate::smtp::record::{ConnRecord, MessageRecord};

    fn report(records: usize, closes: bool) -> Report {
        let id = ConnId {
            orig_h: std::net::Ipv4Addr::new(198, 18, 0, 1).into(),
            orig_p: 1,
            resp_h: std::net::Ipv4Addr::new(198, 18, 0, 2).into(),
            resp_p: 25,
        };
        let conn = ConnInfo::new(id, Ts(0));
        Report {
            source: 0,
            worker: 0,
            window: 0,
            closes,
            records: (0..records)
                .map(|_| ConnRecord {
                    conn,
                    record: MessageRecord::default(),
                })
                .collect(),
            notices: Vec::new(),
            weirds: Vec::new(),
            period: None,
            last: None,
        }
    }

    #[test]
    fn live_mode_drops_records_beyond_the_budget_and_counts_them() {
        let (tx, rx) = std::sync::mpsc::channel();
        let budget = RecordBudget::new(4);
        let t = ReportTx::budgeted(tx, budget.clone(), 3);
        t.report(report(3, false));
        // Only one more record fits: this report's five are dropped, the
        // report itself (its window close) still goes.
        t.report(report(5, true));
        assert_eq!(t.dropped_records.load(Ordering::Relaxed), 5);
        let got: Vec<(usize, usize, bool)> = rx
            .try_iter()
            .filter_map(|m| match m {
                ToCollector::Report(r) => Some((r.source, r.records.len(), r.closes)),
                ToCollector::Window { .. } => None,
            })
            .collect();
        assert_eq!(got, [(3, 3, false), (3, 0, true)]);
        // The collector wrote the first three: there is room again.
        budget.release(3);
        t.report(report(4, false));
        assert_eq!(t.dropped_records.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn offline_mode_never_drops() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let t = ReportTx::blocking(tx);
        let h = std::thread::spawn(move || {
            for _ in 0..10 {
                t.report(report(2, false));
            }
            t.dropped_records.load(Ordering::Relaxed)
        });
        let mut got = 0;
        for _ in 0..10 {
            if let Ok(ToCollector::Report(r)) = rx.recv() {
                got += r.records.len();
            }
        }
        assert_eq!(h.join().ok(), Some(0));
        assert_eq!(got, 20);
    }

    #[test]
    fn checksums_are_verified_for_smtp_segments_only() {
        use crate::config::Config;
        use crate::detect::Detection;
        use crate::flow::FlowConfig;
        use crate::pipeline::smtp_flow;
        let cfg = Config::default();
        let Ok(det) = Detection::from_config(&cfg) else {
            panic!("the default configuration builds");
        };
        let det = std::sync::Arc::new(det);
        let mut smtp = crate::decode::tests::tcp_frame(b"EHLO x\r\n");
        // A wrong payload byte: the TCP checksum no longer adds up.
        if let Some(b) = smtp.last_mut() {
            *b ^= 0x20;
        }
        // The same to port 80 (Ethernet 14 + IPv4 20 + source port 2).
        let mut web = smtp.clone();
        web[36..38].copy_from_slice(&80u16.to_be_bytes());
        // Inline, and with worker threads (which verify the TCP checksum
        // themselves and report the count with their final counters).
        for workers in [1, 2] {
            let ws = (0..workers)
                .map(|id| {
                    Worker::new(
                        id,
                        FlowConfig::from_config(&cfg),
                        det.clone(),
                        smtp_flow::factory(&cfg),
                    )
                })
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            let mut d = Dispatcher::new(
                ws,
                ReportTx::budgeted(tx, RecordBudget::new(100), 0),
                3_600_000_000,
                DecodeOptions::default(),
            );
            for f in [&smtp, &web, &smtp] {
                d.feed(Ts(1), Some(LinkType::Ethernet), f);
            }
            d.finish();
            let from_workers: u64 = rx
                .try_iter()
                .filter_map(|m| match m {
                    ToCollector::Report(r) => r.last,
                    ToCollector::Window { .. } => None,
                })
                .map(|last| last.anomalies.get("bad_TCP_checksum"))
                .sum();
            let counted = d.counts.anomalies.get("bad_TCP_checksum") + from_workers;
            assert_eq!(counted, 2, "{workers} worker(s)");
            assert_eq!(d.counts.packets.tcp, 3);
        }
    }
}
