//! `d06 simulate --scope national --write-plans DIR`: a plan per province
//! for a deployment tracking the whole simulated country.
//!
//! Each province's plan is what the national simulator aims at there
//! ([`crate::National`]): Bình Phước's 2024 figures ([`Targets`]) scaled by
//! the province's population, over the simulated days, with the districts'
//! share by their number of communes (as Bình Phước's plan splits its
//! own). They are simulated plans, named so, for benchmarks and
//! demonstrations; a real deployment writes its provinces' own.

use std::fmt::Write as _;

use aggregator::geo::provinces;
use aggregator::{AreaLevel, Geography, GeographyVersion};
use anyhow::{Context as _, Result};
use chrono::{Days, NaiveDate};

use crate::config::Targets;
use crate::national::reference_population;
#[cfg(test)]
use crate::national::REFERENCE_PROVINCE;

/// One province's simulated plan.
#[derive(Clone, Debug)]
pub struct PlanFile {
    /// The province's GSO code.
    pub code: String,
    /// Its official name.
    pub name: String,
    /// The plan, as `aggregator::plan` reads it.
    pub toml: String,
}

/// Every province's simulated plan for `version`, from the run's `targets`
/// (Bình Phước's), `start` and `days`.
pub fn national_plans(
    version: GeographyVersion,
    targets: &Targets,
    start: NaiveDate,
    days: u32,
) -> Result<Vec<PlanFile>> {
    let reference = reference_population()?;
    let end = start
        .checked_add_days(Days::new(u64::from(days.max(1) - 1)))
        .context("the simulated days run past the calendar")?;
    provinces(version)
        .context("loading the national geography")?
        .into_iter()
        .map(|p| {
            let geo = Geography::load_province(version, &p.code).context("loading a province")?;
            let t = targets.scaled(p.population as f64 / reference.max(1) as f64);
            Ok(PlanFile { toml: plan_text(&geo, &p.name, &t, start, end), code: p.code, name: p.name })
        })
        .collect()
}

/// One plan: targets, a linear milestone to the end, districts weighted by
/// their communes.
fn plan_text(geo: &Geography, name: &str, t: &Targets, start: NaiveDate, end: NaiveDate) -> String {
    let mut s = format!(
        "# Simulated (d06 simulate --scope national --write-plans): Bình Phước's 2024 plan\n\
         # scaled by population. Not an official plan.\n\
         name = \"Mô phỏng “4 phủ” — {name}\"\nstart = {start}\nend = {end}\n\n\
         [denominators]\nadult_population = {}\n",
        t.adults
    );
    let districts: Vec<_> = geo.of_level(AreaLevel::District).collect();
    if !districts.is_empty() {
        s.push_str("\n[district_weights]\n");
        for d in districts {
            let communes = geo.of_level(AreaLevel::Commune).filter(|c| geo.area(*c).parent == Some(d)).count();
            let _ = writeln!(s, "\"{}\" = {}", geo.area(d).code, communes.max(1));
        }
    }
    let smartphones = (t.migrated_2g as f64 * t.smartphone_share).round() as u64;
    for (indicator, target) in [
        ("cccd", t.cccd),
        ("vneid", t.vneid),
        ("migrated_2g", t.migrated_2g),
        ("smartphone_4g", smartphones),
        ("sim_signature", t.sim_signature),
    ] {
        let _ = write!(s, "\n[indicators.{indicator}]\ntarget = {target}\n");
        if end > start {
            let _ = writeln!(s, "milestones = [ {{ date = {end}, share = 1.0 }} ]");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use aggregator::{Indicator, Plan};

    #[test]
    fn every_provinces_plan_loads_against_its_own_geography() {
        let start = NaiveDate::from_ymd_opt(2024, 4, 10).unwrap();
        for (version, count) in [(GeographyVersion::Pre2025, 63), (GeographyVersion::Post2025, 34)] {
            let plans = national_plans(version, &Targets::default(), start, 90).unwrap();
            assert_eq!(plans.len(), count);
            let mut cccd = 0;
            for p in &plans {
                let geo = Geography::load_province(version, &p.code).unwrap();
                let plan = Plan::from_toml(&p.toml, &geo).unwrap_or_else(|e| panic!("{}: {e}", p.code));
                assert_eq!(plan.end(), NaiveDate::from_ymd_opt(2024, 7, 8).unwrap());
                cccd += plan.target(Indicator::Cccd, geo.province());
                if p.code == REFERENCE_PROVINCE && version == GeographyVersion::Pre2025 {
                    assert_eq!(plan.target(Indicator::Cccd, geo.province()), 7_101, "Bình Phước's own");
                }
            }
            // The country is about 100 times Bình Phước.
            assert!((500_000..1_000_000).contains(&cccd), "{version:?}: {cccd}");
        }
    }
}
