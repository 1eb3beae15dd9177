//! The coverage part of a shard snapshot (`crate::snapshot`): each
//! subject's record as it is in memory (first-event records, `sim.signature`
//! events, dedup keys) and the counts per key and day.
//!
//! Layout: distinct events applied; the hash seed of the subjects' index
//! (two `u64`); the subjects (count; per subject its digest and its
//! record's body, `subjects.rs`); the hash seed of the overflow set and its
//! dedup keys (count; 16 bytes each); the counted keys (count; slot, day count;
//! per day the day, gained, lost). The subjects holding state and the
//! dedup keys are counted again on load from the records.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Body, Days, Firsts, KeyHash, Shard, Sigs, Subjects, ID_LEN_MAX};
use crate::fact::Indicator;
use crate::geo::{AreaId, Geography};
use crate::rollup::DayCounts;
use crate::snapshot::{Reader, SnapshotError, Writer};

impl Shard {
    pub(crate) fn write_snapshot(&self, w: &mut Writer) {
        w.len(self.events);
        let seed = &self.subjects.hasher().seed;
        w.u64(seed[0]);
        w.u64(seed[1]);
        w.len(self.subjects.len());
        for (subject, body) in self.subjects.iter() {
            w.digest(&subject);
            w.bytes(body);
        }
        let seed = &self.overflow.hasher().seed;
        w.u64(seed[0]);
        w.u64(seed[1]);
        w.len(self.overflow.len());
        for key in &self.overflow {
            w.u128(*key);
        }
        let counted: Vec<_> =
            self.counts.by_key.iter().enumerate().filter_map(|(s, k)| Some((s, k.as_ref()?))).collect();
        w.len(counted.len());
        for (slot, (_, days)) in counted {
            w.len(slot);
            w.len(days.len());
            for (day, c) in days {
                w.day(*day);
                w.u64(c.gained);
                w.u64(c.lost);
            }
        }
    }

    pub(crate) fn read_snapshot(geo: Arc<Geography>, r: &mut Reader<'_>) -> Result<Shard, SnapshotError> {
        let mut shard = Shard::new(Arc::clone(&geo));
        shard.events = r.len()?;
        // The index's hash seed, so that it is rebuilt with its records in
        // the order of its slots: the inserts walk the table instead of
        // missing the cache at every record (BENCHMARKS.md, "Snapshots").
        let seed = KeyHash { seed: [r.u64()?, r.u64()?] };
        // A digest and a body of three empty lengths at least.
        let n = r.count(16 + 1 + 3)?;
        shard.subjects = Subjects::with_capacity_and_hasher(n, seed);
        for _ in 0..n {
            let subject = r.digest()?;
            let bytes = r.bytes()?;
            let body = Body::parse(bytes).ok_or(SnapshotError::Corrupt("subject record"))?;
            if !body.firsts.is_empty() {
                check_firsts(Firsts(body.firsts), &geo)?;
            }
            if !body.sigs.is_empty() && !Sigs(body.sigs).check(geo.areas().len()) {
                return Err(SnapshotError::Corrupt("signature events"));
            }
            if !body.holds_state() && body.key_count() == 0 {
                return Err(SnapshotError::Corrupt("an empty subject record"));
            }
            shard.holding += usize::from(body.holds_state());
            shard.keys += body.key_count();
            let (place, _) = shard.subjects.get(&subject);
            if place.is_taken() {
                return Err(SnapshotError::Corrupt("a subject twice"));
            }
            shard.subjects.put(place, &subject, bytes);
        }
        let seed = KeyHash { seed: [r.u64()?, r.u64()?] };
        let n = r.count(16)?;
        shard.overflow = HashSet::with_capacity_and_hasher(n, seed);
        for _ in 0..n {
            shard.overflow.insert(r.u128()?);
        }
        shard.keys += n;
        let n = r.count(2)?;
        let areas = shard.counts.areas;
        for _ in 0..n {
            let slot = r.len()?;
            let ind = *Indicator::ALL.get(slot / areas.max(1)).ok_or(SnapshotError::Corrupt("counted key"))?;
            let key = (ind, AreaId((slot % areas) as u16));
            let mut days = Days::default();
            for _ in 0..r.count(20)? {
                if !days.push_next(r.day()?, DayCounts { gained: r.u64()?, lost: r.u64()? }) {
                    return Err(SnapshotError::Corrupt("days out of order"));
                }
            }
            *shard.counts.by_key.get_mut(slot).ok_or(SnapshotError::Corrupt("counted key"))? = Some((key, days));
        }
        Ok(shard)
    }
}

/// A subject's packed records must parse to the end, each of a known
/// indicator in an area of `geo`, one record per indicator.
fn check_firsts(firsts: Firsts<'_>, geo: &Geography) -> Result<(), SnapshotError> {
    let mut used = 0;
    let mut seen = [false; Indicator::COUNT];
    for (ind, ev, rec) in firsts.records() {
        if usize::from(ev.area.0) >= geo.areas().len() || ev.id.stored().len() > ID_LEN_MAX || !ev.id.is_valid() {
            return Err(SnapshotError::Corrupt("first-event record"));
        }
        if std::mem::replace(&mut seen[ind as usize], true) {
            return Err(SnapshotError::Corrupt("two first events of one indicator"));
        }
        used += rec.len();
    }
    if used != firsts.0.len() || used == 0 {
        return Err(SnapshotError::Corrupt("first-event record"));
    }
    Ok(())
}
