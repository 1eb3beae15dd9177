//! The plans of a deployment: one [`Plan`] per tracked province.
//!
//! Each province runs its own campaign plan (dates, targets, baselines,
//! milestones), loaded against that province's view of the deployment's
//! geography ([`Geography::scoped`]), so its per-area tables use the
//! deployment's area ids. Whatever walks every area (ClickHouse's plan rows,
//! the gauges) asks [`Plans::of`] for the area's plan; whatever serves one
//! province (its board, report, alerts) takes its [`ProvincePlan`].

use std::sync::Arc;

use chrono::NaiveDate;

use crate::geo::{AreaId, Geography};
use crate::plan::Plan;

/// One tracked province: its view of the geography and its plan.
#[derive(Clone, Debug)]
pub struct ProvincePlan {
    /// The deployment's geography scoped to this province.
    pub geo: Arc<Geography>,
    /// The province's campaign plan.
    pub plan: Arc<Plan>,
}

impl ProvincePlan {
    /// The province's GSO code.
    pub fn code(&self) -> &str {
        &self.geo.area(self.geo.province()).code
    }

    /// The province's official name.
    pub fn name(&self) -> &str {
        &self.geo.area(self.geo.province()).name
    }
}

/// Why a deployment's plans do not fit its geography (a caller bug or a
/// configuration naming a province twice).
#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    /// The geography holds a province no plan was given for.
    #[error("province {0} has no plan")]
    Missing(String),
    /// A plan names a province the geography does not hold, or one twice.
    #[error("a plan for province {0}, which the deployment does not track once")]
    Stray(String),
}

/// Every tracked province's plan, in the geography's province order.
#[derive(Clone, Debug)]
pub struct Plans {
    units: Vec<ProvincePlan>,
    /// Per area id, the index in `units` of its province's plan.
    unit_of_area: Vec<u16>,
}

impl Plans {
    /// The plans of `geo`'s provinces: `units` must hold exactly one per
    /// province, each over `geo` scoped to it.
    pub fn new(geo: &Geography, units: Vec<ProvincePlan>) -> Result<Self, PlansError> {
        let mut ordered = Vec::with_capacity(geo.provinces().len());
        for &p in geo.provinces() {
            let mut of_p = units.iter().filter(|u| u.geo.province() == p);
            match (of_p.next(), of_p.next()) {
                (Some(u), None) => ordered.push(u.clone()),
                (None, _) => return Err(PlansError::Missing(geo.area(p).code.clone())),
                (Some(u), Some(_)) => return Err(PlansError::Stray(u.code().to_owned())),
            }
        }
        if let Some(stray) = units.iter().find(|u| !geo.provinces().contains(&u.geo.province())) {
            return Err(PlansError::Stray(stray.code().to_owned()));
        }
        let unit_of_area = (0..geo.areas().len())
            .map(|a| {
                let p = geo.province_of(AreaId(a as u16));
                ordered.iter().position(|u| u.geo.province() == p).unwrap_or(0) as u16
            })
            .collect();
        Ok(Plans { units: ordered, unit_of_area })
    }

    /// A deployment of one province with one plan.
    pub fn single(geo: Arc<Geography>, plan: Arc<Plan>) -> Self {
        let unit_of_area = vec![0; geo.areas().len()];
        Plans { units: vec![ProvincePlan { geo, plan }], unit_of_area }
    }

    /// Every province's plan, in order.
    pub fn units(&self) -> &[ProvincePlan] {
        &self.units
    }

    /// The first province's (the one a page or command serves unless told).
    pub fn first(&self) -> &ProvincePlan {
        &self.units[0]
    }

    /// The province with this GSO code, if tracked.
    pub fn province(&self, code: &str) -> Option<&ProvincePlan> {
        self.units.iter().find(|u| u.code() == code)
    }

    /// The plan of the province `area` is in.
    pub fn of(&self, area: AreaId) -> &Plan {
        let unit = self.unit_of_area.get(usize::from(area.0)).copied().unwrap_or(0);
        &self.units[usize::from(unit)].plan
    }

    /// The earliest start of any plan.
    pub fn start(&self) -> NaiveDate {
        self.units.iter().map(|u| u.plan.start()).min().unwrap_or(NaiveDate::MIN)
    }

    /// The latest end of any plan.
    pub fn end(&self) -> NaiveDate {
        self.units.iter().map(|u| u.plan.end()).max().unwrap_or(NaiveDate::MIN)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fact::Indicator;
    use crate::geo::{Area, AreaLevel, GeographyVersion};

    fn plan(geo: &Geography, start: &str, target: u64) -> Arc<Plan> {
        let text = format!("start = {start}\nend = 2026-12-31\n[indicators.cccd]\ntarget = {target}\n");
        Arc::new(Plan::from_toml(&text, geo).unwrap())
    }

    #[test]
    fn each_area_answers_to_its_own_provinces_plan() {
        let codes = ["75".to_owned(), "79".to_owned()];
        let g = Geography::load_provinces(GeographyVersion::Post2025, &codes).unwrap();
        let units: Vec<ProvincePlan> = g
            .provinces()
            .iter()
            .rev()
            .zip([("2026-03-01", 900), ("2026-01-01", 500)])
            .map(|(p, (start, target))| {
                let geo = Arc::new(g.scoped(*p));
                ProvincePlan { plan: plan(&geo, start, target), geo }
            })
            .collect();
        let plans = Plans::new(&g, units).unwrap();
        assert_eq!(plans.units().iter().map(ProvincePlan::code).collect::<Vec<_>>(), ["75", "79"]);
        for unit in plans.units() {
            let p = unit.geo.province();
            assert_eq!(plans.of(p).target(Indicator::Cccd, p), unit.plan.target(Indicator::Cccd, p));
            for c in unit.geo.of_level(AreaLevel::Commune) {
                assert_eq!(plans.of(c).start(), unit.plan.start());
            }
        }
        assert_eq!(plans.province("79").unwrap().plan.target(Indicator::Cccd, g.provinces()[1]), 900);
        assert_eq!(plans.start(), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        assert_eq!(plans.first().code(), "75");
    }

    #[test]
    fn a_plan_over_a_scoped_view_equals_its_province_alone_area_for_area() {
        let v = GeographyVersion::Pre2025;
        let g = Geography::load_provinces(v, &["70".to_owned(), "74".to_owned()]).unwrap();
        for (i, code) in ["70", "74"].into_iter().enumerate() {
            let alone = Geography::load_province(v, code).unwrap();
            let mut text = "start = 2026-01-01\nend = 2026-12-31\n[district_weights]\n".to_owned();
            for (k, d) in alone.of_level(AreaLevel::District).enumerate() {
                text += &format!("\"{}\" = {}\n", alone.area(d).code, k + 1);
            }
            text += "[indicators.cccd]\ntarget = 100003\nbaseline = 777\n";
            let text = text.as_str();
            let view = g.scoped(g.provinces()[i]);
            let (p_alone, p_view) = (Plan::from_toml(text, &alone).unwrap(), Plan::from_toml(text, &view).unwrap());
            let shift = view.span().start as u16;
            assert_eq!(view.span().len(), alone.areas().len());
            for a in (0..alone.areas().len() as u16).map(AreaId) {
                let b = AreaId(a.0 + shift);
                assert_eq!(
                    view.area(b),
                    &Area { parent: alone.area(a).parent.map(|p| AreaId(p.0 + shift)), ..alone.area(a).clone() }
                );
                for ind in Indicator::ALL.iter().copied() {
                    assert_eq!(p_view.target(ind, b), p_alone.target(ind, a), "{code} {ind} {}", alone.area(a).code);
                    assert_eq!(p_view.baseline(ind, b), p_alone.baseline(ind, a));
                    assert_eq!(p_view.baseline_known(ind, b), p_alone.baseline_known(ind, a));
                }
            }
            // The other province's areas are not the plan's: no target.
            let other = g.scoped(g.provinces()[1 - i]);
            assert!(other.span().all(|a| p_view.target(Indicator::Cccd, AreaId(a as u16)) == 0));
            assert!(p_view.target(Indicator::Cccd, view.province()) == 100_003);
        }
    }

    #[test]
    fn a_province_without_a_plan_or_twice_is_refused() {
        let codes = ["75".to_owned(), "79".to_owned()];
        let g = Geography::load_provinces(GeographyVersion::Post2025, &codes).unwrap();
        let unit = |i: usize| {
            let geo = Arc::new(g.scoped(g.provinces()[i]));
            ProvincePlan { plan: plan(&geo, "2026-01-01", 1), geo }
        };
        assert!(matches!(Plans::new(&g, vec![unit(0)]), Err(PlansError::Missing(c)) if c == "79"));
        assert!(matches!(Plans::new(&g, vec![unit(0), unit(1), unit(1)]), Err(PlansError::Stray(c)) if c == "79"));
    }
}
