//! The daily table's test data, shared with the daily alerts' tests
//! (feature `fixtures`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aggregator::coverage;
use aggregator::plan::Plan;
use aggregator::rollup::DayCounts;
use aggregator::{AreaId, AreaLevel, Geography, GeographyVersion, Indicator};
use chrono::NaiveDate;
use sinks::clickhouse::CoverageDailyRow;

pub fn d(m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, m, day).unwrap()
}

/// 10/4–30/4; every district weighs 1. cccd: 110 (10 per district),
/// 50 % by 20/4, 100 % by 30/4. vneid: 22 (2 per district), 100 % by
/// 30/4. The other indicators have no target. (Also the fixture of the
/// daily alerts' tests.)
pub fn setup() -> (Geography, Plan) {
    let g = Geography::load(GeographyVersion::Pre2025).unwrap();
    let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
    let text = format!(
        "name = 'Thử <b>\"A&B\"</b> | *x*'\nstart = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n\
         [indicators.cccd]\ntarget = 110\nbaseline = 0\n\
         milestones = [ {{ date = 2024-04-20, share = 0.5 }}, {{ date = 2024-04-30, share = 1.0 }} ]\n\
         [indicators.vneid]\ntarget = 22\nbaseline = 0\nmilestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n"
    );
    let p = Plan::from_toml(&text, &g).unwrap();
    (g, p)
}

/// The plan of [`setup`], but the vneid baseline is unknown everywhere
/// except in district 688 (0, with a source).
pub fn setup_vneid_unknown() -> (Geography, Plan) {
    let (g, _) = setup();
    let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
    let text = format!(
        "start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n\
         [indicators.cccd]\ntarget = 110\nbaseline = 0\n\
         milestones = [ {{ date = 2024-04-20, share = 0.5 }}, {{ date = 2024-04-30, share = 1.0 }} ]\n\
         [indicators.vneid]\ntarget = 22\nbaseline = \"unknown\"\nmilestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n\
         areas.\"688\" = {{ baseline = 0, baseline_source = \"test\" }}\n"
    );
    let p = Plan::from_toml(&text, &g).unwrap();
    (g, p)
}

/// (indicator, district code, day, gained) of the scenario.
const GAINS: &[(Indicator, &str, (u32, u32), u64)] = &[
    (Indicator::Cccd, "688", (4, 11), 1),
    (Indicator::Cccd, "688", (4, 13), 2),
    (Indicator::Cccd, "688", (4, 16), 1),
    (Indicator::Vneid, "688", (4, 12), 1),
    (Indicator::Cccd, "689", (4, 12), 12),
    (Indicator::Cccd, "690", (4, 8), 2), // before the start
    (Indicator::Cccd, "690", (4, 10), 1),
    (Indicator::Vneid, "690", (4, 16), 1),
    (Indicator::Cccd, "691", (4, 11), 2),
    (Indicator::Cccd, "692", (4, 15), 4),
    (Indicator::Vneid, "692", (4, 15), 1),
    (Indicator::Vneid, "692", (4, 17), 1), // after the report day
];

/// `coverage_daily` as the pipeline writes it through 17/4, from
/// [`coverage::series`]: every indicator, province, districts, one commune.
pub fn rows(g: &Geography, p: &Plan) -> Vec<CoverageDailyRow> {
    let mut counts: BTreeMap<(Indicator, AreaId), BTreeMap<NaiveDate, DayCounts>> = BTreeMap::new();
    for &(ind, code, (m, day), gained) in GAINS {
        let district = g.find(AreaLevel::District, code).unwrap();
        for a in [district, g.province()] {
            counts.entry((ind, a)).or_default().entry(d(m, day)).or_insert(DayCounts { gained: 0, lost: 0 }).gained +=
                gained;
        }
    }
    let commune = g.find(AreaLevel::Commune, "25216").unwrap();
    counts.entry((Indicator::Cccd, commune)).or_default().insert(d(4, 16), DayCounts { gained: 7, lost: 0 });
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    let areas: Vec<AreaId> = g.of_level(AreaLevel::District).chain([g.province(), commune]).collect();
    for ind in Indicator::ALL {
        for a in &areas {
            let days = counts.get(&(*ind, *a)).unwrap_or(&empty);
            let area = g.area(*a);
            for r in coverage::series(p, (*ind, *a), days, d(4, 17)) {
                out.push(CoverageDailyRow {
                    day: r.day,
                    indicator: ind.as_str().to_owned(),
                    area_level: area.level.as_str().to_owned(),
                    area: area.code.clone(),
                    gained: r.gained,
                    lost: r.lost,
                    covered: r.covered,
                    target: r.target,
                    expected: r.expected,
                });
            }
        }
    }
    out.reverse(); // order does not matter
    out
}
