//! A shard's snapshot in a file of its own beside the redb store (store
//! format 3): `snapshot-{n}.d06snap`, named by the checkpoint that commits
//! it.
//!
//! Before, the snapshot was a redb table: a compaction wrote the new one
//! while the old one and the log were still committed (copy-on-write), and
//! the file kept the freed pages for reuse, so a store reached about three
//! snapshots (BENCHMARKS.md, "Snapshots"). A file of its own is deleted as
//! soon as the checkpoint naming its successor has committed.
//!
//! Crash safety: a snapshot file is written and synced, with its directory
//! entry, before the checkpoint that names it commits; a crash in between
//! leaves a file no checkpoint names, which the next open deletes
//! ([`remove_others`]). A named file that is missing makes the store
//! unusable (rebuilt from the facts partition), never an I/O failure to
//! retry for ever.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Pieces, Result, StoreError};

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".d06snap";

/// The path of snapshot `n` in `dir`.
pub fn path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{n}{SUFFIX}"))
}

/// Writes snapshot `n` from the pieces `write` hands over (it returns the
/// length), synced with its directory entry. On an error the partial file
/// is removed.
pub fn write(dir: &Path, n: u64, write: impl FnOnce(&mut Pieces<'_>) -> u64) -> Result<u64> {
    let path = path(dir, n);
    let written = write_synced(&path, write);
    if written.is_err() {
        // Best effort: a file left behind is named by no checkpoint and
        // removed at the next open.
        let _ = std::fs::remove_file(&path);
    }
    written
}

fn write_synced(path: &Path, write: impl FnOnce(&mut Pieces<'_>) -> u64) -> Result<u64> {
    let mut file =
        File::create(path).map_err(|e| StoreError::io(format!("creating snapshot file {}", path.display()), e))?;
    let mut failed = None;
    let len = write(&mut |piece| {
        if failed.is_none() {
            failed = file.write_all(piece).err();
        }
    });
    if let Some(error) = failed {
        return Err(StoreError::io(format!("writing snapshot file {}", path.display()), error));
    }
    file.sync_all().map_err(|e| StoreError::io(format!("syncing snapshot file {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))?;
    }
    Ok(len)
}

/// Reads snapshot `n`. A missing file is an unusable store, not an I/O
/// failure (module docs).
pub fn read(dir: &Path, n: u64) -> Result<Vec<u8>> {
    let path = path(dir, n);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::unusable(
            format!("reading snapshot file {}", path.display()),
            "the file named by the checkpoint is missing",
        )),
        Err(error) => Err(StoreError::io(format!("reading snapshot file {}", path.display()), error)),
    }
}

/// Deletes every snapshot file in `dir` but `keep` (files of compactions
/// cut off, or superseded). A file that cannot be deleted costs disk only:
/// it is logged and tried again at the next open.
pub fn remove_others(dir: &Path, keep: Option<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let n = name.to_str().and_then(|n| n.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse::<u64>().ok());
        if n.is_some() && n != keep {
            if let Err(error) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), %error, "could not remove an old snapshot file");
            }
        }
    }
}
