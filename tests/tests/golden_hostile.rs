//! Hostile input: garbage frames, random TCP segments on port 25 with
//! SMTP-ish junk, random flags and sequence numbers, tiny limits; and the
//! golden and Zeek-corpus captures mutated (bit flips, cuts, random bytes in
//! SMTP payloads, shuffled, duplicated and lost segments, time jumps,
//! damaged pcap files) through the library and the binary. The run must
//! finish, count what it saw, and stay within its limits — never panic.

use sensor_tests::scratch::Scratch;
use std::path::{Path, PathBuf};

use sensor_common::parse::locate_l4_from_ethernet;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::frame::TcpFrame;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::scenarios;
use smtp_sensor::capture::pcap::PcapReader;
use smtp_sensor::config::Config;
use smtp_sensor::decode::{DecodeOptions, LinkType};
use smtp_sensor::net::Ts;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunError, RunOptions, run_offline};

use sensor_tests::synth::rng::Rng;

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
            out.push((Ts(ts), (0..len).map(|_| r.next_u64() as u8).collect()));
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
                r.next_u64() as u32
            } else {
                1000 + r.below(4000) as u32
            },
            ack: r.next_u64() as u32,
            flags: r.next_u64() as u8 & 0x1f,
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
    // 24 connections (4 clients × 6 ports) over at most 3 workers, whose
    // owners a random per-run key picks: at 3 flows per worker the table
    // overflows whatever the split.
    let cfg = Config::load(
        None,
        &[
            "max_flows_per_worker=3".to_owned(),
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

// ---------------------------------------------------------------------------
// Mutated captures: the golden scenarios and the Zeek corpus captures, bent
// in every way a broken capture or a hostile peer can bend them, through the
// full offline pipeline. Deterministic (seeded PRNG), a few seconds in debug.
// ---------------------------------------------------------------------------

type Frames = Vec<(Ts, Vec<u8>)>;

/// Ethernet frames of every corpus capture (none when `../shared` is not
/// there: the golden scenarios alone still exercise every mutation).
fn corpus_frames() -> Vec<Frames> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/zeek");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut pcaps: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    pcaps.sort();
    for p in pcaps {
        let mut frames = Vec::new();
        let mut r = PcapReader::open(&p).unwrap();
        r.for_each(|f| {
            if f.link == Some(LinkType::Ethernet) {
                frames.push((f.ts, f.data.to_vec()));
            }
        })
        .unwrap();
        assert!(!frames.is_empty(), "{}: no Ethernet frames", p.display());
        out.push(frames);
    }
    out
}

/// Every golden scenario, then every corpus capture.
fn originals() -> Vec<Frames> {
    let mut v: Vec<Frames> = scenarios::golden().into_iter().map(|(_, f)| f).collect();
    v.extend(corpus_frames());
    v
}

/// Where the TCP payload of an Ethernet frame starts, if it has one.
fn payload_offset(f: &[u8]) -> Option<usize> {
    let loc = locate_l4_from_ethernet(f).ok()?;
    let doff = usize::from(*f.get(loc.l4_offset + 12)? >> 4) * 4;
    let start = loc.l4_offset + doff;
    (start < f.len()).then_some(start)
}

/// Applies `rounds` random mutations to `frames`, in place.
fn mutate(r: &mut Rng, frames: &mut Frames, rounds: usize) {
    for _ in 0..rounds {
        if frames.is_empty() {
            return;
        }
        let n = frames.len() as u64;
        let i = r.below(n) as usize;
        match r.below(11) {
            // Bit flips anywhere in a frame (headers included).
            0 => {
                let f = &mut frames[i].1;
                for _ in 0..=r.below(4) {
                    if !f.is_empty() {
                        let at = r.below(f.len() as u64) as usize;
                        f[at] ^= 1 << r.below(8);
                    }
                }
            }
            // Truncation at a random length.
            1 => {
                let f = &mut frames[i].1;
                let keep = r.below(f.len() as u64 + 1) as usize;
                f.truncate(keep);
            }
            // Random bytes appended (or a frame replaced by random bytes).
            2 => {
                let extra = r.below(200) as usize;
                let junk: Vec<u8> = (0..extra).map(|_| r.next_u64() as u8).collect();
                if r.below(4) == 0 {
                    frames[i].1 = junk;
                } else {
                    frames[i].1.extend_from_slice(&junk);
                }
            }
            // Random bytes over the SMTP payload: headers stay valid, so
            // the garbage reaches reassembly and the SMTP parser.
            3 | 4 => {
                let f = &mut frames[i].1;
                if let Some(start) = payload_offset(f) {
                    let len = f.len() - start;
                    for _ in 0..=r.below(8) {
                        let at = start + r.below(len as u64) as usize;
                        f[at] = match r.below(4) {
                            0 => b'\r',
                            1 => b'\n',
                            2 => b'.',
                            _ => r.next_u64() as u8,
                        };
                    }
                }
            }
            // Two segments swapped (timestamps stay in place).
            5 => {
                let j = r.below(n) as usize;
                let (a, b) = (frames[i].1.clone(), frames[j].1.clone());
                frames[i].1 = b;
                frames[j].1 = a;
            }
            // A window of segments shuffled.
            6 => {
                let w = (r.below(8) as usize + 2).min(frames.len() - i);
                for k in (1..w).rev() {
                    let j = r.below(k as u64 + 1) as usize;
                    let (a, b) = (frames[i + k].1.clone(), frames[i + j].1.clone());
                    frames[i + k].1 = b;
                    frames[i + j].1 = a;
                }
            }
            // A segment duplicated (later, or right away).
            7 => {
                let dup = frames[i].clone();
                let at = (i + r.below(20) as usize).min(frames.len());
                frames.insert(at, dup);
            }
            // A segment lost.
            8 => {
                frames.remove(i);
            }
            // Time jumps: backwards, far forwards, to zero.
            9 => {
                let t = &mut frames[i].0;
                *t = match r.below(4) {
                    0 => Ts(0),
                    1 => Ts(t.0.saturating_sub(r.below(10_000_000_000))),
                    2 => Ts(t.0.saturating_add(r.below(100_000_000_000))),
                    _ => Ts(u64::from(u32::MAX) * 1_000_000),
                };
            }
            // A payload byte range spliced into another segment.
            _ => {
                let j = r.below(n) as usize;
                if let (Some(si), Some(sj)) =
                    (payload_offset(&frames[i].1), payload_offset(&frames[j].1))
                {
                    let src = frames[j].1[sj..].to_vec();
                    let dst = &mut frames[i].1;
                    let len = (dst.len() - si).min(src.len());
                    dst[si..si + len].copy_from_slice(&src[..len]);
                }
            }
        }
    }
}

/// Tiny limits reach every truncation and eviction path; the defaults run
/// the code as deployed.
fn configs() -> Vec<Config> {
    vec![
        Config::default(),
        Config::load(
            None,
            &[
                "max_flows_per_worker=4".to_owned(),
                "max_ooo_bytes_per_flow=300".to_owned(),
                "max_line_len=40".to_owned(),
                "max_header_len=64".to_owned(),
                "max_headers=4".to_owned(),
                "max_hosts_per_period=3".to_owned(),
                "max_rcpt_bytes_per_period=50".to_owned(),
                "conn_idle_timeout=1s".to_owned(),
                "inspect_period=2s".to_owned(),
                "spam_threshold=1".to_owned(),
                "spam_percent=0".to_owned(),
                "local_nets=198.18.0.0/15".to_owned(),
                "mail_path_capture=all".to_owned(),
            ],
        )
        .unwrap(),
    ]
}

/// Panics seen in any thread of this test process. The pipeline survives a
/// worker thread's panic (its flows are lost, the run goes on), so the
/// result of `run_offline` alone would not show one; a panic hook does.
static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Runs the pipeline; on a panic in any of its threads, keeps the capture
/// and names it.
fn run_kept(
    cfg: &Config,
    pcap: &Path,
    dir: &Path,
    workers: usize,
    what: &str,
) -> Result<smtp_sensor::pipeline::RunSummary, RunError> {
    let opts = RunOptions {
        log_dir: dir.to_path_buf(),
        format: LogFormat::Json,
        workers,
        decode: DecodeOptions::default(),
    };
    count_panics();
    let before = PANICS.load(std::sync::atomic::Ordering::SeqCst);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_offline(cfg, pcap, &opts)
    })) {
        Ok(r) => {
            if PANICS.load(std::sync::atomic::Ordering::SeqCst) != before {
                let kept = std::env::temp_dir().join(format!("panicking-{what}.pcap"));
                let _ = std::fs::copy(pcap, &kept);
                panic!(
                    "{what}: a pipeline thread panicked; capture kept at {}",
                    kept.display()
                );
            }
            if let Err(RunError::Thread(e)) = &r {
                let kept = std::env::temp_dir().join(format!("panicking-{what}.pcap"));
                let _ = std::fs::copy(pcap, &kept);
                panic!(
                    "{what}: a pipeline thread failed ({e}); capture kept at {}",
                    kept.display()
                );
            }
            r
        }
        Err(p) => {
            let kept = std::env::temp_dir().join(format!("panicking-{what}.pcap"));
            let _ = std::fs::copy(pcap, &kept);
            eprintln!(
                "{what}: the pipeline panicked; capture kept at {}",
                kept.display()
            );
            std::panic::resume_unwind(p)
        }
    }
}

/// Both logs hold one JSON object per line.
fn logs_are_json(dir: &Path, what: &str) {
    for name in ["smtp.log", "notice.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        for l in text.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()),
                "{what}: {name}: not a JSON object: {l:?}"
            );
        }
    }
}

/// Mutated captures per frame-level test run (each holds every original).
const ROUNDS: u64 = 12;

/// Frame-level mutations: every frame still reaches the pipeline, which
/// must read them all, write well-formed logs and count the damage.
#[test]
fn mutated_golden_and_corpus_captures_never_panic() {
    let scratch = Scratch::new("hostile-frames");
    let originals = originals();
    let configs = configs();
    let mut r = Rng(0x5eed_0f5e);
    let mut runs = 0;
    for round in 0..ROUNDS {
        // One capture per round: every original, mutated, back to back in
        // time so connections of different originals do not collide.
        let mut capture: Frames = Vec::new();
        for (k, orig) in originals.iter().enumerate() {
            let mut f = orig.clone();
            let intensity = 1 + r.below(f.len() as u64 / 2 + 1) as usize;
            mutate(&mut r, &mut f, intensity);
            let shift = (round * 100 + k as u64) * 10_000_000;
            capture.extend(f.into_iter().map(|(t, d)| (Ts(t.0.wrapping_add(shift)), d)));
        }
        // Pcap records cannot exceed the snaplen.
        capture.retain(|(_, f)| f.len() <= 65_535);
        let pcap = scratch.join("in.pcap");
        write_pcap(&pcap, capture.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        for (c, cfg) in configs.iter().enumerate() {
            for workers in [1, 3] {
                let what = format!("round{round}-cfg{c}-w{workers}");
                let s = run_kept(cfg, &pcap, scratch.path(), workers, &what)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(s.packets.packets, capture.len() as u64, "{what}");
                assert!(s.anomalies.total() > 0, "{what}: damage must be counted");
                logs_are_json(scratch.path(), &what);
                runs += 1;
            }
        }
    }
    assert_eq!(runs, ROUNDS * 2 * 2);
}

/// File-level mutations: bit flips in the pcap file itself (file header
/// and record headers included), cuts at any byte, random bytes spliced
/// in. The run either reads to the end or stops with a one-line error
/// naming the file; never a panic.
/// A clean pcap file of every other original, as bytes.
fn clean_files(scratch: &Scratch) -> Vec<Vec<u8>> {
    let mut clean = Vec::new();
    for (k, orig) in originals().iter().enumerate().step_by(2) {
        let p = scratch.join(format!("clean{k}.pcap"));
        write_pcap(&p, orig.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        clean.push(std::fs::read(&p).unwrap());
    }
    clean
}

/// Damages a pcap file: `kind` 0 flips bits anywhere (often in the file
/// header), 1 cuts it at any byte, 2 splices random bytes in, 3 writes
/// extreme values over record-header-sized words (lengths, timestamps).
fn damage_file(r: &mut Rng, bytes: &mut Vec<u8>, kind: usize) {
    match kind {
        0 => {
            for _ in 0..=r.below(20) {
                let at = r.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << r.below(8);
            }
            // Half the time the file header too (magic, version, link type).
            if r.below(2) == 0 {
                bytes[r.below(24) as usize] ^= 1 << r.below(8);
            }
        }
        1 => {
            let at = r.below(bytes.len() as u64) as usize;
            bytes.truncate(at);
        }
        2 => {
            let at = r.below(bytes.len() as u64) as usize;
            let junk: Vec<u8> = (0..r.below(100)).map(|_| r.next_u64() as u8).collect();
            bytes.splice(at..at, junk);
        }
        _ => {
            // The file header is 24 bytes, record headers 16.
            for _ in 0..=r.below(4) {
                let at = 24 + r.below(bytes.len() as u64 - 24) as usize;
                let v = [0u32, 1, 65_535, 65_536, u32::MAX][r.below(5) as usize];
                let end = (at + 4).min(bytes.len());
                bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
        }
    }
}

/// File-level mutations: bit flips in the pcap file itself (file header
/// and record headers included), cuts at any byte, random bytes spliced
/// in. The run either reads to the end or stops with a one-line error
/// naming the file; never a panic.
#[test]
fn mutated_capture_files_end_cleanly_or_with_an_error() {
    let scratch = Scratch::new("hostile-files");
    let cfg = Config::default();
    let clean = clean_files(&scratch);
    let mut r = Rng(0xf11e_5eed);
    let (mut ok, mut err) = (0, 0);
    const FILES: usize = 80;
    for round in 0..FILES {
        let mut bytes = clean[round % clean.len()].clone();
        damage_file(&mut r, &mut bytes, round % 4);
        let pcap = scratch.join("in.pcap");
        std::fs::write(&pcap, &bytes).unwrap();
        let what = format!("file-round{round}");
        match run_kept(&cfg, &pcap, scratch.path(), 1 + round % 2, &what) {
            Ok(_) => {
                ok += 1;
                logs_are_json(scratch.path(), &what);
            }
            Err(e) => {
                err += 1;
                let msg = e.to_string();
                assert!(
                    matches!(e, RunError::Capture(_)),
                    "{what}: only the capture can be at fault: {msg}"
                );
                assert!(
                    !msg.contains('\n') && msg.contains("in.pcap"),
                    "{what}: {msg}"
                );
            }
        }
    }
    assert!(
        ok > FILES / 2,
        "most damage leaves a readable capture: {ok} ok, {err} errors"
    );
    assert!(err > 0, "some damage must make the capture unreadable");
}

/// The same through the real binary, whose exit code is the contract:
/// 0 (input read to its end) or 2 with one stderr line naming the file;
/// never 101 (a Rust panic) or a signal.
#[test]
fn binary_exits_0_or_2_on_mutated_captures() {
    let scratch = Scratch::new("hostile-binary");
    let clean = clean_files(&scratch);
    let mut r = Rng(0x0b1a_5eed);
    let (mut zero, mut two) = (0, 0);
    for round in 0..24usize {
        let mut bytes = clean[round % clean.len()].clone();
        damage_file(&mut r, &mut bytes, round % 4);
        if round % 8 == 7 {
            // A file that is not a capture at all (broken magic).
            bytes[0] ^= 0xff;
        }
        let pcap = scratch.join(format!("bin{round}.pcap"));
        std::fs::write(&pcap, &bytes).unwrap();
        let logs = scratch.join(format!("logs{round}"));
        std::fs::create_dir_all(&logs).unwrap();
        let mut cmd = std::process::Command::new(sensor_bin());
        cmd.arg("-r").arg(&pcap).arg("-l").arg(&logs);
        if round % 3 == 1 {
            cmd.args(["--workers", "3"]);
        }
        if round % 3 == 2 {
            cmd.args(["--log-format", "zeek"]);
        }
        let o = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "round {round}: {err}");
        match o.status.code() {
            Some(0) => zero += 1,
            Some(2) => {
                two += 1;
                assert_eq!(err.lines().count(), 1, "round {round}: {err}");
                assert!(err.contains(&format!("bin{round}.pcap")), "{err}");
            }
            other => panic!("round {round}: exit {other:?}: {err}"),
        }
    }
    assert!(zero > 0 && two > 0, "{zero} clean exits, {two} errors");
}
