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
            let p = self.probe.clone();
            let measured = tokio::task::spawn_blocking(move || p.measure()).await.context("lag probe")?;
            for m in &measured {
                let partition = m.key.partition.to_string();
                self.metrics.consumer_lag.with_label_values(&[&*m.key.topic, partition.as_str()]).set(m.lag());
            }
            if measured.is_empty() {
                // No partition assigned (yet, or to this instance at all): nothing to judge.
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
            self.health.set_behind(overall.behind);
            self.board.set_replay(ReplayBoard {
                behind: overall.behind,
                lag: overall.lag,
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
