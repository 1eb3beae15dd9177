//! `d06 simulate --scope national`: every province of Vietnam at once.
//!
//! One [`Simulator`] per province of the geography version (63 before the
//! 2025 reform, 34 after), each over that province's own geography
//! ([`Geography::load_province`]) with Bình Phước's plan scaled by the
//! province's population (`aggregator/data/national/README.md`), and the
//! same rhythm, lifecycles and input defects. Their streams are merged in
//! emission order, so the national stream is in broker order too.
//!
//! Provinces never share a subject or an event id: citizen ids carry the
//! province as their birth province (`0PP…`), phone numbers are disjoint
//! ranges of one national permutation, event and ticket ids are prefixed
//! with the province code. About one district (post-2025: commune) in six
//! lags the plan, chosen from the seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use aggregator::geo::provinces;
use aggregator::{AreaLevel, Geography, GeographyVersion};
use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

use crate::config::{Identity, SimConfig};
use crate::message::SimMessage;
use crate::population::{units_of, PHONE_SPACE};
use crate::rng::mix64;
use crate::simulator::Simulator;

/// The province whose plan the others are scaled from.
pub(crate) const REFERENCE_PROVINCE: &str = "70";

/// The national simulator: every province's stream, merged in emission order.
#[derive(Debug)]
pub struct National {
    sims: Vec<Simulator>,
    /// The next message of each province, by (emission time, province).
    heads: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
    pending: Vec<Option<SimMessage>>,
}

impl National {
    /// Every province of `version`, from the run's knobs in `cfg` (seed,
    /// start, days, scale, rates, excluded communes; its targets are the
    /// reference province's, scaled per province; its lagging districts are
    /// replaced by the national draw).
    pub fn new(cfg: &SimConfig, version: GeographyVersion) -> Result<Self> {
        let reference = reference_population()?;
        let mut sims = Vec::new();
        let mut phone_base = 0u64;
        for p in provinces(version).context("loading the national geography")? {
            let geo = Geography::load_province(version, &p.code).context("loading a province")?;
            let seed = cfg.seed ^ mix64(u64::from(p.code.parse::<u8>().unwrap_or_default()) + 1);
            let pcfg = SimConfig {
                seed,
                lagging_districts: lagging(&geo, seed),
                targets: cfg.targets.scaled(p.population as f64 / reference.max(1) as f64),
                identity: Identity {
                    birth_province: p.code.clone(),
                    number_seed: Some(cfg.seed),
                    phone_base,
                    id_prefix: format!("p{}-", p.code),
                },
                ..cfg.clone()
            };
            let sim = Simulator::new(pcfg, &geo);
            phone_base += sim.phone_pool();
            sims.push(sim);
        }
        if phone_base > PHONE_SPACE {
            bail!(
                "scale {}: the provinces need {phone_base} phone numbers, more than the {PHONE_SPACE} simulated",
                cfg.scale
            );
        }
        let mut national = National { heads: BinaryHeap::new(), pending: sims.iter().map(|_| None).collect(), sims };
        for i in 0..national.sims.len() {
            national.advance(i);
        }
        Ok(national)
    }

    /// How many provinces are simulated.
    pub fn provinces(&self) -> usize {
        self.sims.len()
    }

    fn advance(&mut self, i: usize) {
        if let Some(m) = self.sims[i].next() {
            self.heads.push(Reverse((m.emitted_at, i)));
            self.pending[i] = Some(m);
        }
    }
}

/// The population of the province the others are scaled from.
pub(crate) fn reference_population() -> Result<u64> {
    provinces(GeographyVersion::Pre2025)
        .context("loading the national geography")?
        .into_iter()
        .find(|p| p.code == REFERENCE_PROVINCE)
        .map(|p| p.population)
        .context("the reference province is missing")
}

/// About one unit in six lags, drawn from the province's seed.
fn lagging(geo: &Geography, seed: u64) -> Vec<String> {
    units_of(geo)
        .into_iter()
        .map(|(a, _)| geo.area(a))
        .filter(|a| a.level != AreaLevel::Province)
        .filter(|a| mix64(seed ^ a.code.parse::<u64>().unwrap_or_default()).is_multiple_of(6))
        .map(|a| a.code.clone())
        .collect()
}

impl Iterator for National {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        let Reverse((_, i)) = self.heads.pop()?;
        let m = self.pending[i].take();
        self.advance(i);
        m
    }
}

#[cfg(test)]
#[path = "national_tests.rs"]
mod tests;
