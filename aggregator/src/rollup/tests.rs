//! The shard's unit and property tests: apply, duplicates, late events, snapshots against the recount.

#![allow(clippy::unwrap_used)]

use super::firsts::NANOS_PER_DAY;
use super::*;
use crate::fact::{CccdStage, Device, Digest, VneidStage};
use crate::geo::{AreaLevel, GeographyVersion};
use crate::recount::recount;
use chrono::Datelike;
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::OnceLock;

const HOUR: i64 = 3_600_000_000_000;

fn geo(version: GeographyVersion) -> Arc<Geography> {
    static PRE: OnceLock<Arc<Geography>> = OnceLock::new();
    static POST: OnceLock<Arc<Geography>> = OnceLock::new();
    let cell = match version {
        GeographyVersion::Pre2025 => &PRE,
        GeographyVersion::Post2025 => &POST,
    };
    cell.get_or_init(|| Arc::new(Geography::load(version).unwrap())).clone()
}

fn pre() -> Arc<Geography> {
    geo(GeographyVersion::Pre2025)
}

fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 4, day).unwrap()
}

/// A fact on 2024-04-`day` at `hour` UTC+7 (day kept consistent with time).
fn fact(id: &str, subject: u8, day: u32, hour: i64, area: AreaId, kind: FactKind) -> Fact {
    let midnight = d(day).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap() - 7 * HOUR;
    Fact {
        event_id: id.into(),
        subject: Digest([subject; 16]),
        occurred_at: midnight + hour * HOUR,
        day: d(day),
        area,
        kind,
    }
}

fn commune(g: &Geography, code: &str) -> AreaId {
    g.find(AreaLevel::Commune, code).unwrap()
}
fn district(g: &Geography, code: &str) -> AreaId {
    g.find(AreaLevel::District, code).unwrap()
}

const CCCD: FactKind = FactKind::Cccd { stage: CccdStage::Received };
const INSTALL: FactKind = FactKind::SimSignature { stage: SignatureStage::Installed };
const REVOKE: FactKind = FactKind::SimSignature { stage: SignatureStage::Revoked };

/// The key's non-zero days.
fn counts(s: &Shard, ind: Indicator, area: AreaId) -> Vec<(NaiveDate, u64, u64)> {
    s.days(&(ind, area))
        .map(|m| m.iter().filter(|(_, c)| !c.is_zero()).map(|(d, c)| (*d, c.gained, c.lost)).collect())
        .unwrap_or_default()
}

#[test]
fn first_event_counts_once_at_every_level() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let c = commune(&g, "25216"); // Phường Thác Mơ, district 688
    assert_eq!(s.apply(&fact("a", 1, 11, 9, c, CCCD)), Outcome::Applied);
    assert_eq!(s.apply(&fact("b", 1, 12, 9, c, CCCD)), Outcome::Applied);
    for area in [c, district(&g, "688"), g.province()] {
        assert_eq!(counts(&s, Indicator::Cccd, area), [(d(11), 1, 0)]);
    }
    assert_eq!(s.subjects(), 1);
    assert_eq!(s.events(), 2);
    // The other districts and indicators are untouched.
    assert_eq!(s.days(&(Indicator::Cccd, district(&g, "689"))), None);
    assert_eq!(s.days(&(Indicator::Vneid, g.province())), None);
}

#[test]
fn an_event_id_is_a_duplicate_only_for_the_same_subject_and_type() {
    let g = pre();
    let c = commune(&g, "25216");
    let facts = [
        fact("000123", 1, 11, 9, c, CCCD),
        // A retry of it, even with other content: the first copy stands.
        fact("000123", 1, 12, 9, c, CCCD),
        // Another citizen under the same id (another producer's numbering).
        fact("000123", 2, 11, 9, c, CCCD),
        // The same citizen and id from the VNeID system.
        fact("000123", 1, 11, 10, c, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }),
    ];
    // Whatever the shard count: the subjects 1 and 2 may share a shard or not.
    for n in [1u32, 2, 3, 7] {
        let mut shards: Vec<Shard> = (0..n).map(|_| Shard::new(g.clone())).collect();
        let outcomes: Vec<Outcome> = facts.iter().map(|f| shards[f.subject.shard(n) as usize].apply(f)).collect();
        assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate, Outcome::Applied, Outcome::Applied], "{n}");
        let total = |ind| {
            shards.iter().filter_map(|s| s.days(&(ind, g.province()))).flatten().map(|(_, c)| c.gained).sum::<u64>()
        };
        assert_eq!((total(Indicator::Cccd), total(Indicator::Vneid)), (2, 1), "{n} shards");
    }
    let r = recount(&g, &facts);
    assert_eq!(r.get(&(Indicator::Cccd, g.province(), d(11))).map(|c| c.gained), Some(2));
    assert_eq!(r.get(&(Indicator::Vneid, g.province(), d(11))).map(|c| c.gained), Some(1));
}

#[test]
fn non_qualifying_events_count_nothing() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let c = commune(&g, "25216");
    s.apply(&fact("a", 1, 11, 9, c, FactKind::Cccd { stage: CccdStage::Issued }));
    s.apply(&fact("b", 2, 11, 9, c, FactKind::Vneid { stage: VneidStage::Activated, level: 1 }));
    s.apply(&fact("c", 3, 11, 9, c, FactKind::Vneid { stage: VneidStage::Registered, level: 2 }));
    assert_eq!(s.keys().count(), 0);
    assert_eq!(s.subjects(), 0);
    assert_eq!(s.events(), 3);
    s.apply(&fact("d", 2, 12, 9, c, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }));
    assert_eq!(counts(&s, Indicator::Vneid, g.province()), [(d(12), 1, 0)]);
}

#[test]
fn late_earlier_event_moves_the_day_and_area() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195")); // districts 688 and 689
    s.apply(&fact("late", 1, 15, 9, c1, CCCD));
    s.take_dirty();
    s.apply(&fact("early", 1, 12, 9, c2, CCCD));
    assert_eq!(counts(&s, Indicator::Cccd, c1), []);
    assert_eq!(counts(&s, Indicator::Cccd, district(&g, "688")), []);
    assert_eq!(counts(&s, Indicator::Cccd, c2), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Cccd, district(&g, "689")), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Cccd, g.province()), [(d(12), 1, 0)]);
    let dirty = s.take_dirty();
    assert_eq!(dirty.get(&(Indicator::Cccd, c1)), Some(&d(15)));
    assert_eq!(dirty.get(&(Indicator::Cccd, c2)), Some(&d(12)));
    assert_eq!(dirty.get(&(Indicator::Cccd, g.province())), Some(&d(12)));
    assert_eq!(dirty.len(), 5);
    assert!(s.take_dirty().is_empty());
    // The key of the old area stays listed, with no days.
    assert!(s.keys().any(|k| *k == (Indicator::Cccd, c1)));
}

#[test]
fn ties_are_broken_by_event_id() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195"));
    // Same instant: "b" loses to "a" even though it arrived first.
    s.apply(&fact("b", 1, 12, 9, c1, CCCD));
    s.apply(&fact("a", 1, 12, 9, c2, CCCD));
    assert_eq!(counts(&s, Indicator::Cccd, c1), []);
    assert_eq!(counts(&s, Indicator::Cccd, c2), [(d(12), 1, 0)]);
    // "c" at the same instant does not move it.
    s.apply(&fact("c", 1, 12, 9, c1, CCCD));
    assert_eq!(counts(&s, Indicator::Cccd, c2), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Cccd, c1), []);
}

#[test]
fn duplicates_change_nothing_and_the_first_copy_stands() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195"));
    let f = fact("x", 1, 12, 9, c1, CCCD);
    assert_eq!(s.apply(&f), Outcome::Applied);
    s.take_dirty();
    assert_eq!(s.apply(&f), Outcome::Duplicate);
    // Same id, different content (earlier, elsewhere): still a duplicate.
    assert_eq!(s.apply(&fact("x", 1, 11, 9, c2, CCCD)), Outcome::Duplicate);
    assert_eq!(counts(&s, Indicator::Cccd, c1), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Cccd, c2), []);
    assert!(s.take_dirty().is_empty());
    assert_eq!(s.events(), 1);
}

#[test]
fn swap_feeds_two_indicators_with_their_own_first_events() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let c = commune(&g, "25216");
    s.apply(&fact("s2", 1, 14, 9, c, FactKind::SimSwap { device: Device::Smartphone }));
    s.apply(&fact("s1", 1, 12, 9, c, FactKind::SimSwap { device: Device::FeaturePhone }));
    assert_eq!(counts(&s, Indicator::Migrated2g, c), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Smartphone4g, c), [(d(14), 1, 0)]);
    assert_eq!(s.subjects(), 1);
}

#[test]
fn district_only_event_counts_in_district_and_province_only() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let dist = district(&g, "688");
    s.apply(&fact("a", 1, 12, 9, dist, CCCD));
    assert_eq!(counts(&s, Indicator::Cccd, dist), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Cccd, g.province()), [(d(12), 1, 0)]);
    assert_eq!(s.keys().count(), 2);
}

#[test]
fn install_then_revoke_same_day_gains_and_loses() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let c = commune(&g, "25216");
    s.apply(&fact("i", 1, 12, 9, c, INSTALL));
    s.apply(&fact("r", 1, 12, 15, c, REVOKE));
    assert_eq!(counts(&s, Indicator::SimSignature, c), [(d(12), 1, 1)]);
    assert_eq!(counts(&s, Indicator::SimSignature, g.province()), [(d(12), 1, 1)]);
}

#[test]
fn reinstall_gains_again_and_redundant_events_change_nothing() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let c = commune(&g, "25216");
    s.apply(&fact("r0", 1, 11, 9, c, REVOKE)); // revoked while not covered
    s.apply(&fact("i1", 1, 12, 9, c, INSTALL));
    s.apply(&fact("i2", 1, 13, 9, c, INSTALL)); // installed → installed
    s.apply(&fact("r1", 1, 14, 9, c, REVOKE));
    s.apply(&fact("r2", 1, 15, 9, c, REVOKE));
    s.apply(&fact("i3", 1, 16, 9, c, INSTALL));
    assert_eq!(counts(&s, Indicator::SimSignature, c), [(d(12), 1, 0), (d(14), 0, 1), (d(16), 1, 0)]);
}

#[test]
fn exit_is_booked_in_the_area_of_the_entry() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195"));
    s.apply(&fact("i", 1, 12, 9, c1, INSTALL));
    s.apply(&fact("i2", 1, 13, 9, c2, INSTALL)); // no entry: already covered
    s.apply(&fact("r", 1, 14, 9, c2, REVOKE));
    assert_eq!(counts(&s, Indicator::SimSignature, c1), [(d(12), 1, 0), (d(14), 0, 1)]);
    assert_eq!(counts(&s, Indicator::SimSignature, c2), []);
    assert_eq!(counts(&s, Indicator::SimSignature, district(&g, "689")), []);
}

#[test]
fn late_signature_events_rewrite_the_history() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195"));
    s.apply(&fact("r", 1, 14, 9, c1, REVOKE));
    assert_eq!(s.keys().count(), 0);
    s.apply(&fact("i2", 1, 13, 9, c2, INSTALL));
    assert_eq!(counts(&s, Indicator::SimSignature, c2), [(d(13), 1, 0), (d(14), 0, 1)]);
    s.take_dirty();
    // An earlier install elsewhere becomes the entry; the exit moves with it.
    s.apply(&fact("i1", 1, 12, 9, c1, INSTALL));
    assert_eq!(counts(&s, Indicator::SimSignature, c1), [(d(12), 1, 0), (d(14), 0, 1)]);
    assert_eq!(counts(&s, Indicator::SimSignature, c2), []);
    assert_eq!(counts(&s, Indicator::SimSignature, g.province()), [(d(12), 1, 0), (d(14), 0, 1)]);
    let dirty = s.take_dirty();
    assert_eq!(dirty.get(&(Indicator::SimSignature, c2)), Some(&d(13)));
    assert_eq!(dirty.get(&(Indicator::SimSignature, c1)), Some(&d(12)));
    // A late revoke between them splits the history in two entries.
    s.apply(&fact("r0", 1, 12, 18, c2, REVOKE));
    assert_eq!(counts(&s, Indicator::SimSignature, c1), [(d(12), 1, 1)]);
    assert_eq!(counts(&s, Indicator::SimSignature, c2), [(d(13), 1, 0), (d(14), 0, 1)]);
}

#[test]
fn keys_come_in_key_order_and_unknown_keys_have_no_days() {
    let g = pre();
    let mut s = Shard::new(g.clone());
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195")); // districts 688 and 689
    s.apply(&fact("v", 1, 12, 9, c2, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }));
    s.apply(&fact("i", 2, 12, 9, c1, INSTALL));
    s.apply(&fact("c", 3, 12, 9, c1, CCCD));
    let mut want: Vec<RollupKey> = Vec::new();
    for (ind, c, dist) in
        [(Indicator::Vneid, c2, "689"), (Indicator::SimSignature, c1, "688"), (Indicator::Cccd, c1, "688")]
    {
        want.extend([(ind, c), (ind, district(&g, dist)), (ind, g.province())]);
    }
    want.sort();
    assert_eq!(s.keys().copied().collect::<Vec<_>>(), want);
    assert_eq!(counts(&s, Indicator::Vneid, district(&g, "689")), [(d(12), 1, 0)]);
    assert_eq!(s.days(&(Indicator::Cccd, AreaId(u16::MAX))), None);
    assert_eq!(s.days(&(Indicator::Migrated2g, g.province())), None);
    let dirty = s.take_dirty();
    assert_eq!(dirty.keys().copied().collect::<Vec<_>>(), want);
    assert!(dirty.values().all(|day| *day == d(12)));
    assert!(s.take_dirty().is_empty());
    // All three are first events or signature events: no dedup key.
    assert_eq!(format!("{s:?}"), "Shard { events: 3, dedup_keys: 0, subjects: 3, keys: 9, dirty: 0 }");
}

#[test]
fn a_retry_is_a_duplicate_wherever_its_event_is_held() {
    let g = pre();
    let c = commune(&g, "25216");
    let issued = FactKind::Cccd { stage: CccdStage::Issued };
    let (phone, feature) =
        (FactKind::SimSwap { device: Device::Smartphone }, FactKind::SimSwap { device: Device::FeaturePhone });
    let mut s = Shard::new(g.clone());
    let mut all = Vec::new();
    let mut apply = |s: &mut Shard, f: Fact| {
        all.push(f.clone());
        s.apply(&f)
    };
    let a = Outcome::Applied;
    let dup = Outcome::Duplicate;
    // (fact, outcome, dedup keys after): a first event is held by its record.
    let steps = [
        (fact("late", 1, 13, 9, c, CCCD), a, 0),
        // Not qualifying: only the dedup set holds it.
        (fact("x", 1, 11, 9, c, issued), a, 1),
        // Earlier: displaces "late", whose key moves to the dedup set.
        (fact("early", 1, 12, 9, c, CCCD), a, 2),
        // Retries with other content (the copy applied first stands),
        // from each place an event can be held.
        (fact("late", 1, 10, 9, c, CCCD), dup, 2),
        (fact("early", 1, 10, 9, c, issued), dup, 2),
        (fact("x", 1, 10, 9, c, CCCD), dup, 2),
        // The same id in another type is another event.
        (fact("late", 1, 10, 9, c, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }), a, 2),
        // A smartphone swap is first of two indicators; displaced from
        // one of them it is still held by the other.
        (fact("s", 1, 12, 9, c, phone), a, 2),
        (fact("f", 1, 11, 9, c, feature), a, 2),
        (fact("s", 1, 9, 9, c, feature), dup, 2),
        (fact("s0", 1, 10, 9, c, phone), a, 4),
        (fact("s", 1, 9, 9, c, phone), dup, 4),
        (fact("f", 1, 9, 9, c, phone), dup, 4),
        (fact("s0", 1, 9, 9, c, feature), dup, 4),
        // Signature events are held by the subject's list.
        (fact("i", 1, 12, 9, c, INSTALL), a, 4),
        (fact("i", 1, 13, 9, c, REVOKE), dup, 4),
        // Displaced from both indicators at once, an event keeps one key.
        (fact("p", 2, 12, 9, c, phone), a, 4),
        (fact("q", 2, 10, 9, c, phone), a, 5),
        (fact("p", 2, 9, 9, c, feature), dup, 5),
    ];
    for (i, (f, outcome, keys)) in steps.into_iter().enumerate() {
        assert_eq!(apply(&mut s, f), outcome, "step {i}");
        assert_eq!(s.dedup_keys(), keys, "step {i}");
    }
    assert_eq!(s.events(), 10);
    assert_eq!(snapshot_counts(&s), recount(&g, &all));
    assert_eq!(counts(&s, Indicator::Cccd, c), [(d(12), 1, 0)]);
    assert_eq!(counts(&s, Indicator::Migrated2g, c), [(d(10), 2, 0)]);
}

/// Every (indicator, area, day) count of one shard, as [`recount`] gives them.
fn snapshot_counts(s: &Shard) -> Counted {
    sum_shards(std::slice::from_ref(s))
}

#[test]
fn a_day_is_any_date_and_nothing_else() {
    for date in [NaiveDate::MIN, NaiveDate::MAX, d(12), NaiveDate::from_ymd_opt(1, 1, 1).unwrap()] {
        let days = i64::from(date.num_days_from_ce());
        assert_eq!(Day::new(days), Some(Day::of(date)));
        assert_eq!(Day::of(date).date(), date);
    }
    let (min, max) = (NaiveDate::MIN.num_days_from_ce(), NaiveDate::MAX.num_days_from_ce());
    assert_eq!(Day::RANGE, i64::from(min)..=i64::from(max));
    assert_eq!(Day::new(i64::from(min) - 1), None);
    assert_eq!(Day::new(i64::from(max) + 1), None);
    assert_eq!(Day::new(i64::from(i32::MAX) + 1), None);
    assert!(Day::of(d(11)) < Day::of(d(12)));
}

#[test]
fn firsts_pack_and_replace_records() {
    let mut f = Vec::new();
    assert_eq!(Firsts(&f).get(Indicator::Cccd), None);
    let long = "é".repeat(128); // 256 bytes
                                // 2024-04-12 00:30 local = 2024-04-11 17:30 UTC: day code +1.
    let a = FirstEvent {
        at: fact("x", 0, 12, 0, AreaId(7), CCCD).occurred_at + HOUR / 2,
        id: Id::Raw(long.as_bytes()),
        day: Day::of(d(12)),
        area: AreaId(7),
    };
    // Before 1970, day one behind UTC; a packed id.
    let packed = IdBuf::new(b"b");
    let b = FirstEvent {
        at: -NANOS_PER_DAY - 1,
        id: packed.id(),
        day: Day::of(NaiveDate::from_ymd_opt(1969, 12, 29).unwrap()),
        area: AreaId(u16::MAX),
    };
    // Inconsistent day far from the UTC day: stored in full.
    let c = FirstEvent { at: i64::MAX, id: Id::Raw(b""), day: Day::of(d(2)), area: AreaId(0) };
    set_first(&mut f, Indicator::Vneid, &a);
    set_first(&mut f, Indicator::Migrated2g, &b);
    // a: head, a two-byte length, area, a whole second after 2000 (4),
    // the id; b: before 2000, so the time in full (8), one packed byte.
    assert_eq!(f.len(), (1 + 2 + 2 + 4 + 256) + (1 + 1 + 2 + 8 + 1));
    assert_eq!(Firsts(&f).get(Indicator::Vneid), Some(a));
    assert_eq!(Firsts(&f).get(Indicator::Migrated2g), Some(b));
    set_first(&mut f, Indicator::Vneid, &c);
    assert_eq!(Firsts(&f).get(Indicator::Vneid), Some(c));
    assert_eq!(Firsts(&f).get(Indicator::Migrated2g), Some(b));
    assert_eq!(Firsts(&f).get(Indicator::Cccd), None);
    // c: the time in full, the day too (4), an empty id.
    assert_eq!(f.len(), (1 + 1 + 2 + 8 + 1) + (1 + 1 + 2 + 8 + 4));
    set_first(&mut f, Indicator::SimSignature, &a);
    assert_eq!(Firsts(&f).get(Indicator::SimSignature), Some(a));
    assert_eq!(Firsts(&f).get(Indicator::Migrated2g), Some(b));
    assert_eq!(Firsts(&f).get(Indicator::Vneid), Some(c));
}

// ---- property tests -------------------------------------------------

type Counted = BTreeMap<(Indicator, AreaId, NaiveDate), DayCounts>;

fn kind_strategy() -> impl Strategy<Value = FactKind> {
    prop_oneof![
        1 => prop::sample::select(CccdStage::ALL).prop_map(|stage| FactKind::Cccd { stage }),
        1 => (prop::sample::select(VneidStage::ALL), 1u8..=2).prop_map(|(stage, level)| FactKind::Vneid { stage, level }),
        1 => prop::sample::select(Device::ALL).prop_map(|device| FactKind::SimSwap { device }),
        3 => prop::sample::select(SignatureStage::ALL).prop_map(|stage| FactKind::SimSignature { stage }),
    ]
}

fn raw_strategy() -> impl Strategy<Value = Vec<Raw>> {
    prop::collection::vec((0u8..4, 0i64..9, any::<usize>(), 0u8..3, kind_strategy()), 0..40)
}

/// Builds facts from raw tuples; areas are picked among communes and
/// districts (district-only events) of `g`.
fn build(g: &Geography, raw: &[Raw]) -> Vec<Fact> {
    let areas: Vec<AreaId> = g.of_level(AreaLevel::Commune).chain(g.of_level(AreaLevel::District)).collect();
    // Also pick from a handful of areas often, so subjects collide in areas.
    raw.iter()
        .enumerate()
        .map(|(i, &(subject, slot, area, prefix, kind))| {
            let area = if area % 2 == 0 { areas[(area / 2) % 3] } else { areas[(area / 2) % areas.len()] };
            let mut digest = [subject; 16];
            digest[0] = subject.wrapping_mul(37);
            let day = 10 + (slot / 3) as u32;
            // Ids of both stored forms (`_` does not pack), so ties in
            // time compare packed with unpacked ids too.
            let sep = if i % 3 == 0 { "_" } else { "" };
            let id = format!("{}{sep}{i:03}", (b'a' + prefix) as char);
            let mut f = fact(&id, 0, day, (slot % 3) * 8, area, kind);
            f.subject = Digest(digest);
            f
        })
        .collect()
}

/// Another kind of the same type (same [`FactKind::type_tag`]).
fn same_type_other_kind(kind: FactKind) -> FactKind {
    fn next<T: Copy + PartialEq>(all: &[T], v: T) -> T {
        let i = all.iter().position(|x| *x == v).unwrap_or(0);
        all[(i + 1) % all.len()]
    }
    match kind {
        FactKind::Cccd { stage } => FactKind::Cccd { stage: next(CccdStage::ALL, stage) },
        FactKind::Vneid { stage, level: 2 } => FactKind::Vneid { stage, level: 1 },
        FactKind::Vneid { stage, .. } => FactKind::Vneid { stage: next(VneidStage::ALL, stage), level: 2 },
        FactKind::SimSwap { device } => FactKind::SimSwap { device: next(Device::ALL, device) },
        FactKind::SimSignature { stage } => FactKind::SimSignature { stage: next(SignatureStage::ALL, stage) },
        FactKind::Hotline { .. } => kind,
    }
}

fn sum_shards(shards: &[Shard]) -> Counted {
    let mut out = Counted::new();
    for s in shards {
        for key in s.keys() {
            for (day, c) in s.days(key).into_iter().flatten().filter(|(_, c)| !c.is_zero()) {
                let e = out.entry((key.0, key.1, *day)).or_default();
                e.gained += c.gained;
                e.lost += c.lost;
            }
        }
    }
    out
}

fn snapshot(s: &Shard) -> BTreeMap<RollupKey, Days> {
    s.keys().map(|k| (*k, s.days(k).cloned().unwrap_or_default())).collect()
}

/// Checks the hierarchy: the parent's count is at least the sum of its
/// children's, with equality when no event names the parent directly.
fn check_hierarchy(g: &Geography, total: &Counted, facts: &[Fact]) -> Result<(), TestCaseError> {
    let named: HashSet<AreaId> = facts.iter().map(|f| f.area).collect();
    let keys: HashSet<(Indicator, NaiveDate)> = total.keys().map(|(i, _, d)| (*i, *d)).collect();
    for parent in (0..g.areas().len()).map(|i| AreaId(i as u16)) {
        let children: Vec<AreaId> =
            (0..g.areas().len()).map(|i| AreaId(i as u16)).filter(|c| g.area(*c).parent == Some(parent)).collect();
        if children.is_empty() {
            continue;
        }
        for &(ind, day) in &keys {
            let get = |a: AreaId| total.get(&(ind, a, day)).copied().unwrap_or_default();
            let p = get(parent);
            let (g_sum, l_sum) = children.iter().fold((0, 0), |(x, y), c| (x + get(*c).gained, y + get(*c).lost));
            prop_assert!(g_sum <= p.gained && l_sum <= p.lost, "{ind} {day} {parent:?}");
            if !named.contains(&parent) {
                prop_assert_eq!((g_sum, l_sum), (p.gained, p.lost), "{} {} {:?}", ind, day, parent);
            }
        }
    }
    Ok(())
}

/// (subject, time slot of 8 h over 3 days, area pick, id prefix, kind).
type Raw = (u8, i64, usize, u8, FactKind);
/// Raw events, exact re-sends, conflicting re-sends (index, slot, area,
/// another kind of the same type or not), ids reused for another subject (index, subject), shuffle seed, shard
/// count, split point for the dirty check.
type Scenario = (
    Vec<Raw>,
    Vec<prop::sample::Index>,
    Vec<(prop::sample::Index, i64, usize, bool)>,
    Vec<(prop::sample::Index, u8)>,
    u64,
    u32,
    usize,
);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        raw_strategy(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        prop::collection::vec((any::<prop::sample::Index>(), 0i64..9, any::<usize>(), any::<bool>()), 0..6),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..12), 0..4),
        any::<u64>(),
        1u32..5,
        any::<usize>(),
    )
}

fn run(version: GeographyVersion, input: Scenario) -> Result<(), TestCaseError> {
    let (raw, dups, conflicts, reused, seed, n, split) = input;
    let g = geo(version);
    let facts = build(&g, &raw);
    let mut all = facts.clone();
    if !facts.is_empty() {
        // Exact re-sends.
        all.extend(dups.iter().map(|i| facts[i.index(facts.len())].clone()));
        // Same id and subject, different content: the copy applied first stands.
        // With another stage, level or device too (a retry that
        // would qualify where the first copy did not, or the reverse).
        for (i, slot, area, restage) in &conflicts {
            let mut f = facts[i.index(facts.len())].clone();
            if *restage {
                f.kind = same_type_other_kind(f.kind);
            }
            let other = build(&g, &[(0, *slot, *area, 0, f.kind)]).remove(0);
            f.occurred_at = other.occurred_at;
            f.day = other.day;
            f.area = other.area;
            all.push(f);
        }
        // The same id from another subject (another producer's numbering,
        // or a producer bug): a different fact, counted whatever the shards.
        for (i, subject) in &reused {
            let mut f = facts[i.index(facts.len())].clone();
            f.subject = Digest([*subject; 16]);
            all.push(f);
        }
    }
    // A deterministic shuffle from the seed (Fisher–Yates on a xorshift).
    let mut x = seed | 1;
    for i in (1..all.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        all.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let expected = recount(&g, &all);

    let mut shards: Vec<Shard> = (0..n).map(|_| Shard::new(g.clone())).collect();
    let split = if all.is_empty() { 0 } else { split % all.len() };
    let mut dup = 0;
    for f in &all[..split] {
        if shards[f.subject.shard(n) as usize].apply(f) == Outcome::Duplicate {
            dup += 1;
        }
    }
    let before: Vec<_> = shards
        .iter_mut()
        .map(|s| {
            s.take_dirty();
            snapshot(s)
        })
        .collect();
    // The rest in groups, each prefetched by every shard first (as the
    // pipeline does, facts of other shards among them): a look only.
    for group in all[split..].chunks(PREFETCH_AHEAD) {
        for s in &shards {
            s.prefetch(group.iter());
        }
        for f in group {
            if shards[f.subject.shard(n) as usize].apply(f) == Outcome::Duplicate {
                dup += 1;
            }
        }
    }
    // Dirty tracking: every key that changed is listed, with a day no
    // later than its earliest changed day.
    for (s, before) in shards.iter_mut().zip(before) {
        let dirty = s.take_dirty();
        let after = snapshot(s);
        for (key, days) in &after {
            let old = before.get(key).cloned().unwrap_or_default();
            let changed = days.keys().chain(old.keys()).filter(|d| days.get(d) != old.get(d)).min();
            if let Some(first) = changed {
                prop_assert!(
                    dirty.get(key).is_some_and(|d| d <= first),
                    "{key:?} changed on {first} but dirty {:?}",
                    dirty.get(key)
                );
            }
        }
    }
    let total = sum_shards(&shards);
    prop_assert_eq!(&total, &expected);
    let distinct: HashSet<u128> = all.iter().map(Fact::event_key).collect();
    prop_assert_eq!(shards.iter().map(Shard::events).sum::<usize>(), distinct.len());
    prop_assert_eq!(dup, all.len() - distinct.len());
    check_hierarchy(&g, &total, &all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn shards_sum_to_the_recount_pre2025(input in scenario()) {
        run(GeographyVersion::Pre2025, input)?;
    }

    #[test]
    fn shards_sum_to_the_recount_post2025(input in scenario()) {
        run(GeographyVersion::Post2025, input)?;
    }
}

#[test]
fn recount_matches_the_hand_examples() {
    let g = pre();
    let (c1, c2) = (commune(&g, "25216"), commune(&g, "25195"));
    let facts = [
        fact("i", 1, 12, 9, c1, INSTALL),
        fact("r", 1, 14, 9, c2, REVOKE),
        fact("x", 2, 13, 9, c2, CCCD),
        fact("w", 2, 12, 9, c1, CCCD),
        fact("w", 2, 11, 9, c2, CCCD), // duplicate id: ignored
    ];
    let r = recount(&g, &facts);
    let get = |i, a, d| r.get(&(i, a, d)).copied().unwrap_or_default();
    assert_eq!(get(Indicator::SimSignature, c1, d(12)), DayCounts { gained: 1, lost: 0 });
    assert_eq!(get(Indicator::SimSignature, c1, d(14)), DayCounts { gained: 0, lost: 1 });
    assert_eq!(get(Indicator::Cccd, c1, d(12)), DayCounts { gained: 1, lost: 0 });
    assert_eq!(get(Indicator::Cccd, g.province(), d(12)), DayCounts { gained: 1, lost: 0 });
    // 3 levels × (2 signature days + 1 cccd day).
    assert_eq!(r.len(), 9);
}

/// Resident bytes per subject of a shard holding 1M subjects, each with
/// `per_subject` first-qualifying events (ids of 26 chars). Includes the
/// dedup set and the hash-table slack. Run each test alone, in release:
/// `cargo test -p aggregator --release --lib -- --ignored --nocapture --exact rollup::tests::bytes_per_subject_1`.
fn measure(per_subject: u32) {
    fn rss() -> usize {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap();
        s.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
    }
    let g = pre();
    let communes: Vec<AreaId> = g.of_level(AreaLevel::Commune).collect();
    let n = 1_000_000u32;
    let base = rss();
    let mut s = Shard::new(g.clone());
    let kinds = [CCCD, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }];
    for i in 0..n {
        let mut digest = [0u8; 16];
        digest[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        digest[4..8].copy_from_slice(&i.to_le_bytes());
        for k in 0..per_subject {
            let id = format!("c06-cccd-20240509-{i:06}-{k}");
            let mut f = fact(&id, 0, 1 + i % 28, 9, communes[i as usize % communes.len()], kinds[k as usize % 2]);
            f.subject = Digest(digest);
            s.apply(&f);
        }
    }
    let used = rss() - base;
    println!(
        "{per_subject} first event(s)/subject: {} subjects, {} events, {used} bytes RSS, {:.1} bytes/subject",
        s.subjects(),
        s.events(),
        used as f64 / s.subjects() as f64
    );
    assert_eq!(s.subjects(), n as usize);
    assert_eq!(s.events(), (n * per_subject) as usize);
}

#[test]
#[ignore]
fn bytes_per_subject_1() {
    measure(1);
}

#[test]
#[ignore]
fn bytes_per_subject_2() {
    measure(2);
}
