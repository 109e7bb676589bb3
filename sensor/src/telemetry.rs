//! Run-time counters shared between the packet path and the control plane
//! (the Prometheus endpoint, the stats line).
//!
//! The packet path never takes a lock per packet: capture threads bump
//! relaxed atomics per batch, workers and the collector publish a snapshot
//! of their own (plain, thread-local) counters once per tick window under an
//! uncontended mutex. Readers see values at most one tick old.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::anomaly::AnomalyCounts;
use crate::capture::link_watch::LinkCounters;
use crate::capture::stats::QueueCounters;
use crate::capture::xdp::XdpCounters;
use crate::flow::FlowStats;
use crate::pipeline::worker::PacketStats;

/// Counters of the hand-off from a capture thread to the workers when
/// frames cross threads (sharded live capture).
#[derive(Debug, Default)]
pub struct HopCounters {
    /// Frames moved to a worker thread over a ring.
    pub frames: AtomicU64,
    /// Frames dropped because the worker's ring was full (the worker fell
    /// behind; capture never waits).
    pub ring_full_drops: AtomicU64,
    /// Frames the capture thread decoded to find their worker, because the
    /// XDP program's flow hash was not in front of them (a driver without
    /// metadata support): the slow path, zero in normal operation.
    pub unhashed: AtomicU64,
}

impl HopCounters {
    pub fn add_hops(&self, n: u64) {
        self.frames.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_drops(&self, n: u64) {
        self.ring_full_drops.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_unhashed(&self, n: u64) {
        self.unhashed.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one worker has done so far, published at each tick.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    pub packets: PacketStats,
    pub flows: FlowStats,
    /// Connections in the worker's flow table now.
    pub live_flows: u64,
    /// smtp.log records the worker produced.
    pub records: u64,
    /// Block-list and origination notices the worker raised.
    pub notices: u64,
    pub anomalies: AnomalyCounts,
}

/// One worker's published counters.
#[derive(Debug, Default)]
pub struct WorkerTelemetry {
    snapshot: Mutex<WorkerSnapshot>,
}

impl WorkerTelemetry {
    pub fn publish(&self, s: WorkerSnapshot) {
        *lock(&self.snapshot) = s;
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        lock(&self.snapshot).clone()
    }
}

/// The collector's counters.
#[derive(Debug, Default)]
pub struct CollectorTelemetry {
    /// Records written to smtp.log.
    pub records_written: AtomicU64,
    /// Notices written to notice.log.
    pub notices_written: AtomicU64,
    /// Notices suppressed as repeats within the suppression interval.
    pub notices_suppressed: AtomicU64,
    /// Records dropped because the collector's queue was full (live).
    pub records_dropped: AtomicU64,
    /// Inspection periods merged and evaluated.
    pub periods: AtomicU64,
    /// Total time spent merging and evaluating periods, in nanoseconds.
    pub period_merge_nanos: AtomicU64,
    /// Duration of the last merge, in nanoseconds.
    pub last_period_merge_nanos: AtomicU64,
    /// Times the log files were reopened (SIGHUP).
    pub log_reopens: AtomicU64,
    /// Successful configuration reloads (SIGHUP).
    pub config_reloads: AtomicU64,
    /// Reloads refused because the new configuration was invalid.
    pub config_reload_errors: AtomicU64,
    /// Records and notices dropped because a log file could not be
    /// written (directory gone, read-only, disk full).
    pub log_records_dropped: AtomicU64,
    /// Failed log writes and reopens.
    pub log_write_failures: AtomicU64,
    /// Partial last lines cut from a log when it was opened for append.
    pub log_partial_lines_cut: AtomicU64,
    /// Log files that cannot be written now (a gauge).
    pub logs_unwritable: AtomicU64,
    /// Detection's own limits that were hit (host table full, notice
    /// buffer released early, …), by name; published at each period.
    detect_anomalies: Mutex<AnomalyCounts>,
}

impl CollectorTelemetry {
    /// Publishes the log files' counters, and how many are unwritable.
    pub fn set_log_files(&self, c: &crate::output::LogFileCounts, unwritable: u64) {
        self.log_records_dropped.store(c.dropped, Ordering::Relaxed);
        self.log_write_failures.store(c.failures, Ordering::Relaxed);
        self.log_partial_lines_cut
            .store(c.partial_lines_cut, Ordering::Relaxed);
        self.logs_unwritable.store(unwritable, Ordering::Relaxed);
    }

    pub fn set_detect_anomalies(&self, a: &AnomalyCounts) {
        *lock(&self.detect_anomalies) = a.clone();
    }

    pub fn detect_anomalies(&self) -> AnomalyCounts {
        lock(&self.detect_anomalies).clone()
    }

    /// One period merged and evaluated in `took`.
    pub fn period_merged(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.periods.fetch_add(1, Ordering::Relaxed);
        self.period_merge_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_period_merge_nanos.store(nanos, Ordering::Relaxed);
    }
}

/// Every counter of one run. Built before the threads start, with one
/// entry per rx queue (live) and per worker.
#[derive(Debug)]
pub struct Telemetry {
    pub started: Instant,
    /// Live: the interface captured on.
    pub interface: Option<String>,
    /// Per rx queue: frames and bytes delivered, AF_XDP socket drops.
    pub queues: Vec<Arc<QueueCounters>>,
    /// Per rx queue: frames handed to worker threads.
    pub hops: Vec<HopCounters>,
    pub workers: Vec<WorkerTelemetry>,
    pub collector: CollectorTelemetry,
    /// Live: the interface's state (up, losses, re-attachments), kept by
    /// capture's link watch.
    pub link: Arc<LinkCounters>,
    /// The XDP program's counters (summed over CPUs), refreshed by the
    /// control loop.
    xdp: Mutex<Option<XdpCounters>>,
}

impl Telemetry {
    /// Offline: `workers` workers, no capture queues.
    pub fn offline(workers: usize) -> Arc<Telemetry> {
        Self::build(None, 0, workers)
    }

    /// Live on `interface` with `queues` rx queues and `workers` workers.
    pub fn live(interface: &str, queues: usize, workers: usize) -> Arc<Telemetry> {
        Self::build(Some(interface.to_owned()), queues, workers)
    }

    fn build(interface: Option<String>, queues: usize, workers: usize) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            started: Instant::now(),
            interface,
            queues: (0..queues).map(|_| Arc::default()).collect(),
            hops: (0..queues).map(|_| HopCounters::default()).collect(),
            workers: (0..workers).map(|_| WorkerTelemetry::default()).collect(),
            collector: CollectorTelemetry::default(),
            link: Arc::default(),
            xdp: Mutex::new(None),
        })
    }

    pub fn set_xdp(&self, c: XdpCounters) {
        *lock(&self.xdp) = Some(c);
    }

    /// The XDP counters, when a program runs.
    pub fn xdp(&self) -> Option<XdpCounters> {
        *lock(&self.xdp)
    }

    /// The workers' snapshots summed.
    pub fn workers_total(&self) -> WorkerSnapshot {
        let mut t = WorkerSnapshot::default();
        for w in &self.workers {
            let s = w.snapshot();
            t.packets.merge(&s.packets);
            t.flows.merge(&s.flows);
            t.live_flows += s.live_flows;
            t.records += s.records;
            t.notices += s.notices;
            t.anomalies.merge(&s.anomalies);
        }
        t
    }
}

/// A poisoned lock only means a thread panicked while publishing a
/// snapshot; the data is plain counters, still fine to read and replace.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_snapshots_sum() {
        let t = Telemetry::offline(2);
        let mut a = WorkerSnapshot {
            live_flows: 3,
            records: 5,
            ..Default::default()
        };
        a.packets.packets = 10;
        a.anomalies
            .add(crate::anomaly::CaptureAnomaly::TruncatedRecord);
        t.workers[0].publish(a.clone());
        t.workers[1].publish(a);
        let s = t.workers_total();
        assert_eq!(s.packets.packets, 20);
        assert_eq!(s.live_flows, 6);
        assert_eq!(s.records, 10);
        assert_eq!(s.anomalies.get("pcap_truncated_record"), 2);
    }

    #[test]
    fn period_merges_accumulate() {
        let c = CollectorTelemetry::default();
        c.period_merged(Duration::from_micros(3));
        c.period_merged(Duration::from_micros(5));
        assert_eq!(c.periods.load(Ordering::Relaxed), 2);
        assert_eq!(c.period_merge_nanos.load(Ordering::Relaxed), 8000);
        assert_eq!(c.last_period_merge_nanos.load(Ordering::Relaxed), 5000);
    }
}
