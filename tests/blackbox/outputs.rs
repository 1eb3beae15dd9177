//! Issue 4: outputs. Events through the real broker land in ClickHouse and on
//! `/metrics` with exact values, a real Prometheus scrapes them, and a replay
//! from the beginning changes nothing.

use std::time::{Duration, Instant};

use crate::events::{self, Place};
use crate::harness::{spawn_app, AppOptions, Producer, Prometheus};

fn stream() -> Vec<(usize, String)> {
    // Three CCCD applications in district 688 (one a duplicate, one late and earlier),
    // one in 696; VNeID activations; a signature installed then revoked.
    let a = Place::Commune("25216");
    let b = Place::Commune("25396");
    vec![
        (0, events::cccd("o1", "2024-04-20T09:00:00+07:00", a, "070203100001", "received")),
        (0, events::cccd("o2", "2024-04-21T09:00:00+07:00", a, "070203100002", "received")),
        (0, events::cccd("o1", "2024-04-20T09:00:00+07:00", a, "070203100001", "received")),
        (0, events::cccd("o3", "2024-04-22T09:00:00+07:00", b, "070203100003", "received")),
        (0, events::cccd("o4", "2024-04-19T09:00:00+07:00", a, "070203100002", "received")),
        (1, events::vneid("o5", "2024-04-22T10:00:00+07:00", b, "070203100003", "activated", 2)),
        (1, events::vneid("o6", "2024-04-22T10:00:00+07:00", b, "070203100004", "activated", 1)),
        (2, events::signature("o7", "2024-04-21T10:00:00+07:00", a, "0912100001", "installed")),
        (2, events::signature("o8", "2024-04-22T10:00:00+07:00", a, "0912100001", "revoked")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_reach_clickhouse_metrics_and_a_real_prometheus_and_survive_a_replay() {
    let mut app = spawn_app(AppOptions { partitions: 1, shards: 2, ..AppOptions::default() }).await;
    let prometheus = Prometheus::start(app.metrics_port, None);
    let producer = Producer::new();
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let msgs = stream();
    for (t, m) in &msgs {
        producer.send(&topics[*t], 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;

    // /metrics, exact.
    app.wait_for("gauges", Duration::from_secs(30), || async {
        // The last series a publish sets: a scrape can fall between two gauges of the first one.
        let m = app.metrics().await;
        m.get("d06_coverage_covered", &[("indicator", "sim_signature"), ("area_level", "commune"), ("area", "25216")])
            .is_some()
            && m.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province")]).is_some()
    })
    .await;
    let m = app.metrics().await;
    let covered = |ind: &str, level: &str, area: &str| {
        m.get("d06_coverage_covered", &[("indicator", ind), ("area_level", level), ("area", area)])
    };
    let b_cccd = baseline(&app, "cccd", "province", "70").await;
    assert_eq!(covered("cccd", "province", "70"), Some(b_cccd + 3.0));
    assert_eq!(covered("cccd", "district", "688"), Some(baseline(&app, "cccd", "district", "688").await + 2.0));
    assert_eq!(covered("cccd", "district", "696"), Some(baseline(&app, "cccd", "district", "696").await + 1.0));
    assert_eq!(covered("vneid", "province", "70"), Some(baseline(&app, "vneid", "province", "70").await + 1.0));
    assert_eq!(
        covered("sim_signature", "province", "70"),
        Some(baseline(&app, "sim_signature", "province", "70").await),
        "installed then revoked"
    );
    // Today (event clock: 22/4) the province gained o3 only; o2 moved to 19/4.
    assert_eq!(m.get("d06_coverage_gained_today", &[("indicator", "cccd"), ("area_level", "province")]), Some(1.0));
    assert_eq!(m.get("d06_duplicates_ignored_total", &[]), Some(1.0));

    // ClickHouse, exact, day by day.
    let q = "SELECT toString(day), gained, lost, covered FROM coverage_daily \
             WHERE indicator = '{i}' AND area_level = 'district' AND area = '688' AND day BETWEEN '2024-04-18' AND '2024-04-22' ORDER BY day";
    let b688 = baseline(&app, "cccd", "district", "688").await as i64;
    let cccd = app.clickhouse(&q.replace("{i}", "cccd")).await;
    assert_eq!(
        cccd,
        format!(
            "2024-04-18\t0\t0\t{}\n2024-04-19\t1\t0\t{}\n2024-04-20\t1\t0\t{}\n2024-04-21\t0\t0\t{}\n2024-04-22\t0\t0\t{}\n",
            b688,
            b688 + 1,
            b688 + 2,
            b688 + 2,
            b688 + 2
        )
    );
    let bs = baseline(&app, "sim_signature", "district", "688").await as i64;
    let sig = app.clickhouse(&q.replace("{i}", "sim_signature")).await;
    assert_eq!(
        sig,
        format!(
            "2024-04-18\t0\t0\t{bs}\n2024-04-19\t0\t0\t{bs}\n2024-04-20\t0\t0\t{bs}\n2024-04-21\t1\t0\t{}\n2024-04-22\t0\t1\t{bs}\n",
            bs + 1
        )
    );
    let days =
        app.clickhouse("SELECT count() FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'province'").await;
    assert_eq!(days.trim(), "13", "one row per day from 10/4 to 22/4, days without events included");

    // A real Prometheus scraped it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = prometheus.value("sum(d06_coverage_covered{indicator=\"cccd\",area_level=\"district\"})").await;
        if v == Some(b688 as f64 + baseline(&app, "cccd", "district", "696").await + 3.0 + other_districts(&app).await)
        {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never showed the figures (last {v:?})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Replay: stop, forget the local state and the group's offsets, run again.
    let before = app
        .clickhouse("SELECT indicator, area_level, area, toString(day), gained, lost, covered, target, expected FROM coverage_daily ORDER BY indicator, area_level, area, day")
        .await;
    app.stop();
    std::fs::remove_dir_all(app.state_dir()).expect("remove state");
    app.group = format!("{}-replay", app.group);
    let cfg = std::fs::read_to_string(&app.config_path).expect("config");
    let cfg = cfg.replace("group_id = \"", "group_id = \"replay-");
    std::fs::write(&app.config_path, cfg).expect("config");
    app.start().await;
    app.wait_for("replay consumed", Duration::from_secs(60), || async {
        app.metrics().await.sum("d06_messages_consumed_total") as usize >= msgs.len()
    })
    .await;
    app.wait_for("replay flushed", Duration::from_secs(30), || async {
        app.metrics().await.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province")])
            == Some(b_cccd + 3.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = app
        .clickhouse("SELECT indicator, area_level, area, toString(day), gained, lost, covered, target, expected FROM coverage_daily ORDER BY indicator, area_level, area, day")
        .await;
    assert_eq!(before.lines().count(), after.lines().count());
    assert!(before == after, "a replay from the beginning changed ClickHouse figures");
}

/// Sum of the baselines of the districts other than 688 and 696 (they have no events).
async fn other_districts(app: &crate::harness::App) -> f64 {
    app.clickhouse(
        "SELECT sum(b) FROM (SELECT area, any(baseline) AS b FROM plan_daily FINAL \
         WHERE indicator = 'cccd' AND area_level = 'district' AND area NOT IN ('688', '696') GROUP BY area)",
    )
    .await
    .trim()
    .parse()
    .expect("sum")
}

async fn baseline(app: &crate::harness::App, ind: &str, level: &str, area: &str) -> f64 {
    let sql = format!(
        "SELECT any(baseline) FROM plan_daily FINAL WHERE indicator = '{ind}' AND area_level = '{level}' AND area = '{area}'"
    );
    app.clickhouse(&sql).await.trim().parse::<f64>().expect("baseline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_row_counters_are_set() {
    let app = spawn_app(AppOptions { partitions: 1, shards: 1, ..AppOptions::default() }).await;
    let m = events::cccd("r1", "2024-04-20T09:00:00+07:00", Place::Commune("25216"), "070203200001", "received");
    Producer::new().send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    app.wait_consumed(1, Duration::from_secs(60)).await;
    app.wait_for("rows counted", Duration::from_secs(30), || async {
        let m = app.metrics().await;
        m.get("d06_sink_rows_written_total", &[("sink", "clickhouse"), ("table", "coverage_shard_daily")])
            .unwrap_or(0.0)
            > 0.0
            && m.get("d06_sink_rows_written_total", &[("sink", "clickhouse"), ("table", "plan_daily")]).unwrap_or(0.0)
                > 0.0
    })
    .await;
    let m = app.metrics().await;
    assert!(m.get("d06_flush_seconds_count", &[]).unwrap_or(0.0) >= 1.0, "flushes counted");
    let last = m.get("d06_last_flush_timestamp_seconds", &[]).unwrap_or(0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - last).abs() < 30.0, "last flush {last} vs now {now}");
}
