//! A worker: owns a flow table, the protocol sessions of its flows and its
//! detector; turns decoded packets into records, notices and counters, and
//! hands them to the collector at each tick.

use std::sync::Arc;

use crate::anomaly::AnomalyCounts;
use crate::decode::{DecodeAnomaly, Decoded, Packet, PortSet};
use crate::detect::{Detection, Detector, Notice, PeriodCounters};
use crate::flow::{FlowConfig, FlowStats, FlowTable, FlowWeird, StreamParser};
use crate::net::{ConnInfo, KeyedMap, Ts, Uid};
use crate::output::weird_log::Weird;
use crate::smtp::anomaly::SmtpAnomaly;
use crate::smtp::record::{ConnRecord, MessageRecord};
use crate::smtp::sink::{Reply, SmtpSink};

use super::collector::Report;
use super::record_vecs::RecordVecs;
use super::reload::DetectionWatch;
use crate::telemetry::{Telemetry, WorkerSnapshot};

/// Where a worker's parsers report: the detector, the finished records of
/// the current window, the anomaly counters and weird.log rows.
pub struct WorkerSink {
    pub detector: Detector,
    pub records: Vec<ConnRecord>,
    pub anomalies: AnomalyCounts,
    /// weird.log rows of the current window: the first anomaly of each
    /// name on each connection.
    pub weirds: Vec<Weird>,
    /// The anomaly names each live connection has had a row for; an entry
    /// only for a connection that had one, gone when the connection ends.
    weird_seen: KeyedMap<Uid, Vec<&'static str>>,
    /// Network time of the packet being processed (or of the tick).
    pub now: Ts,
}

impl SmtpSink for WorkerSink {
    fn reply(&mut self, conn: &ConnInfo, reply: &Reply<'_>) {
        self.detector.on_reply(conn, reply);
    }

    fn record(&mut self, conn: &ConnInfo, record: MessageRecord) {
        self.detector.on_record(self.now, conn, &record);
        self.records.push(ConnRecord {
            conn: *conn,
            record,
        });
    }

    fn anomaly(&mut self, conn: &ConnInfo, anomaly: SmtpAnomaly) {
        self.anomalies.add(anomaly);
        let name = anomaly.weird_name();
        let seen = self.weird_seen.entry(conn.uid).or_default();
        if !seen.contains(&name) {
            seen.push(name);
            self.weirds.push(Weird {
                ts: self.now,
                conn: *conn,
                name,
                addl: anomaly.addl(),
                source: "SMTP",
                peer: None,
            });
        }
    }
}

impl WorkerSink {
    /// The flow of `conn` is gone: the detector may forget it.
    pub fn conn_end(&mut self, conn: &ConnInfo) {
        self.detector.on_conn_end(conn);
        if !self.weird_seen.is_empty() {
            self.weird_seen.remove(&conn.uid);
        }
    }
}

/// Makes the parser of a new connection.
pub type ParserFactory<P> = Arc<dyn Fn(&ConnInfo) -> P + Send + Sync>;

/// Packet counters of the dispatcher's decode step (every frame), or of one
/// worker (`packets`: TCP segments it was handed, `tcp`: those on an SMTP
/// port, `bytes`: their payload bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    pub packets: u64,
    pub bytes: u64,
    pub tcp: u64,
    /// Frames that were valid but not TCP/IP (ARP, UDP, …).
    pub ignored: u64,
    /// TCP segments on no watched port.
    pub other_ports: u64,
}

impl PacketStats {
    pub fn merge(&mut self, o: &PacketStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tcp += o.tcp;
        self.ignored += o.ignored;
        self.other_ports += o.other_ports;
    }
}

/// Counts what decoding a frame found (shared by the inline path and the
/// dispatcher so every frame is counted exactly once).
pub fn count_decoded(d: &Decoded<'_>, stats: &mut PacketStats, anomalies: &mut AnomalyCounts) {
    match d {
        Decoded::Tcp(p) => {
            stats.tcp += 1;
            if p.bad_ip_checksum {
                anomalies.add(DecodeAnomaly::BadIpChecksum);
            }
            if p.bad_tcp_checksum {
                anomalies.add(DecodeAnomaly::BadTcpChecksum);
            }
            if p.truncated {
                anomalies.add(DecodeAnomaly::TruncatedPayload);
            }
        }
        Decoded::Ignored => stats.ignored += 1,
        Decoded::Anomaly(a) => anomalies.add(*a),
    }
}

/// One worker's state.
pub struct Worker<P> {
    pub id: usize,
    table: FlowTable<P>,
    sink: WorkerSink,
    factory: ParserFactory<P>,
    smtp_ports: PortSet,
    pub stats: PacketStats,
    /// Ticks seen: the window the worker is in.
    window: u64,
    last_ts: Ts,
    /// smtp.log records and notices produced so far (for telemetry).
    records: u64,
    notices: u64,
    /// Where a reloaded configuration appears (SIGHUP).
    reload: Option<DetectionWatch>,
    /// Where the worker publishes its counters at each tick.
    telemetry: Option<Arc<Telemetry>>,
    /// The CPU its thread is pinned to (`--cpus`).
    pub cpu: Option<usize>,
    /// Where the next window's record vector comes from.
    record_vecs: Option<Arc<RecordVecs>>,
}

impl<P: StreamParser<WorkerSink>> Worker<P> {
    pub fn new(
        id: usize,
        flow: FlowConfig,
        detection: Arc<Detection>,
        factory: ParserFactory<P>,
    ) -> Self {
        let smtp_ports = PortSet::new(&flow.smtp_ports);
        Worker {
            id,
            table: FlowTable::new(flow),
            sink: WorkerSink {
                detector: Detector::new(detection),
                records: Vec::new(),
                anomalies: AnomalyCounts::new(),
                weirds: Vec::new(),
                weird_seen: KeyedMap::default(),
                now: Ts(0),
            },
            factory,
            smtp_ports,
            stats: PacketStats::default(),
            window: 0,
            last_ts: Ts(0),
            records: 0,
            notices: 0,
            reload: None,
            telemetry: None,
            cpu: None,
            record_vecs: None,
        }
    }

    /// Pins the worker's thread to `cpu` when it runs on a thread of its own.
    pub fn with_cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }

    /// Follows configuration reloads published in `watch`.
    pub fn with_reload(mut self, watch: DetectionWatch) -> Self {
        self.reload = Some(watch);
        self
    }

    /// Takes each report's record vector from `pool` (where the collector
    /// puts the written ones back).
    pub fn with_record_vecs(mut self, pool: Arc<RecordVecs>) -> Self {
        self.record_vecs = Some(pool);
        self
    }

    /// Publishes counters into `telemetry.workers[self.id]` at each tick.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Counts an anomaly found for it by another thread's work (a
    /// checksum the reading thread left to the worker).
    pub fn count_anomaly(&mut self, a: DecodeAnomaly) {
        self.sink.anomalies.add(a);
    }

    /// The ports it takes for SMTP.
    pub fn smtp_ports(&self) -> &PortSet {
        &self.smtp_ports
    }

    /// Whether a segment is on a watched port (either side).
    pub fn is_smtp(&self, p: &Packet<'_>) -> bool {
        p.on_port(&self.smtp_ports)
    }

    /// Processes one decoded TCP segment.
    pub fn packet(&mut self, p: &Packet<'_>) {
        self.stats.packets += 1;
        if !self.is_smtp(p) {
            self.stats.other_ports += 1;
            return;
        }
        self.stats.tcp += 1;
        self.stats.bytes += p.payload.len() as u64;
        self.sink.now = p.ts;
        self.last_ts = self.last_ts.max(p.ts);
        let factory = &self.factory;
        let Worker { table, sink, .. } = self;
        with_flow_anomalies(sink, |sink, flow| {
            table.process(p, sink, flow, &mut |c| factory(c));
        });
        take_flow_weirds(table, sink);
    }

    /// A tick at network time `now`: idle flows end, and the window's
    /// results go to the collector (with the period's counters when a
    /// period ended).
    pub fn tick(&mut self, now: Ts, period_end: Option<Ts>) -> Report {
        self.sink.now = now;
        let Worker { table, sink, .. } = self;
        with_flow_anomalies(sink, |sink, flow| table.expire(now, sink, flow));
        take_flow_weirds(table, sink);
        let period = period_end.map(|end| self.sink.detector.take_period(end));
        let report = self.report(true, period, false);
        self.window += 1;
        // A reload applies from the next window on, after this window's
        // period was handed over under the old rules.
        if let Some(d) = self.reload.as_mut().and_then(DetectionWatch::changed) {
            self.sink.detector.set_shared(d);
        }
        self.publish();
        report
    }

    /// End of input: every flow ends at the last packet's time, the partial
    /// period is handed over, and the final counters go with it.
    pub fn finish(&mut self, now: Ts) -> Report {
        let now = now.max(self.last_ts);
        self.sink.now = now;
        let Worker { table, sink, .. } = self;
        with_flow_anomalies(sink, |sink, flow| table.flush_all(now, sink, flow));
        let period = Some(self.sink.detector.take_period(now));
        self.publish();
        self.report(true, period, true)
    }

    /// Copies the counters into the shared telemetry (once per tick).
    fn publish(&self) {
        let Some(t) = &self.telemetry else { return };
        let Some(slot) = t.workers.get(self.id) else {
            return;
        };
        slot.publish(WorkerSnapshot {
            packets: self.stats,
            flows: self.table.stats,
            live_flows: self.table.len() as u64,
            records: self.records + self.sink.records.len() as u64,
            notices: self.notices,
            anomalies: self.sink.anomalies.clone(),
        });
    }

    /// Records and notices so far, without closing the window (sent when a
    /// window collects many records, to bound memory).
    pub fn partial(&mut self) -> Option<Report> {
        if self.sink.records.len() < PARTIAL_REPORT_RECORDS {
            return None;
        }
        Some(self.report(false, None, false))
    }

    fn report(&mut self, closes: bool, period: Option<PeriodCounters>, last: bool) -> Report {
        let notices: Vec<Notice> = self.sink.detector.take_notices();
        self.records += self.sink.records.len() as u64;
        self.notices += notices.len() as u64;
        Report {
            source: 0,
            worker: self.id,
            window: self.window,
            closes,
            records: std::mem::replace(
                &mut self.sink.records,
                self.record_vecs
                    .as_ref()
                    .map(|p| p.take())
                    .unwrap_or_default(),
            ),
            notices,
            weirds: std::mem::take(&mut self.sink.weirds),
            period,
            last: last.then(|| super::collector::FinalCounts {
                packets: self.stats,
                flows: self.table.stats,
                anomalies: std::mem::take(&mut self.sink.anomalies),
                worker_panics: 0,
            }),
        }
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.table.stats
    }
}

/// Runs a flow-table operation that needs the sink (where the parsers
/// report, SMTP anomalies included) and, at the same time, a counter for the
/// flow layer's own anomalies; folds the latter into the sink's afterwards.
/// An empty counter does not allocate, so the packet path pays nothing
/// when nothing is wrong.
/// The flow table's weird.log rows (already one per connection and name)
/// to the window's rows, beside the SMTP parser's.
fn take_flow_weirds<P>(table: &mut FlowTable<P>, sink: &mut WorkerSink) {
    if table.weirds.is_empty() {
        return;
    }
    sink.weirds
        .extend(table.weirds.drain(..).map(|w: FlowWeird| Weird {
            ts: w.ts,
            conn: w.conn,
            name: w.anomaly.name(),
            addl: None,
            // The analyzer that saw it, as Zeek's TCP analyzer names itself.
            source: "TCP",
            peer: None,
        }));
}

fn with_flow_anomalies(
    sink: &mut WorkerSink,
    op: impl FnOnce(&mut WorkerSink, &mut AnomalyCounts),
) {
    let mut flow = AnomalyCounts::new();
    op(sink, &mut flow);
    if !flow.is_empty() {
        sink.anomalies.merge(&flow);
    }
}

/// Records after which a worker sends what it has before its window ends.
pub const PARTIAL_REPORT_RECORDS: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::net::ConnId;

    fn conn(port: u16) -> ConnInfo {
        let id = ConnId {
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: port,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(1))
    }

    #[test]
    fn a_weird_row_per_name_and_connection_every_one_counted() {
        let detection = Arc::new(Detection::from_config(&Config::default()).unwrap());
        let mut sink = WorkerSink {
            detector: Detector::new(detection),
            records: Vec::new(),
            anomalies: AnomalyCounts::new(),
            weirds: Vec::new(),
            weird_seen: KeyedMap::default(),
            now: Ts(5),
        };
        let (a, b) = (conn(40000), conn(40001));
        for _ in 0..3 {
            sink.anomaly(&a, SmtpAnomaly::MailTransactionInvalid);
            // The same name with another addl: no second row either.
            sink.anomaly(&a, SmtpAnomaly::DataMissingRcptTo);
            sink.anomaly(&a, SmtpAnomaly::UnknownCommand);
            sink.anomaly(&b, SmtpAnomaly::UnknownCommand);
        }
        let rows: Vec<(u16, &str, Option<&str>)> = sink
            .weirds
            .iter()
            .map(|w| (w.conn.id.orig_p, w.name, w.addl))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    40000,
                    "smtp_mail_transaction_invalid",
                    Some("rcpt to missing mail from")
                ),
                (40000, "smtp_unknown_command", None),
                (40001, "smtp_unknown_command", None),
            ]
        );
        assert_eq!(sink.anomalies.get("smtp_mail_transaction_invalid"), 6);
        assert_eq!(sink.anomalies.get("smtp_unknown_command"), 6);
        // A connection's names are forgotten when it ends.
        sink.conn_end(&a);
        sink.conn_end(&b);
        assert!(sink.weird_seen.is_empty());
    }
}
