//! What one live sensor run reports about itself: the `--stats-json` file
//! (XDP and AF_XDP socket counters) and the drop lines of its end-of-run
//! summary on stderr (worker rings and log records are not in the file).

use anyhow::{Context, Result};
use serde_json::Value;

/// Counters of one sensor run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `driver` or `generic`, as attached.
    pub xdp_mode: String,
    /// Frames the sensor's XDP program saw: what reached the sensor.
    pub xdp_seen: u64,
    pub xdp_redirected: u64,
    /// Frames delivered to userspace, all queues.
    pub rx_frames: u64,
    /// Per rx queue, in queue order.
    pub queue_frames: Vec<u64>,
    pub sock_rx_dropped: u64,
    pub sock_rx_ring_full: u64,
    /// `smtp-sensor: N frames dropped: a worker fell behind`.
    pub worker_drops: u64,
    /// `smtp-sensor: N records dropped: the log writer fell behind`.
    pub record_drops: u64,
}

impl Outcome {
    pub fn new(stats_json: &str, stderr: &[String]) -> Result<Self> {
        let v: Value = serde_json::from_str(stats_json).context("--stats-json is not JSON")?;
        let n = |v: &Value, key: &str| -> Result<u64> {
            v.get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("--stats-json has no counter {key}"))
        };
        let xdp = v.get("xdp").context("--stats-json has no xdp counters")?;
        let queue_frames = v
            .get("queues")
            .and_then(Value::as_array)
            .map(|qs| qs.iter().filter_map(|q| n(q, "rx_frames").ok()).collect())
            .unwrap_or_default();
        let (worker_drops, record_drops) = summary_drops(stderr);
        Ok(Outcome {
            xdp_mode: v
                .get("xdp_mode")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            xdp_seen: n(xdp, "xdp_seen")?,
            xdp_redirected: n(xdp, "xdp_redirected")?,
            rx_frames: n(&v, "rx_frames")?,
            queue_frames,
            sock_rx_dropped: n(&v, "sock_rx_dropped")?,
            sock_rx_ring_full: n(&v, "sock_rx_ring_full")?,
            worker_drops,
            record_drops,
        })
    }
}

/// (frames dropped by worker rings, records dropped) from the summary; a
/// line is only printed when its count is not zero.
fn summary_drops(stderr: &[String]) -> (u64, u64) {
    let mut frames = 0;
    let mut records = 0;
    for line in stderr {
        let Some(rest) = line.strip_prefix("smtp-sensor: ") else {
            continue;
        };
        let Some((count, what)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        if what.starts_with("frames dropped: a worker fell behind") {
            frames += count;
        } else if what.starts_with("records dropped") {
            records += count;
        }
    }
    (frames, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = r#"{
      "interface": "lt0", "xdp_mode": "driver", "socket_mode": "copy",
      "rx_frames": 1234370, "sock_rx_dropped": 1872, "sock_rx_ring_full": 5,
      "xdp": {"xdp_redirected": 1236242, "xdp_seen": 1236249},
      "queues": [{"queue": 0, "rx_frames": 617505}, {"queue": 1, "rx_frames": 616865}]
    }"#;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn counters_and_summary_drops() {
        let err = lines(
            "[2026-11-23T11:10:58Z INFO  smtp_sensor::capture::live] final stats: ...\n\
             smtp-sensor: 1234094 packets, 308440337 bytes in 13.665 s (0.18 Gbit/s, 90309 packets/s)\n\
             smtp-sensor: 44921 smtp.log records, 50 notices (7722 suppressed)\n\
             smtp-sensor: 276 frames dropped: a worker fell behind\n\
             smtp-sensor: 12 records dropped: the log writer fell behind\n",
        );
        let o = Outcome::new(STATS, &err).unwrap();
        assert_eq!(o.xdp_mode, "driver");
        assert_eq!(o.xdp_redirected, 1_236_242);
        assert_eq!(o.xdp_seen, 1_236_249);
        assert_eq!(o.rx_frames, 1_234_370);
        assert_eq!(o.queue_frames, [617_505, 616_865]);
        assert_eq!((o.sock_rx_dropped, o.sock_rx_ring_full), (1872, 5));
        assert_eq!((o.worker_drops, o.record_drops), (276, 12));
    }

    #[test]
    fn no_drop_lines_means_no_drops() {
        let o = Outcome::new(STATS, &lines("smtp-sensor: 10 packets\n")).unwrap();
        assert_eq!((o.worker_drops, o.record_drops), (0, 0));
    }

    #[test]
    fn missing_counters_are_errors() {
        let e = Outcome::new(r#"{"xdp": {}}"#, &[]).unwrap_err();
        assert!(e.to_string().contains("xdp_seen"), "{e}");
        assert!(Outcome::new("not json", &[]).is_err());
    }
}
