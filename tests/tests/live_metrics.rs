//! The Prometheus endpoint of a live sensor, scraped while it runs on a real
//! veth pair (two rx queues, frames sharded to two workers over rings): its
//! counters must account for exactly the frames, connections and records
//! that were replayed. Needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

const PORT: u16 = 19469;

/// One scrape from inside the sensor's namespace, as `series → value`
/// (series = name with its labels, as exposed).
fn scrape(pair: &VethPair) -> BTreeMap<String, f64> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{PORT} && printf 'GET /metrics HTTP/1.0\\r\\nHost: sensor\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = pair
        .sensor_cmd("bash")
        .args(["-c", &script])
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.lines().next().unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.") && status.contains(" 200 "),
        "scrape failed: {text:?}"
    );
    text.lines()
        .filter(|l| l.starts_with("smtp_sensor_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every series of metric `name` (all label values).
fn sum(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    m.iter()
        .filter(|(s, _)| *s == name || s.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn metrics_account_for_what_was_replayed() {
    require_root();
    let dir = Scratch::new("live-metrics");
    let picked = ["basic", "pipelining", "rejected", "bdat", "ipv6"];
    let golden = scenarios::golden();
    let chosen: Vec<_> = golden
        .into_iter()
        .filter(|(n, _)| picked.contains(n))
        .collect();
    let connections = chosen.len() as u64;
    let frames = interleave(chosen.into_iter().map(|(_, f)| f));
    let pcap = dir.path().join("in.pcap");
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let n_frames = frames.len() as u64;

    // What the offline pipeline makes of the same capture.
    let offline = dir.path().join("offline");
    std::fs::create_dir_all(&offline).unwrap();
    let opts = RunOptions {
        log_dir: offline.clone(),
        format: LogFormat::Json,
        workers: 1,
        decode: DecodeOptions::default(),
    };
    let want = run_offline(&Config::default(), &pcap, &opts).unwrap();
    assert!(want.records > 0);

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pair = VethPair::create("met", 2);
    let addr = format!("127.0.0.1:{PORT}");
    let mut sensor = LiveSensor::start(
        &pair,
        &logs,
        &["--metrics-addr", &addr, "--stats-interval", "1"],
    );
    replay(&pair, &pcap, 2000);

    // Workers publish once a second and the control loop reads the XDP
    // counters every 100 ms: scrape until everything is in, or give up.
    let checks = |m: &BTreeMap<String, f64>| -> Vec<String> {
        let mut bad = Vec::new();
        let mut expect = |what: &str, got: u64, want: u64| {
            if got != want {
                bad.push(format!("{what}: {got}, expected {want}"));
            }
        };
        expect("rx frames", sum(m, "smtp_sensor_rx_frames_total"), n_frames);
        expect(
            "xdp redirected",
            sum(m, "smtp_sensor_xdp_redirected_total"),
            n_frames,
        );
        expect("ring hops", sum(m, "smtp_sensor_ring_hops_total"), n_frames);
        expect(
            "worker segments",
            sum(m, "smtp_sensor_worker_packets_total"),
            n_frames,
        );
        expect(
            "flows created",
            sum(m, "smtp_sensor_flows_created_total"),
            connections,
        );
        expect(
            "records written",
            sum(m, "smtp_sensor_records_written_total"),
            want.records,
        );
        expect(
            "worker records",
            sum(m, "smtp_sensor_worker_records_total"),
            want.records,
        );
        for drops in [
            "smtp_sensor_ring_full_drops_total",
            "smtp_sensor_socket_rx_dropped_total",
            "smtp_sensor_socket_rx_ring_full_total",
            "smtp_sensor_records_dropped_total",
        ] {
            expect(drops, sum(m, drops), 0);
        }
        bad
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (metrics, bad) = loop {
        let m = scrape(&pair);
        let bad = checks(&m);
        if bad.is_empty() || Instant::now() > deadline {
            break (m, bad);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(bad.is_empty(), "{bad:?}\nmetrics: {metrics:#?}");
    // Both queues' and both workers' counters are exposed.
    assert!(metrics.contains_key("smtp_sensor_rx_frames_total{queue=\"1\"}"));
    assert!(
        metrics
            .keys()
            .any(|k| k.starts_with("smtp_sensor_live_flows{worker=\"1\"}"))
    );

    // The periodic stats line (every second here) counts every frame the
    // XDP program redirected, and no loss.
    let line = sensor.wait_for(
        &format!(" xdp_redirected={n_frames} "),
        Duration::from_secs(30),
    );
    assert!(line.contains("stats: iface="), "{line}");
    assert!(line.contains(" drops=0 "), "{line}");
    let (status, _) = sensor.stop();
    assert!(status.success(), "sensor exited with {status}");
}
