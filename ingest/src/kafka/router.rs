//! Stage 1, the router: source topics → validated, pseudonymised facts on the
//! facts topic, partitioned by subject, in Kafka transactions.
//!
//! One thread polls the four contract topics (`read_committed`), validates
//! each message and produces, inside the open transaction, either a fact to
//! the facts partition [`aggregator::Digest::shard`] picks (an explicit
//! partition, never the client's key hash) or the original bytes to the
//! dead-letter topic. At the end of a batch the source offsets and their
//! `too_late` watermarks (in the offset commit's metadata, as Kafka Streams
//! keeps its partition time) are sent to the transaction and it commits:
//! facts, dead letters and positions land together or not at all.
//!
//! Positions therefore live in the group's committed offsets, not on local
//! disk: on assignment a partition starts at its committed offset with the
//! committed watermark, so `too_late` decides the same after any crash or
//! rebalance. On revocation the open transaction is committed first.
//! `transactional.id` is stable per instance, so a restarted instance fences
//! its previous incarnation; a zombie that lost its partitions to another
//! member is fenced by the group generation carried with its offsets.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggregator::Nanos;
use backon::{BackoffBuilder, BlockingRetryable, ExponentialBackoff, ExponentialBuilder};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::record::FactsRecord;
use super::{headers, ErrorLog, KafkaConfig, PartitionState, SourceError, SourcePartition};
use crate::contract::Validator;

/// What one committed transaction did, for the caller's counters.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// Messages read per source topic.
    pub consumed: BTreeMap<String, u64>,
    /// Messages rejected per reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Facts written.
    pub facts: u64,
}

/// Test-only fault points (`[kafka] fault`): the process aborts at the named
/// moment, as a `kill -9` would, to prove what the transactions guarantee, or
/// the broker is made to look slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterFault {
    /// After producing a batch, before committing its transaction.
    BeforeCommit,
    /// Not an abort: the group's committed offsets read as unreadable (as on a
    /// broker too slow to answer) until this member's first revocation, so
    /// its first assignment is taken paused.
    OffsetsUnreadableUntilRevoked,
}

/// Everything the router and its rebalance callback share.
struct Inner {
    /// Threaded: delivery reports are served on librdkafka's own thread, so
    /// `abort_transaction` can flush while the router thread waits.
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Where each assigned partition stands, including the open transaction.
    positions: HashMap<SourcePartition, PartitionState>,
    /// What the last committed transaction recorded for each assigned partition.
    committed: HashMap<SourcePartition, PartitionState>,
    /// Partitions moved by the open transaction.
    dirty: HashSet<SourcePartition>,
    /// Assigned partitions whose committed positions could not be read yet:
    /// paused until [`Inner::start_pending`] reads them.
    pending: HashSet<SourcePartition>,
    /// When `pending` is next tried, and the waits after that.
    pending_retry: (Instant, ExponentialBackoff),
    /// Test only ([`RouterFault::OffsetsUnreadableUntilRevoked`]).
    offsets_unreadable: bool,
    open: bool,
    /// An abort timed out: librdkafka finishes it only when called again, and
    /// refuses a new transaction meanwhile (after a stall past
    /// `max.poll.interval.ms` the coordinator can take a while to answer).
    abort_unfinished: bool,
    stats: Committed,
    newest: Option<Nanos>,
    /// The newest `occurred_at` broadcast as a clock record.
    broadcast: Option<Nanos>,
    facts_topic: String,
    partitions: u32,
    identity: u64,
    timeout: Duration,
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

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The consumer context: commits the open transaction before partitions go.
pub struct RouterContext {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for RouterContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouterContext")
    }
}

impl ClientContext for RouterContext {}

impl ConsumerContext for RouterContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
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
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
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
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
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
fn pending_retry() -> (Instant, ExponentialBackoff) {
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
    fn start_pending(&mut self, consumer: &BaseConsumer<RouterContext>) {
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

    fn begin(&mut self) -> Result<(), KafkaError> {
        if self.abort_unfinished {
            self.finish_abort()?;
        }
        if !self.open {
            self.producer.begin_transaction()?;
            self.open = true;
        }
        Ok(())
    }

    fn send(&mut self, record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
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
    fn commit(&mut self, consumer: &BaseConsumer<RouterContext>) -> Result<Committed, KafkaError> {
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
    fn abort_and_rewind(&mut self, consumer: &BaseConsumer<RouterContext>) {
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

/// Stage 1: the source consumer and the transactional facts producer.
pub struct Router {
    consumer: Arc<BaseConsumer<RouterContext>>,
    inner: Arc<Mutex<Inner>>,
    validator: Validator,
    config: KafkaConfig,
    fault: Option<RouterFault>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("config", &self.config).finish()
    }
}

fn now_nanos() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as Nanos).unwrap_or(0)
}

impl Router {
    /// Creates the consumer and the transactional producer and fences any
    /// earlier incarnation of this instance (`init_transactions`).
    /// `partitions` is the facts topic's partition count; `identity` the
    /// fingerprint stamped on every record.
    pub fn new(
        config: &KafkaConfig,
        validator: Validator,
        partitions: u32,
        identity: u64,
        fault: Option<RouterFault>,
    ) -> Result<Self, SourceError> {
        config.validate()?;
        let timeout = Duration::from_millis(config.transaction_timeout_ms.max(1000));
        let mut pc = config.client_config();
        let txn_id = config.transactional_id();
        for (k, v) in [
            ("transactional.id", txn_id.as_str()),
            ("transaction.timeout.ms", &config.transaction_timeout_ms.to_string()),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("queue.buffering.max.messages", "1000000"),
            ("message.timeout.ms", &config.transaction_timeout_ms.to_string()),
        ] {
            if !config.properties.contains_key(k) {
                pc.set(k, v);
            }
        }
        let producer: ThreadedProducer<DefaultProducerContext> = pc.create()?;
        producer.init_transactions(Duration::from_secs(30)).map_err(SourceError::Kafka)?;
        info!(transactional_id = %txn_id, "transactional producer ready (earlier incarnations fenced)");
        let inner = Arc::new(Mutex::new(Inner {
            producer,
            positions: HashMap::new(),
            committed: HashMap::new(),
            dirty: HashSet::new(),
            pending: HashSet::new(),
            pending_retry: pending_retry(),
            offsets_unreadable: fault == Some(RouterFault::OffsetsUnreadableUntilRevoked),
            open: false,
            abort_unfinished: false,
            stats: Committed::default(),
            newest: None,
            broadcast: None,
            facts_topic: config.topics.facts.clone(),
            partitions,
            identity,
            timeout,
        }));
        // The router polls continuously (a commit waits at most the transaction
        // timeout), so a short interval bounds how long a rebalance can wait
        // for a member whose thread is stuck.
        let mut cc = config.consumer_config(&config.group_id, 60_000);
        if !config.properties.contains_key("partition.assignment.strategy") {
            // Eager: every rebalance revokes all source partitions (their open
            // transaction committed first) and starts every assigned one from the
            // group's committed offset. The router keeps no state worth keeping
            // across a rebalance. (Under the cooperative protocol a member that
            // kept partitions through a rebalance was seen to read nothing more
            // from them, issue 12: most likely partitions left paused from a
            // pending assignment, resumed on assignment since.)
            cc.set("partition.assignment.strategy", "range,roundrobin");
        }
        let consumer: BaseConsumer<RouterContext> =
            cc.create_with_context(RouterContext { inner: Arc::clone(&inner) })?;
        consumer.subscribe(&config.topics.sources())?;
        Ok(Router { consumer: Arc::new(consumer), inner, validator, config: config.clone(), fault })
    }

    /// Source partitions' positions, for the lag probe.
    pub fn lag_probe(&self) -> super::LagProbe {
        let inner = Arc::clone(&self.inner);
        super::LagProbe::new(
            Arc::clone(&self.consumer) as Arc<dyn super::Watermarks>,
            Arc::new(move || lock(&inner).committed.iter().map(|(k, s)| (k.clone(), s.next_offset)).collect()),
        )
    }

    /// Polls until `shutdown`, committing a transaction per batch; `on_commit`
    /// hears what each committed transaction did. Blocking: its own thread.
    pub fn run(self, shutdown: CancellationToken, mut on_commit: impl FnMut(&Committed)) -> Result<(), SourceError> {
        let linger = Duration::from_millis(self.config.linger_ms);
        let max = self.config.max_batch_messages;
        let mut started = Instant::now();
        let mut in_batch = 0usize;
        let mut now = now_nanos();
        let mut errors = ErrorLog::default();
        let mut buf = Vec::with_capacity(256);
        let facts_topic = self.config.topics.facts.clone();
        let dead_topic = self.config.topics.dead_letter.clone();
        info!(topics = ?self.config.topics.sources(), facts = %facts_topic, group = %self.config.group_id, "router started");
        while !shutdown.is_cancelled() {
            let polled = self.consumer.poll(Duration::from_millis(20));
            let mut inner = lock(&self.inner);
            inner.start_pending(&self.consumer);
            match polled {
                None => now = now_nanos(),
                Some(Err(error)) => errors.report(&error),
                Some(Ok(msg)) => {
                    if in_batch.is_multiple_of(1024) {
                        now = now_nanos();
                    }
                    let key = SourcePartition { topic: msg.topic().into(), partition: msg.partition() };
                    let Some(mut state) = inner.positions.get(&key).copied() else {
                        debug!(topic = msg.topic(), partition = msg.partition(), "message of an unassigned partition");
                        continue;
                    };
                    if msg.offset() < state.next_offset {
                        continue;
                    }
                    inner.begin()?;
                    let payload = msg.payload().unwrap_or_default();
                    match self.validator.validate(payload, now, &mut state.watermark) {
                        Ok(fact) => {
                            let p = fact.subject.shard(inner.partitions) as i32;
                            let occurred = fact.occurred_at;
                            let subject = fact.subject.0;
                            FactsRecord::Fact {
                                topic: msg.topic().to_owned(),
                                partition: msg.partition(),
                                offset: msg.offset(),
                                fact,
                            }
                            .encode(inner.identity, &mut buf);
                            inner
                                .send(BaseRecord::to(&facts_topic).partition(p).key(&subject[..]).payload(&buf[..]))?;
                            inner.newest = Some(inner.newest.map_or(occurred, |n| n.max(occurred)));
                            inner.stats.facts += 1;
                        }
                        Err(rejection) => {
                            let partition = msg.partition().to_string();
                            let offset = msg.offset().to_string();
                            let hdrs = OwnedHeaders::new()
                                .insert(Header { key: headers::REASON, value: Some(rejection.reason.as_str()) })
                                .insert(Header { key: headers::DETAIL, value: Some(rejection.detail.as_str()) })
                                .insert(Header { key: headers::TOPIC, value: Some(msg.topic()) })
                                .insert(Header { key: headers::PARTITION, value: Some(partition.as_str()) })
                                .insert(Header { key: headers::OFFSET, value: Some(offset.as_str()) });
                            let mut record: BaseRecord<'_, [u8], [u8]> =
                                BaseRecord::to(&dead_topic).payload(payload).headers(hdrs);
                            if let Some(k) = msg.key() {
                                record = record.key(k);
                            }
                            inner.send(record)?;
                            *inner.stats.rejected.entry(rejection.reason.as_str()).or_default() += 1;
                        }
                    }
                    state.next_offset = msg.offset() + 1;
                    *inner.stats.consumed.entry(msg.topic().to_owned()).or_default() += 1;
                    inner.positions.insert(key.clone(), state);
                    inner.dirty.insert(key);
                    in_batch += 1;
                }
            }
            let due = inner.open && (in_batch >= max || started.elapsed() >= linger);
            if due {
                if self.fault == Some(RouterFault::BeforeCommit) {
                    inner.producer.flush(Duration::from_secs(10)).map_err(SourceError::Kafka)?;
                    warn!("fault point before_commit: aborting the process");
                    std::process::abort();
                }
                match inner.commit(&self.consumer) {
                    Ok(stats) => on_commit(&stats),
                    Err(error) => {
                        if let KafkaError::Transaction(e) = &error {
                            if e.is_fatal() {
                                // Fenced: another incarnation of this instance owns the id.
                                return Err(SourceError::Kafka(error));
                            }
                        }
                        warn!(%error, "transaction failed; aborted and rewound to the last commit");
                        inner.abort_and_rewind(&self.consumer);
                    }
                }
                in_batch = 0;
                started = Instant::now();
            } else if !inner.open {
                started = Instant::now();
            }
        }
        let mut inner = lock(&self.inner);
        if inner.open {
            match inner.commit(&self.consumer) {
                Ok(stats) => on_commit(&stats),
                Err(error) => {
                    warn!(%error, "last transaction failed; aborting (the next owner re-reads it)");
                    inner.abort_and_rewind(&self.consumer);
                }
            }
        }
        drop(inner);
        self.consumer.unsubscribe();
        info!("router stopped");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
