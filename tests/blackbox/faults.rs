//! Issue 4: ClickHouse stopped for a minute while events keep arriving, then
//! started again: nothing lost, nothing doubled, memory bounded, lag drains.
//!
//! Uses a private ClickHouse (its own port and data directory, started with
//! `deploy/local/start.sh`), so stopping it disturbs no other test.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::events::{self, Place, COMMUNES};
use crate::harness::{spawn_app, AppOptions, Producer};

struct PrivateClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    tcp_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

impl PrivateClickHouse {
    fn script(&self, name: &str, args: &[&str]) {
        let root = env!("CARGO_MANIFEST_DIR");
        let status = Command::new("bash")
            .arg(format!("{root}/deploy/local/{name}.sh"))
            .args(args)
            .env("D06_LOCAL_DIR", self.dir.path())
            .env("D06_CLICKHOUSE_PORT", self.port.to_string())
            .env("D06_CLICKHOUSE_TCP_PORT", self.tcp_port.to_string())
            .status()
            .expect("run deploy script");
        assert!(status.success(), "deploy/local/{name}.sh {args:?} failed");
    }

    fn start() -> PrivateClickHouse {
        let ch =
            PrivateClickHouse { dir: tempfile::tempdir().expect("tempdir"), port: free_port(), tcp_port: free_port() };
        ch.script("start", &["clickhouse"]);
        ch
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.script("stop", &["clickhouse"]);
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
    ch.script("stop", &["clickhouse"]);
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
    ch.script("start", &["clickhouse"]);
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
