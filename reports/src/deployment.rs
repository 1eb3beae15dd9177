//! What a deployment tracks: its geography (one province or several) and
//! each province's plan, loaded from the configuration's files. `d06 run`,
//! `check-config`, the reports and the alerts all load them here.

use std::path::Path;
use std::sync::Arc;

use aggregator::{AreaId, Geography, Plans, ProvincePlan};
use anyhow::{bail, Context, Result};

use crate::{load_plan, Source};

impl Source {
    /// The geography the deployment counts through: Bình Phước's when
    /// `provinces` is empty, else those provinces' from the national data.
    pub fn geography(&self) -> Result<Geography> {
        Geography::load_provinces(self.geography, &self.provinces).context("loading the geography")
    }

    /// The plan file of one tracked province (`None`: the embedded plan):
    /// its `plan.by_province` entry; with one province tracked, else
    /// `plan.file`. With several, every province needs its entry.
    fn plan_file_of(&self, code: &str) -> Result<Option<&Path>> {
        if let Some(f) = self.plan_files.get(code) {
            return Ok(Some(f));
        }
        if self.provinces.len() > 1 {
            bail!(
                "province {code} has no plan: with several provinces tracked, each needs its file in \
                 [plan] by_province (\"{code}\" = \"plans/….toml\")"
            );
        }
        Ok(self.plan_file.as_deref())
    }

    /// Every tracked province's plan, each loaded against its view of `geo`
    /// (the deployment's geography, [`Source::geography`]).
    pub fn plans(&self, geo: &Geography) -> Result<Plans> {
        if let Some(stray) = self.plan_files.keys().find(|c| geo.province_by_code(c).is_none()) {
            bail!("[plan] by_province names province {stray}, which contract.provinces does not track");
        }
        let units = geo.provinces().iter().map(|p| self.unit(geo, *p)).collect::<Result<Vec<_>>>()?;
        Ok(Plans::new(geo, units)?)
    }

    /// One tracked province's view and plan: `code`, or the first tracked.
    pub fn province(&self, code: Option<&str>) -> Result<ProvincePlan> {
        let geo = self.geography()?;
        let p = province_id(&geo, code)?;
        self.unit(&geo, p)
    }

    /// Province `p`'s view of `geo` and its plan.
    fn unit(&self, geo: &Geography, p: AreaId) -> Result<ProvincePlan> {
        let view = Arc::new(geo.scoped(p));
        let (code, name) = (&geo.area(p).code, &geo.area(p).name);
        let plan = load_plan(self.plan_file_of(code)?, &view)
            .with_context(|| format!("the plan of province {code} ({name})"))?;
        Ok(ProvincePlan { geo: view, plan: Arc::new(plan) })
    }
}

/// The tracked province with GSO code `code` (`--province`), or the first
/// tracked without one.
pub fn province_id(geo: &Geography, code: Option<&str>) -> Result<AreaId> {
    match code {
        None => geo.provinces().first().copied().context("the geography tracks no province"),
        Some(c) => geo.province_by_code(c).with_context(|| {
            let tracked: Vec<&str> = geo.provinces().iter().map(|p| geo.area(*p).code.as_str()).collect();
            format!("--province {c:?} is not tracked by this deployment (it tracks {})", tracked.join(", "))
        }),
    }
}
