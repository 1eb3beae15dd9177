//! Event ids as a subject's records keep them: an id made only of `-`,
//! digits and ASCII letters (the contract's example
//! `c06-vneid-20240509-000123`, UUIDs, ULIDs, most upstream ids) is packed
//! at 6 bits a character, a quarter smaller; any other id is kept as its
//! bytes. Ids are most of a record (BENCHMARKS.md, "One record per
//! subject").
//!
//! The packing keeps the order: the 63 characters get the codes 1–63 in
//! their byte order, written most significant bit first and padded with
//! zero bits, so two packed ids compare as their bytes do (a shorter id's
//! zero padding sorts before any character of a longer one). Whether an
//! id is packed depends only on the id, so two copies of one id are
//! always in the same form; a packed and an unpacked id are compared by
//! their characters, which is rare (ids of two shapes with the same time).

use std::cmp::Ordering;

/// Ids of more characters than this are kept as bytes.
const PACK_MAX: usize = 255;
/// Bytes of the longest packed id.
const PACKED_MAX: usize = (PACK_MAX * 6).div_ceil(8);
/// The characters that pack, in byte order; a character's code is its
/// place here plus one.
const ALPHABET: &[u8; 63] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Each byte's code, 0 for a byte that does not pack.
const CODES: [u8; 256] = {
    let mut codes = [0u8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        codes[ALPHABET[i] as usize] = i as u8 + 1;
        i += 1;
    }
    codes
};

/// An event id as stored (module docs).
#[derive(Clone, Copy, Debug)]
pub(super) enum Id<'a> {
    /// The id's bytes (maybe cut: `super::ID_LEN_MAX`).
    Raw(&'a [u8]),
    /// The id packed, and its number of characters.
    Packed { bytes: &'a [u8], chars: usize },
}

impl<'a> Id<'a> {
    /// An id as stored in a record: `len` is its characters if packed,
    /// else its bytes; `None` if `rest` is too short.
    pub fn read(rest: &'a [u8], packed: bool, len: usize) -> Option<(Id<'a>, usize)> {
        if packed {
            let n = (len * 6).div_ceil(8);
            Some((Id::Packed { bytes: rest.get(..n)?, chars: len }, n))
        } else {
            Some((Id::Raw(rest.get(..len)?), len))
        }
    }

    /// Whether the id is packed, and the length a record stores for it.
    pub fn form(self) -> (bool, usize) {
        match self {
            Id::Raw(b) => (false, b.len()),
            Id::Packed { chars, .. } => (true, chars),
        }
    }

    /// The bytes a record stores.
    pub fn stored(self) -> &'a [u8] {
        match self {
            Id::Raw(b) | Id::Packed { bytes: b, .. } => b,
        }
    }

    /// The id's own bytes.
    pub fn to_raw(self) -> Vec<u8> {
        match self {
            Id::Raw(b) => b.to_vec(),
            Id::Packed { bytes, chars } => codes(bytes, chars)
                .map(|c| ALPHABET.get(usize::from(c).wrapping_sub(1)).copied().unwrap_or(0))
                .collect(),
        }
    }

    /// A packed id has only codes 1–63 and zero padding (a snapshot's
    /// check); raw bytes are always valid.
    pub fn is_valid(self) -> bool {
        match self {
            Id::Raw(_) => true,
            Id::Packed { bytes, chars } => {
                let pad = bytes.len() * 8 - chars * 6;
                let last_ok = bytes.last().is_none_or(|b| b & ((1u16 << pad) - 1) as u8 == 0);
                chars > 0 && chars <= PACK_MAX && last_ok && no_zero_code(bytes, chars)
            }
        }
    }
}

/// Whether none of the first `chars` codes of packed bytes (at least
/// `chars` × 6 bits of them) is 0. Eight codes at a time, as six bytes in
/// a `u64`: this check is a large part of a snapshot's load per id
/// (BENCHMARKS.md, "A record's times in 4 or 6 bytes" and "The load,
/// looked at again").
fn no_zero_code(bytes: &[u8], chars: usize) -> bool {
    /// Bits 0–4 of each of the eight codes of 48 bits.
    const LOW5: u64 = every_code(0x1f);
    /// Bit 5 of each code.
    const TOP: u64 = every_code(0x20);
    // A code's bit 5 in `((x & LOW5) + LOW5) | x` is set if and only if
    // the code is not 0 (its low five bits plus 31 carry into bit 5 when
    // any is set, and never past it): three operations for eight codes.
    let nonzero = |x: u64| ((x & LOW5) + LOW5) | x;
    let (full, rest) = (chars / 8, chars % 8);
    let Some(head) = bytes.get(..6 * full) else { return false };
    for g in head.chunks_exact(6) {
        let x = u64::from_be_bytes([0, 0, g[0], g[1], g[2], g[3], g[4], g[5]]);
        if nonzero(x) & TOP != TOP {
            return false;
        }
    }
    if rest == 0 {
        return true;
    }
    // The last codes are the top 6 × `rest` bits of the next (up to) six
    // bytes; bytes missing read as zero codes.
    let mut last = [0u8; 8];
    for (l, b) in last[2..].iter_mut().zip(&bytes[6 * full..]) {
        *l = *b;
    }
    let mask = TOP & !((1u64 << (48 - 6 * rest)) - 1);
    nonzero(u64::from_be_bytes(last)) & mask == mask
}

/// `bits` in each of the eight 6-bit codes of 48 bits.
const fn every_code(bits: u64) -> u64 {
    let (mut v, mut k) = (0, 0);
    while k < 8 {
        v |= bits << (6 * k);
        k += 1;
    }
    v
}

/// The first `chars` 6-bit codes of packed bytes, in order.
fn codes(bytes: &[u8], chars: usize) -> impl Iterator<Item = u8> + '_ {
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut rest = bytes.iter();
    (0..chars).map(move |_| {
        if bits < 6 {
            acc = (acc << 8) | u32::from(rest.next().copied().unwrap_or(0));
            bits += 8;
        }
        bits -= 6;
        ((acc >> bits) & 0x3f) as u8
    })
}

impl PartialEq for Id<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Id<'_> {}

impl PartialOrd for Id<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of the ids' bytes (`str` order), as `EVENTS-v1` breaks ties.
impl Ord for Id<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Id::Raw(a), Id::Raw(b)) => a.cmp(b),
            (Id::Packed { bytes: a, chars: m }, Id::Packed { bytes: b, chars: n }) => a.cmp(b).then(m.cmp(n)),
            _ => self.to_raw().cmp(&other.to_raw()),
        }
    }
}

/// A new event's id in the form a record keeps it (packed on the stack if
/// it packs).
pub(super) struct IdBuf<'a> {
    raw: &'a [u8],
    packed: [u8; PACKED_MAX],
    /// Characters packed; 0 if the id does not pack.
    chars: usize,
}

impl<'a> IdBuf<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        let mut buf = IdBuf { raw, packed: [0; PACKED_MAX], chars: 0 };
        if raw.is_empty() || raw.len() > PACK_MAX {
            return buf;
        }
        let (mut acc, mut bits, mut at) = (0u32, 0u32, 0usize);
        for &b in raw {
            let code = CODES[usize::from(b)];
            if code == 0 {
                return buf;
            }
            acc = (acc << 6) | u32::from(code);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                buf.packed[at] = (acc >> bits) as u8;
                at += 1;
            }
        }
        if bits > 0 {
            buf.packed[at] = (acc << (8 - bits)) as u8;
        }
        buf.chars = raw.len();
        buf
    }

    /// The id as stored.
    pub fn id(&self) -> Id<'_> {
        if self.chars == 0 {
            Id::Raw(self.raw)
        } else {
            Id::Packed { bytes: &self.packed[..(self.chars * 6).div_ceil(8)], chars: self.chars }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_of_the_alphabet_pack_to_three_quarters() {
        let b = IdBuf::new(b"c06-vneid-20240509-000123");
        let id = b.id();
        assert_eq!(id.form(), (true, 25));
        assert_eq!(id.stored().len(), 19);
        assert_eq!(id.to_raw(), b"c06-vneid-20240509-000123");
        assert!(id.is_valid());
        for raw in [&b"a_b"[..], b"", "é".as_bytes(), &[b'a'; 256]] {
            assert!(matches!(IdBuf::new(raw).id(), Id::Raw(r) if r == raw));
        }
    }

    #[test]
    fn a_damaged_packed_id_is_not_valid() {
        assert!(!Id::Packed { bytes: &[0, 0], chars: 2 }.is_valid(), "code 0");
        let b = IdBuf::new(b"ab");
        let mut bytes = b.id().stored().to_vec();
        *bytes.last_mut().unwrap() |= 1;
        assert!(!Id::Packed { bytes: &bytes, chars: 2 }.is_valid(), "padding");
    }

    fn id_text() -> impl Strategy<Value = String> {
        // Mostly the alphabet, sometimes a byte that does not pack, and
        // shared prefixes so that ties and prefixes are common.
        prop_oneof![
            4 => "[-0-9A-Za-z]{0,12}",
            1 => "[-0-9a-z_.é]{0,6}",
            1 => "c06-[0-9]{0,3}",
        ]
    }

    proptest! {
        /// Eight codes at a time say what the codes one by one say, on any
        /// bytes of a packed id's length (`Id::read` gives it exactly
        /// those), and every single code cleared in a valid id is found.
        #[test]
        fn zero_codes_are_found_eight_at_a_time(raw in prop::collection::vec(any::<u8>(), 0..40), chars in 0usize..52) {
            let bytes = &raw[..(chars * 6).div_ceil(8).min(raw.len())];
            if bytes.len() == (chars * 6).div_ceil(8) {
                prop_assert_eq!(no_zero_code(bytes, chars), codes(bytes, chars).all(|c| c != 0));
            }
            let packed = IdBuf::new(&ALPHABET[..chars.min(ALPHABET.len())]);
            let Id::Packed { bytes, chars } = packed.id() else { return Ok(()) };
            prop_assert!(no_zero_code(bytes, chars));
            for at in 0..chars {
                let mut damaged = bytes.to_vec();
                // Clear code `at` (bits 6 × at ..): it straddles at most two bytes.
                for bit in 6 * at..6 * at + 6 {
                    damaged[bit / 8] &= !(0x80u8 >> (bit % 8));
                }
                prop_assert!(!no_zero_code(&damaged, chars), "code {} of {}", at, chars);
            }
        }

        /// Packing keeps the order and the equality of any two ids, of
        /// either form.
        #[test]
        fn packed_ids_compare_as_their_bytes(a in id_text(), b in id_text()) {
            let (x, y) = (IdBuf::new(a.as_bytes()), IdBuf::new(b.as_bytes()));
            prop_assert_eq!(x.id().cmp(&y.id()), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(x.id() == y.id(), a == b);
            prop_assert_eq!(x.id().to_raw(), a.as_bytes());
            prop_assert!(x.id().is_valid());
        }
    }
}
