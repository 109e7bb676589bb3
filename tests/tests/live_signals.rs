//! Operating the live sensor with signals, on a real veth pair with the
//! real XDP program: SIGTERM flushes connections still open, SIGHUP reopens
//! rotated log files and reloads the configuration (a bad one is refused
//! and the running one stays). Needs root.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sensor_tests::live_sensor::{LiveSensor, read_lines, replay};
use sensor_tests::mmdb::country_db;
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::smtp::{Ending, Message, SmtpConversation};
use smtp_sensor::net::Ts;

const WAIT: Duration = Duration::from_secs(30);

fn conversation(client_port: u16, from: &str) -> sensor_tests::synth::smtp::ConversationBuilder {
    SmtpConversation::builder()
        .client(SocketAddr::from(([198, 18, 0, 2], client_port)))
        .server(SocketAddr::from(([198, 19, 0, 25], 25)))
        .start(Ts::from_secs(1_700_000_000))
        .mail(from)
        .rcpt("bob@example.net")
}

fn write(dir: &Path, name: &str, c: SmtpConversation) -> std::path::PathBuf {
    let path = dir.join(name);
    let frames = c.frames();
    write_pcap(&path, frames.iter().map(|(t, f)| (*t, f.as_slice()))).expect("write pcap");
    path
}

fn field(line: &str, key: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    v[key].clone()
}

#[test]
fn sigterm_flushes_a_connection_still_open() {
    require_root();
    let dir = Scratch::new("live-sigterm");
    // MAIL and RCPT accepted, then nothing: no DATA, no QUIT, no FIN.
    let open = conversation(40100, "open@example.com")
        .ending(Ending::Open)
        .build();
    let pcap = write(dir.path(), "open.pcap", open);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let pair = VethPair::create("sgt", 1);
    let sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    replay(&pair, &pcap, 1000);
    // The logs are flushed every second; the open connection is not due.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        sensor.log_lines("smtp.log").is_empty(),
        "record written before the connection ended"
    );
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");
    let records = read_lines(&logs.join("smtp.log"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(field(&records[0], "mailfrom"), "open@example.com");
    assert_eq!(field(&records[0], "rcptto")[0], "bob@example.net");
    assert!(!pair.xdp_attached(), "XDP program left on the interface");

    // A restart appends: the first run's record is still there.
    let sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    replay(&pair, &pcap, 1000);
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");
    assert_eq!(read_lines(&logs.join("smtp.log")).len(), 2);
}

#[test]
fn sighup_reopens_rotated_logs() {
    require_root();
    let dir = Scratch::new("live-sighup-logs");
    let first = write(
        dir.path(),
        "first.pcap",
        conversation(40200, "first@example.com")
            .message(Message::simple(
                "first@example.com",
                "bob@example.net",
                "one",
            ))
            .build(),
    );
    let second = write(
        dir.path(),
        "second.pcap",
        conversation(40201, "second@example.com")
            .message(Message::simple(
                "second@example.com",
                "bob@example.net",
                "two",
            ))
            .build(),
    );
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let pair = VethPair::create("shl", 1);
    let mut sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    replay(&pair, &first, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);
    // logrotate: move the file away, then tell the sensor.
    std::fs::rename(logs.join("smtp.log"), logs.join("smtp.log.1")).unwrap();
    sensor.signal(libc::SIGHUP);
    sensor.wait_for("reopened", WAIT);
    assert!(
        logs.join("smtp.log").exists(),
        "no new smtp.log after SIGHUP"
    );
    replay(&pair, &second, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");

    let rotated = read_lines(&logs.join("smtp.log.1"));
    let current = read_lines(&logs.join("smtp.log"));
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(field(&rotated[0], "mailfrom"), "first@example.com");
    assert_eq!(field(&current[0], "mailfrom"), "second@example.com");
}

#[test]
fn sighup_reloads_the_configuration_and_refuses_a_bad_one() {
    require_root();
    let dir = Scratch::new("live-sighup-config");
    // The same block-list reply in two connections.
    let listed = |port, from: &str| {
        conversation(port, from)
            .reject_rcpt_with(
                554,
                "5.7.1 Service unavailable; client [198.18.0.2] blocked, see https://www.spamhaus.org/query/ip/198.18.0.2",
            )
            .build()
    };
    let before = write(dir.path(), "before.pcap", listed(40300, "a@example.com"));
    let after = write(dir.path(), "after.pcap", listed(40301, "b@example.com"));
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.path().join("sensor.toml");
    // First no pattern matches the reply.
    std::fs::write(
        &config,
        "blocklist_patterns = [\"no-such-list\\\\.example\"]\n",
    )
    .unwrap();

    let pair = VethPair::create("shc", 1);
    let cfg = config.to_str().unwrap();
    let mut sensor = LiveSensor::start(&pair, &logs, &["-c", cfg, "--stats-interval", "0"]);
    replay(&pair, &before, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);

    // A broken file is refused; the sensor keeps running.
    std::fs::write(&config, "blocklist_pattern = 3\n").unwrap();
    sensor.signal(libc::SIGHUP);
    sensor.wait_for("reload refused", WAIT);

    // Back to the default patterns (the key removed).
    std::fs::write(&config, "# defaults\n").unwrap();
    let notice = reload_then_replay(sensor, &pair, &after, &logs);
    assert_eq!(field(&notice, "note"), "SMTP::SMTP_BL_Blocked_Host");
    assert_eq!(field(&notice, "id.orig_p"), 40301);
}

/// SIGHUP, then (once the workers switched) replays `after`, stops the
/// sensor and returns the one notice the run raised: the test's point is
/// that it comes from the reloaded configuration only.
fn reload_then_replay(
    mut sensor: LiveSensor,
    pair: &VethPair,
    after: &Path,
    logs: &Path,
) -> String {
    sensor.signal(libc::SIGHUP);
    sensor.wait_for("configuration reloaded", WAIT);
    // Workers switch at their next tick (about a second).
    std::thread::sleep(Duration::from_millis(1500));
    replay(pair, after, 1000);
    sensor.wait_for_lines("smtp.log", 2, WAIT);
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");
    let mut notices = read_lines(&logs.join("notice.log"));
    assert_eq!(notices.len(), 1, "{notices:?}");
    notices.remove(0)
}

#[test]
fn sighup_reloads_the_geoip_database() {
    require_root();
    let dir = Scratch::new("live-sighup-geoip");
    let from_origin = |port, from: &str| {
        conversation(port, from)
            .message(
                Message::simple(from, "bob@example.net", "hello")
                    .header("X-Originating-IP", "[198.18.200.1]"),
            )
            .build()
    };
    let before = write(
        dir.path(),
        "before.pcap",
        from_origin(40400, "a@example.com"),
    );
    let after = write(
        dir.path(),
        "after.pcap",
        from_origin(40401, "b@example.com"),
    );
    let logs = dir.dir("logs");
    let db = dir.join("country.mmdb");
    let install = |iso: &str| {
        // As an operator's updater does: write aside, rename into place.
        let tmp = dir.join("country.mmdb.new");
        let bytes = country_db("GeoLite2-Country", &[("198.18.200.0/24", iso)]);
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &db).unwrap();
    };
    install("DE");
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "geoip_db = {:?}\nsuspicious_countries = [\"KP\"]\n",
            db.display().to_string()
        ),
    )
    .unwrap();

    let pair = VethPair::create("shg", 1);
    let cfg = config.to_str().unwrap();
    let sensor = LiveSensor::start(&pair, &logs, &["-c", cfg, "--stats-interval", "0"]);
    replay(&pair, &before, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);
    // The database now places the origin in a suspicious country.
    install("KP");
    let notice = reload_then_replay(sensor, &pair, &after, &logs);
    assert_eq!(field(&notice, "note"), "SMTP::SMTP_Suspicious_Origination");
    assert_eq!(field(&notice, "id.orig_p"), 40401);
}
