//! Object patching: RFC 6902 JSON patch, RFC 7386 merge patch, Kubernetes strategic merge patch,
//! and server-side apply with its managed-fields bookkeeping.
//!
//! Everything works on decoded `serde_json::Value` objects and is pure: the API server hands in
//! the live object and the request body, and validates and stores whatever comes back like any
//! other write. Inputs are never mutated, and no input makes these functions panic (the property
//! tests at the bottom feed them arbitrary JSON).
//!
//! Which lists merge, and by which keys, comes from a hand-written table of upstream's struct tags
//! for the built-in kinds (the `schema` module). Kinds outside the built-in API groups are custom
//! resources: strategic merge patch refuses them (upstream answers 415), and server-side apply
//! treats their lists as atomic, as upstream does for CRD schemas without `x-kubernetes-list-type`.

mod fieldset;
mod schema;
mod ssa;
mod strategic;

use serde_json::Value;

pub use fieldset::{FieldPath, FieldSet, FieldsV1Error, PathElement};
pub use schema::is_builtin_group;
pub use ssa::{ApplyError, Conflict, apply, fields_of, update_managed_fields};
pub use strategic::strategic_merge_patch;

/// Upstream's cap on the number of operations in one JSON patch (`MaxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The API group and kind of the patched object: selects the patch metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKind<'a> {
    /// API group, `""` for the core group.
    pub group: &'a str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'a str,
}

impl<'a> GroupKind<'a> {
    /// A group and kind.
    pub const fn new(group: &'a str, kind: &'a str) -> Self {
        GroupKind { group, kind }
    }

    /// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → core) with `kind`.
    pub fn from_api_version(api_version: &'a str, kind: &'a str) -> Self {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        GroupKind { group, kind }
    }
}

/// Why a patch could not be applied. Messages follow upstream's so they can be shown to users.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON.
    #[error("invalid JSON document: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The body is JSON but not a well-formed patch of its type.
    #[error(transparent)]
    InvalidPatch(#[from] Malformed),
    /// The JSON patch has more operations than upstream accepts.
    #[error(
        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}"
    )]
    TooManyOperations {
        /// Operations in the request.
        count: usize,
    },
    /// An RFC 6902 `test` operation found a different value.
    #[error("testing value {path} failed: test failed")]
    TestFailed {
        /// The JSON pointer tested.
        path: String,
    },
    /// An RFC 6902 operation names a location the document does not have.
    #[error("{op} operation does not apply: doc is missing path: \"{path}\": missing value")]
    MissingPath {
        /// The operation (`add`, `remove`, ...).
        op: &'static str,
        /// The JSON pointer that does not resolve.
        path: String,
    },
    /// An RFC 6902 `move` or `copy` reads from a location the document does not have.
    #[error("{op} operation does not apply: doc is missing from path: \"{from}\": missing value")]
    MissingFrom {
        /// `move` or `copy`.
        op: &'static str,
        /// The `from` pointer that does not resolve.
        from: String,
    },
    /// An RFC 6902 `move` would put a value inside itself.
    #[error("move operation does not apply: \"{path}\" is a child of \"{from}\"")]
    MoveIntoChild {
        /// Source pointer.
        from: String,
        /// Target pointer, below `from`.
        path: String,
    },
    /// Strategic merge patch was asked for a kind without built-in patch metadata (a custom
    /// resource). Upstream lists the media types it accepts instead.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedStrategicKind {
        /// The object's group.
        group: String,
        /// The object's kind.
        kind: String,
    },
}

impl PatchError {
    /// The HTTP status upstream answers with: 400 for malformed bodies, 413 for too many
    /// operations, 415 for strategic merge patch on custom resources, 422 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidJson(_) => 400,
            PatchError::InvalidPatch(Malformed::ListOfLists | Malformed::RetainKeysMismatch) => 422,
            PatchError::InvalidPatch(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::UnsupportedStrategicKind { .. } => 415,
            PatchError::TestFailed { .. }
            | PatchError::MissingPath { .. }
            | PatchError::MissingFrom { .. }
            | PatchError::MoveIntoChild { .. } => 422,
        }
    }
}

/// How a patch body is malformed; the messages are upstream's (`mergepatch` errors).
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// A JSON patch that is not an array of operations.
    #[error("invalid JSON patch: {0}")]
    JsonPatch(#[source] serde_json::Error),
    /// A strategic merge patch, or the document it applies to, that is not a JSON object.
    #[error("invalid JSON document")]
    NotAnObject,
    /// A merging-list element without its merge key.
    #[error("map: {element} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element, as JSON.
        element: String,
        /// The declared merge key.
        key: String,
    },
    /// A `$patch` directive other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {element}")]
    UnknownDirective {
        /// The directive value, as JSON.
        directive: String,
        /// The map holding it, as JSON.
        element: String,
    },
    /// A `$deleteFromPrimitiveList/...` value that is not a list.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    /// A `$retainKeys` value that is not a list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// A `$setElementOrder/...` value that is not a list, or a list field that is not a list.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// Patch keys outside the `$retainKeys` list.
    #[error("patch content doesn't match retainKeys list")]
    RetainKeysMismatch,
    /// A list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging list whose elements have different JSON types.
    #[error("list element types are not identical in {field}")]
    MixedListTypes {
        /// Dotted path of the list.
        field: String,
    },
    /// A merging list of objects without a declared merge key.
    #[error("cannot merge lists without merge key for {field}")]
    NoMergeKeyDeclared {
        /// Dotted path of the list.
        field: String,
    },
    /// A patch list ordered differently from its `$setElementOrder` list.
    #[error("the order in patch list {field} doesn't match $setElementOrder list")]
    SetElementOrderMismatch {
        /// Dotted path of the list.
        field: String,
    },
}

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`) to `doc`.
///
/// Operations apply in order and all-or-nothing; a failed `test` is [`PatchError::TestFailed`].
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let body: Value = serde_json::from_slice(patch).map_err(PatchError::InvalidJson)?;
    let ops: json_patch::Patch = serde_json::from_value(body).map_err(Malformed::JsonPatch)?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: ops.0.len() });
    }
    // All-or-nothing by patching a copy that is dropped on error. Not `json_patch::patch`: its
    // undo of a failed patch panics when an earlier `move` replaced the root.
    let mut out = doc.clone();
    json_patch::patch_unsafe(&mut out, &ops.0).map_err(|e| json_patch_error(&ops.0, e))?;
    Ok(out)
}

/// Translates the crate's error into ours, naming the failed operation like upstream.
fn json_patch_error(ops: &[json_patch::PatchOperation], err: json_patch::PatchError) -> PatchError {
    use json_patch::{PatchErrorKind, PatchOperation as Op};
    let path = err.path.to_string();
    let op = ops.get(err.operation);
    let (name, from) = match op {
        Some(Op::Add(_)) => ("add", None),
        Some(Op::Remove(_)) => ("remove", None),
        Some(Op::Replace(_)) => ("replace", None),
        Some(Op::Move(m)) => ("move", Some(m.from.to_string())),
        Some(Op::Copy(c)) => ("copy", Some(c.from.to_string())),
        Some(Op::Test(_)) => ("test", None),
        None => ("patch", None),
    };
    match err.kind {
        PatchErrorKind::TestFailed => PatchError::TestFailed { path },
        PatchErrorKind::InvalidFromPointer => PatchError::MissingFrom {
            op: name,
            from: from.unwrap_or_default(),
        },
        PatchErrorKind::CannotMoveInsideItself => PatchError::MoveIntoChild {
            from: from.unwrap_or_default(),
            path,
        },
        _ => PatchError::MissingPath { op: name, path },
    }
}

/// Applies an RFC 7386 merge patch (`application/merge-patch+json`) to `doc`: objects merge key
/// by key, `null` deletes a key, anything else (lists included) replaces.
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(PatchError::InvalidJson)?;
    let mut out = doc.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`), as they do once decoded in Go.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(doc: Value, patch: Value) -> Result<Value, PatchError> {
        json_patch(&doc, patch.to_string().as_bytes())
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let out = patched(
            json!({"a": 1, "list": [1, 2]}),
            json!([
                {"op": "add", "path": "/b", "value": {"c": true}},
                {"op": "replace", "path": "/a", "value": 2},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "remove", "path": "/list/0"},
                {"op": "copy", "from": "/a", "path": "/b/d"},
                {"op": "move", "from": "/b/c", "path": "/e"},
                {"op": "test", "path": "/e", "value": true},
            ]),
        )
        .expect("patch applies");
        assert_eq!(
            out,
            json!({"a": 2, "b": {"d": 2}, "e": true, "list": [2, 3]})
        );
    }

    #[test]
    fn json_patch_failed_test_is_an_error_and_changes_nothing() {
        let err = patched(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/a", "value": 5}, {"op": "test", "path": "/a", "value": 6}]),
        )
        .expect_err("test fails");
        assert!(matches!(err, PatchError::TestFailed { ref path } if path == "/a"));
        assert_eq!(err.to_string(), "testing value /a failed: test failed");
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn json_patch_missing_paths_name_the_operation() {
        let err = patched(json!({}), json!([{"op": "remove", "path": "/x"}])).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "remove operation does not apply: doc is missing path: \"/x\": missing value"
        );
        let err = patched(
            json!({}),
            json!([{"op": "move", "from": "/x", "path": "/y"}]),
        )
        .expect_err("missing from");
        assert!(matches!(err, PatchError::MissingFrom { op: "move", ref from } if from == "/x"));
        let err = patched(
            json!({"a": {}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b"}]),
        )
        .expect_err("into itself");
        assert!(matches!(err, PatchError::MoveIntoChild { .. }));
    }

    #[test]
    fn json_patch_failing_after_a_move_to_the_root_is_an_error_not_a_panic() {
        let doc = json!({"spec": {"a": 1}, "data": {}});
        let err = json_patch(
            &doc,
            br#"[{"op":"move","from":"/spec","path":""},{"op":"move","from":"/data/x","path":""}]"#,
        )
        .expect_err("second move has no source");
        assert!(matches!(err, PatchError::MissingFrom { .. }), "{err:?}");
    }

    #[test]
    fn json_patch_rejects_bodies_that_are_not_operation_lists() {
        let err = json_patch(&json!({}), b"{not json").expect_err("not json");
        assert!(matches!(err, PatchError::InvalidJson(_)));
        assert_eq!(err.status_code(), 400);
        let err = patched(json!({}), json!({"op": "add"})).expect_err("not a list");
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::JsonPatch(_))
        ));
        let err = patched(json!({}), json!([{"op": "frobnicate", "path": "/a"}])).expect_err("op");
        assert!(matches!(err, PatchError::InvalidPatch(_)));
    }

    #[test]
    fn json_patch_caps_the_number_of_operations() {
        let ops =
            vec![json!({"op": "test", "path": "", "value": {}}); MAX_JSON_PATCH_OPERATIONS + 1];
        let err = patched(json!({}), Value::Array(ops)).expect_err("too many");
        assert!(matches!(
            err,
            PatchError::TooManyOperations { count: 10_001 }
        ));
        assert_eq!(err.status_code(), 413);
    }

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            let got = merge_patch(&doc, patch.to_string().as_bytes()).expect("merge");
            assert_eq!(got, want, "{doc} + {patch}");
        }
        assert!(matches!(
            merge_patch(&json!({}), b"{"),
            Err(PatchError::InvalidJson(_))
        ));
    }

    #[test]
    fn group_kind_from_api_version() {
        assert_eq!(
            GroupKind::from_api_version("apps/v1", "Deployment"),
            GroupKind::new("apps", "Deployment")
        );
        assert_eq!(
            GroupKind::from_api_version("v1", "Pod"),
            GroupKind::new("", "Pod")
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same_value(&json!({"a": [1]}), &json!({"a": [1.0]})));
        assert!(!same_value(&json!({"a": 1}), &json!({"a": "1"})));
    }
}

#[cfg(test)]
mod proptests;
