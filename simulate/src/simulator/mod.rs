//! [`Simulator`]: the campaign as an iterator of messages in broker order.
//! This file schedules (lifecycle starts per minute, a heap of what is due,
//! emission defects); [`lifecycle`] draws each subject's events and
//! [`encode`] writes them as contract-v1 JSON.

mod encode;
mod lifecycle;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use aggregator::{AreaLevel, Geography};
use chrono::{DateTime, Utc};

use self::lifecycle::{Event, FLOWS};
use crate::clock::{local_midnight_ms, ms_to_utc, DAY, HOUR, MIN};
use crate::config::SimConfig;
use crate::defect::{Defect, DEFECTS};
use crate::message::SimMessage;
use crate::population::{coprime_step, units_of, Unit, CITIZEN_SPACE, PHONE_SPACE};
use crate::rhythm::{day_factor, HOUR_WEIGHTS};
use crate::rng::Rng;

#[derive(Debug)]
enum Due {
    /// An event occurring at the entry's time.
    Occur(Event),
    /// A message whose emission is due.
    Emit(Box<SimMessage>),
}

#[derive(Debug)]
struct Entry {
    at: i64,
    seq: u64,
    due: Due,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The campaign simulator: an iterator of messages in broker order.
#[derive(Debug)]
pub struct Simulator {
    cfg: SimConfig,
    rng: Rng,
    units: Vec<Unit>,
    /// Unit indices per flow with cumulative weights, for ticket areas.
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Start of the campaign and of its end, unix ms.
    start_ms: i64,
    end_ms: i64,
    /// Next minute (from the start) whose lifecycle starts are not yet drawn.
    next_minute: i64,
    minutes: i64,
    /// Per day: day factor × ramp, divided by the campaign's total activity.
    day_weights: Vec<f64>,
    /// Per unit and flow: starts per campaign (the total to spread) and the
    /// fractional carry.
    totals: Vec<[f64; 6]>,
    carry: Vec<[f64; 6]>,
    /// Event-id counters per source kind.
    counters: [u64; 5],
    tickets: u32,
    defect_weight: u32,
}

impl Simulator {
    /// A simulator over `geo` (codes of [`SimConfig::lagging_districts`] or
    /// [`SimConfig::exclude_communes`] that the geography does not know are
    /// ignored; see [`SimConfig::validate`]).
    pub fn new(cfg: SimConfig, geo: &Geography) -> Self {
        let mut rng = Rng(cfg.seed ^ 0x0d06_0d06_0d06_0d06);
        let t = cfg.targets.clone();
        let scale = cfg.scale.max(0.0);
        let raw_units = units_of(geo);
        let weights: Vec<f64> = raw_units.iter().map(|(_, c)| c.len().max(1) as f64).collect();
        let weight_sum: f64 = weights.iter().sum::<f64>().max(1.0);
        let per_day = |total: u64| total as f64 * scale / f64::from(t.campaign_days.max(1));
        let days = f64::from(cfg.days);
        let mut units = Vec::with_capacity(raw_units.len());
        let mut totals = Vec::with_capacity(raw_units.len());
        let (mut citizen_base, mut phone_base) = (0u64, cfg.identity.phone_base);
        for ((area, communes), w) in raw_units.iter().zip(&weights) {
            let a = geo.area(*area);
            let share = w / weight_sum;
            let lagging = cfg.lagging_districts.contains(&a.code);
            let jitter = 1.0 + (rng.unit() - 0.5) * 0.06;
            let pace = if lagging { cfg.lagging_pace } else { cfg.on_track_pace } * jitter;
            let adults = t.adults as f64 * scale * share;
            let citizens = ((adults * 1.1) as u64 + 1_000).min(CITIZEN_SPACE / raw_units.len().max(1) as u64);
            let phones = ((adults * 1.3) as u64 + 1_000).min(PHONE_SPACE / raw_units.len().max(1) as u64);
            let communes: Vec<String> = communes
                .iter()
                .map(|c| geo.area(*c).code.clone())
                .filter(|c| !cfg.exclude_communes.contains(c))
                .collect();
            let district_code = (a.level == AreaLevel::District).then(|| a.code.clone());
            let live = !(communes.is_empty() && district_code.is_none());
            units.push(Unit {
                district_code,
                communes,
                citizen_base,
                citizens,
                phone_base,
                phones,
                next_cccd: 0,
                next_vneid: 0,
                next_swap: 0,
                next_signature: 0,
                steps: [
                    0,
                    coprime_step(citizens, 1),
                    coprime_step(citizens, 2),
                    coprime_step(phones, 3),
                    coprime_step(phones, 4),
                ],
            });
            citizen_base += citizens;
            phone_base += phones;
            // Lifecycle starts over the simulated days, per flow (see FLOWS):
            // 8 % of level-2 registrations are never activated, 1.8 % of
            // signatures end revoked.
            // A unit whose every commune is excluded has no events at all.
            let k = if live { share * pace * days } else { 0.0 };
            totals.push([
                per_day(t.cccd) * k,
                per_day(t.vneid) * k / 0.92,
                per_day(t.vneid) * k * 0.10,
                per_day(t.migrated_2g) * k,
                per_day(t.sim_signature) * k / (1.0 - 0.018),
                if live { t.tickets_per_day * scale * share * days } else { 0.0 },
            ]);
        }
        let start_ms = local_midnight_ms(cfg.start);
        let end_ms = start_ms + i64::from(cfg.days) * DAY;
        let mut day_weights: Vec<f64> = (0..cfg.days)
            .map(|d| {
                let date = cfg.start + chrono::Days::new(u64::from(d));
                let ramp = 0.85 + 0.3 * (f64::from(d) + 0.5) / days.max(1.0);
                day_factor(date) * ramp
            })
            .collect();
        let hour_sum: f64 = HOUR_WEIGHTS.iter().sum::<f64>() * 60.0;
        let total: f64 = day_weights.iter().sum::<f64>() * hour_sum;
        if total > 0.0 {
            for w in &mut day_weights {
                *w /= total;
            }
        }
        let carry = (0..units.len()).map(|_| std::array::from_fn(|_| rng.unit())).collect();
        Simulator {
            rng,
            units,
            heap: BinaryHeap::new(),
            seq: 0,
            start_ms,
            end_ms,
            next_minute: 0,
            minutes: i64::from(cfg.days) * 1440,
            day_weights,
            totals,
            carry,
            counters: [0; 5],
            tickets: 0,
            defect_weight: DEFECTS.iter().map(|(_, w)| w).sum(),
            cfg,
        }
    }

    /// Subscriber indices this simulator's pools take, from
    /// [`Identity::phone_base`](crate::config::Identity::phone_base) on.
    pub(crate) fn phone_pool(&self) -> u64 {
        self.units.iter().map(|u| u.phones).sum()
    }

    /// The messages emitted before `t` (simulated time).
    pub fn until(self, t: DateTime<Utc>) -> impl Iterator<Item = SimMessage> {
        self.take_while(move |m| m.emitted_at < t)
    }

    fn push(&mut self, at: i64, due: Due) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { at, seq: self.seq, due }));
    }

    /// Schedules an event of a lifecycle (dropped past the campaign's end).
    fn occur(&mut self, at: i64, e: Event) {
        if at < self.end_ms {
            self.push(at, Due::Occur(e));
        }
    }

    /// Draws the lifecycle starts of one minute.
    fn generate_minute(&mut self, minute: i64) {
        let day = (minute / 1440) as usize;
        let hour = ((minute % 1440) / 60) as usize;
        let w = self.day_weights.get(day).copied().unwrap_or(0.0) * HOUR_WEIGHTS[hour];
        let minute_ms = self.start_ms + minute * MIN;
        for u in 0..self.units.len() {
            for (f, flow) in FLOWS.iter().enumerate() {
                self.carry[u][f] += self.totals[u][f] * w;
                while self.carry[u][f] >= 1.0 {
                    self.carry[u][f] -= 1.0;
                    let at = minute_ms + self.rng.range(0, MIN);
                    self.start(*flow, u, at);
                }
            }
        }
    }

    fn pick_defect(&mut self, at: i64) -> Defect {
        loop {
            let mut x = self.rng.below(u64::from(self.defect_weight)) as u32;
            let mut pick = Defect::BadSubject;
            for (d, w) in DEFECTS {
                if x < w {
                    pick = d;
                    break;
                }
                x -= w;
            }
            // `too_late` needs a watermark: a day of the campaign behind us.
            if pick == Defect::TooLate && at < self.start_ms + DAY {
                continue;
            }
            return pick;
        }
    }

    /// An event occurs: its message is emitted now or late, maybe re-sent,
    /// maybe followed by an invalid one.
    fn occurred(&mut self, at: i64, e: Event) {
        let msg = self.render(&e, at, None);
        let emit_at = if self.rng.chance(self.cfg.late_rate) {
            at + match self.rng.below(10) {
                0..=5 => self.rng.range(MIN, HOUR),
                6..=8 => self.rng.range(HOUR, DAY),
                _ => self.rng.range(DAY, 3 * DAY),
            }
        } else {
            at
        };
        if self.rng.chance(self.cfg.duplicate_rate) {
            let resend_at = emit_at + self.rng.range(0, 20 * MIN);
            let mut copy = msg.clone();
            copy.emitted_at = ms_to_utc(resend_at);
            self.push(resend_at, Due::Emit(Box::new(copy)));
        }
        let mut msg = msg;
        msg.emitted_at = ms_to_utc(emit_at);
        self.push(emit_at, Due::Emit(Box::new(msg)));
        if self.rng.chance(self.cfg.invalid_rate) {
            let defect = self.pick_defect(at);
            let bad = self.render(&e, at, Some(defect));
            self.push(at, Due::Emit(Box::new(bad)));
        }
    }
}

impl Iterator for Simulator {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        loop {
            // Draw every minute that starts before the next thing due.
            while self.next_minute < self.minutes {
                let minute_ms = self.start_ms + self.next_minute * MIN;
                match self.heap.peek() {
                    Some(Reverse(top)) if top.at < minute_ms => break,
                    _ => {}
                }
                self.generate_minute(self.next_minute);
                self.next_minute += 1;
            }
            let Reverse(entry) = self.heap.pop()?;
            match entry.due {
                Due::Emit(m) => return Some(*m),
                Due::Occur(e) => self.occurred(entry.at, e),
            }
        }
    }
}
