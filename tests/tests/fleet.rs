//! Fleet mode end to end: real `redis-server` processes (one per test, on a
//! Unix socket in the test's scratch directory, stopped by a guard even when
//! the test fails), real sensor processes reading complementary parts of one
//! generated capture, and the merge script exercised against the server.

mod detect_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use detect_common::*;
use sensor_tests::sensor_bin::sensor_bin;
use smtp_sensor::config::Config;
use smtp_sensor::detect::Detection;
use smtp_sensor::fleet::{merge, publish, snapshot};
use smtp_sensor::net::Ts;

/// A `redis-server` on a Unix socket; killed and reaped on drop.
struct Redis {
    child: Child,
    sock: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let sock = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; cargo xtask setup installs it)");
        let r = Redis { child, sock };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.sock.display())
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sensor process; killed on drop if the test failed before it ended.
struct Sensor(Child);

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fleet_sets(url: &str, name: &str) -> Vec<String> {
    vec![
        format!("fleet.redis_url={url}"),
        format!("fleet.sensor_name={name}"),
        "fleet.flush_interval=100ms".to_owned(),
        "fleet.close_grace=1h".to_owned(),
        "local_nets=198.18.0.0/16".to_owned(),
    ]
}

/// Starts a sensor reading its capture from stdin (so the test can let
/// every sensor join the fleet before any reads a packet).
fn spawn(log_dir: &Path, input: &str, sets: &[String]) -> Sensor {
    std::fs::create_dir_all(log_dir).unwrap();
    let mut cmd = Command::new(sensor_bin());
    cmd.args(["-r", input, "-l"]).arg(log_dir);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let stdin = if input == "-" {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    Sensor(
        cmd.stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for the sensor; returns (exit code, stderr).
fn wait(mut s: Sensor) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = s.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = s.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (st.code(), err);
        }
        assert!(Instant::now() < deadline, "sensor did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The spam notices of a notice.log as comparable tuples.
fn spam_notices(text: &str) -> Vec<(String, String, String, u64, String)> {
    let mut v: Vec<_> = parse(text)
        .iter()
        .map(|n| {
            (
                n["note"].as_str().unwrap_or_default().to_owned(),
                n["msg"].as_str().unwrap_or_default().to_owned(),
                n["src"].as_str().unwrap_or_default().to_owned(),
                n["n"].as_u64().unwrap_or_default(),
                n["ts"].to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A spammer (400 connections, half rejected) and a local host (320, all
/// rejected, recipients listed), plus a quiet host: one sensor on all of it
/// raises two notices; split over `parts` sensors none is over the
/// threshold alone.
fn traffic() -> Vec<Frames> {
    let mut s = host_traffic("198.19.1.1", 400, 200, 0, 2_000_000, 10_000);
    s.extend(host_traffic(
        "198.18.5.5",
        320,
        320,
        500_000,
        2_500_000,
        20_000,
    ));
    s.extend(host_traffic(
        "198.19.9.9",
        50,
        0,
        700_000,
        10_000_000,
        40_000,
    ));
    s
}

fn split(sessions: Vec<Frames>, parts: usize) -> Vec<Vec<Frames>> {
    let mut out = vec![Vec::new(); parts];
    for (i, s) in sessions.into_iter().enumerate() {
        out[i % parts].push(s);
    }
    out
}

fn fleet_equals_one_sensor(parts: usize) {
    let dir = Scratch::new(&format!("fleet-split-{parts}"));
    let whole = pcap(&dir, "whole.pcap", traffic());
    let sets = ["local_nets=198.18.0.0/16"];
    let expected = spam_notices(&run(&dir, &whole, &sets, 1));
    assert_eq!(expected.len(), 2, "{expected:?}");
    let pieces: Vec<PathBuf> = split(traffic(), parts)
        .into_iter()
        .enumerate()
        .map(|(i, s)| pcap(&dir, &format!("part{i}.pcap"), s))
        .collect();
    // Each part alone: nothing.
    for p in &pieces {
        assert!(spam_notices(&run(&dir, p, &sets, 1)).is_empty(), "{p:?}");
    }
    let redis = Redis::start(&dir.join(""));
    let mut sensors: Vec<Sensor> = (0..parts)
        .map(|i| {
            let sets = fleet_sets(&redis.url(), &format!("s{i}"));
            spawn(&dir.join(format!("fleet-{i}")), "-", &sets)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis.cli(&["SCARD", "smtp-sensor:members"]) != parts.to_string() {
        assert!(Instant::now() < deadline, "sensors did not join the fleet");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (s, p) in sensors.iter_mut().zip(&pieces) {
        let mut stdin = s.0.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(p).unwrap()).unwrap();
    }
    let mut got = Vec::new();
    for (i, s) in sensors.into_iter().enumerate() {
        let (code, err) = wait(s);
        assert_eq!(code, Some(0), "sensor {i}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let text = std::fs::read_to_string(dir.join(format!("fleet-{i}/notice.log"))).unwrap();
        got.extend(spam_notices(&text));
    }
    got.sort();
    assert_eq!(got, expected, "{parts} sensors");
    // The evaluator also streamed them.
    assert_eq!(redis.cli(&["XLEN", "smtp-sensor:notices"]), "2");
}

#[test]
fn two_sensors_give_the_notices_of_one() {
    fleet_equals_one_sensor(2);
}

#[test]
fn three_sensors_give_the_notices_of_one() {
    fleet_equals_one_sensor(3);
}

#[test]
fn repeated_and_out_of_order_publishes_change_nothing() {
    let dir = Scratch::new("fleet-merge");
    let redis = Redis::start(&dir.join(""));
    let mut con = redis.con();
    let mut check = redis.con();
    let cfg = Config::load(None, &["spam_threshold=10".to_owned()]).unwrap();
    let det = Arc::new(Detection::from_config(&cfg).unwrap());
    let keys = publish::PeriodKeys::new("t", 3_600_000_000, 7);
    let script = publish::merge_script();
    let snap = |total: u64, rejects: u64| {
        let mut p = smtp_sensor::detect::PeriodCounters::default();
        p.hosts.insert(
            "203.0.113.9".parse().unwrap(),
            smtp_sensor::detect::spam::HostCounts {
                total,
                rejects,
                ..Default::default()
            },
        );
        snapshot::encode(&p, Ts(100))
    };
    let (old, new) = (snap(4, 4), snap(9, 9));
    let mut pubs = |member: &str, seq: u64, s: &str, fin: bool| {
        publish::publish(&mut con, &script, &keys, member, seq, s, fin, 60_000).unwrap()
    };
    use publish::Stored;
    // In order, then repeated, then the older one arriving late.
    assert_eq!(pubs("a/1", 1, &old, false), Stored::Stored);
    assert_eq!(pubs("a/1", 2, &new, true), Stored::Stored);
    assert_eq!(pubs("a/1", 2, &new, true), Stored::Stale);
    assert_eq!(pubs("a/1", 1, &old, false), Stored::Stale);
    // Another member out of order: newest first.
    assert_eq!(pubs("b/1", 5, &snap(3, 3), true), Stored::Stored);
    assert_eq!(pubs("b/1", 4, &old, false), Stored::Stale);
    assert_eq!(pubs("b/1", 5, &snap(3, 3), true), Stored::Stale);
    let stored: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(&keys.snap)
        .query(&mut check)
        .unwrap();
    assert_eq!(stored.len(), 2);
    let v = merge::evaluate(stored.values().map(Vec::as_slice), &det, &[]);
    assert_eq!(v.notices.len(), 1);
    assert_eq!(
        v.notices[0].msg,
        "203.0.113.9 - sent: 12 rejected: 100 percent"
    );
    assert_eq!(v.notices[0].ts, Ts(100));
    // After the close: refused, counted by the caller as late.
    let _: () = redis::cmd("SET")
        .arg(&keys.closed)
        .arg("x")
        .query(&mut check)
        .unwrap();
    assert_eq!(pubs("a/1", 3, &snap(99, 99), true), Stored::Late);
    let after: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(&keys.snap)
        .query(&mut check)
        .unwrap();
    assert_eq!(after, stored);
}

#[test]
fn redis_down_still_logs_locally_and_exits_0() {
    let dir = Scratch::new("fleet-down");
    let whole = pcap(&dir, "whole.pcap", traffic());
    let alone = run(&dir, &whole, &["local_nets=198.18.0.0/16"], 1);
    let nobody = format!("redis+unix://{}", dir.join("nobody.sock").display());
    let out = dir.join("down");
    let (code, err) = wait(spawn(
        &out,
        &whole.to_string_lossy(),
        &fleet_sets(&nobody, "s0"),
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Every record is in smtp.log: one per connection.
    let smtp = std::fs::read_to_string(out.join("smtp.log")).unwrap();
    assert_eq!(smtp.lines().count(), 400 + 320 + 50);
    // The period is judged on this sensor's traffic, and says so.
    let notice = std::fs::read_to_string(out.join("notice.log")).unwrap();
    let ns = parse(&notice);
    assert_eq!(ns.len(), 2, "{notice}");
    for n in &ns {
        assert!(
            n["sub"]
                .as_str()
                .unwrap_or_default()
                .contains("Redis unreachable"),
            "{n}"
        );
    }
    let strip = |t: &str| {
        spam_notices(t)
            .into_iter()
            .map(|(a, b, c, d, _)| (a, b, c, d))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&notice), strip(&alone));
    assert!(err.contains("fleet_publish_failed"), "{err}");
}

#[test]
fn a_dead_sensor_is_counted_and_named_as_missing() {
    let dir = Scratch::new("fleet-dead");
    let whole = pcap(&dir, "whole.pcap", traffic());
    let redis = Redis::start(&dir.join(""));
    let mut con = redis.con();
    // A sensor that stored a snapshot for the capture's period (its
    // epoch-aligned index), never its final one, and whose heartbeat has
    // expired: it died.
    let period_us = 3_600_000_000;
    let keys = publish::PeriodKeys::new("smtp-sensor", period_us, T0 * 1_000_000 / period_us);
    let mut p = smtp_sensor::detect::PeriodCounters::default();
    p.hosts.insert(
        "198.19.1.1".parse().unwrap(),
        smtp_sensor::detect::spam::HostCounts {
            total: 100,
            rejects: 100,
            ..Default::default()
        },
    );
    let snap = snapshot::encode(&p, Ts(T0 * 1_000_000));
    let script = publish::merge_script();
    let stored =
        publish::publish(&mut con, &script, &keys, "ghost/1", 1, &snap, false, 60_000).unwrap();
    assert_eq!(stored, publish::Stored::Stored);
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg("smtp-sensor:members")
        .arg("ghost/1")
        .cmd("SET")
        .arg("smtp-sensor:hb:ghost/1")
        .arg(1)
        .arg("PX")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let out = dir.join("alive");
    let (code, err) = wait(spawn(
        &out,
        &whole.to_string_lossy(),
        &fleet_sets(&redis.url(), "alive"),
    ));
    assert_eq!(code, Some(0), "{err}");
    let notice = std::fs::read_to_string(out.join("notice.log")).unwrap();
    let ns = parse(&notice);
    let spammer = ns
        .iter()
        .find(|n| n["src"] == "198.19.1.1")
        .unwrap_or_else(|| panic!("{notice}"));
    // Its stored counts are merged (400 + 100 connections, 200 + 100
    // rejected), and every notice of the period names it.
    assert_eq!(
        spammer["msg"],
        "198.19.1.1 - sent: 500 rejected: 60 percent"
    );
    for n in &ns {
        assert_eq!(
            n["sub"], "fleet: period closed without the final snapshot of ghost/1",
            "{n}"
        );
    }
    assert_eq!(
        redis.cli(&["SISMEMBER", "smtp-sensor:members", "ghost/1"]),
        "0"
    );
}

#[test]
fn redis_stopped_mid_run_still_logs_locally_and_exits_0() {
    let dir = Scratch::new("fleet-stopped");
    let whole = pcap(&dir, "whole.pcap", traffic());
    let mut redis = Redis::start(&dir.join(""));
    let out = dir.join("stopped");
    let mut s = spawn(&out, "-", &fleet_sets(&redis.url(), "s0"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis.cli(&["SCARD", "smtp-sensor:members"]) != "1" {
        assert!(
            Instant::now() < deadline,
            "the sensor did not join the fleet"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Joined; now Redis goes away before any period ends.
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let mut stdin = s.0.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&whole).unwrap()).unwrap();
    drop(stdin);
    let (code, err) = wait(s);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let smtp = std::fs::read_to_string(out.join("smtp.log")).unwrap();
    assert_eq!(smtp.lines().count(), 400 + 320 + 50);
    let ns = parse(&std::fs::read_to_string(out.join("notice.log")).unwrap());
    assert_eq!(ns.len(), 2);
    assert!(ns.iter().all(|n| {
        n["sub"]
            .as_str()
            .unwrap_or_default()
            .contains("Redis unreachable")
    }));
    assert!(err.contains("fleet_publish_failed"), "{err}");
}
