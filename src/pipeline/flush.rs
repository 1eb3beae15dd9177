//! A flush, in the order the invariants require (ARCHITECTURE.md): every
//! owned shard's rows, the plan's and the dead letters written to
//! ClickHouse → ownership checked (fence.rs) → each shard's store
//! checkpointed (checkpoint.rs) → offsets committed to the group → the
//! figures read back and published (readback.rs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::Nanos;
use anyhow::{Context, Result};
use sinks::clickhouse::{AreaRow, BaselineRow, DeadLetterRow, PlanRow, WriteBatch};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::{now_nanos, Pipeline, PipelineFault};
use crate::config::ClockMode;

/// Whether a tick of the flush timer flushes: every tick while current (and
/// the first time), at most every `every` while far behind.
pub(super) fn flush_due(behind: bool, since_last: Option<Duration>, every: Duration) -> bool {
    !behind || since_last.is_none_or(|d| d >= every)
}

impl Pipeline {
    /// One flush: the steps above, one after the other.
    pub(super) async fn flush(&mut self, shutdown: &CancellationToken) -> Result<()> {
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
}
