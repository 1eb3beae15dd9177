//! The pipeline: applies the source's batches to the aggregator shards and,
//! at every flush, makes everything durable in the order the invariants
//! require (ARCHITECTURE.md): dead letters acked → ClickHouse rows acked →
//! local checkpoint committed → offsets committed to the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggregator::calendar::WorkCalendar;
use aggregator::coverage::{self, Status};
use aggregator::hotline::{HotlineCounts, Tickets};
use aggregator::plan::Plan;
use aggregator::rollup::{DayCounts, Outcome, RollupKey, Shard};
use aggregator::LagRule;
use aggregator::{AreaId, AreaLevel, Fact, FactKind, Geography, Indicator, Nanos};
use anyhow::{Context, Result};
use chrono::{NaiveDate, TimeZone};
use ingest::kafka::{Batch, Committer, DeadLetter, DeadLetterProducer, PartitionState, SourcePartition};
use sinks::board::{AreaBoard, Board, BoardSnapshot, HotlineBoard, IndicatorBoard};
use sinks::clickhouse::{ClickHouseSink, CoverageShardRow, DeadLetterRow, HotlineShardRow, PlanRow, WriteBatch};
use sinks::prometheus::{CoverageGauges, Health, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::ClockMode;
use crate::store::Store;

/// Everything the pipeline needs, built by `main`.
pub struct Parts {
    /// The geography facts were resolved through.
    pub geo: Arc<Geography>,
    /// The campaign plan.
    pub plan: Arc<Plan>,
    /// Working-time calendar for hotline deadlines.
    pub calendar: Arc<WorkCalendar>,
    /// Local days.
    pub tz: chrono_tz::Tz,
    /// In-process shards.
    pub shards: u32,
    /// Which clock is "now".
    pub clock: ClockMode,
    /// Flush cadence.
    pub flush_interval: Duration,
    /// Also export commune gauges.
    pub commune_metrics: bool,
    /// The local store.
    pub store: Store,
    /// The output version last written (from the checkpoint).
    pub version: u64,
    /// Positions from the checkpoint.
    pub positions: HashMap<SourcePartition, PartitionState>,
    /// ClickHouse (none in the self-contained demo).
    pub sink: Option<ClickHouseSink>,
    /// Dead-letter producer (none in the self-contained demo: rejections are counted only).
    pub dead_letters: Option<DeadLetterProducer>,
    /// Commits offsets to the group (none without Kafka).
    pub committer: Option<Committer>,
    /// The built-in board, when served.
    pub board: Option<Arc<Board>>,
    /// When an area lags the plan (board colours).
    pub lag_rule: LagRule,
    /// Campaign name shown on the board.
    pub campaign: String,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("shards", &self.shards).field("clock", &self.clock).finish()
    }
}

/// The aggregator's state: every shard of this process.
struct State {
    shards: u32,
    coverage: Vec<Shard>,
    tickets: Vec<Tickets>,
    /// Newest `occurred_at` applied (the replay clock T).
    newest: Option<Nanos>,
}

impl State {
    fn apply(&mut self, fact: &Fact) -> Outcome {
        let s = fact.subject.shard(self.shards) as usize;
        self.newest = Some(self.newest.map_or(fact.occurred_at, |n| n.max(fact.occurred_at)));
        match fact.kind {
            FactKind::Hotline { .. } => self.tickets[s].apply(fact),
            _ => self.coverage[s].apply(fact),
        }
    }
}

/// The running pipeline.
pub struct Pipeline {
    p: Parts,
    state: State,
    /// Every source position, as of the last absorbed batch.
    positions: HashMap<SourcePartition, PartitionState>,
    /// Facts applied since the last checkpoint, encoded for the log.
    pending_log: Vec<u8>,
    pending_dead: Vec<DeadLetter>,
    /// Positions advanced since the last checkpoint.
    moved: HashMap<SourcePartition, PartitionState>,
    /// Coverage and plan rows are in ClickHouse through this day.
    written_through: Option<NaiveDate>,
    /// The next flush rewrites every row (first flush after a start).
    full_rewrite: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("parts", &self.p).finish()
    }
}

fn now_nanos() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as Nanos).unwrap_or(0)
}

impl Pipeline {
    /// Rebuilds the aggregator from the store.
    pub fn restore(p: Parts) -> Result<Pipeline> {
        let started = Instant::now();
        let mut state = State {
            shards: p.shards,
            coverage: (0..p.shards).map(|_| Shard::new(Arc::clone(&p.geo))).collect(),
            tickets: (0..p.shards).map(|_| Tickets::new(Arc::clone(&p.geo), Arc::clone(&p.calendar))).collect(),
            newest: None,
        };
        let replayed = p
            .store
            .replay(|fact| {
                state.apply(&fact);
            })
            .context("replaying the local fact log")?;
        let pipeline = Pipeline {
            positions: p.positions.clone(),
            p,
            state,
            pending_log: Vec::new(),
            pending_dead: Vec::new(),
            moved: HashMap::new(),
            written_through: None,
            full_rewrite: true,
        };
        info!(facts = replayed, elapsed_ms = started.elapsed().as_millis() as u64, "state restored");
        Ok(pipeline)
    }

    fn absorb(&mut self, batch: Batch) {
        let m = &self.p.metrics;
        for (topic, n) in &batch.consumed {
            m.messages_consumed.with_label_values(&[topic]).inc_by(*n);
        }
        for d in &batch.dead_letters {
            m.messages_rejected.with_label_values(&[d.reason.as_str()]).inc();
        }
        for fact in &batch.facts {
            match self.state.apply(fact) {
                Outcome::Applied => fact.encode(&mut self.pending_log),
                Outcome::Duplicate => self.p.metrics.duplicates.inc(),
            }
        }
        self.pending_dead.extend(batch.dead_letters);
        for (p, st) in batch.positions {
            self.positions.insert(p.clone(), st);
            self.moved.insert(p, st);
        }
    }

    /// Consumes batches until the source closes the channel, flushing on a timer.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Batch>, shutdown: CancellationToken) -> Result<()> {
        let mut tick = tokio::time::interval(self.p.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => self.absorb(b),
                    None => break,
                },
                _ = tick.tick() => self.flush(&shutdown).await?,
            }
        }
        // The source has stopped: drain is complete, write the last state out.
        self.flush(&shutdown).await?;
        info!("pipeline drained and stopped");
        Ok(())
    }

    /// The clock T.
    fn now(&self) -> Option<Nanos> {
        match self.p.clock {
            ClockMode::Wall => Some(now_nanos()),
            ClockMode::Event => self.state.newest,
        }
    }

    fn local_day(&self, t: Nanos) -> NaiveDate {
        self.p.tz.timestamp_nanos(t).date_naive()
    }

    async fn flush(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let started = Instant::now();
        let span = info_span!("flush", facts_bytes = self.pending_log.len(), dead = self.pending_dead.len());
        async {
            let t = self.now();
            if let Some(t) = t {
                for tickets in &mut self.state.tickets {
                    tickets.advance(t);
                }
            }
            // 1. Dead letters, acked by the broker, before anything moves.
            if let (Some(producer), false) = (&self.p.dead_letters, self.pending_dead.is_empty()) {
                let mut backoff = Duration::from_millis(100);
                loop {
                    match producer.send_all(&self.pending_dead).await {
                        Ok(()) => break,
                        Err(error) => {
                            warn!(%error, letters = self.pending_dead.len(), "dead-letter produce failed; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {},
                                _ = shutdown.cancelled() => anyhow::bail!("shutdown while dead letters were unacknowledged"),
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
            // 2. ClickHouse.
            let version = now_nanos().max(0) as u64 / 1_000;
            let version = version.max(self.p.version + 1);
            let batch = self.rows(t, version);
            if let (Some(sink), false) = (&self.p.sink, batch.is_empty()) {
                sink.write_with_retry(&batch, shutdown, Some(&self.p.metrics))
                    .await
                    .context("writing to ClickHouse")?;
                let rows = &self.p.metrics.sink_rows_written;
                for (table, n) in [
                    ("coverage_shard_daily", batch.coverage.len()),
                    ("plan_daily", batch.plan.len()),
                    ("hotline_shard_daily", batch.hotline.len()),
                    ("dead_letters", batch.dead_letters.len()),
                ] {
                    rows.with_label_values(&["clickhouse", table]).inc_by(n as u64);
                }
            }
            self.p.version = version;
            // 3. The local checkpoint.
            if !self.pending_log.is_empty() || !self.moved.is_empty() || self.full_rewrite {
                let cp_started = Instant::now();
                let log = std::mem::take(&mut self.pending_log);
                let store = &mut self.p.store;
                let positions = &self.positions;
                tokio::task::block_in_place(|| store.checkpoint(&log, positions, version))?;
                self.p.metrics.checkpoint_seconds.observe(cp_started.elapsed().as_secs_f64());
            }
            // 4. Offsets to the group (monitoring only).
            let moved: Vec<_> = self.moved.drain().collect();
            if let Some(c) = &self.p.committer {
                c.commit(&moved);
            }
            self.pending_dead.clear();
            self.full_rewrite = false;
            // 5. Gauges.
            self.update_gauges(t);
            self.p.health.set_ready(true);
            Ok(())
        }
        .instrument(span)
        .await?;
        self.p.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        self.p.metrics.last_flush_time.set(now_nanos() as f64 / 1e9);
        debug!(elapsed_ms = started.elapsed().as_millis() as u64, "flushed");
        Ok(())
    }

    /// The rows that changed since the last flush (all rows after a start).
    fn rows(&mut self, t: Option<Nanos>, version: u64) -> WriteBatch {
        let mut out = WriteBatch::default();
        let plan = Arc::clone(&self.p.plan);
        let geo = Arc::clone(&self.p.geo);
        let through = t.map(|t| self.local_day(t).min(plan.end()));
        // Everything is rewritten after a start, and the first time there is a "today" at all
        // (the event clock has none before the first event).
        let full = self.full_rewrite || self.written_through.is_none();
        let rollover_from = match (self.written_through, through) {
            (Some(w), Some(th)) if th > w => w.succ_opt(),
            _ => None,
        };
        if let Some(through) = through.filter(|th| *th >= plan.start()) {
            let all_keys: Vec<RollupKey> = Indicator::ALL
                .iter()
                .flat_map(|i| (0..geo.areas().len()).map(move |a| (*i, AreaId(a as u16))))
                .collect();
            for (s, shard) in self.state.coverage.iter_mut().enumerate() {
                let dirty = shard.take_dirty();
                let mut from: BTreeMap<RollupKey, NaiveDate> = BTreeMap::new();
                if full {
                    for k in &all_keys {
                        from.insert(*k, plan.start());
                    }
                } else {
                    if let Some(r) = rollover_from {
                        for k in shard.keys() {
                            from.insert(*k, r);
                        }
                    }
                    for (k, d) in dirty {
                        let e = from.entry(k).or_insert(d);
                        *e = (*e).min(d);
                    }
                }
                let empty = BTreeMap::new();
                for (key, first) in from {
                    let days = shard.days(&key).unwrap_or(&empty);
                    let area = geo.area(key.1);
                    let mut net: i64 = days.range(..plan.start()).map(|(_, c)| c.gained as i64 - c.lost as i64).sum();
                    let mut day = plan.start();
                    while day <= through {
                        let c = days.get(&day).copied().unwrap_or(DayCounts { gained: 0, lost: 0 });
                        net += c.gained as i64 - c.lost as i64;
                        if day >= first {
                            out.coverage.push(CoverageShardRow {
                                day,
                                indicator: key.0,
                                area_level: area.level,
                                area: area.code.clone(),
                                shard: s as u32,
                                gained: c.gained,
                                lost: c.lost,
                                net,
                                version,
                            });
                        }
                        match day.succ_opt() {
                            Some(d) => day = d,
                            None => break,
                        }
                    }
                }
            }
            let plan_from = if full { Some(plan.start()) } else { rollover_from };
            if let Some(first) = plan_from {
                for (ind, a) in &all_keys {
                    let area = geo.area(*a);
                    let mut day = first;
                    while day <= through {
                        out.plan.push(PlanRow {
                            day,
                            indicator: *ind,
                            area_level: area.level,
                            area: area.code.clone(),
                            baseline: plan.baseline(*ind, *a),
                            target: plan.target(*ind, *a),
                            expected: plan.expected(*ind, *a, day),
                            version,
                        });
                        match day.succ_opt() {
                            Some(d) => day = d,
                            None => break,
                        }
                    }
                }
            }
            self.written_through = Some(through);
        }
        for (s, tickets) in self.state.tickets.iter_mut().enumerate() {
            let dirty = tickets.take_dirty();
            let counts = tickets.counts();
            let keys: Vec<(AreaId, NaiveDate)> =
                if self.full_rewrite { counts.keys().copied().collect() } else { dirty.into_iter().collect() };
            for (a, day) in keys {
                let c = counts.get(&(a, day)).copied().unwrap_or_default();
                let area = geo.area(a);
                out.hotline.push(HotlineShardRow {
                    day,
                    area_level: area.level,
                    area: area.code.clone(),
                    shard: s as u32,
                    counts: c,
                    version,
                });
            }
        }
        for d in &self.pending_dead {
            out.dead_letters.push(DeadLetterRow {
                received_at: chrono::DateTime::from_timestamp(d.received_at, 0).unwrap_or_default(),
                topic: d.source.topic.to_string(),
                partition: d.source.partition.max(0) as u32,
                offset: d.offset.max(0) as u64,
                reason: d.reason.as_str().to_owned(),
                detail: d.detail.clone(),
            });
        }
        out
    }

    fn update_gauges(&self, t: Option<Nanos>) {
        let m = &self.p.metrics;
        m.state_subjects.set(self.state.coverage.iter().map(|s| s.subjects() as i64).sum());
        m.state_events.set(self.state.coverage.iter().map(|s| s.events() as i64).sum());
        if let Some(n) = self.state.newest {
            m.newest_event_time.set(n as f64 / 1e9);
        }
        let Some(t) = t else { return };
        let today = self.local_day(t);
        let geo = &self.p.geo;
        let plan = &self.p.plan;
        let board_levels = self.p.board.is_some();
        let mut statuses: BTreeMap<(AreaId, Indicator), Status> = BTreeMap::new();
        for ind in Indicator::ALL {
            for (i, area) in geo.areas().iter().enumerate() {
                let exported = area.level != AreaLevel::Commune || self.p.commune_metrics;
                let on_board = board_levels && area.level != AreaLevel::Commune;
                if !exported && !on_board {
                    continue;
                }
                let key = (*ind, AreaId(i as u16));
                let mut days: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
                for shard in &self.state.coverage {
                    if let Some(d) = shard.days(&key) {
                        for (day, c) in d {
                            let e = days.entry(*day).or_insert(DayCounts { gained: 0, lost: 0 });
                            e.gained += c.gained;
                            e.lost += c.lost;
                        }
                    }
                }
                let s: Status = coverage::status(plan, key, &days, today);
                if exported {
                    m.set_coverage(ind.as_str(), area.level.as_str(), &area.code, &coverage_gauges(&s));
                }
                if on_board {
                    statuses.insert((key.1, *ind), s);
                }
            }
        }
        let mut hot: BTreeMap<AreaId, HotlineCounts> = BTreeMap::new();
        for tickets in &self.state.tickets {
            for ((a, day), c) in tickets.counts() {
                if *day >= plan.start() {
                    *hot.entry(*a).or_default() += *c;
                }
            }
        }
        for (a, c) in &hot {
            let area = geo.area(*a);
            if area.level == AreaLevel::Commune && !self.p.commune_metrics {
                continue;
            }
            m.set_hotline(area.level.as_str(), &area.code, c);
        }
        if let Some(board) = &self.p.board {
            board.publish(self.snapshot(t, &statuses, &hot));
        }
    }

    /// The board's view of the same figures the gauges show.
    fn snapshot(
        &self,
        t: Nanos,
        statuses: &BTreeMap<(AreaId, Indicator), Status>,
        hot: &BTreeMap<AreaId, HotlineCounts>,
    ) -> BoardSnapshot {
        let geo = &self.p.geo;
        let area_board = |a: AreaId| {
            let area = geo.area(a);
            let indicators = Indicator::ALL
                .iter()
                .filter_map(|ind| {
                    statuses.get(&(a, *ind)).map(|s| IndicatorBoard {
                        indicator: ind.as_str().to_owned(),
                        label: sinks::board::label(*ind).to_owned(),
                        covered: s.covered,
                        target: s.target,
                        expected: s.expected,
                        days_behind: s.days_behind,
                        gained_today: s.gained_today,
                        eta: s.eta.map(|d| d.to_string()),
                        lagging: self.p.lag_rule.is_lagging(s),
                    })
                })
                .collect();
            AreaBoard {
                code: area.code.clone(),
                name: area.name.clone(),
                rank: 0,
                indicators,
                hotline: hot.get(&a).map(hotline_board).unwrap_or_default(),
            }
        };
        let level = if geo.levels().contains(&AreaLevel::District) { AreaLevel::District } else { AreaLevel::Commune };
        let mut districts: Vec<AreaBoard> = geo.of_level(level).map(area_board).collect();
        // Rank by the mean of covered/target (capped at 100 %) over indicators with a target;
        // ties share a rank.
        let score = |a: &AreaBoard| {
            let r: Vec<f64> = a
                .indicators
                .iter()
                .filter(|i| i.target > 0)
                .map(|i| (i.covered as f64 / i.target as f64).clamp(0.0, 1.0))
                .collect();
            if r.is_empty() {
                0.0
            } else {
                r.iter().sum::<f64>() / r.len() as f64
            }
        };
        let scores: Vec<f64> = districts.iter().map(score).collect();
        for (i, d) in districts.iter_mut().enumerate() {
            d.rank = 1 + scores.iter().filter(|s| **s > scores[i]).count() as u32;
        }
        let local = self.p.tz.timestamp_nanos(now_nanos());
        BoardSnapshot {
            campaign: self.p.campaign.clone(),
            today: self.local_day(t).to_string(),
            updated_at: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            clock: match self.p.clock {
                ClockMode::Wall => "wall".into(),
                ClockMode::Event => "event".into(),
            },
            province: area_board(geo.province()),
            districts,
            hotline: hot.get(&geo.province()).map(hotline_board).unwrap_or_default(),
        }
    }
}

fn hotline_board(c: &HotlineCounts) -> HotlineBoard {
    HotlineBoard {
        received: c.received,
        in_progress: c.in_progress,
        overdue_specialist: c.overdue_specialist,
        overdue_leadership: c.overdue_leadership,
        processed: c.processed,
        spam: c.spam,
    }
}

fn coverage_gauges(s: &Status) -> CoverageGauges {
    CoverageGauges {
        covered: s.covered,
        target: s.target,
        expected: s.expected,
        gained_today: s.gained_today,
        days_behind: f64::from(s.days_behind),
    }
}
