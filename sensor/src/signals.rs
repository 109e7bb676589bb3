//! Signals as flags: handlers only raise an `AtomicBool` (async-signal
//! safe), and the threads that care look at it when it suits them.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A flag raised by SIGINT or SIGTERM: stop, flushing everything. A second
/// signal while stopping changes nothing (the flag stays raised).
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    flag(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
}

/// A flag raised by SIGHUP: reopen the logs, reload the configuration.
/// Whoever acts on it lowers it again.
pub fn hup_flag() -> io::Result<Arc<AtomicBool>> {
    flag(&[signal_hook::consts::SIGHUP])
}

fn flag(signals: &[i32]) -> io::Result<Arc<AtomicBool>> {
    let f = Arc::new(AtomicBool::new(false));
    for &sig in signals {
        signal_hook::flag::register(sig, Arc::clone(&f))?;
    }
    Ok(f)
}
