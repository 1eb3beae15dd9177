//! Issue 12: a zombie's claim on a shard whose stream has ended must not
//! stand. A member paused past its session claims the shard it no longer
//! owns when it wakes and rewrites it whole from its stale state; the
//! rightful owner, with nothing more to write for that shard, must still
//! notice (an idle check of every owned shard's claim), claim it again and
//! rewrite it. Seen under load in `scale_out`: the figures stayed short for
//! good. Here the zombie is played by hand in ClickHouse, so the test is
//! exact about what it checks.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::crash::{generate, messages, recount};
use crate::harness::{spawn_app, AppOptions, Producer};
use crate::scale_out::{coverage, gauges_show, until_recount};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_claim_on_an_idle_shard_is_taken_back_and_its_rows_superseded() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let raws = generate(4_000, seed);
    let expected = recount(&raws);
    let partitions = 2;
    let mut app = spawn_app(AppOptions { partitions, shards: 2, ..AppOptions::default() }).await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    Producer::new().send_all(&messages(&raws, &topics, partitions, &mut rng)).await;
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(120)).await {
        panic!("before the zombie: {diff}");
    }

    // The zombie: a newer claim on shard 0, and the shard's rows rewritten
    // under it from an empty state (every count zero).
    let mine: u64 = app
        .clickhouse("SELECT max(generation) FROM shard_owners WHERE shard = 0")
        .await
        .trim()
        .parse()
        .expect("generation of shard 0");
    let zombie = mine + 1;
    app.clickhouse(&format!(
        "INSERT INTO shard_owners (shard, generation, owner, claimed_at) SELECT 0, {zombie}, 'zombie', now()"
    ))
    .await;
    app.clickhouse(&format!(
        "INSERT INTO coverage_shard_daily (day, indicator, area_level, area, shard, gained, lost, net, version) \
         SELECT day, indicator, area_level, area, shard, 0, 0, 0, {} FROM coverage_shard_daily FINAL WHERE shard = 0",
        (zombie << 40) | 1
    ))
    .await;
    app.clickhouse(&format!(
        "INSERT INTO coverage_shard_recent (indicator, area_level, area, shard, through, earlier_gained, earlier_lost, \
         days, gained, lost, version) \
         SELECT indicator, area_level, area, shard, through, 0, 0, [], [], [], {} \
         FROM coverage_shard_recent FINAL WHERE shard = 0",
        (zombie << 40) | 1
    ))
    .await;
    let stale = coverage(&app).await;
    assert_ne!(stale, expected, "the zombie's rows count under FINAL until the owner takes the shard back");
    let counted = app
        .clickhouse("SELECT sum(earlier_gained + arraySum(gained)) FROM coverage_shard_recent FINAL WHERE shard = 0")
        .await;
    assert_eq!(counted.trim(), "0", "the zombie's recent rows of shard 0 count nothing under FINAL");

    // Nothing more arrives: the owner's idle check takes the shard back and
    // its next flush rewrites every row of it.
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(30)).await {
        panic!("the zombie's rows still stand: {diff}\n{}", app.log_tail(20));
    }
    // And the figures, read from the shards' recent rows.
    let baselines = crate::scale_out::baselines(&app).await;
    app.wait_for("the gauges", Duration::from_secs(30), || gauges_show(&app, &baselines, &expected)).await;
    let log = app.log();
    assert!(
        log.lines().any(|l| l.contains("claimed it again") && l.contains("partition")),
        "the owner says it claimed the shard again:\n{}",
        app.log_tail(20)
    );
    let owners = app.clickhouse("SELECT max(generation) FROM shard_owners WHERE shard = 0").await;
    assert!(owners.trim().parse::<u64>().expect("generation") > zombie, "a claim above the zombie's");
    assert!(app.is_running(), "d06 still running:\n{}", app.log_tail(20));
}
