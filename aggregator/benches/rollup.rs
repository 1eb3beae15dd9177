//! `Shard::apply` and the fact-log encoding.
//!
//! - `rollup/first_event_fresh`: 100,000 qualifying first-event facts
//!   (`cccd` received, `vneid` activated level 2, `sim.swap`; 30 % repeat
//!   subjects, 2 % late) into an empty shard;
//! - `rollup/signature_fresh`: 100,000 `sim.signature` facts (85 %
//!   installed), same shape;
//! - `rollup/mix_fresh`: 200,000 facts of the realistic mix (`support`: 5 %
//!   re-sends, non-qualifying stages too) into 2 empty shards;
//! - `rollup/mix_warm_1M`: the next 100,000 facts of the same stream into 2
//!   shards already holding ≈ 1 M subjects (rebuilt before each iteration,
//!   untimed);
//! - `rollup/mix_national_warm_1M`: the same as `mix_warm_1M` over every
//!   province (63, pre-2025: 10,810 areas, 54,050 keys counted per day)
//!   with the stream spread over 60 days, as in a national replay (the
//!   other benches' facts fall on one or two days of one province);
//! - `…_prefetch16`: the warm benches with each group of 16 facts
//!   prefetched (`Shard::prefetch`) before it is applied, as stage 2 does;
//! - `rollup/one_subject_10k`: 10,000 distinct non-qualifying facts of one
//!   subject (a producer gone wrong): each keeps a dedup key in the
//!   subject's record, which every later one scans and rewrites;
//! - `fact/encode`, `fact/decode`: the fact-log form of 100,000 facts.
//!
//! `cargo bench -p aggregator --bench rollup`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aggregator::{Fact, Geography, GeographyVersion, Shard};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const SHARDS: u32 = 2;

fn geo() -> Arc<Geography> {
    Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap())
}

fn apply_all(shards: &mut [Shard], facts: &[Fact]) -> usize {
    let n = shards.len() as u32;
    let mut applied = 0;
    for f in facts {
        applied += usize::from(shards[f.subject.shard(n) as usize].apply(black_box(f)) == aggregator::Outcome::Applied);
    }
    applied
}

/// [`apply_all`], each group of `ahead` facts prefetched (`Shard::prefetch`) before it is applied.
fn apply_ahead(shards: &mut [Shard], facts: &[Fact], ahead: usize) -> usize {
    let n = shards.len() as u32;
    let mut applied = 0;
    for group in facts.chunks(ahead) {
        for (s, shard) in shards.iter().enumerate() {
            shard.prefetch(group.iter().filter(|f| f.subject.shard(n) as usize == s));
        }
        for f in group {
            applied +=
                usize::from(shards[f.subject.shard(n) as usize].apply(black_box(f)) == aggregator::Outcome::Applied);
        }
    }
    applied
}

fn fresh(c: &mut Criterion) {
    let geo = geo();
    let mut g = c.benchmark_group("rollup");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    let mut gen = support::FactGen::new(3, &geo);
    let firsts: Vec<Fact> = (0..100_000).map(|_| gen.fresh(Some(0))).collect();
    let mut gen = support::FactGen::new(4, &geo);
    let sigs: Vec<Fact> = (0..100_000).map(|_| gen.fresh(Some(1))).collect();
    let mut gen = support::FactGen::new(5, &geo);
    let mix = gen.batch(200_000);
    for (name, facts, shards) in
        [("first_event_fresh", &firsts, 1), ("signature_fresh", &sigs, 1), ("mix_fresh", &mix, SHARDS)]
    {
        g.throughput(Throughput::Elements(facts.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || (0..shards).map(|_| Shard::new(geo.clone())).collect::<Vec<_>>(),
                |mut s| {
                    apply_all(&mut s, facts);
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn one_subject(c: &mut Criterion) {
    use aggregator::fact::{CccdStage, Digest, FactKind};
    use aggregator::AreaLevel;
    let geo = geo();
    let area = geo.of_level(AreaLevel::Commune).next().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 9).unwrap();
    let facts: Vec<Fact> = (0..10_000i64)
        .map(|i| Fact {
            event_id: format!("c06-cccd-20240509-{i:08}").into(),
            subject: Digest([7; 16]),
            occurred_at: 1_715_212_800_000_000_000 + i,
            day,
            area,
            kind: FactKind::Cccd { stage: CccdStage::Issued },
        })
        .collect();
    let mut g = c.benchmark_group("rollup");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(facts.len() as u64));
    g.bench_function("one_subject_10k", |b| {
        b.iter_batched(
            || vec![Shard::new(geo.clone())],
            |mut s| {
                assert_eq!(apply_all(&mut s, &facts), facts.len());
                s
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn warm(c: &mut Criterion) {
    warm_over(c, "mix_warm_1M", geo(), None);
    let codes: Vec<String> =
        aggregator::geo::provinces(GeographyVersion::Pre2025).unwrap().into_iter().map(|p| p.code).collect();
    let national = Arc::new(Geography::load_provinces(GeographyVersion::Pre2025, &codes).unwrap());
    warm_over(c, "mix_national_warm_1M", national, Some(60));
}

/// 100,000 facts into 2 shards holding ≈ 1 M subjects of `geo`, the stream
/// spread over `days` days if given.
fn warm_over(c: &mut Criterion, name: &str, geo: Arc<Geography>, days: Option<i64>) {
    let mut gen = support::FactGen::new(6, &geo);
    if let Some(days) = days {
        // ≈ 2.2 M facts bring ≈ 1 M subjects (`mix_warm_1M`'s preload).
        gen = gen.spread_over(days, 2_200_000);
    }
    // The stream until ≈ 1 M subjects hold state, kept to rebuild that state
    // before each measured chunk (outside the timing).
    let mut preload = Vec::new();
    while gen.subjects < 1_000_000 {
        preload.push(gen.next_fact().0);
    }
    let next = gen.batch(100_000);
    eprintln!("rollup {name}: {} facts preloaded ({} subjects), then 100,000 timed", preload.len(), gen.subjects);
    let mut g = c.benchmark_group("rollup");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(next.len() as u64));
    for ahead in [0, aggregator::PREFETCH_AHEAD] {
        let label = if ahead == 0 { name.to_owned() } else { format!("{name}_prefetch{ahead}") };
        g.bench_function(&label, |b| {
            b.iter_batched(
                || {
                    let mut s: Vec<Shard> = (0..SHARDS).map(|_| Shard::new(geo.clone())).collect();
                    apply_all(&mut s, &preload);
                    s
                },
                |mut s| {
                    if ahead == 0 {
                        apply_all(&mut s, &next);
                    } else {
                        apply_ahead(&mut s, &next, ahead);
                    }
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let geo = geo();
    let mut gen = support::FactGen::new(8, &geo);
    let facts = gen.batch(100_000);
    let mut buf = Vec::new();
    for f in &facts {
        f.encode(&mut buf);
    }
    eprintln!("fact log: {} facts, {:.1} bytes/fact", facts.len(), buf.len() as f64 / facts.len() as f64);
    let mut g = c.benchmark_group("fact");
    g.throughput(Throughput::Elements(facts.len() as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(buf.len());
        b.iter(|| {
            out.clear();
            for f in &facts {
                black_box(f).encode(&mut out);
            }
            out.len()
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let (mut at, mut n) = (0, 0u64);
            while at < buf.len() {
                let (f, used) = Fact::decode(black_box(&buf[at..])).unwrap();
                at += used;
                n += f.occurred_at as u64 & 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, fresh, warm, one_subject, encoding);
criterion_main!(benches);
