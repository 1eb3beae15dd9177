//! The hotline part of a shard snapshot (`crate::snapshot`): T, the dedup
//! keys, every ticket's events, and the keys of the counts (a key once
//! present stays, possibly all zero, so a full rewrite still writes it).
//! Classifications, deadlines and counts are derived again on load: a
//! ticket's booked classification is always its classification as of T
//! ([`Tickets::advance`] reclassifies every ticket whose deadline T passes).
//!
//! Layout: T; the dedup keys (count, 16 bytes each); the tickets (count;
//! digest, event count; per event `occurred_at`, id, status, level, area,
//! day); the counted keys (count; area, day).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Event, Ticket, Tickets};
use crate::calendar::WorkCalendar;
use crate::fact::{TicketLevel, TicketStatus};
use crate::geo::Geography;
use crate::snapshot::{Reader, SnapshotError, Writer};
use crate::HotlineCounts;

impl Tickets {
    pub(crate) fn write_snapshot(&self, w: &mut Writer) {
        w.i64(self.t);
        w.len(self.seen.len());
        for key in &self.seen {
            w.u128(*key);
        }
        w.len(self.tickets.len());
        for (subject, ticket) in &self.tickets {
            w.digest(subject);
            w.len(ticket.events.len());
            for e in &ticket.events {
                w.i64(e.at);
                w.bytes(e.id.as_bytes());
                w.u8(e.status as u8);
                w.u8(e.level as u8);
                w.area(e.area);
                w.day(e.day);
            }
        }
        w.len(self.counts.len());
        for (area, day) in self.counts.keys() {
            w.area(*area);
            w.day(*day);
        }
    }

    pub(crate) fn read_snapshot(
        geo: Arc<Geography>,
        calendar: Arc<WorkCalendar>,
        r: &mut Reader<'_>,
    ) -> Result<Tickets, SnapshotError> {
        let mut tickets = Tickets::new(Arc::clone(&geo), calendar);
        tickets.t = r.i64()?;
        let n = r.count(16)?;
        tickets.seen.reserve(n);
        for _ in 0..n {
            tickets.seen.insert(r.u128()?);
        }
        let n = r.count(17)?;
        let mut held = HashMap::with_capacity(n);
        for _ in 0..n {
            let subject = r.digest()?;
            let len = r.count(17)?;
            let mut events: Vec<Event> = Vec::with_capacity(len);
            for _ in 0..len {
                let at = r.i64()?;
                let id = std::str::from_utf8(r.bytes()?).map_err(|_| SnapshotError::Corrupt("event id"))?;
                let status = *TicketStatus::ALL.get(usize::from(r.u8()?)).ok_or(SnapshotError::Corrupt("status"))?;
                let level = *TicketLevel::ALL.get(usize::from(r.u8()?)).ok_or(SnapshotError::Corrupt("level"))?;
                let (area, day) = (r.area(&geo)?, r.day()?);
                if events.last().is_some_and(|l| l.key() >= (at, id)) {
                    return Err(SnapshotError::Corrupt("ticket events out of order"));
                }
                events.push(Event { at, id: id.into(), status, level, area, day });
            }
            if held.insert(subject, Ticket { events, booked: None }).is_some() {
                return Err(SnapshotError::Corrupt("a ticket twice"));
            }
        }
        tickets.tickets = held;
        for _ in 0..r.count(6)? {
            tickets.counts.insert((r.area(&geo)?, r.day()?), HotlineCounts::default());
        }
        let subjects: Vec<_> = tickets.tickets.keys().copied().collect();
        for subject in subjects {
            tickets.reclassify(subject);
        }
        // What was booked changed nothing since the last flush: a restored
        // shard writes all its rows anyway.
        tickets.dirty.clear();
        Ok(tickets)
    }
}
