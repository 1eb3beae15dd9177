//! The coverage part of a shard snapshot (`crate::snapshot`): the dedup
//! keys, the packed first-event records as they are in memory, the
//! `sim.signature` lists, and the counts per key and day.
//!
//! Layout: distinct events applied; distinct subjects; the hash seeds of the dedup set, the
//! first-event map and the signature map (two `u64` each); the dedup keys (count, 16 bytes each);
//! the subjects with first events (count; digest, record bytes); the
//! subjects with `sim.signature` events (count; digest, event count; per
//! event `occurred_at`, id, day, area, installed); the counted keys (count;
//! slot, day count; per day the day, gained, lost).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::{Firsts, KeyHash, Shard, Sigs, ID_LEN_MAX};
use crate::fact::Indicator;
use crate::geo::{AreaId, Geography};
use crate::rollup::DayCounts;
use crate::snapshot::{Reader, SnapshotError, Writer};

impl Shard {
    pub(crate) fn write_snapshot(&self, w: &mut Writer) {
        w.len(self.events);
        w.len(self.subjects);
        for seed in [&self.seen.hasher().seed, &self.firsts.hasher().seed, &self.signatures.hasher().seed] {
            w.u64(seed[0]);
            w.u64(seed[1]);
        }
        w.len(self.seen.len());
        for key in &self.seen {
            w.u128(*key);
        }
        w.len(self.firsts.len());
        for (subject, firsts) in &self.firsts {
            w.digest(subject);
            w.bytes(&firsts.0);
        }
        w.len(self.signatures.len());
        for (subject, sigs) in &self.signatures {
            w.digest(subject);
            w.bytes(&sigs.0);
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
        shard.subjects = r.len()?;
        // The maps' hash seeds, so that each map is rebuilt with its entries
        // in the order of its slots: the inserts walk the table instead of
        // missing the cache at every entry (BENCHMARKS.md, "Snapshots").
        let mut seed = || -> Result<KeyHash, SnapshotError> { Ok(KeyHash { seed: [r.u64()?, r.u64()?] }) };
        let [seen_seed, firsts_seed, signatures_seed] = [seed()?, seed()?, seed()?];
        let n = r.count(16)?;
        shard.seen = HashSet::with_capacity_and_hasher(n, seen_seed);
        for _ in 0..n {
            shard.seen.insert(r.u128()?);
        }
        let n = r.count(17)?;
        shard.firsts = HashMap::with_capacity_and_hasher(n, firsts_seed);
        for _ in 0..n {
            let subject = r.digest()?;
            let firsts = Firsts(r.bytes()?.into());
            check_firsts(&firsts, &geo)?;
            if shard.firsts.insert(subject, firsts).is_some() {
                return Err(SnapshotError::Corrupt("a subject's first events twice"));
            }
        }
        let n = r.count(17)?;
        shard.signatures = HashMap::with_capacity_and_hasher(n, signatures_seed);
        for _ in 0..n {
            let subject = r.digest()?;
            let sigs = Sigs(r.bytes()?.into());
            if !sigs.check(geo.areas().len()) {
                return Err(SnapshotError::Corrupt("signature events"));
            }
            if shard.signatures.insert(subject, sigs).is_some() {
                return Err(SnapshotError::Corrupt("a subject's signature events twice"));
            }
        }
        let n = r.count(2)?;
        let areas = shard.counts.areas;
        for _ in 0..n {
            let slot = r.len()?;
            let ind = *Indicator::ALL.get(slot / areas.max(1)).ok_or(SnapshotError::Corrupt("counted key"))?;
            let key = (ind, AreaId((slot % areas) as u16));
            let mut days = BTreeMap::new();
            for _ in 0..r.count(20)? {
                days.insert(r.day()?, DayCounts { gained: r.u64()?, lost: r.u64()? });
            }
            *shard.counts.by_key.get_mut(slot).ok_or(SnapshotError::Corrupt("counted key"))? = Some((key, days));
        }
        Ok(shard)
    }
}

/// A subject's packed records must parse to the end, each of a known
/// indicator in an area of `geo`, one record per indicator.
fn check_firsts(firsts: &Firsts, geo: &Geography) -> Result<(), SnapshotError> {
    let mut used = 0;
    let mut seen = [false; Indicator::COUNT];
    for (ind, ev, rec) in firsts.records() {
        if usize::from(ev.area.0) >= geo.areas().len() || ev.id.len() > ID_LEN_MAX {
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
