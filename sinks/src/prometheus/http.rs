//! The HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Default listen address of the metrics server: loopback, Prometheus'
/// conventional exporter port range.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// Liveness and readiness, shared between the pipeline and the server.
///
/// `/healthz` answers 200 as long as the process serves HTTP (liveness).
/// `/readyz` answers 200 only when the figures this instance serves are
/// current: after the first complete flush, while ClickHouse accepts writes,
/// while the local state store accepts writes, and while the source topics
/// are not far behind. Otherwise 503 with the
/// reason, so an operator (or a load balancer's log) sees why.
#[derive(Debug, Default)]
pub struct Health {
    flushed: AtomicBool,
    sink_failing: AtomicBool,
    store_failing: AtomicBool,
    behind: AtomicBool,
}

/// Why `/readyz` says no; the first that applies, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// No complete flush yet: nothing written, nothing published.
    Starting,
    /// ClickHouse writes are failing (retried): the figures are getting old.
    SinkFailing,
    /// Writing the local state store fails (disk full?): stage 2 waits.
    StoreFailing,
    /// Replaying far behind the source topics' ends: the figures are not current.
    Behind,
}

impl NotReady {
    /// The `/readyz` body.
    pub fn message(self) -> &'static str {
        match self {
            NotReady::Starting => "not ready: no complete flush yet\n",
            NotReady::SinkFailing => "not ready: ClickHouse writes are failing\n",
            NotReady::StoreFailing => "not ready: writing the state store fails (disk full?)\n",
            NotReady::Behind => "not ready: replaying far behind the source topics\n",
        }
    }
}

impl Health {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A flush completed: written, checkpointed, published.
    pub fn set_flushed(&self) {
        self.flushed.store(true, Ordering::Release);
    }

    /// ClickHouse writes fail (true) or succeed again (false).
    pub fn set_sink_failing(&self, failing: bool) {
        self.sink_failing.store(failing, Ordering::Release);
    }

    /// Writing the local state store fails (true) or succeeds again (false).
    pub fn set_store_failing(&self, failing: bool) {
        self.store_failing.store(failing, Ordering::Release);
    }

    /// The source topics are (not) far behind.
    pub fn set_behind(&self, behind: bool) {
        self.behind.store(behind, Ordering::Release);
    }

    /// Whether the source topics are far behind (see [`Health::set_behind`]).
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    /// Ready, or why not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if !self.flushed.load(Ordering::Acquire) {
            Err(NotReady::Starting)
        } else if self.sink_failing.load(Ordering::Acquire) {
            Err(NotReady::SinkFailing)
        } else if self.store_failing.load(Ordering::Acquire) {
            Err(NotReady::StoreFailing)
        } else if self.behind.load(Ordering::Acquire) {
            Err(NotReady::Behind)
        } else {
            Ok(())
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }
}

/// The metrics and health HTTP server, bound but not yet serving.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) with the routes `/metrics`,
    /// `/healthz` and `/readyz`.
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>, health: Arc<Health>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let router = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = Arc::clone(&metrics);
                    async move { ([(header::CONTENT_TYPE, metrics.content_type())], metrics.encode()) }
                }),
            )
            .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
            .route(
                "/readyz",
                get(move || {
                    let ready = health.readiness();
                    async move {
                        match ready {
                            Ok(()) => (StatusCode::OK, "ready\n"),
                            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why.message()),
                        }
                    }
                }),
            );
        Ok(HttpServer { listener, local_addr, router })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The routes served, for adding more before [`run`](Self::run).
    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    /// Adds the routes of `routes` (paths must not clash with the built-in ones).
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets
    /// requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) -> io::Result<()> {
        tracing::info!(addr = %self.local_addr, "metrics server listening");
        axum::serve(self.listener, self.router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A minimal HTTP/1.1 GET: (status, headers + body as text).
    async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let status = buf.split(' ').nth(1).unwrap().parse().unwrap();
        (status, buf)
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new().unwrap());
        metrics.duplicates.inc_by(7);
        let health = Arc::new(Health::new());
        let server =
            HttpServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics), Arc::clone(&health)).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));

        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("content-type: text/plain; version=0.0.4"), "{body}");
        assert!(body.contains("\r\n\r\n# HELP d06_"), "{body}");
        assert!(body.contains("\nd06_duplicates_ignored_total 7\n"), "{body}");

        assert_eq!(http_get(addr, "/healthz").await.0, 200);
        let (status, body) = http_get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("not ready: no complete flush yet\n"), "{body}");
        health.set_behind(true);
        health.set_flushed();
        let (status, body) = http_get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("not ready: replaying far behind the source topics\n"), "{body}");
        health.set_behind(false);
        assert_eq!(http_get(addr, "/readyz").await.0, 200);
        health.set_sink_failing(true);
        let (status, body) = http_get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("not ready: ClickHouse writes are failing\n"), "{body}");
        health.set_sink_failing(false);
        assert_eq!(http_get(addr, "/readyz").await.0, 200);
        health.set_store_failing(true);
        let (status, body) = http_get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("not ready: writing the state store fails (disk full?)\n"), "{body}");
        health.set_store_failing(false);
        assert_eq!(http_get(addr, "/readyz").await.0, 200);
        assert_eq!(http_get(addr, "/nope").await.0, 404);

        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
    }

    #[tokio::test]
    async fn extra_routes_can_be_merged() {
        let server = HttpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new().unwrap()),
            Arc::new(Health::new()),
        )
        .await
        .unwrap()
        .merge(Router::new().route("/board", get(|| async { "board\n" })));
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        let (status, body) = http_get(addr, "/board").await;
        assert_eq!(status, 200);
        assert!(body.ends_with("\r\n\r\nboard\n"), "{body}");
        assert_eq!(http_get(addr, "/healthz").await.0, 200);
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn default_listen_is_loopback_9464() {
        assert_eq!(DEFAULT_LISTEN.to_string(), "127.0.0.1:9464");
    }
}
