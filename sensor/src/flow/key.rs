//! The canonical flow key and the symmetric hash both directions share.
//!
//! Addresses are stored as 128-bit values (IPv4 mapped into `::ffff:0:0/96`)
//! and the two endpoints in sorted order, so `A→B` and `B→A` give the same key
//! and the same hash. The dispatcher shards on `symmetric_hash`, so both
//! directions of a connection reach the same worker.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

/// A direction-free connection key: endpoint `a` sorts before endpoint `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub a_addr: u128,
    pub b_addr: u128,
    pub a_port: u16,
    pub b_port: u16,
}

fn addr_bits(a: IpAddr) -> u128 {
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

    /// A well-spread 64-bit hash; equal for both directions by construction.
    #[inline]
    pub fn hash64(&self) -> u64 {
        const K: [u64; 4] = [
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
        ];
        let h = mix(self.a_addr as u64 ^ K[0], (self.a_addr >> 64) as u64 ^ K[1]);
        let h = mix(h ^ self.b_addr as u64, (self.b_addr >> 64) as u64 ^ K[2]);
        mix(
            h ^ (u64::from(self.a_port) << 16 | u64::from(self.b_port)),
            K[3],
        )
    }
}

/// Folded multiply: the mixing step of foldhash/wyhash.
#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

/// The hash of the connection between two endpoints, whichever way the
/// packet went. `hash % workers` picks the owning worker.
pub fn symmetric_hash(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> u64 {
    FlowKey::new(src, sport, dst, dport).0.hash64()
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// Hasher for maps keyed by `FlowKey`: the key already hashed itself, so
/// this passes the value through instead of hashing it a second time.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than FlowKey; FNV-1a keeps it correct.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

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
        assert_eq!(
            symmetric_hash(a, 40000, b, 25),
            symmetric_hash(b, 25, a, 40000)
        );
        assert_ne!(
            symmetric_hash(a, 40000, b, 25),
            symmetric_hash(a, 40001, b, 25)
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
    fn hash_spreads_over_workers() {
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let mut buckets = [0u32; 4];
        for port in 1024..5120u16 {
            let a: IpAddr = "198.18.1.1".parse().unwrap();
            buckets[(symmetric_hash(a, port, b, 25) % 4) as usize] += 1;
        }
        for n in buckets {
            assert!((824..=1224).contains(&n), "{buckets:?}");
        }
    }
}
