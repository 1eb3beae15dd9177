//! Issue 15: the hotline oracle (`hotline_oracle.rs`, written from the
//! contract) against production (`aggregator::hotline::Tickets` on
//! `aggregator::calendar::WorkCalendar`) on seeded random ticket streams.
//!
//! The streams aim at the edges: receiving and closing instants on shift
//! boundaries and exactly at (and a nanosecond around) deadlines, weekends,
//! holidays and make-up days of the shipped calendars and of custom ones,
//! events stamped before `received`, equal `occurred_at` ordered by event id,
//! later `received` events, spam marks, reopenings, escalations, producer
//! retries and out-of-order arrival with T moving forward in between.
//!
//! No services needed. `D06_ORACLE_ROUNDS` sets the number of rounds.

use std::collections::BTreeMap;
use std::sync::Arc;

use aggregator::calendar::WorkCalendar;
use aggregator::fact::{TicketLevel, TicketStatus};
use aggregator::hotline::{Class as ProdClass, Classification, Tickets};
use aggregator::{AreaId, AreaLevel, Digest, Fact, FactKind, Geography, GeographyVersion};
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::hotline_oracle::{self as oracle, Calendar, Class, Event, Level, Status};

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Custom calendars, given to both sides as the same TOML text.
const CUSTOM: [&str; 3] = [
    // Round the clock but for one minute a day (the wall-clock black-box test's).
    "working_weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
     shifts = [{ start = \"00:00\", end = \"23:59\" }]\n",
    // Six days, three shifts, a holiday and a make-up Sunday.
    "working_weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]\n\
     shifts = [{ start = \"07:30\", end = \"11:00\" }, { start = \"13:30\", end = \"17:00\" }, \
               { start = \"19:00\", end = \"20:15\" }]\n\
     [[holidays]]\ndate = 2024-05-08\nsource = \"test\"\n\
     [[working_days]]\ndate = 2024-05-12\nsource = \"test\"\n",
    // Default week and shifts, a run of holidays.
    "[[holidays]]\ndate = 2024-05-06\nsource = \"test\"\n\
     [[holidays]]\ndate = 2024-05-07\nsource = \"test\"\n\
     [[holidays]]\ndate = 2024-05-09\nsource = \"test\"\n",
];

/// Both sides' calendars: `None` is the shipped one.
fn calendars(custom: Option<usize>) -> (WorkCalendar, Calendar) {
    match custom {
        None => (WorkCalendar::embedded().expect("embedded calendar"), Calendar::shipped()),
        Some(i) => (WorkCalendar::from_toml(CUSTOM[i]).expect("custom calendar"), Calendar::from_toml(&[CUSTOM[i]])),
    }
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// A day near the calendars' edges, or any day of 2023–2025.
fn a_day(rng: &mut StdRng) -> NaiveDate {
    let windows = [
        (ymd(2024, 4, 24), 16), // 27/4–1/5/2024 off, Saturday 4/5 worked (custom ones: 6–12/5)
        (ymd(2024, 2, 5), 12),  // Tết 2024
        (ymd(2023, 1, 18), 12), // Tết 2023
        (ymd(2023, 8, 29), 9),  // Quốc khánh 2023
        (ymd(2025, 4, 23), 14), // 30/4/2025, Saturday 26/4 worked
        (ymd(2024, 12, 27), 8), // across two calendar files
        (ymd(2023, 1, 1), 3 * 365),
    ];
    let (from, len) = *windows.choose(rng).expect("windows");
    from + chrono::Duration::days(rng.random_range(0..len))
}

/// An instant on `day`: often on or a hair around a shift boundary.
fn an_instant(rng: &mut StdRng, day: NaiveDate) -> i64 {
    let midnight =
        day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_nanos_opt().expect("range") - 7 * HOUR;
    let marks = [0, 7 * 60, 7 * 60 + 30, 11 * 60, 11 * 60 + 30, 12 * 60, 13 * 60, 13 * 60 + 30, 16 * 60 + 30];
    let base = if rng.random_bool(0.5) {
        midnight + marks.choose(rng).expect("marks") * MINUTE + [-1, 0, 0, 1, -SECOND].choose(rng).expect("nudge")
    } else {
        midnight + rng.random_range(0..DAY / SECOND) * SECOND
    };
    if rng.random_bool(0.2) {
        base + rng.random_range(0..SECOND)
    } else {
        base
    }
}

fn a_level(rng: &mut StdRng) -> Level {
    if rng.random_bool(0.25) {
        Level::Leadership
    } else {
        Level::Specialist
    }
}

fn hours(l: Level) -> i64 {
    match l {
        Level::Specialist => 8,
        Level::Leadership => 48,
    }
}

/// One generated ticket: its id and events in generation order.
struct Ticket {
    id: String,
    events: Vec<Event>,
}

fn a_ticket(rng: &mut StdRng, n: usize, cal: &Calendar, places: &[(String, String)]) -> Ticket {
    let day = a_day(rng);
    let received = an_instant(rng, day);
    let mut level = a_level(rng);
    let place = |rng: &mut StdRng| places.choose(rng).expect("places").clone();
    let mut events = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut id = |rng: &mut StdRng| loop {
        // Random ids, so that on equal times the id order is not the generation order.
        let c = format!("ev-{:03}", rng.random_range(0..1000));
        if ids.insert(c.clone()) {
            return c;
        }
    };
    // `district` holds the code the event names here (a commune's or a
    // district's); `oracle_event` resolves it for the oracle.
    if !rng.random_bool(0.05) {
        let (area, _) = place(rng);
        events.push(Event { event_id: id(rng), at: received, status: Status::Received, level, district: area });
    }
    let mut last = received;
    let statuses = [
        (Status::Answered, 6),
        (Status::Forwarded, 4),
        (Status::Resolved, 4),
        (Status::Spam, 2),
        (Status::Reopened, 4),
        (Status::Received, 1),
    ];
    let total: u32 = statuses.iter().map(|(_, w)| w).sum();
    for _ in 0..rng.random_range(0..7) {
        let mut pick = rng.random_range(0..total);
        let status = statuses
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(s, _)| *s)
            .expect("a status");
        if rng.random_bool(0.15) {
            level = a_level(rng);
        }
        let at = match rng.random_range(0..10) {
            0 => received - [1, 2 * SECOND, 3 * HOUR].choose(rng).expect("before"),
            1 => last, // a tie
            2 | 3 => {
                // At a deadline of the received or the last instant, at either level, ± 1 ns.
                let from = if rng.random_bool(0.5) { received } else { last };
                let d = cal.deadline(from, hours(a_level(rng)));
                d + [-1, 0, 0, 1].choose(rng).expect("nudge")
            }
            4 => {
                let day = oracle::local_day(last) + chrono::Duration::days(rng.random_range(0..4));
                an_instant(rng, day)
            }
            5 | 6 => last + rng.random_range(1..4 * HOUR),
            _ => last + rng.random_range(0..10 * DAY),
        };
        last = last.max(at);
        let (area, _) = place(rng);
        events.push(Event { event_id: id(rng), at, status, level, district: area });
    }
    Ticket { id: format!("HL-{n:05}"), events }
}

/// The ticket's digest on the production side.
fn digest(id: &str) -> Digest {
    let mut b = [0u8; 16];
    for (i, c) in id.bytes().enumerate() {
        b[i % 16] ^= c.wrapping_mul(31).wrapping_add(i as u8);
    }
    Digest(b)
}

fn prod_fact(geo: &Geography, ticket: &str, e: &Event) -> Fact {
    // `district` holds the area code the event names: 5 digits a commune, 3 a district.
    let level = if e.district.len() == 5 { AreaLevel::Commune } else { AreaLevel::District };
    let area = geo.find(level, &e.district).expect("known area");
    let day = chrono::DateTime::from_timestamp_nanos(e.at).with_timezone(&chrono_tz::Asia::Ho_Chi_Minh).date_naive();
    let status = match e.status {
        Status::Received => TicketStatus::Received,
        Status::Answered => TicketStatus::Answered,
        Status::Forwarded => TicketStatus::Forwarded,
        Status::Resolved => TicketStatus::Resolved,
        Status::Spam => TicketStatus::Spam,
        Status::Reopened => TicketStatus::Reopened,
    };
    let level = match e.level {
        Level::Specialist => TicketLevel::Specialist,
        Level::Leadership => TicketLevel::Leadership,
    };
    Fact {
        event_id: e.event_id.clone().into(),
        subject: digest(ticket),
        occurred_at: e.at,
        day,
        area,
        kind: FactKind::Hotline { status, level },
    }
}

/// The oracle's event with the area resolved to its district.
fn oracle_event(communes: &BTreeMap<String, String>, e: &Event) -> Event {
    let district = if e.district.len() == 5 { communes[&e.district].clone() } else { e.district.clone() };
    Event { district, ..e.clone() }
}

fn district_of(geo: &Geography, area: AreaId) -> String {
    let d = geo.chain(area).find(|a| geo.area(*a).level == AreaLevel::District).expect("a district");
    geo.area(d).code.clone()
}

/// Production's verdict in the oracle's terms.
fn as_verdict(geo: &Geography, c: &Classification) -> oracle::Verdict {
    oracle::Verdict {
        district: district_of(geo, c.area),
        day: c.day,
        class: match c.class {
            ProdClass::Spam => Class::Spam,
            ProdClass::Overdue(TicketLevel::Specialist) => Class::Overdue(Level::Specialist),
            ProdClass::Overdue(TicketLevel::Leadership) => Class::Overdue(Level::Leadership),
            ProdClass::Processed => Class::Processed,
            ProdClass::InProgress => Class::InProgress,
        },
        answered: c.answered,
        forwarded: c.forwarded,
    }
}

fn show(t: &Ticket) -> String {
    let mut evs = t.events.clone();
    evs.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
    evs.iter()
        .map(|e| {
            let at = chrono::DateTime::from_timestamp_nanos(e.at)
                .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("tz"))
                .format("%a %Y-%m-%d %H:%M:%S%.f");
            format!("\n    {at} {:<10} {:?} {:?} {}", e.event_id, e.status, e.level, e.district)
        })
        .collect()
}

fn local(at: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(at)
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("tz"))
        .format("%a %Y-%m-%d %H:%M:%S%.f")
        .to_string()
}

#[test]
fn the_oracle_and_production_compute_the_same_deadlines() {
    let mut rng = StdRng::seed_from_u64(15);
    let mut wrong = Vec::new();
    for custom in [None, Some(0), Some(1), Some(2)] {
        let (prod, ours) = calendars(custom);
        for _ in 0..20_000 {
            let day = a_day(&mut rng);
            let start = an_instant(&mut rng, day);
            for h in [8, 48] {
                let (p, o) = (prod.deadline(start, h as u32), ours.deadline(start, h));
                if p != o && wrong.len() < 20 {
                    wrong.push(format!(
                        "calendar {custom:?}, {h} h from {}: production {}, oracle {}",
                        local(start),
                        local(p),
                        local(o)
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "deadlines differ:\n{}", wrong.join("\n"));
}

#[test]
fn the_oracle_and_production_classify_random_ticket_streams_alike() {
    let rounds: u64 = std::env::var("D06_ORACLE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).expect("geography"));
    let communes = oracle::communes_to_districts();
    // Places an event may name: a commune, or (one in five) a district only.
    let mut places: Vec<(String, String)> = communes.iter().map(|(c, d)| (c.clone(), d.clone())).collect();
    let districts: Vec<(String, String)> =
        oracle::Oracle::shipped().districts().into_iter().map(|d| (d.clone(), d)).collect();
    for _ in 0..3 {
        places.extend(districts.iter().cloned());
    }
    let mut mismatches = Vec::new();
    let mut seen_classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut tickets_compared = 0usize;
    for round in 0..rounds {
        let mut rng = StdRng::seed_from_u64(0x1022_0000 + round);
        let custom = if rng.random_bool(0.6) { None } else { Some(rng.random_range(0..CUSTOM.len())) };
        let (prod_cal, cal) = calendars(custom);
        let tickets: Vec<Ticket> = (0..40).map(|n| a_ticket(&mut rng, n, &cal, &places)).collect();

        // Arrival: every event, some twice (producer retries), shuffled.
        let mut arrivals: Vec<(usize, &Event)> =
            tickets.iter().enumerate().flat_map(|(i, t)| t.events.iter().map(move |e| (i, e))).collect();
        let retries: Vec<(usize, &Event)> = arrivals.iter().filter(|_| rng.random_bool(0.05)).copied().collect();
        arrivals.extend(retries);
        rand::seq::SliceRandom::shuffle(&mut arrivals[..], &mut rng);
        let newest = arrivals.iter().map(|(_, e)| e.at).max().unwrap_or(0);
        // T: the newest event, a moment at a deadline of some ticket, or later.
        let t = match rng.random_range(0..6) {
            0 => newest,
            1 => newest + rng.random_range(0..30 * DAY),
            2 => newest + rng.random_range(0..8 * HOUR),
            _ => {
                let (_, e) = arrivals.choose(&mut rng).expect("an event");
                let d = cal.deadline(e.at, hours(a_level(&mut rng))) + [-1, 0, 1].choose(&mut rng).expect("nudge");
                d.max(newest)
            }
        };

        // Production: the events in arrival order, T moving forward meanwhile.
        let mut prod = Tickets::new(geo.clone(), Arc::new(prod_cal));
        let mut clock = newest - 20 * DAY;
        for (i, e) in &arrivals {
            prod.apply(&prod_fact(&geo, &tickets[*i].id, e));
            if rng.random_bool(0.05) {
                clock += rng.random_range(0..2 * DAY);
                prod.advance(clock.min(t));
            }
        }
        prod.advance(t);

        // The oracle: the same messages, deduplicated by (ticket, event id).
        let mut ours = oracle::Oracle::new(cal.clone());
        for (i, e) in &arrivals {
            ours.push(&tickets[*i].id, oracle_event(&communes, e));
        }
        let verdicts = ours.verdicts(t);
        for ticket in &tickets {
            let p = prod.classification(&digest(&ticket.id)).map(|c| as_verdict(&geo, &c));
            let o = verdicts.get(&ticket.id).cloned();
            tickets_compared += 1;
            *seen_classes.entry(o.as_ref().map_or("none".into(), |v| format!("{:?}", v.class))).or_default() += 1;
            if p != o && mismatches.len() < 10 {
                mismatches.push(format!(
                    "round {round}, calendar {custom:?}, T {}, ticket {}:{}\n  production {p:?}\n  oracle     {o:?}",
                    local(t),
                    ticket.id,
                    show(ticket)
                ));
            }
        }
        // The booked figures per district and day, and the province's, agree too.
        let expected = ours.by_district_day(t);
        let mut prod_rows: BTreeMap<(String, NaiveDate), [u64; 8]> = BTreeMap::new();
        let mut prod_province: BTreeMap<NaiveDate, [u64; 8]> = BTreeMap::new();
        for ((area, day), c) in prod.counts() {
            let row = [
                c.received,
                c.processed,
                c.in_progress,
                c.spam,
                c.overdue_specialist,
                c.overdue_leadership,
                c.answered,
                c.forwarded,
            ];
            if row == [0; 8] {
                continue;
            }
            match geo.area(*area).level {
                AreaLevel::District => {
                    prod_rows.insert((geo.area(*area).code.clone(), *day), row);
                }
                AreaLevel::Province => {
                    prod_province.insert(*day, row);
                }
                AreaLevel::Commune => {}
            }
        }
        let ours_rows: BTreeMap<(String, NaiveDate), [u64; 8]> =
            expected.iter().map(|(k, f)| (k.clone(), f.row())).collect();
        let mut ours_province: BTreeMap<NaiveDate, [u64; 8]> = BTreeMap::new();
        for ((_, day), row) in &ours_rows {
            let p = ours_province.entry(*day).or_default();
            for (a, b) in p.iter_mut().zip(row) {
                *a += b;
            }
        }
        if mismatches.is_empty() {
            assert_eq!(prod_rows, ours_rows, "round {round}: figures per district and day");
            assert_eq!(prod_province, ours_province, "round {round}: the province's figures per day");
        }
    }
    eprintln!("{tickets_compared} tickets compared; the oracle's classes: {seen_classes:?}");
    assert!(mismatches.is_empty(), "production and the oracle differ:\n{}", mismatches.join("\n"));
    // The streams did reach every class.
    for class in ["Spam", "Processed", "InProgress", "Overdue(Specialist)", "Overdue(Leadership)", "none"] {
        assert!(seen_classes.get(class).copied().unwrap_or(0) > 20, "too few {class}: {seen_classes:?}");
    }
}
