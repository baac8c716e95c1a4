//! The [`Backend`] trait: the storage semantics the API server is written against (etcd's model).
//!
//! Every implementation must pass the `conformance` suite (feature `conformance`) unchanged. Contract, beyond the method docs:
//! - one revision counter for the whole store; each successful write returns a revision greater
//!   than every revision returned before it, and a read at revision `r` sees exactly the writes with
//!   revisions `<= r`;
//! - writes are durable once acknowledged;
//! - a watch delivers every change after its start revision, in revision order, with no gap and no
//!   duplicate, or ends with an error ([`StoreError::Compacted`] if the history it needs is gone);
//!   it never silently skips events.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::StoreError;
use crate::types::{Event, KeyValue, ListResult, Revision};

/// A stream of watch events; it ends after yielding an error.
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

/// A revisioned key-value store with watch.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The latest committed revision (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The value of `key` at the latest revision or at revision `at`; `None` if absent then.
    ///
    /// Errors: [`StoreError::Compacted`] if `at` is older than the compacted revision,
    /// [`StoreError::FutureRevision`] if it is newer than the current one.
    async fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, StoreError>;

    /// Keys with `prefix`, ordered by key, starting strictly after `start_after` if given, at most
    /// `limit` (0 = all), read at `at` (None = latest). Pass the returned `revision` and
    /// `continue_after` to read the next page from the same snapshot.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError>;

    /// How many keys have `prefix`, and the revision the count was taken at.
    async fn count(&self, prefix: &str) -> Result<(i64, Revision), StoreError>;

    /// Creates `key`; [`StoreError::AlreadyExists`] if it exists. With a `ttl`, the store deletes
    /// the key by itself (emitting a delete event) once it expires, also across restarts.
    async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError>;

    /// Replaces `key` if its mod revision is `expected_mod_revision` (compare-and-swap);
    /// [`StoreError::Conflict`] with the current version on mismatch or a missing key. The new
    /// version has `ttl` (none removes an earlier TTL).
    async fn update(
        &self,
        key: &str,
        expected_mod_revision: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError>;

    /// Deletes `key` if its mod revision is `expected_mod_revision` (`None`: unconditionally);
    /// returns the deleted version and the delete's revision. [`StoreError::NotFound`] if absent,
    /// [`StoreError::Conflict`] if the mod revision differs.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError>;

    /// Every change to keys with `prefix` with revision > `after`, in revision order. The stream
    /// ends with `Err(StoreError::Compacted{..})` if `after` is older than the compacted revision
    /// or the watcher fell behind compaction, and with `Err(StoreError::Closed)` when the store
    /// closes. `after` may be in the future: events start once the store reaches it.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Discards history so that revisions `>= keep_after` stay readable and watchable from
    /// `keep_after` on: afterwards reads at `at < keep_after` and watches with
    /// `after < keep_after` fail with `Compacted`. A `keep_after` at or below the compacted
    /// revision is a no-op; above the current revision it is `FutureRevision`. Also returns freed
    /// space to the file system where the backend can.
    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError>;

    /// The revision up to which history has been compacted (0 if never).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Bytes the store occupies (for SQLite: the database file plus its WAL).
    async fn db_size(&self) -> Result<u64, StoreError>;

    /// Stops background work, ends watches with `Closed`, and releases the database. Later calls
    /// fail with [`StoreError::Closed`]. Idempotent.
    async fn close(&self);
}
