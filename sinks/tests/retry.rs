//! `write_with_retry` against a fake ClickHouse HTTP endpoint that fails
//! inserts on demand (no real server needed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::{AreaLevel, Indicator};
use chrono::NaiveDate;
use sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, PlanRow, WriteBatch};
use sinks::prometheus::NotReady;
use sinks::{Health, Metrics};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const TOO_MANY_PARTS: &str =
    "Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts., e.what() = DB::Exception";
const SYNTAX: &str =
    "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1, e.what() = DB::Exception";

/// A fake server: answers every `INSERT` number `n` (from 1) with `fail(n)`'s
/// error text (HTTP 500) or, for `None`, with 200; everything else with 200.
struct Fake {
    url: String,
    inserts: Arc<AtomicUsize>,
}

async fn fake(fail: fn(usize) -> Option<&'static str>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let inserts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&inserts);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move { serve(stream, counter, fail).await });
        }
    });
    Fake { url, inserts }
}

/// One request per connection: read it whole, answer, close.
async fn serve(stream: TcpStream, inserts: Arc<AtomicUsize>, fail: fn(usize) -> Option<&'static str>) {
    let mut r = BufReader::new(stream);
    let mut request_line = String::new();
    if r.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return;
    }
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let lower = line.trim().to_ascii_lowercase();
        if lower.is_empty() {
            break;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data).await.unwrap();
            if n == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body).await.unwrap();
    }
    let is_insert = request_line.contains("INSERT");
    let failure = if is_insert { fail(inserts.fetch_add(1, Ordering::SeqCst) + 1) } else { None };
    let response = match failure {
        Some(text) => format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        ),
        None => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let mut stream = r.into_inner();
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn sink(url: &str) -> ClickHouseSink {
    let cfg = ClickHouseConfig { url: url.to_owned(), timeout_secs: 5, ..ClickHouseConfig::default() };
    ClickHouseSink::connect(&cfg).await.unwrap()
}

fn batch() -> WriteBatch {
    WriteBatch {
        plan: vec![PlanRow {
            day: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            indicator: Indicator::Cccd,
            area_level: AreaLevel::Province,
            area: "70".into(),
            baseline: 1,
            target: 2,
            expected: 1,
            version: 1,
        }],
        ..WriteBatch::default()
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_until_success() {
    let fake = fake(|n| (n <= 2).then_some(TOO_MANY_PARTS)).await;
    let sink = sink(&fake.url).await;
    let metrics = Metrics::new().unwrap();
    let started = Instant::now();
    sink.write_with_retry(&batch(), &CancellationToken::new(), Some(&metrics), None).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(fake.inserts.load(Ordering::SeqCst), 3);
    // Waits of 100 ms and 200 ms, each jittered down to no less than half.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(metrics.sink_failures.with_label_values(&["clickhouse", "too_many_parts"]).get(), 2);
    assert_eq!(metrics.sink_write_seconds.with_label_values(&["clickhouse"]).get_sample_count(), 3);
}

#[tokio::test]
async fn readiness_is_lost_while_writes_fail_and_comes_back_with_the_first_success() {
    // Fails the first 4 inserts: about a second of backoff in which to look.
    let fake = fake(|n| (n <= 4).then_some(TOO_MANY_PARTS)).await;
    let sink = sink(&fake.url).await;
    let health = Arc::new(Health::new());
    health.set_flushed();
    assert_eq!(health.readiness(), Ok(()));
    let writer = {
        let health = Arc::clone(&health);
        tokio::spawn(
            async move { sink.write_with_retry(&batch(), &CancellationToken::new(), None, Some(&health)).await },
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.inserts.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no retry within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(health.readiness(), Err(NotReady::SinkFailing));
    tokio::time::timeout(Duration::from_secs(30), writer).await.unwrap().unwrap().unwrap();
    assert_eq!(fake.inserts.load(Ordering::SeqCst), 5);
    assert_eq!(health.readiness(), Ok(()), "the write that succeeded makes the instance ready again");
}

#[tokio::test]
async fn shutdown_stops_the_retries_with_the_last_error() {
    let fake = fake(|_| Some(TOO_MANY_PARTS)).await;
    let sink = sink(&fake.url).await;
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let err = sink.write_with_retry(&batch(), &shutdown, None, None).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), "too_many_parts");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // 100 + 200 ms of backoff fit before 400 ms, at most 100+200+400 could not.
    let attempts = fake.inserts.load(Ordering::SeqCst);
    assert!((2..=4).contains(&attempts), "{attempts}");
}

#[tokio::test]
async fn an_already_cancelled_shutdown_still_makes_one_attempt() {
    let fake = fake(|n| (n == 1).then_some(TOO_MANY_PARTS)).await;
    let sink = sink(&fake.url).await;
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let err = sink.write_with_retry(&batch(), &shutdown, None, None).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(fake.inserts.load(Ordering::SeqCst), 1);
    // And a final flush that succeeds returns Ok.
    sink.write_with_retry(&batch(), &shutdown, None, None).await.unwrap();
    assert_eq!(fake.inserts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn permanent_failures_return_at_once() {
    let fake = fake(|_| Some(SYNTAX)).await;
    let sink = sink(&fake.url).await;
    let metrics = Metrics::new().unwrap();
    let err = sink.write_with_retry(&batch(), &CancellationToken::new(), Some(&metrics), None).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.kind(), "syntax");
    assert_eq!(fake.inserts.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.sink_failures.with_label_values(&["clickhouse", "syntax"]).get(), 1);
}

#[tokio::test]
async fn a_silent_server_times_out_as_retryable() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().await.unwrap());
        }
    });
    let cfg = ClickHouseConfig { url, timeout_secs: 1, ..ClickHouseConfig::default() };
    let started = Instant::now();
    let err = ClickHouseSink::connect(&cfg).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}
