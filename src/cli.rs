//! The command line: what each subcommand takes (`clap`), and the three
//! small commands that print one result (`report`, `plan`, `alerts send`).
//! `main` dispatches; `run` and `demo` compose the pipeline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::{demo, exit, init_tracing, load_config, plan_cmd};

#[derive(Debug, Parser)]
#[command(name = "d06", version, about = "Đề án 06 \"4 phủ\" campaign tracker")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum AlertsCommand {
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

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
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

/// `d06 alerts send --day DATE`: one line per alert posted, then a summary.
pub(crate) fn run_alerts(command: AlertsCommand) -> Result<ExitCode> {
    let AlertsCommand::Send { day, province, config } = command;
    let c = load_config(config.as_deref())?;
    init_tracing(c.log.json);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let alerts = c.alerts.clone().with_default_rule(c.pipeline.lag_rule);
    let text = rt.block_on(alerts::send_day(&c.report_source(), province.as_deref(), alerts, c.contract.tz()?, day))?;
    print(&text, "writing the result")
}

/// `d06 plan …`: prints what it did.
pub(crate) fn run_plan(command: plan_cmd::PlanCommand) -> Result<ExitCode> {
    let c = load_config(plan_cmd::config_path(&command))?;
    let deployment = c.geography()?;
    let province = reports::province_id(&deployment, plan_cmd::province(&command)).map_err(exit::config)?;
    // The plan's own province: its districts and communes only.
    let text = plan_cmd::run(command, &deployment.scoped(province))?;
    print(&text, "writing the result")
}

/// `d06 report …`: runs one report and writes it to standard output.
pub(crate) fn run_report(command: ReportCommand) -> Result<ExitCode> {
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
    print(&text, "writing the report")
}

/// Writes a command's whole result to standard output; `doing` names the
/// write in the error.
fn print(text: &str, doing: &'static str) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context(doing)?;
    Ok(ExitCode::SUCCESS)
}
