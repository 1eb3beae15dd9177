//! Step 3 of a flush: every owned shard's store committed, retried while the
//! state directory refuses writes (a full disk, an I/O error; [`Outage`]).
//!
//! While it fails stage 2 stops: the flush does not return, so nothing more
//! is received (the bounded channel fills, the facts consumer stops polling)
//! and no offset is committed past what the stores hold. The pending facts
//! stay in memory and are written by the next attempt; once the disk takes
//! writes again d06 carries on by itself (docs/OPERATIONS.md, "Disk full").

use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use super::Pipeline;

impl Pipeline {
    /// Checkpoints every shard, retrying with backoff until all succeed or
    /// shutdown (then the error is returned and nothing is committed).
    pub(super) async fn checkpoint_all(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let mut outage = Outage::new("checkpointing the shards", &self.p.state_dir, &self.p.metrics, &self.p.health);
        loop {
            let started = Instant::now();
            let (pool, shards) = (&self.pool, &mut self.shards);
            let result = tokio::task::block_in_place(|| {
                pool.install(|| {
                    shards
                        .par_iter_mut()
                        .try_for_each(|(p, s)| s.checkpoint().with_context(|| format!("checkpointing shard {p}")))
                })
            });
            let error = match result {
                Ok(()) => {
                    self.p.metrics.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                    outage.succeeded();
                    return Ok(());
                }
                Err(e) => e,
            };
            let wait = outage.failed(&error);
            if shutdown.is_cancelled() {
                return Err(error).context(format!("writing the state store in {}", self.p.state_dir.display()));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}
