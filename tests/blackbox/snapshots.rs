//! Issue 13: shard stores hold a snapshot (a file of its own) and the facts
//! after it. A store whose snapshot is damaged or missing, or whose store
//! or snapshot is of a format this d06 does not read, is rebuilt from the
//! facts partition with a message saying why, and the figures stay those of
//! an independent recount.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use redb::{Database, TableDefinition};

use crate::crash::{generate, messages, recount};
use crate::harness::{spawn_app, AppOptions, Producer};
use crate::scale_out::until_recount;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Shard `p`'s snapshot file in `state` (the one a store keeps).
fn snapshot_file(state: &std::path::Path, p: u32) -> std::path::PathBuf {
    let dir = state.join("shards").join(format!("p{p}"));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shard directory")
        .map(|e| e.expect("entry").path())
        .filter(|f| f.extension().is_some_and(|x| x == "d06snap"))
        .collect();
    assert_eq!(files.len(), 1, "one snapshot file in {}: {files:?}", dir.display());
    files.into_iter().next().expect("a snapshot file")
}

/// Opens shard `p`'s store of `state` for an edit.
fn edit_store(state: &std::path::Path, p: u32, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(state.join("shards").join(format!("p{p}")).join("d06.redb")).expect("shard store");
    let txn = db.begin_write().expect("write");
    edit(&txn);
    txn.commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_newer_shard_store_is_rebuilt_from_the_facts_partition_with_its_reason() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let raws = generate(6_000, seed);
    let expected = recount(&raws);
    let partitions = 2;
    // Every checkpoint past the first byte of log writes a snapshot.
    let mut app = spawn_app(AppOptions {
        partitions,
        shards: 4,
        extra_toml: "snapshot_log_bytes = 1".into(),
        ..AppOptions::default()
    })
    .await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    Producer::new().send_all(&messages(&raws, &topics, partitions, &mut rng)).await;
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(120)).await {
        panic!("before the damage: {diff}");
    }
    assert!(app.log().contains("shard snapshot written"), "no snapshot:\n{}", app.log_tail(30));
    app.stop();

    let state = app.state_dir();
    // Shard 0: a store format from a later d06.
    edit_store(&state, 0, |txn| {
        txn.open_table(META).expect("meta").insert("format", b"4".as_slice()).expect("format");
    });
    // Shard 1: one byte of its snapshot flipped.
    let file = snapshot_file(&state, 1);
    let mut bytes = std::fs::read(&file).expect("snapshot");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&file, bytes).expect("write");
    // Shard 2: its snapshot file lost.
    std::fs::remove_file(snapshot_file(&state, 2)).expect("remove");
    // Shard 3: its snapshot declares the format before this one (as a d06
    // from before 2026-12-05 late evening wrote it: times in 8 bytes).
    let file = snapshot_file(&state, 3);
    let mut bytes = std::fs::read(&file).expect("snapshot");
    let older = aggregator::snapshot::FORMAT - 1;
    let format_at = aggregator::snapshot::MAGIC.len();
    bytes[format_at..format_at + 4].copy_from_slice(&older.to_le_bytes());
    std::fs::write(&file, bytes).expect("write");

    app.start().await;
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(120)).await {
        panic!("after the rebuild: {diff}");
    }
    app.wait_for("every shard restored", Duration::from_secs(30), || async {
        app.log().lines().filter(|l| l.contains("shard restored")).count() >= 8
    })
    .await;
    let log = app.log();
    let rebuilt: Vec<&str> = log.lines().filter(|l| l.contains("rebuilding from the facts partition")).collect();
    assert!(
        rebuilt.iter().any(|l| l.contains("has format 4; this d06 reads formats 1, 2 and 3")),
        "the newer format is named:\n{}",
        rebuilt.join("\n")
    );
    assert!(
        rebuilt.iter().any(|l| l.contains("loading the snapshot") && l.contains("checksum mismatch")),
        "the damaged snapshot is named:\n{}",
        rebuilt.join("\n")
    );
    assert!(
        rebuilt.iter().any(|l| l.contains("named by the checkpoint is missing")),
        "the lost snapshot is named:\n{}",
        rebuilt.join("\n")
    );
    let format = format!("shard snapshot format {older}; this d06 reads format {}", aggregator::snapshot::FORMAT);
    assert!(rebuilt.iter().any(|l| l.contains(&format)), "the older snapshot is named:\n{}", rebuilt.join("\n"));
    assert_eq!(rebuilt.len(), 4, "only the four damaged shards are rebuilt:\n{}", rebuilt.join("\n"));
    assert!(app.is_running(), "d06 still running:\n{}", app.log_tail(20));
}
