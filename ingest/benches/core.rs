//! The core, in process, no IO: decode + validate + pseudonymise → route by
//! `Digest::shard` → dedup + rollup (`aggregator::Shard`, hotline facts to
//! `aggregator::Tickets`), as `src/pipeline.rs` does, on one thread.
//!
//! - `core/fresh_200k`: 200,000 messages of the `support` mix into empty
//!   state (2 shards, the configured default);
//! - `core/warm_1M`: the next 100,000 messages of the stream (new ids, 30 %
//!   repeat subjects, 5 % re-sends, 2 % late) into state already holding
//!   ≈ 1 M coverage subjects (rebuilt before each iteration, untimed);
//! - `core/fresh_200k_with_log`: as `fresh_200k`, plus encoding each applied
//!   fact into the fact-log buffer, as `Pipeline::absorb` does.
//!
//! `cargo bench -p ingest --bench core`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aggregator::{Fact, FactKind, Geography, GeographyVersion, Nanos, Outcome, Shard, Tickets, WorkCalendar};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ingest::{Pseudonymiser, SecretKey, Validator, ValidatorConfig};

const KEY: &[u8] = b"bench-key-0123456789abcdef-0123456789";
const SHARDS: u32 = 2;

/// The aggregator state of one process (as `src/pipeline.rs` `State`).
struct State {
    coverage: Vec<Shard>,
    tickets: Vec<Tickets>,
    /// One watermark per source topic (the generator is one partition each).
    watermarks: [Option<Nanos>; 4],
    log: Vec<u8>,
    applied: u64,
    duplicates: u64,
}

impl State {
    fn new(geo: &Arc<Geography>, cal: &Arc<WorkCalendar>) -> Self {
        State {
            coverage: (0..SHARDS).map(|_| Shard::new(geo.clone())).collect(),
            tickets: (0..SHARDS).map(|_| Tickets::new(geo.clone(), cal.clone())).collect(),
            watermarks: [None; 4],
            log: Vec::new(),
            applied: 0,
            duplicates: 0,
        }
    }

    fn apply(&mut self, f: &Fact) -> Outcome {
        let s = f.subject.shard(SHARDS) as usize;
        match f.kind {
            FactKind::Hotline { .. } => self.tickets[s].apply(f),
            _ => self.coverage[s].apply(f),
        }
    }

    #[inline]
    fn absorb(&mut self, v: &Validator, m: &[u8], now: Nanos, log: bool) {
        let wm = &mut self.watermarks[topic(m)];
        match v.validate(m, now, wm) {
            Ok(f) => match self.apply(&f) {
                Outcome::Applied => {
                    self.applied += 1;
                    if log {
                        f.encode(&mut self.log);
                    }
                }
                Outcome::Duplicate => self.duplicates += 1,
            },
            Err(r) => panic!("generated message rejected: {r}"),
        }
    }

    fn subjects(&self) -> usize {
        self.coverage.iter().map(Shard::subjects).sum()
    }
}

/// The source topic of a generated message (its event id, which starts
/// with the source, begins at byte 37): stands in for the partition a
/// source thread knows.
fn topic(m: &[u8]) -> usize {
    let id = m.get(37..).unwrap_or_default();
    if id.starts_with(b"c06-cccd") {
        0
    } else if id.starts_with(b"c06-vneid") {
        1
    } else if id.starts_with(b"hotline") {
        3
    } else {
        2
    }
}

fn setup() -> (Arc<Geography>, Arc<WorkCalendar>, Validator) {
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
    let cal = Arc::new(WorkCalendar::embedded().unwrap());
    let v = Validator::new(
        geo.clone(),
        Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap()),
        ValidatorConfig::default(),
    );
    (geo, cal, v)
}

fn fresh(c: &mut Criterion) {
    let (geo, cal, v) = setup();
    let mut gen = support::Gen::new(7, &geo);
    let msgs = gen.batch(200_000);
    let now = gen.now();
    let mut g = c.benchmark_group("core");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).throughput(Throughput::Elements(msgs.len() as u64));
    for (name, log) in [("fresh_200k", false), ("fresh_200k_with_log", true)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || State::new(&geo, &cal),
                |mut st| {
                    for m in &msgs {
                        st.absorb(&v, black_box(m), now, log);
                    }
                    st
                },
                BatchSize::PerIteration,
            )
        });
    }
    let mut st = State::new(&geo, &cal);
    for m in &msgs {
        st.absorb(&v, m, now, false);
    }
    eprintln!(
        "core: {} messages → {} applied, {} duplicates, {} coverage subjects",
        msgs.len(),
        st.applied,
        st.duplicates,
        st.subjects()
    );
    g.finish();
}

fn warm(c: &mut Criterion) {
    let (geo, cal, v) = setup();
    let mut gen = support::Gen::new(11, &geo);
    // The stream until ≈ 1 M coverage subjects hold state, validated once and
    // kept as facts to rebuild that state before each measured chunk
    // (outside the timing).
    let mut st = State::new(&geo, &cal);
    let mut preload: Vec<Fact> = Vec::new();
    while st.subjects() < 1_000_000 {
        let msgs = gen.batch(100_000);
        let now = gen.now();
        for m in &msgs {
            let wm = &mut st.watermarks[topic(m)];
            let f = v.validate(m, now, wm).unwrap();
            st.apply(&f);
            preload.push(f);
        }
    }
    let watermarks = st.watermarks;
    eprintln!(
        "core warm: {} messages preloaded ({} coverage subjects), then 100,000 timed",
        preload.len(),
        st.subjects()
    );
    drop(st);
    let next = gen.batch(100_000);
    let now = gen.now();
    let mut g = c.benchmark_group("core");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(next.len() as u64));
    g.bench_function("warm_1M", |b| {
        b.iter_batched(
            || {
                let mut st = State::new(&geo, &cal);
                for f in &preload {
                    st.apply(f);
                }
                st.watermarks = watermarks;
                st
            },
            |mut st| {
                for m in &next {
                    st.absorb(&v, black_box(m), now, false);
                }
                st
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, fresh, warm);
criterion_main!(benches);
