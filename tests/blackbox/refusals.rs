//! Issue 12: one configuration, enforced. A second instance with another
//! shard count, another pseudonymisation key, or an old single-stage state
//! directory is refused at start-up with a clear message, and changes
//! nothing: the running instance and the shard claims are untouched.

use std::time::Duration;

use crate::harness::{spawn_app, App, AppOptions};

async fn refused(app: &mut App, expect: &str) {
    let status = app.run_to_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "refused as a configuration error (EX_CONFIG):\n{}", app.log_tail(5));
    let log = app.log();
    assert!(log.contains(expect), "the log names the reason ({expect:?}):\n{}", app.log_tail(15));
    assert!(!log.contains("shard claimed"), "a refused instance claims nothing:\n{}", app.log_tail(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_shard_count_key_or_an_old_state_directory_is_refused() {
    let mut app = spawn_app(AppOptions { partitions: 2, shards: 3, ..AppOptions::default() }).await;
    app.wait_for("the shards claimed", Duration::from_secs(60), || async {
        app.metrics().await.get("d06_shards_owned", &[]) == Some(3.0)
    })
    .await;
    let claims = || async { app.clickhouse("SELECT shard, generation, owner FROM shard_owners ORDER BY shard").await };
    let before = claims().await;

    let mut other = app.sibling("shards");
    other.edit_config(|c| c.replace("shards = 3", "shards = 4"));
    refused(&mut other, "has 3 partitions but pipeline.shards is 4").await;

    let mut other = app.sibling("key");
    let key = other.dir.path().join("other.key");
    std::fs::write(&key, "another-key-0123456789abcdef").expect("key");
    other.edit_config(|c| format!("{c}\n[pseudonym]\nkey_file = \"{}\"\n", key.display()));
    refused(&mut other, "belongs to another deployment").await;

    let mut other = app.sibling("old");
    std::fs::create_dir_all(other.state_dir()).expect("state dir");
    std::fs::write(other.state_dir().join("d06.redb"), b"").expect("old store");
    refused(&mut other, "single-stage state store").await;

    assert_eq!(claims().await, before, "no shard claimed by a refused instance");
    assert!(app.is_running(), "the running instance is untouched:\n{}", app.log_tail(10));
}
