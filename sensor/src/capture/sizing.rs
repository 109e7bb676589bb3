//! How big each AF_XDP socket's UMEM and rings are, and how many frames a
//! capture thread takes per batch.
//!
//! The UMEM is the only buffer between the wire and the sensor: when the
//! capture thread is late (scheduled out, a slow record, a burst), frames
//! wait in it, and when it is full the kernel drops. So the default is
//! sized from the link, not fixed:
//!
//! ```text
//! frames = pow2_ceil(link bit rate × BURST / (8 × SMALL_FRAME))
//! ```
//!
//! enough to absorb [`BURST_MS`] (40 ms) of the link's line rate in the small
//! frames SMTP traffic is mostly made of ([`SMALL_FRAME`] bytes: handshakes,
//! ACKs, commands and replies), per queue (a burst of one busy connection
//! lands on one queue). The link rate comes from the interface
//! (`/sys/class/net/<if>/speed`; 10 Gbit/s when it does not say). Each
//! frame of UMEM is 2 KiB when the MTU fits in one (the kernel keeps 256
//! bytes of headroom in each), else 4 KiB. The total over all queues stays
//! within the memory budget: a sixteenth of the machine's memory, and half
//! of `RLIMIT_MEMLOCK` when that applies (UMEM is locked memory; a process
//! with `CAP_IPC_LOCK` is exempt, the systemd unit lifts the limit). The
//! fill and rx rings have as many entries as the UMEM has frames.
//!
//! On a 10 Gbit/s link with a 1500-byte MTU that is 262 144 frames of 2 KiB
//! (512 MiB) per queue: 40 ms of 4.9 Mpps. `--umem-frames` overrides it.
//!
//! Why 40 ms: on the project's 2-core VM the capture thread is now and then
//! held off its core for tens of milliseconds (the hypervisor, kernel
//! threads); at 2 Mpps 10 ms (65 536 frames, 33 ms there) lost frames in
//! two top-speed runs of three at 79–91 % of the core, 262 144 in none of
//! three (docs/PERFORMANCE.md, session 7). The memory is what a sensor host
//! can spare; the budget below caps it on a small one.

use super::error::CaptureError;

/// Time of line rate the UMEM absorbs by default.
pub const BURST_MS: u64 = 40;
/// Frame size the default is computed for: SMTP traffic is mostly small
/// frames (≈ 250 bytes on average on a mail link).
pub const SMALL_FRAME: u64 = 256;
/// Link rate assumed when the interface does not report one.
pub const DEFAULT_LINK_MBPS: u64 = 10_000;
/// Fewest and most UMEM frames per queue.
pub const MIN_FRAMES: u32 = 4096;
pub const MAX_FRAMES: u32 = 1 << 20;
/// Headroom the kernel keeps in front of each frame in a UMEM chunk
/// (`XDP_PACKET_HEADROOM`); the flow-hash metadata lives in it.
pub const KERNEL_HEADROOM: u32 = 256;
/// Default number of frames read from the rx ring at once: the largest,
/// which amortises the ring and clock work best at high rates and costs
/// nothing at low ones (a batch is whatever is there).
pub const DEFAULT_BATCH: u32 = 256;
/// Largest batch (`--batch`).
pub const MAX_BATCH: u32 = 256;

/// Sizing of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskSizing {
    /// UMEM frames; also the fill and rx ring sizes. A power of two.
    pub umem_frames: u32,
    /// Bytes per UMEM frame (2048 or 4096).
    pub frame_size: u32,
    /// Frames read per batch.
    pub batch: u32,
}

impl Default for XskSizing {
    /// The sizing for an unknown 10 Gbit/s link with a 1500-byte MTU.
    fn default() -> Self {
        XskSizing::for_link(&Link::default(), 1)
    }
}

/// What the sizing depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Link rate in Mbit/s, when the interface reports one.
    pub speed_mbps: Option<u64>,
    pub mtu: u32,
    /// Physical memory of the machine.
    pub mem_bytes: u64,
    /// `RLIMIT_MEMLOCK`, when it applies (limited, and the process lacks
    /// `CAP_IPC_LOCK`, which exempts UMEM from it).
    pub memlock_bytes: Option<u64>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            speed_mbps: None,
            mtu: 1500,
            mem_bytes: 8 << 30,
            memlock_bytes: None,
        }
    }
}

impl Link {
    /// Reads `iface`'s speed and MTU from sysfs and the memory limits.
    pub fn of(iface: &str) -> Link {
        let sys = |f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{iface}/{f}"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        Link {
            // Virtual and unplugged interfaces report -1 or nothing.
            speed_mbps: sys("speed").filter(|&s| s > 0).map(|s| s as u64),
            mtu: sys("mtu")
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(1500),
            mem_bytes: physical_memory().unwrap_or(Link::default().mem_bytes),
            memlock_bytes: memlock_limit().filter(|_| !has_cap_ipc_lock()),
        }
    }
}

impl XskSizing {
    /// The default sizing of each of `queues` sockets on `link` (see the
    /// module documentation for the rule).
    pub fn for_link(link: &Link, queues: u32) -> XskSizing {
        let frame_size = frame_size_for_mtu(link.mtu);
        let mbps = link.speed_mbps.unwrap_or(DEFAULT_LINK_MBPS);
        let wanted = (mbps * 1_000_000 / 1000 * BURST_MS / (8 * SMALL_FRAME))
            .clamp(u64::from(MIN_FRAMES), u64::from(MAX_FRAMES));
        let mut budget = link.mem_bytes / 16;
        if let Some(l) = link.memlock_bytes {
            budget = budget.min(l / 2);
        }
        let per_queue = budget / u64::from(queues.max(1)) / u64::from(frame_size);
        // Round the burst need up, then down to what the budget allows.
        let frames = wanted
            .next_power_of_two()
            .min(pow2_floor(per_queue).max(64));
        XskSizing {
            umem_frames: frames.clamp(64, u64::from(MAX_FRAMES)) as u32,
            frame_size,
            batch: DEFAULT_BATCH,
        }
    }

    /// Bytes of UMEM per socket.
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.umem_frames) * u64::from(self.frame_size)
    }

    /// Checks the values the kernel would reject, with a readable message.
    pub fn validate(&self) -> Result<(), CaptureError> {
        if !self.umem_frames.is_power_of_two() || !(64..=MAX_FRAMES).contains(&self.umem_frames) {
            return Err(CaptureError::Option(format!(
                "--umem-frames {} must be a power of two between 64 and {MAX_FRAMES}",
                self.umem_frames
            )));
        }
        if self.batch == 0 || self.batch > MAX_BATCH || self.batch > self.umem_frames / 2 {
            return Err(CaptureError::Option(format!(
                "--batch {} must be between 1 and {MAX_BATCH}, and at most half of --umem-frames",
                self.batch
            )));
        }
        if !matches!(self.frame_size, 2048 | 4096) {
            return Err(CaptureError::Option(format!(
                "UMEM frames of {} bytes: 2048 or 4096 only",
                self.frame_size
            )));
        }
        Ok(())
    }
}

/// 2 KiB frames when an MTU-sized frame (Ethernet header, two VLAN tags)
/// fits after the kernel's headroom, else 4 KiB.
pub fn frame_size_for_mtu(mtu: u32) -> u32 {
    if mtu + 14 + 8 <= 2048 - KERNEL_HEADROOM {
        2048
    } else {
        4096
    }
}

fn pow2_floor(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}

/// `CAP_IPC_LOCK` in the effective set (`/proc/self/status`).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(speed: Option<u64>, mtu: u32) -> Link {
        Link {
            speed_mbps: speed,
            mtu,
            mem_bytes: 24 << 30,
            memlock_bytes: None,
        }
    }

    #[test]
    fn ten_gigabit_holds_forty_milliseconds_of_small_frames() {
        let s = XskSizing::for_link(&link(Some(10_000), 1500), 1);
        assert_eq!(s.frame_size, 2048);
        // 40 ms of 10 Gbit/s in 256-byte frames: 195 312, rounded up.
        assert_eq!(s.umem_frames, 262_144);
        assert_eq!(s.umem_bytes(), 512 << 20);
        assert_eq!(s.batch, DEFAULT_BATCH);
        assert!(s.validate().is_ok());
        // Unknown speed: as 10 Gbit/s.
        assert_eq!(XskSizing::for_link(&link(None, 1500), 1), s);
    }

    #[test]
    fn slower_and_faster_links_scale_within_bounds() {
        let one_g = XskSizing::for_link(&link(Some(1000), 1500), 1);
        assert_eq!(one_g.umem_frames, 32_768);
        let tiny = XskSizing::for_link(&link(Some(10), 1500), 1);
        assert_eq!(tiny.umem_frames, MIN_FRAMES);
        let hundred_g = XskSizing::for_link(&link(Some(100_000), 1500), 1);
        assert_eq!(hundred_g.umem_frames, 1 << 19);
    }

    #[test]
    fn jumbo_mtus_need_page_frames() {
        assert_eq!(frame_size_for_mtu(1500), 2048);
        assert_eq!(frame_size_for_mtu(1770), 2048);
        assert_eq!(frame_size_for_mtu(1771), 4096);
        assert_eq!(
            XskSizing::for_link(&link(Some(10_000), 9000), 1).frame_size,
            4096
        );
    }

    #[test]
    fn memory_budget_caps_the_total_over_queues() {
        // 1 GiB of memory: 64 MiB budget; 4 queues of 2 KiB frames get
        // 8192 frames each.
        let small = Link {
            mem_bytes: 1 << 30,
            ..link(Some(10_000), 1500)
        };
        let s = XskSizing::for_link(&small, 4);
        assert_eq!(s.umem_frames, 8192);
        assert!(s.umem_bytes() * 4 <= 64 << 20);
        // A memlock limit of 16 MiB: 8 MiB of UMEM.
        let locked = Link {
            memlock_bytes: Some(16 << 20),
            ..link(Some(10_000), 1500)
        };
        assert_eq!(XskSizing::for_link(&locked, 1).umem_frames, 4096);
        // Never below 64 frames, whatever the budget.
        let none = Link {
            memlock_bytes: Some(0),
            ..link(Some(10_000), 1500)
        };
        assert_eq!(XskSizing::for_link(&none, 1).umem_frames, 64);
    }

    #[test]
    fn sizing_rejects_what_the_kernel_would() {
        let ok = XskSizing::default();
        assert!(ok.validate().is_ok());
        let bad = XskSizing {
            umem_frames: 1000,
            ..ok
        };
        assert!(bad.validate().is_err());
        let bad_batch = XskSizing {
            umem_frames: 128,
            batch: 65,
            ..ok
        };
        assert!(bad_batch.validate().is_err());
        let bad_frame = XskSizing {
            frame_size: 3000,
            ..ok
        };
        assert!(bad_frame.validate().is_err());
    }
}
