//! A shard's state as bytes: what a checkpoint stores in place of the facts
//! that built it, so a restart loads the state and replays only the facts
//! after it (ARCHITECTURE.md, "Snapshots").
//!
//! What is written is the state the rules keep, nothing more: the dedup
//! keys, each subject's packed first-event records, its `sim.signature`
//! list, the coverage counts, and each ticket's events with the keys of the
//! hotline counts. Ticket classifications, their deadlines and the hotline
//! counts are derived again on load from the events and T, as
//! [`Tickets::apply`] keeps them; loading re-derives nothing per subject, so
//! it costs one hash insert per subject and per dedup key.
//!
//! Layout: [`MAGIC`], the format (`u32`), the coverage state
//! ([`Shard`]'s part, `rollup/snapshot.rs`), the hotline state
//! (`hotline/snapshot.rs`), then the XXH3-64 of everything before it. Numbers
//! are little endian; counts and lengths are LEB128 varints. A change of
//! layout is a new [`FORMAT`]; a snapshot of another format is refused with
//! [`SnapshotError::Format`], never misread.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};

use crate::calendar::WorkCalendar;
use crate::fact::Digest;
use crate::geo::{AreaId, Geography};
use crate::hotline::Tickets;
use crate::rollup::Shard;

/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"d06snap\0";
/// The layout this build writes and reads.
pub const FORMAT: u32 = 4;

/// Why bytes did not load as a shard snapshot. Every variant is permanent
/// for those bytes: the state is rebuilt from its source instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with [`MAGIC`].
    #[error("not a d06 shard snapshot")]
    NotASnapshot,
    /// Written in a layout this build does not read (by a newer d06, or an
    /// older one whose layout was dropped).
    #[error("shard snapshot format {found}; this d06 reads format {FORMAT}")]
    Format {
        /// The format the snapshot declares.
        found: u32,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("corrupt shard snapshot: checksum mismatch")]
    Checksum,
    /// The checksum matched but the content breaks the layout (a defect of
    /// the writer).
    #[error("corrupt shard snapshot: {0}")]
    Corrupt(&'static str),
}

/// Writes one shard's state (coverage and hotline) as a snapshot, handing
/// it to `out` in pieces of about `piece` bytes (the last ones shorter), so
/// that writing a large shard's snapshot never holds it whole in memory;
/// returns the snapshot's length.
pub fn write(coverage: &Shard, tickets: &Tickets, piece: usize, out: &mut dyn FnMut(&[u8])) -> u64 {
    let mut w = Writer::new(piece, out);
    w.put(MAGIC);
    w.u32(FORMAT);
    coverage.write_snapshot(&mut w);
    tickets.write_snapshot(&mut w);
    w.finish()
}

/// [`write`]'s bytes in one buffer.
pub fn encode(coverage: &Shard, tickets: &Tickets) -> Vec<u8> {
    let mut bytes = Vec::new();
    write(coverage, tickets, 1 << 20, &mut |piece| bytes.extend_from_slice(piece));
    bytes
}

/// Loads a shard's state from [`write`]'s bytes, counting through `geo`
/// and timing tickets on `calendar` (the same as when it was written: the
/// caller checks the store's identity).
pub fn decode(
    bytes: &[u8],
    geo: Arc<Geography>,
    calendar: Arc<WorkCalendar>,
) -> Result<(Shard, Tickets), SnapshotError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(SnapshotError::NotASnapshot);
    }
    let mut r = Reader { buf: bytes, at: MAGIC.len() };
    let found = r.u32()?;
    if found != FORMAT {
        return Err(SnapshotError::Format { found });
    }
    let body = bytes.len().checked_sub(8).ok_or(SnapshotError::Corrupt("truncated"))?;
    let stored = u64::from_le_bytes(bytes[body..].try_into().map_err(|_| SnapshotError::Corrupt("truncated"))?);
    if xxhash_rust::xxh3::xxh3_64(&bytes[..body]) != stored {
        return Err(SnapshotError::Checksum);
    }
    r.buf = &bytes[..body];
    let coverage = Shard::read_snapshot(Arc::clone(&geo), &mut r)?;
    let tickets = Tickets::read_snapshot(geo, calendar, &mut r)?;
    if r.at != r.buf.len() {
        return Err(SnapshotError::Corrupt("bytes after the hotline state"));
    }
    Ok((coverage, tickets))
}

/// Appends the primitive values of a snapshot and hands them to `out`
/// whenever a piece is full, keeping the checksum of what went.
pub(crate) struct Writer<'a> {
    buf: Vec<u8>,
    piece: usize,
    out: &'a mut dyn FnMut(&[u8]),
    hash: xxhash_rust::xxh3::Xxh3Default,
    written: u64,
}

impl<'a> Writer<'a> {
    fn new(piece: usize, out: &'a mut dyn FnMut(&[u8])) -> Self {
        let piece = piece.max(1);
        let buf = Vec::with_capacity(piece.min(1 << 24) + 4096);
        Writer { buf, piece, out, hash: xxhash_rust::xxh3::Xxh3Default::new(), written: 0 }
    }

    /// Hands the buffer on.
    fn send(&mut self) {
        self.hash.update(&self.buf);
        self.written += self.buf.len() as u64;
        (self.out)(&self.buf);
        self.buf.clear();
    }

    /// Sends the rest and the checksum; returns the snapshot's length.
    fn finish(mut self) -> u64 {
        self.send();
        let sum = self.hash.digest().to_le_bytes();
        (self.out)(&sum);
        self.written + sum.len() as u64
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.piece {
            self.send();
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn u128(&mut self, v: u128) {
        self.put(&v.to_le_bytes());
    }

    /// A count or length, LEB128.
    pub(crate) fn len(&mut self, mut v: usize) {
        let mut b = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 {
            b[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        b[n] = v as u8;
        self.put(&b[..=n]);
    }

    /// A length, then the bytes.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.put(b);
    }

    pub(crate) fn digest(&mut self, d: &Digest) {
        self.put(&d.0);
    }

    pub(crate) fn area(&mut self, a: AreaId) {
        self.u16(a.0);
    }

    /// Days from CE, as `i32`.
    pub(crate) fn day(&mut self, d: NaiveDate) {
        self.put(&d.num_days_from_ce().to_le_bytes());
    }
}

/// Reads what [`Writer`] wrote; running out of bytes is [`SnapshotError::Corrupt`].
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let s = self.buf.get(self.at..self.at + N).ok_or(SnapshotError::Corrupt("truncated"))?;
        self.at += N;
        s.try_into().map_err(|_| SnapshotError::Corrupt("truncated"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, SnapshotError> {
        Ok(u128::from_le_bytes(self.take()?))
    }

    pub(crate) fn len(&mut self) -> Result<usize, SnapshotError> {
        let mut v: usize = 0;
        for shift in (0..usize::BITS).step_by(7) {
            let b = self.u8()?;
            v |= usize::from(b & 0x7f).checked_shl(shift).ok_or(SnapshotError::Corrupt("length overflows"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SnapshotError::Corrupt("length overflows"))
    }

    /// A count of items that each take at least `min` bytes: refused when
    /// the rest cannot hold them, so a damaged count cannot reserve memory.
    pub(crate) fn count(&mut self, min: usize) -> Result<usize, SnapshotError> {
        let n = self.len()?;
        if n.saturating_mul(min.max(1)) > self.buf.len() - self.at {
            return Err(SnapshotError::Corrupt("count beyond the end"));
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.len()?;
        let s = self.buf.get(self.at..self.at.saturating_add(n)).ok_or(SnapshotError::Corrupt("truncated"))?;
        self.at += n;
        Ok(s)
    }

    pub(crate) fn digest(&mut self) -> Result<Digest, SnapshotError> {
        Ok(Digest(self.take()?))
    }

    /// An area of `geo` (one outside it is corrupt).
    pub(crate) fn area(&mut self, geo: &Geography) -> Result<AreaId, SnapshotError> {
        let a = self.u16()?;
        if usize::from(a) >= geo.areas().len() {
            return Err(SnapshotError::Corrupt("area outside the geography"));
        }
        Ok(AreaId(a))
    }

    pub(crate) fn day(&mut self) -> Result<NaiveDate, SnapshotError> {
        NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(self.take()?)).ok_or(SnapshotError::Corrupt("day"))
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
