//! An independent oracle for the 1022 hotline figures (issue 15).
//!
//! Written from the contract alone — EVENTS-v1 "`hotline.ticket`", "How a
//! hotline ticket is classified" and "Precise rules"; OUTPUTS-v1
//! `hotline_daily` — and from the *data* the deployment reads: the working
//! calendars (`aggregator/data/calendar/*.toml`, read here with `toml`) and
//! the geography (`aggregator/data/binh_phuoc_pre2025_3tier.csv`). It uses no
//! production type or function: not `aggregator::hotline` (its `Tickets` and
//! classification), not `aggregator::calendar` (its working-time
//! arithmetic), not `aggregator::geo`. Input is the raw EVENTS-v1 JSON, as
//! `d06 simulate --stdout` writes it; output is the `hotline_daily` figures
//! per (district, day) and for the province.
//!
//! The deadline arithmetic is deliberately done another way than a
//! minute-stepping or shift-jumping loop would: it walks whole local days,
//! taking from each working day's shifts only what is left of the working
//! time, in nanoseconds.
//!
//! Readings of the contract where it is terse (each is a plain reading of
//! the text; the cross-check against production reports any disagreement):
//! - the deadline is the instant the working time runs out, so 8 hours from
//!   07:00 on a full working day end at 16:30 that day, and a span that runs
//!   out at 11:30 ends at 11:30 (not at 13:00);
//! - working time starts at the first working *instant* at or after the
//!   `received`/`reopened` time (a time inside a shift is not rounded);
//! - a later `received` under another id is ignored altogether (it is neither
//!   the latest status nor the latest level);
//! - an event stamped before the `received` event takes effect at the
//!   `received` instant, in its (`occurred_at`, `event_id`) order;
//! - `reopened` on an open ticket changes nothing ("opens it again");
//!   `answered`/`resolved` on a closed ticket change nothing;
//! - every open period's deadline uses the ticket's latest level, as does the
//!   overdue column.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Asia/Ho_Chi_Minh: UTC+7, no daylight saving since 1975.
const LOCAL_OFFSET: i64 = 7 * HOUR;

/// Where the shipped data lives.
pub fn data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("aggregator/data")
}

// ---------------------------------------------------------------------------
// Working calendar, from the TOML data files' meaning.
// ---------------------------------------------------------------------------

/// Which local days and hours are worked.
#[derive(Clone, Debug)]
pub struct Calendar {
    weekdays: HashSet<Weekday>,
    /// Shifts as [start, end) nanoseconds after local midnight, sorted.
    shifts: Vec<(i64, i64)>,
    holidays: BTreeSet<NaiveDate>,
    make_up: BTreeSet<NaiveDate>,
}

fn parse_clock(s: &str) -> i64 {
    let parts: Vec<i64> = s.split(':').map(|p| p.parse().unwrap_or_else(|_| panic!("shift time {s:?}"))).collect();
    match parts[..] {
        [h, m] => h * HOUR + m * MINUTE,
        [h, m, sec] => h * HOUR + m * MINUTE + sec * SECOND,
        _ => panic!("shift time {s:?}"),
    }
}

fn parse_date(v: &toml::Value) -> NaiveDate {
    let text = match v {
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::String(s) => s.clone(),
        other => panic!("a date, not {other:?}"),
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d").unwrap_or_else(|_| panic!("date {text:?}"))
}

impl Calendar {
    /// The calendar the given TOML texts describe together (defaults: Monday
    /// to Friday, 07:00–11:30 and 13:00–16:30, no holidays).
    pub fn from_toml(texts: &[&str]) -> Calendar {
        let mut weekdays = None;
        let mut shifts = None;
        let mut holidays = BTreeSet::new();
        let mut make_up = BTreeSet::new();
        for text in texts {
            let table: toml::Table = toml::from_str(text).expect("calendar TOML");
            if let Some(tz) = table.get("time_zone") {
                assert_eq!(tz.as_str(), Some("Asia/Ho_Chi_Minh"), "the oracle knows UTC+7 only");
            }
            if let Some(w) = table.get("working_weekdays") {
                let days: HashSet<Weekday> = w
                    .as_array()
                    .expect("working_weekdays")
                    .iter()
                    .map(|d| d.as_str().expect("weekday").parse::<Weekday>().expect("weekday name"))
                    .collect();
                weekdays = Some(days);
            }
            if let Some(s) = table.get("shifts") {
                let mut list: Vec<(i64, i64)> = s
                    .as_array()
                    .expect("shifts")
                    .iter()
                    .map(|s| {
                        let start = parse_clock(s.get("start").and_then(|v| v.as_str()).expect("shift start"));
                        let end = parse_clock(s.get("end").and_then(|v| v.as_str()).expect("shift end"));
                        assert!(start < end, "shift {s:?}");
                        (start, end)
                    })
                    .collect();
                list.sort();
                shifts = Some(list);
            }
            for (key, set) in [("holidays", &mut holidays), ("working_days", &mut make_up)] {
                for entry in table.get(key).and_then(|v| v.as_array()).into_iter().flatten() {
                    set.insert(parse_date(entry.get("date").expect("date")));
                }
            }
        }
        use Weekday::*;
        Calendar {
            weekdays: weekdays.unwrap_or_else(|| [Mon, Tue, Wed, Thu, Fri].into_iter().collect()),
            shifts: shifts
                .unwrap_or_else(|| vec![(7 * HOUR, 11 * HOUR + 30 * MINUTE), (13 * HOUR, 16 * HOUR + 30 * MINUTE)]),
            holidays,
            make_up,
        }
    }

    /// The shipped calendars: every `*.toml` in `aggregator/data/calendar`.
    pub fn shipped() -> Calendar {
        let dir = data_dir().join("calendar");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("calendar dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 3, "calendar files in {}", dir.display());
        let texts: Vec<String> = paths.iter().map(|p| std::fs::read_to_string(p).expect("calendar file")).collect();
        Calendar::from_toml(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A day is worked if it is a make-up day, or a working weekday that is
    /// not a holiday.
    pub fn works(&self, d: NaiveDate) -> bool {
        self.make_up.contains(&d) || (self.weekdays.contains(&d.weekday()) && !self.holidays.contains(&d))
    }

    /// The instant (unix nanos) `hours` working hours after `start`.
    pub fn deadline(&self, start: i64, hours: i64) -> i64 {
        let mut left = hours * HOUR;
        // Local "wall" nanoseconds since 1970-01-01 00:00 local.
        let from = start + LOCAL_OFFSET;
        let mut day = from.div_euclid(DAY);
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        for _ in 0..(20 * 366) {
            let date = epoch + chrono::Days::new(u64::try_from(day).expect("after 1970"));
            if self.works(date) {
                for &(a, b) in &self.shifts {
                    let (a, b) = (day * DAY + a, day * DAY + b);
                    let begin = a.max(from);
                    if begin >= b {
                        continue;
                    }
                    if b - begin >= left {
                        return begin + left - LOCAL_OFFSET;
                    }
                    left -= b - begin;
                }
            }
            day += 1;
        }
        panic!("no working time within 20 years of {start}");
    }
}

// ---------------------------------------------------------------------------
// Geography: commune → district, from the shipped CSV.
// ---------------------------------------------------------------------------

/// The pre-2025 geography's commune → district map.
pub fn communes_to_districts() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(data_dir().join("binh_phuoc_pre2025_3tier.csv")).expect("geography CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (d, c) = (col("district_code"), col("commune_code"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[c].to_owned(), f[d].to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tickets.
// ---------------------------------------------------------------------------

/// The `hotline_daily` figures of some tickets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub received: u64,
    pub processed: u64,
    pub in_progress: u64,
    pub spam: u64,
    pub overdue_specialist: u64,
    pub overdue_leadership: u64,
    pub answered: u64,
    pub forwarded: u64,
}

impl Figures {
    /// In the order of `d06 report hotline`'s columns.
    pub fn row(&self) -> [u64; 8] {
        [
            self.received,
            self.processed,
            self.in_progress,
            self.spam,
            self.overdue_specialist,
            self.overdue_leadership,
            self.answered,
            self.forwarded,
        ]
    }

    fn add(&mut self, o: &Figures) {
        self.received += o.received;
        self.processed += o.processed;
        self.in_progress += o.in_progress;
        self.spam += o.spam;
        self.overdue_specialist += o.overdue_specialist;
        self.overdue_leadership += o.overdue_leadership;
        self.answered += o.answered;
        self.forwarded += o.forwarded;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Received,
    Answered,
    Forwarded,
    Resolved,
    Spam,
    Reopened,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "received" => Status::Received,
            "answered" => Status::Answered,
            "forwarded" => Status::Forwarded,
            "resolved" => Status::Resolved,
            "spam" => Status::Spam,
            "reopened" => Status::Reopened,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Specialist,
    Leadership,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "specialist" => Some(Level::Specialist),
            "leadership" => Some(Level::Leadership),
            _ => None,
        }
    }

    fn hours(self) -> i64 {
        match self {
            Level::Specialist => 8,
            Level::Leadership => 48,
        }
    }
}

/// One ticket event, as the oracle keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    /// Unix nanoseconds.
    pub at: i64,
    pub status: Status,
    pub level: Level,
    /// District code the event names (directly or through its commune).
    pub district: String,
}

/// One received ticket's place in the figures, as of T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Spam,
    Overdue(Level),
    Processed,
    InProgress,
}

/// The verdict on one ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub district: String,
    pub day: NaiveDate,
    pub class: Class,
    pub answered: bool,
    pub forwarded: bool,
}

impl Verdict {
    pub fn figures(&self) -> Figures {
        let mut f = Figures { received: 1, ..Figures::default() };
        match self.class {
            Class::Spam => f.spam = 1,
            Class::Overdue(Level::Specialist) => f.overdue_specialist = 1,
            Class::Overdue(Level::Leadership) => f.overdue_leadership = 1,
            Class::Processed => f.processed = 1,
            Class::InProgress => f.in_progress = 1,
        }
        f.answered = u64::from(self.answered);
        f.forwarded = u64::from(self.forwarded);
        f
    }
}

/// The local (UTC+7) day of an instant.
pub fn local_day(at: i64) -> NaiveDate {
    let days = (at + LOCAL_OFFSET).div_euclid(DAY);
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days)
}

/// Classifies one ticket from its (deduplicated) events, as of `t`.
/// `None` when it has no `received` event.
pub fn classify(events: &[Event], cal: &Calendar, t: i64) -> Option<Verdict> {
    let mut evs: Vec<&Event> = events.iter().collect();
    evs.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
    // Area and day: the first `received`; later ones are ignored altogether.
    let first = evs.iter().position(|e| e.status == Status::Received)?;
    let received = evs[first];
    let history: Vec<&Event> =
        evs.iter().enumerate().filter(|(i, e)| *i == first || e.status != Status::Received).map(|(_, e)| *e).collect();
    let latest = history.last().expect("the received event at least");
    let level = latest.level;
    let hours = level.hours();

    // Walk the lifecycle from the received instant.
    let mut open = true;
    let mut deadline = cal.deadline(received.at, hours);
    let mut ever_late = false;
    let mut ever_forwarded = false;
    let mut closed_by: Option<Status> = None;
    for e in &history {
        if std::ptr::eq(*e, received) {
            continue;
        }
        let when = e.at.max(received.at);
        match e.status {
            Status::Answered | Status::Resolved if open => {
                if when > deadline {
                    ever_late = true;
                }
                open = false;
                closed_by = Some(e.status);
            }
            Status::Reopened if !open => {
                open = true;
                closed_by = None;
                deadline = cal.deadline(when, hours);
            }
            Status::Forwarded => ever_forwarded = true,
            _ => {}
        }
    }
    if open && t > deadline {
        ever_late = true;
    }
    let spam = latest.status == Status::Spam;
    let class = if spam {
        Class::Spam
    } else if ever_late {
        Class::Overdue(level)
    } else if open {
        Class::InProgress
    } else {
        Class::Processed
    };
    Some(Verdict {
        district: received.district.clone(),
        day: local_day(received.at),
        class,
        answered: !spam && !ever_forwarded && closed_by == Some(Status::Answered),
        forwarded: !spam && ever_forwarded,
    })
}

/// The oracle: raw EVENTS-v1 hotline messages in, figures out.
#[derive(Debug)]
pub struct Oracle {
    calendar: Calendar,
    communes: BTreeMap<String, String>,
    /// Ticket id (clear) → its events, first copy of each event id only.
    tickets: HashMap<String, Vec<Event>>,
    seen: HashSet<(String, String)>,
    newest: Option<i64>,
    /// Messages read, duplicates included.
    pub messages: usize,
    /// Messages ignored as duplicates.
    pub duplicates: usize,
}

impl Oracle {
    pub fn new(calendar: Calendar) -> Oracle {
        Oracle {
            calendar,
            communes: communes_to_districts(),
            tickets: HashMap::new(),
            seen: HashSet::new(),
            newest: None,
            messages: 0,
            duplicates: 0,
        }
    }

    /// The oracle on the shipped calendars and geography.
    pub fn shipped() -> Oracle {
        Oracle::new(Calendar::shipped())
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Every district code, sorted.
    pub fn districts(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.communes.values().collect();
        set.into_iter().cloned().collect()
    }

    /// The newest `occurred_at` applied: T under the event clock.
    pub fn newest(&self) -> Option<i64> {
        self.newest
    }

    /// Reads one valid `hotline.ticket` message (panics on anything else:
    /// the streams given to the oracle hold valid tickets only).
    pub fn read(&mut self, json: &str) {
        let v: serde_json::Value = serde_json::from_str(json).expect("JSON message");
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_else(|| panic!("field {k} in {json}"));
        assert_eq!(s("schema"), "d06.event.v1");
        assert_eq!(s("type"), "hotline.ticket");
        let at = chrono::DateTime::parse_from_rfc3339(s("occurred_at")).expect("occurred_at");
        let at = at.timestamp_nanos_opt().expect("in range");
        let district = match (v.get("district_code").and_then(|x| x.as_str()), v.get("commune_code")) {
            (Some(d), _) => d.to_owned(),
            (None, Some(c)) => {
                let c = c.as_str().expect("commune_code");
                self.communes.get(c).unwrap_or_else(|| panic!("unknown commune {c}")).clone()
            }
            (None, None) => panic!("no area in {json}"),
        };
        let event = Event {
            event_id: s("event_id").to_owned(),
            at,
            status: Status::parse(s("status")).expect("status"),
            level: Level::parse(s("level")).expect("level"),
            district,
        };
        self.push(s("subject"), event);
    }

    /// Applies one event of ticket `subject`.
    pub fn push(&mut self, subject: &str, event: Event) {
        self.messages += 1;
        if !self.seen.insert((subject.to_owned(), event.event_id.clone())) {
            self.duplicates += 1;
            return;
        }
        self.newest = Some(self.newest.map_or(event.at, |n| n.max(event.at)));
        self.tickets.entry(subject.to_owned()).or_default().push(event);
    }

    /// Each received ticket's verdict as of `t`.
    pub fn verdicts(&self, t: i64) -> BTreeMap<String, Verdict> {
        self.tickets.iter().filter_map(|(id, evs)| classify(evs, &self.calendar, t).map(|v| (id.clone(), v))).collect()
    }

    /// Figures per (district, day) as of `t`.
    pub fn by_district_day(&self, t: i64) -> BTreeMap<(String, NaiveDate), Figures> {
        let mut out: BTreeMap<(String, NaiveDate), Figures> = BTreeMap::new();
        for v in self.verdicts(t).values() {
            out.entry((v.district.clone(), v.day)).or_default().add(&v.figures());
        }
        out
    }

    /// Figures of `district` (or the province with `None`) for tickets
    /// received `from..=to`, as of `t`.
    pub fn total(&self, district: Option<&str>, from: NaiveDate, to: NaiveDate, t: i64) -> Figures {
        let mut sum = Figures::default();
        for ((d, day), f) in self.by_district_day(t) {
            if district.is_none_or(|x| x == d) && (from..=to).contains(&day) {
                sum.add(&f);
            }
        }
        sum
    }
}

// ---------------------------------------------------------------------------
// The oracle's own tests.
// ---------------------------------------------------------------------------

/// Unix nanos of a local (UTC+7) time.
pub fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    let naive = NaiveDate::from_ymd_opt(y, m, d).expect("date").and_hms_opt(h, min, 0).expect("time");
    naive.and_utc().timestamp_nanos_opt().expect("range") - LOCAL_OFFSET
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::shipped()
    }

    fn spec(c: &Calendar, at: i64) -> i64 {
        c.deadline(at, 8)
    }

    #[test]
    fn the_shipped_calendar_holds_what_its_readme_lists() {
        let c = cal();
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert!(!c.works(d(2024, 4, 29)), "swapped Monday off");
        assert!(c.works(d(2024, 5, 4)), "make-up Saturday");
        assert!(!c.works(d(2024, 5, 5)), "Sunday");
        assert!(!c.works(d(2024, 2, 12)), "Tết");
        assert!(c.works(d(2024, 2, 15)));
        assert!(!c.works(d(2025, 4, 7)), "Giỗ Tổ 2025");
        assert!(c.works(d(2025, 4, 26)), "make-up Saturday 2025");
        assert!(!c.works(d(2023, 1, 2)));
    }

    #[test]
    fn deadline_within_a_day_and_across_the_lunch_break() {
        let c = cal();
        // Monday 6/5/2024 07:00: a full working day is exactly 8 hours.
        assert_eq!(spec(&c, local(2024, 5, 6, 7, 0)), local(2024, 5, 6, 16, 30));
        // 10:00 Monday: 1.5 h + 3.5 h Monday, 3 h Tuesday.
        assert_eq!(spec(&c, local(2024, 5, 6, 10, 0)), local(2024, 5, 7, 10, 0));
        // 15:00 Monday: 1.5 h Monday, 4.5 h Tuesday morning, 2 h after lunch.
        assert_eq!(spec(&c, local(2024, 5, 6, 15, 0)), local(2024, 5, 7, 15, 0));
        // Received during lunch: starts at 13:00; 3.5 h + 4.5 h ends at 11:30 sharp.
        assert_eq!(spec(&c, local(2024, 5, 6, 12, 0)), local(2024, 5, 7, 11, 30));
        // Received at 11:30 (a shift's end is not worked): same as 13:00.
        assert_eq!(spec(&c, local(2024, 5, 6, 11, 30)), spec(&c, local(2024, 5, 6, 13, 0)));
        // Received at 06:59:59.5 and at 07:00 give the same deadline.
        assert_eq!(spec(&c, local(2024, 5, 6, 7, 0) - SECOND / 2), local(2024, 5, 6, 16, 30));
        // Inside a shift, seconds are not rounded.
        assert_eq!(spec(&c, local(2024, 5, 6, 10, 0) + 30 * SECOND), local(2024, 5, 7, 10, 0) + 30 * SECOND);
    }

    #[test]
    fn deadline_across_a_weekend() {
        let c = cal();
        // Friday 10/5/2024 15:00 → Monday 13/5 15:00.
        assert_eq!(spec(&c, local(2024, 5, 10, 15, 0)), local(2024, 5, 13, 15, 0));
        // Received on Saturday night: the clock starts Monday 07:00.
        assert_eq!(spec(&c, local(2024, 5, 11, 22, 0)), local(2024, 5, 13, 16, 30));
        // Leadership: 48 h from Monday 6/5 07:00 = six full working days.
        assert_eq!(c.deadline(local(2024, 5, 6, 7, 0), 48), local(2024, 5, 13, 16, 30));
    }

    #[test]
    fn deadline_across_holidays_and_a_make_up_day() {
        let c = cal();
        // Friday 26/4/2024 15:00: 27/4–1/5 off (29/4 swapped) → Thursday 2/5 15:00.
        assert_eq!(spec(&c, local(2024, 4, 26, 15, 0)), local(2024, 5, 2, 15, 0));
        // Friday 3/5/2024 15:00: Saturday 4/5 is worked.
        assert_eq!(spec(&c, local(2024, 5, 3, 15, 0)), local(2024, 5, 4, 15, 0));
        // Tết 2024: Wednesday 7/2 15:00 → Thursday 15/2 15:00.
        assert_eq!(spec(&c, local(2024, 2, 7, 15, 0)), local(2024, 2, 15, 15, 0));
        // 2/9/2024 and 3/9 off: Friday 30/8 16:00 → Wednesday 4/9 16:00.
        assert_eq!(spec(&c, local(2024, 8, 30, 16, 0)), local(2024, 9, 4, 16, 0));
    }

    #[test]
    fn custom_calendars_are_read_from_toml() {
        let c = Calendar::from_toml(&[
            "working_weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]\n\
             shifts = [{ start = \"08:00\", end = \"12:00\" }, { start = \"14:00\", end = \"18:00\" }]\n",
            "[[holidays]]\ndate = 2024-05-07\nsource = \"x\"\n",
        ]);
        // Monday 6/5/2024 16:00: 2 h Monday, Tuesday off, 6 h Wednesday → 16:00.
        assert_eq!(c.deadline(local(2024, 5, 6, 16, 0), 8), local(2024, 5, 8, 16, 0));
        // Saturday is worked here.
        assert_eq!(c.deadline(local(2024, 5, 11, 8, 0), 8), local(2024, 5, 11, 18, 0));
    }

    // Tickets ---------------------------------------------------------------

    struct T {
        events: Vec<Event>,
    }

    impl T {
        fn new() -> T {
            T { events: Vec::new() }
        }
        fn ev(mut self, at: i64, status: &str, level: &str) -> T {
            let n = self.events.len();
            self.events.push(Event {
                event_id: format!("e{n:03}"),
                at,
                status: Status::parse(status).unwrap(),
                level: Level::parse(level).unwrap(),
                district: "688".into(),
            });
            self
        }
        fn at(&self, t: i64) -> Verdict {
            classify(&self.events, &cal(), t).expect("received")
        }
    }

    const S: &str = "specialist";
    const L: &str = "leadership";

    #[test]
    fn answered_in_time_is_processed_and_answered() {
        let r = local(2024, 5, 6, 10, 0);
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "answered", S).at(r + 30 * DAY);
        assert_eq!(v.class, Class::Processed);
        assert!(v.answered && !v.forwarded);
        assert_eq!((v.district.as_str(), v.day), ("688", NaiveDate::from_ymd_opt(2024, 5, 6).unwrap()));
    }

    #[test]
    fn closing_exactly_at_the_deadline_is_in_time_and_a_nanosecond_later_is_not() {
        let r = local(2024, 5, 6, 10, 0);
        let d = local(2024, 5, 7, 10, 0);
        assert_eq!(T::new().ev(r, "received", S).ev(d, "answered", S).at(d + DAY).class, Class::Processed);
        assert_eq!(
            T::new().ev(r, "received", S).ev(d + 1, "answered", S).at(d + DAY).class,
            Class::Overdue(Level::Specialist)
        );
        // Open: in progress while T ≤ deadline, overdue once T is strictly after.
        let open = T::new().ev(r, "received", S);
        assert_eq!(open.at(d).class, Class::InProgress);
        assert_eq!(open.at(d + 1).class, Class::Overdue(Level::Specialist));
    }

    #[test]
    fn forwarded_then_resolved_is_forwarded_not_answered() {
        let r = local(2024, 5, 6, 10, 0);
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "forwarded", S).ev(r + 2 * HOUR, "resolved", S).at(r + DAY);
        assert_eq!(v.class, Class::Processed);
        assert!(v.forwarded && !v.answered);
        // Forwarded and still open: in progress, forwarded.
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "forwarded", S).at(r + 2 * HOUR);
        assert_eq!(v.class, Class::InProgress);
        assert!(v.forwarded && !v.answered);
        // Never forwarded and still open: neither.
        let v = T::new().ev(r, "received", S).at(r + HOUR);
        assert!(!v.forwarded && !v.answered);
    }

    #[test]
    fn reopened_opens_a_closed_ticket_with_a_new_deadline() {
        let r = local(2024, 5, 6, 10, 0);
        let reopened = local(2024, 5, 10, 15, 0); // Friday 15:00 → Monday 13/5 15:00.
        let t = T::new().ev(r, "received", S).ev(r + HOUR, "answered", S).ev(reopened, "reopened", S);
        let v = t.at(local(2024, 5, 13, 15, 0));
        assert_eq!(v.class, Class::InProgress);
        assert!(!v.answered, "open again: not in the answered column");
        assert_eq!(t.at(local(2024, 5, 13, 15, 0) + 1).class, Class::Overdue(Level::Specialist));
        // Closed again in time: processed, answered.
        let v = t.ev(local(2024, 5, 13, 9, 0), "answered", S).at(local(2024, 6, 1, 0, 0));
        assert_eq!(v.class, Class::Processed);
        assert!(v.answered);
    }

    #[test]
    fn reopened_on_an_open_ticket_changes_nothing() {
        let r = local(2024, 5, 6, 10, 0);
        let d = local(2024, 5, 7, 10, 0);
        let v = T::new().ev(r, "received", S).ev(d - HOUR, "reopened", S).at(d + 1);
        assert_eq!(v.class, Class::Overdue(Level::Specialist), "the running deadline is not extended");
    }

    #[test]
    fn overdue_once_stays_overdue() {
        let r = local(2024, 5, 6, 10, 0);
        let d = local(2024, 5, 7, 10, 0);
        // Answered late, reopened, answered again in time: still overdue.
        let v = T::new()
            .ev(r, "received", S)
            .ev(d + HOUR, "answered", S)
            .ev(d + 2 * HOUR, "reopened", S)
            .ev(d + 3 * HOUR, "answered", S)
            .at(d + 30 * DAY);
        assert_eq!(v.class, Class::Overdue(Level::Specialist));
        assert!(v.answered, "the split is about how it was closed, not when");
        // Answered in time, reopened, left open past the new deadline: overdue, and
        // answering it later does not undo that.
        let reopened = local(2024, 5, 8, 8, 0);
        let t = T::new().ev(r, "received", S).ev(r + HOUR, "answered", S).ev(reopened, "reopened", S);
        assert_eq!(t.at(local(2024, 5, 8, 16, 30)).class, Class::InProgress);
        assert_eq!(t.at(local(2024, 5, 9, 9, 0)).class, Class::Overdue(Level::Specialist));
        let t = t.ev(local(2024, 5, 9, 9, 0), "answered", S);
        assert_eq!(t.at(local(2024, 6, 1, 0, 0)).class, Class::Overdue(Level::Specialist));
    }

    #[test]
    fn spam_is_decided_by_the_latest_status() {
        let r = local(2024, 5, 6, 10, 0);
        // Spam, even if it went overdue before being marked.
        let v = T::new().ev(r, "received", S).ev(r + 10 * DAY, "spam", S).at(r + 20 * DAY);
        assert_eq!(v.class, Class::Spam);
        assert!(!v.answered && !v.forwarded, "spam is in neither column");
        // Forwarded, then spam: not in the forwarded column.
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "forwarded", S).ev(r + 2 * HOUR, "spam", S).at(r + DAY);
        assert_eq!(v.class, Class::Spam);
        assert!(!v.forwarded);
        // Marked spam by mistake, then answered in time: processed.
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "spam", S).ev(r + 2 * HOUR, "answered", S).at(r + DAY);
        assert_eq!(v.class, Class::Processed);
        assert!(v.answered);
    }

    #[test]
    fn the_latest_level_sets_the_deadline_and_the_column() {
        let r = local(2024, 5, 6, 10, 0);
        // Escalated to leadership: judged on 48 h, answered after 8 h but in time.
        let v = T::new()
            .ev(r, "received", S)
            .ev(r + HOUR, "forwarded", L)
            .ev(local(2024, 5, 9, 10, 0), "resolved", L)
            .at(local(2024, 6, 1, 0, 0));
        assert_eq!(v.class, Class::Processed);
        // Leadership, open past 48 h: overdue (leadership).
        let v = T::new().ev(r, "received", L).at(local(2024, 5, 20, 0, 0));
        assert_eq!(v.class, Class::Overdue(Level::Leadership));
    }

    #[test]
    fn events_before_received_wait_for_it_and_later_received_is_ignored() {
        let r = local(2024, 5, 6, 10, 0);
        // No received: in no report.
        assert_eq!(classify(&T::new().ev(r, "answered", S).events, &cal(), r + DAY), None);
        // Answered 2 s before received: closes it at once.
        let v = T::new().ev(r, "received", S).ev(r - 2 * SECOND, "answered", S).at(r + 30 * DAY);
        assert_eq!(v.class, Class::Processed);
        assert!(v.answered);
        // A later received elsewhere, at another level, changes neither area, day nor level.
        let mut t = T::new().ev(r, "received", S).ev(r + HOUR, "answered", S);
        t = t.ev(r + 3 * DAY, "received", L);
        t.events[2].district = "689".into();
        let v = t.at(r + 30 * DAY);
        assert_eq!(v.class, Class::Processed);
        assert_eq!(v.district, "688");
        // Ties on occurred_at are ordered by event id: e001 (answered) before e002 (spam).
        let v = T::new().ev(r, "received", S).ev(r + HOUR, "answered", S).ev(r + HOUR, "spam", S).at(r + DAY);
        assert_eq!(v.class, Class::Spam);
    }

    #[test]
    fn the_oracle_reads_raw_messages_deduplicates_and_books_by_district_and_day() {
        let mut o = Oracle::shipped();
        let msg = |id: &str, at: &str, area: &str, subject: &str, status: &str| {
            format!(
                r#"{{"schema":"d06.event.v1","event_id":"{id}","type":"hotline.ticket","occurred_at":"{at}","source":"hotline-1022",{area},"subject":"{subject}","status":"{status}","level":"specialist"}}"#
            )
        };
        o.read(&msg("a1", "2024-05-06T10:00:00+07:00", r#""commune_code":"25195""#, "HL-1", "received"));
        o.read(&msg("a2", "2024-05-06T04:00:00Z", r#""commune_code":"25195""#, "HL-1", "answered"));
        o.read(&msg("a2", "2024-05-06T04:00:00Z", r#""commune_code":"25195""#, "HL-1", "answered"));
        // Received at 23:30 local on 6/5 = 16:30 UTC: booked on 6/5.
        o.read(&msg("b1", "2024-05-06T16:30:00Z", r#""district_code":"690""#, "HL-2", "received"));
        o.read(&msg("c1", "2024-05-06T10:00:00+07:00", r#""district_code":"690""#, "HL-3", "answered"));
        assert_eq!((o.messages, o.duplicates), (5, 1));
        let t = o.newest().unwrap();
        let day = NaiveDate::from_ymd_opt(2024, 5, 6).unwrap();
        let got = o.by_district_day(t);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&("689".to_owned(), day)].row(), [1, 1, 0, 0, 0, 0, 1, 0]);
        assert_eq!(got[&("690".to_owned(), day)].row(), [1, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(o.total(None, day, day, t).row(), [2, 1, 1, 0, 0, 0, 1, 0]);
        assert_eq!(o.districts().len(), 11);
    }
}
