//! The per-area baseline file: what each area had achieved before the
//! campaign, with its source, as a CSV text (the caller reads the file).
//!
//! ```csv
//! indicator,area,baseline,source
//! smartphone_4g,70,310500,"Sở TT&TT, báo cáo ngày 31/3/2024"
//! smartphone_4g,688,19800,"Viettel Bình Phước, 31/3/2024"
//! sim_signature,689,unknown,"chưa có số liệu của nhà mạng"
//! ```
//!
//! - the header is exactly `indicator,area,baseline,source`;
//! - `indicator` is a contract code (`cccd`, `vneid`, `smartphone_4g`,
//!   `sim_signature`, `migrated_2g`);
//! - `area` is the GSO code of the province, a district or a commune of the
//!   geography in use; any other code is refused;
//! - `baseline` is a whole number or `unknown`;
//! - `source` says where the figure comes from and may not be empty;
//! - fields may be quoted (`"…"`, a quote inside doubled `""`); empty lines
//!   and lines starting with `#` are ignored; one row per (indicator, area).
//!
//! Parsing is pure and checks every row against the geography; the whole
//! file is refused on the first bad row (nothing half-imported).

use std::collections::BTreeSet;

use crate::fact::Indicator;
use crate::geo::{AreaId, AreaLevel, Geography, GeographyVersion};
use crate::plan::Baseline;

/// The header every baseline file starts with.
pub const HEADER: &str = "indicator,area,baseline,source";

/// One row of a baseline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineEntry {
    /// The indicator.
    pub indicator: Indicator,
    /// The area, resolved in the geography.
    pub area: AreaId,
    /// Its level.
    pub level: AreaLevel,
    /// Its GSO code, as written.
    pub code: String,
    /// The baseline.
    pub baseline: Baseline,
    /// Where it comes from.
    pub source: String,
}

/// Why a baseline file was refused (`line` counts from 1).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaselineCsvError {
    /// The first line is not [`HEADER`].
    #[error("line 1: the header must be exactly `{HEADER}`")]
    Header,
    /// Not four fields, or a quote left open.
    #[error("line {line}: expected 4 fields (indicator,area,baseline,source), found {found}")]
    Fields {
        /// The line.
        line: usize,
        /// Fields found (0 for an unterminated quote).
        found: usize,
    },
    /// Not a contract indicator.
    #[error("line {line}: unknown indicator {value:?}")]
    Indicator {
        /// The line.
        line: usize,
        /// What was written.
        value: String,
    },
    /// Not an area of the geography.
    #[error("line {line}: unknown area code {code:?}: not the province, a district or a commune of the {geography} geography")]
    Area {
        /// The line.
        line: usize,
        /// The code.
        code: String,
        /// The geography's version.
        geography: String,
    },
    /// Neither a whole number nor `unknown`.
    #[error("line {line}: baseline {value:?} must be a whole number ≥ 0 or `unknown`")]
    Baseline {
        /// The line.
        line: usize,
        /// What was written.
        value: String,
    },
    /// An empty source.
    #[error("line {line}: the source may not be empty: say where the figure comes from")]
    Source {
        /// The line.
        line: usize,
    },
    /// The same (indicator, area) twice.
    #[error("line {line}: {indicator} in area {code} is given twice")]
    Duplicate {
        /// The line.
        line: usize,
        /// The indicator.
        indicator: Indicator,
        /// The area code.
        code: String,
    },
    /// No rows at all.
    #[error("the file has no rows")]
    Empty,
}

/// Splits one CSV line into fields; `None` if a quote is left open.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

/// Parses and checks a baseline file against `geo`.
pub fn parse(text: &str, geo: &Geography) -> Result<Vec<BaselineEntry>, BaselineCsvError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    match lines.next() {
        Some((_, h)) if h.trim_start_matches('\u{feff}').trim() == HEADER => {}
        _ => return Err(BaselineCsvError::Header),
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (line, text) in lines {
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let f = fields(text).ok_or(BaselineCsvError::Fields { line, found: 0 })?;
        let [indicator, code, baseline, source] =
            <[String; 4]>::try_from(f.clone()).map_err(|_| BaselineCsvError::Fields { line, found: f.len() })?;
        let indicator = Indicator::from_str(indicator.trim())
            .ok_or_else(|| BaselineCsvError::Indicator { line, value: indicator.clone() })?;
        let code = code.trim().to_owned();
        let (area, level) = [AreaLevel::Province, AreaLevel::District, AreaLevel::Commune]
            .into_iter()
            .find_map(|l| geo.find(l, &code).map(|a| (a, l)))
            .ok_or_else(|| BaselineCsvError::Area {
                line,
                code: code.clone(),
                geography: match geo.version() {
                    GeographyVersion::Pre2025 => "pre2025",
                    GeographyVersion::Post2025 => "post2025",
                }
                .to_owned(),
            })?;
        let baseline = match baseline.trim() {
            "unknown" => Baseline::Unknown,
            n => Baseline::Known(
                n.parse::<u64>().map_err(|_| BaselineCsvError::Baseline { line, value: baseline.clone() })?,
            ),
        };
        let source = source.trim().to_owned();
        if source.is_empty() {
            return Err(BaselineCsvError::Source { line });
        }
        if !seen.insert((indicator, area)) {
            return Err(BaselineCsvError::Duplicate { line, indicator, code });
        }
        out.push(BaselineEntry { indicator, area, level, code, baseline, source });
    }
    if out.is_empty() {
        return Err(BaselineCsvError::Empty);
    }
    Ok(out)
}

/// Writes entries as a baseline file (the inverse of [`parse`]).
pub fn render(entries: &[BaselineEntry]) -> String {
    let mut s = format!("{HEADER}\n");
    for e in entries {
        let baseline = match e.baseline {
            Baseline::Known(n) => n.to_string(),
            Baseline::Unknown => "unknown".to_owned(),
        };
        s.push_str(&format!(
            "{},{},{},\"{}\"\n",
            e.indicator.as_str(),
            e.code,
            baseline,
            e.source.replace('"', "\"\"")
        ));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pre() -> Geography {
        Geography::load(GeographyVersion::Pre2025).unwrap()
    }

    #[test]
    fn rows_resolve_in_the_geography_and_round_trip() {
        let g = pre();
        let text = "indicator,area,baseline,source\r\n\
                    # carriers, end of March\n\
                    smartphone_4g,70,310500,\"Sở TT&TT, báo cáo \"\"31/3\"\"\"\n\
                    \n\
                    smartphone_4g,688,19800,Viettel\n\
                    sim_signature,25216,unknown, chưa có \n";
        let rows = parse(text, &g).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].area, rows[0].level), (g.province(), AreaLevel::Province));
        assert_eq!(rows[0].source, "Sở TT&TT, báo cáo \"31/3\"");
        assert_eq!(rows[0].baseline, Baseline::Known(310_500));
        assert_eq!(rows[1].level, AreaLevel::District);
        assert_eq!(
            (rows[2].level, rows[2].baseline, rows[2].source.as_str()),
            (AreaLevel::Commune, Baseline::Unknown, "chưa có")
        );
        assert_eq!(parse(&render(&rows), &g).unwrap(), rows);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let g = pre();
        let bad = |body: &str| parse(&format!("{HEADER}\n{body}"), &g).unwrap_err();
        assert_eq!(parse("area,indicator,baseline,source\n", &g), Err(BaselineCsvError::Header));
        assert!(matches!(bad("cccd,999,1,x"), BaselineCsvError::Area { line: 2, .. }));
        assert!(matches!(bad("cccd,688,1,x\ncccd,70,1"), BaselineCsvError::Fields { line: 3, found: 3 }));
        assert!(matches!(bad("cccd,688,\"1,x"), BaselineCsvError::Fields { line: 2, found: 0 }));
        assert!(matches!(bad("cmnd,688,1,x"), BaselineCsvError::Indicator { .. }));
        assert!(matches!(bad("cccd,688,-1,x"), BaselineCsvError::Baseline { .. }));
        assert!(matches!(bad("cccd,688,1.5,x"), BaselineCsvError::Baseline { .. }));
        assert!(matches!(bad("cccd,688,1,  "), BaselineCsvError::Source { line: 2 }));
        assert!(matches!(bad("cccd,688,1,x\ncccd,688,2,y"), BaselineCsvError::Duplicate { line: 3, .. }));
        assert_eq!(bad("# nothing"), BaselineCsvError::Empty);
        let e = bad("cccd,999,1,x");
        assert_eq!(
            e.to_string(),
            "line 2: unknown area code \"999\": not the province, a district or a commune of the pre2025 geography"
        );
    }
}
