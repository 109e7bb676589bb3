//! Live capture end to end: the real XDP program on a veth pair in fresh
//! network namespaces, traffic generated here and replayed with tcpreplay.
//!
//! Needs root, tcpreplay and iproute2 (`cargo xtask setup`), and a sensor
//! binary with the XDP program embedded; every missing piece fails the test
//! with a message saying what to do.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sensor_common::parse::IPPROTO_TCP;
use sensor_tests::live_sensor::LiveSensor;
use sensor_tests::netns::{VethPair, require_root};
use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::frame::{
    Envelope, IpPacket, Ipv4Fragment, Ipv6Ext, TcpFrame, UdpFrame, tcp_flags,
};
use sensor_tests::synth::pcap::PcapWriter;
use smtp_sensor::net::Ts;

const SMTP_MARK: &[u8] = b"SSTMARK-SMTP";
const OTHER_MARK: &[u8] = b"SSTMARK-OTHER";
const QUEUES: u32 = 4;

/// What the generated capture holds, to compare with what arrived.
#[derive(Debug, Default)]
struct Expected {
    smtp_frames: u64,
    smtp_bytes: u64,
    /// Non-SMTP frames carrying OTHER_MARK (passed unless `--non-smtp drop`).
    other_marked: u64,
    /// Non-first fragments carrying OTHER_MARK (always passed).
    fragments_marked: u64,
    /// Frames with broken TCP headers on port 25.
    malformed: u64,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Writes the test capture: SMTP in both directions on ports 25 and 587,
/// IPv4 and IPv6, untagged / 802.1Q / QinQ, with IPv4 options and IPv6
/// extension headers; non-SMTP TCP and UDP (also UDP on port 25); non-first
/// fragments; and truncated TCP headers.
fn write_capture(path: &Path, rounds: u16) -> Expected {
    let mut w = PcapWriter::create(path).expect("create pcap");
    let mut exp = Expected::default();
    let mut ts = 1_700_000_000_000_000u64;
    let mut put = |w: &mut PcapWriter, f: &[u8]| {
        ts += 1000;
        w.write(Ts::from_micros(ts), f).expect("write pcap");
    };
    let opts = [1u8, 1, 1, 1, 1, 1, 1, 0]; // IPv4 NOPs + EOL
    let ext = [Ipv6Ext::HopByHop { len: 0 }, Ipv6Ext::DestOpts { len: 1 }];
    let vlan_sets: [&[u16]; 3] = [&[], &[100], &[200, 100]];
    for round in 0..rounds {
        let cport = 40_000 + round;
        for (c_ip, s_ip) in [
            ("198.18.0.2", "198.18.0.1"),
            ("[2001:db8::2]", "[2001:db8::1]"),
        ] {
            let v6 = c_ip.starts_with('[');
            for vlans in vlan_sets {
                for sport in [25u16, 587] {
                    let client = addr(&format!("{c_ip}:{cport}"));
                    let server = addr(&format!("{s_ip}:{sport}"));
                    for (src, dst) in [(client, server), (server, client)] {
                        let payload = [SMTP_MARK, b" 250 hello\r\n"].concat();
                        let f = TcpFrame {
                            flags: tcp_flags::ACK | tcp_flags::PSH,
                            seq: 1,
                            ack: 1,
                            payload: &payload,
                            envelope: Envelope {
                                vlans,
                                ipv4_options: if vlans.len() == 1 && !v6 { &opts } else { &[] },
                                ipv6_ext: if vlans.len() == 1 && v6 { &ext } else { &[] },
                                ..Envelope::default()
                            },
                            ..TcpFrame::new(src, dst)
                        }
                        .build();
                        exp.smtp_frames += 1;
                        exp.smtp_bytes += f.len() as u64;
                        put(&mut w, &f);
                    }
                }
                // Not SMTP: web traffic, SMTP-like port 2525, UDP on 25 and 53.
                let payload = [OTHER_MARK, b" not smtp"].concat();
                let env = Envelope {
                    vlans,
                    ..Envelope::default()
                };
                for f in [
                    TcpFrame {
                        payload: &payload,
                        envelope: env,
                        ..TcpFrame::new(
                            addr(&format!("{c_ip}:{cport}")),
                            addr(&format!("{s_ip}:80")),
                        )
                    }
                    .build(),
                    TcpFrame {
                        payload: &payload,
                        envelope: env,
                        ..TcpFrame::new(
                            addr(&format!("{s_ip}:2525")),
                            addr(&format!("{c_ip}:{cport}")),
                        )
                    }
                    .build(),
                    UdpFrame {
                        envelope: env,
                        ..UdpFrame::new(
                            addr(&format!("{c_ip}:{cport}")),
                            addr(&format!("{s_ip}:25")),
                            &payload,
                        )
                    }
                    .build(),
                    UdpFrame {
                        envelope: env,
                        ..UdpFrame::new(
                            addr(&format!("{c_ip}:53")),
                            addr(&format!("{s_ip}:53")),
                            &payload,
                        )
                    }
                    .build(),
                ] {
                    exp.other_marked += 1;
                    put(&mut w, &f);
                }
            }
            // A later fragment of a datagram to port 25: no ports, passed.
            let data = [OTHER_MARK, b" fragment tail.."].concat();
            let frag_ext = [Ipv6Ext::Fragment {
                offset: 8,
                more: false,
                id: u32::from(round),
            }];
            let f = IpPacket {
                src: addr(&format!("{c_ip}:1")).ip(),
                dst: addr(&format!("{s_ip}:1")).ip(),
                proto: IPPROTO_TCP,
                l4: &data,
                envelope: Envelope {
                    ipv4_fragment: Ipv4Fragment {
                        offset: 8,
                        more: false,
                    },
                    ipv6_ext: if v6 { &frag_ext } else { &[] },
                    ip_id: round,
                    ..Envelope::default()
                },
            }
            .build();
            exp.fragments_marked += 1;
            put(&mut w, &f);
            // A TCP header cut short (10 of 20 bytes), to port 25.
            let full = TcpFrame::new(
                addr(&format!("{c_ip}:{cport}")),
                addr(&format!("{s_ip}:25")),
            )
            .build();
            let cut = full.len() - 10;
            let mut f = full[..cut].to_vec();
            // Fix the IP length fields so only the TCP header is short.
            if v6 {
                let plen = u16::try_from(cut - 14 - 40).unwrap_or(0);
                f[18..20].copy_from_slice(&plen.to_be_bytes());
            } else {
                let tot = u16::try_from(cut - 14).unwrap_or(0);
                f[16..18].copy_from_slice(&tot.to_be_bytes());
            }
            exp.malformed += 1;
            put(&mut w, &f);
        }
    }
    w.finish().expect("flush pcap");
    exp
}

/// Starts the sensor with the stats flags this file's tests read.
fn start_sensor(pair: &VethPair, extra: &[&str], stats: &Path, logdir: &Path) -> LiveSensor {
    let stats = stats.to_str().expect("UTF-8 path");
    let args: Vec<&str> = ["--stats-json", stats, "--stats-interval", "1"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    LiveSensor::start(pair, logdir, &args)
}

fn replay(pair: &VethPair, pcap: &Path) {
    let out = pair
        .peer_cmd("tcpreplay")
        .args(["-i", &pair.peer_if, "--pps", "1000", "-q"])
        .arg(pcap)
        .output()
        .expect("run tcpreplay (install it with `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "tcpreplay failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("stats file {} not written: {e}", path.display()));
    serde_json::from_str(&text).expect("stats JSON")
}

fn num(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("stats field {} missing in {v}", path.join(".")))
}

struct Run {
    stats: serde_json::Value,
    passed_other: u64,
    passed_smtp: u64,
    log: Vec<String>,
}

/// Creates namespaces, writes the capture, runs the sensor with `extra`
/// flags, replays, stops it with SIGINT, and checks it detached.
fn live_run(tag: &str, extra: &[&str], rounds: u16) -> (Run, Expected) {
    require_root();
    let pair = VethPair::create(tag, QUEUES);
    let scratch = Scratch::new(&format!("sst-live-{tag}"));
    let dir = scratch.path();
    let pcap = dir.join("traffic.pcap");
    let exp = write_capture(&pcap, rounds);
    let stats_path = dir.join("stats.json");

    let mut sensor = start_sensor(&pair, extra, &stats_path, dir);
    assert!(
        pair.xdp_attached(),
        "no XDP program on {} while the sensor runs",
        pair.sensor_if
    );
    let other_probe = pair.stack_probe(|f| contains(f, OTHER_MARK));
    let smtp_probe = pair.stack_probe(|f| contains(f, SMTP_MARK));
    replay(&pair, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    sensor.signal(libc::SIGINT);
    let status = sensor.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "smtp-sensor exited with {status}:\n{}",
        sensor.log.join("\n")
    );
    let passed_other = other_probe.finish();
    let passed_smtp = smtp_probe.finish();
    assert!(
        !pair.xdp_attached(),
        "an XDP program is still attached to {} after the sensor exited",
        pair.sensor_if
    );
    let stats = read_stats(&stats_path);
    (
        Run {
            stats,
            passed_other,
            passed_smtp,
            log: std::mem::take(&mut sensor.log),
        },
        exp,
    )
}

#[test]
fn live_smtp_frames_reach_userspace_and_the_rest_reaches_the_kernel() {
    let (run, exp) = live_run("p", &["--ebpf-log"], 10);
    let s = &run.stats;
    eprintln!("stats: {s}");
    assert_eq!(
        num(s, &["rx_frames"]),
        exp.smtp_frames,
        "SMTP frames delivered to userspace"
    );
    assert_eq!(
        num(s, &["rx_bytes"]),
        exp.smtp_bytes,
        "bytes of SMTP frames delivered"
    );
    assert_eq!(num(s, &["xdp", "xdp_redirected"]), exp.smtp_frames);
    assert_eq!(num(s, &["xdp", "xdp_redirect_failed"]), 0);
    assert_eq!(num(s, &["xdp", "xdp_dropped"]), 0);
    assert_eq!(num(s, &["xdp", "xdp_malformed"]), exp.malformed);
    assert_eq!(num(s, &["sock_rx_dropped"]), 0);
    let seen = num(s, &["xdp", "xdp_seen"]);
    assert_eq!(
        seen,
        num(s, &["xdp", "xdp_redirected"])
            + num(s, &["xdp", "xdp_passed"])
            + num(s, &["xdp", "xdp_dropped"]),
        "every frame ends in exactly one action"
    );
    // The kernel stack got every non-SMTP frame, and no SMTP frame.
    assert_eq!(run.passed_other, exp.other_marked + exp.fragments_marked);
    assert_eq!(run.passed_smtp, 0);
    // --ebpf-log: the program's diagnostics arrive in the sensor's log.
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("malformed frame: truncated_tcp")),
        "no eBPF log line for the truncated TCP header"
    );
    let queues = s["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), QUEUES as usize, "one socket per rx queue");
}

#[test]
fn live_non_smtp_drop_mode_drops_everything_but_smtp_and_fragments() {
    let (run, exp) = live_run("d", &["--non-smtp", "drop"], 5);
    let s = &run.stats;
    eprintln!("stats: {s}");
    assert_eq!(num(s, &["rx_frames"]), exp.smtp_frames);
    assert_eq!(num(s, &["xdp", "xdp_redirected"]), exp.smtp_frames);
    // Our marked non-SMTP frames and the malformed ones are dropped (the
    // kernel's own IPv6 chatter on the link may add to the count).
    assert!(num(s, &["xdp", "xdp_dropped"]) >= exp.other_marked + exp.malformed);
    assert_eq!(
        run.passed_other, exp.fragments_marked,
        "only non-first fragments pass"
    );
    assert_eq!(run.passed_smtp, 0);
    // Without --ebpf-log the program logs nothing.
    assert!(!run.log.iter().any(|l| l.contains("malformed frame")));
}

#[test]
fn live_queue_without_socket_passes_smtp_to_the_kernel() {
    // One socket (queue 0) on a four-queue veth: SMTP frames that arrive on
    // queues 1-3 find no socket and must be passed, and counted as such.
    let (run, exp) = live_run("q", &["--queues", "1"], 10);
    let s = &run.stats;
    eprintln!("stats: {s}");
    let got = num(s, &["rx_frames"]);
    let failed = num(s, &["xdp", "xdp_redirect_failed"]);
    assert_eq!(
        got + failed,
        exp.smtp_frames,
        "every SMTP frame redirected or passed"
    );
    assert_eq!(num(s, &["xdp", "xdp_redirected"]), got);
    assert_eq!(
        run.passed_smtp, failed,
        "SMTP frames without a socket reach the kernel"
    );
    assert_eq!(s["queues"].as_array().map(Vec::len), Some(1));
}

#[test]
fn live_killed_sensor_leaves_no_xdp_program() {
    require_root();
    let pair = VethPair::create("k", 2);
    let scratch = Scratch::new("sst-live-k");
    let dir = scratch.path();
    let mut sensor = start_sensor(&pair, &[], &dir.join("stats.json"), dir);
    assert!(pair.xdp_attached());
    sensor.signal(libc::SIGKILL);
    let st = sensor.wait(Duration::from_secs(10));
    assert!(!st.success());
    // The attachment is a BPF link owned by the process: the kernel removes
    // it when the process dies, however it dies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.xdp_attached() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pair.xdp_attached(),
        "XDP program left on {} after SIGKILL",
        pair.sensor_if
    );
}

#[test]
fn live_unknown_interface_is_a_clear_error() {
    require_root();
    let out = Command::new(sensor_bin())
        .args(["-i", "sst-nonexistent0"])
        .output()
        .expect("run smtp-sensor");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sst-nonexistent0") && err.contains("ip link"),
        "{err}"
    );
}
