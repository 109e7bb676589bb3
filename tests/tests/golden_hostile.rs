//! Hostile input: garbage frames, random TCP segments on port 25 with
//! SMTP-ish junk, random flags and sequence numbers, tiny limits. The run
//! must finish, count what it saw, and stay within its limits — never panic.

use sensor_tests::synth::frame::TcpFrame;
use sensor_tests::synth::pcap::write_pcap;
use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::net::Ts;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, run_offline};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TOKENS: &[&[u8]] = &[
    b"MAIL FROM:<a@b>\r\n",
    b"RCPT TO:<x@y>\r\n",
    b"DATA\r\n",
    b".\r\n",
    b"BDAT 18446744073709551615 LAST\r\n",
    b"BDAT 5\r\n",
    b"250 ok\r\n",
    b"354 go\r\n",
    b"550 5.7.1 spamhaus.org/ 198.18.0.1\r\n",
    b"250-",
    b"Received: from x ([198.18.0.1])\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"--b\r\n",
    b"\r\n",
    b"\x00\xff\xfe",
    b"STARTTLS\r\n",
    b"220 go\r\n",
    b"EHLO x\r\n",
];

fn frames(seed: u64, n: usize) -> Vec<(Ts, Vec<u8>)> {
    let mut r = Rng(seed | 1);
    let mut out = Vec::with_capacity(n);
    let mut ts = 1_700_000_000_000_000u64;
    for _ in 0..n {
        ts += r.below(50_000);
        if r.below(10) == 0 {
            // Raw garbage, any length.
            let len = r.below(120) as usize;
            out.push((Ts(ts), (0..len).map(|_| r.next() as u8).collect()));
            continue;
        }
        let client = format!("198.18.0.{}:{}", r.below(4) + 1, 40000 + r.below(6));
        let server = "198.19.0.25:25";
        let (src, dst) = if r.below(2) == 0 {
            (client.as_str(), server)
        } else {
            (server, client.as_str())
        };
        let mut payload = Vec::new();
        for _ in 0..r.below(6) {
            let t = TOKENS[r.below(TOKENS.len() as u64) as usize];
            payload.extend_from_slice(t);
        }
        if r.below(8) == 0 {
            payload.extend(std::iter::repeat_n(b'A', r.below(3000) as usize));
        }
        let mut f = TcpFrame {
            seq: if r.below(3) == 0 {
                r.next() as u32
            } else {
                1000 + r.below(4000) as u32
            },
            ack: r.next() as u32,
            flags: r.next() as u8 & 0x1f,
            payload: &payload,
            ..TcpFrame::new(src.parse().unwrap(), dst.parse().unwrap())
        }
        .build();
        if r.below(6) == 0 {
            let cut = r.below(f.len() as u64) as usize;
            f.truncate(cut);
        }
        out.push((Ts(ts), f));
    }
    out
}

#[test]
fn random_traffic_never_breaks_the_pipeline() {
    let dir = std::env::temp_dir().join(format!("hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::load(
        None,
        &[
            "max_flows_per_worker=8".to_owned(),
            "max_ooo_bytes_per_flow=512".to_owned(),
            "max_line_len=64".to_owned(),
            "conn_idle_timeout=2s".to_owned(),
        ],
    )
    .unwrap();
    for seed in [1u64, 2, 3] {
        let fr = frames(seed, 4000);
        let pcap = dir.join("hostile.pcap");
        write_pcap(&pcap, fr.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        for workers in [1, 3] {
            let opts = RunOptions {
                log_dir: dir.clone(),
                format: LogFormat::Json,
                workers,
                decode: DecodeOptions::default(),
            };
            let s = run_offline(&cfg, &pcap, &opts).unwrap();
            assert_eq!(s.packets.packets, fr.len() as u64);
            assert!(s.anomalies.total() > 0, "garbage must be counted");
            assert!(
                s.anomalies.get("flow_table_full_evicted") > 0,
                "{:?}",
                s.anomalies
            );
            // Every smtp.log line is valid JSON.
            let log = std::fs::read_to_string(dir.join("smtp.log")).unwrap();
            for l in log.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
