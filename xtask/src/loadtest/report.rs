//! The load-test tables, as aligned text for the terminal or as markdown
//! for `docs/PERFORMANCE.md`: one row per configuration and rate, and with
//! `--find-max` a summary per configuration.

use super::args::Rate;
use super::findmax::Limit;
use super::offline::Cost;
use super::row::Row;

/// The per-run table's columns; the first two are text, the rest numbers.
const HEADERS: [&str; 20] = [
    "config",
    "rate",
    "offered pps",
    "Gbit/s",
    "secs",
    "passes",
    "XDP seen",
    "to userspace",
    "socket drops",
    "ring full",
    "worker drops",
    "record drops",
    "veth drops",
    "smtp.log / expected",
    "sensor CPU",
    "sensor CPU/frame",
    "× offline",
    "sender CPU",
    "host busy (softirq)",
    "sensor RSS",
];

/// The `--find-max` summary's columns; the first and the last are text.
const SUMMARY_HEADERS: [&str; 9] = [
    "config",
    "max zero-loss",
    "Gbit/s",
    "CPU/frame",
    "offline CPU/packet",
    "offline wall/packet",
    "live / offline",
    "sensor RSS",
    "limited by",
];

/// One configuration's `--find-max` result.
#[derive(Clone, Debug)]
pub struct Summary {
    pub config: String,
    /// The fastest run without loss.
    pub best: Option<Row>,
    pub limit: Limit,
    pub offline: Cost,
}

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

/// `top speed`, `50k pps`, `1234 pps`.
pub fn rate(r: Rate) -> String {
    match r {
        Rate::Top => "top speed".to_owned(),
        Rate::Pps(n) if n.is_multiple_of(1000) => format!("{}k pps", n / 1000),
        Rate::Pps(n) => format!("{n} pps"),
    }
}

/// CPU seconds and the share of one core over the measured window.
fn cpu(t: std::time::Duration, over_secs: f64) -> String {
    let s = t.as_secs_f64();
    if over_secs > 0.0 {
        format!("{s:.1} s ({:.0} %)", s * 100.0 / over_secs)
    } else {
        format!("{s:.1} s")
    }
}

fn mb(kib: u64) -> String {
    format!("{:.0} MB", kib as f64 / 1024.0)
}

fn ns(v: f64) -> String {
    format!("{} ns", int(v.round() as u64))
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}×"))
}

fn cells(r: &Row) -> Vec<String> {
    let window = r.window.as_secs_f64();
    vec![
        r.config.clone(),
        rate(r.rate),
        int(r.sent.pps.round() as u64),
        format!("{:.2}", r.sent.gbps),
        format!("{:.1}", r.sent.seconds),
        format!("{:.2}", r.sent.passes),
        int(r.sensor.xdp_seen),
        int(r.sensor.rx_frames),
        int(r.sensor.sock_rx_dropped),
        int(r.sensor.sock_rx_ring_full),
        int(r.sensor.worker_drops),
        int(r.sensor.record_drops),
        int(r.veth_drops),
        format!("{} / {}", int(r.records), int(r.expected)),
        cpu(r.sensor_cpu, window),
        // µs, as docs/PERFORMANCE.md has always shown it.
        r.cpu_ns_per_frame()
            .map_or_else(|| "-".to_owned(), |n| format!("{:.2} µs", n / 1000.0)),
        ratio(r.offline_ratio()),
        cpu(r.sender_cpu, window),
        format!("{:.0} % ({:.0} %)", r.host.busy_pct, r.host.softirq_pct),
        mb(r.sensor_rss_kib),
    ]
}

/// What bounded a configuration, in words.
fn limited_by(s: &Summary) -> String {
    match &s.limit {
        Limit::Sender => "the sender (top speed lost nothing)".to_owned(),
        Limit::Loss { at_pps, what } => {
            let lowest = if s.best.is_none() {
                " (the lowest rate tried)"
            } else {
                ""
            };
            format!("{what} at {:.3} Mpps{lowest}", at_pps / 1e6)
        }
    }
}

fn summary_cells(s: &Summary) -> Vec<String> {
    let best = s.best.as_ref();
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    vec![
        s.config.clone(),
        or_dash(best.map(|r| format!("{:.3} Mpps", r.sent.pps / 1e6))),
        or_dash(best.map(|r| format!("{:.2}", r.sent.gbps))),
        or_dash(best.and_then(Row::cpu_ns_per_frame).map(ns)),
        ns(s.offline.cpu_ns()),
        ns(s.offline.wall_ns()),
        ratio(best.and_then(Row::offline_ratio)),
        or_dash(best.map(|r| mb(r.sensor_rss_kib))),
        limited_by(s),
    ]
}

/// A table: aligned text (text columns left, numbers right) or markdown.
fn render(
    headers: &[&str],
    rows: Vec<Vec<String>>,
    text_col: fn(usize) -> bool,
    markdown: bool,
) -> String {
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    if markdown {
        let mut out = format!("| {} |\n", headers.join(" | "));
        let align: Vec<&str> = (0..headers.len())
            .map(|i| if text_col(i) { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", align.join("|")));
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        return out;
    }
    let table: Vec<Vec<String>> = std::iter::once(headers).chain(rows).collect();
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
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
                // `{:>w$}` counts chars, so `µ` and `×` align too.
                if text_col(i) || n == 0 {
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

/// The per-run table.
pub fn runs(rows: &[Row], markdown: bool) -> String {
    render(
        &HEADERS,
        rows.iter().map(cells).collect(),
        |i| i < 2,
        markdown,
    )
}

/// The `--find-max` summary.
pub fn summary(s: &[Summary], markdown: bool) -> String {
    // The configuration and the limit (last) are text.
    let text_col = |i: usize| i == 0 || i == SUMMARY_HEADERS.len() - 1;
    render(
        &SUMMARY_HEADERS,
        s.iter().map(summary_cells).collect(),
        text_col,
        markdown,
    )
}

#[cfg(test)]
mod tests {
    use super::super::row::tests::{clean, row};
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1 000");
        assert_eq!(int(1_236_242), "1 236 242");
    }

    #[test]
    fn text_row_has_every_figure() {
        let t = runs(&[row()], false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("config"), "{t}");
        assert_eq!(cells(&row()).len(), HEADERS.len());
        for want in [
            "2q 2w sym drv",
            "50k pps",
            "50 000",
            "0.10",
            "4.00",
            "500 004",
            "499 000",
            "1 000",
            "18 100 / 18 200",
            "4.5 s (45 %)",
            "9.02 µs",
            "11.3×",
            "9.0 s (90 %)",
            "97 % (41 %)",
            "30 MB",
        ] {
            assert!(lines[1].contains(want), "{want}: {t}");
        }
    }

    #[test]
    fn columns_line_up_with_wide_characters() {
        let t = runs(&[row(), clean(1.5e6)], false);
        let lines: Vec<&str> = t.lines().collect();
        // Right-aligned numbers end every line: one width, in characters,
        // although `µ` and `×` take two bytes.
        let width = |l: &str| l.chars().count();
        assert_eq!(width(lines[0]), width(lines[1]), "{t}");
        assert_eq!(width(lines[1]), width(lines[2]), "{t}");
    }

    #[test]
    fn markdown_has_a_header_rule_and_one_line_per_row() {
        let mut top = row();
        top.rate = Rate::Top;
        let m = runs(&[row(), top], true);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 4, "{m}");
        assert!(lines[1].starts_with("|---|---|---:|"), "{m}");
        assert!(lines[3].contains("| top speed |"), "{m}");
        let cols = |l: &str| l.matches(" | ").count();
        assert_eq!(cols(lines[0]), cols(lines[2]), "{m}");
    }

    #[test]
    fn summary_names_the_maximum_and_its_limit() {
        let best = clean(1_234_567.0);
        let s = [
            Summary {
                config: "1q 1w drv".to_owned(),
                best: Some(best.clone()),
                limit: Limit::Loss {
                    at_pps: 1_400_000.0,
                    what: "ring full (12)".to_owned(),
                },
                offline: best.offline,
            },
            Summary {
                config: "2q 2w drv".to_owned(),
                best: Some(best.clone()),
                limit: Limit::Sender,
                offline: best.offline,
            },
            Summary {
                config: "2q 1w drv".to_owned(),
                best: None,
                limit: Limit::Loss {
                    at_pps: 31_000.0,
                    what: "worker drops (3)".to_owned(),
                },
                offline: best.offline,
            },
        ];
        let t = summary(&s, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        for want in [
            "1.235 Mpps",
            "0.10",
            "9 018 ns",
            "800 ns",
            "480 ns",
            "11.3×",
            "30 MB",
            "ring full (12) at 1.400 Mpps",
        ] {
            assert!(lines[1].contains(want), "{want}: {t}");
        }
        assert!(
            lines[2].ends_with("the sender (top speed lost nothing)"),
            "{t}"
        );
        assert!(
            lines[3].ends_with("worker drops (3) at 0.031 Mpps (the lowest rate tried)"),
            "{t}"
        );
        let m = summary(&s, true);
        assert!(
            m.lines().nth(1).is_some_and(|l| l.ends_with("|---:|---|")),
            "{m}"
        );
    }
}
