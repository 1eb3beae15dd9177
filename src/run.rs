//! `d06 run`: builds every part from the checked configuration and runs the
//! tasks (router, facts consumer, shards, HTTP, progress, daily alerts)
//! until one ends; then stops the others and says which ended and why.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use aggregator::Geography;
use anyhow::{Context, Result};
use backon::BackoffBuilder;
use ingest::contract::{Validator, ValidatorConfig};
use ingest::kafka::router::Router;
use ingest::kafka::shards::FactsSource;
use ingest::pseudonym::{Pseudonymiser, SecretKey, SubjectKind};
use sinks::board::Board;
use sinks::clickhouse::ClickHouseSink;
use sinks::prometheus::{Health, HttpServer, Metrics};
use store::Identity;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::config::{self, Config};
use crate::pipeline::{Parts, Pipeline};
use crate::{exit, progress};

pub(crate) fn validator(config: &Config, key: &SecretKey) -> Result<(Arc<Geography>, Validator, Pseudonymiser)> {
    let geo = Arc::new(config.geography()?);
    let pseudonymiser = Pseudonymiser::new(key);
    let vc = ValidatorConfig {
        time_zone: config.contract.tz()?,
        future_tolerance_secs: config.contract.future_tolerance_secs,
        correction_horizon_secs: config.contract.correction_horizon_days * 86_400,
    };
    let v = Validator::new(Arc::clone(&geo), pseudonymiser.clone(), vc);
    Ok((geo, v, pseudonymiser))
}

/// What decides which shard and area a fact lands in: instances that differ
/// in any of it would split subjects, so it is stamped on every facts record.
fn deployment_identity(config: &Config, pseudonymiser: &Pseudonymiser) -> (Identity, u64, String) {
    let key_fingerprint = format!("{:?}", pseudonymiser.digest(SubjectKind::Ticket, "d06/key-fingerprint"));
    let description = format!(
        "geography {}, time zone {}, horizon {} days, {} shards, key {}",
        config.geography_identity(),
        config.contract.time_zone,
        config.contract.correction_horizon_days,
        config.pipeline.shards,
        key_fingerprint
    );
    let fingerprint = ingest::kafka::record::fingerprint(&[
        &config.geography_identity(),
        &config.contract.time_zone,
        &config.contract.correction_horizon_days.to_string(),
        &config.pipeline.shards.to_string(),
        &key_fingerprint,
    ]);
    let identity = Identity {
        geography: config.geography_identity(),
        key_fingerprint,
        time_zone: config.contract.time_zone.clone(),
        facts: String::new(),
    };
    (identity, fingerprint, description)
}

pub(crate) async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let key = config.key()?;
    let (geo, validator, pseudonymiser) = validator(&config, &key)?;
    let tz = config.contract.tz()?;
    let plans = Arc::new(config.plans(&geo)?);
    let plan_name = plans.first().plan.name().unwrap_or("Chiến dịch \"4 phủ\"").to_owned();
    let calendar = Arc::new(config.hotline.calendar()?);
    if config.pipeline.clock == config::ClockMode::Wall {
        let year = chrono::Datelike::year(&chrono::Utc::now().with_timezone(&tz));
        for year in [year, year + 1] {
            if !calendar.has_holidays_in(year) {
                warn!(
                    year,
                    "the working-time calendar lists no holiday in this year: hotline deadlines count every \
                     weekday as a working day; add the year's file to hotline.calendar_files"
                );
            }
        }
    }
    let state_dir = &config.pipeline.state_dir;
    if state_dir.join("d06.redb").exists() {
        return Err(exit::config(anyhow::anyhow!(
            "{} holds a single-stage state store (d06 before the facts topic). Its shards cannot be reused: \
             move the directory away (nothing is lost: the shards rebuild from the facts topic) and start again",
            state_dir.display()
        )));
    }
    let owns_first = Arc::new(AtomicBool::new(false));
    // One daily-alerts job per tracked province, each over its own plan and districts.
    let daily_alerts: Vec<(String, alerts::DailyAlerts)> = plans
        .units()
        .iter()
        .map(|unit| {
            let job = alerts::DailyAlerts::new(
                config.alerts.clone().with_default_rule(config.pipeline.lag_rule),
                config.clickhouse.clone(),
                Arc::clone(&unit.plan),
                Arc::clone(&unit.geo),
                tz,
                alerts::Clock::Wall,
            )
            .sent_by(Arc::clone(&owns_first));
            (unit.code().to_owned(), job)
        })
        .collect();

    let (mut identity, fingerprint, description) = deployment_identity(&config, &pseudonymiser);
    let facts =
        ingest::kafka::admin::ensure_facts_topic(&config.kafka, config.pipeline.shards, fingerprint, &description)
            .await
            .map_err(|e| match e {
                // Another deployment's topic, or another shard count: the configuration, not the network.
                ingest::kafka::SourceError::Config(_) => exit::config(anyhow::Error::new(e)),
                e => anyhow::Error::new(e),
            })
            .context("checking the facts topic")?;
    identity.facts = format!("{}#{:016x}", config.kafka.topics.facts, facts.incarnation);
    info!(facts = %identity.facts, shards = facts.partitions, instance = %config.kafka.instance(), "facts topic ready");
    match ingest::kafka::retention::finite_retention(&config.kafka).await {
        Ok(finite) => {
            for f in finite {
                warn!(topic = %f.topic, limit = %f.limit.0, value = f.limit.1, "{}", f.message());
            }
        }
        Err(error) => warn!(
            %error,
            "could not read the topics' retention: make sure the facts and source topics keep the campaign's \
             whole history (docs/OPERATIONS.md)"
        ),
    }

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    metrics.shards_configured.set(i64::from(config.pipeline.shards));
    let health = Arc::new(Health::default());
    let codes: Vec<String> = plans.units().iter().map(|u| u.code().to_owned()).collect();
    let board = Arc::new(Board::with_provinces(&codes, &shutdown));
    let server = HttpServer::bind(config.http.listen, Arc::clone(&metrics), Arc::clone(&health))
        .await
        .with_context(|| format!("binding {}", config.http.listen))?
        .merge(board.routes());
    info!(addr = %server.local_addr(), "serving /metrics, /healthz, /readyz");
    let http: JoinHandle<Result<()>> = {
        let s = shutdown.clone();
        tokio::spawn(async move { server.run(s).await.context("http server") })
    };

    let sink = connect_clickhouse(&config, &shutdown).await?;
    sink.check_deployment(&identity.facts, config.pipeline.shards).await.context("checking the ClickHouse database")?;
    let router = tokio::task::block_in_place(|| {
        Router::new(&config.kafka, validator, facts.partitions, fingerprint, config.kafka.fault)
    })
    .context("creating the router (stage 1)")?;
    let (tx, rx) = tokio::sync::mpsc::channel(config.pipeline.channel_batches);
    let facts_source = FactsSource::new(&config.kafka, fingerprint, tx).context("creating the facts consumer")?;
    let pipeline = Pipeline::new(Parts {
        geo,
        plans,
        calendar,
        tz,
        clock: config.pipeline.clock,
        flush_interval: Duration::from_millis(config.pipeline.flush_interval_ms),
        flush_while_behind: Duration::from_millis(config.pipeline.flush_while_behind_ms),
        figures_share_percent: config.pipeline.figures_share_percent,
        commune_metrics: config.http.commune_metrics,
        state_dir: state_dir.clone(),
        snapshot_log_bytes: config.pipeline.snapshot_log_bytes,
        identity,
        facts_topic: config.kafka.topics.facts.clone(),
        owner: config.kafka.instance(),
        workers: config.pipeline.workers(),
        sink: Some(sink),
        committer: Some(facts_source.committer()),
        board: Some(Arc::clone(&board)),
        lag_rule: config.pipeline.lag_rule,
        campaign: plan_name.clone(),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        owns_first,
        fault: config.pipeline.fault,
    })?;

    let progress = progress::ProgressTask {
        probe: router.lag_probe(),
        facts: Some(facts_source.lag_probe()),
        behind_messages: config.pipeline.behind_messages,
        every: ingest::kafka::LagProbe::interval(&config.kafka),
        progress: ingest::kafka::progress::Progress::new(
            config.pipeline.behind_messages,
            Duration::from_secs(config.pipeline.progress_log_secs),
        ),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        board: Arc::clone(&board),
        stall_limit: (config.pipeline.stall_exit_secs > 0)
            .then(|| Duration::from_secs(config.pipeline.stall_exit_secs)),
    };
    let lag: JoinHandle<Result<()>> = tokio::spawn(progress.run(shutdown.clone()));
    let router_task: JoinHandle<Result<()>> = {
        let s = shutdown.clone();
        let m = Arc::clone(&metrics);
        tokio::task::spawn_blocking(move || {
            router
                .run(s, |c| {
                    for (topic, n) in &c.consumed {
                        m.messages_consumed.with_label_values(&[topic]).inc_by(*n);
                    }
                    for (reason, n) in &c.rejected {
                        m.messages_rejected.with_label_values(&[reason]).inc_by(*n);
                    }
                })
                .context("router (stage 1)")
        })
    };
    let facts_task: JoinHandle<Result<()>> = {
        let s = shutdown.clone();
        tokio::task::spawn_blocking(move || facts_source.run(s).context("facts consumer (stage 2)"))
    };
    let pipeline_task: JoinHandle<Result<()>> = {
        let s = shutdown.clone();
        tokio::spawn(async move { pipeline.run(rx, s).await })
    };
    let alerts_task: JoinHandle<Result<()>> = {
        let gauges = alerts::AlertGauges::new(Arc::clone(&metrics), daily_alerts.len());
        let jobs: Vec<_> = daily_alerts
            .into_iter()
            .enumerate()
            .map(|(i, (province, job))| {
                let job = job.reporting_as(Arc::clone(&gauges), i);
                job.run(shutdown.clone()).instrument(tracing::info_span!("daily_alerts", %province))
            })
            .collect();
        tokio::spawn(async move { futures::future::try_join_all(jobs).await.map(drop) })
    };

    supervise(
        vec![
            ("router", router_task),
            ("facts", facts_task),
            ("shards", pipeline_task),
            ("http", http),
            ("progress", lag),
            ("alerts", alerts_task),
        ],
        shutdown,
    )
    .await
}

/// Connects to ClickHouse and brings its schema up to date, waiting out an
/// unreachable server (`sinks::clickhouse::RETRY`) until shutdown. An
/// attempt under way when shutdown comes is let finish (a migration is not
/// cut); only the wait before the next one is cut short.
async fn connect_clickhouse(config: &Config, shutdown: &CancellationToken) -> Result<ClickHouseSink> {
    let mut waits = sinks::clickhouse::RETRY.build();
    loop {
        let attempt = async {
            let sink = ClickHouseSink::connect(&config.clickhouse).await?;
            sink.migrate().await?;
            Ok::<_, sinks::clickhouse::SinkError>(sink)
        };
        match attempt.await {
            Ok(sink) => return Ok(sink),
            Err(e) if e.is_retryable() => {
                // RETRY has no limit on attempts: `next` is never None.
                let wait = waits.next().unwrap_or(Duration::from_secs(10));
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "ClickHouse not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = shutdown.cancelled() => anyhow::bail!("shutdown before ClickHouse was reachable"),
                }
            }
            Err(e) => return Err(e).context("preparing ClickHouse"),
        }
    }
}

/// Waits for the first task to end, reports which and why, stops the others.
async fn supervise(mut tasks: Vec<(&'static str, JoinHandle<Result<()>>)>, shutdown: CancellationToken) -> Result<()> {
    let mut first_error = None;
    while !tasks.is_empty() {
        let (result, index, _) = futures::future::select_all(tasks.iter_mut().map(|(_, h)| h)).await;
        let (name, _) = tasks.swap_remove(index);
        match result {
            Ok(Ok(())) => info!(task = name, "task ended"),
            Ok(Err(e)) => {
                error!(task = name, error = %format!("{e:#}"), "task failed");
                first_error.get_or_insert(e.context(format!("task {name} failed")));
            }
            Err(join) => {
                error!(task = name, error = %join, "task panicked or was cancelled");
                first_error.get_or_insert(anyhow::anyhow!("task {name}: {join}"));
            }
        }
        if !shutdown.is_cancelled() {
            info!(task = name, "stopping the other tasks");
            shutdown.cancel();
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
