//! The one error type of the store, shared by every backend.
//!
//! Variants are split by what the caller does next: the first group are expected outcomes of
//! optimistic concurrency that the API server maps to Kubernetes statuses (`AlreadyExists` → 409,
//! `NotFound` → 404, `Conflict` → 409 or retry, `Compacted` → 410 Gone); `Unavailable` and `Closed`
//! are retryable; the rest are operator problems (a corrupt or locked file, a disk error) that
//! name the file involved. Backend-specific errors are carried as a boxed `#[source]` so the public
//! API does not depend on any database driver.

use std::path::PathBuf;

use crate::types::{KeyValue, Revision};

/// Errors returned by a [`Backend`](crate::Backend).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },

    /// `delete` found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },

    /// A compare-and-swap failed: the key is missing (`current` is `None`) or its mod revision
    /// differs from the expected one (`current` is the version now stored).
    #[error("conflict on key {key:?}: {}", match current {
        Some(kv) => format!("current mod revision is {}", kv.mod_revision),
        None => "the key does not exist".to_owned(),
    })]
    Conflict {
        /// The key.
        key: String,
        /// The version currently stored, if any.
        current: Option<Box<KeyValue>>,
    },

    /// The requested revision has been compacted away, or a watcher fell behind the compacted
    /// revision. The API server answers 410 Gone and the client relists.
    #[error("revision {requested} is too old: the store is compacted up to revision {compacted}")]
    Compacted {
        /// The revision that was asked for (for a watch: the last revision it had delivered).
        requested: Revision,
        /// The store's compacted revision.
        compacted: Revision,
    },

    /// A read or compaction asked for a revision the store has not reached yet.
    #[error("revision {requested} is in the future: the current revision is {current}")]
    FutureRevision {
        /// The revision that was asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },

    /// The key cannot be stored (for example it is empty).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// The database file is damaged or is not a database; it has not been modified.
    #[error("database {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },

    /// The database is readable but was not written by this store (for example a kine `state.db`),
    /// or by a newer version of it; it has not been modified.
    #[error("database {} has an incompatible schema: {reason}", path.display())]
    Incompatible {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// Another process (or another open store in this process) holds the database.
    #[error("database {} is in use by another process (lock file {} is held)", path.display(), lock.display())]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file that is held.
        lock: PathBuf,
    },

    /// A file system operation on the store's files failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "open".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The database reported an error (disk full, I/O error, ...). The source is the driver's error.
    #[error("{backend} error on {}: {source}", path.display())]
    Database {
        /// Which backend, e.g. "sqlite".
        backend: &'static str,
        /// The database file or a password-free description of the server.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The database cannot be reached right now; the operation may be retried.
    #[error("datastore unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// The store was closed (or its worker threads stopped); no further operations are possible.
    #[error("the datastore is closed")]
    Closed,

    /// [`StoreOptions`](crate::StoreOptions) failed validation.
    #[error("invalid datastore options: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidOptions {
        /// Every problem found.
        errors: Vec<crate::options::OptionError>,
    },

    /// The endpoint names a backend this build does not implement yet.
    #[error("datastore backend {kind} is not supported yet")]
    Unsupported {
        /// The backend, e.g. "postgres".
        kind: &'static str,
    },
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
