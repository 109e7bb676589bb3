//! `smtp-sensor -i` running in a test's sensor namespace: start it, wait
//! for lines it logs, replay captures into the peer end, signal it, and
//! read its logs. The process is killed on drop, so a failing test leaves
//! nothing running (the namespaces go with the `VethPair`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::netns::VethPair;
use crate::sensor_bin::sensor_bin;

/// A live sensor process and the lines it wrote on stderr.
pub struct LiveSensor {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line seen so far.
    pub log: Vec<String>,
    pub logdir: PathBuf,
}

impl LiveSensor {
    /// Starts the sensor on the pair's sensor end with `extra` arguments,
    /// and waits until it captures.
    pub fn start(pair: &VethPair, logdir: &Path, extra: &[&str]) -> LiveSensor {
        Self::start_bin(sensor_bin(), pair, logdir, extra)
    }

    /// [`LiveSensor::start`] with another build of the sensor (`bin`).
    pub fn start_bin(bin: &Path, pair: &VethPair, logdir: &Path, extra: &[&str]) -> LiveSensor {
        let mut cmd = pair.sensor_cmd(bin.to_str().expect("UTF-8 path"));
        cmd.args(["-i", &pair.sensor_if, "-l"])
            .arg(logdir)
            .args(extra);
        Self::spawn(cmd, logdir)
    }

    /// Spawns `cmd` (a sensor command line, possibly wrapped, that execs
    /// into the sensor) writing to `logdir`, and waits until it captures.
    pub fn spawn(mut cmd: std::process::Command, logdir: &Path) -> LiveSensor {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smtp-sensor");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[sensor] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = LiveSensor {
            child,
            lines,
            log: Vec::new(),
            logdir: logdir.to_owned(),
        };
        s.wait_for("live capture started", Duration::from_secs(60));
        s
    }

    /// Waits until a stderr line contains `needle`; panics (killing the
    /// sensor on drop) when it does not come within `limit` or the sensor
    /// exits first, showing everything it logged.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) => self.log.push(l),
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        self.drain();
                        panic!(
                            "smtp-sensor exited ({st}) before logging {needle:?}:\n{}",
                            self.log.join("\n")
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "smtp-sensor did not log {needle:?} within {limit:?}:\n{}",
                        self.log.join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "smtp-sensor closed stderr before logging {needle:?}:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Waits (at most `limit`) for the sensor to exit; collects the rest of
    /// its lines into `log`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for smtp-sensor") {
                self.drain();
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sensor did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain(&mut self) {
        // The reader thread ends at EOF; collect what it read.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(l);
        }
    }

    /// The sensor's process id (`ip netns exec` execs into it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the sensor.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// SIGTERM, then waits for the exit and collects the remaining lines.
    pub fn stop(self) -> (ExitStatus, Vec<String>) {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGINT or SIGTERM), then waits for the exit and
    /// collects the remaining lines.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, Vec<String>) {
        self.signal(signal);
        let status = self.wait(Duration::from_secs(60));
        (status, std::mem::take(&mut self.log))
    }

    /// Lines of `<logdir>/<name>` now (empty when it does not exist).
    pub fn log_lines(&self, name: &str) -> Vec<String> {
        read_lines(&self.logdir.join(name))
    }

    /// Waits until `<logdir>/<name>` holds at least `n` lines.
    pub fn wait_for_lines(&self, name: &str, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.log_lines(name);
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{name} has {} lines, expected {n}: {lines:?}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LiveSensor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Replays `pcap` into the pair's peer end at `pps` frames per second.
pub fn replay(pair: &VethPair, pcap: &Path, pps: u32) {
    let out = pair
        .peer_cmd("tcpreplay")
        .args(["-i", &pair.peer_if, "--pps", &pps.to_string(), "-q"])
        .arg(pcap)
        .output()
        .expect("run tcpreplay");
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Non-empty lines of a file (none when it does not exist).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
