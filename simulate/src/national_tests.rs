#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aggregator::geo::provinces;
use aggregator::{Geography, GeographyVersion};
use ingest::contract::{Validator, ValidatorConfig};
use ingest::pseudonym::{Pseudonymiser, SecretKey};

use super::National;
use crate::{Kind, SimConfig};

/// 2026-11-23T00:00:00Z: after the campaign, so nothing is in the future.
const NOW: i64 = 1_795_392_000 * 1_000_000_000;

fn small() -> SimConfig {
    SimConfig { scale: 0.02, days: 3, ..SimConfig::default() }
}

/// The province a message names in its event id (`"event_id":"pPP-…`).
fn province_of(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.split(r#""event_id":"p"#).nth(1)?;
    Some(rest.get(..2)?.to_owned())
}

/// The clear subject of a message, if it has one.
fn subject_of(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    Some(text.split(r#""subject":""#).nth(1)?.split('"').next()?.to_owned())
}

struct Counts {
    per_province: BTreeMap<String, usize>,
    valid: usize,
    invalid: usize,
    resent: usize,
    late: usize,
    spellings: [usize; 3],
}

/// Every message through the real validator of its own province.
fn check(version: GeographyVersion, cfg: &SimConfig, limit: usize) -> Counts {
    let key = SecretKey::from_bytes(b"national-test-key-0123456789".to_vec()).unwrap();
    let mut validators: HashMap<String, (Validator, Option<i64>)> = HashMap::new();
    for p in provinces(version).unwrap() {
        let geo = Arc::new(Geography::load_province(version, &p.code).unwrap());
        let v = Validator::new(geo, Pseudonymiser::new(&key), ValidatorConfig::default());
        validators.insert(p.code, (v, None));
    }
    let sim = National::new(cfg, version).unwrap();
    assert_eq!(sim.provinces(), validators.len());
    let mut c = Counts { per_province: BTreeMap::new(), valid: 0, invalid: 0, resent: 0, late: 0, spellings: [0; 3] };
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut last = None;
    for m in sim.take(limit) {
        assert!(last <= Some(m.emitted_at), "emission order");
        last = Some(m.emitted_at);
        let Some(p) = province_of(&m.payload) else {
            // Only a defect may hide its event id.
            assert!(m.invalid.is_some(), "{}", String::from_utf8_lossy(&m.payload));
            c.invalid += 1;
            continue;
        };
        let (v, watermark) = validators.get_mut(&p).unwrap();
        match (m.invalid, v.validate(&m.payload, NOW, watermark)) {
            (None, Ok(_)) => {
                c.valid += 1;
                *c.per_province.entry(p.clone()).or_default() += 1;
                *seen.entry(m.payload.clone()).or_default() += 1;
                if m.emitted_at > m.occurred_at + chrono::Duration::minutes(1) {
                    c.late += 1;
                }
                let subject = subject_of(&m.payload).unwrap();
                if m.kind == Kind::Sim {
                    c.spellings[match subject.as_bytes()[0] {
                        b'0' => 0,
                        b'+' => 1,
                        _ => 2,
                    }] += 1;
                }
                // The national number (0…) is the subject's identity.
                let identity = match subject.strip_prefix("+84").or_else(|| subject.strip_prefix("84")) {
                    Some(rest) if m.kind == Kind::Sim => format!("0{rest}"),
                    _ => subject,
                };
                let first = owner.entry(identity.clone()).or_insert_with(|| p.clone());
                assert_eq!(*first, p, "subject {identity} in two provinces");
            }
            (Some(intended), Err(r)) => {
                assert_eq!(r.reason, intended, "{}", String::from_utf8_lossy(&m.payload));
                c.invalid += 1;
            }
            (intended, got) => panic!("intended {intended:?}, got {got:?}: {}", String::from_utf8_lossy(&m.payload)),
        }
    }
    c.resent = seen.values().filter(|n| **n > 1).count();
    c
}

#[test]
fn every_pre2025_province_streams_in_proportion_to_its_population() {
    let c = check(GeographyVersion::Pre2025, &small(), usize::MAX);
    let people: BTreeMap<String, u64> =
        provinces(GeographyVersion::Pre2025).unwrap().into_iter().map(|p| (p.code, p.population)).collect();
    assert_eq!(c.per_province.len(), 63, "{:?}", c.per_province.keys());
    // Hồ Chí Minh City against Bình Phước: 9.05 times the people.
    let ratio = c.per_province["79"] as f64 / c.per_province["70"] as f64;
    let expected = people["79"] as f64 / people["70"] as f64;
    assert!((ratio / expected - 1.0).abs() < 0.2, "{ratio} vs {expected}");
    let total: usize = c.per_province.values().sum();
    assert!(total > 50_000, "{total}");
    // The defects of the one-province simulator, nationwide.
    assert!(c.invalid * 1000 > c.valid * 2 && c.invalid * 1000 < c.valid * 10, "{} invalid", c.invalid);
    assert!(c.resent * 100 > c.valid && c.resent * 100 < c.valid * 4, "{} re-sent", c.resent);
    assert!(c.late * 100 > c.valid, "{} late", c.late);
    assert!(c.spellings.iter().all(|n| *n > 100), "{:?}", c.spellings);
}

#[test]
fn the_post2025_stream_covers_the_34_provinces() {
    let c = check(GeographyVersion::Post2025, &SimConfig { days: 1, ..small() }, usize::MAX);
    assert_eq!(c.per_province.len(), 34, "{:?}", c.per_province.keys());
    assert!(c.valid > 20_000, "{}", c.valid);
}

#[test]
fn the_same_seed_gives_the_same_national_stream() {
    let a: Vec<_> = National::new(&small(), GeographyVersion::Pre2025).unwrap().take(5_000).collect();
    let b: Vec<_> = National::new(&small(), GeographyVersion::Pre2025).unwrap().take(5_000).collect();
    assert!(a == b);
    let other = SimConfig { seed: 7, ..small() };
    let c: Vec<_> = National::new(&other, GeographyVersion::Pre2025).unwrap().take(5_000).collect();
    assert_eq!(a.iter().zip(&c).filter(|(x, y)| x.payload == y.payload).count(), 0);
}

#[test]
fn a_scale_beyond_the_number_space_is_refused() {
    let e = National::new(&SimConfig { scale: 5.0, ..small() }, GeographyVersion::Pre2025).unwrap_err();
    assert!(e.to_string().contains("phone numbers"), "{e}");
    assert!(National::new(&SimConfig { scale: 2.0, ..small() }, GeographyVersion::Pre2025).is_ok());
}
