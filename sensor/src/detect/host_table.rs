//! The bounded host table of spam detection, one per worker and period:
//! exact counts while it has room; once `max_hosts_per_period` hosts are in
//! it, a new host takes the place of the host with the fewest connections
//! (space-saving, Metwally, Agrawal and El Abbadi 2005), so a flood of
//! one-connection hosts (a whole IPv6 /64 is one client's) cannot keep a
//! real spammer that comes later out of the count.
//!
//! Each slot has a weight: its counted connections plus the weight of the
//! host it replaced. A host's connections this period never exceed its
//! weight, and a host with more connections than the smallest weight in the
//! table is in the table (the space-saving guarantee). The counts a notice
//! is raised on are the connections counted since the host took its slot:
//! exact for a host that was never evicted. A small Bloom filter of the
//! hosts evicted this period tells which newcomers may have been counted
//! before; for those, [`HostCounts::uncounted`] holds the bound (the weight
//! they inherited), and the notice says so.
//!
//! Cost per update O(1) expected: slots of equal weight are linked in a
//! list per weight (oldest first), a count moves its slot to the next
//! list, an eviction takes the head of the smallest weight's list. The
//! lists are built only when the table first fills (once per period, O(n)):
//! until then an update is one map lookup, as before.

use std::hash::BuildHasher;
use std::net::IpAddr;

use super::spam::HostCounts;
use crate::net::KeyedMap;

/// "No slot" in the weight lists.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot {
    host: IpAddr,
    counts: HostCounts,
    /// Counted connections plus the weight inherited at admission.
    weight: u64,
    prev: u32,
    next: u32,
}

/// First and last slot of one weight's list.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// One worker's hosts of the live period.
#[derive(Debug, Default)]
pub struct HostTable {
    index: KeyedMap<IpAddr, u32>,
    slots: Vec<Slot>,
    /// Slots by weight; only while `ranked`.
    lists: KeyedMap<u64, List>,
    ranked: bool,
    /// Smallest weight with a list (while `ranked`).
    min: u64,
    evicted: Option<Evicted>,
    /// Hosts evicted to make room, this period.
    pub evictions: u64,
    /// Connections the evicted hosts had counted (in no notice).
    pub evicted_conns: u64,
}

/// What one update did besides counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bumped {
    /// Recipient bytes freed by an eviction.
    pub freed_rcpt_bytes: usize,
}

impl HostTable {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, host: &IpAddr) -> Option<&HostCounts> {
        let &i = self.index.get(host)?;
        self.slots.get(i as usize).map(|s| &s.counts)
    }

    /// Applies `f` to `host`'s counts (`fresh`: they were just created),
    /// making room by evicting the lightest host when the table holds
    /// `max` hosts. The weight follows the total `f` leaves.
    pub fn bump(
        &mut self,
        host: IpAddr,
        max: usize,
        f: impl FnOnce(&mut HostCounts, bool),
    ) -> Bumped {
        let mut bumped = Bumped::default();
        let (i, fresh) = match self.index.get(&host) {
            Some(&i) => (i, false),
            None => {
                let max = max.clamp(1, NIL as usize);
                let i = if self.slots.len() < max {
                    self.push(host)
                } else {
                    match self.evict_for(host, &mut bumped) {
                        Some(i) => i,
                        // Unreachable with a consistent table; a fresh slot
                        // (over the limit by one) rather than a panic.
                        None => self.push(host),
                    }
                };
                (i, true)
            }
        };
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return bumped;
        };
        let before = slot.counts.total;
        f(&mut slot.counts, fresh);
        let grown = slot.counts.total.saturating_sub(before);
        if self.ranked {
            for _ in 0..grown {
                self.step(i);
            }
        } else {
            slot.weight = slot.weight.saturating_add(grown);
        }
        bumped
    }

    /// Hands over the period's hosts and starts empty.
    pub fn take(&mut self) -> KeyedMap<IpAddr, HostCounts> {
        let slots = std::mem::take(&mut self.slots);
        *self = HostTable::default();
        let mut hosts = KeyedMap::with_capacity_and_hasher(slots.len(), Default::default());
        hosts.extend(slots.into_iter().map(|s| (s.host, s.counts)));
        hosts
    }

    fn push(&mut self, host: IpAddr) -> u32 {
        let i = self.slots.len() as u32;
        self.slots.push(Slot {
            host,
            counts: HostCounts::default(),
            weight: 0,
            prev: NIL,
            next: NIL,
        });
        self.index.insert(host, i);
        if self.ranked {
            self.link(i, 0);
            self.min = 0;
        }
        i
    }

    /// Empties the lightest slot (the oldest of its weight) for `host`.
    fn evict_for(&mut self, host: IpAddr, bumped: &mut Bumped) -> Option<u32> {
        if !self.ranked {
            self.rank();
        }
        let i = match self.lists.get(&self.min) {
            Some(l) => l.head,
            None => {
                // The minimum moved without us: find it again.
                self.min = self.lists.keys().copied().min()?;
                self.lists.get(&self.min)?.head
            }
        };
        let evicted = self
            .evicted
            .get_or_insert_with(|| Evicted::new(self.slots.len()));
        let slot = self.slots.get_mut(i as usize)?;
        let weight = slot.weight;
        let old = std::mem::replace(&mut slot.host, host);
        let counts = std::mem::take(&mut slot.counts);
        // Counted before if it was evicted before (maybe, by the filter).
        slot.counts.uncounted = if evicted.maybe(&host) { weight } else { 0 };
        evicted.insert(&old);
        self.index.remove(&old);
        self.index.insert(host, i);
        self.evictions += 1;
        self.evicted_conns = self.evicted_conns.saturating_add(counts.total);
        bumped.freed_rcpt_bytes = counts.rcpts.addrs().map(str::len).sum();
        // The newcomer keeps the slot's weight and place: still the
        // lightest until its first count moves it up.
        Some(i)
    }

    /// Builds the weight lists, slots in admission order.
    fn rank(&mut self) {
        self.lists.clear();
        for i in 0..self.slots.len() as u32 {
            let w = self.slots[i as usize].weight;
            self.link(i, w);
        }
        self.min = self.lists.keys().copied().min().unwrap_or(0);
        self.ranked = true;
    }

    /// Appends slot `i` to the list of weight `w`.
    fn link(&mut self, i: u32, w: u64) {
        let tail = match self.lists.get_mut(&w) {
            Some(l) => {
                let t = l.tail;
                l.tail = i;
                t
            }
            None => {
                self.lists.insert(w, List { head: i, tail: i });
                NIL
            }
        };
        if let Some(t) = self.slots.get_mut(tail as usize) {
            t.next = i;
        }
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.weight = w;
            s.prev = tail;
            s.next = NIL;
        }
    }

    /// Takes slot `i` out of its list; true when the list is now empty.
    fn unlink(&mut self, i: u32) -> bool {
        let Some(s) = self.slots.get(i as usize) else {
            return false;
        };
        let (w, prev, next) = (s.weight, s.prev, s.next);
        if let Some(p) = self.slots.get_mut(prev as usize) {
            p.next = next;
        }
        if let Some(n) = self.slots.get_mut(next as usize) {
            n.prev = prev;
        }
        let Some(l) = self.lists.get_mut(&w) else {
            return false;
        };
        if l.head == i {
            l.head = next;
        }
        if l.tail == i {
            l.tail = prev;
        }
        if l.head == NIL {
            self.lists.remove(&w);
            return true;
        }
        false
    }

    /// Moves slot `i` one weight up.
    fn step(&mut self, i: u32) {
        let Some(w) = self.slots.get(i as usize).map(|s| s.weight) else {
            return;
        };
        let emptied = self.unlink(i);
        self.link(i, w.saturating_add(1));
        if emptied && w == self.min {
            self.min = w.saturating_add(1);
        }
    }

    /// Weights in list order, lightest first (tests).
    #[cfg(test)]
    fn ranking(&self) -> Vec<(IpAddr, u64)> {
        let mut ws: Vec<u64> = self.lists.keys().copied().collect();
        ws.sort_unstable();
        let mut out = Vec::new();
        for w in ws {
            let mut i = self.lists[&w].head;
            while i != NIL {
                let s = &self.slots[i as usize];
                assert_eq!(s.weight, w);
                out.push((s.host, w));
                i = s.next;
            }
        }
        out
    }
}

/// Bloom filter of the hosts evicted in the period: "maybe evicted" or
/// "certainly not". Allocated at the first eviction of a period, eight bits
/// per slot of the table and at least 128 KiB, at most 32 MiB (three
/// probes: about 3 % false positives once as many hosts were evicted as the
/// table holds, more after; a false positive only adds a bound to a notice,
/// never changes a count).
#[derive(Debug)]
struct Evicted {
    bits: Vec<u64>,
    mask: u64,
    hasher: foldhash::fast::RandomState,
}

impl Evicted {
    fn new(slots: usize) -> Self {
        let nbits = slots
            .saturating_mul(8)
            .clamp(1 << 20, 1 << 28)
            .next_power_of_two();
        Evicted {
            bits: vec![0; nbits / 64],
            mask: nbits as u64 - 1,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// (word, bit mask) of each probe.
    fn probes(&self, host: &IpAddr) -> [(usize, u64); 3] {
        let h = self.hasher.hash_one(host);
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        std::array::from_fn(|k| {
            let bit = a.wrapping_add((k as u64).wrapping_mul(b)) & self.mask;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, host: &IpAddr) {
        for (w, m) in self.probes(host) {
            if let Some(word) = self.bits.get_mut(w) {
                *word |= m;
            }
        }
    }

    fn maybe(&self, host: &IpAddr) -> bool {
        self.probes(host)
            .iter()
            .all(|&(w, m)| self.bits.get(w).is_some_and(|word| word & m != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(i.to_be_bytes())
    }

    fn count(t: &mut HostTable, host: IpAddr, max: usize) {
        t.bump(host, max, |h, _| h.total += 1);
    }

    /// The figure docs/OPERATIONS.md gives per counted host.
    #[test]
    fn a_place_is_small() {
        let place = std::mem::size_of::<Slot>();
        let entry = std::mem::size_of::<(IpAddr, u32)>();
        println!("host place {place} bytes, index entry {entry} bytes + 1 control byte");
        assert!(place <= 96 && entry <= 24, "{place} {entry}");
    }

    #[test]
    fn exact_while_there_is_room() {
        let mut t = HostTable::default();
        for round in 0..3 {
            for i in 0..10 {
                count(&mut t, ip(i), 10);
            }
            assert_eq!(t.len(), 10, "round {round}");
        }
        assert_eq!(t.evictions, 0);
        assert!(!t.ranked && t.evicted.is_none());
        let hosts = t.take();
        assert!(hosts.values().all(|h| h.total == 3 && h.uncounted == 0));
        assert!(t.is_empty());
    }

    #[test]
    fn a_newcomer_replaces_the_lightest_oldest_host() {
        let mut t = HostTable::default();
        // Weights: 0 -> 3, 1 -> 1, 2 -> 1, 3 -> 2.
        for (h, n) in [(0, 3), (1, 1), (2, 1), (3, 2)] {
            for _ in 0..n {
                count(&mut t, ip(h), 4);
            }
        }
        count(&mut t, ip(9), 4);
        // Host 1 (weight 1, older than host 2) made room; host 9 inherits
        // weight 1 and counts one: 2.
        assert!(t.get(&ip(1)).is_none());
        assert_eq!((t.evictions, t.evicted_conns), (1, 1));
        let h9 = t.get(&ip(9)).unwrap();
        assert_eq!((h9.total, h9.uncounted), (1, 0));
        assert_eq!(
            t.ranking(),
            [(ip(2), 1), (ip(3), 2), (ip(9), 2), (ip(0), 3)]
        );
        // Host 1 again: evicts host 2, and may have been counted before.
        count(&mut t, ip(1), 4);
        let h1 = t.get(&ip(1)).unwrap();
        assert_eq!((h1.total, h1.uncounted), (1, 1));
        assert_eq!(t.min, 2);
    }

    #[test]
    fn heavy_hitter_survives_a_flood_of_one_connection_hosts() {
        let mut t = HostTable::default();
        let spammer = ip(0xdead_beef);
        for i in 0..100_000u32 {
            count(&mut t, ip(i), 100);
            if i >= 50_000 && i % 50 == 0 {
                count(&mut t, spammer, 100);
            }
        }
        // Every connection since its first counted (its `uncounted` is 0
        // but for a Bloom false positive: about one in 400 000 runs here).
        let h = t.get(&spammer).unwrap();
        assert_eq!(h.total, 1000);
        assert_eq!(t.len(), 100);
        assert_eq!(t.evictions, 100_000 + 1 - 100);
    }

    #[test]
    fn weights_stay_consistent_under_random_updates() {
        let mut t = HostTable::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Skewed: a few hosts often, many rarely.
            let h = if x.is_multiple_of(4) {
                (x >> 8) % 8
            } else {
                (x >> 8) % 5_000
            } as u32;
            // Rejects without a new connection do not move the weight.
            if x.is_multiple_of(7) {
                t.bump(ip(h), 64, |c, fresh| {
                    if fresh {
                        c.total += 1;
                    }
                    c.rejects += 1;
                });
            } else {
                count(&mut t, ip(h), 64);
            }
            assert!(t.len() <= 64);
        }
        let r = t.ranking();
        assert_eq!(r.len(), 64);
        assert_eq!(r[0].1, t.min);
        assert!(r.windows(2).all(|w| w[0].1 <= w[1].1));
        for (host, w) in r {
            let c = t.get(&host).unwrap();
            assert!(c.total <= w && c.rejects <= c.total, "{host}");
            // The weight is the count plus what was inherited.
            assert!(c.uncounted <= w - c.total, "{host}");
        }
        // The hot hosts are all there.
        for h in 0..8 {
            assert!(t.get(&ip(h)).is_some(), "{h}");
        }
    }
}
