//! The local state store: a redb file holding the log of facts a shard
//! applied since its last snapshot and the checkpoint (source positions,
//! `too_late` watermarks, output version, the snapshot's file), and the
//! snapshot in a file of its own beside it (`snapshot_file.rs`).
//!
//! A checkpoint is one write transaction: the facts applied since the last
//! one and the positions they reach land together or not at all. A
//! compaction writes a snapshot of the whole state
//! ([`aggregator::snapshot`]) to a new file, then, in one transaction,
//! names it with the positions it reflects and drops the log before it;
//! the old snapshot's file is deleted after. Restart = load the snapshot + replay the log after it, so
//! the time and the disk grow with the subjects, not with the history. The
//! store is a cache of the Kafka topics up to the checkpointed offsets
//! (SCALING.md 3): delete it and d06 rebuilds it from the beginning of the
//! topics.
//!
//! Store formats ([`FORMAT`]): 1, the log only (d06 before snapshots); 2, a
//! snapshot in a redb table and the log after it; 3, the snapshot in its
//! own file. Formats 1 and 2 are read as they are and marked 3 on open (a
//! format-2 snapshot is read from its table until the next compaction
//! writes a file), so that an older d06, which would not see the file,
//! refuses the store. A store of another format (a newer d06's) is
//! refused with a message saying so, never misread as a corrupt log.
//!
//! A failed write (disk full, I/O error) leaves redb refusing every later
//! operation until the file is reopened, so a failed checkpoint closes the
//! database and the next one reopens it: the caller retries until the disk
//! takes writes again, no restart needed. The reopened store holds the last
//! committed checkpoint; the facts of the failed one are still the caller's.
//!
//! Every error is a [`StoreError`] that says which: the file system
//! refusing (retry) or a store that cannot be used (rebuild it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod error;
mod snapshot_file;

use aggregator::Fact;
use ingest::kafka::{PartitionState, SourcePartition};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub use self::error::StoreError;

/// A store operation's outcome.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a redb or I/O call was doing when it failed ([`StoreError::db`]).
trait During<T> {
    fn during(self, what: &str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> During<T> for std::result::Result<T, E> {
    fn during(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::db(what, e))
    }
}

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FACTS: TableDefinition<u64, &[u8]> = TableDefinition::new("facts");
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
const CHECKPOINT_KEY: &str = "checkpoint";
const IDENTITY_KEY: &str = "identity";
const FORMAT_KEY: &str = "format";

/// The store format this build writes (module docs).
pub const FORMAT: u32 = 3;

/// A snapshot is written in pieces of about this many bytes, so that it is
/// never whole in memory while it is written.
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
    /// The snapshot's file (`snapshot_file::path`); `None` without one, or
    /// in a format-2 store whose snapshot is still in its table.
    #[serde(default)]
    snapshot_file: Option<u64>,
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
    snapshot_file: Option<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("open", &self.db.is_some())
            .field("next_chunk", &self.next_chunk)
            .field("log_bytes", &self.log_bytes)
            .field("snapshot_bytes", &self.snapshot_bytes)
            .field("snapshot_file", &self.snapshot_file)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking it was written under `identity`.
    pub fn open(dir: &Path, identity: &Identity) -> Result<(Store, Loaded)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("creating state directory {}", dir.display()), e))?;
        let path = dir.join("d06.redb");
        let opening = format!("opening state store {}", path.display());
        let db = Database::create(&path).during(&opening)?;
        let txn = db.begin_write().during(&opening)?;
        let (stored, existing_identity) = {
            let mut meta = txn.open_table(META).during(&opening)?;
            txn.open_table(FACTS).during(&opening)?;
            txn.open_table(SNAPSHOT).during(&opening)?;
            let format = meta
                .get(FORMAT_KEY)
                .during(&opening)?
                .map(|v| std::str::from_utf8(v.value()).ok().and_then(|f| f.parse::<u32>().ok()));
            let written = meta.get(IDENTITY_KEY).during(&opening)?.is_some();
            match format {
                // Format 1 (no marker) has the same log; a new store has nothing yet.
                None => {
                    if written {
                        tracing::info!(store = %path.display(), "state store of format 1 (a fact log): read as format {FORMAT}");
                    }
                    meta.insert(FORMAT_KEY, FORMAT.to_string().as_bytes()).during(&opening)?;
                }
                Some(Some(2)) => {
                    tracing::info!(store = %path.display(), "state store of format 2 (the snapshot in the store): read as format {FORMAT}");
                    meta.insert(FORMAT_KEY, FORMAT.to_string().as_bytes()).during(&opening)?;
                }
                Some(Some(FORMAT)) => {}
                Some(found) => {
                    return Err(StoreError::Foreign(format!(
                        "state store {} has format {}; this d06 reads formats 1, 2 and {FORMAT}. It was written by \
                         another d06 version: point state.dir elsewhere, or delete it to rebuild from Kafka",
                        path.display(),
                        found.map_or_else(|| "(unreadable)".to_string(), |f| f.to_string())
                    )))
                }
            }
            let stored: StoredCheckpoint = match meta.get(CHECKPOINT_KEY).during(&opening)? {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::unusable(format!("decoding the checkpoint of {}", path.display()), e))?,
                None => StoredCheckpoint::default(),
            };
            let existing: Option<Identity> = match meta.get(IDENTITY_KEY).during(&opening)? {
                Some(v) => Some(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::unusable(format!("decoding the identity of {}", path.display()), e))?,
                ),
                None => None,
            };
            if existing.is_none() {
                meta.insert(IDENTITY_KEY, encode(identity)?.as_slice()).during(&opening)?;
            }
            (stored, existing)
        };
        txn.commit().during(&opening)?;
        if let Some(existing) = existing_identity {
            if &existing != identity {
                return Err(StoreError::Foreign(format!(
                    "state store {} was written with geography {}, time zone {} and key {}; this run uses {}, {} and {}. \
                     Point state.dir elsewhere (or delete it to rebuild from Kafka)",
                    path.display(),
                    existing.geography,
                    existing.time_zone,
                    existing.key_fingerprint,
                    identity.geography,
                    identity.time_zone,
                    identity.key_fingerprint
                )));
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
            snapshot_file: stored.snapshot_file,
        };
        snapshot_file::remove_others(dir, stored.snapshot_file);
        Ok((store, Loaded { positions, version: stored.version }))
    }

    /// Discards the store in `dir` (the directory and everything in it) and
    /// creates an empty one in its place: for a store that cannot be used
    /// ([`StoreError::Unusable`], [`StoreError::Foreign`]), which the facts
    /// partition then rebuilds.
    pub fn recreate(dir: &Path, identity: &Identity) -> Result<(Store, Loaded)> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io(format!("removing {}", dir.display()), e))
            }
            _ => Store::open(dir, identity),
        }
    }

    /// The database, reopened first if the last write failed.
    fn db(&mut self) -> Result<&Database> {
        if self.db.is_none() {
            let (reopened, _) = Store::open(&self.dir, &self.identity)?;
            // The last committed checkpoint's counters: the failed one's chunk was not kept.
            self.next_chunk = reopened.next_chunk;
            self.log_bytes = reopened.log_bytes;
            self.snapshot_bytes = reopened.snapshot_bytes;
            self.snapshot_file = reopened.snapshot_file;
            self.db = reopened.db;
        }
        self.open_db()
    }

    /// The database, which only a failed write closes (the next write
    /// reopens it).
    fn open_db(&self) -> Result<&Database> {
        self.db.as_ref().ok_or_else(|| StoreError::Refused {
            during: format!("reading {}", self.dir.display()),
            cause: "closed by a failed write".into(),
        })
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
        if let Some(n) = self.snapshot_file {
            return snapshot_file::read(&self.dir, n).map(Some);
        }
        // A format-2 store: the snapshot, if any, is still in its table.
        let reading = "reading the snapshot table";
        let txn = self.open_db()?.begin_read().during(reading)?;
        let chunks = txn.open_table(SNAPSHOT).during(reading)?;
        let mut out = Vec::with_capacity(usize::try_from(self.snapshot_bytes).unwrap_or(0));
        for entry in chunks.iter().during(reading)? {
            out.extend_from_slice(entry.during(reading)?.1.value());
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Replays every checkpointed fact after the snapshot, in the order it was applied.
    pub fn replay(&self, mut apply: impl FnMut(Fact)) -> Result<u64> {
        let reading = "reading the fact log";
        let txn = self.open_db()?.begin_read().during(reading)?;
        let facts = txn.open_table(FACTS).during(reading)?;
        let mut n = 0;
        for entry in facts.iter().during(reading)? {
            let (_, chunk) = entry.during(reading)?;
            let bytes = chunk.value();
            let mut at = 0;
            while at < bytes.len() {
                let (fact, used) = Fact::decode(&bytes[at..])
                    .map_err(|e| StoreError::unusable(format!("corrupt fact log in {}", self.dir.display()), e))?;
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
        let writing = "writing the checkpoint";
        let txn = self.db()?.begin_write().during(writing)?;
        let mut next_chunk = self.next_chunk;
        {
            if !facts.is_empty() {
                let mut table = txn.open_table(FACTS).during(writing)?;
                table.insert(next_chunk, facts).during(writing)?;
                next_chunk += 1;
            }
            let stored = StoredCheckpoint {
                positions: stored_positions(positions),
                version,
                next_chunk,
                log_bytes: self.log_bytes + facts.len() as u64,
                snapshot_bytes: self.snapshot_bytes,
                snapshot_file: self.snapshot_file,
            };
            let mut meta = txn.open_table(META).during(writing)?;
            meta.insert(CHECKPOINT_KEY, encode(&stored)?.as_slice()).during(writing)?;
        }
        txn.commit().during("committing the checkpoint")?;
        self.next_chunk = next_chunk;
        self.log_bytes += facts.len() as u64;
        Ok(())
    }

    /// Replaces the snapshot with the one `write` hands over in pieces (the
    /// whole state, the facts not yet checkpointed included; `write`
    /// returns its length), drops the fact log and records the positions
    /// and version, as [`Store::checkpoint`] does: the new file is written
    /// and synced first, then one transaction names it and drops the log,
    /// then the old file is deleted. On an error the checkpoint is
    /// unchanged and the database is closed.
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
        // Reopened first if the last write failed, before a file exists.
        self.db()?;
        let n = self.snapshot_file.map_or(0, |n| n + 1);
        let snapshot_bytes = snapshot_file::write(&self.dir, n, write)?;
        let writing = "naming the snapshot";
        let txn = self.db()?.begin_write().during(writing)?;
        {
            txn.delete_table(FACTS).during(writing)?;
            txn.delete_table(SNAPSHOT).during(writing)?;
            txn.open_table(FACTS).during(writing)?;
            txn.open_table(SNAPSHOT).during(writing)?;
            let stored = StoredCheckpoint {
                positions: stored_positions(positions),
                version,
                next_chunk: 0,
                log_bytes: 0,
                snapshot_bytes,
                snapshot_file: Some(n),
            };
            let mut meta = txn.open_table(META).during(writing)?;
            meta.insert(CHECKPOINT_KEY, encode(&stored)?.as_slice()).during(writing)?;
        }
        // Not committed: the new file is named by nothing and deleted at
        // the next open (a commit that reports an error may still have
        // landed, so it is not deleted here).
        txn.commit().during("committing the snapshot")?;
        self.next_chunk = 0;
        self.log_bytes = 0;
        self.snapshot_bytes = snapshot_bytes;
        self.snapshot_file = Some(n);
        snapshot_file::remove_others(&self.dir, Some(n));
        Ok(())
    }
}

fn stored_positions(positions: &HashMap<SourcePartition, PartitionState>) -> Vec<(String, i32, i64, Option<i64>)> {
    positions.iter().map(|(p, s)| (p.topic.to_string(), p.partition, s.next_offset, s.watermark)).collect()
}

/// `value` (the checkpoint, the identity) as JSON.
fn encode(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::unusable("encoding the checkpoint", e))
}

#[cfg(test)]
mod tests;
