//! The largest-remainder split of a province figure among its districts.

use std::collections::BTreeMap;

use super::PlanError;
use crate::fact::Indicator;
use crate::geo::AreaId;

/// Splits `total` among `districts` (in code order): overrides first, the
/// rest by weight, largest remainder.
pub(super) fn split(
    indicator: Indicator,
    what: &'static str,
    total: u64,
    districts: &[(AreaId, &str)],
    overrides: &BTreeMap<AreaId, u64>,
    weights: &BTreeMap<AreaId, u64>,
) -> Result<Vec<(AreaId, u64)>, PlanError> {
    let fixed: u64 = districts.iter().filter_map(|(a, _)| overrides.get(a)).sum();
    let rest = total.checked_sub(fixed).ok_or(PlanError::Split { indicator, what, sum: fixed, total })?;
    let sharing: Vec<(AreaId, &str)> = districts.iter().filter(|(a, _)| !overrides.contains_key(a)).copied().collect();
    let mut out: Vec<(AreaId, u64)> =
        districts.iter().filter_map(|(a, _)| overrides.get(a).map(|v| (*a, *v))).collect();
    if rest == 0 {
        out.extend(sharing.iter().map(|(a, _)| (*a, 0)));
        return Ok(out);
    }
    if sharing.is_empty() {
        return Err(PlanError::Split { indicator, what, sum: fixed, total });
    }
    let mut w = Vec::with_capacity(sharing.len());
    for (a, code) in &sharing {
        let weight = weights.get(a).copied().ok_or_else(|| PlanError::MissingWeight {
            indicator,
            what,
            code: code.to_string(),
        })?;
        w.push(u128::from(weight));
    }
    let sum_w: u128 = w.iter().sum();
    let rest_w = u128::from(rest);
    // (area, floor share, remainder numerator, order)
    let mut parts: Vec<(AreaId, u128, u128, usize)> = sharing
        .iter()
        .zip(&w)
        .enumerate()
        .map(|(i, ((a, _), wi))| (*a, rest_w * wi / sum_w, rest_w * wi % sum_w, i))
        .collect();
    let given: u128 = parts.iter().map(|p| p.1).sum();
    let mut left = rest_w - given; // < number of sharing districts
    let mut by_remainder: Vec<usize> = (0..parts.len()).collect();
    by_remainder.sort_by(|&i, &j| parts[j].2.cmp(&parts[i].2).then(parts[i].3.cmp(&parts[j].3)));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        parts[i].1 += 1;
        left -= 1;
    }
    out.extend(parts.iter().map(|p| (p.0, u64::try_from(p.1).unwrap_or(u64::MAX))));
    Ok(out)
}
