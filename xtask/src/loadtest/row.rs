//! One measured run (a configuration at a rate) and the figures derived
//! from it that the tables, the plot and the search for the maximum rate
//! share: CPU per frame, the rate received, and whether anything was lost.

use std::time::Duration;

use super::args::Rate;
use super::hostcpu::Use;
use super::offline::Cost;
use super::outcome::Outcome;
use super::sender::Offered;

/// One measured run.
#[derive(Clone, Debug)]
pub struct Row {
    /// Queues, workers, XDP mode and flags, e.g. `2q 2w sym drv`.
    pub config: String,
    pub rate: Rate,
    pub sent: Offered,
    pub sensor: Outcome,
    /// smtp.log lines written.
    pub records: u64,
    /// What the offline run of the same frames logs.
    pub expected: u64,
    /// Frames the veth failed to deliver to the sensor's end.
    pub veth_drops: u64,
    pub sensor_cpu: Duration,
    pub sender_cpu: Duration,
    pub host: Use,
    /// Wall time from the first frames sent to the sender's exit: what
    /// the CPU shares are of.
    pub window: Duration,
    pub sensor_rss_kib: u64,
    /// The same capture offline, with as many workers.
    pub offline: Cost,
}

impl Row {
    /// Sensor CPU nanoseconds per frame it received; `None` when it
    /// received none.
    pub fn cpu_ns_per_frame(&self) -> Option<f64> {
        (self.sensor.rx_frames > 0)
            .then(|| self.sensor_cpu.as_secs_f64() * 1e9 / self.sensor.rx_frames as f64)
    }

    /// Live CPU per frame over offline CPU per frame.
    pub fn offline_ratio(&self) -> Option<f64> {
        let offline = self.offline.cpu_ns();
        self.cpu_ns_per_frame()
            .filter(|_| offline > 0.0)
            .map(|live| live / offline)
    }

    /// Frames per second that reached userspace, over the sender's time.
    pub fn received_pps(&self) -> f64 {
        if self.sent.seconds > 0.0 {
            self.sensor.rx_frames as f64 / self.sent.seconds
        } else {
            0.0
        }
    }

    /// What was lost, `None` when nothing: every expected record logged,
    /// and no drop in the socket, its ring, the worker rings or the log
    /// writer. Frames the veth dropped are not the sensor's, but their
    /// records are missing all the same: they are named as the cause.
    pub fn loss(&self) -> Option<String> {
        let s = &self.sensor;
        let mut what: Vec<String> = [
            ("socket drops", s.sock_rx_dropped),
            ("ring full", s.sock_rx_ring_full),
            ("worker drops", s.worker_drops),
            ("record drops", s.record_drops),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(name, n)| format!("{name} ({n})"))
        .collect();
        if self.records != self.expected {
            what.push(if self.veth_drops > 0 {
                format!(
                    "veth drops ({}): records {} / {}",
                    self.veth_drops, self.records, self.expected
                )
            } else {
                format!("records {} / {}", self.records, self.expected)
            });
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A run at 50 kpps with a few losses, for the tests of this module
    /// and of the ones rendering rows.
    pub fn row() -> Row {
        Row {
            config: "2q 2w sym drv".to_owned(),
            rate: Rate::Pps(50_000),
            sent: Offered {
                frames: 500_000,
                bytes: 125_000_000,
                seconds: 10.0,
                pps: 49_999.6,
                gbps: 0.1002,
                passes: 4.0,
                failed: 0,
                lanes: vec![250_000, 250_000],
            },
            sensor: Outcome {
                xdp_mode: "driver".to_owned(),
                xdp_seen: 500_004,
                xdp_redirected: 500_000,
                rx_frames: 499_000,
                queue_frames: vec![250_000, 249_000],
                sock_rx_dropped: 1000,
                sock_rx_ring_full: 0,
                worker_drops: 7,
                record_drops: 0,
            },
            records: 18_100,
            expected: 18_200,
            veth_drops: 0,
            sensor_cpu: Duration::from_millis(4_500),
            sender_cpu: Duration::from_millis(9_000),
            host: Use {
                busy_pct: 97.4,
                softirq_pct: 41.2,
            },
            window: Duration::from_secs(10),
            sensor_rss_kib: 30 * 1024,
            offline: Cost {
                workers: 2,
                frames: 125_000,
                cpu: Duration::from_millis(100),
                wall: Duration::from_millis(60),
                max_rss_kib: 20 * 1024,
            },
        }
    }

    /// [`row`] without losses, at `pps` offered.
    pub fn clean(pps: f64) -> Row {
        let mut r = row();
        r.sensor.sock_rx_dropped = 0;
        r.sensor.worker_drops = 0;
        r.records = r.expected;
        r.sent.pps = pps;
        r
    }

    #[test]
    fn per_frame_figures() {
        let r = row();
        // 4.5 s over 499 000 frames; offline 100 ms over 125 000.
        assert!((r.cpu_ns_per_frame().unwrap() - 9018.036).abs() < 1e-3);
        assert!((r.offline_ratio().unwrap() - 11.2725).abs() < 1e-3);
        assert!((r.received_pps() - 49_900.0).abs() < 1e-9);
        let mut none = row();
        none.sensor.rx_frames = 0;
        assert_eq!(none.cpu_ns_per_frame(), None);
        assert_eq!(none.offline_ratio(), None);
    }

    #[test]
    fn loss_names_every_cause() {
        assert_eq!(
            row().loss().as_deref(),
            Some("socket drops (1000), worker drops (7), records 18100 / 18200")
        );
        assert_eq!(clean(1e5).loss(), None);
        let mut veth = clean(1e5);
        veth.veth_drops = 30;
        // Lost frames that cost no record are no loss of records.
        assert_eq!(veth.loss(), None);
        veth.records -= 2;
        assert_eq!(
            veth.loss().as_deref(),
            Some("veth drops (30): records 18198 / 18200")
        );
    }
}
