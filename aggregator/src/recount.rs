//! An independent oracle for the coverage counts: the naive way, from
//! scratch, and written differently from [`crate::rollup::Shard`].
//!
//! Used by the property tests of `rollup` and by black-box tests that check
//! the pipeline's outputs after crashes and replays. Obviously correct rather
//! than fast: it keeps every event and sorts each subject's history.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;

use crate::fact::{CccdStage, Device, Digest, Fact, FactKind, Indicator, SignatureStage, VneidStage};
use crate::geo::{AreaId, Geography};
use crate::rollup::DayCounts;

/// Recounts `facts` from scratch: the per-(indicator, area, day) counts that
/// applying them (in any order) must give, at every level of the geography.
///
/// Deduplicates by the exact (subject, type, `event_id`) (the first
/// occurrence in the slice wins; see [`Fact::event_key`] for why the subject
/// and type belong to a duplicate's identity), groups the events by subject, sorts each subject's events by
/// (`occurred_at`, `event_id`) and derives the counts (EVENTS-v1 "The
/// indicators", "Precise rules"). `hotline.ticket` facts are skipped. Only
/// non-zero entries are present.
pub fn recount(geo: &Geography, facts: &[Fact]) -> BTreeMap<(Indicator, AreaId, NaiveDate), DayCounts> {
    let mut seen: HashSet<(Digest, std::mem::Discriminant<FactKind>, &str)> = HashSet::new();
    let mut by_subject: BTreeMap<Digest, Vec<&Fact>> = BTreeMap::new();
    for f in facts {
        if matches!(f.kind, FactKind::Hotline { .. }) {
            continue;
        }
        if seen.insert((f.subject, std::mem::discriminant(&f.kind), &f.event_id)) {
            by_subject.entry(f.subject).or_default().push(f);
        }
    }

    let mut out: BTreeMap<(Indicator, AreaId, NaiveDate), DayCounts> = BTreeMap::new();
    let mut book = |ind: Indicator, area: AreaId, day: NaiveDate, gained: bool| {
        for a in geo.chain(area) {
            let c = out.entry((ind, a, day)).or_default();
            if gained {
                c.gained += 1;
            } else {
                c.lost += 1;
            }
        }
    };

    for events in by_subject.values_mut() {
        events.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));

        // Distinct subjects, ever: once, at the first qualifying event.
        for ind in [Indicator::Cccd, Indicator::Vneid, Indicator::Smartphone4g, Indicator::Migrated2g] {
            if let Some(first) = events.iter().find(|e| qualifies(&e.kind, ind)) {
                book(ind, first.area, first.day, true);
            }
        }

        // sim_signature: covered while the latest event is `installed`.
        let mut entered_in: Option<AreaId> = None;
        for e in events.iter() {
            match e.kind {
                FactKind::SimSignature { stage: SignatureStage::Installed } if entered_in.is_none() => {
                    book(Indicator::SimSignature, e.area, e.day, true);
                    entered_in = Some(e.area);
                }
                FactKind::SimSignature { stage: SignatureStage::Revoked } => {
                    if let Some(area) = entered_in.take() {
                        book(Indicator::SimSignature, area, e.day, false);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The contract's indicator table, spelled out again on purpose (not
/// [`FactKind::first_event_indicators`]) so the oracle stays independent.
fn qualifies(kind: &FactKind, ind: Indicator) -> bool {
    match ind {
        Indicator::Cccd => matches!(kind, FactKind::Cccd { stage: CccdStage::Received }),
        Indicator::Vneid => matches!(kind, FactKind::Vneid { stage: VneidStage::Activated, level: 2 }),
        Indicator::Smartphone4g => matches!(kind, FactKind::SimSwap { device: Device::Smartphone }),
        Indicator::Migrated2g => matches!(kind, FactKind::SimSwap { .. }),
        Indicator::SimSignature => false,
    }
}
