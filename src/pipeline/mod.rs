//! Stage 2, the shards: applies the facts partitions this instance owns and,
//! at every flush, makes everything durable in the order the invariants
//! require (ARCHITECTURE.md): ClickHouse rows acked → ownership checked →
//! each shard's store checkpointed → offsets committed to the group (for
//! monitoring) → figures read back and published.
//!
//! Ownership arrives as events from the facts consumer ([`ShardEvent`]): on
//! assignment a shard is restored from its store (or rebuilt) and claims the
//! next generation in ClickHouse; on revocation it is flushed in full,
//! checkpointed and dropped. Shards are applied on a pool of worker threads.

mod checkpoint;
mod fence;
mod figures;
mod flush;
mod outage;
mod readback;
mod restore;
mod shard;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aggregator::calendar::WorkCalendar;
use aggregator::Plans;
use aggregator::{Geography, LagRule, Nanos};
use anyhow::{Context, Result};
use backon::Retryable;
use chrono::NaiveDate;
use ingest::kafka::shards::{DeadLetterRecord, ShardBatch, ShardCommitter, ShardEvent};
use rayon::prelude::*;
use sinks::board::Board;
use sinks::clickhouse::ClickHouseSink;
use sinks::prometheus::{Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::figures::View;
use self::flush::flush_due;
use self::shard::ShardState;
use crate::config::ClockMode;
use store::Identity;

/// Test-only fault points of stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineFault {
    /// After a flush's rows are acknowledged by ClickHouse, before any store is checkpointed.
    AfterClickhouse,
}

/// Everything the pipeline needs, built by `d06 run` (`run.rs`) or `d06 demo`.
pub struct Parts {
    /// The geography facts were resolved through.
    pub geo: Arc<Geography>,
    /// Each tracked province's campaign plan.
    pub plans: Arc<Plans>,
    /// Working-time calendar for hotline deadlines.
    pub calendar: Arc<WorkCalendar>,
    /// Local days.
    pub tz: chrono_tz::Tz,
    /// Which clock is "now".
    pub clock: ClockMode,
    /// Flush cadence.
    pub flush_interval: Duration,
    /// Flush cadence while far behind (the source topics or the facts
    /// waiting for stage 2); at least `flush_interval`.
    pub flush_while_behind: Duration,
    /// The largest share of the time the figures' read-back may take
    /// (`PipelineConfig::figures_share_percent`).
    pub figures_share_percent: u32,
    /// Also export commune gauges.
    pub commune_metrics: bool,
    /// Where the shards' stores live.
    pub state_dir: PathBuf,
    /// A shard's log beyond which a checkpoint writes a snapshot instead.
    pub snapshot_log_bytes: u64,
    /// What every shard store must have been written under.
    pub identity: Identity,
    /// The facts topic (names the stores' positions).
    pub facts_topic: String,
    /// This instance, as recorded with its shard claims.
    pub owner: String,
    /// Worker threads applying shards.
    pub workers: usize,
    /// ClickHouse (none in the self-contained demo).
    pub sink: Option<ClickHouseSink>,
    /// Commits positions to the group (none without Kafka).
    pub committer: Option<ShardCommitter>,
    /// The built-in board, when served.
    pub board: Option<Arc<Board>>,
    /// When an area lags the plan (board colours).
    pub lag_rule: LagRule,
    /// Campaign name shown on the board of a province whose plan has none.
    pub campaign: String,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Set while this instance owns facts partition 0 (the daily alerts' sender).
    pub owns_first: Arc<AtomicBool>,
    /// Test only: a fault point.
    pub fault: Option<PipelineFault>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("owner", &self.owner).field("clock", &self.clock).finish()
    }
}

/// The running pipeline.
pub struct Pipeline {
    p: Parts,
    view: View,
    pool: rayon::ThreadPool,
    shards: BTreeMap<u32, ShardState>,
    pending_dead: Vec<DeadLetterRecord>,
    dead_positions: BTreeMap<i32, i64>,
    /// Shards being revoked: their last flush is never followed by a new claim.
    releasing: BTreeSet<u32>,
    /// Plan rows are in ClickHouse through this day.
    plan_through: Option<NaiveDate>,
    flushed_once: bool,
    /// `ClickHouseSink::failovers` as of the last flush.
    failovers_seen: u64,
    /// The newest event time of every shard this instance has owned (the
    /// event clock survives losing a shard).
    newest_seen: Option<Nanos>,
    /// When the shards' claims were last checked (fence.rs).
    claims_checked: std::time::Instant,
    /// When the last timed flush ran.
    flushed_at: Option<std::time::Instant>,
    /// When the last read-back of the figures started, and how long it
    /// took (whether it succeeded or not).
    figures_read: Option<(std::time::Instant, Duration)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("parts", &self.p).field("shards", &self.shards.len()).finish()
    }
}

fn now_nanos() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as Nanos).unwrap_or(0)
}

impl Pipeline {
    /// A pipeline that owns no shard yet.
    pub fn new(p: Parts) -> Result<Pipeline> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.workers.max(1))
            .thread_name(|i| format!("d06-shard-{i}"))
            .build()
            .context("starting the shard worker pool")?;
        let view = View {
            geo: Arc::clone(&p.geo),
            plans: Arc::clone(&p.plans),
            tz: p.tz,
            commune_metrics: p.commune_metrics,
            board: p.board.clone(),
            lag_rule: p.lag_rule,
            campaign: p.campaign.clone(),
            clock: p.clock,
        };
        view.publish_areas(&p.metrics);
        Ok(Pipeline {
            p,
            view,
            pool,
            shards: BTreeMap::new(),
            pending_dead: Vec::new(),
            dead_positions: BTreeMap::new(),
            releasing: BTreeSet::new(),
            plan_through: None,
            flushed_once: false,
            failovers_seen: 0,
            newest_seen: None,
            claims_checked: std::time::Instant::now(),
            flushed_at: None,
            figures_read: None,
        })
    }

    /// Consumes events until the source ends (or shutdown and a grace
    /// period), flushing on a timer; the last flush writes the final state.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ShardEvent>, shutdown: CancellationToken) -> Result<()> {
        let mut tick = tokio::time::interval(self.p.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => self.handle(e, &shutdown).await?,
                    None => break,
                },
                _ = tick.tick() => {
                    // While replaying far behind, flush less often: the figures are
                    // not current anyway (`/readyz` says so), and each flush costs
                    // the same whatever it carries (rows through the new days,
                    // the read-back, the checkpoint): BENCHMARKS.md, "National replay".
                    let since = self.flushed_at.map(|t| t.elapsed());
                    if flush_due(self.p.health.is_behind(), since, self.p.flush_while_behind) {
                        self.flushed_at = Some(std::time::Instant::now());
                        self.flush(&shutdown).await?;
                    }
                }
                _ = shutdown.cancelled(), if grace.is_none() => {
                    grace = Some(Box::pin(tokio::time::sleep(Duration::from_secs(15))));
                }
                _ = async { if let Some(g) = grace.as_mut() { g.await } }, if grace.is_some() => {
                    warn!("the facts consumer did not finish within 15 s of shutdown; stopping anyway");
                    break;
                }
            }
        }
        self.flush(&shutdown).await?;
        info!("pipeline drained and stopped");
        Ok(())
    }

    async fn handle(&mut self, event: ShardEvent, shutdown: &CancellationToken) -> Result<()> {
        match event {
            ShardEvent::Batch(b) => self.absorb(b),
            ShardEvent::Assign { partitions, reply } => {
                let mut starts = Vec::new();
                let mut wanted = Vec::new();
                for (p, high) in partitions {
                    match self.shards.get(&(p as u32)) {
                        Some(s) => starts.push((p, s.next_offset)),
                        None => wanted.push((p as u32, high)),
                    }
                }
                for (p, mut shard) in self.open_shards(&wanted, shutdown).await? {
                    if let Some(sink) = &self.p.sink {
                        shard.generation = claim(sink, p, &self.p.owner, shutdown).await?;
                        info!(partition = p, generation = shard.generation, "shard claimed");
                    }
                    starts.push((p as i32, shard.next_offset));
                    self.shards.insert(p, shard);
                }
                self.ownership_changed();
                // The consumer waits half of max.poll.interval.ms for the
                // answer (a long claim or a full disk can take longer), then
                // takes none of these partitions until the next rebalance.
                if reply.send(starts).is_err() {
                    warn!(
                        shards = self.shards.len(),
                        "the facts consumer stopped waiting for the assigned shards to open; \
                         they are consumed from the next rebalance"
                    );
                }
            }
            ShardEvent::Revoke { partitions, lost, done } => {
                for p in &partitions {
                    if let Some(s) = self.shards.get_mut(&(*p as u32)) {
                        // Leave the complete last state, under this owner's generation.
                        s.full_rewrite = true;
                    }
                }
                self.releasing = partitions.iter().map(|p| *p as u32).collect();
                let flushed = self.flush(shutdown).await;
                for p in std::mem::take(&mut self.releasing) {
                    self.shards.remove(&p);
                }
                info!(?partitions, lost, "shards released");
                self.ownership_changed();
                let _ = done.send(());
                flushed?;
            }
        }
        Ok(())
    }

    fn ownership_changed(&self) {
        self.p.metrics.shards_owned.set(self.shards.len() as i64);
        self.p.owns_first.store(self.shards.contains_key(&0), Ordering::Relaxed);
    }

    fn absorb(&mut self, mut batch: ShardBatch) {
        let work: Vec<(&mut ShardState, _)> =
            self.shards.iter_mut().filter_map(|(p, s)| batch.parts.remove(&(*p as i32)).map(|b| (s, b))).collect();
        let facts: usize = work.iter().map(|(_, b)| b.facts.len()).sum();
        self.p.metrics.facts_applied.inc_by(facts as u64);
        let duplicates: u64 = self.pool.install(|| work.into_par_iter().map(|(s, b)| s.absorb(b)).sum());
        self.p.metrics.duplicates.inc_by(duplicates);
        for (p, b) in &batch.parts {
            debug!(partition = p, facts = b.facts.len(), "facts of a shard not owned; ignored");
        }
        self.pending_dead.append(&mut batch.dead_letters);
        self.dead_positions.append(&mut batch.dead_positions);
    }

    /// Takes every shard of `0..shards` (the demo: no Kafka, no ClickHouse).
    pub fn own_all(&mut self, shards: u32) -> Result<()> {
        for p in 0..shards {
            let s = ShardState::open(&self.p, p, i64::MAX)?;
            self.shards.insert(p, s);
        }
        self.ownership_changed();
        Ok(())
    }

    /// The clock T of one shard (wall, or its newest event).
    fn shard_now(&self, s: &ShardState, wall: Nanos) -> Option<Nanos> {
        match self.p.clock {
            ClockMode::Wall => Some(wall),
            ClockMode::Event => s.newest,
        }
    }

    /// The instance's clock T: wall, or the newest event of any shard it owns or owned.
    fn now(&self, wall: Nanos) -> Option<Nanos> {
        match self.p.clock {
            ClockMode::Wall => Some(wall),
            ClockMode::Event => self.shards.values().filter_map(|s| s.newest).chain(self.newest_seen).max(),
        }
    }

    fn local_day(&self, t: Nanos) -> NaiveDate {
        chrono::TimeZone::timestamp_nanos(&self.p.tz, t).date_naive()
    }
}

/// The current generation of `shards`, retrying while ClickHouse is unreachable
/// (a failed read counts in `d06_sink_write_failures_total` like a failed write).
async fn generations(
    sink: &ClickHouseSink,
    shards: &[u32],
    metrics: &Metrics,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<BTreeMap<u32, u64>> {
    let g = (|| sink.generations(shards))
        .retry(sinks::clickhouse::RETRY)
        .when(|e| e.is_retryable() && !shutdown.is_cancelled())
        .notify(|e, wait| {
            health.set_sink_failing(true);
            metrics.sink_failures.with_label_values(&["clickhouse", e.kind()]).inc();
            warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "reading shard generations failed; retrying");
        })
        .await
        .context("reading shard generations")?;
    health.set_sink_failing(false);
    Ok(g)
}

/// Claims a shard's next generation, retrying while ClickHouse is unreachable.
async fn claim(sink: &ClickHouseSink, p: u32, owner: &str, shutdown: &CancellationToken) -> Result<u64> {
    (|| sink.claim_shard(p, owner))
        .retry(sinks::clickhouse::RETRY)
        .when(|e| e.is_retryable() && !shutdown.is_cancelled())
        .notify(|e, wait| {
            warn!(partition = p, error = %e, retry_in_ms = wait.as_millis() as u64, "claiming the shard failed; retrying");
        })
        .await
        .with_context(|| format!("claiming shard {p}"))
}
