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
use aggregator::rollup::{DayCounts, Days};
use aggregator::standing;
use aggregator::{AreaId, AreaLevel, Geography, Indicator, LagRule, Nanos, Plans, ProvincePlan};
use chrono::{NaiveDate, TimeZone};
use sinks::board::{AreaBoard, Board, BoardSnapshot, HotlineBoard, IndicatorBoard, ProvinceLink};
use sinks::clickhouse::{Figures, HotlineFigure};
use sinks::prometheus::{AreaLabels, CoverageGauges, Metrics};

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
    pub fn add_days(&mut self, key: (Indicator, AreaId), days: &Days) {
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
        out.set_hotline(f.hotline, geo, |_| true);
        out
    }

    /// Replaces the hotline sums of the areas `ours` keeps with `figures`
    /// (a province whose plan starts later counts its tickets from its own
    /// start).
    pub fn set_hotline(&mut self, figures: Vec<HotlineFigure>, geo: &Geography, ours: impl Fn(AreaId) -> bool) {
        self.hotline.retain(|a, _| !ours(*a));
        for h in figures {
            let Some(level) = level_of(&h.area_level) else { continue };
            if let Some(area) = geo.find(level, &h.area).filter(|a| ours(*a)) {
                self.hotline.insert(area, h.counts);
            }
        }
    }
}

/// Everything the figures need that does not change.
pub(super) struct View {
    pub geo: Arc<Geography>,
    pub plans: Arc<Plans>,
    pub tz: chrono_tz::Tz,
    pub commune_metrics: bool,
    pub board: Option<Arc<Board>>,
    pub lag_rule: LagRule,
    pub campaign: String,
    pub clock: ClockMode,
}

impl View {
    /// Whether `level` has gauges: the province and the tier below it
    /// always, communes when asked for (`http.commune_metrics`).
    pub fn exported(&self, level: AreaLevel) -> bool {
        level != AreaLevel::Commune || level == self.geo.tier() || self.commune_metrics
    }

    /// Sets `d06_area_info` (name and parent) of every area that has
    /// gauges, from the geography d06 runs with: the Prometheus rules and
    /// dashboards name areas from it, whatever the province or geography.
    pub fn publish_areas(&self, m: &Metrics) {
        let geo = &self.geo;
        for (i, area) in geo.areas().iter().enumerate().filter(|(_, a)| self.exported(a.level)) {
            let parent = area.parent.map_or("", |p| geo.area(p).code.as_str());
            m.set_area_info(self.labels(AreaId(i as u16)), &area.name, parent);
        }
    }

    /// The labels of an area's series: its province, level and code.
    fn labels(&self, a: AreaId) -> AreaLabels<'_> {
        let area = self.geo.area(a);
        AreaLabels {
            province: &self.geo.area(self.geo.province_of(a)).code,
            level: area.level.as_str(),
            area: &area.code,
        }
    }

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
                let exported = self.exported(area.level);
                let on_board = self.board.is_some() && (area.level == AreaLevel::Province || area.level == geo.tier());
                if !exported && !on_board {
                    continue;
                }
                let key = (*ind, AreaId(i as u16));
                let days = sums.coverage.get(&key).unwrap_or(&empty);
                let s: Status = coverage::status(self.plans.of(key.1), key, days, today);
                if exported {
                    m.set_coverage(ind.as_str(), self.labels(key.1), &coverage_gauges(&s));
                }
                if on_board {
                    statuses.insert((key.1, *ind), s);
                }
            }
        }
        for (a, c) in &sums.hotline {
            let area = geo.area(*a);
            if !self.exported(area.level) {
                continue;
            }
            m.set_hotline(self.labels(*a), c);
        }
        if let Some(board) = &self.board {
            for unit in self.plans.units() {
                board.publish(self.snapshot(unit, today, wall, &statuses, &sums.hotline));
            }
        }
    }

    /// One province's board: the same figures the gauges show.
    fn snapshot(
        &self,
        unit: &ProvincePlan,
        today: NaiveDate,
        wall: Nanos,
        statuses: &BTreeMap<(AreaId, Indicator), Status>,
        hot: &BTreeMap<AreaId, HotlineCounts>,
    ) -> BoardSnapshot {
        let geo = &unit.geo;
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
                        baseline_known: s.baseline_known,
                        pace_per_day: s.pace_per_day,
                        needed_per_day: s.needed_per_day,
                        note: (!s.baseline_known && s.target > 0)
                            .then(|| sinks::board::pace_note(s.pace_per_day, s.needed_per_day)),
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
        let level = geo.tier();
        let mut districts: Vec<AreaBoard> = geo.of_level(level).map(area_board).collect();
        // Rank by the mean of covered/target (capped at 100 %) over the indicators with a target
        // and a known baseline (`aggregator::standing`); ties share a rank, no average no rank (0).
        let averages: Vec<Option<f64>> = geo
            .of_level(level)
            .map(|a| {
                standing::average(Indicator::ALL.iter().filter_map(|ind| statuses.get(&(a, *ind)).map(|s| (*ind, s))))
                    .value
            })
            .collect();
        for (d, rank) in districts.iter_mut().zip(standing::ranks(&averages)) {
            d.rank = rank.map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX));
        }
        let local = self.tz.timestamp_nanos(wall);
        BoardSnapshot {
            tier: if level == AreaLevel::District { "huyện" } else { "xã" }.into(),
            campaign: unit.plan.name().map_or_else(|| self.campaign.clone(), str::to_owned),
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
            provinces: self
                .plans
                .units()
                .iter()
                .map(|u| ProvinceLink { code: u.code().to_owned(), name: u.name().to_owned() })
                .collect(),
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
        days_behind: s.baseline_known.then_some(f64::from(s.days_behind)),
        baseline_known: s.baseline_known,
        pace_per_day: s.pace_per_day,
        needed_per_day: s.needed_per_day,
    }
}

#[cfg(test)]
mod tests;
