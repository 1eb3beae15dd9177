#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use super::*;

fn codes(csv: &str, column: &str) -> Vec<String> {
    let (h, body) = rows(csv);
    body.iter().map(|r| col(&h, r, column).unwrap().to_string()).collect()
}

#[test]
fn embedded_files_have_no_quoted_fields() {
    for f in [PROVINCES_PRE, DISTRICTS_PRE, COMMUNES_PRE, PROVINCES_POST, COMMUNES_POST, OLD_TO_NEW, POPULATION] {
        assert!(!f.contains('"'));
    }
}

#[test]
fn counts_are_the_official_ones() {
    assert_eq!(provinces(GeographyVersion::Pre2025).unwrap().len(), 63);
    assert_eq!(provinces(GeographyVersion::Post2025).unwrap().len(), 34);
    assert_eq!(codes(DISTRICTS_PRE, "district_code").len(), 696);
    assert_eq!(codes(COMMUNES_PRE, "commune_code").len(), 10_051);
    assert_eq!(codes(COMMUNES_POST, "commune_code").len(), 3_321);
    for (csv, column) in [(COMMUNES_PRE, "commune_code"), (COMMUNES_POST, "commune_code")] {
        let all = codes(csv, column);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "codes are unique");
    }
}

#[test]
fn every_commune_of_both_versions_resolves_in_its_province() {
    for version in [GeographyVersion::Pre2025, GeographyVersion::Post2025] {
        let mut total = 0;
        for p in provinces(version).unwrap() {
            let g = Geography::load_province(version, &p.code).unwrap();
            assert_eq!(g.area(g.province()).code, p.code);
            assert_eq!(g.levels(), Geography::load(version).unwrap().levels());
            for c in g.of_level(AreaLevel::Commune) {
                let code = &g.area(c).code;
                assert_eq!(g.resolve(Some(code), None), Ok(c), "{code}");
                let chain: Vec<_> = g.chain(c).collect();
                assert_eq!(chain.last(), Some(&g.province()));
                total += 1;
            }
            if version == GeographyVersion::Pre2025 {
                for d in g.of_level(AreaLevel::District) {
                    assert_eq!(g.resolve(None, Some(&g.area(d).code)), Ok(d));
                }
            }
        }
        let expected = match version {
            GeographyVersion::Pre2025 => 10_051,
            GeographyVersion::Post2025 => 3_321,
        };
        assert_eq!(total, expected, "{version:?}");
    }
}

#[test]
fn old_codes_map_forward_to_their_primary_successor() {
    let (h, body) = rows(OLD_TO_NEW);
    let post: HashMap<String, String> = {
        let (h, body) = rows(COMMUNES_POST);
        body.iter()
            .map(|r| (col(&h, r, "commune_code").unwrap().into(), col(&h, r, "province_code").unwrap().into()))
            .collect()
    };
    let mut geos: HashMap<String, Geography> = HashMap::new();
    let mut primaries: HashMap<&str, &str> = HashMap::new();
    for r in &body {
        let (old, new) = (col(&h, r, "old_commune_code").unwrap(), col(&h, r, "new_commune_code").unwrap());
        if col(&h, r, "primary").unwrap() == "1" {
            assert!(primaries.insert(old, new).is_none(), "{old} has one primary successor");
        }
    }
    let mut forward = 0;
    for (old, new) in &primaries {
        let province = &post[*new];
        let g = geos
            .entry(province.clone())
            .or_insert_with(|| Geography::load_province(GeographyVersion::Post2025, province).unwrap());
        let got = g.area(g.resolve(Some(old), None).unwrap()).code.clone();
        // An old code reused as another new unit's code resolves to that unit.
        assert!(got == *new || post.contains_key(*old), "{old} → {got}, expected {new}");
        forward += usize::from(got == *new);
    }
    // Every old commune of the table has exactly one primary successor.
    assert_eq!(primaries.len(), codes(OLD_TO_NEW, "old_commune_code").into_iter().collect::<HashSet<_>>().len());
    assert!(forward * 100 >= primaries.len() * 99, "{forward} of {}", primaries.len());
    // The pre-2025 communes the table does not name (merged before 1 July
    // 2025 by the 2023–2025 rearrangement; the data README lists them).
    let pre: HashSet<String> = codes(COMMUNES_PRE, "commune_code").into_iter().collect();
    let mut unmapped: Vec<_> = pre.iter().filter(|c| !primaries.contains_key(c.as_str())).cloned().collect();
    unmapped.sort();
    assert_eq!(unmapped.len(), 28, "{unmapped:?}");
}

#[test]
fn binh_phuoc_files_agree_with_the_national_data() {
    // Pre-2025: the same areas, names and order.
    let bp = Geography::load(GeographyVersion::Pre2025).unwrap();
    let nat = Geography::load_province(GeographyVersion::Pre2025, "70").unwrap();
    assert_eq!(bp.areas(), nat.areas());
    // Post-2025: Bình Phước's 40 units are 40 of Đồng Nai's 95, same names,
    // and every old code maps forward to the same unit.
    let bp = Geography::load(GeographyVersion::Post2025).unwrap();
    let nat = Geography::load_province(GeographyVersion::Post2025, "75").unwrap();
    assert_eq!(nat.of_level(AreaLevel::Commune).count(), 95);
    for c in bp.of_level(AreaLevel::Commune) {
        let a = bp.area(c);
        let n = nat.find(AreaLevel::Commune, &a.code).unwrap();
        assert_eq!(nat.area(n).name, a.name);
    }
    let (h, body) = rows(super::super::OLD_TO_NEW_CSV);
    assert_eq!(body.len(), 111);
    for r in &body {
        let old = col(&h, r, "old_commune_code").unwrap();
        let district = col(&h, r, "old_district_code").unwrap();
        let want = col(&h, r, "new_commune_code").unwrap();
        for d in [None, Some(district)] {
            let got = nat.resolve(Some(old), d).unwrap();
            assert_eq!(nat.area(got).code, want, "{old}");
            assert_eq!(bp.area(bp.resolve(Some(old), d).unwrap()).code, want);
        }
    }
}

#[test]
fn populations_cover_every_province_and_add_up() {
    let pre = provinces(GeographyVersion::Pre2025).unwrap();
    let post = provinces(GeographyVersion::Post2025).unwrap();
    assert!(pre.iter().chain(&post).all(|p| p.population > 0));
    let total: u64 = pre.iter().map(|p| p.population).sum();
    assert_eq!(total, post.iter().map(|p| p.population).sum::<u64>());
    assert!((95_000_000..=105_000_000).contains(&total), "{total}");
    let bp = pre.iter().find(|p| p.code == "70").unwrap();
    assert_eq!(bp.name, "Bình Phước");
    // Bình Phước joined Đồng Nai: 75's population is the two old provinces'.
    let dn = pre.iter().find(|p| p.code == "75").unwrap().population;
    assert_eq!(post.iter().find(|p| p.code == "75").unwrap().population, dn + bp.population);
}

#[test]
fn an_unknown_province_is_a_typed_error() {
    let e = Geography::load_province(GeographyVersion::Post2025, "70").unwrap_err();
    assert!(matches!(e, ProvinceError::Unknown { .. }), "{e}");
    assert!(Geography::load_province(GeographyVersion::Pre2025, "70").is_ok());
}
