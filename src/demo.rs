//! `d06 demo`: the whole product on a fresh machine, nothing else installed.
//!
//! A simulated 2024 "4 phủ" campaign in Bình Phước (`simulate`) plays at an
//! accelerated clock through the same validator, aggregator, pipeline,
//! `/metrics` and board as production. Without a configuration file nothing
//! else is needed: the source is in-process and there is no ClickHouse or
//! dead-letter topic (rejections are counted on `/metrics`). With `--config`
//! the simulator writes to the configured Kafka topics and `d06 run` consumes
//! them into the configured ClickHouse, as in production.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::plan::Plan;
use anyhow::{Context, Result};
use chrono::Utc;
use ingest::contract::Validator;
use ingest::kafka::shards::{ShardBatch, ShardEvent};
use ingest::pseudonym::SecretKey;
use simulate::{Kind, SimConfig, Simulator};
use sinks::board::Board;
use sinks::prometheus::{Health, HttpServer, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{ClockMode, Config};
use crate::pipeline::{Parts, Pipeline};
use crate::store::Identity;

/// `d06 demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use the Kafka and ClickHouse of this configuration instead of the in-process demo.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where the board and `/metrics` are served (in-process demo).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// How many real minutes the 90-day campaign takes to play.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Volume multiplier (1.0 ≈ the real campaign, about two million events).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Simulator seed.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> Result<()> {
    if let Some(path) = &args.config {
        return with_services(Config::load(path)?, &args, shutdown).await;
    }
    let mut config = Config::default();
    config.pipeline.clock = ClockMode::Event;
    config.pipeline.flush_interval_ms = 500;
    config.http.listen = args.listen;
    let geo = Arc::new(aggregator::Geography::load(config.contract.geography)?);
    // The demo keeps nothing: an ephemeral key and a throwaway state directory.
    let key = SecretKey::from_bytes(
        format!("d06-demo-{}-{}", std::process::id(), Utc::now().timestamp_nanos_opt().unwrap_or(0)).into_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pseudonymiser = ingest::pseudonym::Pseudonymiser::new(&key);
    let tz = config.contract.tz()?;
    let validator = Validator::new(
        Arc::clone(&geo),
        pseudonymiser,
        ingest::contract::ValidatorConfig {
            time_zone: tz,
            future_tolerance_secs: config.contract.future_tolerance_secs,
            correction_horizon_secs: config.contract.correction_horizon_days * 86_400,
        },
    );
    let plan = Arc::new(Plan::from_toml(crate::DEFAULT_PLAN, &geo).context("loading the campaign plan")?);
    let state_dir = std::env::temp_dir().join(format!("d06-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let identity = Identity {
        geography: "demo".into(),
        key_fingerprint: "demo".into(),
        time_zone: config.contract.time_zone.clone(),
        facts: "in-memory".into(),
    };

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let health = Arc::new(Health::default());
    let board = Arc::new(Board::with_shutdown(&shutdown));
    let server = HttpServer::bind(args.listen, Arc::clone(&metrics), Arc::clone(&health))
        .await
        .with_context(|| format!("binding {} (is another d06 running? use --listen)", args.listen))?
        .merge(board.routes());
    let addr = server.local_addr();
    let http = {
        let s = shutdown.clone();
        tokio::spawn(async move { server.run(s).await })
    };
    let shards = config.pipeline.shards;
    let mut pipeline = Pipeline::new(Parts {
        geo: Arc::clone(&geo),
        plan: Arc::clone(&plan),
        calendar: Arc::new(config.hotline.calendar()?),
        tz,
        clock: ClockMode::Event,
        flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
        commune_metrics: false,
        state_dir: state_dir.clone(),
        identity,
        facts_topic: "in-memory".into(),
        owner: "demo".into(),
        workers: config.pipeline.workers(),
        sink: None,
        committer: None,
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        board: Some(Arc::clone(&board)),
        lag_rule: config.pipeline.lag_rule,
        campaign: plan.name().unwrap_or("Chiến dịch \"4 phủ\"").to_owned(),
        owns_first: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        fault: None,
    })?;
    pipeline.own_all(shards)?;
    let sim_config = SimConfig { seed: args.seed, scale: args.scale, start: plan.start(), ..SimConfig::default() };
    sim_config.validate(&geo)?;
    let days = sim_config.days;
    let simulator = Simulator::new(sim_config, &geo);
    let speed = (f64::from(days) * 86_400.0) / (args.minutes.max(0.1) * 60.0);

    println!();
    println!("  d06 demo: the 2024 \"4 phủ\" campaign in Bình Phước, {days} days in {} minutes", args.minutes);
    println!("  Board:    http://{addr}/board");
    println!("  Metrics:  http://{addr}/metrics");
    println!("  Ctrl-C stops it.");
    println!();

    let (tx, rx) = mpsc::channel(4);
    let source = {
        let s = shutdown.clone();
        let m = Arc::clone(&metrics);
        tokio::task::spawn_blocking(move || play(simulator, validator, speed, shards, m, tx, s))
    };
    let pipeline = {
        let s = shutdown.clone();
        tokio::spawn(async move { pipeline.run(rx, s).await })
    };
    let played = source.await.context("demo source")??;
    info!(messages = played, "the simulated campaign has played; the board stays up until Ctrl-C");
    shutdown.cancelled().await;
    pipeline.await.context("pipeline")??;
    http.await.context("http")??;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}

/// Plays the simulated stream at `speed` × real time through the real
/// validator into the pipeline, routing facts to their shard in memory (the
/// demo owns every shard) and counting what the router would count.
fn play(
    sim: Simulator,
    validator: Validator,
    speed: f64,
    shards: u32,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<ShardEvent>,
    shutdown: CancellationToken,
) -> Result<u64> {
    let started = Instant::now();
    let mut sim = sim.peekable();
    let Some(first) = sim.peek().map(|m| m.emitted_at) else { return Ok(0) };
    let mut watermarks: HashMap<&'static str, Option<aggregator::Nanos>> = HashMap::new();
    let mut played = 0u64;
    while !shutdown.is_cancelled() {
        let elapsed_ms = (started.elapsed().as_secs_f64() * speed * 1000.0) as i64;
        let now_sim = first + chrono::Duration::milliseconds(elapsed_ms);
        let mut batch = ShardBatch::default();
        let mut n = 0usize;
        while let Some(m) = sim.next_if(|m| m.emitted_at <= now_sim) {
            let topic: &'static str = match m.kind {
                Kind::Cccd => "demo.cccd",
                Kind::Vneid => "demo.vneid",
                Kind::Sim => "demo.sim",
                Kind::Hotline => "demo.hotline",
            };
            let watermark = watermarks.entry(topic).or_default();
            let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            match validator.validate(&m.payload, now, watermark) {
                Ok(fact) => batch.parts.entry(fact.subject.shard(shards) as i32).or_default().facts.push(fact),
                Err(r) => metrics.messages_rejected.with_label_values(&[r.reason.as_str()]).inc(),
            }
            metrics.messages_consumed.with_label_values(&[topic]).inc();
            played += 1;
            n += 1;
            if n >= 20_000 {
                break;
            }
        }
        if !batch.parts.is_empty() && tx.blocking_send(ShardEvent::Batch(batch)).is_err() {
            break;
        }
        if sim.peek().is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(played)
}

/// The demo against real services: simulate into Kafka while `d06 run` consumes.
async fn with_services(config: Config, args: &DemoArgs, shutdown: CancellationToken) -> Result<()> {
    let geo = aggregator::Geography::load(config.contract.geography)?;
    let sim_config = SimConfig { seed: args.seed, scale: args.scale, ..SimConfig::default() };
    sim_config.validate(&geo)?;
    let simulator = Simulator::new(sim_config, &geo);
    let kafka = config.kafka.clone();
    let rate = 2_000;
    let s = shutdown.clone();
    let producer = tokio::spawn(async move { simulate::to_kafka(simulator, &kafka, rate, None, false, s).await });
    let result = crate::run(config, shutdown.clone()).await;
    shutdown.cancel();
    producer.await.context("simulator")??;
    result
}
