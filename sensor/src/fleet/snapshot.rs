//! One sensor's absolute counters of one period, as stored in Redis: what
//! the spam rules need (per host: total, rejects, the ordered recipient
//! entries) and the period end it saw. Absolute, not deltas: storing the
//! same snapshot twice, or an older one after a newer, cannot change a sum.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::detect::PeriodCounters;
use crate::detect::spam::HostCounts;
use crate::net::Ts;

/// The stored form (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The period end this sensor reached (the last packet's time when its
    /// input ended inside the period): the notices are raised at the latest.
    end: Ts,
    hosts: Vec<(IpAddr, HostCounts)>,
}

/// Encodes `counters` (hosts only: the overflow counters stay local, each
/// sensor reports its own) with the end it was taken at.
pub fn encode(counters: &PeriodCounters, end: Ts) -> String {
    let mut hosts: Vec<(IpAddr, HostCounts)> = counters
        .hosts
        .iter()
        .map(|(a, h)| (*a, h.clone()))
        .collect();
    hosts.sort_by_key(|(a, _)| *a);
    // Serialising plain data into a String cannot fail; an empty object
    // would decode as a bad snapshot and be counted, never panic.
    serde_json::to_string(&Wire { end, hosts }).unwrap_or_default()
}

/// Decodes a stored snapshot; `None` for bytes that are not one.
pub fn decode(text: &[u8]) -> Option<(PeriodCounters, Ts)> {
    let w: Wire = serde_json::from_slice(text).ok()?;
    let mut p = PeriodCounters::default();
    p.hosts.extend(w.hosts);
    Some((p, w.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_snapshot() {
        assert!(decode(b"{").is_none());
        assert!(decode(b"{\"end\":1,\"hosts\":[[\"not an ip\",{}]]}").is_none());
    }

    #[test]
    fn round_trip_keeps_counts() {
        let mut p = PeriodCounters::default();
        p.hosts.insert(
            "203.0.113.9".parse().unwrap(),
            HostCounts {
                total: 7,
                rejects: 3,
                ..HostCounts::default()
            },
        );
        let (q, end) = decode(encode(&p, Ts(42)).as_bytes()).unwrap();
        assert_eq!((q, end), (p, Ts(42)));
    }
}
