//! Prometheus metrics: the pipeline's own metrics and the business gauges of
//! OUTPUTS-v1, in one registry, plus the HTTP server that exposes them.
//!
//! Every metric is declared here, once. Names follow Prometheus conventions
//! (`d06_` prefix, `_total` counters, base units, `_seconds`). Label values
//! are only codes: topics, partitions, reasons, indicators, area levels, GSO
//! area codes, sink names and error kinds; never anything from a message
//! body. The setters of this module enforce it by replacing any value that is
//! not a short `[A-Za-z0-9_.-]` token with `invalid`. The one exception is
//! the `name` of `d06_area_info`: the official name of an area of the
//! geography compiled into d06 (never a message's text).

mod http;

use aggregator::hotline::HotlineCounts;
use std::time::Duration;

use ::prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub use self::http::{Health, HttpServer, NotReady, DEFAULT_LISTEN};

/// Buckets for sink writes and flushes, in seconds.
const WRITE_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for local checkpoints (an fsync), in seconds.
const CHECKPOINT_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The hotline statuses of `d06_hotline_tickets` (the columns of `hotline_daily`).
pub const HOTLINE_STATUSES: [&str; 8] = [
    "received",
    "answered",
    "forwarded",
    "processed",
    "in_progress",
    "spam",
    "overdue_specialist",
    "overdue_leadership",
];

/// Which area a series is about: the labels every area series carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaLabels<'a> {
    /// GSO code of the province the area rolls up into (its own for a province).
    pub province: &'a str,
    /// `province`, `district` or `commune`.
    pub level: &'a str,
    /// The area's GSO code.
    pub area: &'a str,
}

impl<'a> AreaLabels<'a> {
    /// `[province, level, area]`, each through [`safe_label`].
    fn values(&self) -> [&'a str; 3] {
        [safe_label(self.province), safe_label(self.level), safe_label(self.area)]
    }
}

/// Current coverage of one (indicator, area), for [`Metrics::set_coverage`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CoverageGauges {
    /// Covered now (baseline + gained - lost).
    pub covered: i64,
    /// Target now.
    pub target: u64,
    /// Expected by now under the campaign plan.
    pub expected: u64,
    /// Gained since local midnight.
    pub gained_today: u64,
    /// Days the area lags the plan (0 when on or ahead); `None` while the
    /// baseline is unknown (the series is then absent).
    pub days_behind: Option<f64>,
    /// Whether the plan knows the area's baseline.
    pub baseline_known: bool,
    /// Net gain per day over the last 7 days.
    pub pace_per_day: f64,
    /// The pace the plan needs now.
    pub needed_per_day: f64,
}

/// `(status, count)` of one area's tickets in the order of [`HOTLINE_STATUSES`].
fn hotline_by_status(c: &HotlineCounts) -> [(&'static str, u64); 8] {
    [
        ("received", c.received),
        ("answered", c.answered),
        ("forwarded", c.forwarded),
        ("processed", c.processed),
        ("in_progress", c.in_progress),
        ("spam", c.spam),
        ("overdue_specialist", c.overdue_specialist),
        ("overdue_leadership", c.overdue_leadership),
    ]
}

/// All of d06's metrics, registered in [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` encodes (not the process-global default).
    pub registry: Registry,
    /// `d06_messages_consumed_total{topic}`: source messages read.
    pub messages_consumed: IntCounterVec,
    /// `d06_messages_rejected_total{reason}`: messages sent to the dead letters.
    pub messages_rejected: IntCounterVec,
    /// `d06_duplicates_ignored_total`: events already applied (same event id).
    pub duplicates: IntCounter,
    /// `d06_facts_applied_total`: facts the shards of this instance applied
    /// (duplicates included), read from the facts topic.
    pub facts_applied: IntCounter,
    /// `d06_fenced_writes_total`: rows this instance wrote for a shard another
    /// owner had already claimed (superseded by the newer generation).
    pub fenced_writes: IntCounter,
    /// `d06_shards_owned`: facts partitions this instance owns now.
    pub shards_owned: IntGauge,
    /// `d06_shards_configured`: facts partitions (shards) of the deployment,
    /// `pipeline.shards`; every instance reports the same value, so the
    /// instances' `d06_shards_owned` summed falling short of it means
    /// shards that no one applies.
    pub shards_configured: IntGauge,
    /// `d06_sink_write_seconds{sink}`: duration of each write attempt.
    pub sink_write_seconds: HistogramVec,
    /// `d06_sink_write_failures_total{sink,kind}`: failed write attempts.
    pub sink_failures: IntCounterVec,
    /// `d06_sink_rows_written_total{sink,table}`: rows acknowledged by a sink.
    pub sink_rows_written: IntCounterVec,
    /// `d06_consumer_lag_messages{topic,partition}`: high watermark minus position.
    pub consumer_lag: IntGaugeVec,
    /// `d06_newest_event_timestamp_seconds`: event time of the newest event applied (T).
    pub newest_event_time: Gauge,
    /// `d06_state_subjects`: subjects held in the aggregator state.
    pub state_subjects: IntGauge,
    /// `d06_state_events`: event ids held for deduplication.
    pub state_events: IntGauge,
    /// `d06_checkpoint_seconds`: duration of a local checkpoint (with fsync).
    pub checkpoint_seconds: Histogram,
    /// `d06_state_store_failing`: 1 while writing the local state store fails
    /// (disk full, I/O error) and stage 2 waits, else 0.
    pub state_store_failing: IntGauge,
    /// `d06_state_store_write_failures_total`: failed checkpoint attempts.
    pub state_store_failures: IntCounter,
    /// `d06_flush_seconds`: duration of a whole flush (sinks, checkpoint, commit);
    /// its `_count` is the number of flushes.
    pub flush_seconds: Histogram,
    /// `d06_last_flush_timestamp_seconds`: wall-clock time of the last completed flush.
    pub last_flush_time: Gauge,
    /// `d06_daily_alerts_due_timestamp_seconds`: when the daily alerts this
    /// instance waits for (or works on) are due; 0 while the job is off.
    pub alerts_due: Gauge,
    /// `d06_daily_alerts_last_success_timestamp_seconds`: when this instance
    /// last completed a day's alerts (Alertmanager accepted, or nothing to send).
    pub alerts_last_success: Gauge,
    /// `d06_coverage_covered{indicator,province,area_level,area}`.
    pub coverage_covered: IntGaugeVec,
    /// `d06_coverage_target{indicator,province,area_level,area}`.
    pub coverage_target: IntGaugeVec,
    /// `d06_coverage_expected{indicator,province,area_level,area}`.
    pub coverage_expected: IntGaugeVec,
    /// `d06_coverage_ratio{indicator,province,area_level,area}`: covered / target; absent while the target is 0.
    pub coverage_ratio: GaugeVec,
    /// `d06_coverage_gained_today{indicator,province,area_level,area}`.
    pub coverage_gained_today: IntGaugeVec,
    /// `d06_coverage_days_behind{indicator,province,area_level,area}`; absent while the baseline is unknown.
    pub coverage_days_behind: GaugeVec,
    /// `d06_coverage_baseline_known{indicator,province,area_level,area}`: 1 when the plan knows the baseline, else 0.
    pub coverage_baseline_known: IntGaugeVec,
    /// `d06_coverage_pace_per_day{indicator,province,area_level,area}`: net gain per day over the last 7 days.
    pub coverage_pace_per_day: GaugeVec,
    /// `d06_coverage_needed_per_day{indicator,province,area_level,area}`: the pace the plan needs now.
    pub coverage_needed_per_day: GaugeVec,
    /// `d06_hotline_tickets{status,province,area_level,area}`.
    pub hotline_tickets: IntGaugeVec,
    /// `d06_area_info{province,area_level,area,name,parent}`: 1 for every area of the
    /// geography d06 runs with that has coverage gauges (its official name and
    /// the code of the area it rolls up into, empty for the province).
    pub area_info: IntGaugeVec,
}

const AREA_LABELS: &[&str] = &["indicator", "province", "area_level", "area"];

impl Metrics {
    /// Creates every metric and registers it in a fresh registry.
    pub fn new() -> Result<Self, ::prometheus::Error> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, ::prometheus::Error> {
            let m = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let int_gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, ::prometheus::Error> {
            let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, ::prometheus::Error> {
            let m = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> Result<Histogram, ::prometheus::Error> {
            let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };

        let duplicates = IntCounter::new(
            "d06_duplicates_ignored_total",
            "Events ignored because their event id was already applied.",
        )?;
        registry.register(Box::new(duplicates.clone()))?;
        let facts_applied = IntCounter::new(
            "d06_facts_applied_total",
            "Facts read from the facts topic and applied by this instance's shards (duplicates included).",
        )?;
        registry.register(Box::new(facts_applied.clone()))?;
        let fenced_writes = IntCounter::new(
            "d06_fenced_writes_total",
            "Rows written for a shard after another owner claimed it: superseded, never counted.",
        )?;
        registry.register(Box::new(fenced_writes.clone()))?;
        let shards_owned = IntGauge::new("d06_shards_owned", "Facts partitions (shards) this instance owns.")?;
        registry.register(Box::new(shards_owned.clone()))?;
        let shards_configured = IntGauge::new(
            "d06_shards_configured",
            "Facts partitions (shards) of the deployment (pipeline.shards), the same on every instance.",
        )?;
        registry.register(Box::new(shards_configured.clone()))?;
        let newest_event_time = Gauge::new(
            "d06_newest_event_timestamp_seconds",
            "Event time (Unix seconds) of the newest event applied: the replay clock T.",
        )?;
        registry.register(Box::new(newest_event_time.clone()))?;
        let state_subjects = IntGauge::new("d06_state_subjects", "Subjects held in the aggregator state, all shards.")?;
        registry.register(Box::new(state_subjects.clone()))?;
        let state_events = IntGauge::new("d06_state_events", "Event ids held for deduplication, all shards.")?;
        registry.register(Box::new(state_events.clone()))?;
        let state_store_failing = IntGauge::new(
            "d06_state_store_failing",
            "1 while writing the local state store fails (disk full, I/O error) and stage 2 waits.",
        )?;
        registry.register(Box::new(state_store_failing.clone()))?;
        let state_store_failures = IntCounter::new(
            "d06_state_store_write_failures_total",
            "Failed checkpoint attempts of the local state store (each retried).",
        )?;
        registry.register(Box::new(state_store_failures.clone()))?;
        let last_flush_time = Gauge::new(
            "d06_last_flush_timestamp_seconds",
            "Wall-clock time (Unix seconds) of the last completed flush.",
        )?;
        registry.register(Box::new(last_flush_time.clone()))?;
        let alerts_due = Gauge::new(
            "d06_daily_alerts_due_timestamp_seconds",
            "When the daily alerts this instance waits for or works on are due (Unix seconds; 0: job off).",
        )?;
        registry.register(Box::new(alerts_due.clone()))?;
        let alerts_last_success = Gauge::new(
            "d06_daily_alerts_last_success_timestamp_seconds",
            "When this instance last completed a day's daily alerts (Unix seconds; 0: never).",
        )?;
        registry.register(Box::new(alerts_last_success.clone()))?;
        let sink_write_seconds = HistogramVec::new(
            HistogramOpts::new("d06_sink_write_seconds", "Duration of one write attempt to a sink.")
                .buckets(WRITE_BUCKETS.to_vec()),
            &["sink"],
        )?;
        registry.register(Box::new(sink_write_seconds.clone()))?;

        Ok(Metrics {
            messages_consumed: counter_vec(
                "d06_messages_consumed_total",
                "Source messages read, per topic.",
                &["topic"],
            )?,
            messages_rejected: counter_vec(
                "d06_messages_rejected_total",
                "Messages rejected to the dead letters, per reason.",
                &["reason"],
            )?,
            duplicates,
            facts_applied,
            fenced_writes,
            shards_owned,
            shards_configured,
            sink_write_seconds,
            sink_failures: counter_vec(
                "d06_sink_write_failures_total",
                "Failed write attempts, per sink and error kind.",
                &["sink", "kind"],
            )?,
            sink_rows_written: counter_vec(
                "d06_sink_rows_written_total",
                "Rows acknowledged by a sink, per sink and table.",
                &["sink", "table"],
            )?,
            consumer_lag: int_gauge_vec(
                "d06_consumer_lag_messages",
                "Messages between the consumer position and the high watermark, per source partition.",
                &["topic", "partition"],
            )?,
            newest_event_time,
            state_subjects,
            state_events,
            state_store_failing,
            state_store_failures,
            checkpoint_seconds: histogram(
                "d06_checkpoint_seconds",
                "Duration of a local checkpoint, fsync included.",
                CHECKPOINT_BUCKETS,
            )?,
            flush_seconds: histogram(
                "d06_flush_seconds",
                "Duration of a whole flush: dead letters, ClickHouse, checkpoint, offset commit.",
                WRITE_BUCKETS,
            )?,
            last_flush_time,
            alerts_due,
            alerts_last_success,
            coverage_covered: int_gauge_vec(
                "d06_coverage_covered",
                "Covered now: baseline + gained - lost.",
                AREA_LABELS,
            )?,
            coverage_target: int_gauge_vec("d06_coverage_target", "Target in force now.", AREA_LABELS)?,
            coverage_expected: int_gauge_vec(
                "d06_coverage_expected",
                "What the campaign plan expects covered to be by now.",
                AREA_LABELS,
            )?,
            coverage_ratio: gauge_vec("d06_coverage_ratio", "Covered divided by target (may exceed 1).", AREA_LABELS)?,
            coverage_gained_today: int_gauge_vec(
                "d06_coverage_gained_today",
                "Subjects gained since local midnight.",
                AREA_LABELS,
            )?,
            coverage_days_behind: gauge_vec(
                "d06_coverage_days_behind",
                "Days the area lags the campaign plan (0 when on or ahead).",
                AREA_LABELS,
            )?,
            coverage_baseline_known: int_gauge_vec(
                "d06_coverage_baseline_known",
                "1 when the campaign plan knows the area's baseline, 0 when it is unknown (then covered counts from 0 and days_behind is absent).",
                AREA_LABELS,
            )?,
            coverage_pace_per_day: gauge_vec(
                "d06_coverage_pace_per_day",
                "Net gain per day over the last 7 days (today included).",
                AREA_LABELS,
            )?,
            coverage_needed_per_day: gauge_vec(
                "d06_coverage_needed_per_day",
                "Gain per day the campaign plan needs now (its current milestone segment).",
                AREA_LABELS,
            )?,
            hotline_tickets: int_gauge_vec(
                "d06_hotline_tickets",
                "Hotline tickets received since the campaign start, by status.",
                &["status", "province", "area_level", "area"],
            )?,
            area_info: int_gauge_vec(
                "d06_area_info",
                "1 for every area of the geography d06 runs with: its official name and parent area code.",
                &["province", "area_level", "area", "name", "parent"],
            )?,
            registry,
        })
    }

    /// Sets the coverage gauges of one (indicator, area). The ratio is
    /// removed while the target is 0 (there is nothing to divide by), days
    /// behind while the baseline is unknown (there is no gap to measure).
    pub fn set_coverage(&self, indicator: &str, at: AreaLabels<'_>, s: &CoverageGauges) {
        let [province, level, area] = at.values();
        let labels = [safe_label(indicator), province, level, area];
        self.coverage_covered.with_label_values(&labels).set(s.covered);
        self.coverage_target.with_label_values(&labels).set(saturating_i64(s.target));
        self.coverage_expected.with_label_values(&labels).set(saturating_i64(s.expected));
        self.coverage_gained_today.with_label_values(&labels).set(saturating_i64(s.gained_today));
        match s.days_behind {
            Some(d) => self.coverage_days_behind.with_label_values(&labels).set(d),
            None => {
                // Absent is the honest value; an error only means it was never set.
                let _ = self.coverage_days_behind.remove_label_values(&labels);
            }
        }
        self.coverage_baseline_known.with_label_values(&labels).set(i64::from(s.baseline_known));
        self.coverage_pace_per_day.with_label_values(&labels).set(s.pace_per_day);
        self.coverage_needed_per_day.with_label_values(&labels).set(s.needed_per_day);
        if s.target > 0 {
            self.coverage_ratio.with_label_values(&labels).set(s.covered as f64 / s.target as f64);
        } else {
            // Absent is the honest value; an error only means it was never set.
            let _ = self.coverage_ratio.remove_label_values(&labels);
        }
    }

    /// Sets `d06_hotline_tickets` of one area (tickets received since the
    /// campaign start), one series per status.
    pub fn set_hotline(&self, at: AreaLabels<'_>, c: &HotlineCounts) {
        let [province, level, area] = at.values();
        for (status, count) in hotline_by_status(c) {
            self.hotline_tickets.with_label_values(&[status, province, level, area]).set(saturating_i64(count));
        }
    }

    /// Sets `d06_area_info` of one area of the geography: `name` is its
    /// official name (from the geography compiled into d06, the only label
    /// value that is not a code), `parent` the code of the area it rolls up
    /// into ("" for the province).
    pub fn set_area_info(&self, at: AreaLabels<'_>, name: &str, parent: &str) {
        let parent = if parent.is_empty() { "" } else { safe_label(parent) };
        let [province, level, area] = at.values();
        self.area_info.with_label_values(&[province, level, area, name, parent]).set(1);
    }

    /// Records one write attempt to `sink`: its duration and, if it failed,
    /// the error kind.
    pub fn observe_sink_write(&self, sink: &str, elapsed: Duration, failure: Option<&str>) {
        let sink = safe_label(sink);
        self.sink_write_seconds.with_label_values(&[sink]).observe(elapsed.as_secs_f64());
        if let Some(kind) = failure {
            self.sink_failures.with_label_values(&[sink, safe_label(kind)]).inc();
        }
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed; serving what was encoded");
        }
        out
    }

    /// The content type of [`encode`](Self::encode)'s output.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_owned()
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `value` if it is a plausible code (1–64 of `[A-Za-z0-9_.-]`), else `invalid`:
/// keeps free text, and so any personal data, out of label values.
pub fn safe_label(value: &str) -> &str {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        value
    } else {
        tracing::debug!(len = value.len(), "metric label value replaced: not a code");
        "invalid"
    }
}

#[cfg(test)]
mod tests;
