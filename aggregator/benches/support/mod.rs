//! A realistic stream of coverage [`Fact`]s for the benches (what the
//! validator hands the shards; deterministic, no IO).
//!
//! The mix mirrors `ingest/benches/support` without the hotline (tickets go
//! to `Tickets`, not `Shard`):
//!
//! - kind: `cccd.application` 36 %, `vneid.account` 31 %, `sim.swap` 15 %,
//!   `sim.signature` 18 %, with the same stage, level and device shares;
//! - 5 % are exact re-sends of one of the last 10,000 facts (duplicates);
//! - of the others, 30 % name a subject already seen, 70 % a new one;
//! - 2 % are late (1 hour to 30 days behind the stream clock);
//! - 90 % name a commune, 10 % only a district (pre-2025 geography);
//! - event ids like `c06-cccd-20240509-00012345` (26 bytes).
//!
//! The stream clock starts at 2024-05-01T00:00+07:00 and advances 0–1 ms
//! per fact; a fact's `occurred_at` is cut to the second, one fact in ten
//! to the millisecond, as producers write it (`ingest/benches/support`,
//! the simulator). Before 2026-12-05 late evening it kept the clock's
//! nanoseconds (BENCHMARKS.md, "A record's times in 4 or 6 bytes").
#![allow(dead_code)]

use aggregator::fact::{CccdStage, Device, SignatureStage, VneidStage};
use aggregator::{AreaId, AreaLevel, Digest, Fact, FactKind, Geography, Nanos};
use chrono::NaiveDate;

/// 2024-05-01T00:00:00+07:00 in unix nanoseconds.
pub const START: Nanos = 1_714_496_400 * 1_000_000_000;

const SECOND: i64 = 1_000_000_000;
const MILLI: i64 = 1_000_000;
const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
const RECENT: usize = 10_000;
const POOL: usize = 1 << 20;

/// splitmix64.
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
        mix(self.0)
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

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Subject `n`'s digest: 16 pseudo-random bytes (as an HMAC output is).
pub fn digest(n: u64, kind: u64) -> Digest {
    let a = mix(n.wrapping_mul(2).wrapping_add(kind << 60).wrapping_add(0x1234_5678));
    let b = mix(a ^ 0x5555_AAAA_5555_AAAA);
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&a.to_le_bytes());
    d[8..].copy_from_slice(&b.to_le_bytes());
    Digest(d)
}

/// The local (UTC+7) day of `at`.
pub fn local_day(at: Nanos) -> NaiveDate {
    let days = (at + 7 * HOUR).div_euclid(DAY);
    NaiveDate::from_num_days_from_ce_opt(days as i32 + 719_163).unwrap_or_else(|| unreachable!())
}

/// The fact generator.
#[derive(Debug)]
pub struct FactGen {
    rng: Rng,
    communes: Vec<AreaId>,
    districts: Vec<AreaId>,
    clock: Nanos,
    /// The clock advances by up to this many nanoseconds a fact.
    step: u64,
    seq: u64,
    /// Subjects seen, per kind (0 citizens, 1 phones).
    pools: [Vec<u64>; 2],
    next: u64,
    recent: Vec<Fact>,
    /// Per subject number: whether it has a qualifying or signature fact
    /// (so holds state in a shard).
    qualified: Vec<bool>,
    /// Count of `true` in `qualified`.
    pub subjects: usize,
    /// Facts generated that are not re-sends.
    pub distinct: u64,
}

impl FactGen {
    /// A generator over `geo`'s communes and districts.
    pub fn new(seed: u64, geo: &Geography) -> Self {
        FactGen {
            rng: Rng::new(seed),
            communes: geo.of_level(AreaLevel::Commune).collect(),
            districts: geo.of_level(AreaLevel::District).collect(),
            clock: START,
            step: 1_000_000,
            seq: 0,
            pools: [Vec::new(), Vec::new()],
            next: 0,
            recent: Vec::with_capacity(RECENT),
            qualified: Vec::new(),
            subjects: 0,
            distinct: 0,
        }
    }

    /// The clock advances so that `facts` facts span about `days` days (by
    /// default ≈ 0.5 ms a fact: a bench's facts fall on one or two days).
    #[allow(dead_code)]
    pub fn spread_over(mut self, days: i64, facts: u64) -> Self {
        self.step = (2 * days * DAY) as u64 / facts.max(1);
        self
    }

    /// `n` facts.
    pub fn batch(&mut self, n: usize) -> Vec<Fact> {
        (0..n).map(|_| self.next_fact().0).collect()
    }

    /// The next fact, and whether it is a re-send of an earlier one.
    pub fn next_fact(&mut self) -> (Fact, bool) {
        if !self.recent.is_empty() && self.rng.percent(5) {
            return (self.recent[self.rng.below(self.recent.len() as u64) as usize].clone(), true);
        }
        let f = self.fresh(None);
        if self.recent.len() < RECENT {
            self.recent.push(f.clone());
        } else {
            let i = self.rng.below(RECENT as u64) as usize;
            self.recent[i] = f.clone();
        }
        (f, false)
    }

    /// A fresh fact of the mix, or forced to `kind` (0 first-event kinds
    /// only, qualifying; 1 `sim.signature` only).
    pub fn fresh(&mut self, only: Option<u8>) -> Fact {
        self.seq += 1;
        self.distinct += 1;
        self.clock += self.rng.below(self.step) as i64;
        let at = if self.rng.percent(2) {
            self.clock - HOUR - self.rng.below((30 * DAY - HOUR) as u64) as i64
        } else {
            self.clock
        };
        // Cut as producers write it (module docs), without drawing from
        // the generator, so every other choice of the stream is as before.
        let at = at - at.rem_euclid(if self.seq.is_multiple_of(10) { MILLI } else { SECOND });
        let r = self.rng.below(100);
        let (kind, source) = match only {
            Some(0) => match r {
                0..50 => (FactKind::Cccd { stage: CccdStage::Received }, "c06-cccd"),
                50..80 => (FactKind::Vneid { stage: VneidStage::Activated, level: 2 }, "c06-vneid"),
                _ => (
                    FactKind::SimSwap { device: if r < 92 { Device::Smartphone } else { Device::FeaturePhone } },
                    "viettel",
                ),
            },
            Some(_) => {
                let stage = if self.rng.percent(85) { SignatureStage::Installed } else { SignatureStage::Revoked };
                (FactKind::SimSignature { stage }, "viettel")
            }
            None => match r {
                0..36 => {
                    let stage = match self.rng.below(100) {
                        0..50 => CccdStage::Received,
                        50..70 => CccdStage::Approved,
                        70..95 => CccdStage::Issued,
                        _ => CccdStage::Rejected,
                    };
                    (FactKind::Cccd { stage }, "c06-cccd")
                }
                36..67 => {
                    let stage = if self.rng.percent(60) { VneidStage::Activated } else { VneidStage::Registered };
                    (FactKind::Vneid { stage, level: if self.rng.percent(70) { 2 } else { 1 } }, "c06-vneid")
                }
                67..82 => {
                    let device = if self.rng.percent(70) { Device::Smartphone } else { Device::FeaturePhone };
                    (FactKind::SimSwap { device }, "viettel")
                }
                _ => {
                    let stage = if self.rng.percent(85) { SignatureStage::Installed } else { SignatureStage::Revoked };
                    (FactKind::SimSignature { stage }, "viettel")
                }
            },
        };
        let pool = usize::from(matches!(kind, FactKind::SimSwap { .. } | FactKind::SimSignature { .. }));
        let n = match self.pools[pool].is_empty() || !self.rng.percent(30) {
            true => {
                let n = self.next;
                self.next += 1;
                if self.pools[pool].len() < POOL {
                    self.pools[pool].push(n);
                } else {
                    let i = self.rng.below(POOL as u64) as usize;
                    self.pools[pool][i] = n;
                }
                self.qualified.push(false);
                n
            }
            false => self.pools[pool][self.rng.below(self.pools[pool].len() as u64) as usize],
        };
        let holds_state = matches!(kind, FactKind::SimSignature { .. }) || !kind.first_event_indicators().is_empty();
        if holds_state && !self.qualified[n as usize] {
            self.qualified[n as usize] = true;
            self.subjects += 1;
        }
        let area = if self.rng.percent(90) {
            self.communes[self.rng.below(self.communes.len() as u64) as usize]
        } else {
            self.districts[self.rng.below(self.districts.len() as u64) as usize]
        };
        let day = local_day(at);
        let event_id = format!("{source}-{}-{:08}", day.format("%Y%m%d"), self.seq).into_boxed_str();
        Fact { event_id, subject: digest(n, pool as u64), occurred_at: at, day, area, kind }
    }
}
