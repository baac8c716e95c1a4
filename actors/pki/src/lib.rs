//! The cluster's public-key infrastructure.
//!
//! Owns the certificate authorities under `<data-dir>/server/tls`, the certificates signed by them
//! and the service-account key: generated on first start, reused after, leaves renewed when they
//! near expiry. Other components never read these files themselves; they get PEM from here.

pub mod bootstrap;
pub mod certs;

pub use certs::{Ca, CertInfo, ClusterPki, Leaf, PkiError, ServingNames, Usage, ensure};
pub mod actor;

pub use actor::{CertAuthority, PkiMsg};
