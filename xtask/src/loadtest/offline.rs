//! Offline runs (`smtp-sensor -r`) of the load capture: what the sensor
//! should log for the frames a live run was sent, and what the same work
//! costs without the live path, as the yardstick for the live figures.
//!
//! The expected record count: one offline run gives the count per pass;
//! smtp-replay sends whole passes, each new connections (`--unique-ip`),
//! so `k` passes should log `k` times that. tcpreplay may stop inside a
//! pass: `k` whole passes and `m` more frames should log `k` times the
//! count plus what an offline run of the first `m` frames logs (open
//! connections are flushed at the end of a file and at SIGINT alike).
//!
//! The cost: the same offline run, reaped with `wait4`: user + system CPU
//! and wall time per frame, and peak RSS, once per worker count the
//! configurations use (the live figures are compared with the offline run
//! with as many workers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::{DEADLINE, Proc};
use crate::util::show;

/// What one offline run of a whole pass cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub workers: u32,
    /// Frames of the pass.
    pub frames: u64,
    /// User + system CPU time.
    pub cpu: Duration,
    pub wall: Duration,
    pub max_rss_kib: u64,
}

impl Cost {
    /// CPU nanoseconds per frame.
    pub fn cpu_ns(&self) -> f64 {
        per_frame_ns(self.cpu, self.frames)
    }

    /// Wall-clock nanoseconds per frame.
    pub fn wall_ns(&self) -> f64 {
        per_frame_ns(self.wall, self.frames)
    }
}

fn per_frame_ns(t: Duration, frames: u64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    t.as_secs_f64() * 1e9 / frames as f64
}

/// The offline side of a load test, for one capture.
pub struct Offline {
    bin: PathBuf,
    pcap: PathBuf,
    work: PathBuf,
    /// Sensor arguments that change what is logged (configuration).
    config_args: Vec<String>,
    /// Frames in one pass of the capture.
    pub frames: u64,
    /// Records of one pass.
    pub per_pass: u64,
    /// Cost of one pass, by worker count, as measured so far.
    costs: Vec<Cost>,
}

impl Offline {
    /// Counts the capture's frames and runs it offline on one worker.
    pub fn new(sensor: &Path, pcap: &Path, work: &Path, sensor_args: &[String]) -> Result<Self> {
        let mut o = Offline {
            bin: sensor.to_owned(),
            pcap: pcap.to_path_buf(),
            work: work.to_path_buf(),
            config_args: config_args(sensor_args),
            frames: crate::pcap::records(pcap)?,
            per_pass: 0,
            costs: Vec::new(),
        };
        if o.frames == 0 {
            bail!("the load capture has no frames");
        }
        let (records, cost) = o.run(pcap, o.frames, 1)?;
        o.per_pass = records;
        o.costs.push(cost);
        Ok(o)
    }

    /// The cost of one pass on `workers` workers (measured on first use;
    /// any worker count must log the same records).
    pub fn cost(&mut self, workers: u32) -> Result<Cost> {
        if let Some(c) = self.costs.iter().find(|c| c.workers == workers) {
            return Ok(*c);
        }
        let (records, cost) = self.run(&self.pcap, self.frames, workers)?;
        if records != self.per_pass {
            bail!(
                "offline on {workers} workers the capture gives {records} records, on one {}",
                self.per_pass
            );
        }
        self.costs.push(cost);
        Ok(cost)
    }

    /// Whole passes times the per-pass count, plus an offline run of the
    /// frames of the last, partial pass.
    pub fn records_for(&self, sent: u64) -> Result<u64> {
        let mut n = (sent / self.frames) * self.per_pass;
        let rest = sent % self.frames;
        if rest > 0 {
            let prefix = self.work.join("prefix.pcap");
            crate::pcap::write_prefix(&self.pcap, &prefix, rest)?;
            n += self.run(&prefix, rest, 1)?.0;
            let _ = std::fs::remove_file(&prefix);
        }
        Ok(n)
    }

    /// Runs `pcap` (of `frames` frames) offline on `workers` workers: the
    /// records it writes and what it cost.
    fn run(&self, pcap: &Path, frames: u64, workers: u32) -> Result<(u64, Cost)> {
        let logs = self.work.join("offline");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-r")
            .arg(pcap)
            .arg("-l")
            .arg(&logs)
            .arg("-q")
            .args(["--workers", &workers.to_string()])
            .args(&self.config_args);
        println!("xtask: $ {}", show(&cmd));
        let started = Instant::now();
        let usage = Proc::spawn(&mut cmd)?.wait_deadline(DEADLINE * 10)?;
        let wall = started.elapsed();
        if !usage.status.success() {
            bail!("`{}` failed ({})", show(&cmd), usage.status);
        }
        let cost = Cost {
            workers,
            frames,
            cpu: usage.cpu,
            wall,
            max_rss_kib: usage.max_rss_kib,
        };
        Ok((count_records(&logs.join("smtp.log"))?, cost))
    }
}

/// Records in an smtp.log, JSON or Zeek TSV (whose `#` lines are headers).
pub fn count_records(path: &Path) -> Result<u64> {
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
    fn records_skip_zeek_headers_and_missing_logs_are_empty() {
        let p = std::env::temp_dir().join(format!("xtask-lt-{}.log", std::process::id()));
        std::fs::write(&p, "#separator \\x09\n#fields\ta\nx\ty\n\nz\tw\n").unwrap();
        assert_eq!(count_records(&p).unwrap(), 2);
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        assert_eq!(count_records(&p).unwrap(), 3);
        let _ = std::fs::remove_file(&p);
        assert_eq!(count_records(&p).unwrap(), 0);
    }

    #[test]
    fn cost_per_frame() {
        let c = Cost {
            workers: 1,
            frames: 2_000_000,
            cpu: Duration::from_secs(1),
            wall: Duration::from_millis(500),
            max_rss_kib: 0,
        };
        assert!((c.cpu_ns() - 500.0).abs() < 1e-9);
        assert!((c.wall_ns() - 250.0).abs() < 1e-9);
        assert_eq!(Cost::default().cpu_ns(), 0.0);
    }
}
