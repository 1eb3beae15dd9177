//! The plan's unit tests: the fixture plan, splits, expectations, refusals.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::geo::GeographyVersion;

fn pre() -> Geography {
    Geography::load(GeographyVersion::Pre2025).unwrap()
}

fn d(m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, m, day).unwrap()
}

const FIXTURE: &str = include_str!("../../../deploy/plans/binh-phuoc-2024.toml");

/// Every district with weight 1, except 688 (weight 3).
fn weights() -> String {
    let mut s = String::from("[district_weights]\n");
    for code in 688..=698 {
        s.push_str(&format!("\"{code}\" = {}\n", if code == 688 { 3 } else { 1 }));
    }
    s
}

fn small(extra: &str) -> Result<Plan, PlanError> {
    let text = format!(
        "start = 2024-04-10\nend = 2024-07-08\n[denominators]\nadults = 1000\nodd = 1001\n{}\n{extra}",
        weights()
    );
    Plan::from_toml(&text, &pre())
}

fn district(g: &Geography, code: &str) -> AreaId {
    g.find(AreaLevel::District, code).unwrap()
}

#[test]
fn fixture_plan_has_the_reports_targets() {
    let g = pre();
    let p = Plan::from_toml(FIXTURE, &g).unwrap();
    assert_eq!((p.start(), p.end()), (d(4, 10), d(7, 8)));
    assert_eq!((p.end() - p.start()).num_days() + 1, 90);
    assert_eq!(p.time_zone(), chrono_tz::Asia::Ho_Chi_Minh);
    let prov = g.province();
    for (ind, target) in [
        (Indicator::Cccd, 7_101),
        (Indicator::Vneid, 334_507),
        (Indicator::Migrated2g, 211_000),
        (Indicator::Smartphone4g, 777_150), // round(0.9 × 863,500)
        (Indicator::SimSignature, 431_750), // round(0.5 × 863,500)
    ] {
        assert_eq!(p.target(ind, prov), target, "{ind}");
        assert_eq!(p.baseline(ind, prov), 0, "{ind}"); // 0 or unknown
        let sum: u64 = g.of_level(AreaLevel::District).map(|a| p.target(ind, a)).sum();
        assert_eq!(sum, target, "{ind}");
        assert!(g.of_level(AreaLevel::Commune).all(|a| p.target(ind, a) == 0));
        // Illustrative milestones: 30 % / 60 % / 100 % at days 30, 60, 90.
        assert_eq!(p.expected(ind, prov, d(7, 8)), target);
    }
    // cccd split by commune counts (Σ 111): 7101 ≡ −3 (mod 111), so a
    // district of weight w gets ⌊7101w/111⌋ = 64w − 1 with remainder
    // 111 − 3w. The floors sum to 64 × 111 − 11 = 7093; the 8 units left
    // go to the 8 largest remainders, i.e. every district but the three
    // heaviest (694: w 13, 692 and 696: w 16).
    let cccd: Vec<u64> = ["688", "689", "690", "691", "692", "693", "694", "695", "696", "697", "698"]
        .iter()
        .map(|c| p.target(Indicator::Cccd, district(&g, c)))
        .collect();
    assert_eq!(cccd, [448, 512, 384, 512, 1023, 448, 831, 704, 1023, 576, 640]);
    assert_eq!(p.expected(Indicator::Cccd, prov, d(5, 9)), 2130); // round(0.3 × 7101)
    assert_eq!(p.expected(Indicator::Vneid, prov, d(6, 8)), 200_704); // round(0.6 × 334507)
}

#[test]
fn expected_follows_baseline_then_milestones_then_flat() {
    let p = small(
        "[indicators.cccd]\ntarget = 1000\nbaseline = 100\nmilestones = [ { date = 2024-04-20, share = 0.3 }, { date = 2024-05-10, share = 0.5 } ]",
    )
    .unwrap();
    let prov = pre().province();
    let e = |day| p.expected(Indicator::Cccd, prov, day);
    assert_eq!(e(d(4, 1)), 100); // before start
    assert_eq!(e(d(4, 10)), 100); // start: the baseline
    assert_eq!(e(d(4, 11)), 120); // 100 + 200 × 1/10
    assert_eq!(e(d(4, 15)), 200); // 100 + 200 × 5/10
    assert_eq!(e(d(4, 20)), 300); // on the milestone
    assert_eq!(e(d(4, 23)), 330); // 300 + 200 × 3/20
    assert_eq!(e(d(4, 24)), 340);
    assert_eq!(e(d(5, 10)), 500);
    assert_eq!(e(d(6, 1)), 500); // flat after the last
    assert_eq!(e(d(8, 1)), 500); // and after the end
    assert!(p.is_running(d(4, 10)) && p.is_running(d(7, 8)));
    assert!(!p.is_running(d(4, 9)) && !p.is_running(d(7, 9)));
}

#[test]
fn expected_rounds_half_up_and_never_drops_below_the_baseline() {
    let p = small(
        "[indicators.vneid]\ntarget = 10\nbaseline = 5\nmilestones = [ { date = 2024-04-13, share = 0.1 }, { date = 2024-04-17, share = 0.8 } ]",
    )
    .unwrap();
    let prov = pre().province();
    let e = |day| p.expected(Indicator::Vneid, prov, day);
    // Milestone 1 = max(5, 1) = 5: flat. Then 5 → 8 over 4 days: 5.75, 6.5, 7.25, 8.
    assert_eq!([e(d(4, 12)), e(d(4, 13)), e(d(4, 14)), e(d(4, 15)), e(d(4, 16)), e(d(4, 17))], [5, 5, 6, 7, 7, 8]);
    // No milestones: flat at the baseline.
    let q = small("[indicators.vneid]\ntarget = 10\nbaseline = 4").unwrap();
    assert_eq!(q.expected(Indicator::Vneid, prov, d(7, 1)), 4);
    // Not in the plan: zero.
    assert_eq!(q.expected(Indicator::Cccd, prov, d(7, 1)), 0);
    assert_eq!(q.target(Indicator::Cccd, prov), 0);
}

#[test]
fn districts_split_by_largest_remainder_with_overrides() {
    let g = pre();
    // Weights: 688 → 3, ten others → 1; Σ = 13. 100 × 3/13 = 23.08, 100/13 = 7.69.
    // Floors 23 + 10 × 7 = 93; 7 left: the ten 0.69 remainders beat 0.08,
    // lower codes first → 689..=695 get 8, 696..=698 keep 7.
    let p = small("[indicators.cccd]\ntarget = 100\nbaseline = 13").unwrap();
    let t = |c| p.target(Indicator::Cccd, district(&g, c));
    assert_eq!([t("688"), t("689"), t("695"), t("696"), t("698")], [23, 8, 8, 7, 7]);
    let b = |c| p.baseline(Indicator::Cccd, district(&g, c));
    assert_eq!([b("688"), b("689"), b("698")], [3, 1, 1]);
    // An override takes its part first; the rest is split among the others.
    let p = small("[indicators.cccd]\ntarget = 100\nareas.\"688\" = { target = 50 }\nareas.\"25216\" = { target = 9, baseline = 2 }").unwrap();
    let t = |c| p.target(Indicator::Cccd, district(&g, c));
    assert_eq!(t("688"), 50);
    assert_eq!(t("689"), 5); // 50 / 10 each
    let c = g.find(AreaLevel::Commune, "25216").unwrap();
    assert_eq!((p.target(Indicator::Cccd, c), p.baseline(Indicator::Cccd, c)), (9, 2));
    let other = g.find(AreaLevel::Commune, "25195").unwrap();
    assert_eq!(p.target(Indicator::Cccd, other), 0);
    let sum: u64 = g.of_level(AreaLevel::District).map(|a| p.target(Indicator::Cccd, a)).sum();
    assert_eq!(sum, 100);
}

#[test]
fn ratio_targets_use_the_denominator() {
    let p = small("[indicators.smartphone_4g]\ntarget_ratio = 0.5\ndenominator = \"odd\"").unwrap();
    assert_eq!(p.target(Indicator::Smartphone4g, pre().province()), 501); // 500.5 rounds up
    let p = small("[indicators.smartphone_4g]\ntarget_ratio = 0.9\ndenominator = \"adults\"").unwrap();
    assert_eq!(p.target(Indicator::Smartphone4g, pre().province()), 900);
}

#[test]
fn invalid_plans_are_rejected() {
    let bad = |extra: &str| small(extra).unwrap_err();
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\ntarget_ratio = 0.5\ndenominator = \"adults\""),
        PlanError::TargetSpec { .. }
    ));
    assert!(matches!(bad("[indicators.cccd]\ntarget_ratio = 0.5"), PlanError::TargetSpec { .. }));
    assert!(matches!(bad("[indicators.cccd]\nbaseline = 1"), PlanError::TargetSpec { .. }));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget_ratio = 0.5\ndenominator = \"kids\""),
        PlanError::UnknownDenominator { .. }
    ));
    assert!(matches!(bad("[indicators.cccd]\ntarget_ratio = -0.5\ndenominator = \"adults\""), PlanError::Ratio { .. }));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-04-10, share = 0.5 }]"),
        PlanError::MilestoneDate { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-07-09, share = 0.5 }]"),
        PlanError::MilestoneDate { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 0.5 }, { date = 2024-05-01, share = 0.6 }]"),
        PlanError::MilestoneDate { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 0.5 }, { date = 2024-05-02, share = 0.4 }]"),
        PlanError::Share { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 1.6 }]"),
        PlanError::Share { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nareas.\"999\" = { target = 1 }"),
        PlanError::UnknownArea { .. }
    ));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 10\nareas.\"688\" = { target = 11 }"),
        PlanError::Split { sum: 11, total: 10, .. }
    ));
    assert!(matches!(bad("[indicators.cccd]\ntarget = 1\ntypo = 2"), PlanError::Toml(_)));
    assert!(matches!(
        bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01T00:00:00, share = 0.5 }]"),
        PlanError::Date { .. }
    ));
    assert!(matches!(bad("[indicators.vneid2]\ntarget = 1"), PlanError::Toml(_)));

    let g = pre();
    let plan = |s: &str| Plan::from_toml(s, &g).unwrap_err();
    assert!(matches!(plan("start = 2024-04-10\nend = 2024-04-09"), PlanError::DatesOutOfOrder { .. }));
    assert!(matches!(
        plan("start = 2024-04-10\nend = 2024-04-19\ntime_zone = \"Asia/Saigon2\""),
        PlanError::TimeZone(_)
    ));
    assert!(matches!(
        plan("start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"688\" = 0"),
        PlanError::Weight { .. }
    ));
    assert!(matches!(
        plan("start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"25216\" = 1"),
        PlanError::UnknownArea { .. }
    ));
    // A split needs a weight for every sharing district.
    assert!(matches!(
        plan("start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"688\" = 1\n[indicators.cccd]\ntarget = 5"),
        PlanError::MissingWeight { what: "target", .. }
    ));
    // Overrides of every district must add up to the province target.
    let all: String = (688..=698).map(|c| format!("areas.\"{c}\" = {{ target = 1 }}\n")).collect();
    assert!(matches!(
        plan(&format!("start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 12\n{all}")),
        PlanError::Split { sum: 11, total: 12, .. }
    ));
    assert!(Plan::from_toml(
        &format!("start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 11\n{all}"),
        &g
    )
    .is_ok());
}

#[test]
fn baselines_can_be_unknown_per_indicator_and_area() {
    let g = pre();
    let c = |code| g.find(AreaLevel::Commune, code).unwrap();
    // Province unknown: districts with a count are known, the others and
    // the unlisted communes are not.
    let p = small(
        "[indicators.sim_signature]\ntarget = 100\nbaseline = \"unknown\"\n\
         areas.\"688\" = { baseline = 7, baseline_source = \"Viettel, 31/3/2024\" }\n\
         areas.\"25216\" = { baseline = 2 }",
    )
    .unwrap();
    let ind = Indicator::SimSignature;
    assert_eq!(p.baseline_of(ind, g.province()), Baseline::Unknown);
    assert_eq!(p.baseline_of(ind, district(&g, "688")), Baseline::Known(7));
    assert_eq!(p.baseline_source(ind, district(&g, "688")), Some("Viettel, 31/3/2024"));
    assert_eq!(p.baseline_of(ind, district(&g, "689")), Baseline::Unknown);
    assert_eq!(p.baseline(ind, district(&g, "689")), 0);
    assert_eq!(p.baseline_of(ind, c("25216")), Baseline::Known(2));
    assert_eq!(p.baseline_of(ind, c("25195")), Baseline::Unknown);
    // Targets are still split (100 × 3/13 → 23 for 688).
    assert_eq!(p.target(ind, district(&g, "688")), 23);
    // Other indicators are untouched.
    assert_eq!(p.baseline_of(Indicator::Cccd, g.province()), Baseline::Known(0));
    // Province known: a commune may be unknown, a district may not.
    let p =
        small("[indicators.cccd]\ntarget = 100\nbaseline = 13\nareas.\"25216\" = { baseline = \"unknown\" }").unwrap();
    assert!(!p.baseline_known(Indicator::Cccd, c("25216")));
    assert!(p.baseline_known(Indicator::Cccd, c("25195")));
    assert!(p.baseline_known(Indicator::Cccd, district(&g, "689")));
    assert!(matches!(
        small("[indicators.cccd]\ntarget = 100\nbaseline = 13\nareas.\"688\" = { baseline = \"unknown\" }"),
        Err(PlanError::UnknownUnderKnown { .. })
    ));
    // Only a count or the word "unknown"; a source is not empty.
    assert!(matches!(small("[indicators.cccd]\ntarget = 1\nbaseline = \"unkown\""), Err(PlanError::Toml(_))));
    assert!(matches!(
        small("[indicators.cccd]\ntarget = 1\nbaseline = 0\nbaseline_source = \" \""),
        Err(PlanError::EmptySource { .. })
    ));
}

#[test]
fn the_2024_plan_does_not_know_the_share_baselines() {
    let g = pre();
    let p = Plan::from_toml(FIXTURE, &g).unwrap();
    for ind in [Indicator::Smartphone4g, Indicator::SimSignature] {
        assert!(g.areas().iter().enumerate().all(|(i, _)| !p.baseline_known(ind, AreaId(i as u16))), "{ind}");
    }
    for ind in [Indicator::Cccd, Indicator::Vneid, Indicator::Migrated2g] {
        assert_eq!(p.baseline_of(ind, g.province()), Baseline::Known(0), "{ind}");
    }
}

#[test]
fn needed_pace_follows_the_milestone_segments() {
    let p = small(
        "[indicators.cccd]\ntarget = 1000\nbaseline = 100\nmilestones = [ { date = 2024-04-20, share = 0.3 }, { date = 2024-05-10, share = 0.5 } ]",
    )
    .unwrap();
    let prov = pre().province();
    let n = |day| p.needed_per_day(Indicator::Cccd, prov, day);
    assert_eq!(n(d(4, 9)), 0.0); // before the start
    assert_eq!(n(d(4, 10)), 20.0); // 100 → 300 over 10 days
    assert_eq!(n(d(4, 20)), 20.0);
    assert_eq!(n(d(4, 21)), 10.0); // 300 → 500 over 20 days
    assert_eq!(n(d(5, 11)), 0.0); // after the last milestone
}

#[test]
fn post2025_geography_has_no_district_split() {
    let g = Geography::load(GeographyVersion::Post2025).unwrap();
    let p = Plan::from_toml(
        "start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 7\nareas.\"25217\" = { target = 3 }",
        &g,
    )
    .unwrap();
    assert_eq!(p.target(Indicator::Cccd, g.province()), 7);
    assert_eq!(p.target(Indicator::Cccd, g.find(AreaLevel::Commune, "25217").unwrap()), 3);
    assert!(matches!(Plan::from_toml(FIXTURE, &g), Err(PlanError::UnknownArea { .. })));
}
