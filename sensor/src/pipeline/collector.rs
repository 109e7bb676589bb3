//! The collector thread: gathers what workers report per tick window, writes
//! smtp.log in a deterministic order, merges the period counters, evaluates
//! the spam rules, and writes notice.log — all off the packet path.
//!
//! Every worker sees the same sequence of ticks (the dispatcher broadcasts
//! them in-band), so "the records of window k" is the same set for any
//! number of workers. Writing each complete window sorted by
//! `(ts, uid, trans_depth)` makes smtp.log byte-identical whatever the worker
//! count; notices are ordered and suppressed by `NoticeQueue` with the
//! window's end as watermark, which makes notice.log identical too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::anomaly::AnomalyCounts;
use crate::detect::{Detection, Notice, NoticeQueue, PeriodCounters, spam};
use crate::flow::FlowStats;
use crate::output::{LogFormat, LogWriter};
use crate::smtp::record::ConnRecord;

use super::worker::PacketStats;

/// A worker's counters at the end of the run.
#[derive(Debug, Default)]
pub struct FinalCounts {
    pub packets: PacketStats,
    pub flows: FlowStats,
    pub anomalies: AnomalyCounts,
}

/// What a worker sends the collector.
#[derive(Debug)]
pub struct Report {
    pub worker: usize,
    /// The tick window the contents belong to.
    pub window: u64,
    /// The worker has finished this window (else: a partial report).
    pub closes: bool,
    pub records: Vec<ConnRecord>,
    pub notices: Vec<Notice>,
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
        window: u64,
        end: crate::net::Ts,
        period_end: Option<crate::net::Ts>,
    },
}

#[derive(Default)]
struct Window {
    records: Vec<ConnRecord>,
    notices: Vec<Notice>,
    periods: Vec<PeriodCounters>,
    closed: usize,
    end: Option<(crate::net::Ts, Option<crate::net::Ts>)>,
}

/// Why the logs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "cannot create log file {path}: {source}; check that the log directory exists and is writable"
    )]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write log file {path}: {source}; check free disk space")]
    Write { path: PathBuf, source: io::Error },
}

/// The collector's totals.
#[derive(Debug, Default)]
pub struct CollectorSummary {
    pub records: u64,
    pub notices: u64,
    pub notices_suppressed: u64,
    pub finals: Vec<FinalCounts>,
}

struct Logs {
    smtp: LogWriter<ConnRecord, BufWriter<File>>,
    notice: LogWriter<Notice, BufWriter<File>>,
    smtp_path: PathBuf,
    notice_path: PathBuf,
}

impl Logs {
    fn create(dir: &Path, format: LogFormat) -> Result<Logs, OutputError> {
        let open = |name: &str| -> Result<(BufWriter<File>, PathBuf), OutputError> {
            let path = dir.join(name);
            let f = File::create(&path).map_err(|source| OutputError::Create {
                path: path.clone(),
                source,
            })?;
            Ok((BufWriter::with_capacity(1 << 16, f), path))
        };
        let (s, smtp_path) = open("smtp.log")?;
        let (n, notice_path) = open("notice.log")?;
        let smtp = LogWriter::new(s, format).map_err(|source| OutputError::Write {
            path: smtp_path.clone(),
            source,
        })?;
        let notice = LogWriter::new(n, format).map_err(|source| OutputError::Write {
            path: notice_path.clone(),
            source,
        })?;
        Ok(Logs {
            smtp,
            notice,
            smtp_path,
            notice_path,
        })
    }
}

/// Opens the log files (before any thread starts, so a bad directory is a
/// startup error).
pub struct Collector {
    logs: Logs,
    detection: Arc<Detection>,
    workers: usize,
}

impl Collector {
    pub fn create(
        dir: &Path,
        format: LogFormat,
        detection: Arc<Detection>,
        workers: usize,
    ) -> Result<Self, OutputError> {
        Ok(Collector {
            logs: Logs::create(dir, format)?,
            detection,
            workers,
        })
    }

    /// Runs until every worker has sent its final report.
    pub fn run(mut self, rx: Receiver<ToCollector>) -> Result<CollectorSummary, OutputError> {
        let mut windows: BTreeMap<u64, Window> = BTreeMap::new();
        let mut queue = NoticeQueue::new();
        let mut sum = CollectorSummary::default();
        let mut finished = 0usize;
        let mut out_notices = Vec::new();
        let mut next_window = 0u64;
        while finished < self.workers {
            let Ok(msg) = rx.recv() else { break };
            match msg {
                ToCollector::Window {
                    window,
                    end,
                    period_end,
                } => {
                    windows.entry(window).or_default().end = Some((end, period_end));
                }
                ToCollector::Report(r) => {
                    let r = *r;
                    let w = windows.entry(r.window).or_default();
                    w.records.extend(r.records);
                    w.notices.extend(r.notices);
                    w.periods.extend(r.period);
                    if r.closes {
                        w.closed += 1;
                    }
                    if let Some(f) = r.last {
                        finished += 1;
                        sum.finals.push(f);
                    }
                }
            }
            // Write every window that all workers have closed, in order.
            while let Some(w) = windows.get(&next_window) {
                let is_final = finished == self.workers;
                if w.closed < self.workers || (w.end.is_none() && !is_final) {
                    break;
                }
                let Some(w) = windows.remove(&next_window) else {
                    break;
                };
                self.flush_window(w, &mut queue, &mut out_notices, &mut sum)?;
                next_window += 1;
            }
        }
        // Anything left (a worker died early): write it as it is.
        let rest: Vec<Window> = std::mem::take(&mut windows).into_values().collect();
        for w in rest {
            self.flush_window(w, &mut queue, &mut out_notices, &mut sum)?;
        }
        queue.finish(&mut out_notices);
        self.write_notices(&mut out_notices, &mut sum)?;
        sum.notices_suppressed = queue.suppressed;
        let Logs {
            mut smtp,
            mut notice,
            smtp_path,
            notice_path,
        } = self.logs;
        smtp.close().map_err(|source| OutputError::Write {
            path: smtp_path,
            source,
        })?;
        notice.close().map_err(|source| OutputError::Write {
            path: notice_path,
            source,
        })?;
        Ok(sum)
    }

    fn flush_window(
        &mut self,
        mut w: Window,
        queue: &mut NoticeQueue,
        out_notices: &mut Vec<Notice>,
        sum: &mut CollectorSummary,
    ) -> Result<(), OutputError> {
        w.records.sort_by(|a, b| {
            (
                a.record.ts,
                &a.conn.uid.0,
                a.record.trans_depth,
                a.conn.start,
            )
                .cmp(&(
                    b.record.ts,
                    &b.conn.uid.0,
                    b.record.trans_depth,
                    b.conn.start,
                ))
        });
        for r in &w.records {
            self.logs
                .smtp
                .write(r)
                .map_err(|source| OutputError::Write {
                    path: self.logs.smtp_path.clone(),
                    source,
                })?;
        }
        sum.records += w.records.len() as u64;
        for n in w.notices {
            queue.push(n);
        }
        if !w.periods.is_empty() {
            let merged = spam::merge(w.periods);
            // The final window's period ends at the last packet; ticks carry
            // their own period end.
            let end = w.end.and_then(|(_, p)| p).or_else(|| w.end.map(|(e, _)| e));
            if let Some(end) = end {
                for n in self.detection.evaluate_period(&merged, end) {
                    queue.push(n);
                }
            }
        }
        if let Some((end, _)) = w.end {
            queue.release(end, out_notices);
            self.write_notices(out_notices, sum)?;
        }
        Ok(())
    }

    fn write_notices(
        &mut self,
        out: &mut Vec<Notice>,
        sum: &mut CollectorSummary,
    ) -> Result<(), OutputError> {
        for n in out.drain(..) {
            self.logs
                .notice
                .write(&n)
                .map_err(|source| OutputError::Write {
                    path: self.logs.notice_path.clone(),
                    source,
                })?;
            sum.notices += 1;
        }
        Ok(())
    }
}
