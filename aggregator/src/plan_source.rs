//! A plan that names its own baseline file: `baseline_file = "b.csv"` at
//! the top of the plan, a path relative to the plan file, in the format of
//! [`crate::baseline_csv`]. The plan loads as if `d06 plan
//! import-baseline` had written that file into it ([`import_baselines`]):
//! a file row replaces the plan's own figure for the same (indicator,
//! area).
//!
//! Pure: the caller reads both files ([`baseline_file`] says which second
//! file a plan needs) and hands the texts to [`load`]. `d06 run`,
//! `check-config`, the reports and the alerts all load through it.

use toml_edit::DocumentMut;

use crate::baseline_csv::{self, BaselineCsvError, BaselineEntry};
use crate::geo::Geography;
use crate::plan::{Plan, PlanError};
use crate::plan_edit::{import_baselines, PlanEditError};

/// The plan key naming the baseline file.
pub const KEY: &str = "baseline_file";

/// Why a plan with its baseline file did not load.
#[derive(Debug, thiserror::Error)]
pub enum PlanSourceError {
    /// The plan text is not TOML.
    #[error("the plan is not valid TOML: {0}")]
    Toml(#[from] toml_edit::TomlError),
    /// `baseline_file` is not a non-empty string.
    #[error("`{KEY}` must be a file name (a string, relative to the plan file)")]
    KeyType,
    /// The plan names a baseline file but no text was given for it, or the
    /// other way round.
    #[error("the plan names baseline file {named:?} but {given} baseline text was given")]
    Mismatch {
        /// What the plan names.
        named: Option<String>,
        /// "no" or "a".
        given: &'static str,
    },
    /// A row of the baseline file is refused.
    #[error("baseline file {file}: {reason}")]
    Csv {
        /// The file, as the plan names it.
        file: String,
        /// Why (with the line); in the message, not a separate source, so
        /// that an error chain prints it once.
        reason: BaselineCsvError,
    },
    /// The baselines do not fit the plan.
    #[error("baseline file {file}: {reason}")]
    Import {
        /// The file, as the plan names it.
        file: String,
        /// Why (in the message, as for `Csv`).
        reason: PlanEditError,
    },
    /// The plan itself does not load.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The baseline file `plan_text` names, as written (relative to the plan
/// file), if any.
pub fn baseline_file(plan_text: &str) -> Result<Option<String>, PlanSourceError> {
    let doc: DocumentMut = plan_text.parse()?;
    match doc.get(KEY) {
        None => Ok(None),
        Some(item) => match item.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(Some(s.to_owned())),
            _ => Err(PlanSourceError::KeyType),
        },
    }
}

/// `plan_text` without its `baseline_file` key (what [`Plan::from_toml`]
/// reads; it refuses the key so that no caller skips the file).
pub fn without_key(plan_text: &str) -> Result<String, PlanSourceError> {
    let mut doc: DocumentMut = plan_text.parse()?;
    doc.remove(KEY);
    Ok(doc.to_string())
}

/// Loads a plan; `baseline_csv` is the text of the file [`baseline_file`]
/// names (`None` exactly when it names none).
pub fn load(plan_text: &str, baseline_csv: Option<&str>, geo: &Geography) -> Result<Plan, PlanSourceError> {
    load_with(plan_text, baseline_csv, None, geo)
}

/// [`load`], then `extra` rows imported over the result as a second
/// baseline file would be (`extra.0` names them in errors). `d06 demo`
/// adds its simulated baseline this way.
pub fn load_with(
    plan_text: &str,
    baseline_csv: Option<&str>,
    extra: Option<(&str, &[BaselineEntry])>,
    geo: &Geography,
) -> Result<Plan, PlanSourceError> {
    let named = baseline_file(plan_text)?;
    let mut text = match (named, baseline_csv) {
        (None, None) => plan_text.to_owned(),
        (Some(file), Some(csv)) => {
            let rows =
                baseline_csv::parse(csv, geo).map_err(|reason| PlanSourceError::Csv { file: file.clone(), reason })?;
            import_baselines(&without_key(plan_text)?, &rows, geo)
                .map_err(|reason| PlanSourceError::Import { file: file.clone(), reason })?
        }
        (named, given) => {
            return Err(PlanSourceError::Mismatch { named, given: if given.is_some() { "a" } else { "no" } })
        }
    };
    if let Some((file, rows)) = extra {
        text = import_baselines(&text, rows, geo)
            .map_err(|reason| PlanSourceError::Import { file: file.to_owned(), reason })?;
    }
    Ok(Plan::from_toml(&text, geo)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fact::Indicator;
    use crate::geo::{AreaLevel, GeographyVersion};
    use crate::plan::Baseline;

    const FIXTURE: &str = include_str!("../../deploy/plans/binh-phuoc-2024.toml");

    fn pre() -> Geography {
        Geography::load(GeographyVersion::Pre2025).unwrap()
    }

    fn with_key() -> String {
        format!("baseline_file = \"baselines/2024.csv\"\n{FIXTURE}")
    }

    #[test]
    fn a_plan_with_a_baseline_file_takes_its_baselines() {
        let g = pre();
        let plan = with_key();
        assert_eq!(baseline_file(&plan).unwrap().as_deref(), Some("baselines/2024.csv"));
        assert_eq!(baseline_file(FIXTURE).unwrap(), None);
        let csv = "indicator,area,baseline,source\n\
                   smartphone_4g,688,19800,Viettel 31/3/2024\n\
                   sim_signature,70,40000,Sở TT&TT\n";
        let p = load(&plan, Some(csv), &g).unwrap();
        let d688 = g.find(AreaLevel::District, "688").unwrap();
        let d689 = g.find(AreaLevel::District, "689").unwrap();
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d688), Baseline::Known(19_800));
        assert_eq!(p.baseline_source(Indicator::Smartphone4g, d688), Some("Viettel 31/3/2024"));
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d689), Baseline::Unknown);
        assert_eq!(p.baseline_of(Indicator::SimSignature, g.province()), Baseline::Known(40_000));
        // The same as importing the file, then loading.
        let rows = baseline_csv::parse(csv, &g).unwrap();
        let imported = Plan::from_toml(&import_baselines(FIXTURE, &rows, &g).unwrap(), &g).unwrap();
        for ind in Indicator::ALL {
            for a in g.of_level(AreaLevel::District).chain([g.province()]) {
                assert_eq!(p.baseline_of(*ind, a), imported.baseline_of(*ind, a));
                assert_eq!(p.target(*ind, a), imported.target(*ind, a));
            }
        }
        // Without the key, the plan loads as before.
        let plain = load(FIXTURE, None, &g).unwrap();
        assert_eq!(plain.baseline_of(Indicator::Smartphone4g, d688), Baseline::Unknown);
    }

    #[test]
    fn extra_rows_go_over_the_file_and_the_plan() {
        let g = pre();
        let d688 = g.find(AreaLevel::District, "688").unwrap();
        let d689 = g.find(AreaLevel::District, "689").unwrap();
        let csv = "indicator,area,baseline,source\nsmartphone_4g,688,19800,Viettel\nsmartphone_4g,689,500,Viettel\n";
        let extra =
            baseline_csv::parse("indicator,area,baseline,source\nsmartphone_4g,689,700,mô phỏng\n", &g).unwrap();
        let p = load_with(&with_key(), Some(csv), Some(("simulated", &extra)), &g).unwrap();
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d688), Baseline::Known(19_800), "the file's row stays");
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d689), Baseline::Known(700), "the extra row wins");
        assert_eq!(p.baseline_source(Indicator::Smartphone4g, d689), Some("mô phỏng"));
        // Without a file, over the plan alone; with no extra rows, `load`.
        let p = load_with(FIXTURE, None, Some(("simulated", &extra)), &g).unwrap();
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d689), Baseline::Known(700));
        assert_eq!(p.baseline_of(Indicator::Smartphone4g, d688), Baseline::Unknown);
        // Extra rows that break the plan are named as such.
        let bad = baseline_csv::parse("indicator,area,baseline,source\ncccd,70,1,a\ncccd,688,2,b\n", &g).unwrap();
        let e = load_with(FIXTURE, None, Some(("simulated", &bad)), &g).unwrap_err();
        assert!(e.to_string().starts_with("baseline file simulated: "), "{e}");
    }

    #[test]
    fn a_bad_baseline_file_is_refused_with_the_file_and_line() {
        let g = pre();
        let plan = with_key();
        let e = load(&plan, Some("indicator,area,baseline,source\ncccd,688,0,a\ncccd,99999,5,x\n"), &g).unwrap_err();
        assert!(matches!(e, PlanSourceError::Csv { reason: BaselineCsvError::Area { line: 3, .. }, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "baseline file baselines/2024.csv: line 3: unknown area code \"99999\": not the province, a district \
             or a commune of the pre2025 geography"
        );
        // Rows that parse but break the plan.
        let e = load(&plan, Some("indicator,area,baseline,source\ncccd,70,10,a\ncccd,688,11,b\n"), &g).unwrap_err();
        assert!(matches!(e, PlanSourceError::Import { .. }), "{e:?}");
        assert!(e.to_string().starts_with("baseline file baselines/2024.csv: "), "{e}");
        // The texts must match what the plan names.
        assert!(matches!(load(&plan, None, &g), Err(PlanSourceError::Mismatch { .. })));
        assert!(matches!(load(FIXTURE, Some("x"), &g), Err(PlanSourceError::Mismatch { .. })));
        assert!(matches!(baseline_file("baseline_file = 3\n"), Err(PlanSourceError::KeyType)));
        assert!(matches!(baseline_file("baseline_file = \"\"\n"), Err(PlanSourceError::KeyType)));
        // Loading the plan directly refuses the key: nothing skips the file.
        assert!(matches!(Plan::from_toml(&plan, &g), Err(PlanError::Toml(_))));
    }
}
