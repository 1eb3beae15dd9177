//! When people act: the daily rhythm of a working day and how busy a day
//! is (weekends and holidays).

use chrono::{Datelike, NaiveDate, Weekday};

/// Relative activity per local hour on a working day.
pub(crate) const HOUR_WEIGHTS: [f64; 24] = [
    0.03, 0.03, 0.03, 0.03, 0.03, 0.1, 0.35, 0.9, 1.0, 1.0, 1.0, 0.6, 0.3, 0.8, 1.0, 1.0, 1.0, 0.6, 0.5, 0.5, 0.45,
    0.25, 0.08, 0.04,
];

/// Activity of a local day relative to a working day.
pub(crate) fn day_factor(d: NaiveDate) -> f64 {
    if (d.month(), d.day()) == (4, 30) || (d.month(), d.day()) == (5, 1) || (d.month(), d.day()) == (9, 2) {
        return 0.3;
    }
    match d.weekday() {
        Weekday::Sat => 0.55,
        Weekday::Sun => 0.35,
        _ => 1.0,
    }
}
