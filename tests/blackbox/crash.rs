//! Issue 3: kill -9 at random moments must never change a count.
//!
//! A stream of 200,000+ events with duplicates, redeliveries and late events
//! goes through the real broker while d06 is killed with SIGKILL at 20+
//! random moments and restarted. The final ClickHouse and `/metrics` figures
//! must equal an independent recount computed here from the raw events.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::events::{self, Place, COMMUNES};
use crate::harness::{spawn_app, AppOptions, Producer};

/// One generated event, with what the recount needs.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    pub(crate) id: String,
    pub(crate) indicator_kind: Kind,
    pub(crate) subject: String,
    /// Minutes since 2024-04-10 00:00 local.
    pub(crate) minute: i64,
    pub(crate) commune: Option<&'static str>,
    pub(crate) district: &'static str,
    /// The province's GSO code.
    pub(crate) province: &'static str,
    pub(crate) json: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    CccdReceived,
    CccdOther,
    VneidActivated2,
    VneidOther,
    SwapSmart,
    SwapFeature,
    SigInstalled,
    SigRevoked,
}

impl Kind {
    /// The contract type: `cccd.application`, `vneid.account`, `sim.swap`, `sim.signature`.
    fn family(self) -> u8 {
        match self {
            Kind::CccdReceived | Kind::CccdOther => 0,
            Kind::VneidActivated2 | Kind::VneidOther => 1,
            Kind::SwapSmart | Kind::SwapFeature => 2,
            Kind::SigInstalled | Kind::SigRevoked => 3,
        }
    }
}

/// Writes one event's JSON given its id and time.
type JsonFn = Box<dyn Fn(&str, &str) -> String>;

const CAMPAIGN_MINUTES: i64 = 90 * 24 * 60;

fn stamp(minute: i64) -> (String, String) {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 4, 10).expect("date").and_hms_opt(0, 0, 0).expect("time");
    let t = start + chrono::Duration::minutes(minute);
    (t.format("%Y-%m-%dT%H:%M:%S+07:00").to_string(), t.format("%Y-%m-%d").to_string())
}

/// [`generate_in`] Bình Phước (70), one commune per district.
pub(crate) fn generate(n: usize, seed: u64) -> Vec<Raw> {
    generate_in(n, seed, "70", &COMMUNES)
}

/// `n` events (and producer retries) in the (commune, district) places of
/// `province`. Subjects are numbered alike in every province, so streams
/// of two provinces share subjects (people and SIMs that move).
pub(crate) fn generate_in(
    n: usize,
    seed: u64,
    province: &'static str,
    communes: &[(&'static str, &'static str)],
) -> Vec<Raw> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Raw> = Vec::with_capacity(n + n / 8);
    let mut i = 0usize;
    // Per id `ev-{seed}-{j}`: the (subject, type family) pairs it was used for.
    let mut used: std::collections::HashMap<usize, Vec<(String, u8)>> = std::collections::HashMap::new();
    while out.len() < n {
        // The stream moves forward in time; some events are up to 10 days late.
        let now = (i as i64 * CAMPAIGN_MINUTES) / n as i64;
        let minute = if rng.random_bool(0.1) { (now - rng.random_range(0..10 * 24 * 60)).max(0) } else { now };
        let (commune, district) = communes[rng.random_range(0..communes.len())];
        let district_only = rng.random_bool(0.05);
        let place = if district_only { Place::District(district) } else { Place::Commune(commune) };
        let (at, _) = stamp(minute);
        let roll = rng.random_range(0..100);
        let (kind, subject, json): (Kind, String, JsonFn) = if roll < 35 {
            let s = events::citizen(rng.random_range(0..60_000));
            let (k, stage) =
                if rng.random_bool(0.8) { (Kind::CccdReceived, "received") } else { (Kind::CccdOther, "issued") };
            let s2 = s.clone();
            let j: JsonFn = Box::new(move |id: &str, at: &str| events::cccd(id, at, place, &s2, stage));
            (k, s, j)
        } else if roll < 65 {
            let s = events::citizen(rng.random_range(0..60_000));
            let ok = rng.random_bool(0.7);
            let (k, stage, level) =
                if ok { (Kind::VneidActivated2, "activated", 2) } else { (Kind::VneidOther, "registered", 2) };
            let s2 = s.clone();
            let j: JsonFn = Box::new(move |id: &str, at: &str| events::vneid(id, at, place, &s2, stage, level));
            (k, s, j)
        } else if roll < 85 {
            let n = rng.random_range(0..40_000);
            let s = events::phone(n);
            // The same subscriber in another spelling: must be one subject.
            let spelled = if rng.random_bool(0.3) { format!("+84{}", &s[1..]) } else { s.clone() };
            let smart = rng.random_bool(0.75);
            let k = if smart { Kind::SwapSmart } else { Kind::SwapFeature };
            let device = if smart { "smartphone" } else { "feature_phone" };
            let j: JsonFn = Box::new(move |id: &str, at: &str| events::swap(id, at, place, &spelled, device));
            (k, s, j)
        } else {
            let s = events::phone(rng.random_range(0..15_000));
            let installed = rng.random_bool(0.7);
            let k = if installed { Kind::SigInstalled } else { Kind::SigRevoked };
            let s2 = s.clone();
            let stage = if installed { "installed" } else { "revoked" };
            let j: JsonFn = Box::new(move |id: &str, at: &str| events::signature(id, at, place, &s2, stage));
            (k, s, j)
        };
        // Ids are unique per fact at the producer only: now and then another
        // system's fact carries an id already used, for another subject or
        // type. It is a different fact and must count.
        // (Never twice for one subject and type: such a pair would be a
        // duplicate whose surviving copy depends on arrival order.)
        let identity = (subject.clone(), kind.family());
        let j = match i.checked_sub(1).map(|last| rng.random_range(0..=last)) {
            Some(j) if rng.random_bool(0.01) && used.get(&j).is_some_and(|u| !u.contains(&identity)) => j,
            _ => i,
        };
        used.entry(j).or_default().push(identity);
        let id = format!("ev-{seed}-{j}");
        let json = json(&id, &at);
        let raw = Raw {
            id,
            indicator_kind: kind,
            subject,
            minute,
            commune: if district_only { None } else { Some(commune) },
            district,
            province,
            json,
        };
        // Producer retries: an identical copy, sometimes much later.
        if rng.random_bool(0.08) {
            let copy = raw.clone();
            let at = out.len() + rng.random_range(0..2_000);
            out.push(raw);
            out.insert(at.min(out.len()), copy);
        } else {
            out.push(raw);
        }
        i += 1;
    }
    out
}

/// Each event as (topic, partition, bytes): on its type's source topic, a random partition.
pub(crate) fn messages(
    raws: &[Raw],
    topics: &[String],
    partitions: i32,
    rng: &mut StdRng,
) -> Vec<(String, i32, Vec<u8>)> {
    raws.iter()
        .map(|r| {
            let t = match r.indicator_kind {
                Kind::CccdReceived | Kind::CccdOther => 0,
                Kind::VneidActivated2 | Kind::VneidOther => 1,
                _ => 2,
            };
            (topics[t].clone(), rng.random_range(0..partitions), r.json.clone().into_bytes())
        })
        .collect()
}

/// (indicator, level, area, day) → (gained, lost), computed the naive way.
/// (indicator, area level, area, day).
pub(crate) type CoverageKey = (String, String, String, String);
pub(crate) type Expected = BTreeMap<CoverageKey, (i64, i64)>;
/// A key where ClickHouse differs: (key, expected, got).
pub(crate) type Difference = (CoverageKey, (i64, i64), Option<(i64, i64)>);

/// `coverage_daily`'s non-zero rows, in the order `parse_coverage` reads.
pub(crate) const COVERAGE_ROWS: &str =
    "SELECT indicator, area_level, area, toString(day), gained, lost FROM coverage_daily \
     WHERE gained != 0 OR lost != 0 ORDER BY indicator, area_level, area, day";

/// The rows of [`COVERAGE_ROWS`] (tab-separated) as the recount's map.
pub(crate) fn parse_coverage(rows: &str) -> Expected {
    rows.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                (f[0].into(), f[1].into(), f[2].into(), f[3].into()),
                (f[4].parse().expect("gained"), f[5].parse().expect("lost")),
            )
        })
        .collect()
}

/// Polls `got` every 500 ms until it equals `expected` or `timeout` has
/// passed; the differences left ([`recount_diff`]), empty when equal.
pub(crate) async fn wait_recount<F, Fut>(expected: &Expected, timeout: Duration, mut got: F) -> Vec<Difference>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Expected>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let diff = recount_diff(expected, &got().await);
        if diff.is_empty() || Instant::now() > deadline {
            return diff;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every key where `got` differs from `expected` — different, missing or
/// extra — as (key, expected, got).
pub(crate) fn differences<'a>(expected: &'a Expected, got: &'a Expected) -> impl Iterator<Item = Difference> + 'a {
    expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), *v, got.get(k).copied()))
        .chain(got.iter().filter(|(k, _)| !expected.contains_key(*k)).map(|(k, v)| (k.clone(), (0, 0), Some(*v))))
}

/// The first ten [`differences`].
pub(crate) fn recount_diff(expected: &Expected, got: &Expected) -> Vec<Difference> {
    differences(expected, got).take(10).collect()
}

pub(crate) fn recount(raws: &[Raw]) -> Expected {
    let mut seen = std::collections::HashSet::new();
    // A duplicate is the same (subject, type, event id) (ARCHITECTURE.md).
    let unique: Vec<&Raw> =
        raws.iter().filter(|r| seen.insert((r.subject.clone(), r.indicator_kind.family(), r.id.clone()))).collect();
    let mut out: Expected = BTreeMap::new();
    let mut book = |ind: &str, r: &Raw, gained: i64, lost: i64| {
        let (_, day) = stamp(r.minute);
        let mut areas =
            vec![("province".to_owned(), r.province.to_owned()), ("district".to_owned(), r.district.to_owned())];
        if let Some(c) = r.commune {
            areas.push(("commune".to_owned(), c.to_owned()));
        }
        for (level, area) in areas {
            let e = out.entry((ind.to_owned(), level, area, day.clone())).or_default();
            e.0 += gained;
            e.1 += lost;
        }
    };
    // First-event indicators: the first qualifying event per subject by (time, id).
    let first = |pred: &dyn Fn(Kind) -> bool| -> Vec<&Raw> {
        let mut best: HashMap<&str, &Raw> = HashMap::new();
        for r in unique.iter().filter(|r| pred(r.indicator_kind)) {
            let e = best.entry(&r.subject).or_insert(r);
            if (r.minute, &r.id) < (e.minute, &e.id) {
                *e = r;
            }
        }
        best.into_values().collect()
    };
    for r in first(&|k| k == Kind::CccdReceived) {
        book("cccd", r, 1, 0);
    }
    for r in first(&|k| k == Kind::VneidActivated2) {
        book("vneid", r, 1, 0);
    }
    for r in first(&|k| k == Kind::SwapSmart) {
        book("smartphone_4g", r, 1, 0);
    }
    for r in first(&|k| matches!(k, Kind::SwapSmart | Kind::SwapFeature)) {
        book("migrated_2g", r, 1, 0);
    }
    // sim_signature: walk each subscriber's events in order.
    let mut by_subject: HashMap<&str, Vec<&Raw>> = HashMap::new();
    for r in unique.iter().filter(|r| matches!(r.indicator_kind, Kind::SigInstalled | Kind::SigRevoked)) {
        by_subject.entry(&r.subject).or_default().push(r);
    }
    for (_, mut evs) in by_subject {
        evs.sort_by(|a, b| (a.minute, &a.id).cmp(&(b.minute, &b.id)));
        let mut entry: Option<&Raw> = None;
        for r in evs {
            match (r.indicator_kind, entry) {
                (Kind::SigInstalled, None) => {
                    book("sim_signature", r, 1, 0);
                    entry = Some(r);
                }
                (Kind::SigRevoked, Some(e)) => {
                    // The exit is booked on the revocation's day, in the entry's area.
                    let at_entry_area = Raw { minute: r.minute, ..e.clone() };
                    book("sim_signature", &at_entry_area, 0, 1);
                    entry = None;
                }
                _ => {}
            }
        }
    }
    out.retain(|_, v| *v != (0, 0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_changes_a_count() {
    let n: usize = std::env::var("D06_CRASH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let kills: usize = std::env::var("D06_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = rand::random();
    eprintln!("crash test: {n} events, {kills} kills, seed {seed}");
    let raws = generate(n, seed);
    // The stream does hold ids shared by different subjects or types.
    let mut by_id: std::collections::HashMap<&str, std::collections::HashSet<(&str, u8)>> = Default::default();
    for r in &raws {
        by_id.entry(&r.id).or_default().insert((&r.subject, r.indicator_kind.family()));
    }
    let shared = by_id.values().filter(|s| s.len() > 1).count();
    assert!(shared * 200 >= n / 2, "only {shared} ids shared by different facts in {n} events");
    let expected = recount(&raws);
    let partitions = 4;
    // A small log threshold: the shards write snapshots all along, so most
    // kills restart from a snapshot and the facts after it.
    let mut app = spawn_app(AppOptions {
        partitions,
        shards: 3,
        flush_interval_ms: 300,
        extra_toml: "snapshot_log_bytes = 65536".into(),
        ..AppOptions::default()
    })
    .await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let messages = messages(&raws, &topics, partitions, &mut rng);
    let total = messages.len();
    let mut messages_per_partition: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, p, _) in &messages {
        *messages_per_partition.entry((t.clone(), *p)).or_insert(0) += 1;
    }

    // Produce in the background at a steady pace, spread over the kills (~5 s per kill cycle),
    // so most kills land while d06 is applying a stream that is still arriving.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let done = std::sync::Arc::clone(&done);
        let chunks = messages.len().div_ceil(2_000).max(1);
        let pause = Duration::from_millis((kills as u64 * 5_000) / chunks as u64);
        tokio::spawn(async move {
            let p = Producer::new();
            for chunk in messages.chunks(2_000) {
                p.send_all(chunk).await;
                tokio::time::sleep(pause).await;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            total
        })
    };
    let started = Instant::now();
    for k in 0..kills {
        // Kill while it works: once this run has applied something (or, when the stream has
        // ended, at any moment), at a random moment after.
        app.wait_for("progress before the kill", Duration::from_secs(60), || async {
            done.load(std::sync::atomic::Ordering::SeqCst)
                || app.metrics().await.sum("d06_messages_consumed_total") > 0.0
        })
        .await;
        let wait = rng.random_range(0..1_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        app.kill9();
        eprintln!("kill {} after {:?}", k + 1, started.elapsed());
        app.start().await;
    }
    let produced = tokio::time::timeout(Duration::from_secs(600), producer)
        .await
        .expect("the producer finished within 10 min")
        .expect("producer task");
    assert_eq!(produced, total);
    eprintln!("all {total} produced after {:?}", started.elapsed());

    // Let it finish: every message handled means every committed offset at
    // the end. The broker's high watermark may trail (docs/PEERS.md): count what was sent.
    app.wait_for("every message handled", Duration::from_secs(300), || async {
        let committed = app.committed_offsets();
        let done: i64 = messages_per_partition.keys().map(|k| committed.get(k).copied().unwrap_or(0)).sum();
        eprintln!("{:?}: {done} of {total} committed", started.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        messages_per_partition.iter().all(|(k, n)| committed.get(k).copied().unwrap_or(0) >= *n)
    })
    .await;
    eprintln!("caught up after {:?}", started.elapsed());

    // ClickHouse equals the recount, row for row, once stage 2 has applied
    // every fact stage 1 committed (it follows within a few flushes).
    if let Err(diff) = crate::scale_out::until_recount(&app, &expected, Duration::from_secs(120)).await {
        panic!("{diff}");
    }
    assert!(expected.len() > 1_000, "the stream covers many keys: {}", expected.len());

    // /metrics: covered now = baseline + all gained − all lost, per district and province.
    let baselines = crate::scale_out::baselines(&app).await;
    // The gauges are the sums read back after a flush: give them a few flushes.
    let mut wanted: Vec<(String, String, String, i64)> = Vec::new();
    for line in baselines.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let baseline: i64 = f[3].parse().expect("baseline");
        let net: i64 = expected
            .iter()
            .filter(|((i, l, a, _), _)| i == f[0] && l == f[1] && a == f[2])
            .map(|(_, (g, l))| g - l)
            .sum();
        wanted.push((f[0].into(), f[1].into(), f[2].into(), baseline + net));
    }
    let mut metrics = app.metrics().await;
    for _ in 0..30 {
        let all = wanted.iter().all(|(i, l, a, v)| {
            metrics.get("d06_coverage_covered", &[("indicator", i), ("area_level", l), ("area", a)]) == Some(*v as f64)
        });
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        metrics = app.metrics().await;
    }
    let mut checked = 0;
    for (i, l, a, v) in &wanted {
        let shown = metrics
            .get("d06_coverage_covered", &[("indicator", i), ("area_level", l), ("area", a)])
            .unwrap_or_else(|| panic!("no gauge for {i} {l} {a}"));
        assert_eq!(shown as i64, *v, "covered for {i} {l} {a}");
        checked += 1;
    }
    assert_eq!(checked, 5 * 12, "every indicator × (province + 11 districts)");
    assert!(app.is_running(), "d06 still running:\n{}", app.log_tail(20));
    // The restarts loaded snapshots (and the facts after them), not only logs.
    let log = app.log();
    let snapshots = log.lines().filter(|l| l.contains("shard snapshot written")).count();
    let from_snapshot = log.lines().filter(|l| l.contains("shard restored") && !l.contains("snapshot_bytes=0")).count();
    eprintln!("{snapshots} snapshots written, {from_snapshot} shards restored from one");
    assert!(snapshots > 0 && from_snapshot > 0, "no snapshot written or loaded:\n{}", app.log_tail(40));
}
