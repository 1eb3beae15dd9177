//! Typed configuration: one struct per component, unknown keys rejected,
//! everything validated before anything starts. Secrets are never printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aggregator::Plans;
use aggregator::{Geography, GeographyVersion};
use anyhow::{bail, Context, Result};
use ingest::kafka::KafkaConfig;
use ingest::pseudonym::SecretKey;
use serde::{Deserialize, Serialize};
use sinks::clickhouse::ClickHouseConfig;

use crate::exit;

/// The whole configuration file (`d06 run --config d06.toml`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka source topics, consumer group and dead-letter topic.
    pub kafka: KafkaConfig,
    /// ClickHouse sink.
    pub clickhouse: ClickHouseConfig,
    /// HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// Pseudonymisation key.
    pub pseudonym: PseudonymConfig,
    /// The contract's tunables and the geography.
    pub contract: ContractConfig,
    /// Local state store and pipeline cadence.
    pub pipeline: PipelineConfig,
    /// The campaign plan.
    pub plan: PlanConfig,
    /// The 1022 hotline.
    pub hotline: HotlineConfig,
    /// Logging.
    pub log: LogConfig,
    /// The daily alerts to Alertmanager.
    pub alerts: alerts::AlertsConfig,
}

/// 1022 hotline settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotlineConfig {
    /// Working-time calendar files (shifts, weekdays, holidays, make-up days),
    /// merged in order; the embedded 2023–2026 Vietnamese public-sector
    /// calendar when empty. To add a year, list the shipped files
    /// (`aggregator/data/calendar/vn-*.toml`) and the new one. With the wall
    /// clock, d06 warns at start-up when this year or the next has no holiday.
    pub calendar_files: Vec<PathBuf>,
}

impl HotlineConfig {
    /// Loads the calendar the deadlines are computed in.
    pub fn calendar(&self) -> Result<aggregator::calendar::WorkCalendar> {
        use aggregator::calendar::WorkCalendar;
        if self.calendar_files.is_empty() {
            return WorkCalendar::embedded().context("loading the embedded working-time calendar");
        }
        let mut merged: Option<WorkCalendar> = None;
        for path in &self.calendar_files {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let cal = WorkCalendar::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?;
            match merged.as_mut() {
                None => merged = Some(cal),
                Some(m) => m.merge(cal).with_context(|| format!("merging {}", path.display()))?,
            }
        }
        merged.context("no calendar")
    }
}

/// HTTP endpoint settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// Also export commune-level gauges where communes are not the tier below
    /// the province (before 2025: 111 communes beside 11 districts). The
    /// province and that tier always have gauges, so with `post2025` (~40
    /// communes, no districts) the communes have them whatever this says.
    pub commune_metrics: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9464)), commune_metrics: false }
    }
}

/// Where the HMAC key comes from. Required in `run` mode; never logged.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PseudonymConfig {
    /// A file holding the key (raw bytes; at least 16).
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key (used when `key_file` is not set).
    pub key_env: String,
}

impl Default for PseudonymConfig {
    fn default() -> Self {
        PseudonymConfig { key_file: None, key_env: "D06_HMAC_KEY".into() }
    }
}

impl PseudonymConfig {
    /// Reads the key bytes.
    pub fn load_key(&self) -> Result<Vec<u8>> {
        let bytes = match &self.key_file {
            Some(path) => std::fs::read(path).with_context(|| format!("reading the key file {}", path.display()))?,
            None => match std::env::var(&self.key_env) {
                Ok(v) => v.into_bytes(),
                Err(_) => bail!(
                    "no pseudonymisation key: set the environment variable {} or pseudonym.key_file",
                    self.key_env
                ),
            },
        };
        let trimmed = bytes.trim_ascii_end().to_vec();
        if trimmed.len() < 16 {
            bail!("the pseudonymisation key must be at least 16 bytes");
        }
        Ok(trimmed)
    }
}

/// The contract's tunables.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Which official geography codes resolve through.
    pub geography: GeographyVersion,
    /// The provinces this deployment tracks, by GSO code of `geography`
    /// (e.g. `["70", "74"]`), from the embedded national data; each needs a
    /// plan (`plan.by_province`). Empty (the default): Bình Phước, from the
    /// campaign's own files. Events of other provinces are dead letters.
    pub provinces: Vec<String>,
    /// IANA time zone of local days.
    pub time_zone: String,
    /// How far ahead of the wall clock an event may be, seconds (`future_event`).
    pub future_tolerance_secs: i64,
    /// The correction horizon, days (`too_late`).
    pub correction_horizon_days: i64,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
            geography: GeographyVersion::Pre2025,
            provinces: Vec::new(),
            time_zone: "Asia/Ho_Chi_Minh".into(),
            future_tolerance_secs: 600,
            correction_horizon_days: 45,
        }
    }
}

impl ContractConfig {
    /// The parsed time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz> {
        self.time_zone.parse().map_err(|_| anyhow::anyhow!("unknown time zone {:?}", self.time_zone))
    }
}

/// Which clock says what "now" is for "today" and hotline deadlines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The wall clock (live operation).
    #[default]
    Wall,
    /// The newest `occurred_at` applied (replaying history).
    Event,
}

/// Local state and pipeline cadence.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Directory of the local state store.
    pub state_dir: PathBuf,
    /// Shards: the facts topic's partition count (subjects are routed by
    /// digest). Fixed for the life of a facts topic: d06 creates the topic
    /// with this many partitions and refuses to start when they differ.
    pub shards: u32,
    /// Worker threads applying this instance's shards; 0 = one per core.
    pub worker_threads: usize,
    /// How often changes are written out and checkpointed, milliseconds.
    pub flush_interval_ms: u64,
    /// Batches buffered between the source and the aggregator (bounds memory).
    pub channel_batches: usize,
    /// A shard's fact log, in bytes, beyond which its next checkpoint writes
    /// a snapshot of its state and drops the log: once the log since the last
    /// snapshot outgrows both this and that snapshot. A restart then loads
    /// one snapshot and replays at most about as much again, whatever the
    /// history (ARCHITECTURE.md, "Snapshots"). Must be > 0.
    pub snapshot_log_bytes: u64,
    /// The clock: `wall` (live) or `event` (replay).
    pub clock: ClockMode,
    /// When an area lags the plan (board colours, daily alerts).
    pub lag_rule: aggregator::LagRule,
    /// Messages left in the source topics (summed over the partitions this
    /// instance reads) beyond which the instance is replaying far behind:
    /// `/readyz` answers 503, the board says its figures are not current and
    /// progress is logged. 0: any lag at all.
    pub behind_messages: u64,
    /// While far behind, how often progress (position, rate, ETA per source
    /// topic) is logged, seconds.
    pub progress_log_secs: u64,
    /// While far behind, how often changes are written out, checkpointed
    /// and the figures published, milliseconds (never more often than
    /// `flush_interval_ms`); current again, every `flush_interval_ms`. The
    /// figures are not current while replaying anyway (`/readyz` and the
    /// board say so), and a flush costs about the same whatever it carries:
    /// at national size, flushing every second took two thirds of a replay
    /// (BENCHMARKS.md, "National replay").
    pub flush_while_behind_ms: u64,
    /// The largest share of the time, in percent, that reading the
    /// province-wide figures back from ClickHouse may take: after a
    /// read-back that took R, the next one is left out of every flush until
    /// R × 100 / `figures_share_percent` has passed since it started (those
    /// flushes write, checkpoint and commit as usual; the gauges and the
    /// board keep the last figures read). 100: after every flush. A small
    /// deployment reads back in milliseconds, so this changes nothing
    /// there; a national one on many shards takes seconds a read-back
    /// (BENCHMARKS.md, "Reading the figures back"), which would otherwise
    /// hold up every flush. 1..=100.
    pub figures_share_percent: u32,
    /// A source partition this instance reads, with messages waiting, whose
    /// position has not moved for this many seconds stops the process
    /// (exit 1, the partitions named) rather than leave it silently stuck;
    /// the service manager restarts it. 0: never.
    pub stall_exit_secs: u64,
    /// Test only: abort the process at a fault point (`after_clickhouse`:
    /// after a flush's rows are in ClickHouse, before the shards' stores are
    /// checkpointed), as a `kill -9` would.
    pub fault: Option<crate::pipeline::PipelineFault>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            state_dir: PathBuf::from(".d06/state"),
            shards: 2,
            worker_threads: 0,
            flush_interval_ms: 500,
            channel_batches: 4,
            snapshot_log_bytes: 64 << 20,
            clock: ClockMode::Wall,
            lag_rule: aggregator::LagRule::default(),
            behind_messages: 100_000,
            progress_log_secs: 30,
            flush_while_behind_ms: 5_000,
            figures_share_percent: 25,
            stall_exit_secs: 300,
            fault: None,
        }
    }
}

impl PipelineConfig {
    /// The worker threads to start.
    pub fn workers(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The campaign plan.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// A plan file; the embedded 2024 Bình Phước plan when not set. For
    /// one province only.
    pub file: Option<PathBuf>,
    /// Each tracked province's plan file, by GSO code (`"74" =
    /// "plans/binh-duong.toml"`): required for every province when
    /// `contract.provinces` lists several.
    pub by_province: BTreeMap<String, PathBuf>,
}

/// Log output.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// JSON lines (production) instead of human-readable text.
    pub json: bool,
}

impl Config {
    /// Reads and validates a config file; every failure is a
    /// [`exit::ConfigError`] (exit 78).
    pub fn load(path: &Path) -> Result<Config> {
        let config = Config::parse(path)?;
        config.validate()?;
        Ok(config)
    }

    /// What the reports read (`d06 report`, the daily alerts).
    pub fn report_source(&self) -> reports::Source {
        reports::Source {
            geography: self.contract.geography,
            provinces: self.contract.provinces.clone(),
            clickhouse: self.clickhouse.clone(),
            plan_file: self.plan.file.clone(),
            plan_files: self.plan.by_province.clone(),
        }
    }

    /// Reads and parses a config file (unknown keys refused), unvalidated.
    fn parse(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        text.and_then(|t| toml::from_str(&t).with_context(|| format!("parsing {}", path.display())))
            .map_err(exit::config)
    }

    /// Checks what can be checked before anything starts: the first problem,
    /// as a [`exit::ConfigError`].
    pub fn validate(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            Some(e) => Err(exit::config(e)),
            None => Ok(()),
        }
    }

    /// Every problem [`Config::validate`] looks for, one error each.
    fn problems(&self) -> Vec<anyhow::Error> {
        let mut problems = Vec::new();
        let mut check = |r: Result<()>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        check(self.kafka.validate().context("kafka"));
        check(self.clickhouse.check().map_err(anyhow::Error::msg).context("clickhouse"));
        check(self.contract.tz().map(drop).context("contract.time_zone"));
        if self.contract.future_tolerance_secs < 0 || self.contract.correction_horizon_days <= 0 {
            check(Err(anyhow::anyhow!("contract: tolerances must be positive")));
        }
        if self.pipeline.shards == 0 || self.pipeline.shards > 1024 {
            check(Err(anyhow::anyhow!("pipeline.shards must be 1..=1024")));
        }
        if self.pipeline.progress_log_secs == 0 {
            check(Err(anyhow::anyhow!("pipeline.progress_log_secs must be > 0")));
        }
        if self.pipeline.snapshot_log_bytes == 0 {
            check(Err(anyhow::anyhow!("pipeline.snapshot_log_bytes must be > 0")));
        }
        if !(1..=100).contains(&self.pipeline.figures_share_percent) {
            check(Err(anyhow::anyhow!("pipeline.figures_share_percent must be 1..=100")));
        }
        if self.pipeline.flush_interval_ms == 0 || self.pipeline.channel_batches == 0 {
            check(Err(anyhow::anyhow!("pipeline: flush_interval_ms and channel_batches must be > 0")));
        }
        if self.contract.provinces.len() > 1 && self.plan.file.is_some() {
            check(Err(anyhow::anyhow!(
                "plan.file is the plan of one province; with several in contract.provinces give each its file in \
                 plan.by_province"
            )));
        }
        check(self.hotline.calendar().map(drop).context("hotline.calendar_files"));
        check(self.alerts.validate().context("alerts"));
        problems
    }

    /// The pseudonymisation key (`pseudonym`); a missing or short key is a
    /// [`exit::ConfigError`]. Never printed.
    pub fn key(&self) -> Result<SecretKey> {
        let bytes = self.pseudonym.load_key().map_err(exit::config)?;
        SecretKey::from_bytes(bytes).map_err(|e| exit::config(anyhow::anyhow!("pseudonym: {e}")))
    }

    /// The geography the deployment counts through (`contract.geography`
    /// and `contract.provinces`); an unknown province is a [`exit::ConfigError`].
    pub fn geography(&self) -> Result<Geography> {
        self.report_source().geography().map_err(exit::config)
    }

    /// Every tracked province's plan resolved in `geo` (the deployment's
    /// geography); an unreadable or invalid file, or a province without a
    /// plan, is a [`exit::ConfigError`].
    pub fn plans(&self, geo: &Geography) -> Result<Plans> {
        self.report_source().plans(geo).map_err(exit::config)
    }

    /// What names the geography in the state stores and the facts topic's
    /// identity: the version as before for Bình Phước, with the provinces
    /// when they are listed (facts resolved through another list have other
    /// area ids).
    pub fn geography_identity(&self) -> String {
        match self.contract.provinces.as_slice() {
            [] => format!("{:?}", self.contract.geography),
            codes => format!("{:?} provinces {}", self.contract.geography, codes.join(",")),
        }
    }

    /// Everything `d06 run` checks that needs no network: [`Config::validate`]'s
    /// problems, then the key (unless `with_key` is false) and the plan.
    fn offline_problems(&self, with_key: bool) -> Vec<anyhow::Error> {
        let mut problems = self.problems();
        if with_key {
            if let Err(e) = self.key() {
                problems.push(e);
            }
        }
        match self.geography() {
            Ok(geo) => {
                if let Err(e) = self.plans(&geo) {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(e),
        }
        problems
    }

    /// This configuration with every secret replaced by `"[redacted]"`: Kafka
    /// properties that look secret, the ClickHouse password and any
    /// credentials in a URL. Variable and file names stay.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.kafka = self.kafka.redacted();
        c.clickhouse = self.clickhouse.redacted();
        c.alerts = self.alerts.redacted();
        c
    }

    /// The configuration, defaults included, as TOML with secrets redacted.
    pub fn to_redacted_toml(&self) -> Result<String> {
        toml::to_string(&self.redacted()).context("printing the configuration as TOML")
    }
}

/// `d06 check-config FILE`: prints the configuration as TOML (secrets
/// redacted) and one line per problem on standard error; a problem is a
/// [`exit::ConfigError`] (exit 78).
pub fn check(path: &Path, with_key: bool) -> Result<ExitCode> {
    let config = Config::parse(path)?;
    let problems = config.offline_problems(with_key);
    use std::io::Write as _;
    let text = config.to_redacted_toml()?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the configuration")?;
    for p in &problems {
        eprintln!("d06: {}: {p:#}", path.display());
    }
    match problems.len() {
        0 => Ok(ExitCode::SUCCESS),
        n => Err(exit::config(anyhow::anyhow!("{n} problem(s) in {}", path.display()))),
    }
}

#[cfg(test)]
mod tests;
