//! GeoIP and suspicious origination against databases the test writes
//! itself (so it runs without `../shared`), plus the startup errors for
//! missing, corrupt and wrong-kind databases.

use sensor_tests::scratch::Scratch;

use sensor_tests::mmdb::{METADATA_MARKER, MmdbWriter, Value, country_db};
use smtp_sensor::config::Config;
use smtp_sensor::detect::{Detection, GeoIp, GeoIpError, Note};
use smtp_sensor::net::{ConnId, ConnInfo, Ts};
use smtp_sensor::smtp::record::{MessageRecord, TextField};

fn entries() -> Vec<(&'static str, &'static str)> {
    vec![
        ("198.18.0.0/15", "SE"),
        ("198.18.7.0/24", "CN"), // narrower, inside the SE block
        ("203.0.113.0/24", "GB"),
        ("2001:db8::/32", "JP"),
        ("2001:db8:ff::/48", "BT"),
    ]
}

fn cc(db: &GeoIp, ip: &str) -> Option<String> {
    db.country(ip.parse().unwrap()).map(|c| c.to_string())
}

#[test]
fn self_written_country_and_city_databases_work() {
    let dir = Scratch::new("detect-geoip-own");
    let country = dir.write("c.mmdb", country_db("GeoIP2-Country", &entries()));
    let mut city = MmdbWriter::new("GeoLite2-City");
    for (cidr, iso) in entries() {
        let rec = Value::map(vec![
            (
                "city",
                Value::map(vec![(
                    "names",
                    Value::map(vec![("en", Value::str("Town"))]),
                )]),
            ),
            ("country", Value::map(vec![("iso_code", Value::str(iso))])),
            (
                "location",
                Value::map(vec![("accuracy_radius", Value::U16(100))]),
            ),
        ]);
        city.insert(cidr, &rec);
    }
    let city = dir.write("city.mmdb", city.to_bytes());
    for path in [country, city] {
        let db = GeoIp::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cc(&db, "198.18.0.1").as_deref(), Some("SE"));
        assert_eq!(cc(&db, "198.19.255.255").as_deref(), Some("SE"));
        assert_eq!(cc(&db, "198.18.7.200").as_deref(), Some("CN"));
        assert_eq!(cc(&db, "203.0.113.77").as_deref(), Some("GB"));
        assert_eq!(cc(&db, "2001:db8:1::1").as_deref(), Some("JP"));
        assert_eq!(cc(&db, "2001:db8:ff::9").as_deref(), Some("BT"));
        assert_eq!(cc(&db, "192.0.2.1"), None);
        assert_eq!(cc(&db, "2001:db9::1"), None);
        assert_eq!(db.lookup_errors(), 0);
    }
}

#[test]
fn origination_notices_with_a_self_written_database() {
    let dir = Scratch::new("detect-geoip-orig");
    let db = dir.write("c.mmdb", country_db("GeoLite2-Country", &entries()));
    let cfg = Config::load(
        None,
        &[
            format!("geoip_db={}", db.display()),
            "suspicious_countries=CN,JP".into(),
            "suspicious_networks=192.0.2.0/24".into(),
        ],
    )
    .unwrap();
    let det = Detection::from_config(&cfg).unwrap();
    let id = ConnId {
        orig_h: "198.18.0.5".parse().unwrap(),
        orig_p: 40001,
        resp_h: "198.18.0.25".parse().unwrap(),
        resp_p: 25,
    };
    let conn = ConnInfo::new(id, Ts(5));
    let check = |x: Option<&str>, recv: Option<&str>| {
        let mut rec = MessageRecord::default();
        rec.x_originating_ip = x.map(|s| s.parse().unwrap());
        rec.originating_addr = recv.map(|s| s.parse().unwrap());
        rec.set_text(TextField::Subject, "quarterly figures");
        let mut out = Vec::new();
        det.origination
            .check(Ts::from_secs(9), &conn, &rec, &mut out);
        out.into_iter()
            .map(|n| (n.note, n.msg, n.sub.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        check(Some("198.18.7.9"), None),
        [(
            Note::SuspiciousOrigination,
            "An email originated from CN (198.18.7.9).".to_owned(),
            "Subject: quarterly figures".to_owned()
        )]
    );
    let n = check(Some("198.18.0.9"), Some("2001:db8::77"));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].1, "An email originated from JP (2001:db8::77).");
    // By network; the address has no country in this database.
    let n = check(None, Some("192.0.2.10"));
    assert_eq!(n[0].1, "An email originated from  (192.0.2.10).");
    // Nothing suspicious: SE and GB are not listed.
    assert!(check(Some("198.18.0.9"), Some("203.0.113.1")).is_empty());
}

fn open_err(bytes: &[u8], dir: &Scratch, name: &str) -> GeoIpError {
    let p = dir.write(name, bytes);
    GeoIp::open(&p).expect_err("a broken database must not open")
}

#[test]
fn corrupt_and_wrong_databases_fail_at_startup_naming_the_file() {
    let dir = Scratch::new("detect-geoip-bad");
    let good = country_db("GeoIP2-Country", &entries());
    let meta_at = good
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .unwrap();

    // Not an mmdb at all.
    let e = open_err(b"PK\x03\x04 this is a zip", &dir, "zip.mmdb");
    assert!(matches!(e, GeoIpError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("zip.mmdb"), "{e}");

    // Empty file.
    assert!(matches!(
        open_err(b"", &dir, "empty.mmdb"),
        GeoIpError::Invalid { .. }
    ));

    // Metadata cut off.
    let e = open_err(&good[..meta_at + 5], &dir, "cut-meta.mmdb");
    assert!(matches!(e, GeoIpError::Invalid { .. }), "{e}");

    // Search tree pointing past the data section: garbage in place of the tree.
    let mut bad_tree = good.clone();
    for b in bad_tree.iter_mut().take(24) {
        *b = 0xff;
    }
    let e = open_err(&bad_tree, &dir, "bad-tree.mmdb");
    assert!(matches!(e, GeoIpError::Invalid { .. }), "{e}");

    // A database without country data (an ASN database).
    let mut asn = MmdbWriter::new("GeoLite2-ASN");
    asn.insert(
        "198.18.0.0/15",
        &Value::map(vec![("autonomous_system_number", Value::U32(64512))]),
    );
    let e = open_err(&asn.to_bytes(), &dir, "asn.mmdb");
    assert!(matches!(e, GeoIpError::WrongType { .. }), "{e}");
    assert!(
        e.to_string().contains("asn.mmdb") && e.to_string().contains("GeoLite2-ASN"),
        "{e}"
    );

    // Missing file, through the config path a run takes.
    let cfg = Config::load(
        None,
        &[format!("geoip_db={}", dir.join("nope.mmdb").display())],
    )
    .unwrap();
    let e = Detection::from_config(&cfg).unwrap_err().to_string();
    assert!(e.contains("nope.mmdb") && e.contains("geoip_db"), "{e}");
}
