//! Turning a [`Scenario`] into `hotline.ticket` facts with realistic
//! histories; each report period's tickets classify, as of T, exactly as
//! its [`Mix`] says.

use std::sync::Arc;

use aggregator::calendar::WorkCalendar;
use aggregator::fact::{Digest, Fact, FactKind, Nanos, TicketLevel, TicketStatus};
use aggregator::geo::{AreaId, AreaLevel, Geography};
use aggregator::hotline::working_hours;
use chrono::Duration;

use super::reports::{local, local_day, Mix, Period, Scenario, DAY, HOUR, MINUTE, SECOND};
use crate::rng::Rng;

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

impl Mix {
    /// The tickets of the mix, one recipe each.
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
        if !self.districts.is_empty() && self.rng.percent(15) {
            self.districts[self.rng.below(self.districts.len() as u64) as usize]
        } else {
            self.communes[self.rng.below(self.communes.len() as u64) as usize]
        }
    }

    /// A receiving instant in the period, at least 3 hours before T.
    fn received_at(&mut self, p: &Period) -> Nanos {
        let days = (p.to - p.from).num_days().max(0) as u64 + 1;
        let mut day = p.from + Duration::days(self.rng.below(days) as i64);
        if !self.cal.is_working_day(day) && self.rng.percent(60) {
            // Fewer calls on days off: draw again once.
            day = p.from + Duration::days(self.rng.below(days) as i64);
        }
        let offset = if self.rng.percent(80) {
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
        if self.rng.percent(15) {
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
        if level == TicketLevel::Specialist && how == TicketStatus::Answered && self.rng.percent(5) {
            // Escalated: the answer comes from leadership (48 h from then on).
            level = TicketLevel::Leadership;
        }
        let c = self.rng.within(after, self.deadline(start, level).min(self.t));
        ev.push((c, how, level, area));
        if c < self.t - 2 * HOUR && self.rng.percent(8) {
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
                if self.rng.percent(3) {
                    // Marked spam by mistake, then answered: latest status decides.
                    let s = r + MINUTE + self.rng.below((20 * MINUTE) as u64) as i64;
                    ev.push((s, TicketStatus::Spam, level, area));
                    self.close_in_time(&mut ev, r, s, TicketStatus::Answered);
                } else if self.rng.percent(3) {
                    // Answered on the call, stamped 2 s before `received`.
                    ev.push((r - 2 * SECOND, TicketStatus::Answered, level, area));
                } else {
                    self.close_in_time(&mut ev, r, r, TicketStatus::Answered);
                }
            }
            Recipe::Resolved => {
                let f = if self.rng.percent(3) {
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
                if self.rng.percent(20) {
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
                    if self.rng.percent(50) && self.deadline(reopened, level) < t {
                        ev.push((c, TicketStatus::Answered, level, area));
                        ev.push((reopened, TicketStatus::Reopened, level, area));
                    }
                }
            },
        }
        if self.rng.percent(2) {
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
            if self.rng.percent(4) {
                // A producer retry: the same event id again.
                self.facts.push(fact.clone());
                self.ids.push(key.clone());
            }
            self.facts.push(fact);
            self.ids.push(key.clone());
        }
    }
}
