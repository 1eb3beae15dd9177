//! Step 2 of a flush: is every shard this instance owns still its own in
//! ClickHouse (`shard_owners`)? A newer claim on a shard the group still
//! gives this instance is a zombie's — a member paused past its session
//! serves its stale assignment on waking and claims, writing its stale state
//! whole. This instance then claims the shard again and rewrites it whole at
//! its next flush, so the figures may lag for about a session timeout,
//! never double and never stay stale.
//!
//! Every owned shard is checked, not only those a flush wrote to: a zombie's
//! rewrite of a shard whose stream has ended would otherwise stand for good
//! (black-box `scale_out`, seen under load). While an instance writes nothing
//! at all it still checks every [`IDLE_CHECK`], with one attempt: an
//! unreachable ClickHouse is the next write's business.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use sinks::clickhouse::ClickHouseSink;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{claim, generations, Pipeline};

/// How often an idle instance checks its shards' claims.
pub(super) const IDLE_CHECK: Duration = Duration::from_secs(5);

impl Pipeline {
    /// After a write: reads the generation of every owned shard (retried
    /// while ClickHouse is unreachable) and claims again those a newer claim
    /// superseded. `written`: per shard, the generation its rows carried and
    /// how many it wrote.
    pub(super) async fn check_claims(
        &mut self,
        written: &BTreeMap<u32, (u64, usize)>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let Some(sink) = self.p.sink.clone() else { return Ok(()) };
        let owned: Vec<u32> = written.keys().copied().collect();
        let current = generations(&sink, &owned, &self.p.metrics, &self.p.health, shutdown).await?;
        self.claims_checked = Instant::now();
        self.reclaim_superseded(&sink, &current, written, shutdown).await
    }

    /// While nothing is written: at most every [`IDLE_CHECK`], one attempt
    /// at the same check.
    pub(super) async fn check_claims_idle(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let Some(sink) = self.p.sink.clone() else { return Ok(()) };
        if self.shards.is_empty() || self.claims_checked.elapsed() < IDLE_CHECK {
            return Ok(());
        }
        self.claims_checked = Instant::now();
        let owned: BTreeMap<u32, (u64, usize)> = self.shards.iter().map(|(p, s)| (*p, (s.generation, 0))).collect();
        let partitions: Vec<u32> = owned.keys().copied().collect();
        match sink.generations(&partitions).await {
            Ok(current) => self.reclaim_superseded(&sink, &current, &owned, shutdown).await,
            Err(error) => {
                debug!(%error, "idle check of the shards' claims skipped");
                Ok(())
            }
        }
    }

    async fn reclaim_superseded(
        &mut self,
        sink: &ClickHouseSink,
        current: &BTreeMap<u32, u64>,
        written: &BTreeMap<u32, (u64, usize)>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let mut changed = false;
        for (&p, &(mine, rows)) in written {
            let Some(&newer) = current.get(&p).filter(|g| **g > mine) else { continue };
            // What was written for the shard carries a lower version and never counts.
            self.p.metrics.fenced_writes.inc_by(rows as u64);
            if self.releasing.contains(&p) {
                warn!(partition = p, generation = mine, newer, rows, "fenced while releasing the shard");
                continue;
            }
            let generation = claim(sink, p, &self.p.owner, shutdown).await?;
            warn!(
                partition = p,
                generation = mine,
                newer,
                reclaimed = generation,
                rows,
                "fenced: a newer claim on a shard the group still gives this instance; claimed it again"
            );
            if let Some(s) = self.shards.get_mut(&p) {
                s.generation = generation;
                s.full_rewrite = true;
            }
            changed = true;
        }
        if changed {
            self.ownership_changed();
        }
        Ok(())
    }
}
