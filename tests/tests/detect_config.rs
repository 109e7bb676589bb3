//! `smtp-sensor check-config` and config errors of a run, through the real
//! binary: exit 2 and one stderr line naming the file, key and value for
//! each class of bad value; the effective config printed when valid.

use sensor_tests::scratch::Scratch;
use std::process::{Command, Output, Stdio};

use sensor_tests::mmdb::country_db;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::smtp::SmtpConversation;

fn run(args: &[&str]) -> Output {
    Command::new(sensor_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts exit 2 and exactly one stderr line containing every `needle`.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {:?}", lines[0]);
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let d = Scratch::new("detect-config-ok");
    let cfg = d.write(
        "c.toml",
        "spam_threshold = 120\nlocal_nets = [\"10.0.0.0/8\"]\ninspect_period = \"30m\"\nsuspicious_countries = [\"CN\"]\n",
    );
    let db = d.write(
        "g.mmdb",
        country_db("GeoIP2-Country", &[("203.0.113.0/24", "CN")]),
    );
    let set_db = format!("geoip_db={}", db.display());
    let o = run(&[
        "check-config",
        "-c",
        cfg.to_str().unwrap(),
        "--set",
        "spam_percent=40",
        "--set",
        &set_db,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in [
        "spam_threshold = 120",
        "spam_percent = 40",
        "local_nets = [\"10.0.0.0/8\"]",
        "inspect_period = \"30m\"",
        "suspicious_countries = [\"CN\"]",
        "conn_idle_timeout = \"5m\"",
        "reject_codes = [550, 551, 553, 554]",
        "max_hosts_per_period = ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "{line:?} missing from:\n{out}"
        );
    }
    // The printed config is itself a valid config file.
    let again = d.write("again.toml", out.as_bytes());
    let o2 = run(&["check-config", "-c", again.to_str().unwrap()]);
    assert_eq!(o2.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o2.stdout), out);
}

#[test]
fn each_class_of_bad_value_is_exit_2_with_one_line() {
    let d = Scratch::new("detect-config-bad");
    let cases: &[(&str, &[&str])] = &[
        (
            "spam_treshold = 5",
            &["unknown config key", "spam_treshold"],
        ),
        (
            "local_nets = [\"10.0.0.0/33\"]",
            &["local_nets", "10.0.0.0/33", "CIDR"],
        ),
        (
            "suspicious_networks = [\"not-a-net\"]",
            &["suspicious_networks", "not-a-net"],
        ),
        (
            "inspect_period = \"60 minutes\"",
            &["inspect_period", "60 minutes", "duration"],
        ),
        (
            "conn_idle_timeout = 300",
            &["conn_idle_timeout", "300", "duration"],
        ),
        (
            "suspicious_countries = [\"cn\"]",
            &["suspicious_countries", "cn", "upper case"],
        ),
        (
            "suspicious_countries = [\"CHN\"]",
            &["suspicious_countries", "CHN"],
        ),
        ("spam_percent = 130", &["spam_percent", "130"]),
        ("smtp_ports = [0]", &["smtp_ports", "0"]),
        (
            "mail_path_capture = \"everywhere\"",
            &["mail_path_capture", "everywhere"],
        ),
        (
            "blocklist_patterns = [\"spam(haus\"]",
            &["blocklist_patterns", "spam(haus"],
        ),
        ("spam_threshold = = 3", &["not valid TOML"]),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let f = d.write(&format!("bad{i}.toml"), text);
        let o = run(&["check-config", "-c", f.to_str().unwrap()]);
        let mut all = needles.to_vec();
        let name = format!("bad{i}.toml");
        all.push(&name);
        assert_one_line_error(&o, &all);
    }
    // The same through --set, which names --set instead of a file.
    let o = run(&["check-config", "--set", "local_nets=10.0.0.0/8,300.1.1.1/8"]);
    assert_one_line_error(&o, &["--set", "local_nets", "300.1.1.1/8"]);
    let o = run(&["check-config", "--set", "inspect_period=5y"]);
    assert_one_line_error(&o, &["--set", "inspect_period", "5y"]);
    // A missing config file.
    let o = run(&["check-config", "-c", "/nonexistent/sensor.toml"]);
    assert_one_line_error(&o, &["/nonexistent/sensor.toml"]);
}

#[test]
fn bad_geoip_database_fails_check_config_and_a_run() {
    let d = Scratch::new("detect-config-geo");
    let garbage = d.write("garbage.mmdb", b"definitely not maxmind");
    for db in [
        garbage.to_str().unwrap(),
        "/nonexistent/GeoIP2-Country.mmdb",
    ] {
        let set = format!("geoip_db={db}");
        let o = run(&["check-config", "--set", &set]);
        assert_one_line_error(&o, &[db]);
        // A run stops before reading the capture.
        let logs = d.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let pcap = d.join("one.pcap");
        let frames = SmtpConversation::builder()
            .mail("a@example.com")
            .rcpt("b@example.net")
            .build()
            .frames();
        write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        let o = run(&[
            "-r",
            pcap.to_str().unwrap(),
            "-l",
            logs.to_str().unwrap(),
            "--set",
            &set,
        ]);
        assert_one_line_error(&o, &[db]);
    }
    // Countries without a database cannot work: said at startup.
    let o = run(&["check-config", "--set", "suspicious_countries=CN"]);
    assert_one_line_error(&o, &["suspicious_countries", "geoip_db"]);
}
