//! Issue 14: the state directory's disk fills up mid-stream (a small tmpfs
//! holding d06's state, filled with a ballast file). d06 must say why, stop
//! stage 2 (no figure, no stage-2 offset moves), never panic, and carry on by
//! itself once the ballast is deleted; ClickHouse then equals an independent
//! recount exactly, and still does after a SIGKILL and restart from the
//! stores written around the failure.
//!
//! Mounting needs root (CAP_SYS_ADMIN); without it the test fails saying so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::crash::{generate, messages, recount};
use crate::harness::{spawn_app, App, AppOptions, Producer};
use crate::scale_out::{coverage, until_recount};

/// A tmpfs of `size_mib` MiB, unmounted when dropped.
struct Tmpfs {
    _parent: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size_mib: u32) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}M"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a {size_mib} MiB tmpfs at {} for the disk-full test (it needs root or CAP_SYS_ADMIN): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { _parent: parent, dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("ballast");
    let chunk = vec![0xa5u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling the disk ended with {e}, not ENOSPC");
                break;
            }
        }
    }
    // The last partial page too.
    while f.write(&[0xa5]).map(|n| n > 0).unwrap_or(false) {
        written += 1;
    }
    written
}

/// Stage 2's committed facts offsets (the `{group}.shards` group).
fn shard_offsets(app: &App) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        app.options.kafka.client_config().set("group.id", format!("{}.shards", app.group)).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..app.options.shards as i32 {
        tpl.add_partition(&app.topics.facts, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Waits until stage 1 has committed every message of `sent` (per source partition).
async fn routed(app: &App, sent: &BTreeMap<(String, i32), i64>, what: &str) {
    app.wait_for(what, Duration::from_secs(60), || async {
        let committed = app.committed_offsets();
        sent.iter().all(|(k, n)| committed.get(k).copied().unwrap_or(0) >= *n)
    })
    .await;
}

async fn readyz(app: &App) -> (u16, String) {
    match reqwest::get(format!("http://127.0.0.1:{}/readyz", app.metrics_port)).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_stops_stage_two_and_it_resumes_by_itself() {
    let n: usize = std::env::var("D06_DISKFULL_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(24_000);
    let seed: u64 = rand::random();
    eprintln!("disk-full test: {n} events, seed {seed}");
    let raws = generate(n, seed);
    let expected = recount(&raws);
    // Dropped last: the app is killed before the tmpfs is unmounted.
    let disk = Tmpfs::mount(24);
    let partitions = 2;
    let mut app = spawn_on(disk.dir.join("state"), partitions).await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xd15c);
    let messages = messages(&raws, &topics, partitions, &mut rng);
    let (first, rest) = messages.split_at(messages.len() / 3);
    let (during, after) = rest.split_at(rest.len() / 2);
    let mut sent: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut count = |batch: &[(String, i32, Vec<u8>)]| tally(&mut sent, batch);
    let producer = Producer::new();
    let started = Instant::now();

    // A third of the stream, applied and checkpointed on the tmpfs.
    producer.send_all(first).await;
    let sent_first = count(first);
    routed(&app, &sent_first, "the first third routed").await;
    app.wait_for("the first third applied", Duration::from_secs(60), || async {
        app.metrics().await.get("d06_state_store_failing", &[]) == Some(0.0) && !shard_offsets(&app).is_empty()
    })
    .await;
    eprintln!("first third in after {:?}", started.elapsed());

    // The disk fills up; more events arrive.
    let ballast = disk.dir.join("ballast");
    let filled = fill(&ballast);
    eprintln!("disk filled with {filled} bytes of ballast after {:?}", started.elapsed());
    producer.send_all(during).await;
    let sent_during = count(during);
    app.wait_for("d06 saying the state store cannot be written", Duration::from_secs(60), || async {
        app.log().contains("cannot write the state store")
    })
    .await;
    let line = app.log().lines().find(|l| l.contains("cannot write the state store")).unwrap_or_default().to_owned();
    eprintln!("d06 said: {line}");
    assert!(line.contains("ERROR"), "said as an error: {line}");
    assert!(line.contains(&disk.dir.display().to_string()), "the line names the directory: {line}");
    assert!(line.contains("No space left on device"), "the line gives the cause: {line}");
    let m = app.metrics().await;
    assert_eq!(m.get("d06_state_store_failing", &[]), Some(1.0), "the gauge says so");
    assert!(m.sum("d06_state_store_write_failures_total") >= 1.0, "failures counted");
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "not ready while the disk is full: {body}");
    assert!(body.contains("state store"), "/readyz says why: {body}");

    // Stage 1 needs no disk and goes on routing; stage 2 stands still.
    producer.send_all(after).await;
    let sent_all = count(after);
    routed(&app, &sent_all, "everything routed while the disk is full").await;
    let _ = sent_during;
    let frozen = (coverage(&app).await, shard_offsets(&app), app.metrics().await.sum("d06_facts_applied_total"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = (coverage(&app).await, shard_offsets(&app), app.metrics().await.sum("d06_facts_applied_total"));
    assert!(frozen == later, "stage 2 moved while its disk was full: offsets {:?} → {:?}", frozen.1, later.1);
    assert_ne!(later.0, expected, "the figures lack what arrived while the disk was full");
    assert!(app.is_running(), "d06 still running with its disk full:\n{}", app.log_tail(30));
    eprintln!("stage 2 stood still; facts offsets {:?}", later.1);

    // Space returns: d06 resumes by itself and the figures equal the recount.
    std::fs::remove_file(&ballast).expect("delete the ballast");
    let resumed = Instant::now();
    app.wait_for("d06 saying the state store takes writes again", Duration::from_secs(30), || async {
        app.log().contains("takes writes again")
    })
    .await;
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(60)).await {
        panic!("{diff}\n{}", app.log_tail(30));
    }
    eprintln!("ClickHouse equals the recount {:?} after the space returned", resumed.elapsed());
    assert!(expected.len() > 500, "the stream covers many keys: {}", expected.len());
    app.wait_for("ready again", Duration::from_secs(30), || async { readyz(&app).await.0 == 200 }).await;
    assert_eq!(app.metrics().await.get("d06_state_store_failing", &[]), Some(0.0));

    // The stores hold what the figures show: a restart from them changes nothing.
    // Every shard rewritten in full under a generation claimed after the restart.
    let claimed = "SELECT max(generation) FROM shard_owners";
    let before: u64 = app.clickhouse(claimed).await.trim().parse().expect("generation");
    app.kill9();
    app.start().await;
    app.wait_for("every shard rewritten after the restart", Duration::from_secs(60), || async {
        let rewritten = app
            .clickhouse(&format!(
                "SELECT uniqExact(shard) FROM coverage_shard_daily WHERE intDiv(version, 1099511627776) > {before}"
            ))
            .await;
        rewritten.trim() == "2"
    })
    .await;
    // (The rewrite of a shard is one flush: let it end.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = coverage(&app).await;
    assert!(got == expected, "ClickHouse differs from the recount after a restart from the stores");
    let log = app.log();
    assert!(!log.contains("panicked"), "no panic:\n{}", app.log_tail(40));
    assert!(app.is_running(), "d06 still running:\n{}", app.log_tail(20));
    // The stores it restarted from held snapshots, written around the failure.
    let snapshots = log.lines().filter(|l| l.contains("shard snapshot written")).count();
    let refused = log.lines().filter(|l| l.contains("committing the snapshot")).count();
    eprintln!("{snapshots} snapshots written, {refused} log lines of a snapshot the full disk refused");
    assert!(snapshots > 0, "no snapshot written:\n{}", app.log_tail(30));
    eprintln!("done after {:?}", started.elapsed());
}

/// A full disk while shards are being opened: d06 restarts on a state
/// directory that is gone (its stores must be created, and rebuilt from the
/// facts partitions) on a disk that is full. Opening a shard must behave like
/// a checkpoint: retried, said once with the cause, `d06_state_store_failing`
/// 1, `/readyz` 503, no stage-2 offset moved, the instance still running;
/// and when space returns, ClickHouse equals the independent recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_opening_shards_waits_and_resumes() {
    let n: usize = std::env::var("D06_DISKFULL_OPEN_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6_000);
    let seed: u64 = rand::random();
    eprintln!("disk-full-at-open test: {n} events, seed {seed}");
    let raws = generate(n, seed);
    let expected = recount(&raws);
    let disk = Tmpfs::mount(16);
    let partitions = 2;
    let state = disk.dir.join("state");
    let mut app = spawn_on(state.clone(), partitions).await;
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0be2);
    let messages = messages(&raws, &topics, partitions, &mut rng);
    let (first, rest) = messages.split_at(messages.len() / 3);
    let mut sent: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut count = |batch: &[(String, i32, Vec<u8>)]| tally(&mut sent, batch);
    let producer = Producer::new();
    let started = Instant::now();

    // A third of the stream applied and checkpointed; then d06 dies, its
    // stores are lost and the disk fills up.
    producer.send_all(first).await;
    routed(&app, &count(first), "the first third routed").await;
    app.wait_for("the first third applied", Duration::from_secs(60), || async {
        !shard_offsets(&app).is_empty() && app.log().contains("first flush complete")
    })
    .await;
    app.kill9();
    let committed = shard_offsets(&app);
    std::fs::remove_dir_all(&state).expect("delete the state directory");
    let ballast = disk.dir.join("ballast");
    let filled = fill(&ballast);
    eprintln!("stores deleted, disk filled with {filled} bytes after {:?}", started.elapsed());

    // Restarted on the full disk: it must open (create) both shards' stores.
    app.start().await;
    producer.send_all(rest).await;
    routed(&app, &count(rest), "everything routed while the disk is full").await;
    app.wait_for("d06 saying the shards' stores cannot be written", Duration::from_secs(60), || async {
        app.log().lines().any(|l| l.contains("cannot write the state store") && l.contains("opening shard"))
    })
    .await;
    let log = app.log();
    let line = log.lines().find(|l| l.contains("cannot write the state store")).unwrap_or_default();
    eprintln!("d06 said: {line}");
    assert!(line.contains("ERROR"), "said as an error: {line}");
    assert!(line.contains(&disk.dir.display().to_string()), "the line names the directory: {line}");
    assert!(line.contains("No space left on device"), "the line gives the cause: {line}");
    // (A store file whose creation the full disk cut short is rebuilt, as
    // unusable; one the disk refuses to write is kept and retried.)
    assert!(
        !log.lines().any(|l| l.contains("rebuilding from the facts partition") && l.contains("No space left")),
        "a store refused by the disk is not discarded"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = app.metrics().await;
    assert_eq!(m.get("d06_state_store_failing", &[]), Some(1.0), "the gauge says so");
    assert!(m.sum("d06_state_store_write_failures_total") >= 2.0, "retried, each failure counted");
    assert_eq!(readyz(&app).await.0, 503, "not ready while the stores cannot be opened");
    assert_eq!(shard_offsets(&app), committed, "no stage-2 offset moves while the stores cannot be opened");
    assert_ne!(coverage(&app).await, expected, "the figures lack the rest of the stream");
    assert!(app.is_running(), "d06 still running with its disk full:\n{}", app.log_tail(30));

    // Space returns: the shards open, are rebuilt from the facts partitions,
    // and the figures equal the recount.
    std::fs::remove_file(&ballast).expect("delete the ballast");
    let resumed = Instant::now();
    while !app.log().contains("takes writes again") {
        let log = app.log();
        let stage2: Vec<&str> = log.lines().filter(|l| !l.contains("ingest::kafka::router")).collect();
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "d06 did not say the state store takes writes again within 30 s:\n{}",
            stage2[stage2.len().saturating_sub(30)..].join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(diff) = until_recount(&app, &expected, Duration::from_secs(60)).await {
        panic!("{diff}\n{}", app.log_tail(30));
    }
    eprintln!("ClickHouse equals the recount {:?} after the space returned", resumed.elapsed());
    assert!(expected.len() > 200, "the stream covers many keys: {}", expected.len());
    app.wait_for("ready again", Duration::from_secs(30), || async { readyz(&app).await.0 == 200 }).await;
    assert_eq!(app.metrics().await.get("d06_state_store_failing", &[]), Some(0.0));
    assert!(!app.log().contains("panicked"), "no panic:\n{}", app.log_tail(40));
    eprintln!("done after {:?}", started.elapsed());
}

/// The panic seen when this machine's disk filled: d06's log (stderr) on the
/// full disk. Every write to `/dev/full` fails with ENOSPC; d06 must run on,
/// losing its log lines, and stop cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_on_a_full_disk_is_no_panic() {
    let mut app = spawn_app(AppOptions::default()).await;
    app.kill9();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let mut child = Command::new(env!("CARGO_BIN_EXE_d06"))
        .arg("run")
        .arg("--config")
        .arg(&app.config_path)
        .env("D06_HMAC_KEY", crate::harness::HMAC_KEY)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(full())
        .stderr(full())
        .spawn()
        .expect("spawn d06");
    let healthz = format!("http://127.0.0.1:{}/healthz", app.metrics_port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("d06 exited with {status} while its log could not be written (101 is a panic)");
        }
        if reqwest::get(&healthz).await.map(|r| r.status().is_success()).unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "d06 not healthy in 60 s with its log on a full disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It has logged (and lost) its start-up lines and assignments by now; still running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait().expect("wait").is_none(), "d06 stopped while its log could not be written");
    let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "d06 did not stop within 60 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "a clean stop despite the lost log lines: {status}");
}

/// d06 with two shards, flushing every 200 ms, its state in `state` (on a
/// tmpfs); its shards write a snapshot whenever their log passes 16 KiB (and
/// the last snapshot), so the full disk also refuses snapshots.
async fn spawn_on(state: PathBuf, partitions: i32) -> App {
    spawn_app(AppOptions {
        partitions,
        shards: 2,
        flush_interval_ms: 200,
        state_dir: Some(state),
        extra_toml: "snapshot_log_bytes = 16384".into(),
        ..AppOptions::default()
    })
    .await
}

/// Adds `batch` to the messages sent per source partition; returns the totals.
fn tally(sent: &mut BTreeMap<(String, i32), i64>, batch: &[(String, i32, Vec<u8>)]) -> BTreeMap<(String, i32), i64> {
    for (t, p, _) in batch {
        *sent.entry((t.clone(), *p)).or_insert(0) += 1;
    }
    sent.clone()
}
