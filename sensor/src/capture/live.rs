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

use log::{error, info, warn};

use sensor_common::flowhash::FlowHashKey;

use super::FrameSink;
use super::afxdp::{CopyMode, XskSocket};
use super::error::CaptureError;
use super::link_watch::{LinkCounters, LinkEvent, LinkInfo, LinkWatch, OnInterfaceLoss, ifindex};
use super::sizing::{BURST_MS, DEFAULT_BATCH, DEFAULT_LINK_MBPS, Link, SMALL_FRAME, XskSizing};
use super::stats::{LiveStats, QueueCounters};
use super::xdp::{
    AttachedMode, NonSmtpAction, XdpCounters, XdpModeChoice, XdpProgram, XdpSettings,
};
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

/// How often capture on an interface that came back is tried again when
/// it failed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

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
    /// What to do when the interface is deleted.
    pub on_loss: OnInterfaceLoss,
    /// The interface's state (shared with the metrics and the stats line).
    pub link: Arc<LinkCounters>,
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
            on_loss: OnInterfaceLoss::Exit,
            link: Arc::default(),
        }
    }
}

/// What a finished live capture returns.
pub struct LiveReport<S> {
    /// Final statistics (also logged, and written to `--stats-json`).
    pub stats: LiveStats,
    /// The per-queue sinks, in queue order, after `finish` was called.
    pub sinks: Vec<S>,
    /// Capture ended because the interface was deleted
    /// (`--on-interface-loss exit`): the run should fail.
    pub interface_lost: bool,
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

    let settings = XdpSettings {
        smtp_ports: opts.smtp_ports.clone(),
        non_smtp: opts.non_smtp,
        ebpf_log: opts.ebpf_log,
        flow_hash: opts.flow_hash,
    };
    let watch_err = |source| CaptureError::LinkWatch {
        iface: opts.iface.clone(),
        source,
    };
    let (mut watch, state) = LinkWatch::new(&opts.iface).map_err(watch_err)?;
    let first = Attachment::open(opts, &settings, sizing, queues)?;
    let socket_mode = first.socket_mode;
    let mut att = Some(first);
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
    let lc = &*opts.link;
    lc.up.store(u64::from(state.up), Ordering::Relaxed);
    if !state.up {
        warn!(
            "{}: link down at start; nothing is captured until it comes up",
            opts.iface
        );
    }
    info!(
        "live capture started on {} (SMTP ports {:?}, non-SMTP frames: {:?})",
        opts.iface, opts.smtp_ports, opts.non_smtp
    );

    let started = Instant::now();
    let counters: Vec<Arc<QueueCounters>> = (0..queues as usize)
        .map(|q| opts.queue_counters.get(q).cloned().unwrap_or_default())
        .collect();
    let mut sinks: Vec<S> = (0..queues).map(&mut make_sink).collect();
    let mut interface_lost = false;
    let mut panicked = None;
    // One pass per attachment to the interface: more than one only when
    // it was deleted and came back (`--on-interface-loss wait`).
    while let Some(a) = att.as_mut() {
        let sockets = std::mem::take(&mut a.sockets);
        let (back, lost_q, end) = capture_until(
            opts,
            sockets,
            sinks,
            &counters,
            &stop,
            a,
            &mut watch,
            &mut on_control,
        );
        sinks = back;
        panicked = panicked.or(lost_q);
        if end != PassEnd::Lost {
            break;
        }
        if let Some(a) = att.take() {
            a.program.detach();
        }
        if opts.on_loss == OnInterfaceLoss::Exit {
            interface_lost = true;
            break;
        }
        match wait_for_interface(
            opts,
            &settings,
            sizing,
            queues,
            &mut sinks,
            &stop,
            &mut on_control,
        ) {
            Some((a, w)) => {
                att = Some(a);
                watch = w;
            }
            None => {
                // Stopped while waiting: the capture threads are gone, so
                // the sinks are finished here.
                sinks.iter_mut().for_each(FrameSink::finish);
                break;
            }
        }
    }

    let stats = {
        let qs = counters
            .iter()
            .zip(0u32..)
            .map(|(c, q)| c.snapshot(q))
            .collect();
        let (xdp, xdp_mode, socket_mode) = match &att {
            Some(a) => (
                a.program.counters().unwrap_or_default(),
                a.xdp_mode.as_str(),
                a.socket_mode.as_str(),
            ),
            None => (XdpCounters::default(), "none", "none"),
        };
        LiveStats::new(
            &opts.iface,
            xdp_mode,
            socket_mode,
            started.elapsed().as_secs(),
            qs,
            xdp,
        )
    };
    info!("final stats: {}", stats.line());
    if let Some(a) = att {
        a.program.detach();
    }
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
    Ok(LiveReport {
        stats,
        sinks,
        interface_lost,
    })
}

/// The XDP program and the AF_XDP sockets of one attachment to the
/// interface.
struct Attachment {
    program: XdpProgram,
    /// Taken by the capture threads while they run.
    sockets: Vec<XskSocket>,
    queues: u32,
    socket_mode: CopyMode,
    xdp_mode: AttachedMode,
}

impl Attachment {
    /// Loads the program, opens and registers a socket per queue, then
    /// attaches (sockets first: no SMTP frame is passed for lack of a
    /// socket once the program runs).
    fn open(
        opts: &LiveOptions,
        settings: &XdpSettings,
        sizing: XskSizing,
        queues: u32,
    ) -> Result<Attachment, CaptureError> {
        let mut program = XdpProgram::load(settings)?;
        let mut sockets = Vec::with_capacity(queues as usize);
        for q in 0..queues {
            let mut s = XskSocket::open(&opts.iface, q, sizing)?;
            s.read_flow_hash(opts.flow_hash.is_some());
            if opts.busy_poll_us > 0
                && let Err(e) = s.set_busy_poll(opts.busy_poll_us)
            {
                warn!("busy polling not available on queue {q} ({e}); going on without");
            }
            program.register_socket(q, &s.fd())?;
            sockets.push(s);
        }
        let socket_mode = sockets.first().map_or(CopyMode::Copy, |s| s.mode);
        let xdp_mode = program.attach(&opts.iface, opts.xdp_mode)?;
        Ok(Attachment {
            program,
            sockets,
            queues,
            socket_mode,
            xdp_mode,
        })
    }
}

/// Why a capture pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PassEnd {
    /// SIGINT/SIGTERM.
    Stopped,
    /// A capture thread ended on its own.
    ThreadDied,
    /// The interface was deleted.
    Lost,
}

/// Runs one capture thread per socket until a stop, a dead thread or the
/// interface's loss, watching the link on the control thread meanwhile.
/// Returns the sinks (finished unless the loss is waited out), the queue
/// of a thread that panicked, and why the pass ended.
#[allow(clippy::too_many_arguments)]
fn capture_until<S: FrameSink, C: FnMut(Option<XdpCounters>)>(
    opts: &LiveOptions,
    sockets: Vec<XskSocket>,
    sinks: Vec<S>,
    counters: &[Arc<QueueCounters>],
    stop: &AtomicBool,
    att: &mut Attachment,
    watch: &mut LinkWatch,
    on_control: &mut C,
) -> (Vec<S>, Option<u32>, PassEnd) {
    let pause = AtomicBool::new(false);
    let lc = &*opts.link;
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(sockets.len());
        for ((sock, sink), c) in sockets.into_iter().zip(sinks).zip(counters) {
            let (stop, pause) = (stop, &pause);
            let c = Arc::clone(c);
            let q = sock.queue;
            let cpu = opts.cpus.nth(q as usize);
            let h = thread::Builder::new()
                .name(format!("capture-q{q}"))
                .spawn_scoped(scope, move || {
                    if let Some(cpu) = cpu {
                        pin_current_thread(cpu, &format!("the capture thread of queue {q}"));
                    }
                    capture_loop(sock, sink, stop, pause, &c)
                });
            match h {
                Ok(h) => handles.push((q, h)),
                Err(e) => {
                    error!("cannot start the capture thread of queue {q}: {e}");
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        let end = loop {
            if stop.load(Ordering::Relaxed) {
                break PassEnd::Stopped;
            }
            thread::sleep(CONTROL_TICK);
            att.program.flush_log();
            on_control(att.program.counters().ok());
            match watch.poll() {
                Some(LinkEvent::WentDown) => {
                    lc.up.store(0, Ordering::Relaxed);
                    lc.losses.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "{}: link down; nothing is captured until it comes back up (interface_up 0)",
                        opts.iface
                    );
                }
                Some(LinkEvent::CameUp(info)) => {
                    lc.up.store(1, Ordering::Relaxed);
                    info!("{}: link up again; checking the XDP attachment", opts.iface);
                    recheck(opts, att, info, lc);
                }
                Some(LinkEvent::Gone) => {
                    lc.up.store(0, Ordering::Relaxed);
                    lc.losses.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "{}: the interface was deleted; its XDP program and AF_XDP sockets are gone{}",
                        opts.iface,
                        match opts.on_loss {
                            OnInterfaceLoss::Exit =>
                                "; flushing every record and exiting (--on-interface-loss exit)",
                            OnInterfaceLoss::Wait =>
                                "; waiting for it to come back (--on-interface-loss wait)",
                        }
                    );
                    break PassEnd::Lost;
                }
                None => {}
            }
            if !stop.load(Ordering::Relaxed) && handles.iter().any(|(_, h)| h.is_finished()) {
                error!("a capture thread stopped unexpectedly; stopping capture");
                break PassEnd::ThreadDied;
            }
        };
        if end == PassEnd::Stopped {
            info!("stopping live capture on {}", opts.iface);
        }
        if end == PassEnd::Lost && opts.on_loss == OnInterfaceLoss::Wait {
            pause.store(true, Ordering::Relaxed);
        } else {
            stop.store(true, Ordering::Relaxed);
        }
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
        (sinks, panicked, end)
    })
}

/// After the link came back up: is our program still the one attached?
/// If not, attach it again. (The AF_XDP sockets stay bound across a
/// down/up: the kernel unbinds them only when the device goes away.)
fn recheck(opts: &LiveOptions, att: &mut Attachment, info: LinkInfo, lc: &LinkCounters) {
    let ours = att.program.id();
    if ours.is_some() && info.xdp_prog == ours {
        info!(
            "{}: XDP program still attached ({} mode), {} AF_XDP socket(s) bound; capture resumes",
            opts.iface,
            att.xdp_mode.as_str(),
            att.queues
        );
        return;
    }
    warn!(
        "{}: the XDP program is no longer attached (the interface reports {:?}); attaching it again",
        opts.iface, info.xdp_prog
    );
    match att.program.attach(&opts.iface, opts.xdp_mode) {
        Ok(mode) => {
            att.xdp_mode = mode;
            lc.reattaches.fetch_add(1, Ordering::Relaxed);
            info!(
                "{}: XDP program re-attached in {} mode; capture resumes",
                opts.iface,
                mode.as_str()
            );
        }
        Err(e) => error!(
            "{}: cannot attach the XDP program again: {e}; nothing is captured",
            opts.iface
        ),
    }
}

/// `--on-interface-loss wait`: until an interface named like the lost one
/// exists and capture can be set up on it, or until a stop. Meanwhile the
/// control hook runs every tick and the sinks get their ticks (idle
/// connections still time out and are logged).
fn wait_for_interface<S: FrameSink, C: FnMut(Option<XdpCounters>)>(
    opts: &LiveOptions,
    settings: &XdpSettings,
    sizing: XskSizing,
    queues: u32,
    sinks: &mut [S],
    stop: &AtomicBool,
    on_control: &mut C,
) -> Option<(Attachment, LinkWatch)> {
    info!(
        "waiting for an interface named {} to appear; SIGINT/SIGTERM stops",
        opts.iface
    );
    let mut last_try: Option<Instant> = None;
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(CONTROL_TICK);
        on_control(None);
        if last_tick.elapsed() >= TICK_EVERY {
            last_tick = Instant::now();
            let t = now();
            sinks.iter_mut().for_each(|s| s.tick(t));
        }
        if ifindex(&opts.iface).is_none() || last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            continue;
        }
        last_try = Some(Instant::now());
        let attempt = (|| -> Result<(Attachment, LinkWatch, LinkInfo), CaptureError> {
            let (watch, state) =
                LinkWatch::new(&opts.iface).map_err(|source| CaptureError::LinkWatch {
                    iface: opts.iface.clone(),
                    source,
                })?;
            let att = Attachment::open(opts, settings, sizing, queues)?;
            Ok((att, watch, state))
        })();
        match attempt {
            Ok((att, watch, state)) => {
                let lc = &*opts.link;
                lc.up.store(u64::from(state.up), Ordering::Relaxed);
                lc.reattaches.fetch_add(1, Ordering::Relaxed);
                info!(
                    "{} is back (index {}): XDP program attached in {} mode, {queues} AF_XDP socket(s) open; capture resumes",
                    opts.iface,
                    state.ifindex,
                    att.xdp_mode.as_str()
                );
                return Some((att, watch));
            }
            Err(e) => warn!(
                "{} is back but capture cannot start on it yet: {e}; trying again in a second",
                opts.iface
            ),
        }
    }
    None
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
    pause: &AtomicBool,
    c: &QueueCounters,
) -> S {
    let small = (sock.batch() as usize / SMALL_BATCH_DIVISOR).max(1);
    set_timer_slack(Duration::from_micros(1));
    let mut invalid = 0u64;
    let clock = Clock::new();
    let mut last_tick = clock.mono();
    let mut last_frame = last_tick;
    while !stop.load(Ordering::Relaxed) && !pause.load(Ordering::Relaxed) {
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
    // Paused (the interface is gone, capture waits for it): the sink goes
    // on with the next socket, unfinished.
    if stop.load(Ordering::Relaxed) {
        sink.finish();
    }
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
    /// Live: when the interface is deleted, `exit` (flush every record and
    /// exit with code 1, for a supervisor to restart the sensor) or `wait`
    /// (attach again when an interface of that name appears).
    #[arg(long = "on-interface-loss", value_enum, default_value_t = OnInterfaceLoss::Exit)]
    pub on_interface_loss: OnInterfaceLoss,
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
            on_loss: self.on_interface_loss,
            link: Arc::default(),
        }
    }
}
