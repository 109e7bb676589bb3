//! Whole-machine CPU use over an interval, from `/proc/stat`: on a veth
//! the sender, the kernel path (XDP, the AF_XDP copy, in softirq) and the
//! sensor share the same cores, so how busy all of them were says whether
//! the figures are limited by the machine rather than by the sensor.

use anyhow::{Context, Result};

/// Cumulative jiffies of all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    busy: u64,
    softirq: u64,
    total: u64,
}

/// Use over an interval, in percent of all CPUs together.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Use {
    pub busy_pct: f64,
    pub softirq_pct: f64,
}

impl Snapshot {
    pub fn take() -> Result<Self> {
        let s = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        parse(&s).context("/proc/stat has no `cpu` line")
    }

    /// Use from `self` (earlier) to `later`.
    pub fn until(&self, later: &Snapshot) -> Use {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return Use::default();
        }
        let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 * 100.0 / total as f64;
        Use {
            busy_pct: pct(self.busy, later.busy),
            softirq_pct: pct(self.softirq, later.softirq),
        }
    }
}

/// `cpu  user nice system idle iowait irq softirq steal ...`
fn parse(stat: &str) -> Option<Snapshot> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some(Snapshot {
        busy,
        softirq,
        total: busy + idle + iowait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_softirq_shares() {
        let a = parse("cpu  100 0 50 800 10 0 40 0 0 0\ncpu0 1 2 3\n").unwrap();
        let b = parse("cpu  160 0 90 850 10 0 90 0 0 0\n").unwrap();
        // +60 user +40 system +50 idle +50 softirq = 200 jiffies.
        let u = a.until(&b);
        assert!((u.busy_pct - 75.0).abs() < 1e-9, "{u:?}");
        assert!((u.softirq_pct - 25.0).abs() < 1e-9, "{u:?}");
        assert_eq!(a.until(&a), Use::default());
        assert!(parse("intr 1 2 3\n").is_none());
    }

    #[test]
    fn this_machine_has_a_cpu_line() {
        let s = Snapshot::take().unwrap();
        assert!(s.total > 0);
    }
}
