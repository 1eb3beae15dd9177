//! `d06 simulate --scenario hotline-2023|hotline-2024`: the generated 1022
//! ticket streams that reproduce the province's own reports
//! ([`super::generate`]), written out as EVENTS-v1 messages so
//! they go through the whole product: Kafka, ingest (validation,
//! pseudonymisation), the hotline state, ClickHouse and `d06 report hotline`.
//!
//! Arrival order is event order disturbed by up to six hours (a ticket's
//! `answered` may reach the broker before its `received`), and producer
//! retries re-send some messages identically. The stream ends with one
//! clock message at the report's moment T: with `pipeline.clock = "event"`
//! the replay clock is the newest event applied, and the report classifies
//! as of T. The clock message is a `hotline.ticket` event of a ticket that is
//! never received, so by the contract it is in no report.

use std::sync::Arc;

use aggregator::calendar::WorkCalendar;
use aggregator::fact::{Fact, FactKind, Nanos};
use aggregator::{AreaLevel, Geography};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::{generate_with_ids, report_2023, report_2024, Scenario};
use crate::clock::local_offset;
use crate::message::{Kind, SimMessage};

/// Longest delay between an event and its arrival, nanoseconds.
const MAX_DELAY: i64 = 6 * 3600 * 1_000_000_000;

/// Which of the province's reports to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Tổng đài 1022, 01/01–19/07/2023: 1,493 received = 1,434 processed +
    /// 5 in progress + 47 spam + 1 + 6 overdue.
    #[value(name = "hotline-2023")]
    Hotline2023,
    /// Tổng đài 1022, 22/04–22/05/2024: 299 received = 293 processed + 6 in
    /// progress; 268 answered + 31 forwarded.
    #[value(name = "hotline-2024")]
    Hotline2024,
}

impl Which {
    /// The scenario behind the report.
    pub fn scenario(self) -> Scenario {
        match self {
            Which::Hotline2023 => report_2023(),
            Which::Hotline2024 => report_2024(),
        }
    }
}

/// The subject of the clock message: a ticket id no scenario uses.
pub const CLOCK_TICKET: &str = "d06-scenario-clock";

/// The messages of `which`, in arrival order, the clock message last.
pub fn messages(geo: &Geography, calendar: &WorkCalendar, which: Which, seed: u64) -> Vec<SimMessage> {
    let sc = which.scenario();
    let generated = generate_with_ids(geo, calendar, &sc, seed);
    let mut out: Vec<(Nanos, SimMessage)> = generated
        .iter()
        .map(|(ticket, fact)| {
            let arrival = (fact.occurred_at + delay(&fact.event_id, seed)).min(sc.t);
            (arrival, message(geo, ticket, fact, arrival))
        })
        .collect();
    // Stable: a producer retry stays right behind its first copy.
    out.sort_by_key(|(arrival, _)| *arrival);
    let mut out: Vec<SimMessage> = out.into_iter().map(|(_, m)| m).collect();
    if let Some((_, last)) = generated.last() {
        let clock = Fact {
            event_id: format!("hl-{seed:x}-clock").into(),
            occurred_at: sc.t,
            kind: FactKind::Hotline {
                status: aggregator::fact::TicketStatus::Answered,
                level: aggregator::fact::TicketLevel::Specialist,
            },
            ..last.clone()
        };
        let ticket: Arc<str> = CLOCK_TICKET.into();
        out.push(message(geo, &ticket, &clock, sc.t));
    }
    out
}

/// A deterministic delay in `0..MAX_DELAY` from the event id.
fn delay(event_id: &str, seed: u64) -> Nanos {
    // FNV-1a over the seed and the id, then a splitmix64 finaliser.
    let mut h = event_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64 ^ seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // Half the events arrive at once; the others up to six hours late.
    if h & 1 == 0 {
        0
    } else {
        ((h >> 1) % MAX_DELAY as u64) as i64
    }
}

fn local(at: Nanos) -> DateTime<FixedOffset> {
    DateTime::<Utc>::from_timestamp_nanos(at).with_timezone(&local_offset())
}

/// One `hotline.ticket` message for `fact`, `subject` in clear.
fn message(geo: &Geography, subject: &str, fact: &Fact, arrival: Nanos) -> SimMessage {
    let FactKind::Hotline { status, level } = fact.kind else {
        unreachable!("hotline scenarios generate hotline facts only")
    };
    let area = geo.area(fact.area);
    let at = local(fact.occurred_at);
    let mut event = serde_json::json!({
        "schema": "d06.event.v1",
        "event_id": &*fact.event_id,
        "type": "hotline.ticket",
        "occurred_at": at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        "source": "hotline-1022",
        "subject": subject,
        "status": status.as_str(),
        "level": level.as_str(),
    });
    let field = match area.level {
        AreaLevel::Commune => "commune_code",
        AreaLevel::District => "district_code",
        // Scenarios place tickets in communes and districts only.
        AreaLevel::Province => "district_code",
    };
    event[field] = serde_json::Value::from(area.code.as_str());
    SimMessage {
        kind: Kind::Hotline,
        key: Some(subject.to_owned()),
        payload: event.to_string().into_bytes(),
        occurred_at: at,
        emitted_at: DateTime::<Utc>::from_timestamp_nanos(arrival),
        invalid: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;

    use aggregator::hotline::Tickets;
    use aggregator::GeographyVersion;
    use ingest::contract::{Validator, ValidatorConfig};
    use ingest::pseudonym::{Pseudonymiser, SecretKey};

    use super::*;

    /// Every message passes the real validator, and the validated stream, in
    /// arrival order, classifies exactly as the province's report.
    #[test]
    fn the_messages_validate_and_reproduce_both_reports() {
        let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
        let cal = Arc::new(WorkCalendar::embedded().unwrap());
        for which in [Which::Hotline2023, Which::Hotline2024] {
            let sc = which.scenario();
            let msgs = messages(&geo, &cal, which, 7);
            let generated = crate::scenario::generate(&geo, &cal, &sc, 7);
            assert_eq!(msgs.len(), generated.len() + 1, "every fact and the clock");
            let ids: HashSet<&str> = generated.iter().map(|f| &*f.event_id).collect();
            assert!(ids.len() < generated.len(), "producer retries are in the stream");
            // Out of order somewhere: some message arrives after a later event.
            assert!(msgs.windows(2).any(|w| w[0].occurred_at > w[1].occurred_at));
            let last = msgs.last().unwrap();
            assert_eq!(last.occurred_at.timestamp_nanos_opt(), Some(sc.t));

            let key = SecretKey::from_bytes(b"scenario-test-key-0123456789".to_vec()).unwrap();
            let validator = Validator::new(geo.clone(), Pseudonymiser::new(&key), ValidatorConfig::default());
            let mut tickets = Tickets::new(geo.clone(), cal.clone());
            // One partition: one watermark, as ingest keeps per partition.
            let mut watermark = None;
            let now = Utc::now().timestamp_nanos_opt().unwrap();
            for m in &msgs {
                let fact = validator
                    .validate(&m.payload, now, &mut watermark)
                    .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&m.payload)));
                tickets.apply(&fact);
            }
            assert_eq!(watermark, Some(sc.t));
            tickets.advance(sc.t);
            assert_eq!(tickets.total(geo.province(), sc.from(), sc.to()), sc.expected(), "{which:?}");
        }
    }
}
