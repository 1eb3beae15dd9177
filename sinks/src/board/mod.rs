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
mod tests;
