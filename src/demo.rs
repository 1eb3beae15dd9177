//! `d06 demo`: the whole product on a fresh machine, nothing else installed.
//!
//! A simulated 2024 "4 phủ" campaign in Bình Phước (`simulate`), with a
//! simulated pre-campaign baseline for the indicators the plan has none for
//! (`simulate::baseline`: 40 % of each district's smartphone target and
//! 10 % of its SIM-signature target, ± 15 %), plays at an accelerated clock through the same validator, aggregator, pipeline,
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
use store::Identity;

/// What errors call the demo's simulated baseline rows.
const SIMULATED: &str = "the demo's simulated baseline";

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

/// The embedded 2024 plan, loaded as `d06 run` loads a plan
/// (`reports::load_plan`), with a simulated pre-campaign baseline for the
/// indicators whose baseline it does not know (`simulate::baseline`)
/// imported over it as a baseline file would be, so the wall shows what a
/// real baseline would.
fn demo_plan(geo: &aggregator::Geography, seed: u64) -> Result<Plan> {
    let plan = reports::load_plan_with(None, geo, |plan| {
        Some((SIMULATED.to_owned(), simulate::BaselineShares::default().entries(plan, geo, seed)))
    })?;
    for ind in aggregator::Indicator::ALL {
        info!(
            indicator = ind.as_str(),
            baseline = plan.baseline(*ind, geo.province()),
            source = plan.baseline_source(*ind, geo.province()).unwrap_or("the plan"),
            "demo baseline"
        );
    }
    Ok(plan)
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
    let plan = Arc::new(demo_plan(&geo, args.seed)?);
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
    metrics.shards_configured.set(i64::from(shards));
    let mut pipeline = Pipeline::new(Parts {
        geo: Arc::clone(&geo),
        plans: Arc::new(aggregator::Plans::single(Arc::clone(&geo), Arc::clone(&plan))),
        calendar: Arc::new(config.hotline.calendar()?),
        tz,
        clock: ClockMode::Event,
        flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
        flush_while_behind: Duration::from_millis(config.pipeline.flush_while_behind_ms),
        figures_share_percent: config.pipeline.figures_share_percent,
        commune_metrics: config.http.commune_metrics,
        state_dir: state_dir.clone(),
        snapshot_log_bytes: config.pipeline.snapshot_log_bytes,
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
    println!("  Baseline: simulated for smartphone 4G and SIM signatures (the plan has none)");
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
    if shutdown.is_cancelled() {
        info!(messages = played, "stopped before the simulated campaign had played");
    } else {
        info!(messages = played, "the simulated campaign has played; the board stays up until Ctrl-C");
    }
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
    let result = crate::run::run(config, shutdown.clone()).await;
    shutdown.cancel();
    producer.await.context("simulator")??;
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use aggregator::plan::Baseline;
    use aggregator::{AreaLevel, Geography, GeographyVersion, Indicator};
    use chrono::NaiveDate;

    use super::*;

    /// The demo's plan is the one `d06 run` loads without a plan file, with
    /// the simulated baseline over it: the same as importing those rows
    /// into the embedded plan's text (what the demo did before it loaded
    /// through `reports::load_plan`), area by area and day by day.
    #[test]
    fn the_demo_plan_is_the_run_plan_with_the_simulated_baseline() {
        let geo = Geography::load(GeographyVersion::Pre2025).unwrap();
        let demo = demo_plan(&geo, 7).unwrap();
        let run = reports::load_plan(None, &geo).unwrap();
        let rows = simulate::BaselineShares::default().entries(&run, &geo, 7);
        let imported =
            Plan::from_toml(&aggregator::plan_edit::import_baselines(crate::DEFAULT_PLAN, &rows, &geo).unwrap(), &geo)
                .unwrap();
        let simulated: Vec<Indicator> = simulate::BaselineShares::default().shares.iter().map(|(i, _)| *i).collect();
        let areas: Vec<_> = geo.of_level(AreaLevel::District).chain([geo.province()]).collect();
        let days: Vec<NaiveDate> = demo.start().iter_days().take_while(|d| *d <= demo.end()).collect();
        assert_eq!((demo.start(), demo.end(), demo.name()), (run.start(), run.end(), run.name()));
        for ind in Indicator::ALL {
            for &a in &areas {
                assert_eq!(demo.target(*ind, a), run.target(*ind, a));
                assert_eq!(demo.baseline_of(*ind, a), imported.baseline_of(*ind, a), "{ind:?}");
                assert_eq!(demo.baseline_source(*ind, a), imported.baseline_source(*ind, a), "{ind:?}");
                for &d in &days {
                    assert_eq!(demo.expected(*ind, a, d), imported.expected(*ind, a, d), "{ind:?} {d}");
                }
                if simulated.contains(ind) {
                    assert_eq!(run.baseline_of(*ind, a), Baseline::Unknown, "{ind:?}: the plan has none");
                    assert!(matches!(demo.baseline_of(*ind, a), Baseline::Known(n) if n > 0), "{ind:?}");
                    assert_eq!(demo.baseline_source(*ind, a), Some(simulate::baseline::SOURCE));
                } else {
                    assert_eq!(demo.baseline_of(*ind, a), run.baseline_of(*ind, a), "{ind:?}: kept");
                }
            }
        }
    }
}
