//! Why a store operation failed, and what the caller does about it: retry
//! ([`StoreError::Refused`]), or rebuild the store from the facts partition
//! (the other two).

use std::error::Error;
use std::io;

/// The cause of a failure, whatever library it came from.
type Cause = Box<dyn Error + Send + Sync>;

/// A failed store operation. The message says what was being done (with
/// the path); the cause is the [`Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system refused a read or a write (a full disk, an I/O
    /// error). The store is intact as of its last checkpoint: retry, never
    /// discard it.
    #[error("{during}")]
    Refused {
        /// What was being done.
        during: String,
        /// The I/O error.
        #[source]
        cause: Cause,
    },
    /// The store cannot be used: a corrupt or cut-short file, a checkpoint
    /// or fact that does not decode, a snapshot file the checkpoint names
    /// that is missing. Rebuild it from the facts partition.
    #[error("{during}")]
    Unusable {
        /// What was being done.
        during: String,
        /// What was wrong.
        #[source]
        cause: Cause,
    },
    /// The store was written by another d06 version (its format) or for
    /// other facts (another geography, key, time zone or facts topic): the
    /// message says which and what to do.
    #[error("{0}")]
    Foreign(String),
}

impl StoreError {
    /// Whether retrying the operation may succeed ([`StoreError::Refused`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Refused { .. })
    }

    /// An I/O error while `during`: refused, unless it says the file is
    /// short or garbled.
    pub(crate) fn io(during: impl Into<String>, cause: io::Error) -> Self {
        let during = during.into();
        match refused(&cause) {
            true => StoreError::Refused { during, cause: cause.into() },
            false => StoreError::Unusable { during, cause: cause.into() },
        }
    }

    /// A redb error while `during`: refused when it is the file system's,
    /// unusable otherwise.
    pub(crate) fn db(during: impl Into<String>, cause: impl Into<redb::Error>) -> Self {
        let (during, cause) = (during.into(), cause.into());
        // redb folds every wrapper's storage I/O error into `Io`. After one,
        // the database refuses everything (`PreviousIo`) until reopened,
        // which the next attempt does.
        let is_refused = match &cause {
            redb::Error::Io(e) => refused(e),
            redb::Error::PreviousIo => true,
            _ => false,
        };
        match is_refused {
            true => StoreError::Refused { during, cause: cause.into() },
            false => StoreError::Unusable { during, cause: cause.into() },
        }
    }

    /// Something read back that does not decode, while `during`.
    pub(crate) fn unusable(during: impl Into<String>, cause: impl Into<Cause>) -> Self {
        StoreError::Unusable { during: during.into(), cause: cause.into() }
    }
}

/// Whether an I/O error is the file system refusing. A short or garbled
/// file (a store whose creation a full disk cut off) is unusable instead:
/// rebuilt, never retried for ever.
fn refused(e: &io::Error) -> bool {
    !matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData)
}
