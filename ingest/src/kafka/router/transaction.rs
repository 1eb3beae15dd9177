//! The router's state and its Kafka transaction: begin, send, commit (with
//! the source positions, fenced against a newer owner), abort and rewind,
//! each transaction call retried while librdkafka says to call it again.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aggregator::Nanos;
use backon::{BlockingRetryable, ExponentialBackoff, ExponentialBuilder};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::rebalance::RouterContext;
use super::Committed;
use crate::kafka::record::FactsRecord;
use crate::kafka::{PartitionState, SourcePartition};

/// Everything the router and its rebalance callback share.
pub(super) struct Inner {
    /// Threaded: delivery reports are served on librdkafka's own thread, so
    /// `abort_transaction` can flush while the router thread waits.
    pub(super) producer: ThreadedProducer<DefaultProducerContext>,
    /// Where each assigned partition stands, including the open transaction.
    pub(super) positions: HashMap<SourcePartition, PartitionState>,
    /// What the last committed transaction recorded for each assigned partition.
    pub(super) committed: HashMap<SourcePartition, PartitionState>,
    /// Partitions moved by the open transaction.
    pub(super) dirty: HashSet<SourcePartition>,
    /// Assigned partitions whose committed positions could not be read yet:
    /// paused until [`Inner::start_pending`] reads them.
    pub(super) pending: HashSet<SourcePartition>,
    /// When `pending` is next tried, and the waits after that.
    pub(super) pending_retry: (Instant, ExponentialBackoff),
    /// Test only ([`KafkaFault::OffsetsUnreadableUntilRevoked`](crate::kafka::KafkaFault)).
    pub(super) offsets_unreadable: bool,
    pub(super) open: bool,
    /// An abort timed out: librdkafka finishes it only when called again, and
    /// refuses a new transaction meanwhile (after a stall past
    /// `max.poll.interval.ms` the coordinator can take a while to answer).
    pub(super) abort_unfinished: bool,
    pub(super) stats: Committed,
    pub(super) newest: Option<Nanos>,
    /// The newest `occurred_at` broadcast as a clock record.
    pub(super) broadcast: Option<Nanos>,
    pub(super) facts_topic: String,
    pub(super) partitions: u32,
    pub(super) identity: u64,
    pub(super) timeout: Duration,
}

/// Calls of `abort_transaction` (each up to the transaction timeout) before
/// an abort that keeps timing out stops the router.
const ABORT_ATTEMPTS: u32 = 6;

/// Calls of `commit_transaction` while it keeps timing out, before the
/// router gives up on the commit and aborts (and rewinds) instead.
const COMMIT_ATTEMPTS: u32 = 6;

/// The pauses between calls: a call refused at once because an earlier one
/// is still in progress ("Conflicting commit_transaction API call is already
/// in progress", seen after a broker was killed) would otherwise use every
/// attempt up within a millisecond. 250 ms doubling to 4 s: 7.75 s over the
/// five pauses of six attempts.
const TRANSACTION_PAUSES: ExponentialBuilder =
    ExponentialBuilder::new().with_min_delay(Duration::from_millis(250)).with_max_delay(Duration::from_secs(4));

/// Calls `call` (a transaction API call) until it succeeds, fails in a way
/// `again` does not accept, or has been made `attempts` times, pausing
/// [`TRANSACTION_PAUSES`] before each further call and saying so with
/// `retrying`. The last outcome, and how many calls were made.
fn retry_transaction(
    attempts: u32,
    retrying: &str,
    mut call: impl FnMut() -> Result<(), KafkaError>,
    again: impl Fn(&RDKafkaError) -> bool,
) -> (Result<(), KafkaError>, u32) {
    let calls = Cell::new(0u32);
    let outcome = (|| {
        calls.set(calls.get() + 1);
        call()
    })
    .retry(TRANSACTION_PAUSES.with_max_times(attempts.saturating_sub(1) as usize))
    .when(|e| matches!(e, KafkaError::Transaction(e) if again(e)))
    .notify(|e, pause| warn!(attempt = calls.get(), error = %e, retry_in_ms = pause.as_millis() as u64, "{retrying}"))
    .call();
    (outcome, calls.get())
}

pub(super) fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(super) fn begin(&mut self) -> Result<(), KafkaError> {
        if self.abort_unfinished {
            self.finish_abort()?;
        }
        if !self.open {
            self.producer.begin_transaction()?;
            self.open = true;
        }
        Ok(())
    }

    pub(super) fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
        let mut record = record;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Broadcasts the clock, sends the positions, commits. On success the
    /// transaction is closed and `stats` is returned.
    pub(super) fn commit(&mut self, consumer: &BaseConsumer<RouterContext>) -> Result<Committed, KafkaError> {
        if let Some(newest) = self.newest.filter(|n| Some(*n) > self.broadcast) {
            let mut buf = Vec::new();
            FactsRecord::Clock(newest).encode(self.identity, &mut buf);
            let topic = self.facts_topic.clone();
            for p in 0..self.partitions as i32 {
                self.send(BaseRecord::to(&topic).partition(p).payload(&buf[..]))?;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for key in &self.dirty {
            if let Some(s) = self.positions.get(key) {
                tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(s.next_offset))?;
                if let (Some(w), Some(mut e)) = (s.watermark, tpl.find_partition(&key.topic, key.partition)) {
                    e.set_metadata(w.to_string());
                }
            }
        }
        if tpl.count() > 0 {
            // A member that lost its partitions without noticing (paused past its
            // session) must not move a newer owner's offsets back. Kafka fences it
            // by group generation (KIP-447); this check does not rely on the broker.
            let current = consumer.committed_offsets(tpl.clone(), self.timeout)?;
            let mut overtaken = false;
            for e in current.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let key = SourcePartition { topic: e.topic().into(), partition: e.partition() };
                    if self.positions.get(&key).is_some_and(|s| o > s.next_offset) {
                        warn!(
                            topic = e.topic(),
                            partition = e.partition(),
                            committed = o,
                            "another member committed past this one: aborting"
                        );
                        self.committed
                            .insert(key, PartitionState { next_offset: o, watermark: e.metadata().parse().ok() });
                        overtaken = true;
                    }
                }
            }
            if overtaken {
                return Err(KafkaError::Canceled);
            }
            let group = consumer.group_metadata().ok_or(KafkaError::Canceled)?;
            self.producer.send_offsets_to_transaction(&tpl, &group, self.timeout)?;
        }
        self.commit_transaction()?;
        self.open = false;
        for key in self.dirty.drain() {
            if let Some(s) = self.positions.get(&key) {
                self.committed.insert(key, *s);
            }
        }
        if self.newest > self.broadcast {
            self.broadcast = self.newest;
        }
        Ok(std::mem::take(&mut self.stats))
    }

    /// Commits the open transaction. A commit that timed out goes on in the
    /// background, and librdkafka's contract is to call it again, which
    /// waits for that outcome; an abort at this point is refused as a
    /// conflicting call ("Conflicting commit_transaction API call is already
    /// in progress", seen after a broker was killed). So a retriable timeout
    /// is retried a few times; an error that needs an abort, or one that
    /// lasts, goes to the caller, which aborts and rewinds.
    fn commit_transaction(&mut self) -> Result<(), KafkaError> {
        let (producer, timeout) = (&self.producer, self.timeout);
        let (outcome, attempts) = retry_transaction(
            COMMIT_ATTEMPTS,
            "committing timed out; waiting for its outcome",
            || producer.commit_transaction(timeout),
            |e| e.is_retriable() && !e.txn_requires_abort(),
        );
        if outcome.is_ok() && attempts > 1 {
            info!(attempts, "the timed-out commit finished");
        }
        outcome
    }

    /// Finishes an abort that timed out, retrying a few times; then gives
    /// up with a clear error (the process stops; restarted, it fences this
    /// incarnation and re-reads from the last commit).
    fn finish_abort(&mut self) -> Result<(), KafkaError> {
        let (producer, timeout) = (&self.producer, self.timeout);
        let (outcome, attempts) = retry_transaction(
            ABORT_ATTEMPTS,
            "finishing the timed-out abort; retrying",
            || producer.abort_transaction(timeout),
            |e| e.is_retriable(),
        );
        match &outcome {
            Ok(()) => {
                info!(attempts, "the timed-out abort finished; transactions resume");
                self.abort_unfinished = false;
            }
            Err(error) => error!(
                attempts,
                %error,
                "the transaction coordinator never finished aborting this instance's transaction; \
                 stopping the router (a restart re-reads from the last commit)"
            ),
        }
        outcome
    }

    /// Aborts the open transaction and puts every partition back where the
    /// last commit left it (the aborted facts are invisible to `read_committed`).
    pub(super) fn abort_and_rewind(&mut self, consumer: &BaseConsumer<RouterContext>) {
        if self.open {
            match self.producer.abort_transaction(self.timeout) {
                Ok(()) => {}
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    warn!(error = %e, "aborting the transaction timed out; finishing it before the next one");
                    self.abort_unfinished = true;
                }
                Err(error) => warn!(%error, "aborting the transaction failed"),
            }
            self.open = false;
        }
        for key in self.dirty.drain() {
            let back = self.committed.get(&key).copied().unwrap_or_default();
            self.positions.insert(key.clone(), back);
            let offset = if back.next_offset > 0 { Offset::Offset(back.next_offset) } else { Offset::Beginning };
            if let Err(error) = consumer.seek(&key.topic, key.partition, offset, self.timeout) {
                warn!(%error, topic = %key.topic, partition = key.partition, "rewind failed");
            }
        }
        self.stats = Committed::default();
        self.newest = self.broadcast;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn a_refused_abort_or_commit_waits_before_the_next_attempt() {
        let pauses = |attempts: u32| -> Vec<u128> {
            TRANSACTION_PAUSES.with_max_times(attempts as usize - 1).build().map(|p| p.as_millis()).collect()
        };
        assert_eq!(pauses(ABORT_ATTEMPTS), [250, 500, 1_000, 2_000, 4_000]);
        assert_eq!(pauses(COMMIT_ATTEMPTS), [250, 500, 1_000, 2_000, 4_000]);
        assert_eq!(pauses(40)[38], 4_000, "capped");
    }

    #[test]
    fn a_transaction_call_is_repeated_only_while_its_error_is_accepted_and_attempts_remain() {
        // A real transaction error without a broker: the transactional API
        // of a producer that has no transactional.id.
        let producer: ThreadedProducer<DefaultProducerContext> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").create().unwrap();
        let refused = || producer.begin_transaction();
        assert!(matches!(refused(), Err(KafkaError::Transaction(_))));
        let (outcome, calls) = retry_transaction(3, "again", refused, |_| false);
        assert!(outcome.is_err());
        assert_eq!(calls, 1, "an error `again` does not accept is returned at once");
        let started = Instant::now();
        let (outcome, calls) = retry_transaction(2, "again", refused, |_| true);
        assert!(outcome.is_err());
        assert_eq!(calls, 2, "called `attempts` times");
        assert!(started.elapsed() >= Duration::from_millis(250), "with the first pause between");
        let (outcome, calls) = retry_transaction(3, "again", || Ok(()), |_| true);
        assert_eq!((outcome.is_ok(), calls), (true, 1));
    }
}
