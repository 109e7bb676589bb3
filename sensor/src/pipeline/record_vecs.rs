//! Record vectors handed back from the log writer to the workers.
//!
//! A worker gathers a window's finished records in a vector and hands the
//! vector to the log writer in its report; the writer sorts, writes and
//! drops them. Started from an empty vector each time, a report's vector
//! grew by doubling (copying its records at every step, up to
//! [`PARTIAL_REPORT_RECORDS`](super::worker::PARTIAL_REPORT_RECORDS) of a
//! few hundred bytes each), and was freed on the writer's thread. The
//! allocator then served the worker's next vectors from memory it had not
//! used yet: live at 2 Mpps the capture thread spent ≈ 10 % of its time in
//! page faults, the kernel zeroing fresh huge pages for those vectors. With
//! the emptied vectors going back to the workers, a steady load reuses the
//! same few buffers.

use std::sync::{Arc, Mutex};

use crate::pipeline::worker::PARTIAL_REPORT_RECORDS;
use crate::smtp::record::ConnRecord;

/// A vector larger than this many records is not kept (one window's burst
/// must not hold its memory for good).
const MAX_KEPT_CAPACITY: usize = 2 * PARTIAL_REPORT_RECORDS;

/// Emptied record vectors waiting for a worker.
#[derive(Debug)]
pub struct RecordVecs {
    spare: Mutex<Vec<Vec<ConnRecord>>>,
    /// Vectors kept at most.
    keep: usize,
}

impl RecordVecs {
    /// A pool keeping up to `keep` vectors: a few per worker covers the
    /// reports in flight (the writer holds a window until every worker
    /// closed it).
    pub fn new(keep: usize) -> Arc<RecordVecs> {
        Arc::new(RecordVecs {
            spare: Mutex::new(Vec::with_capacity(keep)),
            keep,
        })
    }

    /// The pool for `workers` workers.
    pub fn for_workers(workers: usize) -> Arc<RecordVecs> {
        RecordVecs::new(4 * workers.max(1) + 2)
    }

    /// An empty vector, with the capacity of one used before when there is
    /// one.
    pub fn take(&self) -> Vec<ConnRecord> {
        match self.spare.lock() {
            Ok(mut s) => s.pop().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Drops `v`'s records (on the calling thread) and keeps its buffer
    /// for a worker, unless the pool is full or the buffer is oversized.
    pub fn put(&self, mut v: Vec<ConnRecord>) {
        v.clear();
        if v.capacity() == 0 || v.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        if let Ok(mut s) = self.spare.lock()
            && s.len() < self.keep
        {
            s.push(v);
        }
    }

    /// Vectors waiting.
    pub fn len(&self) -> usize {
        self.spare.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_capacity() {
        let pool = RecordVecs::new(2);
        assert!(pool.take().capacity() == 0);
        let v: Vec<ConnRecord> = Vec::with_capacity(100);
        let ptr = v.as_ptr();
        pool.put(v);
        assert_eq!(pool.len(), 1);
        let back = pool.take();
        assert!(back.is_empty());
        assert_eq!(back.capacity(), 100);
        assert_eq!(back.as_ptr(), ptr, "the same buffer");
        assert!(pool.is_empty());
    }

    #[test]
    fn the_pool_is_bounded_in_count_and_size() {
        let pool = RecordVecs::new(2);
        for _ in 0..5 {
            pool.put(Vec::with_capacity(10));
        }
        assert_eq!(pool.len(), 2);
        let pool = RecordVecs::new(2);
        pool.put(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        pool.put(Vec::new());
        assert!(pool.is_empty());
    }
}
