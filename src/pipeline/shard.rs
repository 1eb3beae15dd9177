//! One shard: the state of one facts partition, its local store, and the
//! ClickHouse rows it owns.
//!
//! The store is a cache of the facts partition up to an offset (SCALING.md
//! 3): it is restored on assignment when it belongs to the same facts topic
//! incarnation, and rebuilt from the partition otherwise. Rows carry
//! `generation << 40 | sequence`, the generation claimed in ClickHouse when
//! the shard was assigned, so a previous owner's late writes lose.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aggregator::hotline::Tickets;
use aggregator::rollup::{DayCounts, Days, Outcome, RollupKey, Shard};
use aggregator::Plans;
use aggregator::{snapshot, AreaId, Fact, FactKind, Geography, Indicator, Nanos, PREFETCH_AHEAD};
use anyhow::{Context, Result};
use chrono::NaiveDate;
use ingest::kafka::shards::PartBatch;
use ingest::kafka::{PartitionState, SourcePartition};
use sinks::clickhouse::{CoverageRecentRow, CoverageShardRow, HotlineShardRow, WriteBatch, SEQUENCE_BITS};
use tracing::{info, warn};

use super::Parts;
use store::{Store, StoreError, SNAPSHOT_PIECE};

/// The state of one facts partition.
pub(super) struct ShardState {
    pub partition: u32,
    pub coverage: Shard,
    pub tickets: Tickets,
    store: Store,
    store_key: SourcePartition,
    /// The next facts offset this state reflects.
    pub next_offset: i64,
    /// The shard's clock: the newest `occurred_at` or clock record seen.
    pub newest: Option<Nanos>,
    pending_log: Vec<u8>,
    moved: bool,
    pub generation: u64,
    sequence: u64,
    /// The next flush writes every row of the shard.
    pub full_rewrite: bool,
    written_through: Option<NaiveDate>,
    /// The log beyond which a checkpoint writes a snapshot instead.
    snapshot_log_bytes: u64,
}

impl std::fmt::Debug for ShardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardState").field("partition", &self.partition).field("next", &self.next_offset).finish()
    }
}

/// Where shard `p`'s store lives.
pub(super) fn store_dir(state_dir: &Path, partition: u32) -> PathBuf {
    state_dir.join("shards").join(format!("p{partition}"))
}

/// Whether `error` (from [`ShardState::open`]) is the state directory
/// refusing (a full disk, an I/O error): the store is intact, retry.
pub(super) fn refused(error: &anyhow::Error) -> bool {
    error.downcast_ref::<StoreError>().is_some_and(StoreError::is_retryable)
}

/// Applies facts replayed from the store, prefetched as one group, and empties `group`.
fn replay_group(coverage: &mut Shard, tickets: &mut Tickets, group: &mut Vec<Fact>) {
    coverage.prefetch(group.iter());
    for fact in group.drain(..) {
        match fact.kind {
            FactKind::Hotline { .. } => tickets.apply(&fact),
            _ => coverage.apply(&fact),
        };
    }
}

impl ShardState {
    /// Opens (or rebuilds) the store of `partition`: loads its snapshot and
    /// replays the facts after it. A store of another identity (facts topic
    /// incarnation, key, geography) or format, with a snapshot that does not
    /// load, or past the partition's end is discarded: the partition rebuilds
    /// it. A store the file system refuses to open (a full disk:
    /// [`StoreError::is_retryable`]) is kept and the error returned, for the
    /// caller to retry ([`restore`](super::restore), [`refused`]).
    pub fn open(p: &Parts, partition: u32, high: i64) -> Result<ShardState> {
        let dir = store_dir(&p.state_dir, partition);
        let key = SourcePartition { topic: p.facts_topic.as_str().into(), partition: partition as i32 };
        // An empty store in place of an unusable one: the partition rebuilds it.
        let rebuild = || Store::recreate(&dir, &p.identity);
        let unusable = |error: anyhow::Error| {
            warn!(partition, error = %format!("{error:#}"), "shard store not usable; rebuilding from the facts partition");
        };
        let (mut store, mut loaded) = match Store::open(&dir, &p.identity) {
            Ok(opened) => opened,
            // The disk refusing (full): the store is intact, the caller retries.
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                unusable(error.into());
                rebuild()?
            }
        };
        let reflected = loaded.positions.get(&key).map_or(0, |s| s.next_offset);
        if high == 0 && reflected > 0 {
            warn!(partition, reflected, "shard store is ahead of an empty facts partition; rebuilding");
            drop(store);
            (store, loaded) = rebuild()?;
        }
        let started = std::time::Instant::now();
        // The snapshot, if any; one that does not read or load makes the store unusable.
        let decoded = match store.snapshot() {
            Err(error) if error.is_retryable() => return Err(error.into()),
            read => read.map_err(anyhow::Error::from).and_then(|bytes| {
                bytes
                    .map(|b| snapshot::decode(&b, Arc::clone(&p.geo), Arc::clone(&p.calendar)))
                    .transpose()
                    .with_context(|| format!("loading the snapshot of {}", dir.display()))
            }),
        };
        let restored = match decoded {
            Ok(state) => state,
            Err(error) => {
                unusable(error);
                drop(store);
                (store, loaded) = rebuild()?;
                None
            }
        };
        let loaded_snapshot = store.snapshot_bytes();
        let (coverage, tickets) = restored.unwrap_or_else(|| {
            (Shard::new(Arc::clone(&p.geo)), Tickets::new(Arc::clone(&p.geo), Arc::clone(&p.calendar)))
        });
        let state = loaded.positions.get(&key).copied().unwrap_or_default();
        let mut shard = ShardState {
            partition,
            coverage,
            tickets,
            store,
            store_key: key,
            next_offset: state.next_offset,
            newest: state.watermark,
            pending_log: Vec::new(),
            moved: false,
            generation: 0,
            sequence: loaded.version & ((1 << SEQUENCE_BITS) - 1),
            full_rewrite: true,
            written_through: None,
            snapshot_log_bytes: p.snapshot_log_bytes,
        };
        let mut replayed = 0u64;
        let ShardState { store, coverage, tickets, .. } = &mut shard;
        // In groups, prefetched, as a batch is applied (`absorb`).
        let mut group: Vec<Fact> = Vec::with_capacity(PREFETCH_AHEAD);
        store.replay(|fact| {
            replayed += 1;
            group.push(fact);
            if group.len() == PREFETCH_AHEAD {
                replay_group(coverage, tickets, &mut group);
            }
        })?;
        replay_group(coverage, tickets, &mut group);
        info!(
            partition,
            snapshot_bytes = loaded_snapshot,
            facts = replayed,
            subjects = shard.coverage.subjects(),
            next_offset = shard.next_offset,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shard restored"
        );
        Ok(shard)
    }

    /// Applies one batch of the partition; returns the duplicates seen.
    pub fn absorb(&mut self, part: PartBatch) -> u64 {
        let mut duplicates = 0;
        for group in part.facts.chunks(PREFETCH_AHEAD) {
            self.coverage.prefetch(group.iter());
            for fact in group {
                self.observe(fact.occurred_at);
                let outcome = match fact.kind {
                    FactKind::Hotline { .. } => self.tickets.apply(fact),
                    _ => self.coverage.apply(fact),
                };
                match outcome {
                    Outcome::Applied => fact.encode(&mut self.pending_log),
                    Outcome::Duplicate => duplicates += 1,
                }
            }
        }
        if let Some(t) = part.clock {
            self.observe(t);
        }
        if part.next_offset > self.next_offset {
            self.next_offset = part.next_offset;
            self.moved = true;
        }
        duplicates
    }

    fn observe(&mut self, t: Nanos) {
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
    }

    /// The version of the rows last written.
    fn version(&self) -> u64 {
        (self.generation << SEQUENCE_BITS) | (self.sequence & ((1 << SEQUENCE_BITS) - 1))
    }

    /// Takes the next row version.
    pub fn next_version(&mut self) -> u64 {
        self.sequence += 1;
        self.version()
    }

    /// Appends the rows that changed (all rows on a full rewrite) through
    /// `through` to `out`; returns how many.
    pub fn rows(
        &mut self,
        through: Option<NaiveDate>,
        plans: &Plans,
        geo: &Geography,
        version: u64,
        out: &mut WriteBatch,
    ) -> usize {
        let before = out.coverage.len() + out.recent.len() + out.hotline.len();
        let full = self.full_rewrite || self.written_through.is_none();
        let rollover_from = match (self.written_through, through) {
            (Some(w), Some(th)) if th > w => w.succ_opt(),
            _ => None,
        };
        let s = self.partition;
        if let Some(through) = through.filter(|th| *th >= plans.start()) {
            let dirty = self.coverage.take_dirty();
            let mut from: BTreeMap<RollupKey, NaiveDate> = BTreeMap::new();
            // A full rewrite and a new day write every area and indicator, counts
            // or not: the rows are dense from the start through `through`, so
            // a later owner's rows supersede every row an earlier owner (a
            // zombie whose clock ran ahead included) wrote under FINAL.
            let every = |from: &mut BTreeMap<RollupKey, NaiveDate>, day: NaiveDate| {
                for i in Indicator::ALL {
                    for a in 0..geo.areas().len() {
                        from.insert((*i, AreaId(a as u16)), day);
                    }
                }
            };
            if full {
                // From the first day with counts, before the start included.
                every(&mut from, NaiveDate::MIN);
            } else {
                if let Some(r) = rollover_from {
                    every(&mut from, r);
                }
                for (k, d) in dirty {
                    let e = from.entry(k).or_insert(d);
                    *e = (*e).min(d);
                }
            }
            let empty = Days::default();
            for (key, first) in from {
                let days = self.coverage.days(&key).unwrap_or(&empty);
                let area = geo.area(key.1);
                // Days before the campaign start are written too (only those with counts):
                // the view's `covered` adds them from the first day on (OUTPUTS-v1), and the
                // read-back figures see the same rows. From the start on, every day is written,
                // through the end of the area's province's plan.
                let plan = plans.of(key.1);
                let before = days.range(..plan.start()).map(|(d, c)| (*d, *c));
                let campaign = plan
                    .start()
                    .iter_days()
                    .take_while(|d| *d <= through.min(plan.end()))
                    .map(|d| (d, days.get(&d).copied().unwrap_or(DayCounts { gained: 0, lost: 0 })));
                // The key's row of `coverage_shard_recent` (what the figures read) from the same days.
                let mut recent = CoverageRecentRow::new(key.0, area.level, area.code.clone(), s, through, version);
                let mut net: i64 = 0;
                for (day, c) in before.chain(campaign) {
                    net += c.gained as i64 - c.lost as i64;
                    recent.add(day, c.gained, c.lost);
                    if day >= first {
                        out.coverage.push(CoverageShardRow {
                            day,
                            indicator: key.0,
                            area_level: area.level,
                            area: area.code.clone(),
                            shard: s,
                            gained: c.gained,
                            lost: c.lost,
                            net,
                            version,
                        });
                    }
                }
                out.recent.push(recent);
            }
            self.written_through = Some(through);
        }
        let dirty = self.tickets.take_dirty();
        let counts = self.tickets.counts();
        let keys: Vec<(AreaId, NaiveDate)> =
            if self.full_rewrite { counts.keys().copied().collect() } else { dirty.into_iter().collect() };
        for (a, day) in keys {
            let c = counts.get(&(a, day)).copied().unwrap_or_default();
            let area = geo.area(a);
            out.hotline.push(HotlineShardRow {
                day,
                area_level: area.level,
                area: area.code.clone(),
                shard: s,
                counts: c,
                version,
            });
        }
        self.full_rewrite = false;
        out.coverage.len() + out.recent.len() + out.hotline.len() - before
    }

    /// Commits the applied facts, the offset they reach and the version of
    /// the rows last written to the store (fsync). Once the log since the
    /// last snapshot outgrows both `snapshot_log_bytes` and that snapshot,
    /// the whole state is written as a snapshot instead and the log dropped.
    /// On an error (disk full) the facts stay pending: the next call retries
    /// them.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.pending_log.is_empty() && !self.moved {
            return Ok(());
        }
        let positions = HashMap::from([(
            self.store_key.clone(),
            PartitionState { next_offset: self.next_offset, watermark: self.newest },
        )]);
        let log = self.store.log_bytes() + self.pending_log.len() as u64;
        if log > self.snapshot_log_bytes.max(self.store.snapshot_bytes()) {
            let started = std::time::Instant::now();
            let (coverage, tickets, version) = (&self.coverage, &self.tickets, self.version());
            self.store.compact(|out| snapshot::write(coverage, tickets, SNAPSHOT_PIECE, out), &positions, version)?;
            info!(
                partition = self.partition,
                snapshot_bytes = self.store.snapshot_bytes(),
                log_bytes_dropped = log,
                subjects = self.coverage.subjects(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "shard snapshot written"
            );
        } else {
            self.store.checkpoint(&self.pending_log, &positions, self.version())?;
        }
        self.pending_log.clear();
        self.moved = false;
        Ok(())
    }
}
