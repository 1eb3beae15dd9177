//! `d06`: the thin binary that composes ingest → aggregator → sinks.

mod cli;
mod config;
mod demo;
mod exit;
mod pipeline;
mod plan_cmd;
mod progress;
mod run;
mod validate;

use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// The embedded campaign plan: Bình Phước, "4 phủ", 2024 (the tests' copy;
/// the binary loads it through `reports::load_plan`).
#[cfg(test)]
pub(crate) const DEFAULT_PLAN: &str = include_str!("../deploy/plans/binh-phuoc-2024.toml");

/// The configuration file checked, or the checked defaults without one.
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

/// Logs to standard error, as JSON lines when `json`; `RUST_LOG` filters.
/// Colours only on a terminal: a log file or the journal gets plain text
/// that `grep` finds `rows=0` in.
fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (its disk full) is lost, never a panic:
    // the default reports the failure with `eprintln!`, which panics on that disk.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { file, config } => validate::command(file.as_deref(), config.as_deref()),
        Command::Report { report } => cli::run_report(report),
        Command::Alerts { alerts } => cli::run_alerts(alerts),
        Command::Plan { plan } => cli::run_plan(plan),
        Command::Simulate(args) => load_config(args.config.as_deref()).and_then(|c| {
            let calendar = c.hotline.calendar().context("loading the working-time calendar")?;
            simulate::command(args, simulate::Setup { kafka: c.kafka, geography: c.contract.geography, calendar })
                .map_err(foreign_topic_is_config)
        }),
        Command::CheckConfig { config, without_key } => config::check(&config, !without_key),
        Command::Demo(args) => {
            init_tracing(false);
            serve(|shutdown| demo::run(args, shutdown))
        }
        Command::Run { config } => load_config(config.as_deref()).and_then(|c| {
            init_tracing(c.log.json);
            serve(|shutdown| run::run(c, shutdown))
        }),
    };
    exit::report(result)
}

/// Runs a long-lived command on a runtime of two workers until it ends or
/// SIGINT/SIGTERM cancels its shutdown token.
fn serve<T, F: Future<Output = Result<T>>>(command: impl FnOnce(CancellationToken) -> F) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        exit::spawn_signal_handler(shutdown.clone());
        command(shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Nanoseconds since the Unix epoch (0 before it).
fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Refusing to simulate into a topic with real records is the configuration's
/// fault (the topics named), not the network's: exit 78.
fn foreign_topic_is_config(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<simulate::guard::GuardError>() {
        Some(simulate::guard::GuardError::Foreign { .. }) => exit::config(e),
        _ => e,
    }
}
