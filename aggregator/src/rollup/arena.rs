//! The bytes of a shard's subject records (`subjects.rs`): chunks of
//! [`CHUNK`] bytes, each allocated once at its full capacity and filled
//! from the front, and free lists of the slots records moved out of.
//!
//! Chunks rather than one growing `Vec`: a `Vec` that doubles is copied by
//! `realloc` while it is small enough to live in malloc's heap, and the
//! heap keeps the old copy resident (4.5 B per subject at 10 M subjects,
//! BENCHMARKS.md "One record per subject"); a chunk never moves.
//!
//! An offset is the chunk's number times 2^[`CHUNK_BITS`] plus the place
//! in it, and fits the index's 5 bytes: 2^16 chunks, 1 TiB per shard. A
//! record longer than a chunk (a subject with hundreds of thousands of
//! `sim.signature` events) gets a chunk of its own, returned to the
//! allocator when the record moves.

use std::collections::BTreeMap;

/// Bits of an offset that are the place in a chunk.
const CHUNK_BITS: u32 = 24;
/// Bytes in a chunk (16 MiB).
const CHUNK: usize = 1 << CHUNK_BITS;
/// Free slots of up to this many bytes have a list each in a `Vec`.
const SMALL: usize = 1024;

/// Record bytes in chunks (module docs).
#[derive(Default)]
pub(super) struct Arena {
    chunks: Vec<Vec<u8>>,
    /// The chunk new records are appended to.
    tail: Option<usize>,
    /// Numbers of chunks given back (an own chunk whose record moved).
    spare: Vec<usize>,
    /// Free slots by length, lengths up to [`SMALL`].
    free_small: Vec<Vec<u64>>,
    /// Free slots longer than [`SMALL`].
    free_large: BTreeMap<usize, Vec<u64>>,
    /// Bytes in free slots.
    free: usize,
}

fn split(at: u64) -> (usize, usize) {
    ((at >> CHUNK_BITS) as usize, (at as usize) & (CHUNK - 1))
}

impl Arena {
    /// The bytes from `at` to the end of its chunk (a record's bytes and
    /// what follows it).
    pub fn from(&self, at: u64) -> Option<&[u8]> {
        let (chunk, place) = split(at);
        self.chunks.get(chunk)?.get(place..)
    }

    /// The `len` bytes at `at`, to write a record.
    pub fn slot_mut(&mut self, at: u64, len: usize) -> Option<&mut [u8]> {
        let (chunk, place) = split(at);
        self.chunks.get_mut(chunk)?.get_mut(place..place.checked_add(len)?)
    }

    /// Bytes in free slots.
    pub fn free_bytes(&self) -> usize {
        self.free
    }

    /// Stores `head` then `body` in a slot of their length: a free one of
    /// that length, else room at the end of the tail chunk, else a new
    /// chunk; returns its offset. (A chunk is extended with the bytes
    /// themselves: zeroing the room first, then copying over it, cost ≈ 5 %
    /// of a snapshot's load.)
    pub fn add(&mut self, head: &[u8], body: &[u8]) -> u64 {
        let len = head.len() + body.len();
        if len > CHUNK {
            let chunk = self.new_chunk([head, body].concat());
            return (chunk as u64) << CHUNK_BITS;
        }
        let list = if len <= SMALL { self.free_small.get_mut(len) } else { self.free_large.get_mut(&len) };
        if let Some(at) = list.and_then(Vec::pop) {
            self.free -= len;
            if let Some(slot) = self.slot_mut(at, len) {
                let (h, b) = slot.split_at_mut(head.len());
                h.copy_from_slice(head);
                b.copy_from_slice(body);
            }
            return at;
        }
        let tail = match self.tail {
            Some(t) if self.chunks.get(t).is_some_and(|c| c.len() + len <= CHUNK) => t,
            _ => {
                let t = self.new_chunk(Vec::with_capacity(CHUNK));
                self.tail = Some(t);
                t
            }
        };
        let chunk = &mut self.chunks[tail];
        let place = chunk.len();
        chunk.extend_from_slice(head);
        chunk.extend_from_slice(body);
        ((tail as u64) << CHUNK_BITS) | place as u64
    }

    /// Gives back the slot of `len` bytes at `at`: on its free list, or to
    /// the allocator if it is a chunk of its own.
    pub fn release(&mut self, at: u64, len: usize) {
        if len > CHUNK {
            let (chunk, _) = split(at);
            if let Some(c) = self.chunks.get_mut(chunk) {
                *c = Vec::new();
                self.spare.push(chunk);
            }
            return;
        }
        if self.free_small.is_empty() {
            self.free_small = vec![Vec::new(); SMALL + 1];
        }
        self.free += len;
        match self.free_small.get_mut(len) {
            Some(list) => list.push(at),
            None => self.free_large.entry(len).or_default().push(at),
        }
    }

    fn new_chunk(&mut self, bytes: Vec<u8>) -> usize {
        match self.spare.pop() {
            Some(n) => {
                self.chunks[n] = bytes;
                n
            }
            None => {
                self.chunks.push(bytes);
                self.chunks.len() - 1
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A slot of `len` bytes, zeroed.
    fn take(a: &mut Arena, len: usize) -> u64 {
        a.add(&[], &vec![0; len])
    }

    #[test]
    fn slots_are_reused_by_length_and_chunks_fill_before_the_next() {
        let mut a = Arena::default();
        let x = take(&mut a, 40);
        let y = take(&mut a, 40);
        assert_eq!((x, y), (0, 40));
        a.slot_mut(y, 40).unwrap().copy_from_slice(&[7; 40]);
        assert_eq!(&a.from(y).unwrap()[..40], &[7; 40]);
        a.release(x, 40);
        assert_eq!(a.free_bytes(), 40);
        assert_eq!(take(&mut a, 41), 80, "another length: appended");
        assert_eq!(a.add(&[1, 2], &[3; 38]), x, "the free slot of that length");
        assert_eq!(&a.from(x).unwrap()[..41], [&[1, 2][..], &[3; 38], &[7]].concat(), "written there");
        assert_eq!(a.free_bytes(), 0);
        // A record that does not fit the tail starts the next chunk.
        let big = take(&mut a, CHUNK - 100);
        assert_eq!(big, 1 << CHUNK_BITS);
        assert_eq!(split(take(&mut a, 200)), (2, 0));
    }

    #[test]
    fn a_record_longer_than_a_chunk_has_its_own_given_back_when_it_moves() {
        let mut a = Arena::default();
        let small = take(&mut a, 10);
        let own = take(&mut a, CHUNK + 1);
        assert_eq!(split(own), (1, 0));
        assert_eq!(a.from(own).unwrap().len(), CHUNK + 1);
        assert_eq!(a.slot_mut(own, CHUNK + 2), None);
        a.release(own, CHUNK + 1);
        assert_eq!((a.free_bytes(), a.from(own).unwrap().len()), (0, 0), "memory given back");
        let again = take(&mut a, CHUNK + 5);
        assert_eq!(again, own, "its number is reused");
        assert_eq!(split(take(&mut a, 10)), (0, 10), "the tail is still the first chunk");
        assert_eq!(small, 0);
    }
}
