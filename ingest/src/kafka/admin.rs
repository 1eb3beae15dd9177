//! One configuration, enforced through Kafka itself: the facts topic exists
//! with exactly `shards` partitions and keeps the whole campaign, and its
//! first record names the deployment identity every instance must share.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use super::record::FactsRecord;
use super::{KafkaConfig, SourceError};

/// The facts topic as an instance found (or made) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactsTopic {
    /// Partitions (= shards).
    pub partitions: u32,
    /// The topic's incarnation, from its identity record: a shard store made
    /// from another incarnation is stale and is rebuilt.
    pub incarnation: u64,
}

fn partitions_of(config: &KafkaConfig, topic: &str) -> Result<Option<u32>, SourceError> {
    let consumer: BaseConsumer = config.client_config().create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md.topics().iter().find(|t| t.name() == topic).and_then(|t| {
        if t.error().is_some() || t.partitions().is_empty() {
            None
        } else {
            Some(t.partitions().len() as u32)
        }
    }))
}

/// Creates the facts topic when missing (`shards` partitions, retention
/// without limit), refuses a partition count other than `shards`, writes the
/// identity record when the topic is empty and refuses an identity other
/// than `identity`. `description` says in words what `identity` covers.
pub async fn ensure_facts_topic(
    config: &KafkaConfig,
    shards: u32,
    identity: u64,
    description: &str,
) -> Result<FactsTopic, SourceError> {
    let topic = config.topics.facts.as_str();
    let found = tokio::task::block_in_place(|| partitions_of(config, topic))?;
    match found {
        Some(n) if n != shards => {
            return Err(SourceError::Config(format!(
                "the facts topic {topic} has {n} partitions but pipeline.shards is {shards}: every shard is one \
                 partition. Set shards = {n}, or use a new facts topic (and a new ClickHouse database)"
            )))
        }
        Some(_) => {}
        None => {
            let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
            let new = NewTopic::new(topic, shards as i32, TopicReplication::Fixed(config.facts_replication))
                .set("retention.ms", "-1")
                .set("retention.bytes", "-1")
                .set("cleanup.policy", "delete");
            let results = admin
                .create_topics([&new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
                .await?;
            for r in results {
                match r {
                    Ok(t) => info!(topic = %t, partitions = shards, "created the facts topic"),
                    Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        info!(topic = %t, "facts topic created by another instance")
                    }
                    Err((t, e)) => return Err(SourceError::Config(format!("creating the facts topic {t}: {e}"))),
                }
            }
            // Another instance may have won the race with another count.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::task::block_in_place(|| partitions_of(config, topic))? {
                    Some(n) if n == shards => break,
                    Some(n) => {
                        return Err(SourceError::Config(format!(
                            "the facts topic {topic} was created with {n} partitions, pipeline.shards is {shards}"
                        )))
                    }
                    None if Instant::now() > deadline => {
                        return Err(SourceError::Config(format!("the facts topic {topic} did not appear")))
                    }
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    let first = tokio::task::block_in_place(|| first_record(config, topic, Duration::from_secs(3)))?;
    let first = match first {
        Some(bytes) => bytes,
        None => {
            let incarnation = {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                super::record::fingerprint(&[&t.as_nanos().to_string(), &std::process::id().to_string(), description])
            };
            let mut buf = Vec::new();
            FactsRecord::Identity { incarnation, description: description.to_owned() }.encode(identity, &mut buf);
            let producer: FutureProducer = config.client_config().set("enable.idempotence", "true").create()?;
            producer
                .send(FutureRecord::<[u8], [u8]>::to(topic).partition(0).payload(&buf[..]), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| SourceError::Kafka(e))?;
            // Two first instances may both have written: the first record decides.
            tokio::task::block_in_place(|| first_record(config, topic, Duration::from_secs(10)))?
                .ok_or_else(|| SourceError::Config(format!("could not read back the identity record of {topic}")))?
        }
    };
    match FactsRecord::decode(&first, None) {
        Ok(FactsRecord::Identity { incarnation, description: theirs }) => {
            let found = FactsRecord::identity_of(&first).map_err(|e| SourceError::Config(e.to_string()))?;
            if found != identity {
                return Err(SourceError::Config(format!(
                    "the facts topic {topic} belongs to another deployment ({theirs}); this instance is \
                     ({description}). Instances with another pseudonymisation key, geography, time zone, horizon \
                     or shard count would split subjects: use the same settings, or another facts topic"
                )));
            }
            Ok(FactsTopic { partitions: shards, incarnation })
        }
        Ok(_) => Err(SourceError::Config(format!(
            "the first record of {topic} partition 0 is not a d06 identity record: is it d06's facts topic?"
        ))),
        Err(e) => Err(SourceError::Config(format!("the first record of {topic} partition 0: {e}"))),
    }
}

/// The first record of partition 0, or `None` when nothing arrives within `wait`.
fn first_record(config: &KafkaConfig, topic: &str, wait: Duration) -> Result<Option<Vec<u8>>, SourceError> {
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", format!("{}.identity-check", config.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => return Ok(Some(m.payload().unwrap_or_default().to_vec())),
            Some(Err(e)) => tracing::debug!(error = %e, "identity read"),
            None => {}
        }
    }
    Ok(None)
}
