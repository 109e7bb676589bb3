//! The end-of-run summary printed on stderr: packets, bytes, time,
//! throughput, records, notices, flows and anomalies by name.

use std::fmt;
use std::time::Duration;

use crate::anomaly::AnomalyCounts;
use crate::flow::FlowStats;
use crate::output::LogFileCounts;

use super::collector::{CollectorSummary, FinalCounts};
use super::worker::PacketStats;

/// Totals of one run, summed over the dispatcher and every worker.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub elapsed: Duration,
    pub packets: PacketStats,
    pub flows: FlowStats,
    pub records: u64,
    pub notices: u64,
    pub notices_suppressed: u64,
    /// weird.log rows written.
    pub weirds: u64,
    pub anomalies: AnomalyCounts,
    pub truncated_tail: bool,
    /// Records lost because the collector fell behind (live only).
    pub dropped_records: u64,
    /// Frames dropped because a worker's ring was full (live, sharded).
    pub dropped_frames: u64,
    /// Frames capture threads decoded to route them, for want of the XDP
    /// program's flow hash (live, sharded).
    pub unhashed_frames: u64,
    /// SIGINT/SIGTERM ended the run before the end of the input.
    pub stopped_early: bool,
    /// Worker threads that panicked: their flows were lost; the run fails.
    pub worker_panics: u64,
    /// The log files' drops (unwritable) and repairs (partial lines cut).
    pub log_files: LogFileCounts,
    /// Live: the capture interface was deleted and the run ended for it
    /// (`--on-interface-loss exit`); the run fails so a supervisor
    /// restarts it.
    pub interface_lost: Option<String>,
}

impl RunSummary {
    pub fn new(elapsed: Duration, collected: CollectorSummary, dispatch: FinalCounts) -> Self {
        let mut s = RunSummary {
            elapsed,
            packets: dispatch.packets,
            records: collected.records,
            notices: collected.notices,
            notices_suppressed: collected.notices_suppressed,
            weirds: collected.weirds,
            anomalies: dispatch.anomalies,
            worker_panics: dispatch.worker_panics,
            log_files: collected.log_files,
            ..RunSummary::default()
        };
        s.anomalies.merge(&collected.detect_anomalies);
        for f in &collected.finals {
            s.packets.other_ports += f.packets.other_ports;
            s.flows.merge(&f.flows);
            s.anomalies.merge(&f.anomalies);
        }
        s
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let gbps = if secs > 0.0 {
            self.packets.bytes as f64 * 8.0 / secs / 1e9
        } else {
            0.0
        };
        let pps = if secs > 0.0 {
            self.packets.packets as f64 / secs
        } else {
            0.0
        };
        writeln!(
            f,
            "smtp-sensor: {} packets, {} bytes in {:.3} s ({:.2} Gbit/s, {:.0} packets/s)",
            self.packets.packets, self.packets.bytes, secs, gbps, pps
        )?;
        writeln!(
            f,
            "smtp-sensor: {} TCP segments, {} not TCP/IP, {} on other ports; {} flows ({} closed, {} timed out, {} evicted)",
            self.packets.tcp,
            self.packets.ignored,
            self.packets.other_ports,
            self.flows.flows_created,
            self.flows.flows_closed,
            self.flows.flows_timed_out,
            self.flows.flows_evicted
        )?;
        writeln!(
            f,
            "smtp-sensor: {} smtp.log records, {} notices ({} suppressed), {} weird.log rows",
            self.records, self.notices, self.notices_suppressed, self.weirds
        )?;
        if self.stopped_early {
            writeln!(
                f,
                "smtp-sensor: stopped by a signal before the end of the input; everything read was logged"
            )?;
        }
        if self.dropped_frames > 0 {
            writeln!(
                f,
                "smtp-sensor: {} frames dropped: a worker fell behind",
                self.dropped_frames
            )?;
        }
        if self.unhashed_frames > 0 {
            writeln!(
                f,
                "smtp-sensor: {} frames routed without the XDP flow hash (the driver keeps no metadata): capture threads decoded them",
                self.unhashed_frames
            )?;
        }
        if self.dropped_records > 0 {
            writeln!(
                f,
                "smtp-sensor: {} records dropped: the log writer fell behind",
                self.dropped_records
            )?;
        }
        if self.log_files.dropped > 0 {
            writeln!(
                f,
                "smtp-sensor: {} records and notices dropped: a log file could not be written ({} failures)",
                self.log_files.dropped, self.log_files.failures
            )?;
        }
        if self.log_files.partial_lines_cut > 0 {
            writeln!(
                f,
                "smtp-sensor: {} partial last line(s) ({} bytes) cut from the logs at open",
                self.log_files.partial_lines_cut, self.log_files.partial_bytes_cut
            )?;
        }
        if self.anomalies.is_empty() {
            writeln!(f, "smtp-sensor: no anomalies")
        } else {
            let list: Vec<String> = self
                .anomalies
                .iter()
                .map(|(n, c)| format!("{n}={c}"))
                .collect();
            writeln!(f, "smtp-sensor: anomalies: {}", list.join(" "))
        }
    }
}
