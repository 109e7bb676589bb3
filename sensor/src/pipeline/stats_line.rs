//! The periodic live stats line on stderr: rates since the previous line
//! and every drop, in one place an operator can grep.
//!
//! ```text
//! stats: iface=eth1 link=up link_losses=0 uptime=20s pps=14203 mbps=96.1 drops=0 (socket=0 ring_full=0 fill_empty=0 worker_rings=0 records=0 log_write=0) flows=118 records=4410 notices=3 xdp_seen=… xdp_redirected=… xdp_passed=… xdp_dropped=… xdp_malformed=… xdp_redirect_failed=… xdp_meta_failed=…
//! ```

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sensor_common::maps::Counter;

use crate::capture::xdp::XdpCounters;
use crate::telemetry::Telemetry;

/// Everything the line reports, summed over queues and workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub frames: u64,
    pub bytes: u64,
    pub sock_rx_dropped: u64,
    pub sock_rx_ring_full: u64,
    pub sock_fill_ring_empty: u64,
    pub worker_ring_drops: u64,
    pub records_dropped: u64,
    /// Records and notices a log file could not take (unwritable).
    pub log_write_drops: u64,
    /// The interface exists with its link up.
    pub link_up: bool,
    /// Times the link went down or the interface disappeared.
    pub link_losses: u64,
    pub live_flows: u64,
    pub records: u64,
    pub notices: u64,
    /// The XDP program's counters (summed over CPUs), when it runs.
    pub xdp: Option<XdpCounters>,
}

impl Totals {
    pub fn read(t: &Telemetry) -> Totals {
        let mut s = Totals::default();
        for q in &t.queues {
            s.frames += q.frames.load(Ordering::Relaxed);
            s.bytes += q.bytes.load(Ordering::Relaxed);
            s.sock_rx_dropped += q.sock_rx_dropped.load(Ordering::Relaxed);
            s.sock_rx_ring_full += q.sock_rx_ring_full.load(Ordering::Relaxed);
            s.sock_fill_ring_empty += q.sock_fill_ring_empty.load(Ordering::Relaxed);
        }
        for h in &t.hops {
            s.worker_ring_drops += h.ring_full_drops.load(Ordering::Relaxed);
        }
        let w = t.workers_total();
        s.live_flows = w.live_flows;
        let c = &t.collector;
        s.records = c.records_written.load(Ordering::Relaxed);
        s.notices = c.notices_written.load(Ordering::Relaxed);
        s.records_dropped = c.records_dropped.load(Ordering::Relaxed);
        s.log_write_drops = c.log_records_dropped.load(Ordering::Relaxed);
        s.link_up = t.link.is_up();
        s.link_losses = t.link.losses.load(Ordering::Relaxed);
        s.xdp = t.xdp();
        s
    }

    /// Frames or records lost anywhere between the socket and the logs.
    /// (An empty fill ring is a warning sign, not a loss.)
    pub fn drops(&self) -> u64 {
        self.sock_rx_dropped
            + self.sock_rx_ring_full
            + self.worker_ring_drops
            + self.records_dropped
            + self.log_write_drops
    }
}

/// Keeps the previous reading to turn counters into rates.
#[derive(Debug)]
pub struct StatsLine {
    last: Totals,
    at: Instant,
}

impl StatsLine {
    pub fn new(t: &Telemetry) -> Self {
        StatsLine {
            last: Totals::default(),
            at: t.started,
        }
    }

    /// The line for now.
    pub fn next(&mut self, t: &Telemetry) -> String {
        let now = Instant::now();
        let cur = Totals::read(t);
        let secs = now.duration_since(self.at).as_secs_f64();
        let line = format_line(
            t.interface.as_deref().unwrap_or("-"),
            t.started.elapsed().as_secs(),
            &self.last,
            &cur,
            secs,
        );
        self.last = cur;
        self.at = now;
        line
    }
}

/// Formats the line from two readings `secs` apart.
pub fn format_line(iface: &str, uptime: u64, prev: &Totals, cur: &Totals, secs: f64) -> String {
    let rate = |a: u64, b: u64| {
        if secs > 0.0 {
            b.saturating_sub(a) as f64 / secs
        } else {
            0.0
        }
    };
    let pps = rate(prev.frames, cur.frames);
    let mbps = rate(prev.bytes, cur.bytes) * 8.0 / 1e6;
    let mut s = String::with_capacity(200);
    let _ = write!(
        s,
        "stats: iface={iface} link={} link_losses={} uptime={uptime}s pps={pps:.0} mbps={mbps:.1} drops={} (socket={} ring_full={} fill_empty={} worker_rings={} records={} log_write={}) flows={} records={} notices={}",
        if cur.link_up { "up" } else { "down" },
        cur.link_losses,
        cur.drops(),
        cur.sock_rx_dropped,
        cur.sock_rx_ring_full,
        cur.sock_fill_ring_empty,
        cur.worker_ring_drops,
        cur.records_dropped,
        cur.log_write_drops,
        cur.live_flows,
        cur.records,
        cur.notices,
    );
    if let Some(x) = &cur.xdp {
        for c in Counter::ALL {
            let _ = write!(s, " {}={}", c.name(), x.get(c));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_difference_of_two_readings() {
        let prev = Totals {
            frames: 1000,
            bytes: 1_000_000,
            ..Totals::default()
        };
        let cur = Totals {
            frames: 3000,
            bytes: 3_500_000,
            sock_rx_ring_full: 2,
            worker_ring_drops: 5,
            live_flows: 7,
            records: 9,
            notices: 1,
            link_up: true,
            link_losses: 1,
            log_write_drops: 3,
            ..Totals::default()
        };
        let line = format_line("veth0", 12, &prev, &cur, 2.0);
        assert_eq!(
            line,
            "stats: iface=veth0 link=up link_losses=1 uptime=12s pps=1000 mbps=10.0 drops=10 (socket=0 ring_full=2 fill_empty=0 worker_rings=5 records=0 log_write=3) flows=7 records=9 notices=1"
        );
        let down = Totals {
            link_up: false,
            ..cur
        };
        assert!(format_line("veth0", 12, &prev, &down, 2.0).contains(" link=down "));
        let mut xdp = XdpCounters::default();
        xdp.0[Counter::Redirected.index() as usize] = 3000;
        let with_xdp = Totals {
            xdp: Some(xdp),
            ..cur
        };
        let line = format_line("veth0", 12, &prev, &with_xdp, 2.0);
        assert!(
            line.ends_with(
                " xdp_seen=0 xdp_redirected=3000 xdp_passed=0 xdp_dropped=0 xdp_malformed=0 xdp_redirect_failed=0 xdp_meta_failed=0"
            ),
            "{line}"
        );
    }

    #[test]
    fn reads_every_source_of_drops() {
        let t = Telemetry::live("x", 2, 1);
        t.queues[1]
            .sock_rx_dropped
            .store(3, std::sync::atomic::Ordering::Relaxed);
        t.hops[0].add_drops(4);
        t.collector
            .records_dropped
            .store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(Totals::read(&t).drops(), 8);
    }
}
