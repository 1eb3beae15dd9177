//! Step 3 of a flush: every owned shard's store committed, retried while the
//! state directory refuses writes (a full disk, an I/O error).
//!
//! While it fails stage 2 stops: the flush does not return, so nothing more
//! is received (the bounded channel fills, the facts consumer stops polling)
//! and no offset is committed past what the stores hold. The pending facts
//! stay in memory and are written by the next attempt; once the disk takes
//! writes again d06 carries on by itself (docs/OPERATIONS.md, "Disk full").

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Pipeline;

/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// How often a still-failing store is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// The wait before attempt `attempt + 1`: 100 ms doubling, at most [`MAX_WAIT`].
fn backoff(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    Duration::from_millis(100).saturating_mul(factor).min(MAX_WAIT)
}

impl Pipeline {
    /// Checkpoints every shard, retrying with backoff until all succeed or
    /// shutdown (then the error is returned and nothing is committed).
    pub(super) async fn checkpoint_all(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let mut attempt = 0u32;
        let mut failing_since: Option<Instant> = None;
        let mut reminded = Instant::now();
        loop {
            let started = Instant::now();
            let result = tokio::task::block_in_place(|| {
                self.pool.install(|| {
                    self.shards
                        .par_iter_mut()
                        .try_for_each(|(p, s)| s.checkpoint().with_context(|| format!("checkpointing shard {p}")))
                })
            });
            let error = match result {
                Ok(()) => {
                    self.p.metrics.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                    if let Some(since) = failing_since {
                        info!(
                            dir = %self.p.state_dir.display(),
                            attempts = attempt,
                            failed_for_s = since.elapsed().as_secs(),
                            "the state store takes writes again; stage 2 resumes"
                        );
                        self.p.metrics.state_store_failing.set(0);
                        self.p.health.set_store_failing(false);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            attempt += 1;
            self.p.metrics.state_store_failures.inc();
            if shutdown.is_cancelled() {
                return Err(error).context(format!("writing the state store in {}", self.p.state_dir.display()));
            }
            let wait = backoff(attempt);
            if failing_since.is_none() {
                failing_since = Some(Instant::now());
                self.p.metrics.state_store_failing.set(1);
                self.p.health.set_store_failing(true);
                error!(
                    dir = %self.p.state_dir.display(),
                    error = %format!("{error:#}"),
                    "cannot write the state store (disk full?): stage 2 stops consuming and commits nothing \
                     until it can; retrying"
                );
            } else if reminded.elapsed() >= REMIND_EVERY {
                reminded = Instant::now();
                warn!(
                    dir = %self.p.state_dir.display(),
                    attempts = attempt,
                    error = %format!("{error:#}"),
                    "the state store still refuses writes; stage 2 still stopped"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
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
