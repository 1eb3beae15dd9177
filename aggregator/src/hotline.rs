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

mod snapshot;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geo::{AreaLevel, GeographyVersion};
    use chrono::Duration;

    use TicketLevel::{Leadership, Specialist};
    use TicketStatus::{Answered, Forwarded, Received, Reopened, Resolved, Spam};

    const NS: i64 = 1;

    /// The local day (Asia/Ho_Chi_Minh) of an instant.
    fn local_day(at: Nanos) -> NaiveDate {
        chrono::DateTime::from_timestamp_nanos(at).with_timezone(&crate::calendar::DEFAULT_TIME_ZONE).date_naive()
    }

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
}
