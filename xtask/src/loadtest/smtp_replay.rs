//! `smtp-replay`, the project's live-frames replayer: the command for one
//! rate, the stderr line that says frames start to flow, and its `--json`
//! report.
//!
//! It runs in the peer namespace and sends for `--seconds` in whole passes
//! (the frames sent are then `passes × frames_per_pass`, which is what
//! makes the expected record count exact); every pass after the first has
//! its addresses shifted (`--unique-ip`), so each pass is new connections
//! rather than a replay of connections the sensor has already closed. One
//! lane per sensor queue, sent from the CPU whose number is the queue's.
//! Loading a large capture into the maps takes seconds; it says
//! `smtp-replay: … loaded …; sending` on stderr right before the first
//! frame, which opens the measured window.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ChildStderr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::args::Rate;

/// What one replay is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub iface: &'a str,
    pub rate: Rate,
    pub seconds: u64,
    /// One per sensor rx queue.
    pub lanes: u32,
    /// `flow` or `tuple` (see `Layout::split`).
    pub split: &'a str,
    pub json: &'a Path,
    pub pcap: &'a Path,
    /// `--burst` (smtp-replay's default when `None`).
    pub burst: Option<u32>,
}

/// smtp-replay's arguments after `smtp-replay`.
pub fn args(p: &Plan) -> Vec<String> {
    let mut a: Vec<String> = vec![
        p.pcap.to_string_lossy().into_owned(),
        "-i".into(),
        p.iface.into(),
        "--seconds".into(),
        p.seconds.to_string(),
        "--unique-ip".into(),
        "--lanes".into(),
        p.lanes.to_string(),
        "--split".into(),
        p.split.into(),
        "--json".into(),
        p.json.to_string_lossy().into_owned(),
        "-q".into(),
    ];
    if let Rate::Pps(r) = p.rate {
        a.extend(["--pps".into(), r.to_string()]);
    }
    if let Some(b) = p.burst {
        a.extend(["--burst".into(), b.to_string()]);
    }
    a
}

/// True for the line smtp-replay prints right before the first frame.
fn is_sending(line: &str) -> bool {
    line.starts_with("smtp-replay: ") && line.contains(" loaded ") && line.ends_with("; sending")
}

/// smtp-replay's stderr, read on a thread: every line echoed (prefixed)
/// and kept; the sending line signalled.
pub struct Stderr {
    sending: Receiver<()>,
    reader: JoinHandle<Vec<String>>,
}

impl Stderr {
    pub fn watch(pipe: ChildStderr) -> Self {
        let (tx, sending) = channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("  replay | {line}");
                if is_sending(&line) {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        Stderr { sending, reader }
    }

    /// Waits up to `timeout` for the sending line: `Some(true)` seen,
    /// `Some(false)` the replayer closed stderr (exited) without it, `None`
    /// not yet.
    pub fn sending(&self, timeout: Duration) -> Option<bool> {
        match self.sending.recv_timeout(timeout) {
            Ok(()) => Some(true),
            Err(RecvTimeoutError::Disconnected) => Some(false),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// Everything it wrote (once it has exited).
    pub fn text(self) -> String {
        self.reader.join().unwrap_or_default().join("\n")
    }
}

/// The figures of smtp-replay's `--json` report the load test uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub frames: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub pps: f64,
    pub gbps: f64,
    pub passes: f64,
    pub frames_per_pass: u64,
    pub lane_frames: Vec<u64>,
    /// Runs that could not build a frame (a replayer bug if not 0).
    pub failed: u64,
    pub interrupted: bool,
    /// Frames of the capture left out (not IP, larger than the MTU).
    pub skipped: u64,
}

/// Parses the `--json` report.
pub fn parse(json: &str) -> Result<Report> {
    let v: Value = serde_json::from_str(json).context("smtp-replay's report is not JSON")?;
    let int = |key: &str| -> Result<u64> {
        v.get(key)
            .and_then(Value::as_u64)
            .with_context(|| format!("smtp-replay's report has no count {key}"))
    };
    let float = |key: &str| -> Result<f64> {
        v.get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("smtp-replay's report has no figure {key}"))
    };
    let skipped = v
        .get("skipped")
        .and_then(Value::as_object)
        .context("smtp-replay's report has no skipped counts")?
        .values()
        .filter_map(Value::as_u64)
        .sum();
    Ok(Report {
        frames: int("frames")?,
        bytes: int("bytes")?,
        seconds: float("seconds")?,
        pps: float("pps")?,
        gbps: float("gbps")?,
        passes: float("passes")?,
        frames_per_pass: int("frames_per_pass")?,
        lane_frames: v
            .get("lane_frames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        failed: int("failed")?,
        interrupted: v
            .get("interrupted")
            .and_then(Value::as_bool)
            .context("smtp-replay's report has no interrupted flag")?,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
      "iface": "lt1", "frames_per_pass": 199104, "bytes_per_pass": 264851472,
      "skipped": {"not_ip": 0, "oversize": 2},
      "frames": 597312, "bytes": 794554416, "lane_frames": [298656, 298656],
      "passes": 3.0, "failed": 0, "seconds": 0.41, "pps": 1456858.5,
      "gbps": 15.5, "calls": 8, "load_seconds": 1.9, "interrupted": false
    }"#;

    #[test]
    fn report_is_read() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.frames, 597_312);
        assert_eq!(r.frames_per_pass, 199_104);
        assert_eq!(r.lane_frames, [298_656, 298_656]);
        assert_eq!((r.failed, r.skipped), (0, 2));
        assert!((r.passes - 3.0).abs() < 1e-9);
        assert!((r.gbps - 15.5).abs() < 1e-9);
        assert!(!r.interrupted);
    }

    #[test]
    fn a_missing_figure_is_an_error_naming_it() {
        let e = parse(r#"{"frames": 1}"#).unwrap_err().to_string();
        assert!(e.contains("skipped"), "{e}");
        assert!(parse("{").is_err());
    }

    #[test]
    fn the_sending_line_is_recognised() {
        assert!(is_sending(
            "smtp-replay: 199104 frames in 2 lanes loaded in 1.93 s; sending"
        ));
        assert!(!is_sending("smtp-replay: cannot open x.pcap"));
        assert!(!is_sending("  sensor | smtp-replay: x loaded y; sending"));
    }

    #[test]
    fn rate_lanes_and_split_make_the_command_line() {
        let plan = Plan {
            iface: "lt1",
            rate: Rate::Pps(200_000),
            seconds: 2,
            lanes: 2,
            split: "tuple",
            json: Path::new("/w/replay.json"),
            pcap: Path::new("/w/load.pcap"),
            burst: None,
        };
        let a = args(&plan).join(" ");
        assert_eq!(
            a,
            "/w/load.pcap -i lt1 --seconds 2 --unique-ip --lanes 2 --split tuple \
             --json /w/replay.json -q --pps 200000"
        );
        let top = args(&Plan {
            rate: Rate::Top,
            ..plan
        });
        assert!(!top.iter().any(|x| x == "--pps"), "{top:?}");
        let burst = args(&Plan {
            burst: Some(1),
            ..plan
        });
        assert!(
            burst.ends_with(&["--burst".into(), "1".into()]),
            "{burst:?}"
        );
    }
}
