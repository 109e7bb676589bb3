//! The keyed, symmetric connection hash that picks a frame's worker.
//!
//! Live, the XDP program computes it for every SMTP frame and passes it in
//! the frame's metadata ([`FrameMeta`]), so a capture thread routes a frame
//! to its worker without decoding it; offline, the dispatcher computes the
//! same function from the decoded packet. Symmetric: both directions of a
//! connection hash alike (the endpoints are put in order first), so both
//! reach one worker. Keyed with a per-run random key: flow keys are chosen
//! by whoever sends the traffic, and a fixed function would let them put
//! every connection on one worker.
//!
//! The mixing is multiply–xorshift on 64-bit words (no 128-bit products,
//! which the BPF target lacks): cheap in the kernel, well spread, and not
//! predictable without the key. Not a cryptographic MAC.

use crate::parse::{L4Location, PacketBytes};

/// The per-run key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowHashKey(pub [u64; 2]);

/// An IP address as four 32-bit words (host order of the network bytes);
/// IPv4 is `[0, 0, 0, addr]` (distinct from every IPv6 address a test
/// uses, and the IP version is hashed too).
pub type AddrWords = [u32; 4];

/// Mixing constants (from SplitMix64 / MurmurHash3's finaliser).
const M1: u64 = 0xbf58_476d_1ce4_e5b9;
const M2: u64 = 0x94d0_49bb_1331_11eb;

#[inline(always)]
const fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(M1);
    x ^ (x >> 31)
}

#[inline(always)]
const fn finish(h: u64) -> u32 {
    let x = (h ^ (h >> 30)).wrapping_mul(M2);
    let x = x ^ (x >> 27);
    (x ^ (x >> 32)) as u32
}

#[inline(always)]
const fn words64(a: &AddrWords) -> (u64, u64) {
    (
        ((a[0] as u64) << 32) | a[1] as u64,
        ((a[2] as u64) << 32) | a[3] as u64,
    )
}

/// `(a, ap) < (b, bp)` in (address words, port) order.
#[inline(always)]
fn less(a: &AddrWords, ap: u16, b: &AddrWords, bp: u16) -> bool {
    let (a0, a1) = words64(a);
    let (b0, b1) = words64(b);
    if a0 != b0 {
        return a0 < b0;
    }
    if a1 != b1 {
        return a1 < b1;
    }
    ap < bp
}

/// The hash of the connection between `(src, sport)` and `(dst, dport)`,
/// whichever way the frame went.
#[inline(always)]
pub fn flow_hash(
    key: &FlowHashKey,
    ip_version: u8,
    src: &AddrWords,
    sport: u16,
    dst: &AddrWords,
    dport: u16,
) -> u32 {
    let (lo, lo_p, hi, hi_p) = if less(src, sport, dst, dport) {
        (src, sport, dst, dport)
    } else {
        (dst, dport, src, sport)
    };
    let (l0, l1) = words64(lo);
    let (h0, h1) = words64(hi);
    let ports = ((lo_p as u64) << 16) | hi_p as u64 | ((ip_version as u64) << 32);
    let mut h = key.0[0];
    h = mix(h, l0);
    h = mix(h, l1 ^ key.0[1]);
    h = mix(h, h0);
    h = mix(h, h1);
    h = mix(h, ports);
    finish(h)
}

/// Reads the big-endian `u32` at `off`.
#[inline(always)]
fn be32_at<B: PacketBytes + ?Sized>(p: &B, off: usize) -> Option<u32> {
    let hi = p.be16_at(off)?;
    let lo = p.be16_at(off + 2)?;
    Some(((hi as u32) << 16) | lo as u32)
}

/// The hash of a frame whose headers [`crate::parse::locate_l4_from_ethernet`]
/// found at `loc`, with the TCP ports already read: what the XDP program
/// computes.
#[inline(always)]
pub fn frame_flow_hash<B: PacketBytes + ?Sized>(
    key: &FlowHashKey,
    p: &B,
    loc: &L4Location,
    sport: u16,
    dport: u16,
) -> Option<u32> {
    let l3 = loc.l3_offset;
    let mut src: AddrWords = [0; 4];
    let mut dst: AddrWords = [0; 4];
    if loc.ip_version == 4 {
        src[3] = be32_at(p, l3 + 12)?;
        dst[3] = be32_at(p, l3 + 16)?;
    } else {
        let mut i = 0;
        while i < 4 {
            src[i] = be32_at(p, l3 + 8 + 4 * i)?;
            dst[i] = be32_at(p, l3 + 24 + 4 * i)?;
            i += 1;
        }
    }
    Some(flow_hash(key, loc.ip_version, &src, sport, &dst, dport))
}

/// What the XDP program puts in front of an SMTP frame (`bpf_xdp_adjust_meta`)
/// when asked to: the flow hash, and a marker that the metadata is there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    pub hash: u32,
    /// [`FrameMeta::MAGIC`] when the program wrote this metadata.
    pub magic: u32,
}

impl FrameMeta {
    /// Marks metadata the program wrote. Userspace clears it when it gives
    /// the frame back, so a driver without metadata support never leaves a
    /// stale marker in front of a later frame.
    pub const MAGIC: u32 = 0x534d_5450;
    /// Bytes of metadata.
    pub const LEN: usize = core::mem::size_of::<FrameMeta>();
}

#[cfg(feature = "user")]
// SAFETY: two `u64`s, no padding, any bit pattern valid.
unsafe impl aya::Pod for FlowHashKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::locate_l4_from_ethernet;

    const KEY: FlowHashKey = FlowHashKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);

    fn v4(a: [u8; 4]) -> AddrWords {
        [0, 0, 0, u32::from_be_bytes(a)]
    }

    #[test]
    fn both_directions_hash_alike_and_ports_matter() {
        let (a, b) = (v4([198, 18, 0, 1]), v4([198, 19, 0, 2]));
        let h = flow_hash(&KEY, 4, &a, 40000, &b, 25);
        assert_eq!(h, flow_hash(&KEY, 4, &b, 25, &a, 40000));
        assert_ne!(h, flow_hash(&KEY, 4, &a, 40001, &b, 25));
        // Same address, ports swapped between the sides: still symmetric.
        assert_eq!(
            flow_hash(&KEY, 4, &a, 25, &a, 40000),
            flow_hash(&KEY, 4, &a, 40000, &a, 25)
        );
    }

    #[test]
    fn the_key_changes_the_hash() {
        let (a, b) = (v4([198, 18, 0, 1]), v4([198, 19, 0, 2]));
        let other = FlowHashKey([1, 2]);
        assert_ne!(
            flow_hash(&KEY, 4, &a, 40000, &b, 25),
            flow_hash(&other, 4, &a, 40000, &b, 25)
        );
    }

    #[test]
    fn spreads_over_workers_even_for_sequential_clients() {
        let server = v4([198, 18, 0, 2]);
        let mut buckets = [0u32; 4];
        for i in 0..4096u32 {
            let c = [0x2001_0db8, 0, 0, i];
            buckets[(flow_hash(&KEY, 6, &c, 40000, &server, 25) % 4) as usize] += 1;
        }
        for n in buckets {
            assert!((900..=1150).contains(&n), "{buckets:?}");
        }
    }

    #[test]
    fn frame_hash_reads_the_addresses_of_both_families() {
        // IPv4: Ethernet + IPv4 (20) + TCP ports.
        let mut f = [0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[14 + 20 + 12] = 0x50;
        let loc = locate_l4_from_ethernet(&f[..]).unwrap();
        let h = frame_flow_hash(&KEY, &f[..], &loc, 40000, 25).unwrap();
        assert_eq!(
            h,
            flow_hash(
                &KEY,
                4,
                &v4([198, 18, 0, 2]),
                25,
                &v4([198, 18, 0, 1]),
                40000
            )
        );
        // IPv6.
        let mut f = [0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = 6;
        f[22..26].copy_from_slice(&0x2001_0db8u32.to_be_bytes());
        f[37] = 1;
        f[38..42].copy_from_slice(&0x2001_0db8u32.to_be_bytes());
        f[53] = 2;
        let loc = locate_l4_from_ethernet(&f[..]).unwrap();
        let h = frame_flow_hash(&KEY, &f[..], &loc, 40000, 25).unwrap();
        let a = [0x2001_0db8, 0, 0, 1];
        let b = [0x2001_0db8, 0, 0, 2];
        assert_eq!(h, flow_hash(&KEY, 6, &b, 25, &a, 40000));
        // A frame cut inside the addresses gives no hash.
        assert_eq!(frame_flow_hash(&KEY, &f[..30], &loc, 1, 2), None);
    }
}
