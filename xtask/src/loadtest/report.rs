//! The load-test table: one row per configuration and rate, as aligned
//! text for the terminal or as markdown for `docs/PERFORMANCE.md`.

use std::time::Duration;

use super::args::Rate;
use super::hostcpu::Use;
use super::outcome::Outcome;
use super::replay::Sent;

/// One measured run.
#[derive(Clone, Debug)]
pub struct Row {
    /// Queues, workers and flags, e.g. `2q 2w sym`.
    pub config: String,
    pub rate: Rate,
    pub sent: Sent,
    pub sensor: Outcome,
    /// smtp.log lines written.
    pub records: u64,
    /// What the offline run of the same frames logs.
    pub expected: u64,
    pub sensor_cpu: Duration,
    pub replay_cpu: Duration,
    pub host: Use,
    /// Wall time from the first frames sent to tcpreplay's exit: what the
    /// CPU shares are of.
    pub window: Duration,
    pub sensor_rss_kib: u64,
}

const HEADERS: [&str; 16] = [
    "config",
    "rate",
    "sent pps",
    "Mbit/s",
    "secs",
    "XDP redirected",
    "to userspace",
    "socket drops",
    "ring full",
    "worker drops",
    "record drops",
    "smtp.log / expected",
    "sensor CPU",
    "sensor CPU/frame",
    "tcpreplay CPU",
    "host busy (softirq)",
];

/// Peak RSS is one more column, last.
const RSS: &str = "sensor RSS";

/// `1 236 242`: the digit grouping the docs use.
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn rate(r: Rate) -> String {
    match r {
        Rate::Top => "top speed".to_owned(),
        Rate::Pps(n) if n.is_multiple_of(1000) => format!("{}k pps", n / 1000),
        Rate::Pps(n) => format!("{n} pps"),
    }
}

/// CPU seconds and the share of one core over the measured window.
fn cpu(t: Duration, over_secs: f64) -> String {
    let s = t.as_secs_f64();
    if over_secs > 0.0 {
        format!("{s:.1} s ({:.0} %)", s * 100.0 / over_secs)
    } else {
        format!("{s:.1} s")
    }
}

/// CPU time per frame received, in µs.
fn per_frame(t: Duration, frames: u64) -> String {
    if frames == 0 {
        return "-".to_owned();
    }
    format!("{:.2} µs", t.as_secs_f64() * 1e6 / frames as f64)
}

fn cells(r: &Row) -> Vec<String> {
    let secs = r.sent.seconds;
    let window = r.window.as_secs_f64();
    vec![
        r.config.clone(),
        rate(r.rate),
        int(r.sent.pps.round() as u64),
        format!("{:.0}", r.sent.mbps),
        format!("{secs:.1}"),
        int(r.sensor.xdp_redirected),
        int(r.sensor.rx_frames),
        int(r.sensor.sock_rx_dropped),
        int(r.sensor.sock_rx_ring_full),
        int(r.sensor.worker_drops),
        int(r.sensor.record_drops),
        format!("{} / {}", int(r.records), int(r.expected)),
        cpu(r.sensor_cpu, window),
        per_frame(r.sensor_cpu, r.sensor.rx_frames),
        cpu(r.replay_cpu, window),
        format!("{:.0} % ({:.0} %)", r.host.busy_pct, r.host.softirq_pct),
        format!("{:.0} MB", r.sensor_rss_kib as f64 / 1024.0),
    ]
}

fn headers() -> Vec<String> {
    HEADERS
        .iter()
        .chain([&RSS])
        .map(|h| (*h).to_owned())
        .collect()
}

/// Aligned columns: text left, numbers right.
pub fn text(rows: &[Row]) -> String {
    let table: Vec<Vec<String>> = std::iter::once(headers())
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in table.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 2 || n == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A markdown table, numbers right-aligned.
pub fn markdown(rows: &[Row]) -> String {
    let h = headers();
    let mut out = format!("| {} |\n", h.join(" | "));
    let align: Vec<&str> = (0..h.len())
        .map(|i| if i < 2 { "---" } else { "---:" })
        .collect();
    out.push_str(&format!("|{}|\n", align.join("|")));
    for r in rows {
        out.push_str(&format!("| {} |\n", cells(r).join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            config: "2q 2w sym drv".to_owned(),
            rate: Rate::Pps(50_000),
            sent: Sent {
                packets: 500_000,
                bytes: 125_000_000,
                seconds: 10.0,
                pps: 49_999.6,
                mbps: 100.2,
                failed: 0,
            },
            sensor: Outcome {
                xdp_mode: "driver".to_owned(),
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
            sensor_cpu: Duration::from_millis(4_500),
            replay_cpu: Duration::from_millis(9_000),
            host: Use {
                busy_pct: 97.4,
                softirq_pct: 41.2,
            },
            window: Duration::from_secs(10),
            sensor_rss_kib: 30 * 1024,
        }
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1 000");
        assert_eq!(int(1_236_242), "1 236 242");
    }

    #[test]
    fn text_row_has_every_figure() {
        let t = text(&[row()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("config"), "{t}");
        for want in [
            "2q 2w sym drv",
            "50k pps",
            "50 000",
            "100",
            "499 000",
            "1 000",
            "18 100 / 18 200",
            "4.5 s (45 %)",
            "9.02 µs",
            "9.0 s (90 %)",
            "97 % (41 %)",
            "30 MB",
        ] {
            assert!(lines[1].contains(want), "{want}: {t}");
        }
    }

    #[test]
    fn markdown_has_a_header_rule_and_one_line_per_row() {
        let mut top = row();
        top.rate = Rate::Top;
        let m = markdown(&[row(), top]);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 4, "{m}");
        assert!(lines[1].starts_with("|---|---|---:|"), "{m}");
        assert!(lines[3].contains("| top speed |"), "{m}");
        let cols = |l: &str| l.matches(" | ").count();
        assert_eq!(cols(lines[0]), cols(lines[2]), "{m}");
    }
}
