//! Connection settings of the SQL servers: TLS files (`--datastore-cafile/-certfile/-keyfile`) and
//! the endpoint's query parameters, turned into sqlx connect options.
//!
//! Precedence follows kine: a TLS parameter given in the endpoint's query wins over the matching
//! file from [`TlsFiles`]; giving any TLS file without an explicit mode selects full verification
//! (`verify-full` for PostgreSQL, `VERIFY_IDENTITY` for MySQL). Without either, the driver default
//! applies: TLS if the server offers it, plain otherwise. Passwords are only ever handed to the
//! driver, never formatted.

use std::path::PathBuf;

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::endpoint::DbUrl;

/// TLS material for connecting to an external datastore (K3s' `--datastore-cafile`,
/// `--datastore-certfile` and `--datastore-keyfile`), shared by the SQL and etcd backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require client authentication.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// A rejected connection setting (the endpoint is named by the caller).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid value {value:?} for {param}: expected {expected}")]
pub struct ParamError {
    /// The query parameter.
    pub param: String,
    /// Its value.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

fn param_error(param: &str, value: &str, expected: &'static str) -> ParamError {
    ParamError {
        param: param.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// PostgreSQL connect options for `url` (database `database`), honouring libpq's `sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey` and `application_name` parameters.
pub(crate) fn pg_options(
    url: &DbUrl,
    database: &str,
    tls: &TlsFiles,
) -> Result<PgConnectOptions, ParamError> {
    let mut o = PgConnectOptions::new_without_pgpass()
        .host(&url.host)
        .port(url.port.unwrap_or(5432))
        .database(database)
        .application_name("k3s");
    if let Some(user) = &url.user {
        o = o.username(user);
    }
    if let Some(pw) = &url.password {
        o = o.password(pw.expose());
    }
    let mut mode: Option<PgSslMode> = None;
    let (mut ca, mut cert, mut key) = (false, false, false);
    for (k, v) in &url.params {
        match k.as_str() {
            "sslmode" => {
                mode = Some(match v.as_str() {
                    "disable" => PgSslMode::Disable,
                    "allow" => PgSslMode::Allow,
                    "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verify-ca" => PgSslMode::VerifyCa,
                    "verify-full" => PgSslMode::VerifyFull,
                    _ => {
                        return Err(param_error(
                            k,
                            v,
                            "disable, allow, prefer, require, verify-ca or verify-full",
                        ));
                    }
                })
            }
            "sslrootcert" => {
                o = o.ssl_root_cert(v);
                ca = true;
            }
            "sslcert" => {
                o = o.ssl_client_cert(v);
                cert = true;
            }
            "sslkey" => {
                o = o.ssl_client_key(v);
                key = true;
            }
            "application_name" => o = o.application_name(v),
            other => tracing::debug!(param = other, "ignoring PostgreSQL endpoint parameter"),
        }
    }
    if let (Some(f), false) = (&tls.ca_file, ca) {
        o = o.ssl_root_cert(f);
    }
    if let (Some(f), false) = (&tls.cert_file, cert) {
        o = o.ssl_client_cert(f);
    }
    if let (Some(f), false) = (&tls.key_file, key) {
        o = o.ssl_client_key(f);
    }
    match mode {
        Some(m) => o = o.ssl_mode(m),
        None if !tls.is_empty() => o = o.ssl_mode(PgSslMode::VerifyFull),
        None => {}
    }
    Ok(o)
}

/// MySQL connect options for `url` (database `database`, or none), honouring the Go driver's `tls`
/// parameter (`true`, `false`, `skip-verify`, `preferred`) and sqlx/mysql's `ssl-mode`, `ssl-ca`,
/// `ssl-cert`, `ssl-key`.
pub(crate) fn mysql_options(
    url: &DbUrl,
    database: Option<&str>,
    tls: &TlsFiles,
) -> Result<MySqlConnectOptions, ParamError> {
    let mut o = MySqlConnectOptions::new()
        .host(&url.host)
        .port(url.port.unwrap_or(3306))
        .charset("utf8mb4");
    if let Some(db) = database {
        o = o.database(db);
    }
    if let Some(user) = &url.user {
        o = o.username(user);
    }
    if let Some(pw) = &url.password {
        o = o.password(pw.expose());
    }
    let mut mode: Option<MySqlSslMode> = None;
    let (mut ca, mut cert, mut key) = (false, false, false);
    for (k, v) in &url.params {
        match k.as_str() {
            "tls" => {
                mode = Some(match v.to_ascii_lowercase().as_str() {
                    "true" => MySqlSslMode::VerifyIdentity,
                    "false" => MySqlSslMode::Disabled,
                    "skip-verify" => MySqlSslMode::Required,
                    "preferred" => MySqlSslMode::Preferred,
                    _ => {
                        return Err(param_error(k, v, "true, false, skip-verify or preferred"));
                    }
                })
            }
            "ssl-mode" | "sslmode" => {
                mode = Some(match v.to_ascii_uppercase().replace('-', "_").as_str() {
                    "DISABLED" => MySqlSslMode::Disabled,
                    "PREFERRED" => MySqlSslMode::Preferred,
                    "REQUIRED" => MySqlSslMode::Required,
                    "VERIFY_CA" => MySqlSslMode::VerifyCa,
                    "VERIFY_IDENTITY" => MySqlSslMode::VerifyIdentity,
                    _ => {
                        return Err(param_error(
                            k,
                            v,
                            "DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
                        ));
                    }
                })
            }
            "ssl-ca" => {
                o = o.ssl_ca(v);
                ca = true;
            }
            "ssl-cert" => {
                o = o.ssl_client_cert(v);
                cert = true;
            }
            "ssl-key" => {
                o = o.ssl_client_key(v);
                key = true;
            }
            other => tracing::debug!(param = other, "ignoring MySQL endpoint parameter"),
        }
    }
    if let (Some(f), false) = (&tls.ca_file, ca) {
        o = o.ssl_ca(f);
    }
    if let (Some(f), false) = (&tls.cert_file, cert) {
        o = o.ssl_client_cert(f);
    }
    if let (Some(f), false) = (&tls.key_file, key) {
        o = o.ssl_client_key(f);
    }
    match mode {
        Some(m) => o = o.ssl_mode(m),
        None if !tls.is_empty() => o = o.ssl_mode(MySqlSslMode::VerifyIdentity),
        None => {}
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;

    fn url(s: &str) -> DbUrl {
        match crate::parse_endpoint(s, std::path::Path::new("/tmp")) {
            Ok(Endpoint::Postgres(u) | Endpoint::Mysql(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn postgres_tls_precedence() {
        let tls = TlsFiles {
            ca_file: Some("/etc/ca.pem".into()),
            ..TlsFiles::default()
        };
        let o = pg_options(&url("postgres://u:p@h/db"), "db", &tls).expect("options");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        let o =
            pg_options(&url("postgres://u:p@h/db?sslmode=disable"), "db", &tls).expect("options");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Disable));
        let o = pg_options(
            &url("postgres://u:p@h:6000/db"),
            "other",
            &TlsFiles::default(),
        )
        .expect("options");
        assert_eq!((o.get_port(), o.get_database()), (6000, Some("other")));
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Prefer));
        assert!(pg_options(&url("postgres://u:p@h/db?sslmode=bogus"), "db", &tls).is_err());
    }

    #[test]
    fn mysql_tls_modes() {
        let none = TlsFiles::default();
        let o = mysql_options(
            &url("mysql://u:p@tcp(h:3306)/db?tls=skip-verify"),
            None,
            &none,
        )
        .expect("options");
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Required));
        let o =
            mysql_options(&url("mysql://u:p@tcp(h:3306)/db"), Some("db"), &none).expect("options");
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Preferred));
        assert!(mysql_options(&url("mysql://u:p@h/db?tls=maybe"), None, &none).is_err());
    }
}
