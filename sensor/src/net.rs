//! Small value types every layer shares: network time, connection identity
//! and direction.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// A hash map for tables keyed by what the traffic chooses (flows, hosts,
/// connections): foldhash, a fast non-cryptographic hash, seeded at random
/// for every map, so that nobody sending packets can craft keys that
/// collide in it (SipHash, the std default, costs several times more per
/// lookup; a fixed-seed hash would let colliding keys be searched for
/// offline).
pub type KeyedMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Network time: microseconds since the Unix epoch, taken from packet
/// timestamps (offline) or the capture clock (live). Every timeout and period
/// boundary is computed from it, so a pcap gives the same output everywhere.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ts(pub u64);

impl Ts {
    pub const fn from_micros(us: u64) -> Self {
        Ts(us)
    }

    pub const fn from_secs(s: u64) -> Self {
        Ts(s * 1_000_000)
    }

    pub const fn micros(self) -> u64 {
        self.0
    }

    /// Seconds as a float, the form Zeek writes `ts` in.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub const fn saturating_sub(self, other: Ts) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Ts {
    /// `1254722767.875996`: seconds with six decimals, as Zeek writes times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Which side of a connection sent a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the originator (the SMTP client).
    Orig,
    /// From the responder (the SMTP server).
    Resp,
}

impl Direction {
    pub const fn flip(self) -> Self {
        match self {
            Direction::Orig => Direction::Resp,
            Direction::Resp => Direction::Orig,
        }
    }
}

/// The connection 4-tuple with the roles resolved: `orig` is the side that
/// sent the SYN (or, without a SYN, the side not on an SMTP port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
}

/// Characters of a uid: `C` and 11 base62 digits.
const UID_LEN: usize = 12;

/// Zeek-style connection uid (`C` + base62), derived from the 4-tuple and the
/// first packet's time so it is stable across runs and worker counts. Held
/// inline (`Copy`): every record and notice of a connection carries it, and
/// none of them allocates for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid([u8; UID_LEN]);

impl Uid {
    pub fn new(id: &ConnId, start: Ts) -> Self {
        // FNV-1a over the tuple and start time, then base62. Not
        // cryptographic: a uid only needs to be stable and well spread.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for (addr, port) in [(id.orig_h, id.orig_p), (id.resp_h, id.resp_p)] {
            match addr {
                IpAddr::V4(a) => feed(&a.octets()),
                IpAddr::V6(a) => feed(&a.octets()),
            }
            feed(&port.to_be_bytes());
        }
        feed(&start.0.to_be_bytes());
        const ALPHABET: &[u8; 62] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut uid = [b'C'; UID_LEN];
        let mut v = h;
        for c in uid.iter_mut().skip(1) {
            *c = ALPHABET[(v % 62) as usize];
            v /= 62;
        }
        Uid(uid)
    }

    /// The uid as log text.
    pub fn as_str(&self) -> &str {
        // Always ASCII: `C` and base62 digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({})", self.as_str())
    }
}

/// What identifies a connection in every log line and event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub uid: Uid,
    pub id: ConnId,
    /// Time of the connection's first packet.
    pub start: Ts,
}

impl ConnInfo {
    /// The connection `id` first seen at `start`; its uid derives from both.
    pub fn new(id: ConnId, start: Ts) -> Self {
        ConnInfo {
            uid: Uid::new(&id, start),
            id,
            start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_formats_like_zeek() {
        assert_eq!(Ts(1_254_722_767_875_996).to_string(), "1254722767.875996");
        assert_eq!(Ts(5).to_string(), "0.000005");
    }

    #[test]
    fn uid_is_stable_and_distinguishes_tuples() {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        let a = Uid::new(&id, Ts(1));
        assert_eq!(a, Uid::new(&id, Ts(1)));
        assert_ne!(a, Uid::new(&id, Ts(2)));
        assert!(a.as_str().starts_with('C') && a.as_str().len() == 12);
    }
}
