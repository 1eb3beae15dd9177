//! Stage 2's Kafka edge: reads the facts topic (`read_committed`), one
//! partition per shard, and the dead-letter topic, and hands the pipeline
//! ownership changes and batches over one bounded channel, in order.
//!
//! A facts partition is started where the shard's own store says (the
//! pipeline answers an [`ShardEvent::Assign`] after opening it), never at the
//! group's committed offset, which is written for monitoring only. On
//! revocation the pipeline flushes, checkpoints and drops the shard before
//! the partition is released, bounded by half of `max.poll.interval.ms` so
//! that a ClickHouse outage cannot turn into a rebalance loop. Dead-letter
//! partitions start at the group's committed offset: their rows are keyed by
//! source position, so a redelivery rewrites the same row.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aggregator::{Fact, Nanos};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::membership::LeftOutWatch;
use super::record::{FactsRecord, RecordError};
use super::{give_back_revoked, headers, take_assigned, ErrorLog, KafkaConfig, KafkaFault, SourceError};

/// Facts of one partition in one batch.
#[derive(Debug, Default)]
pub struct PartBatch {
    /// Facts in offset order.
    pub facts: Vec<Fact>,
    /// The newest clock record seen.
    pub clock: Option<Nanos>,
    /// The next offset to read after this batch.
    pub next_offset: i64,
}

/// A rejected message as the dead-letter topic holds it (never its bytes here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Rejection reason.
    pub reason: String,
    /// Rejection detail.
    pub detail: String,
    /// When it was dead-lettered, seconds since the epoch.
    pub received_at: i64,
}

/// One batch for the pipeline.
#[derive(Debug, Default)]
pub struct ShardBatch {
    /// Per facts partition.
    pub parts: BTreeMap<i32, PartBatch>,
    /// Dead letters read.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Next offsets of the dead-letter partitions read.
    pub dead_positions: BTreeMap<i32, i64>,
}

impl ShardBatch {
    fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.dead_positions.is_empty()
    }
}

/// What the pipeline hears from the facts consumer, in order.
#[derive(Debug)]
pub enum ShardEvent {
    /// These facts partitions are now ours; answer each one's start offset
    /// (the next offset its store reflects, 0 for none).
    Assign {
        /// Partition and its high watermark (a store beyond it is stale;
        /// `i64::MAX` when it could not be read in time).
        partitions: Vec<(i32, i64)>,
        /// The answer.
        reply: std_mpsc::SyncSender<Vec<(i32, i64)>>,
    },
    /// These facts partitions go: flush, checkpoint, drop, then answer.
    Revoke {
        /// The partitions.
        partitions: Vec<i32>,
        /// Lost rather than handed over (session timed out: we may be a zombie).
        lost: bool,
        /// Answered when done.
        done: std_mpsc::SyncSender<()>,
    },
    /// Facts and dead letters.
    Batch(ShardBatch),
}

/// Stage 2's `max.poll.interval.ms` unless `[kafka.properties]` sets one.
const SHARDS_MAX_POLL_MS: u64 = 300_000;

/// How long an assignment may spend reading its partitions' high
/// watermarks (a store ahead of an empty partition is stale), all together.
const WATERMARKS_BUDGET: Duration = Duration::from_secs(5);

struct ShardsContext {
    /// Taken when the consumer stops: a rebalance served after that (while
    /// the consumer is dropped) has no pipeline to talk to.
    tx: Mutex<Option<mpsc::Sender<ShardEvent>>>,
    facts: String,
    wait: Duration,
    watch: LeftOutWatch,
}

impl ClientContext for ShardsContext {}

impl ConsumerContext for ShardsContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let facts: Vec<i32> =
            tpl.elements().iter().filter(|e| e.topic() == self.facts).map(|e| e.partition()).collect();
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let (false, Some(tx)) = (facts.is_empty(), &tx) {
                    // One budget for every partition's watermark: a broker that
                    // does not answer (just restarted) must not hold the
                    // rebalance for a timeout per partition. A partition left
                    // without one is opened without the check it serves.
                    let deadline = Instant::now() + WATERMARKS_BUDGET;
                    let partitions = facts
                        .iter()
                        .map(|p| {
                            let left = deadline.saturating_duration_since(Instant::now());
                            let high = if left.is_zero() {
                                i64::MAX
                            } else {
                                consumer.fetch_watermarks(&self.facts, *p, left).map_or(i64::MAX, |(_, h)| h)
                            };
                            (*p, high)
                        })
                        .collect();
                    let (reply, answer) = std_mpsc::sync_channel(1);
                    if tx.blocking_send(ShardEvent::Assign { partitions, reply }).is_err() {
                        return;
                    }
                    match answer.recv_timeout(self.wait) {
                        Ok(starts) => {
                            for (p, next) in starts {
                                let offset = if next > 0 { Offset::Offset(next) } else { Offset::Beginning };
                                if let Err(error) = tpl.set_partition_offset(&self.facts, p, offset) {
                                    warn!(%error, partition = p, "could not set start offset");
                                }
                            }
                        }
                        Err(_) => {
                            error!("the pipeline did not open the assigned shards in time; not consuming them");
                            return;
                        }
                    }
                }
                info!(facts = ?facts, partitions = tpl.count(), "facts consumer assigned");
                self.watch.assigned();
                take_assigned(consumer, tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                if let (false, Some(tx)) = (facts.is_empty(), &tx) {
                    let (done, answer) = std_mpsc::sync_channel(1);
                    if tx.blocking_send(ShardEvent::Revoke { partitions: facts.clone(), lost, done }).is_ok()
                        && answer.recv_timeout(self.wait).is_err()
                    {
                        warn!(partitions = ?facts, "shards not flushed in time; releasing them (their writes are fenced)");
                    }
                }
                info!(facts = ?facts, lost, "facts consumer revoked");
                self.watch.revoked(lost);
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

/// The facts and dead-letter consumer of stage 2.
pub struct FactsSource {
    consumer: Arc<BaseConsumer<ShardsContext>>,
    config: KafkaConfig,
    identity: u64,
    /// `max.poll.interval.ms`: how long a member left out of its group
    /// waits before joining again ([`LeftOutWatch`]).
    rejoin_after: Duration,
}

impl fmt::Debug for FactsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactsSource").field("facts", &self.config.topics.facts).finish()
    }
}

/// Commits stage 2's positions to its group (facts: monitoring only; dead
/// letters: after their rows are in ClickHouse).
#[derive(Clone)]
pub struct ShardCommitter {
    consumer: Arc<BaseConsumer<ShardsContext>>,
    facts: String,
    dead: String,
}

impl fmt::Debug for ShardCommitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShardCommitter")
    }
}

impl ShardCommitter {
    /// Commits asynchronously; a failure is logged, never fatal.
    pub fn commit(&self, facts: &[(i32, i64)], dead: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (topic, list) in [(&self.facts, facts), (&self.dead, dead)] {
            for (p, next) in list {
                if let Err(error) = tpl.add_partition_offset(topic, *p, Offset::Offset(*next)) {
                    warn!(%error, "offset commit skipped");
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
                warn!(%error, "offset commit failed");
            }
        }
    }
}

impl FactsSource {
    /// Creates the consumer (group `{group_id}.shards`) and subscribes to the
    /// facts and dead-letter topics. `tx` also carries the rebalance events.
    pub fn new(config: &KafkaConfig, identity: u64, tx: mpsc::Sender<ShardEvent>) -> Result<Self, SourceError> {
        config.validate()?;
        let cc = config.consumer_config(&config.shards_group_id(), SHARDS_MAX_POLL_MS);
        let max_poll = config.max_poll_interval(SHARDS_MAX_POLL_MS);
        let context = ShardsContext {
            tx: Mutex::new(Some(tx)),
            facts: config.topics.facts.clone(),
            wait: max_poll / 2,
            watch: LeftOutWatch::new(config.fault == Some(KafkaFault::LeaveGroupOnLost)),
        };
        let consumer: BaseConsumer<ShardsContext> = cc.create_with_context(context)?;
        consumer.subscribe(&config.topics.stage2())?;
        Ok(FactsSource { consumer: Arc::new(consumer), config: config.clone(), identity, rejoin_after: max_poll })
    }

    /// Stage 2's positions in the facts topic (the next offset this
    /// consumer fetches, per assigned partition), for the lag probe: a
    /// replay whose stage 1 has caught up may still have facts to apply.
    pub fn lag_probe(&self) -> super::LagProbe {
        let consumer = Arc::clone(&self.consumer);
        let facts = self.config.topics.facts.clone();
        super::LagProbe::new(
            Arc::clone(&self.consumer) as Arc<dyn super::Watermarks>,
            Arc::new(move || {
                let Ok(tpl) = consumer.position() else { return Vec::new() };
                tpl.elements()
                    .iter()
                    .filter(|e| e.topic() == facts)
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(next) => {
                            Some((super::SourcePartition { topic: e.topic().into(), partition: e.partition() }, next))
                        }
                        _ => None,
                    })
                    .collect()
            }),
        )
    }

    /// A handle that commits positions.
    pub fn committer(&self) -> ShardCommitter {
        ShardCommitter {
            consumer: Arc::clone(&self.consumer),
            facts: self.config.topics.facts.clone(),
            dead: self.config.topics.dead_letter.clone(),
        }
    }

    /// Polls until `shutdown`, sending batches. Blocking: run it on its own thread.
    pub fn run(self, shutdown: CancellationToken) -> Result<(), SourceError> {
        let Some(tx) = self.consumer.context().tx.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return Ok(());
        };
        let linger = Duration::from_millis(self.config.linger_ms);
        let facts_topic = self.config.topics.facts.clone();
        let mut batch = ShardBatch::default();
        let mut n = 0usize;
        let mut started = Instant::now();
        let mut errors = ErrorLog::default();
        let topics = self.config.topics.stage2();
        info!(facts = %facts_topic, dead_letters = %self.config.topics.dead_letter, "facts consumer started");
        while !shutdown.is_cancelled() {
            match self.consumer.poll(Duration::from_millis(20)) {
                // Idle, as a member without partitions is: the time to look.
                None => self.consumer.context().watch.check(&self.consumer, &topics, self.rejoin_after, "facts")?,
                Some(Err(error)) => errors.report(&error),
                Some(Ok(msg)) => {
                    if msg.topic() == facts_topic {
                        let part = batch.parts.entry(msg.partition()).or_default();
                        part.next_offset = msg.offset() + 1;
                        let payload = msg.payload().unwrap_or_default();
                        match FactsRecord::decode(payload, Some(self.identity)) {
                            Ok(FactsRecord::Fact { fact, .. }) => part.facts.push(fact),
                            Ok(FactsRecord::Clock(t)) => part.clock = Some(part.clock.map_or(t, |c| c.max(t))),
                            Ok(FactsRecord::Identity { .. }) => {}
                            Err(e @ (RecordError::Identity { .. } | RecordError::Version(_))) => {
                                return Err(SourceError::Config(format!(
                                    "{facts_topic} partition {} offset {}: {e}. Every instance must share the \
                                     key, geography, time zone, horizon and shard count",
                                    msg.partition(),
                                    msg.offset()
                                )));
                            }
                            Err(e) => {
                                return Err(SourceError::Config(format!(
                                    "{facts_topic} partition {} offset {}: {e}",
                                    msg.partition(),
                                    msg.offset()
                                )));
                            }
                        }
                    } else {
                        batch.dead_positions.insert(msg.partition(), msg.offset() + 1);
                        if let Some(d) = dead_letter(&msg) {
                            batch.dead_letters.push(d);
                        } else {
                            warn!(
                                partition = msg.partition(),
                                offset = msg.offset(),
                                "dead letter without d06 headers"
                            );
                        }
                    }
                    n += 1;
                }
            }
            let due = !batch.is_empty() && (n >= self.config.max_batch_messages || started.elapsed() >= linger);
            if due {
                let ready = std::mem::take(&mut batch);
                if !send(&tx, ShardEvent::Batch(ready), &shutdown)? {
                    break;
                }
                n = 0;
                started = Instant::now();
            } else if batch.is_empty() {
                started = Instant::now();
            }
        }
        if !batch.is_empty() {
            // Refused once the pipeline has stopped listening. Nothing is lost:
            // these records are past every shard's checkpoint and the dead
            // letters' committed offsets, so whoever opens those partitions next
            // reads them again.
            let _ = tx.blocking_send(ShardEvent::Batch(batch));
        }
        // Leave the group while the pipeline still listens, so the shards are
        // flushed and released now rather than when the consumer is dropped.
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(Ok(_)) | None = self.consumer.poll(Duration::from_millis(50)) {}
            if self.consumer.assignment().map_or(true, |a| a.count() == 0) {
                break;
            }
        }
        self.consumer.context().tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(tx);
        info!("facts consumer stopped");
        Ok(())
    }
}

fn dead_letter<M: Message>(msg: &M) -> Option<DeadLetterRecord> {
    let hdrs = msg.headers()?;
    let get = |name: &str| -> Option<String> {
        hdrs.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some(DeadLetterRecord {
        topic: get(headers::TOPIC)?,
        partition: get(headers::PARTITION)?.parse().ok()?,
        offset: get(headers::OFFSET)?.parse().ok()?,
        reason: get(headers::REASON)?,
        detail: get(headers::DETAIL).unwrap_or_default(),
        received_at: msg.timestamp().to_millis().map_or(0, |ms| ms / 1000),
    })
}

/// Sends with backpressure, waking up to check for shutdown. Ok(false) when shutting down.
fn send(
    tx: &mpsc::Sender<ShardEvent>,
    mut event: ShardEvent,
    shutdown: &CancellationToken,
) -> Result<bool, SourceError> {
    loop {
        match tx.try_send(event) {
            Ok(()) => return Ok(true),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SourceError::ChannelClosed),
            Err(mpsc::error::TrySendError::Full(e)) => {
                if shutdown.is_cancelled() {
                    return tx.blocking_send(e).map(|_| false).map_err(|_| SourceError::ChannelClosed);
                }
                event = e;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
