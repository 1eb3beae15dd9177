//! The store's unit tests (`lib.rs`, `snapshot_file.rs`, `error.rs`).

use super::*;
use aggregator::fact::{CccdStage, FactKind};
use aggregator::{AreaId, Digest};
use redb::ReadableTableMetadata;

/// An error with its causes, as a log line shows it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out = format!("{out}: {c}");
        cause = c.source();
    }
    out
}

fn identity() -> Identity {
    Identity {
        geography: "pre2025".into(),
        key_fingerprint: "ab".into(),
        time_zone: "Asia/Ho_Chi_Minh".into(),
        facts: "d06.facts.v1#1".into(),
    }
}

fn fact(i: u8) -> Fact {
    Fact {
        event_id: format!("e{i}").into(),
        subject: Digest([i; 16]),
        occurred_at: i as i64,
        day: chrono::NaiveDate::from_ymd_opt(2024, 4, 10).unwrap(),
        area: AreaId(3),
        kind: FactKind::Cccd { stage: CccdStage::Received },
    }
}

#[test]
fn checkpoints_survive_reopen_and_uncommitted_work_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let p = SourcePartition { topic: "t".into(), partition: 2 };
    {
        let (mut store, loaded) = Store::open(dir.path(), &identity()).unwrap();
        assert!(loaded.positions.is_empty());
        let mut buf = Vec::new();
        fact(1).encode(&mut buf);
        fact(2).encode(&mut buf);
        let positions = HashMap::from([(p.clone(), PartitionState { next_offset: 7, watermark: Some(5) })]);
        store.checkpoint(&buf, &positions, 42).unwrap();
    }
    let (store, loaded) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!(loaded.version, 42);
    assert_eq!(loaded.positions[&p], PartitionState { next_offset: 7, watermark: Some(5) });
    let mut seen = Vec::new();
    assert_eq!(store.replay(|f| seen.push(f)).unwrap(), 2);
    assert_eq!(seen, vec![fact(1), fact(2)]);
}

#[test]
fn a_snapshot_replaces_the_log_before_it_and_the_tail_follows() {
    let dir = tempfile::tempdir().unwrap();
    let p = SourcePartition { topic: "t".into(), partition: 0 };
    let at = |next| HashMap::from([(p.clone(), PartitionState { next_offset: next, watermark: None })]);
    let log = |facts: &[Fact]| {
        let mut buf = Vec::new();
        facts.iter().for_each(|f| f.encode(&mut buf));
        buf
    };
    {
        let (mut store, _) = Store::open(dir.path(), &identity()).unwrap();
        store.checkpoint(&log(&[fact(1), fact(2)]), &at(2), 1).unwrap();
        assert_eq!(store.log_bytes(), log(&[fact(1), fact(2)]).len() as u64);
        assert_eq!(store.snapshot().unwrap(), None);
        store.compact(whole(b"state after 3 facts"), &at(3), 2).unwrap();
        assert_eq!((store.log_bytes(), store.snapshot_bytes()), (0, 19));
        assert!(snapshot_file::path(dir.path(), 0).exists());
        store.checkpoint(&log(&[fact(4)]), &at(4), 3).unwrap();
    }
    let (store, loaded) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!((loaded.version, loaded.positions[&p].next_offset), (3, 4));
    assert_eq!(store.snapshot().unwrap().as_deref(), Some(&b"state after 3 facts"[..]));
    let mut tail = Vec::new();
    store.replay(|f| tail.push(f)).unwrap();
    assert_eq!(tail, vec![fact(4)]);
    assert_eq!((store.log_bytes(), store.snapshot_bytes()), (log(&[fact(4)]).len() as u64, 19));
}

/// A snapshot handed over in pieces of at most a value's size.
fn whole(bytes: &[u8]) -> impl FnOnce(&mut Pieces<'_>) -> u64 + '_ {
    move |out| {
        for piece in bytes.chunks(SNAPSHOT_PIECE) {
            out(piece);
        }
        bytes.len() as u64
    }
}

#[test]
fn a_snapshot_of_many_pieces_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..SNAPSHOT_PIECE * 2 + 5).map(|i| (i % 251) as u8).collect();
    {
        let (mut store, _) = Store::open(dir.path(), &identity()).unwrap();
        store.compact(whole(&big), &HashMap::new(), 1).unwrap();
        store.compact(whole(&big[..10]), &HashMap::new(), 2).unwrap();
        store.compact(whole(&big), &HashMap::new(), 3).unwrap();
    }
    let (store, _) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(big));
}

/// Writes a store as d06 before snapshots did: no format marker.
fn format_1_store(dir: &Path) {
    drop(Store::open(dir, &identity()).unwrap());
    let db = Database::create(dir.join("d06.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().remove(FORMAT_KEY).unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_format_1_store_is_read_and_one_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    format_1_store(dir.path());
    {
        let (mut store, _) = Store::open(dir.path(), &identity()).unwrap();
        let mut buf = Vec::new();
        fact(1).encode(&mut buf);
        store.checkpoint(&buf, &HashMap::new(), 1).unwrap();
    }
    let (store, _) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!(store.replay(|_| {}).unwrap(), 1);
    drop(store);

    let db = Database::create(dir.path().join("d06.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(FORMAT_KEY, b"4".as_slice()).unwrap();
    txn.commit().unwrap();
    drop(db);
    let err = Store::open(dir.path(), &identity()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign(_)) && !err.is_retryable(), "{err:?}");
    let err = chain(&err);
    assert!(err.contains("has format 4; this d06 reads formats 1, 2 and 3"), "{err}");
    assert!(err.contains("delete it to rebuild from Kafka"), "{err}");
}

/// The snapshot files in `dir`, by name.
fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".d06snap"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_compaction_leaves_one_snapshot_file_and_an_open_removes_the_ones_no_checkpoint_names() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(dir.path(), &identity()).unwrap();
        store.compact(whole(b"one"), &HashMap::new(), 1).unwrap();
        store.compact(whole(b"two"), &HashMap::new(), 2).unwrap();
        assert_eq!(snapshot_files(dir.path()), ["snapshot-1.d06snap"]);
    }
    // A compaction cut off before its checkpoint committed left a file.
    std::fs::write(snapshot_file::path(dir.path(), 2), b"cut off").unwrap();
    let (store, _) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!(snapshot_files(dir.path()), ["snapshot-1.d06snap"]);
    assert_eq!(store.snapshot().unwrap().as_deref(), Some(&b"two"[..]));
    drop(store);
    // A named file that is gone: the store is unusable (rebuilt), not an
    // I/O failure to retry for ever.
    std::fs::remove_file(snapshot_file::path(dir.path(), 1)).unwrap();
    let (store, _) = Store::open(dir.path(), &identity()).unwrap();
    let err = store.snapshot().unwrap_err();
    assert!(matches!(err, StoreError::Unusable { .. }), "{err:?}");
    assert!(chain(&err).contains("named by the checkpoint is missing"), "{}", chain(&err));
}

/// Writes a store as d06 did with format 2: the snapshot in its table.
fn format_2_store(dir: &Path, snapshot: &[u8], tail: &[u8]) {
    drop(Store::open(dir, &identity()).unwrap());
    let db = Database::create(dir.join("d06.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(FORMAT_KEY, b"2".as_slice()).unwrap();
        let stored = StoredCheckpoint {
            version: 5,
            next_chunk: 1,
            log_bytes: tail.len() as u64,
            snapshot_bytes: snapshot.len() as u64,
            ..StoredCheckpoint::default()
        };
        meta.insert(CHECKPOINT_KEY, serde_json::to_vec(&stored).unwrap().as_slice()).unwrap();
        let mut pieces = txn.open_table(SNAPSHOT).unwrap();
        for (i, piece) in snapshot.chunks(4).enumerate() {
            pieces.insert(i as u64, piece).unwrap();
        }
        txn.open_table(FACTS).unwrap().insert(0, tail).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_2_store_is_read_and_its_next_snapshot_goes_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = Vec::new();
    fact(7).encode(&mut tail);
    format_2_store(dir.path(), b"state in the table", &tail);
    {
        let (mut store, loaded) = Store::open(dir.path(), &identity()).unwrap();
        assert_eq!(loaded.version, 5);
        assert_eq!(store.snapshot().unwrap().as_deref(), Some(&b"state in the table"[..]));
        let mut seen = Vec::new();
        store.replay(|f| seen.push(f)).unwrap();
        assert_eq!(seen, [fact(7)]);
        assert_eq!(snapshot_files(dir.path()), Vec::<String>::new());
        store.compact(whole(b"state in a file"), &HashMap::new(), 6).unwrap();
    }
    let (store, _) = Store::open(dir.path(), &identity()).unwrap();
    assert_eq!(store.snapshot().unwrap().as_deref(), Some(&b"state in a file"[..]));
    assert_eq!(store.replay(|_| {}).unwrap(), 0);
    assert_eq!(snapshot_files(dir.path()), ["snapshot-0.d06snap"]);
    let db = store.db.as_ref().unwrap();
    assert_eq!(db.begin_read().unwrap().open_table(SNAPSHOT).unwrap().len().unwrap(), 0, "the table is emptied");
    let format = db.begin_read().unwrap().open_table(META).unwrap().get(FORMAT_KEY).unwrap().unwrap().value().to_vec();
    assert_eq!(format, b"3");
}

#[test]
fn io_failures_are_told_from_unusable_stores() {
    use redb::{CommitError, DatabaseError, StorageError};
    use std::io::{Error as IoError, ErrorKind};
    let full = || StorageError::Io(IoError::from_raw_os_error(28));
    let opened = StoreError::db("opening state store /x/d06.redb", DatabaseError::Storage(full()));
    assert!(opened.is_retryable());
    assert_eq!(chain(&opened), "opening state store /x/d06.redb: I/O error: No space left on device (os error 28)");
    let committed = StoreError::db("committing", CommitError::Storage(StorageError::Io(IoError::from_raw_os_error(5))));
    assert!(committed.is_retryable());
    assert!(StoreError::io("creating dir", IoError::from_raw_os_error(28)).is_retryable());
    assert!(StoreError::db("reading", StorageError::PreviousIo).is_retryable(), "refused since an earlier error");
    let corrupt = StoreError::db("opening", DatabaseError::Storage(StorageError::Corrupted("x".into())));
    assert!(matches!(corrupt, StoreError::Unusable { .. }));
    let short = StorageError::Io(IoError::from(ErrorKind::UnexpectedEof));
    assert!(!StoreError::db("opening", DatabaseError::Storage(short)).is_retryable());
    assert!(!StoreError::io("reading", IoError::from(ErrorKind::InvalidData)).is_retryable());
    // Another identity: foreign, not an I/O failure.
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &identity()).unwrap());
    let other = Identity { key_fingerprint: "cd".into(), ..identity() };
    let err = Store::open(dir.path(), &other).unwrap_err();
    assert!(matches!(err, StoreError::Foreign(_)) && !err.is_retryable(), "{err:?}");
}

#[test]
fn a_store_from_another_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &identity()).unwrap());
    let other = Identity { key_fingerprint: "cd".into(), ..identity() };
    let err = Store::open(dir.path(), &other).unwrap_err().to_string();
    assert!(err.contains("key ab"), "{err}");
}
