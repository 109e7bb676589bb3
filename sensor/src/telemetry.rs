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
use crate::detect::notice::Note;
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

/// Upper bounds (seconds) of the period-merge histogram's buckets: a merge
/// of a few hosts takes microseconds, of a full host table (a million
/// hosts) around a second; beyond the last, only `+Inf` counts it.
pub const PERIOD_MERGE_BOUNDS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The collector's counters.
#[derive(Debug)]
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
    /// Whether the last reload (SIGHUP) was applied: 1 before any.
    last_reload_ok: AtomicU64,
    /// When the configuration in force was loaded (start or last applied
    /// reload), in milliseconds since the Unix epoch.
    last_reload_success_ms: AtomicU64,
    /// Notices written, by [`Note::index`].
    notices_by_note: [AtomicU64; Note::ALL.len()],
    /// Period merges by duration: `PERIOD_MERGE_BUCKETS[i]` counts merges
    /// that took at most `PERIOD_MERGE_BOUNDS[i]` seconds and more than the
    /// bound before (not cumulative; the exposition sums them).
    period_merge_buckets: [AtomicU64; PERIOD_MERGE_BOUNDS.len()],
    /// Detection's own limits that were hit (host table full, notice
    /// buffer released early, …), by name; published at each period.
    detect_anomalies: Mutex<AnomalyCounts>,
}

impl Default for CollectorTelemetry {
    fn default() -> Self {
        CollectorTelemetry {
            records_written: AtomicU64::new(0),
            notices_written: AtomicU64::new(0),
            notices_suppressed: AtomicU64::new(0),
            records_dropped: AtomicU64::new(0),
            periods: AtomicU64::new(0),
            period_merge_nanos: AtomicU64::new(0),
            last_period_merge_nanos: AtomicU64::new(0),
            log_reopens: AtomicU64::new(0),
            config_reloads: AtomicU64::new(0),
            config_reload_errors: AtomicU64::new(0),
            log_records_dropped: AtomicU64::new(0),
            log_write_failures: AtomicU64::new(0),
            log_partial_lines_cut: AtomicU64::new(0),
            logs_unwritable: AtomicU64::new(0),
            last_reload_ok: AtomicU64::new(1),
            last_reload_success_ms: AtomicU64::new(unix_ms()),
            notices_by_note: Default::default(),
            period_merge_buckets: Default::default(),
            detect_anomalies: Mutex::default(),
        }
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    /// A reload (SIGHUP) applied the new configuration.
    pub fn reload_succeeded(&self) {
        self.config_reloads.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(1, Ordering::Relaxed);
        self.last_reload_success_ms
            .store(unix_ms(), Ordering::Relaxed);
    }

    /// A reload was refused; the running configuration stays.
    pub fn reload_failed(&self) {
        self.config_reload_errors.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(0, Ordering::Relaxed);
    }

    /// Whether the last reload was applied (true before any).
    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok.load(Ordering::Relaxed) != 0
    }

    /// When the configuration in force was loaded, in seconds since the
    /// Unix epoch.
    pub fn last_reload_success_secs(&self) -> f64 {
        self.last_reload_success_ms.load(Ordering::Relaxed) as f64 / 1e3
    }

    /// One notice written to notice.log.
    pub fn notice_written(&self, note: Note) {
        if let Some(c) = self.notices_by_note.get(note.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notices written so far, per note.
    pub fn notices_by_note(&self) -> impl Iterator<Item = (Note, u64)> + '_ {
        Note::ALL
            .iter()
            .zip(&self.notices_by_note)
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
    }

    /// The period-merge histogram's buckets `(bound, merges)`, each
    /// counting the merges above the bound before it (not cumulative: the
    /// encoder sums them); `+Inf` last, for the merges beyond every bound.
    pub fn period_merge_histogram(&self) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = PERIOD_MERGE_BOUNDS
            .iter()
            .zip(&self.period_merge_buckets)
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        let bounded: u64 = out.iter().map(|(_, n)| n).sum();
        // `periods` is read after the buckets: a merge counted between the
        // two reads lands in +Inf for this scrape, never below zero.
        let all = self.periods.load(Ordering::Relaxed);
        out.push((f64::INFINITY, all.saturating_sub(bounded)));
        out
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
        let secs = took.as_secs_f64();
        if let Some(i) = PERIOD_MERGE_BOUNDS.iter().position(|b| secs <= *b)
            && let Some(c) = self.period_merge_buckets.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
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

    #[test]
    fn period_merges_fall_in_their_buckets() {
        let c = CollectorTelemetry::default();
        c.period_merged(Duration::from_micros(50)); // <= 0.0001
        c.period_merged(Duration::from_millis(3)); // <= 0.005
        c.period_merged(Duration::from_secs(20)); // beyond the last bound
        let h = c.period_merge_histogram();
        assert_eq!(h.len(), PERIOD_MERGE_BOUNDS.len() + 1);
        assert_eq!(h[0], (0.0001, 1));
        assert_eq!(h[2], (0.001, 0));
        assert_eq!(h[3], (0.005, 1));
        assert_eq!(h[PERIOD_MERGE_BOUNDS.len() - 1], (10.0, 0));
        assert_eq!(h.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(h.iter().map(|(_, n)| n).sum::<u64>(), 3);
    }

    #[test]
    fn reload_status_and_notes() {
        let c = CollectorTelemetry::default();
        assert!(c.last_reload_ok());
        let t0 = c.last_reload_success_secs();
        assert!(t0 > 1.7e9, "{t0}");
        c.reload_failed();
        assert!(!c.last_reload_ok());
        assert_eq!(c.config_reload_errors.load(Ordering::Relaxed), 1);
        assert_eq!(c.last_reload_success_secs(), t0);
        c.reload_succeeded();
        assert!(c.last_reload_ok());
        assert!(c.last_reload_success_secs() >= t0);
        c.notice_written(Note::PossibleSpam);
        c.notice_written(Note::PossibleSpam);
        c.notice_written(Note::BlBlockedHost);
        let by: Vec<(Note, u64)> = c.notices_by_note().filter(|(_, n)| *n > 0).collect();
        assert_eq!(by, [(Note::PossibleSpam, 2), (Note::BlBlockedHost, 1)]);
    }
}
