//! Where and how eagerly threads run. CPU pinning (`--cpus`): capture
//! threads and workers on fixed cores keep their caches warm and let an
//! operator keep the sensor off the cores that serve other work (or on the
//! cores that take the NIC's interrupts). Priority: threads whose work can
//! wait (the log writer) yield to those that cannot (capture).

use std::fmt;
use std::str::FromStr;

/// A list of CPUs in the kernel's cpulist syntax: `0-3,6,8-9`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            let bad = || format!("bad CPU list {s:?}: expected e.g. 0-3,6");
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| bad())?;
            let hi: usize = hi.parse().map_err(|_| bad())?;
            if lo > hi || hi >= libc::CPU_SETSIZE as usize {
                return Err(bad());
            }
            cpus.extend(lo..=hi);
        }
        if cpus.is_empty() {
            return Err(format!("bad CPU list {s:?}: no CPU"));
        }
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl CpuList {
    /// The CPU of the `n`th pinned thread (round robin), if any were given.
    pub fn nth(&self, n: usize) -> Option<usize> {
        match self.0.len() {
            0 => None,
            len => self.0.get(n % len).copied(),
        }
    }
}

/// Pins the calling thread to `cpu`. A failure (a CPU outside the allowed
/// cpuset, an offline CPU) is logged and capture goes on unpinned.
pub fn pin_current_thread(cpu: usize, what: &str) {
    if cpu >= libc::CPU_SETSIZE as usize {
        log::warn!("cannot pin {what} to CPU {cpu}: beyond CPU_SETSIZE");
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; `cpu` is below
    // CPU_SETSIZE, so CPU_SET stays in bounds.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        log::debug!("{what} pinned to CPU {cpu}");
    } else {
        log::warn!(
            "cannot pin {what} to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Nice value of threads that must yield to capture, where the kernel
/// refuses `SCHED_IDLE` ([`yield_to_capture`]).
pub const BACKGROUND_NICE: i32 = 10;

/// Puts the calling thread in the `SCHED_IDLE` class, for work that can
/// wait while capture cannot: the live log writer. It shares a core with
/// a capture thread on small machines and formats a second's records in
/// one go. At the same priority the scheduler let it run for tens of
/// milliseconds while the capture thread, woken by new frames, waited;
/// at nice 10 it still ran up to 20 ms at a stretch under EEVDF
/// (`perf sched timehist` at 1.7 Mpps), long enough to fill the UMEM in
/// bursts. A `SCHED_IDLE` thread runs only on CPU time no normal thread
/// wants and is preempted as soon as capture wakes; if capture leaves too
/// little, the record budget drops records (counted), never frames.
/// Needs no privilege; should the kernel refuse, the thread falls back to
/// nice [`BACKGROUND_NICE`], and a failure of that is logged and ignored.
pub fn yield_to_capture(what: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: gettid has no preconditions; sched_setscheduler and
    // setpriority with a thread id affect only that thread on Linux, and
    // `param` outlives the call.
    let rc = unsafe {
        let tid = libc::gettid();
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0 {
            return;
        }
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE)
    };
    if rc != 0 {
        log::debug!(
            "cannot lower the priority of {what}: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpulist_syntax() {
        assert_eq!("0-3,6".parse(), Ok(CpuList(vec![0, 1, 2, 3, 6])));
        assert_eq!(" 2 , 4-5".parse(), Ok(CpuList(vec![2, 4, 5])));
        for bad in ["", "a", "3-1", "1-", "0,,1", "99999"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn threads_take_cpus_round_robin() {
        let l = CpuList(vec![4, 6]);
        assert_eq!((l.nth(0), l.nth(1), l.nth(2)), (Some(4), Some(6), Some(4)));
        assert_eq!(CpuList::default().nth(0), None);
    }

    #[test]
    fn pinning_to_an_allowed_cpu_sticks() {
        pin_current_thread(0, "test thread");
        // SAFETY: reads this thread's affinity into a zeroed set.
        let (on0, count) = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (libc::CPU_ISSET(0, &set), libc::CPU_COUNT(&set))
        };
        assert!(on0 && count == 1, "on CPU 0: {on0}, CPUs allowed: {count}");
    }
}
