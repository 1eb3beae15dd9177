//! `d06 simulate`: its arguments and the command (standard output or Kafka).

use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::calendar::WorkCalendar;
use aggregator::{Geography, GeographyVersion};
use anyhow::{Context as _, Result};
use ingest::kafka::KafkaConfig;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::kafka::to_kafka;
use crate::message::{Kind, SimMessage};
use crate::national::National;
use crate::national_plans::national_plans;
use crate::progress::{Progress, Unit};
use crate::scenario::Which;
use crate::simulator::Simulator;

/// `d06 simulate` arguments.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Configuration file (TOML): Kafka brokers, topics, properties and the
    /// geography; defaults apply when omitted.
    // Read by the binary, which owns the configuration: see [`Setup`].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Messages per second; 0 = as fast as the broker takes them. With a
    /// rate, event times follow the wall clock (a live stream).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stop after this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Seed: the same seed gives the same messages.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Volume multiplier (1.0 ≈ the real campaign, ≈ 1.4 million messages).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Days simulated from the start (2024-04-10).
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// District codes that lag the plan (comma-separated; default 691,693).
    #[arg(long, value_delimiter = ',')]
    pub lagging: Option<Vec<String>>,
    /// A commune no simulated event names (repeatable), e.g. for latency markers.
    #[arg(long = "exclude-commune")]
    pub exclude_communes: Vec<String>,
    /// Share of extra invalid messages (0.005 = 0.5 %).
    #[arg(long, default_value_t = 0.005)]
    pub invalid_rate: f64,
    /// One province (Bình Phước, the default) or every province of Vietnam
    /// in the configured geography version (63 before the 2025 reform, 34
    /// after), each scaled by its population.
    #[arg(long, value_enum, default_value_t = Scope::Province, conflicts_with_all = ["lagging", "exclude_communes"])]
    pub scope: Scope,
    /// With `--scope national`: simulate nothing; write one plan per
    /// province into this directory (Bình Phước's 2024 plan scaled by
    /// population and `--scale`, over `--days`) and print the configuration
    /// that tracks every province with them.
    #[arg(long)]
    pub write_plans: Option<PathBuf>,
    /// Write the messages to standard output, one per line (topic kind, a
    /// tab, the payload), instead of to Kafka.
    #[arg(long)]
    pub stdout: bool,
    /// Write even into topics holding records `d06 simulate` did not write
    /// (by default it refuses: synthetic people must not reach real topics).
    #[arg(long)]
    pub into_foreign_topics: bool,
    /// Instead of the campaign, the 1022 ticket stream that reproduces one of
    /// the province's hotline reports (replay it with `pipeline.clock =
    /// "event"`, then `d06 report hotline` over the report's period). Only
    /// `--seed`, `--limit` and `--stdout` apply.
    #[arg(long, value_enum, conflicts_with_all = ["rate", "scale", "days", "lagging", "exclude_communes", "invalid_rate", "scope"])]
    pub scenario: Option<Which>,
}

/// What `d06 simulate` simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// Bình Phước's campaign.
    #[default]
    Province,
    /// Every province at once ([`National`]).
    National,
}

/// What `d06 simulate` takes from the configuration file (which the binary
/// reads and validates: [`SimulateArgs::config`]).
#[derive(Debug)]
pub struct Setup {
    /// Brokers, topics and client properties to write to.
    pub kafka: KafkaConfig,
    /// The geography area codes are drawn from.
    pub geography: GeographyVersion,
    /// The working-time calendar of the hotline scenarios' deadlines.
    pub calendar: WorkCalendar,
}

/// Runs `d06 simulate`: prints the summary; fails if any delivery failed.
pub fn command(args: SimulateArgs, setup: Setup) -> Result<ExitCode> {
    let Setup { kafka, geography, calendar } = setup;
    if let Some(dir) = &args.write_plans {
        if args.scope != Scope::National {
            anyhow::bail!("--write-plans writes the plans of --scope national");
        }
        print!("{}", write_plans(dir, &args, geography)?);
        return Ok(ExitCode::SUCCESS);
    }
    let geo = Geography::load(geography).context("loading the geography")?;
    let sim: Box<dyn Iterator<Item = SimMessage> + Send> = match args.scenario {
        Some(which) => Box::new(crate::scenario::messages(&geo, &calendar, which, args.seed).into_iter()),
        None => {
            let mut cfg = SimConfig {
                seed: args.seed,
                scale: args.scale,
                days: args.days,
                invalid_rate: args.invalid_rate,
                ..SimConfig::default()
            };
            if let Some(l) = args.lagging {
                cfg.lagging_districts = l;
            }
            cfg.exclude_communes = args.exclude_communes;
            match args.scope {
                Scope::Province => {
                    cfg.validate(&geo)?;
                    Box::new(Simulator::new(cfg, &geo))
                }
                Scope::National => {
                    cfg.validate_rates()?;
                    Box::new(National::new(&cfg, geography)?)
                }
            }
        }
    };
    if args.stdout {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut progress = Progress::new("simulate", args.limit, Unit::Messages, crate::kafka::LARGE);
        let mut written = 0u64;
        for m in sim.take(usize::try_from(args.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)) {
            let kind = match m.kind {
                Kind::Cccd => "cccd",
                Kind::Vneid => "vneid",
                Kind::Sim => "sim",
                Kind::Hotline => "hotline",
            };
            out.write_all(kind.as_bytes())?;
            out.write_all(b"\t")?;
            out.write_all(&m.payload)?;
            out.write_all(b"\n")?;
            written += 1;
            progress.update(written, String::new);
        }
        out.flush()?;
        progress.finish(written, String::new);
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let summary = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.cancel();
            }
        });
        to_kafka(sim, &kafka, args.rate, args.limit, args.into_foreign_topics, shutdown).await
    })?;
    print!("{summary}");
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `--write-plans DIR`: every province's plan as `DIR/{code}.toml`; returns
/// the configuration that tracks them all.
fn write_plans(dir: &std::path::Path, args: &SimulateArgs, geography: GeographyVersion) -> Result<String> {
    let cfg = SimConfig::default();
    let plans = national_plans(geography, &cfg.targets.scaled(args.scale), cfg.start, args.days)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut codes = Vec::new();
    let mut files = String::new();
    for p in &plans {
        let path = dir.join(format!("{}.toml", p.code));
        std::fs::write(&path, &p.toml).with_context(|| format!("writing {}", path.display()))?;
        codes.push(format!("\"{}\"", p.code));
        files.push_str(&format!("\"{}\" = \"{}\"  # {}\n", p.code, path.display(), p.name));
    }
    Ok(format!(
        "# {} provinces' simulated plans (d06 simulate --scope national --write-plans)\n\
         [contract]\ngeography = \"{}\"\nprovinces = [{}]\n\n[plan.by_province]\n{files}",
        plans.len(),
        match geography {
            GeographyVersion::Pre2025 => "pre2025",
            GeographyVersion::Post2025 => "post2025",
        },
        codes.join(", ")
    ))
}
