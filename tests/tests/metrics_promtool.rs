//! The metrics endpoint speaks both text formats a scraper may ask for:
//! the real server, scraped over TCP with the `Accept` header of a
//! Prometheus-text scraper, must give an exposition that Prometheus's own
//! linter (`promtool check metrics`, Debian's prometheus package, which
//! `cargo xtask setup` installs) accepts without a complaint; without the
//! header it answers OpenMetrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sensor_common::maps::Counter;
use smtp_sensor::anomaly::{AnomalyCounts, CaptureAnomaly};
use smtp_sensor::capture::xdp::XdpCounters;
use smtp_sensor::detect::notice::Note;
use smtp_sensor::telemetry::{Telemetry, WorkerSnapshot};

/// A live run's telemetry with every family present: queues, hops, XDP
/// counters, workers with anomalies, notices, period merges, a refused
/// reload.
fn busy_telemetry() -> Arc<Telemetry> {
    let t = Telemetry::live("veth-smtp0", 2, 2);
    t.queues[0].add_batch(30, 3000);
    t.hops[1].add_hops(4);
    let mut w = WorkerSnapshot {
        live_flows: 2,
        records: 5,
        ..Default::default()
    };
    w.packets.packets = 30;
    w.anomalies.add(CaptureAnomaly::TruncatedRecord);
    t.workers[0].publish(w);
    let mut xdp = XdpCounters::default();
    xdp.0[Counter::Seen.index() as usize] = 31;
    t.set_xdp(xdp);
    let c = &t.collector;
    c.records_written.store(5, Ordering::Relaxed);
    c.notice_written(Note::PossibleSpam);
    c.period_merged(Duration::from_micros(300));
    c.period_merged(Duration::from_millis(40));
    c.reload_failed();
    let mut a = AnomalyCounts::new();
    a.add_named("spam_host_table_full", 1);
    c.set_detect_anomalies(&a);
    t
}

/// One `GET /metrics` with `accept` (when given): (headers, body).
fn scrape(addr: std::net::SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET /metrics HTTP/1.1\r\nHost: sensor\r\n{accept}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    (head.to_ascii_lowercase(), body.to_owned())
}

/// `promtool check metrics` on `text`: (success, its complaints).
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn prometheus_text_passes_promtool() {
    let server = smtp_sensor::metrics::spawn("127.0.0.1:0".parse().unwrap(), busy_telemetry())
        .expect("metrics server");
    let (head, body) = scrape(
        server.local_addr(),
        Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
    );
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in [
        "smtp_sensor_xdp_seen_total 31",
        "smtp_sensor_config_last_reload_successful 0",
        r#"smtp_sensor_notices_by_note_total{note="SMTP::SMTP_PossibleSpam"} 1"#,
        r#"smtp_sensor_period_merge_seconds_bucket{le="0.0005"} 1"#,
        r#"smtp_sensor_period_merge_seconds_bucket{le="0.05"} 2"#,
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE smtp_sensor_build_info gauge",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    let (ok, said) = promtool(&body);
    assert!(ok, "promtool check metrics failed:\n{said}\non\n{body}");
    assert_eq!(said.trim(), "", "promtool complained:\n{said}");

    // The linter is not a rubber stamp: the OpenMetrics text (what a
    // scraper without the header gets) is not the text format.
    let (head, om) = scrape(server.local_addr(), None);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"));
    let (ok, said) = promtool(&om);
    assert!(!ok, "promtool accepted OpenMetrics as text 0.0.4: {said}");
}
