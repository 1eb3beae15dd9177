//! A webhook receiver for Alertmanager's notifications, shared by the
//! alerting tests: listens on an address, answers every request and passes
//! the notifications on to the test.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One notification received.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request path: the receiver Alertmanager routed to.
    pub path: String,
    /// The JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl Delivery {
    /// The alerts of the notification.
    pub fn alerts(&self) -> Vec<&Value> {
        self.body["alerts"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
    }
}

/// A listening receiver; stops listening when dropped.
pub struct Webhooks {
    /// The port it listens on.
    pub port: u16,
    rx: mpsc::UnboundedReceiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhooks {
    /// Listens on `addr` (port 0: a free one), waiting up to 2 minutes for
    /// another test to release it. With `run`, only notifications whose
    /// alerts carry the label `blackbox_run = run` are passed on; another
    /// run's are answered 503, so that Alertmanager retries them until that
    /// run listens; notifications without the label (such as the local
    /// Prometheus' own alerts) are answered 200 and dropped. Without `run`
    /// every notification is passed on.
    pub async fn listen(addr: &str, run: Option<&str>) -> Webhooks {
        let deadline = Instant::now() + Duration::from_secs(120);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{addr} stayed busy for 2 minutes: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let port = listener.local_addr().expect("listener address").port();
        let (tx, rx) = mpsc::unbounded_channel();
        let run = run.map(str::to_owned);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (tx, run) = (tx.clone(), run.clone());
                tokio::spawn(async move { serve(stream, run.as_deref(), &tx).await });
            }
        });
        Webhooks { port, rx, task }
    }

    /// Collects notifications until `done` holds (or `timeout`), then
    /// `linger` longer, to catch any that should not come.
    pub async fn collect(
        &mut self,
        timeout: Duration,
        linger: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let mut got = Vec::new();
        let deadline = Instant::now() + timeout;
        while !done(&got) {
            match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.rx.recv()).await {
                Ok(Some(d)) => got.push(d),
                _ => return got,
            }
        }
        let until = Instant::now() + linger;
        while let Ok(Some(d)) =
            tokio::time::timeout(until.saturating_duration_since(Instant::now()), self.rx.recv()).await
        {
            got.push(d);
        }
        got
    }
}

/// Serves one connection: one request, one answer, close.
async fn serve(mut stream: TcpStream, run: Option<&str>, tx: &mpsc::UnboundedSender<Delivery>) {
    let Some((path, body)) = read_request(&mut stream).await else { return };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = match run {
        None => {
            let _ = tx.send(Delivery { path, body });
            "200 OK"
        }
        Some(run) => {
            let runs: Vec<&str> = body["alerts"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["labels"]["blackbox_run"].as_str()).collect())
                .unwrap_or_default();
            if runs.contains(&run) {
                let _ = tx.send(Delivery { path, body });
                "200 OK"
            } else if runs.is_empty() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            }
        }
    };
    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one HTTP/1.1 request with a Content-Length body: (path, body).
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, &mut buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        read_more(stream, &mut buf).await?;
    }
    Some((path, buf[head_end..head_end + len].to_vec()))
}

/// Appends what the peer sends next; None at EOF, error or 5 s of silence.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.ok()?.ok()?;
    (n > 0).then(|| buf.extend_from_slice(&chunk[..n]))
}
