//! The hotline tickets' unit tests: areas and days of a ticket, deadlines in working time, the report's columns.

#![allow(clippy::unwrap_used)]

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
        &[("a1", vn(2024, 5, 13, 8, 0), Received, Specialist), ("a2", vn(2024, 5, 13, 15, 0), Answered, Specialist)],
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
        &[("a1", vn(2024, 5, 13, 8, 0), Received, Specialist), ("a2", vn(2024, 5, 14, 7, 30), Reopened, Specialist)],
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
    for key in
        [(x, date(2024, 5, 13)), (y, date(2024, 5, 12)), (province, date(2024, 5, 13)), (province, date(2024, 5, 12))]
    {
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
