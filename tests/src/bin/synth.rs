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
//! - `synth golden <dir>`: one pcap per golden scenario.

use std::path::Path;
use std::process::ExitCode;

use sensor_tests::synth::pcap::{PcapWriter, write_pcap};
use sensor_tests::synth::smtp::SmtpConversation;
use sensor_tests::synth::{demo, scenarios};

fn usage() -> ExitCode {
    eprintln!(
        "usage: synth demo <out.pcap> | synth load|bulk <out.pcap> [--connections N] [--seed S] | synth golden <dir>"
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
                for (name, frames) in scenarios::golden() {
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
