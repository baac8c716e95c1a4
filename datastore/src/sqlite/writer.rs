//! The single writer: one thread, one connection, group commit.
//!
//! Every mutation of the database goes through this thread, so SQLite never sees two writers and
//! "database is locked" cannot happen between our own connections. The thread blocks for the
//! first message, drains whatever else is queued (up to `max_batch` operations or
//! `max_batch_bytes`), applies them all in one `BEGIN IMMEDIATE` transaction, commits (one fsync
//! with `synchronous=FULL`), publishes the events to the watch hub, and only then replies. So:
//! - a reply of `Ok` means the write is committed (durable) and visible to readers and watchers;
//! - revisions are assigned in commit order, one per write, and published in that order;
//! - a logical failure (conflict, already exists) consumes no revision and does not disturb the
//!   other operations of the batch; a database failure fails the whole batch.
//!
//! The thread also owns TTL expiry (it sleeps until the earliest `expires_at` and deletes expired
//! keys in a write batch, emitting delete events) and runs compaction and space reclamation in
//! small steps between batches, so neither blocks writers for long.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::Shared;
use super::checkpoint::CheckpointMsg;
use super::reader::{current_row, history, sql};
use super::schema::{self, KIND_CREATE, KIND_DELETE, KIND_UPDATE, LogRow, db_err};
use crate::error::StoreError;
use crate::options::{SqliteOptions, StoreOptions};
use crate::types::{Event, KeyValue, Revision};
use crate::watch::WatchHub;

/// A mutation requested by a client.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Create a key that must not exist.
    Create {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    },
    /// Replace a key whose mod revision must be `expected`.
    Update {
        key: String,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    },
    /// Delete a key, if `expected` is given only at that mod revision.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    fn bytes(&self) -> usize {
        match self {
            WriteOp::Create { key, value, .. } | WriteOp::Update { key, value, .. } => {
                key.len() + value.len()
            }
            WriteOp::Delete { key, .. } => key.len(),
        }
    }
}

/// The result of a successful [`WriteOp`].
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    /// The revision of the create or update.
    Written(Revision),
    /// The deleted version and the delete's revision.
    Deleted(KeyValue, Revision),
}

/// Messages to the writer thread.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Apply a client write.
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
    /// Compact one batch towards `target`; replies with the new compacted revision.
    Compact {
        target: Revision,
        reply: oneshot::Sender<Result<Revision, StoreError>>,
    },
    /// Return one chunk of free pages to the file system; replies with the free pages left.
    Reclaim {
        /// The first step after a compaction: reclaim only if it is worth it.
        first: bool,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    /// Checkpoint the WAL completely and truncate it (after compaction); replies whether it
    /// completed (it does not while readers still use old frames).
    Truncate {
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Finish the current batch and exit.
    Shutdown,
}

/// Pages returned to the file system per [`WriterMsg::Reclaim`] (1 MiB at the default page size).
const RECLAIM_PAGES: i64 = 256;
/// Revisions compacted per slice of a compaction step.
const MIN_COMPACT_STEP: i64 = 10;
/// Longest wait of a `TRUNCATE` checkpoint for readers of old WAL frames.
const TRUNCATE_WAIT: Duration = Duration::from_millis(100);
/// Target duration of one compaction step, commit included.
const COMPACT_BUDGET: Duration = Duration::from_millis(10);
/// Free pages tolerated before reclaiming (64 KiB at the default page size): freed pages are reused
/// by later writes, so returning a handful to the file system would only cause churn.
const RECLAIM_THRESHOLD: i64 = 16;
/// Free pages that are always worth reclaiming (32 MiB at the default page size), even when they
/// are less than a quarter of the file.
const RECLAIM_ALWAYS: i64 = 8192;
/// Expired keys deleted per batch.
const EXPIRE_BATCH: i64 = 1000;

/// Wall-clock milliseconds since the Unix epoch (TTL deadlines must survive restarts).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// TTL in whole seconds, rounded up (what `KeyValue::lease_ttl` reports).
fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn expires_at(now: i64, ttl: Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// An error shared by every operation of a failed batch.
#[derive(Debug, Clone)]
struct BatchError(Arc<rusqlite::Error>);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write batch failed: {}", self.0)
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The writer's state: plain data, driven by [`Writer::run`].
pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    rev: Revision,
    compacted: Revision,
    /// Earliest `expires_at` in `current`, if any.
    next_expiry: Option<i64>,
    hub: Arc<WatchHub>,
    shared: Arc<Shared>,
    opts: SqliteOptions,
    batch_revisions: i64,
    /// Revisions per compaction step, adapted to [`COMPACT_BUDGET`] (at most `batch_revisions`).
    compact_step_revs: i64,
    /// Wakes the checkpointer after commits.
    checkpoint: flume::Sender<CheckpointMsg>,
}

type Pending = (WriteOp, oneshot::Sender<Result<WriteOutcome, StoreError>>);

impl Writer {
    /// A writer over `conn`, whose `meta` holds `(rev, compacted)`.
    pub(crate) fn new(
        conn: Connection,
        path: PathBuf,
        (rev, compacted): (Revision, Revision),
        hub: Arc<WatchHub>,
        shared: Arc<Shared>,
        opts: &StoreOptions,
        checkpoint: flume::Sender<CheckpointMsg>,
    ) -> Result<Self, StoreError> {
        let mut w = Writer {
            conn,
            path,
            rev,
            compacted,
            next_expiry: None,
            hub,
            shared,
            opts: opts.sqlite.clone(),
            batch_revisions: opts.compaction.batch_revisions,
            compact_step_revs: opts.compaction.batch_revisions.min(100),
            checkpoint,
        };
        w.next_expiry = w.load_next_expiry().map_err(|e| db_err(&w.path, e))?;
        Ok(w)
    }

    fn load_next_expiry(&self) -> rusqlite::Result<Option<i64>> {
        self.conn
            .prepare_cached(sql::NEXT_EXPIRY)?
            .query_row([], |r| r.get(0))
    }

    /// The thread body: returns when told to shut down or when every sender is gone.
    pub(crate) fn run(mut self, rx: flume::Receiver<WriterMsg>) {
        let span = tracing::info_span!("datastore.writer", path = %self.path.display());
        let _entered = span.enter();
        let mut writes: Vec<Pending> = Vec::new();
        let mut maintenance: Vec<WriterMsg> = Vec::new();
        let mut stop = false;
        while !stop {
            let first = match self.next_expiry {
                Some(at) => {
                    let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                    match rx.recv_timeout(Duration::from_millis(wait)) {
                        Ok(m) => Some(m),
                        Err(flume::RecvTimeoutError::Timeout) => None,
                        Err(flume::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(flume::RecvError::Disconnected) => break,
                },
            };
            let mut bytes = 0;
            let mut next = first;
            // Group commit: take everything already queued, up to the batch limits.
            loop {
                match next.take() {
                    Some(WriterMsg::Write { op, reply }) => {
                        bytes += op.bytes();
                        writes.push((op, reply));
                    }
                    Some(WriterMsg::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Some(m) => maintenance.push(m),
                    None => {}
                }
                if writes.len() >= self.opts.max_batch || bytes >= self.opts.max_batch_bytes {
                    break;
                }
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(_) => break,
                }
            }
            let expiry_due = self.next_expiry.is_some_and(|at| at <= now_ms());
            if !writes.is_empty() || expiry_due {
                self.commit_batch(&mut writes);
            }
            for m in maintenance.drain(..) {
                self.maintain(m);
            }
        }
        // Leave a clean file behind: everything in the main database, an empty WAL.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
        {
            tracing::warn!(path = %self.path.display(), error = %e, "final checkpoint failed");
        }
        tracing::debug!(path = %self.path.display(), rev = self.rev, "sqlite writer stopped");
    }

    fn maintain(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Compact { target, reply } => {
                let r = self.compact_step(target);
                let _ = reply.send(r);
            }
            WriterMsg::Reclaim { first, reply } => {
                let r = self.reclaim(first).map_err(|e| db_err(&self.path, e));
                let _ = reply.send(r);
            }
            WriterMsg::Truncate { reply } => {
                let r = self.truncate().map_err(|e| db_err(&self.path, e));
                let _ = reply.send(r);
            }
            // Handled by the batching loop.
            WriterMsg::Write { .. } | WriterMsg::Shutdown => {}
        }
    }

    /// Applies `writes` (and due expiries) in one transaction, publishes, replies.
    fn commit_batch(&mut self, writes: &mut Vec<Pending>) {
        let now = now_ms();
        let expire = self.next_expiry.is_some_and(|at| at <= now);
        let mut events = Vec::with_capacity(writes.len());
        let mut results = Vec::with_capacity(writes.len());
        let mut rev = self.rev;
        let mut min_expiry: Option<i64> = None;
        let outcome = (|| -> rusqlite::Result<()> {
            let txn = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if expire {
                expire_keys(&txn, now, &mut rev, &mut events)?;
            }
            for (op, _) in writes.iter() {
                if let WriteOp::Create { ttl: Some(ttl), .. }
                | WriteOp::Update { ttl: Some(ttl), .. } = op
                {
                    let at = expires_at(now, *ttl);
                    min_expiry = Some(min_expiry.map_or(at, |m: i64| m.min(at)));
                }
                results.push(apply(&txn, op, now, &mut rev, &mut events)?);
            }
            if rev != self.rev {
                txn.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([rev])?;
            }
            txn.commit()
        })();
        match outcome {
            Ok(()) => {
                self.rev = rev;
                self.shared.rev.store(rev, Ordering::Release);
                if expire {
                    match self.load_next_expiry() {
                        Ok(n) => self.next_expiry = n,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading next TTL expiry failed; retrying in 1s");
                            self.next_expiry = Some(now + 1000);
                        }
                    }
                }
                if let Some(m) = min_expiry {
                    self.next_expiry = Some(self.next_expiry.map_or(m, |n| n.min(m)));
                }
                if !events.is_empty() {
                    self.hub.publish(events, rev);
                }
                if !self.shared.checkpoint_pending.swap(true, Ordering::AcqRel) {
                    let _ = self.checkpoint.send(CheckpointMsg::Committed);
                }
                for ((_, reply), result) in writes.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, ops = writes.len(), "write batch failed");
                let shared = BatchError(Arc::new(e));
                for (_, reply) in writes.drain(..) {
                    let err = StoreError::Database {
                        backend: "sqlite",
                        path: self.path.clone(),
                        source: Box::new(shared.clone()),
                    };
                    let _ = reply.send(Err(err));
                }
                self.resync_after_failure();
            }
        }
    }

    /// After a failed commit, make sure our revision matches the database (SQLite rolls back a
    /// failed commit; if it nonetheless advanced, publish what it holds so watchers see no gap).
    fn resync_after_failure(&mut self) {
        let stored = match schema::read_meta(&self.conn) {
            Ok((rev, _)) => rev,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the store revision after a failed batch");
                return;
            }
        };
        if stored > self.rev {
            match history(&self.conn, &self.path, "", self.rev, stored, usize::MAX) {
                Ok(Ok(page)) => {
                    self.rev = stored;
                    self.shared.rev.store(stored, Ordering::Release);
                    self.hub.publish(page.events, stored);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot publish writes of a failed batch")
                }
                Err(e) => tracing::error!(error = %e, "cannot publish writes of a failed batch"),
            }
        }
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`, waiting at most [`TRUNCATE_WAIT`] for readers of old
    /// frames (queued writers wait meanwhile; if readers stay, truncation waits for next time).
    fn truncate(&mut self) -> rusqlite::Result<bool> {
        self.conn.busy_timeout(TRUNCATE_WAIT)?;
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn.busy_timeout(Duration::from_secs(5))?;
        let busy = busy?;
        if busy != 0 {
            tracing::debug!("WAL truncation postponed: readers still use old frames");
        }
        Ok(busy == 0)
    }

    /// Compacts one step (at most `batch_revisions` revisions) towards `target`.
    fn compact_step(&mut self, target: Revision) -> Result<Revision, StoreError> {
        if target > self.rev {
            return Err(StoreError::FutureRevision {
                requested: target,
                current: self.rev,
            });
        }
        if target <= self.compacted {
            return Ok(self.compacted);
        }
        let from = self.compacted;
        let to = target.min(from.saturating_add(self.compact_step_revs));
        let started = std::time::Instant::now();
        let r = (|| -> rusqlite::Result<()> {
            let txn = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            compact_range(&txn, from, to)?;
            txn.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")?
                .execute([to])?;
            txn.commit()
        })();
        r.map_err(|e| db_err(&self.path, e))?;
        // Queued writers wait for a whole step, commit (fsync) included: adapt the step size so
        // a step takes about COMPACT_BUDGET on this machine's disk.
        let took = started.elapsed();
        if took > COMPACT_BUDGET * 2 {
            self.compact_step_revs = (self.compact_step_revs / 2).max(MIN_COMPACT_STEP);
        } else if took < COMPACT_BUDGET / 2 {
            self.compact_step_revs = (self.compact_step_revs * 2).min(self.batch_revisions);
        }
        self.compacted = to;
        self.shared.compacted.store(to, Ordering::Release);
        Ok(to)
    }

    /// Returns up to [`RECLAIM_PAGES`] free pages to the file system (the file shrinks at the next
    /// checkpoint). Returns the free pages remaining, 0 when done.
    ///
    /// With `first`, decides whether reclaiming is worth it at all: only when free pages are a
    /// large share of the file. A steady write load frees and reuses about the same number of
    /// pages between compactions; moving them out of the file each time would only add I/O.
    fn reclaim(&mut self, first: bool) -> rusqlite::Result<i64> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let worth_it = !first || {
            let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            free.saturating_mul(4) >= pages || free >= RECLAIM_ALWAYS
        };
        if worth_it && free > RECLAIM_THRESHOLD {
            // The pragma frees one page per step (each step returns a row): run it to the end.
            let mut stmt = self
                .conn
                .prepare_cached(&format!("PRAGMA incremental_vacuum({RECLAIM_PAGES})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            drop(rows);
            drop(stmt);
            let left: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if left > RECLAIM_THRESHOLD {
                return Ok(left);
            }
        }
        Ok(0)
    }
}

/// Deletes superseded versions and tombstones with revisions in `(from, to]`.
///
/// A version is superseded when a newer write to the same key exists at or below `to`; that
/// newer row names it in `prev_rev`, so everything is deleted by primary key. What stays is, per
/// key, the newest version at or below `to` (unless deleted) and everything above `to`, so reads
/// at any revision `>= to` and watches from `to` keep working.
fn compact_range(txn: &Transaction<'_>, from: Revision, to: Revision) -> rusqlite::Result<()> {
    let doomed: Vec<Revision> = {
        let mut stmt = txn.prepare_cached(sql::COMPACT_RANGE)?;
        let rows = stmt.query_map([from, to], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut doomed = Vec::new();
        for row in rows {
            let (rev, kind, prev) = row?;
            if prev > 0 {
                doomed.push(prev);
            }
            if kind == KIND_DELETE {
                doomed.push(rev);
            }
        }
        doomed
    };
    let mut doomed = doomed;
    // In table order: neighbouring rows share pages.
    doomed.sort_unstable();
    let mut del = txn.prepare_cached("DELETE FROM log WHERE rev = ?1")?;
    for rev in doomed {
        del.execute([rev])?;
    }
    Ok(())
}

/// Deletes keys whose TTL has passed (at most [`EXPIRE_BATCH`] per call).
fn expire_keys(
    txn: &Transaction<'_>,
    now: i64,
    rev: &mut Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<()> {
    let keys: Vec<String> = txn
        .prepare_cached(sql::EXPIRED)?
        .query_map(params![now, EXPIRE_BATCH], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for key in keys {
        if let Some(prev) = current_row(txn, &key)? {
            delete_row(txn, prev, rev, events)?;
        }
    }
    Ok(())
}

/// A `log` row to insert.
struct NewRow<'a> {
    rev: Revision,
    key: &'a str,
    kind: i64,
    create_rev: Revision,
    prev_rev: Revision,
    lease: Option<i64>,
    value: Option<&'a [u8]>,
}

fn insert_log(txn: &Transaction<'_>, r: NewRow<'_>) -> rusqlite::Result<()> {
    txn.prepare_cached(
        "INSERT INTO log (rev, key, kind, create_rev, prev_rev, lease, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![r.rev, r.key, r.kind, r.create_rev, r.prev_rev, r.lease, r.value])?;
    Ok(())
}

fn delete_row(
    txn: &Transaction<'_>,
    prev: LogRow,
    rev: &mut Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<KeyValue> {
    *rev += 1;
    let row = NewRow {
        rev: *rev,
        key: &prev.key,
        kind: KIND_DELETE,
        create_rev: prev.create_rev,
        prev_rev: prev.rev,
        lease: None,
        value: None,
    };
    insert_log(txn, row)?;
    txn.prepare_cached("DELETE FROM current WHERE key = ?1")?
        .execute([&prev.key])?;
    let prev = prev.into_kv();
    events.push(Event::Delete {
        prev: prev.clone(),
        revision: *rev,
    });
    Ok(prev)
}

/// Applies one client operation. The outer error aborts the batch; the inner one is the
/// operation's own (logical) failure, which writes nothing.
fn apply(
    txn: &Transaction<'_>,
    op: &WriteOp,
    now: i64,
    rev: &mut Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<Result<WriteOutcome, StoreError>> {
    let upsert_current = |key: &str,
                          mod_rev: Revision,
                          ttl: Option<Duration>|
     -> rusqlite::Result<()> {
        txn.prepare_cached(
            "INSERT INTO current (key, mod_rev, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT(key) DO UPDATE SET mod_rev = excluded.mod_rev, expires_at = excluded.expires_at",
        )?
        .execute(params![key, mod_rev, ttl.map(|t| expires_at(now, t))])?;
        Ok(())
    };
    match op {
        WriteOp::Create { key, value, ttl } => {
            let exists = txn
                .prepare_cached("SELECT 1 FROM current WHERE key = ?1")?
                .query_row([key], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            *rev += 1;
            let lease = ttl.map(ttl_secs);
            let row = NewRow {
                rev: *rev,
                key,
                kind: KIND_CREATE,
                create_rev: *rev,
                prev_rev: 0,
                lease,
                value: Some(value),
            };
            insert_log(txn, row)?;
            upsert_current(key, *rev, *ttl)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: *rev,
                mod_revision: *rev,
                lease_ttl: lease,
            };
            events.push(Event::Put { kv, prev: None });
            Ok(Ok(WriteOutcome::Written(*rev)))
        }
        WriteOp::Update {
            key,
            expected,
            value,
            ttl,
        } => {
            let Some(prev) = current_row(txn, key)? else {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    current: None,
                }));
            };
            if prev.rev != *expected {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    current: Some(Box::new(prev.into_kv())),
                }));
            }
            *rev += 1;
            let lease = ttl.map(ttl_secs);
            let row = NewRow {
                rev: *rev,
                key,
                kind: KIND_UPDATE,
                create_rev: prev.create_rev,
                prev_rev: prev.rev,
                lease,
                value: Some(value),
            };
            insert_log(txn, row)?;
            upsert_current(key, *rev, *ttl)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_rev,
                mod_revision: *rev,
                lease_ttl: lease,
            };
            events.push(Event::Put {
                kv,
                prev: Some(prev.into_kv()),
            });
            Ok(Ok(WriteOutcome::Written(*rev)))
        }
        WriteOp::Delete { key, expected } => {
            let Some(prev) = current_row(txn, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if expected.is_some_and(|e| e != prev.rev) {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    current: Some(Box::new(prev.into_kv())),
                }));
            }
            let prev = delete_row(txn, prev, rev, events)?;
            Ok(Ok(WriteOutcome::Deleted(prev, *rev)))
        }
    }
}
