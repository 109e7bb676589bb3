//! Opening the capture of `-r`, and the one place that decides how it is
//! read: a regular file is mapped and its records parsed in place (no copy
//! into a read buffer); standard input, a FIFO, a character device or a file
//! that cannot be mapped is streamed. Either way the reading counts how far
//! it got (for the progress bar) and ends early, like end of file, when
//! SIGINT/SIGTERM asked to stop, so everything read so far is still flushed
//! into the logs. A gzip or zstd capture (known by its first bytes) is
//! streamed through its decoder (see `compressed`).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::compressed::{self, Compression, DecodeFailure};
use crate::capture::pcap::{MappedCapture, PcapReadError, PcapReader};

/// The progress bar of one run (hidden unless asked for), and why a
/// compressed input could not be decompressed.
pub struct Progress(Option<ProgressBar>, DecodeFailure);

impl Progress {
    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }

    /// A read error of the reader, with the decompressor's reason when
    /// there is one (the reader only knows the offset).
    pub fn explain(&self, e: PcapReadError) -> PcapReadError {
        match (e, self.1.get()) {
            (PcapReadError::Read { path, .. }, Some(why)) => PcapReadError::Decompress {
                path,
                detail: why.to_owned(),
            },
            (e, _) => e,
        }
    }
}

/// Bytes that tell a compressed capture from a plain one.
const MAGIC_LEN: usize = 4;

/// What both ways of reading answer to: the stop request and the bar.
struct Watcher {
    stop: Arc<AtomicBool>,
    bar: Option<ProgressBar>,
}

impl Watcher {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// `done` bytes of the input read.
    fn progress(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

/// A byte source that stops at `stop` and reports how far it got.
struct Tracked<R> {
    inner: R,
    read: u64,
    watch: Watcher,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.watch.stopped() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.watch.progress(self.read);
        Ok(n)
    }
}

/// Standard input that gives up waiting when `stop` is raised: a pipe that
/// stays open without data (`tcpdump -w - | smtp-sensor -r -` on a quiet
/// link) must not keep SIGTERM from ending the run.
struct StdinUntil {
    stop: Arc<AtomicBool>,
}

/// How long one wait for input lasts before the stop flag is looked at.
const STDIN_POLL_MS: i32 = 200;

impl Read for StdinUntil {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            let mut pfd = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, STDIN_POLL_MS) };
            if rc > 0 {
                // Readable, at end of file, or in error: read says which.
                // Straight from the descriptor: std's buffered stdin could
                // hold bytes poll() does not see.
                // SAFETY: fd 0 stays open for the process's life; the
                // ManuallyDrop keeps this File from closing it.
                let mut fd0 = std::mem::ManuallyDrop::new(unsafe {
                    <File as std::os::fd::FromRawFd>::from_raw_fd(libc::STDIN_FILENO)
                });
                return fd0.read(buf);
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Opens `path` (`-`: standard input) for the pipeline. `progress`: draw a
/// bar of bytes read on stderr (only when stderr is a terminal).
pub fn open(
    path: &Path,
    stop: Arc<AtomicBool>,
    progress: bool,
) -> Result<(PcapReader, Progress), PcapReadError> {
    let open_err = |source| PcapReadError::Open {
        path: path.to_owned(),
        source,
    };
    let failure = DecodeFailure::default();
    let (input, len): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        let (head, stdin) =
            compressed::peek(Box::new(StdinUntil { stop: stop.clone() }), MAGIC_LEN)
                .map_err(open_err)?;
        let input = match Compression::sniff(&head) {
            Compression::None => stdin,
            kind => compressed::decompress(stdin, kind, failure.clone()).map_err(open_err)?,
        };
        (input, None)
    } else {
        let f = File::open(path).map_err(open_err)?;
        let meta = f.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::other("is a directory")));
        }
        // A regular file is read in place. An empty one (or one that says
        // so, like those of /proc) and one the system will not map are
        // streamed.
        let kind = if meta.is_file() {
            let mut head = [0u8; MAGIC_LEN];
            let n = std::os::unix::fs::FileExt::read_at(&f, &mut head, 0).map_err(open_err)?;
            Compression::sniff(head.get(..n).unwrap_or_default())
        } else {
            Compression::None
        };
        if kind == Compression::None
            && meta.is_file()
            && meta.len() > 0
            && let Ok(map) = MappedCapture::new(&f)
        {
            let bar = progress.then(|| bar(Some(meta.len())));
            let watch = Watcher {
                stop,
                bar: bar.clone(),
            };
            let reader = PcapReader::from_mapped(
                map,
                path,
                Box::new(move |done| {
                    if watch.stopped() {
                        return false;
                    }
                    watch.progress(done);
                    true
                }),
            )?;
            return Ok((reader, Progress(bar, failure)));
        }
        match kind {
            // Not mapped: FIFOs, character devices, files that will not map.
            Compression::None => (Box::new(f), meta.is_file().then_some(meta.len())),
            // The bar counts decompressed bytes: no total to show.
            kind => (
                compressed::decompress(Box::new(f), kind, failure.clone()).map_err(open_err)?,
                None,
            ),
        }
    };
    let bar = progress.then(|| bar(len));
    let tracked = Tracked {
        inner: input,
        read: 0,
        watch: Watcher {
            stop,
            bar: bar.clone(),
        },
    };
    let progress = Progress(bar, failure);
    let reader =
        PcapReader::from_reader(Box::new(tracked), path).map_err(|e| progress.explain(e))?;
    Ok((reader, progress))
}

fn bar(len: Option<u64>) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = match len {
        Some(_) => "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        None => "{spinner} {binary_bytes} {binary_bytes_per_sec}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_stream_like_end_of_file() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Tracked {
            inner: io::Cursor::new(vec![7u8; 100]),
            read: 0,
            watch: Watcher {
                stop: stop.clone(),
                bar: None,
            },
        };
        let mut buf = [0u8; 40];
        assert_eq!(t.read(&mut buf).unwrap(), 40);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(t.read(&mut buf).unwrap(), 0);
        assert_eq!(t.read, 40);
    }

    #[test]
    fn missing_files_and_directories_are_open_errors() {
        let stop = Arc::new(AtomicBool::new(false));
        let e = open(Path::new("/nonexistent.pcap"), stop.clone(), false)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent.pcap"), "{e}");
        let e = open(&std::env::temp_dir(), stop, false).err().unwrap();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    /// A legacy pcap of `n` Ethernet records of 1000 bytes.
    fn capture(n: u32) -> Vec<u8> {
        let mut v = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        v.extend_from_slice(&[2, 0, 4, 0]);
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..n {
            v.extend_from_slice(&i.to_le_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&1000u32.to_le_bytes());
            v.extend_from_slice(&1000u32.to_le_bytes());
            v.extend_from_slice(&[0xee; 1000]);
        }
        v
    }

    #[test]
    fn gzip_and_zstd_captures_are_read_like_plain_ones() {
        use std::io::Write;
        let plain = capture(500);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        for (ext, bytes) in [("gz", gz), ("zst", zst)] {
            // The name does not matter: the magic bytes do.
            let p = std::env::temp_dir().join(format!("input-{}-{ext}.pcap", std::process::id()));
            std::fs::write(&p, &bytes).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (mut r, progress) = open(&p, stop, false).unwrap();
            assert!(!r.mapped());
            let sum = r
                .for_each(|_| {})
                .map_err(|e| progress.explain(e))
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            assert_eq!(sum.frames, 500, "{ext}");
            assert!(!sum.truncated_tail, "{ext}");
            // Cut short: the complete records before the cut are read.
            std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
            // Cut short: what was complete before the cut is read, or the
            // error says the stream is incomplete (when the decoder read
            // ahead to the cut already while the header was looked at).
            let read = open(&p, Arc::new(AtomicBool::new(false)), false)
                .and_then(|(mut r, progress)| r.for_each(|_| {}).map_err(|e| progress.explain(e)));
            match read {
                Ok(sum) => assert!(sum.frames < 500, "{ext}: {sum:?}"),
                Err(e) => {
                    assert!(matches!(e, PcapReadError::Decompress { .. }), "{ext}: {e}");
                    assert!(e.to_string().contains("corrupt"), "{e}");
                }
            }
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn regular_files_are_mapped_and_stop_on_request() {
        let p = std::env::temp_dir().join(format!("input-{}.pcap", std::process::id()));
        std::fs::write(&p, capture(3000)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut r, _) = open(&p, stop.clone(), false).unwrap();
        assert!(r.mapped());
        assert_eq!(r.for_each(|_| {}).unwrap().frames, 3000);
        // Asked to stop: ends at the first look, about a MiB in.
        let (mut r, _) = open(&p, stop.clone(), false).unwrap();
        stop.store(true, Ordering::Relaxed);
        let sum = r.for_each(|_| {}).unwrap();
        assert!(sum.frames > 0 && sum.frames < 1100, "{sum:?}");
        // An empty regular file is streamed, and is no capture.
        std::fs::write(&p, b"").unwrap();
        let e = open(&p, stop, false).err().unwrap();
        assert!(matches!(e, PcapReadError::NotACapture { .. }), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
