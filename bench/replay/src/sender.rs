//! The replayer's XDP program in the kernel: loaded with the frame table in
//! its maps, and run with `BPF_PROG_RUN` + `BPF_F_TEST_XDP_LIVE_FRAMES` on
//! the sending interface, `repeat` frames of one lane per call.
//!
//! Facts this relies on (kernel ≥ 5.18, see ../shared/LIVE-FRAMES.md): the
//! context is an `xdp_md` with `data_end = data_size_in` and
//! `ingress_ifindex` set (live-frame runs see `rx_queue_index` 0 whatever
//! is passed, so the lane of a call is set in a map first); `XDP_TX`
//! hands the frame to the veth peer, which must run an XDP program of its
//! own (the sensor's); the peer queue is the sending CPU modulo the peer's
//! queue count, so a lane's calls run on the CPU of its queue; each call
//! sets up a page pool (tens of milliseconds), so calls are large.

use std::ffi::CString;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use sensor_common::replay::{
    self, CHUNK_BYTES, Chunk, FrameRef, GLOBAL_BASE_LEN, GLOBAL_SHIFT, Lane, MAX_LANES,
    ReplayCounter,
};

use crate::table::FrameTable;

/// The program object built by `build.rs` (empty without the eBPF
/// toolchain).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/replay-xdp"));

/// Frames per kernel batch inside one call by default. The peer veth
/// queue holds 256 frames; batches of 64 leave the receiving NAPI room
/// between batches, where the kernel's maximum (256) overflows it now and
/// then (`tx_queue_*_xdp_xmit_errors` in `ethtool -S`).
pub const KERNEL_BATCH: u32 = 64;

/// What can go wrong in the kernel part.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "this smtp-replay was built without the eBPF toolchain; run `cargo xtask setup` and rebuild"
    )]
    NotBuilt,
    #[error(
        "loading the replay program: {0} (needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN)"
    )]
    Load(Box<aya::EbpfError>),
    #[error("the replay program or its map {0} is missing from the object")]
    Missing(&'static str),
    #[error("the verifier refused the replay program: {0}")]
    Verifier(Box<ProgramError>),
    #[error("filling map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("no interface {0} (in this network namespace)")]
    Interface(String),
    #[error(
        "BPF_PROG_RUN failed: {0} (live-frame runs need kernel >= 5.18 and an XDP program on the peer end)"
    )]
    Run(Box<ProgramError>),
    #[error("cannot pin the sender to CPU {cpu}: {source}")]
    Pin { cpu: usize, source: std::io::Error },
}

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// All `repeat` frames were run.
    Done,
    /// A signal interrupted the call (SIGINT): stop.
    Interrupted,
}

/// The loaded program and its maps.
pub struct Sender {
    ebpf: Ebpf,
    ifindex: u32,
    base_len: u32,
    lanes: u32,
    batch: u32,
}

impl Sender {
    /// Loads the program for sending `table` out of `iface`; `shift`: new
    /// addresses on every pass after the first.
    pub fn load(
        table: &FrameTable,
        iface: &str,
        shift: bool,
        batch: u32,
    ) -> Result<Sender, SendError> {
        if OBJECT.is_empty() {
            return Err(SendError::NotBuilt);
        }
        let ifindex = ifindex(iface)?;
        // Every run starts from a frame of the longest frame's length, cut
        // down per frame.
        let base_len = table.longest.max(64);
        let chunks = u32::try_from(table.chunks().max(1)).unwrap_or(u32::MAX);
        let frames = u32::try_from(table.frames.len().max(1)).unwrap_or(u32::MAX);
        let ebpf = EbpfLoader::new()
            .map_max_entries(replay::CHUNKS, chunks)
            .map_max_entries(replay::FRAMES, frames)
            .override_global(GLOBAL_BASE_LEN, &base_len, true)
            .override_global(GLOBAL_SHIFT, &u32::from(shift), true)
            .load(OBJECT)
            .map_err(|e| SendError::Load(Box::new(e)))?;
        let mut s = Sender {
            ebpf,
            ifindex,
            base_len,
            lanes: table.lanes.len() as u32,
            batch,
        };
        s.fill(table)?;
        let prog: &mut Xdp = s
            .ebpf
            .program_mut(replay::PROGRAM_NAME)
            .ok_or(SendError::Missing(replay::PROGRAM_NAME))?
            .try_into()
            .map_err(|_| SendError::Missing(replay::PROGRAM_NAME))?;
        prog.load().map_err(|e| SendError::Verifier(Box::new(e)))?;
        Ok(s)
    }

    fn map(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, SendError> {
        self.ebpf.map_mut(name).ok_or(SendError::Missing(name))
    }

    fn fill(&mut self, table: &FrameTable) -> Result<(), SendError> {
        let mut chunks: Array<&mut MapData, Chunk> =
            Array::try_from(self.map(replay::CHUNKS)?).map_err(map_err(replay::CHUNKS))?;
        for i in 0..table.chunks() {
            let Some(bytes) = table.chunk(i) else { break };
            // SAFETY: `Chunk` is `#[repr(C)]` around `[u8; CHUNK_BYTES]`:
            // same size, alignment 1, any bit pattern valid.
            let chunk: &Chunk = unsafe { &*(bytes as *const [u8; CHUNK_BYTES]).cast::<Chunk>() };
            chunks
                .set(i as u32, chunk, 0)
                .map_err(map_err(replay::CHUNKS))?;
        }
        let mut frames: Array<&mut MapData, FrameRef> =
            Array::try_from(self.map(replay::FRAMES)?).map_err(map_err(replay::FRAMES))?;
        for (i, f) in table.frames.iter().enumerate() {
            frames
                .set(i as u32, f, 0)
                .map_err(map_err(replay::FRAMES))?;
        }
        for (i, &(first, count)) in table.lanes.iter().enumerate().take(MAX_LANES as usize) {
            let lane = Lane {
                first,
                count,
                ..Lane::default()
            };
            self.set_lane(i as u32, lane)?;
        }
        Ok(())
    }

    fn lane(&mut self, lane: u32) -> Result<Lane, SendError> {
        let lanes: Array<&mut MapData, Lane> =
            Array::try_from(self.map(replay::LANES)?).map_err(map_err(replay::LANES))?;
        lanes.get(&lane, 0).map_err(map_err(replay::LANES))
    }

    fn set_lane(&mut self, i: u32, lane: Lane) -> Result<(), SendError> {
        let mut lanes: Array<&mut MapData, Lane> =
            Array::try_from(self.map(replay::LANES)?).map_err(map_err(replay::LANES))?;
        lanes.set(i, lane, 0).map_err(map_err(replay::LANES))
    }

    /// Paces `lane` at one burst of `burst` frames per `interval_ns` from
    /// now on, catching up at most `max_lag_ns` behind the schedule.
    pub fn pace(
        &mut self,
        lane: u32,
        interval_ns: u64,
        burst: u32,
        max_lag_ns: u64,
    ) -> Result<(), SendError> {
        let mut l = self.lane(lane)?;
        l.interval_ns = interval_ns;
        l.burst = burst.max(1);
        l.burst_left = 0;
        l.max_lag_ns = max_lag_ns;
        l.next_ns = monotonic_ns();
        self.set_lane(lane, l)
    }

    /// Runs the program `runs` times on `lane`, which sends at most
    /// `budget` frames (a lane that is not paced sends on every run).
    /// Returns how the call ended and the frames it sent (read back from
    /// the program: right also when a signal cut the call short). The
    /// calling thread must run on the lane's CPU.
    pub fn send(&mut self, lane: u32, budget: u64, runs: u32) -> Result<(CallEnd, u64), SendError> {
        if runs == 0 {
            return Ok((CallEnd::Done, 0));
        }
        let mut l = self.lane(lane)?;
        let before = l.sent;
        l.budget = budget;
        self.set_lane(lane, l)?;
        let mut current: Array<&mut MapData, u32> =
            Array::try_from(self.map(replay::CURRENT_LANE)?)
                .map_err(map_err(replay::CURRENT_LANE))?;
        current
            .set(0, lane, 0)
            .map_err(map_err(replay::CURRENT_LANE))?;
        let prog: &Xdp = self
            .ebpf
            .program(replay::PROGRAM_NAME)
            .ok_or(SendError::Missing(replay::PROGRAM_NAME))?
            .try_into()
            .map_err(|_| SendError::Missing(replay::PROGRAM_NAME))?;
        let data = vec![0u8; self.base_len as usize];
        let ctx = xdp_md(self.base_len, self.ifindex);
        let opts = TestRunOptions {
            data_in: Some(&data),
            ctx_in: Some(&ctx),
            repeat: runs,
            attrs: TestRunAttrs::new().xdp_live_frames(self.batch),
            ..TestRunOptions::new()
        };
        let end = match prog.test_run(opts) {
            Ok(_) => CallEnd::Done,
            Err(e) if is_eintr(&e) => CallEnd::Interrupted,
            Err(e) => return Err(SendError::Run(Box::new(e))),
        };
        let after = self.lane(lane)?.sent;
        Ok((end, after.saturating_sub(before)))
    }

    /// Frames produced so far on each lane (the program's positions).
    pub fn lane_sent(&self) -> Result<Vec<u64>, SendError> {
        let map = self
            .ebpf
            .map(replay::LANES)
            .ok_or(SendError::Missing(replay::LANES))?;
        let lanes: Array<&MapData, Lane> = Array::try_from(map).map_err(map_err(replay::LANES))?;
        (0..self.lanes)
            .map(|i| {
                lanes
                    .get(&i, 0)
                    .map(|l| l.sent)
                    .map_err(map_err(replay::LANES))
            })
            .collect()
    }

    /// The program's counters, summed over CPUs, in [`ReplayCounter::ALL`]
    /// order.
    pub fn counters(&self) -> Result<[u64; ReplayCounter::COUNT as usize], SendError> {
        let map = self
            .ebpf
            .map(replay::COUNTERS)
            .ok_or(SendError::Missing(replay::COUNTERS))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err(replay::COUNTERS))?;
        let mut out = [0u64; ReplayCounter::COUNT as usize];
        for (slot, c) in out.iter_mut().zip(ReplayCounter::ALL) {
            let per_cpu = arr.get(&c.index(), 0).map_err(map_err(replay::COUNTERS))?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(out)
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SendError {
    move |e| SendError::Map {
        map,
        source: Box::new(e),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// `struct xdp_md` for `ctx_in`: data 0, data_end = frame length, no
/// metadata, the sending interface, rx queue 0.
fn xdp_md(len: u32, ifindex: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    let fields = [0, len, 0, ifindex, 0, 0];
    for (dst, v) in b.chunks_exact_mut(4).zip(fields) {
        dst.copy_from_slice(&v.to_ne_bytes());
    }
    b
}

fn is_eintr(e: &ProgramError) -> bool {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::EINTR),
        _ => false,
    }
}

/// The index of `iface` in this network namespace.
pub fn ifindex(iface: &str) -> Result<u32, SendError> {
    let name = CString::new(iface).map_err(|_| SendError::Interface(iface.to_owned()))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        return Err(SendError::Interface(iface.to_owned()));
    }
    Ok(i)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> Result<(), SendError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(SendError::Pin {
            cpu,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
