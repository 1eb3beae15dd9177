//! A subject's `sim.signature` events, sorted by (`occurred_at`,
//! `event_id`) and packed into one allocation, like the first-event records
//! ([`super::Firsts`]): millions of subjects hold one or two of them, and a
//! `Vec` of events each with its own boxed id cost two allocations and 32
//! bytes of slot per event besides the id.
//!
//! A record (little endian): `u8` head (bit 0 installed, bits 1–2 the day
//! code, `super::day_code`: 0, 1, 2 = UTC day −1, +0, +1 of `occurred_at`,
//! 3 = stored in full; bit 3 the id is packed, `id.rs`; bits 4–5 the
//! time's form, `at.rs`), `u16` area, the id's length in LEB128
//! (characters if packed, else bytes), `occurred_at` in its form (4, 6, 7
//! or 8 bytes), only for day code 3 an `i32` day (days from CE), the id as
//! stored. Ids are compared in the order of their bytes, which is the
//! order of `str`. (Snapshot format 3 had a `u16` length and an `i64`
//! time: 13 bytes before the id where a whole second now takes 8.)

use super::firsts::{coded_day, day_code, Day};
use super::id::Id;
use super::{at, leb128};
use crate::fact::Nanos;
use crate::geo::AreaId;

/// One `sim.signature` event of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SigEvent<'a> {
    pub at: Nanos,
    pub id: Id<'a>,
    pub day: Day,
    pub area: AreaId,
    pub installed: bool,
}

impl<'a> SigEvent<'a> {
    /// The order of a subject's events.
    pub fn key(&self) -> (Nanos, Id<'a>) {
        (self.at, self.id)
    }
}

/// A subject's signature events, packed (module docs).
#[derive(Clone, Copy)]
pub(super) struct Sigs<'a>(pub(super) &'a [u8]);

impl<'a> Sigs<'a> {
    /// The events in order, each with its record's bytes. Bytes that do
    /// not parse end the iteration ([`Sigs::check`] tells).
    pub fn records(self) -> impl Iterator<Item = (SigEvent<'a>, &'a [u8])> {
        let mut rest: &'a [u8] = self.0;
        std::iter::from_fn(move || {
            let head = *rest.first()?;
            let area = AreaId(u16::from_le_bytes([*rest.get(1)?, *rest.get(2)?]));
            let (len, n) = leb128::read(rest.get(3..)?)?;
            let (at, m) = at::read(rest.get(3 + n..)?, (head >> 4) & 3)?;
            let (day, id_at) = coded_day(rest, at, (head >> 1) & 3, 3 + n + m)?;
            let (id, n) = Id::read(rest.get(id_at..)?, head & 8 != 0, len)?;
            let rec = rest.get(..id_at + n)?;
            rest = &rest[id_at + n..];
            Some((SigEvent { at, id, day, area, installed: head & 1 == 1 }, rec))
        })
    }

    /// The events in order.
    pub fn events(self) -> Vec<SigEvent<'a>> {
        self.records().map(|(e, _)| e).collect()
    }

    /// Whether an event with this id is held.
    pub fn holds(self, id: Id<'_>) -> bool {
        self.records().any(|(e, _)| e.id == id)
    }

    /// Writes these events with `ev` inserted at its place in the order
    /// (its id must not be held) to `out`.
    pub fn insert(self, ev: &SigEvent<'_>, out: &mut Vec<u8>) {
        out.reserve(self.0.len() + 17 + ev.id.stored().len());
        let mut placed = false;
        for (e, rec) in self.records() {
            if !placed && ev.key() < e.key() {
                encode(ev, out);
                placed = true;
            }
            out.extend_from_slice(rec);
        }
        if !placed {
            encode(ev, out);
        }
    }

    /// Whether the bytes parse to the end into at least one event, in
    /// strictly increasing order, every area below `areas` (a snapshot's
    /// check).
    pub fn check(self, areas: usize) -> bool {
        let mut used = 0;
        let mut last: Option<(Nanos, Id<'_>)> = None;
        for (e, rec) in self.records() {
            if usize::from(e.area.0) >= areas || !e.id.is_valid() || last.is_some_and(|l| l >= e.key()) {
                return false;
            }
            last = Some(e.key());
            used += rec.len();
        }
        used == self.0.len() && used > 0
    }
}

/// Appends `ev`'s record. An id longer than a `u16` cannot come from a
/// valid event (EVENTS-v1: at most 128 characters); it is cut there.
fn encode(ev: &SigEvent<'_>, out: &mut Vec<u8>) {
    let (packed, len) = ev.id.form();
    let len = len.min(usize::from(u16::MAX));
    let stored = if packed { ev.id.stored() } else { &ev.id.stored()[..len] };
    let (day_code, form) = (day_code(ev.at, ev.day), at::form(ev.at));
    out.push(u8::from(ev.installed) | (day_code << 1) | (u8::from(packed) << 3) | (form << 4));
    out.extend_from_slice(&ev.area.0.to_le_bytes());
    leb128::write(len, out);
    at::write(ev.at, form, out);
    if day_code == 3 {
        out.extend_from_slice(&ev.day.0.to_le_bytes());
    }
    out.extend_from_slice(stored);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn ev(at: Nanos, id: &'static str, day: NaiveDate, installed: bool) -> SigEvent<'static> {
        SigEvent { at, id: Id::Raw(id.as_bytes()), day: Day::of(day), area: AreaId(7), installed }
    }

    #[test]
    fn events_stay_in_order_with_their_days_and_ids() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let noon = d(2024, 4, 10).and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap();
        let a = ev(noon, "b", d(2024, 4, 10), true);
        let b = ev(noon, "a", d(2024, 4, 11), false); // same time: ordered by id
        let c = ev(-1, "é", d(1969, 12, 31), true); // before 1970
        let far = ev(noon, "z", d(2030, 1, 1), false); // a day far from the UTC day: in full
        let mut bytes = Vec::new();
        for e in [&a, &b, &c, &far] {
            assert!(!Sigs(&bytes).holds(e.id));
            let mut out = Vec::new();
            Sigs(&bytes).insert(e, &mut out);
            bytes = out;
            assert!(Sigs(&bytes).holds(e.id));
        }
        let s = Sigs(&bytes);
        assert_eq!(s.events(), vec![c, b, a, far]);
        assert!(s.check(8));
        assert!(!s.check(7), "area 7 outside 7 areas");
        // Head, area and a one-byte length: 4 bytes before the time; a and
        // b at a whole second after 2000 (4 bytes), c before 2000 (8), far
        // at a whole second with its day (4 + 4); ids of 1, 1, 2, 1 bytes.
        assert_eq!(s.0.len(), (4 + 4 + 1) + (4 + 4 + 1) + (4 + 8 + 2) + (4 + 4 + 4 + 1));
        let cut = Sigs(&s.0[..s.0.len() - 1]);
        assert!(!cut.check(8));
    }
}
