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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aggregator::GeographyVersion;

    /// A view publishing to a board (event clock, no commune gauges asked for).
    fn board_view(geo: &Arc<Geography>, plan: &Arc<aggregator::plan::Plan>) -> (View, Arc<Board>) {
        let board = Arc::new(Board::new());
        let view = View {
            geo: Arc::clone(geo),
            plans: Arc::new(Plans::single(Arc::clone(geo), Arc::clone(plan))),
            tz: chrono_tz::Asia::Ho_Chi_Minh,
            commune_metrics: false,
            board: Some(Arc::clone(&board)),
            lag_rule: LagRule::default(),
            campaign: "test".into(),
            clock: ClockMode::Event,
        };
        (view, board)
    }

    /// The 2024 plan does not know the smartphone 4G baseline: a district
    /// far along on it alone is not ranked above one that moved on CCCD.
    #[test]
    fn the_board_ranks_without_the_unknown_baselines() {
        let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
        let plan = Arc::new(reports::load_plan(None, &geo).unwrap());
        assert!(!plan.baseline_known(Indicator::Smartphone4g, geo.province()));
        let (view, board) = board_view(&geo, &plan);
        let district = |code| geo.find(AreaLevel::District, code).unwrap();
        let start = plan.start();
        let mut sums = Sums::default();
        // 688: 40,000 smartphones of 49,009 (82 %); 689: 100 CCCD of 512 (20 %).
        for (ind, code, n) in [(Indicator::Smartphone4g, "688", 40_000), (Indicator::Cccd, "689", 100)] {
            let days = Days::from_iter([(start, DayCounts { gained: n, lost: 0 })]);
            sums.add_days((ind, district(code)), &days);
            sums.add_days((ind, geo.province()), &days);
        }
        // Noon local on the start day.
        let t = start.and_hms_opt(5, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap();
        view.publish(&Metrics::new().unwrap(), &sums, t, t);
        let snap = board.snapshot();
        let rank = |code: &str| snap.districts.iter().find(|d| d.code == code).unwrap().rank;
        // 689: (0.195 + 0 + 0) / 3 over cccd, vneid, migrated_2g; 688: 0 on those three.
        // Counting smartphone 4G would have put 688 first: (0.816) / 4 > 0.195 / 4.
        assert_eq!(rank("689"), 1);
        assert_eq!(rank("688"), 2);
        assert!(snap.districts.iter().filter(|d| d.code != "689").all(|d| d.rank == 2));
        let s4g = snap.districts.iter().find(|d| d.code == "688").unwrap();
        assert_eq!(s4g.indicators.iter().find(|i| i.indicator == "smartphone_4g").unwrap().covered, 40_000);
    }

    /// After the 2025 reform the board lists and ranks the communes, the
    /// tier below the province, and its heading says so.
    #[test]
    fn after_the_reform_the_board_ranks_the_communes() {
        let geo = Arc::new(Geography::load(GeographyVersion::Post2025).unwrap());
        let plan = "start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 7\n\
                    areas.\"25217\" = { target = 3 }\nareas.\"25195\" = { target = 4 }";
        let plan = Arc::new(aggregator::plan::Plan::from_toml(plan, &geo).unwrap());
        let (view, board) = board_view(&geo, &plan);
        let commune = |code| geo.find(AreaLevel::Commune, code).unwrap();
        let start = plan.start();
        let mut sums = Sums::default();
        for (code, n) in [("25217", 3), ("25195", 1)] {
            let days = Days::from_iter([(start, DayCounts { gained: n, lost: 0 })]);
            sums.add_days((Indicator::Cccd, commune(code)), &days);
            sums.add_days((Indicator::Cccd, geo.province()), &days);
        }
        let t = start.and_hms_opt(5, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap();
        let m = Metrics::new().unwrap();
        view.publish(&m, &sums, t, t);
        let snap = board.snapshot();
        assert_eq!(snap.tier, "xã");
        assert_eq!(snap.districts.len(), 40);
        let row = |code: &str| snap.districts.iter().find(|d| d.code == code).unwrap();
        // 25217: 3 of 3; 25195: 1 of 4; the others have no target: no rank.
        assert_eq!((row("25217").rank, row("25195").rank), (1, 2));
        assert_eq!(row("25217").indicators.iter().find(|i| i.indicator == "cccd").unwrap().covered, 3);
        assert_eq!(snap.districts.iter().filter(|d| d.rank == 0).count(), 38);
        // And /metrics has the communes' gauges without commune_metrics.
        let text = m.encode();
        assert!(
            text.lines().any(|l| l.starts_with("d06_coverage_covered{")
                && l.contains(r#"area="25217""#)
                && l.contains(r#"area_level="commune""#)
                && l.contains(r#"indicator="cccd""#)
                && l.ends_with(" 3")),
            "{text}"
        );
    }

    /// Two provinces, each with its own plan: one board each (linking both),
    /// every gauge of both, each judged against its own province's plan.
    #[test]
    fn several_provinces_get_a_board_each_and_gauges_against_their_own_plans() {
        let codes = ["75".to_owned(), "79".to_owned()];
        let geo = Arc::new(Geography::load_provinces(GeographyVersion::Post2025, &codes).unwrap());
        let units: Vec<ProvincePlan> = geo
            .provinces()
            .iter()
            .zip([10, 40])
            .map(|(p, target)| {
                let view = Arc::new(geo.scoped(*p));
                let text = format!("name = \"KH {target}\"\nstart = 2026-01-01\nend = 2026-03-31\n[indicators.cccd]\ntarget = {target}\n");
                ProvincePlan { plan: Arc::new(aggregator::Plan::from_toml(&text, &view).unwrap()), geo: view }
            })
            .collect();
        let plans = Arc::new(Plans::new(&geo, units).unwrap());
        let board = Arc::new(Board::with_provinces(&codes, &tokio_util::sync::CancellationToken::new()));
        let view = View {
            geo: Arc::clone(&geo),
            plans: Arc::clone(&plans),
            tz: chrono_tz::Asia::Ho_Chi_Minh,
            commune_metrics: false,
            board: Some(Arc::clone(&board)),
            lag_rule: LagRule::default(),
            campaign: "default".into(),
            clock: ClockMode::Event,
        };
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut sums = Sums::default();
        // Five covered in one commune of each province.
        for unit in plans.units() {
            let c = unit.geo.of_level(AreaLevel::Commune).next().unwrap();
            let days = Days::from_iter([(start, DayCounts { gained: 5, lost: 0 })]);
            sums.add_days((Indicator::Cccd, c), &days);
            sums.add_days((Indicator::Cccd, unit.geo.province()), &days);
        }
        let t = start.and_hms_opt(5, 0, 0).unwrap().and_utc().timestamp_nanos_opt().unwrap();
        let m = Metrics::new().unwrap();
        view.publish(&m, &sums, t, t);
        // The board serves the first province by default; each snapshot is its own province's.
        let first = board.snapshot();
        assert_eq!((first.province.code.as_str(), first.campaign.as_str()), ("75", "KH 10"));
        let links: Vec<&str> = first.provinces.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(links, ["75", "79"]);
        let part = Geography::load_province(GeographyVersion::Post2025, "75").unwrap();
        assert_eq!(first.districts.len(), part.of_level(AreaLevel::Commune).count(), "only its own communes");
        let text = m.encode();
        let target = |code: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("d06_coverage_target{")
                        && l.contains(&format!(r#"area="{code}""#))
                        && l.contains("cccd")
                })
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        assert_eq!(target("75").as_deref(), Some("10"));
        assert_eq!(target("79").as_deref(), Some("40"));
        let covered = text
            .lines()
            .filter(|l| {
                l.starts_with("d06_coverage_covered{") && l.contains(r#"area_level="province""#) && l.contains("cccd")
            })
            .count();
        assert_eq!(covered, 2, "{text}");
    }

    /// `d06_area_info` lines of `/metrics`, sorted.
    fn area_info(version: GeographyVersion, commune_metrics: bool) -> Vec<String> {
        let geo = Arc::new(Geography::load(version).unwrap());
        let plan = Arc::new(reports::load_plan(None, &Geography::load(GeographyVersion::Pre2025).unwrap()).unwrap());
        let view = View {
            plans: Arc::new(Plans::single(Arc::clone(&geo), plan)),
            geo,
            tz: chrono_tz::Asia::Ho_Chi_Minh,
            commune_metrics,
            board: None,
            lag_rule: LagRule::default(),
            campaign: "test".into(),
            clock: ClockMode::Wall,
        };
        let m = Metrics::new().unwrap();
        view.publish_areas(&m);
        let mut lines: Vec<String> =
            m.encode().lines().filter(|l| l.starts_with("d06_area_info{")).map(str::to_owned).collect();
        lines.sort();
        lines
    }

    #[test]
    fn area_names_come_from_the_geography_it_runs_with() {
        // Bình Phước before 2025: the province and its 11 districts (names as
        // in aggregator/data/binh_phuoc_district_summary.csv).
        let pre = area_info(GeographyVersion::Pre2025, false);
        assert_eq!(pre.len(), 12, "{pre:#?}");
        let has = |lines: &[String], l: &str| lines.iter().any(|x| x == l);
        assert!(has(
            &pre,
            r#"d06_area_info{area="688",area_level="district",name="Thị xã Phước Long",parent="70",province="70"} 1"#
        ));
        assert!(has(
            &pre,
            r#"d06_area_info{area="698",area_level="district",name="Huyện Phú Riềng",parent="70",province="70"} 1"#
        ));
        assert!(
            has(&pre, r#"d06_area_info{area="70",area_level="province",name="Bình Phước",parent="",province="70"} 1"#),
            "{pre:#?}"
        );
        // With commune gauges, the communes too (111 of them), under their district.
        let with_communes = area_info(GeographyVersion::Pre2025, true);
        assert_eq!(with_communes.len(), 12 + 111);
        assert!(with_communes
            .iter()
            .any(|l| l.contains(r#"area="25216",area_level="commune""#) && l.contains(r#"parent="688""#)));
        // After 2025 there are no districts: the communes hang under the province.
        let post = area_info(GeographyVersion::Post2025, true);
        assert!(post.iter().all(|l| !l.contains(r#"area_level="district""#)), "{post:#?}");
        let communes: Vec<&String> = post.iter().filter(|l| l.contains(r#"area_level="commune""#)).collect();
        assert!(!communes.is_empty() && communes.iter().all(|l| l.contains(r#"parent="75""#)), "{post:#?}");
        // There the communes are the tier below the province: exported
        // without asking (the dashboards and the board rank them).
        assert_eq!(communes.len(), 40, "{post:#?}");
        assert_eq!(area_info(GeographyVersion::Post2025, false), post);
    }
}
