//! Errors of request handling, and their one mapping to `metav1.Status` (the API edge).
//!
//! Messages follow upstream's wording because kubectl prints them verbatim and users search for
//! them (`configmaps "x" not found`, `the object has been modified; ...`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocols::status::Status;
use serde_json::{Value, json};

/// A field-level validation failure (`details.causes[]` of an Invalid status).
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// Human-readable message, e.g. `Required value`.
    pub message: String,
}

impl Cause {
    /// A required field is missing.
    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// A field has a bad value; `detail` explains.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }

    /// A value is not one of the supported ones.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {value}: supported values: {list}"),
        }
    }

    /// A value duplicates another.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }

    /// A value is too long.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: must have at most {max} bytes"),
        }
    }

    /// A forbidden field or change.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// Everything that can go wrong serving one API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad body, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials.
    #[error("Unauthorized")]
    Unauthorized,
    /// Not allowed, with upstream's message.
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Plural resource, qualified with its group when not core (`deployments.apps`).
        resource: String,
        /// Object name.
        name: String,
    },
    /// A path nothing serves.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// The HTTP method is not allowed on this path.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The object already exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Qualified resource.
        resource: String,
        /// Object name.
        name: String,
    },
    /// Optimistic concurrency failure.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        /// Qualified resource.
        resource: String,
        /// Object name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Server-side apply conflicts.
    #[error("{message}")]
    ApplyConflict {
        /// Upstream's message (`Apply failed with 1 conflict: ...`).
        message: String,
        /// One cause per conflicting field.
        causes: Vec<Cause>,
    },
    /// The object fails validation.
    #[error("{kind} \"{name}\" is invalid: {}", summarize(.causes))]
    Invalid {
        /// Kind.
        kind: String,
        /// Object name.
        name: String,
        /// Group of the kind (for details).
        group: String,
        /// Field causes.
        causes: Vec<Cause>,
    },
    /// A resource version that is no longer available.
    #[error("{0}")]
    Gone(String),
    /// The body is larger than the server accepts.
    #[error("the request body is too large: limit is {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A content type the server cannot read for this request.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No acceptable response format.
    #[error("{0}")]
    NotAcceptable(String),
    /// The datastore is down or timing out.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected datastore error.
    #[error("{0}")]
    Internal(String),
}

fn summarize(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// The `metav1.Status` for this error.
    pub fn status(&self) -> Status {
        let msg = self.to_string();
        let (code, reason) = match self {
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::Forbidden(_) => (403, "Forbidden"),
            ApiError::NotFound { .. } | ApiError::NoRoute => (404, "NotFound"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::Gone(_) => (410, "Expired"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::NotAcceptable(_) => (406, "NotAcceptable"),
            ApiError::Unavailable(_) => (503, "ServiceUnavailable"),
            ApiError::Internal(_) => (500, "InternalError"),
        };
        let mut s = Status::failure(code, reason, msg);
        s.details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                let mut d = json!({"name": name, "kind": kind});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Invalid {
                kind,
                name,
                group,
                causes,
            } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                let mut d = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(json!({"causes": causes}))
            }
            _ => None,
        };
        s
    }
}

impl From<datastore::StoreError> for ApiError {
    fn from(e: datastore::StoreError) -> Self {
        use datastore::StoreError as E;
        match e {
            E::Compacted {
                requested,
                compacted,
            } => ApiError::Gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::Unavailable { .. } => {
                ApiError::Unavailable(format!("the datastore is unavailable: {e}"))
            }
            other => ApiError::Internal(format!("datastore: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        status_response(&self.status())
    }
}

/// Render a Status as the HTTP response.
pub fn status_response(s: &Status) -> Response {
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(s).unwrap_or_default();
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_upstream() {
        let s = ApiError::NotFound {
            resource: "configmaps".into(),
            name: "absent".into(),
        }
        .status();
        assert_eq!(
            (s.code, s.reason.as_str(), s.message.as_str()),
            (404, "NotFound", "configmaps \"absent\" not found")
        );
        let s = ApiError::Invalid {
            kind: "Pod".into(),
            name: "p".into(),
            group: String::new(),
            causes: vec![Cause::required("spec.containers")],
        }
        .status();
        assert_eq!(s.code, 422);
        assert_eq!(
            s.message,
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
        let d = s.details.expect("details");
        assert_eq!(d["causes"][0]["reason"], "FieldValueRequired");
    }
}
