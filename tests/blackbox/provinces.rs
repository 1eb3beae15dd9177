//! Issue 13: one deployment tracking two provinces, Bình Phước (70) and
//! Bình Dương (74), before the 2025 reform, each with its own plan (74's
//! starts three weeks later). Streams of both, sharing subjects (people and
//! SIMs that move), and of a province not tracked (79) go through the real
//! broker. ClickHouse equals an independent recount per province, each from
//! its own plan's start; 79's messages are dead letters; each province has
//! its board, gauges and daily report; an untracked one is refused.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::crash::{generate_in, messages, recount, Raw};
use crate::events::COMMUNES;
use crate::harness::{spawn_app, AppOptions, Producer};
use crate::scale_out::until_recount;

const DISTRICTS: &str = include_str!("../../aggregator/data/national/districts_pre2025.csv");
const COMMUNES_PRE: &str = include_str!("../../aggregator/data/national/communes_pre2025.csv");

/// A province's districts (code, name), from the data file.
fn districts(province: &str) -> Vec<(String, String)> {
    DISTRICTS
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == province).then(|| (f[1].to_owned(), f[2].to_owned()))
        })
        .collect()
}

/// One commune per district of `province`: (commune, district).
fn places(province: &str) -> Vec<(&'static str, &'static str)> {
    let ds: HashSet<String> = districts(province).into_iter().map(|(c, _)| c).collect();
    let mut seen = HashSet::new();
    COMMUNES_PRE
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&'static str> = l.split(',').collect();
            (ds.contains(f[0]) && seen.insert(f[0])).then(|| (f[1], f[0]))
        })
        .collect()
}

/// Every code (province, districts, communes) of `province`.
fn codes(province: &str) -> HashSet<String> {
    let ds: HashSet<String> = districts(province).into_iter().map(|(c, _)| c).collect();
    let communes = COMMUNES_PRE.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        ds.contains(f[0]).then(|| f[1].to_owned())
    });
    communes.chain(ds.iter().cloned()).chain([province.to_owned()]).collect()
}

/// Bình Dương's plan: a CCCD target split evenly among its districts.
fn binh_duong_plan() -> String {
    let weights: String = districts("74").iter().map(|(c, _)| format!("\"{c}\" = 1\n")).collect();
    format!(
        "name = \"Bình Dương — kế hoạch thử\"\nstart = 2024-05-01\nend = 2024-07-08\n\
         [district_weights]\n{weights}[indicators.cccd]\ntarget = 9000\n\
         milestones = [ {{ date = 2024-07-08, share = 1.0 }} ]\n"
    )
}

/// The streams merged in proportion (the i-th of n events at i/n), each
/// keeping its own order: together they move forward in time as one.
fn interleave(streams: &[&[Raw]]) -> Vec<Raw> {
    let mut keyed: Vec<(f64, &Raw)> =
        streams.iter().flat_map(|s| s.iter().enumerate().map(move |(i, r)| (i as f64 / s.len() as f64, r))).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, r)| r.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_provinces_count_apart_each_against_its_own_plan() {
    let seed: u64 = rand::random();
    eprintln!("provinces test: seed {seed}");
    let (bp, bd) = (generate_in(10_000, seed, "70", &COMMUNES), generate_in(10_000, seed ^ 1, "74", &places("74")));
    let tracked = [bp.clone(), bd.clone()].concat();
    let untracked = generate_in(2_000, seed ^ 2, "79", &places("79"));
    let subjects =
        |p: &str| -> HashSet<&str> { tracked.iter().filter(|r| r.province == p).map(|r| r.subject.as_str()).collect() };
    assert!(subjects("70").intersection(&subjects("74")).count() > 200, "the provinces share subjects");
    // Every fact counts in its own province; 74's rows start with its plan.
    let full = recount(&tracked);
    let ours74 = codes("74");
    let mut expected = full.clone();
    expected.retain(|(_, _, area, day), _| !ours74.contains(area) || day.as_str() >= "2024-05-01");
    assert!(expected.len() < full.len() && expected.keys().any(|k| k.2 == "74"));

    let plans = tempfile::tempdir().expect("tempdir");
    let plan74 = plans.path().join("binh-duong.toml");
    std::fs::write(&plan74, binh_duong_plan()).expect("plan");
    let plan70 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/plans/binh-phuoc-2024.toml");
    let partitions = 2;
    let app = spawn_app(AppOptions {
        partitions,
        shards: 2,
        extra_toml: format!(
            "[contract]\nprovinces = [\"70\", \"74\"]\n[plan.by_province]\n\"70\" = \"{}\"\n\"74\" = \"{}\"\n",
            plan70.display(),
            plan74.display()
        ),
        ..AppOptions::default()
    })
    .await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    // As one national stream: the provinces' events interleaved, each in its own order.
    let all = interleave(&[&bp, &bd, &untracked]);
    Producer::new().send_all(&messages(&all, &topics, partitions, &mut rng)).await;

    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(180)).await {
        panic!("{diff}\n{}", app.log_tail(20));
    }
    // Province 79 is not tracked: each of its messages is a dead letter, for its area (and nothing else is).
    app.wait_for("79's dead letters", Duration::from_secs(60), || async {
        app.clickhouse("SELECT count() FROM dead_letters FINAL").await.trim().parse::<usize>().ok()
            == Some(untracked.len())
    })
    .await;
    let reasons = app.clickhouse("SELECT DISTINCT reason FROM dead_letters FINAL").await;
    assert_eq!(reasons.trim(), "unknown_area");

    // The gauges: covered = baseline (0 for CCCD in both plans) + every gain − loss, before the start too.
    let net = |area: &str| -> i64 {
        full.iter()
            .filter(|((i, l, a, _), _)| i == "cccd" && l == "province" && a == area)
            .map(|(_, (g, l))| g - l)
            .sum()
    };
    let gauge = |m: &crate::harness::Metrics, area: &str, name: &str| {
        m.get(name, &[("indicator", "cccd"), ("area_level", "province"), ("area", area)])
    };
    app.wait_for("both provinces' gauges", Duration::from_secs(30), || async {
        let m = app.metrics().await;
        ["70", "74"].iter().all(|p| gauge(&m, p, "d06_coverage_covered") == Some(net(p) as f64))
    })
    .await;
    let m = app.metrics().await;
    assert_eq!(gauge(&m, "74", "d06_coverage_target"), Some(9000.0), "74 against its own plan");
    assert_eq!(gauge(&m, "70", "d06_coverage_target"), Some(7101.0), "70 against its own plan");
    // Every area series names its province (from the data files, not d06's
    // types), so one province's districts sum to that province's figure.
    let (c70, c74) = (codes("70"), codes("74"));
    let mut labelled = 0;
    for (name, labels, _) in &m.series {
        let Some(area) = labels.get("area") else { continue };
        let want = match (c70.contains(area), c74.contains(area)) {
            (true, false) => "70",
            (false, true) => "74",
            _ => panic!("{name}: area {area} is of neither province"),
        };
        assert_eq!(labels.get("province").map(String::as_str), Some(want), "{name} {labels:?}");
        labelled += 1;
    }
    assert!(labelled > 100, "only {labelled} area series");
    for p in ["70", "74"] {
        let label =
            |l: &std::collections::BTreeMap<String, String>, k: &str, v: &str| l.get(k).map(String::as_str) == Some(v);
        let districts: f64 = m
            .series
            .iter()
            .filter(|(n, l, _)| {
                n == "d06_coverage_covered"
                    && label(l, "indicator", "cccd")
                    && label(l, "area_level", "district")
                    && label(l, "province", p)
            })
            .map(|(_, _, v)| v)
            .sum();
        assert_eq!(districts, net(p) as f64, "{p}: its districts sum to it");
    }

    // A board per province; the first by default; an untracked one is a 404.
    let board = |query: &'static str| {
        let url = format!("http://127.0.0.1:{}/board/state{query}", app.metrics_port);
        async move {
            let r = reqwest::get(&url).await.expect("board");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        }
    };
    let state = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json");
    let (status, body) = board("").await;
    assert_eq!((status, state(&body)["province"]["code"].as_str()), (200, Some("70")));
    let (status, body) = board("?province=74").await;
    assert_eq!(status, 200);
    let s74 = state(&body);
    assert_eq!(s74["province"]["code"], "74");
    assert_eq!(s74["campaign"], "Bình Dương — kế hoạch thử");
    let listed: Vec<&str> =
        s74["districts"].as_array().expect("rows").iter().filter_map(|d| d["code"].as_str()).collect();
    let want: Vec<String> = districts("74").into_iter().map(|(c, _)| c).collect();
    assert_eq!(listed, want);
    let links: Vec<&str> =
        s74["provinces"].as_array().expect("links").iter().filter_map(|p| p["code"].as_str()).collect();
    assert_eq!(links, ["70", "74"]);
    let (status, body) = board("?province=79").await;
    assert!(status == 404 && body.contains("it tracks 70, 74"), "{status} {body}");

    // Each province's daily report reads ClickHouse and checks it against that province's plan.
    let day = app.clickhouse("SELECT toString(max(day)) FROM plan_daily FINAL").await.trim().to_owned();
    assert!(day.as_str() > "2024-07-01", "the stream reached the campaign's last week: {day}");
    let report = |province: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_d06"))
            .args(["report", "daily", "--day", &day, "--province", province, "--config"])
            .arg(&app.config_path)
            .output()
            .expect("d06 report")
    };
    for (province, name) in [("70", "Bình Phước"), ("74", "Bình Dương")] {
        let out = report(province);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "report {province}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(name), "{text}");
        for (_, district) in districts(province) {
            assert!(text.contains(&district), "{district} in the report of {province}");
        }
    }
    let out = report("79");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not tracked by this deployment (it tracks 70, 74)"));
}
