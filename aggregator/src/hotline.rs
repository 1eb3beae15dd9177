//! 1022 hotline tickets, classified as of a moment T (EVENTS-v1 "How a
//! hotline ticket is classified" and "Precise rules").
//!
//! [`Tickets`] holds one shard's tickets (those whose subject digest routes to
//! it). Every `hotline.ticket` fact is kept in its ticket's event list, sorted
//! by (`occurred_at`, `event_id`); on each new fact the ticket is classified
//! again from that list and the difference is booked, so the counts depend
//! only on the set of facts applied and on T, never on arrival order.
//! [`Tickets::advance`] moves T; tickets whose deadline passes turn overdue.
//!
//! # Rules
//!
//! - **Area and day** of a ticket: those of its first `received` event (by
//!   `occurred_at`, then `event_id`). A later `received` under another id is
//!   ignored altogether (not a status, not a level). A ticket with no
//!   `received` event is in no count; its events wait for it.
//! - **Lifecycle**, in event order from the `received` instant: `answered`
//!   and `resolved` close an open ticket (on a closed one they change
//!   nothing); `reopened` opens a closed ticket again with a new deadline
//!   counted from the reopening (on an open ticket it changes nothing, so it
//!   never extends a running deadline); `forwarded` and `spam` do not open or
//!   close. An event that occurred *before* the `received` instant (clock
//!   skew between systems) takes effect at the `received` instant, in its
//!   order: an `answered` stamped 2 s before `received` closes the ticket at
//!   once.
//! - **Deadline** of each open period: its start (the `received` or
//!   `reopened` instant) plus 8 (`specialist`) or 48 (`leadership`) working
//!   hours ([`WorkCalendar::deadline`]), the level being the ticket's
//!   **latest level overall**: the `level` of its latest event. *Decision:*
//!   the contract says "the level is the ticket's latest level"; we use it
//!   for every period's deadline and for the overdue column alike, not the
//!   level in force when a deadline passed. So a ticket escalated to
//!   `leadership` after 8 working hours is judged on 48 hours, and a ticket
//!   whose latest level is `specialist` is judged on 8 hours in every period.
//!   This keeps the figures a function of the event set alone.
//! - **Class**, as of T, exactly one of: *spam* (latest status is `spam`,
//!   whatever else happened); *overdue* at the latest level (some period was
//!   closed after its deadline, or the ticket is open and T is strictly after
//!   the current deadline; an overdue period stays overdue after a reopen);
//!   *processed* (closed, and every period closed at or before its
//!   deadline); *in progress* (open, T at or before the deadline).
//! - **Answered / forwarded** (tickets not spam): *forwarded* = some
//!   `forwarded` event, whatever the state now. *answered* = never
//!   forwarded, closed now, and the event that closed it last is `answered`.
//!   *Decision:* a ticket answered, reopened and still open is in neither
//!   column; one resolved, reopened and then answered is answered.
//! - **Events after T** count as they are (the contract accepts events up to
//!   10 minutes ahead of the clock): T only decides whether an open ticket's
//!   deadline has passed.
//! - **T** only moves forward: [`Tickets::advance`] to an earlier instant
//!   changes nothing. Before the first call no open ticket is overdue.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::{Add, AddAssign};
use std::sync::Arc;

use chrono::NaiveDate;

use crate::calendar::WorkCalendar;
use crate::fact::{Digest, Fact, FactKind, Nanos, TicketLevel, TicketStatus};
use crate::geo::{AreaId, Geography};
use crate::rollup::Outcome;

/// Working hours a `specialist` ticket must be closed in.
pub const SPECIALIST_HOURS: u32 = 8;
/// Working hours a `leadership` ticket must be closed in.
pub const LEADERSHIP_HOURS: u32 = 48;

/// The working hours a ticket of `level` must be closed in.
pub fn working_hours(level: TicketLevel) -> u32 {
    match level {
        TicketLevel::Specialist => SPECIALIST_HOURS,
        TicketLevel::Leadership => LEADERSHIP_HOURS,
    }
}

/// The hotline figures of one (area, day): the tickets *received* that day,
/// classified as of T (the columns of `hotline_daily`, OUTPUTS-v1).
///
/// `received = spam + overdue_specialist + overdue_leadership + processed +
/// in_progress`; `answered + forwarded + spam ≤ received`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HotlineCounts {
    /// Tickets received.
    pub received: u64,
    /// Closed by `answered` and never forwarded (not spam).
    pub answered: u64,
    /// Ever forwarded to an agency (not spam).
    pub forwarded: u64,
    /// Closed, every period at or before its deadline.
    pub processed: u64,
    /// Open, deadline not passed at T.
    pub in_progress: u64,
    /// Latest status is `spam`.
    pub spam: u64,
    /// Overdue, latest level `specialist`.
    pub overdue_specialist: u64,
    /// Overdue, latest level `leadership`.
    pub overdue_leadership: u64,
}

impl HotlineCounts {
    /// Every figure is zero.
    pub fn is_zero(&self) -> bool {
        *self == HotlineCounts::default()
    }

    /// `self - other`, figure by figure; `None` if some figure would go
    /// below zero.
    pub fn checked_sub(&self, other: &HotlineCounts) -> Option<HotlineCounts> {
        Some(HotlineCounts {
            received: self.received.checked_sub(other.received)?,
            answered: self.answered.checked_sub(other.answered)?,
            forwarded: self.forwarded.checked_sub(other.forwarded)?,
            processed: self.processed.checked_sub(other.processed)?,
            in_progress: self.in_progress.checked_sub(other.in_progress)?,
            spam: self.spam.checked_sub(other.spam)?,
            overdue_specialist: self.overdue_specialist.checked_sub(other.overdue_specialist)?,
            overdue_leadership: self.overdue_leadership.checked_sub(other.overdue_leadership)?,
        })
    }

    /// The overdue tickets, both levels.
    pub fn overdue(&self) -> u64 {
        self.overdue_specialist + self.overdue_leadership
    }
}

impl Add for HotlineCounts {
    type Output = HotlineCounts;
    fn add(self, o: HotlineCounts) -> HotlineCounts {
        HotlineCounts {
            received: self.received + o.received,
            answered: self.answered + o.answered,
            forwarded: self.forwarded + o.forwarded,
            processed: self.processed + o.processed,
            in_progress: self.in_progress + o.in_progress,
            spam: self.spam + o.spam,
            overdue_specialist: self.overdue_specialist + o.overdue_specialist,
            overdue_leadership: self.overdue_leadership + o.overdue_leadership,
        }
    }
}

impl AddAssign for HotlineCounts {
    fn add_assign(&mut self, o: HotlineCounts) {
        *self = *self + o;
    }
}

impl std::iter::Sum for HotlineCounts {
    fn sum<I: Iterator<Item = HotlineCounts>>(iter: I) -> HotlineCounts {
        iter.fold(HotlineCounts::default(), Add::add)
    }
}

/// Where a received ticket stands as of T: exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Latest status is `spam`.
    Spam,
    /// Not closed by a deadline, at the ticket's latest level.
    Overdue(TicketLevel),
    /// Closed, every period in time.
    Processed,
    /// Open, deadline not passed.
    InProgress,
}

/// One ticket's contribution to the counts as of T.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Classification {
    /// Area of its first `received` event.
    pub area: AreaId,
    /// Local day of its first `received` event.
    pub day: NaiveDate,
    /// Its class.
    pub class: Class,
    /// In the answered column.
    pub answered: bool,
    /// In the forwarded column.
    pub forwarded: bool,
    /// The running deadline when in progress (its class changes once T is
    /// strictly after it); `None` otherwise.
    pub deadline: Option<Nanos>,
}

impl Classification {
    /// The counts this one ticket adds to its (area, day).
    pub fn counts(&self) -> HotlineCounts {
        let mut c = HotlineCounts { received: 1, ..Default::default() };
        c.answered = u64::from(self.answered);
        c.forwarded = u64::from(self.forwarded);
        match self.class {
            Class::Spam => c.spam = 1,
            Class::Overdue(TicketLevel::Specialist) => c.overdue_specialist = 1,
            Class::Overdue(TicketLevel::Leadership) => c.overdue_leadership = 1,
            Class::Processed => c.processed = 1,
            Class::InProgress => c.in_progress = 1,
        }
        c
    }
}

/// One event of a ticket, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    at: Nanos,
    id: Box<str>,
    status: TicketStatus,
    level: TicketLevel,
    area: AreaId,
    day: NaiveDate,
}

impl Event {
    fn key(&self) -> (Nanos, &str) {
        (self.at, &self.id)
    }
}

/// Classifies a ticket from its events sorted by (`occurred_at`,
/// `event_id`), as of `t` (module docs, "Rules"). `None` without a
/// `received` event.
fn classify(events: &[Event], calendar: &WorkCalendar, t: Nanos) -> Option<Classification> {
    let first = events.iter().position(|e| e.status == TicketStatus::Received)?;
    let received = &events[first];
    // Later `received` events under other ids are ignored altogether.
    let considered =
        || events.iter().enumerate().filter(move |(i, e)| *i == first || e.status != TicketStatus::Received);
    let latest = considered().next_back().map_or(received, |(_, e)| e);
    let level = latest.level;
    let spam = latest.status == TicketStatus::Spam;
    let hours = working_hours(level);
    let mut forwarded = false;
    let mut open = true;
    let mut overdue = false;
    let mut closed_by = None;
    let mut deadline = calendar.deadline(received.at, hours);
    for (i, e) in considered() {
        if i == first {
            continue;
        }
        // Events stamped before `received` take effect at the received instant.
        let at = e.at.max(received.at);
        match e.status {
            TicketStatus::Answered | TicketStatus::Resolved => {
                if open {
                    overdue |= at > deadline;
                    open = false;
                    closed_by = Some(e.status);
                }
            }
            TicketStatus::Reopened => {
                if !open {
                    open = true;
                    deadline = calendar.deadline(at, hours);
                }
            }
            TicketStatus::Forwarded => forwarded = true,
            TicketStatus::Spam | TicketStatus::Received => {}
        }
    }
    overdue |= open && t > deadline;
    let class = if spam {
        Class::Spam
    } else if overdue {
        Class::Overdue(level)
    } else if open {
        Class::InProgress
    } else {
        Class::Processed
    };
    Some(Classification {
        area: received.area,
        day: received.day,
        class,
        answered: !spam && !forwarded && !open && closed_by == Some(TicketStatus::Answered),
        forwarded: !spam && forwarded,
        deadline: (class == Class::InProgress).then_some(deadline),
    })
}

/// One ticket: its events and what it currently adds to the counts.
#[derive(Debug, Default)]
struct Ticket {
    /// Sorted by (`occurred_at`, `event_id`).
    events: Vec<Event>,
    /// Its classification as booked in the counts.
    booked: Option<Classification>,
}

/// One shard's 1022 tickets and their counts per (area, day) as of T.
pub struct Tickets {
    geo: Arc<Geography>,
    calendar: Arc<WorkCalendar>,
    /// Event keys ([`Fact::event_key`]) of every fact applied.
    seen: HashSet<u128>,
    tickets: HashMap<Digest, Ticket>,
    counts: BTreeMap<(AreaId, NaiveDate), HotlineCounts>,
    dirty: BTreeSet<(AreaId, NaiveDate)>,
    /// In-progress tickets by running deadline.
    pending: BTreeSet<(Nanos, Digest)>,
    /// The classification clock.
    t: Nanos,
}

impl fmt::Debug for Tickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tickets")
            .field("events", &self.seen.len())
            .field("tickets", &self.tickets.len())
            .field("keys", &self.counts.len())
            .field("dirty", &self.dirty.len())
            .field("pending", &self.pending.len())
            .field("t", &self.t)
            .finish()
    }
}

impl Tickets {
    /// An empty shard booking through `geo`, deadlines on `calendar`, T at
    /// the beginning of time.
    pub fn new(geo: Arc<Geography>, calendar: Arc<WorkCalendar>) -> Self {
        Tickets {
            geo,
            calendar,
            seen: HashSet::new(),
            tickets: HashMap::new(),
            counts: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending: BTreeSet::new(),
            t: Nanos::MIN,
        }
    }

    /// Applies one `hotline.ticket` fact: keeps it in its ticket's history
    /// and books the change of that ticket's classification as of T.
    ///
    /// A fact whose event id was applied before changes nothing and returns
    /// [`Outcome::Duplicate`] (the copy applied first stands). Other fact
    /// kinds belong to [`crate::rollup::Shard`]: passing one is a caller bug
    /// (a debug assertion fires); release builds ignore it and return
    /// [`Outcome::Applied`].
    pub fn apply(&mut self, fact: &Fact) -> Outcome {
        let FactKind::Hotline { status, level } = fact.kind else {
            debug_assert!(false, "only hotline facts belong to Tickets");
            return Outcome::Applied;
        };
        if !self.seen.insert(fact.event_key()) {
            return Outcome::Duplicate;
        }
        let event =
            Event { at: fact.occurred_at, id: fact.event_id.clone(), status, level, area: fact.area, day: fact.day };
        let ticket = self.tickets.entry(fact.subject).or_default();
        let at = ticket.events.partition_point(|e| e.key() < event.key());
        ticket.events.insert(at, event);
        self.reclassify(fact.subject);
        Outcome::Applied
    }

    /// Moves the classification clock to `t` (unix nanos). Tickets whose
    /// deadline passes (T strictly after it) become overdue and their (area,
    /// day) keys are marked dirty. T never moves back: an earlier `t` changes
    /// nothing.
    pub fn advance(&mut self, t: Nanos) {
        if t <= self.t {
            return;
        }
        self.t = t;
        // Entries with a deadline before t are due; the others stay.
        let later = self.pending.split_off(&(t, Digest([0; 16])));
        let due = std::mem::replace(&mut self.pending, later);
        for (_, subject) in due {
            self.reclassify(subject);
        }
    }

    /// The classification clock T (`Nanos::MIN` before the first
    /// [`Tickets::advance`]).
    pub fn now(&self) -> Nanos {
        self.t
    }

    /// Counts for tickets received on `day` in `area` (any level: commune,
    /// district, province), classified as of the last T. A key once present
    /// stays, possibly all zero (when its only ticket moved to another day).
    pub fn counts(&self) -> &BTreeMap<(AreaId, NaiveDate), HotlineCounts> {
        &self.counts
    }

    /// The sum of [`Tickets::counts`] of `area` over the days `from..=to`.
    pub fn total(&self, area: AreaId, from: NaiveDate, to: NaiveDate) -> HotlineCounts {
        self.counts.range((area, from)..=(area, to)).map(|(_, c)| *c).sum()
    }

    /// The (area, day) keys whose counts changed since the last call, and
    /// clears that set. A key may be listed although its counts came back to
    /// what they were.
    pub fn take_dirty(&mut self) -> BTreeSet<(AreaId, NaiveDate)> {
        std::mem::take(&mut self.dirty)
    }

    /// The earliest instant at which some open ticket's classification
    /// changes with no new event: one nanosecond after the earliest running
    /// deadline (a ticket is overdue once T is *strictly* after it), so
    /// `advance(next_deadline)` turns it overdue. For the caller's timer.
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.pending.first().map(|(d, _)| d.saturating_add(1))
    }

    /// Distinct tickets held, including those still waiting for their
    /// `received` event.
    pub fn tickets(&self) -> usize {
        self.tickets.len()
    }

    /// The classification of one ticket as of T, `None` if unknown or not
    /// received yet.
    pub fn classification(&self, subject: &Digest) -> Option<Classification> {
        self.tickets.get(subject).and_then(|t| t.booked)
    }

    /// Classifies one ticket again and books the difference.
    fn reclassify(&mut self, subject: Digest) {
        let Some(ticket) = self.tickets.get_mut(&subject) else { return };
        let new = classify(&ticket.events, &self.calendar, self.t);
        let old = std::mem::replace(&mut ticket.booked, new);
        if old == new {
            if let Some(d) = new.and_then(|n| n.deadline) {
                self.pending.insert((d, subject));
            }
            return;
        }
        if let Some(o) = old {
            if let Some(d) = o.deadline {
                self.pending.remove(&(d, subject));
            }
            self.book(&o, false);
        }
        if let Some(n) = new {
            if let Some(d) = n.deadline {
                self.pending.insert((d, subject));
            }
            self.book(&n, true);
        }
    }

    /// Adds (or removes) one ticket's counts at every level of its area's chain.
    fn book(&mut self, c: &Classification, add: bool) {
        let delta = c.counts();
        for area in self.geo.chain(c.area) {
            let key = (area, c.day);
            let slot = self.counts.entry(key).or_default();
            if add {
                *slot += delta;
            } else {
                match slot.checked_sub(&delta) {
                    Some(v) => *slot = v,
                    None => debug_assert!(false, "hotline counts went below zero"),
                }
            }
            self.dirty.insert(key);
        }
    }
}

/// Formats a number the Vietnamese way: `1.493`.
fn vi_number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(ch);
    }
    out
}

/// The column headers of the province's monthly 1022 report, in order.
pub const REPORT_COLUMNS: [&str; 9] = [
    "Đơn vị",
    "Tổng số tin tiếp nhận",
    "Đã xử lý",
    "Đang xử lý",
    "Tin rác",
    "Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)",
    "Quá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)",
    "Tổng đài viên trả lời trực tiếp",
    "Chuyển các ngành xử lý",
];

/// The province's monthly 1022 figures as a tab-separated table: a title
/// line with the period (`dd/mm/yyyy`), the header row ([`REPORT_COLUMNS`])
/// and one row for `area_name`, numbers with `.` as thousands separator.
pub fn report_table(counts: &HotlineCounts, from: NaiveDate, to: NaiveDate, area_name: &str) -> String {
    let c = counts;
    let row = [
        area_name.to_owned(),
        vi_number(c.received),
        vi_number(c.processed),
        vi_number(c.in_progress),
        vi_number(c.spam),
        vi_number(c.overdue_specialist),
        vi_number(c.overdue_leadership),
        vi_number(c.answered),
        vi_number(c.forwarded),
    ];
    format!(
        "Tổng đài 1022: từ ngày {} đến ngày {}\n{}\n{}\n",
        from.format("%d/%m/%Y"),
        to.format("%d/%m/%Y"),
        REPORT_COLUMNS.join("\t"),
        row.join("\t")
    )
}

/// Deterministic ticket histories that reproduce the province's 1022
/// reports, for tests, benchmarks and `d06 simulate`.
///
/// A [`scenario::Scenario`] lists report periods, each with a [`scenario::Mix`] of ticket
/// outcomes, and the moment T the report was read at. [`scenario::generate`] turns it
/// into `hotline.ticket` facts spread over the province's areas and the
/// periods' days, with realistic histories: specialist and leadership
/// levels, escalations, forwarding, reopening, tickets received outside
/// working hours, on weekends and holidays, events stamped a moment before
/// their `received` event, later `received` events under other ids (which
/// the rules ignore), spam marks later lifted, and producer retries
/// (duplicated event ids). The same inputs always give the same facts.
pub mod scenario {
    use std::sync::Arc;

    use chrono::{DateTime, Duration, NaiveTime};

    use super::{working_hours, HotlineCounts};
    use crate::calendar::{local_to_nanos, WorkCalendar, DEFAULT_TIME_ZONE};
    use crate::fact::{Digest, Fact, FactKind, Nanos, TicketLevel, TicketStatus};
    use crate::geo::{AreaId, AreaLevel, Geography};
    use chrono::NaiveDate;

    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;

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

        fn recipes(&self) -> Vec<Recipe> {
            let mut out = Vec::new();
            let mut push = |n: u32, r: Recipe| out.extend(std::iter::repeat_n(r, n as usize));
            push(self.answered, Recipe::Answered);
            push(self.resolved, Recipe::Resolved);
            push(self.in_progress_forwarded, Recipe::InProgress { forwarded: true });
            push(self.in_progress_open, Recipe::InProgress { forwarded: false });
            push(self.spam, Recipe::Spam);
            for (level, late) in
                [(TicketLevel::Specialist, self.overdue_specialist), (TicketLevel::Leadership, self.overdue_leadership)]
            {
                push(late.answered, Recipe::Late { level, end: End::Answered });
                push(late.resolved, Recipe::Late { level, end: End::Resolved });
                push(late.open_forwarded, Recipe::Late { level, end: End::OpenForwarded });
                push(late.open, Recipe::Late { level, end: End::Open });
            }
            out
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
    fn local(day: NaiveDate, offset: i64) -> Nanos {
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

    /// How an overdue ticket ends.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum End {
        Answered,
        Resolved,
        OpenForwarded,
        Open,
    }

    /// One ticket to generate.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Recipe {
        Answered,
        Resolved,
        InProgress { forwarded: bool },
        Spam,
        Late { level: TicketLevel, end: End },
    }

    /// SplitMix64: small, fast, deterministic; not for secrets.
    #[derive(Clone, Debug)]
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `0..n` (0 when `n` is 0).
        fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
            }
        }

        /// True with probability `percent` / 100.
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        /// An instant in `(lo, hi]`, nearer `lo` more often; `lo + 1` when
        /// the interval is empty.
        fn within(&mut self, lo: Nanos, hi: Nanos) -> Nanos {
            let span = hi.saturating_sub(lo).saturating_sub(1).max(0) as u64;
            let a = self.below(span.saturating_add(1));
            let b = self.below(span.saturating_add(1));
            lo + 1 + a.min(b) as i64
        }
    }

    /// Shuffles `items` (Fisher–Yates), deterministically from `seed`.
    pub fn shuffle<T>(items: &mut [T], seed: u64) {
        let mut rng = Rng(seed ^ 0x5EED_5EED_5EED_5EED);
        for i in (1..items.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    struct Gen<'a> {
        cal: &'a WorkCalendar,
        communes: Vec<AreaId>,
        districts: Vec<AreaId>,
        t: Nanos,
        rng: Rng,
        seed: u64,
        ticket: u64,
        facts: Vec<Fact>,
        /// Per fact in `facts`, the clear ticket id its subject digests.
        ids: Vec<Arc<str>>,
    }

    /// One event of a ticket being generated.
    type Draft = (Nanos, TicketStatus, TicketLevel, AreaId);

    /// The `hotline.ticket` facts of `scenario`, received in the province
    /// of `geo` (communes, and districts when the geography has them),
    /// deadlines on `calendar`, deterministic in `seed`. The report periods'
    /// tickets classify, as of `scenario.t`, exactly as their [`Mix`]es say.
    /// Every event is at or before `scenario.t`; some facts are duplicated
    /// (same event id), in order of generation (shuffle them for
    /// out-of-order arrival).
    pub fn generate(geo: &Geography, calendar: &WorkCalendar, scenario: &Scenario, seed: u64) -> Vec<Fact> {
        generate_with_ids(geo, calendar, scenario, seed).into_iter().map(|(_, f)| f).collect()
    }

    /// [`generate`], each fact with the clear ticket id (the contract's
    /// `subject`) its digest stands for, so the stream can be written out as
    /// EVENTS-v1 messages and pseudonymised again by a real ingest.
    pub fn generate_with_ids(
        geo: &Geography,
        calendar: &WorkCalendar,
        scenario: &Scenario,
        seed: u64,
    ) -> Vec<(Arc<str>, Fact)> {
        let mut g = Gen {
            cal: calendar,
            communes: geo.of_level(AreaLevel::Commune).collect(),
            districts: geo.of_level(AreaLevel::District).collect(),
            t: scenario.t,
            rng: Rng(seed),
            seed,
            ticket: 0,
            facts: Vec::new(),
            ids: Vec::new(),
        };
        if g.communes.is_empty() {
            g.communes.push(geo.province());
        }
        for period in scenario.report.iter().chain(&scenario.other) {
            for recipe in period.mix.recipes() {
                g.ticket(period, recipe);
            }
        }
        g.ids.into_iter().zip(g.facts).collect()
    }

    impl Gen<'_> {
        fn area(&mut self) -> AreaId {
            if !self.districts.is_empty() && self.rng.chance(15) {
                self.districts[self.rng.below(self.districts.len() as u64) as usize]
            } else {
                self.communes[self.rng.below(self.communes.len() as u64) as usize]
            }
        }

        /// A receiving instant in the period, at least 3 hours before T.
        fn received_at(&mut self, p: &Period) -> Nanos {
            let days = (p.to - p.from).num_days().max(0) as u64 + 1;
            let mut day = p.from + Duration::days(self.rng.below(days) as i64);
            if !self.cal.is_working_day(day) && self.rng.chance(60) {
                // Fewer calls on days off: draw again once.
                day = p.from + Duration::days(self.rng.below(days) as i64);
            }
            let offset = if self.rng.chance(80) {
                7 * HOUR + self.rng.below((10 * HOUR) as u64) as i64
            } else {
                self.rng.below(DAY as u64) as i64
            };
            let at = local(day, offset / SECOND * SECOND);
            let latest = self.t - 3 * HOUR;
            if at > latest {
                latest - self.rng.below((6 * HOUR) as u64) as i64 / SECOND * SECOND
            } else {
                at
            }
        }

        fn deadline(&self, start: Nanos, level: TicketLevel) -> Nanos {
            self.cal.deadline(start, working_hours(level))
        }

        /// A receiving instant in the period whose deadline passed before T.
        fn received_late(&mut self, p: &Period, level: TicketLevel) -> Nanos {
            for _ in 0..1000 {
                let r = self.received_at(p);
                if self.deadline(r, level) < self.t - HOUR {
                    return r;
                }
            }
            local(p.from, 8 * HOUR)
        }

        fn level(&mut self) -> TicketLevel {
            if self.rng.chance(15) {
                TicketLevel::Leadership
            } else {
                TicketLevel::Specialist
            }
        }

        /// Closes the ticket (first event in `ev`) by `how` after `after` and by
        /// its deadline, sometimes escalated to leadership, sometimes reopened
        /// and closed again in time.
        fn close_in_time(&mut self, ev: &mut Vec<Draft>, start: Nanos, after: Nanos, how: TicketStatus) {
            let (_, _, level, area) = ev[0];
            let mut level = level;
            if level == TicketLevel::Specialist && how == TicketStatus::Answered && self.rng.chance(5) {
                // Escalated: the answer comes from leadership (48 h from then on).
                level = TicketLevel::Leadership;
            }
            let c = self.rng.within(after, self.deadline(start, level).min(self.t));
            ev.push((c, how, level, area));
            if c < self.t - 2 * HOUR && self.rng.chance(8) {
                let reopened = self.rng.within(c, (c + DAY).min(self.t - HOUR));
                ev.push((reopened, TicketStatus::Reopened, level, area));
                let again = self.rng.within(reopened, self.deadline(reopened, level).min(self.t));
                ev.push((again, how, level, area));
            }
        }

        fn ticket(&mut self, p: &Period, recipe: Recipe) {
            let level = match recipe {
                Recipe::Late { level, .. } => level,
                _ => self.level(),
            };
            let area = self.area();
            let r = match recipe {
                Recipe::Late { .. } => self.received_late(p, level),
                _ => self.received_at(p),
            };
            let deadline = self.deadline(r, level);
            let t = self.t;
            let mut ev: Vec<Draft> = vec![(r, TicketStatus::Received, level, area)];
            match recipe {
                Recipe::Answered => {
                    if self.rng.chance(3) {
                        // Marked spam by mistake, then answered: latest status decides.
                        let s = r + MINUTE + self.rng.below((20 * MINUTE) as u64) as i64;
                        ev.push((s, TicketStatus::Spam, level, area));
                        self.close_in_time(&mut ev, r, s, TicketStatus::Answered);
                    } else if self.rng.chance(3) {
                        // Answered on the call, stamped 2 s before `received`.
                        ev.push((r - 2 * SECOND, TicketStatus::Answered, level, area));
                    } else {
                        self.close_in_time(&mut ev, r, r, TicketStatus::Answered);
                    }
                }
                Recipe::Resolved => {
                    let f = if self.rng.chance(3) {
                        r - SECOND // forwarded on the call, stamped before `received`
                    } else {
                        self.rng.within(r, r + (deadline.min(t) - r) / 2)
                    };
                    ev.push((f, TicketStatus::Forwarded, level, area));
                    self.close_in_time(&mut ev, r, f.max(r), TicketStatus::Resolved);
                }
                Recipe::InProgress { forwarded } => {
                    if deadline >= t {
                        if forwarded {
                            let f = self.rng.within(r, t);
                            ev.push((f, TicketStatus::Forwarded, level, area));
                        }
                    } else {
                        // Received long before T: closed in time, reopened shortly before T.
                        let mut last = r;
                        let how = if forwarded {
                            last = self.rng.within(r, r + (deadline - r) / 2);
                            ev.push((last, TicketStatus::Forwarded, level, area));
                            TicketStatus::Resolved
                        } else {
                            TicketStatus::Answered
                        };
                        let c = self.rng.within(last, deadline);
                        ev.push((c, how, level, area));
                        let reopened = self.rng.within(c.max(t - 3 * HOUR), t);
                        ev.push((reopened, TicketStatus::Reopened, level, area));
                    }
                }
                Recipe::Spam => {
                    let mut last = r;
                    if self.rng.chance(20) {
                        last = self.rng.within(r, deadline.min(t));
                        ev.push((last, TicketStatus::Answered, level, area));
                    }
                    let s = self.rng.within(last, (last + DAY).min(t));
                    ev.push((s, TicketStatus::Spam, level, area));
                }
                Recipe::Late { end, .. } => match end {
                    End::Answered => ev.push((self.rng.within(deadline, t), TicketStatus::Answered, level, area)),
                    End::Resolved => {
                        ev.push((self.rng.within(r, deadline), TicketStatus::Forwarded, level, area));
                        ev.push((self.rng.within(deadline, t), TicketStatus::Resolved, level, area));
                    }
                    End::OpenForwarded => ev.push((self.rng.within(r, t), TicketStatus::Forwarded, level, area)),
                    End::Open => {
                        // Sometimes answered in time, reopened, then left open past the new deadline.
                        let c = self.rng.within(r, deadline);
                        let reopened = self.rng.within(c, c + 2 * HOUR);
                        if self.rng.chance(50) && self.deadline(reopened, level) < t {
                            ev.push((c, TicketStatus::Answered, level, area));
                            ev.push((reopened, TicketStatus::Reopened, level, area));
                        }
                    }
                },
            }
            if self.rng.chance(2) {
                // The same ticket received again under another id, maybe elsewhere: ignored.
                let again = self.rng.within(r, t);
                let other = self.area();
                let lvl = self.level();
                ev.push((again, TicketStatus::Received, lvl, other));
            }
            self.emit(&ev);
        }

        fn emit(&mut self, ev: &[Draft]) {
            self.ticket += 1;
            let key = format!("d06-scenario-{}-{}", self.seed, self.ticket);
            let subject = Digest(xxhash_rust::xxh3::xxh3_128(key.as_bytes()).to_le_bytes());
            let key: Arc<str> = key.into();
            for (n, &(at, status, level, area)) in ev.iter().enumerate() {
                let fact = Fact {
                    event_id: format!("hl-{:x}-{:06}-{:02}", self.seed, self.ticket, n).into(),
                    subject,
                    occurred_at: at,
                    day: local_day(at),
                    area,
                    kind: FactKind::Hotline { status, level },
                };
                if self.rng.chance(4) {
                    // A producer retry: the same event id again.
                    self.facts.push(fact.clone());
                    self.ids.push(key.clone());
                }
                self.facts.push(fact);
                self.ids.push(key.clone());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::scenario::{self, local_day};
    use super::*;
    use crate::geo::{AreaLevel, GeographyVersion};
    use chrono::Duration;

    use TicketLevel::{Leadership, Specialist};
    use TicketStatus::{Answered, Forwarded, Received, Reopened, Resolved, Spam};

    const NS: i64 = 1;

    /// Local time in Vietnam (UTC+7) as unix nanos.
    fn vn(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Nanos {
        let local = NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap();
        (local - Duration::hours(7)).and_utc().timestamp_nanos_opt().unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn geo() -> Arc<Geography> {
        Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap())
    }

    fn tickets() -> Tickets {
        Tickets::new(geo(), Arc::new(WorkCalendar::embedded().unwrap()))
    }

    /// Phường Thác Mơ (25216) in Thị xã Phước Long (688), province 70.
    fn commune(t: &Tickets) -> AreaId {
        t.geo.resolve(Some("25216"), None).unwrap()
    }

    fn other_commune(t: &Tickets) -> AreaId {
        t.geo.of_level(AreaLevel::Commune).find(|a| *a != commune(t)).unwrap()
    }

    fn fact(ticket: u8, id: &str, at: Nanos, status: TicketStatus, level: TicketLevel, area: AreaId) -> Fact {
        Fact {
            event_id: id.into(),
            subject: Digest([ticket; 16]),
            occurred_at: at,
            day: local_day(at),
            area,
            kind: FactKind::Hotline { status, level },
        }
    }

    /// Applies (ticket 1, id, time, status, level) events in the commune.
    fn apply_all(t: &mut Tickets, events: &[(&str, Nanos, TicketStatus, TicketLevel)]) {
        let area = commune(t);
        for &(id, at, status, level) in events {
            assert_eq!(t.apply(&fact(1, id, at, status, level, area)), Outcome::Applied);
        }
    }

    fn at_commune(t: &Tickets, day: NaiveDate) -> HotlineCounts {
        t.counts().get(&(commune(t), day)).copied().unwrap_or_default()
    }

    fn one(f: impl FnOnce(&mut HotlineCounts)) -> HotlineCounts {
        let mut c = HotlineCounts { received: 1, ..Default::default() };
        f(&mut c);
        c
    }

    #[test]
    fn answered_in_time_is_processed_and_answered_at_every_level() {
        let mut t = tickets();
        let mon = date(2024, 5, 13);
        apply_all(
            &mut t,
            &[
                ("a1", vn(2024, 5, 13, 8, 0), Received, Specialist),
                ("a2", vn(2024, 5, 13, 15, 0), Answered, Specialist),
            ],
        );
        let want = one(|c| {
            c.processed = 1;
            c.answered = 1;
        });
        let chain: Vec<_> = t.geo.chain(commune(&t)).collect();
        assert_eq!(chain.len(), 3);
        for a in &chain {
            assert_eq!(t.counts()[&(*a, mon)], want);
        }
        assert_eq!(t.counts().len(), 3);
        assert_eq!(t.take_dirty(), chain.iter().map(|a| (*a, mon)).collect());
        assert_eq!(t.tickets(), 1);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn closed_at_the_deadline_is_processed_one_nanosecond_later_overdue() {
        let mut t = tickets();
        let area = commune(&t);
        // Mon 13/5/2024 07:00 + 8 working hours = 16:30 the same day.
        let (r, d) = (vn(2024, 5, 13, 7, 0), vn(2024, 5, 13, 16, 30));
        for f in [
            fact(1, "a1", r, Received, Specialist, area),
            fact(1, "a2", d, Answered, Specialist, area),
            fact(2, "b1", r, Received, Specialist, area),
            fact(2, "b2", d + NS, Answered, Specialist, area),
        ] {
            t.apply(&f);
        }
        assert_eq!(t.classification(&Digest([1; 16])).unwrap().class, Class::Processed);
        assert_eq!(t.classification(&Digest([2; 16])).unwrap().class, Class::Overdue(Specialist));
        // Answered late is still answered directly.
        assert_eq!(
            at_commune(&t, date(2024, 5, 13)),
            HotlineCounts { received: 2, answered: 2, processed: 1, overdue_specialist: 1, ..Default::default() }
        );
    }

    #[test]
    fn an_open_ticket_turns_overdue_when_t_passes_its_deadline() {
        let mut t = tickets();
        let fri = date(2024, 5, 3);
        // Fri 3/5/2024 13:00, specialist: 3.5 h on Friday, then the make-up
        // Saturday 4/5 07:00–11:30 = 4.5 h → deadline Sat 4/5 11:30.
        let deadline = vn(2024, 5, 4, 11, 30);
        apply_all(&mut t, &[("a1", vn(2024, 5, 3, 13, 0), Received, Specialist)]);
        t.advance(vn(2024, 5, 3, 16, 0));
        assert_eq!(at_commune(&t, fri), one(|c| c.in_progress = 1));
        assert_eq!(t.next_deadline(), Some(deadline + NS));
        t.take_dirty();
        // At the deadline itself: still in progress, nothing changes.
        t.advance(deadline);
        assert_eq!(at_commune(&t, fri), one(|c| c.in_progress = 1));
        assert!(t.take_dirty().is_empty());
        // Where next_deadline pointed: overdue, with no new event.
        t.advance(t.next_deadline().unwrap());
        assert_eq!(at_commune(&t, fri), one(|c| c.overdue_specialist = 1));
        assert_eq!(t.take_dirty().len(), 3, "commune, district and province of 3/5");
        assert_eq!(t.next_deadline(), None);
        // T never moves back: overdue stays.
        t.advance(vn(2024, 5, 3, 14, 0));
        assert_eq!(t.now(), deadline + NS);
        assert_eq!(at_commune(&t, fri), one(|c| c.overdue_specialist = 1));
    }

    #[test]
    fn next_deadline_is_the_earliest_running_one() {
        let mut t = tickets();
        let area = commune(&t);
        // Leadership Mon 13/5/2024 07:00 → Mon 20/5 16:30; specialist Tue 14/5 07:00 → Tue 16:30.
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 7, 0), Received, Leadership, area));
        t.apply(&fact(2, "b1", vn(2024, 5, 14, 7, 0), Received, Specialist, area));
        assert_eq!(t.next_deadline(), Some(vn(2024, 5, 14, 16, 30) + NS));
        t.apply(&fact(2, "b2", vn(2024, 5, 14, 9, 0), Answered, Specialist, area));
        assert_eq!(t.next_deadline(), Some(vn(2024, 5, 20, 16, 30) + NS));
    }

    #[test]
    fn spam_takes_precedence_and_only_while_it_is_the_latest_status() {
        let mut t = tickets();
        let area = commune(&t);
        // Answered late (overdue), then marked spam: spam only.
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 7, 0), Received, Specialist, area));
        t.apply(&fact(1, "a2", vn(2024, 5, 15, 7, 0), Answered, Specialist, area));
        t.apply(&fact(1, "a3", vn(2024, 5, 15, 8, 0), Spam, Specialist, area));
        // Marked spam, then answered in time: not spam.
        t.apply(&fact(2, "b1", vn(2024, 5, 13, 8, 0), Received, Specialist, area));
        t.apply(&fact(2, "b2", vn(2024, 5, 13, 8, 5), Spam, Specialist, area));
        t.apply(&fact(2, "b3", vn(2024, 5, 13, 9, 0), Answered, Specialist, area));
        assert_eq!(t.classification(&Digest([1; 16])).unwrap().class, Class::Spam);
        assert_eq!(
            at_commune(&t, date(2024, 5, 13)),
            HotlineCounts { received: 2, spam: 1, processed: 1, answered: 1, ..Default::default() }
        );
        // An open spam ticket has no running deadline.
        t.apply(&fact(3, "c1", vn(2024, 5, 13, 10, 0), Received, Specialist, area));
        t.apply(&fact(3, "c2", vn(2024, 5, 13, 10, 1), Spam, Specialist, area));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn reopening_starts_a_new_deadline_from_the_reopening() {
        let mut t = tickets();
        let mon = date(2024, 5, 13);
        // Answered in time, reopened Tue 14/5 10:00 → new deadline Wed 15/5 10:00.
        apply_all(
            &mut t,
            &[
                ("a1", vn(2024, 5, 13, 8, 0), Received, Specialist),
                ("a2", vn(2024, 5, 13, 9, 0), Answered, Specialist),
                ("a3", vn(2024, 5, 14, 10, 0), Reopened, Specialist),
            ],
        );
        t.advance(vn(2024, 5, 15, 10, 0));
        assert_eq!(at_commune(&t, mon), one(|c| c.in_progress = 1), "reopened and open: not answered");
        t.advance(vn(2024, 5, 15, 10, 0) + NS);
        assert_eq!(at_commune(&t, mon), one(|c| c.overdue_specialist = 1));
    }

    #[test]
    fn overdue_once_stays_overdue_after_a_reopen() {
        let mut t = tickets();
        // Deadline Tue 14/5 08:00; answered 09:00 (late); reopened and answered in time.
        apply_all(
            &mut t,
            &[
                ("a1", vn(2024, 5, 13, 8, 0), Received, Specialist),
                ("a2", vn(2024, 5, 14, 9, 0), Answered, Specialist),
                ("a3", vn(2024, 5, 14, 10, 0), Reopened, Specialist),
                ("a4", vn(2024, 5, 14, 11, 0), Answered, Specialist),
            ],
        );
        t.advance(vn(2024, 5, 20, 0, 0));
        assert_eq!(
            at_commune(&t, date(2024, 5, 13)),
            one(|c| {
                c.overdue_specialist = 1;
                c.answered = 1;
            })
        );
    }

    #[test]
    fn reopening_an_open_ticket_does_not_extend_its_deadline() {
        let mut t = tickets();
        // Deadline Tue 14/5 08:00; a `reopened` at 07:30 while open changes nothing.
        apply_all(
            &mut t,
            &[
                ("a1", vn(2024, 5, 13, 8, 0), Received, Specialist),
                ("a2", vn(2024, 5, 14, 7, 30), Reopened, Specialist),
            ],
        );
        assert_eq!(t.next_deadline(), Some(vn(2024, 5, 14, 8, 0) + NS));
        t.advance(vn(2024, 5, 14, 9, 0));
        assert_eq!(at_commune(&t, date(2024, 5, 13)), one(|c| c.overdue_specialist = 1));
    }

    #[test]
    fn answered_means_the_last_close_was_an_answer_and_no_forwarding() {
        let mut t = tickets();
        let area = commune(&t);
        let h = |d, hh| vn(2024, 5, d, hh, 0);
        // Resolved, reopened, answered: answered.
        for (id, at, s) in [
            ("a1", h(13, 8), Received),
            ("a2", h(13, 9), Resolved),
            ("a3", h(13, 10), Reopened),
            ("a4", h(13, 11), Answered),
        ] {
            t.apply(&fact(1, id, at, s, Specialist, area));
        }
        // Answered, reopened, resolved: processed, neither answered nor forwarded.
        for (id, at, s) in [
            ("b1", h(13, 8), Received),
            ("b2", h(13, 9), Answered),
            ("b3", h(13, 10), Reopened),
            ("b4", h(13, 11), Resolved),
        ] {
            t.apply(&fact(2, id, at, s, Specialist, area));
        }
        // Forwarded, then answered: forwarded, not answered.
        for (id, at, s) in [("c1", h(13, 8), Received), ("c2", h(13, 9), Forwarded), ("c3", h(13, 10), Answered)] {
            t.apply(&fact(3, id, at, s, Specialist, area));
        }
        let c = |n| t.classification(&Digest([n; 16])).unwrap();
        assert!(c(1).answered && !c(1).forwarded);
        assert!(!c(2).answered && !c(2).forwarded && c(2).class == Class::Processed);
        assert!(!c(3).answered && c(3).forwarded && c(3).class == Class::Processed);
        assert_eq!(
            at_commune(&t, date(2024, 5, 13)),
            HotlineCounts { received: 3, processed: 3, answered: 1, forwarded: 1, ..Default::default() }
        );
    }

    #[test]
    fn the_level_is_the_latest_level_for_deadlines_and_columns() {
        let mut t = tickets();
        let area = commune(&t);
        // Specialist Mon 13/5 08:00 (8 h → Tue 08:00), escalated by a leadership event
        // Tue 10:00, resolved Wed 10:00: judged on 48 h (→ Tue 21/5 08:00), processed.
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 8, 0), Received, Specialist, area));
        t.apply(&fact(1, "a2", vn(2024, 5, 14, 10, 0), Forwarded, Leadership, area));
        t.apply(&fact(1, "a3", vn(2024, 5, 15, 10, 0), Resolved, Leadership, area));
        // Leadership Mon 13/5 08:00, latest event specialist: judged on 8 h (→ Tue 08:00).
        t.apply(&fact(2, "b1", vn(2024, 5, 13, 8, 0), Received, Leadership, area));
        t.apply(&fact(2, "b2", vn(2024, 5, 13, 9, 0), Forwarded, Specialist, area));
        t.advance(vn(2024, 5, 14, 9, 0));
        assert_eq!(t.classification(&Digest([1; 16])).unwrap().class, Class::Processed);
        assert_eq!(t.classification(&Digest([2; 16])).unwrap().class, Class::Overdue(Specialist));
        // The overdue column follows the latest level: a later leadership event moves it
        // (and here, with 48 h from Mon 08:00, back to in progress).
        t.apply(&fact(2, "b3", vn(2024, 5, 14, 9, 0), Forwarded, Leadership, area));
        assert_eq!(t.classification(&Digest([2; 16])).unwrap().class, Class::InProgress);
    }

    #[test]
    fn events_wait_for_the_received_event() {
        let mut t = tickets();
        let area = commune(&t);
        // Arrives first, occurred after the received event.
        t.apply(&fact(1, "a2", vn(2024, 5, 13, 9, 0), Answered, Specialist, area));
        assert_eq!(t.tickets(), 1);
        assert!(t.counts().is_empty() && t.take_dirty().is_empty());
        assert_eq!(t.classification(&Digest([1; 16])), None);
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 8, 0), Received, Specialist, area));
        assert_eq!(
            at_commune(&t, date(2024, 5, 13)),
            one(|c| {
                c.processed = 1;
                c.answered = 1;
            })
        );
        // Stamped 2 s before `received` (clock skew): takes effect at the received instant.
        t.apply(&fact(2, "b2", vn(2024, 5, 13, 8, 0) - 2_000_000_000, Answered, Specialist, area));
        t.apply(&fact(2, "b1", vn(2024, 5, 13, 8, 0), Received, Specialist, area));
        t.advance(vn(2024, 6, 1, 0, 0));
        assert_eq!(t.classification(&Digest([2; 16])).unwrap().class, Class::Processed);
        assert!(t.classification(&Digest([2; 16])).unwrap().answered);
    }

    #[test]
    fn the_first_received_event_sets_area_and_day() {
        let mut t = tickets();
        let (x, y) = (commune(&t), other_commune(&t));
        // Received in X on Mon 13/5 08:00, specialist.
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 8, 0), Received, Specialist, x));
        // A later `received` under another id, elsewhere, leadership: ignored
        // entirely (its level too: still judged on 8 h).
        t.apply(&fact(1, "a9", vn(2024, 5, 14, 8, 0), Received, Leadership, y));
        t.advance(vn(2024, 5, 14, 9, 0));
        assert_eq!(t.counts().get(&(y, date(2024, 5, 14))), None);
        assert_eq!(t.counts()[&(x, date(2024, 5, 13))], one(|c| c.overdue_specialist = 1));
        t.take_dirty();
        // An earlier `received` arrives late: the ticket moves to Y, Sunday 12/5 20:00.
        // Working time starts Mon 07:00 → deadline Mon 16:30 → still overdue.
        t.apply(&fact(1, "a0", vn(2024, 5, 12, 20, 0), Received, Specialist, y));
        assert!(t.counts()[&(x, date(2024, 5, 13))].is_zero());
        assert_eq!(t.counts()[&(y, date(2024, 5, 12))], one(|c| c.overdue_specialist = 1));
        let dirty = t.take_dirty();
        let province = t.geo.province();
        for key in [
            (x, date(2024, 5, 13)),
            (y, date(2024, 5, 12)),
            (province, date(2024, 5, 13)),
            (province, date(2024, 5, 12)),
        ] {
            assert!(dirty.contains(&key), "{key:?}");
        }
        assert!(t.counts()[&(province, date(2024, 5, 13))].is_zero());
    }

    #[test]
    fn duplicates_change_nothing_and_the_first_copy_stands() {
        let mut t = tickets();
        let area = commune(&t);
        let received = fact(1, "a1", vn(2024, 5, 13, 8, 0), Received, Specialist, area);
        assert_eq!(t.apply(&received), Outcome::Applied);
        t.take_dirty();
        assert_eq!(t.apply(&received), Outcome::Duplicate);
        // Same id, other content: still a duplicate.
        assert_eq!(t.apply(&fact(1, "a1", vn(2024, 5, 13, 8, 0), Spam, Leadership, area)), Outcome::Duplicate);
        assert!(t.take_dirty().is_empty());
        assert_eq!(at_commune(&t, date(2024, 5, 13)), one(|c| c.in_progress = 1));
    }

    #[test]
    fn a_district_only_ticket_counts_in_its_district_and_the_province() {
        let mut t = tickets();
        let district = t.geo.resolve(None, Some("688")).unwrap();
        t.apply(&fact(1, "a1", vn(2024, 5, 13, 8, 0), Received, Specialist, district));
        let keys: Vec<_> = t.counts().keys().copied().collect();
        assert_eq!(keys, vec![(t.geo.province(), date(2024, 5, 13)), (district, date(2024, 5, 13))]);
    }

    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, first.clone());
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn arrival_order_does_not_change_the_counts() {
        let geo = geo();
        let x = geo.resolve(Some("25216"), None).unwrap();
        let y = geo.resolve(Some("25210"), None).unwrap();
        let h = |d, hh| vn(2024, 5, d, hh, 0);
        let facts = vec![
            fact(1, "a1", h(13, 8), Received, Specialist, x),
            fact(1, "a2", h(13, 9), Forwarded, Specialist, x),
            fact(1, "a3", h(13, 10), Resolved, Specialist, x),
            fact(1, "a4", h(14, 10), Reopened, Leadership, x),
            fact(1, "a5", h(12, 23), Received, Specialist, y),
            fact(1, "a6", h(13, 7), Spam, Specialist, x),
        ];
        let cal = Arc::new(WorkCalendar::embedded().unwrap());
        let run = |order: &[Fact]| {
            let mut t = Tickets::new(geo.clone(), cal.clone());
            t.advance(h(16, 12));
            for f in order {
                t.apply(f);
            }
            t.counts().iter().filter(|(_, c)| !c.is_zero()).map(|(k, c)| (*k, *c)).collect::<Vec<_>>()
        };
        let want = run(&facts);
        // Reopened Tue 14/5 10:00 at leadership level → 48 h, open at T = Thu 16/5 12:00.
        assert_eq!(
            want.iter().find(|(k, _)| *k == (y, date(2024, 5, 12))).unwrap().1,
            one(|c| {
                c.in_progress = 1;
                c.forwarded = 1;
            })
        );
        for order in permutations(&facts) {
            assert_eq!(run(&order), want);
        }
    }

    #[test]
    fn counts_add_and_subtract() {
        let a = one(|c| c.processed = 1);
        let b = one(|c| c.spam = 1);
        let mut s = a + b;
        assert_eq!(s, HotlineCounts { received: 2, processed: 1, spam: 1, ..Default::default() });
        s += b;
        assert_eq!(s.spam, 2);
        assert_eq!(s.checked_sub(&b).unwrap(), a + b);
        assert_eq!(a.checked_sub(&b), None);
        assert_eq!([a, b, b].into_iter().sum::<HotlineCounts>(), s);
    }

    #[test]
    fn vietnamese_numbers() {
        assert_eq!(vi_number(0), "0");
        assert_eq!(vi_number(999), "999");
        assert_eq!(vi_number(1000), "1.000");
        assert_eq!(vi_number(1493), "1.493");
        assert_eq!(vi_number(1_234_567), "1.234.567");
    }

    #[test]
    fn report_table_has_the_province_columns() {
        let counts = HotlineCounts {
            received: 1493,
            answered: 1293,
            forwarded: 151,
            processed: 1434,
            in_progress: 5,
            spam: 47,
            overdue_specialist: 1,
            overdue_leadership: 6,
        };
        let table = report_table(&counts, date(2023, 1, 1), date(2023, 7, 19), "Tỉnh Bình Phước");
        assert_eq!(
            table,
            "Tổng đài 1022: từ ngày 01/01/2023 đến ngày 19/07/2023\n\
             Đơn vị\tTổng số tin tiếp nhận\tĐã xử lý\tĐang xử lý\tTin rác\t\
             Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)\tQuá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)\t\
             Tổng đài viên trả lời trực tiếp\tChuyển các ngành xử lý\n\
             Tỉnh Bình Phước\t1.493\t1.434\t5\t47\t1\t6\t1.293\t151\n"
        );
    }

    /// Applies the facts shuffled, split over 3 shards by subject digest, at
    /// T; returns the shards and how many duplicates they reported.
    fn run_sharded(geo: &Arc<Geography>, facts: &[Fact], t: Nanos, seed: u64) -> (Vec<Tickets>, usize) {
        let cal = Arc::new(WorkCalendar::embedded().unwrap());
        let mut shards: Vec<_> = (0..3).map(|_| Tickets::new(geo.clone(), cal.clone())).collect();
        let mut shuffled = facts.to_vec();
        scenario::shuffle(&mut shuffled, seed);
        let mut duplicates = 0;
        for f in &shuffled {
            if shards[f.subject.shard(3) as usize].apply(f) == Outcome::Duplicate {
                duplicates += 1;
            }
        }
        for s in &mut shards {
            s.advance(t);
        }
        (shards, duplicates)
    }

    fn province_total(geo: &Geography, shards: &[Tickets], from: NaiveDate, to: NaiveDate) -> HotlineCounts {
        shards.iter().map(|s| s.total(geo.province(), from, to)).sum()
    }

    /// What every generated history must show, whatever the report.
    fn check_realism(facts: &[Fact], shards: &[Tickets], duplicates: usize) {
        let distinct: HashSet<&str> = facts.iter().map(|f| &*f.event_id).collect();
        assert_eq!(duplicates, facts.len() - distinct.len());
        assert!(duplicates > 20, "producer retries: {duplicates}");
        let status =
            |s| facts.iter().filter(|f| matches!(f.kind, FactKind::Hotline { status, .. } if status == s)).count();
        assert!(status(Reopened) > 10, "reopened: {}", status(Reopened));
        assert!(status(Forwarded) > 10);
        assert!(facts.iter().any(|f| matches!(f.kind, FactKind::Hotline { level: Leadership, .. })));
        // Per ticket: events stamped before its first `received`, and second `received` events.
        let mut by_ticket: HashMap<Digest, Vec<&Fact>> = HashMap::new();
        for f in facts {
            by_ticket.entry(f.subject).or_default().push(f);
        }
        let (mut early, mut again) = (0, 0);
        for evs in by_ticket.values() {
            let received: Vec<_> =
                evs.iter().filter(|f| matches!(f.kind, FactKind::Hotline { status: Received, .. })).collect();
            let first = received.iter().map(|f| f.occurred_at).min().unwrap();
            early += usize::from(evs.iter().any(|f| f.occurred_at < first));
            again += usize::from(received.iter().map(|f| &f.event_id).collect::<HashSet<_>>().len() > 1);
        }
        assert!(early > 3 && again > 3, "stamped before received: {early}, received twice: {again}");
        // Received outside working hours.
        let cal = WorkCalendar::embedded().unwrap();
        assert!(facts.iter().any(|f| cal.deadline(f.occurred_at, 0) != f.occurred_at));
        // Every shard holds tickets; every (area, day) adds up.
        for s in shards {
            assert!(s.tickets() > 100);
            for c in s.counts().values() {
                assert_eq!(c.received, c.spam + c.overdue() + c.processed + c.in_progress);
                assert!(c.answered + c.forwarded + c.spam <= c.received);
            }
        }
    }

    #[test]
    fn reproduces_the_2023_report() {
        let geo = geo();
        let cal = WorkCalendar::embedded().unwrap();
        let sc = scenario::report_2023();
        let facts = scenario::generate(&geo, &cal, &sc, 2023);
        assert_eq!(sc.t, vn(2023, 7, 20, 0, 0) - NS, "T = end of 19/7/2023");
        let (shards, duplicates) = run_sharded(&geo, &facts, sc.t, 7);
        check_realism(&facts, &shards, duplicates);
        // 1/1–19/7/2023: 1,493 = 1,434 processed + 5 in progress + 47 spam + 1 + 6 overdue.
        let all = province_total(&geo, &shards, date(2023, 1, 1), date(2023, 7, 19));
        assert_eq!(all.received, 1493);
        assert_eq!(all.processed, 1434);
        assert_eq!(all.in_progress, 5);
        assert_eq!(all.spam, 47);
        assert_eq!(all.overdue_specialist, 1);
        assert_eq!(all.overdue_leadership, 6);
        // Not in the report: the split this scenario chose.
        assert_eq!((all.answered, all.forwarded), (1293, 151));
        assert_eq!(all, sc.expected());
        // 19/6–19/7/2023: 300 = 290 + 4 + 5 + 1 + 0.
        let last = province_total(&geo, &shards, date(2023, 6, 19), date(2023, 7, 19));
        assert_eq!(
            (
                last.received,
                last.processed,
                last.in_progress,
                last.spam,
                last.overdue_specialist,
                last.overdue_leadership
            ),
            (300, 290, 4, 5, 1, 0)
        );
        // Tickets of December 2022 are outside the report.
        assert_eq!(province_total(&geo, &shards, date(2022, 12, 1), date(2022, 12, 31)).received, 25);
        // The district and commune figures add up to the province's.
        let districts: HotlineCounts = geo
            .of_level(AreaLevel::District)
            .map(|d| shards.iter().map(|s| s.total(d, date(2023, 1, 1), date(2023, 7, 19))).sum::<HotlineCounts>())
            .sum();
        assert_eq!(districts, all);
    }

    #[test]
    fn reproduces_the_2024_report() {
        let geo = geo();
        let cal = WorkCalendar::embedded().unwrap();
        let sc = scenario::report_2024();
        let facts = scenario::generate(&geo, &cal, &sc, 2024);
        let (shards, duplicates) = run_sharded(&geo, &facts, sc.t, 11);
        check_realism(&facts, &shards, duplicates);
        // 22/4–22/5/2024: 299 = 293 processed + 6 in progress; 268 answered + 31 forwarded.
        let all = province_total(&geo, &shards, date(2024, 4, 22), date(2024, 5, 22));
        assert_eq!(
            all,
            HotlineCounts {
                received: 299,
                processed: 293,
                in_progress: 6,
                answered: 268,
                forwarded: 31,
                ..Default::default()
            }
        );
        // Some tickets were received on the 27/4–1/5 holidays.
        let holidays = province_total(&geo, &shards, date(2024, 4, 27), date(2024, 5, 1));
        assert!(holidays.received > 0);
        // One shard with the facts in generation order gives the same figures.
        let mut single = Tickets::new(geo.clone(), Arc::new(cal));
        for f in &facts {
            single.apply(f);
        }
        single.advance(sc.t);
        // (Keys left all zero by a ticket that moved depend on arrival order: compare the others.)
        let mut summed: BTreeMap<(AreaId, NaiveDate), HotlineCounts> = BTreeMap::new();
        for s in &shards {
            for (k, c) in s.counts() {
                *summed.entry(*k).or_default() += *c;
            }
        }
        summed.retain(|_, c| !c.is_zero());
        let single: BTreeMap<_, _> =
            single.counts().iter().filter(|(_, c)| !c.is_zero()).map(|(k, c)| (*k, *c)).collect();
        assert!(single.len() > 300, "{} keys", single.len());
        assert!(single == summed, "one shard in order and three shuffled disagree");
        // The in-progress tickets run out after T: next_deadline is after T.
        assert!(shards.iter().filter_map(Tickets::next_deadline).all(|d| d > sc.t));
    }

    #[test]
    fn the_2024_report_also_holds_in_the_post_2025_geography() {
        let geo = Arc::new(Geography::load(GeographyVersion::Post2025).unwrap());
        let cal = WorkCalendar::embedded().unwrap();
        let sc = scenario::report_2024();
        let facts = scenario::generate(&geo, &cal, &sc, 5);
        let (shards, _) = run_sharded(&geo, &facts, sc.t, 5);
        let all = province_total(&geo, &shards, sc.from(), sc.to());
        assert_eq!((all.received, all.processed, all.in_progress, all.answered, all.forwarded), (299, 293, 6, 268, 31));
    }

    #[test]
    fn generation_is_deterministic() {
        let geo = geo();
        let cal = WorkCalendar::embedded().unwrap();
        let sc = scenario::report_2024();
        assert_eq!(scenario::generate(&geo, &cal, &sc, 1), scenario::generate(&geo, &cal, &sc, 1));
        assert_ne!(scenario::generate(&geo, &cal, &sc, 1), scenario::generate(&geo, &cal, &sc, 2));
        assert!(scenario::generate(&geo, &cal, &sc, 1).iter().all(|f| f.occurred_at <= sc.t));
    }

    #[test]
    fn the_scenarios_hold_for_any_seed() {
        let geo = geo();
        let cal = Arc::new(WorkCalendar::embedded().unwrap());
        for seed in 100..110 {
            for sc in [scenario::report_2023(), scenario::report_2024()] {
                let facts = scenario::generate(&geo, &cal, &sc, seed);
                let mut t = Tickets::new(geo.clone(), cal.clone());
                for f in &facts {
                    t.apply(f);
                }
                t.advance(sc.t);
                assert_eq!(t.total(geo.province(), sc.from(), sc.to()), sc.expected(), "seed {seed}, {}", sc.name);
            }
        }
    }
}
