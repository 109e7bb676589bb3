//! What a replay reports: from the program's own counters, the frames and
//! bytes it put on the wire, over how long, and what it left out.

use serde::Serialize;

use crate::table::Skipped;

/// The end-of-run figures (`--json` writes them as one object).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Interface the frames were sent from.
    pub iface: String,
    /// Frames of one pass (the capture, less what was skipped).
    pub frames_per_pass: u64,
    /// Bytes of one pass.
    pub bytes_per_pass: u64,
    /// Frames left out of the table.
    pub skipped: Skipped,
    /// Frames the program sent (`XDP_TX`), all lanes.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames per lane.
    pub lane_frames: Vec<u64>,
    /// Whole passes sent (`frames / frames_per_pass` when not interrupted).
    pub passes: f64,
    /// Runs that found no frames for their lane, or failed to build a
    /// frame (a bug if ever non-zero).
    pub failed: u64,
    /// Runs of the program that waited for the pace (sent nothing).
    pub idle_runs: u64,
    /// Seconds from the first call to the end of the last.
    pub seconds: f64,
    /// Offered rate.
    pub pps: f64,
    /// Offered rate in Gbit/s of frame bytes.
    pub gbps: f64,
    /// `BPF_PROG_RUN` calls made.
    pub calls: u64,
    /// Seconds spent reading the capture and filling the maps.
    pub load_seconds: f64,
    /// A signal ended the run.
    pub interrupted: bool,
}

impl Report {
    /// Sets the rates from frames, bytes and seconds.
    pub fn with_rates(mut self) -> Self {
        if self.seconds > 0.0 {
            self.pps = self.frames as f64 / self.seconds;
            self.gbps = self.bytes as f64 * 8.0 / self.seconds / 1e9;
        }
        if self.frames_per_pass > 0 {
            self.passes = self.frames as f64 / self.frames_per_pass as f64;
        }
        self
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "smtp-replay: sent {} frames ({} bytes) on {} in {:.3} s: {:.3} Mpps, {:.2} Gbit/s; \
             {:.2} passes of {} frames, {} calls",
            self.frames,
            self.bytes,
            self.iface,
            self.seconds,
            self.pps / 1e6,
            self.gbps,
            self.passes,
            self.frames_per_pass,
            self.calls
        );
        if self.lane_frames.len() > 1 {
            let lanes: Vec<String> = self.lane_frames.iter().map(u64::to_string).collect();
            s.push_str(&format!("; per lane {}", lanes.join("/")));
        }
        if self.skipped.total() > 0 {
            s.push_str(&format!(
                "; skipped {} not-IP and {} oversize frames of the capture",
                self.skipped.not_ip, self.skipped.oversize
            ));
        }
        if self.failed > 0 {
            s.push_str(&format!("; {} runs FAILED to build a frame", self.failed));
        }
        if self.interrupted {
            s.push_str(" (interrupted)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_passes() {
        let r = Report {
            frames: 2_000_000,
            bytes: 1_000_000_000,
            seconds: 1.0,
            frames_per_pass: 500_000,
            ..Report::default()
        }
        .with_rates();
        assert!((r.pps - 2e6).abs() < 1e-6);
        assert!((r.gbps - 8.0).abs() < 1e-9);
        assert!((r.passes - 4.0).abs() < 1e-9);
        let t = r.text();
        assert!(t.contains("2.000 Mpps") && t.contains("8.00 Gbit/s"), "{t}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["frames"], 2_000_000);
        assert_eq!(json["skipped"]["oversize"], 0);
    }
}
