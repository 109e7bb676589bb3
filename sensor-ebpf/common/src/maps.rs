//! The BPF maps the XDP program declares and userspace opens by name: their
//! names, sizes, and the meaning of their keys and values.
//!
//! aya's `#[map]` statics take the map name from the static's identifier, so
//! the XDP program names its statics exactly as the constants below; the
//! userspace loader opens the maps through these constants and fails with a
//! clear error when one is missing (e.g. an object built from other sources).

/// Name of the XDP program function (the `#[xdp]` entry point).
pub const PROGRAM_NAME: &str = "smtp_sensor";

/// `Array<u8>` indexed by TCP port (host byte order, as `u32`): value
/// [`PORT_WATCHED`] marks a port whose segments are redirected to userspace.
/// An array rather than a hash map: one direct lookup per port, no hashing.
pub const SMTP_PORTS: &str = "SMTP_PORTS";
/// Entries of [`SMTP_PORTS`]: one per possible TCP port.
pub const SMTP_PORTS_ENTRIES: u32 = 65_536;
/// Key type of [`SMTP_PORTS`]: the port number widened to `u32`.
pub type PortKey = u32;
/// Value in [`SMTP_PORTS`] for a watched port (0 means not watched).
pub const PORT_WATCHED: u8 = 1;

/// `XskMap` indexed by rx queue index: the AF_XDP socket of that queue.
pub const XSKS: &str = "XSKS";
/// Entries of [`XSKS`]: the largest rx queue index + 1 the sensor supports.
pub const XSKS_MAX_ENTRIES: u32 = 256;

/// `PerCpuArray<u64>` indexed by [`Counter`]; userspace sums the CPUs.
pub const COUNTERS: &str = "COUNTERS";

/// `Array<u32>` indexed by [`ConfigSlot`]: run-time switches set by userspace
/// before the program is attached.
pub const CONFIG: &str = "CONFIG";

crate::counters! {
    /// Per-CPU packet counters kept by the XDP program.
    ///
    /// Every frame the program sees ends in exactly one action, so
    /// `seen == redirected + passed + dropped`. `malformed` and
    /// `redirect_failed` count reasons on top of that: a malformed frame is also
    /// passed (or dropped in `--non-smtp drop` mode), and an SMTP frame whose
    /// queue has no socket is also passed.
    pub enum Counter {
        /// Frames the program ran on.
        Seen = 0 => "xdp_seen",
        /// SMTP frames handed to the AF_XDP socket of their rx queue.
        Redirected = 1 => "xdp_redirected",
        /// Frames returned to the kernel stack (`XDP_PASS`).
        Passed = 2 => "xdp_passed",
        /// Non-SMTP frames dropped because of `--non-smtp drop`.
        Dropped = 3 => "xdp_dropped",
        /// Frames whose VLAN/IP/TCP headers were truncated or invalid.
        Malformed = 4 => "xdp_malformed",
        /// SMTP frames whose rx queue had no AF_XDP socket (then passed).
        RedirectFailed = 5 => "xdp_redirect_failed",
        /// SMTP frames the flow hash could not be put in front of (the
        /// driver has no room for metadata); the capture thread hashes them
        /// itself.
        MetaFailed = 6 => "xdp_meta_failed",
    }
}

/// Global (`EbpfLoader::override_global`): the per-run key of the flow
/// hash (`crate::flowhash::FlowHashKey`).
pub const GLOBAL_FLOW_HASH_KEY: &str = "FLOW_HASH_KEY";
/// Global: non-zero to put the flow hash in front of every SMTP frame
/// (`crate::flowhash::FrameMeta`), for capture threads that hand frames to
/// other workers. Zero (receive-side processing): the program skips it.
pub const GLOBAL_WRITE_FLOW_HASH: &str = "WRITE_FLOW_HASH";

/// Slots of the [`CONFIG`] map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSlot {
    /// What to do with frames that are not SMTP: [`NON_SMTP_PASS`] or
    /// [`NON_SMTP_DROP`].
    NonSmtpAction = 0,
    /// Non-zero: emit aya-log diagnostics (malformed headers, redirect
    /// failures). Zero (the default): the packet path runs no logging code.
    Log = 1,
}

impl ConfigSlot {
    /// Number of slots (entries of the [`CONFIG`] map).
    pub const COUNT: u32 = 2;

    /// Map index of this slot.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// [`ConfigSlot::NonSmtpAction`] value: give non-SMTP frames to the kernel.
pub const NON_SMTP_PASS: u32 = 0;
/// [`ConfigSlot::NonSmtpAction`] value: drop non-SMTP frames (dedicated tap).
pub const NON_SMTP_DROP: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_indices_are_dense_and_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
    }

    #[test]
    fn counter_names_are_unique() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
