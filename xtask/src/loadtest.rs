//! `cargo xtask loadtest`: the live path under load, measured.
//!
//! Builds the release sensor, generates a load capture with the project's
//! generator (`synth load`: interleaved SMTP connections from
//! 198.18.0.0/15), creates two network namespaces joined by a veth pair
//! with `--queues` queues, and for each rate: starts `smtp-sensor -i` on
//! one end, replays the capture into the other with tcpreplay for
//! `--seconds`, stops the sensor with SIGINT, and reports what was offered
//! (tcpreplay's statistics), what XDP redirected and userspace received
//! (`--stats-json`), what was dropped where (socket, worker rings, log
//! records), how many smtp.log records came out against how many the same
//! frames give offline, the CPU time of the sensor and of tcpreplay from
//! the first frame sent to their exit, how busy the whole machine was
//! while frames were sent, and the sensor's peak RSS.
//!
//! The expected record count: an offline run (`-r`) of the capture gives
//! the count per pass; tcpreplay loops over the capture, so a run that
//! sent `k` whole passes and `m` more frames should log `k` times that
//! plus what an offline run of the first `m` frames logs (open connections
//! are flushed at the end of a file and at SIGINT alike).
//!
//! Figures only: nothing here decides whether they are good enough.

mod args;
mod hostcpu;
mod outcome;
mod replay;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{LiveSensor, Proc, Scratch, VethNs, collect, prepare_live_task};
use crate::util::status;
use args::{Options, Rate};
use report::Row;

/// Time for the last replayed frames to reach the logs before the stop.
const SETTLE: Duration = Duration::from_secs(2);
/// tcpreplay preloads the capture and, at top speed, finishes its pass:
/// this much longer than `--seconds` means it hangs.
const REPLAY_SLACK: Duration = Duration::from_secs(300);

pub fn run(argv: &[String]) -> Result<()> {
    let Some(opts) = args::parse(argv)? else {
        println!("{}", args::HELP);
        return Ok(());
    };
    let (interrupted, bin_dir) = prepare_live_task("load test")?;
    let work = Scratch::create("loadtest")?;
    let pcap = work.0.join("load.pcap");
    status(
        Command::new(bin_dir.join("synth"))
            .arg("load")
            .arg(&pcap)
            .args(["--connections", &opts.connections.to_string()])
            .args(["--seed", &opts.seed.to_string()]),
    )?;
    let expect = Expectation::new(&bin_dir, &pcap, &work.0, &opts.sensor_args)?;
    println!(
        "xtask: one pass = {} frames, {} smtp.log records offline",
        report::int(expect.frames),
        report::int(expect.per_pass)
    );

    let ns = VethNs::create("lt", opts.queues)?;
    let mut rows = Vec::new();
    let mut failure = None;
    for (i, rate) in opts.rates.iter().enumerate() {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let dir = work.0.join(format!("run{i}"));
        match measure(&ns, &bin_dir, &opts, *rate, &dir, &expect, &interrupted) {
            Ok(row) => {
                println!("\n{}", report::text(std::slice::from_ref(&row)));
                rows.push(row);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(ns);
    if !rows.is_empty() {
        println!(
            "\nxtask: load test, {} connections per pass, {} s per rate{}\n",
            report::int(opts.connections),
            opts.seconds,
            if interrupted.load(Ordering::Relaxed) {
                " (interrupted)"
            } else {
                ""
            }
        );
        if opts.markdown {
            print!("{}", report::markdown(&rows));
        } else {
            print!("{}", report::text(&rows));
        }
    }
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    failure.map_or(Ok(()), Err)
}

/// One rate: sensor up, replay, sensor down, figures.
fn measure(
    ns: &VethNs,
    bin_dir: &Path,
    opts: &Options,
    rate: Rate,
    dir: &Path,
    expect: &Expectation,
    interrupted: &AtomicBool,
) -> Result<Row> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let stats = dir.join("stats.json");
    let mut cmd = ns.sensor_cmd(bin_dir.join("smtp-sensor"));
    cmd.args(["-i", &ns.sensor_if, "-l"])
        .arg(&logs)
        .arg("--stats-json")
        .arg(&stats);
    if let Some(w) = opts.workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    if opts.symmetric_rss {
        cmd.arg("--symmetric-rss");
    }
    cmd.args(&opts.sensor_args);
    let mut sensor = LiveSensor::spawn(&mut cmd, true)?;
    sensor.wait_started(interrupted)?;

    println!(
        "xtask: replaying at {} for {} s",
        match rate {
            Rate::Pps(r) => format!("{} packets/s", report::int(r)),
            Rate::Top => "top speed".to_owned(),
        },
        opts.seconds
    );
    let mut tr = Proc::spawn(
        replay::command(
            &mut ns.peer_cmd("tcpreplay"),
            &ns.peer_if,
            rate,
            opts.seconds,
            &expect.pcap,
        )
        .stdout(Stdio::piped()),
    )?;
    let out = collect(tr.take_stdout().context("no stdout pipe")?);
    // The measured window starts when frames flow (after tcpreplay's
    // preload) and ends when tcpreplay exits (freeing the preloaded
    // capture takes it a moment after the last frame); the sensor's CPU
    // time runs on to its exit, so the frames it drains after the replay
    // count too.
    let sending = wait_sending(&mut tr, &ns.peer_if, interrupted)?;
    let host_start = hostcpu::Snapshot::take()?;
    let sensor_start = sensor.cpu_so_far().unwrap_or_default();
    let tr_start = tr.cpu_so_far().unwrap_or_default();
    let window = std::time::Instant::now();
    let waited = tr.wait_interruptible(
        interrupted,
        Duration::from_secs(opts.seconds) + REPLAY_SLACK,
    );
    let host = host_start.until(&hostcpu::Snapshot::take()?);
    let window = window.elapsed();
    // On an error both guards stop their processes.
    let (tr_usage, cut) = waited?;
    let out = out.join().unwrap_or_default();
    if !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(SETTLE);
    }
    let stopped = sensor.stop()?;
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    if cut {
        bail!("tcpreplay did not finish in time:\n{out}");
    }
    if !tr_usage.status.success() {
        bail!("tcpreplay failed ({}):\n{out}", tr_usage.status);
    }
    if !stopped.usage.status.success() {
        bail!("smtp-sensor exited with {}", stopped.usage.status);
    }
    if !sending {
        bail!("tcpreplay sent nothing:\n{out}");
    }
    let sent = replay::parse(&out)?;
    if sent.failed > 0 {
        println!(
            "xtask: warning: the veth refused {} frames: the expected count assumes they were sent",
            sent.failed
        );
    }
    let json = std::fs::read_to_string(&stats).context("the sensor wrote no statistics")?;
    let sensor_out = outcome::Outcome::new(&json, &stopped.stderr)?;
    let queues: Vec<String> = sensor_out
        .queue_frames
        .iter()
        .enumerate()
        .map(|(q, n)| format!("{q}={}", report::int(*n)))
        .collect();
    println!("xtask: frames per rx queue: {}", queues.join(", "));
    Ok(Row {
        config: config(opts, &sensor_out.xdp_mode),
        rate,
        records: count_records(&logs.join("smtp.log"))?,
        expected: expect.records_for(sent.packets)?,
        sent,
        sensor: sensor_out,
        sensor_cpu: stopped.usage.cpu.saturating_sub(sensor_start),
        replay_cpu: tr_usage.cpu.saturating_sub(tr_start),
        host,
        window,
        sensor_rss_kib: stopped.usage.max_rss_kib,
    })
}

/// Frames a replay must have sent before the measured window opens: more
/// than the few IPv6 neighbour-discovery frames a fresh link sends.
const SENDING_STARTED: u64 = 1000;

/// Waits until tcpreplay's interface has sent [`SENDING_STARTED`] frames
/// more than when first seen (tcpreplay preloads the capture first); false
/// when tcpreplay ended (or the task was interrupted) before that.
/// `/proc/<pid>/net/dev` shows the counters of the process's namespace.
fn wait_sending(tr: &mut Proc, iface: &str, interrupted: &AtomicBool) -> Result<bool> {
    let mut first = None;
    loop {
        if tr.try_wait()?.is_some() || interrupted.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", tr.pid()));
        if let Some(tx) = dev.ok().as_deref().and_then(|d| tx_packets(d, iface)) {
            let base = *first.get_or_insert(tx);
            if tx >= base + SENDING_STARTED {
                return Ok(true);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Transmitted packets of `iface` in `/proc/net/dev` text (the 10th number
/// after `iface:`).
fn tx_packets(dev: &str, iface: &str) -> Option<u64> {
    dev.lines().find_map(|l| {
        let (name, counters) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        counters.split_whitespace().nth(9)?.parse().ok()
    })
}

/// `2q 2w sym drv --umem-frames 16384`: queues, workers, RSS, XDP mode as
/// attached, and any further sensor arguments but the mode.
fn config(opts: &Options, xdp_mode: &str) -> String {
    let mut s = format!("{}q {}w", opts.queues, opts.workers.unwrap_or(opts.queues));
    if opts.symmetric_rss {
        s.push_str(" sym");
    }
    s.push(' ');
    s.push_str(match xdp_mode {
        "driver" => "drv",
        "generic" => "skb",
        other => other,
    });
    let mut it = opts.sensor_args.iter();
    while let Some(a) = it.next() {
        if a == "--xdp-mode" {
            it.next();
        } else if !a.starts_with("--xdp-mode=") {
            s.push(' ');
            s.push_str(a);
        }
    }
    s
}

/// Records in an smtp.log, JSON or Zeek TSV (whose `#` lines are headers).
fn count_records(path: &Path) -> Result<u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count() as u64)
}

/// What the sensor should log for a number of replayed frames, from
/// offline runs of the same capture.
struct Expectation {
    bin: PathBuf,
    pcap: PathBuf,
    work: PathBuf,
    /// Sensor arguments that change what is logged (configuration).
    config_args: Vec<String>,
    /// Frames in one pass of the capture.
    frames: u64,
    /// Records of one pass.
    per_pass: u64,
}

impl Expectation {
    fn new(bin_dir: &Path, pcap: &Path, work: &Path, sensor_args: &[String]) -> Result<Self> {
        let mut e = Expectation {
            bin: bin_dir.join("smtp-sensor"),
            pcap: pcap.to_path_buf(),
            work: work.to_path_buf(),
            config_args: config_args(sensor_args),
            frames: crate::pcap::records(pcap)?,
            per_pass: 0,
        };
        if e.frames == 0 {
            bail!("the load capture has no frames");
        }
        e.per_pass = e.offline(pcap)?;
        Ok(e)
    }

    /// Records an offline run of `pcap` writes.
    fn offline(&self, pcap: &Path) -> Result<u64> {
        let logs = self.work.join("offline");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        status(
            Command::new(&self.bin)
                .arg("-r")
                .arg(pcap)
                .arg("-l")
                .arg(&logs)
                .arg("-q")
                .args(&self.config_args),
        )?;
        count_records(&logs.join("smtp.log"))
    }

    /// Whole passes times the per-pass count, plus an offline run of the
    /// frames of the last, partial pass.
    fn records_for(&self, sent: u64) -> Result<u64> {
        let mut n = (sent / self.frames) * self.per_pass;
        let rest = sent % self.frames;
        if rest > 0 {
            let prefix = self.work.join("prefix.pcap");
            crate::pcap::write_prefix(&self.pcap, &prefix, rest)?;
            n += self.offline(&prefix)?;
            let _ = std::fs::remove_file(&prefix);
        }
        Ok(n)
    }
}

/// The sensor arguments an offline run needs to log the same way:
/// `-c`/`--config`, `--set`, `--log-format` (with their values).
fn config_args(sensor_args: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 4] = ["-c", "--config", "--set", "--log-format"];
    let mut out = Vec::new();
    let mut it = sensor_args.iter();
    while let Some(a) = it.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            out.push(a.clone());
            out.extend(it.next().cloned());
        } else if WITH_VALUE
            .iter()
            .any(|f| f.starts_with("--") && a.starts_with(&format!("{f}=")))
        {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn offline_runs_get_the_configuration_arguments_only() {
        let a = strings(&[
            "--xdp-mode",
            "skb",
            "-c",
            "s.toml",
            "--set=spam_threshold=5",
            "--cpus",
            "0-1",
            "--log-format",
            "zeek",
        ]);
        assert_eq!(
            config_args(&a),
            strings(&[
                "-c",
                "s.toml",
                "--set=spam_threshold=5",
                "--log-format",
                "zeek"
            ])
        );
    }

    #[test]
    fn config_names_queues_workers_and_mode() {
        let mut o = args::parse(&strings(&["--queues", "2", "--symmetric-rss"]))
            .unwrap()
            .unwrap();
        assert_eq!(config(&o, "driver"), "2q 2w sym drv");
        o.workers = Some(1);
        o.symmetric_rss = false;
        o.sensor_args = strings(&["--xdp-mode", "skb", "--umem-frames", "16384"]);
        assert_eq!(config(&o, "generic"), "2q 1w skb --umem-frames 16384");
    }

    #[test]
    fn tx_packets_of_one_interface() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
   lt1:     796       9    0    0    0     0          0         0 75081381  300001    0    0    0     0       0          0
";
        assert_eq!(tx_packets(dev, "lt1"), Some(300_001));
        assert_eq!(tx_packets(dev, "lo"), Some(0));
        assert_eq!(tx_packets(dev, "lt0"), None);
    }

    #[test]
    fn records_skip_zeek_headers_and_missing_logs_are_empty() {
        let p = std::env::temp_dir().join(format!("xtask-lt-{}.log", std::process::id()));
        std::fs::write(&p, "#separator \\x09\n#fields\ta\nx\ty\n\nz\tw\n").unwrap();
        assert_eq!(count_records(&p).unwrap(), 2);
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        assert_eq!(count_records(&p).unwrap(), 3);
        let _ = std::fs::remove_file(&p);
        assert_eq!(count_records(&p).unwrap(), 0);
    }
}
