//! The offline pipeline, in process, over generated frames: what the
//! golden and property tests run.

use smtp_sensor::config::Config;
use smtp_sensor::decode::DecodeOptions;
use smtp_sensor::net::Ts;
use smtp_sensor::output::LogFormat;
use smtp_sensor::pipeline::{RunOptions, RunSummary, run_offline};

use crate::scratch::Scratch;
use crate::synth::pcap::write_pcap;

/// Writes `frames` as a pcap into a scratch directory (`tag` names it) and
/// runs the pipeline on it with default settings, JSON logs and `workers`
/// workers; asserts every frame was read. The logs are in the directory
/// returned (removed when it drops).
pub fn run_frames(tag: &str, frames: &[(Ts, Vec<u8>)], workers: usize) -> (Scratch, RunSummary) {
    run_frames_with(&Config::default(), tag, frames, workers)
}

/// As [`run_frames`], with the configuration `cfg`.
pub fn run_frames_with(
    cfg: &Config,
    tag: &str,
    frames: &[(Ts, Vec<u8>)],
    workers: usize,
) -> (Scratch, RunSummary) {
    let dir = Scratch::new(tag);
    let pcap = dir.join("in.pcap");
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let opts = RunOptions {
        log_dir: dir.path().to_path_buf(),
        format: LogFormat::Json,
        workers,
        decode: DecodeOptions::default(),
    };
    let summary = run_offline(cfg, &pcap, &opts).unwrap();
    assert_eq!(summary.packets.packets, frames.len() as u64);
    (dir, summary)
}
