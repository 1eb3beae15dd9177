//! Lifecycles: what happens to one subject once a flow starts with it
//! (applications decided and issued, accounts activated, SIMs swapped,
//! signatures revoked, tickets answered, forwarded, reopened), drawn into
//! the simulator's schedule.

use chrono::NaiveDate;

use super::Simulator;
use crate::clock::{local_date, local_midnight_ms, DAY, HOUR, MIN};
use crate::population::AGENCIES;
use crate::rhythm::{day_factor, HOUR_WEIGHTS};
use crate::rng::mix64;

/// The flows a campaign is made of; each start is one subject's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Cccd,
    Vneid,
    VneidLevel1,
    Swap,
    Signature,
    Ticket,
}

pub(super) const FLOWS: [Flow; 6] =
    [Flow::Cccd, Flow::Vneid, Flow::VneidLevel1, Flow::Swap, Flow::Signature, Flow::Ticket];

/// One event of a lifecycle, before it is written out.
#[derive(Clone, Debug)]
pub(super) enum Event {
    Cccd {
        unit: u16,
        citizen: u64,
        stage: &'static str,
        channel: &'static str,
    },
    Vneid {
        unit: u16,
        citizen: u64,
        stage: &'static str,
        level: u8,
    },
    Swap {
        unit: u16,
        phone: u64,
        to_tech: &'static str,
        device: &'static str,
    },
    Signature {
        unit: u16,
        phone: u64,
        stage: &'static str,
    },
    Ticket {
        unit: u16,
        commune: u16,
        ticket: u32,
        opened: NaiveDate,
        step: u8,
        status: &'static str,
        level: &'static str,
        agency: Option<u8>,
    },
}

impl Simulator {
    /// A moment `lo..hi` whole local days after `t`, at a time of day drawn
    /// from the daily rhythm (people and offices act in the daytime).
    pub(super) fn days_later(&mut self, t: i64, lo: i64, hi: i64) -> i64 {
        let mut day = local_date(t) + chrono::Days::new(self.rng.range(lo, hi).max(0) as u64);
        // Weekends and holidays take their share; the rest waits for a working day.
        if !self.rng.chance(day_factor(day)) {
            while day_factor(day) < 1.0 {
                day = day + chrono::Days::new(1);
            }
        }
        let day_start = local_midnight_ms(day);
        let total: f64 = HOUR_WEIGHTS.iter().sum();
        let mut x = self.rng.unit() * total;
        let mut hour = 23;
        for (h, w) in HOUR_WEIGHTS.iter().enumerate() {
            if x < *w {
                hour = h as i64;
                break;
            }
            x -= w;
        }
        (day_start + hour * HOUR + self.rng.range(0, HOUR)).max(t + MIN)
    }

    /// A subject's index in the pool: the next one in the flow's own order,
    /// or (with probability `again`) one the flow already took.
    pub(super) fn take(&mut self, unit: usize, flow: Flow, again: f64) -> u64 {
        let u = &self.units[unit];
        let (base, size, taken, salt) = match flow {
            Flow::Cccd => (u.citizen_base, u.citizens, u.next_cccd, 1),
            Flow::Vneid | Flow::VneidLevel1 => (u.citizen_base, u.citizens, u.next_vneid, 2),
            Flow::Swap => (u.phone_base, u.phones, u.next_swap, 3),
            Flow::Signature | Flow::Ticket => (u.phone_base, u.phones, u.next_signature, 4),
        };
        let n = if taken > 0 && self.rng.chance(again) {
            self.rng.below(taken)
        } else {
            let u = &mut self.units[unit];
            match flow {
                Flow::Cccd => u.next_cccd += 1,
                Flow::Vneid | Flow::VneidLevel1 => u.next_vneid += 1,
                Flow::Swap => u.next_swap += 1,
                Flow::Signature | Flow::Ticket => u.next_signature += 1,
            }
            taken
        };
        // A per-flow permutation of the pool: each flow meets the people in
        // its own order, so indicators overlap as chance has it.
        let size = size.max(1);
        let step = self.units[unit].steps[salt as usize];
        base + ((u128::from(n % size) * u128::from(step) + u128::from(mix64(self.cfg.seed ^ salt))) % u128::from(size))
            as u64
    }

    pub(super) fn start(&mut self, flow: Flow, unit: usize, t: i64) {
        let u16_unit = unit as u16;
        match flow {
            Flow::Cccd => {
                let citizen = self.take(unit, flow, 0.01);
                let channel = match self.rng.below(10) {
                    0..=5 => "station",
                    6..=8 => "mobile_team",
                    _ => "online",
                };
                let decided = self.days_later(t, 1, 4);
                let rejected = self.rng.chance(0.03);
                let issued = self.days_later(decided, 4, 11);
                self.occur(t, Event::Cccd { unit: u16_unit, citizen, stage: "received", channel });
                let stage = if rejected { "rejected" } else { "approved" };
                self.occur(decided, Event::Cccd { unit: u16_unit, citizen, stage, channel });
                if !rejected {
                    self.occur(issued, Event::Cccd { unit: u16_unit, citizen, stage: "issued", channel });
                }
            }
            Flow::Vneid | Flow::VneidLevel1 => {
                let citizen = self.take(unit, flow, 0.0);
                let level = if flow == Flow::Vneid { 2 } else { 1 };
                let activates = flow == Flow::VneidLevel1 || self.rng.chance(0.92);
                // Most activate on the spot, the others within a week.
                let activated = match self.rng.below(10) {
                    0..=5 => t + self.rng.range(5 * MIN, 2 * HOUR),
                    6..=8 => self.days_later(t, 1, 4),
                    _ => self.days_later(t, 4, 8),
                };
                let again = self.rng.chance(0.02);
                let again_at = self.days_later(activated, 1, 21);
                self.occur(t, Event::Vneid { unit: u16_unit, citizen, stage: "registered", level });
                if activates {
                    self.occur(activated, Event::Vneid { unit: u16_unit, citizen, stage: "activated", level });
                    if again {
                        self.occur(again_at, Event::Vneid { unit: u16_unit, citizen, stage: "activated", level });
                    }
                }
            }
            Flow::Swap => {
                let phone = self.take(unit, flow, 0.0);
                let share = self.cfg.targets.smartphone_share;
                let to_tech = if self.rng.chance(0.07) { "5g" } else { "4g" };
                let device = if self.rng.chance(share) { "smartphone" } else { "feature_phone" };
                let corrected = self.rng.chance(0.01);
                let corrected_at = self.days_later(t, 1, 11);
                self.occur(t, Event::Swap { unit: u16_unit, phone, to_tech, device });
                if corrected {
                    self.occur(corrected_at, Event::Swap { unit: u16_unit, phone, to_tech, device: "smartphone" });
                }
            }
            Flow::Signature => {
                let phone = self.take(unit, flow, 0.0);
                let revoked = self.rng.chance(0.03);
                let reinstalled = self.rng.chance(0.4);
                let revoked_at = self.days_later(t, 1, 21);
                let reinstalled_at = self.days_later(revoked_at, 1, 11);
                self.occur(t, Event::Signature { unit: u16_unit, phone, stage: "installed" });
                if revoked {
                    self.occur(revoked_at, Event::Signature { unit: u16_unit, phone, stage: "revoked" });
                    if reinstalled {
                        self.occur(reinstalled_at, Event::Signature { unit: u16_unit, phone, stage: "installed" });
                    }
                }
            }
            Flow::Ticket => {
                let later = [self.days_later(t, 1, 5), self.days_later(t, 1, 6), self.days_later(t, 2, 6)];
                let r = &mut self.rng;
                let communes = self.units[unit].communes.len().max(1) as u64;
                let commune = r.below(communes) as u16;
                self.tickets += 1;
                let ticket = self.tickets;
                let opened = local_date(t);
                let mut level = if r.chance(0.15) { "leadership" } else { "specialist" };
                let mut steps: Vec<(i64, &'static str, Option<u8>, &'static str)> = vec![(t, "received", None, level)];
                let outcome = r.below(100);
                if outcome < 4 {
                    steps.push((t + r.range(2 * MIN, HOUR), "spam", None, level));
                } else if outcome < 88 {
                    let handled = match r.below(100) {
                        0..=89 => r.range(5 * MIN, 3 * HOUR),
                        90..=97 => r.range(3 * HOUR, 8 * HOUR),
                        _ => later[0] - t,
                    };
                    let closed = t + handled;
                    steps.push((closed, "answered", None, level));
                    if r.chance(0.04) {
                        let reopened = closed.max(later[1]);
                        steps.push((reopened, "reopened", None, level));
                        steps.push((reopened + r.range(30 * MIN, 6 * HOUR), "answered", None, level));
                    }
                } else if outcome < 97 {
                    let forwarded = t + r.range(10 * MIN, 90 * MIN);
                    let agency = Some(r.below(AGENCIES.len() as u64) as u8);
                    if r.chance(0.25) {
                        level = "leadership";
                    }
                    steps.push((forwarded, "forwarded", agency, level));
                    let resolved =
                        if r.chance(0.3) { forwarded + r.range(4 * HOUR, 8 * HOUR) } else { later[1].max(forwarded) };
                    steps.push((resolved, "resolved", agency, level));
                    if r.chance(0.05) {
                        let reopened = resolved.max(later[2]) + DAY;
                        steps.push((reopened, "reopened", agency, level));
                        steps.push((reopened + r.range(4 * HOUR, 2 * DAY), "resolved", agency, level));
                    }
                }
                // else: still open (in progress, maybe overdue).
                for (step, (at, status, agency, level)) in steps.into_iter().enumerate() {
                    let e = Event::Ticket {
                        unit: u16_unit,
                        commune,
                        ticket,
                        opened,
                        step: step as u8,
                        status,
                        level,
                        agency,
                    };
                    self.occur(at, e);
                }
            }
        }
    }
}
