//! `d06`: the thin binary that composes ingest → aggregator → sinks.

mod config;
mod demo;
mod exit;
mod pipeline;
mod plan_cmd;
mod progress;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use aggregator::Geography;
use anyhow::{Context, Result};
use backon::BackoffBuilder;
use clap::{Parser, Subcommand};
use ingest::contract::{Validator, ValidatorConfig};
use ingest::kafka::router::Router;
use ingest::kafka::shards::FactsSource;
use ingest::pseudonym::{Pseudonymiser, SecretKey, SubjectKind};
use sinks::board::Board;
use sinks::clickhouse::ClickHouseSink;
use sinks::prometheus::{Health, HttpServer, Metrics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::config::Config;
use crate::pipeline::{Parts, Pipeline};
use store::Identity;

/// The embedded campaign plan: Bình Phước, "4 phủ", 2024 (the tests' copy;
/// the binary loads it through `reports::load_plan`).
#[cfg(test)]
pub(crate) const DEFAULT_PLAN: &str = include_str!("../deploy/plans/binh-phuoc-2024.toml");

#[derive(Debug, Parser)]
#[command(name = "d06", version, about = "Đề án 06 \"4 phủ\" campaign tracker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the pipeline: Kafka → exact rollups → ClickHouse and /metrics.
    Run {
        /// Configuration file (TOML); defaults apply when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Plays a simulated 2024 campaign through the whole pipeline and serves the board;
    /// needs nothing else installed (or uses the Kafka and ClickHouse of --config).
    Demo(demo::DemoArgs),
    /// Checks newline-delimited messages against the contract (FILE or - for stdin).
    Validate {
        /// Input file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Configuration file for the geography and tolerances.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Checks a configuration file as `run` would, without the network, and
    /// prints it as TOML with secrets redacted; exits 78 on any problem.
    CheckConfig {
        /// Configuration file (TOML).
        config: PathBuf,
        /// Skips the pseudonymisation key check, for a file checked away from
        /// the host that runs it (CI); everything else is still checked.
        #[arg(long)]
        without_key: bool,
    },
    /// Produces a simulated 2024 "4 phủ" campaign into the configured Kafka topics.
    Simulate(simulate::SimulateArgs),
    /// Prints a report read from ClickHouse (the public views) and the campaign plan.
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// Edits a campaign plan file.
    Plan {
        #[command(subcommand)]
        plan: plan_cmd::PlanCommand,
    },
    /// The daily alerts to Alertmanager, by hand (replays and tests).
    #[command(hide = true)]
    Alerts {
        #[command(subcommand)]
        alerts: AlertsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Sends the daily alerts of one day now, once: districts already recorded in ClickHouse are skipped.
    Send {
        /// The day (YYYY-MM-DD, local).
        #[arg(long)]
        day: chrono::NaiveDate,
        /// GSO code of one tracked province; every tracked province when omitted.
        #[arg(long)]
        province: Option<String>,
        /// Configuration file (TOML); defaults apply when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `d06 alerts send --day DATE`: one line per alert posted, then a summary.
fn run_alerts(command: AlertsCommand) -> Result<ExitCode> {
    let AlertsCommand::Send { day, province, config } = command;
    let c = load_config(config.as_deref())?;
    init_tracing(c.log.json);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let alerts = c.alerts.clone().with_default_rule(c.pipeline.lag_rule);
    let text = rt.block_on(alerts::send_day(&c.report_source(), province.as_deref(), alerts, c.contract.tz()?, day))?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the result")?;
    Ok(ExitCode::SUCCESS)
}

/// `d06 plan …`: prints what it did.
fn run_plan(command: plan_cmd::PlanCommand) -> Result<ExitCode> {
    let c = load_config(plan_cmd::config_path(&command))?;
    let deployment = c.geography()?;
    let province = reports::province_id(&deployment, plan_cmd::province(&command)).map_err(exit::config)?;
    // The plan's own province: its districts and communes only.
    let text = plan_cmd::run(command, &deployment.scoped(province))?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the result")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// The 1022 hotline table (monthly report columns) for the tickets received from --from to --to.
    Hotline {
        /// First day received (YYYY-MM-DD, local).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day received (YYYY-MM-DD, local), included.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// GSO code of a district or commune; the province when omitted.
        #[arg(long)]
        area: Option<String>,
        /// GSO code of a tracked province (`contract.provinces`); the first when omitted.
        #[arg(long)]
        province: Option<String>,
        /// Configuration file (TOML); defaults apply when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The daily progress table: every district and the province, each indicator.
    Daily {
        /// The day (YYYY-MM-DD, local); figures as of its end.
        #[arg(long)]
        day: chrono::NaiveDate,
        /// GSO code of one district: only its row.
        #[arg(long)]
        area: Option<String>,
        /// GSO code of a tracked province (`contract.provinces`); the first when omitted.
        #[arg(long)]
        province: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = reports::Format::Markdown)]
        format: reports::Format,
        /// Configuration file (TOML); defaults apply when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `d06 report …`: runs one report and writes it to standard output.
fn run_report(command: ReportCommand) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let text = match command {
        ReportCommand::Hotline { from, to, area, province, config } => {
            let c = load_config(config.as_deref())?;
            rt.block_on(reports::hotline(&c.report_source(), province.as_deref(), from, to, area.as_deref()))?
        }
        ReportCommand::Daily { day, area, province, format, config } => {
            let c = load_config(config.as_deref())?;
            rt.block_on(reports::daily(&c.report_source(), province.as_deref(), day, area.as_deref(), format))?
        }
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the report")?;
    Ok(ExitCode::SUCCESS)
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None => {
            let c = Config::default();
            c.validate()?;
            Ok(c)
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (its disk full) is lost, never a panic:
    // the default reports the failure with `eprintln!`, which panics on that disk.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { file, config } => validate(file.as_deref(), config.as_deref()),
        Command::Report { report } => run_report(report),
        Command::Alerts { alerts } => run_alerts(alerts),
        Command::Plan { plan } => run_plan(plan),
        Command::Simulate(args) => load_config(args.config.as_deref()).and_then(|c| {
            let calendar = c.hotline.calendar().context("loading the working-time calendar")?;
            simulate::command(args, simulate::Setup { kafka: c.kafka, geography: c.contract.geography, calendar })
                .map_err(foreign_topic_is_config)
        }),
        Command::CheckConfig { config, without_key } => config::check(&config, !without_key),
        Command::Demo(args) => {
            init_tracing(false);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the runtime")
                .and_then(|rt| {
                    rt.block_on(async {
                        let shutdown = CancellationToken::new();
                        exit::spawn_signal_handler(shutdown.clone());
                        demo::run(args, shutdown).await
                    })
                })
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Run { config } => load_config(config.as_deref()).and_then(|c| {
            init_tracing(c.log.json);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                exit::spawn_signal_handler(shutdown.clone());
                run(c, shutdown).await
            })
            .map(|_| ExitCode::SUCCESS)
        }),
    };
    exit::report(result)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn validator(config: &Config, key: &SecretKey) -> Result<(Arc<Geography>, Validator, Pseudonymiser)> {
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

/// `d06 validate`: the configuration's validator with an ephemeral key
/// (digests are never shown), then the `validate` module.
fn validate(file: Option<&Path>, config: Option<&Path>) -> Result<ExitCode> {
    let config = load_config(config)?;
    let key = SecretKey::from_bytes(format!("d06-validate-{}", now_nanos()).into_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, validator, _) = validator(&config, &key)?;
    validate::run(file, &validator, now_nanos())
}

/// What decides which shard and area a fact lands in: instances that differ
/// in any of it would split subjects, so it is stamped on every facts record.
pub(crate) fn deployment_identity(config: &Config, pseudonymiser: &Pseudonymiser) -> (Identity, u64, String) {
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

/// Refusing to simulate into a topic with real records is the configuration's
/// fault (the topics named), not the network's: exit 78.
fn foreign_topic_is_config(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<simulate::guard::GuardError>() {
        Some(simulate::guard::GuardError::Foreign { .. }) => exit::config(e),
        _ => e,
    }
}

async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
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
