//! A shard's counts per (indicator, area) and day, and which changed since
//! they were last written.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;

use super::{Days, RollupKey};
use crate::fact::Indicator;
use crate::geo::{AreaId, Geography};

/// The per-key day counts and the dirty set (split from the subjects so both
/// can be borrowed at once).
///
/// Keys are few (indicators × areas of one province), so they live in a
/// dense table: slot `indicator × areas + area`, which is also the order of
/// [`RollupKey`] (indicators in declaration order, then area ids).
pub(super) struct Counts {
    geo: Arc<Geography>,
    /// Areas in the geography.
    pub(super) areas: usize,
    /// Per slot, once anything was counted in it: the key and its day counts.
    pub(super) by_key: Vec<Option<(RollupKey, Days)>>,
    /// Per slot: the earliest day changed since the last [`Counts::take_dirty`].
    pub(super) dirty: Vec<Option<NaiveDate>>,
}

impl Counts {
    pub(super) fn new(geo: Arc<Geography>) -> Self {
        let areas = geo.areas().len();
        let slots = Indicator::ALL.len() * areas;
        Counts { geo, areas, by_key: (0..slots).map(|_| None).collect(), dirty: vec![None; slots] }
    }

    /// The slot of a key (`None` for an area outside the geography).
    pub(super) fn slot(&self, (ind, area): &RollupKey) -> Option<usize> {
        let a = usize::from(area.0);
        (a < self.areas).then(|| *ind as usize * self.areas + a)
    }

    /// Adds `gained`/`lost` deltas on `day` at `area` and every area it rolls
    /// up into.
    pub(super) fn add(&mut self, ind: Indicator, area: AreaId, day: NaiveDate, gained: i64, lost: i64) {
        for a in self.geo.chain(area) {
            let slot = ind as usize * self.areas + usize::from(a.0);
            let (_, days) = self.by_key[slot].get_or_insert_with(|| ((ind, a), Days::default()));
            let c = days.entry(day);
            c.gained = shift(c.gained, gained);
            c.lost = shift(c.lost, lost);
            // A day back at zero stays, at zero: its row must be written
            // again as zero, by this owner and by any later one, or the
            // row last written for it (a first event since displaced to
            // another day or area) would still count.
            let d = &mut self.dirty[slot];
            *d = Some(d.map_or(day, |d| d.min(day)));
        }
    }

    /// The dirty keys with their earliest changed day; clears them.
    pub(super) fn take_dirty(&mut self) -> BTreeMap<RollupKey, NaiveDate> {
        let areas = self.areas;
        self.dirty
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, d)| {
                let day = d.take()?;
                let ind = *Indicator::ALL.get(slot / areas)?;
                Some(((ind, AreaId((slot % areas) as u16)), day))
            })
            .collect()
    }
}

/// `v + delta`; a count never goes below zero when the deltas are consistent.
fn shift(v: u64, delta: i64) -> u64 {
    let r = v.checked_add_signed(delta);
    debug_assert!(r.is_some(), "count {v} shifted by {delta}");
    r.unwrap_or(0)
}
