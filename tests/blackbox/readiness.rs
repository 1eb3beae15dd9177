//! `/readyz` means "these figures are current": not while replaying a
//! backlog far behind the source topics (the board says so too, and the log
//! gives position, rate and ETA, then says once that it caught up), not while
//! ClickHouse writes fail; ready again by itself once either is over — and
//! the figures are exact afterwards.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::events::{self, Place};
use crate::harness::{clickhouse_url, spawn_app, App, AppOptions, Producer};
use crate::proxy::FlakyProxy;

/// Distinct people with a CCCD application in commune 25195 (district 689).
fn applications(from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            let at = format!("2024-04-12T{:02}:{:02}:00+07:00", 8 + (i / 60) % 10, i % 60);
            events::cccd(&format!("r{i}"), &at, Place::Commune("25195"), &events::citizen(i), "received").into_bytes()
        })
        .collect()
}

async fn readyz(app: &App) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}/readyz", app.metrics_port);
    match reqwest::get(&url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn board_replay(app: &App) -> Value {
    let url = format!("http://127.0.0.1:{}/board/state", app.metrics_port);
    match reqwest::get(&url).await {
        Ok(r) => r.json::<Value>().await.map(|v| v["replay"].clone()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Province CCCD gained over the campaign, from ClickHouse's public view.
async fn gained_in_clickhouse(app: &App) -> u64 {
    let sql = "SELECT sum(gained) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'province'";
    app.clickhouse(sql).await.trim().parse().unwrap_or(0)
}

async fn wait_ready(app: &App, what: &str) {
    app.wait_for(what, Duration::from_secs(60), || async { readyz(app).await.0 == 200 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_while_far_behind_or_while_clickhouse_fails_and_the_figures_stay_exact() {
    let mut app = spawn_app(AppOptions {
        partitions: 2,
        shards: 2,
        extra_toml: "behind_messages = 2000\nprogress_log_secs = 1\n".into(),
        ..AppOptions::default()
    })
    .await;
    let proxy =
        FlakyProxy::start(clickhouse_url().trim_start_matches("http://").trim_end_matches('/').to_owned()).await;
    app.stop();
    // Through the proxy; small transactions and a frequent probe, so the
    // backlog takes seconds to read and is seen while it lasts.
    app.edit_config(|c| {
        c.replace(&format!("url = \"{}\"", clickhouse_url()), &format!("url = \"{}\"", proxy.url()))
            .replace("lag_interval_ms = 1000", "lag_interval_ms = 200\nmax_batch_messages = 500")
            .replace("group_id = \"", "group_id = \"ready-")
    });
    app.group = format!("ready-{}", app.group);

    // 1. A backlog written while d06 is down, then replayed.
    const BACKLOG: u64 = 150_000;
    let producer = Producer::new();
    let cccd = app.topics.cccd.clone();
    let backlog: Vec<(String, i32, Vec<u8>)> =
        applications(0, BACKLOG).into_iter().enumerate().map(|(i, m)| (cccd.clone(), (i % 2) as i32, m)).collect();
    producer.send_all(&backlog).await;
    app.start().await;
    let (mut saw_behind, mut saw_board_behind) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = readyz(&app).await;
        if status == 503 && body.contains("replaying far behind") {
            saw_behind.get_or_insert(body);
        }
        saw_board_behind |= board_replay(&app).await["behind"] == Value::Bool(true);
        let consumed = app.metrics().await.sum("d06_messages_consumed_total") as u64;
        if consumed >= BACKLOG && status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no ready state after the backlog:\n{}", app.log_tail(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_behind.is_some(), "/readyz never said it was replaying far behind:\n{}", app.log_tail(40));
    assert!(saw_board_behind, "the board never said it was replaying");
    assert_eq!(board_replay(&app).await["behind"], Value::Bool(false));
    let log = app.log();
    assert!(log.contains("replaying behind the source topic"), "no progress line:\n{}", app.log_tail(40));
    assert!(log.contains("eta_s"), "progress lines carry an ETA once a rate is known:\n{}", app.log_tail(40));
    assert_eq!(
        log.matches("caught up with the source topics").count(),
        1,
        "caught up said once:\n{}",
        app.log_tail(40)
    );
    app.wait_for("the backlog in ClickHouse", Duration::from_secs(30), || async {
        gained_in_clickhouse(&app).await == BACKLOG
    })
    .await;
    // Stage 2's lag is measured too (facts waiting keep an instance far
    // behind): a gauge per facts partition, down to a commit marker at most.
    let facts_topic = app.topics.facts.clone();
    app.wait_for("stage 2's lag gauges at their end", Duration::from_secs(30), || async {
        let m = app.metrics().await;
        let lags: Vec<f64> = m
            .series
            .iter()
            .filter(|(n, l, _)| n == "d06_consumer_lag_messages" && l.get("topic") == Some(&facts_topic))
            .map(|(_, _, v)| *v)
            .collect();
        lags.len() == 2 && lags.iter().all(|v| *v <= 1.0)
    })
    .await;

    // 2. ClickHouse refuses: not ready, with the reason; back by itself.
    proxy.fail_next(u32::MAX);
    producer.send_all(&applications(BACKLOG, 10).into_iter().map(|m| (cccd.clone(), 0, m)).collect::<Vec<_>>()).await;
    app.wait_for("/readyz to report failing ClickHouse writes", Duration::from_secs(30), || async {
        let (status, body) = readyz(&app).await;
        status == 503 && body.contains("ClickHouse writes are failing")
    })
    .await;
    assert!(proxy.refused.load(Ordering::SeqCst) >= 1);
    proxy.fail_next(0);
    wait_ready(&app, "/readyz after ClickHouse came back").await;
    app.wait_for("every application in ClickHouse", Duration::from_secs(30), || async {
        gained_in_clickhouse(&app).await == BACKLOG + 10
    })
    .await;
    // /metrics and ClickHouse agree, and both are the baseline plus every person.
    let baseline: u64 = app
        .clickhouse("SELECT any(baseline) FROM plan_daily FINAL WHERE indicator = 'cccd' AND area_level = 'province'")
        .await
        .trim()
        .parse()
        .unwrap();
    let covered: u64 = app
        .clickhouse(
            "SELECT argMax(covered, day) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'province'",
        )
        .await
        .trim()
        .parse()
        .unwrap();
    assert_eq!(covered, baseline + BACKLOG + 10);
    app.wait_for("the gauge to match ClickHouse", Duration::from_secs(10), || async {
        let m = app.metrics().await;
        m.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province"), ("area", "70")])
            == Some(covered as f64)
    })
    .await;
    app.stop();
}
