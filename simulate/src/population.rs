//! The province's people and offices: subject pools per district (citizens
//! and mobile subscribers, with synthetic but well-formed ids and numbers)
//! and the agencies 1022 tickets are forwarded to.

use aggregator::{AreaId, AreaLevel, Geography};

use crate::rng::mix64;

/// Citizen ids: 1940–2008 births × 2 genders × 10⁶ serials.
pub(crate) const CITIZEN_SPACE: u64 = 69 * 2 * 1_000_000;
/// Mobile prefixes (after the leading 0) and their carrier.
pub(crate) const PREFIXES: [(&str, &str); 36] = [
    ("32", "viettel"),
    ("33", "viettel"),
    ("34", "viettel"),
    ("35", "viettel"),
    ("36", "viettel"),
    ("37", "viettel"),
    ("38", "viettel"),
    ("39", "viettel"),
    ("86", "viettel"),
    ("96", "viettel"),
    ("97", "viettel"),
    ("98", "viettel"),
    ("81", "vinaphone"),
    ("82", "vinaphone"),
    ("83", "vinaphone"),
    ("84", "vinaphone"),
    ("85", "vinaphone"),
    ("88", "vinaphone"),
    ("91", "vinaphone"),
    ("94", "vinaphone"),
    ("70", "mobifone"),
    ("76", "mobifone"),
    ("77", "mobifone"),
    ("78", "mobifone"),
    ("79", "mobifone"),
    ("89", "mobifone"),
    ("90", "mobifone"),
    ("93", "mobifone"),
    ("52", "vietnamobile"),
    ("56", "vietnamobile"),
    ("58", "vietnamobile"),
    ("92", "vietnamobile"),
    ("59", "gmobile"),
    ("99", "gmobile"),
    ("87", "itel"),
    ("55", "reddi"),
];
pub(crate) const PHONE_SPACE: u64 = PREFIXES.len() as u64 * 10_000_000;
/// Multiplier of the index → number bijections (a prime dividing neither space).
pub(crate) const SPREAD: u64 = 2_654_435_761;

pub(crate) const AGENCIES: [&str; 5] = [
    "Công an tỉnh Bình Phước",
    "Sở Thông tin và Truyền thông",
    "Viettel Bình Phước",
    "VNPT Bình Phước",
    "UBND cấp huyện",
];

/// A district (or, post-2025, a commune) with its share of everything.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    /// Set for a district (pre-2025): the code events may name.
    pub(crate) district_code: Option<String>,
    /// Commune codes subjects live in.
    pub(crate) communes: Vec<String>,
    /// First global index of its citizens and subscribers, and how many.
    pub(crate) citizen_base: u64,
    pub(crate) citizens: u64,
    pub(crate) phone_base: u64,
    pub(crate) phones: u64,
    /// How many subjects each flow has taken from the pools so far.
    pub(crate) next_cccd: u64,
    pub(crate) next_vneid: u64,
    pub(crate) next_swap: u64,
    pub(crate) next_signature: u64,
    /// Multipliers of the per-flow permutations of the pools.
    pub(crate) steps: [u64; 5],
}

/// The units of a geography: districts, or communes where there are none,
/// each with its communes.
pub(crate) fn units_of(geo: &Geography) -> Vec<(AreaId, Vec<AreaId>)> {
    let districts: Vec<AreaId> = geo.of_level(AreaLevel::District).collect();
    if districts.is_empty() {
        return geo.of_level(AreaLevel::Commune).map(|c| (c, vec![c])).collect();
    }
    districts
        .into_iter()
        .map(|d| {
            let communes = geo.of_level(AreaLevel::Commune).filter(|c| geo.area(*c).parent == Some(d)).collect();
            (d, communes)
        })
        .collect()
}

/// A step coprime with `size`, derived from `salt` (a bijection's multiplier).
pub(crate) fn coprime_step(size: u64, salt: u64) -> u64 {
    let mut step = (SPREAD + salt * 2) % size.max(1);
    if size <= 1 {
        return 1;
    }
    while gcd(step, size) != 1 {
        step = (step + 1) % size;
    }
    step
}

pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The 12-digit citizen id of global citizen index `n`: `0` and the birth
/// province (`070`: Bình Phước), the century-and-gender digit, two year
/// digits, six serial digits.
pub(crate) fn citizen_id(n: u64, seed: u64, province: &str) -> String {
    let p = ((u128::from(n % CITIZEN_SPACE) * u128::from(SPREAD) + u128::from(mix64(seed ^ 11)))
        % u128::from(CITIZEN_SPACE)) as u64;
    let serial = p % 1_000_000;
    let rest = p / 1_000_000;
    let female = rest % 2;
    let year = 1940 + rest / 2;
    let century = if year >= 2000 { 2 } else { 0 } + female;
    format!("0{province}{century}{:02}{serial:06}", year % 100)
}

/// The national form (`0…`, 10 digits) and carrier of global subscriber index `n`.
pub(crate) fn phone_number(n: u64, seed: u64) -> (String, &'static str) {
    let p = ((u128::from(n % PHONE_SPACE) * u128::from(SPREAD) + u128::from(mix64(seed ^ 13)))
        % u128::from(PHONE_SPACE)) as u64;
    let (prefix, carrier) = PREFIXES[(p / 10_000_000) as usize % PREFIXES.len()];
    (format!("0{prefix}{:07}", p % 10_000_000), carrier)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn subjects_are_valid_distinct_and_stable() {
        let ids: HashSet<String> = (0..200_000).map(|n| citizen_id(n, 2024, "70")).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|i| i.len() == 12 && i.starts_with("070") && i.bytes().all(|b| b.is_ascii_digit())));
        let phones: HashSet<String> = (0..200_000).map(|n| phone_number(n, 2024).0).collect();
        assert_eq!(phones.len(), 200_000);
        assert!(phones.iter().all(|p| ingest::phone::normalise_phone(p).as_deref() == Some(p.as_str())));
        // A prefix and its carrier.
        let (p, carrier) = phone_number(12_345, 2024);
        let prefix = &p[1..3];
        assert_eq!(PREFIXES.iter().find(|(x, _)| *x == prefix).map(|(_, c)| *c), Some(carrier));
    }
}
