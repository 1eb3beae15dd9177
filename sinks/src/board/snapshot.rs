//! What the board shows, as one JSON snapshot per flush: the province and
//! its districts, each indicator's cell, the 1022 hotline, the replay, the
//! other tracked provinces; and the Vietnamese the cells say.

use aggregator::Indicator;
use serde::Serialize;

/// Everything the board shows, as of one flush.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct BoardSnapshot {
    /// The campaign's title, as shown in the header.
    pub campaign: String,
    /// The local day the figures are for (`YYYY-MM-DD`).
    pub today: String,
    /// When the snapshot was taken (RFC 3339, local offset).
    pub updated_at: String,
    /// `"wall"` (live) or `"event"` (replay: "today" follows event time).
    pub clock: String,
    /// The province's totals (`rank` 0).
    pub province: AreaBoard,
    /// The areas of the tier below the province, in GSO code order: the
    /// districts, or after the 2025 reform the communes.
    pub districts: Vec<AreaBoard>,
    /// What those areas are, as the ranking's heading says it: `huyện`
    /// (districts) or `xã` (communes).
    pub tier: String,
    /// The province's 1022 hotline tickets.
    pub hotline: HotlineBoard,
    /// Replay progress of the source topics (none until first measured).
    pub replay: Option<ReplayBoard>,
    /// Every province this deployment tracks, in its order (the page links
    /// them when there are several).
    pub provinces: Vec<ProvinceLink>,
}

/// A tracked province, as the page links it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProvinceLink {
    /// GSO code (`?province=` takes it).
    pub code: String,
    /// Official name.
    pub name: String,
}

/// How far the pipeline is behind its source topics, as the board says it.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct ReplayBoard {
    /// Far behind: the figures are not current (the board says so).
    pub behind: bool,
    /// Messages left to read.
    pub lag: i64,
    /// Messages per second read lately.
    pub rate: f64,
    /// Seconds left at that rate (none while nothing moves).
    pub eta_seconds: Option<u64>,
}

/// One area's row: coverage per indicator and hotline tickets.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AreaBoard {
    /// GSO code.
    pub code: String,
    /// Official name, with diacritics.
    pub name: String,
    /// Position in the districts' ranking, 1 = best (`aggregator::standing`:
    /// unknown baselines left out); 0 for the province and an area without
    /// an average.
    pub rank: u32,
    /// One entry per indicator, in [`Indicator::ALL`] order.
    pub indicators: Vec<IndicatorBoard>,
    /// The area's 1022 hotline tickets.
    pub hotline: HotlineBoard,
}

/// One (area, indicator) cell.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IndicatorBoard {
    /// The contract's indicator code (`cccd`, `vneid`, `smartphone_4g`,
    /// `sim_signature`, `migrated_2g`).
    pub indicator: String,
    /// Vietnamese label (see [`label`]).
    pub label: String,
    /// Covered now.
    pub covered: i64,
    /// Target now.
    pub target: u64,
    /// Expected by today under the campaign plan.
    pub expected: u64,
    /// Days the area lags the plan (0 when on or ahead).
    pub days_behind: u32,
    /// Gained since local midnight.
    pub gained_today: u64,
    /// The local day (`YYYY-MM-DD`) the target is reached at the recent
    /// pace; `None` when that pace is not positive.
    pub eta: Option<String>,
    /// Whether the area lags under the campaign's lag rule (red on the board).
    pub lagging: bool,
    /// Whether the plan knows the area's baseline. When it does not, the
    /// cell shows its pace ([`pace_note`]), never a lag.
    pub baseline_known: bool,
    /// Net gain per day over the last 7 days.
    pub pace_per_day: f64,
    /// The pace the plan needs now.
    pub needed_per_day: f64,
    /// What the cell says instead of its lag, in Vietnamese (set while the
    /// baseline is unknown).
    pub note: Option<String>,
}

/// The cell's text while the baseline is unknown: `Chưa có số liệu nền —
/// tốc độ 2,1/ngày, cần 5,5` ("no baseline data — pace 2.1 a day, 5.5
/// needed": the net gain per day over the last 7 days, and the plan's
/// daily rise).
pub fn pace_note(pace_per_day: f64, needed_per_day: f64) -> String {
    format!("Chưa có số liệu nền — tốc độ {}/ngày, cần {}", vi_rate(pace_per_day), vi_rate(needed_per_day))
}

/// A rate the Vietnamese way: one decimal below 100 (`2,1`), whole numbers
/// with `.` thousands above (`12.345`).
pub(super) fn vi_rate(x: f64) -> String {
    let negative = x < 0.0;
    let a = x.abs();
    let body = if a < 100.0 {
        let tenths = (a * 10.0).round() as u64;
        if tenths.is_multiple_of(10) {
            (tenths / 10).to_string()
        } else {
            format!("{},{}", tenths / 10, tenths % 10)
        }
    } else {
        let digits = (a.round() as u64).to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('.');
            }
            out.push(ch);
        }
        out
    };
    if negative && body != "0" {
        format!("−{body}")
    } else {
        body
    }
}

/// Hotline tickets received since the campaign start, by status as of now.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HotlineBoard {
    /// Received.
    pub received: u64,
    /// Still open (neither processed nor spam).
    pub in_progress: u64,
    /// Past the specialist-level deadline.
    pub overdue_specialist: u64,
    /// Past the leadership-level deadline.
    pub overdue_leadership: u64,
    /// Processed.
    pub processed: u64,
    /// Spam.
    pub spam: u64,
}

/// The board's Vietnamese label of an indicator.
pub fn label(indicator: Indicator) -> &'static str {
    match indicator {
        Indicator::Cccd => "CCCD",
        Indicator::Vneid => "VNeID mức 2",
        Indicator::Smartphone4g => "Smartphone 4G",
        Indicator::SimSignature => "SIM chính chủ có chữ ký số",
        Indicator::Migrated2g => "Chuyển 2G→4G",
    }
}
