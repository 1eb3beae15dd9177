//! The state directory refusing writes (a full disk, an I/O error), wherever
//! stage 2 meets it: a flush's checkpoint ([`checkpoint`](super::checkpoint))
//! or opening a shard's store on assignment ([`restore`](super::restore)).
//! Both retry with the same backoff and say the same things: one error line
//! naming the directory and the cause, a reminder every minute,
//! `d06_state_store_failing`, `d06_state_store_write_failures_total`,
//! `/readyz` false, and one line when the store takes writes again
//! (docs/OPERATIONS.md, "Disk full").

use std::path::Path;
use std::time::{Duration, Instant};

use sinks::prometheus::{Health, Metrics};
use tracing::{error, info, warn};

/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// How often a still-failing store is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// The wait before attempt `attempt + 1`: 100 ms doubling, at most [`MAX_WAIT`].
pub(super) fn backoff(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    Duration::from_millis(100).saturating_mul(factor).min(MAX_WAIT)
}

/// One run of attempts at a store operation (`what`: "checkpointing the
/// shards", "opening shard 3"), from its first failure to its success.
pub(super) struct Outage<'a> {
    what: String,
    dir: &'a Path,
    metrics: &'a Metrics,
    health: &'a Health,
    attempt: u32,
    failing_since: Option<Instant>,
    reminded: Instant,
}

impl<'a> Outage<'a> {
    /// No failure yet.
    pub(super) fn new(what: impl Into<String>, dir: &'a Path, metrics: &'a Metrics, health: &'a Health) -> Self {
        Outage { what: what.into(), dir, metrics, health, attempt: 0, failing_since: None, reminded: Instant::now() }
    }

    /// Records a failed attempt (said once as an error, then every minute)
    /// and returns how long to wait before the next.
    pub(super) fn failed(&mut self, error: &anyhow::Error) -> Duration {
        self.attempt += 1;
        self.metrics.state_store_failures.inc();
        let cause = format!("{error:#}");
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            self.metrics.state_store_failing.set(1);
            self.health.set_store_failing(true);
            error!(
                dir = %self.dir.display(),
                during = %self.what,
                error = %cause,
                "cannot write the state store (disk full?): stage 2 stops consuming and commits nothing \
                 until it can; retrying"
            );
        } else if self.reminded.elapsed() >= REMIND_EVERY {
            self.reminded = Instant::now();
            warn!(
                dir = %self.dir.display(),
                during = %self.what,
                attempts = self.attempt,
                error = %cause,
                "the state store still refuses writes; stage 2 still stopped"
            );
        }
        backoff(self.attempt)
    }

    /// Records the success that ends the run (said when attempts had failed).
    pub(super) fn succeeded(self) {
        if let Some(since) = self.failing_since {
            info!(
                dir = %self.dir.display(),
                during = %self.what,
                attempts = self.attempt,
                failed_for_s = since.elapsed().as_secs(),
                "the state store takes writes again; stage 2 resumes"
            );
            self.metrics.state_store_failing.set(0);
            self.health.set_store_failing(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(7), MAX_WAIT);
        assert_eq!(backoff(u32::MAX), MAX_WAIT);
    }
}
