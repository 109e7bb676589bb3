//! The Community ID of a connection (version 1, the flow hash Zeek's and
//! Suricata's logs carry as `community_id`), so a record of this sensor can
//! be joined with theirs on the same flow. Computed when a line is written,
//! off the packet path.

use crate::net::ConnId;

const IPPROTO_TCP: u8 = 6;

/// `1:<base64 of the SHA-1>` of the TCP connection `id` with `seed`; the
/// same for both directions. `None` only for a connection whose two ends
/// are of different IP versions, which the decoder never makes.
pub fn of_tcp(id: &ConnId, seed: u16) -> Option<String> {
    community_id::calculate_community_id(
        seed,
        id.orig_h,
        id.resp_h,
        Some(id.orig_p),
        Some(id.resp_p),
        IPPROTO_TCP,
        false,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(orig: &str, orig_p: u16, resp: &str, resp_p: u16) -> ConnId {
        ConnId {
            orig_h: orig.parse().unwrap(),
            orig_p,
            resp_h: resp.parse().unwrap(),
            resp_p,
        }
    }

    /// The published TCP vectors of the Community ID spec (as in Zeek's own
    /// test of `community_id_v1`): seeds 0 and 1, both directions.
    #[test]
    fn published_tcp_vectors() {
        let c = id("1.2.3.4", 1122, "5.6.7.8", 3344);
        let r = id("5.6.7.8", 3344, "1.2.3.4", 1122);
        for (seed, want) in [
            (0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
            (1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        ] {
            assert_eq!(of_tcp(&c, seed).as_deref(), Some(want), "seed {seed}");
            assert_eq!(
                of_tcp(&r, seed).as_deref(),
                Some(want),
                "seed {seed}, reversed"
            );
        }
    }

    #[test]
    fn ipv6_and_mixed_versions() {
        let v6 = id("2001:db8::1", 40000, "2001:db8::25", 25);
        let a = of_tcp(&v6, 0).unwrap();
        assert!(a.starts_with("1:") && a.len() == 30, "{a}");
        let back = id("2001:db8::25", 25, "2001:db8::1", 40000);
        assert_eq!(of_tcp(&back, 0), Some(a));
        assert_eq!(of_tcp(&id("198.18.0.1", 1, "2001:db8::1", 25), 0), None);
    }
}
