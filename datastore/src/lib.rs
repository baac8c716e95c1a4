//! The datastore: a revisioned key-value store with watch, the storage model the API server is
//! written against (etcd's), in front of several databases.
//!
//! - [`Backend`] is the contract (see [`backend`] for the guarantees every implementation gives).
//! - [`open`] turns a parsed [`Endpoint`] (from [`parse_endpoint`], K3s' `--datastore-endpoint`)
//!   into a running backend: embedded SQLite ([`SqliteBackend`]), PostgreSQL and MySQL/MariaDB
//!   ([`sql::SqlBackend`]), or etcd 3 ([`etcd::EtcdBackend`]).
//! - [`watch::WatchHub`] is the backend-neutral fan-out of committed events: the SQLite writer
//!   feeds it after each commit, and the PostgreSQL/MySQL backend feeds it from a poller of the
//!   revision high-water mark (so servers sharing a database see each other's writes).
//! - `conformance` (with the `conformance` feature) is the suite every backend must pass.

pub mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod endpoint;
pub mod error;
pub mod etcd;
pub mod options;
pub mod sql;
pub mod sqlite;
pub mod types;
pub mod watch;

use std::sync::Arc;

pub use backend::{Backend, WatchStream};
pub use endpoint::{DbUrl, Endpoint, EndpointError, Secret, parse_endpoint};
pub use error::StoreError;
pub use options::{CompactionOptions, Durability, SqliteOptions, StoreOptions, WatchOptions};
pub use sql::TlsFiles;
pub use sqlite::SqliteBackend;
pub use types::{Event, KeyValue, ListResult, Revision};

/// Opens the store an endpoint names.
pub async fn open(
    endpoint: &Endpoint,
    opts: &StoreOptions,
) -> Result<Arc<dyn Backend>, StoreError> {
    if !matches!(endpoint, Endpoint::Sqlite { .. }) {
        check_tls_files(&opts.tls)?;
    }
    match endpoint {
        Endpoint::Sqlite { path, .. } => {
            Ok(Arc::new(SqliteBackend::open(path, opts.clone()).await?))
        }
        Endpoint::Postgres(url) => Ok(Arc::new(
            sql::SqlBackend::open_postgres(url, opts, &Default::default(), &opts.tls).await?,
        )),
        Endpoint::Mysql(url) => Ok(Arc::new(
            sql::SqlBackend::open_mysql(url, opts, &Default::default(), &opts.tls).await?,
        )),
        Endpoint::Etcd { endpoints } => Ok(Arc::new(
            etcd::EtcdBackend::connect(endpoints, opts, &Default::default(), &opts.tls).await?,
        )),
    }
}

/// A TLS file that cannot be read is a configuration error naming the file, not an outage to
/// retry.
fn check_tls_files(tls: &TlsFiles) -> Result<(), StoreError> {
    let files = [&tls.ca_file, &tls.cert_file, &tls.key_file];
    for path in files.into_iter().flatten() {
        std::fs::File::open(path).map_err(|source| StoreError::Io {
            op: "cannot read datastore TLS file",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreadable_tls_files_are_named_before_any_connection() {
        let dir = std::path::Path::new("/nonexistent-k3s-test");
        let endpoint = parse_endpoint("postgres://u:p@127.0.0.1:1/db", dir).expect("endpoint");
        let opts = StoreOptions {
            tls: TlsFiles {
                ca_file: Some(dir.join("ca.pem")),
                ..TlsFiles::default()
            },
            ..StoreOptions::default()
        };
        let err = open(&endpoint, &opts)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("/nonexistent-k3s-test/ca.pem"), "{err}");
        assert!(err.contains("TLS file"), "{err}");
    }
}
