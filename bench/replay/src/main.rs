//! `smtp-replay <pcap> -i <iface>`: see the library's documentation.
//!
//! Run it in the network namespace of the sending veth end (`ip netns exec
//! <ns> smtp-replay …`), with the sensor (or another XDP program) attached
//! to the peer end in native mode (veth gives `XDP_TX` frames only to a
//! native program). Exit codes: 0 sent, 2 bad arguments or capture, 1 the
//! kernel refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Parser;
use sensor_common::replay::ReplayCounter;
use smtp_replay::report::Report;
use smtp_replay::run::{self, Pace, Plan, Rate, Wire};
use smtp_replay::sender::{self, CallEnd, SendError, Sender};
use smtp_replay::table::{FrameTable, Limits, Split, TableBuilder};
use smtp_sensor::capture::pcap::PcapReader;
use smtp_sensor::decode::LinkType;

/// Replays a capture into a veth at millions of frames per second.
#[derive(Debug, Parser)]
#[command(name = "smtp-replay", version)]
struct Args {
    /// The capture (pcap or pcapng, Ethernet frames between test hosts).
    pcap: PathBuf,
    /// Interface to send from (the veth end whose peer the sensor watches).
    #[arg(short = 'i', long = "iface")]
    iface: String,
    /// Frames per second, in evenly spaced bursts (--burst) paced by the
    /// program; default: top speed.
    #[arg(long, conflicts_with = "topspeed")]
    pps: Option<u64>,
    /// As fast as possible (the default).
    #[arg(long)]
    topspeed: bool,
    /// Passes over the capture (0: until --seconds or SIGINT).
    #[arg(long = "loop", value_name = "N")]
    passes: Option<u64>,
    /// Start no pass after this many seconds (passes are always whole).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Shift the addresses on every pass after the first (inside
    /// 198.18.0.0/15 and 2001:db8::/32), so each pass is new connections.
    #[arg(long = "unique-ip")]
    unique_ip: bool,
    /// Rx queues of the receiver to feed (one lane each; lane L is sent
    /// from CPU L, which veth maps to the peer's queue L).
    #[arg(long, default_value_t = 1)]
    lanes: u32,
    /// How frames are spread over lanes.
    #[arg(long, value_enum, default_value_t = Split::Flow)]
    split: Split,
    /// Replay only the first N frames of the capture.
    #[arg(long = "max-frames", value_name = "N")]
    max_frames: Option<u64>,
    /// Kernel memory for frame data at most, in MiB.
    #[arg(long = "max-mb", value_name = "MB", default_value_t = 2048)]
    max_mb: u64,
    /// Paced: frames per burst at most, as a NIC hands them to the stack per
    /// interrupt (a burst spans at most 50 µs of the rate, so low rates
    /// send smaller ones); 1 spaces every frame on its own.
    #[arg(long, value_name = "N", default_value_t = run::MAX_BURST)]
    burst: u32,
    /// Frames per kernel batch inside a call (1..=256).
    #[arg(long = "kernel-batch", value_name = "N", default_value_t = sender::KERNEL_BATCH)]
    kernel_batch: u32,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No summary on stdout.
    #[arg(short, long)]
    quiet: bool,
    /// One line per BPF_PROG_RUN call on stderr (lane, budget, runs, frames
    /// sent, duration): how the pacing went.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match replay(&args) {
        Ok(report) => {
            if !args.quiet {
                println!("{}", report.text());
            }
            if let Some(path) = &args.json {
                let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("smtp-replay: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(m)) => {
            eprintln!("smtp-replay: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Kernel(e)) => {
            eprintln!("smtp-replay: {e}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Kernel(SendError),
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Interface(_) => Failure::Usage(e.to_string()),
            e => Failure::Kernel(e),
        }
    }
}

fn replay(args: &Args) -> Result<Report, Failure> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Failure::Usage(format!("cannot install signal handlers: {e}")))?;
    }
    let seconds = match args.seconds {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(Failure::Usage(format!(
                "--seconds {s}: must be a positive number"
            )));
        }
        s => s.map(Duration::from_secs_f64),
    };
    let rate = match args.pps {
        Some(0) => return Err(Failure::Usage("--pps must be at least 1".into())),
        Some(r) => Rate::Pps(r),
        None => Rate::Top,
    };
    let passes = match (args.passes, seconds) {
        (Some(0), _) => None,
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(1),
    };
    if !(1..=4096).contains(&args.burst) {
        return Err(Failure::Usage(format!(
            "--burst {}: must be between 1 and 4096",
            args.burst
        )));
    }
    if !(1..=256).contains(&args.kernel_batch) {
        return Err(Failure::Usage(format!(
            "--kernel-batch {}: must be between 1 and 256",
            args.kernel_batch
        )));
    }
    let table = read_table(args)?;
    let mut sender = Sender::load(&table, &args.iface, args.unique_ip, args.kernel_batch)?;
    let cpus = lane_cpus(args.lanes)?;
    let load_seconds = started.elapsed().as_secs_f64();
    // Harnesses wait for this line to open their measuring window.
    eprintln!(
        "smtp-replay: {} frames in {} lanes loaded in {load_seconds:.2} s; sending",
        table.len(),
        table.lanes.len()
    );

    let lanes: Vec<u64> = table.lanes.iter().map(|&(_, n)| u64::from(n)).collect();
    let plan = Plan {
        rate,
        passes,
        seconds,
        burst: args.burst,
    };
    let mut wire = KernelWire {
        sender: &mut sender,
        cpus,
        pinned: None,
        verbose: args.verbose.then(Instant::now),
    };
    let sent = run::run(&mut wire, &lanes, &plan, &stop)?;
    let counters = sender.counters()?;
    let get = |c: ReplayCounter| counters.get(c.index() as usize).copied().unwrap_or(0);
    Ok(Report {
        iface: args.iface.clone(),
        frames_per_pass: table.len(),
        bytes_per_pass: table.bytes,
        skipped: table.skipped,
        frames: get(ReplayCounter::Sent),
        bytes: get(ReplayCounter::Bytes),
        lane_frames: sender.lane_sent()?,
        failed: get(ReplayCounter::Failed) + get(ReplayCounter::NoLane),
        idle_runs: get(ReplayCounter::Idle),
        seconds: sent.elapsed.as_secs_f64(),
        calls: sent.calls,
        load_seconds,
        interrupted: sent.interrupted,
        ..Report::default()
    }
    .with_rates())
}

/// Reads the capture into a frame table sized for the interface's MTU.
fn read_table(args: &Args) -> Result<FrameTable, Failure> {
    let usage = |e: &dyn std::fmt::Display| Failure::Usage(e.to_string());
    let limits = Limits {
        max_frame: max_frame(&args.iface)?,
        max_bytes: args.max_mb.saturating_mul(1 << 20),
        max_frames: args.max_frames,
    };
    let mut builder = TableBuilder::new(args.lanes, args.split, limits).map_err(|e| usage(&e))?;
    let mut reader = PcapReader::open(&args.pcap).map_err(|e| usage(&e))?;
    let mut error = None;
    reader
        .for_each(|f| {
            if error.is_none() && !builder.full() {
                let ethernet = f.link == Some(LinkType::Ethernet);
                if let Err(e) = builder.push(f.data, ethernet) {
                    error = Some(e);
                }
            }
        })
        .map_err(|e| usage(&e))?;
    if let Some(e) = error {
        return Err(usage(&e));
    }
    builder.finish().map_err(|e| usage(&e))
}

/// The longest frame the interface's peer takes: its MTU (veth pairs have
/// one MTU) plus the Ethernet header and one VLAN tag.
fn max_frame(iface: &str) -> Result<u32, Failure> {
    let path = format!("/sys/class/net/{iface}/mtu");
    let mtu = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "no interface {iface} in this network namespace ({path})"
            ))
        })?;
    Ok(mtu + 14 + 4)
}

/// CPU of each lane: lane L on CPU L (veth hands a frame sent from CPU c to
/// the peer's rx queue c mod queues). One lane needs no pinning.
fn lane_cpus(lanes: u32) -> Result<Option<Vec<usize>>, Failure> {
    if lanes <= 1 {
        return Ok(None);
    }
    let n = std::thread::available_parallelism().map_or(1, usize::from);
    if lanes as usize > n {
        return Err(Failure::Usage(format!(
            "--lanes {lanes} needs {lanes} CPUs (lane L is sent from CPU L); this machine has {n}"
        )));
    }
    Ok(Some((0..lanes as usize).collect()))
}

/// The kernel as the run's wire: pins to the lane's CPU, then sends.
struct KernelWire<'a> {
    sender: &'a mut Sender,
    cpus: Option<Vec<usize>>,
    pinned: Option<usize>,
    /// `--verbose`: when the run started.
    verbose: Option<Instant>,
}

impl Wire for KernelWire<'_> {
    fn pace(&mut self, lane: usize, pace: Pace) -> Result<(), SendError> {
        self.sender
            .pace(lane as u32, pace.interval_ns, pace.burst, pace.max_lag_ns)
    }

    fn send(&mut self, lane: usize, budget: u64, runs: u32) -> Result<(CallEnd, u64), SendError> {
        if let Some(cpu) = self.cpus.as_ref().and_then(|c| c.get(lane)).copied()
            && self.pinned != Some(cpu)
        {
            sender::pin_to(cpu)?;
            self.pinned = Some(cpu);
        }
        let t = Instant::now();
        let result = self.sender.send(lane as u32, budget, runs);
        if let (Some(start), Ok((_, sent))) = (self.verbose, &result) {
            eprintln!(
                "smtp-replay: call at {:.3} s: lane {lane}, budget {budget}, {runs} runs, {sent} sent in {:.1} ms",
                t.duration_since(start).as_secs_f64(),
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        result
    }
}
