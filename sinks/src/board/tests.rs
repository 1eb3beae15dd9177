//! The board's tests: the snapshot's JSON, the routes, the event stream, one board per province.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::snapshot::vi_rate;
use super::*;
use crate::prometheus::{Health, HttpServer, Metrics};
use aggregator::Indicator;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn cell(indicator: Indicator, covered: i64, target: u64, expected: u64, days_behind: u32) -> IndicatorBoard {
    IndicatorBoard {
        indicator: indicator.as_str().to_owned(),
        label: label(indicator).to_owned(),
        covered,
        target,
        expected,
        days_behind,
        gained_today: 12,
        eta: (days_behind == 0).then(|| "2024-06-30".to_owned()),
        lagging: days_behind >= 3,
        baseline_known: true,
        pace_per_day: 10.0,
        needed_per_day: 12.0,
        note: None,
    }
}

#[test]
fn the_pace_note_is_vietnamese() {
    assert_eq!(pace_note(15.0 / 7.0, 5.5), "Chưa có số liệu nền — tốc độ 2,1/ngày, cần 5,5");
    assert_eq!(pace_note(0.0, 8634.9), "Chưa có số liệu nền — tốc độ 0/ngày, cần 8.635");
    assert_eq!(pace_note(-0.43, 120.0), "Chưa có số liệu nền — tốc độ −0,4/ngày, cần 120");
    assert_eq!(vi_rate(1_234_567.0), "1.234.567");
}

fn snapshot(covered: i64) -> BoardSnapshot {
    let district = AreaBoard {
        code: "688".into(),
        name: "Thị xã Phước Long".into(),
        rank: 1,
        indicators: vec![cell(Indicator::Cccd, covered, 50_000, 40_000, 0)],
        hotline: HotlineBoard { received: 3, in_progress: 1, overdue_specialist: 1, ..HotlineBoard::default() },
    };
    BoardSnapshot {
        campaign: "Đề án 06".into(),
        today: "2024-04-22".into(),
        updated_at: "2024-04-22T14:05:32+07:00".into(),
        clock: "event".into(),
        province: AreaBoard { code: "70".into(), name: "Bình Phước".into(), rank: 0, ..district.clone() },
        districts: vec![district],
        tier: "huyện".into(),
        hotline: HotlineBoard { received: 3, in_progress: 1, overdue_specialist: 1, ..HotlineBoard::default() },
        replay: None,
        provinces: vec![ProvinceLink { code: "70".into(), name: "Bình Phước".into() }],
    }
}

async fn serve(
    board: &Board,
    keep_alive: Duration,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
    let server =
        HttpServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Metrics::new().unwrap()), Arc::new(Health::new()))
            .await
            .unwrap()
            .merge(board.router(keep_alive));
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    (addr, shutdown, task)
}

/// A minimal HTTP/1.1 GET: (status, headers, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// An open `/board/events` stream, read line by line.
struct EventStream {
    reader: BufReader<TcpStream>,
    head: String,
}

impl EventStream {
    async fn open(addr: SocketAddr) -> EventStream {
        Self::open_path(addr, "/board/events").await
    }

    async fn open_path(addr: SocketAddr, path: &str) -> EventStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        EventStream { reader, head }
    }

    /// The next non-empty line of the (chunked) body, skipping chunk sizes;
    /// `None` at the end of the stream.
    async fn line(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
                .await
                .expect("no line within 5 s")
                .unwrap();
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let is_chunk_size = !line.is_empty() && line.chars().all(|c| c.is_ascii_hexdigit());
            if line.is_empty() || is_chunk_size {
                if line == "0" {
                    return None;
                }
                continue;
            }
            return Some(line.to_owned());
        }
    }

    /// The next event's (id, data), skipping comments and `retry:`.
    async fn event(&mut self) -> (u64, String) {
        let mut id = None;
        loop {
            let line = self.line().await.expect("stream ended");
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data: ") {
                return (id.expect("data before id"), v.to_owned());
            }
        }
    }
}

#[test]
fn labels_are_the_campaign_s_vietnamese_names() {
    let labels: Vec<&str> = Indicator::ALL.iter().map(|&i| label(i)).collect();
    assert_eq!(labels, ["CCCD", "VNeID mức 2", "Smartphone 4G", "SIM chính chủ có chữ ký số", "Chuyển 2G→4G"]);
}

#[test]
fn snapshot_json_has_the_documented_shape() {
    let json: serde_json::Value = serde_json::from_str(&to_json(&snapshot(41_234))).unwrap();
    assert_eq!(json["today"], "2024-04-22");
    assert_eq!(json["clock"], "event");
    assert_eq!(json["province"]["rank"], 0);
    assert_eq!(json["districts"][0]["rank"], 1);
    let c = &json["districts"][0]["indicators"][0];
    assert_eq!(c["indicator"], "cccd");
    assert_eq!(c["label"], "CCCD");
    assert_eq!(c["covered"], 41_234);
    assert_eq!(c["target"], 50_000);
    assert_eq!(c["expected"], 40_000);
    assert_eq!(c["eta"], "2024-06-30");
    assert_eq!(c["lagging"], false);
    assert_eq!(json["districts"][0]["hotline"]["overdue_specialist"], 1);
    let behind = serde_json::to_value(cell(Indicator::Vneid, 1, 10, 20, 4)).unwrap();
    assert_eq!(behind["eta"], serde_json::Value::Null);
    assert_eq!(behind["lagging"], true);
}

#[test]
fn publish_bumps_the_version_and_replaces_the_snapshot() {
    let board = Board::new();
    assert_eq!(board.version(), 0);
    assert_eq!(*board.snapshot(), BoardSnapshot::default());
    board.publish(snapshot(1));
    board.publish(snapshot(2));
    assert_eq!(board.version(), 2);
    assert_eq!(board.snapshot().districts[0].indicators[0].covered, 2);
}

#[test]
fn replay_progress_rides_on_every_snapshot_and_a_change_of_behind_is_pushed_at_once() {
    let board = Board::new();
    let behind = ReplayBoard { behind: true, lag: 1_000_000, rate: 50_000.0, eta_seconds: Some(20) };
    board.set_replay(behind);
    assert_eq!(board.version(), 0, "nothing to show before the first snapshot");
    board.publish(snapshot(1));
    assert_eq!(board.snapshot().replay, Some(behind));
    let later = ReplayBoard { lag: 500_000, eta_seconds: Some(10), ..behind };
    board.set_replay(later);
    assert_eq!(board.version(), 1, "progress alone waits for the next snapshot");
    board.publish(snapshot(2));
    assert_eq!(board.snapshot().replay, Some(later));
    let current = ReplayBoard { behind: false, lag: 3, rate: 10.0, eta_seconds: Some(0) };
    board.set_replay(current);
    assert_eq!(board.version(), 3, "caught up: pushed at once");
    assert_eq!(board.snapshot().replay, Some(current));
    assert_eq!(board.snapshot().districts[0].indicators[0].covered, 2, "figures unchanged");
}

#[tokio::test]
async fn serves_the_page_and_the_state() {
    let board = Board::new();
    let (addr, shutdown, task) = serve(&board, KEEP_ALIVE).await;

    let (status, head, body) = http_get(addr, "/board").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(body.starts_with("<!DOCTYPE html>"), "{}", &body[..40]);
    assert!(body.contains("Tổng đài 1022"));
    // Self-contained: nothing fetched from elsewhere.
    for external in ["http://", "https://", "@import", "url(", "src="] {
        assert!(!body.contains(external), "page references {external}");
    }
    let hrefs: Vec<&str> = body.match_indices("href=").map(|(i, _)| &body[i..i + 12]).collect();
    assert_eq!(hrefs, [r#"href="data:,"#], "only the empty favicon");

    let (status, head, body) = http_get(addr, "/board/state").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["districts"], serde_json::json!([]), "empty before the first publish");

    board.publish(snapshot(41_234));
    let (_, _, body) = http_get(addr, "/board/state").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["districts"][0]["indicators"][0]["covered"], 41_234);
    assert_eq!(v["province"]["name"], "Bình Phước");

    assert_eq!(http_get(addr, "/board/nope").await.0, 404);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn each_province_has_its_own_board_and_an_untracked_one_is_a_404() {
    let provinces = ["70".to_owned(), "74".to_owned()];
    let board = Board::with_provinces(&provinces, &CancellationToken::new());
    let (addr, shutdown, task) = serve(&board, KEEP_ALIVE).await;
    let of = |code: &str, covered: i64| {
        let mut s = snapshot(covered);
        s.province.code = code.into();
        s
    };
    board.publish(of("74", 74));
    board.publish(of("70", 70));
    let covered = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        (v["province"]["code"].as_str().unwrap().to_owned(), v["districts"][0]["indicators"][0]["covered"].clone())
    };
    assert_eq!(covered(&http_get(addr, "/board/state").await.2), ("70".into(), 70.into()), "the first by default");
    assert_eq!(covered(&http_get(addr, "/board/state?province=74").await.2), ("74".into(), 74.into()));
    assert_eq!(http_get(addr, "/board?province=74").await.0, 200);
    for path in ["/board?province=79", "/board/state?province=79", "/board/events?province=79"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains(r#"province "79" is not tracked"#) && body.contains("70, 74"), "{body}");
    }
    // A province's stream carries its own snapshots only.
    let mut es = EventStream::open_path(addr, "/board/events?province=74").await;
    assert_eq!(es.event().await.1, *to_json(&of("74", 74)));
    board.publish(of("70", 71));
    board.publish(of("74", 75));
    assert_eq!(es.event().await, (2, to_json(&of("74", 75)).to_string()));
    // A snapshot of a province not tracked is dropped, not shown anywhere.
    board.publish(of("79", 79));
    assert_eq!(covered(&http_get(addr, "/board/state").await.2), ("70".into(), 71.into()));
    drop(es);
    shutdown.cancel();
    board.close();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("server still running").unwrap().unwrap();
}

#[tokio::test]
async fn events_send_the_current_snapshot_then_one_per_publish() {
    let board = Board::new();
    let (addr, shutdown, task) = serve(&board, KEEP_ALIVE).await;
    board.publish(snapshot(100));

    let mut es = EventStream::open(addr).await;
    assert!(es.head.starts_with("http/1.1 200"), "{}", es.head);
    assert!(es.head.contains("content-type: text/event-stream"), "{}", es.head);
    assert!(es.head.contains("x-accel-buffering: no"), "{}", es.head);
    let (id, data) = es.event().await;
    assert_eq!(id, 1);
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["districts"][0]["indicators"][0]["covered"], 100);

    board.publish(snapshot(101));
    let (id, data) = es.event().await;
    assert_eq!(id, 2);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&data).unwrap()["districts"][0]["indicators"][0]["covered"],
        101
    );
    board.publish(snapshot(102));
    let (id, data) = es.event().await;
    assert_eq!(id, 3);
    assert_eq!(data, *to_json(&snapshot(102)));

    // Closing ends the stream (and lets the graceful shutdown finish).
    shutdown.cancel();
    board.close();
    let mut rest = Vec::new();
    while let Some(l) = es.line().await {
        rest.push(l);
    }
    assert!(rest.iter().all(|l| l.starts_with(':')), "only keep-alives after the last event: {rest:?}");
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("server still running").unwrap().unwrap();
}

#[tokio::test]
async fn events_wait_for_the_first_publish_and_keep_alive_meanwhile() {
    let board = Board::new();
    let (addr, shutdown, task) = serve(&board, Duration::from_millis(100)).await;
    let mut es = EventStream::open(addr).await;
    // Nothing published yet: keep-alive comments only.
    assert_eq!(es.line().await.as_deref(), Some(":"));
    assert_eq!(es.line().await.as_deref(), Some(":"));
    board.publish(snapshot(7));
    let (id, data) = es.event().await;
    assert_eq!(id, 1);
    assert!(data.contains(r#""covered":7,"#), "{data}");
    drop(es);
    shutdown.cancel();
    board.close();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("server still running").unwrap().unwrap();
}

#[tokio::test]
async fn the_shutdown_token_ends_the_streams_so_the_server_can_stop() {
    let shutdown = CancellationToken::new();
    let board = Board::with_shutdown(&shutdown);
    board.publish(snapshot(1));
    let server =
        HttpServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Metrics::new().unwrap()), Arc::new(Health::new()))
            .await
            .unwrap()
            .merge(board.routes());
    let addr = server.local_addr();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let mut es = EventStream::open(addr).await;
    assert_eq!(es.event().await.0, 1);
    shutdown.cancel();
    assert_eq!(es.line().await, None);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("server still running").unwrap().unwrap();
    // The board itself is still there and still answers for its state.
    assert_eq!(board.version(), 1);
}

#[tokio::test]
async fn dropping_the_board_ends_the_streams() {
    let board = Board::new();
    board.publish(snapshot(1));
    let (addr, shutdown, task) = serve(&board, KEEP_ALIVE).await;
    let mut es = EventStream::open(addr).await;
    assert_eq!(es.event().await.0, 1);
    shutdown.cancel();
    drop(board);
    assert_eq!(es.line().await, None);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("server still running").unwrap().unwrap();
}

#[tokio::test]
async fn a_closed_board_refuses_new_streams_but_still_serves_its_state() {
    let board = Board::new();
    board.publish(snapshot(5));
    board.close();
    let (addr, shutdown, task) = serve(&board, KEEP_ALIVE).await;
    let mut es = EventStream::open(addr).await;
    // The current snapshot, then the end.
    assert_eq!(es.event().await.0, 1);
    assert_eq!(es.line().await, None);
    let (status, _, body) = http_get(addr, "/board/state").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""covered":5,"#), "{body}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
