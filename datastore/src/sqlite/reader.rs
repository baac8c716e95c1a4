//! Reads: a pool of reader connections on dedicated threads, and the read queries.
//!
//! Each job runs inside one read transaction, so everything it returns (rows, the revision it
//! read at, the compacted revision it checked) comes from one snapshot. WAL mode lets readers run
//! concurrently with the single writer without blocking it. Tokio workers only await a oneshot.
//!
//! Reads at the latest revision use the `current` table; reads at an older revision walk the
//! `(key, rev)` index of `log`, whose per-key history is bounded by compaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::Shared;
use super::schema::{self, KIND_CREATE, KIND_DELETE, LogRow, db_err};
use crate::error::StoreError;
use crate::options::SqliteOptions;
use crate::types::{Event, KeyValue, ListResult, Revision, prefix_end};
use crate::watch::{HistoryPage, HistorySource};

/// The read queries, kept together so tests can check their plans (none may scan `log`).
pub(crate) mod sql {
    /// The live version of a key.
    pub(crate) const CURRENT_ROW: &str = "SELECT l.rev, l.key, l.kind, l.create_rev, l.prev_rev, l.lease, l.value \
         FROM current c JOIN log l ON l.rev = c.mod_rev WHERE c.key = ?1";
    /// The version of key ?1 at revision ?2 (possibly a delete).
    pub(crate) const GET_AT: &str = "SELECT rev, key, kind, create_rev, prev_rev, lease, value \
         FROM log INDEXED BY log_key WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1";
    /// One row by revision.
    pub(crate) const FETCH_REV: &str =
        "SELECT rev, key, kind, create_rev, prev_rev, lease, value FROM log WHERE rev = ?1";
    /// Live keys in [?1, ?2), ?3 at most.
    pub(crate) const LIST_CURRENT_FROM: &str = "SELECT l.rev, l.key, l.kind, l.create_rev, l.prev_rev, l.lease, l.value \
         FROM current c JOIN log l ON l.rev = c.mod_rev \
         WHERE c.key >= ?1 AND c.key < CAST(?2 AS TEXT) ORDER BY c.key LIMIT ?3";
    /// Live keys in (?1, ?2), ?3 at most.
    pub(crate) const LIST_CURRENT_AFTER: &str = "SELECT l.rev, l.key, l.kind, l.create_rev, l.prev_rev, l.lease, l.value \
         FROM current c JOIN log l ON l.rev = c.mod_rev \
         WHERE c.key > ?1 AND c.key < CAST(?2 AS TEXT) ORDER BY c.key LIMIT ?3";
    /// (key, rev) of versions at or below ?3 for keys in [?1, ?2), in index order.
    pub(crate) const LIST_AT_FROM: &str = "SELECT key, rev FROM log INDEXED BY log_key WHERE key >= ?1 AND key < CAST(?2 AS TEXT) AND rev <= ?3 ORDER BY key, rev";
    /// (key, rev) of versions at or below ?3 for keys in (?1, ?2), in index order.
    pub(crate) const LIST_AT_AFTER: &str = "SELECT key, rev FROM log INDEXED BY log_key WHERE key > ?1 AND key < CAST(?2 AS TEXT) AND rev <= ?3 ORDER BY key, rev";
    /// Live keys in [?1, ?2).
    pub(crate) const COUNT: &str =
        "SELECT count(*) FROM current WHERE key >= ?1 AND key < CAST(?2 AS TEXT)";
    /// Writes with revision in (?1, ?2] to keys in [?3, ?4), ?5 at most. `+key` keeps SQLite on
    /// the primary-key range, which yields rows in revision order.
    pub(crate) const HISTORY: &str = "SELECT rev, key, kind, create_rev, prev_rev, lease, value FROM log \
         WHERE rev > ?1 AND rev <= ?2 AND +key >= ?3 AND +key < CAST(?4 AS TEXT) ORDER BY rev LIMIT ?5";
    /// Keys whose TTL passed by ?1, earliest first, ?2 at most (writer).
    pub(crate) const EXPIRED: &str =
        "SELECT key FROM current WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2";
    /// The earliest TTL deadline (writer).
    pub(crate) const NEXT_EXPIRY: &str =
        "SELECT min(expires_at) FROM current WHERE expires_at IS NOT NULL";
    /// Writes with revision in (?1, ?2], for compaction (writer).
    pub(crate) const COMPACT_RANGE: &str =
        "SELECT rev, kind, prev_rev FROM log WHERE rev > ?1 AND rev <= ?2";
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Read jobs queued in front of the readers; callers wait (asynchronously) when it is full.
const READ_QUEUE: usize = 1024;

/// Reader threads, each owning one connection, taking jobs from one queue.
pub(crate) struct ReaderPool {
    path: PathBuf,
    jobs: Mutex<Option<flume::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReaderPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderPool")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReaderPool {
    /// Opens `opts.readers` connections (failing fast) and starts their threads.
    pub(crate) fn start(path: &Path, opts: &SqliteOptions) -> Result<Arc<Self>, StoreError> {
        let conns = (0..opts.readers)
            .map(|_| schema::open_reader(path, opts))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = flume::bounded::<Job>(READ_QUEUE);
        let mut threads = Vec::with_capacity(conns.len());
        for (i, mut conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    let _span = tracing::info_span!("datastore.reader", reader = i).entered();
                    while let Ok(job) = rx.recv() {
                        // A panicking job drops its reply (the caller sees `Closed`) and rolls
                        // its transaction back; the thread and its connection keep serving.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job(&mut conn);
                        }));
                        if ran.is_err() {
                            tracing::error!("datastore read job panicked");
                        }
                    }
                })
                .map_err(|source| StoreError::Io {
                    op: "spawn reader thread for",
                    path: path.to_owned(),
                    source,
                })?;
            threads.push(handle);
        }
        Ok(Arc::new(ReaderPool {
            path: path.to_owned(),
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }))
    }

    /// Runs `f` in a read transaction on a reader thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<Result<T, StoreError>> + Send + 'static,
    {
        let sender = self.jobs.lock().clone().ok_or(StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let path = self.path.clone();
        let job: Job = Box::new(move |conn| {
            let result = conn
                .transaction()
                .and_then(|txn| {
                    let out = f(&txn)?;
                    // Read-only: ending the transaction cannot lose anything.
                    txn.finish()?;
                    Ok(out)
                })
                .unwrap_or_else(|e| Err(db_err(&path, e)));
            // The caller may have gone away; nothing to do then.
            let _ = tx.send(result);
        });
        sender
            .send_async(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting jobs; threads finish queued jobs and exit. Returns them for joining.
    pub(crate) fn shutdown(&self) -> Vec<JoinHandle<()>> {
        self.jobs.lock().take();
        std::mem::take(&mut *self.threads.lock())
    }
}

/// Checks `at` against the snapshot's revision bounds; returns the revision to read at.
fn read_revision(
    txn: &Transaction<'_>,
    at: Option<Revision>,
) -> rusqlite::Result<Result<(Revision, bool), StoreError>> {
    let (current, compacted) = schema::read_meta(txn)?;
    Ok(match at {
        None => Ok((current, true)),
        Some(r) if r > current => Err(StoreError::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok((r, r == current)),
    })
}

/// Upper bound for keys with `prefix`, as a blob compared as text (see `CAST` in the queries).
fn upper_bound(prefix: &str) -> Vec<u8> {
    // 0xFF sorts after every UTF-8 string.
    prefix_end(prefix).unwrap_or_else(|| vec![0xFF])
}

/// The lower bound of a list: `(bound, inclusive)`.
fn lower_bound<'a>(prefix: &'a str, start_after: Option<&'a str>) -> (&'a str, bool) {
    match start_after {
        Some(s) if s >= prefix => (s, false),
        _ => (prefix, true),
    }
}

/// The latest version of `key` at revision `at`.
pub(crate) fn get(
    txn: &Transaction<'_>,
    key: &str,
    at: Option<Revision>,
) -> rusqlite::Result<Result<Option<KeyValue>, StoreError>> {
    let (rev, latest) = match read_revision(txn, at)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let row = if latest {
        current_row(txn, key)?
    } else {
        txn.prepare_cached(sql::GET_AT)?
            .query_row(params![key, rev], LogRow::from_row)
            .optional()?
            .filter(|r| r.kind != KIND_DELETE)
    };
    Ok(Ok(row.map(LogRow::into_kv)))
}

/// The live version of `key` from `current`.
pub(crate) fn current_row(conn: &Connection, key: &str) -> rusqlite::Result<Option<LogRow>> {
    conn.prepare_cached(sql::CURRENT_ROW)?
        .query_row([key], LogRow::from_row)
        .optional()
}

/// A page of keys with `prefix`.
pub(crate) fn list(
    txn: &Transaction<'_>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: Option<Revision>,
) -> rusqlite::Result<Result<ListResult, StoreError>> {
    let (rev, latest) = match read_revision(txn, at)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let (lower, inclusive) = lower_bound(prefix, start_after);
    let upper = upper_bound(prefix);
    // One extra row tells whether more follow.
    let want = if limit == 0 { usize::MAX } else { limit + 1 };
    let mut items = Vec::new();
    if latest {
        let sql = if inclusive {
            sql::LIST_CURRENT_FROM
        } else {
            sql::LIST_CURRENT_AFTER
        };
        let sql_limit = i64::try_from(want).unwrap_or(-1);
        let mut stmt = txn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![lower, upper, sql_limit], LogRow::from_row)?;
        for row in rows {
            items.push(row?.into_kv());
        }
    } else {
        // Walk the (key, rev) index in order; the last row <= rev of each key is its version at
        // `rev`. Stops as soon as the page is full.
        let mut scan = txn.prepare_cached(if inclusive {
            sql::LIST_AT_FROM
        } else {
            sql::LIST_AT_AFTER
        })?;
        let mut rows = scan.query(params![lower, upper, rev])?;
        let mut fetch = txn.prepare_cached(sql::FETCH_REV)?;
        let mut candidate: Option<(String, Revision)> = None;
        let mut emit = |key_rev: Option<(String, Revision)>,
                        items: &mut Vec<KeyValue>|
         -> rusqlite::Result<()> {
            if let Some((_, r)) = key_rev
                && let Some(row) = fetch.query_row([r], LogRow::from_row).optional()?
                && row.kind != KIND_DELETE
            {
                items.push(row.into_kv());
            }
            Ok(())
        };
        while items.len() < want {
            let Some(row) = rows.next()? else {
                emit(candidate.take(), &mut items)?;
                break;
            };
            let key: String = row.get(0)?;
            let r: Revision = row.get(1)?;
            match &mut candidate {
                Some((k, cr)) if *k == key => *cr = r,
                _ => {
                    emit(candidate.replace((key, r)), &mut items)?;
                }
            }
        }
    }
    let more = items.len() > limit && limit > 0;
    if more {
        items.truncate(limit);
    }
    let continue_after = if more {
        items.last().map(|kv| kv.key.clone())
    } else {
        None
    };
    Ok(Ok(ListResult {
        items,
        revision: rev,
        more,
        continue_after,
    }))
}

/// Number of live keys with `prefix` and the revision counted at.
pub(crate) fn count(txn: &Transaction<'_>, prefix: &str) -> rusqlite::Result<(i64, Revision)> {
    let (rev, _) = schema::read_meta(txn)?;
    let n = txn
        .prepare_cached(sql::COUNT)?
        .query_row(params![prefix, upper_bound(prefix)], |r| r.get(0))?;
    Ok((n, rev))
}

/// Events for `prefix` with revision in `(after, up_to]`, at most `limit`.
pub(crate) fn history(
    conn: &Connection,
    path: &Path,
    prefix: &str,
    after: Revision,
    up_to: Revision,
    limit: usize,
) -> rusqlite::Result<Result<HistoryPage, StoreError>> {
    let (_, compacted) = schema::read_meta(conn)?;
    if after < compacted {
        return Ok(Err(StoreError::Compacted {
            requested: after,
            compacted,
        }));
    }
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<LogRow> = conn
        .prepare_cached(sql::HISTORY)?
        .query_map(
            params![after, up_to, prefix, upper_bound(prefix), sql_limit],
            LogRow::from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let scanned_to = if rows.len() == limit {
        rows.last().map_or(up_to, |r| r.rev)
    } else {
        up_to
    };
    let mut fetch = conn.prepare_cached(sql::FETCH_REV)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let prev = if row.kind == KIND_CREATE || row.prev_rev == 0 {
            None
        } else {
            fetch
                .query_row([row.prev_rev], LogRow::from_row)
                .optional()?
                .map(LogRow::into_kv)
        };
        let event = if row.kind == KIND_DELETE {
            let Some(prev) = prev else {
                // Compaction keeps the version a retained delete replaced, so this is damage.
                return Ok(Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: format!(
                        "delete at revision {} lost its previous version {}",
                        row.rev, row.prev_rev
                    ),
                }));
            };
            Event::Delete {
                prev,
                revision: row.rev,
            }
        } else {
            Event::Put {
                kv: row.into_kv(),
                prev,
            }
        };
        events.push(event);
    }
    Ok(Ok(HistoryPage { events, scanned_to }))
}

/// The SQLite history source for the watch hub.
pub(crate) struct SqliteHistory {
    pub readers: Arc<ReaderPool>,
    pub shared: Arc<Shared>,
}

impl HistorySource for SqliteHistory {
    fn read_history<'a>(
        &'a self,
        prefix: &'a str,
        after: Revision,
        up_to: Revision,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let prefix = prefix.to_owned();
        let path = self.readers.path.clone();
        Box::pin(
            self.readers
                .run(move |txn| history(txn, &path, &prefix, after, up_to, limit)),
        )
    }

    fn compacted(&self) -> Revision {
        self.shared
            .compacted
            .load(std::sync::atomic::Ordering::Acquire)
    }
}
