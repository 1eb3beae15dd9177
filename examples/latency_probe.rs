//! Produce→visible latency of a running d06, for `deploy/bench/latency.sh`.
//!
//! Every `--every-ms` the probe produces one *marker*: a valid
//! `cccd.application` `received` event for a new citizen, `occurred_at` =
//! now, in `--commune`, a commune nothing else writes to (the simulator runs
//! with `--exclude-commune`), all markers to one partition so d06 applies
//! them in order. Marker k is *visible* once a reader sees the commune's
//! CCCD count reach k + 1:
//!
//! - on `/metrics`: `d06_coverage_covered{indicator="cccd",area_level="commune",area=X}`
//!   (d06 needs `commune_metrics = true`), polled every `--metrics-poll-ms`;
//! - in ClickHouse: `SELECT max(covered) FROM coverage_daily WHERE …` on the
//!   public view, polled every `--clickhouse-poll-ms` (the campaign plan
//!   must cover today, or the view has no row for it).
//!
//! A marker's latency is (end of the first poll response that shows it) −
//! (the moment it was handed to the producer): an upper bound, too high by
//! at most one poll interval plus one response time. The probe also samples,
//! at every /metrics poll once the first marker is visible, the staleness
//! `now − d06_newest_event_timestamp_seconds`
//! (the age of the newest event time d06 has published, which under a live
//! stream of `occurred_at ≈ now` is what a wall screen lags by).
//!
//! ```sh
//! latency_probe --brokers 127.0.0.1:9092 --topic T --commune 25216 \
//!   --metrics http://127.0.0.1:9464/metrics --clickhouse http://127.0.0.1:8123 --database D --duration 60
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    brokers: String,
    /// The CCCD source topic.
    #[arg(long)]
    topic: String,
    /// Partition the markers go to.
    #[arg(long, default_value_t = 0)]
    partition: i32,
    /// The marker commune (5-digit GSO code), written to by nothing else.
    #[arg(long)]
    commune: String,
    #[arg(long)]
    metrics: String,
    #[arg(long)]
    clickhouse: String,
    #[arg(long)]
    database: String,
    /// Seconds of markers.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 100)]
    every_ms: u64,
    #[arg(long, default_value_t = 50)]
    metrics_poll_ms: u64,
    #[arg(long, default_value_t = 100)]
    clickhouse_poll_ms: u64,
    /// Seconds to wait after the last marker for it to show.
    #[arg(long, default_value_t = 15)]
    drain: u64,
}

/// Per marker: sent, acked, visible on /metrics, visible in ClickHouse (seconds since start).
#[derive(Clone, Copy, Debug, Default)]
struct Marker {
    sent: f64,
    acked: Option<f64>,
    metrics: Option<f64>,
    clickhouse: Option<f64>,
}

#[derive(Debug, Default)]
struct Shared {
    markers: Vec<Marker>,
    staleness: Vec<f64>,
    metrics_poll: Vec<f64>,
    clickhouse_poll: Vec<f64>,
}

fn unix_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `2026-11-23T14:05:01.123+07:00` for now.
fn now_local() -> String {
    let now = chrono::Utc::now() + chrono::Duration::hours(7);
    format!("{}+07:00", now.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{name}: n {} p50 {:.3} s  p90 {:.3} s  p99 {:.3} s  max {:.3} s",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

/// Marks markers `seen..count` visible at `t`.
fn mark(shared: &Mutex<Shared>, count: usize, t: f64, metrics: bool) {
    let Ok(mut s) = shared.lock() else { return };
    let n = count.min(s.markers.len());
    for m in &mut s.markers[..n] {
        let slot = if metrics { &mut m.metrics } else { &mut m.clickhouse };
        slot.get_or_insert(t);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let start = Instant::now();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let http = reqwest::Client::new();
    let done = tokio_util::sync::CancellationToken::new();

    let metrics_task = {
        let (shared, http, done, url, commune) =
            (Arc::clone(&shared), http.clone(), done.clone(), args.metrics.clone(), args.commune.clone());
        let every = Duration::from_millis(args.metrics_poll_ms);
        let series = format!(r#"d06_coverage_covered{{area="{commune}",area_level="commune",indicator="cccd"}} "#);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !done.is_cancelled() {
                tick.tick().await;
                let t0 = start.elapsed().as_secs_f64();
                let Ok(r) = http.get(&url).send().await else { continue };
                let Ok(body) = r.text().await else { continue };
                let t1 = start.elapsed().as_secs_f64();
                let wall = unix_secs();
                let value = |prefix: &str| {
                    body.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse::<f64>().ok())
                };
                let covered = value(&series).unwrap_or(0.0) as usize;
                mark(&shared, covered, t1, true);
                if let Ok(mut s) = shared.lock() {
                    s.metrics_poll.push(t1 - t0);
                    // Once the stream flows (the first marker is visible): before
                    // that the newest event is the warm-up's, seconds old.
                    let flowing = s.markers.first().is_some_and(|m| m.metrics.is_some());
                    if let Some(newest) = value("d06_newest_event_timestamp_seconds ").filter(|_| flowing) {
                        s.staleness.push(wall - newest);
                    }
                }
            }
        })
    };
    let clickhouse_task = {
        let (shared, http, done) = (Arc::clone(&shared), http.clone(), done.clone());
        let url = args.clickhouse.clone();
        let database = args.database.clone();
        let sql = format!(
            "SELECT max(covered) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'commune' AND area = '{}'",
            args.commune
        );
        let every = Duration::from_millis(args.clickhouse_poll_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !done.is_cancelled() {
                tick.tick().await;
                let t0 = start.elapsed().as_secs_f64();
                let sent = http.post(&url).query(&[("database", database.as_str())]).body(sql.clone()).send().await;
                let Ok(r) = sent else { continue };
                let ok = r.status().is_success();
                let Ok(body) = r.text().await else { continue };
                let t1 = start.elapsed().as_secs_f64();
                if !ok {
                    eprintln!("latency_probe: ClickHouse: {}", body.trim());
                    continue;
                }
                let covered = body.trim().parse::<f64>().unwrap_or(0.0).max(0.0) as usize;
                mark(&shared, covered, t1, false);
                if let Ok(mut s) = shared.lock() {
                    s.clickhouse_poll.push(t1 - t0);
                }
            }
        })
    };

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "0")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    let run = format!("{:x}", (unix_secs() * 1000.0) as u64 % 0xFFFF_FFFF);
    let count = args.duration * 1000 / args.every_ms.max(1);
    let mut acks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(args.every_ms));
    for i in 0..count {
        tick.tick().await;
        let payload = format!(
            r#"{{"schema":"d06.event.v1","event_id":"latency-probe-{run}-{i}","type":"cccd.application","occurred_at":"{}","source":"latency-probe","commune_code":"{}","subject":"099{:09}","stage":"received","channel":"station"}}"#,
            now_local(),
            args.commune,
            i
        );
        let record: FutureRecord<'_, str, str> =
            FutureRecord::to(&args.topic).partition(args.partition).payload(&payload);
        let sent = start.elapsed().as_secs_f64();
        if let Ok(mut s) = shared.lock() {
            s.markers.push(Marker { sent, ..Marker::default() });
        }
        match producer.send_result(record) {
            Ok(ack) => {
                let shared = Arc::clone(&shared);
                acks.push(tokio::spawn(async move {
                    if let Ok(Ok(_)) = ack.await {
                        if let Ok(mut s) = shared.lock() {
                            s.markers[i as usize].acked = Some(start.elapsed().as_secs_f64());
                        }
                    }
                }));
            }
            Err((e, _)) => return Err(format!("produce: {e}").into()),
        }
    }
    producer.flush(Duration::from_secs(30))?;
    for a in acks {
        let _ = a.await;
    }
    // Wait for the last marker to show everywhere (or the drain time).
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    while Instant::now() < deadline {
        let all = shared.lock().map(|s| s.markers.iter().all(|m| m.metrics.is_some() && m.clickhouse.is_some()));
        if all.unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.cancel();
    let _ = metrics_task.await;
    let _ = clickhouse_task.await;

    let s = shared.lock().map_err(|_| "poisoned")?;
    let lat = |f: fn(&Marker) -> Option<f64>| -> Vec<f64> {
        s.markers.iter().filter_map(|m| f(m).map(|v| v - m.sent)).collect()
    };
    let to_metrics = lat(|m| m.metrics);
    let to_clickhouse = lat(|m| m.clickhouse);
    println!(
        "markers {} (one every {} ms, partition {}), visible on /metrics {}, in ClickHouse {}",
        s.markers.len(),
        args.every_ms,
        args.partition,
        to_metrics.len(),
        to_clickhouse.len()
    );
    println!("{}", line("produce→ack (broker)", lat(|m| m.acked)));
    println!("{}", line(&format!("produce→visible /metrics (poll {} ms)", args.metrics_poll_ms), to_metrics));
    println!(
        "{}",
        line(
            &format!("produce→visible ClickHouse coverage_daily (poll {} ms)", args.clickhouse_poll_ms),
            to_clickhouse
        )
    );
    // From the broker's acknowledgement on: what d06 itself adds.
    let after_ack = |f: fn(&Marker) -> Option<f64>| -> Vec<f64> {
        s.markers.iter().filter_map(|m| Some(f(m)? - m.acked?)).collect()
    };
    println!("{}", line("ack→visible /metrics", after_ack(|m| m.metrics)));
    println!("{}", line("ack→visible ClickHouse", after_ack(|m| m.clickhouse)));
    println!("{}", line("staleness now − d06_newest_event_timestamp_seconds", s.staleness.clone()));
    println!("{}", line("/metrics response time", s.metrics_poll.clone()));
    println!("{}", line("ClickHouse query time", s.clickhouse_poll.clone()));
    Ok(())
}
