//! What the project's XDP programs share: the one bounds-checked packet
//! access the verifier sees ([`ptr_at`]), the frame as
//! `sensor_common::parse::PacketBytes`, and the panic handler.
//!
//! Two programs are built from this crate: `sensor-xdp` (`src/main.rs`, the
//! sensor's filter) and `replay-xdp` (`src/bin/replay-xdp.rs`, the load
//! test's frame generator).
#![no_std]
// `asm!` on the BPF target (an optimisation barrier in `ptr_at`).
#![feature(asm_experimental_arch)]

use aya_ebpf::programs::XdpContext;
use sensor_common::parse::PacketBytes;

/// Pointer to a `T` at `offset` in the frame, if all of it is in the frame.
///
/// The end pointer `p + size_of::<T>()` goes through a no-op `asm!` so
/// LLVM cannot rewrite the check (`p + 1 > end` into `p >= end`, which the
/// verifier cannot use) nor drop it as implied by another check made on a
/// different register: the verifier sees exactly one comparison of this
/// pointer with `data_end` before each access.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    let p = start + offset;
    let mut last = p + core::mem::size_of::<T>();
    // SAFETY: a register move to itself; it only makes `last` opaque to
    // the optimiser.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) last, options(pure, nomem, nostack)) };
    if last > end {
        return None;
    }
    Some(p as *mut T)
}

/// The frame of an XDP context as `PacketBytes`; every read goes through
/// [`ptr_at`].
pub struct XdpBytes<'a>(pub &'a XdpContext);

impl PacketBytes for XdpBytes<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        let p = ptr_at::<u8>(self.0, off)?;
        // SAFETY: `ptr_at` checked the byte is inside the frame.
        Some(unsafe { *p })
    }

    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        let p = ptr_at::<[u8; 2]>(self.0, off)?;
        // SAFETY: `ptr_at` checked both bytes are inside the frame.
        Some(u16::from_be_bytes(unsafe { *p }))
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
