//! Writes baselines into a plan's TOML text (`d06 plan import-baseline`),
//! keeping its comments and layout, then checks the result as a plan.
//!
//! A province row sets the indicator's `baseline` and `baseline_source`; a
//! district or commune row sets `areas."CODE".baseline` and
//! `areas."CODE".baseline_source` (a target override already there stays).
//! The indicator must already be in the plan (a baseline without a target
//! means nothing). The edited text must load as a plan
//! ([`Plan::from_toml`]), so an import can never leave a plan `d06 run`
//! would refuse.

use toml_edit::{value, DocumentMut, InlineTable, Item, Table, Value};

use crate::baseline_csv::BaselineEntry;
use crate::fact::Indicator;
use crate::geo::{AreaLevel, Geography};
use crate::plan::{Baseline, Plan, PlanError};

/// Why baselines could not be written into a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanEditError {
    /// The plan text is not TOML.
    #[error("the plan is not valid TOML: {0}")]
    Toml(#[from] toml_edit::TomlError),
    /// The plan has no `[indicators.X]` for a row's indicator.
    #[error("the plan has no [indicators.{0}] section: give the indicator a target first")]
    NoIndicator(Indicator),
    /// A key the editor needs is not a table (e.g. `areas = 3`).
    #[error("indicators.{indicator}: `{key}` is not a table")]
    NotATable {
        /// The indicator.
        indicator: Indicator,
        /// The key.
        key: String,
    },
    /// The edited plan does not load.
    #[error("with these baselines the plan does not load: {0}")]
    Plan(#[from] PlanError),
}

fn baseline_value(b: Baseline) -> Value {
    match b {
        // Plans count in u64; TOML integers are i64. Counts of people fit.
        Baseline::Known(n) => Value::from(i64::try_from(n).unwrap_or(i64::MAX)),
        Baseline::Unknown => Value::from("unknown"),
    }
}

/// `plan_text` with `entries` written in; the result is checked to load
/// against `geo`.
pub fn import_baselines(plan_text: &str, entries: &[BaselineEntry], geo: &Geography) -> Result<String, PlanEditError> {
    let mut doc: DocumentMut = plan_text.parse()?;
    for e in entries {
        let ind = e.indicator;
        let section = doc
            .get_mut("indicators")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.get_mut(ind.as_str()))
            .and_then(Item::as_table_like_mut)
            .ok_or(PlanEditError::NoIndicator(ind))?;
        if e.level == AreaLevel::Province {
            section.insert("baseline", value(baseline_value(e.baseline)));
            section.insert("baseline_source", value(e.source.as_str()));
            continue;
        }
        if section.get("areas").is_none() {
            let mut t = Table::new();
            t.set_implicit(true);
            t.set_dotted(true);
            section.insert("areas", Item::Table(t));
        }
        let areas = section
            .get_mut("areas")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| PlanEditError::NotATable { indicator: ind, key: "areas".into() })?;
        let mut area = match areas.get(&e.code) {
            None => InlineTable::new(),
            Some(item) => {
                let t = item
                    .as_table_like()
                    .ok_or_else(|| PlanEditError::NotATable { indicator: ind, key: format!("areas.{}", e.code) })?;
                let mut inline = InlineTable::new();
                for (k, v) in t.iter() {
                    if let Some(v) = v.as_value() {
                        inline.insert(k, v.clone());
                    }
                }
                inline
            }
        };
        area.insert("baseline", baseline_value(e.baseline));
        area.insert("baseline_source", Value::from(e.source.as_str()));
        areas.insert(&e.code, value(area));
    }
    let text = doc.to_string();
    // A plan naming its own baseline file (`plan_source`) is checked
    // without it: what it adds is checked when the plan loads.
    doc.remove(crate::plan_source::KEY);
    Plan::from_toml(&doc.to_string(), geo)?;
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::baseline_csv::parse;
    use crate::geo::GeographyVersion;

    const FIXTURE: &str = include_str!("../../deploy/plans/binh-phuoc-2024.toml");

    fn pre() -> Geography {
        Geography::load(GeographyVersion::Pre2025).unwrap()
    }

    #[test]
    fn an_import_sets_known_baselines_and_keeps_the_comments() {
        let g = pre();
        let rows = parse(
            "indicator,area,baseline,source\n\
             smartphone_4g,688,19800,Viettel 31/3/2024\n\
             smartphone_4g,25216,700,xã tự báo cáo\n\
             sim_signature,70,40000,Sở TT&TT\n",
            &g,
        )
        .unwrap();
        let text = import_baselines(FIXTURE, &rows, &g).unwrap();
        assert!(text.contains("# Bình Phước, 2024"), "comments kept");
        assert!(text.contains("areas.688 = { baseline = 19800, baseline_source = \"Viettel 31/3/2024\" }"), "{text}");
        let p = Plan::from_toml(&text, &g).unwrap();
        let d688 = g.find(AreaLevel::District, "688").unwrap();
        let d689 = g.find(AreaLevel::District, "689").unwrap();
        let c = g.find(AreaLevel::Commune, "25216").unwrap();
        let ind = Indicator::Smartphone4g;
        assert_eq!(p.baseline_of(ind, d688), Baseline::Known(19_800));
        assert_eq!(p.baseline_source(ind, d688), Some("Viettel 31/3/2024"));
        assert_eq!(p.baseline_of(ind, c), Baseline::Known(700));
        assert_eq!(p.baseline_of(ind, d689), Baseline::Unknown); // no row: still unknown
        assert_eq!(p.baseline_of(ind, g.province()), Baseline::Unknown);
        // A province figure is split among the districts by weight.
        let sim = Indicator::SimSignature;
        assert_eq!(p.baseline_of(sim, g.province()), Baseline::Known(40_000));
        let sum: u64 = g.of_level(AreaLevel::District).map(|a| p.baseline(sim, a)).sum();
        assert_eq!(sum, 40_000);
        assert_eq!(p.baseline_source(sim, g.province()), Some("Sở TT&TT"));
        // Importing the same file again changes nothing.
        assert_eq!(import_baselines(&text, &rows, &g).unwrap(), text);
        // Everything else is as before.
        let before = Plan::from_toml(FIXTURE, &g).unwrap();
        for i in Indicator::ALL {
            assert_eq!(p.target(*i, d689), before.target(*i, d689));
        }
    }

    #[test]
    fn an_import_that_breaks_the_plan_is_refused() {
        let g = pre();
        // District baselines above the province's.
        let rows = parse("indicator,area,baseline,source\ncccd,70,10,a\ncccd,688,11,b\n", &g).unwrap();
        assert!(matches!(import_baselines(FIXTURE, &rows, &g), Err(PlanEditError::Plan(PlanError::Split { .. }))));
        // A plan naming its own baseline file takes an import and keeps the key.
        let named = format!("baseline_file = \"b.csv\"\n{FIXTURE}");
        let rows = parse("indicator,area,baseline,source\nsmartphone_4g,688,5,a\n", &g).unwrap();
        assert!(import_baselines(&named, &rows, &g).unwrap().starts_with("baseline_file = \"b.csv\"\n"));
        // An indicator the plan does not have.
        let rows = parse("indicator,area,baseline,source\ncccd,688,1,a\n", &g).unwrap();
        assert!(matches!(
            import_baselines("start = 2024-04-10\nend = 2024-04-20\n", &rows, &g),
            Err(PlanEditError::NoIndicator(Indicator::Cccd))
        ));
    }
}
