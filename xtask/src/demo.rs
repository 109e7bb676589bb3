//! `cargo xtask demo`: the sensor live on a real interface, end to end.
//!
//! Sets up, builds (release), writes the demo capture (`synth demo`:
//! ordinary mail, a spamming host, a block-listed host), creates two
//! network namespaces joined by a veth pair with four queues, attaches the
//! sensor to one end, replays the capture into the other with tcpreplay,
//! stops the sensor with SIGINT and prints the capture statistics, then
//! smtp.log and notice.log as tables.
//!
//! The namespaces are removed on every exit path (see `netns`: a drop
//! guard, and Ctrl-C only sets a flag here, so the demo winds down and
//! cleans up instead of dying with the namespaces left behind).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{LiveSensor, Proc, Scratch, VethNs, prepare_live_task};
use crate::table::{notice_table, smtp_table};
use crate::util::status;

/// Veth queues: the sensor runs one capture thread per rx queue.
const QUEUES: u32 = 4;
/// Replay rate: a few seconds for the demo capture, far below what loses
/// frames on a veth.
const REPLAY_PPS: &str = "2000";
/// Time for the last replayed frames to reach the logs before the stop.
const SETTLE: Duration = Duration::from_secs(2);
/// The replay of the demo capture takes seconds; past this it is stopped.
const REPLAY_DEADLINE: Duration = Duration::from_secs(300);

pub fn run() -> Result<()> {
    let (interrupted, bin_dir) = prepare_live_task("demo")?;
    let work = Scratch::create("demo")?;
    let logs = work.0.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let pcap = work.0.join("demo.pcap");
    status(
        std::process::Command::new(bin_dir.join("synth"))
            .arg("demo")
            .arg(&pcap),
    )?;

    let ns = VethNs::create("demo", QUEUES)?;
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
    ns: &VethNs,
    bin_dir: &Path,
    pcap: &Path,
    work: &Path,
    interrupted: &AtomicBool,
) -> Result<String> {
    let stats = work.join("stats.json");
    let mut sensor = LiveSensor::spawn(
        ns.sensor_cmd(bin_dir.join("smtp-sensor"))
            .args(["-i", &ns.sensor_if, "-l"])
            .arg(work.join("logs"))
            .arg("--stats-json")
            .arg(&stats)
            .args(["--stats-interval", "1"]),
        true,
    )?;
    sensor.wait_started(interrupted)?;
    let frames = crate::pcap::records(pcap)?;
    println!("xtask: replaying {frames} frames at {REPLAY_PPS} packets/s into the veth");
    let replay = Proc::spawn(
        ns.peer_cmd("tcpreplay")
            .args(["-q", "-i", &ns.peer_if, "--pps", REPLAY_PPS])
            .arg(pcap)
            .stdout(Stdio::null()),
    )
    .and_then(|mut p| p.wait_interruptible(interrupted, REPLAY_DEADLINE));
    if !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(SETTLE);
    }
    let stopped = sensor.stop();
    let (replayed, cut) = replay?;
    if !cut && !replayed.status.success() {
        bail!("tcpreplay failed ({})", replayed.status);
    }
    let st = stopped?.usage.status;
    if !st.success() {
        bail!("smtp-sensor exited with {st}");
    }
    let text = std::fs::read_to_string(&stats).context("the sensor wrote no statistics")?;
    Ok(stats_summary(&text, frames))
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
