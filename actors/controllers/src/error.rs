//! The error every reconcile returns: what failed, with the API error as its source. A reconcile
//! error is never fatal: the key is requeued with backoff (see [`crate::runner`]).

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed (conflicts included: the retry re-reads the object).
    #[error("{action}: {source}")]
    Api {
        /// What was being done, e.g. `create pod in default`.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks a field the loop needs (a name, a namespace, a uid).
    #[error("{kind} is missing {field}")]
    Missing {
        /// The object's kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// An object holds a value the loop cannot use (a bad maxSurge, a bad selector).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// API discovery failed.
    #[error("discovery: {0}")]
    Discovery(#[source] kube::Error),
    /// The work is not finished yet (waiting for pods to go away); retry soon.
    #[error("waiting: {0}")]
    Waiting(String),
}

impl Error {
    /// Wraps an API error with what was being done.
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }
}

/// Whether an API error is this HTTP status code.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The namespace, name and uid of a namespaced object of `kind`; [`Error::Missing`] names the
/// first one absent.
pub(crate) fn identity<'a>(
    meta: &'a kube::api::ObjectMeta,
    kind: &'static str,
) -> Result<(&'a str, &'a str, &'a str), Error> {
    let field = |value: &'a Option<String>, field: &'static str| {
        value.as_deref().ok_or(Error::Missing { kind, field })
    };
    Ok((
        field(&meta.namespace, "metadata.namespace")?,
        field(&meta.name, "metadata.name")?,
        field(&meta.uid, "metadata.uid")?,
    ))
}
