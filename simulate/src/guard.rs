//! Keeps synthetic people out of real topics: `d06 simulate` marks every
//! record it writes with the header [`HEADER`] and writes only into topics
//! that are empty or whose newest record in every partition carries it.
//! A topic with anything else in it is someone's real data (or another
//! tool's): the simulator refuses before producing anything.

use std::time::Duration;

use ingest::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// The header on every record `d06 simulate` writes (value `1`).
pub const HEADER: &str = "d06-simulated";

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the simulator will not write.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A partition's newest record was not written by `d06 simulate`.
    #[error(
        "topic {topic} partition {partition} holds records not written by `d06 simulate` (its newest, offset \
         {offset}, has no `{HEADER}` header): refusing to write synthetic people into what may be real data; \
         configure empty test topics, or pass --into-foreign-topics if these really are test topics"
    )]
    Foreign {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The newest record's offset.
        offset: i64,
    },
    /// The topics could not be read to check.
    #[error("could not check topic {topic} before writing to it: {source}")]
    Unreachable {
        /// The topic.
        topic: String,
        /// What the client said.
        #[source]
        source: KafkaError,
    },
}

/// Checks every partition of `topics` (a topic that does not exist yet is
/// fine: it will hold only simulated records). Blocking.
pub fn check_topics(kafka: &KafkaConfig, topics: &[&str]) -> Result<(), GuardError> {
    fn unreachable(topic: &str) -> impl FnOnce(KafkaError) -> GuardError + '_ {
        move |source| GuardError::Unreachable { topic: topic.to_owned(), source }
    }
    let mut cc = kafka.client_config();
    cc.set("group.id", "d06-simulate-guard")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_uncommitted");
    let consumer: BaseConsumer = cc.create().map_err(unreachable(topics.first().copied().unwrap_or("")))?;
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(unreachable(topic))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == *topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT).map_err(unreachable(topic))?;
            if high <= low {
                continue;
            }
            if !newest_is_simulated(&consumer, topic, partition, high).map_err(unreachable(topic))? {
                return Err(GuardError::Foreign { topic: (*topic).to_owned(), partition, offset: high - 1 });
            }
        }
    }
    Ok(())
}

/// Reads back from the end to the newest data record (transaction markers
/// take offsets too) and looks at its headers.
fn newest_is_simulated(consumer: &BaseConsumer, topic: &str, partition: i32, high: i64) -> Result<bool, KafkaError> {
    // Markers of transactions: a few offsets; look back a little further.
    let from = (high - 16).max(0);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut newest: Option<bool> = None;
    let mut idle = 0;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                newest = Some(m.headers().is_some_and(|h| h.iter().any(|h| h.key == HEADER)));
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => return Err(e),
            // The last offsets may be transaction markers, never delivered.
            None if newest.is_some() => {
                idle += 1;
                if idle >= 3 {
                    break;
                }
            }
            None => {}
        }
    }
    consumer.unassign()?;
    // Nothing readable at the end (all markers, or compacted away): nothing real to protect there.
    Ok(newest.unwrap_or(true))
}
