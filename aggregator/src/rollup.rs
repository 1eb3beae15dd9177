//! One shard's exact coverage state: deduplication, first-qualifying events,
//! `sim_signature` entries and exits, per-(indicator, area, day) counts and
//! dirty tracking (EVENTS-v1 "The indicators" and "Precise rules").
//!
//! The counts depend only on the *set* of events applied, never on their
//! arrival order: a late event that changes a subject's history is folded in
//! by recomputing that subject's contribution and applying the difference.
//! [`crate::recount::recount`] is an independent, naive oracle for the same
//! figures; the property tests below check that the two agree.
//!
//! Memory per subject is kept small because a nation holds hundreds of
//! millions of them: a subject has one record (`subjects.rs`) in an arena
//! (`arena.rs`): its first-qualifying events ([`Firsts`], `firsts.rs`, 8 bytes + the
//! event id per indicator for a time of whole seconds, `at.rs`), its
//! `sim.signature` events (`sigs.rs`) and the keys of its other events,
//! with ids packed where they can be (`id.rs`).
//!
//! Deduplication remembers every applied event (subject, type, id), but
//! only once: an event that is a subject's first-qualifying event, or a
//! `sim.signature` event, is already in those records with its full id, so
//! a retry of it is recognised there; only the other events (later or
//! non-qualifying ones, first events since displaced by an earlier one) keep
//! a 64-bit key ([`subject_key`]) in their subject's record. What counts as
//! a duplicate is unchanged.
//!
//! Speed: the subjects' index and the overflow set are hashed with
//! [`KeyHash`] (`hash.rs`), a seeded two-multiply hash of their 16-byte
//! keys (already uniformly random), not SipHash; the counts (`counts.rs`)
//! are kept in a dense table indexed by (indicator, area) rather than a
//! tree (see `BENCHMARKS.md`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;

use crate::fact::{event_key, Fact, FactKind, Indicator, SignatureStage};
use crate::geo::{AreaId, Geography};

mod arena;
mod at;
mod counts;
mod days;
mod firsts;
mod hash;
mod id;
mod index;
mod leb128;
mod sigs;
mod snapshot;
mod subjects;

use counts::Counts;
pub use days::Days;
use firsts::{set_first, Day, FirstEvent, Firsts, ID_LEN_MAX};
use hash::KeyHash;
use id::{Id, IdBuf};
use sigs::{SigEvent, Sigs};
use subjects::{Body, Subjects};

/// What [`Shard::apply`] did with a fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event id was new: the fact is part of the state now (it may
    /// still change no count, e.g. a `cccd.application` at stage `issued`).
    Applied,
    /// The event id was already applied: nothing changed (the copy applied
    /// first stands).
    Duplicate,
}

/// The counts of one (indicator, area, day).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// Subjects that entered coverage on this day.
    pub gained: u64,
    /// Subjects that left coverage on this day (`sim_signature` revoked).
    pub lost: u64,
}

impl DayCounts {
    /// Both counts are zero.
    pub fn is_zero(&self) -> bool {
        self.gained == 0 && self.lost == 0
    }
}

/// What a rollup is kept per: an indicator in one area (any level).
pub type RollupKey = (Indicator, AreaId);

/// One shard's coverage state. Owns the subjects whose
/// [`crate::fact::Digest::shard`] routes to it; every figure is a sum over shards.
pub struct Shard {
    /// Per subject, one record: its first-qualifying event per indicator,
    /// its `sim.signature` events sorted by (`occurred_at`, `event_id`),
    /// and the keys of its other applied events (`subjects.rs`).
    subjects: Subjects,
    /// Subjects holding state (a first or a signature event).
    holding: usize,
    /// Distinct events applied (the records' keys count only some of them).
    events: usize,
    /// Dedup keys held, in the records and in `overflow`.
    keys: usize,
    /// The dedup keys ([`Fact::event_key`]) of subjects past their
    /// record's [`INLINE_KEYS`]: a subject with very many events (a
    /// producer gone wrong) would otherwise rewrite and scan a record
    /// growing with each of them.
    overflow: HashSet<u128, KeyHash>,
    /// The counts and what changed since the last [`Shard::take_dirty`].
    counts: Counts,
    /// Reused buffers for a subject's new record.
    scratch: Scratch,
}

/// Buffers [`Shard::apply`] builds a subject's new record in.
#[derive(Default)]
struct Scratch {
    firsts: Vec<u8>,
    sigs: Vec<u8>,
    body: Vec<u8>,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("events", &self.events)
            .field("dedup_keys", &self.keys)
            .field("subjects", &self.holding)
            .field("keys", &self.counts.by_key.iter().flatten().count())
            .field("dirty", &self.counts.dirty.iter().flatten().count())
            .finish()
    }
}

impl Shard {
    /// An empty shard counting through `geo`.
    pub fn new(geo: Arc<Geography>) -> Self {
        Shard {
            subjects: Subjects::with_capacity_and_hasher(0, KeyHash::new()),
            holding: 0,
            events: 0,
            keys: 0,
            overflow: HashSet::with_hasher(KeyHash::new()),
            counts: Counts::new(geo),
            scratch: Scratch::default(),
        }
    }

    /// Applies one fact.
    ///
    /// A fact whose event id was applied before changes nothing and returns
    /// [`Outcome::Duplicate`]. `hotline.ticket` facts belong to the hotline
    /// state, not here: passing one is a caller bug (a debug assertion
    /// fires); release builds ignore it, record nothing and return
    /// [`Outcome::Applied`].
    pub fn apply(&mut self, fact: &Fact) -> Outcome {
        if let FactKind::Hotline { .. } = fact.kind {
            debug_assert!(false, "hotline facts are not coverage facts");
            return Outcome::Applied;
        }
        let outcome = match fact.kind {
            FactKind::SimSignature { stage } => self.apply_signature(fact, stage == SignatureStage::Installed),
            _ => self.apply_firsts(fact),
        };
        if outcome == Outcome::Applied {
            self.events += 1;
        }
        outcome
    }

    /// Reads what [`apply`](Self::apply) of each of `facts` reads first
    /// (the subject's bucket in the index, then its record) and changes
    /// nothing, in two rounds: every bucket, then every record, each load
    /// left for no later instruction to wait for, so that the misses of a
    /// round overlap. Called for the next [`PREFETCH_AHEAD`] facts before
    /// applying them (BENCHMARKS.md, "Core: validate → apply"). Facts of
    /// other shards may be among them: they only cost a look.
    pub fn prefetch<'a>(&self, facts: impl Iterator<Item = &'a Fact> + Clone) {
        let coverage = |f: &&Fact| !matches!(f.kind, FactKind::Hotline { .. });
        for f in facts.clone().filter(coverage) {
            std::hint::black_box(self.subjects.touch_index(&f.subject));
        }
        for f in facts.filter(coverage) {
            std::hint::black_box(self.subjects.touch_record(&f.subject));
        }
    }

    /// Per-day counts of one key: every day ever counted in, those whose
    /// counts came back to zero at zero. `None` for a key this shard never
    /// counted anything in.
    pub fn days(&self, key: &RollupKey) -> Option<&Days> {
        let slot = self.counts.slot(key)?;
        self.counts.by_key.get(slot)?.as_ref().map(|(_, days)| days)
    }

    /// Every key this shard ever counted in (its day map may have become
    /// empty since, if a late event moved the only subject away), in order.
    pub fn keys(&self) -> impl Iterator<Item = &RollupKey> {
        self.counts.by_key.iter().flatten().map(|(key, _)| key)
    }

    /// The keys whose counts changed since the last call, each with the
    /// earliest day that changed, and clears that set. A key may be listed
    /// although its counts came back to what they were (e.g. +1 then −1).
    pub fn take_dirty(&mut self) -> BTreeMap<RollupKey, NaiveDate> {
        self.counts.take_dirty()
    }

    /// Distinct subjects holding state (with at least one qualifying or
    /// signature event).
    pub fn subjects(&self) -> usize {
        self.holding
    }

    /// Distinct event ids applied.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Subjects with a record: those holding state and those with only
    /// dedup keys (non-qualifying events so far); a measure of memory.
    pub fn records(&self) -> usize {
        self.subjects.len()
    }

    /// Bytes of the subjects' arena in free slots, left by records that
    /// moved and not yet taken by another record of their size (a measure
    /// of memory).
    pub fn free_bytes(&self) -> usize {
        self.subjects.free_bytes()
    }

    /// Dedup keys held: the applied events no first-event record or
    /// signature list holds (a measure of memory; at most [`Shard::events`]).
    pub fn dedup_keys(&self) -> usize {
        self.keys
    }

    /// A fact of a type with first-qualifying events (`cccd.application`,
    /// `vneid.account`, `sim.swap`), qualifying or not.
    ///
    /// A duplicate is recognised by its id in the subject's first-event
    /// records of the type's indicators (the event is, or was, first
    /// there) or else by its key among the subject's dedup keys (in its
    /// record, or past [`INLINE_KEYS`] in the overflow set). An event
    /// applied here ends up in exactly one place: a record, if it became a
    /// first-qualifying event, otherwise the keys; a first event displaced
    /// by an earlier one moves to the keys once no record of its type holds
    /// it any more. A first event never comes back (firsts only move
    /// earlier), so no key is ever dropped.
    fn apply_firsts(&mut self, fact: &Fact) -> Outcome {
        let new_id = IdBuf::new(fact.event_id.as_bytes());
        let id = new_id.id();
        let typ = fact.kind.type_indicators();
        let key = fact.event_key();
        let (place, old) = self.subjects.get(&fact.subject);
        let old = old.unwrap_or_default();
        let held_in =
            |firsts: &[u8], id: Id<'_>| typ.iter().any(|&i| Firsts(firsts).get(i).is_some_and(|e| holds(&e, id)));
        // A subject's keys past the record's first [`INLINE_KEYS`] are in
        // the shard's overflow set, with the subject in the key.
        let overflowed = old.key_count() >= INLINE_KEYS;
        if held_in(old.firsts, id) || old.has_key(subject_key(key)) || (overflowed && self.overflow.contains(&key)) {
            return Outcome::Duplicate;
        }
        let firsts = &mut self.scratch.firsts;
        firsts.clear();
        firsts.extend_from_slice(old.firsts);
        let mut displaced: Vec<Box<[u8]>> = Vec::new();
        for &ind in fact.kind.first_event_indicators() {
            if let Some(old) = apply_first(&mut self.counts, firsts, fact, id, ind) {
                displaced.push(old);
            }
        }
        // At most the new event and one displaced event per indicator.
        let mut gone = [0u128; 3];
        let mut n = 0;
        for old in &displaced {
            // A truncated id was never held: its key went to the keys then.
            // One event displaced from two indicators at once keeps one key.
            let k = event_key(&fact.subject, fact.kind.type_tag(), old);
            if old.len() < ID_LEN_MAX
                && !held_in(firsts, IdBuf::new(old).id())
                && !gone[..n].contains(&k)
                && n < gone.len()
            {
                gone[n] = k;
                n += 1;
            }
        }
        if !held_in(firsts, id) && n < gone.len() {
            gone[n] = key;
            n += 1;
        }
        let new = Body { firsts, sigs: old.sigs, keys: old.keys };
        if new.holds_state() && !old.holds_state() {
            self.holding += 1;
        }
        self.keys += n;
        let inline = n.min(INLINE_KEYS.saturating_sub(old.key_count()));
        let (inline, over) = gone[..n].split_at(inline);
        self.overflow.extend(over);
        let mut keys = [0u64; 3];
        for (k, g) in keys.iter_mut().zip(inline) {
            *k = subject_key(*g);
        }
        self.scratch.body.clear();
        new.encode(&keys[..inline.len()], &mut self.scratch.body);
        self.subjects.put(place, &fact.subject, &self.scratch.body);
        Outcome::Applied
    }

    /// A `sim.signature` fact; a duplicate is recognised by its id in the
    /// subject's list (every signature event applied stays there).
    fn apply_signature(&mut self, fact: &Fact, installed: bool) -> Outcome {
        let new_id = IdBuf::new(fact.event_id.as_bytes());
        let id = new_id.id();
        let (place, old) = self.subjects.get(&fact.subject);
        let old = old.unwrap_or_default();
        let sigs = Sigs(old.sigs);
        if sigs.holds(id) {
            return Outcome::Duplicate;
        }
        let new = SigEvent { at: fact.occurred_at, id, day: Day::of(fact.day), area: fact.area, installed };
        // Transitions before the new event's place cannot change; recompute from there.
        let (before, after) = {
            let mut events = sigs.events();
            let pos = events.partition_point(|e| e.key() < new.key());
            let before = signature_transitions(&events, pos);
            events.insert(pos, new);
            (before, signature_transitions(&events, pos))
        };
        self.scratch.sigs.clear();
        sigs.insert(&new, &mut self.scratch.sigs);
        if !old.holds_state() {
            self.holding += 1;
        }
        self.scratch.body.clear();
        Body { firsts: old.firsts, sigs: &self.scratch.sigs, keys: old.keys }.encode(&[], &mut self.scratch.body);
        self.subjects.put(place, &fact.subject, &self.scratch.body);
        let mut delta: BTreeMap<(AreaId, Day), (i64, i64)> = BTreeMap::new();
        for (t, sign) in before.iter().map(|t| (t, -1)).chain(after.iter().map(|t| (t, 1))) {
            let d = delta.entry((t.area, t.day)).or_default();
            if t.gain {
                d.0 += sign;
            } else {
                d.1 += sign;
            }
        }
        for ((area, day), (g, l)) in delta {
            if g != 0 || l != 0 {
                self.counts.add(Indicator::SimSignature, area, day.date(), g, l);
            }
        }
        Outcome::Applied
    }
}

/// Makes `fact` the first event of `ind` in a subject's records `firsts` if
/// it is earlier than the current one, and counts the move; returns the id
/// of the event it displaced, if any.
fn apply_first(
    counts: &mut Counts,
    firsts: &mut Vec<u8>,
    fact: &Fact,
    id: Id<'_>,
    ind: Indicator,
) -> Option<Box<[u8]>> {
    let new = FirstEvent { at: fact.occurred_at, id, day: Day::of(fact.day), area: fact.area };
    match Firsts(firsts).get(ind) {
        Some(old) if (old.at, old.id) <= (new.at, new.id) => None,
        Some(old) => {
            let (old_day, old_area, old_id) = (old.day, old.area, old.id.to_raw().into_boxed_slice());
            set_first(firsts, ind, &new);
            counts.add(ind, old_area, old_day.date(), -1, 0);
            counts.add(ind, new.area, fact.day, 1, 0);
            Some(old_id)
        }
        None => {
            set_first(firsts, ind, &new);
            counts.add(ind, new.area, fact.day, 1, 0);
            None
        }
    }
}

/// Dedup keys a subject's record holds before the next ones go to the
/// shard's overflow set (the realistic stream has 0.83 per subject;
/// BENCHMARKS.md, "One record per subject").
const INLINE_KEYS: usize = 8;

/// Facts [`Shard::prefetch`]ed at a time before they are applied: at
/// national size applying in groups of 16 was 5–10 % faster than one by
/// one, and 8, 32 or 64 no better (BENCHMARKS.md, "Core: validate → apply").
pub const PREFETCH_AHEAD: usize = 16;

/// A dedup key as a subject's record keeps it: the low 64 bits of the
/// event key. It only has to tell apart the events of one subject and
/// type (a subject's record holds only its own keys): two of them share
/// it with odds of about 2⁻⁶⁴ per pair.
fn subject_key(event_key: u128) -> u64 {
    event_key as u64
}

/// Whether a first-event record is the event with id `id`. A record keeps
/// at most [`ID_LEN_MAX`] − 1 bytes of an id as the event's identity: a
/// longer id is cut to [`ID_LEN_MAX`] bytes for the order only, and its
/// event's key went to the dedup set.
fn holds(record: &FirstEvent<'_>, id: Id<'_>) -> bool {
    !matches!(record.id, Id::Raw(b) if b.len() >= ID_LEN_MAX) && record.id == id
}

/// An entry into (`gain`) or exit from coverage.
#[derive(Debug, PartialEq, Eq)]
struct Transition {
    day: Day,
    area: AreaId,
    gain: bool,
}

/// The entries and exits caused by the events from index `from` on, walking
/// the sorted events; the state before `from` is replayed but not reported.
fn signature_transitions(events: &[SigEvent<'_>], from: usize) -> Vec<Transition> {
    let mut entry: Option<AreaId> = None;
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let t = match (entry, e.installed) {
            (None, true) => {
                entry = Some(e.area);
                Transition { day: e.day, area: e.area, gain: true }
            }
            (Some(area), false) => {
                entry = None;
                Transition { day: e.day, area, gain: false }
            }
            _ => continue,
        };
        if i >= from {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests;
