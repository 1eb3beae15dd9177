//! Small Kafka chores for the benchmarks in `deploy/bench/` (this machine
//! has no Kafka command-line tools):
//!
//! ```sh
//! kafka_admin create BROKERS PARTITIONS TOPIC...   # fails if one exists
//! kafka_admin delete BROKERS TOPIC...
//! kafka_admin offsets BROKERS GROUP TOPIC...       # prints "committed C end E"
//! ```
//!
//! `offsets` sums, over every partition of the topics, the group's committed
//! offset (0 where none) and the end offset (high watermark).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.as_slice() {
        [cmd, brokers, partitions, topics @ ..] if cmd == "create" && !topics.is_empty() => {
            let partitions: i32 = partitions.parse()?;
            let admin: AdminClient<DefaultClientContext> =
                ClientConfig::new().set("bootstrap.servers", brokers).create()?;
            let new: Vec<NewTopic<'_>> =
                topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
            let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            for r in rt.block_on(admin.create_topics(&new, &opts))? {
                r.map_err(|(t, e)| format!("create {t}: {e}"))?;
            }
        }
        [cmd, brokers, topics @ ..] if cmd == "delete" && !topics.is_empty() => {
            let admin: AdminClient<DefaultClientContext> =
                ClientConfig::new().set("bootstrap.servers", brokers).create()?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            for r in rt.block_on(admin.delete_topics(&names, &opts))? {
                r.map_err(|(t, e)| format!("delete {t}: {e}"))?;
            }
        }
        [cmd, brokers, group, topics @ ..] if cmd == "offsets" && !topics.is_empty() => {
            let consumer: BaseConsumer =
                ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create()?;
            let mut tpl = TopicPartitionList::new();
            let mut end = 0i64;
            for t in topics {
                let md = consumer.fetch_metadata(Some(t), TIMEOUT)?;
                let partitions = md.topics().first().map_or(0, |m| m.partitions().len()) as i32;
                for p in 0..partitions {
                    tpl.add_partition(t, p);
                    let (low, high) = consumer.fetch_watermarks(t, p, TIMEOUT)?;
                    if std::env::var_os("KAFKA_ADMIN_VERBOSE").is_some() {
                        eprintln!("{t}[{p}]: low {low} high {high}");
                    }
                    end += high;
                }
            }
            let committed: i64 = consumer
                .committed_offsets(tpl, TIMEOUT)?
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum();
            println!("committed {committed} end {end}");
        }
        _ => return Err("usage: kafka_admin create BROKERS PARTITIONS TOPIC... | delete BROKERS TOPIC... | offsets BROKERS GROUP TOPIC...".into()),
    }
    Ok(())
}
