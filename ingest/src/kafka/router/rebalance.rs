//! The router's rebalance callback: an assigned partition starts at the
//! group's committed offset and `too_late` watermark (paused until they can
//! be read); the open transaction is committed before partitions go, or
//! aborted when the assignment was lost.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::transaction::{lock, Inner};
use crate::kafka::membership::LeftOutWatch;
use crate::kafka::{give_back_revoked, take_assigned, PartitionState, SourcePartition};

/// The consumer context: commits the open transaction before partitions go.
pub(super) struct RouterContext {
    pub(super) inner: Arc<Mutex<Inner>>,
    pub(super) watch: LeftOutWatch,
}

impl fmt::Debug for RouterContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouterContext")
    }
}

impl ClientContext for RouterContext {}

impl ConsumerContext for RouterContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut inner = lock(&self.inner);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = inner.committed_offsets(consumer, tpl.clone());
                let started = match &committed {
                    Ok(committed) => {
                        for (e, (key, offset, state)) in committed.elements().iter().zip(start_positions(committed)) {
                            info!(topic = e.topic(), partition = e.partition(), ?offset, watermark = ?state.watermark, "source partition assigned");
                            if let Err(error) = tpl.set_partition_offset(&key.topic, key.partition, offset) {
                                warn!(%error, "could not set start offset");
                            }
                            inner.positions.insert(key.clone(), state);
                            inner.committed.insert(key, state);
                        }
                        true
                    }
                    Err(error) => {
                        // The group gave these partitions to this member: take them, but
                        // read nothing until their committed positions are known (an
                        // unassigned partition would wait for a rebalance that may never
                        // come). The poll loop retries.
                        warn!(%error, partitions = tpl.count(), "could not read committed offsets for the assignment; paused until they can be read");
                        for e in tpl.elements() {
                            inner.pending.insert(SourcePartition { topic: e.topic().into(), partition: e.partition() });
                        }
                        inner.pending_retry = pending_retry();
                        false
                    }
                };
                self.watch.assigned();
                let assigned = take_assigned(consumer, tpl);
                match assigned {
                    Ok(()) if !started => consumer.pause(tpl),
                    // librdkafka keeps an application's pause on a partition across
                    // rebalances (assignment clears only its own): one paused while
                    // pending, revoked and assigned again would stay paused, read
                    // nothing and never be resumed (issue 12's stalled router).
                    // Resuming a partition that is not paused is a no-op.
                    Ok(()) => consumer.resume(tpl),
                    other => other,
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                info!(partitions = tpl.count(), lost, "source partitions revoked");
                self.watch.revoked(lost);
                inner.offsets_unreadable = false;
                if inner.open && lost {
                    // Another member may own them already: never commit for lost partitions.
                    warn!("assignment lost: aborting the open transaction");
                    inner.abort_and_rewind(consumer);
                } else if inner.open {
                    if let Err(error) = inner.commit(consumer) {
                        warn!(%error, "committing before the revocation failed; the new owner re-reads from the last commit");
                        inner.abort_and_rewind(consumer);
                    }
                }
                for e in tpl.elements() {
                    let key = SourcePartition { topic: e.topic().into(), partition: e.partition() };
                    inner.positions.remove(&key);
                    inner.committed.remove(&key);
                    inner.dirty.remove(&key);
                    inner.pending.remove(&key);
                }
                give_back_revoked(consumer, tpl)
            }
            other => {
                warn!(error = ?other, "rebalance error; unassigning");
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}

/// The waits before reading a pending assignment's positions again: 500 ms
/// doubling to 30 s, for as long as they stay unreadable.
const PENDING_WAITS: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_secs(30))
    .without_max_times();

/// A fresh [`Inner::pending_retry`]: the first try after the first wait.
pub(super) fn pending_retry() -> (Instant, ExponentialBackoff) {
    let mut waits = PENDING_WAITS.build();
    // PENDING_WAITS has no limit on attempts: `next` is never None.
    let first = waits.next().unwrap_or_default();
    (Instant::now() + first, waits)
}

/// Where each partition of `committed` (the group's committed offsets) starts:
/// at its committed offset with the `too_late` watermark in its metadata, or
/// at the beginning with none.
fn start_positions(committed: &TopicPartitionList) -> Vec<(SourcePartition, Offset, PartitionState)> {
    committed
        .elements()
        .iter()
        .map(|e| {
            let key = SourcePartition { topic: e.topic().into(), partition: e.partition() };
            match e.offset() {
                Offset::Offset(o) => {
                    let watermark = e.metadata().parse::<i64>().ok();
                    (key, Offset::Offset(o), PartitionState { next_offset: o, watermark })
                }
                _ => (key, Offset::Beginning, PartitionState::default()),
            }
        })
        .collect()
}

impl Inner {
    /// The group's committed offsets for `tpl`.
    fn committed_offsets(
        &self,
        consumer: &BaseConsumer<RouterContext>,
        tpl: TopicPartitionList,
    ) -> Result<TopicPartitionList, KafkaError> {
        if self.offsets_unreadable {
            return Err(KafkaError::OffsetFetch(RDKafkaErrorCode::RequestTimedOut));
        }
        consumer.committed_offsets(tpl, self.timeout)
    }

    /// Reads the committed positions of partitions assigned while they could
    /// not be read, seeks them there and resumes them; on failure waits
    /// longer before the next try. A no-op until the retry is due.
    pub(super) fn start_pending(&mut self, consumer: &BaseConsumer<RouterContext>) {
        if self.pending.is_empty() || Instant::now() < self.pending_retry.0 {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for key in &self.pending {
            tpl.add_partition(&key.topic, key.partition);
        }
        let committed = match self.committed_offsets(consumer, tpl.clone()) {
            Ok(c) => c,
            Err(error) => {
                let wait = self.pending_retry.1.next().unwrap_or_default();
                warn!(%error, partitions = self.pending.len(), retry_in = ?wait, "committed offsets of assigned partitions still unreadable; they stay paused");
                self.pending_retry.0 = Instant::now() + wait;
                return;
            }
        };
        for (key, offset, state) in start_positions(&committed) {
            if !self.pending.remove(&key) {
                continue;
            }
            if let Err(error) = consumer.seek(&key.topic, key.partition, offset, self.timeout) {
                // Not started: stays pending, tried again.
                warn!(%error, topic = %key.topic, partition = key.partition, "seeking a pending partition failed");
                self.pending.insert(key);
                continue;
            }
            info!(topic = %key.topic, partition = key.partition, ?offset, watermark = ?state.watermark, "source partition assigned (positions read after the rebalance)");
            self.positions.insert(key.clone(), state);
            self.committed.insert(key, state);
        }
        let mut resume = TopicPartitionList::new();
        for e in committed.elements() {
            let key = SourcePartition { topic: e.topic().into(), partition: e.partition() };
            if self.positions.contains_key(&key) && !self.pending.contains(&key) {
                resume.add_partition(e.topic(), e.partition());
            }
        }
        if let Err(error) = consumer.resume(&resume) {
            warn!(%error, "resuming partitions failed");
        }
        self.pending_retry = pending_retry();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_starts_at_its_committed_offset_with_its_watermark_or_at_the_beginning() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("cccd", 0, Offset::Offset(42)).unwrap();
        tpl.find_partition("cccd", 0).unwrap().set_metadata("1700000000000000000");
        tpl.add_partition_offset("cccd", 1, Offset::Offset(7)).unwrap();
        tpl.add_partition_offset("sim", 3, Offset::Invalid).unwrap();
        let got = start_positions(&tpl);
        assert_eq!(got.len(), 3);
        let (key, offset, state) = &got[0];
        assert_eq!((&*key.topic, key.partition), ("cccd", 0));
        assert_eq!(*offset, Offset::Offset(42));
        assert_eq!(*state, PartitionState { next_offset: 42, watermark: Some(1_700_000_000_000_000_000) });
        // No metadata: no watermark, never a guessed one.
        assert_eq!(got[1].2, PartitionState { next_offset: 7, watermark: None });
        // Never committed: from the beginning, nothing seen.
        assert_eq!(got[2].1, Offset::Beginning);
        assert_eq!(got[2].2, PartitionState::default());
    }
}
