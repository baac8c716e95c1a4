//! The datastore: a revisioned key-value store with watch, the storage model the API server is
//! written against (etcd's), in front of several databases.
//!
//! - [`Backend`] is the contract (see [`backend`] for the guarantees every implementation gives).
//! - [`open`] turns a parsed [`Endpoint`] (from [`parse_endpoint`], K3s' `--datastore-endpoint`)
//!   into a running backend. Today: embedded SQLite ([`SqliteBackend`]); PostgreSQL, MySQL and
//!   etcd endpoints parse but return [`StoreError::Unsupported`].
//! - [`watch::WatchHub`] is the backend-neutral fan-out of committed events: the SQLite writer
//!   feeds it after each commit, and a future external-database backend will feed it from a poller
//!   of the revision high-water mark (so servers sharing a database see each other's writes).
//! - `conformance` (with the `conformance` feature) is the suite every backend must pass.

pub mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod endpoint;
pub mod error;
pub mod options;
pub mod sqlite;
pub mod types;
pub mod watch;

use std::sync::Arc;

pub use backend::{Backend, WatchStream};
pub use endpoint::{DbUrl, Endpoint, EndpointError, Secret, parse_endpoint};
pub use error::StoreError;
pub use options::{CompactionOptions, Durability, SqliteOptions, StoreOptions, WatchOptions};
pub use sqlite::SqliteBackend;
pub use types::{Event, KeyValue, ListResult, Revision};

/// Opens the store an endpoint names.
pub async fn open(
    endpoint: &Endpoint,
    opts: &StoreOptions,
) -> Result<Arc<dyn Backend>, StoreError> {
    match endpoint {
        Endpoint::Sqlite { path, .. } => {
            Ok(Arc::new(SqliteBackend::open(path, opts.clone()).await?))
        }
        Endpoint::Postgres(_) => Err(StoreError::Unsupported { kind: "postgres" }),
        Endpoint::Mysql(_) => Err(StoreError::Unsupported { kind: "mysql" }),
        Endpoint::Etcd { .. } => Err(StoreError::Unsupported { kind: "etcd" }),
    }
}
