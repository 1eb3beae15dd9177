//! A shard's per-subject state, one record per subject, in one arena.
//!
//! A subject's record holds everything the rules keep for it: its
//! first-qualifying events ([`super::Firsts`]), its `sim.signature` events
//! ([`super::Sigs`]) and the keys of its other applied events (the dedup
//! keys no record holds, 8 bytes each: they only have to tell apart the
//! events of one subject; at most `super::INLINE_KEYS` of them, further
//! ones are in the shard's overflow set). Before, these were three hash tables (two maps
//! of a 16-byte digest and a boxed record, and a set of 128-bit keys), so a
//! subject paid for two or three slots of 17–33 bytes at the tables' load
//! factor, a heap allocation per record with its header and rounding, and a
//! 16-byte key per event in the set (BENCHMARKS.md, "One record per
//! subject").
//!
//! Here the records live back to back in an [`Arena`]; the index is a
//! hash table of 5-byte offsets (a slot of 6.4 bytes with its tag, ten to
//! a cache line: `index.rs`; 1 TiB of records per shard), hashed by the
//! digest, which the record itself holds. A look-up that finds its subject reads
//! the record anyway, so keeping the digest out of the table costs no
//! extra cache miss. A record that changes size moves to a slot of its new
//! size: the old slot goes on a free list of its size and is taken by the
//! next record of that size, so there is no compaction pass and no garbage
//! beyond the free slots.
//!
//! Record layout (little endian): the digest (16 bytes), then the body
//! ([`Body`]): LEB128 length and bytes of the first-event records, LEB128
//! length and bytes of the signature events, LEB128 count and the dedup
//! keys (`u64` each). A record's length is read from its body: it carries
//! no length of its own.
//!
//! Hand-written rather than a crate: nothing well kept stores
//! variable-length records without a pointer (16 bytes with its length)
//! and a heap header per record, which were most of what this replaces.

use std::hash::BuildHasher;

use super::arena::Arena;
use super::index::{Index, Vacancy};
use super::leb128;
use super::KeyHash;
use crate::fact::Digest;

/// The subject's digest.
const HEAD: usize = 16;

/// Where a subject's record is (or goes): its hash, and its offset if it
/// has one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Place {
    hash: u64,
    at: Option<u64>,
    /// Without a record: where the index puts it.
    vacancy: Option<Vacancy>,
}

impl Place {
    /// Whether the subject has a record.
    pub fn is_taken(&self) -> bool {
        self.at.is_some()
    }
}

/// The subjects of one shard (module docs).
pub(super) struct Subjects {
    index: Index,
    hash: KeyHash,
    arena: Arena,
}

/// A record's body, borrowed: what the rules keep for one subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Body<'a> {
    /// The first-event records ([`super::Firsts`]' bytes), maybe empty.
    pub firsts: &'a [u8],
    /// The signature events ([`super::Sigs`]' bytes), maybe empty.
    pub sigs: &'a [u8],
    /// The dedup keys, 8 bytes each.
    pub keys: &'a [u8],
}

impl<'a> Body<'a> {
    /// Parses a body that is all of `bytes`; `None` if it runs past their
    /// end or stops before it.
    pub fn parse(bytes: &'a [u8]) -> Option<Body<'a>> {
        let (body, len) = Body::read(bytes)?;
        (len == bytes.len()).then_some(body)
    }

    /// Parses the body at the start of `bytes`; returns it and its length.
    fn read(bytes: &'a [u8]) -> Option<(Body<'a>, usize)> {
        let (firsts, rest) = prefixed(bytes, 1)?;
        let (sigs, rest) = prefixed(rest, 1)?;
        let (keys, rest) = prefixed(rest, 8)?;
        Some((Body { firsts, sigs, keys }, bytes.len() - rest.len()))
    }

    /// Appends this body's bytes with `more` keys after its own.
    pub fn encode(&self, more: &[u64], out: &mut Vec<u8>) {
        leb128::write(self.firsts.len(), out);
        out.extend_from_slice(self.firsts);
        leb128::write(self.sigs.len(), out);
        out.extend_from_slice(self.sigs);
        leb128::write(self.key_count() + more.len(), out);
        out.extend_from_slice(self.keys);
        for k in more {
            out.extend_from_slice(&k.to_le_bytes());
        }
    }

    /// Whether the subject holds a first or a signature event (it counts
    /// as a subject holding state).
    pub fn holds_state(&self) -> bool {
        !self.firsts.is_empty() || !self.sigs.is_empty()
    }

    /// The number of dedup keys.
    pub fn key_count(&self) -> usize {
        self.keys.len() / 8
    }

    /// Whether `key` is one of the dedup keys.
    pub fn has_key(&self, key: u64) -> bool {
        let key = key.to_le_bytes();
        self.keys.chunks_exact(8).any(|k| k == key)
    }
}

/// A LEB128-prefixed slice of that many items of `size` bytes at the
/// start of `bytes`, and what follows it.
fn prefixed(bytes: &[u8], size: usize) -> Option<(&[u8], &[u8])> {
    let (len, at) = leb128::read(bytes)?;
    let end = at.checked_add(len.checked_mul(size)?)?;
    Some((bytes.get(at..end)?, bytes.get(end..)?))
}

impl Subjects {
    /// No subjects, room for `capacity` without growing the index, hashed
    /// with `hash` (a snapshot passes the seed it was written with, so the
    /// records are inserted in the order of the index's slots).
    pub fn with_capacity_and_hasher(capacity: usize, hash: KeyHash) -> Self {
        Subjects { index: Index::with_capacity(capacity), hash, arena: Arena::default() }
    }

    /// The index's hash (a snapshot keeps its seed).
    pub fn hasher(&self) -> &KeyHash {
        &self.hash
    }

    /// Subjects with a record.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes of the arena that hold no record (free slots).
    pub fn free_bytes(&self) -> usize {
        self.arena.free_bytes()
    }

    /// The record of `subject`, if it has one, and where a new body for
    /// it goes ([`Subjects::put`]).
    pub fn get(&self, subject: &Digest) -> (Place, Option<Body<'_>>) {
        let hash = self.hash.hash_one(subject);
        let (at, vacancy) = self.index.find(hash, |at| digest_at(&self.arena, at) == Some(&subject.0));
        (Place { hash, at, vacancy }, at.and_then(|at| body_at(&self.arena, at)).map(|(body, _)| body))
    }

    /// Reads the index's bucket for `subject` (a prefetch's first round).
    pub fn touch_index(&self, subject: &Digest) -> u8 {
        self.index.touch(self.hash.hash_one(subject))
    }

    /// Reads the first byte of the record the index most likely gives
    /// `subject`, without checking it is the subject's (a prefetch's
    /// second round, once its bucket is in cache).
    pub fn touch_record(&self, subject: &Digest) -> u8 {
        let at = self.index.first_match(self.hash.hash_one(subject));
        at.and_then(|at| self.arena.from(at)?.first().copied()).unwrap_or(0)
    }

    /// Sets the body of the record at `place` (from [`Subjects::get`] for
    /// `subject`, with nothing changed since) to `body`'s bytes
    /// ([`Body::encode`]), creating it if the subject had none.
    pub fn put(&mut self, place: Place, subject: &Digest, body: &[u8]) {
        let len = HEAD + body.len();
        let was = place.at.and_then(|at| body_at(&self.arena, at)).map(|(_, bytes)| HEAD + bytes.len());
        match (place.at, was) {
            (Some(at), Some(was)) if was == len => {
                if let Some(rec) = self.arena.slot_mut(at, len) {
                    rec[HEAD..].copy_from_slice(body);
                }
            }
            (Some(at), was) => {
                self.arena.release(at, was.unwrap_or(0));
                let new = self.arena.add(&subject.0, body);
                self.index.relocate(place.hash, at, new);
            }
            (None, _) => {
                let new = self.arena.add(&subject.0, body);
                let (arena, hash_of) = (&self.arena, &self.hash);
                // Rehashing (if the index grows) reads only the records
                // in it: the new one is not yet.
                self.index.insert(place.hash, new, place.vacancy, |at| {
                    digest_at(arena, at).map_or(0, |d| hash_of.hash_one(Digest(*d)))
                });
            }
        }
    }

    /// Every subject with its body's bytes, in the order of the index's
    /// slots.
    pub fn iter(&self) -> impl Iterator<Item = (Digest, &[u8])> {
        self.index.iter().filter_map(|at| Some((Digest(*digest_at(&self.arena, at)?), body_at(&self.arena, at)?.1)))
    }
}

/// The digest bytes of the record at `at`.
fn digest_at(arena: &Arena, at: u64) -> Option<&[u8; 16]> {
    arena.from(at)?.get(..HEAD)?.try_into().ok()
}

/// The body of the record at `at`, parsed and as bytes.
fn body_at(arena: &Arena, at: u64) -> Option<(Body<'_>, &[u8])> {
    let bytes = arena.from(at)?.get(HEAD..)?;
    let (body, len) = Body::read(bytes)?;
    Some((body, bytes.get(..len)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 16])
    }

    fn body(firsts: &[u8], sigs: &[u8], keys: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        Body { firsts, sigs, keys: &[] }.encode(keys, &mut out);
        out
    }

    /// Puts a body; whether the subject was new.
    fn put(s: &mut Subjects, subject: &Digest, body: &[u8]) -> bool {
        let (place, _) = s.get(subject);
        s.put(place, subject, body);
        !place.is_taken()
    }

    fn get<'a>(s: &'a Subjects, subject: &Digest) -> Option<Body<'a>> {
        s.get(subject).1
    }

    fn at(s: &Subjects, subject: &Digest) -> Option<u64> {
        s.get(subject).0.at
    }

    #[test]
    fn records_are_found_moved_and_their_slots_reused() {
        let mut s = Subjects::with_capacity_and_hasher(0, KeyHash::new());
        assert_eq!(get(&s, &d(1)), None);
        assert!(put(&mut s, &d(1), &body(b"abc", b"", &[7])));
        assert!(put(&mut s, &d(2), &body(b"", b"xy", &[])));
        let one = get(&s, &d(1)).unwrap();
        assert_eq!((one.firsts, one.sigs, one.key_count()), (&b"abc"[..], &b""[..], 1));
        assert!(one.has_key(7) && !one.has_key(8));
        assert!(get(&s, &d(2)).unwrap().holds_state());
        assert_eq!(s.len(), 2);
        // Grows: moves, its old slot is free and taken by the next record of that size.
        let one = at(&s, &d(1)).unwrap();
        assert!(!put(&mut s, &d(1), &body(&[1; 40], b"", &[7, 8])));
        assert_eq!(s.free_bytes(), HEAD + 3 + 3 + 8);
        assert_eq!(get(&s, &d(1)).unwrap().firsts, &[1; 40]);
        put(&mut s, &d(3), &body(b"abc", b"", &[9]));
        assert_eq!((s.free_bytes(), at(&s, &d(3))), (0, Some(one)));
        // Same size: in place.
        put(&mut s, &d(3), &body(b"abd", b"", &[9]));
        assert_eq!((at(&s, &d(3)), get(&s, &d(3)).unwrap().firsts), (Some(one), &b"abd"[..]));
        let mut all: Vec<_> = s
            .iter()
            .map(|(k, b)| Body::parse(b).map(|b| (k.0[0], b.firsts.len(), b.sigs.len(), b.key_count())).unwrap())
            .collect();
        all.sort();
        assert_eq!(all, [(1, 40, 0, 2), (2, 0, 2, 0), (3, 3, 0, 1)]);
    }

    #[test]
    fn many_subjects_survive_the_index_growing() {
        let mut s = Subjects::with_capacity_and_hasher(0, KeyHash::new());
        let key = |i: u32| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            Digest(k)
        };
        for i in 0..5_000u32 {
            assert!(put(&mut s, &key(i), &body(&i.to_le_bytes(), b"", &[u64::from(i)])));
        }
        // Every record moves once more after the index has grown.
        for i in 0..5_000u32 {
            assert!(!put(&mut s, &key(i), &body(&i.to_le_bytes(), b"", &[u64::from(i), 1])));
        }
        for i in 0..5_000u32 {
            let b = get(&s, &key(i)).unwrap();
            assert_eq!(b.firsts, i.to_le_bytes());
            assert!(b.has_key(u64::from(i)) && b.has_key(1));
        }
        assert_eq!(s.len(), 5_000);
    }

    #[test]
    fn a_body_that_runs_past_its_end_does_not_parse() {
        assert_eq!(Body::parse(&[]), None);
        assert_eq!(Body::parse(&[3, b'a', b'b']), None);
        assert_eq!(Body::parse(&[0, 0, 1, 2, 3]), None, "keys not whole");
        assert_eq!(Body::parse(&[0, 0, 0, 9]), None, "bytes after the body");
        let long = body(&[5; 300], &[6; 2], &[1]);
        let b = Body::parse(&long).unwrap();
        assert_eq!((b.firsts.len(), b.sigs, b.key_count()), (300, &[6u8, 6][..], 1));
    }
}
