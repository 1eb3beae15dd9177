//! The province's 1022 reports to reproduce: a [`Scenario`] lists report
//! periods, each with a [`Mix`] of ticket outcomes, and the moment T the
//! report was read at; [`report_2023`] and [`report_2024`] are the two the
//! province published.

use aggregator::calendar::{local_to_nanos, DEFAULT_TIME_ZONE};
use aggregator::fact::Nanos;
use aggregator::hotline::HotlineCounts;
use chrono::{DateTime, NaiveDate, NaiveTime};

pub(super) const SECOND: i64 = 1_000_000_000;
pub(super) const MINUTE: i64 = 60 * SECOND;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// Overdue tickets of one level, by how they end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Late {
    /// Closed by `answered` after the deadline (in the answered column).
    pub answered: u32,
    /// Forwarded, then resolved after the deadline.
    pub resolved: u32,
    /// Forwarded and still open at T, deadline passed.
    pub open_forwarded: u32,
    /// Never forwarded and still open at T, deadline passed (some after a
    /// reopening).
    pub open: u32,
}

impl Late {
    fn total(&self) -> u32 {
        self.answered + self.resolved + self.open_forwarded + self.open
    }
}

/// How many tickets of each outcome a period holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    /// Processed and answered: closed by `answered` in time, never forwarded.
    pub answered: u32,
    /// Processed and forwarded: forwarded, then resolved in time.
    pub resolved: u32,
    /// In progress at T, forwarded.
    pub in_progress_forwarded: u32,
    /// In progress at T, never forwarded.
    pub in_progress_open: u32,
    /// Spam.
    pub spam: u32,
    /// Overdue, specialist level.
    pub overdue_specialist: Late,
    /// Overdue, leadership level.
    pub overdue_leadership: Late,
}

impl Mix {
    /// The counts these tickets must add up to, by construction.
    pub fn expected(&self) -> HotlineCounts {
        let (s, l) = (self.overdue_specialist, self.overdue_leadership);
        let n = |x: u32| u64::from(x);
        HotlineCounts {
            received: n(self.answered
                + self.resolved
                + self.in_progress_forwarded
                + self.in_progress_open
                + self.spam
                + s.total()
                + l.total()),
            answered: n(self.answered + s.answered + l.answered),
            forwarded: n(self.resolved
                + self.in_progress_forwarded
                + s.resolved
                + s.open_forwarded
                + l.resolved
                + l.open_forwarded),
            processed: n(self.answered + self.resolved),
            in_progress: n(self.in_progress_forwarded + self.in_progress_open),
            spam: n(self.spam),
            overdue_specialist: n(s.total()),
            overdue_leadership: n(l.total()),
        }
    }
}

/// Tickets received from `from` to `to` (local days, inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
    /// The outcomes as of the scenario's T.
    pub mix: Mix,
}

/// A report to reproduce: its periods, T, and tickets outside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Where the figures come from.
    pub name: &'static str,
    /// The report's periods, consecutive, in order.
    pub report: Vec<Period>,
    /// Tickets received outside the report (before it), which must not
    /// show in its figures.
    pub other: Vec<Period>,
    /// The moment the report classifies as of.
    pub t: Nanos,
}

impl Scenario {
    /// First day of the report.
    pub fn from(&self) -> NaiveDate {
        self.report.first().map_or(NaiveDate::MIN, |p| p.from)
    }

    /// Last day of the report.
    pub fn to(&self) -> NaiveDate {
        self.report.last().map_or(NaiveDate::MIN, |p| p.to)
    }

    /// The report's figures, by construction.
    pub fn expected(&self) -> HotlineCounts {
        self.report.iter().map(|p| p.mix.expected()).sum()
    }
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// Unix nanos of a local time (Asia/Ho_Chi_Minh) `offset` after midnight of `day`.
pub(super) fn local(day: NaiveDate, offset: i64) -> Nanos {
    local_to_nanos(&DEFAULT_TIME_ZONE, day.and_time(NaiveTime::MIN)).unwrap_or(Nanos::MIN).saturating_add(offset)
}

/// The local day (Asia/Ho_Chi_Minh) of an instant.
pub fn local_day(at: Nanos) -> NaiveDate {
    DateTime::from_timestamp_nanos(at).with_timezone(&DEFAULT_TIME_ZONE).date_naive()
}

/// The last nanosecond of a local day (Asia/Ho_Chi_Minh).
pub fn end_of_day(day: NaiveDate) -> Nanos {
    local(day, DAY) - 1
}

/// Tổng đài 1022 Bình Phước, 01/01/2023–19/07/2023 (report of July 2023,
/// `shared/seeds/001_…`): 1,493 received = 1,434 processed + 5 in
/// progress + 47 spam + 1 overdue (specialist) + 6 overdue (leadership);
/// of them 19/06–19/07/2023: 300 = 290 + 4 + 5 + 1 + 0. T = the end of
/// 19/07/2023 (23:59:59.999999999 local time).
///
/// The report does not split answered / forwarded; this scenario chooses
/// 1,293 answered and 151 forwarded (263 and 30 in the second period).
pub fn report_2023() -> Scenario {
    Scenario {
        name: "1022 Bình Phước 01/01/2023–19/07/2023",
        report: vec![
            Period {
                from: ymd(2023, 1, 1),
                to: ymd(2023, 6, 18),
                mix: Mix {
                    answered: 1030,
                    resolved: 114,
                    in_progress_forwarded: 1,
                    spam: 42,
                    overdue_leadership: Late { resolved: 4, open_forwarded: 2, ..Late::default() },
                    ..Mix::default()
                },
            },
            Period {
                from: ymd(2023, 6, 19),
                to: ymd(2023, 7, 19),
                mix: Mix {
                    answered: 262,
                    resolved: 28,
                    in_progress_forwarded: 2,
                    in_progress_open: 2,
                    spam: 5,
                    overdue_specialist: Late { answered: 1, ..Late::default() },
                    ..Mix::default()
                },
            },
        ],
        other: vec![Period {
            from: ymd(2022, 12, 26),
            to: ymd(2022, 12, 31),
            mix: Mix { answered: 20, resolved: 3, spam: 2, ..Mix::default() },
        }],
        t: end_of_day(ymd(2023, 7, 19)),
    }
}

/// Tổng đài 1022, 22/04/2024–22/05/2024 (report of May 2024,
/// `shared/seeds/000_…`): 299 received = 293 processed + 6 in progress;
/// 268 answered directly + 31 forwarded; no spam, nothing overdue.
/// T = the end of 22/05/2024. The period spans the 27/4–1/5/2024 holidays
/// and the make-up Saturday 4/5/2024.
pub fn report_2024() -> Scenario {
    Scenario {
        name: "1022 Bình Phước 22/04/2024–22/05/2024",
        report: vec![Period {
            from: ymd(2024, 4, 22),
            to: ymd(2024, 5, 22),
            mix: Mix { answered: 268, resolved: 25, in_progress_forwarded: 6, ..Mix::default() },
        }],
        other: vec![Period {
            from: ymd(2024, 4, 15),
            to: ymd(2024, 4, 21),
            mix: Mix {
                answered: 40,
                resolved: 5,
                spam: 1,
                overdue_specialist: Late { answered: 1, ..Late::default() },
                ..Mix::default()
            },
        }],
        t: end_of_day(ymd(2024, 5, 22)),
    }
}
