//! The Kafka edge of ingest, in two stages (ARCHITECTURE.md).
//!
//! - [`router`], stage 1: the four contract topics → validated,
//!   pseudonymised facts on the facts topic, partitioned by subject, and
//!   rejected messages on the dead-letter topic, with the source offsets, in
//!   one Kafka transaction per batch.
//! - [`shards`], stage 2's edge: the facts topic (one partition per shard)
//!   and the dead-letter topic, read with `read_committed`.
//! - [`admin`]: the facts topic's partition count and identity, enforced.
//! - [`record`]: the facts topic's record format.
//! - `client`: the librdkafka settings all clients share (TLS, SASL,
//!   secrets from variables or files), checked.

pub mod admin;
mod client;
mod membership;
pub mod progress;
pub mod record;
pub mod retention;
pub mod router;
pub mod shards;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::{Fact, Nanos};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use self::client::looks_secret;
use crate::contract::Reason;

/// Topic names (EVENTS-v1 defaults; every name is configurable).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// CCCD applications (`cccd.application`).
    pub cccd: String,
    /// VNeID accounts (`vneid.account`).
    pub vneid: String,
    /// SIM swaps and signatures (`sim.swap`, `sim.signature`).
    pub sim: String,
    /// 1022 hotline tickets (`hotline.ticket`).
    pub hotline: String,
    /// Where rejected messages go, original bytes kept.
    pub dead_letter: String,
    /// d06's internal topic of normalised facts, one partition per shard
    /// (created by d06 with `pipeline.shards` partitions when missing).
    pub facts: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            cccd: "d06.cccd.v1".into(),
            vneid: "d06.vneid.v1".into(),
            sim: "d06.sim.v1".into(),
            hotline: "d06.hotline.v1".into(),
            dead_letter: "d06.dead-letter.v1".into(),
            facts: "d06.facts.v1".into(),
        }
    }
}

impl Topics {
    /// The source topics, in a fixed order.
    pub fn sources(&self) -> [&str; 4] {
        [&self.cccd, &self.vneid, &self.sim, &self.hotline]
    }

    /// What stage 2 subscribes to: the facts and dead-letter topics.
    pub fn stage2(&self) -> [&str; 2] {
        [&self.facts, &self.dead_letter]
    }
}

/// Test-only fault points (`[kafka] fault`): the process aborts at the named
/// moment, as a `kill -9` would, to prove what the transactions guarantee, or
/// the broker is made to look slow, or a group to look stuck.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFault {
    /// The router, after producing a batch, before committing its transaction.
    BeforeCommit,
    /// Not an abort: the group's committed offsets read as unreadable (as on a
    /// broker too slow to answer) until this member's first revocation, so
    /// the router's first assignment is taken paused.
    OffsetsUnreadableUntilRevoked,
    /// Not an abort: each consumer (the router's, stage 2's) leaves its
    /// group when it first loses its assignment, as a member its group
    /// never takes back (seen on tansu) is left with no partitions; only the
    /// watch for that brings it back (`membership`).
    LeaveGroupOnLost,
}

/// Kafka connection and consumer settings.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// Topic names.
    pub topics: Topics,
    /// Extra librdkafka properties for consumer and producer alike (TLS, SASL,
    /// timeouts), e.g. `"security.protocol" = "SASL_SSL"`. Values of keys that
    /// look secret are never logged.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose value is read from an environment variable
    /// at start-up (key → variable name), e.g. `"sasl.password" = "D06_KAFKA_PASSWORD"`.
    pub properties_from_env: BTreeMap<String, String>,
    /// librdkafka properties whose value is read from a file at start-up
    /// (key → path; one trailing newline ignored), e.g. `"sasl.password" =
    /// "/run/credentials/d06.service/kafka_password"`. A key may have one
    /// source only, among `properties`, `properties_from_env` and this.
    pub properties_from_file: BTreeMap<String, PathBuf>,
    /// Most messages in one batch handed to the pipeline.
    pub max_batch_messages: usize,
    /// Longest a partial batch waits before it is handed over, milliseconds.
    pub linger_ms: u64,
    /// How often consumer lag is measured, milliseconds.
    pub lag_interval_ms: u64,
    /// This instance's stable name: its transactional id is
    /// `{group_id}.router.{instance_id}`, so a restarted instance fences its
    /// previous incarnation. Distinct per instance; the host name when empty.
    pub instance_id: String,
    /// `transaction.timeout.ms` of the router's transactions: how long a
    /// transaction left open by a crashed instance can hold back
    /// `read_committed` readers of the facts partitions.
    pub transaction_timeout_ms: u64,
    /// Replication factor of the facts topic when d06 creates it.
    pub facts_replication: i32,
    /// Test only: a fault point ([`KafkaFault`]).
    pub fault: Option<KafkaFault>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "d06".into(),
            topics: Topics::default(),
            properties: BTreeMap::new(),
            properties_from_env: BTreeMap::new(),
            properties_from_file: BTreeMap::new(),
            max_batch_messages: 20_000,
            linger_ms: 50,
            lag_interval_ms: 5_000,
            instance_id: String::new(),
            transaction_timeout_ms: 10_000,
            facts_replication: 1,
            fault: None,
        }
    }
}

/// What [`KafkaConfig::redacted`] puts in place of a secret.
pub const REDACTED: &str = "[redacted]";

impl KafkaConfig {
    /// This section with the values of secret-looking `properties`
    /// (`sasl.password`, `ssl.key.password`, …) replaced by [`REDACTED`],
    /// for printing the configuration. `properties_from_env` holds variable
    /// names, not values, and is kept.
    pub fn redacted(&self) -> KafkaConfig {
        let properties = self
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), if looks_secret(k) { REDACTED.to_owned() } else { v.clone() }))
            .collect();
        KafkaConfig { properties, ..self.clone() }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if looks_secret(k) { "[redacted]" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("properties", &props)
            .field("properties_from_env", &self.properties_from_env)
            .field("properties_from_file", &self.properties_from_file)
            .field("max_batch_messages", &self.max_batch_messages)
            .field("linger_ms", &self.linger_ms)
            .field("instance_id", &self.instance_id)
            .field("transaction_timeout_ms", &self.transaction_timeout_ms)
            .finish()
    }
}

/// What went wrong at the Kafka edge.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration is unusable (permanent).
    #[error("kafka configuration: {0}")]
    Config(String),
    /// librdkafka reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The pipeline stopped listening.
    #[error("pipeline channel closed")]
    ChannelClosed,
}

impl SourceError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SourceError::Config(_) | SourceError::ChannelClosed)
    }
}

impl KafkaConfig {
    /// Checks the settings before anything starts.
    pub fn validate(&self) -> Result<(), SourceError> {
        if self.brokers.trim().is_empty() {
            return Err(SourceError::Config("brokers is empty".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(SourceError::Config("group_id is empty".into()));
        }
        let mut names: Vec<&str> = self.topics.sources().to_vec();
        names.push(&self.topics.dead_letter);
        names.push(&self.topics.facts);
        if names.iter().any(|t| t.is_empty()) {
            return Err(SourceError::Config("a topic name is empty".into()));
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(SourceError::Config("topic names must be distinct".into()));
        }
        if self.max_batch_messages == 0 {
            return Err(SourceError::Config("max_batch_messages must be > 0".into()));
        }
        self.check_properties()
    }

    /// This instance's name ([`KafkaConfig::instance_id`], else the host name).
    pub fn instance(&self) -> String {
        if !self.instance_id.trim().is_empty() {
            return self.instance_id.trim().to_owned();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "d06".into())
    }

    /// The router's `transactional.id`: stable per instance.
    pub fn transactional_id(&self) -> String {
        format!("{}.router.{}", self.group_id, self.instance())
    }

    /// Stage 2's consumer group.
    pub fn shards_group_id(&self) -> String {
        format!("{}.shards", self.group_id)
    }

    /// A consumer's `max.poll.interval.ms`: `[kafka.properties]`'s, else
    /// `default_ms` (what [`consumer_config`](Self::consumer_config) sets).
    pub(crate) fn max_poll_interval(&self, default_ms: u64) -> Duration {
        let ms = self.properties.get("max.poll.interval.ms").and_then(|v| v.parse().ok());
        Duration::from_millis(ms.unwrap_or(default_ms))
    }

    /// A consumer's settings for `group`: d06's defaults (manual commits,
    /// `read_committed`, small prefetch, a small share of a fetch per
    /// partition, cooperative-sticky, metadata refreshed every 5 s so a
    /// topic that appears later is seen within seconds), with
    /// `max.poll.interval.ms` = `max_poll_ms`; `properties` given by the
    /// operator win.
    ///
    /// A fetch response is capped (by the broker and by this prefetch); at
    /// librdkafka's 1 MiB a partition it held data for about 5 of the 16
    /// busy source partitions of the national replay, and tansu 0.6 filled it in
    /// an order of its own rather than the request's, so the same few
    /// partitions were served for as long as they had messages: in a
    /// 100 M-event replay others went unread until the router stopped after
    /// 300 s (BENCHMARKS.md, "100 M events over 60 M subjects"). At 256 KiB
    /// every partition was served all along (measured on a 10 M replay of
    /// the same simulator). Kafka answers in the request's order (KIP-74), which
    /// librdkafka rotates, so it does not need the smaller share.
    pub(crate) fn consumer_config(&self, group: &str, max_poll_ms: u64) -> ClientConfig {
        let mut cc = self.client_config();
        let max_poll = max_poll_ms.to_string();
        let defaults = [
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "false"),
            ("fetch.queue.backoff.ms", "10"),
            ("queued.max.messages.kbytes", "16384"),
            ("max.partition.fetch.bytes", "262144"),
            ("session.timeout.ms", "10000"),
            ("max.poll.interval.ms", max_poll.as_str()),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("topic.metadata.refresh.interval.ms", "5000"),
        ];
        for (k, v) in defaults {
            if !self.properties.contains_key(k) {
                cc.set(k, v);
            }
        }
        cc
    }
}

/// A source partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

/// Where a source partition stands: what the checkpoint persists for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to read.
    pub next_offset: i64,
    /// Newest `occurred_at` applied from this partition (`too_late` is judged against it).
    pub watermark: Option<Nanos>,
}

/// A rejected message, bound for the dead-letter topic with its original bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it came from.
    pub source: SourcePartition,
    /// Its offset there.
    pub offset: i64,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original bytes (may hold personal data: they only ever go back to Kafka).
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub reason: Reason,
    /// Short detail, never personal data.
    pub detail: String,
    /// When d06 rejected it, seconds since the epoch.
    pub received_at: i64,
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("source", &self.source)
            .field("offset", &self.offset)
            .field("payload_bytes", &self.payload.len())
            .field("reason", &self.reason.as_str())
            .field("detail", &self.detail)
            .finish()
    }
}

/// One batch handed from the source to the pipeline.
#[derive(Debug, Default)]
pub struct Batch {
    /// Accepted facts, in read order.
    pub facts: Vec<Fact>,
    /// Rejected messages.
    pub dead_letters: Vec<DeadLetter>,
    /// The state of every partition this batch advanced, after it.
    pub positions: Vec<(SourcePartition, PartitionState)>,
    /// Messages read per topic in this batch.
    pub consumed: Vec<(Arc<str>, u64)>,
}

impl Batch {
    /// Whether the batch carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty() && self.dead_letters.is_empty() && self.positions.is_empty()
    }
}

/// The broker's high watermarks, for the lag probe.
pub trait Watermarks: Send + Sync {
    /// (low, high) of one partition. Blocking.
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError>;
}

impl<C: rdkafka::consumer::ConsumerContext> Watermarks for BaseConsumer<C> {
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.fetch_watermarks(topic, partition, Duration::from_secs(1))
    }
}

/// One partition's position against the broker's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub key: SourcePartition,
    /// The committed next offset.
    pub next: i64,
    /// The broker's high watermark.
    pub high: i64,
}

impl PartitionLag {
    /// Messages between the position and the end.
    pub fn lag(&self) -> i64 {
        (self.high - self.next).max(0)
    }
}

type PositionsFn = Arc<dyn Fn() -> Vec<(SourcePartition, i64)> + Send + Sync>;

/// Measures consumer lag from its own thread, so the figure keeps moving
/// while the consumer is blocked by backpressure (exactly when it matters).
#[derive(Clone)]
pub struct LagProbe {
    client: Arc<dyn Watermarks>,
    positions: PositionsFn,
}

impl fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LagProbe")
    }
}

impl LagProbe {
    /// A probe of `positions` (committed next offsets) against `client`'s watermarks.
    pub fn new(client: Arc<dyn Watermarks>, positions: PositionsFn) -> Self {
        LagProbe { client, positions }
    }

    /// The committed next offset and the broker's high watermark of every
    /// assigned partition. Blocking (one round trip per partition).
    pub fn measure(&self) -> Vec<PartitionLag> {
        let mut out = Vec::new();
        for (key, next) in (self.positions)() {
            match self.client.watermarks(&key.topic, key.partition) {
                Ok((_, high)) => out.push(PartitionLag { key, next, high }),
                Err(error) => debug!(%error, topic = %key.topic, partition = key.partition, "watermarks unavailable"),
            }
        }
        out
    }

    /// How often the configuration asks for a measurement.
    pub fn interval(config: &KafkaConfig) -> Duration {
        Duration::from_millis(config.lag_interval_ms.max(100))
    }
}

/// Logs consumer errors at most once per 10 s per kind of error, with the
/// number suppressed since: a missing topic or a broker outage must not turn
/// into a log line per poll.
#[derive(Default)]
pub(crate) struct ErrorLog {
    last: HashMap<String, (Instant, u64)>,
}

impl ErrorLog {
    const EVERY: Duration = Duration::from_secs(10);

    pub(crate) fn report(&mut self, error: &KafkaError) {
        let kind = format!("{:?}", error.rdkafka_error_code());
        match self.last.get_mut(&kind) {
            Some((at, suppressed)) if at.elapsed() < Self::EVERY => *suppressed += 1,
            Some((at, suppressed)) => {
                warn!(%error, suppressed = *suppressed, "consumer error");
                *at = Instant::now();
                *suppressed = 0;
            }
            None => {
                warn!(%error, "consumer error");
                self.last.insert(kind, (Instant::now(), 0));
            }
        }
    }
}

/// Takes the partitions a rebalance assigns: only `tpl` under the
/// cooperative protocol, `tpl` as the whole assignment under the eager one.
pub(crate) fn take_assigned<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
        _ => consumer.assign(tpl),
    }
}

/// Gives back the partitions a rebalance revokes: only `tpl` under the
/// cooperative protocol, the whole assignment under the eager one.
pub(crate) fn give_back_revoked<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}

/// Header names on dead-letter messages.
pub mod headers {
    /// The rejection reason.
    pub const REASON: &str = "d06.reason";
    /// The rejection detail (never personal data).
    pub const DETAIL: &str = "d06.detail";
    /// Source topic.
    pub const TOPIC: &str = "d06.source.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "d06.source.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "d06.source.offset";
}

#[cfg(test)]
mod tests {
    use rdkafka::producer::BaseProducer;

    use super::*;

    /// librdkafka checks `compression.type` when the client is created (an
    /// unsupported codec is refused by `rd_kafka_conf_set`), so creating a
    /// producer proves the codec is built in; no broker is contacted.
    fn producer_with(codec: &str) -> Result<BaseProducer, KafkaError> {
        let config = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        config.client_config().set("compression.type", codec).create()
    }

    #[test]
    fn librdkafka_is_built_with_zstd_lz4_and_snappy() {
        for codec in ["zstd", "lz4", "snappy", "gzip"] {
            if let Err(e) = producer_with(codec) {
                panic!("compression.type = {codec}: {e}");
            }
        }
        // The check is real: a codec librdkafka does not know is refused.
        assert!(producer_with("brotli").is_err());
        // Consumers decompress what upstream producers chose: the same codecs.
        let features = ClientConfig::new().create_native_config().unwrap().get("builtin.features").unwrap();
        for f in ["zstd", "lz4", "snappy", "gzip"] {
            assert!(features.split(',').any(|x| x == f), "builtin.features lacks {f}: {features}");
        }
    }

    #[test]
    fn a_consumer_takes_a_small_share_of_a_fetch_unless_the_operator_sets_one() {
        let mut config = KafkaConfig::default();
        let share = |c: &KafkaConfig| c.consumer_config("g", 1000).get("max.partition.fetch.bytes").map(str::to_owned);
        assert_eq!(share(&config).as_deref(), Some("262144"));
        config.properties.insert("max.partition.fetch.bytes".into(), "1048576".into());
        assert_eq!(share(&config).as_deref(), Some("1048576"));
    }

    #[test]
    fn redacted_hides_secret_property_values_only() {
        let mut config = KafkaConfig::default();
        config.properties.insert("sasl.password".into(), "hunter2".into());
        config.properties.insert("sasl.username".into(), "d06".into());
        config.properties_from_env.insert("sasl.oauthbearer.client.secret".into(), "D06_SECRET".into());
        let r = config.redacted();
        assert_eq!(r.properties["sasl.password"], REDACTED);
        assert_eq!(r.properties["sasl.username"], "d06");
        assert_eq!(r.properties_from_env, config.properties_from_env, "variable names, not values");
        assert_eq!(KafkaConfig { properties: config.properties.clone(), ..r.clone() }, config);
    }
}
