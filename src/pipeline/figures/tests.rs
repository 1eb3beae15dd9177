//! The figures' unit tests: statuses and the board from sums over all shards.

#![allow(clippy::unwrap_used)]

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
            let text = format!(
                "name = \"KH {target}\"\nstart = 2026-01-01\nend = 2026-03-31\n[indicators.cccd]\ntarget = {target}\n"
            );
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
                l.starts_with("d06_coverage_target{") && l.contains(&format!(r#"area="{code}""#)) && l.contains("cccd")
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
