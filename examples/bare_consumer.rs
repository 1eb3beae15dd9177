//! The broker's ceiling for `deploy/bench/e2e.sh`: a bare rdkafka consumer
//! that reads the source topics from the beginning and does nothing with the
//! messages but count them and their bytes. Same librdkafka settings as
//! d06's source (`ingest::kafka::Source::new`), fresh consumer group.
//!
//! ```sh
//! cargo run --release --example bare_consumer -- BROKERS N TOPIC...
//! ```
//!
//! Prints `bare_consumer: N msgs, B bytes in S s: R msgs/s, M MB/s` once N
//! messages were read (timed from the first message), or fails after 30 s
//! without a message.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, n, topics @ ..] = args.as_slice() else {
        return Err("usage: bare_consumer BROKERS N TOPIC...".into());
    };
    let n: u64 = n.parse()?;
    let group = format!("bare-consumer-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384")
        .create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let (mut count, mut bytes, mut check) = (0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut idle = Instant::now();
    // BARE_CONSUMER_VERBOSE: per partition, messages read and the last offset.
    let verbose = std::env::var_os("BARE_CONSUMER_VERBOSE").is_some();
    let mut per_partition: std::collections::BTreeMap<(String, i32), (u64, i64)> = Default::default();
    while count < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let p = m.payload().unwrap_or_default();
                bytes += p.len() as u64;
                // Touch the bytes, as any consumer would.
                check = check.wrapping_add(u64::from(p.first().copied().unwrap_or(0)));
                count += 1;
                idle = Instant::now();
                if verbose {
                    let e = per_partition.entry((m.topic().to_owned(), m.partition())).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(m.offset());
                }
            }
            Some(Err(e)) => eprintln!("bare_consumer: {e}"),
            None if idle.elapsed() > Duration::from_secs(30) => {
                return Err(format!("no message for 30 s after {count} of {n}").into());
            }
            None => {}
        }
    }
    for ((t, p), (n, last)) in &per_partition {
        eprintln!("{t}[{p}]: {n} messages, last offset {last}");
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    println!(
        "bare_consumer: {count} msgs, {bytes} bytes in {secs:.2} s: {:.0} msgs/s, {:.1} MB/s (check {check})",
        count as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
