//! The live-capture entry: a `Dispatcher` is a `capture::FrameSink`, so the
//! AF_XDP capture loop feeds the same pipeline `-r` uses (Ethernet frames,
//! stamped with the capture clock; `tick` drives timeouts and periods while
//! no traffic arrives).

use std::sync::Arc;

use crate::capture::live::{LiveArgs, run_live, rx_queue_count};
use crate::capture::{Frame, FrameSink};
use crate::config::Config;
use crate::decode::LinkType;
use crate::detect::Detection;
use crate::flow::{FlowConfig, StreamParser};
use crate::net::Ts;

use super::collector::Collector;
use super::dispatch::{DispatchCounts, Dispatcher, ReportTx};
use super::worker::{Worker, WorkerSink};
use super::{COLLECTOR_CHANNEL, RunError, RunOptions, RunSummary, smtp_flow};

impl<P: StreamParser<WorkerSink> + Send + 'static> FrameSink for Dispatcher<P> {
    fn frames(&mut self, _queue: u32, batch: &[Frame<'_>]) {
        for f in batch {
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

/// Runs the pipeline on live capture until SIGINT/SIGTERM: one dispatcher
/// with its worker per rx queue (the NIC's RSS already keeps both
/// directions of a flow on one queue), all reporting to one collector that
/// writes smtp.log and notice.log. Reports are dropped, and counted, when
/// the collector falls behind, so capture never stalls.
pub fn run(
    cfg: &Config,
    iface: &str,
    args: &LiveArgs,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    let started = std::time::Instant::now();
    if !opts.log_dir.is_dir() {
        return Err(RunError::LogDir(opts.log_dir.clone()));
    }
    let mut live = args.options(iface, &cfg.smtp_ports);
    let queues = match live.queues {
        Some(n) if n > 0 => n,
        _ => rx_queue_count(iface)?,
    };
    live.queues = Some(queues);
    let detection = Arc::new(Detection::from_config(cfg)?);
    let collector = Collector::create(
        &opts.log_dir,
        opts.format,
        detection.clone(),
        vec![1; queues as usize],
    )?;
    let (tx, rx) = std::sync::mpsc::sync_channel(COLLECTOR_CHANNEL);
    let collector = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || collector.run(rx))
        .map_err(RunError::Thread)?;
    let flow = FlowConfig::from_config(cfg);
    let factory = smtp_flow::factory(cfg);
    let period = cfg.inspect_period_us();
    let decode = opts.decode;
    let result = run_live(&live, |q| {
        let worker = Worker::new(q as usize, flow.clone(), detection.clone(), factory.clone());
        Dispatcher::new(
            vec![worker],
            ReportTx::for_source(tx.clone(), false, q as usize),
            period,
            decode,
        )
    });
    drop(tx);
    let (counts, dropped) = match result {
        Ok(report) => {
            let mut counts = DispatchCounts::default();
            let mut dropped = 0;
            for mut d in report.sinks {
                let c = std::mem::take(&mut d.counts);
                counts.packets.merge(&c.packets);
                counts.anomalies.merge(&c.anomalies);
                dropped += d.dropped_records();
            }
            (counts, dropped)
        }
        Err(e) => {
            // The collector ends once every sender is gone.
            let _ = collector.join();
            return Err(e.into());
        }
    };
    let collected = match collector.join() {
        Ok(r) => r?,
        Err(_) => {
            return Err(RunError::Thread(std::io::Error::other(
                "collector thread panicked",
            )));
        }
    };
    let mut summary = RunSummary::new(started.elapsed(), collected, counts.into());
    summary.dropped_records = dropped;
    Ok(summary)
}
