//! One measured run: the sensor up on the sensor end of a veth pair, the
//! sender on the peer end for `--seconds` at one rate, the sensor down,
//! and everything both sides, the veth and the machine say about it.
//!
//! The measured window opens when frames start to flow (after the sender
//! has loaded the capture) and closes when the sender exits; the sensor's
//! CPU time runs on to its own exit, so the frames it drains after the
//! replay count too.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::args::{Options, Rate};
use super::hostcpu;
use super::layout::Layout;
use super::offline::{Cost, Offline, count_records};
use super::outcome::Outcome;
use super::report;
use super::row::Row;
use super::sender::{Job, Running};
use super::veth;
use crate::netns::{LiveSensor, VethNs};

/// Time for the last replayed frames to reach the logs before the stop.
const SETTLE: Duration = Duration::from_secs(2);

/// A configuration ready to be measured at any rate.
pub struct Bench<'a> {
    pub ns: &'a VethNs,
    pub bin_dir: &'a Path,
    /// The smtp-sensor binary measured.
    pub sensor: &'a Path,
    pub pcap: &'a Path,
    pub opts: &'a Options,
    pub layout: &'a Layout,
    pub offline: &'a Offline,
    /// The offline cost with as many workers.
    pub cost: Cost,
    pub interrupted: &'a AtomicBool,
}

impl Bench<'_> {
    /// (sender CPU, sensor CPUs) when this run pins them.
    fn pinning(&self) -> Option<(usize, String)> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        self.layout.pinning(self.opts.pin, cpus)
    }

    /// Sensor up, send, sensor down, figures; `dir` holds the run's logs.
    pub fn run(&self, rate: Rate, dir: &Path) -> Result<Row> {
        let interrupted = self.interrupted;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let stats = dir.join("stats.json");
        let pin = self.pinning();
        let bin = self.sensor;
        let mut cmd = match &pin {
            Some((_, cpus)) => {
                let mut c = self.ns.sensor_cmd("taskset");
                c.args(["-c", cpus]).arg(bin);
                c
            }
            None => self.ns.sensor_cmd(bin),
        };
        cmd.args(["-i", &self.ns.sensor_if, "-l"])
            .arg(&logs)
            .arg("--stats-json")
            .arg(&stats)
            .args(self.layout.sensor_args())
            .args(&self.opts.sensor_args);
        let mut sensor = LiveSensor::spawn(&mut cmd, true)?;
        sensor.wait_started(interrupted)?;
        let veth_before = veth::xmit_errors(self.ns)?;

        println!(
            "xtask: sending at {} for {} s",
            report::rate(rate),
            self.opts.seconds
        );
        let mut sender = Running::start(&Job {
            kind: self.opts.sender,
            ns: self.ns,
            bin_dir: self.bin_dir,
            pcap: self.pcap,
            rate,
            seconds: self.opts.seconds,
            layout: self.layout,
            frames_per_pass: self.offline.frames,
            dir,
            cpu: pin.map(|(cpu, _)| cpu),
            burst: self.opts.burst,
        })?;
        let sending = sender.wait_sending(interrupted)?;
        let host_start = hostcpu::Snapshot::take()?;
        let sensor_start = sensor.cpu_so_far().unwrap_or_default();
        let sender_start = sender.cpu_so_far().unwrap_or_default();
        let window = Instant::now();
        let waited = sender.wait(interrupted);
        let host = host_start.until(&hostcpu::Snapshot::take()?);
        let window = window.elapsed();
        // On an error both guards stop their processes.
        let (sender_usage, cut) = waited?;
        if !interrupted.load(Ordering::Relaxed) {
            std::thread::sleep(SETTLE);
        }
        let veth_after = veth::xmit_errors(self.ns);
        let stopped = sensor.stop()?;
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let sent = sender.offered(&sender_usage, cut, sending)?;
        if !stopped.usage.status.success() {
            bail!("smtp-sensor exited with {}", stopped.usage.status);
        }
        if sent.failed > 0 {
            println!(
                "xtask: warning: {} frames were not sent: the expected count assumes they were",
                sent.failed
            );
        }
        let json = std::fs::read_to_string(&stats).context("the sensor wrote no statistics")?;
        let sensor_out = Outcome::new(&json, &stopped.stderr)?;
        let per = |v: &[u64]| {
            let l: Vec<String> = v
                .iter()
                .enumerate()
                .map(|(q, n)| format!("{q}={}", report::int(*n)))
                .collect();
            l.join(", ")
        };
        if sent.lanes.is_empty() {
            println!(
                "xtask: frames per rx queue: {}",
                per(&sensor_out.queue_frames)
            );
        } else {
            println!(
                "xtask: frames per rx queue: {} (sent per lane: {})",
                per(&sensor_out.queue_frames),
                per(&sent.lanes)
            );
        }
        Ok(Row {
            config: self
                .layout
                .label(&sensor_out.xdp_mode, &self.opts.sensor_args),
            rate,
            records: count_records(&logs.join("smtp.log"))?,
            expected: self.offline.records_for(sent.frames)?,
            veth_drops: veth_after?.saturating_sub(veth_before),
            sent,
            sensor: sensor_out,
            sensor_cpu: stopped.usage.cpu.saturating_sub(sensor_start),
            sender_cpu: sender_usage.cpu.saturating_sub(sender_start),
            host,
            window,
            sensor_rss_kib: stopped.usage.max_rss_kib,
            offline: self.cost,
        })
    }
}
