//! Network namespaces joined by a veth pair, and the processes the live
//! tasks (`demo`, `loadtest`) run in them: the sensor on one end, a
//! replayer (smtp-replay, tcpreplay) on the other.
//!
//! Everything is removed on every exit path: the namespaces and the
//! scratch directory by drop guards (errors and panics unwind through
//! them), a process still running by its own guard (SIGINT, then SIGKILL),
//! and SIGINT/SIGTERM to xtask only set a flag ([`interrupt_flag`]) so the
//! task winds down and cleans up instead of dying with the namespaces left
//! behind. A terminal's Ctrl-C also reaches the sensor and tcpreplay
//! themselves (same process group), which stop on their own.
//!
//! Children are reaped with `wait4`, which also gives their CPU time and
//! peak RSS (`ip netns exec` execs the program, so the child is the program
//! itself).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::status;

/// The sensor must start (load and attach XDP) and stop (drain, flush,
/// detach) within this; past it, it is killed.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Two namespaces and the veth pair between them; deleted on drop.
/// The sensor attaches to `sensor_if` in `sensor_ns`; traffic is replayed
/// into `peer_if` in `peer_ns`. Nothing outside the two namespaces is
/// touched.
#[derive(Debug)]
pub struct VethNs {
    pub sensor_ns: String,
    pub peer_ns: String,
    pub sensor_if: String,
    pub peer_if: String,
}

impl VethNs {
    /// Creates `smtp-<tag>-<pid>-{s,p}` with `<tag>0` (sensor end) and
    /// `<tag>1` (peer end), each with `queues` rx and tx queues, both up.
    pub fn create(tag: &str, queues: u32) -> Result<Self> {
        if tag.len() > 14 {
            bail!("interface name tag too long: {tag}");
        }
        let id = std::process::id();
        // Built before anything exists, so a failure half-way is cleaned
        // up by drop too.
        let ns = VethNs {
            sensor_ns: format!("smtp-{tag}-{id}-s"),
            peer_ns: format!("smtp-{tag}-{id}-p"),
            sensor_if: format!("{tag}0"),
            peer_if: format!("{tag}1"),
        };
        let q = queues.to_string();
        let ip = |args: &[&str]| status(Command::new("ip").args(args));
        ip(&["netns", "add", &ns.sensor_ns])?;
        ip(&["netns", "add", &ns.peer_ns])?;
        ip(&[
            "link",
            "add",
            &ns.sensor_if,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "netns",
            &ns.sensor_ns,
            "type",
            "veth",
            "peer",
            "name",
            &ns.peer_if,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "netns",
            &ns.peer_ns,
        ])?;
        ip(&["-n", &ns.sensor_ns, "link", "set", &ns.sensor_if, "up"])?;
        ip(&["-n", &ns.peer_ns, "link", "set", &ns.peer_if, "up"])?;
        Ok(ns)
    }

    /// `ip netns exec <sensor_ns> <program>`, to add arguments to.
    pub fn sensor_cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.sensor_ns]).arg(program);
        c
    }

    /// `ip netns exec <peer_ns> <program>`.
    pub fn peer_cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.peer_ns]).arg(program);
        c
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for ns in [&self.sensor_ns, &self.peer_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        println!(
            "xtask: removed the namespaces {} and {}",
            self.sensor_ns, self.peer_ns
        );
    }
}

/// A task's scratch directory (captures, logs); removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `<tmp>/smtp-sensor-<name>-<pid>`, created empty.
    pub fn create(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("smtp-sensor-{name}-{}", std::process::id()));
        let s = Scratch(dir);
        std::fs::create_dir_all(&s.0)
            .with_context(|| format!("cannot create {}", s.0.display()))?;
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a live task (`demo`, `loadtest`) needs before it starts: root, the
/// interrupt flag (from here on Ctrl-C winds down and cleans up instead of
/// killing xtask), the toolchain, and release builds of `smtp-sensor` and
/// `synth`. Returns the flag and the directory of those binaries.
pub fn prepare_live_task(what: &str) -> Result<(Arc<AtomicBool>, PathBuf)> {
    prepare_live_task_with(what, &[])
}

/// [`prepare_live_task`], building the binaries of `packages` too (in the
/// same cargo run).
pub fn prepare_live_task_with(what: &str, packages: &[&str]) -> Result<(Arc<AtomicBool>, PathBuf)> {
    if !crate::util::is_root() {
        bail!("the {what} attaches XDP and creates network namespaces: run it as root");
    }
    let interrupted = interrupt_flag()?;
    Ok((interrupted, release_binaries(packages)?))
}

/// The toolchain set up, and release builds of `smtp-sensor`, `synth` and
/// the binaries of `packages` (one cargo run); returns their directory.
pub fn release_binaries(packages: &[&str]) -> Result<PathBuf> {
    crate::setup::run()?;
    let mut args = vec![
        "build",
        "--release",
        "-p",
        "smtp-sensor",
        "-p",
        "sensor-tests",
    ];
    for p in packages {
        args.extend(["-p", p]);
    }
    args.push("--bins");
    crate::util::cargo(&args)?;
    Ok(crate::util::target_dir().join("release"))
}

/// A flag set by SIGINT or SIGTERM, in place of dying.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install the signal handler")?;
    }
    Ok(flag)
}

/// How a reaped child ended and what it used.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub status: ExitStatus,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set size, KiB: the child's `VmHWM` at the last look
    /// before it ended (sampled every look; the peak of the program it
    /// last exec'd, e.g. the sensor behind `taskset`), else `wait4`'s
    /// `ru_maxrss`. The latter counts the spawning process's own resident
    /// memory too (the child starts on its address space until it execs),
    /// so a large xtask made every child look as large. A child that ends
    /// within a look or two may show an earlier program's figure.
    pub max_rss_kib: u64,
}

/// `VmHWM` (peak resident set) of process `pid` in KiB, while it runs.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A child reaped with `wait4` (for its [`Usage`]) instead of std's wait.
pub struct Proc {
    child: Child,
    usage: Option<Usage>,
    /// `VmHWM` of the running child at the last look, KiB (0: none yet).
    hwm_kib: u64,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{}`", crate::util::show(cmd)))?;
        Ok(Proc {
            child,
            usage: None,
            hwm_kib: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's piped stdout or stderr, once.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends `sig` unless the child is already reaped (its pid could be
    /// someone else's by then).
    pub fn signal(&self, sig: libc::c_int) {
        if self.usage.is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
            if pid > 0 {
                // SAFETY: kill has no memory preconditions; the pid is our
                // unreaped child.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// CPU time (user + system) used so far, from `/proc/<pid>/stat`;
    /// `None` once reaped or when it cannot be read.
    pub fn cpu_so_far(&self) -> Option<Duration> {
        if self.usage.is_some() {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
        cpu_from_stat(&stat, hz)
    }

    /// Reaps the child if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<Usage>> {
        if let Some(u) = self.usage {
            return Ok(Some(u));
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // The last reading, not the highest: `VmHWM` only grows within one
        // program, and an earlier reading may be of the spawning xtask's
        // address space (before exec) or of `taskset`.
        if let Some(hwm) = vm_hwm_kib(self.child.id()) {
            self.hwm_kib = hwm;
        }
        let mut st: libc::c_int = 0;
        // SAFETY: zeroed rusage is a valid value to be overwritten.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; pid is our child.
        let r = unsafe { libc::wait4(pid, &mut st, libc::WNOHANG, &mut ru) };
        if r < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        let u = Usage {
            status: ExitStatus::from_raw(st),
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
            max_rss_kib: if self.hwm_kib > 0 {
                self.hwm_kib
            } else {
                u64::try_from(ru.ru_maxrss).unwrap_or(0)
            },
        };
        self.usage = Some(u);
        Ok(Some(u))
    }

    /// Waits for the child; SIGKILL after `deadline` (an error then).
    pub fn wait_deadline(&mut self, deadline: Duration) -> Result<Usage> {
        let since = Instant::now();
        loop {
            if let Some(u) = self.try_wait()? {
                return Ok(u);
            }
            if since.elapsed() > deadline {
                self.signal(libc::SIGKILL);
                while self.try_wait()?.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                bail!("process {} did not end within {deadline:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the child to end by itself, forwarding an interrupt to it
    /// as SIGINT and giving up (SIGINT) after `deadline`; returns its usage
    /// and whether it was cut short.
    pub fn wait_interruptible(
        &mut self,
        interrupted: &AtomicBool,
        deadline: Duration,
    ) -> Result<(Usage, bool)> {
        let since = Instant::now();
        loop {
            if let Some(u) = self.try_wait()? {
                return Ok((u, false));
            }
            if interrupted.load(Ordering::Relaxed) || since.elapsed() > deadline {
                self.signal(libc::SIGINT);
                return Ok((self.wait_deadline(DEADLINE)?, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    /// A child still running when its owner gives up (an error) is asked
    /// to stop, then killed: the sensor must detach before its namespace
    /// goes.
    fn drop(&mut self) {
        if self.usage.is_none() {
            self.signal(libc::SIGINT);
            let _ = self.wait_deadline(Duration::from_secs(10));
        }
    }
}

/// utime + stime of a `/proc/<pid>/stat` line (fields 14 and 15, counted
/// after the parenthesised command name, which may contain blanks).
fn cpu_from_stat(stat: &str, hz: u64) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    (hz > 0).then(|| Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Reads a pipe to the end on a thread (so the child never blocks on a
/// full pipe); the text comes back from `join`.
pub fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// The sensor running live in the sensor namespace. Its stderr lines are
/// echoed (prefixed) and kept for the end-of-run summary.
pub struct LiveSensor {
    proc: Proc,
    started: Receiver<()>,
    reader: Option<JoinHandle<Vec<String>>>,
}

/// What a stopped sensor left: usage and its stderr lines.
pub struct Stopped {
    pub usage: Usage,
    pub stderr: Vec<String>,
}

impl LiveSensor {
    /// Starts `cmd` (a [`VethNs::sensor_cmd`] with the sensor's arguments).
    /// Its stderr lines are printed as they come, the periodic stats lines
    /// only when `echo_stats`.
    pub fn spawn(cmd: &mut Command, echo_stats: bool) -> Result<Self> {
        let mut proc = Proc::spawn(cmd.stderr(Stdio::piped()))?;
        let stderr = proc.take_stderr().context("no stderr pipe")?;
        let (tx, started) = channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo_stats || !line.contains("] stats: ") {
                    eprintln!("  sensor | {line}");
                }
                if line.contains("live capture started") {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        Ok(LiveSensor {
            proc,
            started,
            reader: Some(reader),
        })
    }

    /// Waits until the sensor says capture started; an error when it ends,
    /// takes longer than [`DEADLINE`], or the task is interrupted.
    pub fn wait_started(&mut self, interrupted: &AtomicBool) -> Result<()> {
        let since = Instant::now();
        while self
            .started
            .recv_timeout(Duration::from_millis(100))
            .is_err()
        {
            if self.proc.try_wait()?.is_some()
                || since.elapsed() > DEADLINE
                || interrupted.load(Ordering::Relaxed)
            {
                bail!("smtp-sensor did not start; see its messages above");
            }
        }
        Ok(())
    }

    /// The sensor's CPU time so far (see [`Proc::cpu_so_far`]).
    pub fn cpu_so_far(&self) -> Option<Duration> {
        self.proc.cpu_so_far()
    }

    /// SIGINT: the sensor drains its rings, flushes open connections and
    /// the current spam period, closes its logs and detaches XDP. Waits
    /// for it (SIGKILL after [`DEADLINE`]).
    pub fn stop(mut self) -> Result<Stopped> {
        self.proc.signal(libc::SIGINT);
        let usage = self.proc.wait_deadline(DEADLINE);
        let stderr = self
            .reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        Ok(Stopped {
            usage: usage?,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        assert!(vm_hwm_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn peak_rss_is_the_childs_own() {
        // 256 MiB resident here; a small child must not look as large
        // (wait4's ru_maxrss counts the address space it started on).
        let big = vec![1u8; 256 << 20];
        let mut p = Proc::spawn(Command::new("sh").args(["-c", "sleep 0.3"])).unwrap();
        let u = p.wait_deadline(Duration::from_secs(10)).unwrap();
        assert!(u.max_rss_kib > 0);
        assert!(u.max_rss_kib < 64 << 10, "{} KiB", u.max_rss_kib);
        assert_eq!(big.iter().map(|&b| u64::from(b)).sum::<u64>(), 256 << 20);
    }

    #[test]
    fn usage_of_a_reaped_child() {
        let mut p = Proc::spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let u = p.wait_deadline(Duration::from_secs(10)).unwrap();
        assert_eq!(u.status.code(), Some(3));
        assert!(u.max_rss_kib > 0);
        // Reaped: no further signals, try_wait keeps the result.
        p.signal(libc::SIGKILL);
        assert_eq!(p.try_wait().unwrap().unwrap().status.code(), Some(3));
    }

    #[test]
    fn cpu_time_from_proc_stat() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_from_stat(line, 100), Some(Duration::from_millis(3_000)));
        assert_eq!(cpu_from_stat("garbage", 100), None);
        let p = Proc::spawn(Command::new("sleep").arg("5")).unwrap();
        assert!(p.cpu_so_far().is_some());
    }

    #[test]
    fn interrupt_stops_the_child() {
        let mut p = Proc::spawn(Command::new("sleep").arg("30")).unwrap();
        let flag = AtomicBool::new(true);
        let (u, cut) = p
            .wait_interruptible(&flag, Duration::from_secs(60))
            .unwrap();
        assert!(cut);
        assert_eq!(u.status.signal(), Some(libc::SIGINT));
    }

    #[test]
    fn long_tags_are_refused_before_anything_exists() {
        let e = VethNs::create("a-much-too-long-tag", 1).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }
}
