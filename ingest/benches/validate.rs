//! Validation throughput: decode + check + HMAC pseudonymisation, per
//! message, on the realistic mix of `support` (~300-byte messages).
//!
//! `cargo bench -p ingest --bench validate`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::hint::black_box;
use std::sync::Arc;

use aggregator::{Geography, GeographyVersion};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest::{Pseudonymiser, SecretKey, SubjectKind, Validator, ValidatorConfig};

const KEY: &[u8] = b"bench-key-0123456789abcdef-0123456789";

fn validator(geo: Arc<Geography>) -> Validator {
    Validator::new(geo, Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap()), ValidatorConfig::default())
}

fn bench(c: &mut Criterion) {
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
    let v = validator(geo.clone());
    let mut gen = support::Gen::new(1, &geo);
    let msgs = gen.batch(20_000);
    let now = gen.now();
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let mut wm = None;
    let accepted = msgs.iter().filter(|m| v.validate(m, now, &mut wm).is_ok()).count();
    assert_eq!(accepted, msgs.len(), "every generated message is valid");
    eprintln!("validate: {} messages, mean {:.0} bytes", msgs.len(), bytes as f64 / msgs.len() as f64);

    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("mix", |b| {
        b.iter(|| {
            let mut wm = None;
            let mut ok = 0usize;
            for m in &msgs {
                ok += usize::from(v.validate(black_box(m), now, &mut wm).is_ok());
            }
            ok
        })
    });
    for ty in ["cccd.application", "vneid.account", "sim.swap", "sim.signature", "hotline.ticket"] {
        let needle = format!("\"type\":\"{ty}\"");
        let only: Vec<&Vec<u8>> =
            msgs.iter().filter(|m| std::str::from_utf8(m).is_ok_and(|s| s.contains(&needle))).take(2_000).collect();
        g.throughput(Throughput::Elements(only.len() as u64));
        g.bench_function(ty, |b| {
            b.iter(|| {
                let mut wm = None;
                let mut ok = 0usize;
                for m in &only {
                    ok += usize::from(v.validate(black_box(m), now, &mut wm).is_ok());
                }
                ok
            })
        });
    }
    g.finish();

    let p = Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap());
    let mut g = c.benchmark_group("pseudonymise");
    g.throughput(Throughput::Elements(1));
    g.bench_function("citizen_id", |b| b.iter(|| p.digest(SubjectKind::CitizenId, black_box("070203004567"))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
