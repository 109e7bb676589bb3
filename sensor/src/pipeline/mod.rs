//! The pipeline: capture → dispatcher → workers → collector.
//!
//! `dispatch` decodes frames and shards them to workers (inline with one
//! worker), `worker` runs flows, SMTP sessions and the detector, `collector`
//! merges what workers report per tick window and writes smtp.log and
//! notice.log off the packet path, `summary` is the end-of-run report.
//! `run_offline` wires it for `-r`; `live::run` feeds the same `Dispatcher`
//! from AF_XDP capture for `-i` (one dispatcher per rx queue).

pub mod collector;
pub mod dispatch;
pub mod live;
pub mod smtp_flow;
pub mod summary;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::anomaly::CaptureAnomaly;
use crate::capture::pcap::{PcapReadError, PcapReader};
use crate::config::Config;
use crate::decode::DecodeOptions;
use crate::detect::{DetectError, Detection};
use crate::flow::{FlowConfig, StreamParser};
use crate::output::LogFormat;

pub use collector::{Collector, OutputError};
pub use dispatch::{Dispatcher, ReportTx};
pub use summary::RunSummary;
pub use worker::{ParserFactory, Worker, WorkerSink};

/// Reports the collector's channel holds before senders wait (offline) or
/// drop (live).
pub const COLLECTOR_CHANNEL: usize = 1024;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub log_dir: PathBuf,
    pub format: LogFormat,
    pub workers: usize,
    pub decode: DecodeOptions,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] PcapReadError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("log directory {0} does not exist or is not a directory; create it first")]
    LogDir(PathBuf),
    #[error(transparent)]
    Live(#[from] crate::capture::CaptureError),
    #[error("the collector thread could not be started: {0}")]
    Thread(std::io::Error),
}

/// Reads `input` to its end through the full pipeline with the SMTP parser.
pub fn run_offline(cfg: &Config, input: &Path, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let factory = smtp_flow::factory(cfg);
    run_offline_with(cfg, input, opts, factory)
}

/// `run_offline` with any stream parser (tests use simpler ones).
pub fn run_offline_with<P: StreamParser<WorkerSink> + Send + 'static>(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    factory: ParserFactory<P>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    if !opts.log_dir.is_dir() {
        return Err(RunError::LogDir(opts.log_dir.clone()));
    }
    let mut reader = PcapReader::open(input)?;
    let detection = Arc::new(Detection::from_config(cfg)?);
    let workers = opts.workers.max(1);
    let collector =
        Collector::create(&opts.log_dir, opts.format, detection.clone(), vec![workers])?;
    let (tx, rx) = std::sync::mpsc::sync_channel(COLLECTOR_CHANNEL);
    let collector = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || collector.run(rx))
        .map_err(RunError::Thread)?;
    let flow = FlowConfig::from_config(cfg);
    let pool: Vec<_> = (0..workers)
        .map(|id| Worker::new(id, flow.clone(), detection.clone(), factory.clone()))
        .collect();
    let mut dispatcher = Dispatcher::new(
        pool,
        ReportTx::new(tx, true),
        cfg.inspect_period_us(),
        opts.decode,
    );
    let read = reader.for_each(|f| dispatcher.feed(f.ts, f.link, f.data));
    dispatcher.finish();
    let mut counts = std::mem::take(&mut dispatcher.counts);
    drop(dispatcher);
    let collected = match collector.join() {
        Ok(r) => r?,
        Err(_) => {
            return Err(RunError::Thread(std::io::Error::other(
                "collector thread panicked",
            )));
        }
    };
    // A capture error after some records: the logs are written; report it.
    let read = read?;
    if read.truncated_tail {
        counts.anomalies.add(CaptureAnomaly::TruncatedRecord);
    }
    counts
        .anomalies
        .add_n(CaptureAnomaly::UnknownInterface, read.unknown_interface);
    let mut summary = RunSummary::new(started.elapsed(), collected, counts.into());
    summary.truncated_tail = read.truncated_tail;
    Ok(summary)
}
