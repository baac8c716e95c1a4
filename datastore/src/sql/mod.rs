//! PostgreSQL and MySQL/MariaDB backends (K3s' `--datastore-endpoint=postgres://…` and
//! `mysql://…`), kine's storage model over [`sqlx`]: several K3s servers may share one database.
//!
//! # Schema
//! One log table, `kine` (as kine lays it out): `id` (auto-increment, **the revision**), `name`
//! (the key; byte-ordered: `TEXT COLLATE "C"` / `VARBINARY(630)`), `created`, `deleted`,
//! `create_revision` (0 on a create: its own id), `prev_revision` (the id of the version this row
//! replaced, 0 for a first create), `lease` (TTL seconds), `value`, `old_value` (kept for the layout,
//! never written: the previous value is read by primary key instead, halving the bytes per
//! update). Indexes: `(name, id)` serves every get and list (newest row of a key at or below a
//! revision, and "no newer row at or below the revision"), so reads cost index probes for the keys
//! in the requested range and never scan other keys' history; `UNIQUE (name, prev_revision)`
//! makes compare-and-swap races resolve inside the database: two writers that both read version
//! `v` of a key insert `(key, v)` and exactly one insert succeeds. `kine_meta` holds the schema
//! version, the compacted revision (`compact_rev`) and how far compaction has deleted rows
//! (`compact_swept`). An existing `kine` table without `kine_meta` (a Go kine database) is
//! refused as [`StoreError::Incompatible`] and left untouched.
//!
//! # Writes
//! Read the key's newest row, check the expectation, insert the new row (see [`Backend`] for the
//! outcomes). A lost race on the unique index re-reads and reports the winner. A write is
//! acknowledged only once this server's poller has published its revision, so a revision
//! returned to a client is always readable at once from the same server (read-your-writes) and
//! already in every local watch.
//!
//! # The poller and the gap rule
//! Every server runs one poller: it reads rows with `id >` its head in id order, every
//! [`SqlOptions::poll_interval`] and immediately after a local write, and publishes them to the
//! [`WatchHub`]. So every committed write, local or from another server, reaches every watcher in
//! revision order. Ids are drawn before commit, so a missing id below a visible one is either a
//! transaction still committing or one that rolled back (a failed insert still consumes its id).
//! **Rule:** the poller resolves such a gap at once by inserting a *gap filler* (empty name,
//! `deleted = 1`) with exactly that id. If the id's transaction is still running, the database
//! makes the filler wait on the primary key until it ends; if it commits, the filler fails with a
//! duplicate key and the next poll reads the real row; if it rolled back (or has not inserted yet,
//! in which case its insert later fails on the primary key and is retried with a new id), the
//! filler takes the id for good. Either way no write can appear below the head later, so the head
//! only moves over revisions that are settled. (kine waits about a second and then inserts the same
//! kind of filler; waiting first gains nothing because the filler itself waits for a running
//! transaction.) Fillers produce no events and are removed by compaction.
//!
//! # Reads
//! "Latest" means the poller's head. Reads at a revision above it that exists in the database
//! wait for the poller; above the database's newest id they fail with `FutureRevision`. Every read
//! returns the compacted revision from the same statement and fails with `Compacted` below it.
//!
//! # Compaction, TTL, size
//! Compaction first raises `compact_rev` (so readers below it fail rather than see partial data),
//! then deletes, in batches of [`CompactionOptions::batch_revisions`] revisions, versions superseded
//! at or below the target and deletes/fillers at or below it, recording progress in
//! `compact_swept` so an interrupted compaction resumes. TTLs are kine's: the lease column holds
//! the TTL in whole seconds and each server expires a leased version `lease` seconds after it first
//! saw it (after a restart, expiry restarts from the time the server comes up); expiry is a
//! compare-and-swap delete, so with several servers exactly one deletes. `db_size` is the tables'
//! size on the server (data and indexes).
//!
//! Revisions never go backwards: at open the head is `max(MAX(id), compact_rev)`, and ids come
//! from the server's sequence, which must survive restarts (PostgreSQL sequences do; MySQL needs
//! 8.0+ and MariaDB 10.2.4+, whose InnoDB auto-increment counter is persistent).
//!
//! # Availability
//! An unreachable server at open is retried with backoff for [`SqlOptions::connect_timeout`];
//! operations fail fast with the retryable [`StoreError::Unavailable`] while it is down, and the
//! background tasks retry with backoff. Wrong credentials and malformed settings are not retried.
//! Every message names the endpoint with its password replaced by `***`.
//!
//! [`CompactionOptions::batch_revisions`]: crate::CompactionOptions::batch_revisions

mod db;
mod dialect;
mod tasks;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};
use tokio::sync::{Notify, mpsc, watch};

pub use self::tls::{ParamError, TlsFiles};

use self::db::{Db, InsertError, NewRow, Pool, Rec};
use self::dialect::{Dialect, Kind, max_key_bytes, prefix_upper};
use crate::backend::{Backend, WatchStream};
use crate::endpoint::DbUrl;
use crate::error::StoreError;
use crate::options::StoreOptions;
use crate::types::{KeyValue, ListResult, Revision};
use crate::watch::{HistoryPage, HistorySource, WatchHub};

/// Settings of the SQL backends beyond [`StoreOptions`].
#[derive(Clone, Debug)]
pub struct SqlOptions {
    /// How often the poller looks for writes of other servers sharing the database (local writes
    /// wake it at once).
    pub poll_interval: Duration,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long `open` keeps retrying a server that cannot be reached.
    pub connect_timeout: Duration,
    /// How long an operation waits for a free (or new) connection before failing with
    /// `Unavailable`.
    pub acquire_timeout: Duration,
    /// Create the database if it does not exist (as kine does).
    pub create_database: bool,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            poll_interval: Duration::from_millis(100),
            max_connections: 16,
            connect_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
            create_database: true,
        }
    }
}

/// Rows the poller reads per query.
const POLL_BATCH: i64 = 500;
/// At open, the poller replays at most this many revisions below the newest id (so gaps left by
/// transactions that were still running at open are resolved, and recent events are in memory).
const CATCH_UP_WINDOW: i64 = 1000;
/// How long an acknowledged-in-the-database write waits to be published before the caller is
/// told the store is unavailable.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of one write against retryable insert failures.
const WRITE_ATTEMPTS: usize = 16;

/// The PostgreSQL or MySQL backend. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqlBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    /// The compacted revision as last seen (shared with the history source).
    compacted: Arc<AtomicI64>,
    /// The poller's head, for writers waiting to be published.
    head_tx: watch::Sender<Revision>,
    /// Wakes the poller.
    nudge: Notify,
    /// Serialises polls (the poller task and `open`'s catch-up).
    poll_lock: tokio::sync::Mutex<()>,
    /// Leased versions for the TTL task.
    ttl_tx: mpsc::UnboundedSender<tasks::Leased>,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    opts: StoreOptions,
    sql_opts: SqlOptions,
}

/// Watch history read from the database.
struct SqlHistory {
    db: Arc<Db>,
    compacted: Arc<AtomicI64>,
}

impl HistorySource for SqlHistory {
    fn read_history<'a>(
        &'a self,
        prefix: &'a str,
        after: Revision,
        up_to: Revision,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        Box::pin(async move {
            let known = self.compacted.load(Ordering::Acquire);
            if after < known {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted: known,
                });
            }
            let hi = prefix_upper(prefix);
            let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
            let (compact, recs) = self
                .db
                .events(after, up_to, Some((prefix, hi.as_deref())), limit)
                .await?;
            self.compacted.fetch_max(compact, Ordering::AcqRel);
            if after < compact {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted: compact,
                });
            }
            let scanned_to = match recs.last() {
                Some(last) if recs.len() as i64 >= limit => last.id,
                _ => up_to,
            };
            let events = recs
                .iter()
                .filter(|r| r.name.starts_with(prefix))
                .filter_map(Rec::to_event)
                .collect();
            Ok(HistoryPage { events, scanned_to })
        })
    }

    fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }
}

impl SqlBackend {
    /// Opens the PostgreSQL database `url` names (creating the database and schema if needed).
    pub async fn open_postgres(
        url: &DbUrl,
        opts: &StoreOptions,
        sql_opts: &SqlOptions,
        tls: &TlsFiles,
    ) -> Result<Self, StoreError> {
        Self::open(Kind::Postgres, url, opts, sql_opts, tls).await
    }

    /// Opens the MySQL or MariaDB database `url` names (creating the database and schema if
    /// needed).
    pub async fn open_mysql(
        url: &DbUrl,
        opts: &StoreOptions,
        sql_opts: &SqlOptions,
        tls: &TlsFiles,
    ) -> Result<Self, StoreError> {
        Self::open(Kind::Mysql, url, opts, sql_opts, tls).await
    }

    /// The endpoint, password redacted.
    pub fn endpoint(&self) -> &str {
        &self.inner.db.endpoint
    }

    async fn open(
        kind: Kind,
        url: &DbUrl,
        opts: &StoreOptions,
        sql_opts: &SqlOptions,
        tls: &TlsFiles,
    ) -> Result<Self, StoreError> {
        opts.validate()
            .map_err(|errors| StoreError::InvalidOptions { errors })?;
        let endpoint: Arc<str> = Arc::from(format!("{}://{url}", kind.name()));
        let pool = connect_with_retry(kind, url, sql_opts, tls, &endpoint).await?;
        let db = Arc::new(Db {
            pool,
            sql: Dialect::new(kind),
            endpoint: Arc::clone(&endpoint),
        });
        if let Err(e) = setup_schema(&db).await {
            db.close().await;
            return Err(e);
        }
        let compact = db.meta("compact_rev").await?;
        let max_id = db.max_id().await?;
        let start = compact.max(max_id - CATCH_UP_WINDOW).max(0);
        let compacted = Arc::new(AtomicI64::new(compact));
        let history = Arc::new(SqlHistory {
            db: Arc::clone(&db),
            compacted: Arc::clone(&compacted),
        });
        let hub = WatchHub::new(start, history, opts.watch.clone());
        let (head_tx, _) = watch::channel(start);
        let (ttl_tx, ttl_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            db,
            hub,
            compacted,
            head_tx,
            nudge: Notify::new(),
            poll_lock: tokio::sync::Mutex::new(()),
            ttl_tx,
            closed: AtomicBool::new(false),
            stop,
            tasks: Mutex::new(Vec::new()),
            opts: opts.clone(),
            sql_opts: sql_opts.clone(),
        });
        // Catch up to the newest id before answering anything, so `current_revision` starts at
        // the database's revision.
        let started = async {
            while inner.hub.head() < max_id {
                tasks::poll_once(&inner).await?;
            }
            let head = inner.hub.head();
            for rec in inner.db.leased(head).await? {
                let _ = inner.ttl_tx.send(tasks::Leased::of(&rec));
            }
            Ok::<_, StoreError>(head)
        }
        .await;
        let head = match started {
            Ok(head) => head,
            Err(e) => {
                inner.db.close().await;
                return Err(e);
            }
        };
        tasks::spawn_all(&inner, ttl_rx);
        tracing::info!(endpoint = %endpoint, rev = head, compacted = compact, "{} datastore open", kind.name());
        Ok(SqlBackend { inner })
    }
}

/// Connects, retrying while the server cannot be reached (up to `connect_timeout`), creating the
/// database if it does not exist.
async fn connect_with_retry(
    kind: Kind,
    url: &DbUrl,
    sql_opts: &SqlOptions,
    tls: &TlsFiles,
    endpoint: &str,
) -> Result<Pool, StoreError> {
    let deadline = tokio::time::Instant::now() + sql_opts.connect_timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        match connect(kind, url, sql_opts, tls, endpoint).await {
            Ok(pool) => return Ok(pool),
            Err(StoreError::Unavailable { reason }) => {
                let now = tokio::time::Instant::now();
                if now + delay > deadline {
                    return Err(StoreError::Unavailable {
                        reason: format!("{reason} (gave up after {:?})", sql_opts.connect_timeout),
                    });
                }
                tracing::warn!(%reason, retry_in = ?delay, "datastore not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

fn param_err(kind: Kind, endpoint: &str, e: ParamError) -> StoreError {
    StoreError::Database {
        backend: kind.name(),
        path: endpoint.into(),
        source: Box::new(e),
    }
}

/// Database names are spliced into `CREATE DATABASE` (identifiers cannot be bound), so only
/// plain names are accepted there.
fn check_db_name(kind: Kind, endpoint: &str, name: &str) -> Result<(), StoreError> {
    if !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    {
        Ok(())
    } else {
        Err(param_err(
            kind,
            endpoint,
            ParamError {
                param: "database".into(),
                value: name.into(),
                expected: "an existing database, or a name of letters, digits, '_', '-' and '$' \
                           (at most 63) to create",
            },
        ))
    }
}

async fn connect(
    kind: Kind,
    url: &DbUrl,
    sql_opts: &SqlOptions,
    tls: &TlsFiles,
    endpoint: &str,
) -> Result<Pool, StoreError> {
    let err = |e| db::map_error(kind, endpoint, e);
    match kind {
        Kind::Postgres => {
            let options =
                |db: &str| tls::pg_options(url, db, tls).map_err(|e| param_err(kind, endpoint, e));
            let pool_opts = || {
                PgPoolOptions::new()
                    .max_connections(sql_opts.max_connections)
                    .acquire_timeout(sql_opts.acquire_timeout)
                    .test_before_acquire(false)
            };
            // One direct connection first: it fails fast (the pool would retry on its own until
            // its acquire timeout) and tells a missing database apart.
            let probe = async {
                let o = options(&url.database)?;
                let conn = sqlx::postgres::PgConnection::connect_with(&o).await;
                Ok::<_, StoreError>((o, conn))
            };
            match probe.await? {
                (o, Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(Pool::Postgres(pool_opts().connect_lazy_with(o)))
                }
                (_, Err(e)) => match e {
                    sqlx::Error::Database(e)
                        if e.code().as_deref() == Some("3D000") && sql_opts.create_database =>
                    {
                        check_db_name(kind, endpoint, &url.database)?;
                        let admin = pool_opts()
                            .max_connections(1)
                            .connect_with(options("postgres")?)
                            .await
                            .map_err(err)?;
                        let create = format!("CREATE DATABASE \"{}\"", url.database);
                        let created = admin.execute(AssertSqlSafe(create)).await;
                        admin.close().await;
                        match created {
                            Ok(_) => {
                                tracing::info!(%endpoint, "created database");
                            }
                            // 42P04: created by someone else meanwhile.
                            Err(sqlx::Error::Database(e))
                                if e.code().as_deref() == Some("42P04") => {}
                            Err(e) => return Err(err(e)),
                        }
                        let p = pool_opts()
                            .connect_with(options(&url.database)?)
                            .await
                            .map_err(err)?;
                        Ok(Pool::Postgres(p))
                    }
                    e => Err(err(e)),
                },
            }
        }
        Kind::Mysql => {
            let options = |db: Option<&str>| {
                tls::mysql_options(url, db, tls).map_err(|e| param_err(kind, endpoint, e))
            };
            let pool_opts = || {
                MySqlPoolOptions::new()
                    .max_connections(sql_opts.max_connections)
                    .acquire_timeout(sql_opts.acquire_timeout)
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // No gap locks on the unique index: fewer deadlocks between inserts.
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                            Ok(())
                        })
                    })
            };
            let unknown_db = |e: &sqlx::Error| {
                matches!(e, sqlx::Error::Database(d)
                    if d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                        .is_some_and(|m| m.number() == 1049))
            };
            let o = options(Some(&url.database))?;
            match sqlx::mysql::MySqlConnection::connect_with(&o).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(Pool::Mysql(pool_opts().connect_lazy_with(o)))
                }
                Err(e) if unknown_db(&e) && sql_opts.create_database => {
                    check_db_name(kind, endpoint, &url.database)?;
                    let admin = pool_opts()
                        .max_connections(1)
                        .connect_with(options(None)?)
                        .await
                        .map_err(err)?;
                    let create = format!("CREATE DATABASE IF NOT EXISTS `{}`", url.database);
                    let created = admin.execute(AssertSqlSafe(create)).await;
                    admin.close().await;
                    created.map_err(err)?;
                    tracing::info!(%endpoint, "created database");
                    let p = pool_opts()
                        .connect_with(options(Some(&url.database))?)
                        .await
                        .map_err(err)?;
                    Ok(Pool::Mysql(p))
                }
                Err(e) => Err(err(e)),
            }
        }
    }
}

/// Creates the tables if needed, under a database-wide lock so servers starting together do not
/// race, and refuses tables this store did not create.
async fn setup_schema(db: &Db) -> Result<(), StoreError> {
    let kind = db.kind();
    let incompatible = |reason: String| StoreError::Incompatible {
        path: db.endpoint.to_string().into(),
        reason,
    };
    let tables: Vec<String> = match &db.pool {
        Pool::Postgres(p) => {
            let mut conn = p.acquire().await.map_err(|e| db.err(e))?;
            conn.execute("SELECT pg_advisory_lock(7003388405385545317)")
                .await
                .map_err(|e| db.err(e))?;
            let res = async {
                let rows = sqlx::query(
                    "SELECT CAST(tablename AS TEXT) FROM pg_tables \
                     WHERE schemaname = current_schema() AND tablename IN ('kine', 'kine_meta')",
                )
                .fetch_all(&mut *conn)
                .await?;
                let tables = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                if tables.iter().any(|t| t == "kine_meta") || tables.is_empty() {
                    for stmt in dialect::schema(kind) {
                        conn.execute(*stmt).await?;
                    }
                }
                Ok::<_, sqlx::Error>(tables)
            }
            .await;
            let unlock = conn
                .execute("SELECT pg_advisory_unlock(7003388405385545317)")
                .await;
            let tables = res.map_err(|e| db.err(e))?;
            unlock.map_err(|e| db.err(e))?;
            tables
        }
        Pool::Mysql(p) => {
            let mut conn = p.acquire().await.map_err(|e| db.err(e))?;
            conn.execute("SELECT GET_LOCK('k3s-kine-setup', 60)")
                .await
                .map_err(|e| db.err(e))?;
            let res = async {
                let rows = sqlx::query(
                    "SELECT CAST(table_name AS CHAR CHARACTER SET utf8mb4) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name IN ('kine', 'kine_meta')",
                )
                .fetch_all(&mut *conn)
                .await?;
                let tables = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                if tables.iter().any(|t| t == "kine_meta") || tables.is_empty() {
                    for stmt in dialect::schema(kind) {
                        conn.execute(*stmt).await?;
                    }
                }
                Ok::<_, sqlx::Error>(tables)
            }
            .await;
            let unlock = conn.execute("SELECT RELEASE_LOCK('k3s-kine-setup')").await;
            let tables = res.map_err(|e| db.err(e))?;
            unlock.map_err(|e| db.err(e))?;
            tables
        }
    };
    if tables.iter().any(|t| t == "kine") && !tables.iter().any(|t| t == "kine_meta") {
        return Err(incompatible(
            "table kine exists but was not created by this datastore (a Go kine database?); \
             point the endpoint at an empty database"
                .to_owned(),
        ));
    }
    let version = db.meta("schema_version").await?;
    if version != dialect::SCHEMA_VERSION {
        return Err(incompatible(format!(
            "schema version {version}, this datastore reads version {}",
            dialect::SCHEMA_VERSION
        )));
    }
    Ok(())
}

/// TTL in whole seconds, rounded up (0 = none).
fn lease_secs(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |d| {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
    })
}

impl Inner {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        let reason = if key.is_empty() {
            "empty"
        } else if key.contains('\0') {
            "contains a NUL character"
        } else if key.len() > max_key_bytes(self.db.kind()) {
            match self.db.kind() {
                Kind::Mysql => "longer than 630 bytes",
                Kind::Postgres => "longer than 2000 bytes",
            }
        } else {
            return Ok(());
        };
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    }

    /// Waits until the poller has published `rev` (or the store closes).
    async fn wait_published(&self, rev: Revision) -> Result<(), StoreError> {
        if self.hub.head() >= rev {
            return Ok(());
        }
        let mut rx = self.head_tx.subscribe();
        self.nudge.notify_one();
        let waited = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            rx.wait_for(|h| *h >= rev || self.closed.load(Ordering::Acquire)),
        )
        .await;
        self.check_open()?;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Unavailable {
                reason: format!(
                    "{}: revision {rev} is committed but was not observed within {PUBLISH_TIMEOUT:?}",
                    self.db.endpoint
                ),
            }),
        }
    }

    /// The revision a read at `at` uses.
    async fn read_rev(&self, at: Option<Revision>) -> Result<Revision, StoreError> {
        let head = self.hub.head();
        match at {
            None => Ok(head),
            Some(r) if r <= head => Ok(r),
            Some(r) => {
                // Possibly a revision another server already handed out.
                if r <= self.db.max_id().await? {
                    self.wait_published(r).await?;
                    Ok(r)
                } else {
                    Err(StoreError::FutureRevision {
                        requested: r,
                        current: head,
                    })
                }
            }
        }
    }

    /// Checks a read's compacted revision. `Ok(true)`: retry at the latest revision (another
    /// server compacted past this server's head).
    async fn check_compacted(
        &self,
        at: Option<Revision>,
        rev: Revision,
        compact: Revision,
    ) -> Result<bool, StoreError> {
        self.compacted.fetch_max(compact, Ordering::AcqRel);
        if rev >= compact {
            return Ok(false);
        }
        if at.is_none() {
            self.wait_published(compact).await?;
            return Ok(true);
        }
        Err(StoreError::Compacted {
            requested: rev,
            compacted: compact,
        })
    }

    async fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        loop {
            let rev = self.read_rev(at).await?;
            let (compact, rec) = self.db.get(key, rev).await?;
            if self.check_compacted(at, rev, compact).await? {
                continue;
            }
            return Ok(rec.filter(|r| !r.deleted).map(|r| r.to_kv()));
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let hi = prefix_upper(prefix);
        let after = start_after.unwrap_or("");
        let fetch = if limit == 0 {
            i64::MAX
        } else {
            i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
        };
        loop {
            let rev = self.read_rev(at).await?;
            let (compact, recs) = self
                .db
                .list(prefix, after, hi.as_deref(), rev, fetch)
                .await?;
            if self.check_compacted(at, rev, compact).await? {
                continue;
            }
            let mut items: Vec<KeyValue> = recs.iter().map(Rec::to_kv).collect();
            let more = limit > 0 && items.len() > limit;
            items.truncate(if limit > 0 { limit } else { items.len() });
            let continue_after = if more {
                items.last().map(|kv| kv.key.clone())
            } else {
                None
            };
            return Ok(ListResult {
                items,
                revision: rev,
                more,
                continue_after,
            });
        }
    }

    async fn count(&self, prefix: &str) -> Result<(i64, Revision), StoreError> {
        let hi = prefix_upper(prefix);
        loop {
            let rev = self.hub.head();
            let (compact, n) = self.db.count(prefix, hi.as_deref(), rev).await?;
            if self.check_compacted(None, rev, compact).await? {
                continue;
            }
            return Ok((n, rev));
        }
    }

    /// A conflict reporting `cur` (published first, so the client can read what it is told).
    async fn conflict(&self, key: &str, cur: Option<&Rec>) -> StoreError {
        let current = match cur {
            Some(r) if !r.deleted => {
                if let Err(e) = self.wait_published(r.id).await {
                    return e;
                }
                Some(Box::new(r.to_kv()))
            }
            _ => None,
        };
        StoreError::Conflict {
            key: key.to_owned(),
            current,
        }
    }

    /// Inserts `row`; `Ok(None)` asks the caller to re-read and decide again.
    async fn insert(&self, row: &NewRow<'_>) -> Result<Option<Revision>, StoreError> {
        match self.db.insert(row).await {
            Ok(id) => {
                self.wait_published(id).await?;
                Ok(Some(id))
            }
            Err(InsertError::KeyRaced | InsertError::Retry) => Ok(None),
            Err(InsertError::Store(e)) => Err(e),
        }
    }

    fn contention(&self, key: &str) -> StoreError {
        StoreError::Unavailable {
            reason: format!(
                "{}: gave up writing {key:?} after {WRITE_ATTEMPTS} attempts under contention",
                self.db.endpoint
            ),
        }
    }

    async fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<Revision, StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let cur = self.db.latest(key).await?;
            let prev_revision = match &cur {
                Some(r) if !r.deleted => {
                    return Err(StoreError::AlreadyExists {
                        key: key.to_owned(),
                    });
                }
                Some(r) => r.id,
                None => 0,
            };
            let row = NewRow {
                name: key,
                created: true,
                deleted: false,
                create_revision: 0,
                prev_revision,
                lease,
                value: Some(value),
            };
            if let Some(rev) = self.insert(&row).await? {
                return Ok(rev);
            }
        }
        Err(self.contention(key))
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: &[u8],
        lease: i64,
    ) -> Result<Revision, StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let cur = self.db.latest(key).await?;
            let cur = match cur {
                Some(r) if !r.deleted && r.id == expected => r,
                other => return Err(self.conflict(key, other.as_ref()).await),
            };
            let row = NewRow {
                name: key,
                created: false,
                deleted: false,
                create_revision: cur.create_rev(),
                prev_revision: cur.id,
                lease,
                value: Some(value),
            };
            if let Some(rev) = self.insert(&row).await? {
                return Ok(rev);
            }
        }
        Err(self.contention(key))
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let cur = match self.db.latest(key).await? {
                Some(r) if !r.deleted => r,
                _ => {
                    return Err(StoreError::NotFound {
                        key: key.to_owned(),
                    });
                }
            };
            if expected.is_some_and(|e| e != cur.id) {
                return Err(self.conflict(key, Some(&cur)).await);
            }
            let row = NewRow {
                name: key,
                created: false,
                deleted: true,
                create_revision: cur.create_rev(),
                prev_revision: cur.id,
                lease: 0,
                value: None,
            };
            if let Some(rev) = self.insert(&row).await? {
                return Ok((cur.to_kv(), rev));
            }
        }
        Err(self.contention(key))
    }

    /// Raises the compacted revision to `target` and deletes what it makes unreachable.
    async fn compact_to(&self, target: Revision) -> Result<(), StoreError> {
        self.db.raise_meta("compact_rev", target).await?;
        let goal = self.db.meta("compact_rev").await?;
        self.compacted.fetch_max(goal, Ordering::AcqRel);
        let batch = self.opts.compaction.batch_revisions.max(1);
        let mut lo = self.db.meta("compact_swept").await?;
        let started = std::time::Instant::now();
        let mut removed = 0usize;
        while lo < goal {
            self.check_open()?;
            let hi = goal.min(lo.saturating_add(batch));
            let ids = self.db.compactable(lo, hi).await?;
            removed += ids.len();
            self.db.delete_ids(&ids).await?;
            self.db.raise_meta("compact_swept", hi).await?;
            lo = hi;
        }
        tracing::debug!(
            target,
            removed,
            elapsed_ms = started.elapsed().as_millis(),
            endpoint = %self.db.endpoint,
            "compacted"
        );
        Ok(())
    }

    /// Stops background work and ends watches; the pool is closed by the caller.
    fn stop_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.closed.store(true, Ordering::Release);
        self.stop.send_replace(true);
        self.hub.close();
        // Wake writers waiting to be published.
        self.head_tx.send_modify(|_| {});
        std::mem::take(&mut *self.tasks.lock())
    }
}

impl Drop for SqlBackend {
    fn drop(&mut self) {
        if !self.inner.closed.load(Ordering::Acquire) {
            for task in self.inner.stop_background() {
                task.abort();
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for SqlBackend {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        Ok(self.inner.hub.head())
    }

    async fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        self.inner.check_open()?;
        self.inner.check_key(key)?;
        self.inner.get(key, at).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        self.inner.check_open()?;
        if prefix.contains('\0') || start_after.is_some_and(|s| s.contains('\0')) {
            return Err(StoreError::InvalidKey {
                key: prefix.to_owned(),
                reason: "contains a NUL character",
            });
        }
        self.inner.list(prefix, start_after, limit, at).await
    }

    async fn count(&self, prefix: &str) -> Result<(i64, Revision), StoreError> {
        self.inner.check_open()?;
        if prefix.contains('\0') {
            return Err(StoreError::InvalidKey {
                key: prefix.to_owned(),
                reason: "contains a NUL character",
            });
        }
        self.inner.count(prefix).await
    }

    async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        self.inner.check_key(key)?;
        self.inner.create(key, &value, lease_secs(ttl)).await
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        self.inner.check_key(key)?;
        self.inner
            .update(key, expected_mod_revision, &value, lease_secs(ttl))
            .await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        self.inner.check_open()?;
        self.inner.check_key(key)?;
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.check_open()?;
        // Another server may have compacted: refresh before the hub checks `after`.
        let compact = self.inner.db.meta("compact_rev").await?;
        self.inner.compacted.fetch_max(compact, Ordering::AcqRel);
        Ok(self.inner.hub.watch(prefix, after))
    }

    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        self.inner.check_open()?;
        let head = self.inner.hub.head();
        if keep_after > head {
            if keep_after <= self.inner.db.max_id().await? {
                self.inner.wait_published(keep_after).await?;
            } else {
                return Err(StoreError::FutureRevision {
                    requested: keep_after,
                    current: head,
                });
            }
        }
        self.inner.compact_to(keep_after).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        let compact = self.inner.db.meta("compact_rev").await?;
        self.inner.compacted.fetch_max(compact, Ordering::AcqRel);
        Ok(compact)
    }

    async fn db_size(&self) -> Result<u64, StoreError> {
        self.inner.check_open()?;
        self.inner.db.size().await
    }

    async fn close(&self) {
        let tasks = self.inner.stop_background();
        if tasks.is_empty() && self.inner.db.is_closed() {
            return;
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.inner.db.close().await;
        tracing::info!(endpoint = %self.inner.db.endpoint, "{} datastore closed", self.inner.db.kind().name());
    }
}
