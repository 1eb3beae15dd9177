//! The subjects' index: a hash table of record offsets in buckets of one
//! cache line each, so that a look-up can be prefetched in two steps.
//!
//! A bucket holds [`WAYS`] slots: their tags (a byte of the hash, 0 for an
//! empty slot) and their records' 5-byte offsets, 64 bytes aligned. A key
//! goes to the first empty slot of its home bucket or, that one full, of
//! the buckets after it. Entries are never removed (a subject keeps its
//! record), so the slots of a bucket fill in order and an empty slot ends
//! every search. The table grows by doubling once 7/8 of its slots are
//! taken (the load `hashbrown` keeps), so one always stays empty.
//!
//! Why not `hashbrown` (which this replaces): finding a record there is
//! three dependent cache misses (the control bytes, the bucket, the
//! record) and `hashbrown` gives no way to touch the first without doing
//! the whole look-up, so a prefetch of the next facts' subjects could only
//! do their look-ups, one after another. Here the home bucket's address
//! is the hash alone ([`Index::touch`]), and the tags and offsets share
//! its line: [`Index::first_match`] then gives the record to touch
//! without reading any other line. A group of facts so waits for two
//! rounds of misses, not two or three misses each (BENCHMARKS.md, "Core:
//! validate → apply").

/// Slots in a bucket: ten tags and ten 5-byte offsets fill 60 of its 64 bytes.
const WAYS: usize = 10;

/// One cache line of slots.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// A byte of each slot's hash, never 0; 0: empty.
    tags: [u8; WAYS],
    /// Each slot's record offset.
    offsets: [[u8; 5]; WAYS],
}

const EMPTY: Bucket = Bucket { tags: [0; WAYS], offsets: [[0; 5]; WAYS] };

/// The empty slot that ended a search, in a table of `buckets` buckets:
/// every slot before it in the hash's probe sequence is taken, so while
/// the table has not grown and the slot is still empty, it is where an
/// entry with that hash goes (the first empty slot, as [`Index::insert`]
/// would find it). A look-up of a new subject then reads its buckets once,
/// not once to find and once to insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Vacancy {
    bucket: usize,
    way: usize,
    buckets: usize,
}

/// Record offsets by hash (module docs).
pub(super) struct Index {
    buckets: Vec<Bucket>,
    len: usize,
}

fn tag(hash: u64) -> u8 {
    (hash as u8).max(1)
}

fn to_slot(offset: u64) -> [u8; 5] {
    let b = offset.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4]]
}

fn of_slot(slot: &[u8; 5]) -> u64 {
    u64::from_le_bytes([slot[0], slot[1], slot[2], slot[3], slot[4], 0, 0, 0])
}

/// Buckets that hold `n` entries at most 7/8 full.
fn buckets_for(n: usize) -> usize {
    n.saturating_mul(8).div_ceil(7).div_ceil(WAYS).max(1)
}

impl Index {
    /// Room for `n` entries before it grows.
    pub fn with_capacity(n: usize) -> Index {
        Index { buckets: vec![EMPTY; buckets_for(n)], len: 0 }
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bucket a hash starts at: the hash scaled to the table
    /// (multiply and shift, so any number of buckets does).
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// The buckets a search for `hash` visits, in order, at most all of them.
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let (n, home) = (self.buckets.len(), self.home(hash));
        (0..n).map(move |i| if home + i < n { home + i } else { home + i - n })
    }

    /// Reads the home bucket of `hash` and nothing else: a load no later
    /// instruction waits for, so the misses of several overlap.
    pub fn touch(&self, hash: u64) -> u8 {
        self.buckets.get(self.home(hash)).map_or(0, |b| b.tags[0])
    }

    /// The offset in the first slot whose tag is `hash`'s (the likely
    /// record), without checking the key: to touch it ahead of a look-up.
    pub fn first_match(&self, hash: u64) -> Option<u64> {
        let t = tag(hash);
        for b in self.probe(hash) {
            let bucket = &self.buckets[b];
            for (tag, slot) in bucket.tags.iter().zip(&bucket.offsets) {
                if *tag == t {
                    return Some(of_slot(slot));
                }
                if *tag == 0 {
                    return None;
                }
            }
        }
        None
    }

    /// The offset of the entry with `hash` whose record `is_key` accepts;
    /// if there is none, the empty slot that ended the search, where
    /// [`Index::insert`] puts that entry without searching again.
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u64) -> bool) -> (Option<u64>, Option<Vacancy>) {
        let t = tag(hash);
        for b in self.probe(hash) {
            let bucket = &self.buckets[b];
            for (way, (tag, slot)) in bucket.tags.iter().zip(&bucket.offsets).enumerate() {
                if *tag == t && is_key(of_slot(slot)) {
                    return (Some(of_slot(slot)), None);
                }
                if *tag == 0 {
                    return (None, Some(Vacancy { bucket: b, way, buckets: self.buckets.len() }));
                }
            }
        }
        (None, None)
    }

    /// Moves the entry with `hash` at offset `from` to offset `to`.
    pub fn relocate(&mut self, hash: u64, from: u64, to: u64) {
        let t = tag(hash);
        for b in self.probe(hash) {
            let bucket = &mut self.buckets[b];
            for (tag, slot) in bucket.tags.iter().zip(bucket.offsets.iter_mut()) {
                if *tag == t && of_slot(slot) == from {
                    *slot = to_slot(to);
                    return;
                }
                if *tag == 0 {
                    return;
                }
            }
        }
    }

    /// Adds an entry not in the table; `hash_at` gives the hash of any
    /// entry already there (by its offset), to grow the table. `vacancy`,
    /// from a [`Index::find`] of the same hash, is where it goes unless the
    /// table grew or that slot was taken since (then it searches).
    pub fn insert(&mut self, hash: u64, offset: u64, vacancy: Option<Vacancy>, hash_at: impl Fn(u64) -> u64) {
        if (self.len + 1) * 8 > self.buckets.len() * WAYS * 7 {
            self.grow(&hash_at);
        }
        match vacancy {
            Some(v) if v.buckets == self.buckets.len() && self.buckets[v.bucket].tags[v.way] == 0 => {
                self.fill(v.bucket, v.way, hash, offset);
            }
            _ => self.place(hash, offset),
        }
    }

    /// Puts an entry in the first empty slot of its probe sequence.
    fn place(&mut self, hash: u64, offset: u64) {
        for b in self.probe(hash) {
            if let Some(free) = self.buckets[b].tags.iter().position(|t| *t == 0) {
                self.fill(b, free, hash, offset);
                return;
            }
        }
    }

    /// Puts an entry in the empty slot `way` of bucket `b`.
    fn fill(&mut self, b: usize, way: usize, hash: u64, offset: u64) {
        let bucket = &mut self.buckets[b];
        bucket.tags[way] = tag(hash);
        bucket.offsets[way] = to_slot(offset);
        self.len += 1;
    }

    /// Twice the buckets, every entry placed again.
    ///
    /// A group of entries is hashed before any of it is placed: each hash
    /// reads its record (a cache miss at national size), and these reads
    /// do not depend on each other, so their misses overlap; placing each
    /// entry before hashing the next left about one in flight at a time
    /// (BENCHMARKS.md, "The load, looked at again").
    fn grow(&mut self, hash_at: &impl Fn(u64) -> u64) {
        const GROUP: usize = 16;
        let doubled = vec![EMPTY; (self.buckets.len() * 2).max(1)];
        let old = std::mem::replace(&mut self.buckets, doubled);
        self.len = 0;
        let mut group = [(0u64, 0u64); GROUP];
        let mut n = 0;
        let offsets = old.iter().flat_map(|b| b.tags.iter().zip(&b.offsets).filter(|(t, _)| **t != 0));
        for (_, slot) in offsets {
            group[n].0 = of_slot(slot);
            n += 1;
            if n == GROUP {
                self.place_group(&mut group, hash_at);
                n = 0;
            }
        }
        self.place_group(&mut group[..n], hash_at);
    }

    /// Hashes every entry of `group` (offset, hash), then places them.
    fn place_group(&mut self, group: &mut [(u64, u64)], hash_at: &impl Fn(u64) -> u64) {
        for (offset, hash) in group.iter_mut() {
            *hash = hash_at(*offset);
        }
        for (offset, hash) in group.iter() {
            self.place(*hash, *offset);
        }
    }

    /// Every entry's offset, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.tags.iter().zip(&b.offsets).filter(|(t, _)| **t != 0).map(|(_, slot)| of_slot(slot)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!((std::mem::size_of::<Bucket>(), std::mem::align_of::<Bucket>()), (64, 64));
    }

    proptest! {
        /// Whatever the hashes (few distinct ones included, so that buckets
        /// overflow into their neighbours and tags collide; the highest ones
        /// start at the last bucket, so their overflow wraps around to the
        /// first), the index finds, relocates and lists what a map of the
        /// same entries holds, through any number of doublings.
        #[test]
        fn the_index_behaves_as_a_map(
            hashes in prop::collection::vec(prop_oneof![0u64..40, u64::MAX - 40..=u64::MAX, any::<u64>()], 1..600),
            moves in prop::collection::vec((any::<prop::sample::Index>(), 1u64..1_000), 0..100),
            capacity in 0usize..64,
            searched in any::<u64>(),
        ) {
            // Entry k has offset 10 * k + 1 and its hash from `hashes`; it
            // goes in at the vacancy its look-up found, or (bit k % 64 of
            // `searched` clear) with none.
            let mut index = Index::with_capacity(capacity);
            let mut hash_of: HashMap<u64, u64> = HashMap::new();
            for (k, h) in hashes.iter().enumerate() {
                let offset = 10 * k as u64 + 1;
                let (found, vacancy) = index.find(*h, |at| at == offset);
                prop_assert_eq!(found, None);
                let vacancy = vacancy.filter(|_| searched >> (k % 64) & 1 == 1);
                index.insert(*h, offset, vacancy, |at| hash_of[&at]);
                hash_of.insert(offset, *h);
                prop_assert!(index.len() * 8 <= index.buckets.len() * WAYS * 7);
            }
            // Moving a record keeps its hash.
            for (which, by) in moves {
                let from = *hash_of.keys().nth(which.index(hash_of.len())).unwrap();
                let to = from + 1_000_000 * by;
                if hash_of.contains_key(&to) {
                    continue;
                }
                let h = hash_of.remove(&from).unwrap();
                index.relocate(h, from, to);
                hash_of.insert(to, h);
            }
            prop_assert_eq!(index.len(), hash_of.len());
            for (offset, h) in &hash_of {
                prop_assert_eq!(index.find(*h, |at| at == *offset), (Some(*offset), None));
                // The first entry with the same tag: maybe another key's.
                let first = index.first_match(*h).unwrap();
                prop_assert_eq!(tag(hash_of[&first]), tag(*h));
                // An offset no entry has is not found (offsets are never 0).
                prop_assert_eq!(index.find(*h, |at| at == 0).0, None);
            }
            let mut listed: Vec<u64> = index.iter().collect();
            listed.sort_unstable();
            let mut want: Vec<u64> = hash_of.keys().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(listed, want);
        }
    }

    #[test]
    fn a_vacancy_taken_or_outgrown_since_is_not_used() {
        // Hash 0's home is bucket 0: its entries fill slots 0, 1, 2, …
        let mut index = Index::with_capacity(WAYS * 7 / 8);
        let stale = index.find(0, |_| false).1;
        assert_eq!(stale, Some(Vacancy { bucket: 0, way: 0, buckets: 1 }));
        index.insert(0, 1, stale, |_| 0);
        index.insert(0, 2, stale, |_| 0);
        assert_eq!(index.iter().collect::<Vec<_>>(), [1, 2], "taken: the next empty slot");
        // Hash MAX's home is bucket 0 of one, bucket 1 of two.
        let hash = |at: u64| if at <= 2 { 0 } else { u64::MAX };
        let grown = index.find(u64::MAX, |_| false).1;
        assert_eq!(grown, Some(Vacancy { bucket: 0, way: 2, buckets: 1 }));
        for k in 3..=8 {
            index.insert(u64::MAX, k, None, hash);
        }
        assert_eq!(index.buckets.len(), 1);
        index.insert(u64::MAX, 9, grown, hash);
        assert_eq!(index.buckets.len(), 2, "the ninth entry grew the table");
        // Bucket 0 way 2 is empty again, but not where hash MAX goes now.
        assert_eq!(index.find(u64::MAX, |at| at == 9).0, Some(9));
        assert_eq!(index.iter().collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    }

    #[test]
    fn a_key_not_there_is_not_found() {
        let mut index = Index::with_capacity(0);
        for k in 0..1_000u64 {
            index.insert(k % 7, k + 1, None, |at| (at - 1) % 7);
        }
        assert_eq!(index.find(3, |at| at == 5_000).0, None);
        assert_eq!(index.find(3, |at| at == 4).0, Some(4));
        assert_eq!(index.first_match(3), Some(4), "the first entry of hash 3 is offset 4");
        assert_eq!(Index::with_capacity(5).first_match(3), None);
    }
}
