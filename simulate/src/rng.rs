//! The simulator's random numbers: splitmix64, small, fast and deterministic
//! (not for secrets). The same seed always draws the same sequence. The
//! campaign and the hotline report generator share it.

/// splitmix64: small, fast, deterministic.
#[derive(Clone, Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in `0..n` (0 when n is 0; a draw is made either way, and no
    /// caller asks for `n` = 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `lo..hi` (milliseconds and such).
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// True with probability `percent` / 100.
    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// An instant in `(lo, hi]`, nearer `lo` more often; `lo + 1` when the
    /// interval is empty.
    pub(crate) fn within(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).saturating_sub(1).max(0) as u64;
        let a = self.below(span.saturating_add(1));
        let b = self.below(span.saturating_add(1));
        lo + 1 + a.min(b) as i64
    }
}

/// The splitmix64 finaliser: a well-mixed 64-bit hash of `z`.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
