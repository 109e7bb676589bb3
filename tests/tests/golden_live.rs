//! The live path end to end: golden SMTP sessions replayed over a veth pair
//! (inside network namespaces this test creates and removes) into
//! `smtp-sensor -i`, which must write the same smtp.log records the offline
//! pipeline writes for the same capture (apart from `ts`/`uid`, which come
//! from the capture clock). Needs root, like the other live tests.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::scenarios;
use sensor_tests::synth::session::interleave;
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, run_offline};

/// The fields that do not depend on the capture clock, one string per record.
fn records(log: &str) -> Vec<String> {
    let mut out: Vec<String> = log
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(m) = v.as_object_mut() {
                m.remove("ts");
                m.remove("uid");
            }
            v.to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn live_capture_writes_the_offline_records() {
    require_root();
    let dir = std::env::temp_dir().join(format!("golden-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("in.pcap");
    let picked = ["basic", "pipelining", "rejected", "bdat"];
    let frames = interleave(
        scenarios::golden()
            .into_iter()
            .filter(|(n, _)| picked.contains(n))
            .map(|(_, f)| f),
    );
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();

    let offline_dir = dir.join("offline");
    std::fs::create_dir_all(&offline_dir).unwrap();
    let opts = RunOptions {
        log_dir: offline_dir.clone(),
        format: LogFormat::Json,
        workers: 1,
        decode: DecodeOptions::default(),
    };
    run_offline(&Config::default(), &pcap, &opts).unwrap();
    let want = records(&std::fs::read_to_string(offline_dir.join("smtp.log")).unwrap());
    assert_eq!(want.len(), 6);

    let live_dir = dir.join("live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let pair = VethPair::create("gl", 1);
    let bin = sensor_bin();
    let mut child = pair
        .sensor_cmd(bin.to_str().unwrap())
        .args(["-i", &pair.sensor_if, "-l"])
        .arg(&live_dir)
        .args(["--xdp-mode", "skb", "--stats-interval", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[sensor] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains("live capture started"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("sensor did not start: {log:?}");
            }
        }
    }
    let out = pair
        .peer_cmd("tcpreplay")
        .args(["-i", &pair.peer_if, "--pps", "2000", "-q"])
        .arg(&pcap)
        .output()
        .expect("tcpreplay");
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "sensor exited with {status}");
    drop(pair);
    let got = records(&std::fs::read_to_string(live_dir.join("smtp.log")).unwrap());
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}
