//! Issue 4: ClickHouse stopped for a minute while events keep arriving, then
//! started again: nothing lost, nothing doubled, memory bounded, lag drains.
//!
//! Issue 14: ClickHouse killed with SIGKILL while d06 writes, and restarted
//! on the same data: equal to the recount, dead letters once each.
//!
//! Uses a private ClickHouse (its own port and data directory, started with
//! `deploy/local/start.sh`), so stopping it disturbs no other test.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cluster::{coverage_at, insert_invalid, wait_equal};
use crate::crash::{generate, messages, recount};
use crate::events::{self, Place, COMMUNES};
use crate::harness::{spawn_app, AppOptions, Producer};
use crate::private::PrivateService;

/// A ClickHouse of the test's own (`deploy/local` service `clickhouse` on free ports).
struct PrivateClickHouse(PrivateService);

impl PrivateClickHouse {
    fn start() -> PrivateClickHouse {
        PrivateClickHouse(PrivateService::start("clickhouse", &["D06_CLICKHOUSE_PORT", "D06_CLICKHOUSE_TCP_PORT"]))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.0.port("D06_CLICKHOUSE_PORT"))
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn batch(from: usize, to: usize) -> Vec<(String, i32, Vec<u8>)> {
    Vec::new()
        .into_iter()
        .chain((from..to).map(|i| {
            let (c, _) = COMMUNES[i % COMMUNES.len()];
            let day = 10 + (i % 20);
            let m = events::cccd(
                &format!("f-{i}"),
                &format!("2024-04-{day:02}T09:00:00+07:00"),
                Place::Commune(c),
                &events::citizen(i as u64),
                "received",
            );
            (String::new(), (i % 2) as i32, m.into_bytes())
        }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_a_minute_loses_and_doubles_nothing() {
    let outage: u64 = std::env::var("D06_FAULT_OUTAGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let ch = PrivateClickHouse::start();
    let app = spawn_app(AppOptions { partitions: 2, clickhouse_url: Some(ch.url()), ..AppOptions::default() }).await;
    let topic = app.topics.cccd.clone();
    let producer = Producer::new();
    let with_topic = |v: Vec<(String, i32, Vec<u8>)>| -> Vec<(String, i32, Vec<u8>)> {
        v.into_iter().map(|(_, p, m)| (topic.clone(), p, m)).collect()
    };

    // Before the outage: 5,000 applications, each re-sent once (a producer retry).
    let before = with_topic(batch(0, 5_000));
    producer.send_all(&before).await;
    producer.send_all(&before[..1_000]).await;
    let province = "SELECT sum(gained) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'province'";
    app.wait_for("first batch in ClickHouse", Duration::from_secs(60), || async {
        app.clickhouse(province).await.trim() == "5000"
    })
    .await;

    // The outage: events keep arriving for `outage` seconds.
    ch.0.script("stop");
    let pid = app.pid().expect("running");
    let started = Instant::now();
    let mut sent = 5_000;
    let mut rss_samples = Vec::new();
    let mut max_lag = 0.0f64;
    while started.elapsed() < Duration::from_secs(outage) {
        let next = with_topic(batch(sent, sent + 1_000));
        producer.send_all(&next).await;
        sent += 1_000;
        rss_samples.push(rss_kib(pid));
        max_lag = max_lag.max(app.metrics().await.sum("d06_consumer_lag_messages"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let m = app.metrics().await;
    assert!(m.sum("d06_sink_write_failures_total") > 0.0, "the failures were counted");
    assert!(max_lag > 0.0, "lag grew while ClickHouse was down");
    let ready = reqwest::get(format!("http://127.0.0.1:{}/healthz", app.metrics_port)).await.expect("healthz");
    assert!(ready.status().is_success(), "still alive during the outage");

    // Memory stays bounded: the second half of the outage adds little to the first.
    let half = rss_samples.len() / 2;
    let first_half_max = rss_samples[..half].iter().copied().max().unwrap_or(0);
    let peak = rss_samples.iter().copied().max().unwrap_or(0);
    eprintln!("RSS during the outage: first half max {first_half_max} KiB, peak {peak} KiB; {sent} sent");
    assert!(peak < 512 * 1024, "RSS {peak} KiB during the outage");
    assert!(peak <= first_half_max + 64 * 1024, "RSS kept growing: {first_half_max} → {peak} KiB");

    // ClickHouse is back: everything arrives exactly once, and the lag drains.
    ch.0.script("start");
    let expected = sent.to_string();
    app.wait_for("catch-up after the outage", Duration::from_secs(120), || async {
        app.clickhouse(province).await.trim() == expected
    })
    .await;
    let districts = app
        .clickhouse("SELECT sum(gained) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'district'")
        .await;
    assert_eq!(districts.trim(), expected, "districts add up to the province");
    app.wait_for("lag drained", Duration::from_secs(60), || async {
        app.metrics().await.sum("d06_consumer_lag_messages") == 0.0
    })
    .await;
    let covered = app.metrics().await.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province")]);
    let baseline: f64 = app
        .clickhouse("SELECT any(baseline) FROM plan_daily FINAL WHERE indicator = 'cccd' AND area_level = 'province'")
        .await
        .trim()
        .parse()
        .expect("baseline");
    assert_eq!(covered, Some(baseline + sent as f64));
}

/// How many INSERTs the ClickHouse at `url` runs now (0 when it does not answer).
async fn inserts_running(http: &reqwest::Client, url: &str) -> usize {
    let sql = "SELECT count() FROM system.processes WHERE startsWith(query, 'INSERT')";
    let answer = http.post(url).body(sql).timeout(Duration::from_secs(2)).send().await;
    match answer {
        Ok(r) if r.status().is_success() => r.text().await.ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_killed_mid_write_and_restarted_equals_the_recount() {
    let n: usize = std::env::var("D06_FAULT_KILL_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let kills: usize = std::env::var("D06_FAULT_CLICKHOUSE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seed: u64 = rand::random();
    eprintln!("ClickHouse kill test: {n} events, {kills} kills, seed {seed}");
    // Duplicates (producer retries) and events up to ten days late.
    let raws = generate(n, seed);
    let expected = recount(&raws);
    let ch = PrivateClickHouse::start();
    let partitions = 2;
    let app = spawn_app(AppOptions {
        partitions,
        shards: 4,
        flush_interval_ms: 200,
        clickhouse_url: Some(ch.url()),
        ..AppOptions::default()
    })
    .await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc4);
    let mut messages = messages(&raws, &topics, partitions, &mut rng);
    let invalid = 100;
    insert_invalid(&mut messages, invalid, &topics, partitions, &mut rng);
    let total = messages.len();

    // The stream arrives at a steady pace over the kills (~6 s each), so
    // every kill lands while d06 is writing what keeps arriving.
    let producer = {
        let chunks = total.div_ceil(1_000).max(1);
        let pause = Duration::from_millis((kills as u64 * 6_000) / chunks as u64);
        tokio::spawn(async move {
            let p = Producer::new();
            for chunk in messages.chunks(1_000) {
                p.send_all(chunk).await;
                tokio::time::sleep(pause).await;
            }
        })
    };
    let http = reqwest::Client::new();
    app.wait_for("the first rows in ClickHouse", Duration::from_secs(60), || async {
        coverage_at(&http, &ch.url(), &app.database).await.is_some_and(|c| !c.is_empty())
    })
    .await;
    let started = Instant::now();
    let mut mid_insert = 0;
    for k in 0..kills {
        // Kill as soon as an INSERT of d06 is seen running (or after 10 s anyway).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen == 0 && Instant::now() < deadline {
            seen = inserts_running(&http, &ch.url()).await;
        }
        ch.0.kill9();
        mid_insert += usize::from(seen > 0);
        eprintln!("kill -9 {} of ClickHouse after {:?} ({seen} INSERT running)", k + 1, started.elapsed());
        // d06 retries against a dead server for a while, then it is back on the same data.
        tokio::time::sleep(Duration::from_secs(2)).await;
        ch.0.script("start");
    }
    tokio::time::timeout(Duration::from_secs(600), producer)
        .await
        .expect("the producer finished within 10 min")
        .expect("producer task");
    eprintln!(
        "all {total} produced after {:?}; {mid_insert} of {kills} kills saw an INSERT running",
        started.elapsed()
    );
    assert_eq!(mid_insert, kills, "every kill came while d06 was writing");

    // Nothing lost, nothing doubled: the views (FINAL over the shard rows) equal the recount.
    wait_equal(&app, &http, &ch.url(), &expected, Duration::from_secs(120)).await;
    eprintln!("coverage_daily equals the recount after {:?}", started.elapsed());
    assert!(expected.len() > 500, "the stream covers many keys: {}", expected.len());
    let dead = app.clickhouse("SELECT count(), uniqExact(topic, `partition`, `offset`) FROM dead_letters FINAL").await;
    assert_eq!(dead.trim(), format!("{invalid}\t{invalid}"), "each dead letter once");
    let dup = app
        .clickhouse(
            "SELECT count() - uniqExact(indicator, area_level, area, day, shard) FROM coverage_shard_daily FINAL",
        )
        .await;
    assert_eq!(dup.trim(), "0", "one row per key under FINAL");
    let m = app.metrics().await;
    assert!(m.sum("d06_sink_write_failures_total") > 0.0, "the failed writes were counted");
    let mut app = app;
    assert!(app.is_running(), "d06 still running:\n{}", app.log_tail(20));
}
