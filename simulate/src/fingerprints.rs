//! The outputs pinned: hashes of whole streams for fixed seeds, taken before
//! the simulator left the binary (`src/simulate.rs`, `src/scenario.rs`,
//! `aggregator::hotline::scenario`). A refactoring must keep them; a change
//! to what is simulated, on purpose, updates them in the same commit.

#![allow(clippy::unwrap_used)]

use aggregator::calendar::WorkCalendar;
use aggregator::{Geography, GeographyVersion};

use crate::scenario::{self, Which};
use crate::{SimConfig, Simulator};

/// FNV-1a over the `Debug` form of each item.
fn fingerprint<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> (usize, u64) {
    fnv(items.into_iter().map(|item| format!("{item:?}")))
}

/// FNV-1a over the strings, one after the other; and how many.
fn fnv(items: impl IntoIterator<Item = String>) -> (usize, u64) {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut n = 0;
    for item in items {
        for b in item.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        n += 1;
    }
    (n, h)
}

#[test]
fn the_campaign_streams_are_unchanged() {
    let pre = Geography::load(GeographyVersion::Pre2025).unwrap();
    let post = Geography::load(GeographyVersion::Post2025).unwrap();
    let small = SimConfig { scale: 0.05, ..SimConfig::default() };
    assert_eq!(fingerprint(Simulator::new(small, &pre)), (76_333, 0x504e_d891_7be3_7b6d));
    let defects = SimConfig {
        scale: 0.02,
        seed: 7,
        invalid_rate: 0.05,
        exclude_communes: vec!["25216".into()],
        ..SimConfig::default()
    };
    assert_eq!(fingerprint(Simulator::new(defects, &pre)), (32_038, 0xbe19_6199_cfe9_af8b));
    let communes = SimConfig { scale: 0.01, lagging_districts: vec![], ..SimConfig::default() };
    assert_eq!(fingerprint(Simulator::new(communes, &post).take(50_000)).1, 0xf363_cea1_0621_e803);
}

#[test]
fn the_hotline_report_streams_are_unchanged() {
    let pre = Geography::load(GeographyVersion::Pre2025).unwrap();
    let post = Geography::load(GeographyVersion::Post2025).unwrap();
    let cal = WorkCalendar::embedded().unwrap();
    let expected = [
        (Which::Hotline2023, 1, 0x0af6_bff3_045e_7746, 0x7048_7938_f029_685e),
        (Which::Hotline2023, 7, 0x0bbd_dc36_df59_14f2, 0x584b_4132_cab7_2da3),
        (Which::Hotline2024, 1, 0x3f0b_1da4_36e5_d52b, 0x5824_34ea_9425_a709),
        (Which::Hotline2024, 7, 0x4f50_0baa_d13d_a934, 0x2b23_349a_720b_a48e),
    ];
    for (which, seed, messages, facts) in expected {
        assert_eq!(fingerprint(scenario::messages(&pre, &cal, which, seed)).1, messages, "{which:?} {seed}");
        let generated = scenario::generate_with_ids(&post, &cal, &which.scenario(), seed);
        assert_eq!(fnv(generated.iter().map(|(id, f)| format!("{id:?}{f:?}"))).1, facts, "{which:?} {seed}");
    }
    let mut s: Vec<u32> = (0..1000).collect();
    scenario::shuffle(&mut s, 7);
    assert_eq!(s[..5], [884, 346, 532, 952, 32]);
}
