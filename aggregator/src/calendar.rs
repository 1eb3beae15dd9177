//! Working time of the public sector, as data: the clock 1022 hotline
//! deadlines run on (EVENTS-v1 "`hotline.ticket`" and "Precise rules").
//!
//! A [`WorkCalendar`] is loaded from TOML (schema in
//! `aggregator/data/calendar/README.md`): a time zone, the shifts of a
//! working day (default 07:00–11:30 and 13:00–16:30), the working weekdays
//! (default Monday to Friday), holidays (dates off) and make-up working days
//! (weekend days worked in exchange for a bridge day off), each entry with
//! the official text it comes from. Several files (one per year) merge into
//! one calendar. [`WorkCalendar::embedded`] is the shipped 2023–2026
//! Vietnamese calendar. [`WorkCalendar::alertmanager_holidays`] renders its
//! holidays as the Alertmanager time interval that mutes district alerts
//! (`deploy/alertmanager/alertmanager.yml`; a test keeps the two equal).
//!
//! Pure code: no clock, no files at run time (the shipped files are compiled
//! in with `include_str!`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::fact::Nanos;

/// The shipped calendar files, in merge order.
const EMBEDDED: [(&str, &str); 4] = [
    ("vn-2023.toml", include_str!("../data/calendar/vn-2023.toml")),
    ("vn-2024.toml", include_str!("../data/calendar/vn-2024.toml")),
    ("vn-2025.toml", include_str!("../data/calendar/vn-2025.toml")),
    ("vn-2026.toml", include_str!("../data/calendar/vn-2026.toml")),
];

/// The default time zone (the contract's local time).
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Ho_Chi_Minh;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Why a calendar did not load or merge.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The text is not valid TOML or does not match the schema (unknown
    /// fields included).
    #[error("calendar {file}: {source}")]
    Toml {
        /// Which file (the embedded file name, or `input`).
        file: String,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// `time_zone` is not an IANA zone name.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// A shift bound is not `HH:MM`.
    #[error("shift time {0:?} is not HH:MM")]
    Time(String),
    /// A shift is empty, or starts before the previous one ends.
    #[error("shift {start}–{end} is empty or overlaps the shift before it")]
    Shift {
        /// Its start.
        start: NaiveTime,
        /// Its end.
        end: NaiveTime,
    },
    /// A weekday name is not one of `mon` … `sun`.
    #[error("unknown weekday {0:?} (want mon, tue, wed, thu, fri, sat or sun)")]
    Weekday(String),
    /// No shift, or no working weekday: deadlines would never come.
    #[error("the calendar has no working time (no shift or no working weekday)")]
    NoWorkingTime,
    /// A `date` is not a plain local date (`YYYY-MM-DD`, no time, no offset).
    #[error("{0:?} is not a local date (write date = YYYY-MM-DD)")]
    Date(String),
    /// An entry has an empty `source`.
    #[error("entry {0} has no source")]
    NoSource(NaiveDate),
    /// The same date is listed twice in the same list.
    #[error("{0} is listed twice")]
    Duplicate(NaiveDate),
    /// A date is both a holiday and a make-up working day.
    #[error("{0} is both a holiday and a make-up working day")]
    Conflict(NaiveDate),
    /// Two merged calendars set a setting to different values.
    #[error("merged calendars disagree on {0}")]
    Mismatch(&'static str),
}

/// One shift of a working day, `start` inclusive, `end` exclusive, local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    /// First working instant.
    pub start: NaiveTime,
    /// First instant after the shift.
    pub end: NaiveTime,
}

/// A dated calendar entry (holiday or make-up working day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What the day is (free text, e.g. "Ngày Chiến thắng").
    pub name: String,
    /// The official text the entry comes from.
    pub source: String,
}

/// Working time: shifts, working weekdays, holidays and make-up days in one
/// time zone. Settings left out of every merged file take their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkCalendar {
    time_zone: Option<Tz>,
    shifts: Option<Vec<Shift>>,
    /// Indexed by `Weekday::num_days_from_monday`.
    weekdays: Option<[bool; 7]>,
    holidays: BTreeMap<NaiveDate, Entry>,
    working_days: BTreeMap<NaiveDate, Entry>,
}

/// The TOML schema of one calendar file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    /// IANA time zone the shifts and dates are read in; default
    /// `Asia/Ho_Chi_Minh`.
    time_zone: Option<String>,
    /// The shifts of a working day, in order, as `{ start = "HH:MM", end =
    /// "HH:MM" }`; default 07:00–11:30 and 13:00–16:30.
    shifts: Option<Vec<ShiftFile>>,
    /// The weekdays that are working days unless listed as holidays
    /// (`"mon"` … `"sun"`); default Monday to Friday.
    working_weekdays: Option<Vec<String>>,
    /// Dates off (public holidays, compensatory and bridge days).
    #[serde(default)]
    holidays: Vec<DayFile>,
    /// Make-up working days: dates worked although their weekday is not a
    /// working weekday (e.g. a Saturday worked in exchange for a bridge day).
    #[serde(default)]
    working_days: Vec<DayFile>,
}

/// One shift in a calendar file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftFile {
    /// First working minute, `"HH:MM"` local time.
    start: String,
    /// End of the shift (exclusive), `"HH:MM"` local time.
    end: String,
}

/// One dated entry in a calendar file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayFile {
    /// The local date, a TOML local date (`2024-04-29`, unquoted).
    date: toml::value::Datetime,
    /// What the day is; free text.
    #[serde(default)]
    name: String,
    /// The official text the entry comes from (law article, notice number);
    /// required, never empty.
    source: String,
}

fn parse_time(s: &str) -> Result<NaiveTime, CalendarError> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| CalendarError::Time(s.to_owned()))
}

fn parse_weekday(s: &str) -> Result<Weekday, CalendarError> {
    Ok(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return Err(CalendarError::Weekday(s.to_owned())),
    })
}

fn parse_day(d: &DayFile) -> Result<(NaiveDate, Entry), CalendarError> {
    let bad = || CalendarError::Date(d.date.to_string());
    let date = match (d.date.date, d.date.time, d.date.offset) {
        (Some(x), None, None) => {
            NaiveDate::from_ymd_opt(x.year.into(), x.month.into(), x.day.into()).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if d.source.trim().is_empty() {
        return Err(CalendarError::NoSource(date));
    }
    Ok((date, Entry { name: d.name.clone(), source: d.source.clone() }))
}

fn insert_days(
    into: &mut BTreeMap<NaiveDate, Entry>,
    days: impl IntoIterator<Item = (NaiveDate, Entry)>,
) -> Result<(), CalendarError> {
    for (date, entry) in days {
        if into.insert(date, entry).is_some() {
            return Err(CalendarError::Duplicate(date));
        }
    }
    Ok(())
}

fn merge_setting<T: PartialEq>(
    mine: &mut Option<T>,
    theirs: Option<T>,
    what: &'static str,
) -> Result<(), CalendarError> {
    match (mine.as_ref(), theirs) {
        (_, None) => Ok(()),
        (None, Some(t)) => {
            *mine = Some(t);
            Ok(())
        }
        (Some(m), Some(t)) if *m == t => Ok(()),
        (Some(_), Some(_)) => Err(CalendarError::Mismatch(what)),
    }
}

fn default_shifts() -> [Shift; 2] {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN);
    [Shift { start: t(7, 0), end: t(11, 30) }, Shift { start: t(13, 0), end: t(16, 30) }]
}

const DEFAULT_WEEKDAYS: [bool; 7] = [true, true, true, true, true, false, false];

impl Default for WorkCalendar {
    /// Defaults only: Monday to Friday, 07:00–11:30 and 13:00–16:30 in
    /// `Asia/Ho_Chi_Minh`, no holidays.
    fn default() -> Self {
        WorkCalendar {
            time_zone: None,
            shifts: None,
            weekdays: None,
            holidays: BTreeMap::new(),
            working_days: BTreeMap::new(),
        }
    }
}

impl WorkCalendar {
    /// Parses one calendar file (schema: `aggregator/data/calendar/README.md`).
    pub fn from_toml(s: &str) -> Result<Self, CalendarError> {
        Self::from_toml_named(s, "input")
    }

    fn from_toml_named(s: &str, file: &str) -> Result<Self, CalendarError> {
        let raw: CalendarFile =
            toml::from_str(s).map_err(|e| CalendarError::Toml { file: file.to_owned(), source: Box::new(e) })?;
        let time_zone = match raw.time_zone {
            Some(z) => Some(z.parse::<Tz>().map_err(|_| CalendarError::TimeZone(z.clone()))?),
            None => None,
        };
        let shifts = match raw.shifts {
            Some(list) => {
                let mut out: Vec<Shift> = Vec::with_capacity(list.len());
                for s in &list {
                    let shift = Shift { start: parse_time(&s.start)?, end: parse_time(&s.end)? };
                    let overlaps = out.last().is_some_and(|prev| shift.start < prev.end);
                    if shift.start >= shift.end || overlaps {
                        return Err(CalendarError::Shift { start: shift.start, end: shift.end });
                    }
                    out.push(shift);
                }
                if out.is_empty() {
                    return Err(CalendarError::NoWorkingTime);
                }
                Some(out)
            }
            None => None,
        };
        let weekdays = match raw.working_weekdays {
            Some(list) => {
                let mut days = [false; 7];
                for w in &list {
                    days[parse_weekday(w)?.num_days_from_monday() as usize] = true;
                }
                if !days.contains(&true) {
                    return Err(CalendarError::NoWorkingTime);
                }
                Some(days)
            }
            None => None,
        };
        let mut cal = WorkCalendar { time_zone, shifts, weekdays, ..Default::default() };
        let holidays = raw.holidays.iter().map(parse_day).collect::<Result<Vec<_>, _>>()?;
        let working = raw.working_days.iter().map(parse_day).collect::<Result<Vec<_>, _>>()?;
        insert_days(&mut cal.holidays, holidays)?;
        insert_days(&mut cal.working_days, working)?;
        cal.check_conflicts()?;
        Ok(cal)
    }

    fn check_conflicts(&self) -> Result<(), CalendarError> {
        match self.holidays.keys().find(|d| self.working_days.contains_key(d)) {
            Some(d) => Err(CalendarError::Conflict(*d)),
            None => Ok(()),
        }
    }

    /// Adds another calendar (typically another year). Settings set in both
    /// must be equal; a date may appear only once over both calendars.
    /// On error `self` is left unchanged.
    pub fn merge(&mut self, other: WorkCalendar) -> Result<(), CalendarError> {
        let mut merged = self.clone();
        merge_setting(&mut merged.time_zone, other.time_zone, "time_zone")?;
        merge_setting(&mut merged.shifts, other.shifts, "shifts")?;
        merge_setting(&mut merged.weekdays, other.weekdays, "working_weekdays")?;
        insert_days(&mut merged.holidays, other.holidays)?;
        insert_days(&mut merged.working_days, other.working_days)?;
        merged.check_conflicts()?;
        *self = merged;
        Ok(())
    }

    /// The shipped Vietnamese public-sector calendar, 2023 to 2026
    /// (`aggregator/data/calendar/vn-*.toml`, compiled in). Outside those
    /// years every Monday to Friday counts as a working day.
    pub fn embedded() -> Result<Self, CalendarError> {
        let mut cal = WorkCalendar::default();
        for (name, text) in EMBEDDED {
            cal.merge(Self::from_toml_named(text, name)?)?;
        }
        Ok(cal)
    }

    /// The time zone shifts and dates are read in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone.unwrap_or(DEFAULT_TIME_ZONE)
    }

    /// The shifts of a working day, in order.
    pub fn shifts(&self) -> Vec<Shift> {
        self.shifts.clone().unwrap_or_else(|| default_shifts().to_vec())
    }

    /// The holidays (dates off), in date order.
    pub fn holidays(&self) -> &BTreeMap<NaiveDate, Entry> {
        &self.holidays
    }

    /// Whether the calendar lists any holiday in `year`. A year without one
    /// is almost certainly a year nobody entered (Viet Nam has at least New
    /// Year, Tết, 30/4, 1/5 and 2/9): its deadlines count every weekday.
    pub fn has_holidays_in(&self, year: i32) -> bool {
        let (Some(first), Some(last)) = (NaiveDate::from_ymd_opt(year, 1, 1), NaiveDate::from_ymd_opt(year, 12, 31))
        else {
            return false;
        };
        self.holidays.range(first..=last).next().is_some()
    }

    /// The make-up working days, in date order.
    pub fn working_days(&self) -> &BTreeMap<NaiveDate, Entry> {
        &self.working_days
    }

    /// The holidays as one entry of Alertmanager's top-level
    /// `time_intervals` list, named `name`, indented to sit under that key:
    /// one line per year and month, runs of consecutive days as `'a:b'`,
    /// read in the calendar's time zone. Make-up working days are not in it
    /// (a mute interval can only add time, and the routes' working hours are
    /// Monday to Friday anyway). `deploy/alertmanager/alertmanager.yml`
    /// holds this rendering of [`WorkCalendar::embedded`] as
    /// `vn-public-holidays`; a unit test fails when the two differ.
    pub fn alertmanager_holidays(&self, name: &str) -> String {
        const MONTHS: [&str; 12] = [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ];
        // (year, month) → runs of consecutive days (first, last).
        let mut months: BTreeMap<(i32, u32), Vec<(u32, u32)>> = BTreeMap::new();
        for d in self.holidays.keys() {
            let runs = months.entry((d.year(), d.month0())).or_default();
            match runs.last_mut() {
                Some(run) if run.1 + 1 == d.day() => run.1 = d.day(),
                _ => runs.push((d.day(), d.day())),
            }
        }
        let location = self.time_zone().name();
        let mut out = format!("  - name: {name}\n");
        if months.is_empty() {
            out.push_str("    time_intervals: []\n");
            return out;
        }
        out.push_str("    time_intervals:\n");
        for ((year, month0), runs) in &months {
            let days: Vec<String> =
                runs.iter().map(|&(a, b)| if a == b { format!("'{a}'") } else { format!("'{a}:{b}'") }).collect();
            out.push_str(&format!(
                "      - {{years: ['{year}'], months: ['{}'], days_of_month: [{}], location: {location}}}\n",
                MONTHS[*month0 as usize],
                days.join(", ")
            ));
        }
        out
    }

    /// Whether `d` is a working day: a make-up working day, or a working
    /// weekday that is not a holiday.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.holidays.contains_key(&d) {
            return false;
        }
        if self.working_days.contains_key(&d) {
            return true;
        }
        self.weekdays.unwrap_or(DEFAULT_WEEKDAYS)[d.weekday().num_days_from_monday() as usize]
    }

    /// The instant `working_hours` of working time after `start` (unix nanos
    /// UTC). Working time starts at the first working minute at or after
    /// `start`.
    ///
    /// `start` is used to the nanosecond: inside a shift, working time starts
    /// at `start` itself (08:15:30 + 8 h is 08:15:30 the next working day);
    /// outside one, at the start of the next shift of a working day. When the
    /// time runs out exactly at the end of a shift the deadline is that end
    /// (07:00 + 8 h is 16:30 the same day, not 07:00 the next day). Zero hours
    /// gives the first working instant at or after `start`. Saturates at the
    /// largest representable instant (year 2262).
    pub fn deadline(&self, start: Nanos, working_hours: u32) -> Nanos {
        self.add_working_time(start, i64::from(working_hours).saturating_mul(NANOS_PER_HOUR))
    }

    /// The instant `working` nanoseconds of working time after `start`: the
    /// general form of [`WorkCalendar::deadline`], same rules. A negative
    /// `working` counts as zero.
    pub fn add_working_time(&self, start: Nanos, working: i64) -> Nanos {
        let tz = self.time_zone();
        let shifts = self.shifts();
        let mut remaining = working.max(0);
        let mut day = DateTime::from_timestamp_nanos(start).with_timezone(&tz).date_naive();
        loop {
            if self.is_working_day(day) {
                for shift in &shifts {
                    let (Some(s), Some(e)) =
                        (local_to_nanos(&tz, day.and_time(shift.start)), local_to_nanos(&tz, day.and_time(shift.end)))
                    else {
                        return Nanos::MAX;
                    };
                    if start >= e {
                        continue;
                    }
                    let from = s.max(start);
                    let len = e - from;
                    if remaining <= len {
                        return from + remaining;
                    }
                    remaining -= len;
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => return Nanos::MAX,
            };
        }
    }
}

/// A local wall-clock time as unix nanos; `None` past year 2262. A time
/// skipped by a clock change is read with the offset in force just before
/// it, so it maps to the first instant after the gap.
pub fn local_to_nanos(tz: &Tz, local: NaiveDateTime) -> Option<Nanos> {
    let utc = match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.naive_utc(),
        chrono::LocalResult::None => {
            // In a gap: the offset just before it, applied to the local time.
            let before = tz.from_local_datetime(&(local - Duration::hours(3))).earliest()?;
            local - before.offset().fix()
        }
    };
    utc.and_utc().timestamp_nanos_opt()
}

#[cfg(test)]
mod tests;
