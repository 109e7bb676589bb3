//! Live capture statistics: per-queue counters updated by the capture
//! threads, XDP counters read from the kernel, the one-line summary printed
//! periodically and at exit, and the JSON written by `--stats-json`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use sensor_common::maps::Counter;
use serde::Serialize;

use super::afxdp::SocketStats;
use super::xdp::XdpCounters;

/// Counters of one rx queue, written by its capture thread only (relaxed
/// atomics: the stats reader needs no ordering, only eventual values).
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub invalid_descs: AtomicU64,
    pub sock_rx_dropped: AtomicU64,
    pub sock_rx_ring_full: AtomicU64,
    pub sock_fill_ring_empty: AtomicU64,
}

impl QueueCounters {
    /// Adds one received batch.
    pub fn add_batch(&self, frames: u64, bytes: u64) {
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Stores the socket's kernel statistics.
    pub fn set_socket(&self, s: SocketStats) {
        self.sock_rx_dropped.store(s.rx_dropped, Ordering::Relaxed);
        self.sock_rx_ring_full
            .store(s.rx_ring_full, Ordering::Relaxed);
        self.sock_fill_ring_empty
            .store(s.fill_ring_empty, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self, queue: u32) -> QueueStats {
        QueueStats {
            queue,
            rx_frames: self.frames.load(Ordering::Relaxed),
            rx_bytes: self.bytes.load(Ordering::Relaxed),
            invalid_descs: self.invalid_descs.load(Ordering::Relaxed),
            sock_rx_dropped: self.sock_rx_dropped.load(Ordering::Relaxed),
            sock_rx_ring_full: self.sock_rx_ring_full.load(Ordering::Relaxed),
            sock_fill_ring_empty: self.sock_fill_ring_empty.load(Ordering::Relaxed),
        }
    }
}

/// Statistics of one rx queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub queue: u32,
    /// Frames delivered to userspace.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Descriptors pointing outside the UMEM (should stay 0).
    pub invalid_descs: u64,
    /// Frames the kernel dropped for the socket.
    pub sock_rx_dropped: u64,
    /// Drops because the rx ring was full (userspace too slow).
    pub sock_rx_ring_full: u64,
    /// Times the fill ring was empty.
    pub sock_fill_ring_empty: u64,
}

/// Everything the stats line and `--stats-json` report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveStats {
    pub interface: String,
    pub xdp_mode: String,
    pub socket_mode: String,
    pub uptime_secs: u64,
    /// Sum over queues.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub sock_rx_dropped: u64,
    pub sock_rx_ring_full: u64,
    pub sock_fill_ring_empty: u64,
    /// XDP counters by operator-facing name (`xdp_seen`, ...).
    pub xdp: std::collections::BTreeMap<&'static str, u64>,
    pub queues: Vec<QueueStats>,
}

impl LiveStats {
    /// Builds the totals from per-queue and XDP counters.
    pub fn new(
        interface: &str,
        xdp_mode: &str,
        socket_mode: &str,
        uptime_secs: u64,
        queues: Vec<QueueStats>,
        xdp: XdpCounters,
    ) -> Self {
        let sum = |f: fn(&QueueStats) -> u64| queues.iter().map(f).fold(0u64, u64::wrapping_add);
        LiveStats {
            interface: interface.to_string(),
            xdp_mode: xdp_mode.to_string(),
            socket_mode: socket_mode.to_string(),
            uptime_secs,
            rx_frames: sum(|q| q.rx_frames),
            rx_bytes: sum(|q| q.rx_bytes),
            sock_rx_dropped: sum(|q| q.sock_rx_dropped),
            sock_rx_ring_full: sum(|q| q.sock_rx_ring_full),
            sock_fill_ring_empty: sum(|q| q.sock_fill_ring_empty),
            xdp: Counter::ALL
                .iter()
                .map(|c| (c.name(), xdp.get(*c)))
                .collect(),
            queues,
        }
    }

    /// The one-line summary, `key=value` pairs in a fixed order.
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(s, "iface={} uptime={}s", self.interface, self.uptime_secs);
        for c in Counter::ALL {
            let _ = write!(
                s,
                " {}={}",
                c.name(),
                self.xdp.get(c.name()).copied().unwrap_or(0)
            );
        }
        let _ = write!(
            s,
            " rx_frames={} rx_bytes={} sock_rx_dropped={} sock_rx_ring_full={} sock_fill_ring_empty={}",
            self.rx_frames,
            self.rx_bytes,
            self.sock_rx_dropped,
            self.sock_rx_ring_full,
            self.sock_fill_ring_empty
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_queues_and_line_names_every_counter() {
        let q = |queue, rx_frames| QueueStats {
            queue,
            rx_frames,
            rx_bytes: rx_frames * 100,
            ..QueueStats::default()
        };
        let mut xdp = XdpCounters::default();
        xdp.0[Counter::Seen.index() as usize] = 10;
        xdp.0[Counter::Redirected.index() as usize] = 7;
        let s = LiveStats::new("veth0", "driver", "copy", 3, vec![q(0, 3), q(1, 4)], xdp);
        assert_eq!(s.rx_frames, 7);
        assert_eq!(s.rx_bytes, 700);
        let line = s.line();
        for c in Counter::ALL {
            assert!(line.contains(&format!(" {}=", c.name())), "{line}");
        }
        assert!(line.contains("xdp_seen=10 xdp_redirected=7"), "{line}");
        assert!(line.contains("rx_frames=7 "), "{line}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["xdp"]["xdp_redirected"], 7);
        assert_eq!(json["queues"][1]["rx_frames"], 4);
    }
}
