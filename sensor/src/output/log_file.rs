//! One log file on disk that only ever holds whole lines, for every log the
//! sensor writes (smtp.log, notice.log, and any log added later).
//!
//! Why each rule:
//! - **Whole-line writes.** Records are formatted into a buffer and handed
//!   to the kernel one `write` per buffer, always ending on a line
//!   boundary; a write that fails half-way (disk full) is cut back to the
//!   length before it. A reader tailing the file never sees half a record
//!   followed by the next one.
//! - **Repair at start.** A live log is appended to across restarts. A
//!   `kill -9` (or a power cut) in the middle of a `write` can still leave
//!   a partial last line; appending after it would glue two records into
//!   one invalid line. Opening for append therefore cuts the file back to
//!   its last complete line first, and reports the cut.
//! - **Unwritable while live.** Capture must never stop because the log
//!   directory went away or became read-only: with [`OnError::Drop`] a
//!   failed write logs one error, the records are counted as dropped, and
//!   the file is reopened on a later [`LogFile::retry`] (each collector
//!   tick, at most once a second) or [`LogFile::reopen`] (SIGHUP).
//!   Offline ([`OnError::Fail`]) the first failure is the run's error.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{LogFormat, LogRecord, LogWriter};

/// Records are handed to the kernel once this many bytes are buffered (and
/// at every flush).
const WRITE_AT: usize = 1 << 16;

/// How far back from its end a partial last line is looked for. A record
/// is bounded by the SMTP limits to well under this; a file whose last
/// 16 MiB hold no line end is not one of ours and is left alone.
const REPAIR_SCAN_LIMIT: u64 = 16 << 20;

/// How often an unwritable log is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How a log file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Start empty (offline: a rerun of the same capture gives the same
    /// files).
    Truncate,
    /// Keep what is there (live: a restart or a reopen never destroys
    /// logs; after logrotate moved the file away a new one is created). A
    /// partial last line is cut first.
    Append,
}

/// What a write error does once the file has been opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Return it: the run fails (offline).
    Fail,
    /// Log it, drop and count the records, retry later (live).
    Drop,
}

/// Why a log file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error(
        "cannot create log file {path}: {source}; check that the log directory exists and is writable"
    )]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write log file {path}: {source}; check free disk space")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "log file {path} does not end with a line and has no line end in its last {} MiB: not a log this sensor wrote; move it away",
        REPAIR_SCAN_LIMIT >> 20
    )]
    NotALog { path: PathBuf },
}

/// What happened to a log file so far, for the metrics and the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogFileCounts {
    /// Records dropped because the file could not be written.
    pub dropped: u64,
    /// Write or reopen failures (each logged).
    pub failures: u64,
    /// Partial last lines cut when the file was opened for append.
    pub partial_lines_cut: u64,
    /// Bytes those partial lines held.
    pub partial_bytes_cut: u64,
}

impl LogFileCounts {
    pub fn add(&mut self, o: &LogFileCounts) {
        self.dropped += o.dropped;
        self.failures += o.failures;
        self.partial_lines_cut += o.partial_lines_cut;
        self.partial_bytes_cut += o.partial_bytes_cut;
    }
}

/// What the collector does with every log alike, whatever its record type.
pub trait AnyLogFile {
    fn flush(&mut self) -> Result<(), LogFileError>;
    fn close(&mut self) -> Result<(), LogFileError>;
    fn reopen(&mut self) -> Result<(), LogFileError>;
    fn retry(&mut self);
    fn set_on_error(&mut self, on_error: OnError);
    fn counts(&self) -> LogFileCounts;
    fn writable(&self) -> bool;
}

impl<R: LogRecord> AnyLogFile for LogFile<R> {
    fn flush(&mut self) -> Result<(), LogFileError> {
        LogFile::flush(self)
    }
    fn close(&mut self) -> Result<(), LogFileError> {
        LogFile::close(self)
    }
    fn reopen(&mut self) -> Result<(), LogFileError> {
        LogFile::reopen(self)
    }
    fn retry(&mut self) {
        LogFile::retry(self);
    }
    fn set_on_error(&mut self, on_error: OnError) {
        self.on_error = on_error;
    }
    fn counts(&self) -> LogFileCounts {
        self.counts
    }
    fn writable(&self) -> bool {
        self.file.is_some()
    }
}

/// A log of records of type `R` in one file; see the module doc.
pub struct LogFile<R: LogRecord> {
    path: PathBuf,
    format: LogFormat,
    on_error: OnError,
    /// `None` while the file cannot be written (only with [`OnError::Drop`]).
    file: Option<File>,
    /// Formats records into the buffer handed to the kernel.
    lines: LogWriter<R, Vec<u8>>,
    /// The header lists `R::EXTRA_COLUMNS` (files.log with extraction).
    extra: bool,
    /// Records in `lines`' buffer, not yet handed to the kernel.
    pending: u64,
    counts: LogFileCounts,
    last_retry: Instant,
    /// In a failure episode: from the first failed write or open until a
    /// write succeeds again (one error line and one recovery line each).
    failing: bool,
}

impl<R: LogRecord> LogFile<R> {
    /// Opens (or creates) `dir/name`. Any error here is returned whatever
    /// `on_error` says: a log that cannot be opened at start is a startup
    /// error the operator must see.
    pub fn open(
        dir: &Path,
        name: &str,
        format: LogFormat,
        mode: OpenMode,
        on_error: OnError,
    ) -> Result<Self, LogFileError> {
        Self::open_with(dir, name, format, mode, on_error, false)
    }

    /// [`Self::open`], with `R::EXTRA_COLUMNS` in the log when `extra`.
    pub fn open_with(
        dir: &Path,
        name: &str,
        format: LogFormat,
        mode: OpenMode,
        on_error: OnError,
        extra: bool,
    ) -> Result<Self, LogFileError> {
        let path = dir.join(name);
        let (file, cut) = open_file(&path, mode)?;
        let mut counts = LogFileCounts::default();
        note_cut(&path, cut, &mut counts);
        let mut f = LogFile {
            path,
            format,
            on_error,
            file: Some(file),
            lines: new_lines(format, extra),
            extra,
            pending: 0,
            counts,
            last_retry: Instant::now(),
            failing: false,
        };
        f.write_out()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False while the file cannot be written and records are dropped.
    pub fn writable(&self) -> bool {
        self.file.is_some()
    }

    pub fn counts(&self) -> LogFileCounts {
        self.counts
    }

    /// Appends one record; it reaches the file with the next buffer.
    pub fn write(&mut self, record: &R) -> Result<(), LogFileError> {
        if self.file.is_none() {
            self.retry();
        }
        if self.file.is_none() {
            self.counts.dropped += 1;
            return Ok(());
        }
        // Formatting into a Vec cannot fail.
        let _ = self.lines.write(record);
        self.pending += 1;
        if self.lines.get_ref().len() >= WRITE_AT {
            self.write_out()?;
        }
        Ok(())
    }

    /// Hands every complete buffered line to the kernel.
    pub fn flush(&mut self) -> Result<(), LogFileError> {
        self.write_out()
    }

    /// Reopens the file if it is unwritable and the last attempt was at
    /// least a second ago (the collector calls this at every tick).
    pub fn retry(&mut self) {
        if self.file.is_none() && self.last_retry.elapsed() >= RETRY_EVERY {
            self.try_reopen();
        }
    }

    /// Closes and reopens the file (SIGHUP after logrotate moved it away),
    /// or tries again now if it was unwritable.
    pub fn reopen(&mut self) -> Result<(), LogFileError> {
        if self.file.is_some() {
            self.close()?;
            self.file = None;
        }
        match open_file(&self.path, OpenMode::Append) {
            Ok((file, cut)) => {
                note_cut(&self.path, cut, &mut self.counts);
                self.file = Some(file);
                self.lines = new_lines(self.format, self.extra);
                self.pending = 0;
                self.write_out()
            }
            Err(e) => self.failed(e),
        }
    }

    /// Writes the Zeek `#close` trailer (TSV) and everything buffered.
    pub fn close(&mut self) -> Result<(), LogFileError> {
        let _ = self.lines.close();
        self.write_out()
    }

    /// [`Self::reopen`] of an unwritable file (its error is already
    /// handled: logged or kept quiet by `failed`).
    fn try_reopen(&mut self) {
        let _ = self.reopen();
    }

    /// One `write` of the buffer up to its last line end; a failure cuts
    /// the file back to where the write started.
    fn write_out(&mut self) -> Result<(), LogFileError> {
        let buf = self.lines.get_mut();
        let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let Some(file) = self.file.as_mut() else {
            self.counts.dropped += self.pending;
            self.pending = 0;
            buf.clear();
            return Ok(());
        };
        let whole = buf.get(..=last).unwrap_or_default();
        match write_whole(file, whole) {
            Ok(()) => {
                buf.drain(..=last);
                self.pending = 0;
                if std::mem::take(&mut self.failing) {
                    log::info!(
                        "{} is writable again; {} record(s) were dropped while it was not",
                        self.path.display(),
                        self.counts.dropped
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.counts.dropped += self.pending;
                self.pending = 0;
                buf.clear();
                self.failed(LogFileError::Write {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// A failed open or write: the run's error (offline), or, live, the
    /// file marked unwritable, logged at the first failure of an episode
    /// (retries that fail again stay quiet until a write succeeds).
    fn failed(&mut self, e: LogFileError) -> Result<(), LogFileError> {
        self.counts.failures += 1;
        match self.on_error {
            OnError::Fail => Err(e),
            OnError::Drop => {
                self.file = None;
                if !std::mem::replace(&mut self.failing, true) {
                    log::error!(
                        "{e}; records for it are dropped and counted (log_records_dropped) until it is writable again; capture goes on; retrying every second and on SIGHUP"
                    );
                }
                self.last_retry = Instant::now();
                Ok(())
            }
        }
    }
}

fn new_lines<R: LogRecord>(format: LogFormat, extra: bool) -> LogWriter<R, Vec<u8>> {
    LogWriter::in_memory_with(Vec::with_capacity(WRITE_AT + 4096), format, extra)
}

fn note_cut(path: &Path, cut: u64, counts: &mut LogFileCounts) {
    if cut > 0 {
        counts.partial_lines_cut += 1;
        counts.partial_bytes_cut += cut;
        log::warn!(
            "{} ended inside a line ({cut} bytes after its last complete line, left by a run that was killed or ran out of disk space); cut them before appending",
            path.display()
        );
    }
}

/// Opens `path` as `mode` says; returns the file and how many bytes of a
/// partial last line were cut (append only).
fn open_file(path: &Path, mode: OpenMode) -> Result<(File, u64), LogFileError> {
    let create = |source| LogFileError::Create {
        path: path.to_owned(),
        source,
    };
    let mut o = OpenOptions::new();
    match mode {
        OpenMode::Truncate => o.write(true).create(true).truncate(true),
        OpenMode::Append => o.read(true).append(true).create(true),
    };
    let mut file = o.open(path).map_err(create)?;
    let cut = match mode {
        OpenMode::Truncate => 0,
        OpenMode::Append => cut_partial_line(&mut file)
            .map_err(|source| LogFileError::Write {
                path: path.to_owned(),
                source,
            })?
            .ok_or_else(|| LogFileError::NotALog {
                path: path.to_owned(),
            })?,
    };
    Ok((file, cut))
}

/// Cuts `file` back to its last line end; returns the bytes cut, `None`
/// when no line end is within [`REPAIR_SCAN_LIMIT`] of a longer file.
fn cut_partial_line(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Some(0));
    }
    let mut chunk = vec![0u8; 1 << 16];
    let mut end = len;
    let floor = len.saturating_sub(REPAIR_SCAN_LIMIT);
    while end > floor {
        let start = end.saturating_sub(chunk.len() as u64).max(floor);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        let part = chunk.get_mut(..n).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(Some(len - keep));
        }
        end = start;
    }
    if floor == 0 {
        // No line end at all: the whole file is one partial line.
        file.set_len(0)?;
        return Ok(Some(len));
    }
    Ok(None)
}

/// Writes `bytes` at the end of `file`; on failure cuts the file back to
/// its length before, so it keeps ending on a line.
fn write_whole(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let start = file.seek(SeekFrom::End(0))?;
    match file.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e) => {
            if file.metadata().is_ok_and(|m| m.len() > start) {
                let _ = file.set_len(start);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Column, Value, col};

    struct L(&'static str);
    impl LogRecord for L {
        const PATH: &'static str = "t";
        const COLUMNS: &'static [Column] = &[col("s", "string")];
        fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
            f(Value::Str(self.0));
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("log-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn append_cuts_a_partial_last_line_and_counts_it() {
        let d = scratch("cut");
        std::fs::write(d.join("t.log"), "{\"s\":\"a\"}\n{\"s\":\"b\"}\n{\"s\":\"c").unwrap();
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Fail,
        )
        .unwrap();
        assert_eq!(f.counts().partial_lines_cut, 1);
        assert_eq!(f.counts().partial_bytes_cut, 7);
        f.write(&L("d")).unwrap();
        f.close().unwrap();
        let text = std::fs::read_to_string(d.join("t.log")).unwrap();
        assert_eq!(text, "{\"s\":\"a\"}\n{\"s\":\"b\"}\n{\"s\":\"d\"}\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_without_any_line_end_is_emptied_and_a_whole_one_kept() {
        let d = scratch("whole");
        std::fs::write(d.join("a.log"), "{\"s\":").unwrap();
        std::fs::write(d.join("b.log"), "{\"s\":\"a\"}\n").unwrap();
        let a = LogFile::<L>::open(
            &d,
            "a.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Fail,
        )
        .unwrap();
        let b = LogFile::<L>::open(
            &d,
            "b.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Fail,
        )
        .unwrap();
        assert_eq!(a.counts().partial_bytes_cut, 5);
        assert_eq!(b.counts(), LogFileCounts::default());
        assert_eq!(std::fs::read(d.join("a.log")).unwrap(), b"");
        assert_eq!(std::fs::read(d.join("b.log")).unwrap(), b"{\"s\":\"a\"}\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_long_partial_line_is_found_across_chunks() {
        let d = scratch("long");
        let mut body = b"{\"s\":\"a\"}\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 200_000));
        std::fs::write(d.join("t.log"), &body).unwrap();
        let f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Fail,
        )
        .unwrap();
        assert_eq!(f.counts().partial_bytes_cut, 200_000);
        assert_eq!(std::fs::read(d.join("t.log")).unwrap(), b"{\"s\":\"a\"}\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn records_reach_the_file_only_as_whole_lines() {
        let d = scratch("lines");
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Truncate,
            OnError::Fail,
        )
        .unwrap();
        // Enough records for several buffers: the file, read at any point,
        // ends on a line end.
        for _ in 0..20_000 {
            f.write(&L("some text to fill the buffer")).unwrap();
            let len = std::fs::metadata(d.join("t.log")).unwrap().len();
            if len > 0 {
                let bytes = std::fs::read(d.join("t.log")).unwrap();
                assert_eq!(bytes.last(), Some(&b'\n'));
            }
        }
        f.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("t.log"))
                .unwrap()
                .lines()
                .count(),
            20_000
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_vanished_directory_drops_and_counts_then_recovers() {
        let d = scratch("gone");
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Drop,
        )
        .unwrap();
        f.write(&L("kept")).unwrap();
        f.flush().unwrap();
        // logrotate-like move away, the directory removed: the reopen fails.
        std::fs::remove_dir_all(&d).unwrap();
        f.reopen().unwrap();
        assert!(!f.writable());
        f.write(&L("lost")).unwrap();
        f.write(&L("lost")).unwrap();
        f.flush().unwrap();
        assert_eq!(f.counts().dropped, 2);
        assert_eq!(f.counts().failures, 1);
        // Within the retry interval nothing is tried.
        std::fs::create_dir_all(&d).unwrap();
        f.retry();
        assert!(!f.writable());
        f.last_retry = Instant::now() - RETRY_EVERY;
        f.retry();
        assert!(f.writable());
        f.write(&L("back")).unwrap();
        f.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("t.log")).unwrap(),
            "{\"s\":\"back\"}\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_reopen_cuts_a_partial_line_too() {
        let d = scratch("reopen-cut");
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Append,
            OnError::Drop,
        )
        .unwrap();
        f.write(&L("a")).unwrap();
        f.flush().unwrap();
        // Another writer (or a copytruncate gone wrong) left half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("t.log"))
            .unwrap()
            .write_all(b"{\"s\":")
            .unwrap();
        f.reopen().unwrap();
        assert_eq!(f.counts().partial_lines_cut, 1);
        f.write(&L("b")).unwrap();
        f.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("t.log")).unwrap(),
            "{\"s\":\"a\"}\n{\"s\":\"b\"}\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn offline_a_failure_is_an_error() {
        let d = scratch("fail");
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Json,
            OpenMode::Truncate,
            OnError::Fail,
        )
        .unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert!(matches!(f.reopen(), Err(LogFileError::Create { .. })));
    }

    #[test]
    fn disk_full_leaves_whole_lines() {
        // /dev/full fails every write with ENOSPC.
        let mut full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let e = write_whole(&mut full, b"line\n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn zeek_header_again_after_a_reopen() {
        let d = scratch("zeek");
        let mut f = LogFile::<L>::open(
            &d,
            "t.log",
            LogFormat::Zeek,
            OpenMode::Append,
            OnError::Drop,
        )
        .unwrap();
        f.write(&L("a")).unwrap();
        std::fs::rename(d.join("t.log"), d.join("t.log.1")).unwrap();
        f.reopen().unwrap();
        f.write(&L("b")).unwrap();
        f.close().unwrap();
        let old = std::fs::read_to_string(d.join("t.log.1")).unwrap();
        let new = std::fs::read_to_string(d.join("t.log")).unwrap();
        assert!(old.starts_with("#separator") && old.contains("\na\n#close\t"));
        assert!(new.starts_with("#separator") && new.contains("\nb\n#close\t"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
