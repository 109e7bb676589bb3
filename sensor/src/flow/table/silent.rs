//! Flows that have not carried a byte yet (a SYN, a handshake, a FIN without
//! data), kept apart from the full flows in compact entries: the SYN cache of
//! a stack (FreeBSD's syncache), for a sensor.
//!
//! A spoofed SYN is the cheapest packet to send and makes a flow that never
//! speaks; in a full slot (two reassemblers, the connection's addresses, its
//! uid) and a map keyed by the whole flow key it cost ~350 bytes and several
//! cache misses, and a flood filled the table. Here it costs one entry of
//! [`Silent`] (88 bytes with its list links) and a 4-byte index slot (the
//! index holds entry numbers and compares the key stored in the entry), with
//! its own bound: when full, the least recently active silent flow goes
//! (`silent_flow_table_full_evicted`), so a flood ages out its own flows and
//! never the sessions in the full table. An entry holds exactly what the two
//! reassemblers of a silent flow hold ([`Handshake`]), so the flow rebuilt
//! from it answers every packet as a full slot would have: the table rebuilds
//! it for a packet of its own, and moves it to the full table once it speaks.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};

use hashbrown::HashTable;

use super::Flow;
use super::lru::LruSlab;
use crate::flow::key::{FlowKey, addr_bits};
use crate::flow::reassembly::{Handshake, Reassembler};
use crate::net::{ConnId, Ts};

/// Bits of [`Silent::bits`].
const STARTED: [u8; 2] = [1, 2];
const FIN: [u8; 2] = [4, 8];
const OTHER_SYN: u8 = 16;
/// The endpoint is an IPv6 address (else IPv4, mapped in the key).
const V6: [u8; 2] = [32, 64];

/// A silent flow: its key (endpoints `a` and `b` as `FlowKey` orders them,
/// addresses as two 64-bit halves so the entry needs no 16-byte alignment),
/// the originator, each direction's [`Handshake`] (originator first), the
/// sequence number of an ignored SYN, and its first and last packet times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silent {
    addr: [u64; 4],
    ports: [u16; 2],
    isn: [u32; 2],
    fin: [u32; 2],
    other_syn: u32,
    start: Ts,
    last: Ts,
    /// The index's hash of the key (set by `SilentFlows::insert`), kept in
    /// what would be padding: removal and growth do not hash again.
    hash: u32,
    bits: u8,
    orig_is_a: bool,
}

fn halves(bits: u128) -> [u64; 2] {
    [(bits >> 64) as u64, bits as u64]
}

fn whole(h: u64, l: u64) -> u128 {
    (u128::from(h) << 64) | u128::from(l)
}

/// The address a key's bits stand for, IPv6 or IPv4 as the packet had it
/// (an IPv4-mapped IPv6 address stays IPv6).
fn address(bits: u128, v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(bits);
    match a.to_ipv4_mapped() {
        Some(v4) if !v6 => IpAddr::V4(v4),
        _ => IpAddr::V6(a),
    }
}

impl Silent {
    /// The compact form of `f`; `None` if it has carried a byte (or has a
    /// parser): it belongs in the full table.
    pub(super) fn of<P>(f: &Flow<P>) -> Option<Silent> {
        if f.parser.is_some() {
            return None;
        }
        let hs = [f.reasm[0].handshake()?, f.reasm[1].handshake()?];
        let (orig, resp) = ((f.id.orig_h, f.id.orig_p), (f.id.resp_h, f.id.resp_p));
        let (a, b) = if f.orig_is_a {
            (orig, resp)
        } else {
            (resp, orig)
        };
        let [ah, al] = halves(addr_bits(a.0));
        let [bh, bl] = halves(addr_bits(b.0));
        let mut bits = 0;
        for (k, h) in hs.iter().enumerate() {
            if h.started {
                bits |= STARTED[k];
            }
            if h.fin.is_some() {
                bits |= FIN[k];
            }
        }
        for (k, ip) in [a.0, b.0].iter().enumerate() {
            if ip.is_ipv6() {
                bits |= V6[k];
            }
        }
        if f.other_syn.is_some() {
            bits |= OTHER_SYN;
        }
        Some(Silent {
            addr: [ah, al, bh, bl],
            ports: [a.1, b.1],
            isn: [hs[0].isn, hs[1].isn],
            fin: [hs[0].fin.unwrap_or(0), hs[1].fin.unwrap_or(0)],
            other_syn: f.other_syn.unwrap_or(0),
            start: f.start,
            last: f.last,
            hash: 0,
            bits,
            orig_is_a: f.orig_is_a,
        })
    }

    /// The entry a flow made by `pkt` has after it, when `pkt` is a bare
    /// SYN (no ACK, FIN, RST or payload) of a new connection from endpoint
    /// `a` of `key` if `src_is_a`: what `of` gives for that flow, without
    /// making it (the SYN flood's path).
    pub(super) fn syn(key: &FlowKey, src_is_a: bool, pkt: &crate::decode::Packet<'_>) -> Silent {
        let [ah, al] = halves(key.a_addr);
        let [bh, bl] = halves(key.b_addr);
        let (a_ip, b_ip) = if src_is_a {
            (pkt.src, pkt.dst)
        } else {
            (pkt.dst, pkt.src)
        };
        let mut bits = STARTED[0];
        if a_ip.is_ipv6() {
            bits |= V6[0];
        }
        if b_ip.is_ipv6() {
            bits |= V6[1];
        }
        Silent {
            addr: [ah, al, bh, bl],
            ports: [key.a_port, key.b_port],
            isn: [pkt.seq.wrapping_add(1), 0],
            fin: [0, 0],
            other_syn: 0,
            start: pkt.ts,
            last: pkt.ts,
            hash: 0,
            bits,
            // The sender of a bare SYN is the originator.
            orig_is_a: src_is_a,
        }
    }

    /// The flow this entry stands for, without a parser.
    pub(super) fn flow<P>(&self, ooo_cap: usize) -> Flow<P> {
        let [ah, al, bh, bl] = self.addr;
        let a = (address(whole(ah, al), self.bit(V6[0])), self.ports[0]);
        let b = (address(whole(bh, bl), self.bit(V6[1])), self.ports[1]);
        let (orig, resp) = if self.orig_is_a { (a, b) } else { (b, a) };
        let side = |k: usize| {
            let h = Handshake {
                started: self.bit(STARTED[k]),
                isn: self.isn[k],
                fin: self.bit(FIN[k]).then_some(self.fin[k]),
            };
            Reassembler::from_handshake(h, ooo_cap)
        };
        Flow {
            orig_is_a: self.orig_is_a,
            reasm: [side(0), side(1)],
            id: ConnId {
                orig_h: orig.0,
                orig_p: orig.1,
                resp_h: resp.0,
                resp_p: resp.1,
            },
            start: self.start,
            parser: None,
            other_syn: self.bit(OTHER_SYN).then_some(self.other_syn),
            last: self.last,
            weirds_logged: 0,
        }
    }

    fn bit(&self, b: u8) -> bool {
        self.bits & b != 0
    }

    pub(super) fn key(&self) -> FlowKey {
        let [ah, al, bh, bl] = self.addr;
        FlowKey {
            a_addr: whole(ah, al),
            b_addr: whole(bh, bl),
            a_port: self.ports[0],
            b_port: self.ports[1],
        }
    }

    pub(super) fn last(&self) -> Ts {
        self.last
    }

    /// Remembers the sequence number of an ignored SYN (see
    /// `Reuse::Answered`).
    pub(super) fn set_other_syn(&mut self, seq: u32) {
        self.other_syn = seq;
        self.bits |= OTHER_SYN;
    }
}

/// The silent flows of one worker: entries in a slab on one LRU list, and an
/// index from key hash to entry, keyed with a per-table random seed (as the
/// full table's `KeyedMap`) so nobody can aim collisions at it.
pub struct SilentFlows {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    slab: LruSlab<Silent, 1>,
    cap: usize,
}

impl SilentFlows {
    /// At most `cap` entries (0: none, every flow goes to the full table).
    pub fn new(cap: usize) -> Self {
        SilentFlows {
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            slab: LruSlab::default(),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    pub fn is_full(&self) -> bool {
        self.slab.len() >= self.cap
    }

    /// The index's hash of `key`: 32 bits of the keyed hash (enough for
    /// 2^32 buckets), spread over both halves of what the index reads
    /// (bucket from the low bits, tag from the top seven).
    fn hash(&self, key: &FlowKey) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    fn wide(h: u32) -> u64 {
        (u64::from(h) << 32) | u64::from(h)
    }

    pub fn find(&self, key: &FlowKey) -> Option<u32> {
        let h = Self::wide(self.hash(key));
        let slab = &self.slab;
        self.index
            .find(h, |&i| slab.get(i).is_some_and(|s| s.key() == *key))
            .copied()
    }

    pub fn get(&self, i: u32) -> Option<&Silent> {
        self.slab.get(i)
    }

    pub fn get_mut(&mut self, i: u32) -> Option<&mut Silent> {
        self.slab.get_mut(i)
    }

    /// Entry `i` (of the same key) is now `s`.
    pub fn set(&mut self, i: u32, mut s: Silent) {
        if let Some(e) = self.slab.get_mut(i) {
            s.hash = e.hash;
            *e = s;
        }
    }

    /// Stores `s` as the most recently active entry; the caller has made
    /// room (`is_full`) and knows its key is not stored yet.
    pub fn insert(&mut self, mut s: Silent) -> u32 {
        s.hash = self.hash(&s.key());
        let h = Self::wide(s.hash);
        let i = self.slab.insert(0, s);
        let slab = &self.slab;
        self.index
            .insert_unique(h, i, |&v| slab.get(v).map_or(0, |e| Self::wide(e.hash)));
        i
    }

    /// Entry `i` was active: it becomes the most recent.
    pub fn touch(&mut self, i: u32) {
        self.slab.touch(i, 0, 0);
    }

    pub fn remove(&mut self, i: u32) -> Option<Silent> {
        let s = self.slab.remove(i, 0)?;
        if let Ok(e) = self.index.find_entry(Self::wide(s.hash), |&v| v == i) {
            e.remove();
        }
        Some(s)
    }

    /// The least recently active entry.
    pub fn oldest(&self) -> Option<u32> {
        self.slab.tail(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(orig: &str, resp: &str, orig_is_a: bool) -> Flow<()> {
        let mut f = Flow {
            orig_is_a,
            reasm: [Reassembler::new(64), Reassembler::new(64)],
            id: ConnId {
                orig_h: orig.parse().unwrap(),
                orig_p: 40000,
                resp_h: resp.parse().unwrap(),
                resp_p: 25,
            },
            start: Ts(5),
            parser: None,
            other_syn: Some(77),
            last: Ts(9),
            weirds_logged: 0,
        };
        f.reasm[0].segment(1000, true, false, b"", &mut |_| {});
        f.reasm[1].segment(5000, true, true, b"", &mut |_| {});
        f
    }

    fn same<P>(x: &Flow<P>, y: &Flow<P>) -> bool {
        x.orig_is_a == y.orig_is_a
            && x.id == y.id
            && (x.start, x.last, x.other_syn) == (y.start, y.last, y.other_syn)
            && x.reasm[0].handshake() == y.reasm[0].handshake()
            && x.reasm[1].handshake() == y.reasm[1].handshake()
            && x.parser.is_none() == y.parser.is_none()
    }

    #[test]
    fn entries_round_trip_and_keep_the_address_family() {
        for (o, r) in [
            ("198.18.0.1", "198.19.0.25"),
            ("2001:db8::1", "2001:db8::25"),
            ("::ffff:198.18.0.1", "::ffff:198.19.0.25"),
        ] {
            let (key, src_is_a) = FlowKey::new(o.parse().unwrap(), 40000, r.parse().unwrap(), 25);
            let f = flow(o, r, src_is_a);
            let s = Silent::of(&f).unwrap();
            assert_eq!(s.key(), key);
            assert!(same(&s.flow::<()>(64), &f), "{o}");
        }
        assert!(std::mem::size_of::<Silent>() <= 80);
    }

    #[test]
    fn a_flow_that_spoke_has_no_entry() {
        let mut f = flow("198.18.0.1", "198.19.0.25", true);
        f.reasm[0].segment(1001, false, false, b"x", &mut |_| {});
        assert_eq!(Silent::of(&f), None);
    }

    #[test]
    fn store_finds_touches_and_ages_out() {
        let mut t = SilentFlows::new(2);
        let mut ids = Vec::new();
        for p in [1u16, 2] {
            let mut f = flow("198.18.0.1", "198.19.0.25", true);
            f.id.orig_p = p;
            ids.push(t.insert(Silent::of(&f).unwrap()));
        }
        assert!(t.is_full());
        assert_eq!(t.oldest(), Some(ids[0]));
        t.touch(ids[0]);
        assert_eq!(t.oldest(), Some(ids[1]));
        let k = t.get(ids[1]).unwrap().key();
        assert_eq!(t.find(&k), Some(ids[1]));
        t.remove(ids[1]);
        assert_eq!(t.find(&k), None);
        assert_eq!(t.len(), 1);
        assert!(!t.is_full());
    }
}
