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

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use sinks::prometheus::{Health, Metrics};
use tracing::{error, info, warn};

/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// The waits between attempts: 100 ms doubling to [`MAX_WAIT`], for as long
/// as the store refuses (a local disk: nobody else to spread out from).
const WAITS: ExponentialBuilder =
    ExponentialBuilder::new().with_min_delay(Duration::from_millis(100)).with_max_delay(MAX_WAIT).without_max_times();
/// How often a still-failing store is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// One run of attempts at a store operation (`what`: "checkpointing the
/// shards", "opening shard 3"), from its first failure to its success.
pub(super) struct Outage<'a> {
    what: String,
    dir: &'a Path,
    metrics: &'a Metrics,
    health: &'a Health,
    attempt: u32,
    waits: ExponentialBackoff,
    failing_since: Option<Instant>,
    reminded: Instant,
}

impl<'a> Outage<'a> {
    /// No failure yet.
    pub(super) fn new(what: impl Into<String>, dir: &'a Path, metrics: &'a Metrics, health: &'a Health) -> Self {
        Outage {
            what: what.into(),
            dir,
            metrics,
            health,
            attempt: 0,
            waits: WAITS.build(),
            failing_since: None,
            reminded: Instant::now(),
        }
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
        // WAITS has no limit on attempts: `next` is never None.
        self.waits.next().unwrap_or(MAX_WAIT)
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
    fn waits_double_from_100ms_up_to_the_cap() {
        let ms: Vec<u128> = WAITS.build().take(9).map(|w| w.as_millis()).collect();
        // backon computes in f32 seconds: a wait may come out a hair short.
        let expected = [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000];
        for (got, want) in ms.iter().zip(expected) {
            assert!(got.abs_diff(want) <= 1, "{ms:?}");
        }
        assert_eq!(ms.len(), 9);
        assert_eq!(WAITS.build().nth(10_000), Some(MAX_WAIT), "no limit on attempts");
    }
}
