//! `d06 simulate`: a deterministic simulation of the 2024 "4 phủ" campaign in
//! Bình Phước, as contract-v1 messages, and a producer that writes it to
//! the Kafka topics.
//!
//! [`Simulator`] is an iterator of [`SimMessage`]s (bytes, topic kind, key)
//! in the order a broker would receive them, generated lazily from a seed:
//! the same [`SimConfig`] always gives the same bytes. What it models:
//!
//! - **Volume.** Each indicator's province figure of the 2024 plan
//!   ([`Targets`], `deploy/plans/binh-phuoc-2024.toml`) spread over the
//!   districts by their number of communes (the plan's own weights), times
//!   the district's pace, times [`SimConfig::scale`]: at scale 1.0 a 90-day
//!   campaign is ≈ 1.4 million messages. `smartphone_4g` follows from the
//!   `sim.swap` events (85 % smartphones): the plan's 777,150 target (90 % of
//!   adults, baseline 0) cannot be reached by swaps of 2G subscribers alone
//!   (211,000), so every district stays behind on it.
//! - **Pace.** Districts in [`SimConfig::lagging_districts`] run at
//!   [`SimConfig::lagging_pace`] (default 0.75) of their share, the others
//!   at [`SimConfig::on_track_pace`] (1.07), each ± 3 %.
//! - **Rhythm.** Local working hours (07:00–11:30, 13:00–17:00) are the
//!   busiest, evenings keep going ("90 ngày, đêm"), nights are nearly idle;
//!   Saturdays run at 55 %, Sundays and 30/4, 1/5 at 35 % and 30 %; the pace
//!   ramps linearly from 85 % to 115 % of the average over the campaign.
//! - **Lifecycles.** `cccd.application` received → approved (97 %) or
//!   rejected → issued; `vneid.account` registered → activated (92 %, level 2;
//!   10 % more level-1 accounts), 2 % activated again later; `sim.swap` once
//!   per subscriber (1 % a corrected second record); `sim.signature`
//!   installed, 3 % revoked later, 40 % of those reinstalled; 1022 tickets
//!   received → spam, answered or forwarded → resolved, some reopened, some
//!   escalated to leadership, some overdue.
//! - **Subjects** come from a bounded pool per district (citizens and
//!   subscribers, sized from the adult population), each with a home commune,
//!   so distinct counts are meaningful; a few events name a subject again.
//! - **Input defects**, all at emission: ~2 % identical re-sends
//!   ([`SimConfig::duplicate_rate`]), ~3 % late events (emitted 1 minute to 3
//!   days after they occurred, [`SimConfig::late_rate`]), ~0.5 % invalid
//!   messages ([`SimConfig::invalid_rate`]) covering every contract reason,
//!   each carrying its intended reason in [`SimMessage::invalid`]; phone
//!   numbers in all three spellings (`0…` 70 %, `+84…` 20 %, `84…` 10 %);
//!   areas as commune (90 %), commune and district (7 %) or district only
//!   (3 %); `occurred_at` at `+07:00` to the second (90 %) or `Z` with
//!   milliseconds.
//!
//! [`to_kafka`] writes a simulator to the four source topics, as fast as the
//! broker takes it or at a fixed rate. At a fixed rate the messages become a
//! live stream: each `occurred_at` is moved to the wall clock (keeping how
//! late or early the event is relative to the stream) and an extra field
//! `"sim_produced_at_ms"` records when it was handed to the producer (extra
//! fields are allowed by the contract and ignored by d06; it carries no
//! personal data).
//!
//! Subjects are synthetic: citizen ids are 12 digits starting with `070`
//! (Bình Phước), phone numbers use real carrier prefixes; any resemblance to
//! real people's numbers is chance, which is why the output is only ever
//! written to the project's own topics.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aggregator::{AreaId, AreaLevel, Geography};
use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset as _, TimeZone, Utc, Weekday};
use ingest::contract::Reason;
use ingest::kafka::{KafkaConfig, Topics};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Viet Nam's offset (no DST since 1975).
const LOCAL_OFFSET_SECS: i32 = 7 * 3600;

/// Province figures the simulation aims at (over [`Targets::campaign_days`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    /// Days the figures below are reached in (the plan's 90).
    pub campaign_days: u32,
    /// Adults (the plan's `adult_population`): sizes the subject pools.
    pub adults: u64,
    /// CCCD applications received (distinct citizens).
    pub cccd: u64,
    /// Level-2 VNeID activations (distinct citizens).
    pub vneid: u64,
    /// 2G subscribers moved (distinct subscribers with a `sim.swap`).
    pub migrated_2g: u64,
    /// Subscribers with an installed SIM signature at the end.
    pub sim_signature: u64,
    /// Share of `sim.swap` events whose device is a smartphone.
    pub smartphone_share: f64,
    /// 1022 hotline tickets received per day (the province, at scale 1).
    pub tickets_per_day: f64,
}

impl Default for Targets {
    /// The 2024 plan (`deploy/plans/binh-phuoc-2024.toml`); tickets from the
    /// hotline's 2023 report (1,493 in 200 days, ≈ 7.5 a day).
    fn default() -> Self {
        Targets {
            campaign_days: 90,
            adults: 863_500,
            cccd: 7_101,
            vneid: 334_507,
            migrated_2g: 211_000,
            sim_signature: 431_750,
            smartphone_share: 0.85,
            tickets_per_day: 7.5,
        }
    }
}

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The seed: the same configuration always gives the same messages.
    pub seed: u64,
    /// First local day.
    pub start: NaiveDate,
    /// Days simulated (from `start`, local midnight to local midnight).
    pub days: u32,
    /// Volume multiplier: 1.0 ≈ the real campaign.
    pub scale: f64,
    /// District codes (or, in the post-2025 geography, commune codes) that
    /// lag the plan.
    pub lagging_districts: Vec<String>,
    /// Pace of a lagging district (share of its plan), ± 3 %.
    pub lagging_pace: f64,
    /// Pace of every other district, ± 3 %.
    pub on_track_pace: f64,
    /// Share of messages re-sent identically (producer retries).
    pub duplicate_rate: f64,
    /// Share of messages emitted late (1 minute to 3 days after they occurred).
    pub late_rate: f64,
    /// Share of extra invalid messages.
    pub invalid_rate: f64,
    /// Communes no subject lives in and no event names (e.g. kept free for
    /// the latency probe's markers).
    pub exclude_communes: Vec<String>,
    /// The province figures aimed at.
    pub targets: Targets,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 2024,
            start: NaiveDate::from_ymd_opt(2024, 4, 10).unwrap_or_default(),
            days: 90,
            scale: 1.0,
            // Huyện Bù Gia Mập and Huyện Bù Đốp: remote border districts.
            lagging_districts: vec!["691".into(), "693".into()],
            lagging_pace: 0.75,
            on_track_pace: 1.07,
            duplicate_rate: 0.02,
            late_rate: 0.03,
            invalid_rate: 0.005,
            exclude_communes: Vec::new(),
            targets: Targets::default(),
        }
    }
}

impl SimConfig {
    /// Checks the configuration against a geography: known codes, sane rates.
    pub fn validate(&self, geo: &Geography) -> Result<()> {
        let units = units_of(geo);
        for code in &self.lagging_districts {
            if !units.iter().any(|(a, _)| geo.area(*a).code == *code) {
                bail!("lagging district {code}: not a district of the geography");
            }
        }
        for code in &self.exclude_communes {
            if geo.find(AreaLevel::Commune, code).is_none() {
                bail!("excluded commune {code}: not a commune of the geography");
            }
        }
        if !(self.scale.is_finite() && self.scale >= 0.0 && self.scale <= 100.0) {
            bail!("scale must be in 0..=100");
        }
        for (name, r) in [
            ("duplicate_rate", self.duplicate_rate),
            ("late_rate", self.late_rate),
            ("invalid_rate", self.invalid_rate),
        ] {
            if !(0.0..=0.5).contains(&r) {
                bail!("{name} must be in 0..=0.5");
            }
        }
        Ok(())
    }
}

/// Which source topic a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `cccd.application`.
    Cccd,
    /// `vneid.account`.
    Vneid,
    /// `sim.swap`, `sim.signature`.
    Sim,
    /// `hotline.ticket`.
    Hotline,
}

impl Kind {
    /// Every kind, in the topics' order.
    pub const ALL: [Kind; 4] = [Kind::Cccd, Kind::Vneid, Kind::Sim, Kind::Hotline];

    /// The topic name in `topics`.
    pub fn topic(self, topics: &Topics) -> &str {
        match self {
            Kind::Cccd => &topics.cccd,
            Kind::Vneid => &topics.vneid,
            Kind::Sim => &topics.sim,
            Kind::Hotline => &topics.hotline,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One simulated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMessage {
    /// Its topic.
    pub kind: Kind,
    /// The Kafka key (the subject, as producers do), if any.
    pub key: Option<String>,
    /// Contract-v1 JSON (or, for some invalid messages, not JSON at all).
    pub payload: Vec<u8>,
    /// Event time as written (for a message whose `occurred_at` is
    /// unreadable, the time it was emitted).
    pub occurred_at: DateTime<FixedOffset>,
    /// When it reaches the broker in simulated time: the stream is in this
    /// order. Equal to `occurred_at` but for late events, re-sends and some
    /// invalid messages.
    pub emitted_at: DateTime<Utc>,
    /// For an invalid message, the reason d06 must reject it with.
    pub invalid: Option<Reason>,
}

/// splitmix64: small, fast, deterministic.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `lo..hi` (milliseconds and such).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Citizen ids: 1940–2008 births × 2 genders × 10⁶ serials.
const CITIZEN_SPACE: u64 = 69 * 2 * 1_000_000;
/// Mobile prefixes (after the leading 0) and their carrier.
const PREFIXES: [(&str, &str); 36] = [
    ("32", "viettel"),
    ("33", "viettel"),
    ("34", "viettel"),
    ("35", "viettel"),
    ("36", "viettel"),
    ("37", "viettel"),
    ("38", "viettel"),
    ("39", "viettel"),
    ("86", "viettel"),
    ("96", "viettel"),
    ("97", "viettel"),
    ("98", "viettel"),
    ("81", "vinaphone"),
    ("82", "vinaphone"),
    ("83", "vinaphone"),
    ("84", "vinaphone"),
    ("85", "vinaphone"),
    ("88", "vinaphone"),
    ("91", "vinaphone"),
    ("94", "vinaphone"),
    ("70", "mobifone"),
    ("76", "mobifone"),
    ("77", "mobifone"),
    ("78", "mobifone"),
    ("79", "mobifone"),
    ("89", "mobifone"),
    ("90", "mobifone"),
    ("93", "mobifone"),
    ("52", "vietnamobile"),
    ("56", "vietnamobile"),
    ("58", "vietnamobile"),
    ("92", "vietnamobile"),
    ("59", "gmobile"),
    ("99", "gmobile"),
    ("87", "itel"),
    ("55", "reddi"),
];
const PHONE_SPACE: u64 = PREFIXES.len() as u64 * 10_000_000;
/// Multiplier of the index → number bijections (a prime dividing neither space).
const SPREAD: u64 = 2_654_435_761;

const AGENCIES: [&str; 5] = [
    "Công an tỉnh Bình Phước",
    "Sở Thông tin và Truyền thông",
    "Viettel Bình Phước",
    "VNPT Bình Phước",
    "UBND cấp huyện",
];

/// A district (or, post-2025, a commune) with its share of everything.
#[derive(Clone, Debug)]
struct Unit {
    /// Set for a district (pre-2025): the code events may name.
    district_code: Option<String>,
    /// Commune codes subjects live in.
    communes: Vec<String>,
    /// First global index of its citizens and subscribers, and how many.
    citizen_base: u64,
    citizens: u64,
    phone_base: u64,
    phones: u64,
    /// How many subjects each flow has taken from the pools so far.
    next_cccd: u64,
    next_vneid: u64,
    next_swap: u64,
    next_signature: u64,
    /// Multipliers of the per-flow permutations of the pools.
    steps: [u64; 5],
}

/// The units of a geography: districts, or communes where there are none,
/// each with its communes.
fn units_of(geo: &Geography) -> Vec<(AreaId, Vec<AreaId>)> {
    let districts: Vec<AreaId> = geo.of_level(AreaLevel::District).collect();
    if districts.is_empty() {
        return geo.of_level(AreaLevel::Commune).map(|c| (c, vec![c])).collect();
    }
    districts
        .into_iter()
        .map(|d| {
            let communes = geo.of_level(AreaLevel::Commune).filter(|c| geo.area(*c).parent == Some(d)).collect();
            (d, communes)
        })
        .collect()
}

/// The flows a campaign is made of; each start is one subject's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Cccd,
    Vneid,
    VneidLevel1,
    Swap,
    Signature,
    Ticket,
}

const FLOWS: [Flow; 6] = [Flow::Cccd, Flow::Vneid, Flow::VneidLevel1, Flow::Swap, Flow::Signature, Flow::Ticket];

/// One event of a lifecycle, before it is written out.
#[derive(Clone, Debug)]
enum Event {
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

/// How an invalid message is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    Truncated,
    TrailingBytes,
    Bom,
    NotUtf8,
    SchemaV2,
    UnknownType,
    NoSubject,
    NoArea,
    NoTypeField,
    BadSubject,
    BadEnum,
    NoOffset,
    UnknownArea,
    AreaMismatch,
    Future,
    TooLate,
}

impl Defect {
    fn reason(self) -> Reason {
        match self {
            Defect::Truncated | Defect::TrailingBytes | Defect::Bom | Defect::NotUtf8 => Reason::MalformedJson,
            Defect::SchemaV2 => Reason::UnsupportedSchema,
            Defect::UnknownType => Reason::UnknownType,
            Defect::NoSubject | Defect::NoArea | Defect::NoTypeField => Reason::MissingField,
            Defect::BadSubject | Defect::BadEnum | Defect::NoOffset => Reason::InvalidField,
            Defect::UnknownArea => Reason::UnknownArea,
            Defect::AreaMismatch => Reason::AreaMismatch,
            Defect::Future => Reason::FutureEvent,
            Defect::TooLate => Reason::TooLate,
        }
    }
}

/// Defects by weight: every reason, the common ones (what upstream teams
/// actually get wrong: fields, enums, codes) more often.
const DEFECTS: [(Defect, u32); 16] = [
    (Defect::Truncated, 6),
    (Defect::TrailingBytes, 3),
    (Defect::Bom, 2),
    (Defect::NotUtf8, 2),
    (Defect::SchemaV2, 5),
    (Defect::UnknownType, 5),
    (Defect::NoSubject, 6),
    (Defect::NoArea, 5),
    (Defect::NoTypeField, 6),
    (Defect::BadSubject, 12),
    (Defect::BadEnum, 10),
    (Defect::NoOffset, 8),
    (Defect::UnknownArea, 10),
    (Defect::AreaMismatch, 8),
    (Defect::Future, 6),
    (Defect::TooLate, 6),
];

/// Relative activity per local hour on a working day.
const HOUR_WEIGHTS: [f64; 24] = [
    0.03, 0.03, 0.03, 0.03, 0.03, 0.1, 0.35, 0.9, 1.0, 1.0, 1.0, 0.6, 0.3, 0.8, 1.0, 1.0, 1.0, 0.6, 0.5, 0.5, 0.45,
    0.25, 0.08, 0.04,
];

/// Activity of a local day relative to a working day.
fn day_factor(d: NaiveDate) -> f64 {
    if (d.month(), d.day()) == (4, 30) || (d.month(), d.day()) == (5, 1) || (d.month(), d.day()) == (9, 2) {
        return 0.3;
    }
    match d.weekday() {
        Weekday::Sat => 0.55,
        Weekday::Sun => 0.35,
        _ => 1.0,
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
        let (mut citizen_base, mut phone_base) = (0u64, 0u64);
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

    /// The messages emitted before `t` (simulated time).
    #[cfg_attr(not(test), allow(dead_code))] // for `d06 demo` and the tests
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

    /// A moment `lo..hi` whole local days after `t`, at a time of day drawn
    /// from the daily rhythm (people and offices act in the daytime).
    fn days_later(&mut self, t: i64, lo: i64, hi: i64) -> i64 {
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

    /// A subject's index in the pool: the next one in the flow's own order,
    /// or (with probability `again`) one the flow already took.
    fn take(&mut self, unit: usize, flow: Flow, again: f64) -> u64 {
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

    fn start(&mut self, flow: Flow, unit: usize, t: i64) {
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

    /// Writes an event at `at` (with `defect`, if any) as one message.
    fn render(&mut self, e: &Event, at: i64, defect: Option<Defect>) -> SimMessage {
        let mut defect = defect;
        let r = &mut self.rng;
        let (unit, kind, ty) = match e {
            Event::Cccd { unit, .. } => (*unit, Kind::Cccd, "cccd.application"),
            Event::Vneid { unit, .. } => (*unit, Kind::Vneid, "vneid.account"),
            Event::Swap { unit, .. } => (*unit, Kind::Sim, "sim.swap"),
            Event::Signature { unit, .. } => (*unit, Kind::Sim, "sim.signature"),
            Event::Ticket { unit, .. } => (*unit, Kind::Hotline, "hotline.ticket"),
        };
        let u = &self.units[usize::from(unit)];
        // Subject, its home commune, key and source.
        let (subject, key, source, carrier, home): (String, String, &str, &str, u64) = match e {
            Event::Cccd { citizen, .. } | Event::Vneid { citizen, .. } => {
                let id = citizen_id(*citizen, self.cfg.seed);
                let src = if kind == Kind::Cccd { "c06-cccd" } else { "c06-vneid" };
                (id.clone(), id, src, "", *citizen)
            }
            Event::Swap { phone, .. } | Event::Signature { phone, .. } => {
                let (national, carrier) = phone_number(*phone, self.cfg.seed);
                let spelled = match r.below(10) {
                    0..=6 => national.clone(),
                    7 | 8 => format!("+84{}", &national[1..]),
                    _ => format!("84{}", &national[1..]),
                };
                (spelled, national, carrier, carrier, *phone)
            }
            Event::Ticket { ticket, opened, .. } => {
                let id = format!("1022-{}-{:05}", opened.format("%Y%m%d"), ticket);
                (id.clone(), id, "hotline-1022", "", u64::from(*ticket))
            }
        };
        let commune_index = match e {
            Event::Ticket { commune, .. } => usize::from(*commune),
            _ => (mix64(home ^ self.cfg.seed) % u.communes.len().max(1) as u64) as usize,
        };
        let commune = u.communes.get(commune_index).map(String::as_str);
        // Which area fields: commune (90 %), commune and district (7 %), district only (3 %).
        let spell = r.below(100);
        let (mut commune_field, mut district_field) = match (commune, u.district_code.as_deref()) {
            (Some(_), Some(d)) if spell >= 97 => (None, Some(d.to_owned())),
            (Some(c), Some(d)) if spell >= 90 => (Some(c.to_owned()), Some(d.to_owned())),
            (Some(c), _) => (Some(c.to_owned()), None),
            (None, d) => (None, d.map(str::to_owned)),
        };
        // Event time as written.
        let mut written_at = at;
        let mut zulu = r.chance(0.1);
        match defect {
            Some(Defect::Future) => written_at = at + 200 * 365 * DAY,
            Some(Defect::TooLate) => written_at = at - 60 * DAY,
            _ => {}
        }
        if !zulu {
            written_at = written_at.div_euclid(SEC) * SEC;
        }
        let counter = match e {
            Event::Cccd { .. } => 0,
            Event::Vneid { .. } => 1,
            Event::Swap { .. } => 2,
            Event::Signature { .. } => 3,
            Event::Ticket { .. } => 4,
        };
        let event_id = match e {
            Event::Ticket { ticket, opened, step, .. } => {
                format!("hl1022-{}-{:05}-{}", opened.format("%Y%m%d"), ticket, step)
            }
            _ => {
                self.counters[counter] += 1;
                let n = self.counters[counter];
                match e {
                    Event::Cccd { .. } | Event::Vneid { .. } => {
                        format!("{source}-{}-{n:08}", local_date(at).format("%Y%m%d"))
                    }
                    Event::Swap { .. } => format!("{source}-swap-{n:09}"),
                    _ => format!("{source}-sig-{n:09}"),
                }
            }
        };
        let r = &mut self.rng;
        let trace = r.next();
        // Defects that change a field.
        let mut ty_written = ty;
        let mut schema = ingest::contract::SCHEMA_V1;
        let mut subject_written = Some(subject);
        let mut enum_override: Option<&'static str> = None;
        let mut drop_type_field = false;
        let mut no_offset = false;
        match defect {
            Some(Defect::SchemaV2) => schema = "d06.event.v2",
            Some(Defect::UnknownType) => {
                ty_written = match kind {
                    Kind::Cccd => "cccd.renewal",
                    Kind::Vneid => "vneid.login",
                    Kind::Sim => "sim.topup",
                    Kind::Hotline => "hotline.call",
                }
            }
            Some(Defect::NoSubject) => subject_written = None,
            Some(Defect::NoArea) => {
                commune_field = None;
                district_field = None;
            }
            Some(Defect::NoTypeField) => drop_type_field = true,
            Some(Defect::BadSubject) => {
                subject_written = Some(match kind {
                    Kind::Cccd | Kind::Vneid => format!("070{:08}", r.below(100_000_000)),
                    // A landline (Bình Phước's area code 0271).
                    Kind::Sim => format!("0271{:07}", r.below(10_000_000)),
                    Kind::Hotline => String::new(),
                })
            }
            Some(Defect::BadEnum) => {
                enum_override = Some(match e {
                    Event::Cccd { .. } => "pending",
                    Event::Vneid { .. } => "verified",
                    Event::Swap { .. } => "tablet",
                    Event::Signature { .. } => "sfone",
                    Event::Ticket { .. } => "closed",
                })
            }
            Some(Defect::NoOffset) => {
                no_offset = true;
                zulu = false;
            }
            Some(Defect::UnknownArea) => {
                commune_field = Some("99999".into());
                district_field = None;
            }
            Some(Defect::AreaMismatch) => {
                // This commune with another district's code.
                let other = self
                    .units
                    .iter()
                    .filter_map(|o| o.district_code.as_deref())
                    .find(|d| Some(*d) != u.district_code.as_deref())
                    .map(str::to_owned);
                match (commune_field.clone().or(commune.map(str::to_owned)), other) {
                    (Some(c), Some(d)) => {
                        commune_field = Some(c);
                        district_field = Some(d);
                    }
                    // No districts (post-2025): an unknown commune instead.
                    _ => {
                        commune_field = Some("99999".into());
                        district_field = None;
                        defect = Some(Defect::UnknownArea);
                    }
                }
            }
            _ => {}
        }
        let occurred = format_time(written_at, zulu, no_offset);
        let mut s = String::with_capacity(320);
        let _ = write!(
            s,
            r#"{{"schema":"{schema}","event_id":"{event_id}","type":"{ty_written}","occurred_at":"{occurred}","source":"{source}""#
        );
        if let Some(c) = &commune_field {
            let _ = write!(s, r#","commune_code":"{c}""#);
        }
        if let Some(d) = &district_field {
            let _ = write!(s, r#","district_code":"{d}""#);
        }
        if let Some(sub) = &subject_written {
            let _ = write!(s, r#","subject":"{sub}""#);
        }
        let first = |name: &str, value: &str, s: &mut String| {
            if !drop_type_field {
                let _ = write!(s, r#","{name}":"{value}""#);
            }
        };
        match e {
            Event::Cccd { stage, channel, .. } => {
                first("stage", enum_override.unwrap_or(stage), &mut s);
                let _ = write!(s, r#","channel":"{channel}""#);
            }
            Event::Vneid { stage, level, .. } => {
                first("stage", enum_override.unwrap_or(stage), &mut s);
                let _ = write!(s, r#","level":{level}"#);
            }
            Event::Swap { to_tech, device, .. } => {
                first("carrier", carrier, &mut s);
                let _ = write!(
                    s,
                    r#","from_tech":"2g","to_tech":"{to_tech}","device":"{}""#,
                    enum_override.unwrap_or(device)
                );
            }
            Event::Signature { stage, .. } => {
                first("carrier", enum_override.unwrap_or(carrier), &mut s);
                let _ = write!(s, r#","stage":"{stage}""#);
            }
            Event::Ticket { status, level, agency, .. } => {
                first("status", enum_override.unwrap_or(status), &mut s);
                let _ = write!(s, r#","level":"{level}""#);
                if let Some(a) = agency.and_then(|a| AGENCIES.get(usize::from(a))) {
                    let _ = write!(s, r#","agency":"{a}""#);
                }
            }
        }
        let _ = write!(s, r#","trace_id":"{trace:016x}"}}"#);
        let mut payload = s.into_bytes();
        match defect {
            Some(Defect::Truncated) => {
                let cut = 1 + r.below(payload.len().saturating_sub(2) as u64) as usize;
                payload.truncate(cut);
            }
            Some(Defect::TrailingBytes) => payload.extend_from_slice(b" {}"),
            Some(Defect::Bom) => {
                payload.splice(0..0, [0xEF, 0xBB, 0xBF]);
            }
            Some(Defect::NotUtf8) => {
                // A Latin-1 "ư" where UTF-8 was expected, inside the trace id.
                let at = payload.len() - 3;
                payload[at] = 0xF9;
            }
            _ => {}
        }
        let offset = FixedOffset::east_opt(if zulu { 0 } else { LOCAL_OFFSET_SECS }).unwrap_or(Utc.fix());
        let shown =
            if no_offset || defect.is_some_and(|d| d.reason() == Reason::MalformedJson) { at } else { written_at };
        SimMessage {
            kind,
            key: subject_written.is_some().then_some(key),
            payload,
            occurred_at: ms_to_utc(shown).with_timezone(&offset),
            emitted_at: ms_to_utc(at),
            invalid: defect.map(Defect::reason),
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

/// A step coprime with `size`, derived from `salt` (a bijection's multiplier).
fn coprime_step(size: u64, salt: u64) -> u64 {
    let mut step = (SPREAD + salt * 2) % size.max(1);
    if size <= 1 {
        return 1;
    }
    while gcd(step, size) != 1 {
        step = (step + 1) % size;
    }
    step
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The 12-digit citizen id of global citizen index `n`: `070` (born in Bình
/// Phước), the century-and-gender digit, two year digits, six serial digits.
fn citizen_id(n: u64, seed: u64) -> String {
    let p = ((u128::from(n % CITIZEN_SPACE) * u128::from(SPREAD) + u128::from(mix64(seed ^ 11)))
        % u128::from(CITIZEN_SPACE)) as u64;
    let serial = p % 1_000_000;
    let rest = p / 1_000_000;
    let female = rest % 2;
    let year = 1940 + rest / 2;
    let century = if year >= 2000 { 2 } else { 0 } + female;
    format!("070{century}{:02}{serial:06}", year % 100)
}

/// The national form (`0…`, 10 digits) and carrier of global subscriber index `n`.
fn phone_number(n: u64, seed: u64) -> (String, &'static str) {
    let p = ((u128::from(n % PHONE_SPACE) * u128::from(SPREAD) + u128::from(mix64(seed ^ 13)))
        % u128::from(PHONE_SPACE)) as u64;
    let (prefix, carrier) = PREFIXES[(p / 10_000_000) as usize % PREFIXES.len()];
    (format!("0{prefix}{:07}", p % 10_000_000), carrier)
}

fn local_midnight_ms(d: NaiveDate) -> i64 {
    let days = i64::from(d.num_days_from_ce()) - 719_163; // 1970-01-01
    days * DAY - i64::from(LOCAL_OFFSET_SECS) * SEC
}

fn local_date(ms: i64) -> NaiveDate {
    let local = ms + i64::from(LOCAL_OFFSET_SECS) * SEC;
    NaiveDate::from_num_days_from_ce_opt((local.div_euclid(DAY) + 719_163) as i32).unwrap_or_default()
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `2024-05-09T08:15:30+07:00` (local, seconds), `2024-05-09T01:15:30.123Z`
/// (UTC, milliseconds), or with `no_offset` the local time with no offset.
fn format_time(ms: i64, zulu: bool, no_offset: bool) -> String {
    let shifted = if zulu { ms } else { ms + i64::from(LOCAL_OFFSET_SECS) * SEC };
    let t = ms_to_utc(shifted).naive_utc();
    if zulu {
        format!("{}Z", t.format("%Y-%m-%dT%H:%M:%S%.3f"))
    } else if no_offset {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        format!("{}+07:00", t.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Live mode: moves `occurred_at` by `shift_ms`, written local to the
/// millisecond, and appends `"sim_produced_at_ms"`. `None` when the message
/// has no readable `occurred_at` (left as it is).
pub fn restamp(payload: &[u8], shift_ms: i64, produced_at_ms: i64) -> Option<Vec<u8>> {
    const FIELD: &[u8] = br#""occurred_at":""#;
    let start = payload.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let len = payload[start..].iter().position(|b| *b == b'"')?;
    let old = std::str::from_utf8(&payload[start..start + len]).ok()?;
    let t = DateTime::parse_from_rfc3339(old).ok()?;
    let new_ms = t.timestamp_millis().checked_add(shift_ms)?;
    let shifted = ms_to_utc(new_ms + i64::from(LOCAL_OFFSET_SECS) * SEC).naive_utc();
    let new = format!("{}+07:00", shifted.format("%Y-%m-%dT%H:%M:%S%.3f"));
    let close = payload.iter().rposition(|b| *b == b'}')?;
    if close < start + len {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() + 40);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&payload[start + len..close]);
    let _ = write!(ByteWriter(&mut out), r#","sim_produced_at_ms":{produced_at_ms}"#);
    out.extend_from_slice(&payload[close..]);
    Some(out)
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// What [`to_kafka`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages handed to the producer, per [`Kind`] (index = `Kind as usize`).
    pub per_kind: [u64; 4],
    /// Of those, invalid on purpose.
    pub invalid: u64,
    /// Payload bytes handed to the producer.
    pub bytes: u64,
    /// Messages the broker acknowledged.
    pub acked: u64,
    /// Messages that failed delivery.
    pub failed: u64,
    /// The first delivery error, if any.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Event time (as simulated) of the last message emitted.
    pub last_emitted: Option<DateTime<Utc>>,
}

impl Summary {
    /// Messages handed to the producer.
    pub fn sent(&self) -> u64 {
        self.per_kind.iter().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "sent {} messages ({} cccd, {} vneid, {} sim, {} hotline; {} invalid on purpose), {:.1} MB",
            self.sent(),
            self.per_kind[0],
            self.per_kind[1],
            self.per_kind[2],
            self.per_kind[3],
            self.invalid,
            self.bytes as f64 / 1e6
        )?;
        writeln!(
            f,
            "acked {}, failed {} in {:.2} s: {:.0} msgs/s",
            self.acked,
            self.failed,
            secs,
            self.acked as f64 / secs
        )?;
        if let Some(t) = self.last_emitted {
            writeln!(f, "simulated up to {}", t.with_timezone(&local_offset()).format("%Y-%m-%d %H:%M %:z"))?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "first delivery error: {e}")?;
        }
        Ok(())
    }
}

pub(crate) fn local_offset() -> FixedOffset {
    FixedOffset::east_opt(LOCAL_OFFSET_SECS).unwrap_or(Utc.fix())
}

/// Counts delivery reports on librdkafka's polling thread.
#[derive(Debug, Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, AtomicOrdering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, AtomicOrdering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

fn unix_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `d06 simulate`: writes to the Kafka topics of `kafka` at `rate` msgs/s
/// (0 = as fast as possible), up to `limit` messages; prints progress (every
/// 2 s, standard error) and returns the counts.
///
/// With `rate > 0` the stream is live: every `occurred_at` is moved by
/// (wall clock − simulated emission time) and `"sim_produced_at_ms"` (wall
/// clock when handed to the producer, unix ms) is appended, so late events
/// stay late and too-late or future ones stay so.
///
/// Stops early, after flushing what was sent, when `shutdown` is cancelled.
pub async fn to_kafka<I>(
    sim: I,
    kafka: &KafkaConfig,
    rate: u64,
    limit: Option<u64>,
    shutdown: CancellationToken,
) -> Result<Summary>
where
    I: Iterator<Item = SimMessage> + Send + 'static,
{
    kafka.validate().context("kafka configuration")?;
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || produce(sim, &kafka, rate, limit, &shutdown))
        .await
        .context("producer thread")?
}

fn producer_config(kafka: &KafkaConfig, rate: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    let defaults = [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", if rate == 0 { "50" } else { "5" }),
        ("batch.num.messages", "10000"),
        ("queue.buffering.max.messages", "500000"),
        ("queue.buffering.max.kbytes", "524288"),
        ("message.timeout.ms", "300000"),
    ];
    for (k, v) in defaults {
        c.set(k, v);
    }
    // The operator's properties win (TLS, SASL, …); consumer-only keys are
    // ignored by librdkafka with a warning.
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    for (k, var) in &kafka.properties_from_env {
        if let Ok(v) = std::env::var(var) {
            c.set(k, v);
        }
    }
    c
}

fn produce(
    mut sim: impl Iterator<Item = SimMessage>,
    kafka: &KafkaConfig,
    rate: u64,
    limit: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<Summary> {
    let producer: ThreadedProducer<Deliveries> =
        producer_config(kafka, rate).create_with_context(Deliveries::default()).context("creating the producer")?;
    let topics: [&str; 4] = Kind::ALL.map(|k| k.topic(&kafka.topics));
    let mut summary = Summary::default();
    let limit = limit.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut last_report = started;
    let mut sent_at_report = 0u64;
    while summary.sent() < limit && !shutdown.is_cancelled() {
        let Some(msg) = sim.next() else { break };
        let sent = summary.sent();
        let payload = if rate > 0 {
            // Pace: message i is due at i / rate seconds.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let ahead = due.saturating_sub(started.elapsed());
            if ahead > Duration::from_millis(1) {
                std::thread::sleep(ahead);
            }
            let now = unix_ms();
            let shift = now - msg.emitted_at.timestamp_millis();
            let keep = msg.invalid == Some(Reason::MalformedJson);
            match (keep, restamp(&msg.payload, shift, now)) {
                (false, Some(p)) => p,
                _ => msg.payload.clone(),
            }
        } else {
            msg.payload.clone()
        };
        let topic = topics[msg.kind.index()];
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(&payload[..]);
        if let Some(k) = &msg.key {
            record = record.key(k.as_str());
        }
        let handed_over = loop {
            match producer.send(record) {
                Ok(()) => break true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if shutdown.is_cancelled() {
                        break false;
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
            }
        };
        if !handed_over {
            break;
        }
        summary.per_kind[msg.kind.index()] += 1;
        summary.invalid += u64::from(msg.invalid.is_some());
        summary.bytes += payload.len() as u64;
        summary.last_emitted = Some(msg.emitted_at);
        if last_report.elapsed() >= Duration::from_secs(2) {
            let acked = producer.context().acked.load(AtomicOrdering::Relaxed);
            let now_sent = summary.sent();
            eprintln!(
                "simulate: {now_sent} sent ({:.0}/s), {acked} acked, simulated {}",
                (now_sent - sent_at_report) as f64 / last_report.elapsed().as_secs_f64(),
                msg.emitted_at.with_timezone(&local_offset()).format("%Y-%m-%d %H:%M")
            );
            last_report = Instant::now();
            sent_at_report = now_sent;
        }
    }
    // Everything handed over is delivered or failed before we report.
    let flushed = producer.flush(rdkafka::util::Timeout::After(Duration::from_secs(300)));
    summary.elapsed = started.elapsed();
    let ctx = producer.context();
    summary.acked = ctx.acked.load(AtomicOrdering::Relaxed);
    summary.failed = ctx.failed.load(AtomicOrdering::Relaxed);
    summary.first_error = ctx.first_error.lock().ok().and_then(|e| e.clone());
    flushed.context("flushing the producer")?;
    Ok(summary)
}

/// `d06 simulate` arguments.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Configuration file (TOML): Kafka brokers, topics, properties and the
    /// geography; defaults apply when omitted.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Messages per second; 0 = as fast as the broker takes them. With a
    /// rate, event times follow the wall clock (a live stream).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stop after this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Seed: the same seed gives the same messages.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Volume multiplier (1.0 ≈ the real campaign, ≈ 1.4 million messages).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Days simulated from the start (2024-04-10).
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// District codes that lag the plan (comma-separated; default 691,693).
    #[arg(long, value_delimiter = ',')]
    pub lagging: Option<Vec<String>>,
    /// A commune no simulated event names (repeatable), e.g. for latency markers.
    #[arg(long = "exclude-commune")]
    pub exclude_communes: Vec<String>,
    /// Share of extra invalid messages (0.005 = 0.5 %).
    #[arg(long, default_value_t = 0.005)]
    pub invalid_rate: f64,
    /// Write the messages to standard output, one per line (topic kind, a
    /// tab, the payload), instead of to Kafka.
    #[arg(long)]
    pub stdout: bool,
    /// Instead of the campaign, the 1022 ticket stream that reproduces one of
    /// the province's hotline reports (replay it with `pipeline.clock =
    /// "event"`, then `d06 report hotline` over the report's period). Only
    /// `--seed`, `--limit` and `--stdout` apply.
    #[arg(long, value_enum, conflicts_with_all = ["rate", "scale", "days", "lagging", "exclude_communes", "invalid_rate"])]
    pub scenario: Option<crate::scenario::Which>,
}

/// Runs `d06 simulate`: prints the summary; fails if any delivery failed.
pub fn command(args: SimulateArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(p) => crate::config::Config::load(p)?,
        None => {
            let c = crate::config::Config::default();
            c.validate()?;
            c
        }
    };
    let geo = Geography::load(config.contract.geography).context("loading the geography")?;
    let sim: Box<dyn Iterator<Item = SimMessage> + Send> = match args.scenario {
        Some(which) => {
            let calendar = config.hotline.calendar().context("loading the working-time calendar")?;
            Box::new(crate::scenario::messages(&geo, &calendar, which, args.seed).into_iter())
        }
        None => {
            let mut cfg = SimConfig {
                seed: args.seed,
                scale: args.scale,
                days: args.days,
                invalid_rate: args.invalid_rate,
                ..SimConfig::default()
            };
            if let Some(l) = args.lagging {
                cfg.lagging_districts = l;
            }
            cfg.exclude_communes = args.exclude_communes;
            cfg.validate(&geo)?;
            Box::new(Simulator::new(cfg, &geo))
        }
    };
    if args.stdout {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for m in sim.take(usize::try_from(args.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)) {
            let kind = match m.kind {
                Kind::Cccd => "cccd",
                Kind::Vneid => "vneid",
                Kind::Sim => "sim",
                Kind::Hotline => "hotline",
            };
            out.write_all(kind.as_bytes())?;
            out.write_all(b"\t")?;
            out.write_all(&m.payload)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let summary = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.cancel();
            }
        });
        to_kafka(sim, &config.kafka, args.rate, args.limit, shutdown).await
    })?;
    print!("{summary}");
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use aggregator::coverage::status;
    use aggregator::fact::FactKind;
    use aggregator::plan::Plan;
    use aggregator::{GeographyVersion, Indicator, LagRule, Outcome, Shard};
    use chrono::Timelike;
    use ingest::contract::{Validator, ValidatorConfig};
    use ingest::pseudonym::{Pseudonymiser, SecretKey};

    use super::*;

    const PLAN_2024: &str = include_str!("../deploy/plans/binh-phuoc-2024.toml");
    /// The simulations below run at 1/20 of the real volume, against the
    /// 2024 plan with its figures divided by 20 too.
    const SCALE: f64 = 0.05;

    fn geo() -> Arc<Geography> {
        Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap())
    }

    /// The campaign at 1/20, but for CCCD applications at full size: 7,101
    /// split among 11 districts is too few to judge a pace at 1/20.
    fn small() -> SimConfig {
        let targets = Targets { cccd: 7_101 * 20, ..Targets::default() };
        SimConfig { scale: SCALE, targets, ..SimConfig::default() }
    }

    /// The 2024 plan with every absolute figure but the CCCD target × 1/20
    /// (ratios unchanged).
    fn scaled_plan(geo: &Geography) -> Plan {
        let mut text = PLAN_2024.to_owned();
        for (from, to) in [
            ("target = 334507\n", "target = 16725\n"),
            ("target = 211000\n", "target = 10550\n"),
            ("adult_population = 863500\n", "adult_population = 43175\n"),
        ] {
            assert!(text.contains(from), "{from}");
            text = text.replace(from, to);
        }
        Plan::from_toml(&text, geo).unwrap()
    }

    fn validator(geo: &Arc<Geography>) -> Validator {
        let key = SecretKey::from_bytes(b"simulate-test-key-0123456789".to_vec()).unwrap();
        Validator::new(Arc::clone(geo), Pseudonymiser::new(&key), ValidatorConfig::default())
    }

    /// 2026-11-23T00:00:00Z: after the campaign, so nothing is in the future.
    const NOW: i64 = 1_795_392_000 * 1_000_000_000;

    /// A whole campaign through the validator (one watermark: the stream
    /// order) and one shard.
    struct Run {
        messages: usize,
        valid: usize,
        duplicates: usize,
        late: usize,
        rejected: BTreeMap<Reason, usize>,
        spellings: [usize; 3],
        area_forms: [usize; 3],
        /// Valid messages per local (weekday index, hour).
        by_hour: BTreeMap<(u32, u32), usize>,
        by_day: BTreeMap<NaiveDate, usize>,
        shard: Shard,
        tickets: BTreeMap<&'static str, usize>,
    }

    fn run(cfg: SimConfig) -> Run {
        let geo = geo();
        let v = validator(&geo);
        let mut r = Run {
            messages: 0,
            valid: 0,
            duplicates: 0,
            late: 0,
            rejected: BTreeMap::new(),
            spellings: [0; 3],
            area_forms: [0; 3],
            by_hour: BTreeMap::new(),
            by_day: BTreeMap::new(),
            shard: Shard::new(Arc::clone(&geo)),
            tickets: BTreeMap::new(),
        };
        let mut watermark = None;
        let mut last_emitted = None;
        let mut firsts: HashSet<Vec<u8>> = HashSet::new();
        for m in Simulator::new(cfg, &geo) {
            r.messages += 1;
            assert!(last_emitted <= Some(m.emitted_at), "emission order");
            last_emitted = Some(m.emitted_at);
            let got = v.validate(&m.payload, NOW, &mut watermark);
            match (m.invalid, got) {
                (None, Ok(fact)) => {
                    r.valid += 1;
                    assert_eq!(fact.occurred_at, m.occurred_at.timestamp_nanos_opt().unwrap(), "{m:?}");
                    let text = std::str::from_utf8(&m.payload).unwrap();
                    if firsts.insert(m.payload.clone()) && m.emitted_at > m.occurred_at + chrono::Duration::seconds(1) {
                        r.late += 1;
                    }
                    if m.kind == Kind::Sim {
                        let subject = text.split(r#""subject":""#).nth(1).unwrap();
                        r.spellings[if subject.starts_with('0') {
                            0
                        } else if subject.starts_with('+') {
                            1
                        } else {
                            2
                        }] += 1;
                    }
                    r.area_forms[match (text.contains("commune_code"), text.contains("district_code")) {
                        (true, false) => 0,
                        (true, true) => 1,
                        _ => 2,
                    }] += 1;
                    let local = m.occurred_at.with_timezone(&local_offset());
                    *r.by_hour.entry((local.weekday().num_days_from_monday(), local.hour())).or_default() += 1;
                    *r.by_day.entry(local.date_naive()).or_default() += 1;
                    match fact.kind {
                        FactKind::Hotline { status, .. } => *r.tickets.entry(status.as_str()).or_default() += 1,
                        _ => {
                            if r.shard.apply(&fact) == Outcome::Duplicate {
                                r.duplicates += 1;
                            }
                        }
                    }
                }
                (Some(intended), Err(rejection)) => {
                    assert_eq!(rejection.reason, intended, "{rejection} for {}", String::from_utf8_lossy(&m.payload));
                    *r.rejected.entry(intended).or_default() += 1;
                }
                (intended, got) => {
                    panic!("intended {intended:?}, got {got:?} for {}", String::from_utf8_lossy(&m.payload))
                }
            }
        }
        r
    }

    #[test]
    fn the_same_seed_gives_the_same_messages() {
        let geo = geo();
        let a: Vec<SimMessage> = Simulator::new(small(), &geo).take(20_000).collect();
        let b: Vec<SimMessage> = Simulator::new(small(), &geo).take(20_000).collect();
        assert_eq!(a.len(), 20_000);
        assert!(a == b);
        let c: Vec<SimMessage> = Simulator::new(SimConfig { seed: 7, ..small() }, &geo).take(20_000).collect();
        let same = a.iter().zip(&c).filter(|(x, y)| x.payload == y.payload).count();
        assert_eq!(same, 0, "another seed gives other messages");
    }

    #[test]
    fn every_message_is_valid_or_fails_with_its_intended_reason() {
        let r = run(small());
        eprintln!(
            "{} messages, {} valid, {:?} rejected, {} duplicates, {} late, tickets {:?}",
            r.messages, r.valid, r.rejected, r.duplicates, r.late, r.tickets
        );
        // ≈ 1.43 M messages at scale 1; here 1/20, plus 7,101 CCCD lifecycles of ≈ 3 events.
        assert!((90_000..100_000).contains(&r.messages), "{}", r.messages);
        let invalid: usize = r.rejected.values().sum();
        assert_eq!(r.valid + invalid, r.messages);
        let share = |n: usize, of: usize| n as f64 / of as f64;
        assert!((0.004..0.006).contains(&share(invalid, r.messages)), "invalid {invalid}");
        // Every reason of the contract, each at least a few times.
        assert_eq!(r.rejected.keys().copied().collect::<Vec<_>>(), Reason::ALL.to_vec(), "{:?}", r.rejected);
        assert!(r.rejected.values().all(|n| *n >= 5), "{:?}", r.rejected);
        // Identical re-sends: the shard sees them as duplicates (hotline ones aside).
        let coverage_valid = r.valid - r.tickets.values().sum::<usize>();
        assert!((0.017..0.023).contains(&share(r.duplicates, coverage_valid)), "duplicates {}", r.duplicates);
        // Late: first copies emitted over a second after they occurred.
        assert!((0.026..0.034).contains(&share(r.late, r.valid)), "late {}", r.late);
        // Phones 70 / 20 / 10, areas 90 / 7 / 3.
        let phones: usize = r.spellings.iter().sum();
        assert!((0.68..0.72).contains(&share(r.spellings[0], phones)), "{:?}", r.spellings);
        assert!((0.18..0.22).contains(&share(r.spellings[1], phones)), "{:?}", r.spellings);
        assert!((0.08..0.12).contains(&share(r.spellings[2], phones)), "{:?}", r.spellings);
        assert!((0.88..0.92).contains(&share(r.area_forms[0], r.valid)), "{:?}", r.area_forms);
        assert!((0.02..0.04).contains(&share(r.area_forms[2], r.valid)), "{:?}", r.area_forms);
        // Hotline: 7.5 tickets a day × 90 days / 20 ≈ 34 received, every
        // transition seen at least once over the campaign... at this scale
        // only received, answered and forwarded are sure to appear.
        let received = r.tickets.get("received").copied().unwrap_or(0);
        assert!((30..40).contains(&received), "{:?}", r.tickets);
        assert!(r.tickets.get("answered").copied().unwrap_or(0) >= received / 2, "{:?}", r.tickets);
    }

    /// The hand computation behind the figures asserted below: at scale
    /// 1/20 the vneid target is 16,725 level-2 activations; 9 districts
    /// (96 of the 111 communes) run at 1.07 and 2 (691: 8, 693: 7 communes)
    /// at 0.75, so the province gets 16,725 × (96 × 1.07 + 15 × 0.75) / 111
    /// = 17,173 activations started, less those whose activation falls past
    /// the end (about 1 %): ≈ 17,000. migrated_2g: 10,550 × 1.0268 =
    /// 10,833; smartphone_4g 85 % of those, 9,208, against a target of
    /// 38,858 (0.9 × 43,175).
    #[test]
    fn lagging_districts_lag_the_plan_and_the_others_do_not() {
        let r = run(small());
        let geo = geo();
        let plan = scaled_plan(&geo);
        let rule = LagRule::default();
        let prov = geo.province();
        let covered = |ind: Indicator, area: AreaId, day: NaiveDate| {
            status(&plan, (ind, area), r.shard.days(&(ind, area)).unwrap_or(&BTreeMap::new()), day)
        };
        let end = NaiveDate::from_ymd_opt(2024, 7, 8).unwrap();
        let vneid = covered(Indicator::Vneid, prov, end).covered;
        assert!((16_500..17_300).contains(&vneid), "vneid {vneid}");
        let migrated = covered(Indicator::Migrated2g, prov, end).covered;
        assert!((10_500..11_000).contains(&migrated), "migrated {migrated}");
        let smart = covered(Indicator::Smartphone4g, prov, end).covered;
        assert!((8_900..9_500).contains(&smart), "smartphone {smart}");
        let lagging = ["691", "693"];
        for day in [(5, 9), (6, 8), (7, 8)].map(|(m, d)| NaiveDate::from_ymd_opt(2024, m, d).unwrap()) {
            for d in geo.of_level(AreaLevel::District) {
                let code = &geo.area(d).code;
                for ind in [Indicator::Cccd, Indicator::Vneid, Indicator::Migrated2g, Indicator::SimSignature] {
                    let s = covered(ind, d, day);
                    let lags = rule.is_lagging(&s);
                    assert_eq!(lags, lagging.contains(&code.as_str()), "{code} {ind} on {day}: {s:?}");
                    if lags {
                        assert!(s.ratio < 0.9 * s.expected as f64 / s.target as f64, "{code} {ind} on {day}: {s:?}");
                    }
                }
                // The plan's smartphone target (90 % of adults, baseline 0)
                // is out of reach of 2G swaps: every district lags on it.
                assert!(rule.is_lagging(&covered(Indicator::Smartphone4g, d, day)));
            }
        }
    }

    #[test]
    fn working_hours_are_busy_nights_and_weekends_quiet_and_the_pace_ramps_up() {
        let r = run(small());
        let weekday_hour = |hours: std::ops::Range<u32>| -> f64 {
            let n: usize = (0..5)
                .flat_map(|d| hours.clone().map(move |h| (d, h)))
                .map(|k| r.by_hour.get(&k).copied().unwrap_or(0))
                .sum();
            n as f64 / (5 * hours.len()) as f64
        };
        let working = weekday_hour(8..11);
        let night = weekday_hour(0..5);
        let evening = weekday_hour(18..20);
        assert!(working > 20.0 * night, "working {working} night {night}");
        assert!(evening > 0.4 * working && evening < 0.6 * working, "evening {evening} working {working}");
        let per_weekday = |wd: Weekday| {
            let holiday = |d: &NaiveDate| (d.month(), d.day()) == (4, 30) || (d.month(), d.day()) == (5, 1);
            let days: Vec<usize> =
                r.by_day.iter().filter(|(d, _)| d.weekday() == wd && !holiday(d)).map(|(_, n)| *n).collect();
            days.iter().sum::<usize>() as f64 / days.len() as f64
        };
        let (wed, sat, sun) = (per_weekday(Weekday::Wed), per_weekday(Weekday::Sat), per_weekday(Weekday::Sun));
        assert!(sat < 0.65 * wed && sat > 0.45 * wed, "sat {sat} wed {wed}");
        assert!(sun < 0.45 * wed && sun > 0.25 * wed, "sun {sun} wed {wed}");
        let days: Vec<usize> =
            r.by_day.range(NaiveDate::from_ymd_opt(2024, 4, 10).unwrap()..).map(|(_, n)| *n).collect();
        let first: usize = days[..30].iter().sum();
        let last: usize = days[60..90].iter().sum();
        // Ramp 0.85 → 1.15: thirds average 0.90 and 1.10.
        assert!(last as f64 > 1.12 * first as f64, "first 30 days {first}, last 30 {last}");
    }

    #[test]
    fn until_stops_at_the_given_time_and_the_stream_is_in_emission_order() {
        let geo = geo();
        let t = Utc.with_ymd_and_hms(2024, 4, 11, 0, 0, 0).unwrap();
        let msgs: Vec<SimMessage> = Simulator::new(small(), &geo).until(t).collect();
        assert!(!msgs.is_empty());
        assert!(msgs.iter().all(|m| m.emitted_at < t));
        assert!(msgs.windows(2).all(|w| w[0].emitted_at <= w[1].emitted_at));
        // The first day (a Wednesday) ends 2024-04-10T17:00Z: what follows is
        // the next message of the same stream.
        let next = Simulator::new(small(), &geo).nth(msgs.len()).unwrap();
        assert!(next.emitted_at >= t);
    }

    #[test]
    fn excluded_communes_are_never_named() {
        let geo = geo();
        let cfg = SimConfig { exclude_communes: vec!["25216".into()], ..small() };
        let n = Simulator::new(cfg, &geo)
            .take(30_000)
            .filter(|m| m.invalid.is_none())
            .inspect(|m| assert!(!String::from_utf8_lossy(&m.payload).contains(r#""commune_code":"25216""#)))
            .count();
        assert!(n > 29_000);
    }

    #[test]
    fn subjects_are_valid_distinct_and_stable() {
        let ids: HashSet<String> = (0..200_000).map(|n| citizen_id(n, 2024)).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|i| i.len() == 12 && i.starts_with("070") && i.bytes().all(|b| b.is_ascii_digit())));
        let phones: HashSet<String> = (0..200_000).map(|n| phone_number(n, 2024).0).collect();
        assert_eq!(phones.len(), 200_000);
        assert!(phones.iter().all(|p| ingest::phone::normalise_phone(p).as_deref() == Some(p.as_str())));
        // A prefix and its carrier.
        let (p, carrier) = phone_number(12_345, 2024);
        let prefix = &p[1..3];
        assert_eq!(PREFIXES.iter().find(|(x, _)| *x == prefix).map(|(_, c)| *c), Some(carrier));
    }

    #[test]
    fn times_are_written_in_local_time_or_utc() {
        // 2024-05-09T01:15:30.123Z
        let ms = 1_715_217_330_123;
        assert_eq!(format_time(ms, false, false), "2024-05-09T08:15:30+07:00");
        assert_eq!(format_time(ms, true, false), "2024-05-09T01:15:30.123Z");
        assert_eq!(format_time(ms, false, true), "2024-05-09T08:15:30");
        assert_eq!(local_midnight_ms(NaiveDate::from_ymd_opt(2024, 4, 10).unwrap()), 1_712_682_000_000);
        assert_eq!(local_date(1_712_681_999_999), NaiveDate::from_ymd_opt(2024, 4, 9).unwrap());
        assert_eq!(local_date(1_712_682_000_000), NaiveDate::from_ymd_opt(2024, 4, 10).unwrap());
    }

    #[test]
    fn restamp_moves_occurred_at_and_adds_the_production_time() {
        let p = br#"{"schema":"d06.event.v1","event_id":"e1","occurred_at":"2024-05-09T08:15:30+07:00","subject":"x"}"#;
        let out = restamp(p, 1_500, 1_795_392_000_000).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"schema":"d06.event.v1","event_id":"e1","occurred_at":"2024-05-09T08:15:31.500+07:00","subject":"x","sim_produced_at_ms":1795392000000}"#
        );
        // UTC in, local out; a negative shift.
        let z = br#"{"occurred_at":"2024-05-09T01:15:30.123Z"}"#;
        let out = restamp(z, -123, 5).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"occurred_at":"2024-05-09T08:15:30.000+07:00","sim_produced_at_ms":5}"#
        );
        assert_eq!(restamp(br#"{"occurred_at":"2024-05-09T08:15:30"}"#, 1, 1), None, "no offset: left alone");
        assert_eq!(restamp(br#"{"occurred_at":"2024-05-09T08:15:30+07:00""#, 1, 1), None, "truncated");
    }

    #[test]
    fn restamped_live_messages_stay_valid_or_invalid_for_the_same_reason() {
        let geo = geo();
        let v = validator(&geo);
        let now_ms = NOW / 1_000_000;
        let mut watermark = None;
        let mut checked = 0;
        for m in Simulator::new(SimConfig { invalid_rate: 0.05, ..small() }, &geo).skip(20_000).take(20_000) {
            let shift = now_ms - m.emitted_at.timestamp_millis();
            let p = match (m.invalid, restamp(&m.payload, shift, now_ms)) {
                (Some(Reason::MalformedJson), _) | (_, None) => m.payload.clone(),
                (_, Some(p)) => p,
            };
            let got = v.validate(&p, NOW, &mut watermark);
            assert_eq!(got.as_ref().err().map(|r| r.reason), m.invalid, "{}", String::from_utf8_lossy(&p));
            if let Ok(f) = got {
                assert!(f.occurred_at <= NOW && f.occurred_at > NOW - 4 * 86_400 * 1_000_000_000);
                checked += 1;
            }
        }
        assert!(checked > 18_000);
    }
}
