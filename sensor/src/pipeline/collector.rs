//! The collector thread: gathers what workers report per tick window, writes
//! smtp.log (and each message's files to files.log) in a deterministic order, merges the period counters, evaluates
//! the spam rules, and writes notice.log — all off the packet path.
//!
//! Every worker sees the same sequence of ticks (the dispatcher broadcasts
//! them in-band), so "the records of window k" is the same set for any
//! number of workers. Writing each complete window sorted by
//! `(ts, uid, trans_depth)` makes smtp.log byte-identical whatever the worker
//! count; notices are ordered and suppressed by `NoticeQueue` with the
//! window's end as watermark, which makes notice.log identical too.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::anomaly::AnomalyCounts;
use crate::detect::notice::WrittenBy;
use crate::detect::{Detection, Notice, NoticeQueue, PeriodCounters, spam};
use crate::flow::FlowStats;
use crate::net::{Ts, Uid};
pub use crate::output::OpenMode;
use crate::output::extract::ExtractCounts;
use crate::output::log_file::AnyLogFile;
use crate::output::weird_log::{Weird, WeirdLimiter};
use crate::output::{LineOptions, LogFile, LogFileCounts, LogFileError, LogFormat, OnError};
use crate::smtp::files::FileInfo;
use crate::smtp::record::ConnRecord;

use super::dispatch::RecordBudget;
use super::record_vecs::RecordVecs;
use super::reload::DetectionWatch;
use super::worker::PacketStats;
use crate::telemetry::Telemetry;

/// A worker's counters at the end of the run.
#[derive(Debug, Default)]
pub struct FinalCounts {
    pub packets: PacketStats,
    pub flows: FlowStats,
    pub anomalies: AnomalyCounts,
    /// Worker threads that panicked (dispatcher counts only).
    pub worker_panics: u64,
}

/// What a worker sends the collector.
#[derive(Debug)]
pub struct Report {
    /// The dispatcher the worker belongs to (set by its `ReportTx`).
    pub source: usize,
    pub worker: usize,
    /// The tick window the contents belong to.
    pub window: u64,
    /// The worker has finished this window (else: a partial report).
    pub closes: bool,
    pub records: Vec<ConnRecord>,
    pub notices: Vec<Notice>,
    pub weirds: Vec<Weird>,
    /// The period's counters, when the window ends a period.
    pub period: Option<PeriodCounters>,
    /// Present in the worker's final report only.
    pub last: Option<FinalCounts>,
}

/// A message on the collector's channel.
#[derive(Debug)]
pub enum ToCollector {
    Report(Box<Report>),
    /// The end time of window `window` (the tick's time), sent by the
    /// dispatcher so the collector can release notices up to it.
    Window {
        source: usize,
        window: u64,
        end: crate::net::Ts,
        period_end: Option<crate::net::Ts>,
        /// Start of the period `period_end` ends (the fleet's period key).
        period_start: Option<crate::net::Ts>,
    },
}

#[derive(Default)]
struct Window {
    /// The records, as the reports brought them: kept in their vectors
    /// (a record is several hundred bytes; appending each report to one
    /// vector copied every record once more and regrew a vector of
    /// megabytes every window).
    records: Vec<Vec<ConnRecord>>,
    notices: Vec<Notice>,
    weirds: Vec<Weird>,
    periods: Vec<PeriodCounters>,
    closed: usize,
    end: Option<(crate::net::Ts, Option<crate::net::Ts>)>,
    period_start: Option<Ts>,
}

/// Why the logs could not be written (the shared log file's error).
pub type OutputError = LogFileError;

/// How long the collector waits for a message before it services
/// control-plane requests (reopen, reload, flush) anyway.
const SERVICE_INTERVAL: Duration = Duration::from_millis(200);

/// The collector's totals.
#[derive(Debug, Default)]
pub struct CollectorSummary {
    pub records: u64,
    pub notices: u64,
    pub notices_suppressed: u64,
    /// weird.log rows written.
    pub weirds: u64,
    pub finals: Vec<FinalCounts>,
    /// Detection's own limits that were hit (host table full, notice
    /// buffer released early, …), by name.
    pub detect_anomalies: AnomalyCounts,
    /// The log files' drops and repairs, summed.
    pub log_files: LogFileCounts,
}

/// The log directory that means "every log's JSON lines on standard
/// output" (`-l -`).
pub const STDOUT_DIR: &str = "-";

/// Whether `dir` is [`STDOUT_DIR`].
pub fn is_stdout(dir: &Path) -> bool {
    dir.as_os_str() == STDOUT_DIR
}

/// Every log file of a run. A new log is one more field here and one more
/// entry in [`Logs::all`]: opening, whole-line writes, repair, reopen and
/// the unwritable-directory handling are the shared [`LogFile`]'s.
struct Logs {
    smtp: LogFile<ConnRecord>,
    files: LogFile<FileInfo>,
    notice: LogFile<Notice>,
    weird: LogFile<Weird>,
}

impl Logs {
    /// Opens the four logs in `dir`, or on standard output when `dir` is
    /// [`STDOUT_DIR`] (`-l -`).
    fn create(
        dir: &Path,
        format: LogFormat,
        mode: OpenMode,
        settings: &LogSettings,
    ) -> Result<Logs, OutputError> {
        let opts = settings.line_options(dir);
        fn one<R: crate::output::LogRecord>(
            dir: &Path,
            name: &str,
            format: LogFormat,
            mode: OpenMode,
            opts: LineOptions,
        ) -> Result<LogFile<R>, OutputError> {
            if is_stdout(dir) {
                LogFile::stdout(name, format, OnError::Fail, opts)
            } else {
                LogFile::open_with(dir, name, format, mode, OnError::Fail, opts)
            }
        }
        Ok(Logs {
            smtp: one(dir, "smtp.log", format, mode, opts)?,
            files: one(
                dir,
                "files.log",
                format,
                mode,
                LineOptions {
                    extra_columns: settings.extract_columns,
                    ..opts
                },
            )?,
            notice: one(dir, "notice.log", format, mode, opts)?,
            weird: one(dir, "weird.log", format, mode, opts)?,
        })
    }

    fn all(&mut self) -> [&mut dyn AnyLogFile; 4] {
        [
            &mut self.smtp,
            &mut self.files,
            &mut self.notice,
            &mut self.weird,
        ]
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.all().into_iter().try_for_each(|l| l.flush())
    }

    /// Closes every file (Zeek `#close` trailer, flush).
    fn close(&mut self) -> Result<(), OutputError> {
        self.all().into_iter().try_for_each(|l| l.close())
    }

    /// Closes and reopens every file (SIGHUP).
    fn reopen(&mut self) -> Result<(), OutputError> {
        self.all().into_iter().try_for_each(|l| l.reopen())
    }

    /// Tries the unwritable files again (at most once a second each).
    fn retry(&mut self) {
        self.all().into_iter().for_each(|l| l.retry());
    }

    fn set_on_error(&mut self, e: OnError) {
        self.all().into_iter().for_each(|l| l.set_on_error(e));
    }

    /// Summed over the files; and how many are unwritable now.
    fn counts(&mut self) -> (LogFileCounts, u64) {
        let mut sum = LogFileCounts::default();
        let mut unwritable = 0;
        for l in self.all() {
            sum.add(&l.counts());
            unwritable += u64::from(!l.writable());
        }
        (sum, unwritable)
    }
}

/// Requests to the collector from the control plane.
#[derive(Debug, Default)]
pub struct CollectorControl {
    /// Close and reopen the log files (SIGHUP after logrotate).
    pub reopen: AtomicBool,
}

/// Opens the log files (before any thread starts, so a bad directory is a
/// startup error).
pub struct Collector {
    logs: Logs,
    detection: Arc<Detection>,
    /// Workers reporting for each source (a dispatcher with its own ticks):
    /// offline one source with every worker; live one per rx queue.
    sources: Vec<usize>,
    reload: Option<DetectionWatch>,
    telemetry: Option<Arc<Telemetry>>,
    control: Option<Arc<CollectorControl>>,
    /// Live: flush the files at least this often, so `tail -f` and
    /// shippers see records within about a second.
    flush_every: Option<Duration>,
    /// Live: records admitted and not written yet (released as written).
    budget: Option<Arc<RecordBudget>>,
    /// Where the written windows' vectors go back to the workers.
    record_vecs: Option<Arc<RecordVecs>>,
    /// The sensor's own fields of the log lines, weird.log's budget.
    settings: LogSettings,
    /// File extraction's counters, published with the metrics.
    extract: Option<Arc<ExtractCounts>>,
    /// Fleet mode: where each period's counters go instead of the local
    /// evaluation.
    fleet: Option<crate::fleet::Fleet>,
}

/// One source's counters of one period: its end, its start, the counters.
type PeriodPart = (Ts, Option<Ts>, PeriodCounters);

/// What the configuration says about the log lines: the sensor's name
/// (notice.log's `peer_descr`, weird.log's `peer`), the seed of every
/// `community_id`, the `_path`/`_write_ts` extension fields, and weird.log's
/// rows per second.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub sensor_name: Arc<str>,
    pub community_id_seed: u16,
    pub path_fields: bool,
    pub max_weirds_per_second: u64,
    /// File extraction is on: files.log gets its extraction columns.
    pub extract_columns: bool,
}

impl LogSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        LogSettings {
            sensor_name: cfg.sensor_name.as_str().into(),
            community_id_seed: cfg.community_id_seed,
            path_fields: cfg.log_path_fields,
            max_weirds_per_second: cfg.max_weirds_per_second as u64,
            extract_columns: cfg.extract_files != crate::output::extract::ExtractMode::None,
        }
    }

    /// What every line gets; on standard output `_path` always, so a
    /// reader can tell the interleaved logs apart.
    fn line_options(&self, dir: &Path) -> LineOptions {
        LineOptions {
            community_id_seed: self.community_id_seed,
            path_fields: self.path_fields || is_stdout(dir),
            extra_columns: false,
        }
    }
}

/// The collector's running state between windows.
struct State {
    queue: NoticeQueue,
    out: Vec<Notice>,
    /// Per source: period counters (with the period's end and start)
    /// waiting for the other sources'.
    periods: Vec<VecDeque<PeriodPart>>,
    /// Per source: end of its last written window.
    latest_end: Vec<Option<Ts>>,
    sum: CollectorSummary,
    last_flush: Instant,
    weird_budget: WeirdLimiter,
}

impl Collector {
    /// Offline: the logs start empty.
    pub fn create(
        dir: &Path,
        format: LogFormat,
        settings: LogSettings,
        detection: Arc<Detection>,
        sources: Vec<usize>,
    ) -> Result<Self, OutputError> {
        Self::open(
            dir,
            format,
            OpenMode::Truncate,
            settings,
            detection,
            sources,
        )
    }

    /// Opens the logs in `dir` (`-`: standard output) with the lines'
    /// `settings`.
    pub fn open(
        dir: &Path,
        format: LogFormat,
        mode: OpenMode,
        settings: LogSettings,
        detection: Arc<Detection>,
        sources: Vec<usize>,
    ) -> Result<Self, OutputError> {
        Ok(Collector {
            logs: Logs::create(dir, format, mode, &settings)?,
            detection,
            sources,
            reload: None,
            telemetry: None,
            control: None,
            flush_every: None,
            budget: None,
            record_vecs: None,
            settings,
            extract: None,
            fleet: None,
        })
    }

    /// Fleet mode: periods are evaluated network-wide through `fleet`.
    pub fn with_fleet(mut self, fleet: Option<crate::fleet::Fleet>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Live operation: reload and reopen requests, periodic flushes,
    /// published counters.
    pub fn live(
        mut self,
        reload: DetectionWatch,
        control: Arc<CollectorControl>,
        budget: Arc<RecordBudget>,
        flush_every: Duration,
    ) -> Self {
        self.logs.set_on_error(OnError::Drop);
        self.reload = Some(reload);
        self.control = Some(control);
        self.budget = Some(budget);
        self.flush_every = Some(flush_every);
        self
    }

    /// Publishes file extraction's counters with the metrics.
    pub fn with_extract_counts(mut self, counts: Arc<ExtractCounts>) -> Self {
        self.extract = Some(counts);
        self
    }

    pub fn with_telemetry(mut self, t: Arc<Telemetry>) -> Self {
        self.telemetry = Some(t);
        self
    }

    /// Hands each written window's record vectors back through `pool`.
    pub fn with_record_vecs(mut self, pool: Arc<RecordVecs>) -> Self {
        self.record_vecs = Some(pool);
        self
    }

    /// Control-plane requests, checked between messages.
    fn service(&mut self, st: &mut State) -> Result<(), OutputError> {
        if let Some(f) = &self.fleet {
            f.take_notices().into_iter().for_each(|n| st.queue.push(n));
        }
        if let Some(d) = self.reload.as_mut().and_then(DetectionWatch::changed) {
            self.detection = d;
        }
        if self
            .control
            .as_ref()
            .is_some_and(|c| c.reopen.swap(false, Ordering::AcqRel))
        {
            self.logs.reopen()?;
            if let Some(t) = &self.telemetry {
                t.collector.log_reopens.fetch_add(1, Ordering::Relaxed);
            }
            log::info!(
                "reopened {}, {}, {} and {}",
                self.logs.smtp.path().display(),
                self.logs.files.path().display(),
                self.logs.notice.path().display(),
                self.logs.weird.path().display()
            );
        }
        self.logs.retry();
        if let Some(every) = self.flush_every
            && st.last_flush.elapsed() >= every
        {
            st.last_flush = Instant::now();
            self.logs.flush()?;
        }
        if let Some(t) = &self.telemetry {
            let c = &t.collector;
            let (records, notices) = self.written(&st.sum);
            c.records_written.store(records, Ordering::Relaxed);
            c.notices_written.store(notices, Ordering::Relaxed);
            c.notices_suppressed
                .store(st.queue.suppressed, Ordering::Relaxed);
            let (files, unwritable) = self.logs.counts();
            c.set_log_files(&files, unwritable);
            if let Some(x) = &self.extract {
                let mut named = st.sum.detect_anomalies.clone();
                named.merge(&x.named());
                c.set_detect_anomalies(&named);
            }
        }
        Ok(())
    }

    /// Records and notices that reached their files: those handed to the
    /// logs less those a log could not write (live, unwritable).
    fn written(&self, sum: &CollectorSummary) -> (u64, u64) {
        (
            sum.records.saturating_sub(self.logs.smtp.counts().dropped),
            sum.notices
                .saturating_sub(self.logs.notice.counts().dropped),
        )
    }

    /// Runs until every worker of every source has sent its final report.
    pub fn run(mut self, rx: Receiver<ToCollector>) -> Result<CollectorSummary, OutputError> {
        let n = self.sources.len();
        let total: usize = self.sources.iter().sum();
        let mut windows: BTreeMap<(usize, u64), Window> = BTreeMap::new();
        let mut next_window = vec![0u64; n];
        let mut finished = vec![0usize; n];
        let mut st = State {
            queue: NoticeQueue::new(),
            out: Vec::new(),
            periods: vec![VecDeque::new(); n],
            latest_end: vec![None; n],
            sum: CollectorSummary::default(),
            last_flush: Instant::now(),
            weird_budget: WeirdLimiter::new(self.settings.max_weirds_per_second),
        };
        while finished.iter().sum::<usize>() < total {
            self.service(&mut st)?;
            let msg = match rx.recv_timeout(SERVICE_INTERVAL) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let source = match msg {
                ToCollector::Window {
                    source,
                    window,
                    end,
                    period_end,
                    period_start,
                } => {
                    let w = windows.entry((source, window)).or_default();
                    w.end = Some((end, period_end));
                    w.period_start = period_start;
                    source
                }
                ToCollector::Report(r) => {
                    let r = *r;
                    let w = windows.entry((r.source, r.window)).or_default();
                    if !r.records.is_empty() {
                        w.records.push(r.records);
                    }
                    w.notices.extend(r.notices);
                    w.weirds.extend(r.weirds);
                    w.periods.extend(r.period);
                    if r.closes {
                        w.closed += 1;
                    }
                    if let Some(f) = r.last {
                        if let Some(c) = finished.get_mut(r.source) {
                            *c += 1;
                        }
                        st.sum.finals.push(f);
                    }
                    r.source
                }
            };
            // Write every window of this source that all its workers have
            // closed, in order.
            let (Some(&workers), Some(next)) =
                (self.sources.get(source), next_window.get_mut(source))
            else {
                continue;
            };
            while let Some(w) = windows.get(&(source, *next)) {
                if w.closed < workers || w.end.is_none() {
                    break;
                }
                let Some(w) = windows.remove(&(source, *next)) else {
                    break;
                };
                self.flush_window(source, w, &mut st)?;
                *next += 1;
            }
        }
        // Anything left (a worker died early): write it as it is.
        let rest: Vec<((usize, u64), Window)> = std::mem::take(&mut windows).into_iter().collect();
        for ((source, _), w) in rest {
            self.flush_window(source, w, &mut st)?;
        }
        // Periods some source never completed: merge what there is.
        let leftover: Vec<PeriodPart> = st.periods.iter_mut().flat_map(std::mem::take).collect();
        if let Some(end) = leftover.iter().map(|(e, _, _)| *e).max() {
            let start = leftover.iter().filter_map(|(_, s, _)| *s).min();
            self.evaluate(leftover.into_iter().map(|(_, _, p)| p), end, start, &mut st);
        }
        if let Some(fleet) = self.fleet.take() {
            let (notices, counts) = fleet.finish();
            notices.into_iter().for_each(|n| st.queue.push(n));
            for (name, n) in counts {
                st.sum.detect_anomalies.add_named(name, n);
            }
        }
        st.queue.finish(&mut st.out);
        self.write_notices(&mut st.out, &mut st.sum)?;
        st.sum.notices_suppressed = st.queue.suppressed;
        st.sum
            .detect_anomalies
            .add_named("notice_buffer_released_early", st.queue.early_releases);
        st.sum.detect_anomalies.add_named(
            "notice_suppression_table_full",
            st.queue.suppression_table_full(),
        );
        st.sum
            .detect_anomalies
            .add_named("weird_log_rate_limited", st.weird_budget.limited);
        if let Some(t) = &self.telemetry {
            t.collector.set_detect_anomalies(&st.sum.detect_anomalies);
        }
        self.service(&mut st)?;
        self.logs.close()?;
        let (files, unwritable) = self.logs.counts();
        if let Some(t) = &self.telemetry {
            t.collector.set_log_files(&files, unwritable);
        }
        (st.sum.records, st.sum.notices) = self.written(&st.sum);
        st.sum.log_files = files;
        Ok(st.sum)
    }

    /// Merges one period's counters, runs the spam rules, queues the
    /// notices; timed for the metrics. In fleet mode the merge goes to the
    /// fleet thread instead, which evaluates the network-wide sums when the
    /// period closes (or this sensor's own, when it cannot publish).
    fn evaluate(
        &self,
        parts: impl IntoIterator<Item = PeriodCounters>,
        end: Ts,
        start: Option<Ts>,
        st: &mut State,
    ) {
        let started = Instant::now();
        let merged = spam::merge(parts);
        for (name, n) in merged.overflows() {
            st.sum.detect_anomalies.add_named(name, n);
        }
        let local = match (&self.fleet, start) {
            (Some(fleet), Some(start)) => fleet.submit(crate::fleet::FinalSnapshot {
                start,
                end,
                counters: merged,
                detection: self.detection.clone(),
            }),
            _ => Some(merged),
        };
        if let Some(merged) = local {
            for n in self.detection.evaluate_period(&merged, end) {
                st.queue.push(n);
            }
        }
        if let Some(t) = &self.telemetry {
            t.collector.period_merged(started.elapsed());
            t.collector.set_detect_anomalies(&st.sum.detect_anomalies);
        }
    }

    fn flush_window(
        &mut self,
        source: usize,
        w: Window,
        st: &mut State,
    ) -> Result<(), OutputError> {
        // Sorted through indices: a record is several hundred bytes, and a
        // sort moves its elements many times.
        let record = |&(batch, i): &(u32, u32)| {
            w.records
                .get(batch as usize)
                .and_then(|b| b.get(i as usize))
        };
        let mut order: Vec<(u32, u32)> = w
            .records
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.len() as u32).map(move |i| (b as u32, i)))
            .collect();
        order.sort_by_key(|k| record(k).map(write_order));
        for r in order.iter().filter_map(record) {
            self.logs.smtp.write(r)?;
            for f in &r.record.files {
                self.logs.files.write(f)?;
            }
        }
        let written = order.len() as u64;
        st.sum.records += written;
        if let Some(b) = &self.budget {
            b.release(written);
        }
        if let Some(pool) = &self.record_vecs {
            for v in w.records {
                pool.put(v);
            }
        }
        self.write_weirds(w.weirds, st)?;
        for n in w.notices {
            st.queue.push(n);
        }
        if !w.periods.is_empty() {
            // A window that ends a period: this source's counters for it
            // (already merged over its workers) wait for the other sources'.
            let end = w.end.and_then(|(_, p)| p).or_else(|| w.end.map(|(e, _)| e));
            if let (Some(end), Some(q)) = (end, st.periods.get_mut(source)) {
                q.push_back((end, w.period_start, spam::merge(w.periods)));
            }
            while st.periods.iter().all(|q| !q.is_empty()) {
                let parts: Vec<PeriodPart> = st
                    .periods
                    .iter_mut()
                    .filter_map(VecDeque::pop_front)
                    .collect();
                let Some(end) = parts.iter().map(|(e, _, _)| *e).max() else {
                    break;
                };
                let start = parts.iter().filter_map(|(_, s, _)| *s).min();
                self.evaluate(parts.into_iter().map(|(_, _, p)| p), end, start, st);
            }
        }
        if let Some((end, _)) = w.end {
            if let Some(l) = st.latest_end.get_mut(source) {
                *l = Some(end);
            }
            // Notices are released up to the time every source has passed.
            let watermark = st
                .latest_end
                .iter()
                .try_fold(Ts(u64::MAX), |m, e| e.map(|e| m.min(e)));
            if let Some(wm) = watermark {
                st.queue.release(wm, &mut st.out);
                self.write_notices(&mut st.out, &mut st.sum)?;
            }
        }
        Ok(())
    }

    /// Writes a window's weird.log rows in time order, within the budget
    /// per second.
    fn write_weirds(&mut self, mut weirds: Vec<Weird>, st: &mut State) -> Result<(), OutputError> {
        weirds.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for mut w in weirds {
            if !st.weird_budget.admit(w.ts) {
                continue;
            }
            w.peer = Some(self.settings.sensor_name.clone());
            self.logs.weird.write(&w)?;
            st.sum.weirds += 1;
        }
        Ok(())
    }

    fn write_notices(
        &mut self,
        out: &mut Vec<Notice>,
        sum: &mut CollectorSummary,
    ) -> Result<(), OutputError> {
        for mut n in out.drain(..) {
            let settings = &self.settings;
            n.written_by = Some(WrittenBy {
                peer_descr: settings.sensor_name.clone(),
            });
            self.logs.notice.write(&n)?;
            sum.notices += 1;
            if let Some(t) = &self.telemetry {
                t.collector.notice_written(n.note);
            }
        }
        Ok(())
    }
}

/// The order records are written in within a window: by time, then uid
/// and transaction depth (so that any number of workers writes the same
/// file).
fn write_order(r: &ConnRecord) -> (Ts, Uid, u32, Ts) {
    (
        r.record.ts,
        // Compared as bytes, the order of the text (ASCII): no UTF-8
        // check per comparison.
        r.conn.uid,
        r.record.trans_depth,
        r.conn.start,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::detect::Detector;
    use crate::net::{ConnId, ConnInfo};
    use crate::smtp::sink::Reply;

    fn conn(port: u16) -> ConnInfo {
        let id = ConnId {
            orig_h: std::net::Ipv4Addr::new(198, 18, 0, 9).into(),
            orig_p: port,
            resp_h: std::net::Ipv4Addr::new(198, 19, 0, 25).into(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(port.into()))
    }

    /// One rejected connection of host 198.18.0.9 counted by `d`.
    fn reject(d: &mut Detector, port: u16) {
        let reply = Reply {
            ts: Ts(10),
            code: 550,
            text: "no",
            rcpts: crate::smtp::record::List::EMPTY,
        };
        d.on_reply(&conn(port), &reply);
    }

    fn report(
        source: usize,
        window: u64,
        period: Option<PeriodCounters>,
        last: bool,
    ) -> ToCollector {
        ToCollector::Report(Box::new(Report {
            source,
            worker: source,
            window,
            closes: true,
            records: Vec::new(),
            notices: Vec::new(),
            weirds: Vec::new(),
            period,
            last: last.then(FinalCounts::default),
        }))
    }

    /// Live capture: two sources (rx queues) with their own windows; a
    /// period's spam rule sees the sum of both sources' counters.
    #[test]
    fn periods_of_independent_sources_are_merged() {
        let cfg = Config::load(None, &["spam_threshold=2".to_owned()]).unwrap();
        let det = Arc::new(Detection::from_config(&cfg).unwrap());
        let dir = std::env::temp_dir().join(format!("collector-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = LogSettings::from_config(&cfg);
        let c =
            Collector::create(&dir, LogFormat::Json, settings, det.clone(), vec![1, 1]).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let mut a = Detector::new(det.clone());
        let mut b = Detector::new(det.clone());
        reject(&mut a, 1000);
        reject(&mut b, 1001);
        // Source 0 ends its period first; one connection alone is below the
        // threshold, so only the merge with source 1 raises the notice.
        let msgs = vec![
            ToCollector::Window {
                source: 0,
                window: 0,
                end: Ts(100),
                period_end: Some(Ts(100)),
                period_start: Some(Ts(0)),
            },
            report(0, 0, Some(a.take_period(Ts(100))), false),
            ToCollector::Window {
                source: 1,
                window: 0,
                end: Ts(101),
                period_end: Some(Ts(101)),
                period_start: Some(Ts(1)),
            },
            report(1, 0, Some(b.take_period(Ts(101))), false),
            ToCollector::Window {
                source: 0,
                window: 1,
                end: Ts(150),
                period_end: Some(Ts(150)),
                period_start: Some(Ts(100)),
            },
            report(0, 1, Some(a.take_period(Ts(150))), true),
            ToCollector::Window {
                source: 1,
                window: 1,
                end: Ts(150),
                period_end: Some(Ts(150)),
                period_start: Some(Ts(100)),
            },
            report(1, 1, Some(b.take_period(Ts(150))), true),
        ];
        for m in msgs {
            tx.send(m).unwrap();
        }
        let sum = c.run(rx).unwrap();
        assert_eq!(sum.finals.len(), 2);
        assert_eq!(sum.notices, 1);
        let notice = std::fs::read_to_string(dir.join("notice.log")).unwrap();
        assert!(
            notice.contains("198.18.0.9 - sent: 2 rejected: 100 percent"),
            "{notice}"
        );
        assert!(
            notice.contains("\"ts\":0.000101"),
            "raised at the later source's period end: {notice}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
