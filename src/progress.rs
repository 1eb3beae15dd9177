//! The replay-progress task: measures the router's lag at a steady interval
//! and tells everyone who needs it — the lag gauges, `/readyz`, the board,
//! and the log (position, rate and ETA per source topic while far behind;
//! once when caught up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ingest::kafka::progress::{Progress, Step, TopicProgress};
use ingest::kafka::LagProbe;
use sinks::board::{Board, ReplayBoard};
use sinks::prometheus::{Health, Metrics};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Measures and reports replay progress until shutdown.
pub struct ProgressTask {
    /// The router's positions against the broker's ends.
    pub probe: LagProbe,
    /// Stage 2's facts partitions: facts waiting there also keep the
    /// instance "far behind" (stage 1 can finish a replay minutes before
    /// stage 2 has applied it).
    pub facts: Option<LagProbe>,
    /// Facts waiting beyond which the instance is far behind.
    pub behind_messages: u64,
    /// How often to measure.
    pub every: Duration,
    /// What "far behind" is and how often to say so.
    pub progress: Progress,
    /// Lag gauges.
    pub metrics: Arc<Metrics>,
    /// `/readyz`.
    pub health: Arc<Health>,
    /// The board, which says when its figures are not current.
    pub board: Arc<Board>,
    /// Stop when a partition with messages waiting has not moved this long.
    pub stall_limit: Option<Duration>,
}

impl ProgressTask {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {},
                _ = shutdown.cancelled() => return Ok(()),
            }
            let (p, f) = (self.probe.clone(), self.facts.clone());
            let (measured, facts) =
                tokio::task::spawn_blocking(move || (p.measure(), f.map(|f| f.measure()).unwrap_or_default()))
                    .await
                    .context("lag probe")?;
            for m in measured.iter().chain(&facts) {
                let partition = m.key.partition.to_string();
                self.metrics.consumer_lag.with_label_values(&[&*m.key.topic, partition.as_str()]).set(m.lag());
            }
            let facts_waiting: i64 = facts.iter().map(|m| m.lag()).sum();
            if measured.is_empty() {
                // No source partition assigned (yet, or to this instance at all):
                // only the facts it applies, if any, can say it is behind.
                if !facts.is_empty() {
                    let behind = far_behind(false, facts_waiting, self.behind_messages);
                    self.set_replay(ReplayBoard {
                        behind,
                        lag: if behind { facts_waiting } else { 0 },
                        rate: 0.0,
                        eta_seconds: None,
                    });
                }
                continue;
            }
            let now = Instant::now();
            let waiting: Vec<String> = measured
                .iter()
                .filter(|m| m.lag() > 0)
                .map(|m| format!("{}/{}@{}<{}", m.key.topic, m.key.partition, m.next, m.high))
                .collect();
            if !waiting.is_empty() {
                debug!(partitions = measured.len(), ?waiting, "router positions against the broker's ends");
            }
            let step = self.progress.observe(now, &measured);
            if let Some(limit) = self.stall_limit {
                let stalled = self.progress.stalled(now, limit, &measured);
                if !stalled.is_empty() {
                    let which: Vec<String> = stalled
                        .iter()
                        .map(|m| format!("{}/{} ({} waiting)", m.key.topic, m.key.partition, m.lag()))
                        .collect();
                    anyhow::bail!(
                        "the router has read nothing from {} for {} s although messages wait; stopping so that a \
                         restart (or another instance) takes the partitions over",
                        which.join(", "),
                        limit.as_secs()
                    );
                }
            }
            let overall = self.progress.overall();
            let behind = far_behind(overall.behind, facts_waiting, self.behind_messages);
            self.set_replay(ReplayBoard {
                behind,
                lag: overall.lag + if behind { facts_waiting } else { 0 },
                rate: overall.rate,
                eta_seconds: overall.eta().map(|d| d.as_secs()),
            });
            match step {
                Step::Behind { topics, log: true } => {
                    for t in topics.iter().filter(|t| t.lag() > 0) {
                        log_topic(t);
                    }
                }
                Step::CaughtUp { after } => {
                    info!(
                        behind_for_s = after.as_secs(),
                        read = overall.done,
                        lag = overall.lag,
                        "caught up with the source topics"
                    );
                }
                Step::Behind { log: false, .. } | Step::Current => {}
            }
        }
    }
}

impl ProgressTask {
    /// Tells `/readyz` and the board whether this instance is far behind.
    fn set_replay(&self, replay: ReplayBoard) {
        self.health.set_behind(replay.behind);
        self.board.set_replay(replay);
    }
}

/// Far behind: the source topics are, or more than `limit` facts wait for
/// stage 2.
fn far_behind(sources_behind: bool, facts_waiting: i64, limit: u64) -> bool {
    sources_behind || u64::try_from(facts_waiting).is_ok_and(|w| w > limit)
}

fn log_topic(t: &TopicProgress) {
    info!(
        topic = %t.topic,
        position = t.position,
        end = t.end,
        lag = t.lag(),
        rate = t.rate.round() as u64,
        eta_s = t.eta().map(|d| d.as_secs()),
        "replaying behind the source topic"
    );
}

#[cfg(test)]
mod tests {
    use super::far_behind;

    #[test]
    fn facts_waiting_for_stage_2_keep_an_instance_far_behind() {
        assert!(far_behind(true, 0, 100));
        assert!(!far_behind(false, 100, 100), "at the limit");
        assert!(far_behind(false, 101, 100), "stage 1 caught up, stage 2 not");
        assert!(!far_behind(false, -1, 0));
    }
}
