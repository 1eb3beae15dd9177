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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Sets every metric at least once.
    fn populated() -> Metrics {
        let m = Metrics::new().unwrap();
        m.messages_consumed.with_label_values(&["d06.cccd.v1"]).inc_by(3);
        m.messages_rejected.with_label_values(&["bad_json"]).inc();
        m.duplicates.inc();
        m.observe_sink_write("clickhouse", Duration::from_millis(30), None);
        m.observe_sink_write("clickhouse", Duration::from_millis(2), Some("network"));
        m.sink_rows_written.with_label_values(&["clickhouse", "coverage_shard_daily"]).inc_by(10);
        m.consumer_lag.with_label_values(&["d06.cccd.v1", "0"]).set(42);
        m.newest_event_time.set(1_704_067_205.0);
        m.state_subjects.set(1000);
        m.state_events.set(2500);
        m.checkpoint_seconds.observe(0.004);
        m.flush_seconds.observe(0.2);
        m.last_flush_time.set(1_704_067_300.0);
        let s = CoverageGauges {
            covered: 750,
            target: 1000,
            expected: 800,
            gained_today: 12,
            days_behind: Some(3.0),
            baseline_known: true,
            pace_per_day: 2.5,
            needed_per_day: 4.0,
        };
        m.set_coverage("cccd", AreaLabels { province: "70", level: "district", area: "689" }, &s);
        let h = HotlineCounts {
            received: 9,
            answered: 4,
            forwarded: 2,
            processed: 1,
            in_progress: 1,
            spam: 1,
            overdue_specialist: 2,
            overdue_leadership: 0,
        };
        m.set_hotline(AreaLabels { province: "70", level: "province", area: "70" }, &h);
        m.set_area_info(AreaLabels { province: "70", level: "province", area: "70" }, "Bình Phước", "");
        m.set_area_info(AreaLabels { province: "70", level: "district", area: "688" }, "Thị xã Phước Long", "70");
        m
    }

    #[test]
    fn every_metric_is_exposed_with_its_value() {
        let text = populated().encode();
        for line in [
            "d06_messages_consumed_total{topic=\"d06.cccd.v1\"} 3",
            "d06_messages_rejected_total{reason=\"bad_json\"} 1",
            "d06_duplicates_ignored_total 1",
            "d06_sink_write_seconds_count{sink=\"clickhouse\"} 2",
            "d06_sink_write_failures_total{kind=\"network\",sink=\"clickhouse\"} 1",
            "d06_sink_rows_written_total{sink=\"clickhouse\",table=\"coverage_shard_daily\"} 10",
            "d06_consumer_lag_messages{partition=\"0\",topic=\"d06.cccd.v1\"} 42",
            "d06_newest_event_timestamp_seconds 1704067205",
            "d06_state_subjects 1000",
            "d06_state_events 2500",
            "d06_checkpoint_seconds_count 1",
            "d06_flush_seconds_count 1",
            "d06_last_flush_timestamp_seconds 1704067300",
            "d06_coverage_covered{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 750",
            "d06_coverage_target{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 1000",
            "d06_coverage_expected{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 800",
            "d06_coverage_ratio{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 0.75",
            "d06_coverage_gained_today{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 12",
            "d06_coverage_days_behind{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 3",
            "d06_coverage_baseline_known{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 1",
            "d06_coverage_pace_per_day{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 2.5",
            "d06_coverage_needed_per_day{area=\"689\",area_level=\"district\",indicator=\"cccd\",province=\"70\"} 4",
            "d06_hotline_tickets{area=\"70\",area_level=\"province\",province=\"70\",status=\"received\"} 9",
            "d06_hotline_tickets{area=\"70\",area_level=\"province\",province=\"70\",status=\"overdue_specialist\"} 2",
            "d06_hotline_tickets{area=\"70\",area_level=\"province\",province=\"70\",status=\"overdue_leadership\"} 0",
            "d06_area_info{area=\"70\",area_level=\"province\",name=\"Bình Phước\",parent=\"\",province=\"70\"} 1",
            "d06_area_info{area=\"688\",area_level=\"district\",name=\"Thị xã Phước Long\",parent=\"70\",province=\"70\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // The 30 ms attempt falls in the 0.05 s bucket, not in 0.025 s.
        assert!(text.contains("d06_sink_write_seconds_bucket{sink=\"clickhouse\",le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("d06_sink_write_seconds_bucket{sink=\"clickhouse\",le=\"0.05\"} 2\n"), "{text}");
    }

    #[test]
    fn promtool_check_metrics_is_clean() {
        let text = populated().encode();
        let promtool = "/usr/bin/promtool";
        let mut child = match Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot run {promtool} ({e}): install Prometheus' promtool (Debian package prometheus)"),
        };
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // The one accepted finding: OUTPUTS-v1 fixes the name
        // `d06_coverage_days_behind` (public, never renamed), and promtool
        // prefers seconds. Anything else fails the test.
        const CONTRACT_NAME: &str = "d06_coverage_days_behind use base unit \"seconds\" instead of \"days\"";
        let findings: Vec<&str> = report.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(findings, [CONTRACT_NAME], "promtool check metrics:\n{report}\non:\n{text}");
        // Exit status 3 means lint findings only (1 would be a parse error).
        assert_eq!(out.status.code(), Some(3), "promtool check metrics:\n{report}");
    }

    #[test]
    fn ratio_is_absent_while_the_target_is_zero() {
        let m = Metrics::new().unwrap();
        let mut s = CoverageGauges { covered: 5, target: 10, ..CoverageGauges::default() };
        m.set_coverage("vneid", AreaLabels { province: "70", level: "province", area: "70" }, &s);
        assert_eq!(m.coverage_ratio.with_label_values(&["vneid", "70", "province", "70"]).get(), 0.5);
        s.target = 0;
        m.set_coverage("vneid", AreaLabels { province: "70", level: "province", area: "70" }, &s);
        assert!(!m.encode().contains("d06_coverage_ratio{"));
        assert!(m.encode().contains(
            "d06_coverage_target{area=\"70\",area_level=\"province\",indicator=\"vneid\",province=\"70\"} 0\n"
        ));
    }

    #[test]
    fn days_behind_is_absent_while_the_baseline_is_unknown() {
        let m = Metrics::new().unwrap();
        let known = CoverageGauges {
            covered: 5,
            target: 10,
            days_behind: Some(2.0),
            baseline_known: true,
            ..CoverageGauges::default()
        };
        m.set_coverage("sim_signature", AreaLabels { province: "70", level: "district", area: "689" }, &known);
        assert!(m.encode().contains(
            "d06_coverage_days_behind{area=\"689\",area_level=\"district\",indicator=\"sim_signature\",province=\"70\"} 2\n"
        ));
        let unknown = CoverageGauges { days_behind: None, baseline_known: false, pace_per_day: 1.5, ..known };
        m.set_coverage("sim_signature", AreaLabels { province: "70", level: "district", area: "689" }, &unknown);
        let text = m.encode();
        assert!(!text.contains("d06_coverage_days_behind{"), "{text}");
        assert!(text.contains(
            "d06_coverage_baseline_known{area=\"689\",area_level=\"district\",indicator=\"sim_signature\",province=\"70\"} 0\n"
        ));
        assert!(text.contains(
            "d06_coverage_pace_per_day{area=\"689\",area_level=\"district\",indicator=\"sim_signature\",province=\"70\"} 1.5\n"
        ));
    }

    #[test]
    fn labels_that_are_not_codes_are_replaced() {
        assert_eq!(safe_label("d06.sim.v1"), "d06.sim.v1");
        assert_eq!(safe_label("25432"), "25432");
        assert_eq!(safe_label("Nguyễn Văn A"), "invalid");
        assert_eq!(safe_label("a b"), "invalid");
        assert_eq!(safe_label(""), "invalid");
        assert_eq!(safe_label(&"x".repeat(65)), "invalid");
        let m = Metrics::new().unwrap();
        m.set_hotline(
            AreaLabels { province: "70", level: "commune", area: "0123 456 789" },
            &HotlineCounts { received: 1, ..HotlineCounts::default() },
        );
        let text = m.encode();
        assert!(
            text.contains(
                "d06_hotline_tickets{area=\"invalid\",area_level=\"commune\",province=\"70\",status=\"received\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("0123"), "{text}");
    }

    #[test]
    fn two_registries_do_not_collide() {
        // Each Metrics has its own registry, so tests and instances can coexist.
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.duplicates.inc();
        assert_eq!(b.duplicates.get(), 0);
        assert_eq!(a.content_type(), "text/plain; version=0.0.4");
    }
}
