//! The broker's ceiling for an exactly-once two-stage pipeline, for
//! `deploy/bench/e2e.sh`: a bare rdkafka consume → transactional produce
//! copy. It reads the source topics from the beginning (fresh group, the
//! same consumer settings as `bare_consumer`) and writes every payload,
//! unchanged, to `OUTPUT` (partition = offset mod its partition count),
//! committing a Kafka transaction with the source offsets every `MAX`
//! messages or `LINGER_MS`, as d06's router does — but without validating,
//! pseudonymising or encoding anything.
//!
//! ```sh
//! cargo run --release --example bare_copy -- BROKERS N OUTPUT PARTITIONS MAX LINGER_MS TOPIC...
//! ```
//!
//! Prints `bare_copy: N msgs in S s: R msgs/s, T transactions` once N
//! messages were copied and committed (timed from the first message), or
//! fails after 30 s without a message.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, n, output, partitions, max, linger, topics @ ..] = args.as_slice() else {
        return Err("usage: bare_copy BROKERS N OUTPUT PARTITIONS MAX LINGER_MS TOPIC...".into());
    };
    let (n, partitions, max): (u64, i64, u64) = (n.parse()?, partitions.parse()?, max.parse()?);
    let linger = Duration::from_millis(linger.parse()?);
    let timeout = Duration::from_secs(10);
    let run = format!("bare-copy-{}", std::process::id());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &run)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384")
        .create()?;
    // d06's router producer settings (`ingest::kafka::router::Router::new`).
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", &run)
        .set("transaction.timeout.ms", "10000")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;

    let (mut count, mut in_txn, mut transactions) = (0u64, 0u64, 0u64);
    let mut offsets: std::collections::BTreeMap<(String, i32), i64> = Default::default();
    let mut first: Option<Instant> = None;
    let mut opened = Instant::now();
    let mut idle = Instant::now();
    while count < n {
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                idle = Instant::now();
                if in_txn == 0 {
                    producer.begin_transaction()?;
                    opened = Instant::now();
                }
                let payload = m.payload().unwrap_or_default();
                let p = (m.offset() % partitions) as i32;
                let mut record = BaseRecord::<[u8], [u8]>::to(output).partition(p).payload(payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                in_txn += 1;
                count += 1;
            }
            Some(Err(e)) => eprintln!("bare_copy: {e}"),
            None if idle.elapsed() > Duration::from_secs(30) => {
                return Err(format!("no message for 30 s after {count} of {n}").into());
            }
            None => {}
        }
        if in_txn > 0 && (in_txn >= max || opened.elapsed() >= linger || count >= n) {
            let group = consumer.group_metadata().ok_or("no group metadata")?;
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in std::mem::take(&mut offsets) {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            }
            producer.send_offsets_to_transaction(&tpl, &group, timeout)?;
            producer.commit_transaction(timeout)?;
            in_txn = 0;
            transactions += 1;
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    println!("bare_copy: {count} msgs in {secs:.2} s: {:.0} msgs/s, {transactions} transactions", count as f64 / secs);
    Ok(())
}
