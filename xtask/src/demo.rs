//! `cargo xtask demo`: the sensor live on a real interface, end to end.
//!
//! Sets up, builds (release), writes the demo capture (`synth demo`:
//! ordinary mail, a spamming host, a block-listed host), creates two
//! network namespaces joined by a veth pair with four queues, attaches the
//! sensor to one end, replays the capture into the other with tcpreplay,
//! stops the sensor with SIGINT and prints the capture statistics, then
//! smtp.log and notice.log as tables.
//!
//! The namespaces are removed on every exit path: errors and panics drop
//! the guard, and SIGINT/SIGTERM (Ctrl-C) only set a flag here — the
//! terminal's SIGINT stops the sensor and tcpreplay themselves — so the
//! demo winds down and cleans up instead of dying with the namespaces left
//! behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::table::{notice_table, smtp_table};
use crate::util::{cargo, is_root, status, target_dir};

/// Veth queues: the sensor runs one capture thread per rx queue.
const QUEUES: &str = "4";
/// Replay rate: a few seconds for the demo capture, far below what loses
/// frames on a veth.
const REPLAY_PPS: &str = "2000";
/// Time for the last replayed frames to reach the logs before the stop.
const SETTLE: Duration = Duration::from_secs(2);
/// The sensor must start (load and attach XDP) and stop within this.
const DEADLINE: Duration = Duration::from_secs(60);

/// Namespaces and the veth pair; deleted on drop.
struct Netns {
    sensor_ns: String,
    peer_ns: String,
}

impl Netns {
    fn create() -> Result<Self> {
        let id = std::process::id();
        // Built before anything exists, so a failure half-way is cleaned
        // up by drop too.
        let ns = Netns {
            sensor_ns: format!("smtp-demo-{id}-s"),
            peer_ns: format!("smtp-demo-{id}-p"),
        };
        let ip = |args: &[&str]| status(Command::new("ip").args(args));
        ip(&["netns", "add", &ns.sensor_ns])?;
        ip(&["netns", "add", &ns.peer_ns])?;
        ip(&[
            "link",
            "add",
            "demo0",
            "numrxqueues",
            QUEUES,
            "numtxqueues",
            QUEUES,
            "netns",
            &ns.sensor_ns,
            "type",
            "veth",
            "peer",
            "name",
            "demo1",
            "numrxqueues",
            QUEUES,
            "numtxqueues",
            QUEUES,
            "netns",
            &ns.peer_ns,
        ])?;
        ip(&["-n", &ns.sensor_ns, "link", "set", "demo0", "up"])?;
        ip(&["-n", &ns.peer_ns, "link", "set", "demo1", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.sensor_ns, &self.peer_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        println!("xtask: removed the demo namespaces");
    }
}

/// The demo's scratch directory; removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run() -> Result<()> {
    if !is_root() {
        bail!("the demo attaches XDP and creates network namespaces: run it as root");
    }
    crate::setup::run()?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "smtp-sensor",
        "-p",
        "sensor-tests",
        "--bins",
    ])?;
    let bin_dir = target_dir().join("release");
    let work =
        Scratch(std::env::temp_dir().join(format!("smtp-sensor-demo-{}", std::process::id())));
    let logs = work.0.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let pcap = work.0.join("demo.pcap");
    status(Command::new(bin_dir.join("synth")).arg("demo").arg(&pcap))?;

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("cannot install the signal handler")?;
    }
    let ns = Netns::create()?;
    let result = capture(&ns, &bin_dir, &pcap, &work.0, &interrupted);
    drop(ns);
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let stats = result?;
    println!("\nxtask: capture statistics\n{stats}");
    show(&logs)
}

/// Runs the sensor on the veth, replays the capture, stops the sensor;
/// returns the capture statistics as text.
fn capture(
    ns: &Netns,
    bin_dir: &Path,
    pcap: &Path,
    work: &Path,
    interrupted: &AtomicBool,
) -> Result<String> {
    let stats = work.join("stats.json");
    let mut sensor = Command::new("ip")
        .args(["netns", "exec", &ns.sensor_ns])
        .arg(bin_dir.join("smtp-sensor"))
        .args(["-i", "demo0", "-l"])
        .arg(work.join("logs"))
        .arg("--stats-json")
        .arg(&stats)
        .args(["--stats-interval", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start smtp-sensor")?;
    let stderr = sensor.stderr.take().context("no stderr pipe")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  sensor | {line}");
            if line.contains("live capture started") {
                let _ = tx.send(());
            }
        }
    });
    let started = Instant::now();
    while rx.recv_timeout(Duration::from_millis(100)).is_err() {
        if sensor.try_wait()?.is_some()
            || started.elapsed() > DEADLINE
            || interrupted.load(Ordering::Relaxed)
        {
            let _ = stop(&mut sensor);
            let _ = reader.join();
            bail!("smtp-sensor did not start; see its messages above");
        }
    }
    let frames = pcap_records(pcap)?;
    println!("xtask: replaying {frames} frames at {REPLAY_PPS} packets/s into the veth");
    let replay = status(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.peer_ns,
                "tcpreplay",
                "-q",
                "-i",
                "demo1",
                "--pps",
                REPLAY_PPS,
            ])
            .arg(pcap),
    );
    if !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(SETTLE);
    }
    // SIGINT: the sensor flushes open connections and the current spam
    // period, closes its logs and detaches its XDP program.
    let st = stop(&mut sensor);
    let _ = reader.join();
    replay?;
    let st = st?;
    if !st.success() {
        bail!("smtp-sensor exited with {st}");
    }
    let text = std::fs::read_to_string(&stats).context("the sensor wrote no statistics")?;
    Ok(stats_summary(&text, frames))
}

/// SIGINT to the sensor, then waits for it (SIGKILL after the deadline).
fn stop(sensor: &mut Child) -> Result<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-INT", &sensor.id().to_string()])
        .status();
    let asked = Instant::now();
    loop {
        if let Some(st) = sensor.try_wait()? {
            return Ok(st);
        }
        if asked.elapsed() > DEADLINE {
            let _ = sensor.kill();
            let st = sensor.wait()?;
            bail!("smtp-sensor did not stop within {DEADLINE:?} of SIGINT ({st})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records in a classic pcap file (what tcpreplay sends).
fn pcap_records(path: &Path) -> Result<u64> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut at = 24;
    let mut n = 0;
    while let Some(len) = data.get(at + 8..at + 12) {
        let incl = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at += 16 + incl;
        n += 1;
    }
    Ok(n)
}

/// The final statistics, totals first, one `key: value` a line; the raw
/// JSON when it is not an object.
fn stats_summary(json: &str, replayed: u64) -> String {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_owned();
    };
    let mut out = format!("  replayed frames: {replayed}\n");
    for (k, v) in &m {
        match v {
            serde_json::Value::Object(inner) => {
                let parts: Vec<String> = inner.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("  {k}: {}\n", parts.join(" ")));
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    let text = match item {
                        serde_json::Value::Object(o) => o
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => other.to_string(),
                    };
                    out.push_str(&format!("  {k}: {text}\n"));
                }
            }
            other => out.push_str(&format!("  {k}: {other}\n")),
        }
    }
    out
}

/// Prints smtp.log and notice.log as tables; an error when the notices the
/// demo capture is built to raise are missing.
fn show(logs: &Path) -> Result<()> {
    let read = |name: &str| -> Result<String> {
        let p = logs.join(name);
        std::fs::read_to_string(&p).with_context(|| format!("the sensor wrote no {}", p.display()))
    };
    let smtp = read("smtp.log")?;
    let notices = read("notice.log")?;
    println!("\nxtask: smtp.log\n{}", smtp_table(&smtp)?);
    println!("xtask: notice.log\n{}", notice_table(&notices)?);
    let missing: Vec<&str> = ["SMTP::SMTP_PossibleSpam", "SMTP::SMTP_BL_Blocked_Host"]
        .into_iter()
        .filter(|n| !notices.contains(&format!("\"{n}\"")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the demo capture should have raised {} (see the sensor's messages above)",
            missing.join(" and ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pcap_records() {
        let mut f = vec![0u8; 24];
        for len in [60u32, 1514] {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(std::iter::repeat_n(0u8, len as usize));
        }
        let p = std::env::temp_dir().join(format!("xtask-pcap-{}", std::process::id()));
        std::fs::write(&p, &f).unwrap();
        assert_eq!(pcap_records(&p).unwrap(), 2);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn stats_are_listed_by_key() {
        let s = stats_summary(
            r#"{"rx_frames":10,"xdp":{"xdp_seen":12},"queues":[{"queue":0}]}"#,
            10,
        );
        assert!(s.contains("  rx_frames: 10\n"), "{s}");
        assert!(s.contains("  xdp: xdp_seen=12\n"), "{s}");
        assert!(s.contains("  queues: queue=0\n"), "{s}");
        assert_eq!(stats_summary("oops", 1), "oops");
    }
}
