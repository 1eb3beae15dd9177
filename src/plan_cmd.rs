//! `d06 plan import-baseline --plan PLAN --csv FILE`: writes a per-area
//! baseline file (`aggregator::baseline_csv`) into a plan file, in place.
//!
//! The file IO lives here; checking the rows against the geography and
//! editing the plan's TOML are pure (`aggregator::baseline_csv`,
//! `aggregator::plan_edit`). A file with an unknown area code, indicator or
//! bad number, or an edit that would leave a plan `d06 run` refuses, is a
//! configuration error (exit 78) and the plan is not touched. The plan is
//! replaced atomically (a temporary file renamed over it).

use std::path::{Path, PathBuf};

use aggregator::baseline_csv;
use aggregator::plan::Baseline;
use aggregator::plan_edit::import_baselines;
use aggregator::Geography;
use anyhow::{Context, Result};

use crate::exit;

/// `d06 plan …` commands.
#[derive(Debug, clap::Subcommand)]
pub enum PlanCommand {
    /// Writes the baselines of a CSV file (indicator,area,baseline,source) into a plan file.
    ImportBaseline {
        /// The plan file to update (TOML, deploy/plans/README.md).
        #[arg(long)]
        plan: PathBuf,
        /// The baseline file (CSV: indicator,area,baseline,source).
        #[arg(long)]
        csv: PathBuf,
        /// GSO code of the tracked province the plan is for
        /// (`contract.provinces`); the first when omitted.
        #[arg(long)]
        province: Option<String>,
        /// Configuration file, for the geography; defaults apply when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Runs a `d06 plan` command; prints what it did.
pub fn run(command: PlanCommand, geo: &Geography) -> Result<String> {
    let PlanCommand::ImportBaseline { plan, csv, .. } = command;
    import(&plan, &csv, geo)
}

/// The geography a `d06 plan` command needs the configuration for.
pub fn config_path(command: &PlanCommand) -> Option<&Path> {
    let PlanCommand::ImportBaseline { config, .. } = command;
    config.as_deref()
}

/// The province whose plan a `d06 plan` command edits (`None`: the first tracked).
pub fn province(command: &PlanCommand) -> Option<&str> {
    let PlanCommand::ImportBaseline { province, .. } = command;
    province.as_deref()
}

fn import(plan: &Path, csv: &Path, geo: &Geography) -> Result<String> {
    let rows_text = std::fs::read_to_string(csv)
        .with_context(|| format!("reading the baseline file {}", csv.display()))
        .map_err(exit::input)?;
    let plan_text = std::fs::read_to_string(plan)
        .with_context(|| format!("reading the plan {}", plan.display()))
        .map_err(exit::config)?;
    let rows = baseline_csv::parse(&rows_text, geo)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} refused, the plan is unchanged", csv.display()))
        .map_err(exit::config)?;
    let text = import_baselines(&plan_text, &rows, geo)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} not imported into {}, the plan is unchanged", csv.display(), plan.display()))
        .map_err(exit::config)?;
    let tmp = plan.with_extension("toml.tmp");
    std::fs::write(&tmp, text.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, plan).with_context(|| format!("replacing {}", plan.display()))?;
    let known = rows.iter().filter(|r| matches!(r.baseline, Baseline::Known(_))).count();
    Ok(format!(
        "{}: {} baselines imported from {} ({} known, {} unknown)\n",
        plan.display(),
        rows.len(),
        csv.display(),
        known,
        rows.len() - known
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aggregator::GeographyVersion;

    #[test]
    fn a_bad_file_is_a_configuration_error_and_leaves_the_plan_alone() {
        let geo = Geography::load(GeographyVersion::Pre2025).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.toml");
        std::fs::write(&plan, crate::DEFAULT_PLAN).unwrap();
        let csv = dir.path().join("b.csv");
        std::fs::write(&csv, "indicator,area,baseline,source\nsmartphone_4g,999,5,x\n").unwrap();
        let e = import(&plan, &csv, &geo).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::CONFIG);
        assert!(format!("{e:#}").contains("unknown area code \"999\""), "{e:#}");
        assert_eq!(std::fs::read_to_string(&plan).unwrap(), crate::DEFAULT_PLAN);
        let e = import(&plan, &dir.path().join("none.csv"), &geo).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::INPUT);
        std::fs::write(&csv, "indicator,area,baseline,source\nsmartphone_4g,688,5,x\n").unwrap();
        let out = import(&plan, &csv, &geo).unwrap();
        assert!(out.contains("1 baselines imported"), "{out}");
        let p = aggregator::Plan::from_toml(&std::fs::read_to_string(&plan).unwrap(), &geo).unwrap();
        let d = geo.find(aggregator::AreaLevel::District, "688").unwrap();
        assert_eq!(p.baseline_of(aggregator::Indicator::Smartphone4g, d), Baseline::Known(5));
    }
}
