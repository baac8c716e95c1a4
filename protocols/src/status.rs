//! `metav1.Status`, the body of every Kubernetes error response.
//!
//! Errors inside the process are typed per module; they become a `Status` only at the HTTP edge,
//! with upstream's reasons and codes, because kubectl prints `message` verbatim and branches on
//! `reason` and `code`.

use serde::{Deserialize, Serialize};

/// A `metav1.Status` object (`kind: Status`, `apiVersion: v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always `Status`.
    pub kind: String,
    /// Always `v1`.
    pub api_version: String,
    /// Empty list metadata, present for upstream compatibility.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `Success` or `Failure`.
    pub status: String,
    /// Human-readable description, printed by kubectl as is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Invalid`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Extra detail (name, kind, field causes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// The HTTP status code.
    pub code: u16,
}

impl Status {
    /// A failure with `code`, `reason` and `message`.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".to_owned(),
            api_version: "v1".to_owned(),
            metadata: serde_json::Map::new(),
            status: "Failure".to_owned(),
            message: message.into(),
            reason: reason.to_owned(),
            details: None,
            code,
        }
    }

    /// 404 NotFound for a path nothing serves.
    pub fn path_not_found(path: &str) -> Self {
        Status::failure(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Status::failure(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden for `user` doing `what`.
    pub fn forbidden(user: &str, what: &str) -> Self {
        Status::failure(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {what}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_upstream() {
        let s = serde_json::to_value(Status::failure(404, "NotFound", "nope")).expect("json");
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["apiVersion"], "v1");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert!(s.get("details").is_none());
    }
}
