//! `cargo xtask loadtest`: the live path under load, measured.
//!
//! Builds the release sensor, generator and replayer, generates a capture
//! with the project's generator (`synth load`: many interleaved short SMTP
//! connections; or `synth bulk`: few connections of large messages, mostly
//! full-size frames; all from 198.18.0.0/15), and runs it offline once for
//! the records a pass must give and what it costs without the live path
//! ([`offline`]). Then, for each configuration (`--configs`: queues,
//! workers, symmetric RSS), in network namespaces joined by a veth pair of
//! its own, and for each rate (or, with `--find-max`, the rates a search
//! for the highest lossless one picks, [`findmax`]): starts `smtp-sensor
//! -i` on one end, sends the capture into the other for `--seconds`
//! ([`sender`]: smtp-replay, the live-frames replayer fast enough to
//! overload the sensor, or tcpreplay for comparison), stops the sensor with
//! SIGINT ([`measure`]), and reports what was offered, what reached the
//! sensor's XDP and userspace, what was dropped where (socket, ring, worker
//! rings, log records, and the veth itself), how many smtp.log records came
//! out against how many the same frames give offline, the CPU time of the
//! sensor (per frame, and against offline) and of the sender, how busy the
//! whole machine was, and the sensor's peak RSS ([`report`], and
//! [`plot`] for a picture).
//!
//! Figures only: nothing here decides whether they are good enough.

mod args;
mod findmax;
mod hostcpu;
mod layout;
mod measure;
mod offline;
mod outcome;
mod plot;
mod report;
mod row;
mod sender;
mod smtp_replay;
mod tcpreplay;
mod veth;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use crate::netns::{Scratch, VethNs, prepare_live_task_with};
use crate::util::status;
use args::{Options, SenderKind};
use layout::Layout;
use measure::Bench;
use offline::Offline;
use report::Summary;
use row::Row;

pub fn run(argv: &[String]) -> Result<()> {
    let Some(opts) = args::parse(argv)? else {
        println!("{}", args::HELP);
        return Ok(());
    };
    let replayer: &[&str] = match opts.sender {
        SenderKind::Replay => &["smtp-replay"],
        SenderKind::Tcpreplay => &[],
    };
    let (interrupted, bin_dir) = prepare_live_task_with("load test", replayer)?;
    let work = Scratch::create("loadtest")?;
    let pcap = generate(&bin_dir, &opts, &work.0)?;
    let sensor = (opts.sensor.clone()).unwrap_or_else(|| bin_dir.join("smtp-sensor"));
    let mut offline = Offline::new(&sensor, &pcap, &work.0, &opts.sensor_args)?;
    let one = offline.cost(1)?;
    println!(
        "xtask: one pass = {} frames, {} smtp.log records offline; offline on 1 worker: \
         {:.0} ns CPU and {:.0} ns wall per packet, {} MB peak RSS",
        report::int(offline.frames),
        report::int(offline.per_pass),
        one.cpu_ns(),
        one.wall_ns(),
        one.max_rss_kib / 1024
    );

    let task = Task {
        opts: &opts,
        bin_dir: &bin_dir,
        sensor: &sensor,
        pcap: &pcap,
        work: &work.0,
        interrupted: &interrupted,
    };
    let mut results = Results::default();
    let mut failure = None;
    for layout in &opts.layouts {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = task.configuration(layout, &mut offline, &mut results) {
            failure = Some(e);
            break;
        }
    }
    results.print(&opts, &offline, interrupted.load(Ordering::Relaxed));
    if let (Some(svg), false) = (&opts.plot, results.rows.is_empty()) {
        plot::draw(svg, &plot::panels(&results.rows))?;
        println!(
            "xtask: plotted {} runs in {}",
            results.rows.len(),
            svg.display()
        );
    }
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    failure.map_or(Ok(()), Err)
}

/// `synth load|bulk <pcap>` in the scratch directory.
fn generate(bin_dir: &Path, opts: &Options, work: &Path) -> Result<PathBuf> {
    let kind = opts.capture.name();
    let pcap = work.join(format!("{kind}.pcap"));
    let mut cmd = Command::new(bin_dir.join("synth"));
    cmd.arg(kind).arg(&pcap);
    if let Some(n) = opts.connections {
        cmd.args(["--connections", &n.to_string()]);
    }
    status(cmd.args(["--seed", &opts.seed.to_string()]))?;
    Ok(pcap)
}

/// Everything measured so far, printed at the end even when a later run
/// failed.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    summaries: Vec<Summary>,
}

impl Results {
    fn print(&self, opts: &Options, offline: &Offline, interrupted: bool) {
        if self.rows.is_empty() {
            return;
        }
        let connections = opts
            .connections
            .map_or_else(String::new, |n| format!("{} connections, ", report::int(n)));
        println!(
            "\nxtask: load test: {} capture ({connections}{} frames and {} records per pass), \
             {} s per rate, sent by {}{}\n",
            opts.capture.name(),
            report::int(offline.frames),
            report::int(offline.per_pass),
            opts.seconds,
            opts.sender.name(),
            if interrupted { " (interrupted)" } else { "" }
        );
        print!("{}", report::runs(&self.rows, opts.markdown));
        if !self.summaries.is_empty() {
            println!("\nxtask: highest rate without loss\n");
            print!("{}", report::summary(&self.summaries, opts.markdown));
        }
    }
}

/// What every configuration of one invocation shares.
struct Task<'a> {
    opts: &'a Options,
    bin_dir: &'a Path,
    sensor: &'a Path,
    pcap: &'a Path,
    work: &'a Path,
    interrupted: &'a AtomicBool,
}

impl Task<'_> {
    /// One configuration, on a veth pair of its own: its rates, or the
    /// search for its maximum.
    fn configuration(
        &self,
        layout: &Layout,
        offline: &mut Offline,
        results: &mut Results,
    ) -> Result<()> {
        let (opts, interrupted) = (self.opts, self.interrupted);
        let cost = offline.cost(layout.workers())?;
        let ns = VethNs::create("lt", layout.queues)?;
        let bench = Bench {
            ns: &ns,
            bin_dir: self.bin_dir,
            sensor: self.sensor,
            pcap: self.pcap,
            opts,
            layout,
            offline,
            cost,
            interrupted,
        };
        let mut measure = |rate| -> Result<Row> {
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let dir = self.work.join(format!("run{}", results.rows.len()));
            let row = bench.run(rate, &dir)?;
            println!("\n{}", report::runs(std::slice::from_ref(&row), false));
            if let Some(what) = row.loss() {
                println!("xtask: lost: {what}");
            }
            results.rows.push(row.clone());
            Ok(row)
        };
        if !opts.find_max {
            for &rate in &opts.rates {
                measure(rate)?;
            }
            return Ok(());
        }
        let mut probes: Vec<Row> = Vec::new();
        let found = findmax::search(|rate| {
            let row = measure(rate)?;
            let probe = findmax::Probe {
                offered_pps: row.sent.pps,
                loss: row.loss(),
            };
            probes.push(row);
            Ok(probe)
        })?;
        let best = found.best.and_then(|i| probes.get(i)).cloned();
        let config = best.as_ref().or(probes.first()).map_or_else(
            || layout.label("?", &opts.sensor_args),
            |r| r.config.clone(),
        );
        results.summaries.push(Summary {
            config,
            best,
            limit: found.limit,
            offline: cost,
        });
        Ok(())
    }
}
