//! A realistic EVENTS-v1 message generator for the benches (deterministic,
//! no IO, no `rand`).
//!
//! Messages are ~300 bytes of contract-v1 JSON, like the upstream systems'
//! (the envelope, the type's fields and one extra `trace_id` field, as
//! producers add). The mix, per message:
//!
//! - type: `cccd.application` 35 %, `vneid.account` 30 %, `sim.swap` 15 %,
//!   `sim.signature` 17 %, `hotline.ticket` 3 %;
//! - 5 % are exact re-sends of one of the last 10,000 messages (producer
//!   retries: `Outcome::Duplicate` downstream);
//! - of the others, 30 % name a subject already seen (a citizen's VNeID after
//!   their CCCD, a ticket's next status, a SIM revoked after install), 70 %
//!   a new one;
//! - 2 % are late: `occurred_at` 1 hour to 30 days behind the stream's
//!   clock (within the 45-day horizon, so they are applied and may move a
//!   subject's first day);
//! - areas: 90 % commune only, 7 % commune and its district, 3 % district
//!   only (pre-2025 geography: three levels to roll up);
//! - timestamps: 90 % local `+07:00` to the second, 10 % UTC `Z` with
//!   milliseconds; phones 70 % `0…`, 20 % `+84…`, 10 % `84…`.
//!
//! The stream clock starts at 2024-05-01T00:00+07:00 and advances 0–1 ms
//! per message (10 million messages ≈ 58 days).
#![allow(dead_code)]

use std::fmt::Write as _;

use aggregator::{AreaLevel, Geography, Nanos};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// 2024-05-01T00:00:00+07:00 in unix nanoseconds.
pub const START: Nanos = 1_714_496_400 * 1_000_000_000;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
const RECENT: usize = 10_000;
const POOL: usize = 1 << 20;

/// splitmix64: small, fast, good enough for workload shapes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Subjects seen so far, for repeats (bounded: the newest replace random
/// old ones once full).
#[derive(Debug, Default)]
struct Pool(Vec<u64>);

impl Pool {
    fn push(&mut self, rng: &mut Rng, v: u64) {
        if self.0.len() < POOL {
            self.0.push(v);
        } else {
            let i = rng.below(POOL as u64) as usize;
            self.0[i] = v;
        }
    }
    fn pick(&self, rng: &mut Rng) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0[rng.below(self.0.len() as u64) as usize])
    }
}

/// The message generator.
#[derive(Debug)]
pub struct Gen {
    rng: Rng,
    /// (commune code, its district code).
    communes: Vec<(String, String)>,
    clock: Nanos,
    seq: u64,
    citizens: Pool,
    phones: Pool,
    tickets: Pool,
    next_citizen: u64,
    next_phone: u64,
    next_ticket: u64,
    recent: Vec<Vec<u8>>,
    out: String,
}

impl Gen {
    /// A generator over `geo`'s communes.
    pub fn new(seed: u64, geo: &Geography) -> Self {
        let communes = geo
            .of_level(AreaLevel::Commune)
            .filter_map(|c| {
                let area = geo.area(c);
                let district = geo.area(area.parent?);
                (district.level == AreaLevel::District).then(|| (area.code.clone(), district.code.clone()))
            })
            .collect::<Vec<_>>();
        assert!(!communes.is_empty(), "the geography has communes under districts");
        Gen {
            rng: Rng::new(seed),
            communes,
            clock: START,
            seq: 0,
            citizens: Pool::default(),
            phones: Pool::default(),
            tickets: Pool::default(),
            next_citizen: 0,
            next_phone: 0,
            next_ticket: 0,
            recent: Vec::with_capacity(RECENT),
            out: String::with_capacity(512),
        }
    }

    /// A wall clock for validation: the stream's clock plus one hour (no
    /// message is a `future_event`).
    pub fn now(&self) -> Nanos {
        self.clock + HOUR
    }

    /// `n` messages.
    pub fn batch(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.next_message()).collect()
    }

    /// The next `n` messages into `msgs`, written over its buffers: a bench
    /// that generates chunk after chunk frees no message between its timed
    /// runs (with glibc, freeing 100,000 of them just before a timed run
    /// slowed that run's allocations by a cost the binary does not have:
    /// BENCHMARKS.md, "Core: validate → apply").
    pub fn refill(&mut self, msgs: &mut Vec<Vec<u8>>, n: usize) {
        msgs.resize_with(n, Vec::new);
        for buf in msgs.iter_mut() {
            let m = self.next_message();
            buf.clear();
            buf.extend_from_slice(&m);
        }
    }

    /// The next message.
    pub fn next_message(&mut self) -> Vec<u8> {
        if !self.recent.is_empty() && self.rng.percent(5) {
            return self.recent[self.rng.below(self.recent.len() as u64) as usize].clone();
        }
        let m = self.fresh();
        if self.recent.len() < RECENT {
            self.recent.push(m.clone());
        } else {
            let i = self.rng.below(RECENT as u64) as usize;
            self.recent[i] = m.clone();
        }
        m
    }

    fn subject(&mut self, kind: u8) -> u64 {
        let repeat = self.rng.percent(30);
        let (pool, next) = match kind {
            0 => (&mut self.citizens, &mut self.next_citizen),
            1 => (&mut self.phones, &mut self.next_phone),
            _ => (&mut self.tickets, &mut self.next_ticket),
        };
        if repeat {
            if let Some(v) = pool.pick(&mut self.rng) {
                return v;
            }
        }
        let v = *next;
        *next += 1;
        pool.push(&mut self.rng, v);
        v
    }

    fn fresh(&mut self) -> Vec<u8> {
        self.seq += 1;
        self.clock += self.rng.below(1_000_000) as i64;
        let at = if self.rng.percent(2) {
            self.clock - HOUR - self.rng.below((30 * DAY - HOUR) as u64) as i64
        } else {
            self.clock
        };
        let ty = self.rng.below(100);
        let (ty, source) = match ty {
            0..35 => ("cccd.application", "c06-cccd"),
            35..65 => ("vneid.account", "c06-vneid"),
            65..80 => ("sim.swap", ["viettel", "vinaphone", "mobifone"][self.rng.below(3) as usize]),
            80..97 => ("sim.signature", ["viettel", "vinaphone", "mobifone"][self.rng.below(3) as usize]),
            _ => ("hotline.ticket", "hotline-1022"),
        };
        let (commune, district) = self.communes[self.rng.below(self.communes.len() as u64) as usize].clone();
        let area_pick = self.rng.below(100);
        let local = DateTime::<Utc>::from_timestamp_nanos(at).with_timezone(&seven());
        let mut o = std::mem::take(&mut self.out);
        o.clear();
        let _ = write!(
            o,
            r#"{{"schema":"d06.event.v1","event_id":"{source}-{}-{:08}","type":"{ty}","occurred_at":"#,
            local.format("%Y%m%d"),
            self.seq
        );
        if self.rng.percent(10) {
            let _ = write!(o, "\"{}\"", local.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Millis, true));
        } else {
            let _ = write!(o, "\"{}\"", local.to_rfc3339_opts(SecondsFormat::Secs, false));
        }
        let _ = write!(o, r#","source":"{source}""#);
        match area_pick {
            0..90 => {
                let _ = write!(o, r#","commune_code":"{commune}""#);
            }
            90..97 => {
                let _ = write!(o, r#","commune_code":"{commune}","district_code":"{district}""#);
            }
            _ => {
                let _ = write!(o, r#","district_code":"{district}""#);
            }
        }
        match ty {
            "cccd.application" | "vneid.account" => {
                let n = self.subject(0);
                // A bijection of 0..10⁹ (odd multiplier, not a multiple of 5).
                let _ = write!(o, r#","subject":"070{:09}""#, n.wrapping_mul(387_420_489) % 1_000_000_000);
            }
            "sim.swap" | "sim.signature" => {
                let n = self.subject(1);
                let national = format!(
                    "{}{:08}",
                    [3, 5, 7, 8, 9][(n % 5) as usize],
                    (n / 5).wrapping_mul(387_420_489) % 100_000_000
                );
                let _ = match self.rng.below(10) {
                    0..7 => write!(o, r#","subject":"0{national}""#),
                    7..9 => write!(o, r#","subject":"+84{national}""#),
                    _ => write!(o, r#","subject":"84{national}""#),
                };
            }
            _ => {
                let n = self.subject(2);
                let _ = write!(o, r#","subject":"T-2024-{n:06}""#);
            }
        }
        match ty {
            "cccd.application" => {
                let stage = match self.rng.below(100) {
                    0..50 => "received",
                    50..70 => "approved",
                    70..95 => "issued",
                    _ => "rejected",
                };
                let channel = ["station", "mobile_team", "online"][self.rng.below(3) as usize];
                let _ = write!(o, r#","stage":"{stage}","channel":"{channel}""#);
            }
            "vneid.account" => {
                let stage = if self.rng.percent(60) { "activated" } else { "registered" };
                let level = if self.rng.percent(70) { 2 } else { 1 };
                let _ = write!(o, r#","stage":"{stage}","level":{level}"#);
            }
            "sim.swap" => {
                let to = if self.rng.percent(90) { "4g" } else { "5g" };
                let device = if self.rng.percent(70) { "smartphone" } else { "feature_phone" };
                let _ = write!(o, r#","carrier":"{source}","from_tech":"2g","to_tech":"{to}","device":"{device}""#);
            }
            "sim.signature" => {
                let stage = if self.rng.percent(85) { "installed" } else { "revoked" };
                let _ = write!(o, r#","carrier":"{source}","stage":"{stage}""#);
            }
            _ => {
                let status = ["received", "answered", "forwarded", "resolved", "spam", "reopened"]
                    [[0, 0, 0, 1, 1, 2, 3, 4, 5, 0][self.rng.below(10) as usize]];
                let level = if self.rng.percent(90) { "specialist" } else { "leadership" };
                let _ = write!(o, r#","status":"{status}","level":"{level}","agency":"Sở Thông tin và Truyền thông""#);
            }
        }
        let _ = write!(o, r#","trace_id":"{:016x}{:016x}"}}"#, self.rng.next(), self.rng.next());
        let bytes = o.as_bytes().to_vec();
        self.out = o;
        bytes
    }
}

fn seven() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).unwrap_or_else(|| unreachable!())
}
