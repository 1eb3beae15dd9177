//! The Kafka writer: a simulator's messages to the four source topics, as
//! fast as the broker takes them or at a fixed rate (a live stream).

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::Utc;
use ingest::contract::Reason;
use ingest::kafka::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

use crate::clock::local_offset;
use crate::guard::HEADER;
use crate::message::{Kind, SimMessage};
use crate::progress::{Progress, Unit};
use crate::restamp::restamp;
use crate::summary::Summary;

#[derive(Debug, Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, AtomicOrdering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, AtomicOrdering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// From how many messages `--limit` shows its progress (fewer take a moment).
pub(crate) const LARGE: u64 = 10_000;

fn unix_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `d06 simulate`: writes to the Kafka topics of `kafka` at `rate` msgs/s
/// (0 = as fast as possible), up to `limit` messages; shows its progress on
/// standard error ([`Progress`](crate::Progress): a bar on a terminal, plain
/// lines otherwise) and returns the counts.
///
/// With `rate > 0` the stream is live: every `occurred_at` is moved by
/// (wall clock − simulated emission time) and `"sim_produced_at_ms"` (wall
/// clock when handed to the producer, unix ms) is appended, so late events
/// stay late and too-late or future ones stay so.
///
/// Every record carries the header [`HEADER`]; unless `into_foreign`, the
/// topics are checked first and a topic holding records without it is
/// refused ([`GuardError::Foreign`](crate::guard::GuardError), nothing written).
///
/// Stops early, after flushing what was sent, when `shutdown` is cancelled.
pub async fn to_kafka<I>(
    sim: I,
    kafka: &KafkaConfig,
    rate: u64,
    limit: Option<u64>,
    into_foreign: bool,
    shutdown: CancellationToken,
) -> Result<Summary>
where
    I: Iterator<Item = SimMessage> + Send + 'static,
{
    kafka.validate().context("kafka configuration")?;
    if !into_foreign {
        let k = kafka.clone();
        tokio::task::spawn_blocking(move || crate::guard::check_topics(&k, &Kind::ALL.map(|t| t.topic(&k.topics))))
            .await
            .context("topic check thread")??;
    }
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || produce(sim, &kafka, rate, limit, &shutdown))
        .await
        .context("producer thread")?
}

fn producer_config(kafka: &KafkaConfig, rate: u64) -> ClientConfig {
    // The operator's properties (TLS, SASL, …, secrets read from variables
    // and files) win over these defaults; consumer-only keys are ignored by
    // librdkafka with a warning.
    let mut c = kafka.client_config();
    let defaults = [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", if rate == 0 { "50" } else { "5" }),
        ("batch.num.messages", "10000"),
        ("queue.buffering.max.messages", "500000"),
        ("queue.buffering.max.kbytes", "524288"),
        ("message.timeout.ms", "300000"),
    ];
    for (k, v) in defaults {
        if !kafka.properties.contains_key(k) {
            c.set(k, v);
        }
    }
    c
}

fn produce(
    mut sim: impl Iterator<Item = SimMessage>,
    kafka: &KafkaConfig,
    rate: u64,
    limit: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<Summary> {
    let producer: ThreadedProducer<Deliveries> =
        producer_config(kafka, rate).create_with_context(Deliveries::default()).context("creating the producer")?;
    let topics: [&str; 4] = Kind::ALL.map(|k| k.topic(&kafka.topics));
    let simulated = OwnedHeaders::new().insert(Header { key: HEADER, value: Some("1") });
    let mut summary = Summary::default();
    let limit = limit.unwrap_or(u64::MAX);
    let started = Instant::now();
    let total = (limit < u64::MAX).then_some(limit);
    let mut progress = Progress::new("simulate", total, Unit::Messages, LARGE);
    while summary.sent() < limit && !shutdown.is_cancelled() {
        let Some(msg) = sim.next() else { break };
        let sent = summary.sent();
        let payload = if rate > 0 {
            // Pace: message i is due at i / rate seconds.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let ahead = due.saturating_sub(started.elapsed());
            if ahead > Duration::from_millis(1) {
                std::thread::sleep(ahead);
            }
            let now = unix_ms();
            let shift = now - msg.emitted_at.timestamp_millis();
            let keep = msg.invalid == Some(Reason::MalformedJson);
            match (keep, restamp(&msg.payload, shift, now)) {
                (false, Some(p)) => p,
                _ => msg.payload.clone(),
            }
        } else {
            msg.payload.clone()
        };
        let topic = topics[msg.kind.index()];
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(topic).payload(&payload[..]).headers(simulated.clone());
        if let Some(k) = &msg.key {
            record = record.key(k.as_str());
        }
        let handed_over = loop {
            match producer.send(record) {
                Ok(()) => break true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if shutdown.is_cancelled() {
                        break false;
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
            }
        };
        if !handed_over {
            break;
        }
        summary.per_kind[msg.kind.index()] += 1;
        summary.invalid += u64::from(msg.invalid.is_some());
        summary.bytes += payload.len() as u64;
        summary.last_emitted = Some(msg.emitted_at);
        progress.update(summary.sent(), || {
            let acked = producer.context().acked.load(AtomicOrdering::Relaxed);
            format!(
                "{acked} acked, simulated {}",
                msg.emitted_at.with_timezone(&local_offset()).format("%Y-%m-%d %H:%M")
            )
        });
    }
    // Everything handed over is delivered or failed before we report.
    let flushed = producer.flush(rdkafka::util::Timeout::After(Duration::from_secs(300)));
    summary.elapsed = started.elapsed();
    let ctx = producer.context();
    summary.acked = ctx.acked.load(AtomicOrdering::Relaxed);
    summary.failed = ctx.failed.load(AtomicOrdering::Relaxed);
    summary.first_error = ctx.first_error.lock().ok().and_then(|e| e.clone());
    progress.finish(summary.sent(), || format!("{} acked, {} failed", summary.acked, summary.failed));
    flushed.context("flushing the producer")?;
    Ok(summary)
}
