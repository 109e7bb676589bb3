//! xorshift64*: a deterministic generator without a dependency, for the
//! generated captures and the randomized tests (the same bytes every run).

pub struct Rng(pub u64);

impl Rng {
    /// The next value (the state must not be 0).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
