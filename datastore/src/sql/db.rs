//! Database access of the SQL backends: the connection pool, one async function per statement,
//! row decoding, and the mapping of driver errors to [`StoreError`].
//!
//! The same code serves PostgreSQL and MySQL: [`on_pool!`] expands a body once per driver, so
//! each copy is monomorphic (sqlx's runtime `query()` API, no macros and no `Any` driver). Rows
//! are decoded by position. Nothing here formats a password: the endpoint is carried in its
//! redacted form.

use std::sync::Arc;

use bytes::Bytes;
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Row, Type};

use super::dialect::{Dialect, Kind};
use crate::error::StoreError;
use crate::types::{Event, KeyValue, Revision};

/// A pool of one of the supported drivers.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    Mysql(MySqlPool),
}

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Mysql($p) => $body,
        }
    };
}

/// One row of the `kine` table (plus, for event queries, the version it replaced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    /// The revision of the write.
    pub id: Revision,
    /// The key; empty for a gap filler.
    pub name: String,
    /// The write created the key.
    pub created: bool,
    /// The write deleted the key (a tombstone, or a gap filler).
    pub deleted: bool,
    /// As stored: 0 for a create (whose create revision is its own id).
    pub create_revision: Revision,
    /// The id of the version this write replaced (0 for a first create; its own id for a filler).
    pub prev_revision: Revision,
    /// TTL in seconds, 0 for none.
    pub lease: i64,
    /// The value (NULL for deletes).
    pub value: Option<Vec<u8>>,
    /// Event queries only: the replaced version's value and lease.
    pub prev: Option<(Option<Vec<u8>>, i64)>,
}

impl Rec {
    /// Whether this row only takes up a rolled-back id (see the poller).
    pub fn is_filler(&self) -> bool {
        self.name.is_empty()
    }

    /// The key's create revision.
    pub fn create_rev(&self) -> Revision {
        if self.created {
            self.id
        } else {
            self.create_revision
        }
    }

    /// This version as a [`KeyValue`].
    pub fn to_kv(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone().map(Bytes::from).unwrap_or_default(),
            create_revision: self.create_rev(),
            mod_revision: self.id,
            lease_ttl: (self.lease > 0).then_some(self.lease),
        }
    }

    /// The version this write replaced, from the joined columns.
    fn prev_kv(&self) -> KeyValue {
        let (value, lease) = self.prev.clone().unwrap_or((None, 0));
        KeyValue {
            key: self.name.clone(),
            value: value.map(Bytes::from).unwrap_or_default(),
            create_revision: self.create_rev(),
            mod_revision: self.prev_revision,
            lease_ttl: (lease > 0).then_some(lease),
        }
    }

    /// The watch event of this write; `None` for a gap filler.
    pub fn to_event(&self) -> Option<Event> {
        if self.is_filler() {
            return None;
        }
        Some(if self.deleted {
            Event::Delete {
                prev: self.prev_kv(),
                revision: self.id,
            }
        } else {
            Event::Put {
                kv: self.to_kv(),
                prev: (!self.created).then(|| self.prev_kv()),
            }
        })
    }
}

/// Decodes a record starting at column `at`; `None` if its id is NULL (an empty outer join).
fn decode_rec<'r, R>(row: &'r R, at: usize, with_prev: bool) -> Result<Option<Rec>, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i16: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(id) = row.try_get::<Option<i64>, _>(at)? else {
        return Ok(None);
    };
    let prev = if with_prev {
        Some((
            row.try_get::<Option<Vec<u8>>, _>(at + 8)?,
            row.try_get::<Option<i64>, _>(at + 9)?.unwrap_or(0),
        ))
    } else {
        None
    };
    Ok(Some(Rec {
        id,
        name: row.try_get::<String, _>(at + 1)?,
        created: row.try_get::<i16, _>(at + 2)? != 0,
        deleted: row.try_get::<i16, _>(at + 3)? != 0,
        create_revision: row.try_get(at + 4)?,
        prev_revision: row.try_get(at + 5)?,
        lease: row.try_get(at + 6)?,
        value: row.try_get(at + 7)?,
        prev,
    }))
}

/// Rows of a compaction-checked read: the compacted revision and the records.
fn decode_checked<'r, R>(
    rows: &'r [R],
    with_prev: bool,
) -> Result<(Revision, Vec<Rec>), sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i16: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut compact = 0;
    let mut recs = Vec::with_capacity(rows.len());
    for row in rows {
        compact = row.try_get::<i64, _>(0)?;
        if let Some(rec) = decode_rec(row, 1, with_prev)? {
            recs.push(rec);
        }
    }
    Ok((compact, recs))
}

/// Why an insert did not happen.
#[derive(Debug)]
pub(crate) enum InsertError {
    /// The `(name, prev_revision)` unique index rejected it: another write to the key won.
    KeyRaced,
    /// Its id was taken by a gap filler, or the database asked for a retry (deadlock): try again.
    Retry,
    /// Anything else.
    Store(StoreError),
}

/// A new row, without its id.
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    pub name: &'a str,
    pub created: bool,
    pub deleted: bool,
    pub create_revision: Revision,
    pub prev_revision: Revision,
    pub lease: i64,
    pub value: Option<&'a [u8]>,
}

/// The database: a pool, its statements, and a password-free name for messages.
#[derive(Debug)]
pub(crate) struct Db {
    pub pool: Pool,
    pub sql: Dialect,
    /// The endpoint with its password replaced by `***`.
    pub endpoint: Arc<str>,
}

fn sql(s: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    // Every statement is a constant of `dialect` (values are bound, never spliced).
    AssertSqlSafe(Arc::clone(s))
}

impl Db {
    /// The backend name, e.g. "postgres".
    pub fn kind(&self) -> Kind {
        self.sql.kind
    }

    /// Maps a driver error to a [`StoreError`] naming the (redacted) endpoint.
    pub fn err(&self, e: sqlx::Error) -> StoreError {
        map_error(self.kind(), &self.endpoint, e)
    }

    /// `(compacted, newest version of key at or below rev)`.
    pub async fn get(
        &self,
        key: &str,
        rev: Revision,
    ) -> Result<(Revision, Option<Rec>), StoreError> {
        let q = sql(&self.sql.get);
        let (compact, mut recs) = on_pool!(&self.pool, p => {
            let rows = sqlx::query(q).bind(key).bind(rev).fetch_all(p).await.map_err(|e| self.err(e))?;
            decode_checked(&rows, false).map_err(|e| self.err(e))?
        });
        Ok((compact, recs.pop()))
    }

    /// `(compacted, live keys in the range at rev, in key order)`.
    pub async fn list(
        &self,
        lo: &str,
        after: &str,
        hi: Option<&str>,
        rev: Revision,
        limit: i64,
    ) -> Result<(Revision, Vec<Rec>), StoreError> {
        let (compact, mut recs) = match hi {
            Some(hi) => {
                let q = sql(&self.sql.list_bounded);
                on_pool!(&self.pool, p => {
                    let rows = sqlx::query(q).bind(lo).bind(after).bind(hi).bind(rev).bind(rev)
                        .bind(limit).fetch_all(p).await.map_err(|e| self.err(e))?;
                    decode_checked(&rows, false).map_err(|e| self.err(e))?
                })
            }
            None => {
                let q = sql(&self.sql.list_unbounded);
                on_pool!(&self.pool, p => {
                    let rows = sqlx::query(q).bind(lo).bind(after).bind(rev).bind(rev)
                        .bind(limit).fetch_all(p).await.map_err(|e| self.err(e))?;
                    decode_checked(&rows, false).map_err(|e| self.err(e))?
                })
            }
        };
        // The outer join does not promise an order; keys are unique, so sort by their bytes.
        recs.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok((compact, recs))
    }

    /// `(compacted, number of live keys in the range at rev)`.
    pub async fn count(
        &self,
        lo: &str,
        hi: Option<&str>,
        rev: Revision,
    ) -> Result<(Revision, i64), StoreError> {
        let row = match hi {
            Some(hi) => {
                let q = sql(&self.sql.count_bounded);
                on_pool!(&self.pool, p => {
                    let row = sqlx::query(q).bind(lo).bind(hi).bind(rev).bind(rev)
                        .fetch_one(p).await.map_err(|e| self.err(e))?;
                    (row.try_get::<i64, _>(0), row.try_get::<i64, _>(1))
                })
            }
            None => {
                let q = sql(&self.sql.count_unbounded);
                on_pool!(&self.pool, p => {
                    let row = sqlx::query(q).bind(lo).bind(rev).bind(rev)
                        .fetch_one(p).await.map_err(|e| self.err(e))?;
                    (row.try_get::<i64, _>(0), row.try_get::<i64, _>(1))
                })
            }
        };
        match row {
            (Ok(compact), Ok(n)) => Ok((compact, n)),
            (Err(e), _) | (_, Err(e)) => Err(self.err(e)),
        }
    }

    /// `(compacted, rows with id in (after, up_to] in id order, at most limit)`, each with the
    /// version it replaced; with `range`, only keys in `[lo, hi)`.
    pub async fn events(
        &self,
        after: Revision,
        up_to: Revision,
        range: Option<(&str, Option<&str>)>,
        limit: i64,
    ) -> Result<(Revision, Vec<Rec>), StoreError> {
        let (compact, mut recs) = match range {
            None => {
                let q = sql(&self.sql.poll);
                on_pool!(&self.pool, p => {
                    let rows = sqlx::query(q).bind(after).bind(up_to).bind(limit)
                        .fetch_all(p).await.map_err(|e| self.err(e))?;
                    decode_checked(&rows, true).map_err(|e| self.err(e))?
                })
            }
            Some((lo, Some(hi))) => {
                let q = sql(&self.sql.history_bounded);
                on_pool!(&self.pool, p => {
                    let rows = sqlx::query(q).bind(after).bind(up_to).bind(lo).bind(hi).bind(limit)
                        .fetch_all(p).await.map_err(|e| self.err(e))?;
                    decode_checked(&rows, true).map_err(|e| self.err(e))?
                })
            }
            Some((lo, None)) => {
                let q = sql(&self.sql.history_unbounded);
                on_pool!(&self.pool, p => {
                    let rows = sqlx::query(q).bind(after).bind(up_to).bind(lo).bind(limit)
                        .fetch_all(p).await.map_err(|e| self.err(e))?;
                    decode_checked(&rows, true).map_err(|e| self.err(e))?
                })
            }
        };
        recs.sort_unstable_by_key(|r| r.id);
        Ok((compact, recs))
    }

    /// The newest row of `key` (of any kind), committed by anyone.
    pub async fn latest(&self, key: &str) -> Result<Option<Rec>, StoreError> {
        let q = sql(&self.sql.latest);
        on_pool!(&self.pool, p => {
            let row = sqlx::query(q).bind(key).fetch_optional(p).await.map_err(|e| self.err(e))?;
            match row {
                Some(row) => decode_rec(&row, 0, false).map_err(|e| self.err(e)),
                None => Ok(None),
            }
        })
    }

    /// Live leased keys at `rev`.
    pub async fn leased(&self, rev: Revision) -> Result<Vec<Rec>, StoreError> {
        let q = sql(&self.sql.leased);
        on_pool!(&self.pool, p => {
            let rows = sqlx::query(q).bind(rev).bind(rev).fetch_all(p).await.map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(rec) = decode_rec(row, 0, false).map_err(|e| self.err(e))? {
                    out.push(rec);
                }
            }
            Ok(out)
        })
    }

    /// Inserts `row` and returns its id (the write's revision).
    pub async fn insert(&self, row: &NewRow<'_>) -> Result<Revision, InsertError> {
        let q = sql(&self.sql.insert);
        let res = match &self.pool {
            Pool::Postgres(p) => sqlx::query(q)
                .bind(row.name)
                .bind(i16::from(row.created))
                .bind(i16::from(row.deleted))
                .bind(row.create_revision)
                .bind(row.prev_revision)
                .bind(row.lease)
                .bind(row.value)
                .fetch_one(p)
                .await
                .and_then(|r| r.try_get::<i64, _>(0)),
            Pool::Mysql(p) => sqlx::query(q)
                .bind(row.name)
                .bind(i16::from(row.created))
                .bind(i16::from(row.deleted))
                .bind(row.create_revision)
                .bind(row.prev_revision)
                .bind(row.lease)
                .bind(row.value)
                .execute(p)
                .await
                .map(|r| i64::try_from(r.last_insert_id()).unwrap_or(i64::MAX)),
        };
        res.map_err(|e| match classify_insert(self.kind(), &e) {
            InsertFailure::KeyRaced => InsertError::KeyRaced,
            InsertFailure::Retry => InsertError::Retry,
            InsertFailure::Other => InsertError::Store(self.err(e)),
        })
    }

    /// Takes id `id` with a gap filler. `Ok(true)`: taken, so no write will ever have this
    /// revision; `Ok(false)`: a real row has it (committed since it was found missing).
    ///
    /// If the transaction that drew the id is still running, the database makes this insert wait
    /// for it (the primary key is locked), so the answer is final either way.
    pub async fn fill_gap(&self, id: Revision) -> Result<bool, StoreError> {
        let q = sql(&self.sql.fill_gap);
        let res = on_pool!(&self.pool, p => sqlx::query(q).bind(id).bind(id).execute(p).await.map(|_| ()));
        match res {
            Ok(()) => Ok(true),
            Err(e) => match classify_insert(self.kind(), &e) {
                InsertFailure::KeyRaced | InsertFailure::Retry => Ok(false),
                InsertFailure::Other => Err(self.err(e)),
            },
        }
    }

    /// The highest id in the table (0 if empty).
    pub async fn max_id(&self) -> Result<Revision, StoreError> {
        let q = sql(&self.sql.max_id);
        on_pool!(&self.pool, p => {
            let row = sqlx::query(q).fetch_one(p).await.map_err(|e| self.err(e))?;
            Ok(row.try_get::<Option<i64>, _>(0).map_err(|e| self.err(e))?.unwrap_or(0))
        })
    }

    /// A `kine_meta` value (0 if the row is missing).
    pub async fn meta(&self, name: &str) -> Result<i64, StoreError> {
        let q = sql(&self.sql.meta_get);
        on_pool!(&self.pool, p => {
            let row = sqlx::query(q).bind(name).fetch_optional(p).await.map_err(|e| self.err(e))?;
            match row {
                Some(row) => row.try_get::<i64, _>(0).map_err(|e| self.err(e)),
                None => Ok(0),
            }
        })
    }

    /// Raises a `kine_meta` value to `value` (never lowers it).
    pub async fn raise_meta(&self, name: &str, value: i64) -> Result<(), StoreError> {
        let q = sql(&self.sql.meta_raise);
        on_pool!(&self.pool, p => {
            sqlx::query(q).bind(value).bind(name).bind(value).execute(p).await.map_err(|e| self.err(e))?;
        });
        Ok(())
    }

    /// Ids removable by a compaction step over `(lo, hi]`: versions superseded by a row in the
    /// window, and the window's deletes and gap fillers.
    pub async fn compactable(&self, lo: Revision, hi: Revision) -> Result<Vec<i64>, StoreError> {
        let (q1, q2) = (sql(&self.sql.superseded), sql(&self.sql.tombstones));
        let mut ids: Vec<i64> = on_pool!(&self.pool, p => {
            let a = sqlx::query(q1).bind(lo).bind(hi).fetch_all(p).await.map_err(|e| self.err(e))?;
            let b = sqlx::query(q2).bind(lo).bind(hi).fetch_all(p).await.map_err(|e| self.err(e))?;
            let mut ids = Vec::with_capacity(a.len() + b.len());
            for row in a.iter().chain(b.iter()) {
                ids.push(row.try_get::<i64, _>(0).map_err(|e| self.err(e))?);
            }
            ids
        });
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Deletes rows by id.
    pub async fn delete_ids(&self, ids: &[i64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            // Built from the chunk's length only; the ids are bound.
            let q = AssertSqlSafe(self.sql.delete_ids(chunk.len()));
            on_pool!(&self.pool, p => {
                let mut query = sqlx::query(q);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(p).await.map_err(|e| self.err(e))?;
            });
        }
        Ok(())
    }

    /// Bytes used by the tables (data and indexes).
    pub async fn size(&self) -> Result<u64, StoreError> {
        let q = sql(&self.sql.size);
        on_pool!(&self.pool, p => {
            let row = sqlx::query(q).fetch_one(p).await.map_err(|e| self.err(e))?;
            let n = row.try_get::<i64, _>(0).map_err(|e| self.err(e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        on_pool!(&self.pool, p => p.is_closed())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await);
    }
}

enum InsertFailure {
    KeyRaced,
    Retry,
    Other,
}

/// Sorts an insert failure: a duplicate on the `(name, prev_revision)` index is a lost race for
/// the key; a duplicate primary key (a gap filler took the id) or a deadlock is retried.
fn classify_insert(kind: Kind, e: &sqlx::Error) -> InsertFailure {
    let sqlx::Error::Database(db) = e else {
        return InsertFailure::Other;
    };
    match kind {
        Kind::Postgres => {
            if db.is_unique_violation() {
                if db.constraint() == Some("kine_pkey") {
                    InsertFailure::Retry
                } else {
                    InsertFailure::KeyRaced
                }
            } else if matches!(db.code().as_deref(), Some("40P01" | "40001")) {
                InsertFailure::Retry
            } else {
                InsertFailure::Other
            }
        }
        Kind::Mysql => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            match number {
                // ER_DUP_ENTRY: "Duplicate entry '…' for key 'PRIMARY'" or '…kine_name_prev_revision'.
                Some(1062) if db.message().contains("PRIMARY") => InsertFailure::Retry,
                Some(1062) => InsertFailure::KeyRaced,
                // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT.
                Some(1213 | 1205) => InsertFailure::Retry,
                _ => InsertFailure::Other,
            }
        }
    }
}

/// Whether a database error code means "the server cannot serve right now" (as opposed to a
/// problem with the request or the credentials).
fn is_transient_db_code(kind: Kind, code: Option<&str>, number: Option<u16>) -> bool {
    match kind {
        // Class 08: connection exception; 53: insufficient resources; 57P0x: shutdown/starting;
        // 40001/40P01: serialization failure/deadlock.
        Kind::Postgres => code.is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
        }),
        // Too many connections, server shutdown, lock wait timeout, deadlock, read-only replica.
        Kind::Mysql => matches!(number, Some(1040 | 1053 | 1205 | 1213 | 1290 | 1836)),
    }
}

/// Maps a driver error: connection-level problems become [`StoreError::Unavailable`] (retryable),
/// a closed pool [`StoreError::Closed`], and everything else [`StoreError::Database`]. Messages
/// name the endpoint in its redacted form.
pub(crate) fn map_error(kind: Kind, endpoint: &str, e: sqlx::Error) -> StoreError {
    let unavailable = |e: &sqlx::Error| StoreError::Unavailable {
        reason: format!("{} {endpoint}: {e}", kind.name()),
    };
    match &e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => unavailable(&e),
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            if is_transient_db_code(kind, db.code().as_deref(), number) {
                unavailable(&e)
            } else {
                database(kind, endpoint, e)
            }
        }
        _ => database(kind, endpoint, e),
    }
}

fn database(kind: Kind, endpoint: &str, e: sqlx::Error) -> StoreError {
    StoreError::Database {
        backend: kind.name(),
        path: endpoint.into(),
        source: Box::new(e),
    }
}
