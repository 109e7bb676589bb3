//! tcpreplay: the command for one rate, when its frames start to flow,
//! and what its final statistics say was sent.
//!
//! tcpreplay paces with `--pps R` (or sends as fast as it can with
//! `--topspeed`), loops over the capture (`--loop 0`: endlessly) and stops
//! after `--duration S`; the capture is preloaded into memory (`-K`) so
//! the disk is not part of the measurement. At top speed tcpreplay checks
//! the duration only between passes, so it sends whole passes (and the
//! first frame of the next). It says nothing when it starts sending (after
//! the preload), so the interface's counters are watched instead.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::args::Rate;
use crate::netns::Proc;

/// tcpreplay's arguments after `tcpreplay`.
pub fn args(iface: &str, rate: Rate, seconds: u64, pcap: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-q", "-K", "--loop", "0", "-i", iface]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    a.push(format!("--duration={seconds}"));
    match rate {
        Rate::Pps(r) => a.push(format!("--pps={r}")),
        Rate::Top => a.push("--topspeed".to_owned()),
    }
    a.push(pcap.to_string_lossy().into_owned());
    a
}

/// Adds [`args`] to `cmd`.
pub fn command<'c>(
    cmd: &'c mut Command,
    iface: &str,
    rate: Rate,
    seconds: u64,
    pcap: &Path,
) -> &'c mut Command {
    cmd.args(args(iface, rate, seconds, pcap))
}

/// What tcpreplay reported at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sent {
    /// Frames the interface took (tcpreplay's "Successful packets", else
    /// "Actual").
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub pps: f64,
    pub mbps: f64,
    /// Frames the interface refused.
    pub failed: u64,
}

/// Parses tcpreplay's statistics:
///
/// ```text
/// Actual: 300001 packets (75081381 bytes) sent in 3.00 seconds
/// Rated: 25027110.3 Bps, 200.21 Mbps, 100000.26 pps
/// ...
///     Successful packets:        300001
///     Failed packets:            0
/// ```
pub fn parse(out: &str) -> Result<Sent> {
    let mut s = Sent::default();
    let mut actual = None;
    let mut rated = false;
    let mut successful = None;
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("Actual:") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            // N packets (B bytes) sent in T seconds
            if let [n, "packets", b, "bytes)", "sent", "in", t, ..] = w[..] {
                actual = Some(int(n)?);
                s.bytes = int(b.trim_start_matches('('))?;
                s.seconds = float(t)?;
            }
        } else if line.starts_with("Rated:") {
            // Rated: X Bps, Y Mbps, Z pps
            for pair in words[1..].windows(2) {
                match pair[1].trim_end_matches(',') {
                    "Mbps" => s.mbps = float(pair[0])?,
                    "pps" => s.pps = float(pair[0])?,
                    _ => {}
                }
            }
            rated = true;
        } else if let Some(v) = line.strip_prefix("Successful packets:") {
            successful = Some(int(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Failed packets:") {
            s.failed = int(v.trim())?;
        }
    }
    let (Some(actual), true) = (actual, rated) else {
        bail!("no statistics in tcpreplay's output:\n{out}");
    };
    s.packets = successful.unwrap_or(actual);
    Ok(s)
}

/// Frames a replay must have sent before the measured window opens: more
/// than the few IPv6 neighbour-discovery frames a fresh link sends.
const SENDING_STARTED: u64 = 1000;

/// Waits until tcpreplay's interface has sent [`SENDING_STARTED`] frames
/// more than when first seen (tcpreplay preloads the capture first); false
/// when tcpreplay ended (or the task was interrupted) before that.
/// `/proc/<pid>/net/dev` shows the counters of the process's namespace.
pub fn wait_sending(tr: &mut Proc, iface: &str, interrupted: &AtomicBool) -> Result<bool> {
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

fn int(s: &str) -> Result<u64> {
    s.trim_end_matches(',')
        .parse()
        .with_context(|| format!("tcpreplay output: not a number: {s}"))
}

fn float(s: &str) -> Result<f64> {
    s.trim_end_matches(',')
        .parse()
        .with_context(|| format!("tcpreplay output: not a number: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "File Cache is enabled
Actual: 1236243 packets (308934190 bytes) sent in 4.64 seconds
Rated: 66505467.4 Bps, 532.04 Mbps, 266130.84 pps
Flows: 60000 flows, 12916.43 fps, 1236242 unique flow packets, 0 unique non-flow packets
Statistics for network device: lt1
\tSuccessful packets:        1236240
\tFailed packets:            3
\tTruncated packets:         0
\tRetried packets (ENOBUFS): 0
\tRetried packets (EAGAIN):  0
";

    #[test]
    fn statistics_are_read() {
        let s = parse(OUT).unwrap();
        assert_eq!(s.packets, 1_236_240);
        assert_eq!(s.failed, 3);
        assert_eq!(s.bytes, 308_934_190);
        assert!((s.seconds - 4.64).abs() < 1e-9);
        assert!((s.mbps - 532.04).abs() < 1e-9);
        assert!((s.pps - 266_130.84).abs() < 1e-6);
    }

    #[test]
    fn actual_stands_in_for_a_missing_device_section() {
        let short: String = OUT.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse(&short).unwrap().packets, 1_236_243);
    }

    #[test]
    fn missing_statistics_are_an_error() {
        let e = parse("tcpreplay: interface lt1 not found\n").unwrap_err();
        assert!(e.to_string().contains("no statistics"), "{e}");
    }

    #[test]
    fn rate_selects_pacing() {
        let p = Path::new("/x.pcap");
        let a = args("lt1", Rate::Pps(50_000), 10, p);
        assert!(a.contains(&"--pps=50000".to_owned()), "{a:?}");
        assert!(a.contains(&"--duration=10".to_owned()), "{a:?}");
        assert_eq!(a.last().map(String::as_str), Some("/x.pcap"));
        let a = args("lt1", Rate::Top, 10, p);
        assert!(a.contains(&"--topspeed".to_owned()), "{a:?}");
        assert!(!a.iter().any(|x| x.starts_with("--pps")), "{a:?}");
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
}
