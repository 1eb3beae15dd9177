//! A simulated pre-campaign baseline, so that `d06 demo` shows what a real
//! baseline would: what each district had already covered before the start,
//! as the rows of a baseline file (`aggregator::baseline_csv`) that the demo
//! imports into its plan exactly as `d06 plan import-baseline` would.
//!
//! Model (illustrative, not official): for each indicator of
//! [`BaselineShares`], a district had `share × its target` covered before
//! the start, varied by ± [`BaselineShares::spread`] per district (seeded,
//! deterministic), rounded; the province's baseline is the sum of its
//! districts'. The simulated campaign's events are all new coverage (the
//! subject pools do not include the baseline's people), so the wall shows
//! baseline + campaign gains against the plan's line from the baseline.
//!
//! The defaults are the two indicators the 2024 plan cannot know
//! (`smartphone_4g`, `sim_signature`: shares of all adults):
//! - `smartphone_4g` 40 % of the target (90 % of adults), i.e. 36 % of
//!   adults: the province reported 37.92 % one month into the campaign;
//! - `sim_signature` 10 % of the target (50 % of adults), i.e. 5 % of adults
//!   (SIMs with an integrated signature were new in early 2024; no figure
//!   was published).

use aggregator::baseline_csv::BaselineEntry;
use aggregator::plan::{Baseline, Plan};
use aggregator::{AreaLevel, Geography, Indicator};

use crate::rng::Rng;

/// Where the simulated figures say they come from (a baseline file's `source`).
pub const SOURCE: &str = "mô phỏng của d06 demo, không phải số liệu thật";

/// How much of each district's target was covered before the start.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineShares {
    /// (indicator, share of the district's target), e.g. 0.4 = 40 %.
    pub shares: Vec<(Indicator, f64)>,
    /// Relative spread among districts: each district's share is
    /// `share × (1 ± spread)`, uniform.
    pub spread: f64,
}

impl Default for BaselineShares {
    fn default() -> Self {
        BaselineShares { shares: vec![(Indicator::Smartphone4g, 0.40), (Indicator::SimSignature, 0.10)], spread: 0.15 }
    }
}

impl BaselineShares {
    /// The baseline rows for `plan`'s districts (the province last, as
    /// their sum), one set per indicator; the same `seed` gives the same rows.
    pub fn entries(&self, plan: &Plan, geo: &Geography, seed: u64) -> Vec<BaselineEntry> {
        let mut rng = Rng(seed ^ 0xBA5E_11E5);
        let mut out = Vec::new();
        for &(indicator, share) in &self.shares {
            let mut total = 0u64;
            for d in geo.of_level(AreaLevel::District) {
                let factor = 1.0 + self.spread * (2.0 * rng.unit() - 1.0);
                let n = (share * factor * plan.target(indicator, d) as f64).round().max(0.0) as u64;
                total += n;
                out.push(entry(geo, indicator, d, n));
            }
            out.push(entry(geo, indicator, geo.province(), total));
        }
        out
    }
}

fn entry(geo: &Geography, indicator: Indicator, area: aggregator::AreaId, n: u64) -> BaselineEntry {
    let a = geo.area(area);
    BaselineEntry {
        indicator,
        area,
        level: a.level,
        code: a.code.clone(),
        baseline: Baseline::Known(n),
        source: SOURCE.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aggregator::baseline_csv::{parse, render};
    use aggregator::plan_edit::import_baselines;
    use aggregator::GeographyVersion;

    const PLAN_2024: &str = include_str!("../../deploy/plans/binh-phuoc-2024.toml");

    #[test]
    fn districts_start_near_their_share_and_the_demo_plan_knows_them() {
        let geo = Geography::load(GeographyVersion::Pre2025).unwrap();
        let plan = Plan::from_toml(PLAN_2024, &geo).unwrap();
        let rows = BaselineShares::default().entries(&plan, &geo, 2024);
        assert_eq!(rows.len(), 2 * 12);
        assert_eq!(rows, BaselineShares::default().entries(&plan, &geo, 2024), "deterministic");
        // Through the baseline file format and the importer, as a user would.
        let text = import_baselines(PLAN_2024, &parse(&render(&rows), &geo).unwrap(), &geo).unwrap();
        let demo = Plan::from_toml(&text, &geo).unwrap();
        let prov = geo.province();
        for (ind, share) in [(Indicator::Smartphone4g, 0.40), (Indicator::SimSignature, 0.10)] {
            let Baseline::Known(p) = demo.baseline_of(ind, prov) else { panic!("{ind} unknown") };
            let sum: u64 = geo.of_level(AreaLevel::District).map(|d| demo.baseline(ind, d)).sum();
            assert_eq!(p, sum, "{ind}");
            for d in geo.of_level(AreaLevel::District) {
                let got = demo.baseline(ind, d) as f64 / demo.target(ind, d) as f64;
                assert!(
                    (share * 0.85 - 1e-3..=share * 1.15 + 1e-3).contains(&got),
                    "{ind} {}: {got}",
                    geo.area(d).code
                );
                assert_eq!(demo.baseline_source(ind, d), Some(SOURCE));
            }
            // The province: 0.4 × 777,150 ≈ 310,860 (± the districts' spread).
            let ratio = p as f64 / demo.target(ind, prov) as f64;
            assert!((share * 0.9..share * 1.1).contains(&ratio), "{ind}: {ratio}");
        }
        // The three others keep their baseline of 0.
        assert_eq!(demo.baseline_of(Indicator::Cccd, prov), Baseline::Known(0));
    }
}
