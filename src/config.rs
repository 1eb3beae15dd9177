//! Typed configuration: one struct per component, unknown keys rejected,
//! everything validated before anything starts. Secrets are never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aggregator::GeographyVersion;
use anyhow::{bail, Context, Result};
use ingest::kafka::KafkaConfig;
use serde::Deserialize;
use sinks::clickhouse::ClickHouseConfig;

/// The whole configuration file (`d06 run --config d06.toml`).
#[derive(Clone, Debug, Default, Deserialize)]
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
    pub alerts: crate::alerts::AlertsConfig,
}

/// 1022 hotline settings.
#[derive(Clone, Debug, Default, Deserialize)]
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// Also export commune-level coverage gauges (province and district always).
    pub commune_metrics: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9464)), commune_metrics: false }
    }
}

/// Where the HMAC key comes from. Required in `run` mode; never logged.
#[derive(Clone, Debug, Deserialize)]
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Which official geography codes resolve through.
    pub geography: GeographyVersion,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The wall clock (live operation).
    #[default]
    Wall,
    /// The newest `occurred_at` applied (replaying history).
    Event,
}

/// Local state and pipeline cadence.
#[derive(Clone, Debug, Deserialize)]
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
    /// The clock: `wall` (live) or `event` (replay).
    pub clock: ClockMode,
    /// When an area lags the plan (board colours, daily alerts).
    pub lag_rule: aggregator::LagRule,
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
            clock: ClockMode::Wall,
            lag_rule: aggregator::LagRule::default(),
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// A plan file; the embedded 2024 Bình Phước plan when not set.
    pub file: Option<PathBuf>,
}

/// Log output.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// JSON lines (production) instead of human-readable text.
    pub json: bool,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<()> {
        self.kafka.validate().context("kafka")?;
        self.contract.tz().context("contract.time_zone")?;
        if self.contract.future_tolerance_secs < 0 || self.contract.correction_horizon_days <= 0 {
            bail!("contract: tolerances must be positive");
        }
        if self.pipeline.shards == 0 || self.pipeline.shards > 1024 {
            bail!("pipeline.shards must be 1..=1024");
        }
        if self.pipeline.flush_interval_ms == 0 || self.pipeline.channel_batches == 0 {
            bail!("pipeline: flush_interval_ms and channel_batches must be > 0");
        }
        self.hotline.calendar().context("hotline.calendar_files")?;
        self.alerts.validate().context("alerts")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_unknown_keys_are_refused() {
        Config::default().validate().unwrap();
        let err = toml::from_str::<Config>("[pipeline]\nshardz = 3\n").unwrap_err().to_string();
        assert!(err.contains("shardz"), "{err}");
        let c: Config = toml::from_str("[pipeline]\nclock = \"event\"\nshards = 3\n").unwrap();
        assert_eq!(c.pipeline.clock, ClockMode::Event);
        assert_eq!(c.pipeline.shards, 3);
    }

    #[test]
    fn the_example_config_parses() {
        let c: Config = toml::from_str(include_str!("../deploy/d06.example.toml")).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c: Config = toml::from_str(
            "[kafka.properties]\n\"sasl.password\" = \"hunter2-secret\"\n[clickhouse]\npassword = \"ch-secret-pw\"\n",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(!shown.contains("ch-secret-pw"), "{shown}");
    }
}
