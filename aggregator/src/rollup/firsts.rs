//! A subject's first-qualifying events, packed ([`Firsts`]), and the local
//! day as a packed record keeps it ([`Day`], [`day_code`]).

use chrono::{Datelike, NaiveDate};

use super::id::Id;
use super::{at, leb128};
use crate::fact::{Indicator, Nanos};
use crate::geo::AreaId;

/// A first-qualifying event (borrowed view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FirstEvent<'a> {
    pub(super) at: Nanos,
    pub(super) id: Id<'a>,
    pub(super) day: Day,
    pub(super) area: AreaId,
}

/// A local day as days from CE, always within `NaiveDate`'s range: what a
/// packed record holds and reads back, turned into a date only where a
/// count needs it. Reading a record's day is then a subtraction and a
/// range check, where a `NaiveDate` costs a division by 146,097 and a
/// table look-up (≈ 5 % of a snapshot's load, and at every record a
/// look-up walks past; BENCHMARKS.md, "The load, looked at again").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Day(pub(super) i32);

impl Day {
    /// `NaiveDate::MIN` and `MAX` in days from CE (a test checks them).
    pub(super) const RANGE: std::ops::RangeInclusive<i64> = -95_746_129..=95_745_399;

    pub(super) fn of(date: NaiveDate) -> Day {
        Day(date.num_days_from_ce())
    }

    /// The day `days` from CE, if it is a `NaiveDate`.
    pub(super) fn new(days: i64) -> Option<Day> {
        Day::RANGE.contains(&days).then_some(Day(days as i32))
    }

    pub(super) fn date(self) -> NaiveDate {
        let date = NaiveDate::from_num_days_from_ce_opt(self.0);
        debug_assert!(date.is_some(), "a Day is in NaiveDate's range");
        date.unwrap_or_default()
    }
}

/// A subject's first-qualifying event per indicator, packed one record
/// after the other in its subject's record (little endian):
///
/// - `u8`: indicator (bits 0–2), day code (bits 3–4, [`day_code`]), the id
///   is packed (bit 5, `id.rs`), the time's form (bits 6–7, `at.rs`);
/// - the id's length, LEB128 (characters if packed, else bytes, at most
///   [`ID_LEN_MAX`]: one byte up to 127);
/// - `u16`: area; `occurred_at` in its form (4, 6, 7 or 8 bytes, `at.rs`);
/// - only when the day code is 3: `i32`, the day (days from CE);
/// - the event id as stored ([`Id`]).
///
/// The day is almost always the UTC day of `occurred_at` or its neighbour,
/// so it is stored as that offset. Event ids are compared in the order of
/// their bytes, which is the order of `str`. (Snapshot format 3 had a `u16`
/// head with the length in it and the time as an `i64` always: 12 bytes
/// before the id where a whole second now takes 8.)
#[derive(Clone, Copy)]
pub(super) struct Firsts<'a>(pub(super) &'a [u8]);

pub(super) const NANOS_PER_DAY: i64 = 86_400_000_000_000;
/// Days from CE of 1970-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;
pub(super) const ID_LEN_MAX: usize = (1 << 10) - 1;

/// The UTC day of `at`, in days from CE.
pub(super) fn utc_day(at: Nanos) -> i64 {
    at.div_euclid(NANOS_PER_DAY) + EPOCH_DAYS_FROM_CE
}

/// A packed record's day code for an event at `at` on local day `day`
/// ([`Firsts`], `sigs::Sigs`): 0, 1, 2 = the UTC day of `at` −1, +0, +1
/// (time zones are within ±14 h); 3 = the day is stored in full, an `i32`
/// of days from CE after the record's fixed part.
pub(super) fn day_code(at: Nanos, day: Day) -> u8 {
    match i64::from(day.0) - utc_day(at) {
        d @ -1..=1 => (d + 1) as u8,
        _ => 3,
    }
}

/// Reads the day of a packed record whose fixed part ends at `fixed`;
/// returns it and where the id starts (after the stored day, if any).
pub(super) fn coded_day(rec: &[u8], at: Nanos, code: u8, fixed: usize) -> Option<(Day, usize)> {
    let (day, id_at) = if code == 3 {
        (i64::from(i32::from_le_bytes(rec.get(fixed..fixed + 4)?.try_into().ok()?)), fixed + 4)
    } else {
        (utc_day(at) + i64::from(code) - 1, fixed)
    };
    Some((Day::new(day)?, id_at))
}

impl<'a> Firsts<'a> {
    pub(super) fn records(self) -> impl Iterator<Item = (Indicator, FirstEvent<'a>, &'a [u8])> {
        let mut rest: &'a [u8] = self.0;
        std::iter::from_fn(move || {
            let head = *rest.first()?;
            let (len, n) = leb128::read(rest.get(1..)?)?;
            let area_at = 1 + n;
            let area = AreaId(u16::from_le_bytes([*rest.get(area_at)?, *rest.get(area_at + 1)?]));
            let (at, n) = at::read(rest.get(area_at + 2..)?, head >> 6)?;
            let (day, id_at) = coded_day(rest, at, (head >> 3) & 3, area_at + 2 + n)?;
            let (id, n) = Id::read(rest.get(id_at..)?, (head >> 5) & 1 == 1, len)?;
            let rec = rest.get(..id_at + n)?;
            rest = &rest[id_at + n..];
            let ind = *Indicator::ALL.get(usize::from(head & 7))?;
            Some((ind, FirstEvent { at, id, day, area }, rec))
        })
    }

    pub(super) fn get(self, ind: Indicator) -> Option<FirstEvent<'a>> {
        self.records().find(|(i, _, _)| *i == ind).map(|(_, e, _)| e)
    }
}

/// Replaces (or adds) the record of `ind` in a subject's packed records
/// `firsts` ([`Firsts`]): the new record goes last.
pub(super) fn set_first(firsts: &mut Vec<u8>, ind: Indicator, ev: &FirstEvent<'_>) {
    let mut at = 0;
    let old = Firsts(firsts).records().find_map(|(i, _, rec)| {
        let range = at..at + rec.len();
        at += rec.len();
        (i == ind).then_some(range)
    });
    if let Some(range) = old {
        firsts.drain(range);
    }
    let (packed, len) = ev.id.form();
    let (len, stored) = match packed {
        true => (len, ev.id.stored()),
        false => (len.min(ID_LEN_MAX), &ev.id.stored()[..len.min(ID_LEN_MAX)]),
    };
    let (day_code, form) = (day_code(ev.at, ev.day), at::form(ev.at));
    firsts.push((ind as u8) | (day_code << 3) | (u8::from(packed) << 5) | (form << 6));
    leb128::write(len, firsts);
    firsts.extend_from_slice(&ev.area.0.to_le_bytes());
    at::write(ev.at, form, firsts);
    if day_code == 3 {
        firsts.extend_from_slice(&ev.day.0.to_le_bytes());
    }
    firsts.extend_from_slice(stored);
}
