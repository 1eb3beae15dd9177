//! The hash of the shard's subject index and overflow set ([`KeyHash`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Hashing for the shard's subject index and overflow set, whose keys are
/// 16 bytes that are already uniformly distributed: subject digests (keyed
/// HMAC outputs, which nobody can aim without the key) and event keys
/// (XXH3-128 of the event id).
///
/// A key's two 64-bit halves, each XOR-ed with a per-table random seed, are
/// multiplied to 128 bits and the product's halves XOR-ed (the "folded
/// multiply" of foldhash and wyhash), and [`Hasher::finish`] folds the
/// result once more with a fixed odd constant (foldhash's "quality"
/// finish): two multiplications instead of SipHash's rounds. One alone
/// was not enough for keys that differ in few low bits: with a seed whose
/// multiplier lies near 2⁶⁴ or a simple fraction of it (4 seeds of 2,000
/// tried), the low bit of 10,000 consecutive integers' hashes was set
/// 4,352 to 6,236 times instead of 5,000 ± 50; with the finish, none of
/// 3,000 seeds left bit 0, 5, 17, 31 or 63 outside ± 300. The seed keeps
/// the table layout unpredictable, so event ids crafted to collide in
/// XXH3's output bits still do not pile up in one probe sequence. Taking
/// digest bytes as the hash directly would not do either:
/// [`crate::fact::Digest::shard`] routes by the low bytes, so within a
/// shard those bits are far from uniform.
#[derive(Clone, Debug)]
pub(super) struct KeyHash {
    pub(super) seed: [u64; 2],
}

impl KeyHash {
    /// Seeds from the process's random source (as std's `RandomState`).
    pub(super) fn new() -> Self {
        let s = RandomState::new();
        KeyHash { seed: [s.hash_one(0x243F_6A88_85A3_08D3_u64) | 1, s.hash_one(0x1319_8A2E_0370_7344_u64) | 1] }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { seed: self.seed, h: 0 }
    }
}

/// The hasher of [`KeyHash`].
pub(super) struct KeyHasher {
    seed: [u64; 2],
    h: u64,
}

/// The constant of [`KeyHasher::finish`]'s fold: π's first 64 fraction
/// bits, odd (foldhash's `ARBITRARY0`).
const FINISH: u64 = 0x243F_6A88_85A3_08D3;

/// The 128-bit product of `a` and `b`, its halves XOR-ed.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    #[inline]
    fn block(&mut self, lo: u64, hi: u64) {
        self.h = folded_multiply(lo ^ self.seed[0] ^ self.h.rotate_left(29), hi ^ self.seed[1]);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let (lo, hi) = c.split_at(8);
            self.block(
                u64::from_le_bytes(lo.try_into().unwrap_or_default()),
                u64::from_le_bytes(hi.try_into().unwrap_or_default()),
            );
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 16];
            b[..rest.len()].copy_from_slice(rest);
            let (lo, hi) = b.split_at(8);
            let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default()) ^ ((rest.len() as u64) << 56);
            self.block(u64::from_le_bytes(lo.try_into().unwrap_or_default()), hi);
        }
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.block(v as u64, (v >> 64) as u64);
    }

    /// Length prefixes (a `[u8; 16]` writes its length first).
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.h = self.h.wrapping_add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.h, FINISH)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::fact::Digest;

    #[test]
    fn key_hash_spreads_the_keys_of_one_shard() {
        // Digests routed to shard 0 of 2 all have an even first byte: a hash
        // taking those bytes as they are would leave half the buckets empty.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let build = KeyHash::new();
        let (mut low_bit, mut top7, mut n) = (0, HashSet::new(), 0);
        while n < 10_000 {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&next().to_le_bytes());
            d[8..].copy_from_slice(&next().to_le_bytes());
            let d = Digest(d);
            if d.shard(2) != 0 {
                continue;
            }
            n += 1;
            let h = build.hash_one(d);
            assert_eq!(h, build.hash_one(d));
            low_bit += h & 1;
            top7.insert(h >> 57);
        }
        // Binomial(10,000, ½): 5,000 ± 50; ±300 is six deviations.
        assert!((4_700..=5_300).contains(&low_bit), "{low_bit}");
        assert_eq!(top7.len(), 128);
        // Event keys: consecutive integers spread too.
        let low: u64 = (0..10_000u128).map(|k| build.hash_one(k) & 1).sum();
        assert!((4_700..=5_300).contains(&low), "{low}");
        // Two maps get different seeds (equal with odds 2⁻⁶⁴).
        assert_ne!(KeyHash::new().hash_one(1u128), KeyHash::new().hash_one(1u128));
    }
}
