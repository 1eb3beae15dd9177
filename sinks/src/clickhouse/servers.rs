//! The ClickHouse servers a sink talks to, and failing over between them.
//!
//! `[clickhouse] url` and then `urls` hold the same data (replicas of one
//! shard, or servers of one cluster that all serve the `Distributed` names):
//! the sink sends every request to the current one, and a request that fails
//! in a retryable way (connection refused, timeout, a replica without its
//! ZooKeeper session, ...) moves the sink on to the next URL, so that the
//! caller's retry goes elsewhere. Clones of a sink share the current URL.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ::clickhouse::Client;

use super::redact_url;

/// One client per URL, in the configured order, and which one is current.
#[derive(Clone)]
pub(crate) struct Servers {
    clients: Arc<[Client]>,
    /// The URLs, credentials redacted, for logs.
    shown: Arc<[String]>,
    current: Arc<AtomicUsize>,
    /// How many times the current URL moved.
    failovers: Arc<AtomicU64>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers").field("urls", &self.shown).field("current", &self.current()).finish()
    }
}

impl Servers {
    /// `urls` paired with a client built for each by `build`; at least one.
    #[cfg(test)]
    pub(crate) fn new(urls: &[String], build: impl Fn(&str) -> Client) -> Self {
        Servers {
            clients: urls.iter().map(|u| build(u)).collect(),
            shown: urls.iter().map(|u| redact_url(u)).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            failovers: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `urls` paired with a client built for each by `build` (the first
    /// error if one fails); at least one.
    pub(crate) fn try_new<E>(urls: &[String], build: impl Fn(&str) -> Result<Client, E>) -> Result<Self, E> {
        let clients = urls.iter().map(|u| build(u)).collect::<Result<Vec<_>, E>>()?;
        Ok(Servers {
            clients: clients.into(),
            shown: urls.iter().map(|u| redact_url(u)).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            failovers: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many URLs there are.
    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// The index of the current URL.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.clients.len().max(1)
    }

    /// The client of the current URL.
    pub(crate) fn client(&self) -> &Client {
        &self.clients[self.current()]
    }

    /// The redacted URL `index`, for logs.
    pub(crate) fn shown(&self, index: usize) -> &str {
        &self.shown[index % self.shown.len()]
    }

    /// How many times [`fail_over`](Self::fail_over) moved the current URL.
    pub(crate) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Makes `index` the current URL.
    pub(crate) fn select(&self, index: usize) {
        self.current.store(index % self.clients.len(), Ordering::Relaxed);
    }

    /// A request to URL `failed` failed in a retryable way: moves on to the
    /// next URL, unless another request already did (so that the concurrent
    /// inserts of one failed flush move it once, not once each).
    pub(crate) fn fail_over(&self, failed: usize) {
        let n = self.clients.len();
        if n < 2 {
            return;
        }
        let next = (failed + 1) % n;
        if self.current.compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                from = self.shown(failed),
                to = self.shown(next),
                "ClickHouse: failing over to the next URL"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Servers {
        let urls: Vec<String> = (0..n).map(|i| format!("http://u:p@h{i}:8123")).collect();
        Servers::new(&urls, |u| Client::default().with_url(u))
    }

    #[test]
    fn failing_over_cycles_through_the_urls_once_per_failure() {
        let s = servers(3);
        assert_eq!(s.current(), 0);
        s.fail_over(0);
        assert_eq!(s.current(), 1);
        // A second report of the same failure (a concurrent insert) does not move it again.
        s.fail_over(0);
        assert_eq!(s.current(), 1);
        s.fail_over(1);
        s.fail_over(2);
        assert_eq!(s.current(), 0, "wraps around");
        let clone = s.clone();
        clone.fail_over(0);
        assert_eq!(s.current(), 1, "clones share the current URL");
        assert_eq!(s.failovers(), 4, "moves counted, the repeated report not");
    }

    #[test]
    fn one_url_never_moves_and_logs_never_show_credentials() {
        let s = servers(1);
        s.fail_over(0);
        assert_eq!(s.current(), 0);
        assert_eq!(s.len(), 1);
        let shown = format!("{:?}", servers(2));
        assert!(!shown.contains("u:p@"), "{shown}");
        assert!(shown.contains("h1:8123"), "{shown}");
    }
}
