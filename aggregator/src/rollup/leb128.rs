//! LEB128 varints, the lengths and counts of a subject's record
//! (`subjects.rs`, [`super::Firsts`], `sigs.rs`): seven bits a byte, low
//! bits first, the high bit set on every byte but the last.

/// Appends `v`.
#[inline]
pub(super) fn write(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at the start of `bytes` and its length; `None` if the bytes
/// end inside it or it does not fit a `usize`. A record's lengths are
/// almost all one byte: that case is inlined into the loops that read
/// records (a snapshot's load, BENCHMARKS.md "A record's times in 4 or 6
/// bytes"), the rest is a call.
#[inline(always)]
pub(super) fn read(bytes: &[u8]) -> Option<(usize, usize)> {
    match bytes.first() {
        Some(&b) if b < 0x80 => Some((usize::from(b), 1)),
        _ => read_long(bytes),
    }
}

#[inline(never)]
fn read_long(bytes: &[u8]) -> Option<(usize, usize)> {
    let (mut v, mut shift, mut at) = (0usize, 0u32, 0usize);
    loop {
        let b = *bytes.get(at)?;
        at += 1;
        v |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some((v, at));
        }
        shift += 7;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_back_in_one_or_two_bytes_below_16384() {
        for (v, len) in [(0, 1), (127, 1), (128, 2), (1023, 2), (16_383, 2), (16_384, 3), (usize::MAX, 10)] {
            let mut out = Vec::new();
            write(v, &mut out);
            assert_eq!(out.len(), len, "{v}");
            out.push(0x55);
            assert_eq!(read(&out), Some((v, len)), "{v}");
            assert_eq!(read(&out[..len - 1]), None, "{v} cut");
        }
    }
}
