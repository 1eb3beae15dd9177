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
mod outage;
mod restore;
mod shard;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggregator::calendar::WorkCalendar;
use aggregator::Plans;
use aggregator::{Geography, LagRule, Nanos};
use anyhow::{Context, Result};
use backon::Retryable;
use chrono::NaiveDate;
use ingest::kafka::shards::{DeadLetterRecord, ShardBatch, ShardCommitter, ShardEvent};
use rayon::prelude::*;
use sinks::board::Board;
use sinks::clickhouse::{AreaRow, BaselineRow, ClickHouseSink, DeadLetterRow, PlanRow, WriteBatch};
use sinks::prometheus::{Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use self::figures::{Sums, View};
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

/// Whether a tick of the flush timer flushes: every tick while current (and
/// the first time), at most every `every` while far behind.
fn flush_due(behind: bool, since_last: Option<Duration>, every: Duration) -> bool {
    !behind || since_last.is_none_or(|d| d >= every)
}

/// Whether a flush reads the figures back: always the first time, then
/// once `took × 100 / share_percent` has passed since the last read-back
/// `started`, so that read-backs take at most that share of the time.
fn read_back_due(last: Option<(Instant, Duration)>, now: Instant, share_percent: u32) -> bool {
    last.is_none_or(|(started, took)| {
        now.saturating_duration_since(started) >= took.saturating_mul(100) / share_percent.max(1)
    })
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

    async fn flush(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let started = Instant::now();
        let span = info_span!("flush", shards = self.shards.len(), dead = self.pending_dead.len());
        async {
            let wall = now_nanos();
            self.newest_seen = self.now(wall).filter(|_| self.p.clock == ClockMode::Event);
            self.rewrite_after_failover();
            let plans = Arc::clone(&self.p.plans);
            let geo = Arc::clone(&self.p.geo);
            let mut batch = WriteBatch::default();
            let mut written: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
            let partitions: Vec<u32> = self.shards.keys().copied().collect();
            for p in partitions {
                let t = self.shards.get(&p).and_then(|s| self.shard_now(s, wall));
                let through = t.map(|t| self.local_day(t).min(plans.end()));
                let Some(s) = self.shards.get_mut(&p) else { continue };
                if let Some(t) = t {
                    s.tickets.advance(t);
                }
                let version = s.next_version();
                let rows = s.rows(through, &plans, &geo, version, &mut batch);
                written.insert(p, (s.generation, rows));
            }
            self.plan_rows(wall, &mut batch);
            for d in &self.pending_dead {
                batch.dead_letters.push(DeadLetterRow {
                    received_at: chrono::DateTime::from_timestamp(d.received_at, 0).unwrap_or_default(),
                    topic: d.topic.clone(),
                    partition: d.partition.max(0) as u32,
                    offset: d.offset.max(0) as u64,
                    reason: d.reason.clone(),
                    detail: d.detail.clone(),
                });
            }
            // 1. ClickHouse.
            if let (Some(sink), false) = (&self.p.sink, batch.is_empty()) {
                sink.write_with_retry(&batch, shutdown, Some(&self.p.metrics), Some(&self.p.health))
                    .await
                    .context("writing to ClickHouse")?;
                let rows = &self.p.metrics.sink_rows_written;
                for (table, n) in [
                    ("coverage_shard_daily", batch.coverage.len()),
                    ("coverage_shard_recent", batch.recent.len()),
                    ("plan_daily", batch.plan.len()),
                    ("hotline_shard_daily", batch.hotline.len()),
                    ("dead_letters", batch.dead_letters.len()),
                ] {
                    rows.with_label_values(&["clickhouse", table]).inc_by(n as u64);
                }
                // 2. Ownership (fence.rs): every owned shard still ours?
                self.check_claims(&written, shutdown).await?;
            } else {
                self.check_claims_idle(shutdown).await?;
            }
            if self.p.fault == Some(PipelineFault::AfterClickhouse) && !batch.coverage.is_empty() {
                warn!("fault point after_clickhouse: aborting the process");
                std::process::abort();
            }
            // 3. Each shard's store (retried while the disk refuses writes).
            self.checkpoint_all(shutdown).await?;
            // 4. Offsets to the group.
            if let Some(c) = &self.p.committer {
                let facts: Vec<(i32, i64)> = self
                    .shards
                    .values()
                    .filter(|s| s.next_offset > 0)
                    .map(|s| (s.partition as i32, s.next_offset))
                    .collect();
                let dead: Vec<(i32, i64)> = std::mem::take(&mut self.dead_positions).into_iter().collect();
                c.commit(&facts, &dead);
            }
            self.pending_dead.clear();
            // 5. Figures.
            self.publish(wall).await;
            if !self.flushed_once {
                self.flushed_once = true;
                info!("first flush complete");
            }
            self.p.health.set_flushed();
            Ok::<(), anyhow::Error>(())
        }
        .instrument(span)
        .await?;
        self.p.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        self.p.metrics.last_flush_time.set(now_nanos() as f64 / 1e9);
        Ok(())
    }

    /// After the sink moved to another ClickHouse server, every shard and
    /// the plan are written again in full: what the server it left
    /// acknowledged may not have reached its replicas (docs/OPERATIONS.md,
    /// ClickHouse). Dead letters are not: they were rows of their topic.
    fn rewrite_after_failover(&mut self) {
        let Some(sink) = &self.p.sink else { return };
        let failovers = sink.failovers();
        if failovers == self.failovers_seen {
            return;
        }
        self.failovers_seen = failovers;
        for s in self.shards.values_mut() {
            s.full_rewrite = true;
        }
        self.plan_through = None;
        info!(failovers, shards = self.shards.len(), "ClickHouse server changed: rewriting every row");
    }

    /// Plan rows: every day from the start on the first flush (with each
    /// area's baseline, and the areas themselves), then each new day. Each
    /// area's rows run from its province's plan start to its end.
    fn plan_rows(&mut self, wall: Nanos, out: &mut WriteBatch) {
        let plans = &self.p.plans;
        let Some(t) = self.now(wall) else { return };
        let through = self.local_day(t).min(plans.end());
        if through < plans.start() {
            return;
        }
        let first = match self.plan_through {
            None => plans.start(),
            Some(w) if through > w => match w.succ_opt() {
                Some(d) => d,
                None => return,
            },
            Some(_) => return,
        };
        // Identical from every instance; a wall-clock version only orders a changed plan.
        let version = (wall.max(0) / 1_000) as u64;
        let geo = &self.p.geo;
        if self.plan_through.is_none() {
            out.areas.extend(geo.areas().iter().map(|area| AreaRow {
                area_level: area.level,
                area: area.code.clone(),
                name: area.name.clone(),
                parent: area.parent.map(|p| geo.area(p).code.clone()).unwrap_or_default(),
                version,
            }));
        }
        for ind in aggregator::Indicator::ALL {
            for (i, area) in geo.areas().iter().enumerate() {
                let a = aggregator::AreaId(i as u16);
                let plan = plans.of(a);
                if self.plan_through.is_none() {
                    out.baselines.push(BaselineRow {
                        indicator: *ind,
                        area_level: area.level,
                        area: area.code.clone(),
                        baseline: plan.baseline(*ind, a),
                        baseline_known: plan.baseline_known(*ind, a),
                        source: plan.baseline_source(*ind, a).unwrap_or_default().to_owned(),
                        version,
                    });
                }
                let (mut day, last) = (first.max(plan.start()), through.min(plan.end()));
                while day <= last {
                    out.plan.push(PlanRow {
                        day,
                        indicator: *ind,
                        area_level: area.level,
                        area: area.code.clone(),
                        baseline: plan.baseline(*ind, a),
                        target: plan.target(*ind, a),
                        expected: plan.expected(*ind, a, day),
                        version,
                    });
                    match day.succ_opt() {
                        Some(d) => day = d,
                        None => break,
                    }
                }
            }
        }
        self.plan_through = Some(through);
    }

    /// Pipeline gauges from the owned shards; business figures from the sums over all shards.
    async fn publish(&mut self, wall: Nanos) {
        let m = &self.p.metrics;
        m.state_subjects.set(self.shards.values().map(|s| s.coverage.subjects() as i64).sum());
        m.state_events.set(self.shards.values().map(|s| s.coverage.events() as i64).sum());
        if let Some(n) = self.shards.values().filter_map(|s| s.newest).max() {
            m.newest_event_time.set(n as f64 / 1e9);
        }
        let own = self.now(wall);
        if own.is_none() && self.p.sink.is_none() {
            return;
        }
        let sums = match &self.p.sink {
            Some(sink) => {
                let started = Instant::now();
                if !read_back_due(self.figures_read, started, self.p.figures_share_percent) {
                    debug!("figures not read back on this flush: the last read-back was recent for its length");
                    return;
                }
                let view = &self.view;
                let levels: Vec<&str> =
                    self.p.geo.levels().iter().filter(|l| view.exported(**l)).map(|l| l.as_str()).collect();
                // The figures are shown as of this instance's day or later (`View::publish`):
                // the days more than a week before it are read summed, not one by one.
                let apart_from = own.and_then(|t| self.local_day(t).checked_sub_days(chrono::Days::new(6)));
                let read = self.read_figures(sink, &levels, apart_from).await;
                // A failed read-back counts too: one refused at once is tried again at the
                // next flush, one that ran into the sink's timeout (national size) does not
                // hold up every flush for that long.
                self.figures_read = Some((started, started.elapsed()));
                match read {
                    Ok(sums) => sums,
                    Err(error) => {
                        m.sink_failures.with_label_values(&["clickhouse", error.kind()]).inc();
                        warn!(%error, "reading the province-wide figures back failed; gauges keep their last values");
                        return;
                    }
                }
            }
            None => self.local_sums(),
        };
        // An instance whose shards have seen no event yet takes the province's day from the sums.
        let t = match own {
            Some(t) => t,
            None if sums.newest_day.is_some() => Nanos::MIN,
            None => return,
        };
        self.view.publish(m, &sums, t, wall);
    }

    /// The sums over every shard, read back from ClickHouse. Hotline tickets
    /// count from the area's province's plan start: one read from the
    /// earliest start, and one more per later start among the plans.
    async fn read_figures(
        &self,
        sink: &ClickHouseSink,
        levels: &[&str],
        apart_from: Option<NaiveDate>,
    ) -> Result<Sums, sinks::SinkError> {
        let plans = &self.p.plans;
        let mut sums = Sums::from_clickhouse(sink.figures(levels, plans.start(), apart_from).await?, &self.p.geo);
        let later: BTreeSet<NaiveDate> =
            plans.units().iter().map(|u| u.plan.start()).filter(|d| *d > plans.start()).collect();
        for start in later {
            let figures = sink.hotline_figures(levels, start).await?;
            sums.set_hotline(figures, &self.p.geo, |a| plans.of(a).start() == start);
        }
        Ok(sums)
    }

    /// Sums over the shards of this process (the demo owns them all).
    fn local_sums(&self) -> Sums {
        let mut sums = Sums::default();
        for s in self.shards.values() {
            for key in s.coverage.keys() {
                if let Some(days) = s.coverage.days(key) {
                    sums.add_days(*key, days);
                }
            }
            for ((a, day), c) in s.tickets.counts() {
                if *day >= self.p.plans.of(*a).start() {
                    *sums.hotline.entry(*a).or_default() += *c;
                }
            }
        }
        sums
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_flushes_every_tick_while_current_and_at_most_every_interval_while_behind() {
        let every = Duration::from_secs(5);
        let (soon, late) = (Some(Duration::from_secs(1)), Some(Duration::from_secs(5)));
        assert!(flush_due(false, soon, every), "current: every tick");
        assert!(flush_due(true, None, every), "behind, never flushed yet");
        assert!(!flush_due(true, soon, every), "behind, flushed a second ago");
        assert!(flush_due(true, late, every), "behind, the interval is up");
        assert!(flush_due(true, soon, Duration::ZERO), "no longer interval: every tick");
    }

    #[test]
    fn the_figures_are_read_back_at_most_for_their_share_of_the_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(read_back_due(None, t0, 25), "the first flush reads back");
        // A read-back of 10 s, a quarter of the time: the next 40 s after it started.
        let long = Some((t0, Duration::from_secs(10)));
        assert!(!read_back_due(long, at(10_000), 25), "just after it");
        assert!(!read_back_due(long, at(39_999), 25));
        assert!(read_back_due(long, at(40_000), 25), "its share is up");
        assert!(read_back_due(long, at(10_000), 100), "100 %: after every flush");
        // A small deployment: 20 ms, so every flush half a second apart reads back.
        let short = Some((t0, Duration::from_millis(20)));
        assert!(read_back_due(short, at(500), 25));
        assert!(!read_back_due(short, at(79), 25));
    }
}
