//! The built-in live board for the provincial operations centre (IOC) wall.
//!
//! The pipeline fills a [`BoardSnapshot`] (province, the 11 districts, the
//! 1022 hotline) and calls [`Board::publish`] after each flush; [`Board::routes`]
//! serves it on the metrics server:
//!
//! - `GET /board`: one self-contained HTML page (inline CSS and JS, no
//!   external assets, renders offline) for a wall read from across a room;
//! - `GET /board/state`: the current snapshot as JSON;
//! - `GET /board/events`: server-sent events, one `data:` line of snapshot
//!   JSON per publish (the current one first, on connect), with keep-alive
//!   comments. A slow client skips intermediate snapshots and always gets
//!   the latest, which is all a board needs.
//!
//! A deployment tracking several provinces has one board per province
//! ([`Board::with_provinces`]): each route takes `?province=CODE` (GSO
//! code), without it the first province; an untracked code is a 404 that
//! lists the tracked ones. The page passes its own query on to its event
//! stream and links the other provinces (the snapshot's `provinces`).
//!
//! The snapshot is serialised once per publish, not once per client.
//!
//! An open event stream never ends by itself, so a graceful HTTP shutdown
//! would wait for it forever (and a page left open on the wall would keep
//! d06 from stopping): build the board with [`Board::with_shutdown`] (or
//! call [`Board::close`], or drop the [`Board`]) and every stream ends when
//! the process shuts down; the browser then reconnects to whatever serves
//! next.

mod snapshot;

pub use self::snapshot::{
    label, pace_note, AreaBoard, BoardSnapshot, HotlineBoard, IndicatorBoard, ProvinceLink, ReplayBoard,
};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The page, embedded at build time.
const PAGE: &str = include_str!("board.html");

/// Interval of the keep-alive comments on `/board/events` (proxies and
/// browsers drop idle streams after a minute or so).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How soon a browser should reconnect after losing the event stream.
const RETRY: Duration = Duration::from_secs(2);

/// One published snapshot, serialised once.
#[derive(Clone, Debug)]
struct Published {
    /// 0 before the first publish, then 1, 2, …
    version: u64,
    snapshot: Arc<BoardSnapshot>,
    json: Arc<str>,
}

/// The live board: the latest snapshot of each province and the routes
/// that serve them.
#[derive(Debug)]
pub struct Board {
    inner: Arc<Inner>,
}

/// What the routes share with the board.
#[derive(Debug)]
struct Inner {
    /// Per tracked province (its GSO code; `""` for a board of one province,
    /// which takes any snapshot), in the deployment's order.
    channels: Vec<(String, watch::Sender<Published>)>,
    closed: CancellationToken,
    replay: std::sync::Mutex<Option<ReplayBoard>>,
}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    /// An empty board of one province (version 0, a default snapshot) until
    /// the first publish.
    pub fn new() -> Self {
        Self::closed_by(&[String::new()], CancellationToken::new())
    }

    /// An empty board whose event streams end when `shutdown` is cancelled
    /// (as if [`close`](Self::close) were called): pass the token the HTTP
    /// server's graceful shutdown waits on.
    pub fn with_shutdown(shutdown: &CancellationToken) -> Self {
        Self::closed_by(&[String::new()], shutdown.child_token())
    }

    /// [`Board::with_shutdown`] for a deployment tracking `provinces` (GSO
    /// codes, the first served by default); none or one is a board of one.
    pub fn with_provinces(provinces: &[String], shutdown: &CancellationToken) -> Self {
        if provinces.len() <= 1 {
            return Self::with_shutdown(shutdown);
        }
        Self::closed_by(provinces, shutdown.child_token())
    }

    fn closed_by(codes: &[String], closed: CancellationToken) -> Self {
        let channels = codes
            .iter()
            .map(|code| {
                let snapshot = Arc::new(BoardSnapshot::default());
                let json = to_json(&snapshot);
                (code.clone(), watch::channel(Published { version: 0, snapshot, json }).0)
            })
            .collect();
        Board { inner: Arc::new(Inner { channels, closed, replay: std::sync::Mutex::new(None) }) }
    }

    /// Replaces the snapshot of its province (`s.province.code`) and pushes
    /// it to every page connected to that province (with the latest replay
    /// progress). A snapshot of a province the board does not track is a
    /// caller bug: logged and dropped.
    pub fn publish(&self, mut s: BoardSnapshot) {
        let Some(tx) = self.inner.channel(Some(&s.province.code)) else {
            tracing::error!(province = %s.province.code, "board snapshot of a province not tracked: dropped");
            return;
        };
        s.replay = self.replay();
        let json = to_json(&s);
        let snapshot = Arc::new(s);
        tx.send_modify(|p| {
            *p = Published { version: p.version + 1, snapshot, json };
        });
        tracing::debug!(version = tx.borrow().version, "board published");
    }

    /// Sets the replay progress; a change of "behind" is pushed at once
    /// (the figures on the wall must not look current a moment longer),
    /// anything else with the next snapshot.
    pub fn set_replay(&self, replay: ReplayBoard) {
        let was = {
            let mut r = self.inner.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            r.replace(replay)
        };
        if was.map(|w| w.behind) == Some(replay.behind) {
            return;
        }
        for (_, tx) in &self.inner.channels {
            let (version, s) = {
                let p = tx.borrow();
                (p.version, (*p.snapshot).clone())
            };
            if version > 0 {
                self.publish(s);
            }
        }
    }

    fn replay(&self) -> Option<ReplayBoard> {
        *self.inner.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest snapshot of the first province.
    pub fn snapshot(&self) -> Arc<BoardSnapshot> {
        Arc::clone(&self.inner.channels[0].1.borrow().snapshot)
    }

    /// How many snapshots of the first province have been published.
    pub fn version(&self) -> u64 {
        self.inner.channels[0].1.borrow().version
    }

    /// Ends every open event stream and refuses new ones (they end at once),
    /// so that a graceful HTTP shutdown can complete. `/board` and
    /// `/board/state` keep answering.
    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// `GET /board`, `GET /board/state` and `GET /board/events`, for
    /// [`HttpServer::merge`](crate::HttpServer::merge).
    pub fn routes(&self) -> Router {
        self.router(KEEP_ALIVE)
    }

    fn router(&self, keep_alive: Duration) -> Router {
        let (page, state, events_inner) = (Arc::clone(&self.inner), Arc::clone(&self.inner), Arc::clone(&self.inner));
        Router::new()
            .route(
                "/board",
                get(move |q: Query<ProvinceQuery>| async move {
                    match page.channel(q.province.as_deref()) {
                        Some(_) => (
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
                            PAGE,
                        )
                            .into_response(),
                        None => page.not_tracked(q.province.as_deref()),
                    }
                }),
            )
            .route(
                "/board/state",
                get(move |q: Query<ProvinceQuery>| async move {
                    match state.channel(q.province.as_deref()) {
                        Some(tx) => {
                            let json = Arc::clone(&tx.borrow().json);
                            (
                                [
                                    (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                                    (header::CACHE_CONTROL, "no-store"),
                                ],
                                json.to_string(),
                            )
                                .into_response()
                        }
                        None => state.not_tracked(q.province.as_deref()),
                    }
                }),
            )
            .route(
                "/board/events",
                get(move |q: Query<ProvinceQuery>| async move {
                    let Some(tx) = events_inner.channel(q.province.as_deref()) else {
                        return events_inner.not_tracked(q.province.as_deref());
                    };
                    let stream = events(tx.subscribe(), events_inner.closed.clone());
                    (
                        // Tells nginx-like proxies not to buffer the stream.
                        [("x-accel-buffering", "no")],
                        Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)),
                    )
                        .into_response()
                }),
            )
    }
}

/// A route's query: which province.
#[derive(Debug, serde::Deserialize)]
struct ProvinceQuery {
    province: Option<String>,
}

impl Inner {
    /// The channel of `province` (GSO code), the first without one; a board
    /// of one province answers to any code its snapshots carry.
    fn channel(&self, province: Option<&str>) -> Option<&watch::Sender<Published>> {
        match (province, self.channels.as_slice()) {
            (None, [first, ..]) => Some(&first.1),
            (Some(code), [(only, tx)]) if only.is_empty() => {
                let published = tx.borrow().snapshot.province.code.clone();
                (published.is_empty() || published == code).then_some(tx)
            }
            (Some(code), channels) => channels.iter().find(|(c, _)| c == code).map(|(_, tx)| tx),
            (None, []) => None,
        }
    }

    /// 404: which provinces are tracked.
    fn not_tracked(&self, province: Option<&str>) -> axum::response::Response {
        let tracked: Vec<String> = self
            .channels
            .iter()
            .map(|(code, tx)| if code.is_empty() { tx.borrow().snapshot.province.code.clone() } else { code.clone() })
            .collect();
        let body = format!(
            "province {:?} is not tracked by this deployment; it tracks {}\n",
            province.unwrap_or_default(),
            tracked.join(", ")
        );
        (axum::http::StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // The routes may outlive the board (they hold the channels, not the
        // board): streams end either way, this only makes it immediate.
        self.inner.closed.cancel();
    }
}

/// Serialises a snapshot; it has only strings, numbers and booleans, so
/// this cannot fail, but a failure would show as an empty board, not a panic.
fn to_json(s: &BoardSnapshot) -> Arc<str> {
    match serde_json::to_string(s) {
        Ok(j) => j.into(),
        Err(e) => {
            tracing::error!(error = %e, "board snapshot not serialisable");
            Arc::from("{}")
        }
    }
}

fn event(p: &Published) -> Event {
    Event::default().id(p.version.to_string()).retry(RETRY).data(&*p.json)
}

/// The current snapshot (if any was published), then one event per change,
/// until the board is closed or dropped.
fn events(
    mut rx: watch::Receiver<Published>,
    closed: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = {
        let p = rx.borrow_and_update();
        (p.version > 0).then(|| event(&p))
    };
    let rest = futures::stream::unfold((rx, closed), |(mut rx, closed)| async move {
        tokio::select! {
            biased;
            _ = closed.cancelled() => None,
            changed = rx.changed() => match changed {
                Ok(()) => {
                    let e = event(&rx.borrow_and_update());
                    Some((Ok(e), (rx, closed)))
                }
                Err(_) => None,
            },
        }
    });
    futures::StreamExt::chain(futures::stream::iter(first.map(Ok)), rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
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
        let server = HttpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new().unwrap()),
            Arc::new(Health::new()),
        )
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
        let server = HttpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new().unwrap()),
            Arc::new(Health::new()),
        )
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
}
