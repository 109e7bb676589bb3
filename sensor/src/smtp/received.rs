//! The Received path of a message: which relay address each Received
//! header adds to `path`, and when to stop following them
//! (SEMANTICS "Received path", Zeek's `mail_path_capture`).

use std::net::IpAddr;

use super::anomaly::SmtpAnomaly;
use super::config::SmtpConfig;
use super::parser::received_addr;

/// Private address space in the sense of SEMANTICS: RFC 1918, RFC 4193,
/// loopback and link-local.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_private() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => {
            let first = a.segments().first().copied().unwrap_or(0);
            a.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Follows the Received headers of one transaction.
#[derive(Clone, Debug)]
pub struct PathWalker {
    /// Still following (Zeek `process_received_from`).
    following: bool,
}

impl Default for PathWalker {
    fn default() -> Self {
        PathWalker { following: true }
    }
}

impl PathWalker {
    /// One Received header value. Appends its address to `path` (unless it
    /// repeats the last entry or the path is full) and returns the address
    /// followed, the message's originating address so far.
    pub fn received(
        &mut self,
        value: &[u8],
        cfg: &SmtpConfig,
        path: &mut Vec<IpAddr>,
        anomalies: &mut Vec<SmtpAnomaly>,
    ) -> Option<IpAddr> {
        if !self.following {
            return None;
        }
        let ip = received_addr(value)?;
        if ip.is_loopback() && (ip == IpAddr::from([127, 0, 0, 1]) || ip.is_ipv6()) {
            return None;
        }
        if !cfg.in_capture_set(ip) && !is_private(ip) {
            self.following = false;
        }
        if path.last() != Some(&ip) {
            if path.len() >= cfg.limits.max_path {
                anomalies.push(SmtpAnomaly::MaxPathLength);
                return Some(ip);
            }
            path.push(ip);
        }
        Some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::config::PathCapture;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.2",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_private(ip(a)), "{a}");
        }
        for a in ["8.8.8.8", "23.128.96.19", "2001:db8::1", "100.64.0.1"] {
            assert!(!is_private(ip(a)), "{a}");
        }
    }

    #[test]
    fn local_capture_stops_after_first_public_outside_address() {
        let cfg = SmtpConfig::default();
        let mut w = PathWalker::default();
        let mut path = vec![ip("192.0.2.1"), ip("10.0.0.1")];
        let mut an = Vec::new();
        assert_eq!(
            w.received(b"from a ([10.0.0.9]) by b", &cfg, &mut path, &mut an),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(
            w.received(b"from c ([23.128.96.19]) by d", &cfg, &mut path, &mut an),
            Some(ip("23.128.96.19"))
        );
        assert_eq!(
            w.received(b"from e ([170.253.51.130]) by f", &cfg, &mut path, &mut an),
            None
        );
        assert_eq!(
            path,
            [
                ip("192.0.2.1"),
                ip("10.0.0.1"),
                ip("10.0.0.9"),
                ip("23.128.96.19")
            ]
        );
        assert!(an.is_empty());
    }

    #[test]
    fn all_never_stops_and_repeats_and_loopback_are_skipped() {
        let cfg = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..SmtpConfig::default()
        };
        let mut w = PathWalker::default();
        let mut path = vec![ip("192.0.2.1"), ip("23.128.96.18")];
        let mut an = Vec::new();
        w.received(b"from x ([23.128.96.18])", &cfg, &mut path, &mut an);
        w.received(b"from x ([127.0.0.1])", &cfg, &mut path, &mut an);
        w.received(b"from x ([23.128.96.19])", &cfg, &mut path, &mut an);
        w.received(b"from x ([170.253.51.130])", &cfg, &mut path, &mut an);
        assert_eq!(
            path,
            [
                ip("192.0.2.1"),
                ip("23.128.96.18"),
                ip("23.128.96.19"),
                ip("170.253.51.130")
            ]
        );
    }

    #[test]
    fn path_limit_counts_anomaly() {
        let mut cfg = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..SmtpConfig::default()
        };
        cfg.limits.max_path = 3;
        let mut w = PathWalker::default();
        let mut path = vec![ip("192.0.2.1"), ip("192.0.2.2")];
        let mut an = Vec::new();
        w.received(b"([192.0.2.3])", &cfg, &mut path, &mut an);
        w.received(b"([192.0.2.4])", &cfg, &mut path, &mut an);
        assert_eq!(path.len(), 3);
        assert_eq!(an, [SmtpAnomaly::MaxPathLength]);
    }
}
