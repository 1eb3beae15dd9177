//! Issue 15: honest baselines. A plan may say a baseline is unknown; the
//! area then shows its pace, is never behind and raises no alert, and
//! `/metrics`, ClickHouse and the board say so alike. Baselines come from
//! data through `d06 plan import-baseline`, which refuses a file with an
//! unknown area code (exit 78) and leaves the plan untouched. A plan may
//! instead name its baseline file (`baseline_file`): `check-config` refuses
//! a missing or bad one, and `d06 run`, ClickHouse, `/metrics`, `d06 report
//! daily` and `d06 alerts send` all take their baselines from it.
//!
//! Expectations are worked out here from the plan text and the events, not
//! with the production types.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::daily_alerts::{send, Alertmanager};
use crate::events::{self, phone, Place, COMMUNES};
use crate::harness::{spawn_app, App, AppOptions, Producer};
use crate::webhook::Webhooks;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `d06 ARGS…`, with a time limit.
fn d06(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_d06"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn d06");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("d06 {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn import_baseline_writes_the_plan_and_refuses_an_unknown_area_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.toml");
    std::fs::copy(repo().join("deploy/plans/binh-phuoc-2024.toml"), &plan).expect("copy plan");
    let plan_s = plan.to_str().unwrap();
    let csv = dir.path().join("baselines.csv");
    std::fs::write(
        &csv,
        "indicator,area,baseline,source\n\
         # the carriers' figures, end of March 2024\n\
         smartphone_4g,688,19800,\"Viettel Bình Phước, 31/3/2024\"\n\
         sim_signature,70,43175,Sở TT&TT\n\
         sim_signature,25216,unknown,chưa có số liệu\n",
    )
    .unwrap();

    let out = d06(&["plan", "import-baseline", "--plan", plan_s, "--csv", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("3 baselines imported"), "{}", text(&out.stdout));
    let written = std::fs::read_to_string(&plan).unwrap();
    let v: toml::Value = toml::from_str(&written).expect("the plan is still TOML");
    let ind = |name: &str| &v["indicators"][name];
    assert_eq!(ind("smartphone_4g")["areas"]["688"]["baseline"].as_integer(), Some(19_800));
    assert_eq!(ind("smartphone_4g")["areas"]["688"]["baseline_source"].as_str(), Some("Viettel Bình Phước, 31/3/2024"));
    assert_eq!(ind("smartphone_4g")["baseline"].as_str(), Some("unknown"), "no province row: still unknown");
    assert_eq!(ind("sim_signature")["baseline"].as_integer(), Some(43_175));
    assert_eq!(ind("sim_signature")["baseline_source"].as_str(), Some("Sở TT&TT"));
    assert_eq!(ind("sim_signature")["areas"]["25216"]["baseline"].as_str(), Some("unknown"));
    assert_eq!(ind("cccd")["target"].as_integer(), Some(7_101), "the rest of the plan is kept");
    assert!(written.contains("# Bình Phước, 2024"), "comments are kept");

    // d06 itself accepts the written plan.
    let config = dir.path().join("d06.toml");
    std::fs::write(&config, format!("[plan]\nfile = \"{}\"\n", plan.display())).unwrap();
    let out = d06(&["check-config", "--without-key", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The same file again changes nothing.
    let out = d06(&["plan", "import-baseline", "--plan", plan_s, "--csv", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), written);

    // An unknown area code (a post-2025 commune against the pre-2025
    // geography would be one too) refuses the whole file: exit 78, the
    // plan untouched, the line named.
    for (body, says) in [
        ("smartphone_4g,689,100,ok\nsmartphone_4g,99999,5,x\n", "line 3: unknown area code \"99999\""),
        ("smartphone_4g,689,100,\n", "line 2: the source may not be empty"),
        ("cccd,70,10,a\ncccd,688,11,b\n", "district baselines sum to 11, the province baseline is 10"),
    ] {
        std::fs::write(&csv, format!("indicator,area,baseline,source\n{body}")).unwrap();
        let out = d06(&["plan", "import-baseline", "--plan", plan_s, "--csv", csv.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{body}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{body}: {}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(&plan).unwrap(), written, "{body}: the plan changed");
    }
}

/// A plan naming its own baseline file (`baseline_file`, relative to the
/// plan): `check-config` loads it without an import; a missing file or a
/// bad row is a configuration error (exit 78) in one line naming the file
/// (and the row).
#[test]
fn check_config_loads_the_baseline_file_the_plan_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("plans")).unwrap();
    let plan = dir.path().join("plans/plan.toml");
    let fixture = std::fs::read_to_string(repo().join("deploy/plans/binh-phuoc-2024.toml")).expect("plan");
    std::fs::write(&plan, format!("baseline_file = \"baselines.csv\"\n{fixture}")).unwrap();
    let config = dir.path().join("d06.toml");
    std::fs::write(&config, format!("[plan]\nfile = \"{}\"\n", plan.display())).unwrap();
    let check = || d06(&["check-config", "--without-key", config.to_str().unwrap()]);
    let csv = dir.path().join("plans/baselines.csv");

    let out = check();
    assert_eq!(out.status.code(), Some(78), "missing file: {}", text(&out.stderr));
    let lines: Vec<String> =
        text(&out.stderr).lines().filter(|l| l.contains("baselines.csv")).map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "one line names the file: {}", text(&out.stderr));
    assert!(lines[0].contains(&format!("reading the baseline file {}", csv.display())), "{}", lines[0]);

    std::fs::write(&csv, "indicator,area,baseline,source\nsmartphone_4g,688,19800,Viettel\nsim_signature,12345,1,x\n")
        .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(78), "bad row: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).matches("baseline file baselines.csv: line 3: unknown area code \"12345\"").count(),
        1,
        "the row named once: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).matches("line 3").count(), 1, "{}", text(&out.stderr));

    std::fs::write(&csv, "indicator,area,baseline,source\nsmartphone_4g,688,19800,Viettel\n").unwrap();
    let out = check();
    assert!(out.status.success(), "good file: {}", text(&out.stderr));
}

/// 10/4–30/4/2024, every district weighs 1; sim_signature 110 (10 per
/// district) all by 20/4 — a district is expected to have k by the end of
/// 10/4 + k days — with the baseline unknown except in 688 (0, known).
fn plan_toml() -> String {
    let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
    format!(
        "name = \"Kiểm thử số liệu nền\"\nstart = 2024-04-10\nend = 2024-04-30\n\
         [district_weights]\n{weights}\n[indicators.sim_signature]\ntarget = 110\nbaseline = \"unknown\"\n\
         milestones = [ {{ date = 2024-04-20, share = 1.0 }} ]\n\
         areas.\"688\" = {{ baseline = 0, baseline_source = \"kiểm thử\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_baseline_shows_its_pace_and_is_never_behind_nor_alerted() {
    let hooks = Webhooks::listen("127.0.0.1:0", None).await;
    let am = Alertmanager::start(hooks.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, plan_toml()).expect("plan");
    let app = spawn_with_plan(&plan, &am.url()).await;

    // District i (GSO order) gets i signatures on 11/4; 689 one more on
    // 12/4, the newest event (event clock: today is 12/4). 688 has none.
    let producer = Producer::new();
    let mut sent = 0u64;
    let mut installed = [0u64; 11];
    for (i, (commune, _)) in COMMUNES.iter().enumerate() {
        for _ in 0..i {
            sent += 1;
            installed[i] += 1;
            let m = events::signature(
                &format!("s{sent}"),
                "2024-04-11T09:00:00+07:00",
                Place::Commune(commune),
                &phone(sent),
                "installed",
            );
            producer.send(&app.topics.sim, 0, None, m.as_bytes()).await;
        }
    }
    sent += 1;
    installed[1] += 1;
    let m = events::signature(
        "s-last",
        "2024-04-12T09:00:00+07:00",
        Place::Commune(COMMUNES[1].0),
        &phone(sent),
        "installed",
    );
    producer.send(&app.topics.sim, 0, None, m.as_bytes()).await;
    app.wait_consumed(sent, Duration::from_secs(60)).await;
    app.wait_for("12/4 in ClickHouse and on /metrics", Duration::from_secs(60), || async {
        let ch = app.clickhouse("SELECT sum(gained), max(day) FROM coverage_daily WHERE area_level = 'province'").await;
        let m = app.metrics().await;
        ch == format!("{sent}\t2024-04-12\n")
            && m.get("d06_coverage_covered", &[("indicator", "sim_signature"), ("area_level", "province")])
                == Some(sent as f64)
    })
    .await;

    // /metrics: on 12/4 (k = 2) the plan expects 2 per district and 10 a
    // day over 10 days → 1 a day. Pace: signatures in the last 7 days / 7.
    let m = app.metrics().await;
    let board: Value = reqwest::get(format!("http://127.0.0.1:{}/board/state", app.metrics_port))
        .await
        .expect("board")
        .json()
        .await
        .expect("board json");
    let baseline_rows = app
        .clickhouse(
            "SELECT area, baseline_known, source FROM coverage_baseline FINAL \
             WHERE indicator = 'sim_signature' AND area_level = 'district' ORDER BY area",
        )
        .await;
    let covered_rows = app
        .clickhouse(
            "SELECT area, covered FROM coverage_daily \
             WHERE indicator = 'sim_signature' AND area_level = 'district' AND day = '2024-04-12' ORDER BY area",
        )
        .await;
    let ch_known: Vec<(String, String)> = baseline_rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), format!("{}\t{}", f[1], f[2]))
        })
        .collect();
    assert_eq!(ch_known.len(), 11, "{baseline_rows}");
    let ch_covered: Vec<&str> = covered_rows.lines().collect();
    assert_eq!(ch_covered.len(), 11, "{covered_rows}");
    for (i, (_, district)) in COMMUNES.iter().enumerate() {
        let labels = [("indicator", "sim_signature"), ("area_level", "district"), ("area", *district)];
        let g = |name: &str| m.get(name, &labels);
        let known = *district == "688";
        let at = format!("district {district}");
        assert_eq!(g("d06_coverage_baseline_known"), Some(if known { 1.0 } else { 0.0 }), "{at}");
        assert_eq!(g("d06_coverage_covered"), Some(installed[i] as f64), "{at}");
        assert_eq!(g("d06_coverage_expected"), Some(2.0), "{at}");
        assert_eq!(g("d06_coverage_needed_per_day"), Some(1.0), "{at}");
        assert_eq!(g("d06_coverage_pace_per_day"), Some(installed[i] as f64 / 7.0), "{at}");
        // 688 (known, 0 of 2): expected was last ≤ 0 on 10/4, two days ago.
        assert_eq!(g("d06_coverage_days_behind"), if known { Some(2.0) } else { None }, "{at}");
        // ClickHouse says the same.
        let source = if known { "kiểm thử" } else { "" };
        assert_eq!(ch_known[i], (district.to_string(), format!("{}\t{source}", u8::from(known))), "{at}");
        assert_eq!(ch_covered[i], format!("{district}\t{}", installed[i]), "{at}");
        // The board: 688 red, the others their pace in Vietnamese.
        let cell = board["districts"][i]["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["indicator"] == "sim_signature")
            .cloned()
            .unwrap_or_else(|| panic!("{at}: no sim_signature cell in {board}"));
        assert_eq!(cell["baseline_known"], known, "{at}");
        assert_eq!(cell["lagging"], known, "{at}: {cell}");
        if known {
            assert!(cell["note"].is_null(), "{at}: {cell}");
        } else {
            // i / 7 a day, one decimal with a comma (689: 2/7 → "0,3").
            let tenths = (installed[i] as f64 / 7.0 * 10.0).round() as u64;
            let pace = if tenths.is_multiple_of(10) {
                format!("{}", tenths / 10)
            } else {
                format!("{},{}", tenths / 10, tenths % 10)
            };
            assert_eq!(cell["note"], format!("Chưa có số liệu nền — tốc độ {pace}/ngày, cần 1"), "{at}");
        }
    }
    // Far below the plan's line in most districts, yet only 688 is alerted.
    let (ok, stdout, stderr) = send(&app, "2024-04-12").await;
    assert!(ok, "d06 alerts send failed:\n{stderr}");
    assert_eq!(stdout, "688\tsim_signature\n1 daily alert(s) sent for 2024-04-12\n", "{stderr}");
    assert_eq!(am.alerts_received().await, 1.0);
}

/// The baseline file of [`a_plan_naming_its_baseline_file_runs_reports_and_alerts_from_it`]:
/// (district, baseline, source) for smartphone 4G. 688 is known from the
/// file; no row names 689, the province or any other district, so their
/// baselines stay unknown.
const FILE_BASELINES: [(&str, u64, &str); 1] = [("688", 40, "Viettel Bình Phước, 31/3/2024")];

/// Smartphone 4G swaps (district's commune index in `COMMUNES`, local
/// date, count): one in 688 before the campaign (8/4), which `covered`
/// counts from the first day; 688 3 on 11/4 and 2 on 12/4; 689 4 and 1.
const SWAPS: [(usize, &str, u64); 5] =
    [(0, "2024-04-08", 1), (0, "2024-04-11", 3), (0, "2024-04-12", 2), (1, "2024-04-11", 4), (1, "2024-04-12", 1)];

/// The campaign's days the test reads back (the event clock ends on 12/4).
const DAYS: [&str; 3] = ["2024-04-10", "2024-04-11", "2024-04-12"];

/// Priority 1 of issue 15's end: a plan whose smartphone-4G baselines come
/// only from the CSV file it names (`baseline_file`, relative to the plan),
/// run end to end. 10/4–30/4/2024, every district weighs 1, smartphone 4G
/// 1,100 (100 a district) all by 20/4, province baseline unknown; the file
/// gives 688 a baseline of 40.
///
/// 688 (known, from the file): the plan expects 40 on 10/4 and then
/// 40 + round(60 × (d − 10) / 10), i.e. 46 on 11/4 and 52 on 12/4. It has
/// 40 + 1 (8/4) = 41, 44 and 46: 46 < 0.95 × 52 = 49.4, lagging; the
/// latest day whose expected does not exceed today's 46 is 11/4 (46), so
/// 1 day behind.
/// 689 (unknown): 0 + 4 + 1 = 5 against an expected 20 on 12/4, never
/// behind, no alert. Had the file been ignored, 688 would be unknown too and
/// nothing would be alerted; had the baseline been dropped from `covered`,
/// 688 would show 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_naming_its_baseline_file_runs_reports_and_alerts_from_it() {
    let hooks = Webhooks::listen("127.0.0.1:0", None).await;
    let am = Alertmanager::start(hooks.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("plans")).unwrap();
    let plan = dir.path().join("plans/plan.toml");
    let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
    std::fs::write(
        &plan,
        format!(
            "baseline_file = \"smartphone.csv\"\nname = \"Kiểm thử tệp số liệu nền\"\n\
             start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n\
             [indicators.smartphone_4g]\ntarget = 1100\nbaseline = \"unknown\"\n\
             milestones = [ {{ date = 2024-04-20, share = 1.0 }} ]\n"
        ),
    )
    .expect("plan");
    let rows: String = FILE_BASELINES.iter().map(|(a, b, s)| format!("smartphone_4g,{a},{b},\"{s}\"\n")).collect();
    std::fs::write(dir.path().join("plans/smartphone.csv"), format!("indicator,area,baseline,source\n{rows}"))
        .expect("csv");
    let app = spawn_with_plan(&plan, &am.url()).await;

    let producer = Producer::new();
    let mut sent = 0u64;
    for (district, day, count) in SWAPS {
        for _ in 0..count {
            sent += 1;
            let m = events::swap(
                &format!("w{sent}"),
                &format!("{day}T10:00:00+07:00"),
                Place::Commune(COMMUNES[district].0),
                &phone(sent),
                "smartphone",
            );
            producer.send(&app.topics.sim, 0, None, m.as_bytes()).await;
        }
    }
    app.wait_consumed(sent, Duration::from_secs(60)).await;

    // The recount: baseline from the file (0 where unknown) plus every swap
    // on or before the day, pre-campaign ones included.
    let baseline = |area: &str| FILE_BASELINES.iter().find(|(a, _, _)| *a == area).map_or(0, |(_, b, _)| *b);
    let gained = |district: Option<&str>, day: &str| -> u64 {
        SWAPS
            .iter()
            .filter(|(i, d, _)| district.is_none_or(|c| COMMUNES[*i].1 == c) && *d <= day)
            .map(|(_, _, n)| n)
            .sum()
    };
    let mut expected = String::new();
    for day in DAYS {
        for (_, district) in COMMUNES {
            expected += &format!("district\t{district}\t{day}\t{}\n", baseline(district) + gained(Some(district), day));
        }
        expected += &format!("province\t70\t{day}\t{}\n", gained(None, day));
    }
    let query = "SELECT area_level, area, toString(day), covered FROM coverage_daily \
                 WHERE indicator = 'smartphone_4g' AND area_level IN ('district', 'province') \
                 AND day >= '2024-04-10' ORDER BY day, area_level, area";
    // Up to 60 s for the last flush; then the difference, if any, is shown.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut got = app.clickhouse(query).await;
    while got != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = app.clickhouse(query).await;
    }
    assert_eq!(got, expected, "coverage_daily (smartphone_4g) against the file's baseline + the recount");

    // /metrics: today's (12/4) covered, known flags and days behind agree
    // (read back after the flush that wrote ClickHouse).
    let today = DAYS[DAYS.len() - 1];
    let d688 = [("indicator", "smartphone_4g"), ("area_level", "district"), ("area", "688")];
    app.wait_for("12/4 on /metrics", Duration::from_secs(30), || async {
        app.metrics().await.get("d06_coverage_covered", &d688)
            == Some((baseline("688") + gained(Some("688"), today)) as f64)
    })
    .await;
    let m = app.metrics().await;
    for (_, district) in COMMUNES {
        let labels = [("indicator", "smartphone_4g"), ("area_level", "district"), ("area", district)];
        let known = district == "688";
        assert_eq!(
            m.get("d06_coverage_covered", &labels),
            Some((baseline(district) + gained(Some(district), today)) as f64),
            "{district}"
        );
        assert_eq!(m.get("d06_coverage_baseline_known", &labels), Some(f64::from(u8::from(known))), "{district}");
        assert_eq!(m.get("d06_coverage_days_behind", &labels), known.then_some(1.0), "{district}");
    }
    let province = [("indicator", "smartphone_4g"), ("area_level", "province")];
    assert_eq!(m.get("d06_coverage_covered", &province), Some(gained(None, today) as f64));
    assert_eq!(m.get("d06_coverage_baseline_known", &province), Some(0.0));
    let sources = app
        .clickhouse(
            "SELECT area, baseline_known, source FROM coverage_baseline FINAL \
             WHERE indicator = 'smartphone_4g' AND area_level = 'district' AND baseline_known = 1",
        )
        .await;
    assert_eq!(sources, "688\t1\tViettel Bình Phước, 31/3/2024\n");

    // d06 report daily: 688 shows the file's baseline in its figures, 689
    // its own gains, no days behind and no average.
    let report = crate::reports::report(&app, &["daily", "--day", today]).expect("d06 report daily");
    let cells = |code: &str| -> Vec<String> {
        report
            .lines()
            .find(|l| l.starts_with(&format!("| {code} |")))
            .unwrap_or_else(|| panic!("no row {code} in\n{report}"))
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let header = cells("Mã");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let sp = |code: &str| -> Vec<String> {
        let row = cells(code);
        ["Đạt/chỉ tiêu", "%", "% KH", "Chậm (ngày)", "Tăng trong ngày"]
            .iter()
            .map(|c| row[col(&format!("ĐTTM 4G: {c}"))].clone())
            .chain([row[col("Bình quân")].clone()])
            .collect()
    };
    // 688: 46/100, 46 %; expected 52 %; 1 day behind; 2 gained on 12/4;
    // the average of the one indicator with a target and a known baseline.
    assert_eq!(sp("688"), ["46/100", "46,00%", "52,00%", "1", "2", "46,00%"], "{report}");
    // 689: 5/100; expected 0 + round(100 × 2 / 10) = 20; unknown: "—".
    assert_eq!(sp("689"), ["5/100", "5,00%", "20,00%", "—", "1", "—"], "{report}");
    let unknown: Vec<&str> = COMMUNES.iter().map(|(_, d)| *d).filter(|d| *d != "688").chain(["70"]).collect();
    let note = format!(
        "Bình quân và Xếp hạng không tính chỉ tiêu chưa có số liệu nền (số đã đạt chỉ tính từ số tăng, \
         chưa so được với chỉ tiêu): ĐTTM 4G ({}).",
        unknown.join(", ")
    );
    assert!(report.contains(&note), "{note}\nnot in\n{report}");

    // The daily alerts: 688 (known from the file, lagging) only; 689 is
    // further below the line but its baseline is unknown.
    let (ok, stdout, stderr) = send(&app, today).await;
    assert!(ok, "d06 alerts send failed:\n{stderr}");
    assert_eq!(stdout, format!("688\tsmartphone_4g\n1 daily alert(s) sent for {today}\n"), "{stderr}");
    assert_eq!(am.alerts_received().await, 1.0);
}

/// d06 (one source partition, two shards) running `plan`, alerting to `alertmanager`.
async fn spawn_with_plan(plan: &std::path::Path, alertmanager: &str) -> App {
    spawn_app(AppOptions {
        partitions: 1,
        shards: 2,
        extra_toml: format!("[plan]\nfile = \"{}\"\n[alerts]\nalertmanager_url = \"{alertmanager}\"\n", plan.display()),
        ..AppOptions::default()
    })
    .await
}
