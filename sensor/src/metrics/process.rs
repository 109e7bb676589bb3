//! The standard `process_*` metrics (the names every Prometheus client
//! library exports, so the usual dashboards and alerts work): start time,
//! CPU seconds, resident memory, open and maximum file descriptors, read
//! from `/proc/self` at scrape time.
//!
//! A value `/proc` does not give (another kernel, a hardened mount) is
//! left out of the exposition rather than reported as 0.

use std::fs;

/// One reading of the process's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Seconds since the Unix epoch when the process started.
    pub start_time_secs: Option<f64>,
    /// User plus system CPU time, in seconds.
    pub cpu_secs: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// File descriptors open now.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`.
    pub fn read() -> ProcessStats {
        // SAFETY: sysconf only reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let mut p = parse_stat(
            &stat,
            u64::try_from(ticks).ok().filter(|t| *t > 0),
            u64::try_from(page).ok().filter(|p| *p > 0),
            boot,
        );
        p.open_fds = fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        p.max_fds = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| max_open_files(&s));
        p
    }
}

/// The fields of `/proc/self/stat` (proc(5)) after the command name, which
/// is in parentheses and may itself hold spaces and parentheses: split at
/// the last `)`. Field 14 utime, 15 stime, 22 starttime (all in clock
/// ticks), 23 vsize (bytes), 24 rss (pages).
fn parse_stat(
    stat: &str,
    ticks: Option<u64>,
    page: Option<u64>,
    boot: Option<u64>,
) -> ProcessStats {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return ProcessStats::default();
    };
    // `rest` starts with field 3 (state).
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    let ticks_f = ticks.map(|t| t as f64);
    let cpu = match (field(14), field(15), ticks_f) {
        (Some(u), Some(s), Some(t)) => Some((u.saturating_add(s)) as f64 / t),
        _ => None,
    };
    let start = match (field(22), ticks_f, boot) {
        (Some(st), Some(t), Some(b)) => Some(b as f64 + st as f64 / t),
        _ => None,
    };
    ProcessStats {
        start_time_secs: start,
        cpu_secs: cpu,
        resident_bytes: field(24).zip(page).map(|(r, p)| r.saturating_mul(p)),
        virtual_bytes: field(23),
        open_fds: None,
        max_fds: None,
    }
}

/// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/self/limits` (None when
/// unlimited or unreadable).
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        // A name with spaces and a ')' of its own; fields as in proc(5).
        let mut fields = vec!["0"; 50];
        fields[0] = "S"; // field 3
        fields[14 - 3] = "250"; // utime
        fields[15 - 3] = "150"; // stime
        fields[22 - 3] = "1000"; // starttime
        fields[23 - 3] = "4096000"; // vsize
        fields[24 - 3] = "300"; // rss
        let stat = format!("1234 (evil) name ) {}", fields.join(" "));
        let p = parse_stat(&stat, Some(100), Some(4096), Some(1_700_000_000));
        assert_eq!(p.cpu_secs, Some(4.0));
        assert_eq!(p.start_time_secs, Some(1_700_000_010.0));
        assert_eq!(p.resident_bytes, Some(300 * 4096));
        assert_eq!(p.virtual_bytes, Some(4_096_000));
    }

    #[test]
    fn garbage_gives_nothing_not_zero() {
        let p = parse_stat("no parenthesis here", Some(100), Some(4096), Some(1));
        assert_eq!(p, ProcessStats::default());
        let p = parse_stat("1 (x) S 1 2", Some(100), Some(4096), Some(1));
        assert_eq!(p.cpu_secs, None);
        assert_eq!(p.resident_bytes, None);
        assert_eq!(boot_time("cpu 1 2 3\nbtime x\n"), None);
        assert_eq!(
            max_open_files("Max open files unlimited unlimited files\n"),
            None
        );
    }

    #[test]
    fn this_process_reads_sensibly() {
        let p = ProcessStats::read();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_secs.expect("start time");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert!(p.cpu_secs.expect("cpu") >= 0.0);
        assert!(p.resident_bytes.expect("rss") > 1 << 20);
        assert!(p.open_fds.expect("fds") >= 3);
        assert!(p.max_fds.expect("limit") >= p.open_fds.unwrap_or(0));
    }
}
