//! One AF_XDP socket bound to one rx queue: its UMEM (an anonymous mapping
//! split into frames), the fill ring kept full, the rx ring read in
//! batches, `need_wakeup` handling and the socket statistics.
//!
//! Each queue has its own UMEM, so a capture thread owns everything it
//! touches and shares nothing with other queues. Zero-copy is tried first;
//! drivers without it (veth, generic XDP) get copy mode.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use sensor_common::flowhash::FrameMeta;

use super::Frame;
use super::error::CaptureError;
pub use super::sizing::{MAX_BATCH, XskSizing};
use crate::net::Ts;

/// Completion ring entries (the sensor never transmits; the kernel still
/// requires the ring).
const COMPLETION_ENTRIES: u32 = 64;

/// How a socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMode {
    ZeroCopy,
    Copy,
}

impl CopyMode {
    /// Operator-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMode::ZeroCopy => "zero-copy",
            CopyMode::Copy => "copy",
        }
    }
}

/// Socket statistics (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the kernel dropped for this socket (rx ring or fill ring).
    pub rx_dropped: u64,
    /// Frames dropped because the rx ring was full (userspace too slow).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub fill_ring_empty: u64,
    /// Invalid rx descriptors.
    pub rx_invalid_descs: u64,
}

/// An anonymous, page-aligned mapping holding the UMEM frames.
struct MmapArea {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes per UMEM frame (chunk).
    frame_size: usize,
}

impl MmapArea {
    fn new(len: usize, frame_size: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping, no file; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(MmapArea {
            ptr,
            len,
            frame_size,
        })
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The flow hash the XDP program put in front of the frame at `addr`,
    /// if it did; clears the marker so a later frame in the same chunk
    /// never finds a stale one.
    ///
    /// Same rule as [`MmapArea::frame`]: only for a descriptor userspace
    /// owns.
    fn take_meta(&self, addr: u64) -> Option<u32> {
        let start = usize::try_from(addr).ok()?;
        // The metadata sits right before the data, inside the same chunk.
        let in_chunk = start % self.frame_size;
        if in_chunk < FrameMeta::LEN || start > self.len {
            return None;
        }
        let at = start - FrameMeta::LEN;
        // SAFETY: `[at, start)` lies inside the mapping (checked above) and
        // in a chunk userspace owns; unaligned reads and writes are fine.
        unsafe {
            let p = self.ptr.as_ptr().add(at).cast::<FrameMeta>();
            let meta = p.read_unaligned();
            if meta.magic != FrameMeta::MAGIC {
                return None;
            }
            p.write_unaligned(FrameMeta::default());
            Some(meta.hash)
        }
    }

    /// The bytes `[addr, addr + len)` of the area, if inside it.
    ///
    /// Only call for descriptors taken from the rx ring and not yet given
    /// back to the fill ring: the kernel does not write those bytes then.
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of a live mapping; see above for
        // why no concurrent write happens while the slice is borrowed.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) })
    }
}

impl Drop for MmapArea {
    fn drop(&mut self) {
        // SAFETY: the mapping created in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The kernel-facing rings of one socket. Dropped before the area (see
/// [`XskSocket`] field order).
pub struct XskRings {
    device: DeviceQueue,
    rx: RingRx,
    user: User,
    // Keeps the UMEM registration alive for the socket's lifetime.
    _umem: Umem,
    /// Chunks owned by userspace and not yet in the fill ring.
    free: Vec<u64>,
    descs: Vec<XdpDesc>,
    batch: u32,
    /// The XDP program puts the flow hash in front of frames: read it.
    meta: bool,
    /// Preferred busy polling is on ([`XskSocket::set_busy_poll`]).
    busy_poll: bool,
}

/// One AF_XDP socket bound to `queue`.
///
/// Moved as a whole into the capture thread of its queue and used only
/// there (hence `Send`, which xdpilone's raw ring pointers do not derive).
pub struct XskSocket {
    pub queue: u32,
    pub mode: CopyMode,
    // Field order matters: the rings (and the socket fd) are dropped before
    // the memory they point into is unmapped.
    pub rings: XskRings,
    area: MmapArea,
}

// SAFETY: every part (UMEM mapping, rings, fds) belongs to this socket
// alone; nothing is shared with another thread, so moving the whole bundle
// to the capture thread is sound.
unsafe impl Send for XskSocket {}

impl XskSocket {
    /// Opens a socket on `iface` rx `queue`: zero-copy if the driver has
    /// it, else copy mode.
    pub fn open(iface: &str, queue: u32, sizing: XskSizing) -> Result<Self, CaptureError> {
        sizing.validate()?;
        match Self::open_mode(iface, queue, sizing, CopyMode::ZeroCopy) {
            Ok(s) => Ok(s),
            Err(e) => {
                log::debug!(
                    "{iface} queue {queue}: zero-copy not available ({e}); using copy mode"
                );
                Self::open_mode(iface, queue, sizing, CopyMode::Copy)
            }
        }
    }

    fn open_mode(
        iface: &str,
        queue: u32,
        sizing: XskSizing,
        mode: CopyMode,
    ) -> Result<Self, CaptureError> {
        let fail = |op: &'static str| {
            let iface = iface.to_string();
            move |e: xdpilone::Errno| {
                let errno = e.get_raw().abs();
                let other = CaptureError::Socket {
                    iface: iface.clone(),
                    queue,
                    op,
                    source: io::Error::from_raw_os_error(errno),
                };
                CaptureError::permission_or(Some(errno), "creating an AF_XDP socket", other)
            }
        };
        let frames = sizing.umem_frames;
        let frame_size = sizing.frame_size;
        let len = frames as usize * frame_size as usize;
        let area =
            MmapArea::new(len, frame_size as usize).map_err(|source| CaptureError::Socket {
                iface: iface.to_string(),
                queue,
                op: "mmap UMEM",
                source,
            })?;
        let config = UmemConfig {
            fill_size: frames,
            complete_size: COMPLETION_ENTRIES,
            frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned, `frames * frame_size` long, and
        // outlives the Umem (field order of XskSocket).
        let umem =
            unsafe { Umem::new(config, area.as_slice_ptr()) }.map_err(fail("UMEM registration"))?;
        let name =
            CString::new(iface).map_err(|_| CaptureError::InterfaceNotFound(iface.to_string()))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name)
            .map_err(|_| CaptureError::InterfaceNotFound(iface.to_string()))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(fail("socket"))?;
        let mut device = umem.fq_cq(&sock).map_err(fail("fill/completion rings"))?;
        let bind_flags = SocketConfig::XDP_BIND_NEED_WAKEUP
            | match mode {
                CopyMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
                CopyMode::Copy => SocketConfig::XDP_BIND_COPY,
            };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(frames),
                    tx_size: None,
                    bind_flags,
                },
            )
            .map_err(fail("rx ring"))?;
        let rx = user.map_rx().map_err(fail("rx ring mmap"))?;
        // Every chunk starts in the fill ring.
        let mut free: Vec<u64> = (0..u64::from(frames))
            .rev()
            .map(|i| i * u64::from(frame_size))
            .collect();
        refill(&mut device, &mut free);
        umem.bind(&user).map_err(fail("bind"))?;
        Ok(XskSocket {
            queue,
            mode,
            rings: XskRings {
                device,
                rx,
                user,
                _umem: umem,
                free,
                descs: Vec::with_capacity(sizing.batch as usize),
                batch: sizing.batch,
                meta: false,
                busy_poll: false,
            },
            area,
        })
    }

    /// Frames taken from the rx ring at most per receive.
    pub fn batch(&self) -> u32 {
        self.rings.batch
    }

    /// Reads the flow hash the XDP program puts in front of frames (when it
    /// was loaded with one).
    pub fn read_flow_hash(&mut self, on: bool) {
        self.rings.meta = on;
    }

    /// The socket's file descriptor, for the XSKS map.
    pub fn fd(&self) -> SocketFd {
        SocketFd(self.rings.user.as_raw_fd())
    }

    /// Takes up to one batch from the rx ring, passes its frames (stamped
    /// `ts`) to `f`, then gives their chunks back to the fill ring. Returns
    /// the number of descriptors taken (0: ring empty). Descriptors pointing
    /// outside the UMEM are skipped and counted in `invalid`.
    pub fn receive_batch(
        &mut self,
        ts: Ts,
        invalid: &mut u64,
        f: impl FnOnce(&[Frame<'_>]),
    ) -> usize {
        let XskSocket { rings, area, .. } = self;
        rings.descs.clear();
        {
            let mut rx = rings.rx.receive(rings.batch);
            while let Some(d) = rx.read() {
                rings.descs.push(d);
            }
            rx.release();
        }
        let taken = rings.descs.len();
        if taken == 0 {
            return 0;
        }
        // A fixed array on the stack: no allocation per batch.
        let mut buf = [Frame {
            ts,
            data: &[],
            flow_hash: None,
        }; MAX_BATCH as usize];
        let mut n = 0;
        for d in &rings.descs {
            match (area.frame(d.addr, d.len), buf.get_mut(n)) {
                (Some(data), Some(slot)) => {
                    slot.data = data;
                    slot.flow_hash = if rings.meta {
                        area.take_meta(d.addr)
                    } else {
                        None
                    };
                    n += 1;
                }
                _ => *invalid += 1,
            }
        }
        f(buf.get(..n).unwrap_or(&[]));
        let mask = !(area.frame_size as u64 - 1);
        rings.free.extend(rings.descs.iter().map(|d| d.addr & mask));
        refill(&mut rings.device, &mut rings.free);
        if rings.device.needs_wakeup() {
            rings.device.wake();
        }
        taken
    }

    /// Turns on preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`
    /// = `usecs`, `SO_BUSY_POLL_BUDGET` = the batch): [`XskSocket::kick`]
    /// then runs the device's receive processing on the calling thread
    /// instead of waiting for its softirq. An error means the kernel or the
    /// socket does not have them (the caller goes on without).
    pub fn set_busy_poll(&mut self, usecs: u32) -> io::Result<()> {
        let fd = self.rings.user.as_raw_fd();
        let budget = self.rings.batch as libc::c_int;
        let usecs = libc::c_int::try_from(usecs).unwrap_or(libc::c_int::MAX);
        for (opt, value) in [
            (libc::SO_PREFER_BUSY_POLL, 1),
            (libc::SO_BUSY_POLL, usecs),
            (libc::SO_BUSY_POLL_BUDGET, budget),
        ] {
            // SAFETY: a valid socket fd and a pointer to an int of the
            // length given.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.rings.busy_poll = true;
        Ok(())
    }

    /// With busy polling on: a non-blocking receive call, which has the
    /// kernel poll the device for this socket; otherwise nothing.
    pub fn kick(&self) {
        if !self.rings.busy_poll {
            return;
        }
        // SAFETY: a zero-length, non-blocking recvfrom on a valid fd.
        unsafe {
            libc::recvfrom(
                self.rings.user.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout_ms` for frames (poll on the socket).
    pub fn wait(&mut self, timeout_ms: i32) {
        if self.rings.device.needs_wakeup() {
            self.rings.device.wake();
        }
        let mut pfd = libc::pollfd {
            fd: self.rings.user.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; errors (EINTR) just end the wait early.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    /// Kernel statistics of the socket.
    pub fn stats(&self) -> Option<SocketStats> {
        let s = self.rings.user.statistics_v2().ok()?;
        Some(SocketStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            fill_ring_empty: s.rx_fill_ring_empty_descs,
            rx_invalid_descs: s.rx_invalid_descs,
        })
    }
}

/// Borrowed socket fd, for `XdpProgram::register_socket`.
pub struct SocketFd(i32);

impl std::os::fd::AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Moves as many free chunks as fit into the fill ring.
fn refill(device: &mut DeviceQueue, free: &mut Vec<u64>) {
    if free.is_empty() {
        return;
    }
    let n = u32::try_from(free.len()).unwrap_or(u32::MAX);
    let mut w = device.fill(n);
    let k = (w.capacity() as usize).min(free.len());
    let start = free.len() - k;
    let inserted = w.insert(free[start..].iter().copied()) as usize;
    w.commit();
    // `insert` took the first `inserted` of `free[start..]`.
    free.drain(start..start + inserted.min(k));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_frame_is_bounds_checked() {
        let area = MmapArea::new(8192, 2048).unwrap();
        assert_eq!(area.frame(0, 64).map(<[u8]>::len), Some(64));
        assert_eq!(area.frame(8192 - 10, 10).map(<[u8]>::len), Some(10));
        assert!(area.frame(8192 - 10, 11).is_none());
        assert!(area.frame(u64::MAX, 1).is_none());
    }

    #[test]
    fn metadata_is_read_once_and_only_when_marked() {
        let area = MmapArea::new(8192, 2048).unwrap();
        // A frame at offset 256 of the second chunk, metadata before it.
        let addr = 2048 + 256;
        assert_eq!(area.take_meta(addr), None);
        let meta = FrameMeta {
            hash: 0xdead_beef,
            magic: FrameMeta::MAGIC,
        };
        // SAFETY: inside the test's own mapping.
        unsafe {
            area.ptr
                .as_ptr()
                .add(addr as usize - FrameMeta::LEN)
                .cast::<FrameMeta>()
                .write_unaligned(meta)
        };
        assert_eq!(area.take_meta(addr), Some(0xdead_beef));
        // Cleared: a later frame in this chunk finds no stale marker.
        assert_eq!(area.take_meta(addr), None);
        // No room for metadata at the very start of a chunk.
        assert_eq!(area.take_meta(2048), None);
        assert_eq!(area.take_meta(u64::MAX), None);
    }
}
