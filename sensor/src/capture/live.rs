//! Live capture on one interface: loads and attaches the XDP program, opens
//! an AF_XDP socket per rx queue, runs one capture thread per queue that
//! feeds its [`FrameSink`], hands the control plane its hook about every
//! 100 ms (the pipeline prints the stats line from there), and on
//! SIGINT/SIGTERM (or a failing capture thread) stops every thread and
//! detaches the program.
//!
//! Wiring the processing pipeline in: pass a factory that returns the
//! pipeline's per-queue sink; the sinks come back in [`LiveReport`] after
//! capture stopped, for a final flush.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{error, info};

use sensor_common::flowhash::FlowHashKey;

use super::FrameSink;
use super::afxdp::{CopyMode, XskSocket};
use super::error::CaptureError;
use super::sizing::{BURST_MS, DEFAULT_BATCH, DEFAULT_LINK_MBPS, Link, SMALL_FRAME, XskSizing};
use super::stats::{LiveStats, QueueCounters};
use super::xdp::{NonSmtpAction, XdpCounters, XdpModeChoice, XdpProgram, XdpSettings};
use crate::affinity::{CpuList, pin_current_thread};
use crate::net::Ts;

/// How often the control loop wakes (stop flag, eBPF log, thread health).
const CONTROL_TICK: Duration = Duration::from_millis(100);
/// How long a capture thread sleeps in poll() when its ring is empty.
const IDLE_POLL_MS: i32 = 100;
/// How often a capture thread refreshes socket stats and ticks its sink
/// (an idle one wakes from poll() at least this often too).
const TICK_EVERY: Duration = Duration::from_millis(100);
/// How long a capture thread keeps looking at an empty ring before it
/// sleeps in poll(): under load the next frames come within microseconds,
/// and a poll() wakeup costs more than the frames of a short gap; on a
/// quiet link it costs at most this much CPU per wakeup.
const SPIN_BEFORE_POLL: Duration = Duration::from_micros(20);
/// A batch smaller than this share of `--batch` means the ring is being
/// drained faster than it fills: the thread naps [`NAP`] before the next
/// look instead of spinning.
const SMALL_BATCH_DIVISOR: usize = 8;
/// The nap after a small batch: long enough for a batch's worth of frames
/// to gather at a few hundred thousand frames a second, short against what
/// the UMEM holds (40 ms at line rate; 100 µs is 200 frames at 2 Mpps).
/// Without it a thread that keeps up takes one or two frames per look and
/// pays the per-batch costs for each, and it competes for its core (with
/// the log writer, with the kernel's receive work) as if it were busy,
/// where it is mostly waiting. Measured on the load capture at 1 and
/// 1.4 Mpps: 0.57–0.68 µs of CPU per frame with 25 µs, 0.46–0.49 µs with
/// 100 µs, no more at 200 µs, and the same loss at top speed.
const NAP: Duration = Duration::from_micros(100);

/// Everything `smtp-sensor -i` needs to capture.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Interface to attach to.
    pub iface: String,
    /// TCP ports whose segments are captured (either side).
    pub smtp_ports: Vec<u16>,
    /// Pass or drop non-SMTP frames.
    pub non_smtp: NonSmtpAction,
    /// XDP attach mode.
    pub xdp_mode: XdpModeChoice,
    /// Forward the XDP program's diagnostics to the log.
    pub ebpf_log: bool,
    /// Rx queues to capture (0..n); `None`: every rx queue of the interface.
    pub queues: Option<u32>,
    /// UMEM frames per queue; `None`: sized from the link (`sizing`).
    pub umem_frames: Option<u32>,
    /// Frames taken from the rx ring at once.
    pub batch: u32,
    /// Preferred busy polling with this budget in µs; 0: off.
    pub busy_poll_us: u32,
    /// Where to write the final statistics as JSON.
    pub stats_json: Option<PathBuf>,
    /// Per-queue counters to fill (shared with the metrics endpoint);
    /// empty: capture makes its own.
    pub queue_counters: Vec<Arc<QueueCounters>>,
    /// CPUs for the capture threads (queue n on the nth CPU, round robin);
    /// empty: not pinned.
    pub cpus: CpuList,
    /// Have the XDP program put the flow hash with this key in front of
    /// every SMTP frame (capture threads then route without decoding).
    pub flow_hash: Option<FlowHashKey>,
}

impl LiveOptions {
    /// Defaults for `iface`: ports 25 and 587, pass non-SMTP, auto mode.
    pub fn new(iface: impl Into<String>) -> Self {
        LiveOptions {
            iface: iface.into(),
            smtp_ports: vec![25, 587],
            non_smtp: NonSmtpAction::Pass,
            xdp_mode: XdpModeChoice::Auto,
            ebpf_log: false,
            queues: None,
            umem_frames: None,
            batch: DEFAULT_BATCH,
            busy_poll_us: 0,
            stats_json: None,
            queue_counters: Vec::new(),
            cpus: CpuList::default(),
            flow_hash: None,
        }
    }
}

/// What a finished live capture returns.
pub struct LiveReport<S> {
    /// Final statistics (also logged, and written to `--stats-json`).
    pub stats: LiveStats,
    /// The per-queue sinks, in queue order, after `finish` was called.
    pub sinks: Vec<S>,
}

/// Runs live capture until SIGINT/SIGTERM. `make_sink(queue)` creates the
/// consumer of each rx queue; `on_control` runs on the calling thread about
/// every 100 ms with the XDP program's counters (the control plane's hook:
/// stats, metrics, reloads).
pub fn run_live<S, F, C>(
    opts: &LiveOptions,
    mut make_sink: F,
    mut on_control: C,
) -> Result<LiveReport<S>, CaptureError>
where
    S: FrameSink,
    F: FnMut(u32) -> S,
    C: FnMut(Option<XdpCounters>),
{
    if opts.smtp_ports.is_empty() {
        return Err(CaptureError::Option(
            "no SMTP ports configured (smtp_ports is empty)".into(),
        ));
    }
    let stop = crate::signals::stop_flag().map_err(CaptureError::Signal)?;
    let queues = match opts.queues {
        Some(n) if n > 0 => n,
        Some(_) => return Err(CaptureError::Option("--queues must be at least 1".into())),
        None => rx_queue_count(&opts.iface)?,
    };
    let link = Link::of(&opts.iface);
    let mut sizing = XskSizing::for_link(&link, queues);
    sizing.batch = opts.batch;
    if let Some(n) = opts.umem_frames {
        sizing.umem_frames = n;
    }
    sizing.validate()?;

    let mut program = XdpProgram::load(&XdpSettings {
        smtp_ports: opts.smtp_ports.clone(),
        non_smtp: opts.non_smtp,
        ebpf_log: opts.ebpf_log,
        flow_hash: opts.flow_hash,
    })?;
    // Sockets first, then attach: no SMTP frame is passed for lack of a
    // socket once the program runs.
    let mut sockets = Vec::with_capacity(queues as usize);
    for q in 0..queues {
        let mut s = XskSocket::open(&opts.iface, q, sizing)?;
        s.read_flow_hash(opts.flow_hash.is_some());
        if opts.busy_poll_us > 0
            && let Err(e) = s.set_busy_poll(opts.busy_poll_us)
        {
            log::warn!("busy polling not available on queue {q} ({e}); going on without");
        }
        program.register_socket(q, &s.fd())?;
        sockets.push(s);
    }
    let socket_mode = sockets.first().map_or(CopyMode::Copy, |s| s.mode);
    let xdp_mode = program.attach(&opts.iface, opts.xdp_mode)?;
    info!(
        "AF_XDP: {queues} socket(s) on {} in {} mode; each {} UMEM frames of {} bytes ({} MiB{}), batches of {}",
        opts.iface,
        socket_mode.as_str(),
        sizing.umem_frames,
        sizing.frame_size,
        sizing.umem_bytes() >> 20,
        if opts.umem_frames.is_some() {
            String::from(", --umem-frames")
        } else {
            format!(
                ": {BURST_MS} ms of {} Mbit/s in {SMALL_FRAME}-byte frames",
                link.speed_mbps.unwrap_or(DEFAULT_LINK_MBPS)
            )
        },
        sizing.batch
    );
    info!(
        "live capture started on {} (SMTP ports {:?}, non-SMTP frames: {:?})",
        opts.iface, opts.smtp_ports, opts.non_smtp
    );

    let started = Instant::now();
    let counters: Vec<Arc<QueueCounters>> = (0..queues as usize)
        .map(|q| opts.queue_counters.get(q).cloned().unwrap_or_default())
        .collect();
    let snapshot = |program: &XdpProgram| -> LiveStats {
        let qs = counters
            .iter()
            .zip(0u32..)
            .map(|(c, q)| c.snapshot(q))
            .collect();
        let xdp = program.counters().unwrap_or_default();
        LiveStats::new(
            &opts.iface,
            xdp_mode.as_str(),
            socket_mode.as_str(),
            started.elapsed().as_secs(),
            qs,
            xdp,
        )
    };

    let (sinks, panicked) = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(sockets.len());
        for (sock, c) in sockets.into_iter().zip(&counters) {
            let sink = make_sink(sock.queue);
            let stop = &stop;
            let c = Arc::clone(c);
            let q = sock.queue;
            let cpu = opts.cpus.nth(q as usize);
            let h = thread::Builder::new()
                .name(format!("capture-q{q}"))
                .spawn_scoped(scope, move || {
                    if let Some(cpu) = cpu {
                        pin_current_thread(cpu, &format!("the capture thread of queue {q}"));
                    }
                    capture_loop(sock, sink, stop, &c)
                });
            match h {
                Ok(h) => handles.push((q, h)),
                Err(e) => {
                    error!("cannot start the capture thread of queue {q}: {e}");
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(CONTROL_TICK);
            program.flush_log();
            on_control(program.counters().ok());
            if !stop.load(Ordering::Relaxed) && handles.iter().any(|(_, h)| h.is_finished()) {
                error!("a capture thread stopped unexpectedly; stopping capture");
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            info!("stopping live capture on {}", opts.iface);
        }
        stop.store(true, Ordering::Relaxed);
        let mut sinks = Vec::with_capacity(handles.len());
        let mut panicked = None;
        for (q, h) in handles {
            match h.join() {
                Ok(sink) => sinks.push(sink),
                Err(_) => {
                    error!("the capture thread of queue {q} panicked");
                    panicked.get_or_insert(q);
                }
            }
        }
        (sinks, panicked)
    });

    let stats = snapshot(&program);
    info!("final stats: {}", stats.line());
    program.detach();
    if let Some(q) = panicked {
        return Err(CaptureError::ThreadPanicked(q));
    }
    if let Some(path) = &opts.stats_json {
        let json = serde_json::to_vec_pretty(&stats).unwrap_or_default();
        std::fs::write(path, json).map_err(|source| CaptureError::StatsFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(LiveReport { stats, sinks })
}

/// Body of one capture thread: receive batches until `stop`, then finish
/// the sink and hand it back.
///
/// The clock is read once per loop: a monotonic reading gives both the
/// batch's timestamp (wall time at the start plus the time since) and the
/// timers. After a small batch the thread naps ([`NAP`]); an empty ring is
/// looked at again for [`SPIN_BEFORE_POLL`] (with busy polling on, each
/// look has the kernel poll the device) before the thread sleeps in poll().
fn capture_loop<S: FrameSink>(
    mut sock: XskSocket,
    mut sink: S,
    stop: &AtomicBool,
    c: &QueueCounters,
) -> S {
    let small = (sock.batch() as usize / SMALL_BATCH_DIVISOR).max(1);
    set_timer_slack(Duration::from_micros(1));
    let mut invalid = 0u64;
    let clock = Clock::new();
    let mut last_tick = clock.mono();
    let mut last_frame = last_tick;
    while !stop.load(Ordering::Relaxed) {
        let mono = clock.mono();
        let n = receive(&mut sock, &mut sink, c, clock.ts(mono), &mut invalid);
        if n > 0 {
            last_frame = mono;
            if n < small {
                std::thread::sleep(NAP);
            }
        } else if mono.saturating_sub(last_frame) < SPIN_BEFORE_POLL {
            sock.kick();
            std::hint::spin_loop();
        } else {
            sock.wait(IDLE_POLL_MS);
            last_frame = clock.mono();
        }
        // Time-driven work (socket statistics, idle expiry, period ends)
        // on a timer, never per empty receive.
        if mono.saturating_sub(last_tick) >= TICK_EVERY {
            last_tick = mono;
            if let Some(s) = sock.stats() {
                c.set_socket(s);
            }
            c.invalid_descs.store(invalid, Ordering::Relaxed);
            sink.tick(clock.ts(mono));
        }
    }
    // Drain what is already in the ring, so a clean stop loses nothing the
    // kernel handed over.
    while receive(&mut sock, &mut sink, c, now(), &mut invalid) > 0 {}
    if let Some(s) = sock.stats() {
        c.set_socket(s);
    }
    c.invalid_descs.store(invalid, Ordering::Relaxed);
    sink.finish();
    sink
}

/// One receive: a batch from the socket's ring, counted, into the sink.
fn receive<S: FrameSink>(
    sock: &mut XskSocket,
    sink: &mut S,
    c: &QueueCounters,
    ts: Ts,
    invalid: &mut u64,
) -> usize {
    let queue = sock.queue;
    sock.receive_batch(ts, invalid, |frames| {
        let bytes = frames.iter().map(|f| f.data.len() as u64).sum();
        c.add_batch(frames.len() as u64, bytes);
        sink.frames(queue, frames);
    })
}

/// Lets the calling thread's short sleeps end on time (the default slack
/// of 50 µs would double a nap).
fn set_timer_slack(slack: Duration) {
    let ns = libc::c_ulong::try_from(slack.as_nanos()).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes the slack in ns and affects only
    // the calling thread; an error leaves the default slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns) };
}

/// Wall-clock time from one monotonic reading: the wall time at start plus
/// the monotonic time since, so a capture thread reads one clock per batch.
struct Clock {
    start: Instant,
    start_us: u64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
            start_us: now().micros(),
        }
    }

    /// Time since start.
    fn mono(&self) -> Duration {
        self.start.elapsed()
    }

    /// Network time at `mono`.
    fn ts(&self, mono: Duration) -> Ts {
        let us = u64::try_from(mono.as_micros()).unwrap_or(u64::MAX);
        Ts::from_micros(self.start_us.saturating_add(us))
    }
}

/// Wall-clock time as network time.
pub fn now() -> Ts {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Ts::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
}

/// Number of rx queues of `iface` (`/sys/class/net/<iface>/queues/rx-*`).
pub fn rx_queue_count(iface: &str) -> Result<u32, CaptureError> {
    let base = PathBuf::from("/sys/class/net").join(iface);
    if !base.exists() {
        return Err(CaptureError::InterfaceNotFound(iface.to_string()));
    }
    let path = base.join("queues");
    let rd = std::fs::read_dir(&path).map_err(|source| CaptureError::Queues {
        iface: iface.to_string(),
        path: path.clone(),
        source,
    })?;
    let n = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

/// Command-line flags of live capture (`smtp-sensor -i <iface> …`),
/// flattened into the CLI's run arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct LiveArgs {
    /// Live: what XDP does with non-SMTP frames (`drop` on a dedicated tap
    /// port).
    #[arg(long = "non-smtp", value_enum, default_value_t = NonSmtpAction::Pass)]
    pub non_smtp: NonSmtpAction,
    /// Live: XDP attach mode (`auto`: driver mode, else generic/SKB mode).
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    /// Live: forward the XDP program's diagnostics (malformed headers,
    /// redirect failures) into this log.
    #[arg(long = "ebpf-log")]
    pub ebpf_log: bool,
    /// Live: capture rx queues 0..N (default: all rx queues).
    #[arg(long = "queues", value_name = "N")]
    pub queues: Option<u32>,
    /// Live: UMEM frames per queue, a power of two (default: 40 ms of the
    /// link's line rate in small frames, within a memory budget; see
    /// docs/PERFORMANCE.md).
    #[arg(long = "umem-frames", value_name = "N")]
    pub umem_frames: Option<u32>,
    /// Live: frames taken from the rx ring per batch (at most 256).
    #[arg(long = "batch", value_name = "N", default_value_t = DEFAULT_BATCH)]
    pub batch: u32,
    /// Live: preferred busy polling of the device by the capture threads
    /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL = USECS); 0: off.
    #[arg(long = "busy-poll", value_name = "USECS", default_value_t = 0)]
    pub busy_poll: u32,
    /// Live: seconds between stats lines on stderr (0: final line only).
    #[arg(long = "stats-interval", value_name = "SECS", default_value_t = 10)]
    pub stats_interval: u64,
    /// Live: write the final capture statistics as JSON to this file.
    #[arg(long = "stats-json", value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Live: the NIC's RSS hash is symmetric (both directions of a
    /// connection land on the same rx queue; e.g. `ethtool -X <if> hfunc
    /// toeplitz` with a symmetric key, or `xor`): with as many workers as
    /// queues each packet is then processed on the thread that received
    /// it. Without this flag, packets cross to their flow's worker over a
    /// ring whenever there is more than one queue.
    #[arg(long = "symmetric-rss")]
    pub symmetric_rss: bool,
}

impl LiveArgs {
    /// Period of the stats line; `None`: only the final line.
    pub fn stats_every(&self) -> Option<Duration> {
        (self.stats_interval > 0).then(|| Duration::from_secs(self.stats_interval))
    }

    /// Capture options for `iface`, watching `smtp_ports` (from the config).
    pub fn options(&self, iface: &str, smtp_ports: &[u16]) -> LiveOptions {
        LiveOptions {
            iface: iface.to_string(),
            smtp_ports: smtp_ports.to_vec(),
            non_smtp: self.non_smtp,
            xdp_mode: self.xdp_mode,
            ebpf_log: self.ebpf_log,
            queues: self.queues,
            umem_frames: self.umem_frames,
            batch: self.batch,
            busy_poll_us: self.busy_poll,
            stats_json: self.stats_json.clone(),
            queue_counters: Vec::new(),
            cpus: CpuList::default(),
            flow_hash: None,
        }
    }
}
