//! The local state store: a redb file holding a shard's last snapshot, the
//! log of facts applied since, and the checkpoint (source positions, `too_late`
//! watermarks, output version).
//!
//! A checkpoint is one write transaction: the facts applied since the last
//! one and the positions they reach land together or not at all. A
//! compaction is one too: it stores a snapshot of the whole state
//! ([`aggregator::snapshot`]) with the positions it reflects and drops the
//! log before it. Restart = load the snapshot + replay the log after it, so
//! the time and the disk grow with the subjects, not with the history. The
//! store is a cache of the Kafka topics up to the checkpointed offsets
//! (SCALING.md 3): delete it and d06 rebuilds it from the beginning of the
//! topics.
//!
//! Store formats ([`FORMAT`]): 1, the log only (d06 before snapshots; read
//! as is and marked 2 on open, as its log replays unchanged); 2, a snapshot
//! and the log after it. A store of another format (a newer d06's) is
//! refused with a message saying so, never misread as a corrupt log.
//!
//! A failed write (disk full, I/O error) leaves redb refusing every later
//! operation until the file is reopened, so a failed checkpoint closes the
//! database and the next one reopens it: the caller retries until the disk
//! takes writes again, no restart needed. The reopened store holds the last
//! committed checkpoint; the facts of the failed one are still the caller's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aggregator::Fact;
use anyhow::{bail, Context, Result};
use ingest::kafka::{PartitionState, SourcePartition};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FACTS: TableDefinition<u64, &[u8]> = TableDefinition::new("facts");
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
const CHECKPOINT_KEY: &str = "checkpoint";
const IDENTITY_KEY: &str = "identity";
const FORMAT_KEY: &str = "format";

/// The store format this build writes (module docs).
pub const FORMAT: u32 = 2;

/// A snapshot is written in pieces of about this many bytes, one redb value
/// each, so that it is never whole in memory while it is written.
pub const SNAPSHOT_PIECE: usize = 16 << 20;

/// Where a snapshot's writer hands its pieces ([`Store::compact`]).
pub type Pieces<'a> = dyn FnMut(&[u8]) + 'a;

/// What the stored facts depend on; a store written under another identity
/// cannot be replayed (area ids or digests would mean something else).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Geography version (area ids index it).
    pub geography: String,
    /// A fingerprint of the pseudonymisation key (digests depend on it).
    pub key_fingerprint: String,
    /// Time zone the facts' local days were computed in.
    pub time_zone: String,
    /// The facts topic and its incarnation this store caches (a shard store
    /// of another incarnation is stale).
    #[serde(default)]
    pub facts: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredCheckpoint {
    positions: Vec<(String, i32, i64, Option<i64>)>,
    version: u64,
    next_chunk: u64,
    /// Bytes in the fact log (since the snapshot, if any).
    #[serde(default)]
    log_bytes: u64,
    /// Bytes of the snapshot (0 without one).
    #[serde(default)]
    snapshot_bytes: u64,
}

/// What a store holds at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Source positions to resume from.
    pub positions: HashMap<SourcePartition, PartitionState>,
    /// The last output version written.
    pub version: u64,
}

/// The open store.
pub struct Store {
    /// `None` after a failed write: reopened by the next checkpoint.
    db: Option<Database>,
    dir: PathBuf,
    identity: Identity,
    next_chunk: u64,
    log_bytes: u64,
    snapshot_bytes: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("open", &self.db.is_some())
            .field("next_chunk", &self.next_chunk)
            .field("log_bytes", &self.log_bytes)
            .field("snapshot_bytes", &self.snapshot_bytes)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking it was written under `identity`.
    pub fn open(dir: &Path, identity: &Identity) -> Result<(Store, Loaded)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating state directory {}", dir.display()))?;
        let path = dir.join("d06.redb");
        let db = Database::create(&path).with_context(|| format!("opening state store {}", path.display()))?;
        let txn = db.begin_write()?;
        let (stored, existing_identity) = {
            let mut meta = txn.open_table(META)?;
            txn.open_table(FACTS)?;
            txn.open_table(SNAPSHOT)?;
            let format =
                meta.get(FORMAT_KEY)?.map(|v| std::str::from_utf8(v.value()).ok().and_then(|f| f.parse::<u32>().ok()));
            let written = meta.get(IDENTITY_KEY)?.is_some();
            match format {
                // Format 1 (no marker) has the same log; a new store has nothing yet.
                None => {
                    if written {
                        tracing::info!(store = %path.display(), "state store of format 1 (a fact log): read as format {FORMAT}");
                    }
                    meta.insert(FORMAT_KEY, FORMAT.to_string().as_bytes())?;
                }
                Some(Some(FORMAT)) => {}
                Some(found) => bail!(
                    "state store {} has format {}; this d06 reads formats 1 and {FORMAT}. It was written by \
                     another d06 version: point state.dir elsewhere, or delete it to rebuild from Kafka",
                    path.display(),
                    found.map_or_else(|| "(unreadable)".to_string(), |f| f.to_string())
                ),
            }
            let stored: StoredCheckpoint = match meta.get(CHECKPOINT_KEY)? {
                Some(v) => serde_json::from_slice(v.value()).context("decoding the checkpoint")?,
                None => StoredCheckpoint::default(),
            };
            let existing: Option<Identity> = match meta.get(IDENTITY_KEY)? {
                Some(v) => Some(serde_json::from_slice(v.value()).context("decoding the store identity")?),
                None => None,
            };
            if existing.is_none() {
                meta.insert(IDENTITY_KEY, serde_json::to_vec(identity)?.as_slice())?;
            }
            (stored, existing)
        };
        txn.commit()?;
        if let Some(existing) = existing_identity {
            if &existing != identity {
                bail!(
                    "state store {} was written with geography {}, time zone {} and key {}; this run uses {}, {} and {}. \
                     Point state.dir elsewhere (or delete it to rebuild from Kafka)",
                    path.display(),
                    existing.geography,
                    existing.time_zone,
                    existing.key_fingerprint,
                    identity.geography,
                    identity.time_zone,
                    identity.key_fingerprint
                );
            }
        }
        let positions = stored
            .positions
            .into_iter()
            .map(|(t, p, next, wm)| {
                (SourcePartition { topic: t.into(), partition: p }, PartitionState { next_offset: next, watermark: wm })
            })
            .collect();
        let store = Store {
            db: Some(db),
            dir: dir.to_owned(),
            identity: identity.clone(),
            next_chunk: stored.next_chunk,
            log_bytes: stored.log_bytes,
            snapshot_bytes: stored.snapshot_bytes,
        };
        Ok((store, Loaded { positions, version: stored.version }))
    }

    /// The database, reopened first if the last write failed.
    fn db(&mut self) -> Result<&Database> {
        if self.db.is_none() {
            let (reopened, _) = Store::open(&self.dir, &self.identity).context("reopening the state store")?;
            // The last committed checkpoint's counters: the failed one's chunk was not kept.
            self.next_chunk = reopened.next_chunk;
            self.log_bytes = reopened.log_bytes;
            self.snapshot_bytes = reopened.snapshot_bytes;
            self.db = reopened.db;
        }
        self.db.as_ref().context("state store not open")
    }

    /// Bytes in the fact log after the snapshot (all of it without one).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Bytes of the last snapshot, 0 without one.
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// The last snapshot's bytes, `None` without one.
    pub fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        let db = self.db.as_ref().context("state store not open")?;
        let txn = db.begin_read()?;
        let chunks = txn.open_table(SNAPSHOT)?;
        let mut out = Vec::with_capacity(usize::try_from(self.snapshot_bytes).unwrap_or(0));
        for entry in chunks.iter()? {
            out.extend_from_slice(entry?.1.value());
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Replays every checkpointed fact after the snapshot, in the order it was applied.
    pub fn replay(&self, mut apply: impl FnMut(Fact)) -> Result<u64> {
        let db = self.db.as_ref().context("state store not open")?;
        let txn = db.begin_read()?;
        let facts = txn.open_table(FACTS)?;
        let mut n = 0;
        for entry in facts.iter()? {
            let (_, chunk) = entry?;
            let bytes = chunk.value();
            let mut at = 0;
            while at < bytes.len() {
                let (fact, used) = Fact::decode(&bytes[at..]).context("corrupt fact log")?;
                at += used;
                apply(fact);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Atomically appends `facts` (encoded with [`Fact::encode`]) and records
    /// the positions and version. On an error nothing of it is stored and the
    /// database is closed; the next call reopens it (retry with the same facts).
    pub fn checkpoint(
        &mut self,
        facts: &[u8],
        positions: &HashMap<SourcePartition, PartitionState>,
        version: u64,
    ) -> Result<()> {
        let written = self.write_checkpoint(facts, positions, version);
        self.closed_on_error(written)
    }

    /// Closes the database after a failed write: redb refuses everything
    /// after an I/O error until reopened (by the next write).
    fn closed_on_error(&mut self, written: Result<()>) -> Result<()> {
        if written.is_err() {
            self.db = None;
        }
        written
    }

    fn write_checkpoint(
        &mut self,
        facts: &[u8],
        positions: &HashMap<SourcePartition, PartitionState>,
        version: u64,
    ) -> Result<()> {
        let txn = self.db()?.begin_write()?;
        let mut next_chunk = self.next_chunk;
        {
            if !facts.is_empty() {
                let mut table = txn.open_table(FACTS)?;
                table.insert(next_chunk, facts)?;
                next_chunk += 1;
            }
            let stored = StoredCheckpoint {
                positions: stored_positions(positions),
                version,
                next_chunk,
                log_bytes: self.log_bytes + facts.len() as u64,
                snapshot_bytes: self.snapshot_bytes,
            };
            let mut meta = txn.open_table(META)?;
            meta.insert(CHECKPOINT_KEY, serde_json::to_vec(&stored)?.as_slice())?;
        }
        txn.commit().context("committing the checkpoint")?;
        self.next_chunk = next_chunk;
        self.log_bytes += facts.len() as u64;
        Ok(())
    }

    /// Atomically replaces the snapshot with the one `write` hands over in
    /// pieces (the whole state, the facts not yet checkpointed included;
    /// `write` returns its length), drops the fact log and records the
    /// positions and version, as [`Store::checkpoint`] does. On an error
    /// nothing changes and the database is closed.
    pub fn compact(
        &mut self,
        write: impl FnOnce(&mut Pieces<'_>) -> u64,
        positions: &HashMap<SourcePartition, PartitionState>,
        version: u64,
    ) -> Result<()> {
        let written = self.write_compaction(write, positions, version);
        self.closed_on_error(written)
    }

    fn write_compaction(
        &mut self,
        write: impl FnOnce(&mut Pieces<'_>) -> u64,
        positions: &HashMap<SourcePartition, PartitionState>,
        version: u64,
    ) -> Result<()> {
        let txn = self.db()?.begin_write()?;
        let snapshot_bytes;
        {
            txn.delete_table(FACTS)?;
            txn.delete_table(SNAPSHOT)?;
            txn.open_table(FACTS)?;
            let mut pieces = txn.open_table(SNAPSHOT)?;
            let mut next = 0u64;
            let mut failed = None;
            snapshot_bytes = write(&mut |piece| {
                if failed.is_none() {
                    failed = pieces.insert(next, piece).err();
                    next += 1;
                }
            });
            if let Some(error) = failed {
                return Err(anyhow::Error::new(error).context("writing the snapshot"));
            }
            let stored = StoredCheckpoint {
                positions: stored_positions(positions),
                version,
                next_chunk: 0,
                log_bytes: 0,
                snapshot_bytes,
            };
            let mut meta = txn.open_table(META)?;
            meta.insert(CHECKPOINT_KEY, serde_json::to_vec(&stored)?.as_slice())?;
        }
        txn.commit().context("committing the snapshot")?;
        self.next_chunk = 0;
        self.log_bytes = 0;
        self.snapshot_bytes = snapshot_bytes;
        Ok(())
    }
}

fn stored_positions(positions: &HashMap<SourcePartition, PartitionState>) -> Vec<(String, i32, i64, Option<i64>)> {
    positions.iter().map(|(p, s)| (p.topic.to_string(), p.partition, s.next_offset, s.watermark)).collect()
}

/// Whether `error` (from [`Store::open`] or [`Store::checkpoint`]) is the
/// file system refusing: an I/O error such as a full disk (`ENOSPC`), not a
/// store that is unusable (another identity, a corrupt file). A store that
/// failed so is intact: retry, never discard it.
pub fn is_io_failure(error: &anyhow::Error) -> bool {
    use redb::{CommitError, DatabaseError, StorageError, TableError, TransactionError};
    // A short or garbled file (a store whose creation the full disk cut
    // off) is unusable, not refused: rebuilt, never retried for ever.
    let refused =
        |e: &std::io::Error| !matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData);
    let storage_io = |e: &StorageError| matches!(e, StorageError::Io(io) if refused(io));
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(refused)
            || cause.downcast_ref::<StorageError>().is_some_and(storage_io)
            || matches!(cause.downcast_ref::<redb::Error>(), Some(redb::Error::Io(io)) if refused(io))
            || matches!(cause.downcast_ref::<DatabaseError>(), Some(DatabaseError::Storage(e)) if storage_io(e))
            || matches!(cause.downcast_ref::<TransactionError>(), Some(TransactionError::Storage(e)) if storage_io(e))
            || matches!(cause.downcast_ref::<TableError>(), Some(TableError::Storage(e)) if storage_io(e))
            || matches!(cause.downcast_ref::<CommitError>(), Some(CommitError::Storage(e)) if storage_io(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregator::fact::{CccdStage, FactKind};
    use aggregator::{AreaId, Digest};

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
        txn.open_table(META).unwrap().insert(FORMAT_KEY, b"3".as_slice()).unwrap();
        txn.commit().unwrap();
        drop(db);
        let err = format!("{:#}", Store::open(dir.path(), &identity()).unwrap_err());
        assert!(err.contains("has format 3; this d06 reads formats 1 and 2"), "{err}");
        assert!(err.contains("delete it to rebuild from Kafka"), "{err}");
        assert!(!is_io_failure(&Store::open(dir.path(), &identity()).unwrap_err()));
    }

    #[test]
    fn io_failures_are_told_from_unusable_stores() {
        let full = std::io::Error::from_raw_os_error(28);
        let opened = anyhow::Error::new(redb::DatabaseError::Storage(redb::StorageError::Io(full)))
            .context("opening state store /x/d06.redb");
        assert!(is_io_failure(&opened.context("opening shard 1")));
        let committed = anyhow::Error::new(redb::CommitError::Storage(redb::StorageError::Io(
            std::io::Error::from_raw_os_error(5),
        )));
        assert!(is_io_failure(&committed));
        assert!(is_io_failure(&anyhow::Error::new(std::io::Error::from_raw_os_error(28)).context("creating dir")));
        let corrupt = anyhow::Error::new(redb::DatabaseError::Storage(redb::StorageError::Corrupted("x".into())));
        assert!(!is_io_failure(&corrupt));
        let short = redb::StorageError::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(!is_io_failure(&anyhow::Error::new(redb::DatabaseError::Storage(short))));
        // Another identity: unusable, not an I/O failure.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &identity()).unwrap());
        let other = Identity { key_fingerprint: "cd".into(), ..identity() };
        assert!(!is_io_failure(&Store::open(dir.path(), &other).unwrap_err()));
    }

    #[test]
    fn a_store_from_another_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &identity()).unwrap());
        let other = Identity { key_fingerprint: "cd".into(), ..identity() };
        let err = Store::open(dir.path(), &other).unwrap_err().to_string();
        assert!(err.contains("key ab"), "{err}");
    }
}
