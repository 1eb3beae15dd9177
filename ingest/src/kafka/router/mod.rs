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

mod rebalance;
mod transaction;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggregator::Nanos;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::rebalance::{pending_retry, RouterContext};
use self::transaction::{lock, Inner};
use super::membership::LeftOutWatch;
use super::record::FactsRecord;
use super::{headers, ErrorLog, KafkaConfig, KafkaFault, SourceError, SourcePartition};
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

/// The router's `max.poll.interval.ms` unless `[kafka.properties]` sets one:
/// it polls continuously (a commit waits at most the transaction timeout),
/// so a short interval bounds how long a rebalance can wait for a member
/// whose thread is stuck.
const ROUTER_MAX_POLL_MS: u64 = 60_000;

/// Stage 1: the source consumer and the transactional facts producer.
pub struct Router {
    consumer: Arc<BaseConsumer<RouterContext>>,
    inner: Arc<Mutex<Inner>>,
    validator: Validator,
    config: KafkaConfig,
    fault: Option<KafkaFault>,
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
        fault: Option<KafkaFault>,
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
            offsets_unreadable: fault == Some(KafkaFault::OffsetsUnreadableUntilRevoked),
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
        let mut cc = config.consumer_config(&config.group_id, ROUTER_MAX_POLL_MS);
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
        let watch = LeftOutWatch::new(fault == Some(KafkaFault::LeaveGroupOnLost));
        let consumer: BaseConsumer<RouterContext> =
            cc.create_with_context(RouterContext { inner: Arc::clone(&inner), watch })?;
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
        let (sources, rejoin_after) = (self.config.topics.sources(), self.config.max_poll_interval(ROUTER_MAX_POLL_MS));
        info!(topics = ?sources, facts = %facts_topic, group = %self.config.group_id, "router started");
        while !shutdown.is_cancelled() {
            let polled = self.consumer.poll(Duration::from_millis(20));
            let mut inner = lock(&self.inner);
            inner.start_pending(&self.consumer);
            match polled {
                None => {
                    now = now_nanos();
                    self.consumer.context().watch.check(&self.consumer, &sources, rejoin_after, "router")?;
                }
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
                if self.fault == Some(KafkaFault::BeforeCommit) {
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
