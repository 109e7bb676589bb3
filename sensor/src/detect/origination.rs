//! Suspicious origination (SEMANTICS.md "Reply notices", second rule): when
//! a transaction ends, its X-Originating-IP and its originating Received
//! address are checked against `suspicious_countries` (by GeoIP) and
//! `suspicious_networks`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::geoip::GeoIp;
use super::notice::{Note, Notice, NoticeConn};
use crate::config::CountryCode;
use crate::net::{ConnInfo, Ts};
use crate::smtp::record::{MessageRecord, TextField};

/// The origination rule, shared read-only by all workers.
#[derive(Debug, Default)]
pub struct Origination {
    countries: Vec<CountryCode>,
    networks: Vec<IpNet>,
    geoip: Option<GeoIp>,
}

impl Origination {
    /// `geoip` must be present when `countries` is non-empty (checked by
    /// `Detection::from_config`).
    pub fn new(countries: Vec<CountryCode>, networks: Vec<IpNet>, geoip: Option<GeoIp>) -> Self {
        Origination {
            countries,
            networks,
            geoip,
        }
    }

    /// False when nothing is configured: `check` then costs nothing.
    pub fn is_active(&self) -> bool {
        !self.countries.is_empty() || !self.networks.is_empty()
    }

    pub fn geoip(&self) -> Option<&GeoIp> {
        self.geoip.as_ref()
    }

    /// Checks one finished transaction, raising at `now` (the network time
    /// the transaction ended) one notice per suspicious address: the
    /// X-Originating-IP, then the originating Received address if it differs.
    pub fn check(&self, now: Ts, conn: &ConnInfo, rec: &MessageRecord, out: &mut Vec<Notice>) {
        if !self.is_active() {
            return;
        }
        let xoip = rec.x_originating_ip;
        let received = rec.originating_addr.filter(|a| Some(*a) != xoip);
        for addr in [xoip, received].into_iter().flatten() {
            if let Some(n) = self.check_addr(now, conn, rec, addr) {
                out.push(n);
            }
        }
    }

    fn check_addr(
        &self,
        now: Ts,
        conn: &ConnInfo,
        rec: &MessageRecord,
        addr: IpAddr,
    ) -> Option<Notice> {
        let country = self.geoip.as_ref().and_then(|g| g.country(addr));
        let by_country = country.is_some_and(|c| self.countries.contains(&c));
        let by_network = self.networks.iter().any(|n| n.contains(&addr));
        if !(by_country || by_network) {
            return None;
        }
        // As Zeek's script: an unknown country is written as nothing.
        let cc = country.as_ref().map_or("", CountryCode::as_str);
        Some(Notice {
            ts: now,
            conn: Some(NoticeConn::from(conn)),
            note: Note::SuspiciousOrigination,
            msg: format!("An email originated from {cc} ({addr})."),
            sub: Some(format!(
                "Subject: {}",
                rec.text(TextField::Subject).unwrap_or("")
            )),
            src: Some(addr),
            n: None,
            location: self
                .geoip
                .as_ref()
                .and_then(|g| g.location(addr))
                .map(Box::new),
            written_by: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnId;
    use std::path::Path;

    fn conn() -> ConnInfo {
        let id = ConnId {
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(1))
    }

    fn rec(xoip: Option<&str>, received: Option<&str>) -> MessageRecord {
        let mut r = MessageRecord::default();
        r.x_originating_ip = xoip.map(|s| s.parse().unwrap());
        r.originating_addr = received.map(|s| s.parse().unwrap());
        r.set_text(TextField::Subject, "Hello there");
        r
    }

    fn geoip() -> GeoIp {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/mmdb/GeoIP2-City-Test.mmdb");
        GeoIp::open(&p).unwrap()
    }

    fn cc(s: &str) -> CountryCode {
        CountryCode::parse(s).unwrap()
    }

    fn run(o: &Origination, r: &MessageRecord) -> Vec<Notice> {
        let mut out = Vec::new();
        o.check(Ts::from_secs(77), &conn(), r, &mut out);
        out
    }

    #[test]
    fn by_country_for_x_originating_ip() {
        let o = Origination::new(vec![cc("CN")], vec![], Some(geoip()));
        let n = run(&o, &rec(Some("175.16.199.4"), None));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].note, Note::SuspiciousOrigination);
        assert_eq!(n[0].msg, "An email originated from CN (175.16.199.4).");
        assert_eq!(n[0].sub.as_deref(), Some("Subject: Hello there"));
        assert_eq!(n[0].src, Some("175.16.199.4".parse().unwrap()));
        assert_eq!(n[0].ts, Ts::from_secs(77));
        assert_eq!(n[0].conn.as_ref().unwrap().uid, conn().uid);
        // GB is not listed.
        assert!(run(&o, &rec(Some("81.2.69.142"), None)).is_empty());
    }

    #[test]
    fn by_country_for_received_address_and_ipv6() {
        let o = Origination::new(vec![cc("SE"), cc("JP")], vec![], Some(geoip()));
        let n = run(&o, &rec(Some("81.2.69.142"), Some("89.160.20.115")));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].msg, "An email originated from SE (89.160.20.115).");
        let n = run(&o, &rec(None, Some("2001:218::7")));
        assert_eq!(n[0].msg, "An email originated from JP (2001:218::7).");
    }

    #[test]
    fn by_network_with_and_without_country() {
        let o = Origination::new(
            vec![],
            vec![
                "81.2.69.0/24".parse().unwrap(),
                "203.0.113.0/24".parse().unwrap(),
            ],
            Some(geoip()),
        );
        let n = run(&o, &rec(Some("81.2.69.142"), Some("203.0.113.5")));
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].msg, "An email originated from GB (81.2.69.142).");
        assert_eq!(n[1].msg, "An email originated from  (203.0.113.5).");
        // Without a database, networks still work.
        let o = Origination::new(vec![], vec!["203.0.113.0/24".parse().unwrap()], None);
        assert_eq!(run(&o, &rec(None, Some("203.0.113.5"))).len(), 1);
    }

    #[test]
    fn same_address_twice_is_one_notice_and_no_subject_is_empty() {
        let o = Origination::new(vec![cc("CN")], vec![], Some(geoip()));
        let mut r = rec(Some("175.16.199.4"), Some("175.16.199.4"));
        r.clear_text(TextField::Subject);
        let n = run(&o, &r);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].sub.as_deref(), Some("Subject: "));
    }

    #[test]
    fn nothing_configured_or_nothing_suspicious_raises_nothing() {
        let o = Origination::new(vec![], vec![], Some(geoip()));
        assert!(!o.is_active());
        assert!(run(&o, &rec(Some("175.16.199.4"), None)).is_empty());
        let o = Origination::new(vec![cc("CN")], vec![], Some(geoip()));
        assert!(run(&o, &rec(None, None)).is_empty());
        assert!(run(&o, &rec(Some("198.18.0.1"), Some("10.0.0.1"))).is_empty());
    }
}
