//! A TCP proxy in front of ClickHouse that refuses connections on demand:
//! sink failures with a real server behind.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of ClickHouse that can answer the next `n` new
/// connections with `503 Service Unavailable` (after cutting the open ones),
/// so that the sink-failure metrics have a real series to show.
pub struct FlakyProxy {
    port: u16,
    fail_next: Arc<AtomicU32>,
    pub refused: Arc<AtomicU32>,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstream: String) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fail_next = Arc::new(AtomicU32::new(0));
        let refused = Arc::new(AtomicU32::new(0));
        let cut = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (f, r, c) = (fail_next.clone(), refused.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(refuse(inbound));
                    continue;
                }
                let mut cut = c.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        FlakyProxy { port, fail_next, refused, cut, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts every open connection; the next `n` new ones get a 503.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the request until the client goes quiet, then answers 503.
async fn refuse(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => break,
        }
    }
    let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    let _ = s.shutdown().await;
}
