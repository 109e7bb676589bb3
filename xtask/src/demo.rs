//! `cargo xtask demo`: the sensor live on a real interface, end to end.
//!
//! Sets up, builds (release), writes a generated SMTP capture (the `synth`
//! tool of sensor-tests), creates two network namespaces joined by a veth
//! pair with four queues, attaches the sensor to one end, replays the
//! capture into the other with tcpreplay, stops the sensor with SIGINT and
//! prints what it captured. The namespaces are removed on every exit path.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, is_root, status, target_dir};

/// Namespaces and the veth pair; deleted on drop.
struct Netns {
    sensor_ns: String,
    peer_ns: String,
}

impl Netns {
    fn create() -> Result<Self> {
        let id = std::process::id();
        let ns = Netns {
            sensor_ns: format!("smtp-demo-{id}-s"),
            peer_ns: format!("smtp-demo-{id}-p"),
        };
        let ip = |args: &[&str]| status(Command::new("ip").args(args));
        ip(&["netns", "add", &ns.sensor_ns])?;
        ip(&["netns", "add", &ns.peer_ns])?;
        ip(&[
            "link",
            "add",
            "demo0",
            "numrxqueues",
            "4",
            "numtxqueues",
            "4",
            "netns",
            &ns.sensor_ns,
            "type",
            "veth",
            "peer",
            "name",
            "demo1",
            "numrxqueues",
            "4",
            "numtxqueues",
            "4",
            "netns",
            &ns.peer_ns,
        ])?;
        ip(&["-n", &ns.sensor_ns, "link", "set", "demo0", "up"])?;
        ip(&["-n", &ns.peer_ns, "link", "set", "demo1", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.sensor_ns, &self.peer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        println!("xtask: removed the demo namespaces");
    }
}

pub fn run() -> Result<()> {
    if !is_root() {
        bail!("the demo attaches XDP and creates network namespaces: run it as root");
    }
    crate::setup::run()?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "smtp-sensor",
        "-p",
        "sensor-tests",
        "--bins",
    ])?;
    let bin_dir = target_dir().join("release");
    let work = std::env::temp_dir().join(format!("smtp-sensor-demo-{}", std::process::id()));
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let pcap = work.join("demo.pcap");
    status(Command::new(bin_dir.join("synth")).arg("demo").arg(&pcap))?;

    let ns = Netns::create()?;
    let result = capture(&ns, &bin_dir, &pcap, &work, &logs);
    drop(ns);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn capture(ns: &Netns, bin_dir: &Path, pcap: &Path, work: &Path, logs: &Path) -> Result<()> {
    let stats = work.join("stats.json");
    let mut sensor = Command::new("ip")
        .args(["netns", "exec", &ns.sensor_ns])
        .arg(bin_dir.join("smtp-sensor"))
        .args(["-i", "demo0", "-l"])
        .arg(logs)
        .arg("--stats-json")
        .arg(&stats)
        .args(["--stats-interval", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start smtp-sensor")?;
    let stderr = sensor.stderr.take().context("no stderr pipe")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  sensor | {line}");
            if line.contains("live capture started") {
                let _ = tx.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.recv_timeout(Duration::from_millis(100)).is_err() {
        if sensor.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = sensor.kill();
            let _ = sensor.wait();
            bail!("smtp-sensor did not start; see its messages above");
        }
    }
    let replay = status(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.peer_ns,
                "tcpreplay",
                "-q",
                "-i",
                "demo1",
                "--pps",
                "2000",
            ])
            .arg(pcap),
    );
    std::thread::sleep(Duration::from_secs(1));
    // SIGINT: the sensor stops cleanly and detaches its XDP program.
    let _ = Command::new("kill")
        .args(["-INT", &sensor.id().to_string()])
        .status();
    let st = sensor.wait()?;
    let _ = reader.join();
    replay?;
    if !st.success() {
        bail!("smtp-sensor exited with {st}");
    }
    let text = std::fs::read_to_string(&stats).context("the sensor wrote no statistics")?;
    println!("\nxtask: capture statistics ({}):\n{text}", stats.display());
    for log in ["smtp.log", "notice.log"] {
        let p = logs.join(log);
        if let Ok(t) = std::fs::read_to_string(&p) {
            println!("\nxtask: {log}:\n{t}");
        }
    }
    Ok(())
}
