//! Opening the capture of `-r`: the byte stream under the pcap reader counts
//! what was read (for the progress bar) and ends early, like end of file,
//! when SIGINT/SIGTERM asked to stop, so everything read so far is still
//! flushed into the logs.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::capture::pcap::{PcapReadError, PcapReader};

/// The progress bar of one run (hidden unless asked for).
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A byte source that stops at `stop` and reports how far it got.
struct Tracked<R> {
    inner: R,
    read: u64,
    stop: Arc<AtomicBool>,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(self.read);
        }
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
    let (input, len): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(StdinUntil { stop: stop.clone() }), None)
    } else {
        let f = File::open(path).map_err(open_err)?;
        let meta = f.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::other("is a directory")));
        }
        (Box::new(f), meta.is_file().then_some(meta.len()))
    };
    let bar = progress.then(|| bar(len));
    let tracked = Tracked {
        inner: input,
        read: 0,
        stop,
        bar: bar.clone(),
    };
    let reader = PcapReader::from_reader(Box::new(tracked), path)?;
    Ok((reader, Progress(bar)))
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
            stop: stop.clone(),
            bar: None,
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
}
