//! packaging/: the example config is valid and documents every key with its
//! default; the systemd unit passes `systemd-analyze verify` and its
//! command lines use options the sensor has; and the unit's capability set
//! is exactly what live capture needs: the sensor, run live as an
//! unprivileged user with only those capabilities and no-new-privs,
//! captures the demo traffic on a veth pair, and fails to start without
//! any one of them. Run the way systemd runs it (`NOTIFY_SOCKET`,
//! `RUNTIME_DIRECTORY`), it reports READY=1, RELOADING=1/READY=1 around a
//! reload, and the unit's reload command fails on a refused configuration.
//! The live part needs root.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::demo;
use sensor_tests::synth::pcap::write_pcap;

/// The unprivileged user of the live test (`nobody`): the unit's system
/// user stands for any such user.
const UNPRIVILEGED: u32 = 65_534;
const DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

fn packaging(name: &str) -> PathBuf {
    repo().join("packaging").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unit() -> String {
    read(&packaging("smtp-sensor@.service"))
}

/// Values of `key=` lines of a unit file (comments skipped).
fn directive(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// The unit's capabilities, as setpriv names them (`net_admin`).
fn unit_caps() -> Vec<String> {
    let u = unit();
    let ambient = directive(&u, "AmbientCapabilities");
    assert_eq!(ambient, directive(&u, "CapabilityBoundingSet"));
    let caps: Vec<String> = ambient
        .join(" ")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    assert!(!caps.is_empty(), "no AmbientCapabilities in the unit");
    caps
}

#[test]
fn example_config_is_valid_and_lists_every_key_with_its_default() {
    let check = |args: &[&str]| {
        let out = Command::new(sensor_bin())
            .arg("check-config")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "check-config {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let toml = packaging("sensor.toml");
    let example = check(&["-c", toml.to_str().unwrap()]);
    // The example sets (or, for geoip_db, shows commented) the defaults.
    assert_eq!(example, check(&[]));
    let text = read(&toml);
    let documented = |key: &str| {
        text.lines().any(|l| {
            let l = l.trim_start_matches("# ").trim_start();
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
    };
    let keys: Vec<&str> = example
        .lines()
        .filter_map(|l| {
            l.trim_start_matches("# ")
                .split([' ', '='])
                .next()
                .filter(|k| !k.is_empty())
        })
        .collect();
    assert!(keys.len() >= 13, "{keys:?}");
    for k in keys {
        assert!(documented(k), "`{k}` is missing from packaging/sensor.toml");
    }
}

#[test]
fn systemd_unit_is_valid_and_least_privileged() {
    let u = unit();
    for (key, want) in [
        ("Type", "notify"),
        ("User", "smtp-sensor"),
        ("Group", "smtp-sensor"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("LimitMEMLOCK", "infinity"),
        ("Restart", "on-failure"),
        ("ExecReload", "/usr/bin/smtp-sensor reload $MAINPID"),
        ("LogsDirectory", "smtp-sensor/%I"),
        ("RuntimeDirectory", "smtp-sensor/%I"),
        ("ConfigurationDirectory", "smtp-sensor"),
        ("UMask", "0027"),
    ] {
        assert_eq!(directive(&u, key), [want], "{key}");
    }
    // DynamicUser would put the logs under /var/log/private (0700 root),
    // where no log shipper can read them.
    assert!(directive(&u, "DynamicUser").is_empty());
    // Names and paths take the unescaped instance (`enp1s0-v1`); only the
    // device unit's name is the escaped one.
    for (key, values) in [
        ("ExecStart", directive(&u, "ExecStart")),
        ("EnvironmentFile", directive(&u, "EnvironmentFile")),
    ] {
        for v in values {
            assert!(!v.contains("%i"), "{key}={v}: use %I");
        }
    }
    assert_eq!(unit_caps(), ["bpf", "net_admin", "net_raw", "perfmon"]);

    // The command lines use options the sensor has: with --help appended,
    // clap rejects an unknown option before it prints the help.
    for key in ["ExecStartPre", "ExecStart", "ExecReload"] {
        for line in directive(&u, key) {
            let args: Vec<String> = line
                .split_whitespace()
                .skip(1)
                .map(|a| {
                    a.replace("%I", "eth1")
                        .replace("${CONFIGURATION_DIRECTORY}", "/etc/smtp-sensor")
                        .replace("${LOGS_DIRECTORY}", "/var/log/smtp-sensor/eth1")
                })
                // $SMTP_SENSOR_OPTS: empty unless an environment file sets it.
                .filter(|a| !a.starts_with('$'))
                .collect();
            let out = Command::new(sensor_bin())
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{key} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let v = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze (Debian package systemd; `cargo xtask setup` installs it)");
    assert!(v.status.success());
    // verify checks that ExecStart's binary exists: point it at the one
    // built here instead of /usr/bin; and that the man page of
    // Documentation= is installed, which only the package does (`cargo
    // xtask deb` checks the installed unit with the man page).
    let s = Scratch::new("packaging-unit");
    let copy = s.join("smtp-sensor@.service");
    std::fs::write(
        &copy,
        u.replace("/usr/bin/smtp-sensor", sensor_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown or misspelt directives are only warnings: none allowed.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn logrotate_snippet_reloads_the_sensor() {
    let text = read(&packaging("smtp-sensor.logrotate"));
    let body = |w: &str| text.lines().any(|l| l.trim() == w);
    for w in ["nocreate", "delaycompress", "sharedscripts", "postrotate"] {
        assert!(body(w), "{w} missing");
    }
    assert!(
        text.contains("systemctl reload 'smtp-sensor@*.service'"),
        "{text}"
    );
    match Command::new("logrotate").arg("--version").output() {
        Err(_) => println!("note: logrotate is not installed; `logrotate -d` skipped"),
        Ok(_) => {
            let s = Scratch::new("packaging-logrotate");
            let out = Command::new("logrotate")
                .arg("-d")
                .arg("-s")
                .arg(s.join("state"))
                .arg(packaging("smtp-sensor.logrotate"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "logrotate -d: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// UMEM frames per queue that fit this process's RLIMIT_MEMLOCK (the
/// unit sets it to infinity; a test cannot raise a hard limit without
/// CAP_SYS_RESOURCE, so it sizes the UMEM instead).
fn umem_frames(queues: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) },
        0
    );
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return 4096;
    }
    // Half the limit, split over the queues, in 4 KiB frames, a power of two.
    let frames = (lim.rlim_cur / 2 / queues / 4096).clamp(64, 4096);
    1 << (63 - frames.leading_zeros())
}

/// `smtp-sensor -i` as the unprivileged user with exactly `caps` (ambient,
/// inheritable and bounding set), no-new-privs, in the sensor namespace.
fn spawn_unprivileged(
    pair: &VethPair,
    caps: &[String],
    logs: &Path,
    frames: u64,
    systemd: Option<&Systemd>,
) -> std::process::Child {
    let set = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let id = UNPRIVILEGED.to_string();
    pair.sensor_cmd("setpriv")
        .args([
            format!("--reuid={id}"),
            format!("--regid={id}"),
            "--clear-groups".into(),
            format!("--inh-caps={set}"),
            format!("--ambient-caps={set}"),
            format!("--bounding-set={set}"),
            "--no-new-privs".into(),
        ])
        .envs(systemd.map(Systemd::env).into_iter().flatten())
        .arg(sensor_bin())
        .args(["-i", &pair.sensor_if, "-c"])
        .arg(systemd.map_or_else(|| packaging("sensor.toml"), |s| s.config.clone()))
        .arg("-l")
        .arg(logs)
        .args(["--umem-frames", &frames.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run setpriv (util-linux)")
}

/// What systemd gives a `Type=notify` service with `RuntimeDirectory=`: a
/// notification socket (here the test's own) and a runtime directory; and
/// a config file the test can break.
struct Systemd {
    notify: std::os::unix::net::UnixDatagram,
    notify_path: PathBuf,
    runtime: PathBuf,
    config: PathBuf,
}

impl Systemd {
    fn new(dir: &Path) -> Systemd {
        use std::os::unix::fs::PermissionsExt;
        let notify_path = dir.join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let runtime = dir.join("run");
        std::fs::create_dir_all(&runtime).unwrap();
        std::os::unix::fs::chown(&runtime, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
        let config = dir.join("sensor.toml");
        std::fs::copy(packaging("sensor.toml"), &config).unwrap();
        Systemd {
            notify,
            notify_path,
            runtime,
            config,
        }
    }

    fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("NOTIFY_SOCKET", self.notify_path.clone()),
            ("RUNTIME_DIRECTORY", self.runtime.clone()),
        ]
    }

    /// Notification lines until one equals `want` (all of them, in order).
    fn until(&self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let t0 = Instant::now();
        while t0.elapsed() < DEADLINE {
            let Ok(n) = self.notify.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.extend(msg.lines().map(str::to_owned));
            if msg.lines().any(|l| l == want) {
                return seen;
            }
        }
        panic!("no {want} from the sensor; it sent {seen:?}");
    }

    /// The unit's ExecReload= (`smtp-sensor reload $MAINPID`).
    fn reload(&self, pid: u32) -> std::process::Output {
        Command::new(sensor_bin())
            .args(["reload", &pid.to_string()])
            .env("RUNTIME_DIRECTORY", &self.runtime)
            .output()
            .unwrap()
    }
}

/// Waits for "live capture started" (true) or the sensor's exit (false).
fn started(child: &mut std::process::Child) -> (bool, mpsc::Receiver<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[sensor] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    while t0.elapsed() < DEADLINE {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("live capture started") => return (true, rx),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return (false, rx),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = child.kill();
    panic!("the sensor neither started nor exited");
}

fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child (setpriv and ip exec the sensor).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the sensor did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sensor_runs_live_with_only_the_units_capabilities() {
    require_root();
    let caps = unit_caps();
    let s = Scratch::new("packaging-caps");
    let logs = s.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
    let pcap = s.join("demo.pcap");
    let capture = demo::capture();
    write_pcap(&pcap, capture.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let queues = 2;
    let frames = umem_frames(queues);
    let pair = VethPair::create("pk", queues as u32);

    // Each capability is needed: without it the sensor does not start.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let mut child = spawn_unprivileged(&pair, &fewer, &logs, frames, None);
        let (up, _) = started(&mut child);
        let st = if up {
            stop(&mut child)
        } else {
            child.wait().unwrap()
        };
        assert!(
            !up && !st.success(),
            "the sensor runs without CAP_{}: drop it from the unit",
            missing.to_uppercase()
        );
    }
    assert!(!pair.xdp_attached());

    // With them it captures the demo traffic as the unprivileged user,
    // run as systemd runs it.
    let systemd = Systemd::new(s.path());
    let mut child = spawn_unprivileged(&pair, &caps, &logs, frames, Some(&systemd));
    let (up, _lines) = started(&mut child);
    assert!(up, "the sensor did not start with the unit's capabilities");
    systemd.until("READY=1");
    assert!(pair.xdp_attached(), "READY=1 before XDP was attached");

    // `systemctl reload`: a good configuration is applied...
    let r = systemd.reload(child.id());
    assert!(
        r.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let seen = systemd.until("READY=1");
    assert!(seen.iter().any(|l| l == "RELOADING=1"), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{seen:?}"
    );
    // ...a broken one is refused, the reload fails saying why, and the
    // sensor runs on with the old one (it captures the traffic below).
    std::fs::write(&systemd.config, "spam_threshold = \"many\"\n").unwrap();
    let r = systemd.reload(child.id());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(
        r.status.code(),
        Some(1),
        "a refused reload succeeded: {err}"
    );
    assert!(
        err.contains("refused") && err.contains("spam_threshold"),
        "{err}"
    );
    let seen = systemd.until("READY=1");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("refused")),
        "{seen:?}"
    );
    let out = pair
        .peer_cmd("tcpreplay")
        .args(["-i", &pair.peer_if, "--pps", "3000", "-q"])
        .arg(&pcap)
        .output()
        .expect("cannot run tcpreplay; install it (`cargo xtask setup`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    let st = stop(&mut child);
    assert!(st.success(), "the sensor exited with {st}");
    systemd.until("STOPPING=1");
    assert!(!pair.xdp_attached());
    drop(pair);

    let smtp = logs.join("smtp.log");
    assert_eq!(std::fs::metadata(&smtp).unwrap().uid(), UNPRIVILEGED);
    assert_eq!(read(&smtp).lines().count(), demo::RECORDS);
    let notices: Vec<(String, String, String)> = {
        let mut v: Vec<_> = read(&logs.join("notice.log"))
            .lines()
            .map(|l| {
                let n: Value = serde_json::from_str(l).unwrap();
                let f = |k: &str| n[k].as_str().unwrap_or("").to_owned();
                (f("note"), f("src"), f("msg"))
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(notices, demo::expected_notices());
}
