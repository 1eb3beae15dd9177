//! Opening the shards of an assignment, in parallel on the worker pool (a
//! restart loads one snapshot per shard: with several shards every core
//! loads one), retried while the state directory refuses writes
//! ([`Outage`]), like a flush's checkpoint: a full disk while a shard is
//! being restored stops stage 2 (the assignment is answered only once the
//! stores are open, nothing is applied nor committed meanwhile) and it
//! carries on by itself when space returns, instead of failing the instance
//! or discarding an intact store (docs/OPERATIONS.md, "Disk full").

use anyhow::{Context, Result};
use rayon::prelude::*;
use tokio_util::sync::CancellationToken;

use super::outage::Outage;
use super::shard::{self, ShardState};
use super::Pipeline;

impl Pipeline {
    /// Opens the shards `wanted` (partition, its end offset), each restored
    /// from its store or rebuilt, retrying those the file system refuses
    /// with backoff; any other failure, or one still there at shutdown, is
    /// returned.
    pub(super) async fn open_shards(
        &self,
        wanted: &[(u32, i64)],
        shutdown: &CancellationToken,
    ) -> Result<Vec<(u32, ShardState)>> {
        let what = match wanted {
            [(p, _)] => format!("opening shard {p}"),
            _ => format!("opening shards {}", wanted.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut outage = Outage::new(what, &self.p.state_dir, &self.p.metrics, &self.p.health);
        let mut opened = Vec::with_capacity(wanted.len());
        let mut left = wanted.to_vec();
        loop {
            let results: Vec<_> = tokio::task::block_in_place(|| {
                self.pool.install(|| {
                    left.par_iter()
                        .map(|&(p, high)| {
                            let shard =
                                ShardState::open(&self.p, p, high).with_context(|| format!("opening shard {p}"));
                            (p, high, shard)
                        })
                        .collect()
                })
            });
            left.clear();
            let mut refused = None;
            for (p, high, shard) in results {
                match shard {
                    Ok(shard) => opened.push((p, shard)),
                    Err(e) if shard::refused(&e) && !shutdown.is_cancelled() => {
                        left.push((p, high));
                        refused.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(error) = refused else {
                outage.succeeded();
                return Ok(opened);
            };
            let wait = outage.failed(&error);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}
