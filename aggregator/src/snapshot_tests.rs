#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::fact::{CccdStage, Device, Fact, FactKind, SignatureStage, TicketLevel, TicketStatus, VneidStage};
use crate::geo::{AreaLevel, GeographyVersion};
use crate::recount::recount;
use crate::rollup::{DayCounts, Outcome};
use crate::{Indicator, Nanos};

const HOUR: i64 = 3_600_000_000_000;

fn geo() -> Arc<Geography> {
    static GEO: OnceLock<Arc<Geography>> = OnceLock::new();
    GEO.get_or_init(|| Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap())).clone()
}

fn calendar() -> Arc<WorkCalendar> {
    static CAL: OnceLock<Arc<WorkCalendar>> = OnceLock::new();
    CAL.get_or_init(|| Arc::new(WorkCalendar::embedded().unwrap())).clone()
}

/// Midnight of 2024-04-`day` in UTC+7.
fn midnight(day: u32) -> Nanos {
    NaiveDate::from_ymd_opt(2024, 4, day)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap()
        - 7 * HOUR
}

/// One step of a stream: a fact, or T moving to an hour of the campaign.
#[derive(Clone, Debug)]
enum Step {
    Fact(Fact),
    Advance(Nanos),
}

fn kind_strategy() -> impl Strategy<Value = FactKind> {
    prop_oneof![
        1 => prop::sample::select(CccdStage::ALL).prop_map(|stage| FactKind::Cccd { stage }),
        1 => (prop::sample::select(VneidStage::ALL), 1u8..=2).prop_map(|(stage, level)| FactKind::Vneid { stage, level }),
        1 => prop::sample::select(Device::ALL).prop_map(|device| FactKind::SimSwap { device }),
        2 => prop::sample::select(SignatureStage::ALL).prop_map(|stage| FactKind::SimSignature { stage }),
        2 => (prop::sample::select(TicketStatus::ALL), prop::sample::select(TicketLevel::ALL))
            .prop_map(|(status, level)| FactKind::Hotline { status, level }),
    ]
}

/// A stream over few subjects, ids, hours and areas, so that retries
/// (same subject, type and id), late events and shared areas are common;
/// every fifth step or so moves T.
fn stream() -> impl Strategy<Value = Vec<Step>> {
    let fact = (0u8..6, 0u8..12, 0i64..(6 * 24), any::<prop::sample::Index>(), kind_strategy());
    let step = prop_oneof![
        5 => fact.prop_map(|(subject, id, hour, area, kind)| {
            let g = geo();
            let areas: Vec<AreaId> =
                g.of_level(AreaLevel::Commune).take(3).chain(g.of_level(AreaLevel::District).take(1)).collect();
            let occurred_at = midnight(10) + hour * HOUR;
            Step::Fact(Fact {
                // Ids of both stored forms (`_` does not pack).
                event_id: if id % 3 == 0 { format!("e_{id}") } else { format!("e{id}") }.into(),
                subject: Digest([subject.wrapping_mul(37), subject, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                occurred_at,
                day: NaiveDate::from_ymd_opt(2024, 4, 10 + (hour / 24) as u32).unwrap(),
                area: *area.get(&areas),
                kind,
            })
        }),
        1 => (0i64..(8 * 24)).prop_map(|hour| Step::Advance(midnight(10) + hour * HOUR)),
    ];
    prop::collection::vec(step, 0..80)
}

/// A shard's coverage and hotline state, as one unit.
struct State {
    coverage: Shard,
    tickets: Tickets,
}

impl State {
    fn new() -> Self {
        State { coverage: Shard::new(geo()), tickets: Tickets::new(geo(), calendar()) }
    }

    fn step(&mut self, step: &Step) -> Option<Outcome> {
        match step {
            Step::Fact(f) if matches!(f.kind, FactKind::Hotline { .. }) => Some(self.tickets.apply(f)),
            Step::Fact(f) => Some(self.coverage.apply(f)),
            Step::Advance(t) => {
                self.tickets.advance(*t);
                None
            }
        }
    }

    fn reloaded(&self) -> State {
        let (coverage, tickets) = decode(&encode(&self.coverage, &self.tickets), geo(), calendar()).unwrap();
        State { coverage, tickets }
    }

    /// Everything a figure or a later fact depends on, in a comparable form.
    fn observed(&self) -> Observed {
        let mut days = BTreeMap::new();
        for key in self.coverage.keys() {
            // Days back at zero too: their rows are written again as zero.
            for (day, c) in self.coverage.days(key).into_iter().flatten() {
                days.insert((key.0, key.1, *day), *c);
            }
        }
        let subjects = (0u8..6)
            .map(|s| {
                self.tickets.classification(&Digest([s.wrapping_mul(37), s, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
            })
            .collect();
        Observed {
            days,
            keys: self.coverage.keys().copied().collect(),
            events: self.coverage.events(),
            subjects: self.coverage.subjects(),
            dedup_keys: self.coverage.dedup_keys(),
            hotline: self.tickets.counts().iter().map(|(k, c)| (*k, *c)).collect(),
            tickets: self.tickets.tickets(),
            classifications: subjects,
            t: self.tickets.now(),
            next_deadline: self.tickets.next_deadline(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Observed {
    days: BTreeMap<(Indicator, AreaId, NaiveDate), DayCounts>,
    keys: Vec<(Indicator, AreaId)>,
    events: usize,
    subjects: usize,
    dedup_keys: usize,
    hotline: Vec<((AreaId, NaiveDate), crate::HotlineCounts)>,
    tickets: usize,
    classifications: Vec<Option<crate::hotline::Classification>>,
    t: Nanos,
    next_deadline: Option<Nanos>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A snapshot taken anywhere in a stream, loaded, and fed the rest of
    /// the stream ends in the state the whole stream builds, and every fact
    /// of the tail is applied or a duplicate alike on both.
    #[test]
    fn snapshot_and_tail_equal_the_full_replay(
        steps in stream(),
        cut in any::<prop::sample::Index>(),
        piece in 1usize..200,
    ) {
        let cut = cut.index(steps.len() + 1);
        let mut full = State::new();
        let outcomes: Vec<_> = steps.iter().map(|s| full.step(s)).collect();
        let mut head = State::new();
        for s in &steps[..cut] {
            head.step(s);
        }
        // Written in pieces, the snapshot is the same bytes.
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let len = write(&head.coverage, &head.tickets, piece, &mut |b| pieces.push(b.to_vec()));
        let whole = encode(&head.coverage, &head.tickets);
        prop_assert_eq!(len, whole.len() as u64);
        prop_assert!(pieces[..pieces.len().saturating_sub(2)].iter().all(|p| p.len() >= piece));
        prop_assert_eq!(pieces.concat(), whole);
        let mut restored = head.reloaded();
        prop_assert_eq!(restored.observed(), head.observed());
        let tail: Vec<_> = steps[cut..].iter().map(|s| restored.step(s)).collect();
        prop_assert_eq!(&tail[..], &outcomes[cut..]);
        prop_assert_eq!(restored.observed(), full.observed());
        // A snapshot of a restored shard loads to the same state again.
        prop_assert_eq!(restored.reloaded().observed(), full.observed());
        // And the coverage is the independent recount's.
        let facts: Vec<Fact> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Fact(f) if !matches!(f.kind, FactKind::Hotline { .. }) => Some(f.clone()),
                _ => None,
            })
            .collect();
        let recounted: BTreeMap<_, _> = recount(&geo(), &facts).into_iter().filter(|(_, c)| !c.is_zero()).collect();
        let nonzero: BTreeMap<_, _> = restored.observed().days.into_iter().filter(|(_, c)| !c.is_zero()).collect();
        prop_assert_eq!(nonzero, recounted);
    }
}

fn sample() -> Vec<u8> {
    let mut s = State::new();
    let g = geo();
    let area = g.of_level(AreaLevel::Commune).next().unwrap();
    let kinds = [
        FactKind::Cccd { stage: CccdStage::Received },
        FactKind::SimSignature { stage: SignatureStage::Installed },
        FactKind::Hotline { status: TicketStatus::Received, level: TicketLevel::Specialist },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let day = NaiveDate::from_ymd_opt(2024, 4, 10).unwrap();
        let f = Fact {
            event_id: format!("e{i}").into(),
            subject: Digest([i as u8; 16]),
            occurred_at: midnight(10),
            day,
            area,
            kind,
        };
        s.step(&Step::Fact(f));
    }
    encode(&s.coverage, &s.tickets)
}

#[test]
fn a_damaged_snapshot_is_refused_with_its_reason() {
    let good = sample();
    assert!(decode(&good, geo(), calendar()).is_ok());
    let err = |b: &[u8]| decode(b, geo(), calendar()).err().unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert_eq!(err(&flipped), SnapshotError::Checksum);
    assert_eq!(err(&good[..good.len() - 1]), SnapshotError::Checksum);
    assert_eq!(err(&good[..10]), SnapshotError::Corrupt("truncated"));
    assert_eq!(err(b"d06.redb"), SnapshotError::NotASnapshot);

    let mut newer = good.clone();
    newer[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(FORMAT + 1).to_le_bytes());
    let e = err(&newer);
    assert_eq!(e, SnapshotError::Format { found: FORMAT + 1 });
    assert_eq!(e.to_string(), format!("shard snapshot format {}; this d06 reads format {FORMAT}", FORMAT + 1));
    // The layouts before (three tables; one record per subject without an
    // overflow set; times always in 8 bytes) are refused the same way: the
    // state is rebuilt from the facts topic.
    for found in [1u32, 2, 3] {
        let mut older = good.clone();
        older[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&found.to_le_bytes());
        assert_eq!(err(&older), SnapshotError::Format { found });
    }

    // A count the bytes cannot hold is refused before anything is reserved.
    let mut bytes = Vec::new();
    let mut out = |piece: &[u8]| bytes.extend_from_slice(piece);
    let mut w = Writer::new(64, &mut out);
    w.put(MAGIC);
    w.u32(FORMAT);
    w.len(0);
    (0..2).for_each(|_| w.u64(1));
    w.len(usize::MAX / 32);
    w.finish();
    assert_eq!(err(&bytes), SnapshotError::Corrupt("count beyond the end"));
}

/// A key's days are written in order; a snapshot that lists them otherwise
/// is refused, not loaded into a vector its look-ups would misread.
#[test]
fn a_snapshot_with_days_out_of_order_is_refused() {
    let day = |d| NaiveDate::from_ymd_opt(2024, 5, d).unwrap();
    let snapshot = |days: &[NaiveDate]| {
        let mut bytes = Vec::new();
        let mut out = |piece: &[u8]| bytes.extend_from_slice(piece);
        let mut w = Writer::new(64, &mut out);
        w.put(MAGIC);
        w.u32(FORMAT);
        w.len(0); // events
        (0..2).for_each(|_| w.u64(1)); // the index's seed
        w.len(0); // subjects
        (0..2).for_each(|_| w.u64(1)); // the overflow set's seed
        w.len(0); // overflow keys
        w.len(1); // counted keys
        w.len(0); // slot 0
        w.len(days.len());
        for d in days {
            w.day(*d);
            w.u64(1);
            w.u64(0);
        }
        w.finish();
        bytes
    };
    let err = |b: &[u8]| decode(b, geo(), calendar()).err().unwrap();
    assert_eq!(err(&snapshot(&[day(3), day(2)])), SnapshotError::Corrupt("days out of order"));
    assert_eq!(err(&snapshot(&[day(3), day(3)])), SnapshotError::Corrupt("days out of order"));
    // In order, the coverage part reads and the next part (the hotline
    // state, absent here) is what is missing.
    assert_ne!(err(&snapshot(&[day(2), day(3)])), SnapshotError::Corrupt("days out of order"));
}

#[test]
fn lengths_round_trip_as_varints() {
    for v in [0usize, 1, 127, 128, 300, 1 << 20, usize::MAX] {
        let mut bytes = Vec::new();
        let mut out = |piece: &[u8]| bytes.extend_from_slice(piece);
        let mut w = Writer::new(1, &mut out);
        w.len(v);
        let len = w.finish() as usize - 8;
        let mut r = Reader { buf: &bytes, at: 0 };
        assert_eq!(r.len().unwrap(), v);
        assert_eq!(r.at, len);
    }
}

#[test]
fn a_subject_with_more_keys_than_its_record_holds_keeps_them_through_a_snapshot() {
    let g = geo();
    let area = g.of_level(AreaLevel::Commune).next().unwrap();
    let day = NaiveDate::from_ymd_opt(2024, 4, 10).unwrap();
    let fact = |id: usize, subject: u8, kind: FactKind| Fact {
        event_id: format!("n{id}").into(),
        subject: Digest([subject; 16]),
        occurred_at: midnight(10) + id as i64,
        day,
        area,
        kind,
    };
    let issued = FactKind::Cccd { stage: CccdStage::Issued };
    let received = FactKind::Cccd { stage: CccdStage::Received };
    let mut s = State::new();
    // Twenty events that qualify for nothing: twenty keys, most of them
    // past what the subject's record holds.
    for i in 0..20 {
        assert_eq!(s.step(&Step::Fact(fact(i, 1, issued))), Some(Outcome::Applied), "{i}");
    }
    assert_eq!(s.coverage.dedup_keys(), 20);
    let mut s = s.reloaded();
    assert_eq!(s.coverage.dedup_keys(), 20);
    for i in 0..20 {
        // A retry with other content is still the same event.
        assert_eq!(s.step(&Step::Fact(fact(i, 1, received))), Some(Outcome::Duplicate), "{i}");
        // The same ids of another subject are other events.
        assert_eq!(s.step(&Step::Fact(fact(i, 2, issued))), Some(Outcome::Applied), "{i}");
    }
    assert_eq!((s.coverage.events(), s.coverage.dedup_keys(), s.coverage.subjects()), (40, 40, 0));
    let first = fact(20, 1, received);
    assert_eq!(s.step(&Step::Fact(first.clone())), Some(Outcome::Applied));
    assert_eq!(s.reloaded().step(&Step::Fact(first)), Some(Outcome::Duplicate));
}
