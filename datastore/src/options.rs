//! Tuning knobs of the store, grouped per concern, with defaults fit for a single K3s server.
//!
//! Every field has a safe default; [`StoreOptions::validate`] reports all bad values at once.

use std::time::Duration;

/// Options for [`open`](crate::open).
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Automatic compaction.
    pub compaction: CompactionOptions,
    /// Watch buffering.
    pub watch: WatchOptions,
    /// SQLite specifics.
    pub sqlite: SqliteOptions,
    /// TLS files for an external datastore (`--datastore-cafile/-certfile/-keyfile`).
    pub tls: crate::sql::TlsFiles,
}

/// Automatic, store-owned compaction (the API server may also call `compact` itself).
#[derive(Clone, Debug)]
pub struct CompactionOptions {
    /// How often the background compactor runs; `None` disables it.
    pub interval: Option<Duration>,
    /// Never compact the most recent this-many revisions.
    pub min_retain_revisions: i64,
    /// Never compact revisions written less than this long ago (measured while the store runs).
    pub retain_for: Duration,
    /// Most revisions compacted per write transaction. The store adapts the actual step size to
    /// the disk (about 10 ms per step, commit included), so writers are never blocked for long.
    pub batch_revisions: i64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            interval: Some(Duration::from_secs(60)),
            min_retain_revisions: 1000,
            retain_for: Duration::from_secs(300),
            batch_revisions: 1000,
        }
    }
}

/// Watch fan-out buffering.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Recent events kept in memory for all watchers to read. A watcher that falls further behind
    /// reads history from the database instead, and fails with `Compacted` only if that history is
    /// gone.
    pub buffer_events: usize,
    /// Upper bound of the in-memory buffer in bytes (keys + values + previous values).
    pub buffer_bytes: usize,
    /// Events read from the database per query when a watcher catches up from history.
    pub history_page: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            buffer_events: 8192,
            buffer_bytes: 64 << 20,
            history_page: 1000,
        }
    }
}

/// How far a committed SQLite write survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an acknowledged write survives
    /// power loss. Group commit amortises the fsync over all concurrent writers.
    #[default]
    Full,
    /// `synchronous=NORMAL` with WAL: an acknowledged write survives a process crash but the last
    /// commits may be lost on power loss (the WAL is fsynced only at checkpoints).
    Normal,
}

/// SQLite backend options.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Reader connections (each on its own thread).
    pub readers: usize,
    /// Most write operations committed in one transaction (group commit).
    pub max_batch: usize,
    /// Most value bytes committed in one transaction.
    pub max_batch_bytes: usize,
    /// Commit durability.
    pub durability: Durability,
    /// Run `PRAGMA quick_check` when opening an existing file (reads the whole file once).
    pub check_on_open: bool,
    /// Page cache per connection, in KiB.
    pub cache_kib: i64,
    /// Bytes of the file each connection reads through `mmap` instead of `read` (0 disables).
    /// The mapping shares the OS page cache between connections, so large lists do not need a
    /// private page cache per reader.
    pub mmap_bytes: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            max_batch: 512,
            max_batch_bytes: 16 << 20,
            durability: Durability::Full,
            check_on_open: true,
            cache_kib: 8 * 1024,
            mmap_bytes: 1 << 30,
        }
    }
}

/// A bad option value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid datastore option {field}: {reason}")]
pub struct OptionError {
    /// The option, e.g. `sqlite.readers`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl StoreOptions {
    /// Checks every option and returns all problems found.
    pub fn validate(&self) -> Result<(), Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &'static str, reason: &'static str| {
            if !ok {
                errors.push(OptionError { field, reason });
            }
        };
        check(
            self.compaction.interval.is_none_or(|i| !i.is_zero()),
            "compaction.interval",
            "must be positive (use None to disable)",
        );
        check(
            self.compaction.min_retain_revisions >= 0,
            "compaction.min_retain_revisions",
            "must not be negative",
        );
        check(
            self.compaction.batch_revisions > 0,
            "compaction.batch_revisions",
            "must be positive",
        );
        check(
            self.watch.buffer_events > 0,
            "watch.buffer_events",
            "must be positive",
        );
        check(
            self.watch.buffer_bytes > 0,
            "watch.buffer_bytes",
            "must be positive",
        );
        check(
            self.watch.history_page > 0,
            "watch.history_page",
            "must be positive",
        );
        check(
            self.sqlite.readers > 0,
            "sqlite.readers",
            "must be positive",
        );
        check(
            self.sqlite.max_batch > 0,
            "sqlite.max_batch",
            "must be positive",
        );
        check(
            self.sqlite.max_batch_bytes > 0,
            "sqlite.max_batch_bytes",
            "must be positive",
        );
        check(
            self.sqlite.cache_kib >= 0,
            "sqlite.cache_kib",
            "must not be negative",
        );
        check(
            self.sqlite.mmap_bytes >= 0,
            "sqlite.mmap_bytes",
            "must not be negative",
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(StoreOptions::default().validate(), Ok(()));
    }

    #[test]
    fn all_errors_are_reported() {
        let mut o = StoreOptions::default();
        o.sqlite.readers = 0;
        o.watch.buffer_events = 0;
        let errs = o.validate().err().unwrap_or_default();
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["watch.buffer_events", "sqlite.readers"]);
    }
}
