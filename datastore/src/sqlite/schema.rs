//! Opening the SQLite file safely, the schema, and row ↔ type conversions.
//!
//! Owns the rule "never damage what we cannot read": an existing file is opened without
//! `SQLITE_OPEN_CREATE`, its header and (optionally) `PRAGMA quick_check` are verified, and its
//! schema is recognised *before* any statement that writes (journal mode, schema creation) runs.
//! A file that fails is reported as [`StoreError::Corrupt`] or [`StoreError::Incompatible`]
//! naming it, and its bytes are left untouched.
//!
//! Schema (version 1):
//! - `log(rev PK, key, kind, create_rev, prev_rev, lease, value)`: one row per write (the MVCC
//!   history). `prev_rev` is the version a write replaced (0 for a create), so compaction finds
//!   superseded rows by primary key. Index `log_key(key)`, which SQLite stores as `(key, rev)`,
//!   serves reads at an older revision.
//! - `current(key PK, mod_rev, expires_at)`: the latest live version of each key, pointing into
//!   `log`. Gets, lists and counts at the latest revision read only this table (plus one primary
//!   key lookup per row), so their cost does not grow with history. `expires_at` (unix ms) drives
//!   TTL expiry through a partial index.
//! - `meta(name PK, value)`: `schema_version`, `revision` (the store revision, written in the same
//!   transaction as every write) and `compacted` (the compacted revision).
//!
//! Invariants: `current` has a row for a key iff the key's newest `log` row is not a delete, and
//! then `current.mod_rev` is that row's `rev`; `meta.revision` >= every `log.rev`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row};

use crate::error::StoreError;
use crate::options::{Durability, SqliteOptions};
use crate::types::{KeyValue, Revision};

/// `log.kind` of a write that created the key.
pub(crate) const KIND_CREATE: i64 = 0;
/// `log.kind` of a write that updated the key.
pub(crate) const KIND_UPDATE: i64 = 1;
/// `log.kind` of a delete (tombstone; `value` is NULL).
pub(crate) const KIND_DELETE: i64 = 2;

const SCHEMA_VERSION: i64 = 1;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE log (
    rev        INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL,
    kind       INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    lease      INTEGER,
    value      BLOB
);
CREATE INDEX log_key ON log(key);
CREATE TABLE current (
    key        TEXT    PRIMARY KEY,
    mod_rev    INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX current_expiry ON current(expires_at) WHERE expires_at IS NOT NULL;
INSERT INTO meta(name, value) VALUES ('schema_version', 1), ('revision', 0), ('compacted', 0);
";

/// Maps a SQLite error to a [`StoreError`] naming the file.
pub(crate) fn db_err(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            reason: format!("{}: {e}", path.display()),
        },
        _ => StoreError::Database {
            backend: "sqlite",
            path: path.to_owned(),
            source: Box::new(e),
        },
    }
}

/// The path of the lock file that keeps a second process off the database.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The path of the WAL file.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// What [`open_writer`] found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub conn: Connection,
    pub lock: File,
    pub revision: Revision,
    pub compacted: Revision,
}

/// Takes the lock, validates or creates the database, and returns the writer connection.
pub(crate) fn open_writer(path: &Path, opts: &SqliteOptions) -> Result<Opened, StoreError> {
    let exists = check_existing_file(path)?;
    if !exists && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create database directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    let lock = take_lock(path)?;

    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !exists {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
    let e = |e| db_err(path, e);
    // Until the file is known good, closing must not checkpoint a leftover WAL into it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(e)?;
    if exists {
        verify(path, &conn, opts.check_on_open)?;
    }
    let fresh = match schema_state(path, &conn)? {
        SchemaState::Empty => true,
        SchemaState::Ours => false,
    };
    // The writer is the last connection to close and checkpoints then.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(e)?;
    if fresh {
        // Must precede the first table; lets compaction return freed pages to the file system.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(e)?;
    }
    configure(&conn, opts, true).map_err(e)?;
    if fresh {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(e)?;
    }
    let (revision, compacted) = read_meta(&conn).map_err(e)?;
    Ok(Opened {
        conn,
        lock,
        revision,
        compacted,
    })
}

/// Opens a reader connection to a database that [`open_writer`] has validated.
pub(crate) fn open_reader(path: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let conn = open_secondary(path, opts)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| db_err(path, e))?;
    Ok(conn)
}

/// Opens the checkpointer's connection to a database that [`open_writer`] has validated.
pub(crate) fn open_checkpointer(
    path: &Path,
    opts: &SqliteOptions,
) -> Result<Connection, StoreError> {
    open_secondary(path, opts)
}

fn open_secondary(path: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
    // The writer closes last and does the final checkpoint.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| db_err(path, e))?;
    configure(&conn, opts, false).map_err(|e| db_err(path, e))?;
    Ok(conn)
}

/// Returns whether the file exists; fails if it exists but is not a readable SQLite file.
fn check_existing_file(path: &Path) -> Result<bool, StoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StoreError::Io {
                op: "stat database",
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
        return Err(StoreError::Io {
            op: "open database",
            path: path.to_owned(),
            source,
        });
    }
    if meta.len() == 0 {
        // SQLite treats an empty file as an empty database (e.g. a crash right after creation).
        return Ok(true);
    }
    let mut header = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "file is {} bytes, too short for an SQLite header",
                    meta.len()
                ),
            },
            _ => StoreError::Io {
                op: "read database",
                path: path.to_owned(),
                source,
            },
        })?;
    if &header != SQLITE_MAGIC {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "not an SQLite database (bad file header)".to_owned(),
        });
    }
    Ok(true)
}

fn take_lock(path: &Path) -> Result<File, StoreError> {
    let lock = lock_path(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| StoreError::Io {
            op: "open lock file",
            path: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            op: "lock",
            path: lock,
            source,
        }),
    }
}

/// Read-only checks of an existing database.
fn verify(path: &Path, conn: &Connection, full: bool) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if full {
        let mut stmt = conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(|e| db_err(path, e))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| db_err(path, e))?;
        if rows != ["ok"] {
            return Err(corrupt(format!("quick_check: {}", rows.join("; "))));
        }
    } else {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| db_err(path, e))?;
    }
    Ok(())
}

enum SchemaState {
    Empty,
    Ours,
}

fn schema_state(path: &Path, conn: &Connection) -> Result<SchemaState, StoreError> {
    let e = |e| db_err(path, e);
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(e)?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|r| r.collect())
        .map_err(e)?;
    if tables.is_empty() {
        return Ok(SchemaState::Empty);
    }
    let incompatible = |reason: String| StoreError::Incompatible {
        path: path.to_owned(),
        reason,
    };
    if !tables.iter().any(|t| t == "meta") {
        let hint = if tables.iter().any(|t| t == "kine") {
            " (a kine database)"
        } else {
            ""
        };
        return Err(incompatible(format!(
            "unknown tables {}{hint}",
            tables.join(", ")
        )));
    }
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(e)?;
    match version {
        Some(SCHEMA_VERSION) => Ok(SchemaState::Ours),
        Some(v) => Err(incompatible(format!(
            "schema version {v}, this build supports {SCHEMA_VERSION}"
        ))),
        None => Err(incompatible("meta table without schema_version".to_owned())),
    }
}

/// Per-connection settings. `journal_mode=WAL` is persistent and set by the writer only.
fn configure(conn: &Connection, opts: &SqliteOptions, writer: bool) -> rusqlite::Result<()> {
    if writer {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL required"
            )));
        }
        // Bound the WAL file left behind after a checkpoint.
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        // SQLite's default (1000 pages). The checkpointer copies frames concurrently, so when
        // this fires in the writer there is little left to copy; it is what lets the WAL
        // restart from its beginning under a continuous write load.
        conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
    }
    let sync = match opts.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "cache_size", -opts.cache_kib)?;
    conn.pragma_update(None, "mmap_size", opts.mmap_bytes.max(0))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// `(revision, compacted)` from `meta`.
pub(crate) fn read_meta(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM meta WHERE name IN ('revision', 'compacted')")?;
    let mut rows = stmt.query([])?;
    let (mut revision, mut compacted) = (0, 0);
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let value: i64 = row.get(1)?;
        if name == "revision" {
            revision = value;
        } else {
            compacted = value;
        }
    }
    Ok((revision, compacted))
}

/// One `log` row.
#[derive(Debug)]
pub(crate) struct LogRow {
    pub rev: Revision,
    pub key: String,
    pub kind: i64,
    pub create_rev: Revision,
    pub prev_rev: Revision,
    pub lease: Option<i64>,
    pub value: Option<Vec<u8>>,
}

impl LogRow {
    /// Reads `rev, key, kind, create_rev, prev_rev, lease, value` (columns 0 to 6).
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(LogRow {
            rev: row.get(0)?,
            key: row.get(1)?,
            kind: row.get(2)?,
            create_rev: row.get(3)?,
            prev_rev: row.get(4)?,
            lease: row.get(5)?,
            value: row.get(6)?,
        })
    }

    pub(crate) fn into_kv(self) -> KeyValue {
        KeyValue {
            key: self.key,
            value: self.value.map(Bytes::from).unwrap_or_default(),
            create_revision: self.create_rev,
            mod_revision: self.rev,
            lease_ttl: self.lease,
        }
    }
}
