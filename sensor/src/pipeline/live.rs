//! The live-capture entry: the AF_XDP capture loop feeds the same pipeline
//! `-r` uses (Ethernet frames stamped with the capture clock; `tick` drives
//! timeouts and periods while no traffic arrives).
//!
//! Two shapes. Receive-side: a `Dispatcher` with one inline worker is the
//! `FrameSink` of each rx queue, so a packet is processed on the thread
//! that received it with no hop; right when the NIC's RSS is symmetric
//! (`--symmetric-rss`) and workers == queues, or with a single queue.
//! Sharded (otherwise): capture threads hash each frame's connection and
//! hand it over an SPSC ring to its worker thread (`shard`).
//!
//! The calling thread is the control plane: every ~100 ms it stores the
//! XDP counters, handles SIGHUP (reopen logs, reload the configuration)
//! and prints the stats line.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::live::{LiveArgs, now, run_live, rx_queue_count};
use crate::capture::{Frame, FrameSink, prefetch};
use crate::config::Config;
use crate::decode::LinkType;
use crate::detect::Detection;
use crate::flow::{FlowConfig, StreamParser, random_flow_key};
use crate::net::Ts;
use crate::telemetry::Telemetry;

use super::collector::{Collector, CollectorControl, LogSettings, OpenMode};
use super::dispatch::{DispatchCounts, Dispatcher, LIVE_RECORD_BUDGET, RecordBudget, ReportTx};
use super::record_vecs::RecordVecs;
use super::reload::{DetectionWatch, SharedDetection, reload};
use super::stats_line::StatsLine;
use super::transport::{self, WhenFull};
use super::worker::{Worker, WorkerSink};
use super::{RunControl, RunError, RunOptions, RunSummary, metrics, shard, smtp_flow};

/// How often the live logs are flushed to disk.
const LOG_FLUSH: Duration = Duration::from_secs(1);

impl<P: StreamParser<WorkerSink> + Send + 'static> FrameSink for Dispatcher<P> {
    fn frames(&mut self, _queue: u32, batch: &[Frame<'_>]) {
        for f in prefetch::batch(batch) {
            self.feed(f.ts, Some(LinkType::Ethernet), f.data);
        }
    }

    fn tick(&mut self, now: Ts) {
        self.advance(now);
    }

    fn finish(&mut self) {
        Dispatcher::finish(self);
    }
}

/// Runs the pipeline on live capture until SIGINT/SIGTERM; see the module
/// doc for the two shapes. Records and notices reach the collector over a
/// bounded channel; when it falls behind, records are dropped and counted,
/// so capture never stalls on the disk.
pub fn run(
    cfg: &Config,
    iface: &str,
    args: &LiveArgs,
    opts: &RunOptions,
    ctl: &RunControl,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    opts.check_log_dir()?;
    let mut live = args.options(iface, &cfg.smtp_ports);
    let queues = match live.queues {
        Some(n) if n > 0 => n,
        _ => rx_queue_count(iface)?,
    };
    live.queues = Some(queues);
    let queues = queues as usize;
    let workers = if opts.workers == 0 {
        queues
    } else {
        opts.workers
    };
    let receive_side = workers == queues && (queues == 1 || args.symmetric_rss);
    log::info!(
        "{queues} rx queue(s), {workers} worker(s): {}",
        if receive_side {
            "each packet is processed on the thread that received it"
        } else {
            "packets cross to their connection's worker over SPSC rings"
        }
    );

    // Sharded: the XDP program hashes each frame's connection, so capture
    // threads route without decoding.
    let flow_key = random_flow_key();
    if !receive_side {
        live.flow_hash = Some(flow_key);
    }

    let telemetry = Telemetry::live(iface, queues, workers);
    live.queue_counters = telemetry.queues.clone();
    live.link = telemetry.link.clone();
    live.cpus = ctl.cpus.clone();
    let stats_every = args.stats_every();

    let detection = Arc::new(Detection::from_config(cfg)?);
    let shared = SharedDetection::new(detection.clone());
    let control = Arc::new(CollectorControl::default());
    let budget = RecordBudget::new(LIVE_RECORD_BUDGET);
    let record_vecs = RecordVecs::for_workers(workers);
    let extract = super::Extraction::start(cfg, &opts.log_dir, false)?;
    let mut collector = Collector::open(
        &opts.log_dir,
        opts.format,
        OpenMode::Append,
        LogSettings::from_config(cfg),
        detection.clone(),
        vec![1; workers],
    )?
    .live(
        DetectionWatch::new(shared.clone()),
        control.clone(),
        budget.clone(),
        LOG_FLUSH,
    )
    .with_telemetry(telemetry.clone())
    .with_record_vecs(record_vecs.clone())
    .with_fleet(super::start_fleet(cfg, true)?);
    if let Some(x) = &extract {
        collector = collector.with_extract_counts(x.writer.counts.clone());
    }
    let _metrics = metrics(ctl, &telemetry)?;
    let hup = crate::signals::hup_flag().map_err(RunError::Signal)?;

    let (tx, rx) = std::sync::mpsc::channel();
    let collector = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            crate::affinity::yield_to_capture("the log writer");
            collector.run(rx)
        })
        .map_err(RunError::Thread)?;
    let flow = FlowConfig::from_config(cfg);
    let (extract_tx, extract_writer) = extract.map(|x| (x.tx, x.writer)).unzip();
    let factory = smtp_flow::factory_extracting(cfg, extract_tx);
    let period = cfg.inspect_period_us();
    let aligned = cfg.fleet.is_some();
    let decode = opts.decode;
    // Each dispatcher here runs its worker inline, on a thread this
    // function pins itself (`Worker::with_cpu` is for threads the
    // dispatcher spawns).
    let dispatcher = |id: usize| {
        let worker = Worker::new(id, flow.clone(), detection.clone(), factory.clone())
            .with_reload(DetectionWatch::new(shared.clone()))
            .with_telemetry(telemetry.clone())
            .with_record_vecs(record_vecs.clone());
        Dispatcher::new(
            vec![worker],
            ReportTx::budgeted(tx.clone(), budget.clone(), id).with_telemetry(telemetry.clone()),
            period,
            decode,
        )
        .with_aligned_periods(aligned)
    };

    let mut running = cfg.clone();
    let mut stats = StatsLine::new(&telemetry);
    let mut last_line = Instant::now();
    // systemd (Type=notify): ready at the first control tick, when the
    // program is attached and every capture thread runs.
    let mut notified_ready = false;
    let mut reloads = 0u64;
    let on_control = |xdp: Option<crate::capture::xdp::XdpCounters>| {
        if !notified_ready {
            notified_ready = true;
            crate::service::ready(&format!("capturing on {iface}"));
        }
        if let Some(x) = xdp {
            telemetry.set_xdp(x);
        }
        if hup.swap(false, Ordering::AcqRel) {
            log::info!("SIGHUP: reopening the logs and reloading the configuration");
            crate::service::reloading();
            reloads += 1;
            control.reopen.store(true, Ordering::Release);
            match reload(&ctl.config, &running) {
                Ok((det, cfg, restart)) => {
                    if !restart.is_empty() {
                        log::warn!(
                            "configuration reloaded; these keys changed but need a restart: {}",
                            restart.join(", ")
                        );
                    }
                    shared.replace(det);
                    running = cfg;
                    telemetry.collector.reload_succeeded();
                    log::info!("configuration reloaded");
                    crate::service::reload_done(reloads, Ok(()));
                }
                Err(e) => {
                    telemetry.collector.reload_failed();
                    log::error!("{e}; the running configuration stays");
                    crate::service::reload_done(reloads, Err(&e.to_string()));
                }
            }
        }
        if let Some(every) = stats_every
            && last_line.elapsed() >= every
        {
            last_line = Instant::now();
            log::info!("{}", stats.next(&telemetry));
        }
    };

    let mut interface_lost = false;
    let (counts, dropped_records) = if receive_side {
        let result = run_live(&live, |q| dispatcher(q as usize), on_control);
        match result {
            Ok(report) => {
                interface_lost = report.interface_lost;
                totals(report.sinks)
            }
            Err(e) => {
                drop(tx);
                let _ = collector.join();
                return Err(e.into());
            }
        }
    } else {
        // Capture threads take the first CPUs of the list, workers the next.
        let mut panics = 0u64;
        let (by_queue, by_worker) = transport::mesh(queues, workers, WhenFull::Drop);
        let mut handles: Vec<JoinHandle<Dispatcher<_>>> = Vec::with_capacity(workers);
        let mut spawn_error = None;
        for (w, inputs) in by_worker.into_iter().enumerate() {
            let d = dispatcher(w);
            let cpu = ctl.cpus.nth(queues + w);
            let h = std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        crate::affinity::pin_current_thread(cpu, &format!("worker {w}"));
                    }
                    shard::worker_loop(d, inputs, now)
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        let mut by_queue: Vec<Option<Vec<transport::Lane>>> =
            by_queue.into_iter().map(Some).collect();
        let result = match spawn_error {
            Some(e) => Err(RunError::Thread(e)),
            None => run_live(
                &live,
                |q| {
                    let lanes = by_queue
                        .get_mut(q as usize)
                        .and_then(Option::take)
                        .unwrap_or_default();
                    shard::ShardSink::new(q as usize, lanes, flow_key, telemetry.clone())
                },
                on_control,
            )
            .map(|report| interface_lost = report.interface_lost)
            .map_err(RunError::from),
        };
        // Lanes of queues that never started: the workers must not wait.
        drop(by_queue);
        let mut sinks = Vec::with_capacity(handles.len());
        for h in handles {
            match h.join() {
                Ok(d) => sinks.push(d),
                Err(_) => {
                    log::error!("a worker thread panicked; its flows are lost");
                    panics += 1;
                }
            }
        }
        if let Err(e) = result {
            drop(sinks);
            drop(tx);
            let _ = collector.join();
            return Err(e);
        }
        let (mut counts, dropped) = totals(sinks);
        counts.worker_panics += panics;
        (counts, dropped)
    };
    crate::service::stopping();
    drop(tx);
    let collected = match collector.join() {
        Ok(r) => r?,
        Err(_) => {
            return Err(RunError::Thread(std::io::Error::other(
                "collector thread panicked",
            )));
        }
    };
    let mut summary = RunSummary::new(started.elapsed(), collected, counts.into());
    // Every session is gone: the writer finishes its queue.
    drop(factory);
    if let Some(x) = extract_writer.map(crate::output::extract::ExtractWriter::join) {
        summary.anomalies.merge(&x.named());
    }
    summary.dropped_records = dropped_records;
    summary.interface_lost = interface_lost.then(|| iface.to_owned());
    summary.dropped_frames = telemetry
        .hops
        .iter()
        .map(|h| h.ring_full_drops.load(Ordering::Relaxed))
        .sum();
    summary.unhashed_frames = telemetry
        .hops
        .iter()
        .map(|h| h.unhashed.load(Ordering::Relaxed))
        .sum();
    Ok(summary)
}

/// Sums the dispatchers' frame counters and dropped records.
fn totals<P: StreamParser<WorkerSink> + Send + 'static>(
    dispatchers: Vec<Dispatcher<P>>,
) -> (DispatchCounts, u64) {
    let mut counts = DispatchCounts::default();
    let mut dropped = 0;
    for mut d in dispatchers {
        let c = std::mem::take(&mut d.counts);
        counts.packets.merge(&c.packets);
        counts.anomalies.merge(&c.anomalies);
        counts.worker_panics += c.worker_panics;
        dropped += d.dropped_records();
    }
    (counts, dropped)
}
