//! Issue 14: a consumer stalled longer than `max.poll.interval.ms` rejoins
//! without loss. Two instances share the stream; one is stopped (SIGSTOP)
//! for longer than its `max.poll.interval.ms` (set low through
//! `[kafka.properties]`), then continued. librdkafka notices the stall
//! (session timeout or `MAX_POLL_EXCEEDED`, whichever its main thread sees
//! first on resuming: a stall past `max.poll.interval.ms` is always past the
//! session timeout too) and rejoins. Both must carry on — the stalled one
//! routes again, every shard has one owner — and ClickHouse must equal an
//! independent recount. A second test has the stalled instance's group
//! leave it out: it must join again by itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::crash::{generate, messages, recount};
use crate::harness::{spawn_app, App, AppOptions, KafkaTarget, Producer};
use crate::scale_out::until_recount;

/// `max.poll.interval.ms` of both instances (librdkafka wants it ≥ the session timeout, 3 s here).
const MAX_POLL_MS: u64 = 6_000;

/// An instance with a shard per partition and [`MAX_POLL_MS`], and `fault`.
async fn spawn_stallable(partitions: i32, kafka_fault: Option<&'static str>) -> App {
    let mut kafka = KafkaTarget::default();
    kafka.properties.push(("max.poll.interval.ms".into(), MAX_POLL_MS.to_string()));
    let options = AppOptions {
        partitions,
        shards: partitions as u32,
        flush_interval_ms: 300,
        kafka,
        kafka_fault,
        ..AppOptions::default()
    };
    let mut a = spawn_app(options).await;
    // The setting is in d06's configuration now; the test's own clients keep the defaults.
    a.options.kafka = KafkaTarget::default();
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stalled_past_max_poll_interval_rejoins_without_loss() {
    let n: usize = std::env::var("D06_STALL_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let seed: u64 = rand::random();
    eprintln!("stalled-consumer test: {n} events, seed {seed}");
    let raws = generate(n, seed);
    let expected = recount(&raws);
    let partitions = 4;
    let mut a = spawn_stallable(partitions, None).await;
    let mut b = a.sibling("i1");
    b.start().await;
    let topics: Vec<String> = a.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x57a11);
    let messages = messages(&raws, &topics, partitions, &mut rng);
    let mut per_partition: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, p, _) in &messages {
        *per_partition.entry((t.clone(), *p)).or_insert(0) += 1;
    }
    let total = messages.len();
    // The stream arrives over ~25 s, before, during and after the stall.
    let producer = tokio::spawn(async move {
        let p = Producer::new();
        for chunk in messages.chunks(1_500) {
            p.send_all(chunk).await;
            tokio::time::sleep(Duration::from_millis(1_200)).await;
        }
    });
    let started = Instant::now();
    // Both own shards and source partitions before the stall.
    for app in [&a, &b] {
        app.wait_for("both instances consuming", Duration::from_secs(60), || async {
            let m = app.metrics().await;
            m.get("d06_shards_owned", &[]).unwrap_or(0.0) > 0.0 && m.sum("d06_messages_consumed_total") > 0.0
        })
        .await;
    }
    let stall = Duration::from_millis(MAX_POLL_MS * 2);
    a.signal("STOP");
    eprintln!("a stopped for {stall:?} after {:?}", started.elapsed());
    tokio::time::sleep(stall).await;
    a.signal("CONT");
    eprintln!("a continued after {:?}", started.elapsed());
    let consumed_at_resume = a.metrics().await.sum("d06_messages_consumed_total");

    // a rejoins by itself: it routes source messages again (stage 1's group).
    a.wait_for("a routing again", Duration::from_secs(60), || async {
        a.metrics().await.sum("d06_messages_consumed_total") > consumed_at_resume
    })
    .await;
    eprintln!("a routes again after {:?}", started.elapsed());
    tokio::time::timeout(Duration::from_secs(600), producer)
        .await
        .expect("the producer finished within 10 min")
        .expect("producer");
    eprintln!("all {total} produced after {:?}", started.elapsed());

    // Every source message routed, and ClickHouse equals the recount.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed = b.committed_offsets();
        if per_partition.iter().all(|(k, n)| committed.get(k).copied().unwrap_or(0) >= *n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every source message routed\n--- a:\n{}\n--- b:\n{}",
            a.log_tail(30),
            b.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Err(diff) = until_recount(&b, &expected, Duration::from_secs(120)).await {
        panic!("{diff}\n--- a:\n{}\n--- b:\n{}", a.log_tail(30), b.log_tail(30));
    }
    assert!(expected.len() > 500, "the stream covers many keys: {}", expected.len());
    eprintln!("ClickHouse equals the recount after {:?}", started.elapsed());
    for (name, app) in [("a", &mut a), ("b", &mut b)] {
        assert!(app.is_running(), "{name} still running:\n{}", app.log_tail(30));
        assert!(!app.log().contains("panicked"), "no panic in {name}:\n{}", app.log_tail(30));
    }
    // Every shard has exactly one owner among the two (stage 2's group).
    let owned = App::shards_owned(&[&a, &b]).await;
    assert_eq!(owned, 4.0, "every shard owned once after the stall");
    // The stall was past the session: librdkafka says so (MAXPOLL or
    // SESSTMOUT, client-side timers that race with the first poll after the
    // resume), or the group had removed a and it learned that it lost its
    // partitions (a revocation with lost=true; which of them a run shows
    // depends on that race and on the broker).
    let stalled: Vec<String> = a
        .log()
        .lines()
        .filter(|l| {
            l.contains("MAXPOLL")
                || l.contains("SESSTMOUT")
                || l.contains("PollExceeded")
                || (l.contains("revoked") && l.contains("lost") && l.contains("true"))
        })
        .map(|l| l.chars().take(240).collect())
        .collect();
    assert!(!stalled.is_empty(), "a noticed that the group removed it:\n{}", a.log_tail(30));
    eprintln!("a's log on the stall:\n{}", stalled.join("\n"));
}

/// Consumers their groups do not take back after a stall join again by
/// themselves. The `leave_group_on_lost` fault has both of an instance's
/// consumers (the router's, stage 2's) leave their groups when they lose
/// their partitions, as a coordinator that never re-forms a group leaves a
/// member (seen on tansu, docs/OPERATIONS.md, "Shards unowned"): no
/// assignment comes, and after `max.poll.interval.ms` each leaves and joins
/// again. ClickHouse must then equal the recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_their_groups_leave_out_join_again_by_themselves() {
    let seed: u64 = rand::random();
    eprintln!("left-out consumer test: seed {seed}");
    let raws = generate(10_000, seed);
    let expected = recount(&raws);
    let partitions = 4;
    let mut a = spawn_stallable(partitions, Some("leave_group_on_lost")).await;
    let topics: Vec<String> = a.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1e47);
    let messages = messages(&raws, &topics, partitions, &mut rng);
    let (before, after) = messages.split_at(messages.len() / 2);
    let producer = Producer::new();
    producer.send_all(before).await;
    a.wait_for("every shard owned and facts applied", Duration::from_secs(60), || async {
        let m = a.metrics().await;
        m.get("d06_shards_owned", &[]).unwrap_or(0.0) == 4.0 && m.sum("d06_facts_applied_total") > 0.0
    })
    .await;

    // Stalled past its sessions: both groups drop a, which loses its
    // partitions and, by the fault, leaves both groups.
    a.signal("STOP");
    tokio::time::sleep(Duration::from_millis(MAX_POLL_MS * 2)).await;
    a.signal("CONT");
    let said = |what: &str, consumer: &str| {
        a.log().lines().any(|l| l.contains(what) && l.contains(&format!("consumer=\"{consumer}\"")))
    };
    a.wait_for("a left both groups", Duration::from_secs(60), || async {
        said("fault point leave_group_on_lost", "router") && said("fault point leave_group_on_lost", "facts")
    })
    .await;
    let left = Instant::now();
    producer.send_all(after).await;
    a.wait_for("a joined both groups again", Duration::from_secs(60), || async {
        let again = "leaving the group and joining it again";
        said(again, "router") && said(again, "facts")
    })
    .await;
    eprintln!("a joined both groups again {:?} after leaving them", left.elapsed());
    if let Err(diff) = until_recount(&a, &expected, Duration::from_secs(120)).await {
        panic!("{diff}\n{}", a.log_tail(40));
    }
    assert_eq!(App::shards_owned(&[&a]).await, 4.0, "a holds every shard again:\n{}", a.log_tail(30));
    assert!(a.is_running(), "a still running:\n{}", a.log_tail(30));
    assert!(!a.log().contains("panicked"), "no panic:\n{}", a.log_tail(30));
}
