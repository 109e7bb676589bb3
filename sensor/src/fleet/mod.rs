//! Fleet mode (docs/FLEET.md): several sensors, one Redis, one verdict per
//! inspection period. The collector hands each period's merged counters to
//! [`Fleet::submit`] (never blocking: a full queue is counted and the
//! period is evaluated locally); a dedicated thread publishes them as
//! absolute snapshots, keeps this sensor's heartbeat, closes the periods
//! that can be closed and sends the notices it raised back to the
//! collector, which writes them to notice.log as any other.

pub mod close;
pub mod config;
pub mod merge;
pub mod publish;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Connection;

use crate::detect::{Detection, Notice, PeriodCounters};
use crate::net::Ts;

use close::{Close, FleetKeys, Period};
use publish::{PeriodKeys, Stored};

/// Prefix of every key the fleet writes.
pub const KEY_PREFIX: &str = "smtp-sensor";

/// Periods waiting for the fleet thread; more are evaluated locally.
pub const QUEUE: usize = 64;

/// Entries the notice stream keeps (approximately: `MAXLEN ~`).
pub const STREAM_MAXLEN: usize = 100_000;

/// A Redis command that takes longer than this fails (the sensor goes on).
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One period's final counters on this sensor.
#[derive(Debug)]
pub struct FinalSnapshot {
    /// Start of the (epoch-aligned) period: its key.
    pub start: Ts,
    /// Its end, or the last packet's time when the input ended inside it.
    pub end: Ts,
    pub counters: PeriodCounters,
    /// The rules to evaluate it with (the collector's, after reloads).
    pub detection: Arc<Detection>,
}

enum ToFleet {
    Final(Box<FinalSnapshot>),
    Finish,
}

/// The settings the fleet thread runs with.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    pub redis_url: String,
    pub sensor_name: String,
    pub period_us: u64,
    pub flush_interval: Duration,
    pub close_grace: Duration,
    /// Live capture: the close deadline is also a wall-clock one.
    pub live: bool,
}

impl FleetSettings {
    /// From the config; `None` when fleet mode is off.
    pub fn from_config(cfg: &crate::config::Config, live: bool) -> Option<Self> {
        let f = cfg.fleet.as_ref()?;
        Some(FleetSettings {
            redis_url: f.redis_url.clone(),
            sensor_name: cfg.fleet_sensor_name()?.to_owned(),
            period_us: cfg.inspect_period_us().max(1),
            flush_interval: f.flush_interval,
            close_grace: f.close_grace,
            live,
        })
    }
}

/// The fleet thread's counters, by name (summary, metrics).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    published: u64,
    publish_failed: u64,
    queue_full: u64,
    stale: u64,
    late: u64,
    closed: u64,
    closed_incomplete: u64,
    evaluated_locally: u64,
    bad_snapshots: u64,
    stream_failed: u64,
}

impl Counts {
    fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("fleet_snapshots_published", self.published),
            ("fleet_publish_failed", self.publish_failed),
            ("fleet_queue_full", self.queue_full),
            ("fleet_snapshots_stale", self.stale),
            ("fleet_snapshots_late", self.late),
            ("fleet_periods_closed", self.closed),
            ("fleet_periods_closed_incomplete", self.closed_incomplete),
            ("fleet_periods_evaluated_locally", self.evaluated_locally),
            ("fleet_bad_snapshots", self.bad_snapshots),
            ("fleet_stream_failed", self.stream_failed),
        ]
    }
}

/// The collector's handle on the fleet thread.
pub struct Fleet {
    tx: SyncSender<ToFleet>,
    notices: Receiver<Notice>,
    handle: Option<JoinHandle<Counts>>,
    /// Periods the queue could not take (the thread's own counts are added
    /// at `finish`).
    queue_full: std::cell::Cell<u64>,
}

impl Fleet {
    /// Starts the fleet thread; it connects and registers on its own, so a
    /// Redis that is down delays nothing here.
    pub fn start(settings: FleetSettings) -> std::io::Result<Fleet> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let (ntx, notices) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || Thread::new(settings, ntx).run(rx))?;
        Ok(Fleet {
            tx,
            notices,
            handle: Some(handle),
            queue_full: std::cell::Cell::new(0),
        })
    }

    /// Queues a period's final counters without waiting. When the queue is
    /// full the counters come back: the caller evaluates them locally.
    pub fn submit(&self, s: FinalSnapshot) -> Option<PeriodCounters> {
        match self.tx.try_send(ToFleet::Final(Box::new(s))) {
            Ok(()) => None,
            Err(
                TrySendError::Full(ToFleet::Final(s))
                | TrySendError::Disconnected(ToFleet::Final(s)),
            ) => {
                self.queue_full.set(self.queue_full.get() + 1);
                log::warn!(
                    "fleet: the period starting at {} could not be queued for Redis; evaluated on this sensor's traffic only",
                    s.start.micros()
                );
                Some(s.counters)
            }
            Err(_) => None,
        }
    }

    /// Notices the fleet thread raised since the last call.
    pub fn take_notices(&self) -> Vec<Notice> {
        self.notices.try_iter().collect()
    }

    /// End of input: the thread publishes what is queued, tries to close
    /// its periods, leaves the fleet and stops. Returns its last notices
    /// and its counters by name.
    pub fn finish(mut self) -> (Vec<Notice>, Vec<(&'static str, u64)>) {
        let _ = self.tx.send(ToFleet::Finish);
        let mut counts = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        counts.queue_full += self.queue_full.get();
        (self.take_notices(), counts.named())
    }
}

/// A period this sensor has published and not seen closed.
struct Pending {
    end_us: u64,
    detection: Arc<Detection>,
}

/// The fleet thread's state.
struct Thread {
    s: FleetSettings,
    member: String,
    keys: FleetKeys,
    client: Option<redis::Client>,
    con: Option<Connection>,
    retry_at: Instant,
    backoff: Duration,
    script: redis::Script,
    seq: u64,
    /// Network time: the latest period end handed over.
    now: Ts,
    progress: u64,
    pending: BTreeMap<u64, Pending>,
    notices: Sender<Notice>,
    counts: Counts,
}

impl Thread {
    fn new(s: FleetSettings, notices: Sender<Notice>) -> Self {
        let member = format!("{}/{}", s.sensor_name, boot_id());
        let client = redis::Client::open(s.redis_url.as_str()).ok();
        Thread {
            member,
            keys: FleetKeys::new(KEY_PREFIX),
            client,
            con: None,
            retry_at: Instant::now(),
            backoff: Duration::from_millis(100),
            script: publish::merge_script(),
            // Sequence numbers grow over the process's life, so a snapshot
            // taken later always wins.
            seq: 0,
            now: Ts(0),
            progress: 0,
            pending: BTreeMap::new(),
            notices,
            counts: Counts::default(),
            s,
        }
    }

    fn heartbeat_ttl_ms(&self) -> u64 {
        let ms = u64::try_from(self.s.flush_interval.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_mul(3).max(1000)
    }

    /// Keys of a period expire long after it can close.
    fn period_ttl_ms(&self) -> u64 {
        let grace = u64::try_from(self.s.close_grace.as_millis()).unwrap_or(u64::MAX);
        (self.s.period_us / 1000)
            .saturating_add(grace)
            .saturating_add(24 * 3_600_000)
    }

    fn run(mut self, rx: Receiver<ToFleet>) -> Counts {
        let tick = self.s.flush_interval.min(Duration::from_millis(500));
        self.connection();
        loop {
            match rx.recv_timeout(tick) {
                Ok(ToFleet::Final(f)) => self.on_final(*f),
                Ok(ToFleet::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.heartbeat();
            self.close_pending();
        }
        // Every final snapshot is stored: this sensor is past every period.
        self.progress = u64::MAX;
        self.heartbeat();
        self.close_pending();
        if let Some(con) = self.con.as_mut()
            && close::deregister(con, &self.keys, &self.member).is_err()
        {
            log::warn!("fleet: could not leave the fleet cleanly; its heartbeat will expire");
        }
        for (start, _) in std::mem::take(&mut self.pending) {
            log::info!(
                "fleet: period starting at {start} µs left open for the other sensors to close"
            );
        }
        self.counts
    }

    /// The connection, (re)connecting with backoff when there is none.
    fn connection(&mut self) -> Option<&mut Connection> {
        if self.con.is_none() && Instant::now() >= self.retry_at {
            let con = self.client.as_ref().and_then(|c| {
                let con = c.get_connection_with_timeout(IO_TIMEOUT).ok()?;
                con.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
                con.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
                Some(con)
            });
            match con {
                Some(mut con) => {
                    if close::register(&mut con, &self.keys, &self.member, self.heartbeat_ttl_ms())
                        .is_ok()
                    {
                        log::info!("fleet: {} joined {}", self.member, self.s.redis_url);
                        self.backoff = Duration::from_millis(100);
                        self.con = Some(con);
                    }
                }
                None => {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.con.as_mut()
    }

    /// A command failed: drop the connection, reconnect later.
    fn failed(&mut self, what: &str, e: &redis::RedisError) {
        log::warn!("fleet: {what} failed: {e}");
        self.con = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn on_final(&mut self, f: FinalSnapshot) {
        self.now = self.now.max(f.end);
        let index = f.start.micros() / self.s.period_us;
        let end_us = (index + 1).saturating_mul(self.s.period_us);
        let keys = PeriodKeys::new(KEY_PREFIX, self.s.period_us, index);
        let payload = snapshot::encode(&f.counters, f.end);
        self.seq += 1;
        let (seq, ttl) = (self.seq, self.period_ttl_ms());
        let member = self.member.clone();
        let script = self.script.clone();
        let result = match self.connection() {
            Some(con) => publish::publish(con, &script, &keys, &member, seq, &payload, true, ttl),
            None => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected",
            ))),
        };
        match result {
            Ok(Stored::Stored) => {
                self.counts.published += 1;
                self.progress = self.progress.max(end_us);
                self.pending.insert(
                    index,
                    Pending {
                        end_us,
                        detection: f.detection,
                    },
                );
            }
            Ok(Stored::Stale) => self.counts.stale += 1,
            Ok(Stored::Late) => {
                self.counts.late += 1;
                log::warn!(
                    "fleet: period {index} was closed before this sensor's final snapshot; its counters were not merged"
                );
            }
            Err(e) => {
                self.counts.publish_failed += 1;
                self.failed("publishing a snapshot", &e);
                // Never lost silently: this sensor's own traffic is judged
                // alone, and the notices say so.
                self.counts.evaluated_locally += 1;
                log::warn!(
                    "fleet: period {index} could not be published; evaluated on this sensor's traffic only"
                );
                let mut ns = f.detection.evaluate_period(&f.counters, f.end);
                for n in &mut ns {
                    let note = "fleet: Redis unreachable, evaluated on this sensor's traffic only";
                    n.sub = Some(match n.sub.take() {
                        Some(s) => format!("{s}; {note}"),
                        None => note.to_owned(),
                    });
                }
                ns.into_iter().for_each(|n| {
                    let _ = self.notices.send(n);
                });
            }
        }
    }

    fn heartbeat(&mut self) {
        let (ttl, progress, member) = (self.heartbeat_ttl_ms(), self.progress, self.member.clone());
        let keys = self.keys.clone();
        if let Some(con) = self.connection()
            && let Err(e) = close::heartbeat(con, &keys, &member, ttl, progress)
        {
            self.failed("the heartbeat", &e);
        }
    }

    fn close_pending(&mut self) {
        let grace_us = u64::try_from(self.s.close_grace.as_micros()).unwrap_or(u64::MAX);
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let indexes: Vec<u64> = self.pending.keys().copied().collect();
        for index in indexes {
            let Some(p) = self.pending.get(&index) else {
                continue;
            };
            let deadline = p.end_us.saturating_add(grace_us);
            let deadline_passed =
                self.now.micros() >= deadline || (self.s.live && wall_us >= deadline);
            let detection = p.detection.clone();
            let keys = PeriodKeys::new(KEY_PREFIX, self.s.period_us, index);
            let period = Period {
                keys: &keys,
                end_us: p.end_us,
                deadline_passed,
                ttl_ms: self.period_ttl_ms(),
            };
            let (fk, member) = (self.keys.clone(), self.member.clone());
            let Some(con) = self.connection() else {
                return;
            };
            let closed = close::try_close(con, &fk, &member, &period, &detection);
            match closed {
                Ok(Close::Wait) => {}
                Ok(Close::ByOther) => {
                    self.pending.remove(&index);
                }
                Ok(Close::Closed {
                    notices,
                    missing,
                    bad_snapshots,
                }) => {
                    self.pending.remove(&index);
                    self.counts.closed += 1;
                    self.counts.bad_snapshots += bad_snapshots;
                    if !missing.is_empty() {
                        self.counts.closed_incomplete += 1;
                        log::warn!(
                            "fleet: period {index} closed without the final snapshot of {}",
                            missing.join(", ")
                        );
                    }
                    let streamed = self
                        .connection()
                        .map(|con| close::stream_notices(con, &fk, STREAM_MAXLEN, &notices));
                    if let Some(Err(e)) = streamed {
                        self.counts.stream_failed += 1;
                        self.failed("streaming the notices", &e);
                    }
                    for n in notices {
                        let _ = self.notices.send(n);
                    }
                }
                Err(e) => {
                    self.failed("closing a period", &e);
                    return;
                }
            }
        }
    }
}

/// A random id for this process: a restarted sensor is a new member, and
/// its snapshots never replace the ones of its previous life.
fn boot_id() -> String {
    let mut b = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !random {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b = (t ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
