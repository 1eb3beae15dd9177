//! What to simulate: the province figures aimed at ([`Targets`]) and the
//! run's knobs ([`SimConfig`]).

use aggregator::{AreaLevel, Geography};
use anyhow::{bail, Result};
use chrono::NaiveDate;

use crate::population::units_of;

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

/// Who the simulated people are, so that the simulators of several provinces
/// (`d06 simulate --scope national`) never share a subject or an event id.
/// The default is Bình Phước's alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The province code citizen ids are born in: they start with `0` and
    /// these two digits (default `70`, Bình Phước).
    pub birth_province: String,
    /// Seed of the phone-number permutation; one national run shares it so
    /// that disjoint index ranges give disjoint numbers (default: the run's
    /// [`SimConfig::seed`]).
    pub number_seed: Option<u64>,
    /// First subscriber index of this province's pool in that permutation.
    pub phone_base: u64,
    /// Put before every event id and ticket id (default empty).
    pub id_prefix: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity { birth_province: "70".into(), number_seed: None, phone_base: 0, id_prefix: String::new() }
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
    /// Whose ids and numbers the subjects get.
    pub identity: Identity,
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
            identity: Identity::default(),
        }
    }
}

impl Targets {
    /// Every volume times `factor` (another province's figures from Bình
    /// Phước's by population); the smartphone share stays.
    pub fn scaled(&self, factor: f64) -> Targets {
        let f = |n: u64| (n as f64 * factor).round() as u64;
        Targets {
            campaign_days: self.campaign_days,
            adults: f(self.adults),
            cccd: f(self.cccd),
            vneid: f(self.vneid),
            migrated_2g: f(self.migrated_2g),
            sim_signature: f(self.sim_signature),
            smartphone_share: self.smartphone_share,
            tickets_per_day: self.tickets_per_day * factor,
        }
    }
}

impl SimConfig {
    /// Checks the configuration against a geography: known codes, sane rates.
    pub fn validate(&self, geo: &Geography) -> Result<()> {
        self.validate_rates()?;
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
        Ok(())
    }

    /// Checks the scale and the rates (what [`SimConfig::validate`] checks
    /// besides the codes).
    pub fn validate_rates(&self) -> Result<()> {
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
