//! The pipeline: capture → dispatcher → workers → collector.
//!
//! `dispatch` decodes frames and shards them to workers (inline with one
//! worker), `worker` runs flows, SMTP sessions and the detector, `collector`
//! merges what workers report per tick window and writes smtp.log and
//! notice.log off the packet path, `summary` is the end-of-run report.
//! `run_offline` wires it for `-r`; `live::run` feeds the same `Dispatcher`
//! from AF_XDP capture for `-i` (one dispatcher per rx queue).

pub mod collector;
pub mod compressed;
pub mod dispatch;
pub mod input;
pub mod live;
pub mod record_vecs;
pub mod reload;
pub mod shard;
pub mod smtp_flow;
pub mod stats_line;
pub mod summary;
pub mod transport;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::affinity::CpuList;
use crate::metrics::{MetricsError, MetricsServer};
use crate::telemetry::Telemetry;
use record_vecs::RecordVecs;
use reload::ConfigSource;

use crate::anomaly::CaptureAnomaly;
use crate::capture::pcap::PcapReadError;
use crate::config::Config;
use crate::decode::DecodeOptions;
use crate::detect::{DetectError, Detection};
use crate::flow::{FlowConfig, StreamParser};
use crate::output::LogFormat;

pub use collector::{Collector, OutputError};
pub use dispatch::{Dispatcher, RecordBudget, ReportTx};
pub use summary::RunSummary;
pub use worker::{ParserFactory, Worker, WorkerSink};

/// Reports the collector's channel holds before senders wait (offline).
pub const COLLECTOR_CHANNEL: usize = 1024;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub log_dir: PathBuf,
    pub format: LogFormat,
    /// Worker threads; 0: the default (1 offline, one per rx queue live).
    pub workers: usize,
    pub decode: DecodeOptions,
}

/// How the run is operated: pinning, metrics, reloads, progress. The
/// default runs quietly with none of them (what tests use).
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// CPUs to pin threads to (`--cpus`); empty: no pinning.
    pub cpus: CpuList,
    /// Serve Prometheus metrics here (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    /// Where the configuration came from, for SIGHUP reloads.
    pub config: ConfigSource,
    /// Offline: draw a progress bar (stderr is a terminal).
    pub progress: bool,
    /// Stop on SIGINT/SIGTERM (flushing everything) instead of dying:
    /// the binary sets it, library callers usually not.
    pub handle_signals: bool,
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
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot install the signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Starts the metrics endpoint when asked for.
fn metrics(
    ctl: &RunControl,
    telemetry: &Arc<Telemetry>,
) -> Result<Option<MetricsServer>, RunError> {
    let Some(addr) = ctl.metrics_addr else {
        return Ok(None);
    };
    let server = crate::metrics::spawn(addr, telemetry.clone())?;
    log::info!("metrics on http://{}/metrics", server.local_addr());
    Ok(Some(server))
}

/// Reads `input` to its end through the full pipeline with the SMTP parser.
pub fn run_offline(cfg: &Config, input: &Path, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let factory = smtp_flow::factory(cfg);
    run_offline_with(cfg, input, opts, factory)
}

/// `run_offline` as the binary runs it: signals, progress, metrics, pinning.
pub fn run_offline_controlled(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    ctl: &RunControl,
) -> Result<RunSummary, RunError> {
    let factory = smtp_flow::factory(cfg);
    run_offline_full(cfg, input, opts, ctl, factory)
}

/// `run_offline` with any stream parser (tests use simpler ones).
pub fn run_offline_with<P: StreamParser<WorkerSink> + Send + 'static>(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    factory: ParserFactory<P>,
) -> Result<RunSummary, RunError> {
    run_offline_full(cfg, input, opts, &RunControl::default(), factory)
}

fn run_offline_full<P: StreamParser<WorkerSink> + Send + 'static>(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    ctl: &RunControl,
    factory: ParserFactory<P>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    if !opts.log_dir.is_dir() {
        return Err(RunError::LogDir(opts.log_dir.clone()));
    }
    let stop = if ctl.handle_signals {
        crate::signals::stop_flag().map_err(RunError::Signal)?
    } else {
        Arc::new(AtomicBool::new(false))
    };
    let (mut reader, progress) = input::open(input, stop.clone(), ctl.progress)?;
    let detection = Arc::new(Detection::from_config(cfg)?);
    let workers = opts.workers.max(1);
    let telemetry = Telemetry::offline(workers);
    let _metrics = metrics(ctl, &telemetry)?;
    let record_vecs = RecordVecs::for_workers(workers);
    let collector =
        Collector::create(&opts.log_dir, opts.format, detection.clone(), vec![workers])?
            .with_telemetry(telemetry.clone())
            .with_record_vecs(record_vecs.clone());
    let (tx, rx) = std::sync::mpsc::sync_channel(COLLECTOR_CHANNEL);
    let collector = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || collector.run(rx))
        .map_err(RunError::Thread)?;
    let flow = FlowConfig::from_config(cfg);
    let pool: Vec<_> = (0..workers)
        .map(|id| {
            Worker::new(id, flow.clone(), detection.clone(), factory.clone())
                .with_telemetry(telemetry.clone())
                .with_record_vecs(record_vecs.clone())
                .with_cpu(ctl.cpus.nth(id))
        })
        .collect();
    let mut dispatcher = Dispatcher::new(
        pool,
        ReportTx::blocking(tx),
        cfg.inspect_period_us(),
        opts.decode,
    );
    let read = reader.for_each(|f| dispatcher.feed(f.ts, f.link, f.data));
    progress.finish();
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
    let read = read.map_err(|e| progress.explain(e))?;
    let stopped = stop.load(Ordering::Relaxed);
    if read.truncated_tail && !stopped {
        counts.anomalies.add(CaptureAnomaly::TruncatedRecord);
    }
    counts
        .anomalies
        .add_n(CaptureAnomaly::UnknownInterface, read.unknown_interface);
    let mut summary = RunSummary::new(started.elapsed(), collected, counts.into());
    summary.truncated_tail = read.truncated_tail && !stopped;
    summary.stopped_early = stopped;
    Ok(summary)
}
