//! The SQL text of every statement, per server dialect.
//!
//! Statements are written once with `?` placeholders and MySQL/PostgreSQL differences spelled out
//! where they exist; PostgreSQL's `$n` placeholders are produced by [`Dialect::new`]. Every string
//! here is a constant of this module (no value is ever spliced into SQL; values are bound), which is
//! what makes handing them to sqlx through `AssertSqlSafe` sound.
//!
//! Reads that must be checked against compaction are wrapped as
//! `SELECT m.value, r.* FROM kine_meta m LEFT JOIN (<read>) r ON 1=1 WHERE m.name = 'compact_rev'`,
//! so the rows and the compacted revision come from one statement, hence one snapshot: if the
//! compaction that removed a row the read needed had committed before the snapshot, its marker has
//! too, and the read reports `Compacted` instead of a partial answer (compaction commits the
//! marker before deleting rows). The wrapped result has at least one row; its order is not
//! guaranteed, so callers sort.

use std::sync::Arc;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// PostgreSQL (10 or newer).
    Postgres,
    /// MySQL 8 or MariaDB 10.3 and newer.
    Mysql,
}

impl Kind {
    /// The backend name used in errors and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
        }
    }
}

/// Longest key, in bytes. MySQL's `VARBINARY(630)` (kine's limit) bounds it there; PostgreSQL's
/// b-tree entries must stay well below a third of a page.
pub(crate) fn max_key_bytes(kind: Kind) -> usize {
    match kind {
        Kind::Postgres => 2000,
        Kind::Mysql => 630,
    }
}

/// The schema version this code writes; stored in `kine_meta`.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Schema statements, run in order under the setup lock. Each is idempotent.
pub(crate) fn schema(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Postgres => &[
            "CREATE TABLE IF NOT EXISTS kine_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS kine (
                id BIGSERIAL PRIMARY KEY,
                name TEXT COLLATE \"C\" NOT NULL,
                created SMALLINT NOT NULL,
                deleted SMALLINT NOT NULL,
                create_revision BIGINT NOT NULL,
                prev_revision BIGINT NOT NULL,
                lease BIGINT NOT NULL,
                value BYTEA,
                old_value BYTEA)",
            "CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id)",
            "CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision ON kine (name, prev_revision)",
            "INSERT INTO kine_meta (name, value) VALUES
                ('schema_version', 1), ('compact_rev', 0), ('compact_swept', 0)
                ON CONFLICT DO NOTHING",
        ],
        Kind::Mysql => &[
            "CREATE TABLE IF NOT EXISTS kine_meta (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                value BIGINT NOT NULL) ENGINE=InnoDB",
            "CREATE TABLE IF NOT EXISTS kine (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                name VARBINARY(630) NOT NULL,
                created SMALLINT NOT NULL,
                deleted SMALLINT NOT NULL,
                create_revision BIGINT NOT NULL,
                prev_revision BIGINT NOT NULL,
                lease BIGINT NOT NULL,
                value LONGBLOB,
                old_value LONGBLOB,
                INDEX kine_name_id (name, id),
                UNIQUE INDEX kine_name_prev_revision (name, prev_revision)) ENGINE=InnoDB",
            "INSERT IGNORE INTO kine_meta (name, value) VALUES
                ('schema_version', 1), ('compact_rev', 0), ('compact_swept', 0)",
        ],
    }
}

/// One dialect's statements, placeholders already rendered.
#[derive(Debug)]
pub(crate) struct Dialect {
    pub kind: Kind,
    /// `(compact, r.*)`: the latest version of key `?` with id `<= ?`.
    pub get: Arc<str>,
    /// `(compact, r.*)`: live keys `>= ?` (prefix) and `> ?` (start after) and `< ?` (prefix end),
    /// at revision `?` (twice), at most `?` rows.
    pub list_bounded: Arc<str>,
    /// As `list_bounded` without the prefix end.
    pub list_unbounded: Arc<str>,
    /// `(compact, count)`: live keys `>= ?` and `< ?` at revision `?` (twice).
    pub count_bounded: Arc<str>,
    /// As `count_bounded` without the prefix end.
    pub count_unbounded: Arc<str>,
    /// `(compact, r.*, prev_value, prev_lease)`: rows with id in `(?, ?]`, at most `?`.
    pub poll: Arc<str>,
    /// As `poll`, only keys `>= ?` and `< ?`.
    pub history_bounded: Arc<str>,
    /// As `poll`, only keys `>= ?`.
    pub history_unbounded: Arc<str>,
    /// Row: the newest row of key `?` (any kind), for compare-and-swap.
    pub latest: Arc<str>,
    /// Inserts a row `(name, created, deleted, create_revision, prev_revision, lease, value)`;
    /// PostgreSQL returns the id.
    pub insert: Arc<str>,
    /// Takes id `?` for a gap filler (name '', deleted, prev_revision = its own id `?`).
    pub fill_gap: Arc<str>,
    /// `(max_id)`: the highest id, or NULL.
    pub max_id: Arc<str>,
    /// `(value)` of meta row `?`.
    pub meta_get: Arc<str>,
    /// Raises a meta row: `value = ?` where `name = ?` and `value < ?`.
    pub meta_raise: Arc<str>,
    /// `(prev_revision)` of data rows with id in `(?, ?]`: versions superseded within the window.
    pub superseded: Arc<str>,
    /// `(id)` of deletes and gap fillers with id in `(?, ?]`.
    pub tombstones: Arc<str>,
    /// Live leased keys at revision `?`: `(r.*)` rows.
    pub leased: Arc<str>,
    /// `(bytes)`: the size of the tables.
    pub size: Arc<str>,
}

/// The record columns, as the aliases `id, name, created, deleted, create_revision,
/// prev_revision, lease, value` (MySQL returns the binary key as text).
fn cols(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "c.id AS id, c.name AS name, c.created AS created, c.deleted AS deleted, \
             c.create_revision AS create_revision, c.prev_revision AS prev_revision, \
             c.lease AS lease, c.value AS value"
        }
        Kind::Mysql => {
            "c.id AS id, CAST(c.name AS CHAR CHARACTER SET utf8mb4) AS name, c.created AS created, \
             c.deleted AS deleted, c.create_revision AS create_revision, \
             c.prev_revision AS prev_revision, c.lease AS lease, c.value AS value"
        }
    }
}

fn with_compact(inner: &str) -> String {
    format!(
        "SELECT m.value AS compact, r.* FROM kine_meta m LEFT JOIN ({inner}) r ON 1=1 \
         WHERE m.name = 'compact_rev'"
    )
}

/// `?` → `$1, $2, …` for PostgreSQL.
fn render(kind: Kind, sql: &str) -> Arc<str> {
    match kind {
        Kind::Mysql => Arc::from(sql),
        Kind::Postgres => {
            let mut out = String::with_capacity(sql.len() + 16);
            let mut n = 0;
            for ch in sql.chars() {
                if ch == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(ch);
                }
            }
            Arc::from(out)
        }
    }
}

/// Rows (by name `c.name`) that are not superseded by a row with id `<= ?`.
const NOT_SUPERSEDED: &str =
    "NOT EXISTS (SELECT 1 FROM kine n WHERE n.name = c.name AND n.id > c.id AND n.id <= ?)";

impl Dialect {
    /// Builds every statement for `kind`.
    pub(crate) fn new(kind: Kind) -> Self {
        let c = cols(kind);
        let r = |s: String| render(kind, &s);
        let list = |bounded: bool| {
            let end = if bounded { "AND c.name < ? " } else { "" };
            with_compact(&format!(
                "SELECT {c} FROM kine c WHERE c.name >= ? AND c.name > ? {end}AND c.id <= ? \
                 AND c.deleted = 0 AND {NOT_SUPERSEDED} ORDER BY c.name LIMIT ?"
            ))
        };
        let count = |bounded: bool| {
            let end = if bounded { "AND c.name < ? " } else { "" };
            format!(
                "SELECT m.value AS compact, (SELECT COUNT(*) FROM kine c WHERE c.name >= ? {end}\
                 AND c.id <= ? AND c.deleted = 0 AND {NOT_SUPERSEDED}) AS cnt \
                 FROM kine_meta m WHERE m.name = 'compact_rev'"
            )
        };
        let events = |range: &str| {
            with_compact(&format!(
                "SELECT {c}, p.value AS prev_value, p.lease AS prev_lease \
                 FROM kine c LEFT JOIN kine p ON p.id = c.prev_revision \
                 WHERE c.id > ? AND c.id <= ? {range}ORDER BY c.id LIMIT ?"
            ))
        };
        let insert_cols = "name, created, deleted, create_revision, prev_revision, lease, value";
        Dialect {
            kind,
            get: r(with_compact(&format!(
                "SELECT {c} FROM kine c WHERE c.name = ? AND c.id <= ? ORDER BY c.id DESC LIMIT 1"
            ))),
            list_bounded: r(list(true)),
            list_unbounded: r(list(false)),
            count_bounded: r(count(true)),
            count_unbounded: r(count(false)),
            poll: r(events("")),
            history_bounded: r(events("AND c.name >= ? AND c.name < ? ")),
            history_unbounded: r(events("AND c.name >= ? ")),
            latest: r(format!(
                "SELECT {c} FROM kine c WHERE c.name = ? ORDER BY c.id DESC LIMIT 1"
            )),
            insert: r(match kind {
                Kind::Postgres => {
                    format!("INSERT INTO kine ({insert_cols}) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id")
                }
                Kind::Mysql => format!("INSERT INTO kine ({insert_cols}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            }),
            fill_gap: r(format!(
                "INSERT INTO kine (id, {insert_cols}) VALUES (?, '', 0, 1, 0, ?, 0, NULL)"
            )),
            max_id: r("SELECT MAX(id) AS max_id FROM kine".to_owned()),
            meta_get: r("SELECT value FROM kine_meta WHERE name = ?".to_owned()),
            meta_raise: r("UPDATE kine_meta SET value = ? WHERE name = ? AND value < ?".to_owned()),
            superseded: r(
                "SELECT prev_revision FROM kine WHERE id > ? AND id <= ? AND prev_revision > 0 \
                 AND name <> ''"
                    .to_owned(),
            ),
            tombstones: r("SELECT id FROM kine WHERE id > ? AND id <= ? AND deleted = 1".to_owned()),
            leased: r(format!(
                "SELECT {c} FROM kine c WHERE c.lease > 0 AND c.deleted = 0 AND c.id <= ? \
                 AND {NOT_SUPERSEDED}"
            )),
            size: r(match kind {
                Kind::Postgres => {
                    "SELECT CAST(pg_total_relation_size('kine') + pg_total_relation_size('kine_meta') \
                     AS BIGINT)"
                        .to_owned()
                }
                Kind::Mysql => "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
                     FROM information_schema.tables WHERE table_schema = DATABASE() \
                     AND table_name IN ('kine', 'kine_meta')"
                    .to_owned(),
            }),
        }
    }

    /// `DELETE FROM kine WHERE id IN (?, …)` for `n` ids.
    pub(crate) fn delete_ids(&self, n: usize) -> String {
        let mut sql = String::from("DELETE FROM kine WHERE id IN (");
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            match self.kind {
                Kind::Postgres => {
                    sql.push('$');
                    sql.push_str(&(i + 1).to_string());
                }
                Kind::Mysql => sql.push('?'),
            }
        }
        sql.push(')');
        sql
    }
}

/// The smallest string greater than every string that starts with `prefix` (in code point order,
/// which is UTF-8 byte order), or `None` if there is none (the empty prefix).
pub(crate) fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let mut next = c as u32 + 1;
        if next == 0xD800 {
            next = 0xE000;
        }
        if let Some(n) = char::from_u32(next) {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
        // `c` was U+10FFFF: nothing follows it, so carry into the previous character.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        let d = Dialect::new(Kind::Postgres);
        assert!(d.get.contains("c.name = $1 AND c.id <= $2"), "{}", d.get);
        assert!(d.list_bounded.contains("LIMIT $6"), "{}", d.list_bounded);
        assert_eq!(d.delete_ids(2), "DELETE FROM kine WHERE id IN ($1, $2)");
        let m = Dialect::new(Kind::Mysql);
        assert!(!m.get.contains('$'));
        assert_eq!(m.delete_ids(2), "DELETE FROM kine WHERE id IN (?, ?)");
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_upper(""), None);
        assert_eq!(prefix_upper("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper("\u{D7FF}").as_deref(), Some("\u{E000}"));
        let up = prefix_upper("/é").unwrap_or_default();
        assert!("/é\u{10FFFF}" < up.as_str() && "/é" < up.as_str() && up.as_str() < "/ê\u{1}");
    }
}
