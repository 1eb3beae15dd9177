//! The alerts of one day: one per lagging district, its labels and texts,
//! and the JSON Alertmanager's API v2 takes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use aggregator::coverage::{LagRule, Status};
use aggregator::Indicator;
use chrono::{DateTime, NaiveDate, Utc};
use reports::{percent, vi_int, DailyTable, Row, INDICATORS};
use serde_json::{json, Value};

use crate::ALERT_NAME;

/// One alert posted to Alertmanager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentAlert {
    /// The day it is about.
    pub day: NaiveDate,
    /// GSO code of the district.
    pub district: String,
    /// The lagging indicators, in contract-name order.
    pub indicators: Vec<Indicator>,
    /// All labels, as posted.
    pub labels: BTreeMap<String, String>,
    /// All annotations, as posted.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt`: the day's `send_at` instant.
    pub starts_at: DateTime<Utc>,
    /// `endsAt`.
    pub ends_at: DateTime<Utc>,
}

impl SentAlert {
    /// The alert as Alertmanager's API v2 takes it (one element of the posted array).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": self.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(link) = self.annotations.get("link") {
            v["generatorURL"] = json!(link);
        }
        v
    }

    /// The `indicator` label.
    pub fn indicator_label(&self) -> &str {
        self.labels.get("indicator").map_or("", String::as_str)
    }
}

/// The alerts of one day: one per district that lags on at least one
/// indicator, except those in `already`, in district code order.
pub(crate) fn build_alerts(
    table: &DailyTable,
    rule: &LagRule,
    day: NaiveDate,
    (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    severity: &str,
    report_url: Option<&str>,
    already: &BTreeSet<String>,
) -> Vec<SentAlert> {
    let districts = table.districts.len();
    table
        .districts
        .iter()
        .filter(|row| !already.contains(&row.code))
        .filter_map(|row| {
            let lagging: Vec<usize> = (0..INDICATORS.len()).filter(|&i| rule.is_lagging(&row.statuses[i])).collect();
            if lagging.is_empty() {
                return None;
            }
            let mut indicators: Vec<Indicator> = lagging.iter().map(|&i| INDICATORS[i].0).collect();
            indicators.sort_by_key(|ind| ind.as_str());
            let label = indicators.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(",");
            let labels: BTreeMap<String, String> = [
                ("alertname", ALERT_NAME.to_owned()),
                ("district", row.code.clone()),
                ("province", table.province_code().to_owned()),
                ("indicator", label),
                ("severity", severity.to_owned()),
                ("day", day.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let link = report_url.map(|base| {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}day={day}&area={}", row.code)
            });
            let mut annotations = BTreeMap::new();
            annotations.insert("summary".to_owned(), summary(row, &lagging, day));
            let mut description = description(row, &lagging, day, rule, districts);
            let _ = write!(description, "\n\n{}", table.markdown(Some(row.area)));
            if let Some(l) = &link {
                let _ = write!(description, "\nXem báo cáo: {l}\n");
                annotations.insert("link".to_owned(), l.clone());
            }
            annotations.insert("description".to_owned(), description);
            Some(SentAlert { day, district: row.code.clone(), indicators, labels, annotations, starts_at, ends_at })
        })
        .collect()
}

/// `Huyện Bù Gia Mập (691) chậm tiến độ “4 phủ” ngày 16/04/2024: CCCD, ĐDĐT mức 2`.
pub(crate) fn summary(row: &Row, lagging: &[usize], day: NaiveDate) -> String {
    let names: Vec<&str> = lagging.iter().map(|&i| INDICATORS[i].1).collect();
    format!("{} ({}) chậm tiến độ “4 phủ” ngày {}: {}", row.name, row.code, day.format("%d/%m/%Y"), names.join(", "))
}

/// The lines naming each lagging indicator with its figures, and the rank.
pub(crate) fn description(row: &Row, lagging: &[usize], day: NaiveDate, rule: &LagRule, districts: usize) -> String {
    let mut s = format!(
        "{} (mã {}) chậm so với kế hoạch ngày {} ở {} chỉ tiêu (chậm: đạt dưới {} số kế hoạch, hoặc chậm từ {} ngày trở lên).\n",
        row.name,
        row.code,
        day.format("%d/%m/%Y"),
        lagging.len(),
        share_percent(1.0 - rule.tolerance),
        rule.days_behind
    );
    for &i in lagging {
        let st: &Status = &row.statuses[i];
        let target = i64::try_from(st.target).unwrap_or(i64::MAX);
        let expected = i64::try_from(st.expected).unwrap_or(i64::MAX);
        let eta = st.eta.map_or_else(|| "chưa xác định".to_owned(), |d| d.format("%d/%m/%Y").to_string());
        let _ = writeln!(
            s,
            "- {}: đạt {}/{} ({}), kế hoạch đến hết ngày {} ({}), chậm {} ngày, tăng trong ngày {}, dự kiến đạt chỉ tiêu: {}.",
            INDICATORS[i].1,
            vi_int(st.covered),
            vi_int(target),
            percent(i128::from(st.covered), st.target),
            vi_int(expected),
            percent(i128::from(expected), st.target),
            st.days_behind,
            vi_int(i64::try_from(st.gained_today).unwrap_or(i64::MAX)),
            eta
        );
    }
    let left_out: Vec<&str> = INDICATORS
        .iter()
        .filter(|(ind, _, _)| row.average.left_out.contains(ind))
        .map(|(_, short, _)| *short)
        .collect();
    let left_out = if left_out.is_empty() {
        String::new()
    } else {
        format!(", không tính {} chưa có số liệu nền", left_out.join(", "))
    };
    match row.rank {
        Some(k) => {
            let _ = write!(
                s,
                "Xếp hạng {k}/{districts} huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt{left_out})."
            );
        }
        None => {
            let _ = write!(s, "Chưa xếp hạng (không có chỉ tiêu được giao đã có số liệu nền{left_out}).");
        }
    }
    s
}

/// A share as a percentage with at most two decimals, the Vietnamese way: `95%`, `97,5%`.
pub(crate) fn share_percent(share: f64) -> String {
    let hundredths = (share * 10_000.0).round() as i64;
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole},{}%", f / 10),
        f => format!("{whole},{f:02}%"),
    }
}
