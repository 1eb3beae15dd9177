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
mod tests;
