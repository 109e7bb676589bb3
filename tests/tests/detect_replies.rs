//! Block-list reply notices and suspicious origination end to end, through
//! the real offline pipeline with `--workers 1` and `--workers 4`.

mod detect_common;

use detect_common::*;
use sensor_tests::mmdb::country_db;
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use smtp_sensor::net::Ts;

const SERVER6: &str = "[2001:db8::25]:25";

/// A connection whose only recipient gets `code text`.
fn reply_conn(host: &str, port: u16, start_us: u64, code: u16, text: &str) -> Frames {
    let client = addr(host, port);
    let server = if client.is_ipv6() { SERVER6 } else { SERVER };
    SmtpConversation::builder()
        .client(client)
        .server(server.parse().unwrap())
        .start(Ts(T0 * 1_000_000 + start_us))
        .mail("sender@example.com")
        .rcpt("victim@example.net")
        .reject_rcpt_with(code, text)
        .build()
        .frames()
}

fn uid_of(dir: &Scratch, orig_h: &str, orig_p: u16) -> String {
    let smtp = std::fs::read_to_string(dir.join("logs-1").join("smtp.log")).unwrap();
    parse(&smtp)
        .into_iter()
        .find(|r| r["id.orig_h"] == orig_h && r["id.orig_p"] == orig_p)
        .and_then(|r| r["uid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no smtp.log record for {orig_h}:{orig_p}"))
}

#[test]
fn block_list_notices_both_kinds_and_suppression() {
    let dir = Scratch::new("blocklist");
    let listed = "5.7.1 Service unavailable; Client host [198.19.6.1] blocked using zen.spamhaus.org/query/ip/198.19.6.1";
    let other = "5.7.1 Message rejected, see http://www.spamcop.net/bl.shtml?192.0.2.99";
    let min = 60 * 1_000_000;
    let sessions = vec![
        reply_conn("198.19.6.1", 10_001, 0, 554, listed),
        reply_conn("198.19.6.2", 10_002, 1_000, 550, other),
        // 421 is never searched; 2xx/3xx neither.
        reply_conn(
            "198.19.6.3",
            10_003,
            2_000,
            421,
            "4.7.0 try later, see spamhaus.org/x",
        ),
        reply_conn(
            "198.19.6.4",
            10_004,
            3_000,
            250,
            "2.1.5 ok (spamhaus.org/ says hi)",
        ),
        // A clean 550.
        reply_conn("198.19.6.5", 10_005, 4_000, 550, "5.1.1 user unknown"),
        // Same note and host 10 minutes later: suppressed.
        reply_conn("198.19.6.1", 10_006, 10 * min, 554, listed),
        // 61 minutes after the first: a new notice.
        reply_conn("198.19.6.1", 10_007, 61 * min, 554, listed),
    ];
    let p = pcap(&dir, "bl.pcap", sessions);
    let ns = run_both(&dir, &p, &[]);
    assert_eq!(
        notes(&ns),
        [
            (
                "SMTP::SMTP_BL_Blocked_Host".to_owned(),
                "198.19.6.1 is on an SMTP block list".to_owned()
            ),
            (
                "SMTP::SMTP_BL_Error_Message".to_owned(),
                "198.19.6.2 received an error message mentioning an SMTP block list".to_owned()
            ),
            (
                "SMTP::SMTP_BL_Blocked_Host".to_owned(),
                "198.19.6.1 is on an SMTP block list".to_owned()
            ),
        ]
    );
    assert_eq!(ns[0]["sub"], listed);
    assert_eq!(ns[1]["sub"], other);
    assert_eq!(ns[0]["src"], "198.19.6.1");
    assert_eq!(ns[0]["id.orig_h"], "198.19.6.1");
    assert_eq!(ns[0]["id.orig_p"], 10_001);
    assert_eq!(ns[0]["id.resp_h"], "198.19.0.25");
    assert_eq!(ns[0]["id.resp_p"], 25);
    assert_eq!(ns[0]["uid"], uid_of(&dir, "198.19.6.1", 10_001));
    assert_eq!(ns[2]["uid"], uid_of(&dir, "198.19.6.1", 10_007));
    let t0 = ns[0]["ts"].as_f64().unwrap();
    let t2 = ns[2]["ts"].as_f64().unwrap();
    assert!(t2 - t0 > 3600.0 && t2 - t0 < 3700.0, "{t0} {t2}");
}

/// A delivered message with the given extra headers and subject.
fn mail_conn(
    host: &str,
    port: u16,
    start_us: u64,
    headers: &[(&str, &str)],
    subject: &str,
) -> Frames {
    let mut m = Message::simple("a@example.com", "b@example.net", subject);
    for (k, v) in headers {
        m = m.header(k, v);
    }
    SmtpConversation::builder()
        .client(addr(host, port))
        .server(SERVER.parse().unwrap())
        .start(Ts(T0 * 1_000_000 + start_us))
        .mail("a@example.com")
        .rcpt("b@example.net")
        .message(m)
        .build()
        .frames()
}

#[test]
fn suspicious_origination_by_country_and_by_network() {
    let dir = Scratch::new("origination");
    let db = dir.join("country.mmdb");
    std::fs::write(
        &db,
        country_db(
            "GeoIP2-Country",
            &[("203.0.113.0/24", "CN"), ("192.0.2.0/24", "GB")],
        ),
    )
    .unwrap();
    let sessions = vec![
        // By country, from X-Originating-IP.
        mail_conn(
            "198.19.7.1",
            11_001,
            0,
            &[("X-Originating-IP", "[203.0.113.50]")],
            "invoice",
        ),
        // By network, from the originating Received address.
        mail_conn(
            "198.19.7.2",
            11_002,
            1_000,
            &[(
                "Received",
                "from relay.example (relay.example [198.51.100.7]) by mx.example.net",
            )],
            "hello",
        ),
        // GB is not suspicious, nor is this network.
        mail_conn(
            "198.19.7.3",
            11_003,
            2_000,
            &[("X-Originating-IP", "192.0.2.5")],
            "fine",
        ),
        // No origination headers at all.
        mail_conn("198.19.7.4", 11_004, 3_000, &[], "plain"),
    ];
    let p = pcap(&dir, "o.pcap", sessions);
    let geo = format!("geoip_db={}", db.display());
    let ns = run_both(
        &dir,
        &p,
        &[
            &geo,
            "suspicious_countries=CN",
            "suspicious_networks=198.51.100.0/24",
        ],
    );
    assert_eq!(
        notes(&ns),
        [
            (
                "SMTP::SMTP_Suspicious_Origination".to_owned(),
                "An email originated from CN (203.0.113.50).".to_owned()
            ),
            (
                "SMTP::SMTP_Suspicious_Origination".to_owned(),
                "An email originated from  (198.51.100.7).".to_owned()
            ),
        ]
    );
    assert_eq!(ns[0]["sub"], "Subject: invoice");
    assert_eq!(ns[1]["sub"], "Subject: hello");
    assert_eq!(ns[0]["src"], "203.0.113.50");
    assert_eq!(ns[0]["uid"], uid_of(&dir, "198.19.7.1", 11_001));
    assert_eq!(ns[1]["uid"], uid_of(&dir, "198.19.7.2", 11_002));

    // Without the rules configured, the same capture raises nothing.
    assert!(run_both(&dir, &p, &[&geo]).is_empty());
}

#[test]
fn ipv6_client_on_a_block_list() {
    let dir = Scratch::new("blocklist6");
    let text = "5.7.1 Client host [IPv6:2001:db8::7] blocked using sbl.spamhaus.org/query/SBL1";
    let sessions = vec![
        reply_conn("2001:db8::7", 10_001, 0, 554, text),
        // Someone else's address first: an error message, not a listed host.
        reply_conn(
            "2001:db8::8",
            10_002,
            1_000,
            550,
            "5.7.1 2001:db8::99 listed at psbl.surriel.com/listing",
        ),
    ];
    let p = pcap(&dir, "bl6.pcap", sessions);
    let ns = run_both(&dir, &p, &[]);
    assert_eq!(
        notes(&ns),
        [
            (
                "SMTP::SMTP_BL_Blocked_Host".to_owned(),
                "2001:db8::7 is on an SMTP block list".to_owned()
            ),
            (
                "SMTP::SMTP_BL_Error_Message".to_owned(),
                "2001:db8::8 received an error message mentioning an SMTP block list".to_owned()
            ),
        ]
    );
    assert_eq!(ns[0]["src"], "2001:db8::7");
}

#[test]
fn origination_with_maxmind_city_database() {
    // MaxMind's own City test database (../shared/data/mmdb): the City
    // schema works as well as the Country one.
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/mmdb/GeoIP2-City-Test.mmdb");
    let dir = Scratch::new("origination-city");
    let sessions = vec![
        mail_conn(
            "198.19.7.1",
            11_001,
            0,
            &[("X-Originating-IP", "89.160.20.112")],
            "hej",
        ),
        mail_conn(
            "198.19.7.2",
            11_002,
            1_000,
            &[("X-Originating-IP", "81.2.69.142")],
            "hello",
        ),
    ];
    let p = pcap(&dir, "city.pcap", sessions);
    let geo = format!("geoip_db={}", db.display());
    let ns = run_both(
        &dir,
        &p,
        &[&geo, "suspicious_countries=SE", "sensor_name=mx-test-1"],
    );
    assert_eq!(
        notes(&ns),
        [(
            "SMTP::SMTP_Suspicious_Origination".to_owned(),
            "An email originated from SE (89.160.20.112).".to_owned()
        )]
    );
    let n = &ns[0];
    assert_eq!(n["sub"], "Subject: hej");
    // Zeek's notice.log fields beyond the seed's: the connection's
    // protocol, responder and port, who wrote it, the action, and where the
    // suspicious address is (the City database has all of it).
    assert_eq!(n["proto"], "tcp");
    let server: std::net::SocketAddr = SERVER.parse().unwrap();
    assert_eq!(n["dst"], server.ip().to_string());
    assert_eq!(n["p"], server.port());
    assert_eq!(n["peer_descr"], "mx-test-1");
    assert_eq!(n["actions"], serde_json::json!(["Notice::ACTION_LOG"]));
    assert_eq!(n["remote_location.country_code"], "SE");
    assert!(
        n["remote_location.city"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{n}"
    );
    let (lat, lon) = (
        n["remote_location.latitude"].as_f64().unwrap_or(0.0),
        n["remote_location.longitude"].as_f64().unwrap_or(0.0),
    );
    assert!(
        (55.0..70.0).contains(&lat) && (10.0..25.0).contains(&lon),
        "{n}"
    );
    let id = smtp_sensor::net::ConnId {
        orig_h: "198.19.7.1".parse().unwrap(),
        orig_p: 11_001,
        resp_h: server.ip(),
        resp_p: server.port(),
    };
    assert_eq!(
        n["community_id"].as_str(),
        smtp_sensor::output::community_id::of_tcp(&id, 0).as_deref()
    );
}
