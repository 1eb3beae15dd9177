//! An event's `occurred_at` as a subject's records keep it
//! ([`super::Firsts`], `sigs.rs`): the seconds since 2000-01-01 UTC in four
//! bytes, then the fraction of the second in the coarsest unit that holds
//! it exactly: nothing for a whole second, milliseconds in two bytes,
//! microseconds in three; any other time (a fraction of nanoseconds, before
//! 2000 or after 2136) as its full `i64` of nanoseconds. Producers send
//! whole seconds or milliseconds, so a time takes 4 or 6 bytes where it
//! took 8 (BENCHMARKS.md, "A record's times in 4 or 6 bytes").
//!
//! The form depends only on the time, so two copies of one time are stored
//! alike; a record keeps the form in two bits of its head. Records compare
//! times decoded, never their bytes.

use crate::fact::Nanos;

const NANOS_PER_SEC: i64 = 1_000_000_000;
/// 2000-01-01T00:00:00Z in unix seconds.
const BASE_SECS: i64 = 946_684_800;

/// The form of a whole second (four bytes).
const SECS: u8 = 0;
/// Seconds and milliseconds (six bytes).
const MILLIS: u8 = 1;
/// Seconds and microseconds (seven bytes).
const MICROS: u8 = 2;
/// The full `i64` of nanoseconds (eight bytes).
const FULL: u8 = 3;

/// The form `at` is stored in (two bits).
#[inline]
pub(super) fn form(at: Nanos) -> u8 {
    let secs = at.div_euclid(NANOS_PER_SEC) - BASE_SECS;
    if u32::try_from(secs).is_err() {
        return FULL;
    }
    match at.rem_euclid(NANOS_PER_SEC) {
        0 => SECS,
        f if f % 1_000_000 == 0 => MILLIS,
        f if f % 1_000 == 0 => MICROS,
        _ => FULL,
    }
}

/// Appends `at` in `form` (which must be [`form`]`(at)`).
#[inline]
pub(super) fn write(at: Nanos, form: u8, out: &mut Vec<u8>) {
    if form == FULL {
        out.extend_from_slice(&at.to_le_bytes());
        return;
    }
    let secs = (at.div_euclid(NANOS_PER_SEC) - BASE_SECS) as u32;
    out.extend_from_slice(&secs.to_le_bytes());
    let fraction = at.rem_euclid(NANOS_PER_SEC);
    match form {
        MILLIS => out.extend_from_slice(&((fraction / 1_000_000) as u16).to_le_bytes()),
        MICROS => out.extend_from_slice(&((fraction / 1_000) as u32).to_le_bytes()[..3]),
        _ => {}
    }
}

/// The time stored in `form` at the start of `bytes`, and its length;
/// `None` if the bytes are too short or the fraction is out of range.
#[inline]
pub(super) fn read(bytes: &[u8], form: u8) -> Option<(Nanos, usize)> {
    if form == FULL {
        return Some((i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?), 8));
    }
    let secs = i64::from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)) + BASE_SECS;
    let (fraction, len) = match form {
        SECS => (0, 4),
        MILLIS => {
            let ms = i64::from(u16::from_le_bytes(bytes.get(4..6)?.try_into().ok()?));
            ((ms < 1_000).then_some(ms * 1_000_000)?, 6)
        }
        _ => {
            let b = bytes.get(4..7)?;
            let us = i64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]));
            ((us < 1_000_000).then_some(us * 1_000)?, 7)
        }
    };
    Some((secs * NANOS_PER_SEC + fraction, len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(at: Nanos) -> (u8, usize) {
        let f = form(at);
        let mut out = vec![0xaa];
        write(at, f, &mut out);
        out.push(0xbb);
        assert_eq!(read(&out[1..], f), Some((at, out.len() - 2)), "{at}");
        (f, out.len() - 2)
    }

    #[test]
    fn producers_times_take_four_or_six_bytes() {
        // 2024-05-09T08:15:30+07:00, with and without milliseconds.
        let t = 1_715_217_330 * NANOS_PER_SEC;
        assert_eq!(round_trip(t), (SECS, 4));
        assert_eq!(round_trip(t + 123_000_000), (MILLIS, 6));
        assert_eq!(round_trip(t + 123_456_000), (MICROS, 7));
        assert_eq!(round_trip(t + 1), (FULL, 8));
        // The ends of the four-byte seconds, and just outside them.
        let base = BASE_SECS * NANOS_PER_SEC;
        assert_eq!(round_trip(base), (SECS, 4));
        assert_eq!(round_trip(base - 1), (FULL, 8));
        assert_eq!(round_trip(base - NANOS_PER_SEC), (FULL, 8));
        let last = (BASE_SECS + i64::from(u32::MAX)) * NANOS_PER_SEC + 999_000_000;
        assert_eq!(round_trip(last), (MILLIS, 6));
        assert_eq!(round_trip(last + 1_000_000), (FULL, 8));
        for at in [i64::MIN, -1, 0, i64::MAX] {
            assert_eq!(round_trip(at).0, FULL);
        }
    }

    #[test]
    fn a_fraction_out_of_range_or_short_bytes_do_not_read() {
        assert_eq!(read(&[0, 0, 0, 0, 0xe8, 0x03], MILLIS), None); // 1,000 ms
        assert_eq!(read(&[0, 0, 0, 0, 0x40, 0x42, 0x0f], MICROS), None); // 1,000,000 µs
        assert_eq!(read(&[0, 0, 0, 0, 0xe7, 0x03], MILLIS).map(|(_, n)| n), Some(6));
        assert_eq!(read(&[0, 0, 0], SECS), None);
        assert_eq!(read(&[0; 5], MILLIS), None);
        assert_eq!(read(&[0; 7], FULL), None);
    }

    proptest! {
        #[test]
        fn every_time_reads_back_as_written(at in any::<i64>(), ms in 0i64..1_000, secs in 0i64..5_000_000_000) {
            round_trip(at);
            let near = BASE_SECS.saturating_add(secs).saturating_mul(NANOS_PER_SEC);
            round_trip(near);
            round_trip(near.saturating_add(ms * 1_000_000));
            round_trip(near.saturating_add(ms * 1_000 + 7_000));
        }
    }
}
