//! `synth`: writes synthetic SMTP captures.
//!
//! - `synth demo <out.pcap>`: the demo capture (ordinary mail, a spamming
//!   host, a block-listed host; see `synth::demo`).
//! - `synth load <out.pcap> [--connections N] [--seed S]`: N interleaved
//!   connections (delivered mail, rejects, block-list replies), streamed to
//!   disk so large captures need little memory.
//! - `synth bulk <out.pcap> [--connections N] [--seed S]`: N connections
//!   with one or two large messages each (mostly full-size frames; by
//!   default a pass of about 265 MB), streamed the same way.
//! - `synth synflood <out.pcap> [--connections N]`: N spoofed SYNs to port
//!   25 from distinct clients, nothing else (half-open flows: what the
//!   flow table's memory per silent flow is measured with).
//! - `synth attack <name> <out.pcap> [--scale small|full] [--clean]`: an
//!   attack capture of the soak (`synth::attacks`: synflood, idle,
//!   endless-data, long-lines, rcpt-flood, dup-address, host-flood, inject,
//!   random, mime-bomb, colliding-keys) interleaved with ordinary sessions;
//!   `--clean` writes the ordinary sessions alone. Prints `frames=N
//!   bytes=B ordinary=O ordinary_net=P sets=…` (P: the prefix of the
//!   ordinary sessions' client addresses). `synth attack --list` prints the names,
//!   one a line.
//! - `synth golden <dir>`: one pcap per golden and evasion scenario.

use std::path::Path;
use std::process::ExitCode;

use sensor_tests::synth::pcap::{PcapWriter, write_pcap};
use sensor_tests::synth::smtp::SmtpConversation;
use sensor_tests::synth::{attacks, demo, scenarios};

fn usage() -> ExitCode {
    eprintln!(
        "usage: synth demo <out.pcap> | synth load|bulk <out.pcap> [--connections N] [--seed S] | synth synflood <out.pcap> [--connections N] | synth attack <name> <out.pcap> [--scale small|full] [--clean] | synth attack --list | synth golden <dir>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => match args.get(1) {
            Some(out) => {
                let frames = demo::capture();
                write_pcap(out, frames.iter().map(|(t, f)| (*t, f.as_slice())))
                    .map(|n| eprintln!("synth: wrote {n} frames to {out}"))
            }
            None => return usage(),
        },
        Some("golden") => match args.get(1) {
            Some(dir) => {
                let mut res = Ok(());
                for (name, frames) in scenarios::golden().into_iter().chain(scenarios::evasion()) {
                    let path = Path::new(dir).join(format!("{name}.pcap"));
                    if let Err(e) =
                        write_pcap(&path, frames.iter().map(|(t, f)| (*t, f.as_slice())))
                    {
                        res = Err(e);
                        break;
                    }
                }
                res
            }
            None => return usage(),
        },
        Some(kind @ ("load" | "bulk")) => {
            let Some(out) = args.get(1) else {
                return usage();
            };
            let (mut connections, conversation): (usize, Conversation) = if kind == "load" {
                (10_000, scenarios::load_conversation)
            } else {
                (scenarios::BULK_CONNECTIONS, scenarios::bulk_conversation)
            };
            let mut seed = 1u64;
            let mut it = args.iter().skip(2);
            while let Some(a) = it.next() {
                let v = it.next().and_then(|v| v.parse::<u64>().ok());
                match (a.as_str(), v) {
                    ("--connections", Some(v)) => connections = v as usize,
                    ("--seed", Some(v)) => seed = v,
                    _ => return usage(),
                }
            }
            stream(out, connections, seed, conversation)
        }
        Some("attack") if args.get(1).map(String::as_str) == Some("--list") => {
            // One name a line: what `cargo xtask soak` runs.
            for a in attacks::Attack::ALL {
                println!("{}", a.name());
            }
            Ok(())
        }
        Some("attack") => {
            let (Some(attack), Some(out)) = (
                args.get(1).and_then(|a| attacks::Attack::from_name(a)),
                args.get(2),
            ) else {
                return usage();
            };
            let (mut scale, mut clean) = (attacks::Scale::Full, false);
            let mut it = args.iter().skip(3);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--clean" => clean = true,
                    "--scale" => match it.next().and_then(|s| attacks::Scale::from_name(s)) {
                        Some(s) => scale = s,
                        None => return usage(),
                    },
                    _ => return usage(),
                }
            }
            // `sets=`: the sensor's `--set`s to run the capture with, comma
            // separated (what `cargo xtask soak` passes on).
            attacks::write(Path::new(out), attack, scale, clean).map(|w| {
                println!(
                    "frames={} bytes={} ordinary={} ordinary_net={} sets={}",
                    w.frames,
                    w.bytes,
                    w.ordinary,
                    attacks::ORDINARY_NET,
                    attack.sets(scale).join(",")
                )
            })
        }
        Some("synflood") => {
            let Some(out) = args.get(1) else {
                return usage();
            };
            let connections = match (args.get(2).map(String::as_str), args.get(3)) {
                (None, _) => 500_000,
                (Some("--connections"), Some(n)) => match n.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => return usage(),
                },
                _ => return usage(),
            };
            syn_flood(out, connections)
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth: {e}");
            ExitCode::from(1)
        }
    }
}

/// Connection `i` of a streamed capture, from its index, seed and start
/// time.
type Conversation = fn(usize, u64, u64) -> SmtpConversation;

/// Streams a capture of `connections` conversations in blocks of 64
/// overlapping ones: memory stays at one block, whatever the size.
fn stream(
    out: &str,
    connections: usize,
    seed: u64,
    conversation: Conversation,
) -> Result<(), sensor_tests::synth::pcap::PcapWriteError> {
    let mut w = PcapWriter::create(out)?;
    let mut bytes = 0u64;
    for start in (0..connections).step_by(64) {
        let end = (start + 64).min(connections);
        let convs = (start..end).map(|i| conversation(i, seed, 1_700_000_000).frames());
        for (ts, f) in sensor_tests::synth::session::interleave(convs) {
            bytes += f.len() as u64;
            w.write(ts, &f)?;
        }
    }
    let n = w.finish()?;
    eprintln!("synth: wrote {n} frames ({bytes} bytes) of {connections} connections to {out}");
    Ok(())
}

/// `connections` SYNs from distinct clients in 198.18.0.0/15 to one
/// server, 2 µs apart.
fn syn_flood(
    out: &str,
    connections: usize,
) -> Result<(), sensor_tests::synth::pcap::PcapWriteError> {
    use sensor_tests::synth::frame::{TcpFrame, tcp_flags};
    use smtp_sensor::net::Ts;
    use std::net::SocketAddr;
    let mut w = PcapWriter::create(out)?;
    let server = SocketAddr::from(([198, 19, 0, 25], 25));
    for i in 0..connections {
        let host = (i / 60_000) as u32;
        let client = SocketAddr::from((
            [198, 18, (host >> 8) as u8, host as u8],
            1024 + (i % 60_000) as u16,
        ));
        let mut f = TcpFrame::new(client, server);
        f.flags = tcp_flags::SYN;
        f.seq = (i as u32).wrapping_mul(0x9e37_79b9);
        w.write(Ts(1_700_000_000_000_000 + 2 * i as u64), &f.build())?;
    }
    let n = w.finish()?;
    eprintln!("synth: wrote {n} SYNs to {out}");
    Ok(())
}
