//! Parsing K3s' `--datastore-endpoint` into a typed [`Endpoint`].
//!
//! Accepted forms (as K3s documents them):
//! - `""` → SQLite at `<data-dir>/server/db/state.db`;
//! - `sqlite://PATH[?query]` (kine's query parameters such as `_journal=WAL` are kept but this
//!   backend sets its own pragmas);
//! - `postgres://user:pass@host:port/db[?query]` and `postgresql://…`;
//! - `mysql://user:pass@tcp(host:3306)/db[?query]` (Go driver DSN) and `mysql://user:pass@host:3306/db`;
//! - `http(s)://h1:2379,h2:2379` (etcd; later hosts without a scheme inherit the first one's).
//!
//! Passwords are held in a [`Secret`] whose `Debug` and `Display` are redacted, and every error
//! carries the endpoint with its password replaced by `***`. In the user-info part, the separator
//! is the last `@` before the query; a password containing `?` must be percent-encoded.

use std::fmt;
use std::path::{Path, PathBuf};

/// A parsed datastore endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Embedded SQLite database file.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Query parameters given after `?` (informational).
        params: Vec<(String, String)>,
    },
    /// PostgreSQL server.
    Postgres(DbUrl),
    /// MySQL or MariaDB server.
    Mysql(DbUrl),
    /// etcd 3 cluster.
    Etcd {
        /// Client URLs, each `scheme://host[:port]`.
        endpoints: Vec<String>,
    },
}

impl Endpoint {
    /// The backend kind, e.g. `"sqlite"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Sqlite { .. } => "sqlite",
            Endpoint::Postgres(_) => "postgres",
            Endpoint::Mysql(_) => "mysql",
            Endpoint::Etcd { .. } => "etcd",
        }
    }
}

impl fmt::Display for Endpoint {
    /// A password-free rendering, safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Sqlite { path, .. } => write!(f, "sqlite://{}", path.display()),
            Endpoint::Postgres(u) => write!(f, "postgres://{u}"),
            Endpoint::Mysql(u) => write!(f, "mysql://{u}"),
            Endpoint::Etcd { endpoints } => write!(f, "{}", endpoints.join(",")),
        }
    }
}

/// Connection parameters of an SQL server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbUrl {
    /// User name, if given.
    pub user: Option<String>,
    /// Password, if given.
    pub password: Option<Secret>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// Database name (`kubernetes` when omitted, as kine does).
    pub database: String,
    /// Query parameters, percent-decoded.
    pub params: Vec<(String, String)>,
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}")?;
            if self.password.is_some() {
                write!(f, ":***")?;
            }
            write!(f, "@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.database)
    }
}

/// A password: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for handing to a database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why an endpoint string was rejected. `endpoint` is always password-free.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// The scheme is not one K3s supports.
    #[error(
        "unsupported datastore endpoint {endpoint:?}: expected sqlite://PATH, postgres://…, mysql://…, \
         http(s)://host:port (etcd), or empty for the embedded SQLite database"
    )]
    UnknownScheme {
        /// The endpoint, password redacted.
        endpoint: String,
    },
    /// The scheme is known but the rest is malformed.
    #[error("invalid datastore endpoint {endpoint:?}: {reason}")]
    Invalid {
        /// The endpoint, password redacted.
        endpoint: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The default SQLite file for a data directory.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

/// Parses K3s' `--datastore-endpoint`. See the module docs for the accepted forms.
pub fn parse_endpoint(s: &str, data_dir: &Path) -> Result<Endpoint, EndpointError> {
    let s = s.trim();
    let invalid = |reason| EndpointError::Invalid {
        endpoint: redact(s),
        reason,
    };
    if s.is_empty() {
        return Ok(Endpoint::Sqlite {
            path: default_sqlite_path(data_dir),
            params: vec![],
        });
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(EndpointError::UnknownScheme {
            endpoint: redact(s),
        });
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let path = if path.is_empty() {
                default_sqlite_path(data_dir)
            } else {
                PathBuf::from(path)
            };
            Ok(Endpoint::Sqlite {
                path,
                params: parse_query(query).map_err(invalid)?,
            })
        }
        "postgres" | "postgresql" => parse_sql_url(rest, false)
            .map(Endpoint::Postgres)
            .map_err(invalid),
        "mysql" => parse_sql_url(rest, true)
            .map(Endpoint::Mysql)
            .map_err(invalid),
        "http" | "https" => {
            let mut endpoints = Vec::new();
            let mut default_scheme = scheme.to_ascii_lowercase();
            for item in s.split(',').map(str::trim) {
                let (sch, hostport) = match item.split_once("://") {
                    Some((sch, hp)) => (sch.to_ascii_lowercase(), hp),
                    None => (default_scheme.clone(), item),
                };
                if sch != "http" && sch != "https" {
                    return Err(invalid("every etcd endpoint must be http:// or https://"));
                }
                let hostport = hostport.trim_end_matches('/');
                let (host, _) = split_host_port(hostport).map_err(invalid)?;
                if host.is_empty() {
                    return Err(invalid("empty etcd host"));
                }
                endpoints.push(format!("{sch}://{hostport}"));
                default_scheme = sch;
            }
            Ok(Endpoint::Etcd { endpoints })
        }
        _ => Err(EndpointError::UnknownScheme {
            endpoint: redact(s),
        }),
    }
}

/// Parses `[user[:pass]@]host[:port][/db][?query]`; with `mysql`, `tcp(host:port)` is accepted too.
fn parse_sql_url(rest: &str, mysql: bool) -> Result<DbUrl, &'static str> {
    let (before_query, query) = split_query(rest);
    let (userinfo, after) = match before_query.rfind('@') {
        Some(at) => (Some(&before_query[..at]), &before_query[at + 1..]),
        None => (None, before_query),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            (
                Some(percent_decode(u)?),
                p.map(|p| percent_decode(p).map(Secret)).transpose()?,
            )
        }
    };
    let (hostport, database) = if mysql && (after.starts_with("tcp(") || after.starts_with("unix("))
    {
        let close = after.find(')').ok_or("unclosed tcp( in MySQL address")?;
        if after.starts_with("unix(") {
            return Err("MySQL unix sockets are not supported; use tcp(host:port)");
        }
        let db = &after[close + 1..];
        if !db.is_empty() && !db.starts_with('/') {
            return Err("expected /database after tcp(host:port)");
        }
        (&after[4..close], db.trim_start_matches('/'))
    } else {
        match after.split_once('/') {
            Some((hp, db)) => (hp, db),
            None => (after, ""),
        }
    };
    if database.contains('/') {
        return Err("database name contains '/'");
    }
    let (host, port) = split_host_port(hostport)?;
    Ok(DbUrl {
        user: user.filter(|u| !u.is_empty()),
        password,
        host: if host.is_empty() {
            "localhost".to_owned()
        } else {
            host.to_owned()
        },
        port,
        database: if database.is_empty() {
            "kubernetes".to_owned()
        } else {
            percent_decode(database)?
        },
        params: parse_query(query)?,
    })
}

/// Splits at the `?` that starts the query: the first one after the last `@` (or anywhere if
/// there is no `@`), so that a query value may not be mistaken for the user info.
fn split_query(s: &str) -> (&str, &str) {
    let search_from = s
        .split('?')
        .next()
        .map_or(0, |head| head.rfind('@').map_or(0, |at| at + 1));
    match s[search_from..].find('?') {
        Some(q) => (&s[..search_from + q], &s[search_from + q + 1..]),
        None => (s, ""),
    }
}

/// `host[:port]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("expected :port after ']'")?),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.contains(['/', '@', ' ', '(', ')']) {
        return Err("invalid host");
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| "port must be a number 1-65535")
        })
        .transpose()?;
    if port == Some(0) {
        return Err("port must be a number 1-65535");
    }
    Ok((host, port))
}

fn parse_query(q: &str) -> Result<Vec<(String, String)>, &'static str> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "invalid percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid percent escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes are not UTF-8")
}

/// `s` with the password of its user info (if any) replaced by `***`.
pub fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let (before_query, query) = split_query(rest);
    let Some(at) = before_query.rfind('@') else {
        return s.to_owned();
    };
    let userinfo = &before_query[..at];
    let user = match userinfo.split_once(':') {
        Some((u, _)) => format!("{u}:***"),
        None => userinfo.to_owned(),
    };
    let mut out = format!("{scheme}://{user}@{}", &before_query[at + 1..]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        parse_endpoint(s, Path::new("/var/lib/rancher/k3s"))
    }

    fn url(user: &str, pass: &str, host: &str, port: Option<u16>, db: &str) -> DbUrl {
        DbUrl {
            user: Some(user.into()),
            password: Some(Secret(pass.into())),
            host: host.into(),
            port,
            database: db.into(),
            params: vec![],
        }
    }

    #[test]
    fn empty_is_default_sqlite() {
        assert_eq!(
            parse("").ok(),
            Some(Endpoint::Sqlite {
                path: "/var/lib/rancher/k3s/server/db/state.db".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse("sqlite://").ok(),
            Some(Endpoint::Sqlite {
                path: "/var/lib/rancher/k3s/server/db/state.db".into(),
                params: vec![]
            })
        );
    }

    #[test]
    fn sqlite_with_query() {
        assert_eq!(
            parse("sqlite:///data/state.db?_journal=WAL&cache=shared").ok(),
            Some(Endpoint::Sqlite {
                path: "/data/state.db".into(),
                params: vec![
                    ("_journal".into(), "WAL".into()),
                    ("cache".into(), "shared".into())
                ],
            })
        );
        assert_eq!(
            parse("sqlite://./db/state.db").ok(),
            Some(Endpoint::Sqlite {
                path: "./db/state.db".into(),
                params: vec![]
            })
        );
    }

    #[test]
    fn postgres_forms() {
        let mut expected = url("k3s", "s3cr@t", "db.example", Some(5432), "k3s");
        expected.params = vec![("sslmode".into(), "disable".into())];
        assert_eq!(
            parse("postgres://k3s:s3cr@t@db.example:5432/k3s?sslmode=disable").ok(),
            Some(Endpoint::Postgres(expected))
        );
        assert_eq!(
            parse("postgresql://k3s:p%3Fw@10.0.0.1/").ok(),
            Some(Endpoint::Postgres(url(
                "k3s",
                "p?w",
                "10.0.0.1",
                None,
                "kubernetes"
            )))
        );
        assert_eq!(
            parse("postgres://u:p@[::1]:5433/db").ok(),
            Some(Endpoint::Postgres(url("u", "p", "::1", Some(5433), "db")))
        );
    }

    #[test]
    fn mysql_forms() {
        let want = Endpoint::Mysql(url("root", "pa:ss", "127.0.0.1", Some(3306), "k3s"));
        assert_eq!(
            parse("mysql://root:pa:ss@tcp(127.0.0.1:3306)/k3s").ok(),
            Some(want.clone())
        );
        assert_eq!(
            parse("mysql://root:pa:ss@127.0.0.1:3306/k3s").ok(),
            Some(want)
        );
        let no_db = parse("mysql://root:x@tcp(db:3306)/").ok();
        assert_eq!(
            no_db,
            Some(Endpoint::Mysql(url(
                "root",
                "x",
                "db",
                Some(3306),
                "kubernetes"
            )))
        );
    }

    #[test]
    fn etcd_forms() {
        assert_eq!(
            parse("https://h1:2379,h2:2379").ok(),
            Some(Endpoint::Etcd {
                endpoints: vec!["https://h1:2379".into(), "https://h2:2379".into()]
            })
        );
        assert_eq!(
            parse("http://10.0.0.1:2379").ok(),
            Some(Endpoint::Etcd {
                endpoints: vec!["http://10.0.0.1:2379".into()]
            })
        );
    }

    #[test]
    fn bad_endpoints_are_named_without_passwords() {
        for bad in [
            "nats://localhost:4222",
            "foo",
            "etcd://h:2379",
            "redis://user:hunter2@host/0",
            "/var/lib/state.db",
        ] {
            let err = parse(bad).err();
            let Some(err) = err else {
                panic!("{bad} was accepted")
            };
            let msg = err.to_string();
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(
                matches!(err, EndpointError::UnknownScheme { .. }),
                "{bad}: {msg}"
            );
        }
        for bad in [
            "postgres://u:hunter2@host:notaport/db",
            "mysql://u:hunter2@tcp(host:3306/db",
            "mysql://u:hunter2@unix(/run/mysqld.sock)/db",
            "https://h1:2379,ftp://h2:21",
            "https://:2379",
            "postgres://u:hunter2@host:0/db",
            "postgres://u:hunter2@host/a/b",
        ] {
            let err = parse(bad).err();
            let Some(err) = err else {
                panic!("{bad} was accepted")
            };
            let msg = err.to_string();
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(msg.contains("***") || !bad.contains("hunter2"), "{msg}");
            assert!(matches!(err, EndpointError::Invalid { .. }), "{bad}: {msg}");
        }
    }

    #[test]
    fn display_and_debug_hide_passwords() {
        let Ok(ep) = parse("postgres://k3s:hunter2@db:5432/k3s") else {
            panic!("parse failed")
        };
        assert_eq!(ep.to_string(), "postgres://k3s:***@db:5432/k3s");
        assert!(!format!("{ep:?}").contains("hunter2"));
        assert_eq!(
            redact("mysql://u:hunter2@tcp(h:1)/d?x=1"),
            "mysql://u:***@tcp(h:1)/d?x=1"
        );
        assert_eq!(redact("https://h:2379"), "https://h:2379");
    }
}
