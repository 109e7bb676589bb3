//! Operational faults under a running live sensor, on real veth pairs with
//! the real XDP program (docs/OPERATIONS.md, "Faults"): the interface
//! deleted (exit 1 with the records flushed, or `--on-interface-loss wait`
//! and capture on the new interface), its link down and up, `kill -9` and a
//! restart onto a log with a partial last line, a log directory that
//! cannot be written (immutable) or a full disk, and a second sensor on the
//! same interface. Needs root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sensor_tests::live_sensor::{LiveSensor, read_lines, replay};
use sensor_tests::netns::{VethPair, require_root, run};
use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::smtp::{Ending, Message, SmtpConversation};
use smtp_sensor::net::Ts;

const WAIT: Duration = Duration::from_secs(30);

/// A complete conversation from client port `port`, sender `from`.
fn mail(port: u16, from: &str) -> SmtpConversation {
    SmtpConversation::builder()
        .client(SocketAddr::from(([198, 18, 0, 2], port)))
        .server(SocketAddr::from(([198, 19, 0, 25], 25)))
        .start(Ts::from_secs(1_700_000_000))
        .mail(from)
        .rcpt("bob@example.net")
        .message(Message::simple(from, "bob@example.net", "hello"))
        .build()
}

/// MAIL and RCPT accepted, then nothing: its record is written only when
/// the sensor flushes at its end.
fn open_conversation(port: u16, from: &str) -> SmtpConversation {
    SmtpConversation::builder()
        .client(SocketAddr::from(([198, 18, 0, 2], port)))
        .server(SocketAddr::from(([198, 19, 0, 25], 25)))
        .start(Ts::from_secs(1_700_000_000))
        .mail(from)
        .rcpt("bob@example.net")
        .ending(Ending::Open)
        .build()
}

fn write(dir: &Path, name: &str, cs: &[SmtpConversation]) -> PathBuf {
    let path = dir.join(name);
    let frames: Vec<(Ts, Vec<u8>)> = cs.iter().flat_map(SmtpConversation::frames).collect();
    write_pcap(&path, frames.iter().map(|(t, f)| (*t, f.as_slice()))).expect("write pcap");
    path
}

fn mailfrom(line: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
    v["mailfrom"].as_str().unwrap_or_default().to_owned()
}

/// Every line of `path` parses as JSON (and the file ends with a line end).
fn assert_json_lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    assert!(
        bytes.is_empty() || bytes.last() == Some(&b'\n'),
        "{} does not end with a line end",
        path.display()
    );
    let lines = read_lines(path);
    for l in &lines {
        mailfrom(l);
    }
    lines
}

#[test]
fn a_deleted_interface_ends_the_run_with_its_records_flushed() {
    require_root();
    let dir = Scratch::new("live-if-gone");
    let pcap = write(
        dir.path(),
        "open.pcap",
        &[open_conversation(40400, "open@example.com")],
    );
    let logs = dir.dir("logs");
    let pair = VethPair::create("ifg", 1);
    let mut sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    replay(&pair, &pcap, 1000);
    std::thread::sleep(Duration::from_secs(2));
    assert!(sensor.log_lines("smtp.log").is_empty(), "written too early");

    let deleted = Instant::now();
    pair.delete_link();
    let status = sensor.wait(Duration::from_secs(10));
    assert!(
        deleted.elapsed() < Duration::from_secs(5),
        "took {:?} to notice",
        deleted.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{status}: {:?}", sensor.log);
    let log = sensor.log.join("\n");
    assert!(log.contains("the interface was deleted"), "{log}");
    assert!(log.contains("exiting with code 1"), "{log}");
    let records = assert_json_lines(&logs.join("smtp.log"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(mailfrom(&records[0]), "open@example.com");
}

#[test]
fn wait_attaches_to_a_new_interface_of_the_same_name() {
    require_root();
    let dir = Scratch::new("live-if-wait");
    let before = write(
        dir.path(),
        "before.pcap",
        &[mail(40500, "before@example.com")],
    );
    let after = write(
        dir.path(),
        "after.pcap",
        &[mail(40501, "after@example.com")],
    );
    let logs = dir.dir("logs");
    let pair = VethPair::create("ifw", 1);
    let mut sensor = LiveSensor::start(
        &pair,
        &logs,
        &["--stats-interval", "1", "--on-interface-loss", "wait"],
    );
    replay(&pair, &before, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);

    pair.delete_link();
    sensor.wait_for("the interface was deleted", WAIT);
    sensor.wait_for("waiting for an interface named", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    // Still running, and saying the link is down.
    sensor.wait_for("link=down link_losses=1", WAIT);
    assert!(!sensor.log.iter().any(|l| l.contains("exiting")));

    pair.recreate_link(1);
    sensor.wait_for("is back (index", WAIT);
    assert!(pair.xdp_attached(), "no XDP program on the new interface");
    replay(&pair, &after, 1000);
    let lines = sensor.wait_for_lines("smtp.log", 2, WAIT);
    assert_eq!(mailfrom(&lines[1]), "after@example.com");
    let (status, _) = sensor.stop();
    assert!(status.success(), "{status}");
    assert!(!pair.xdp_attached(), "XDP program left on the interface");
}

#[test]
fn link_down_and_up_is_reported_and_capture_resumes() {
    require_root();
    let dir = Scratch::new("live-if-flap");
    let pcap = write(
        dir.path(),
        "after.pcap",
        &[mail(40600, "after@example.com")],
    );
    let logs = dir.dir("logs");
    let pair = VethPair::create("ifl", 1);
    let mut sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "1"]);
    sensor.wait_for("link=up link_losses=0", WAIT);

    pair.set_sensor_link(false);
    sensor.wait_for(": link down; nothing is captured", WAIT);
    sensor.wait_for("link=down link_losses=1", WAIT);
    pair.set_sensor_link(true);
    sensor.wait_for(": link up again", WAIT);
    sensor.wait_for("XDP program still attached", WAIT);
    sensor.wait_for("link=up link_losses=1", WAIT);
    replay(&pair, &pcap, 1000);
    let lines = sensor.wait_for_lines("smtp.log", 1, WAIT);
    assert_eq!(mailfrom(&lines[0]), "after@example.com");
    let (status, _) = sensor.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn kill_9_then_restart_keeps_the_log_valid_json_lines() {
    require_root();
    let dir = Scratch::new("live-kill9");
    let first = write(
        dir.path(),
        "first.pcap",
        &[mail(40700, "first@example.com")],
    );
    let second = write(
        dir.path(),
        "second.pcap",
        &[mail(40701, "second@example.com")],
    );
    let logs = dir.dir("logs");
    let pair = VethPair::create("k9", 1);
    let sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    replay(&pair, &first, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);
    let (status, _) = sensor.stop_with(libc::SIGKILL);
    assert_eq!(status.code(), None, "killed by a signal");
    assert!(!pair.xdp_attached(), "XDP program left after kill -9");
    // What a kill in the middle of a write leaves: the start of a record.
    let smtp = logs.join("smtp.log");
    let mut bytes = std::fs::read(&smtp).unwrap();
    let written = bytes.clone();
    bytes.extend_from_slice(b"{\"ts\":1700000000.5,\"uid\":\"Ccut");
    std::fs::write(&smtp, &bytes).unwrap();

    let mut sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    sensor.wait_for("ended inside a line (30 bytes", WAIT);
    replay(&pair, &second, 1000);
    sensor.wait_for_lines("smtp.log", 2, WAIT);
    let (status, log) = sensor.stop();
    assert!(status.success(), "{status}");
    assert!(
        log.iter()
            .any(|l| l.contains("1 partial last line(s) (30 bytes) cut")),
        "{log:?}"
    );
    let lines = assert_json_lines(&smtp);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(mailfrom(&lines[0]), "first@example.com");
    assert_eq!(mailfrom(&lines[1]), "second@example.com");
    // Everything written before the kill is still there, byte for byte.
    assert!(std::fs::read(&smtp).unwrap().starts_with(&written));
}

/// `chattr +i` on a directory while it holds, removed on drop (also when
/// the test fails, so the scratch directory can go).
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn set(dir: &'a Path) -> Self {
        run("chattr", &["+i", dir.to_str().unwrap()]);
        Immutable(dir)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-i", self.0.to_str().unwrap_or_default()])
            .output();
    }
}

#[test]
fn an_unwritable_log_directory_drops_counts_and_recovers() {
    require_root();
    let dir = Scratch::new("live-logs-ro");
    let first = write(
        dir.path(),
        "first.pcap",
        &[mail(40800, "first@example.com")],
    );
    let lost = write(dir.path(), "lost.pcap", &[mail(40801, "lost@example.com")]);
    let back = write(dir.path(), "back.pcap", &[mail(40802, "back@example.com")]);
    let logs = dir.dir("logs");
    let pair = VethPair::create("ro", 1);
    let mut sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "1"]);
    replay(&pair, &first, 1000);
    sensor.wait_for_lines("smtp.log", 1, WAIT);

    // logrotate moved the files away, and the directory cannot take new
    // ones (as root a read-only mode bit would not stop the sensor; the
    // immutable flag does).
    std::fs::rename(logs.join("smtp.log"), logs.join("smtp.log.1")).unwrap();
    std::fs::rename(logs.join("notice.log"), logs.join("notice.log.1")).unwrap();
    let guard = Immutable::set(&logs);
    sensor.signal(libc::SIGHUP);
    sensor.wait_for("cannot create log file", WAIT);
    replay(&pair, &lost, 1000);
    sensor.wait_for("log_write=1)", WAIT);
    drop(guard);

    // Retried every second: once reopened, the next record is written.
    std::thread::sleep(Duration::from_secs(2));
    replay(&pair, &back, 1000);
    sensor.wait_for("is writable again; 1 record(s) were dropped", WAIT);
    let lines = sensor.wait_for_lines("smtp.log", 1, WAIT);
    assert_eq!(mailfrom(&lines[0]), "back@example.com");
    let (status, log) = sensor.stop();
    assert!(status.success(), "{status}");
    assert!(
        log.iter()
            .any(|l| l.contains("1 records and notices dropped: a log file could not be written")),
        "{log:?}"
    );
    let rotated = assert_json_lines(&logs.join("smtp.log.1"));
    assert_eq!(rotated.len(), 1);
    assert_eq!(mailfrom(&rotated[0]), "first@example.com");
    assert_eq!(assert_json_lines(&logs.join("smtp.log")).len(), 1);
}

/// `nsenter` into the sensor's mount namespace (where its log directory
/// is a small tmpfs) to run `sh -c script`.
fn in_sensor_mounts(sensor: &LiveSensor, script: &str) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &sensor.pid().to_string(), "-m", "sh", "-c", script])
        .output()
        .expect("run nsenter");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_full_disk_drops_whole_records_and_recovers() {
    require_root();
    let dir = Scratch::new("live-disk-full");
    let first = write(
        dir.path(),
        "first.pcap",
        &[mail(40900, "first@example.com")],
    );
    let many: Vec<SmtpConversation> = (0..30)
        .map(|i| mail(41000 + i, &format!("lost{i}@example.com")))
        .collect();
    let lost = write(dir.path(), "lost.pcap", &many);
    let back = write(dir.path(), "back.pcap", &[mail(40902, "back@example.com")]);
    let logs = dir.dir("logs");
    let logs_s = logs.to_str().unwrap().to_owned();
    let pair = VethPair::create("df", 1);
    // A private mount namespace with a 256 KiB tmpfs on the log directory:
    // it goes away with the sensor.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=256k smtp-sensor-test {logs_s} && exec ip netns exec {} {} -i {} -l {logs_s} --stats-interval 1",
            pair.sensor_ns,
            sensor_bin().display(),
            pair.sensor_if
        ));
    let mut sensor = LiveSensor::spawn(cmd, &logs);
    let smtp = format!("{logs_s}/smtp.log");
    replay(&pair, &first, 1000);
    let deadline = Instant::now() + WAIT;
    while !in_sensor_mounts(&sensor, &format!("cat {smtp}")).contains("first@example.com") {
        assert!(Instant::now() < deadline, "first record not written");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Fill the file system.
    in_sensor_mounts(&sensor, &format!("cat /dev/zero > {logs_s}/filler; true"));
    replay(&pair, &lost, 2000);
    sensor.wait_for("cannot write log file", WAIT);
    // The file still holds whole lines only.
    let text = in_sensor_mounts(&sensor, &format!("cat {smtp}"));
    assert!(text.ends_with('\n'), "{text:?}");
    in_sensor_mounts(&sensor, &format!("rm {logs_s}/filler"));
    // Retried at most once a second: after that the next record is written.
    std::thread::sleep(Duration::from_secs(2));
    replay(&pair, &back, 1000);
    sensor.wait_for("is writable again", WAIT);
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let t = in_sensor_mounts(&sensor, &format!("cat {smtp}"));
        if t.contains("back@example.com") {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "record after recovery not written"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Each message is one file: a files.log row beside its record.
    let files = in_sensor_mounts(&sensor, &format!("cat {logs_s}/files.log"));
    let (status, log) = sensor.stop();
    assert!(status.success(), "{status}");
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines {
        mailfrom(l);
    }
    assert_eq!(mailfrom(lines[0]), "first@example.com");
    let file_rows = files.lines().count();
    for l in files.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "files.log: {l}"
        );
    }
    // Every record and file row is either in its file or counted as
    // dropped (the count sums the logs).
    let dropped: usize = log
        .iter()
        .find_map(|l| {
            l.strip_prefix("smtp-sensor: ")?
                .split_once(" records and notices dropped")
                .map(|(n, _)| n.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no drop count in {log:?}"));
    assert!(dropped > 0);
    assert_eq!(lines.len() + file_rows + dropped, 2 * 32, "{lines:?}");
}

#[test]
fn offline_a_full_disk_is_exit_2_and_leaves_whole_lines() {
    require_root();
    let dir = Scratch::new("offline-disk-full");
    let many: Vec<SmtpConversation> = (0..1500)
        .map(|i| mail(20000 + i, &format!("m{i}@example.com")))
        .collect();
    let pcap = write(dir.path(), "many.pcap", &many);
    let logs = dir.dir("logs");
    let logs_s = logs.to_str().unwrap();
    // 256 KiB of tmpfs in a private mount namespace: 1500 records do not
    // fit. The file is checked from inside before the namespace goes.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=256k smtp-sensor-test {logs_s} && {} -r {} -l {logs_s}; echo \"exit=$?\"; cat {logs_s}/smtp.log",
            sensor_bin().display(),
            pcap.display()
        ))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (status, log) = stdout.split_once('\n').expect("exit line");
    assert_eq!(status, "exit=2", "{stderr}");
    assert!(
        stderr.contains("cannot write log file") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(log.len() > 1000, "some records were written: {log:?}");
    assert!(
        log.ends_with('\n'),
        "partial last line: {:?}",
        &log[log.len() - 100..]
    );
    for l in log.lines() {
        mailfrom(l);
    }
}

#[test]
fn a_second_sensor_on_the_same_interface_is_refused() {
    require_root();
    let dir = Scratch::new("live-second");
    let logs = dir.dir("logs");
    let other = dir.dir("other");
    let pair = VethPair::create("two", 1);
    let sensor = LiveSensor::start(&pair, &logs, &["--stats-interval", "0"]);
    let out = pair
        .sensor_cmd(sensor_bin().to_str().unwrap())
        .args(["-i", &pair.sensor_if, "-l", other.to_str().unwrap()])
        .output()
        .expect("run a second sensor");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("second sensor: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("smtp-sensor: ") && l.contains(&pair.sensor_if)),
        "{err}"
    );
    // The first one is unharmed.
    let (status, _) = sensor.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_missing_log_directory_is_exit_2_before_capture() {
    require_root();
    let dir = Scratch::new("live-no-logdir");
    let pair = VethPair::create("nld", 1);
    let missing = dir.join("missing");
    let out = pair
        .sensor_cmd(sensor_bin().to_str().unwrap())
        .args(["-i", &pair.sensor_if, "-l", missing.to_str().unwrap()])
        .output()
        .expect("run the sensor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!pair.xdp_attached());
}
