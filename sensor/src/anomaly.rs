//! One name space for every anomaly the sensor counts, whatever layer saw it.
//!
//! Each subsystem has its own small enum (`DecodeAnomaly`, `FlowAnomaly`,
//! `SmtpAnomaly`, `CaptureAnomaly`); `Anomaly` wraps them so counters, the
//! end-of-run summary and metrics deal with one type. Names follow Zeek's
//! weird.log (`bad_TCP_checksum`, `smtp_too_many_addresses`) so an analyst can
//! search for them.

use std::collections::BTreeMap;
use std::fmt;

use crate::decode::DecodeAnomaly;
use crate::flow::FlowAnomaly;
use crate::smtp::anomaly::SmtpAnomaly;

/// Problems in the capture file itself (not in the packets it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureAnomaly {
    /// The last record of the file is cut short; the records before it were read.
    TruncatedRecord,
    /// A pcapng packet block names an interface that was never described.
    UnknownInterface,
    /// A frame of a link type the decoder does not know.
    UnsupportedLinkType,
}

impl CaptureAnomaly {
    pub const fn name(self) -> &'static str {
        match self {
            CaptureAnomaly::TruncatedRecord => "pcap_truncated_record",
            CaptureAnomaly::UnknownInterface => "pcapng_unknown_interface",
            CaptureAnomaly::UnsupportedLinkType => "unsupported_link_type",
        }
    }
}

/// Any counted anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    Capture(CaptureAnomaly),
    Decode(DecodeAnomaly),
    Flow(FlowAnomaly),
    Smtp(SmtpAnomaly),
}

impl Anomaly {
    /// The Zeek weird-style name.
    pub const fn name(self) -> &'static str {
        match self {
            Anomaly::Capture(a) => a.name(),
            Anomaly::Decode(a) => a.name(),
            Anomaly::Flow(a) => a.name(),
            Anomaly::Smtp(a) => a.name(),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<CaptureAnomaly> for Anomaly {
    fn from(a: CaptureAnomaly) -> Self {
        Anomaly::Capture(a)
    }
}
impl From<DecodeAnomaly> for Anomaly {
    fn from(a: DecodeAnomaly) -> Self {
        Anomaly::Decode(a)
    }
}
impl From<FlowAnomaly> for Anomaly {
    fn from(a: FlowAnomaly) -> Self {
        Anomaly::Flow(a)
    }
}
impl From<SmtpAnomaly> for Anomaly {
    fn from(a: SmtpAnomaly) -> Self {
        Anomaly::Smtp(a)
    }
}

/// Counts per anomaly name. Anomalies are rare next to packets, so a sorted
/// map keyed by the static name is cheap enough and keeps the summary in a
/// stable order; it allocates only the first time a name is seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnomalyCounts {
    counts: BTreeMap<&'static str, u64>,
}

impl AnomalyCounts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, a: impl Into<Anomaly>) {
        self.add_n(a, 1);
    }

    pub fn add_n(&mut self, a: impl Into<Anomaly>, n: u64) {
        if n > 0 {
            *self.counts.entry(a.into().name()).or_insert(0) += n;
        }
    }

    /// Adds `n` under a name of its own: counters of layers that keep
    /// their own names (detection's table overflows).
    pub fn add_named(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.counts.entry(name).or_insert(0) += n;
        }
    }

    /// Adds every count of `other` (merging workers' counters).
    pub fn merge(&mut self, other: &AnomalyCounts) {
        for (name, n) in &other.counts {
            *self.counts.entry(name).or_insert(0) += n;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `(name, count)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().map(|(k, v)| (*k, *v))
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_merge_by_name() {
        let mut a = AnomalyCounts::new();
        a.add(CaptureAnomaly::TruncatedRecord);
        a.add(CaptureAnomaly::TruncatedRecord);
        let mut b = AnomalyCounts::new();
        b.add(CaptureAnomaly::TruncatedRecord);
        b.add_n(CaptureAnomaly::UnknownInterface, 3);
        a.merge(&b);
        assert_eq!(a.get("pcap_truncated_record"), 3);
        assert_eq!(a.get("pcapng_unknown_interface"), 3);
        assert_eq!(a.total(), 6);
        let names: Vec<_> = a.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["pcap_truncated_record", "pcapng_unknown_interface"]);
    }
}
