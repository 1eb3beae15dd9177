//! Step 5 of a flush: the province-wide figures, read back from
//! ClickHouse's shard tables (at most for their share of the time) or, in
//! the demo, summed over this process's shards, then published to
//! `/metrics` and the board (figures.rs).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aggregator::Nanos;
use chrono::NaiveDate;
use sinks::clickhouse::ClickHouseSink;
use tracing::{debug, warn};

use super::figures::Sums;
use super::Pipeline;

/// Whether a flush reads the figures back: always the first time, then
/// once `took × 100 / share_percent` has passed since the last read-back
/// `started`, so that read-backs take at most that share of the time.
fn read_back_due(last: Option<(Instant, Duration)>, now: Instant, share_percent: u32) -> bool {
    last.is_none_or(|(started, took)| {
        now.saturating_duration_since(started) >= took.saturating_mul(100) / share_percent.max(1)
    })
}

impl Pipeline {
    /// Pipeline gauges from the owned shards; business figures from the sums over all shards.
    pub(super) async fn publish(&mut self, wall: Nanos) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
