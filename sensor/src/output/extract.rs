//! File extraction (Zeek's FileExtract): the decoded bytes of a message's
//! files written to `extract_dir`, off the packet path.
//!
//! A worker hands each file's bytes to an [`ExtractTx`], which queues them
//! for the writer thread ([`ExtractWriter`]) without ever waiting: the queue
//! is bounded by bytes, and a chunk that does not fit cuts that file's
//! extraction (counted). The caps are the worker's to check as well
//! (`extract_max_bytes` per file, `extract_total_bytes` for the run), so the
//! row files.log gets says exactly what was cut. The writer creates the
//! directory, writes each file under a hidden temporary name and renames it
//! to `extract-<ts>-SMTP-<fuid>` (Zeek's name) when the file ends, so a
//! reader never sees a file that is still growing. A write that fails (disk
//! full, directory gone) removes that file and is counted; capture goes on.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::anomaly::AnomalyCounts;
use crate::net::Ts;
use crate::smtp::files::Fuid;

/// Which files are extracted (`extract_files`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExtractMode {
    /// None (the default): extraction costs nothing.
    #[default]
    None,
    /// Entities with a file name (Content-Disposition `filename`, or
    /// Content-Type `name`): what a mail client shows as an attachment.
    Attachments,
    /// Every file files.log lists (message bodies too).
    All,
}

impl ExtractMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ExtractMode::None => "none",
            ExtractMode::Attachments => "attachments",
            ExtractMode::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ExtractMode::None),
            "attachments" => Some(ExtractMode::Attachments),
            "all" => Some(ExtractMode::All),
            _ => None,
        }
    }

    /// Whether an entity with (or without) a file name is extracted.
    pub fn takes(self, has_filename: bool) -> bool {
        match self {
            ExtractMode::None => false,
            ExtractMode::Attachments => has_filename,
            ExtractMode::All => true,
        }
    }
}

/// Default of `extract_dir`, relative to the log directory (Zeek's
/// `FileExtract::prefix`, `./extract_files/`).
pub const DEFAULT_EXTRACT_DIR: &str = "extract_files";
/// Default of `extract_max_bytes`: 100 MiB (Zeek's former
/// `FileExtract::default_limit`; Zeek's is unlimited today, a sensor's disk
/// is not).
pub const DEFAULT_EXTRACT_MAX_BYTES: u64 = 100 << 20;
/// Default of `extract_total_bytes`: 10 GiB written per run.
pub const DEFAULT_EXTRACT_TOTAL_BYTES: u64 = 10 << 30;
/// Bytes queued for the writer at most; a chunk beyond cuts its file.
pub const QUEUE_BYTES: u64 = 64 << 20;
/// What one queued message costs beyond its bytes (its bookkeeping).
const JOB_OVERHEAD: u64 = 64;
/// Longest an offline session waits for room in the queue.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The directory is tried again at most this often after it failed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How extraction runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractSettings {
    pub mode: ExtractMode,
    /// Where the files go (already resolved against the log directory).
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub total_bytes: u64,
    /// Wait for room in a full queue instead of cutting the file: offline,
    /// where waiting slows only the reading of the capture (as the record
    /// channel does), so the same capture always gives the same files.
    pub wait_when_full: bool,
}

impl ExtractSettings {
    /// The run's extraction, `None` when `extract_files` is `none`; a
    /// relative `extract_dir` is under `log_dir`.
    pub fn from_config(cfg: &crate::config::Config, log_dir: &Path) -> Option<Self> {
        (cfg.extract_files != ExtractMode::None).then(|| ExtractSettings {
            mode: cfg.extract_files,
            dir: log_dir.join(&cfg.extract_dir),
            max_bytes: u64::try_from(cfg.extract_max_bytes).unwrap_or(u64::MAX),
            total_bytes: u64::try_from(cfg.extract_total_bytes).unwrap_or(u64::MAX),
            wait_when_full: false,
        })
    }
}

/// Zeek's name of an extracted file: `extract-<ts>-SMTP-<fuid>`, `ts` the
/// time of the file's first byte. Only the fuid and the time: nothing of
/// the message reaches the file system.
pub fn file_name(ts: Ts, fuid: &Fuid) -> String {
    format!(
        "extract-{}.{:06}-SMTP-{}",
        ts.0 / 1_000_000,
        ts.0 % 1_000_000,
        fuid.as_str()
    )
}

/// The extraction counters, shared by the workers and the writer.
#[derive(Debug, Default)]
pub struct ExtractCounts {
    /// Files completely written and renamed to their names.
    pub files: AtomicU64,
    /// Bytes written to extracted files.
    pub bytes: AtomicU64,
    /// Files cut at `extract_max_bytes`.
    pub file_limit: AtomicU64,
    /// Files cut because `extract_total_bytes` was reached.
    pub total_limit: AtomicU64,
    /// Files cut because the writer's queue was full.
    pub queue_full: AtomicU64,
    /// Files whose directory or file could not be created.
    pub open_failed: AtomicU64,
    /// Files lost to a failed write (disk full, …): removed.
    pub write_failed: AtomicU64,
}

impl ExtractCounts {
    /// The counters by name (the summary's and the metrics' anomalies).
    pub fn named(&self) -> AnomalyCounts {
        let mut c = AnomalyCounts::new();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        c.add_named("extract_files_written", l(&self.files));
        c.add_named("extract_bytes_written", l(&self.bytes));
        c.add_named("extract_file_limit", l(&self.file_limit));
        c.add_named("extract_total_limit", l(&self.total_limit));
        c.add_named("extract_queue_full", l(&self.queue_full));
        c.add_named("extract_open_failed", l(&self.open_failed));
        c.add_named("extract_write_failed", l(&self.write_failed));
        c
    }
}

/// One message to the writer.
#[derive(Debug)]
enum Job {
    Open {
        fuid: Fuid,
        name: String,
    },
    Data {
        fuid: Fuid,
        bytes: Vec<u8>,
    },
    /// Always sent for an opened file (never refused): the writer's table
    /// of open files cannot leak.
    Close {
        fuid: Fuid,
    },
}

/// The workers' side of the queue (cloned into every SMTP session's
/// configuration).
#[derive(Clone)]
pub struct ExtractTx {
    tx: Sender<Job>,
    mode: ExtractMode,
    max_bytes: u64,
    total_bytes: u64,
    wait_when_full: bool,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicU64>,
    /// Bytes granted to files over the run (`extract_total_bytes`).
    granted: Arc<AtomicU64>,
    counts: Arc<ExtractCounts>,
}

impl std::fmt::Debug for ExtractTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractTx")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Two handles are the same when they feed the same writer.
impl PartialEq for ExtractTx {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.counts, &o.counts)
    }
}
impl Eq for ExtractTx {}

/// Why a file's extraction stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    FileLimit,
    TotalLimit,
    QueueFull,
}

impl ExtractTx {
    pub fn mode(&self) -> ExtractMode {
        self.mode
    }

    /// Room in the queue for `n` more bytes: taken if there is.
    fn reserve_queue(&self, n: u64) -> bool {
        let started = Instant::now();
        loop {
            let prev = self.queued.fetch_add(n, Ordering::Relaxed);
            if prev + n <= QUEUE_BYTES {
                return true;
            }
            self.queued.fetch_sub(n, Ordering::Relaxed);
            // Offline: the writer drains the queue; a writer that makes no
            // room for this long is stuck, and the file is cut after all.
            if !self.wait_when_full || started.elapsed() > MAX_WAIT {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Starts file `fuid` under `name`; false when the queue is full (the
    /// file is not extracted).
    pub fn open(&self, fuid: Fuid, name: String) -> bool {
        if !self.reserve_queue(JOB_OVERHEAD) {
            self.counts.queue_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.tx.send(Job::Open { fuid, name }).is_ok()
    }

    /// Queues the next bytes of `fuid`, of which `written` were queued
    /// before. Returns how many were queued and, when not all, why.
    pub fn data(&self, fuid: Fuid, written: u64, bytes: &[u8]) -> (u64, Option<Cut>) {
        let mut n = bytes.len() as u64;
        let mut cut = None;
        if written + n > self.max_bytes {
            n = self.max_bytes.saturating_sub(written);
            cut = Some(Cut::FileLimit);
        }
        if n > 0 {
            let prev = self.granted.fetch_add(n, Ordering::Relaxed);
            if prev + n > self.total_bytes {
                let fits = self.total_bytes.saturating_sub(prev);
                self.granted.fetch_sub(n - fits, Ordering::Relaxed);
                n = fits;
                cut = Some(Cut::TotalLimit);
            }
        }
        if n > 0 && !self.reserve_queue(n + JOB_OVERHEAD) {
            self.granted.fetch_sub(n, Ordering::Relaxed);
            n = 0;
            cut = Some(Cut::QueueFull);
        }
        if n > 0 {
            let part = bytes.get(..n as usize).unwrap_or_default().to_vec();
            if self.tx.send(Job::Data { fuid, bytes: part }).is_err() {
                return (0, Some(Cut::QueueFull));
            }
        }
        if let Some(c) = cut {
            let counter = match c {
                Cut::FileLimit => &self.counts.file_limit,
                Cut::TotalLimit => &self.counts.total_limit,
                Cut::QueueFull => &self.counts.queue_full,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        (n, cut)
    }

    /// Ends file `fuid` (opened with [`ExtractTx::open`]).
    pub fn close(&self, fuid: Fuid) {
        self.queued.fetch_add(JOB_OVERHEAD, Ordering::Relaxed);
        let _ = self.tx.send(Job::Close { fuid });
    }
}

/// The writer thread; joined at the end of the run.
pub struct ExtractWriter {
    handle: std::thread::JoinHandle<()>,
    pub counts: Arc<ExtractCounts>,
}

/// Starts the writer for `settings`: the handle workers queue with and the
/// thread. The thread ends when every [`ExtractTx`] is dropped.
pub fn spawn(settings: &ExtractSettings) -> std::io::Result<(ExtractTx, ExtractWriter)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let counts = Arc::new(ExtractCounts::default());
    let queued = Arc::new(AtomicU64::new(0));
    let mut writer = Writer {
        dir: settings.dir.clone(),
        dir_ok: false,
        last_try: None,
        open: HashMap::new(),
        counts: counts.clone(),
        queued: queued.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("extract".into())
        .spawn(move || writer.run(rx))?;
    let tx = ExtractTx {
        tx,
        mode: settings.mode,
        max_bytes: settings.max_bytes,
        total_bytes: settings.total_bytes,
        wait_when_full: settings.wait_when_full,
        queued,
        granted: Arc::new(AtomicU64::new(0)),
        counts: counts.clone(),
    };
    Ok((tx, ExtractWriter { handle, counts }))
}

impl ExtractWriter {
    /// Waits for the writer to finish every queued file (all its
    /// [`ExtractTx`] must be gone).
    pub fn join(self) -> Arc<ExtractCounts> {
        if self.handle.join().is_err() {
            log::error!("the file extraction thread panicked; files it had open are lost");
        }
        self.counts
    }
}

/// A file being written.
struct Open {
    file: File,
    tmp: PathBuf,
    name: PathBuf,
    written: u64,
}

struct Writer {
    dir: PathBuf,
    dir_ok: bool,
    last_try: Option<Instant>,
    /// Files being written; `None`: the file failed (its bytes are dropped).
    open: HashMap<Fuid, Option<Open>>,
    counts: Arc<ExtractCounts>,
    queued: Arc<AtomicU64>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            let cost = match &job {
                Job::Data { bytes, .. } => bytes.len() as u64 + JOB_OVERHEAD,
                _ => JOB_OVERHEAD,
            };
            self.handle(job);
            self.queued.fetch_sub(cost, Ordering::Relaxed);
        }
        // Every sender is gone: files still open had their Close lost with
        // a worker that died; keep what they got under their names.
        let left: Vec<Fuid> = self.open.keys().copied().collect();
        for fuid in left {
            self.close(fuid);
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Open { fuid, name } => {
                let f = self.create(&name);
                if f.is_none() {
                    self.counts.open_failed.fetch_add(1, Ordering::Relaxed);
                }
                self.open.insert(fuid, f);
            }
            Job::Data { fuid, bytes } => {
                let Some(slot) = self.open.get_mut(&fuid) else {
                    return;
                };
                let Some(f) = slot.as_mut() else { return };
                match f.file.write_all(&bytes) {
                    Ok(()) => {
                        f.written += bytes.len() as u64;
                        self.counts
                            .bytes
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log::warn!(
                            "cannot write extracted file {}: {e}; it is removed, capture goes on",
                            f.name.display()
                        );
                        let _ = std::fs::remove_file(&f.tmp);
                        self.counts.write_failed.fetch_add(1, Ordering::Relaxed);
                        *slot = None;
                    }
                }
            }
            Job::Close { fuid } => self.close(fuid),
        }
    }

    fn close(&mut self, fuid: Fuid) {
        let Some(Some(f)) = self.open.remove(&fuid) else {
            return;
        };
        drop(f.file);
        match std::fs::rename(&f.tmp, &f.name) {
            Ok(()) => {
                self.counts.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log::warn!("cannot name extracted file {}: {e}", f.name.display());
                let _ = std::fs::remove_file(&f.tmp);
                self.counts.write_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = f.written;
    }

    /// Creates the file's temporary (the directory first, if needed; after
    /// a failure, tried again at most once a second).
    fn create(&mut self, name: &str) -> Option<Open> {
        if !self.dir_ok {
            if self.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return None;
            }
            self.last_try = Some(Instant::now());
            if let Err(e) = std::fs::create_dir_all(&self.dir) {
                log::warn!(
                    "cannot create the extraction directory {}: {e}; files are not extracted until it can be (retried every second)",
                    self.dir.display()
                );
                return None;
            }
            self.dir_ok = true;
        }
        let tmp = self.dir.join(format!(".{name}.part"));
        match File::create(&tmp) {
            Ok(file) => Some(Open {
                file,
                tmp,
                name: self.dir.join(name),
                written: 0,
            }),
            Err(e) => {
                log::warn!("cannot create {}: {e}", tmp.display());
                // The directory may be gone: check it again next time.
                self.dir_ok = Path::new(&self.dir).is_dir();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ConnId, Uid};

    fn fuid(n: u32) -> Fuid {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 1,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        Fuid::new(&Uid::new(&id, Ts(1)), n)
    }

    fn settings(dir: &Path, max: u64, total: u64) -> ExtractSettings {
        ExtractSettings {
            mode: ExtractMode::All,
            dir: dir.to_owned(),
            max_bytes: max,
            total_bytes: total,
            wait_when_full: false,
        }
    }

    #[test]
    fn names_are_zeeks_and_modes_parse() {
        let f = fuid(0);
        assert_eq!(
            file_name(Ts(1_254_722_770_692_743), &f),
            format!("extract-1254722770.692743-SMTP-{}", f.as_str())
        );
        assert_eq!(
            file_name(Ts(5), &f),
            format!("extract-0.000005-SMTP-{}", f.as_str())
        );
        assert_eq!(ExtractMode::parse(" ALL"), Some(ExtractMode::All));
        assert_eq!(ExtractMode::parse("some"), None);
        assert!(ExtractMode::Attachments.takes(true) && !ExtractMode::Attachments.takes(false));
        assert!(!ExtractMode::None.takes(true) && ExtractMode::All.takes(false));
    }

    #[test]
    fn caps_cut_files_and_the_writer_renames_them() {
        let dir = std::env::temp_dir().join(format!("extract-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, w) = spawn(&settings(&dir, 5, 8)).unwrap();
        let (a, b) = (fuid(0), fuid(1));
        assert!(tx.open(a, "a".into()));
        assert_eq!(tx.data(a, 0, b"abc"), (3, None));
        assert_eq!(tx.data(a, 3, b"defg"), (2, Some(Cut::FileLimit)));
        tx.close(a);
        assert!(tx.open(b, "b".into()));
        // 5 of the 8 run bytes are gone: 3 are left.
        assert_eq!(tx.data(b, 0, b"wxyz"), (3, Some(Cut::TotalLimit)));
        tx.close(b);
        drop(tx);
        let c = w.join();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"abcde");
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"wxy");
        let named = c.named();
        assert_eq!(named.get("extract_files_written"), 2);
        assert_eq!(named.get("extract_bytes_written"), 8);
        assert_eq!(named.get("extract_file_limit"), 1);
        assert_eq!(named.get("extract_total_limit"), 1);
        // No temporary is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unusable_directory_is_counted_not_fatal() {
        // A regular file where the directory should be.
        let base = std::env::temp_dir().join(format!("extract-unit-file-{}", std::process::id()));
        std::fs::write(&base, b"x").unwrap();
        let (tx, w) = spawn(&settings(&base.join("sub"), 100, 100)).unwrap();
        assert!(tx.open(fuid(0), "a".into()));
        assert_eq!(tx.data(fuid(0), 0, b"abc"), (3, None));
        tx.close(fuid(0));
        drop(tx);
        let c = w.join();
        assert_eq!(c.named().get("extract_open_failed"), 1);
        assert_eq!(c.named().get("extract_files_written"), 0);
        let _ = std::fs::remove_file(&base);
    }
}
