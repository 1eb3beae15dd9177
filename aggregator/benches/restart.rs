//! Memory and restart time at N distinct subjects (not a criterion bench:
//! one measured run, printed).
//!
//! Builds the fact log a pipeline would have after the realistic stream of
//! `support` reached N subjects holding state (re-sends are not in the log:
//! only applied facts are), then restarts from it as `ShardState::open`
//! does: `Fact::decode` + `Shard::apply` into 2 shards, in groups of
//! `PREFETCH_AHEAD` prefetched first, timed. Reports the
//! resident size the state added (RSS after − RSS before the replay, from
//! `/proc/self/statm`: the log buffer is already resident before), per
//! subject, and the replay rate.
//!
//! Then it writes each shard's snapshot (`aggregator::snapshot::write`) to
//! files, and a fresh process of this bench (`--load DIR N`) loads them,
//! timed, as a restart from a store with a snapshot and no log after it
//! does, and checks its figures against the replay's.
//!
//! `D06_SNAPSHOT_DIR=DIR` writes the snapshots there and keeps them, so
//! that `restart --load DIR N` can load them again (the load alone, to
//! compare builds on the same snapshots).
//!
//! `--history K` (default 1) adds K − 1 later copies of every fact, under new
//! ids and K days later, so the same subjects carry K times the events: the
//! log grows K-fold; what a snapshot holds grows only with what the rules
//! keep per event (dedup keys of non-first events, `sim.signature` lists).
//!
//! `cargo bench -p aggregator --bench restart -- 1000000`
//! `cargo bench -p aggregator --bench restart -- 10000000 --history 5`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use aggregator::calendar::WorkCalendar;
use aggregator::{snapshot, Fact, Geography, GeographyVersion, Shard, Tickets};

const SHARDS: u32 = 2;

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
}

fn peak_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

fn main() {
    let (mut n, mut history): (usize, u32) = (1_000_000, 1);
    let mut load_from = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--load" {
            load_from = args.next();
        } else if a == "--history" {
            history = args.next().and_then(|v| v.parse().ok()).expect("--history K");
        } else if let Ok(v) = a.parse() {
            n = v;
        }
    }
    if let Some(dir) = load_from {
        return load(std::path::Path::new(&dir), n);
    }
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
    let calendar = Arc::new(WorkCalendar::embedded().unwrap());

    let t = Instant::now();
    let mut log = Vec::new();
    let mut facts = 0u64;
    {
        let mut gen = support::FactGen::new(42, &geo);
        while gen.subjects < n {
            let (f, resend) = gen.next_fact();
            if !resend {
                f.encode(&mut log);
                facts += 1;
            }
        }
    }
    // Later copies of every fact: same subject, kind and area, new id, k days on.
    if history > 1 {
        let first = log.len();
        for k in 1..history {
            let mut at = 0;
            while at < first {
                let (mut f, used) = Fact::decode(&log[at..]).unwrap();
                at += used;
                f.event_id = format!("{}#{k}", f.event_id).into();
                f.occurred_at += i64::from(k) * 86_400_000_000_000;
                f.day = f.day + chrono::Days::new(u64::from(k));
                f.encode(&mut log);
                facts += 1;
            }
        }
    }
    log.shrink_to_fit();
    let built = t.elapsed();

    let before = rss_bytes();
    let t = Instant::now();
    let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::new(geo.clone())).collect();
    // In groups, prefetched, as d06 replays a shard's store (`ShardState::open`).
    let mut at = 0;
    let mut group = Vec::with_capacity(aggregator::PREFETCH_AHEAD);
    while at < log.len() {
        group.clear();
        while at < log.len() && group.len() < aggregator::PREFETCH_AHEAD {
            let (f, used) = Fact::decode(&log[at..]).unwrap();
            at += used;
            group.push(f);
        }
        for (s, shard) in shards.iter().enumerate() {
            shard.prefetch(group.iter().filter(|f| f.subject.shard(SHARDS) as usize == s));
        }
        for f in &group {
            shards[f.subject.shard(SHARDS) as usize].apply(f);
        }
    }
    let replay = t.elapsed();
    let state = rss_bytes().saturating_sub(before);

    let subjects: usize = shards.iter().map(Shard::subjects).sum();
    let events: usize = shards.iter().map(Shard::events).sum();
    assert_eq!(subjects, n, "the generator's subject count agrees with the shards'");
    assert_eq!(events as u64, facts);
    let dedup_keys: usize = shards.iter().map(Shard::dedup_keys).sum();
    println!("subjects            {subjects}");
    println!("facts in the log    {facts} ({:.2} per subject)", facts as f64 / subjects as f64);
    println!("dedup keys          {dedup_keys} (events no first-event record or signature list holds)");
    let records: usize = shards.iter().map(Shard::records).sum();
    println!("subject records     {records} (subjects with only dedup keys too)");
    let free: usize = shards.iter().map(Shard::free_bytes).sum();
    println!("free arena bytes    {free} ({:.1} per subject, in the state RSS below)", free as f64 / subjects as f64);
    println!(
        "log size            {} bytes ({:.1} per fact), built in {:.2} s",
        log.len(),
        log.len() as f64 / facts as f64,
        built.as_secs_f64()
    );
    println!(
        "replay (restart)    {:.2} s, {:.0} facts/s, {:.0} ns/fact",
        replay.as_secs_f64(),
        facts as f64 / replay.as_secs_f64(),
        replay.as_nanos() as f64 / facts as f64
    );
    println!(
        "state RSS           {} bytes ({:.1} MiB), {:.1} bytes/subject",
        state,
        state as f64 / 1048576.0,
        state as f64 / subjects as f64
    );
    println!("peak RSS (process)  {:.1} MiB", peak_bytes() as f64 / 1048576.0);
    drop(log);

    // Snapshots: written to files in 16 MiB pieces as the pipeline writes
    // them to its store (`snapshot::write`), loaded back by a fresh process
    // (this one's freed replay memory would hide the loaded state's size).
    let keep = std::env::var_os("D06_SNAPSHOT_DIR");
    let dir = keep
        .clone()
        .map_or_else(|| std::env::temp_dir().join(format!("d06-restart-bench-{}", std::process::id())), Into::into);
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    let tickets = Tickets::new(geo.clone(), calendar.clone());
    let mut bytes = 0;
    for (i, shard) in shards.iter().enumerate() {
        let mut file = std::fs::File::create(dir.join(format!("p{i}"))).unwrap();
        bytes += snapshot::write(shard, &tickets, 16 << 20, &mut |piece| file.write_all(piece).unwrap());
    }
    let written = t.elapsed();
    std::fs::write(dir.join("figures"), format!("{:?}", figures(&shards))).unwrap();
    drop(shards);
    println!("history             {history}× the events of the same subjects");
    println!(
        "snapshot            {} bytes ({:.1} per subject), written to files in {:.2} s",
        bytes,
        bytes as f64 / subjects as f64,
        written.as_secs_f64()
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--load", dir.to_str().unwrap(), &n.to_string()])
        .status()
        .unwrap();
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(status.success());
}

/// Every key's day counts, in order.
fn figures(shards: &[Shard]) -> Vec<(aggregator::RollupKey, Option<aggregator::Days>)> {
    shards.iter().flat_map(|s| s.keys().map(move |k| (*k, s.days(k).cloned()))).collect()
}

/// The second process: loads the snapshots in `dir`, timed, and checks the
/// figures against the replay's.
fn load(dir: &std::path::Path, n: usize) {
    let geo = Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap());
    let calendar = Arc::new(WorkCalendar::embedded().unwrap());
    let files: Vec<Vec<u8>> = (0..SHARDS).map(|i| std::fs::read(dir.join(format!("p{i}"))).unwrap()).collect();
    let before = rss_bytes();
    let t = Instant::now();
    let loaded: Vec<Shard> =
        files.iter().map(|b| snapshot::decode(b, geo.clone(), calendar.clone()).unwrap().0).collect();
    let load = t.elapsed();
    let state = rss_bytes().saturating_sub(before);
    let subjects: usize = loaded.iter().map(Shard::subjects).sum();
    assert_eq!(subjects, n);
    let expected = std::fs::read_to_string(dir.join("figures")).unwrap();
    assert_eq!(format!("{:?}", figures(&loaded)), expected, "the loaded shards count what the replayed ones did");
    println!(
        "load (restart)      {:.2} s from the snapshots ({} shards, one thread), {:.0} subjects/s",
        load.as_secs_f64(),
        SHARDS,
        subjects as f64 / load.as_secs_f64()
    );
    println!(
        "state RSS, loaded   {} bytes ({:.1} MiB), {:.1} bytes/subject (a fresh process)",
        state,
        state as f64 / 1048576.0,
        state as f64 / subjects as f64
    );
    println!("peak RSS (loader)   {:.1} MiB", peak_bytes() as f64 / 1048576.0);
}
