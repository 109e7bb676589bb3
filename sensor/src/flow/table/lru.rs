//! A slab of values threaded on intrusive doubly linked lists, most recently
//! active first: what both flow stores (full flows and compact silent ones)
//! keep their entries in.
//!
//! Touching, unlinking and taking the oldest entry are O(1) and allocate
//! nothing once the slab has grown; a freed place is reused by the next
//! insertion, so under a flood that ages entries out as fast as it makes them
//! the slab is walked like a ring (the places written are the ones just read),
//! which is kind to the cache. Places are numbered with `u32` (`NIL` is
//! "none"): callers bound the slab below `u32::MAX` entries.

const NIL: u32 = u32::MAX;

/// One list's ends.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

struct Node<T> {
    value: T,
    prev: u32,
    next: u32,
}

/// Values of type `T`, each on one of `N` lists. The caller says which list
/// a value is on (it knows from the value's state): the slab does not store
/// it.
pub struct LruSlab<T, const N: usize> {
    nodes: Vec<Option<Node<T>>>,
    free: Vec<u32>,
    lists: [List; N],
    len: usize,
}

impl<T, const N: usize> Default for LruSlab<T, N> {
    fn default() -> Self {
        LruSlab {
            nodes: Vec::new(),
            free: Vec::new(),
            lists: [EMPTY; N],
            len: 0,
        }
    }
}

impl<T, const N: usize> LruSlab<T, N> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Places the slab has grown to (taken or free).
    #[cfg(test)]
    pub fn places(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, i: u32) -> Option<&T> {
        self.node(i).map(|n| &n.value)
    }

    pub fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.node_mut(i).map(|n| &mut n.value)
    }

    /// The least recently active entry of `list`.
    pub fn tail(&self, list: usize) -> Option<u32> {
        self.lists.get(list).map(|l| l.tail).filter(|&t| t != NIL)
    }

    /// The most recently active entry of `list`.
    pub fn head(&self, list: usize) -> Option<u32> {
        self.lists.get(list).map(|l| l.head).filter(|&h| h != NIL)
    }

    fn node(&self, i: u32) -> Option<&Node<T>> {
        self.nodes.get(i as usize).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node<T>> {
        self.nodes.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// Stores `value` at the head of `list`; its place.
    pub fn insert(&mut self, list: usize, value: T) -> u32 {
        let node = Some(Node {
            value,
            prev: NIL,
            next: NIL,
        });
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.nodes.get_mut(i as usize) {
                    *s = node;
                }
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.len += 1;
        self.link_front(i, list);
        i
    }

    /// Takes entry `i` (on `list`) out of the slab.
    pub fn remove(&mut self, i: u32, list: usize) -> Option<T> {
        self.node(i)?;
        self.unlink(i, list);
        let node = self.nodes.get_mut(i as usize).and_then(Option::take)?;
        self.free.push(i);
        self.len -= 1;
        Some(node.value)
    }

    /// Entry `i` was active: from list `from` to the head of list `to`.
    pub fn touch(&mut self, i: u32, from: usize, to: usize) {
        if from != to || self.head(to) != Some(i) {
            self.unlink(i, from);
            self.link_front(i, to);
        }
    }

    fn unlink(&mut self, i: u32, list: usize) {
        let Some((prev, next)) = self.node(i).map(|n| (n.prev, n.next)) else {
            return;
        };
        let Some(l) = self.lists.get(list).copied() else {
            return;
        };
        let mut l = l;
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => l.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => l.tail = prev,
        }
        if let Some(slot) = self.lists.get_mut(list) {
            *slot = l;
        }
    }

    fn link_front(&mut self, i: u32, list: usize) {
        let Some(old) = self.lists.get(list).map(|l| l.head) else {
            return;
        };
        if let Some(n) = self.node_mut(i) {
            n.prev = NIL;
            n.next = old;
        }
        let tail_too = match self.node_mut(old) {
            Some(h) => {
                h.prev = i;
                false
            }
            None => true,
        };
        if let Some(l) = self.lists.get_mut(list) {
            l.head = i;
            if tail_too {
                l.tail = i;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of `list`, head to tail.
    fn order(s: &LruSlab<u32, 2>, list: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = s.head(list);
        while let Some(i) = at {
            out.push(*s.get(i).unwrap());
            at = s.node(i).map(|n| n.next).filter(|&n| n != NIL);
        }
        out
    }

    #[test]
    fn lists_keep_activity_order() {
        let mut s: LruSlab<u32, 2> = LruSlab::default();
        let a = s.insert(0, 1);
        let b = s.insert(0, 2);
        let c = s.insert(1, 3);
        assert_eq!(order(&s, 0), [2, 1]);
        assert_eq!(order(&s, 1), [3]);
        s.touch(a, 0, 0);
        assert_eq!(order(&s, 0), [1, 2]);
        s.touch(b, 0, 1);
        assert_eq!(order(&s, 0), [1]);
        assert_eq!(order(&s, 1), [2, 3]);
        assert_eq!(s.tail(1), Some(c));
        assert_eq!(s.remove(c, 1), Some(3));
        assert_eq!(s.remove(c, 1), None);
        assert_eq!(order(&s, 1), [2]);
        assert_eq!(s.len(), 2);
        // The freed place is the next one used.
        assert_eq!(s.insert(0, 4), c);
        assert_eq!(order(&s, 0), [4, 1]);
        assert_eq!(s.remove(a, 0), Some(1));
        assert_eq!(s.remove(b, 1), Some(2));
        assert_eq!(s.tail(1), None);
        assert_eq!(order(&s, 0), [4]);
    }
}
