//! The sender of one measured run, whichever program it is: started in the
//! peer namespace, watched until frames flow (which opens the measured
//! window), reaped with its CPU time, and what it says it offered.
//!
//! smtp-replay (the default) is the only sender here that can overload the
//! sensor; tcpreplay stays for comparison with earlier figures.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::{Rate, SenderKind};
use super::layout::Layout;
use super::{smtp_replay, tcpreplay};
use crate::netns::{Proc, Usage, VethNs, collect};

/// Past `--seconds` and one pass at the asked rate, this much longer means
/// the sender hangs (tcpreplay preloads the capture, smtp-replay loads its
/// maps, both finish their pass).
const SLACK: Duration = Duration::from_secs(300);

/// What the sender says it offered, whichever it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Offered {
    /// Frames the interface took.
    pub frames: u64,
    pub bytes: u64,
    /// From the first frame to the last.
    pub seconds: f64,
    pub pps: f64,
    pub gbps: f64,
    /// Passes over the capture (whole ones with smtp-replay).
    pub passes: f64,
    /// Frames the sender could not send (tcpreplay: the interface
    /// refused; smtp-replay: failed to build).
    pub failed: u64,
    /// Frames per lane (smtp-replay; empty for tcpreplay), to hold
    /// against the frames per rx queue the sensor counted.
    pub lanes: Vec<u64>,
}

impl Offered {
    fn from_tcpreplay(s: &tcpreplay::Sent, frames_per_pass: u64) -> Self {
        Offered {
            frames: s.packets,
            bytes: s.bytes,
            seconds: s.seconds,
            pps: s.pps,
            gbps: s.mbps / 1000.0,
            passes: s.packets as f64 / frames_per_pass.max(1) as f64,
            failed: s.failed,
            lanes: Vec::new(),
        }
    }

    fn from_replay(r: &smtp_replay::Report) -> Self {
        Offered {
            frames: r.frames,
            bytes: r.bytes,
            seconds: r.seconds,
            pps: r.pps,
            gbps: r.gbps,
            passes: r.passes,
            failed: r.failed,
            lanes: r.lane_frames.clone(),
        }
    }
}

/// One run's sending.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub kind: SenderKind,
    pub ns: &'a VethNs,
    pub bin_dir: &'a Path,
    pub pcap: &'a Path,
    pub rate: Rate,
    pub seconds: u64,
    pub layout: &'a Layout,
    /// Frames of one pass (the capture's records).
    pub frames_per_pass: u64,
    /// The run's directory (smtp-replay's report goes there).
    pub dir: &'a Path,
    /// Pin the sender to this CPU.
    pub cpu: Option<usize>,
    /// smtp-replay's `--burst`.
    pub burst: Option<u32>,
}

impl Job<'_> {
    /// `program` in the peer namespace, on the job's CPU when it has one.
    fn peer_cmd(&self, program: std::path::PathBuf) -> std::process::Command {
        match self.cpu {
            Some(cpu) => {
                let mut c = self.ns.peer_cmd("taskset");
                c.args(["-c", &cpu.to_string()]).arg(program);
                c
            }
            None => self.ns.peer_cmd(program),
        }
    }
}

/// The sender's output, collected while it runs.
enum Output {
    Replay {
        stderr: smtp_replay::Stderr,
        json: std::path::PathBuf,
    },
    Tcpreplay {
        stdout: JoinHandle<String>,
        iface: String,
    },
}

/// A running sender.
pub struct Running {
    proc: Proc,
    output: Output,
    frames_per_pass: u64,
    deadline: Duration,
}

impl Running {
    /// Starts the sender in the peer namespace; its output is collected
    /// on threads, so it never blocks on a full pipe.
    pub fn start(job: &Job) -> Result<Self> {
        let pass_secs = match job.rate {
            Rate::Pps(r) => job.frames_per_pass as f64 / r as f64,
            Rate::Top => 0.0,
        };
        let deadline =
            Duration::from_secs(job.seconds) + Duration::from_secs_f64(pass_secs) + SLACK;
        let (proc, output) = match job.kind {
            SenderKind::Replay => {
                let json = job.dir.join("replay.json");
                let plan = smtp_replay::Plan {
                    iface: &job.ns.peer_if,
                    rate: job.rate,
                    seconds: job.seconds,
                    lanes: job.layout.queues,
                    split: job.layout.split(),
                    json: &json,
                    pcap: job.pcap,
                    burst: job.burst,
                };
                let mut cmd = job.peer_cmd(job.bin_dir.join("smtp-replay"));
                cmd.args(smtp_replay::args(&plan))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let mut proc = Proc::spawn(&mut cmd)?;
                let stderr =
                    smtp_replay::Stderr::watch(proc.take_stderr().context("no stderr pipe")?);
                (proc, Output::Replay { stderr, json })
            }
            SenderKind::Tcpreplay => {
                let mut cmd = job.peer_cmd("tcpreplay".into());
                tcpreplay::command(&mut cmd, &job.ns.peer_if, job.rate, job.seconds, job.pcap)
                    .stdout(Stdio::piped());
                let mut proc = Proc::spawn(&mut cmd)?;
                let stdout = collect(proc.take_stdout().context("no stdout pipe")?);
                let iface = job.ns.peer_if.clone();
                (proc, Output::Tcpreplay { stdout, iface })
            }
        };
        Ok(Running {
            proc,
            output,
            frames_per_pass: job.frames_per_pass,
            deadline,
        })
    }

    /// Waits until frames flow; false when the sender ended (or the task
    /// was interrupted) first.
    pub fn wait_sending(&mut self, interrupted: &AtomicBool) -> Result<bool> {
        match &self.output {
            Output::Tcpreplay { iface, .. } => {
                let iface = iface.clone();
                tcpreplay::wait_sending(&mut self.proc, &iface, interrupted)
            }
            Output::Replay { stderr, .. } => loop {
                if let Some(seen) = stderr.sending(Duration::from_millis(20)) {
                    return Ok(seen);
                }
                if interrupted.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                if self.proc.try_wait()?.is_some() {
                    // Its last lines may still be in the pipe.
                    return Ok(stderr.sending(Duration::from_secs(5)) == Some(true));
                }
            },
        }
    }

    /// CPU time so far (see [`Proc::cpu_so_far`]).
    pub fn cpu_so_far(&self) -> Option<Duration> {
        self.proc.cpu_so_far()
    }

    /// Waits for the sender to end by itself (an interrupt or the deadline
    /// stops it); its usage and whether it was cut short.
    pub fn wait(&mut self, interrupted: &AtomicBool) -> Result<(Usage, bool)> {
        self.proc.wait_interruptible(interrupted, self.deadline)
    }

    /// What it offered, once reaped: an error when it was cut short,
    /// failed, or never got to send.
    pub fn offered(self, usage: &Usage, cut: bool, sending: bool) -> Result<Offered> {
        let name = match self.output {
            Output::Replay { .. } => SenderKind::Replay.name(),
            Output::Tcpreplay { .. } => SenderKind::Tcpreplay.name(),
        };
        let (text, report) = match self.output {
            Output::Replay { stderr, json } => {
                let report = std::fs::read_to_string(&json);
                (stderr.text(), Some((json, report)))
            }
            Output::Tcpreplay { stdout, .. } => (stdout.join().unwrap_or_default(), None),
        };
        if cut {
            bail!("{name} did not finish in time:\n{text}");
        }
        if !usage.status.success() {
            bail!("{name} failed ({}):\n{text}", usage.status);
        }
        if !sending {
            bail!("{name} sent nothing:\n{text}");
        }
        match report {
            None => Ok(Offered::from_tcpreplay(
                &tcpreplay::parse(&text)?,
                self.frames_per_pass,
            )),
            Some((path, json)) => {
                let json =
                    json.with_context(|| format!("smtp-replay wrote no {}", path.display()))?;
                let r = smtp_replay::parse(&json)?;
                if r.interrupted {
                    bail!("smtp-replay was interrupted: its last pass is partial");
                }
                if r.skipped > 0 || r.frames_per_pass != self.frames_per_pass {
                    bail!(
                        "smtp-replay sends {} of the capture's {} frames ({} skipped): \
                         the expected record count would be wrong",
                        r.frames_per_pass,
                        self.frames_per_pass,
                        r.skipped
                    );
                }
                Ok(Offered::from_replay(&r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpreplay_figures_in_common_units() {
        let s = tcpreplay::Sent {
            packets: 300_000,
            bytes: 75_000_000,
            seconds: 3.0,
            pps: 100_000.0,
            mbps: 200.0,
            failed: 2,
        };
        let o = Offered::from_tcpreplay(&s, 120_000);
        assert!((o.gbps - 0.2).abs() < 1e-12, "{o:?}");
        assert!((o.passes - 2.5).abs() < 1e-12, "{o:?}");
        assert_eq!((o.frames, o.failed), (300_000, 2));
    }
}
