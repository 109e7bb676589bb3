//! The canonical flow key, and the hashes both directions share.
//!
//! Addresses are stored as 128-bit values (IPv4 mapped into `::ffff:0:0/96`)
//! and the two endpoints in sorted order, so `A→B` and `B→A` give the same key
//! (the flow table hashes it with a per-map random seed, `net::KeyedMap`).
//! Workers are picked by [`flow_hash`], the keyed hash the
//! XDP program also computes (`sensor_common::flowhash`), so both directions
//! of a connection reach the same worker, offline and live.

use std::net::{IpAddr, Ipv6Addr};

use sensor_common::flowhash::{self, AddrWords, FlowHashKey};

use crate::decode::Packet;

/// A direction-free connection key: endpoint `a` sorts before endpoint `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub a_addr: u128,
    pub b_addr: u128,
    pub a_port: u16,
    pub b_port: u16,
}

/// An address as a key holds it: IPv4 mapped into `::ffff:0:0/96`.
pub fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The `IpAddr` a key's 128-bit address stands for.
pub fn bits_addr(bits: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(bits);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// The key of a packet from `(src, sport)` to `(dst, dport)`, and whether
    /// the sender is endpoint `a`.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> (FlowKey, bool) {
        let s = (addr_bits(src), sport);
        let d = (addr_bits(dst), dport);
        if s <= d {
            (
                FlowKey {
                    a_addr: s.0,
                    a_port: s.1,
                    b_addr: d.0,
                    b_port: d.1,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    a_addr: d.0,
                    a_port: d.1,
                    b_addr: s.0,
                    b_port: s.1,
                },
                false,
            )
        }
    }
}

/// An address as the flow hash reads it: IP version and four words.
fn addr_words(a: IpAddr) -> (u8, AddrWords) {
    match a {
        IpAddr::V4(v4) => (4, [0, 0, 0, u32::from(v4)]),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (
                6,
                [
                    (b >> 96) as u32,
                    (b >> 64) as u32,
                    (b >> 32) as u32,
                    b as u32,
                ],
            )
        }
    }
}

/// The keyed hash of the connection between two endpoints, whichever way
/// the packet went: what the XDP program puts in a frame's metadata.
/// `hash % workers` picks the owning worker.
pub fn flow_hash(key: &FlowHashKey, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> u32 {
    let (version, s) = addr_words(src);
    let (_, d) = addr_words(dst);
    flowhash::flow_hash(key, version, &s, sport, &d, dport)
}

/// [`flow_hash`] of a decoded segment.
pub fn packet_flow_hash(key: &FlowHashKey, p: &Packet<'_>) -> u32 {
    flow_hash(key, p.src, p.sport, p.dst, p.dport)
}

/// A fresh key from the kernel's random source, one per run, so nobody
/// sending traffic can predict which worker a connection lands on. Falls
/// back to the clock and the address of a stack value when getrandom(2)
/// fails (it does not on supported kernels).
pub fn random_flow_key() -> FlowHashKey {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let here = &b as *const _ as u64;
        return FlowHashKey([
            t,
            here.rotate_left(32) ^ t.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ]);
    }
    let (lo, hi) = b.split_at(8);
    FlowHashKey([
        u64::from_le_bytes(lo.try_into().unwrap_or_default()),
        u64::from_le_bytes(hi.try_into().unwrap_or_default()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_key_and_hash() {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.19.0.2".parse().unwrap();
        let (k1, s1) = FlowKey::new(a, 40000, b, 25);
        let (k2, s2) = FlowKey::new(b, 25, a, 40000);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        let key = random_flow_key();
        assert_eq!(
            flow_hash(&key, a, 40000, b, 25),
            flow_hash(&key, b, 25, a, 40000)
        );
        assert_ne!(
            flow_hash(&key, a, 40000, b, 25),
            flow_hash(&key, a, 40001, b, 25)
        );
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["198.18.0.1", "2001:db8::1", "::1", "0.0.0.0"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(bits_addr(addr_bits(ip)), ip);
        }
    }

    #[test]
    fn flow_hash_spreads_over_workers() {
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let key = random_flow_key();
        let mut buckets = [0u32; 4];
        for port in 1024..5120u16 {
            let a: IpAddr = "198.18.1.1".parse().unwrap();
            buckets[(flow_hash(&key, a, port, b, 25) % 4) as usize] += 1;
        }
        for n in buckets {
            assert!((824..=1224).contains(&n), "{buckets:?}");
        }
    }

    /// Ethernet + IP + a bare TCP header from `(src, sport)` to `(dst, dport)`.
    fn frame_between(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[9] = 6;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = [0u8; 40];
                ip[0] = 0x60;
                ip[6] = 6;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&ip);
            }
            _ => unreachable!("one family per test frame"),
        }
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 0x50;
        f.extend_from_slice(&tcp);
        f
    }

    #[test]
    fn keys_differ_between_runs() {
        assert_ne!(random_flow_key(), random_flow_key());
    }

    #[test]
    fn userspace_and_frame_hashes_agree() {
        // The XDP program hashes the frame's bytes; userspace the decoded
        // addresses. Both must pick the same worker.
        use sensor_common::parse::{locate_l4_from_ethernet, tcp_ports};
        let key = random_flow_key();
        for (src, dst) in [
            ("198.18.0.7", "198.19.3.4"),
            ("2001:db8::7", "2001:db8:1::4"),
        ] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let frame = frame_between(src, 40000, dst, 25);
            let loc = locate_l4_from_ethernet(&frame[..]).unwrap();
            let (sp, dp) = tcp_ports(&frame[..], loc.l4_offset).unwrap();
            let from_frame = flowhash::frame_flow_hash(&key, &frame[..], &loc, sp, dp);
            assert_eq!(from_frame, Some(flow_hash(&key, src, 40000, dst, 25)));
        }
    }
}
