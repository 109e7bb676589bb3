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
use crate::output::extract::{self, ExtractSettings, ExtractTx, ExtractWriter};

pub use collector::{Collector, LogSettings, OutputError, STDOUT_DIR, is_stdout};
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

impl RunOptions {
    /// The log directory exists, or is `-` (standard output), which takes
    /// JSON only: four TSV logs with their headers interleaved on one
    /// stream could not be read back.
    fn check_log_dir(&self) -> Result<(), RunError> {
        if collector::is_stdout(&self.log_dir) {
            return match self.format {
                LogFormat::Json => Ok(()),
                LogFormat::Zeek => Err(RunError::StdoutFormat),
            };
        }
        if !self.log_dir.is_dir() {
            return Err(RunError::LogDir(self.log_dir.clone()));
        }
        Ok(())
    }
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
    #[error(
        "logs on standard output (-l - / --log-stdout) are JSON lines only; drop --log-format zeek or give a log directory"
    )]
    StdoutFormat,
    #[error(transparent)]
    Live(#[from] crate::capture::CaptureError),
    #[error("the collector thread could not be started: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot install the signal handlers: {0}")]
    Signal(std::io::Error),
    /// The list of captures to read makes no sense.
    #[error("{0}")]
    Inputs(String),
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

/// Reads the captures to their ends, in order, into `dispatcher`. A file
/// that is cut short counts its truncated record and the next one is read;
/// an error ends the reading (what was read is still logged). Returns the
/// summed summary, `truncated_tail` for the last file only.
/// Fleet mode's thread (docs/FLEET.md), when `[fleet]` is configured.
fn start_fleet(cfg: &Config, live: bool) -> Result<Option<crate::fleet::Fleet>, RunError> {
    crate::fleet::FleetSettings::from_config(cfg, live)
        .map(crate::fleet::Fleet::start)
        .transpose()
        .map_err(RunError::Thread)
}

fn read_in_order<P: StreamParser<WorkerSink> + Send + 'static>(
    readers: Vec<(crate::capture::pcap::PcapReader, input::Progress)>,
    dispatcher: &mut Dispatcher<P>,
) -> Result<crate::capture::pcap::ReadSummary, PcapReadError> {
    let mut total = crate::capture::pcap::ReadSummary::default();
    let n = readers.len();
    let mut last_ts = None;
    for (i, (mut reader, progress)) in readers.into_iter().enumerate() {
        let prev_end = last_ts;
        let mut first_ts = None;
        let read = reader.for_each(|f| {
            first_ts.get_or_insert(f.ts);
            last_ts = Some(f.ts);
            dispatcher.feed(f.ts, f.link, f.data);
        });
        progress.finish();
        let read = read.map_err(|e| progress.explain(e))?;
        total.frames += read.frames;
        total.bytes += read.bytes;
        total.unknown_interface += read.unknown_interface;
        if i + 1 < n && read.truncated_tail {
            dispatcher
                .counts
                .anomalies
                .add(CaptureAnomaly::TruncatedRecord);
            log::warn!(
                "{} ends inside a record; every complete record before it was processed",
                reader.path().display()
            );
        }
        total.truncated_tail = read.truncated_tail;
        if let (Some(first), Some(prev)) = (first_ts, prev_end)
            && first < prev
        {
            log::warn!(
                "{} starts before the capture before it ended: give the files in time order",
                reader.path().display()
            );
        }
    }
    Ok(total)
}

/// Reads `input` to its end through the full pipeline with the SMTP parser.
pub fn run_offline(cfg: &Config, input: &Path, opts: &RunOptions) -> Result<RunSummary, RunError> {
    run_offline_files(cfg, &[input], opts, &RunControl::default())
}

/// `run_offline` as the binary runs it: signals, progress, metrics, pinning.
pub fn run_offline_controlled(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    ctl: &RunControl,
) -> Result<RunSummary, RunError> {
    run_offline_files(cfg, &[input], opts, ctl)
}

/// `run_offline_controlled` on several captures read one after the other
/// as one stream of time (`-r a.pcap b.pcap.gz`): connections and periods
/// carry on across the files, as if they were one capture. Every file is
/// opened (and its header checked) before any is read, so a bad name or a
/// file that is no capture stops the run before it starts.
pub fn run_offline_files(
    cfg: &Config,
    inputs: &[&Path],
    opts: &RunOptions,
    ctl: &RunControl,
) -> Result<RunSummary, RunError> {
    let extract = Extraction::start(cfg, &opts.log_dir, true)?;
    let factory = smtp_flow::factory_extracting(cfg, extract.as_ref().map(|x| x.tx.clone()));
    run_offline_full(cfg, inputs, opts, ctl, factory, extract.map(|x| x.writer))
}

/// The extraction writer of a run and the handle sessions queue with.
pub struct Extraction {
    pub tx: ExtractTx,
    pub writer: ExtractWriter,
}

impl Extraction {
    /// Starts the writer when `extract_files` is not `none`; `offline`:
    /// sessions wait for room in a full queue (live they cut the file).
    pub fn start(
        cfg: &Config,
        log_dir: &Path,
        offline: bool,
    ) -> Result<Option<Extraction>, RunError> {
        let Some(mut settings) = ExtractSettings::from_config(cfg, log_dir) else {
            return Ok(None);
        };
        settings.wait_when_full = offline;
        let (tx, writer) = extract::spawn(&settings).map_err(RunError::Thread)?;
        Ok(Some(Extraction { tx, writer }))
    }
}

/// `run_offline` with any stream parser (tests use simpler ones).
pub fn run_offline_with<P: StreamParser<WorkerSink> + Send + 'static>(
    cfg: &Config,
    input: &Path,
    opts: &RunOptions,
    factory: ParserFactory<P>,
) -> Result<RunSummary, RunError> {
    run_offline_full(cfg, &[input], opts, &RunControl::default(), factory, None)
}

fn run_offline_full<P: StreamParser<WorkerSink> + Send + 'static>(
    cfg: &Config,
    inputs: &[&Path],
    opts: &RunOptions,
    ctl: &RunControl,
    factory: ParserFactory<P>,
    extract: Option<ExtractWriter>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    opts.check_log_dir()?;
    let stop = if ctl.handle_signals {
        crate::signals::stop_flag().map_err(RunError::Signal)?
    } else {
        Arc::new(AtomicBool::new(false))
    };
    if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(RunError::Inputs(
            "standard input (-) can be read only once".into(),
        ));
    }
    // Before the inputs are opened: reading a capture's header from a pipe
    // may wait, and the sensor has joined its fleet by then.
    let fleet = start_fleet(cfg, false)?;
    let mut readers = Vec::with_capacity(inputs.len());
    for path in inputs {
        readers.push(input::open(path, stop.clone(), ctl.progress)?);
    }
    if readers.is_empty() {
        return Err(RunError::Inputs("no capture to read".into()));
    }
    let detection = Arc::new(Detection::from_config(cfg)?);
    let workers = opts.workers.max(1);
    let telemetry = Telemetry::offline(workers);
    let _metrics = metrics(ctl, &telemetry)?;
    let record_vecs = RecordVecs::for_workers(workers);
    let mut collector = Collector::create(
        &opts.log_dir,
        opts.format,
        LogSettings::from_config(cfg),
        detection.clone(),
        vec![workers],
    )?
    .with_telemetry(telemetry.clone())
    .with_record_vecs(record_vecs.clone())
    .with_fleet(fleet);
    if let Some(x) = &extract {
        collector = collector.with_extract_counts(x.counts.clone());
    }
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
    )
    .with_aligned_periods(cfg.fleet.is_some());
    let read = read_in_order(readers, &mut dispatcher);
    dispatcher.finish();
    let mut counts = std::mem::take(&mut dispatcher.counts);
    drop(dispatcher);
    // The sessions (and their extraction handles) are gone with the
    // workers; this is the last one: the writer finishes its queue.
    drop(factory);
    let extracted = extract.map(ExtractWriter::join);
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
    let stopped = stop.load(Ordering::Relaxed);
    if read.truncated_tail && !stopped {
        counts.anomalies.add(CaptureAnomaly::TruncatedRecord);
    }
    counts
        .anomalies
        .add_n(CaptureAnomaly::UnknownInterface, read.unknown_interface);
    let mut summary = RunSummary::new(started.elapsed(), collected, counts.into());
    if let Some(x) = extracted {
        summary.anomalies.merge(&x.named());
    }
    summary.truncated_tail = read.truncated_tail && !stopped;
    summary.stopped_early = stopped;
    Ok(summary)
}
