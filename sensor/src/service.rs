//! Running under systemd: readiness and reload notifications
//! (`Type=notify`, through `sd-notify`), the result of each reload for
//! `systemctl reload` to report, and log lines with journal priorities.
//!
//! Outside systemd all of it is inert: without `NOTIFY_SOCKET` nothing is
//! sent, without `RUNTIME_DIRECTORY` no reload result is written, and
//! without `JOURNAL_STREAM` log lines are the usual ones.
//!
//! Why a reload result file: `ExecReload=` can only fail the reload when
//! the command it runs fails, and a signal cannot carry an answer back. So
//! `smtp-sensor reload <pid>` (the unit's `ExecReload=`) sends SIGHUP, waits
//! for the sensor to write the outcome of that reload to
//! `$RUNTIME_DIRECTORY/reload`, and exits 1 with the sensor's reason when
//! the new configuration was refused: `systemctl reload` fails and says so.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The file under `$RUNTIME_DIRECTORY` holding the last reload's outcome.
const RELOAD_FILE: &str = "reload";

/// Capture runs (XDP attached, sockets bound): `READY=1`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts: `RELOADING=1` with the monotonic time systemd wants
/// beside it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Stopping: `STOPPING=1`.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// A reload ended, applied (`Ok`) or refused (`Err(reason)`): `READY=1`
/// again (the old configuration runs on after a refusal), the status line,
/// and the outcome for `smtp-sensor reload`.
pub fn reload_done(generation: u64, outcome: Result<(), &str>) {
    let status = match outcome {
        Ok(()) => "running; configuration reloaded".to_owned(),
        Err(why) => format!("running; reload refused: {why}"),
    };
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        // The first directory when systemd lists several.
        let dir = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if let Err(e) = write_outcome(Path::new(&dir), generation, outcome) {
            log::warn!("cannot record the reload's outcome in {dir}: {e}");
        }
    }
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        log::debug!("sd_notify: {e}");
    }
}

/// `<generation> ok` or `<generation> refused <reason>`, written to a
/// temporary file and renamed, so a reader never sees half of it.
fn write_outcome(dir: &Path, generation: u64, outcome: Result<(), &str>) -> io::Result<()> {
    let line = match outcome {
        Ok(()) => format!("{generation} ok\n"),
        Err(why) => format!("{generation} refused {}\n", why.replace('\n', " ")),
    };
    let tmp = dir.join(format!(".{RELOAD_FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(line.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(RELOAD_FILE))
}

/// A reload outcome as read back.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    generation: u64,
    refused: Option<String>,
}

fn read_outcome(path: &Path) -> Option<Outcome> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.splitn(3, ' ');
    let generation = parts.next()?.parse().ok()?;
    match parts.next()? {
        "ok" => Some(Outcome {
            generation,
            refused: None,
        }),
        "refused" => Some(Outcome {
            generation,
            refused: Some(parts.next().unwrap_or("").to_owned()),
        }),
        _ => None,
    }
}

/// Why `smtp-sensor reload` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadCommandError {
    #[error(
        "RUNTIME_DIRECTORY is not set: run this from the unit's ExecReload= (RuntimeDirectory=)"
    )]
    NoRuntimeDirectory,
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("the sensor refused the new configuration (the old one stays in force): {0}")]
    Refused(String),
    #[error("no answer from process {0} within {1:?} (is it a smtp-sensor?)")]
    Timeout(i32, Duration),
}

/// `smtp-sensor reload <pid>`: SIGHUP to `pid`, then wait for its outcome
/// (see the module doc).
pub fn reload_command(pid: i32, timeout: Duration) -> Result<(), ReloadCommandError> {
    let dir =
        std::env::var_os("RUNTIME_DIRECTORY").ok_or(ReloadCommandError::NoRuntimeDirectory)?;
    let dir = PathBuf::from(dir.to_string_lossy().split(':').next().unwrap_or(""));
    reload_and_wait(pid, &dir.join(RELOAD_FILE), timeout)
}

fn reload_and_wait(pid: i32, file: &Path, timeout: Duration) -> Result<(), ReloadCommandError> {
    let before = read_outcome(file).map(|o| o.generation);
    let mtime = || {
        fs::metadata(file)
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec(), m.ino()))
    };
    let before_stamp = mtime();
    // SAFETY: kill(2) with a plain pid and signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ReloadCommandError::Signal {
            pid,
            source: io::Error::last_os_error(),
        });
    }
    let started = Instant::now();
    while started.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
        if mtime() == before_stamp {
            continue;
        }
        if let Some(o) = read_outcome(file)
            && Some(o.generation) != before
        {
            return match o.refused {
                None => Ok(()),
                Some(why) => Err(ReloadCommandError::Refused(why)),
            };
        }
    }
    Err(ReloadCommandError::Timeout(pid, timeout))
}

/// Initialises `log` on stderr at `level` (overridden by `RUST_LOG`).
/// When stderr is the journal (`JOURNAL_STREAM` names its device and
/// inode), each line starts with its syslog priority (`<3>` for errors),
/// which journald reads and strips: `journalctl -p err` finds errors.
pub fn init_logging(level: &str) {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    b.target(env_logger::Target::Stderr);
    if stderr_is_journal() {
        b.format(|out, record| {
            writeln!(
                out,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            )
        });
    }
    let _ = b.try_init();
}

/// The prefix for a line written to stderr outside `log` (main's fatal
/// errors): `<3>` when stderr is the journal, nothing otherwise.
pub fn error_prefix() -> &'static str {
    if stderr_is_journal() { "<3>" } else { "" }
}

/// syslog priority of a log level.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `JOURNAL_STREAM=<dev>:<inode>` matches stderr (systemd.exec(5)): not
/// inherited by a child whose stderr was redirected elsewhere.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat on fd 2 into a properly sized buffer.
    if unsafe { libc::fstat(libc::STDERR_FILENO, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("smtp-sensor-service-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn outcomes_round_trip() {
        let d = scratch("roundtrip");
        write_outcome(&d, 3, Ok(())).unwrap();
        assert_eq!(
            read_outcome(&d.join(RELOAD_FILE)),
            Some(Outcome {
                generation: 3,
                refused: None
            })
        );
        write_outcome(&d, 4, Err("bad value\nfor spam_threshold")).unwrap();
        assert_eq!(
            read_outcome(&d.join(RELOAD_FILE)),
            Some(Outcome {
                generation: 4,
                refused: Some("bad value for spam_threshold".into())
            })
        );
        fs::write(d.join(RELOAD_FILE), "garbage").unwrap();
        assert_eq!(read_outcome(&d.join(RELOAD_FILE)), None);
        fs::remove_dir_all(&d).unwrap();
    }

    /// The waiting side against a process that answers SIGHUP the way the
    /// sensor does (a child shell writing the file), refusing once.
    #[test]
    fn reload_waits_for_the_answer_and_fails_on_a_refusal() {
        let d = scratch("wait");
        let file = d.join(RELOAD_FILE);
        let script = format!(
            "n=0; trap 'n=$((n+1)); if [ $n = 1 ]; then echo \"$n ok\"; else echo \"$n refused bad config\"; fi > {f}.t && mv {f}.t {f}' HUP; \
             echo up > {d}/up; while :; do sleep 0.05; done",
            f = file.display(),
            d = d.display()
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let t0 = Instant::now();
        while !d.join("up").exists() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = reload_and_wait(pid, &file, Duration::from_secs(10));
        let second = reload_and_wait(pid, &file, Duration::from_secs(10));
        let _ = child.kill();
        let _ = child.wait();
        assert!(first.is_ok(), "{first:?}");
        match second {
            Err(ReloadCommandError::Refused(why)) => assert_eq!(why, "bad config"),
            other => panic!("{other:?}"),
        }
        // The process is gone: an error naming it, not a hang.
        let err = reload_and_wait(pid, &file, Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        // Not under the journal in a test run.
        if std::env::var_os("JOURNAL_STREAM").is_none() {
            assert_eq!(error_prefix(), "");
        }
    }
}
