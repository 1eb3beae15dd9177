//! Issue 12: three `d06 run` in one group on one stream. Mid-stream one is
//! killed with SIGKILL and restarted on an empty state directory, one leaves
//! with SIGTERM, one is paused past its session timeout and resumed (a
//! zombie). At the end ClickHouse, every instance's `/metrics`, a real
//! Prometheus scraping all of them (through the project's rules) and the
//! dead letters equal an independent recount, and the zombie's writes were
//! fenced: never in the figures. The stream carries 1022 hotline tickets
//! too, each ticket's events spread over partitions (so over instances):
//! `hotline_daily` equals the independent hotline oracle, district by day.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crash::{generate, messages, parse_coverage, recount, recount_diff, Expected, COVERAGE_ROWS};
use crate::harness::{spawn_app, App, AppOptions, KafkaTarget, Producer, Prometheus};
use crate::hotline_oracle::Oracle;

/// A (district, day) row of `hotline_daily`: received, processed, in
/// progress, spam, overdue (specialist, leadership), answered, forwarded.
type HotlineRows = BTreeMap<(String, String), [u64; 8]>;

/// `hotline_daily`'s district rows that hold a ticket.
async fn hotline_daily(app: &App) -> HotlineRows {
    let text = app
        .clickhouse(
            "SELECT area, toString(day), received, processed, in_progress, spam, overdue_specialist, \
             overdue_leadership, answered, forwarded FROM hotline_daily \
             WHERE area_level = 'district' AND received > 0 ORDER BY area, day",
        )
        .await;
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let mut row = [0u64; 8];
            for (r, v) in row.iter_mut().zip(&f[2..]) {
                *r = v.parse().expect("a count");
            }
            ((f[0].to_owned(), f[1].to_owned()), row)
        })
        .collect()
}

/// The oracle's rows as of `t`, in the shape of [`hotline_daily`].
fn hotline_recount(oracle: &Oracle, t: i64) -> HotlineRows {
    oracle
        .by_district_day(t)
        .into_iter()
        .filter(|(_, f)| f.received > 0)
        .map(|((district, day), f)| ((district, day.to_string()), f.row()))
        .collect()
}

/// The 2024 report's ticket stream (`d06 simulate --stdout`, seeded), as
/// raw JSON messages, producer retries included.
fn hotline_stream(app: &App, seed: u64) -> Vec<String> {
    crate::hotline::simulate_scenario(app, "hotline-2024", seed, &["--stdout"])
        .lines()
        .map(|l| l.split_once('\t').expect("kind, tab, payload").1.to_owned())
        .collect()
}

/// `coverage_daily` as the recount's map (non-zero rows).
pub(crate) async fn coverage(app: &App) -> Expected {
    parse_coverage(&app.clickhouse(COVERAGE_ROWS).await)
}

/// Waits up to `within` for `coverage_daily` to equal `expected`; on time
/// out, says which keys differ as (key, expected, got).
pub(crate) async fn until_recount(app: &App, expected: &Expected, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let got = coverage(app).await;
        if got == *expected {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            let diff = recount_diff(expected, &got);
            return Err(format!("ClickHouse differs from the recount (key, expected, got): {diff:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every key of the province and the tier below it with its baseline, as
/// `indicator, area_level, area, baseline` lines (from `plan_daily`).
pub(crate) async fn baselines(app: &App) -> String {
    app.clickhouse(
        "SELECT indicator, area_level, area, any(baseline) FROM plan_daily FINAL \
         WHERE area_level != 'commune' GROUP BY indicator, area_level, area",
    )
    .await
}

/// Whether `app`'s `d06_coverage_covered` gauges show, for every key of
/// `baselines` (from [`baselines`]), its baseline plus the recount's net;
/// says which do not.
pub(crate) async fn gauges_show(app: &App, baselines: &str, expected: &Expected) -> bool {
    let m = app.metrics().await;
    baselines.lines().all(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        let baseline: i64 = f[3].parse().expect("baseline");
        let net: i64 = expected
            .iter()
            .filter(|((i, l, ar, _), _)| i == f[0] && l == f[1] && ar == f[2])
            .map(|(_, (g, l))| g - l)
            .sum();
        let shown = m.get("d06_coverage_covered", &[("indicator", f[0]), ("area_level", f[1]), ("area", f[2])]);
        if shown != Some((baseline + net) as f64) {
            eprintln!("{}: {line}: shown {shown:?}, expected {}", app.metrics_port, baseline + net);
        }
        shown == Some((baseline + net) as f64)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_left_and_paused_equal_the_recount() {
    let n: usize = std::env::var("D06_SCALE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(60_000);
    let seed: u64 = rand::random();
    eprintln!("scale-out test: {n} events, seed {seed}");
    let raws = generate(n, seed);
    let expected = recount(&raws);
    let partitions = 4;
    let shards = 4u32;
    // A router stuck with messages waiting stops its process after 20 s
    // (pipeline.stall_exit_secs); below it is restarted as systemd would.
    // The shards write snapshots all along (a 64 KiB log threshold), so a
    // shard that moves or restarts opens from a snapshot and a tail.
    let options = AppOptions {
        partitions,
        shards,
        flush_interval_ms: 300,
        extra_toml: "stall_exit_secs = 20\nsnapshot_log_bytes = 65536\n".into(),
        kafka: {
            let mut k = KafkaTarget::default();
            if let Ok(d) = std::env::var("D06_TEST_RDKAFKA_DEBUG") {
                k.properties.push(("debug".into(), d));
            }
            k
        },
        ..AppOptions::default()
    };
    let mut a = spawn_app(options).await;
    let mut b = a.sibling("i1");
    let mut c = a.sibling("i2");
    b.start().await;
    c.start().await;
    // A real Prometheus scraping all three with the project's rules.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules");
    let prometheus = Prometheus::start_many(&[a.metrics_port, b.metrics_port, c.metrics_port], Some(&rules));

    let topics: Vec<String> = a.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5ca1e);
    let mut messages = messages(&raws, &topics, partitions, &mut rng);
    // The tickets, each message at a random place on a random partition.
    let tickets = hotline_stream(&a, seed % 1000);
    let mut oracle = Oracle::shipped();
    for json in &tickets {
        oracle.read(json);
        let at = rng.random_range(0..messages.len());
        messages.insert(at, (topics[3].clone(), rng.random_range(0..partitions), json.clone().into_bytes()));
    }
    // The event clock at the end: the newest event of all, coverage or ticket.
    let newest_coverage = raws.iter().map(|r| r.minute).max().expect("events") * 60 * 1_000_000_000;
    let t = (crate::hotline_oracle::local(2024, 4, 10, 0, 0) + newest_coverage).max(oracle.newest().expect("tickets"));
    let hotline_expected = hotline_recount(&oracle, t);
    eprintln!("{} ticket messages ({} retries)", tickets.len(), oracle.duplicates);
    // Invalid messages on all four topics, each one dead letter.
    let mut invalid = 0usize;
    for i in 0..400 {
        let at = rng.random_range(0..messages.len());
        let topic = topics[i % 4].clone();
        let bad = if i % 2 == 0 { b"{not json".to_vec() } else { br#"{"schema":"d06.event.v0"}"#.to_vec() };
        messages.insert(at, (topic, rng.random_range(0..partitions), bad));
        invalid += 1;
    }
    let total = messages.len();
    let mut per_partition: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, p, _) in &messages {
        *per_partition.entry((t.clone(), *p)).or_insert(0) += 1;
    }

    let producer = tokio::spawn(async move {
        let p = Producer::new();
        for chunk in messages.chunks(2_000) {
            p.send_all(chunk).await;
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // b opens its state when it first owns a shard; on a loaded machine that
    // can take longer than 4 s, and the lost disk must be a disk with state.
    // On the broker here a member joining the facts group sometimes gets no
    // partition until the next rebalance (issue 14's notes): then b has no
    // disk to lose, and this run checks its SIGKILL only.
    let waited = Instant::now();
    while !b.state_dir().exists() && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.kill9();
    if b.state_dir().exists() {
        std::fs::remove_dir_all(b.state_dir()).expect("wipe b's state");
    } else {
        eprintln!("b owned no shard in 60 s: killed without a disk to lose");
    }
    eprintln!("b killed and wiped after {:?}", started.elapsed());
    let joins_before = b.log().matches("facts consumer assigned").count();
    b.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // c leaves once the facts group has settled after b's return (b's
    // consumer has been through a join and every shard is owned): the local
    // broker (PyPI's tansu) keeps a leader that leaves a re-forming group as
    // its leader for good, and the group then never re-forms
    // (deploy/local/tansu/README.md, item 4; Apache Kafka elects another).
    // Leaving in that moment made this test fail once in many runs with
    // shards nobody applied. The graceful leave is still tested, only not in
    // the instant the group re-forms.
    let waited = Instant::now();
    loop {
        let owned = App::shards_owned(&[&a, &b, &c]).await;
        let joined = b.log().matches("facts consumer assigned").count() > joins_before;
        if (joined && owned >= f64::from(shards)) || waited.elapsed() > Duration::from_secs(30) {
            eprintln!("b joined: {joined}, {owned} of {shards} shards owned {:?} after b's return", waited.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(c.terminate().success(), "c left cleanly:\n{}", c.log_tail(20));
    eprintln!("c left after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Fencing is exercised only if the zombie held a shard when it froze.
    let owned_when_paused = a.metrics().await.sum("d06_shards_owned");
    a.signal("STOP");
    eprintln!("a paused after {:?}, owning {owned_when_paused} shards", started.elapsed());
    // Past its session timeout, and until b holds every shard (at most
    // 30 s more): resumed earlier, a may still own its shards, no zombie
    // (seen once in 31 runs with a fixed 9 s pause).
    tokio::time::sleep(Duration::from_secs(9)).await;
    let waited = Instant::now();
    let mut b_owned = App::shards_owned(&[&b]).await;
    while owned_when_paused > 0.0 && b_owned < f64::from(shards) && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b_owned = App::shards_owned(&[&b]).await;
    }
    a.signal("CONT");
    eprintln!("a resumed after {:?}, b owning {b_owned} shards", started.elapsed());
    tokio::time::timeout(Duration::from_secs(600), producer)
        .await
        .expect("the producer finished within 10 min")
        .expect("producer");
    eprintln!("all {total} produced after {:?}", started.elapsed());

    // Stage 1 has committed every source message...
    let deadline = Instant::now() + Duration::from_secs(240);
    // Issue 12, open: after the zombie's rejoin a router was seen holding
    // partitions, polling, and receiving nothing from the broker here, with
    // d06's own watchdog (pipeline.stall_exit_secs) not firing because the
    // broker's high watermark said nothing waited. An operator's liveness
    // check would restart it; so does this test, once, after 60 s without
    // any committed progress, keeping both logs and thread stacks first.
    // Exactness is still asserted below; the restart is reported.
    let mut last_sum = -1i64;
    let mut last_move = Instant::now();
    let mut liveness_restarts = 0;
    loop {
        for (name, app) in [("a", &mut a), ("b", &mut b)] {
            if !app.is_running() {
                let log = app.log();
                assert!(
                    log.contains("the router has read nothing from"),
                    "{name} stopped, and not for a stalled router:\n{}",
                    app.log_tail(30)
                );
                let kept = crate::board::artifact(&format!("scale-out-{name}-stalled-{seed}.log"));
                std::fs::write(&kept, &log).expect("keep the stalled log");
                eprintln!(
                    "{name} stopped on a stalled router after {:?}; restarted (log kept in {})",
                    started.elapsed(),
                    kept.display()
                );
                app.start().await;
            }
        }
        let committed = b.committed_offsets();
        if per_partition.iter().all(|(k, n)| committed.get(k).copied().unwrap_or(0) >= *n) {
            break;
        }
        let sum: i64 = committed.values().sum();
        if sum != last_sum {
            (last_sum, last_move) = (sum, Instant::now());
        } else if last_move.elapsed() > Duration::from_secs(60) && liveness_restarts == 0 {
            liveness_restarts += 1;
            for (name, app) in [("a", &mut a), ("b", &mut b)] {
                keep_for_diagnosis(name, app, seed);
                app.kill9();
                app.start().await;
            }
            eprintln!(
                "ISSUE 12: no committed progress for 60 s with messages waiting; a and b restarted after {:?} \
                 (logs and stacks kept in target/test-artifacts)",
                started.elapsed()
            );
            last_move = Instant::now();
        }
        if Instant::now() > deadline {
            let behind: Vec<_> =
                per_partition.iter().filter(|(k, n)| committed.get(*k).copied().unwrap_or(0) < **n).collect();
            for (name, app) in [("a", &a), ("b", &b)] {
                keep_for_diagnosis(name, app, seed);
            }
            panic!(
                "not every source message routed; behind (partition, produced): {behind:?}\n--- a:\n{}\n--- b:\n{}",
                a.log_tail(40),
                b.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ...and stage 2 catches up: ClickHouse equals the recount.
    if let Err(diff) = until_recount(&b, &expected, Duration::from_secs(180)).await {
        for (name, app) in [("a", &a), ("b", &b)] {
            keep_for_diagnosis(name, app, seed);
        }
        panic!("{diff}\n--- a:\n{}\n--- b:\n{}", a.log_tail(30), b.log_tail(30));
    }
    assert!(expected.len() > 500, "the stream covers many keys: {}", expected.len());
    eprintln!("ClickHouse equals the recount after {:?}", started.elapsed());
    // The tickets too: every shard's clock reaches the newest event (the
    // routers broadcast it), and the oracle classifies as of that instant.
    let waited = Instant::now();
    loop {
        let got = hotline_daily(&b).await;
        if got == hotline_expected {
            break;
        }
        if waited.elapsed() > Duration::from_secs(120) {
            let differ: Vec<_> = hotline_expected
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, v)| (k, v, got.get(k)))
                .chain(
                    got.iter().filter(|(k, _)| !hotline_expected.contains_key(*k)).map(|(k, v)| (k, &[0; 8], Some(v))),
                )
                .collect();
            panic!("hotline_daily differs from the oracle (key, oracle, d06): {differ:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(hotline_expected.len() > 50, "tickets on many district-days: {}", hotline_expected.len());
    eprintln!("hotline_daily equals the oracle over {} district-days", hotline_expected.len());

    // Every dead letter once, keyed by source position (the dead-letter
    // topic's partitions may be owned by an instance still catching up).
    b.wait_for("every dead letter in ClickHouse", Duration::from_secs(120), || async {
        b.clickhouse("SELECT count() FROM dead_letters FINAL").await.trim().parse::<usize>().ok() >= Some(invalid)
    })
    .await;
    let dead = b.clickhouse("SELECT count() FROM dead_letters FINAL").await;
    assert_eq!(dead.trim().parse::<usize>().expect("count"), invalid, "dead letters, each once");

    // Every live instance shows the province-wide figures (Prometheus combines them with max).
    let baselines = baselines(&b).await;
    for app in [&a, &b] {
        app.wait_for("province-wide gauges", Duration::from_secs(30), || gauges_show(app, &baselines, &expected)).await;
    }

    // Prometheus, scraping every instance, shows the recount through the
    // rules' max (each instance exposes the province-wide figure; a sum would count it twice).
    let want: BTreeMap<(String, String, String), f64> = baselines
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let net: i64 = expected
                .iter()
                .filter(|((i, l, ar, _), _)| i == f[0] && l == f[1] && ar == f[2])
                .map(|(_, (g, l))| g - l)
                .sum();
            ((f[0].into(), f[1].into(), f[2].into()), (f[3].parse::<i64>().expect("baseline") + net) as f64)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let series = prometheus.query("d06:coverage_covered:max_by_area{area_level!=\"commune\"}").await;
        let got: BTreeMap<(String, String, String), f64> = series
            .unwrap_or_default()
            .into_iter()
            .map(|(l, v)| ((l["indicator"].clone(), l["area_level"].clone(), l["area"].clone()), v))
            .collect();
        let instances =
            prometheus.value("count(d06_coverage_covered{indicator=\"cccd\",area_level=\"province\"})").await;
        if got == want && instances >= Some(2.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus' max over the instances differs from the recount ({} of {} keys equal, {instances:?} instances)\n{}",
            want.iter().filter(|(k, v)| got.get(*k) == Some(*v)).count(),
            want.len(),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("Prometheus equals the recount over {} keys", want.len());
    // D06ShardsUnowned's expression, as Prometheus loaded it from the rule
    // file, over the live instances: every shard owned.
    let rule = prometheus.rule_query("D06ShardsUnowned").await;
    eprintln!("D06ShardsUnowned as loaded: {rule}");
    let unowned = rule.trim().strip_suffix("> 0").map(str::trim).unwrap_or_else(|| {
        panic!("D06ShardsUnowned is no longer `unowned shards > 0` ({rule}): say here what 0 unowned is")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while prometheus.value(unowned).await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus says {:?} shards unowned (of {:?})\n{}",
            prometheus.value(unowned).await,
            prometheus.value("max(d06_shards_configured)").await,
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The zombie's writes were fenced, and none of them is what the figures read.
    let fenced = a.metrics().await.sum("d06_fenced_writes_total");
    let claims = b.clickhouse("SELECT shard, generation, owner FROM shard_owners ORDER BY shard, generation").await;
    eprintln!("fenced writes on a: {fenced}\nclaims:\n{claims}");
    // A zombie that learns of its lost assignment before its next flush
    // writes nothing, which is right too; so is one whose next flush had
    // nothing to write and found the newer claim (the facts group still
    // giving it the shard: it claims it again, `rows=0`; seen in CI when
    // only the router's session had expired); one that writes first is fenced.
    let learned_first =
        a.log().lines().any(|l| l.contains("facts consumer revoked") && l.contains("lost") && l.contains("true"));
    let found_empty_handed = a.log().lines().any(|l| l.contains("fenced: a newer claim") && l.contains(" rows=0"));
    if owned_when_paused > 0.0 {
        assert!(
            fenced > 0.0 || learned_first || found_empty_handed,
            "the paused instance's writes were fenced, or it wrote none:\n{}",
            a.log_tail(40)
        );
        if fenced == 0.0 {
            eprintln!("a dropped its shards as lost before writing: nothing to fence in this run");
        }
    } else {
        // On a loaded machine the group may not have given a any shard yet
        // when it froze: it had nothing to write as a zombie.
        eprintln!("a owned no shard when paused: no zombie write to fence in this run");
    }
    // (Rows of its superseded generations may still be in the shard table
    // without FINAL, or already merged away by ClickHouse: either is right,
    // so only what the figures read is asserted.) An owner that claimed a
    // shard in the last rebalance writes once it has rebuilt the shard from
    // the facts topic; until then the previous owner's rows are the figures,
    // and they equal the recount above. A new owner's first write rewrites
    // the whole shard, so once it has written, FINAL reads only its rows: in
    // every shard, only the newest generation that wrote. (Not the newest
    // claim: an instance can claim a shard and lose it before writing
    // anything — seen in CI, a claimed shard 3 at generation 3 with an empty
    // store and timed out of the group the same millisecond. Then the owner
    // the group gave it back to keeps serving its older generation, exactly,
    // until its next write finds the newer claim, claims again and rewrites.)
    let claims_without_rows = b
        .clickhouse(
            "SELECT shard, max(generation) AS g FROM shard_owners GROUP BY shard \
             HAVING (shard, g) NOT IN \
               (SELECT shard, intDiv(version, 1099511627776) FROM coverage_shard_daily GROUP BY shard, version)",
        )
        .await;
    if !claims_without_rows.trim().is_empty() {
        eprintln!("newest claims that wrote no rows (shard, generation):\n{claims_without_rows}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let surviving = b
            .clickhouse(
                "SELECT count() FROM coverage_shard_daily FINAL \
                 WHERE (shard, intDiv(version, 1099511627776)) NOT IN \
                   (SELECT shard, max(intDiv(version, 1099511627776)) FROM coverage_shard_daily GROUP BY shard)",
            )
            .await;
        if surviving.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows of superseded owners still read under FINAL: {surviving}\n--- a:\n{}\n--- b:\n{}",
            a.log_tail(30),
            b.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(coverage(&b).await, expected, "the figures after the last owners wrote");
    assert!(a.is_running() && b.is_running(), "both still running:\n{}\n{}", a.log_tail(20), b.log_tail(20));
    // The figures above came through snapshots: the shards wrote them as they went.
    let logs = [a.log(), b.log(), c.log()];
    let written: usize = logs.iter().map(|l| l.lines().filter(|l| l.contains("shard snapshot written")).count()).sum();
    let loaded: usize = logs
        .iter()
        .map(|l| l.lines().filter(|l| l.contains("shard restored") && !l.contains("snapshot_bytes=0")).count())
        .sum();
    eprintln!("{written} shard snapshots written, {loaded} shards opened from one");
    assert!(written > 0, "no shard wrote a snapshot");
}

/// Keeps `app`'s whole log and, when gdb is there, every thread's stack in
/// `target/test-artifacts`, for a failure no log tail explains.
fn keep_for_diagnosis(name: &str, app: &App, seed: u64) {
    let log = crate::board::artifact(&format!("scale-out-{name}-{seed}.log"));
    let _ = std::fs::write(&log, app.log());
    let Some(pid) = app.pid() else { return };
    let stacks = std::process::Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .output();
    if let Ok(out) = stacks {
        let path = crate::board::artifact(&format!("scale-out-{name}-{seed}.stacks"));
        let _ = std::fs::write(&path, [out.stdout, out.stderr].concat());
        eprintln!("{name}: log and stacks kept in {}", path.display());
    }
}
