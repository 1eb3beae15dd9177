//! Simulated time: unix milliseconds, Viet Nam's fixed offset, local days,
//! and how `occurred_at` is written.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset as _, TimeZone, Utc};

pub(crate) const SEC: i64 = 1_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;
/// Viet Nam's offset (no DST since 1975).
pub(crate) const LOCAL_OFFSET_SECS: i32 = 7 * 3600;

pub(crate) fn local_midnight_ms(d: NaiveDate) -> i64 {
    let days = i64::from(d.num_days_from_ce()) - 719_163; // 1970-01-01
    days * DAY - i64::from(LOCAL_OFFSET_SECS) * SEC
}

pub(crate) fn local_date(ms: i64) -> NaiveDate {
    let local = ms + i64::from(LOCAL_OFFSET_SECS) * SEC;
    NaiveDate::from_num_days_from_ce_opt((local.div_euclid(DAY) + 719_163) as i32).unwrap_or_default()
}

pub(crate) fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `2024-05-09T08:15:30+07:00` (local, seconds), `2024-05-09T01:15:30.123Z`
/// (UTC, milliseconds), or with `no_offset` the local time with no offset.
pub(crate) fn format_time(ms: i64, zulu: bool, no_offset: bool) -> String {
    let shifted = if zulu { ms } else { ms + i64::from(LOCAL_OFFSET_SECS) * SEC };
    let t = ms_to_utc(shifted).naive_utc();
    if zulu {
        format!("{}Z", t.format("%Y-%m-%dT%H:%M:%S%.3f"))
    } else if no_offset {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        format!("{}+07:00", t.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Viet Nam's offset, as chrono's.
pub(crate) fn local_offset() -> FixedOffset {
    FixedOffset::east_opt(LOCAL_OFFSET_SECS).unwrap_or(Utc.fix())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_local_time_or_utc() {
        // 2024-05-09T01:15:30.123Z
        let ms = 1_715_217_330_123;
        assert_eq!(format_time(ms, false, false), "2024-05-09T08:15:30+07:00");
        assert_eq!(format_time(ms, true, false), "2024-05-09T01:15:30.123Z");
        assert_eq!(format_time(ms, false, true), "2024-05-09T08:15:30");
        assert_eq!(local_midnight_ms(NaiveDate::from_ymd_opt(2024, 4, 10).unwrap()), 1_712_682_000_000);
        assert_eq!(local_date(1_712_681_999_999), NaiveDate::from_ymd_opt(2024, 4, 9).unwrap());
        assert_eq!(local_date(1_712_682_000_000), NaiveDate::from_ymd_opt(2024, 4, 10).unwrap());
    }
}
