//! The core's throughput as the state grows (not a criterion bench: one
//! measured run, printed).
//!
//! Streams the `support` mix through validate → route → apply (2 shards,
//! hotline to `Tickets`), as `core.rs` does, until N coverage subjects hold
//! state, in chunks of 100,000 messages: each chunk is generated untimed,
//! then timed through. Prints the rate for every million subjects reached,
//! by the wall clock and by the thread's time on a CPU
//! (`/proc/thread-self/schedstat`), which other processes sharing the
//! machine do not inflate.
//!
//! `cargo bench -p ingest --bench core_scale -- 10000000`
//! (`D06_PREFETCH=K`: groups of K, 0 for one by one; default
//! `aggregator::PREFETCH_AHEAD`. `D06_CHUNK=M`: M messages generated at a
//! time, default 100,000 (29 MB, so each is read from memory, not from
//! a cache); 1,000 (290 kB) is closer to a consumer handling the
//! messages of a fetch just received, still in cache. Each chunk is
//! written over the buffers of the one before; `D06_FRESH_BUFFERS=1`
//! allocates new ones and frees the old, as the bench did before).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::{FactKind, Geography, GeographyVersion, Nanos, Shard, Tickets, WorkCalendar};
use ingest::{Pseudonymiser, SecretKey, Validator, ValidatorConfig};

const SHARDS: u32 = 2;

/// Nanoseconds this thread has run on a CPU.
fn on_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}
/// Messages generated (untimed) then timed through at a time, unless `D06_CHUNK` says.
const CHUNK: usize = 100_000;

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

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000_000);
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
    let cal = Arc::new(WorkCalendar::embedded().unwrap());
    let key = SecretKey::from_bytes(b"bench-key-0123456789abcdef-0123456789".to_vec()).unwrap();
    let v = Validator::new(geo.clone(), Pseudonymiser::new(&key), ValidatorConfig::default());
    let mut coverage: Vec<Shard> = (0..SHARDS).map(|_| Shard::new(geo.clone())).collect();
    let mut tickets: Vec<Tickets> = (0..SHARDS).map(|_| Tickets::new(geo.clone(), cal.clone())).collect();
    let mut watermarks: [Option<Nanos>; 4] = [None; 4];
    let mut gen = support::Gen::new(11, &geo);
    // Validate `ahead` messages, prefetch their subjects, then apply them, as
    // stage 2 applies a batch (`aggregator::PREFETCH_AHEAD`); D06_PREFETCH=0:
    // one message at a time, as before.
    let ahead: usize =
        std::env::var("D06_PREFETCH").ok().and_then(|v| v.parse().ok()).unwrap_or(aggregator::PREFETCH_AHEAD);
    let mut facts = Vec::with_capacity(ahead);
    let chunk: usize = std::env::var("D06_CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(CHUNK);

    let (mut band_msgs, mut band_time, mut total_msgs, mut total_time) = (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    let (mut band_cpu, mut total_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut next_report = 1_000_000;
    // The chunk's messages, written over chunk after chunk (`Gen::refill`);
    // D06_FRESH_BUFFERS=1: a new vector of new messages each chunk, the
    // old ones freed, as before 2026-12-05 evening.
    let fresh_buffers = std::env::var_os("D06_FRESH_BUFFERS").is_some_and(|v| v == "1");
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    println!(
        "{:>12} {:>12} {:>12} {:>10} {:>14} {:>10}",
        "subjects", "messages", "wall msgs/s", "ns/msg", "on-CPU msgs/s", "ns/msg"
    );
    loop {
        let subjects: usize = coverage.iter().map(Shard::subjects).sum();
        if subjects >= next_report {
            println!(
                "{:>12} {:>12} {:>12.0} {:>10.0} {:>14.0} {:>10.0}",
                subjects,
                total_msgs,
                band_msgs as f64 / band_time.as_secs_f64(),
                band_time.as_nanos() as f64 / band_msgs as f64,
                band_msgs as f64 / band_cpu.as_secs_f64(),
                band_cpu.as_nanos() as f64 / band_msgs as f64
            );
            (band_msgs, band_time, band_cpu) = (0, Duration::ZERO, Duration::ZERO);
            next_report += 1_000_000;
        }
        if subjects >= n {
            break;
        }
        if fresh_buffers {
            msgs = gen.batch(chunk);
        } else {
            gen.refill(&mut msgs, chunk);
        }
        let now = gen.now();
        let (t, c) = (Instant::now(), on_cpu());
        if ahead == 0 {
            for m in &msgs {
                let f = v.validate(m, now, &mut watermarks[topic(m)]).unwrap();
                let s = f.subject.shard(SHARDS) as usize;
                match f.kind {
                    FactKind::Hotline { .. } => tickets[s].apply(&f),
                    _ => coverage[s].apply(&f),
                };
            }
        } else {
            for group in msgs.chunks(ahead) {
                facts.clear();
                facts.extend(group.iter().map(|m| v.validate(m, now, &mut watermarks[topic(m)]).unwrap()));
                for (s, shard) in coverage.iter().enumerate() {
                    shard.prefetch(facts.iter().filter(|f| f.subject.shard(SHARDS) as usize == s));
                }
                for f in &facts {
                    let s = f.subject.shard(SHARDS) as usize;
                    match f.kind {
                        FactKind::Hotline { .. } => tickets[s].apply(f),
                        _ => coverage[s].apply(f),
                    };
                }
            }
        }
        let (spent, cpu) = (t.elapsed(), on_cpu() - c);
        band_cpu += cpu;
        total_cpu += cpu;
        band_time += spent;
        total_time += spent;
        band_msgs += msgs.len() as u64;
        total_msgs += msgs.len() as u64;
    }
    println!(
        "overall: {total_msgs} messages in {:.1} s wall ({:.0} msgs/s), {:.1} s on a CPU ({:.0} msgs/s)",
        total_time.as_secs_f64(),
        total_msgs as f64 / total_time.as_secs_f64(),
        total_cpu.as_secs_f64(),
        total_msgs as f64 / total_cpu.as_secs_f64()
    );
}
