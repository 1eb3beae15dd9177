//! The province-wide figures every instance shows: coverage per key and day
//! and hotline counts per area, summed over **all** shards, then turned into
//! statuses (covered, expected, days behind, ETA) for `/metrics` and the
//! board.
//!
//! With Kafka the sums are read back from ClickHouse's shard tables, so an
//! instance that owns some shards shows the whole province, and two
//! instances export the same values (Prometheus combines them with `max
//! without (instance)`, see `deploy/prometheus/rules/`). The in-memory demo,
//! which owns every shard, sums its own shards.

use std::collections::BTreeMap;
use std::sync::Arc;

use aggregator::coverage::{self, Status};
use aggregator::hotline::HotlineCounts;
use aggregator::plan::Plan;
use aggregator::rollup::DayCounts;
use aggregator::{AreaId, AreaLevel, Geography, Indicator, LagRule, Nanos};
use chrono::{NaiveDate, TimeZone};
use sinks::board::{AreaBoard, Board, BoardSnapshot, HotlineBoard, IndicatorBoard};
use sinks::clickhouse::Figures;
use sinks::prometheus::{CoverageGauges, Metrics};

use crate::config::ClockMode;

/// Coverage per key and day, and hotline per area: sums over all shards.
#[derive(Debug, Default)]
pub(super) struct Sums {
    pub coverage: BTreeMap<(Indicator, AreaId), BTreeMap<NaiveDate, DayCounts>>,
    pub hotline: BTreeMap<AreaId, HotlineCounts>,
    /// The newest day any shard wrote (read back): an instance that owns few
    /// or no shards still knows how far the province has got.
    pub newest_day: Option<NaiveDate>,
}

fn level_of(s: &str) -> Option<AreaLevel> {
    [AreaLevel::Province, AreaLevel::District, AreaLevel::Commune].into_iter().find(|l| l.as_str() == s)
}

impl Sums {
    /// Adds one shard's coverage days.
    pub fn add_days(&mut self, key: (Indicator, AreaId), days: &BTreeMap<NaiveDate, DayCounts>) {
        let sum = self.coverage.entry(key).or_default();
        for (day, c) in days {
            let e = sum.entry(*day).or_default();
            e.gained += c.gained;
            e.lost += c.lost;
        }
    }

    /// The sums read back from ClickHouse, resolved through the geography
    /// (rows of areas it does not know are ignored).
    pub fn from_clickhouse(f: Figures, geo: &Geography) -> Sums {
        let mut out = Sums { newest_day: f.newest_day, ..Sums::default() };
        for ((ind, level, code), days) in f.coverage {
            let (Some(ind), Some(level)) = (Indicator::from_str(&ind), level_of(&level)) else { continue };
            let Some(area) = geo.find(level, &code) else { continue };
            let sum = out.coverage.entry((ind, area)).or_default();
            for (day, (gained, lost)) in days {
                sum.insert(day, DayCounts { gained, lost });
            }
        }
        for h in f.hotline {
            let Some(level) = level_of(&h.area_level) else { continue };
            if let Some(area) = geo.find(level, &h.area) {
                out.hotline.insert(area, h.counts);
            }
        }
        out
    }
}

/// Everything the figures need that does not change.
pub(super) struct View {
    pub geo: Arc<Geography>,
    pub plan: Arc<Plan>,
    pub tz: chrono_tz::Tz,
    pub commune_metrics: bool,
    pub board: Option<Arc<Board>>,
    pub lag_rule: LagRule,
    pub campaign: String,
    pub clock: ClockMode,
}

impl View {
    /// Sets the business gauges and publishes the board from `sums` as of `t`.
    pub fn publish(&self, m: &Metrics, sums: &Sums, t: Nanos, wall: Nanos) {
        let mut today = self.tz.timestamp_nanos(t).date_naive();
        if self.clock == ClockMode::Event {
            // The event clock of this instance's shards may trail the province's.
            today = today.max(sums.newest_day.unwrap_or(today));
        }
        let geo = &self.geo;
        let mut statuses: BTreeMap<(AreaId, Indicator), Status> = BTreeMap::new();
        let empty = BTreeMap::new();
        for ind in Indicator::ALL {
            for (i, area) in geo.areas().iter().enumerate() {
                let exported = area.level != AreaLevel::Commune || self.commune_metrics;
                let on_board = self.board.is_some() && area.level != AreaLevel::Commune;
                if !exported && !on_board {
                    continue;
                }
                let key = (*ind, AreaId(i as u16));
                let days = sums.coverage.get(&key).unwrap_or(&empty);
                let s: Status = coverage::status(&self.plan, key, days, today);
                if exported {
                    m.set_coverage(ind.as_str(), area.level.as_str(), &area.code, &coverage_gauges(&s));
                }
                if on_board {
                    statuses.insert((key.1, *ind), s);
                }
            }
        }
        for (a, c) in &sums.hotline {
            let area = geo.area(*a);
            if area.level == AreaLevel::Commune && !self.commune_metrics {
                continue;
            }
            m.set_hotline(area.level.as_str(), &area.code, c);
        }
        if let Some(board) = &self.board {
            board.publish(self.snapshot(today, wall, &statuses, &sums.hotline));
        }
    }

    /// The board's view of the same figures the gauges show.
    fn snapshot(
        &self,
        today: NaiveDate,
        wall: Nanos,
        statuses: &BTreeMap<(AreaId, Indicator), Status>,
        hot: &BTreeMap<AreaId, HotlineCounts>,
    ) -> BoardSnapshot {
        let geo = &self.geo;
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
                        lagging: self.lag_rule.is_lagging(s),
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
        let local = self.tz.timestamp_nanos(wall);
        BoardSnapshot {
            campaign: self.campaign.clone(),
            today: today.to_string(),
            updated_at: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            clock: match self.clock {
                ClockMode::Wall => "wall".into(),
                ClockMode::Event => "event".into(),
            },
            province: area_board(geo.province()),
            districts,
            hotline: hot.get(&geo.province()).map(hotline_board).unwrap_or_default(),
            replay: None,
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
