//! The live path end to end: golden SMTP sessions replayed over a veth pair
//! (inside network namespaces this test creates and removes) into
//! `smtp-sensor -i`, which must write the same smtp.log records the offline
//! pipeline writes for the same capture (apart from `ts`/`uid`, which come
//! from the capture clock). Needs root, like the other live tests.

use std::time::Duration;

use sensor_tests::live_sensor::{LiveSensor, replay};
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
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
                // Derived from the uid.
                m.remove("fuids");
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
    let dir = Scratch::new("golden-live");
    let pcap = dir.join("in.pcap");
    let picked = ["basic", "pipelining", "rejected", "bdat"];
    let frames = interleave(
        scenarios::golden()
            .into_iter()
            .filter(|(n, _)| picked.contains(n))
            .map(|(_, f)| f),
    );
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();

    let offline_dir = dir.dir("offline");
    let opts = RunOptions {
        log_dir: offline_dir.clone(),
        format: LogFormat::Json,
        workers: 1,
        decode: DecodeOptions::default(),
    };
    run_offline(&Config::default(), &pcap, &opts).unwrap();
    let want = records(&std::fs::read_to_string(offline_dir.join("smtp.log")).unwrap());
    assert_eq!(want.len(), 6);

    let live_dir = dir.dir("live");
    let pair = VethPair::create("gl", 1);
    // Generic (SKB) mode here; the demo tests run the driver mode of veth.
    let sensor = LiveSensor::start(
        &pair,
        &live_dir,
        &["--xdp-mode", "skb", "--stats-interval", "0"],
    );
    replay(&pair, &pcap, 2000);
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = sensor.stop_with(libc::SIGINT);
    assert!(status.success(), "sensor exited with {status}");
    drop(pair);
    let got = records(&std::fs::read_to_string(live_dir.join("smtp.log")).unwrap());
    assert_eq!(got, want);
}
