//! Opening a shard's store on assignment, retried while the state directory
//! refuses writes ([`Outage`]), like a flush's checkpoint: a full disk while
//! a shard is being restored stops stage 2 (the assignment is answered only
//! once the store is open, nothing is applied nor committed meanwhile) and it
//! carries on by itself when space returns, instead of failing the instance
//! or discarding an intact store (docs/OPERATIONS.md, "Disk full").

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use super::shard::ShardState;
use super::Pipeline;
use crate::store::is_io_failure;

impl Pipeline {
    /// Opens shard `p` (restored from its store, or rebuilt), retrying with
    /// backoff while the file system refuses; any other failure, or one
    /// still there at shutdown, is returned.
    pub(super) async fn open_shard(&self, p: u32, high: i64, shutdown: &CancellationToken) -> Result<ShardState> {
        let mut outage = Outage::new(format!("opening shard {p}"), &self.p.state_dir, &self.p.metrics, &self.p.health);
        loop {
            let opened = tokio::task::block_in_place(|| ShardState::open(&self.p, p, high))
                .with_context(|| format!("opening shard {p}"));
            let error = match opened {
                Ok(shard) => {
                    outage.succeeded();
                    return Ok(shard);
                }
                Err(e) if is_io_failure(&e) && !shutdown.is_cancelled() => e,
                Err(e) => return Err(e),
            };
            let wait = outage.failed(&error);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}
