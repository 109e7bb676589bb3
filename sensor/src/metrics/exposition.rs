//! Renders [`Telemetry`] as OpenMetrics text with `prometheus-client` (and
//! from it the Prometheus text format, see `format`), with the standard
//! `process_*` metrics beside the sensor's own.
//!
//! Nothing is registered ahead of time: a [`Collector`] reads the counters
//! at each scrape, so the packet path keeps its plain atomics and
//! snapshots and pays nothing for the endpoint. Per rx queue values carry a
//! `queue` label, per worker values a `worker` label, anomalies also a
//! `name` label; the XDP program's counters are per interface (summed over
//! CPUs) and the collector's are global, so they carry none.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use sensor_common::maps::Counter;

use super::MetricsError;
use super::format::{Format, to_prometheus_text};
use super::process::ProcessStats;
use crate::capture::link_watch::LinkCounters;
use crate::capture::stats::QueueCounters;
use crate::telemetry::{CollectorTelemetry, HopCounters, Telemetry, WorkerSnapshot};

/// The scrape-time view of one run's [`Telemetry`].
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TelemetryCollector { telemetry }));
        Exposition { registry }
    }

    /// The current values, as a complete OpenMetrics exposition.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The current values in `format`.
    pub fn render_as(&self, format: Format) -> Result<String, MetricsError> {
        let om = self.render()?;
        Ok(match format {
            Format::OpenMetrics => om,
            Format::PrometheusText => to_prometheus_text(&om),
        })
    }
}

/// One metric family read from a `T`: its name without the unit and the
/// `_total` suffix (the encoder appends both), help line and unit.
struct Spec<T> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: fn(&T) -> u64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

const QUEUE_COUNTERS: &[Spec<QueueCounters>] = &[
    Spec {
        name: "smtp_sensor_rx_frames",
        help: "Frames the AF_XDP socket of the rx queue delivered to userspace.",
        unit: None,
        value: |q| load(&q.frames),
    },
    Spec {
        name: "smtp_sensor_rx",
        help: "Bytes of the frames delivered to userspace.",
        unit: Some(Unit::Bytes),
        value: |q| load(&q.bytes),
    },
    Spec {
        name: "smtp_sensor_rx_invalid_descriptors",
        help: "Rx descriptors pointing outside the UMEM, skipped (should stay 0).",
        unit: None,
        value: |q| load(&q.invalid_descs),
    },
    Spec {
        name: "smtp_sensor_socket_rx_dropped",
        help: "Frames the kernel dropped for the AF_XDP socket.",
        unit: None,
        value: |q| load(&q.sock_rx_dropped),
    },
    Spec {
        name: "smtp_sensor_socket_rx_ring_full",
        help: "Frames dropped because the socket's rx ring was full (userspace too slow).",
        unit: None,
        value: |q| load(&q.sock_rx_ring_full),
    },
    Spec {
        name: "smtp_sensor_socket_fill_ring_empty",
        help: "Times the kernel found the socket's fill ring empty.",
        unit: None,
        value: |q| load(&q.sock_fill_ring_empty),
    },
];

const HOP_COUNTERS: &[Spec<HopCounters>] = &[
    Spec {
        name: "smtp_sensor_ring_hops",
        help: "Frames the capture thread of the rx queue handed to another worker over a ring.",
        unit: None,
        value: |h| load(&h.frames),
    },
    Spec {
        name: "smtp_sensor_ring_full_drops",
        help: "Frames dropped because the owning worker's ring was full (the worker fell behind).",
        unit: None,
        value: |h| load(&h.ring_full_drops),
    },
    Spec {
        name: "smtp_sensor_ring_unhashed",
        help: "Frames the capture thread decoded to find their worker (no flow hash from XDP).",
        unit: None,
        value: |h| load(&h.unhashed),
    },
];

const WORKER_COUNTERS: &[Spec<WorkerSnapshot>] = &[
    Spec {
        name: "smtp_sensor_worker_packets",
        help: "TCP segments the worker was handed.",
        unit: None,
        value: |w| w.packets.packets,
    },
    Spec {
        name: "smtp_sensor_worker",
        help: "TCP payload bytes of the worker's segments on an SMTP port.",
        unit: Some(Unit::Bytes),
        value: |w| w.packets.bytes,
    },
    Spec {
        name: "smtp_sensor_worker_tcp_segments",
        help: "The worker's TCP segments on an SMTP port.",
        unit: None,
        value: |w| w.packets.tcp,
    },
    Spec {
        name: "smtp_sensor_worker_other_port_segments",
        help: "TCP segments on no watched port.",
        unit: None,
        value: |w| w.packets.other_ports,
    },
    Spec {
        name: "smtp_sensor_flows_created",
        help: "Connections the worker started tracking.",
        unit: None,
        value: |w| w.flows.flows_created,
    },
    Spec {
        name: "smtp_sensor_flows_closed",
        help: "Connections that ended with FIN or RST.",
        unit: None,
        value: |w| w.flows.flows_closed,
    },
    Spec {
        name: "smtp_sensor_flows_timed_out",
        help: "Connections expired after their idle timeout.",
        unit: None,
        value: |w| w.flows.flows_timed_out,
    },
    Spec {
        name: "smtp_sensor_flows_evicted",
        help: "Connections evicted because the flow table was full.",
        unit: None,
        value: |w| w.flows.flows_evicted,
    },
    Spec {
        name: "smtp_sensor_untracked_segments",
        help: "Segments without payload or SYN for which no flow existed.",
        unit: None,
        value: |w| w.flows.untracked_segments,
    },
    Spec {
        name: "smtp_sensor_retransmitted_segments",
        help: "Segments whose payload had already been seen.",
        unit: None,
        value: |w| w.flows.retransmissions,
    },
    Spec {
        name: "smtp_sensor_out_of_order_segments",
        help: "Segments that arrived ahead of a missing one.",
        unit: None,
        value: |w| w.flows.out_of_order,
    },
    Spec {
        name: "smtp_sensor_stream_gaps",
        help: "Holes in a TCP stream that were skipped (data never seen).",
        unit: None,
        value: |w| w.flows.gaps,
    },
    Spec {
        name: "smtp_sensor_stream_gap",
        help: "Bytes of stream data skipped over gaps.",
        unit: Some(Unit::Bytes),
        value: |w| w.flows.gap_bytes,
    },
    Spec {
        name: "smtp_sensor_worker_records",
        help: "smtp.log records the worker produced.",
        unit: None,
        value: |w| w.records,
    },
    Spec {
        name: "smtp_sensor_worker_notices",
        help: "Block-list and origination notices the worker raised.",
        unit: None,
        value: |w| w.notices,
    },
];

const COLLECTOR_COUNTERS: &[Spec<CollectorTelemetry>] = &[
    Spec {
        name: "smtp_sensor_records_written",
        help: "Records written to smtp.log.",
        unit: None,
        value: |c| load(&c.records_written),
    },
    Spec {
        name: "smtp_sensor_records_dropped",
        help: "Records dropped because too many were already waiting for the log writer (slow disk).",
        unit: None,
        value: |c| load(&c.records_dropped),
    },
    Spec {
        name: "smtp_sensor_notices_written",
        help: "Notices written to notice.log.",
        unit: None,
        value: |c| load(&c.notices_written),
    },
    Spec {
        name: "smtp_sensor_notices_suppressed",
        help: "Notices suppressed as repeats within the suppression interval.",
        unit: None,
        value: |c| load(&c.notices_suppressed),
    },
    Spec {
        name: "smtp_sensor_log_reopens",
        help: "Times the log files were reopened (SIGHUP).",
        unit: None,
        value: |c| load(&c.log_reopens),
    },
    Spec {
        name: "smtp_sensor_log_records_dropped",
        help: "Records and notices dropped because a log file could not be written (directory gone or read-only, disk full).",
        unit: None,
        value: |c| load(&c.log_records_dropped),
    },
    Spec {
        name: "smtp_sensor_log_write_failures",
        help: "Failed log writes and reopens (each logged; retried every second).",
        unit: None,
        value: |c| load(&c.log_write_failures),
    },
    Spec {
        name: "smtp_sensor_log_partial_lines_cut",
        help: "Partial last lines cut from a log opened for append (left by a killed run).",
        unit: None,
        value: |c| load(&c.log_partial_lines_cut),
    },
    Spec {
        name: "smtp_sensor_config_reloads",
        help: "Successful configuration reloads (SIGHUP).",
        unit: None,
        value: |c| load(&c.config_reloads),
    },
    Spec {
        name: "smtp_sensor_config_reload_errors",
        help: "Reloads refused because the new configuration was invalid.",
        unit: None,
        value: |c| load(&c.config_reload_errors),
    },
];

/// HELP text of an XDP program counter (the metric is
/// `smtp_sensor_<Counter::name()>_total`).
fn xdp_help(c: Counter) -> &'static str {
    match c {
        Counter::Seen => "Frames the XDP program ran on (all rx queues, all CPUs).",
        Counter::Redirected => "SMTP frames the XDP program redirected to an AF_XDP socket.",
        Counter::Passed => "Frames the XDP program returned to the kernel stack.",
        Counter::Dropped => "Non-SMTP frames the XDP program dropped (--non-smtp drop).",
        Counter::Malformed => "Frames whose VLAN/IP/TCP headers were truncated or invalid.",
        Counter::RedirectFailed => "SMTP frames whose rx queue had no AF_XDP socket (passed).",
        Counter::MetaFailed => {
            "SMTP frames without room for the flow-hash metadata (hashed in userspace)."
        }
    }
}

type Labels = [(&'static str, String); 1];

fn label(key: &'static str, index: usize) -> Labels {
    [(key, index.to_string())]
}

/// Reads [`Telemetry`] at scrape time.
#[derive(Debug)]
struct TelemetryCollector {
    telemetry: Arc<Telemetry>,
}

impl Collector for TelemetryCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let t = &*self.telemetry;
        encode_run(&mut enc, t)?;
        for spec in QUEUE_COUNTERS {
            per_index(&mut enc, spec, "queue", t.queues.iter().map(|q| &**q))?;
        }
        for spec in HOP_COUNTERS {
            per_index(&mut enc, spec, "queue", t.hops.iter())?;
        }
        if let Some(xdp) = t.xdp() {
            for c in Counter::ALL {
                let name = format!("smtp_sensor_{}", c.name());
                let mut m = enc.encode_descriptor(&name, xdp_help(c), None, MetricType::Counter)?;
                m.encode_counter::<NoLabelSet, _, u64>(&xdp.get(c), None)?;
            }
        }
        let workers: Vec<WorkerSnapshot> = t.workers.iter().map(|w| w.snapshot()).collect();
        for spec in WORKER_COUNTERS {
            per_index(&mut enc, spec, "worker", workers.iter())?;
        }
        encode_worker_gauges_and_anomalies(&mut enc, &workers)?;
        for spec in COLLECTOR_COUNTERS {
            let mut m = enc.encode_descriptor(
                spec.name,
                spec.help,
                spec.unit.as_ref(),
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&(spec.value)(&t.collector), None)?;
        }
        enc.encode_descriptor(
            "smtp_sensor_logs_unwritable",
            "Log files that cannot be written now (their records are dropped and counted; retried every second).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(load(&t.collector.logs_unwritable) as i64))?;
        encode_notes_and_reload(&mut enc, &t.collector)?;
        encode_detect_anomalies(&mut enc, &t.collector)?;
        encode_period_merge(&mut enc, &t.collector)?;
        encode_process(&mut enc, &ProcessStats::read())
    }
}

/// Notices written per note, and whether the last reload took.
fn encode_notes_and_reload(enc: &mut DescriptorEncoder, c: &CollectorTelemetry) -> fmt::Result {
    let mut m = enc.encode_descriptor(
        "smtp_sensor_notices_by_note",
        "Notices written to notice.log, by note.",
        None,
        MetricType::Counter,
    )?;
    for (note, n) in c.notices_by_note() {
        m.encode_family(&[("note", note.as_str())])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    enc.encode_descriptor(
        "smtp_sensor_config_last_reload_successful",
        "Whether the last configuration reload (SIGHUP) was applied (1 before any).",
        None,
        MetricType::Gauge,
    )?
    .encode_gauge(&i64::from(c.last_reload_ok()))?;
    enc.encode_descriptor(
        "smtp_sensor_config_last_reload_success_timestamp",
        "When the configuration in force was loaded (start or last applied reload), Unix time.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?
    .encode_gauge(&c.last_reload_success_secs())
}

/// The standard `process_*` families; one `/proc` cannot give is left out.
fn encode_process(enc: &mut DescriptorEncoder, p: &ProcessStats) -> fmt::Result {
    let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
        (
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Some(Unit::Seconds),
            p.start_time_secs,
        ),
        (
            "process_resident_memory",
            "Resident memory size.",
            Some(Unit::Bytes),
            p.resident_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory",
            "Virtual memory size.",
            Some(Unit::Bytes),
            p.virtual_bytes.map(|b| b as f64),
        ),
        (
            "process_open_fds",
            "Open file descriptors.",
            None,
            p.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            None,
            p.max_fds.map(|n| n as f64),
        ),
    ];
    if let Some(cpu) = p.cpu_secs {
        enc.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, f64>(&cpu, None)?;
    }
    for (name, help, unit, value) in gauges {
        if let Some(v) = value {
            enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?
                .encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// Detection's limits that were hit, by name (none: no family).
fn encode_detect_anomalies(enc: &mut DescriptorEncoder, c: &CollectorTelemetry) -> fmt::Result {
    let counts = c.detect_anomalies();
    if counts.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "smtp_sensor_detect_anomalies",
        "Detection limits that were hit (host table full, notice buffer released early), by name.",
        None,
        MetricType::Counter,
    )?;
    for (name, n) in counts.iter() {
        m.encode_family(&[("name", name)])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

/// One counter family with a sample per item, labelled `key="<index>"`.
/// Nothing (not even HELP/TYPE) when there are no items: an offline run has
/// no rx queues.
fn per_index<'a, T: 'a>(
    enc: &mut DescriptorEncoder,
    spec: &Spec<T>,
    key: &'static str,
    items: impl ExactSizeIterator<Item = &'a T>,
) -> fmt::Result {
    if items.len() == 0 {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        spec.name,
        spec.help,
        spec.unit.as_ref(),
        MetricType::Counter,
    )?;
    for (i, item) in items.enumerate() {
        m.encode_family(&label(key, i))?
            .encode_counter::<NoLabelSet, _, u64>(&(spec.value)(item), None)?;
    }
    Ok(())
}

/// What runs: version, mode and interface, uptime.
fn encode_run(enc: &mut DescriptorEncoder, t: &Telemetry) -> fmt::Result {
    enc.encode_descriptor(
        "smtp_sensor_build",
        "Version of the running sensor.",
        None,
        MetricType::Info,
    )?
    .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
    let mut m = enc.encode_descriptor(
        "smtp_sensor",
        "How the sensor runs: live on an interface, or offline on a capture file.",
        None,
        MetricType::Info,
    )?;
    match &t.interface {
        Some(iface) => m.encode_info(&[("mode", "live"), ("interface", iface.as_str())])?,
        None => m.encode_info(&[("mode", "offline")])?,
    }
    if t.interface.is_some() {
        encode_link(enc, &t.link)?;
    }
    enc.encode_descriptor(
        "smtp_sensor_uptime",
        "Seconds since the sensor started.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?
    .encode_gauge(&t.started.elapsed().as_secs_f64())
}

/// The capture interface's state (live only).
fn encode_link(enc: &mut DescriptorEncoder, l: &LinkCounters) -> fmt::Result {
    enc.encode_descriptor(
        "smtp_sensor_interface_up",
        "1 while the capture interface exists with its link up, else 0.",
        None,
        MetricType::Gauge,
    )?
    .encode_gauge(&(load(&l.up) as i64))?;
    enc.encode_descriptor(
        "smtp_sensor_interface_losses",
        "Times the capture interface's link went down or the interface was deleted.",
        None,
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, _, u64>(&load(&l.losses), None)?;
    enc.encode_descriptor(
        "smtp_sensor_interface_reattaches",
        "Times capture was set up again on the interface (XDP program found missing, or the interface came back).",
        None,
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, _, u64>(&load(&l.reattaches), None)
}

/// Live flows (a gauge) per worker, and anomalies per worker and name.
fn encode_worker_gauges_and_anomalies(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerSnapshot],
) -> fmt::Result {
    if workers.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "smtp_sensor_live_flows",
        "Connections in the worker's flow table now.",
        None,
        MetricType::Gauge,
    )?;
    for (i, w) in workers.iter().enumerate() {
        m.encode_family(&label("worker", i))?
            .encode_gauge(&w.live_flows)?;
    }
    let anomalies: Vec<([(&str, String); 2], u64)> = workers
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            w.anomalies
                .iter()
                .map(move |(name, n)| ([("worker", i.to_string()), ("name", name.to_owned())], n))
        })
        .collect();
    if anomalies.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "smtp_sensor_anomalies",
        "Anomalies the worker counted, by Zeek weird-style name.",
        None,
        MetricType::Counter,
    )?;
    for (labels, n) in &anomalies {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// Period merges as a histogram (buckets of `PERIOD_MERGE_BOUNDS`), plus
/// the last merge's duration as a gauge.
fn encode_period_merge(enc: &mut DescriptorEncoder, c: &CollectorTelemetry) -> fmt::Result {
    let count = load(&c.periods);
    let sum = nanos_to_secs(load(&c.period_merge_nanos));
    enc.encode_descriptor(
        "smtp_sensor_period_merge",
        "Time spent merging the workers' per-host counters and evaluating the rules, per inspection period.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?
    .encode_histogram::<NoLabelSet>(sum, count, &c.period_merge_histogram(), None)?;
    enc.encode_descriptor(
        "smtp_sensor_last_period_merge",
        "Duration of the last period merge and evaluation.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?
    .encode_gauge(&nanos_to_secs(load(&c.last_period_merge_nanos)))
}

fn nanos_to_secs(n: u64) -> f64 {
    n as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::anomaly::CaptureAnomaly;
    use crate::capture::xdp::XdpCounters;

    /// A live run with two queues and two workers, every counter distinct.
    fn live_telemetry() -> Arc<Telemetry> {
        let t = Telemetry::live("veth-smtp0", 2, 2);
        t.queues[0].add_batch(3, 300);
        t.queues[1].add_batch(7, 1400);
        t.queues[1].sock_rx_dropped.store(4, Ordering::Relaxed);
        t.queues[1].sock_rx_ring_full.store(5, Ordering::Relaxed);
        t.queues[0].sock_fill_ring_empty.store(6, Ordering::Relaxed);
        t.hops[1].add_hops(11);
        t.hops[1].add_drops(2);
        let mut w0 = WorkerSnapshot {
            live_flows: 12,
            records: 8,
            notices: 1,
            ..Default::default()
        };
        w0.packets.packets = 40;
        w0.packets.bytes = 4096;
        w0.flows.flows_created = 9;
        w0.flows.gap_bytes = 77;
        w0.anomalies.add(CaptureAnomaly::TruncatedRecord);
        let mut w1 = WorkerSnapshot {
            live_flows: 3,
            ..Default::default()
        };
        w1.packets.packets = 2;
        w1.anomalies.add_n(CaptureAnomaly::UnsupportedLinkType, 5);
        t.workers[0].publish(w0);
        t.workers[1].publish(w1);
        t.collector.records_written.store(8, Ordering::Relaxed);
        t.collector.notices_suppressed.store(2, Ordering::Relaxed);
        t.collector.period_merged(Duration::from_millis(250));
        t.collector.period_merged(Duration::from_millis(500));
        let mut xdp = XdpCounters::default();
        xdp.0[Counter::Seen.index() as usize] = 100;
        xdp.0[Counter::Redirected.index() as usize] = 10;
        xdp.0[Counter::Passed.index() as usize] = 90;
        t.set_xdp(xdp);
        t
    }

    fn render(t: &Arc<Telemetry>) -> String {
        Exposition::new(Arc::clone(t)).render().unwrap()
    }

    fn assert_lines(text: &str, lines: &[&str]) {
        let have: Vec<&str> = text.lines().collect();
        for l in lines {
            assert!(have.contains(l), "missing line {l:?} in\n{text}");
        }
    }

    #[test]
    fn live_run_renders_every_counter_with_its_labels() {
        let text = render(&live_telemetry());
        assert_lines(
            &text,
            &[
                "# HELP smtp_sensor_rx_frames Frames the AF_XDP socket of the rx queue delivered to userspace.",
                "# TYPE smtp_sensor_rx_frames counter",
                r#"smtp_sensor_rx_frames_total{queue="0"} 3"#,
                r#"smtp_sensor_rx_frames_total{queue="1"} 7"#,
                "# TYPE smtp_sensor_rx_bytes counter",
                "# UNIT smtp_sensor_rx_bytes bytes",
                r#"smtp_sensor_rx_bytes_total{queue="1"} 1400"#,
                r#"smtp_sensor_socket_rx_dropped_total{queue="1"} 4"#,
                r#"smtp_sensor_socket_rx_ring_full_total{queue="1"} 5"#,
                r#"smtp_sensor_socket_fill_ring_empty_total{queue="0"} 6"#,
                r#"smtp_sensor_socket_fill_ring_empty_total{queue="1"} 0"#,
                r#"smtp_sensor_ring_hops_total{queue="0"} 0"#,
                r#"smtp_sensor_ring_hops_total{queue="1"} 11"#,
                r#"smtp_sensor_ring_full_drops_total{queue="1"} 2"#,
                "smtp_sensor_xdp_seen_total 100",
                "smtp_sensor_xdp_redirected_total 10",
                "smtp_sensor_xdp_passed_total 90",
                "smtp_sensor_xdp_dropped_total 0",
                "smtp_sensor_xdp_redirect_failed_total 0",
                "smtp_sensor_xdp_meta_failed_total 0",
                r#"smtp_sensor_worker_packets_total{worker="0"} 40"#,
                r#"smtp_sensor_worker_packets_total{worker="1"} 2"#,
                r#"smtp_sensor_worker_bytes_total{worker="0"} 4096"#,
                r#"smtp_sensor_flows_created_total{worker="0"} 9"#,
                r#"smtp_sensor_stream_gap_bytes_total{worker="0"} 77"#,
                r#"smtp_sensor_worker_records_total{worker="0"} 8"#,
                r#"smtp_sensor_worker_notices_total{worker="0"} 1"#,
                "# TYPE smtp_sensor_live_flows gauge",
                r#"smtp_sensor_live_flows{worker="0"} 12"#,
                r#"smtp_sensor_live_flows{worker="1"} 3"#,
                r#"smtp_sensor_anomalies_total{worker="0",name="pcap_truncated_record"} 1"#,
                r#"smtp_sensor_anomalies_total{worker="1",name="unsupported_link_type"} 5"#,
                "smtp_sensor_records_written_total 8",
                "smtp_sensor_notices_suppressed_total 2",
                "smtp_sensor_records_dropped_total 0",
                "# TYPE smtp_sensor_period_merge_seconds histogram",
                "# UNIT smtp_sensor_period_merge_seconds seconds",
                "smtp_sensor_period_merge_seconds_sum 0.75",
                "smtp_sensor_period_merge_seconds_count 2",
                r#"smtp_sensor_period_merge_seconds_bucket{le="0.1"} 0"#,
                r#"smtp_sensor_period_merge_seconds_bucket{le="0.25"} 1"#,
                r#"smtp_sensor_period_merge_seconds_bucket{le="0.5"} 2"#,
                r#"smtp_sensor_period_merge_seconds_bucket{le="+Inf"} 2"#,
                r#"smtp_sensor_notices_by_note_total{note="SMTP::SMTP_PossibleSpam"} 0"#,
                "smtp_sensor_config_last_reload_successful 1",
                "# TYPE process_cpu_seconds counter",
                "# TYPE process_resident_memory_bytes gauge",
                "# TYPE process_open_fds gauge",
                "# TYPE process_start_time_seconds gauge",
                "smtp_sensor_last_period_merge_seconds 0.5",
                r#"smtp_sensor_info{mode="live",interface="veth-smtp0"} 1"#,
                concat!(
                    r#"smtp_sensor_build_info{version=""#,
                    env!("CARGO_PKG_VERSION"),
                    r#""} 1"#
                ),
                "# TYPE smtp_sensor_uptime_seconds gauge",
            ],
        );
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        // Anomalies a worker never saw are not invented.
        assert!(!text.contains(r#"{worker="1",name="pcap_truncated_record"}"#));
    }

    #[test]
    fn offline_run_has_no_queue_or_xdp_families() {
        let t = Telemetry::offline(1);
        let text = render(&t);
        assert_lines(
            &text,
            &[
                r#"smtp_sensor_info{mode="offline"} 1"#,
                r#"smtp_sensor_worker_packets_total{worker="0"} 0"#,
                r#"smtp_sensor_live_flows{worker="0"} 0"#,
                "smtp_sensor_period_merge_seconds_count 0",
                "smtp_sensor_period_merge_seconds_sum 0.0",
            ],
        );
        for absent in [
            "smtp_sensor_rx_",
            "smtp_sensor_xdp_",
            "smtp_sensor_ring_",
            "anomalies",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn detection_limits_are_exposed_by_name() {
        let t = Telemetry::offline(1);
        let mut a = crate::anomaly::AnomalyCounts::new();
        a.add_named("spam_host_table_full", 7);
        t.collector.set_detect_anomalies(&a);
        let text = render(&t);
        assert_lines(
            &text,
            &[r#"smtp_sensor_detect_anomalies_total{name="spam_host_table_full"} 7"#],
        );
    }

    #[test]
    fn scrapes_read_current_values() {
        let t = live_telemetry();
        let exposition = Exposition::new(Arc::clone(&t));
        let before = exposition.render().unwrap();
        t.queues[0].add_batch(1, 60);
        t.collector.config_reloads.fetch_add(1, Ordering::Relaxed);
        let after = exposition.render().unwrap();
        assert_lines(&before, &[r#"smtp_sensor_rx_frames_total{queue="0"} 3"#]);
        assert_lines(
            &after,
            &[
                r#"smtp_sensor_rx_frames_total{queue="0"} 4"#,
                r#"smtp_sensor_rx_bytes_total{queue="0"} 360"#,
                "smtp_sensor_config_reloads_total 1",
            ],
        );
    }

    #[test]
    fn interface_names_are_escaped_in_labels() {
        let t = Telemetry::live("we\"ird\\if", 1, 1);
        let text = render(&t);
        assert_lines(
            &text,
            &[r#"smtp_sensor_info{mode="live",interface="we\"ird\\if"} 1"#],
        );
    }

    /// Every sample belongs to a family declared once by HELP and TYPE just
    /// before it, with the suffix its type allows; every value is a number.
    #[test]
    fn exposition_is_well_formed_openmetrics() {
        let text = render(&live_telemetry());
        let mut declared: HashMap<String, String> = HashMap::new();
        let mut current: Option<(String, String)> = None;
        let mut help_for: Option<String> = None;
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty(), "{line}");
                help_for = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap();
                assert_eq!(help_for.as_deref(), Some(name), "TYPE without HELP: {line}");
                let dup = declared.insert(name.to_owned(), ty.to_owned());
                assert!(dup.is_none(), "family {name} declared twice");
                current = Some((name.to_owned(), ty.to_owned()));
            } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').unwrap();
                assert!(name.ends_with(&format!("_{unit}")), "{line}");
            } else if line == "# EOF" {
                continue;
            } else {
                let (family, ty) = current.as_ref().expect("sample before any TYPE");
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(
                    name.starts_with("smtp_sensor") || name.starts_with("process_"),
                    "{line}"
                );
                let suffix = name
                    .strip_prefix(family.as_str())
                    .unwrap_or_else(|| panic!("sample {name} outside its family {family}"));
                let allowed: &[&str] = match ty.as_str() {
                    "counter" => &["_total"],
                    "gauge" => &[""],
                    "info" => &["_info"],
                    "histogram" => &["_sum", "_count", "_bucket"],
                    other => panic!("unexpected type {other}"),
                };
                assert!(allowed.contains(&suffix), "{line}");
                assert!(value.parse::<f64>().is_ok(), "{line}");
                samples += 1;
            }
        }
        assert!(samples > 50, "only {samples} samples");
        assert_eq!(text.lines().filter(|l| *l == "# EOF").count(), 1);
    }
}
