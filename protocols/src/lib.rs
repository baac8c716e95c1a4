//! Pure types and codecs shared by every component of the distribution.
//!
//! Nothing here does I/O or depends on a runtime: the crate holds wire formats (the cluster join
//! token, later the Kubernetes object codecs) and their validation, so any layer can use them.

pub mod patch;
pub mod protobuf;
pub mod selector;
pub mod status;
pub mod table;
pub mod token;
pub mod user;
