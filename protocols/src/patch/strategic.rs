//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! A port of apimachinery's `strategicpatch.StrategicMergeMapPatch` (apply side) with its options
//! `MergeParallelList` and `IgnoreUnmatchedNulls`: maps merge key by key and `null` deletes a key;
//! lists declared `patchStrategy=merge` merge by their merge key (or as sets of scalars), all other
//! lists are replaced; the directives `$patch`, `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>` are honoured. Element order follows upstream: items named in
//! the patch take the patch's (or `$setElementOrder`'s) order and items only on the server keep
//! their relative place, which puts new items first when no order is given.
//!
//! Two deliberate differences: values new to the document are cleaned too (nulls dropped and
//! directives applied, where upstream copies them verbatim), and `$patch: merge`, the default,
//! is accepted where upstream rejects it.

use serde_json::{Map, Value};

use super::schema::Schema;
use super::{GroupKind, Malformed, PatchError, same_value};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, an object of the built-in `kind`.
///
/// Custom resources have no patch metadata: [`PatchError::UnsupportedStrategicKind`], which the
/// API server answers with 415 like upstream.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &[u8],
    kind: GroupKind<'_>,
) -> Result<Value, PatchError> {
    let schema = Schema::of(kind);
    if !schema.is_builtin() {
        return Err(PatchError::UnsupportedStrategicKind {
            group: kind.group.to_owned(),
            kind: kind.kind.to_owned(),
        });
    }
    let patch = match serde_json::from_slice(patch).map_err(PatchError::InvalidJson)? {
        Value::Object(patch) => patch,
        Value::Null => Map::new(),
        _ => return Err(Malformed::NotAnObject.into()),
    };
    let Value::Object(original) = doc.clone() else {
        return Err(Malformed::NotAnObject.into());
    };
    let merged = Merger { schema }.map(original, patch, &mut Vec::new())?;
    Ok(Value::Object(merged))
}

type MergeResult<T> = Result<T, Malformed>;

/// The merge walk; `path` holds the field names from the root (list positions left out).
struct Merger {
    schema: Schema,
}

impl Merger {
    /// Merges `patch` into `original` (upstream's `mergeMap`).
    fn map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> MergeResult<Map<String, Value>> {
        if let Some(directive) = patch.remove(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => return self.map(Map::new(), patch, path),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => {
                    return Err(Malformed::UnknownDirective {
                        directive: directive.to_string(),
                        element: Value::Object(patch).to_string(),
                    });
                }
            }
        }
        retain_keys(&mut original, &mut patch)?;
        self.set_element_orders(&mut original, &mut patch, path)?;

        for (key, value) in patch {
            let (key, delete_list) = match key.strip_prefix(DELETE_FROM) {
                Some(list) => (list.to_owned(), true),
                None => (key, false),
            };
            if value.is_null() {
                original.remove(&key);
                continue;
            }
            if delete_list && !value.is_array() {
                return Err(Malformed::BadPrimitiveList);
            }
            path.push(key.clone());
            let merged = match (original.remove(&key), value) {
                (None, _) if delete_list => None,
                (Some(Value::Object(old)), Value::Object(new)) => {
                    Some(Value::Object(self.map(old, new, path)?))
                }
                (Some(Value::Array(old)), Value::Array(new)) => Some(Value::Array(
                    self.list_field(old, new, delete_list, path)?,
                )),
                (Some(old), _) if delete_list => Some(old),
                (_, new) => Some(self.fresh(new, path)?),
            };
            path.pop();
            if let Some(merged) = merged {
                original.insert(key, merged);
            }
        }
        Ok(original)
    }

    /// A value for a key the original lacks: nulls dropped, directives applied.
    fn fresh(&self, value: Value, path: &mut Vec<String>) -> MergeResult<Value> {
        Ok(match value {
            Value::Object(map) => Value::Object(self.map(Map::new(), map, path)?),
            Value::Array(items) => Value::Array(self.list_field(Vec::new(), items, false, path)?),
            scalar => scalar,
        })
    }

    /// Merges the list field at `path` according to its strategy (upstream's `mergeSliceHandler`).
    fn list_field(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        delete_list: bool,
        path: &mut Vec<String>,
    ) -> MergeResult<Vec<Value>> {
        match self.schema.merge_key(path) {
            Some(key) => self.list(original, patch, key, delete_list, path),
            // A parallel deletion list works whatever the field's strategy.
            None if delete_list => self.list(original, patch, "", true, path),
            None => patch
                .into_iter()
                .map(|item| self.fresh(item, path))
                .collect(),
        }
    }

    /// Merges two lists of a merging field (upstream's `mergeSlice`); `key` is empty for scalars.
    fn list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        delete_list: bool,
        path: &mut Vec<String>,
    ) -> MergeResult<Vec<Value>> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        if !element_type(&original, &patch, path)?.is_object() {
            if delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|item| !patch.iter().any(|gone| same_value(item, gone)))
                    .collect());
            }
            let patch_order = patch.clone();
            let server_order = original.clone();
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for item in original.into_iter().chain(patch) {
                if !merged.iter().any(|seen| same_value(seen, &item)) {
                    merged.push(item);
                }
            }
            return Ok(reorder(merged, &patch_order, &server_order, ""));
        }
        if key.is_empty() {
            return Err(Malformed::NoMergeKeyDeclared {
                field: path.join("."),
            });
        }
        let (mut merged, patch) = self.special_elements(original, patch, key, path)?;
        let server_order = idents(&merged, key);
        let patch_order = idents(&patch, key);
        for item in patch {
            let Value::Object(item) = item else {
                continue;
            };
            let Some(id) = item.get(key) else {
                return Err(no_merge_key(&item, key));
            };
            let found = merged
                .iter_mut()
                .find(|old| old.get(key).is_some_and(|v| same_value(v, id)));
            match found {
                Some(slot) => {
                    let old = match std::mem::take(slot) {
                        Value::Object(old) => old,
                        _ => Map::new(),
                    };
                    *slot = Value::Object(self.map(old, item, path)?);
                }
                None => merged.push(Value::Object(self.map(Map::new(), item, path)?)),
            }
        }
        Ok(reorder(merged, &patch_order, &server_order, key))
    }

    /// Applies `$patch: delete` and `$patch: replace` elements; returns the original and the
    /// remaining patch elements (upstream's `mergeSliceWithSpecialElements`).
    fn special_elements(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        path: &mut Vec<String>,
    ) -> MergeResult<(Vec<Value>, Vec<Value>)> {
        let mut rest = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Value::Object(mut item) = item else {
                rest.push(item);
                continue;
            };
            match item.get(DIRECTIVE).map(Value::as_str) {
                None => rest.push(Value::Object(item)),
                Some(Some("delete")) => {
                    let Some(id) = item.get(key) else {
                        return Err(no_merge_key(&item, key));
                    };
                    original.retain(|old| !old.get(key).is_some_and(|v| same_value(v, id)));
                }
                Some(Some("replace")) => replace = true,
                Some(Some("merge")) => {
                    item.remove(DIRECTIVE);
                    rest.push(Value::Object(item));
                }
                Some(_) => {
                    let directive = item
                        .get(DIRECTIVE)
                        .map(Value::to_string)
                        .unwrap_or_default();
                    return Err(Malformed::UnknownDirective {
                        directive,
                        element: Value::Object(item).to_string(),
                    });
                }
            }
        }
        if replace {
            let list = rest
                .into_iter()
                .map(|item| self.fresh(item, path))
                .collect::<MergeResult<_>>()?;
            return Ok((list, Vec::new()));
        }
        Ok((original, rest))
    }

    /// Handles every `$setElementOrder/<list>` of `patch`: merges that list and orders it as
    /// given (upstream's `mergePatchIntoOriginal`).
    fn set_element_orders(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &mut Vec<String>,
    ) -> MergeResult<()> {
        let directives: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ORDER))
            .cloned()
            .collect();
        for directive in directives {
            let Some(Value::Array(order)) = patch.remove(&directive) else {
                return Err(Malformed::BadSetElementOrder);
            };
            let field = directive[SET_ORDER.len()..].to_owned();
            let old = take_list(original, &field)?;
            let new = take_list(patch, &field)?;
            path.push(field.clone());
            let key = self.schema.merge_key(path).unwrap_or("");
            let merged = match (old, new) {
                (None, None) => None,
                (Some(old), None) => Some((idents(&old, key), old)),
                (old, Some(new)) => {
                    validate_order(&new, &order, key, path)?;
                    let old = old.unwrap_or_default();
                    let server_order = idents(&old, key);
                    Some((server_order, self.list_field(old, new, false, path)?))
                }
            };
            path.pop();
            if let Some((server_order, merged)) = merged {
                let order = idents(&order, key);
                original.insert(
                    field,
                    Value::Array(reorder(merged, &order, &server_order, key)),
                );
            }
        }
        Ok(())
    }
}

/// Removes `$retainKeys` from `patch` and clears the keys of `original` it does not list.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> MergeResult<()> {
    let Some(list) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = list else {
        return Err(Malformed::BadRetainKeys);
    };
    let kept = |key: &str| list.iter().any(|k| k.as_str() == Some(key));
    let outside = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM)
            && !key.starts_with(SET_ORDER)
            && !kept(key)
    });
    if outside {
        return Err(Malformed::RetainKeysMismatch);
    }
    original.retain(|key, _| kept(key));
    Ok(())
}

/// Checks that the patch list follows the `$setElementOrder` list (deletions aside).
fn validate_order(patch: &[Value], order: &[Value], key: &str, path: &[String]) -> MergeResult<()> {
    let items: Vec<&Value> = patch
        .iter()
        .filter(|item| item.get(DIRECTIVE).is_none())
        .collect();
    let (mut p, mut o) = (0, 0);
    while let (Some(item), Some(wanted)) = (items.get(p), order.get(o)) {
        if ident(item, key)
            .zip(ident(wanted, key))
            .is_some_and(|(a, b)| same_value(a, b))
        {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(Malformed::SetElementOrderMismatch {
            field: path.join("."),
        });
    }
    Ok(())
}

/// Removes the list at `field` from `map`; an error if it is there but not a list.
fn take_list(map: &mut Map<String, Value>, field: &str) -> MergeResult<Option<Vec<Value>>> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(Malformed::BadSetElementOrder),
    }
}

/// The common JSON type of the elements of both lists (the first element's), or an error.
fn element_type<'a>(a: &'a [Value], b: &'a [Value], path: &[String]) -> MergeResult<&'a Value> {
    let mut items = a.iter().chain(b);
    let first = items.next().ok_or(Malformed::ListOfLists)?;
    let kind = std::mem::discriminant(first);
    for item in std::iter::once(first).chain(items) {
        if item.is_array() {
            return Err(Malformed::ListOfLists);
        }
        if std::mem::discriminant(item) != kind {
            return Err(Malformed::MixedListTypes {
                field: path.join("."),
            });
        }
    }
    Ok(first)
}

/// What identifies a list element: its merge-key value, or the scalar itself.
fn ident<'v>(item: &'v Value, key: &str) -> Option<&'v Value> {
    if key.is_empty() {
        Some(item)
    } else {
        item.get(key)
    }
}

fn idents(items: &[Value], key: &str) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| ident(item, key).cloned())
        .collect()
}

/// Orders a merged list: items named in `patch_order` in that order, the others in
/// `server_order`, interleaved by their server positions (upstream's `normalizeElementOrder`).
fn reorder(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: &str,
) -> Vec<Value> {
    let position = |order: &[Value], item: &Value| {
        let id = ident(item, key)?;
        order.iter().position(|o| same_value(o, id))
    };
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(patch_order, item).is_some());
    named.sort_by_key(|item| position(patch_order, item));
    server_only.sort_by_key(|item| position(server_order, item).unwrap_or(usize::MAX));

    // Upstream's `mergeSortedSlice`: a server-only item goes first only when both items have a
    // server position and its own is smaller.
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let server_first = match (server_only.peek(), named.peek()) {
            (Some(s), Some(n)) => {
                matches!((position(server_order, s), position(server_order, n)), (Some(a), Some(b)) if a < b)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if server_first {
            server_only.next()
        } else {
            named.next()
        };
        out.extend(next);
    }
    out
}

fn no_merge_key(item: &Map<String, Value>, key: &str) -> Malformed {
    Malformed::NoMergeKey {
        element: Value::Object(item.clone()).to_string(),
        key: key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: GroupKind<'static> = GroupKind::new("apps", "Deployment");
    const POD: GroupKind<'static> = GroupKind::new("", "Pod");

    fn smp(doc: Value, patch: Value, kind: GroupKind<'_>) -> Value {
        strategic_merge_patch(&doc, patch.to_string().as_bytes(), kind).expect("patch applies")
    }

    fn smp_err(doc: Value, patch: Value, kind: GroupKind<'_>) -> PatchError {
        strategic_merge_patch(&doc, patch.to_string().as_bytes(), kind).expect_err("patch fails")
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}
        })
    }

    fn containers(doc: &Value) -> &Value {
        &doc["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn set_env_patch_keeps_other_containers_and_vars() {
        // What `kubectl set env deployment/web C=3 -c app` sends.
        let doc = deployment(json!([
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "C", "value": "3"}],
                "name": "app"
            }]
        }}}});
        let out = smp(doc, patch, DEPLOYMENT);
        assert_eq!(
            containers(&out),
            &json!([
                {"name": "app", "image": "app:1", "env": [
                    {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}
                ]},
                {"name": "sidecar", "image": "proxy:1"}
            ])
        );
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn set_image_patch_changes_one_container() {
        let doc = deployment(
            json!([{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}]),
        );
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"image": "proxy:2", "name": "sidecar"}]
        }}}});
        let out = smp(doc, patch, DEPLOYMENT);
        assert_eq!(
            containers(&out),
            &json!([{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:2"}])
        );
    }

    #[test]
    fn new_list_items_go_first_without_an_order_directive() {
        // Upstream's order: patch items first unless the server's order says otherwise.
        let doc = deployment(json!([{"name": "app", "env": [{"name": "A"}, {"name": "B"}]}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "C", "value": "3"}]}
        ]}}}});
        let out = smp(doc, patch, DEPLOYMENT);
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "C", "value": "3"}, {"name": "A"}, {"name": "B"}])
        );
    }

    #[test]
    fn set_element_order_reorders_existing_items() {
        let doc = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
        }}}});
        let out = smp(doc, patch, DEPLOYMENT);
        assert_eq!(
            containers(&out),
            &json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])
        );
    }

    #[test]
    fn set_element_order_must_match_the_patch_list() {
        let doc = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]
        }}}});
        let err = smp_err(doc, patch, DEPLOYMENT);
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::SetElementOrderMismatch { .. })
        ));
    }

    #[test]
    fn delete_directive_removes_a_list_element() {
        let doc = deployment(json!([{"name": "app"}, {"name": "sidecar"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}}});
        assert_eq!(
            containers(&smp(doc, patch, DEPLOYMENT)),
            &json!([{"name": "app"}])
        );
    }

    #[test]
    fn replace_directive_in_a_list_replaces_it() {
        let doc = deployment(json!([{"name": "app", "image": "a"}, {"name": "sidecar"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "o", "gone": null}, {"$patch": "replace"}
        ]}}}});
        assert_eq!(
            containers(&smp(doc, patch, DEPLOYMENT)),
            &json!([{"name": "only", "image": "o"}])
        );
    }

    #[test]
    fn map_directives_replace_delete_and_merge() {
        let doc = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}});
        let replaced = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            POD,
        );
        assert_eq!(replaced["metadata"]["labels"], json!({"c": "3"}));
        let deleted = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            POD,
        );
        assert_eq!(deleted["metadata"]["labels"], json!({}));
        let merged = smp(
            doc,
            json!({"metadata": {"labels": {"$patch": "merge", "c": "3"}}}),
            POD,
        );
        assert_eq!(
            merged["metadata"]["labels"],
            json!({"a": "1", "b": "2", "c": "3"})
        );
    }

    #[test]
    fn unknown_directive_is_rejected() {
        let err = smp_err(json!({}), json!({"metadata": {"$patch": "explode"}}), POD);
        assert_eq!(
            err.to_string(),
            r#"unknown patch type: "explode" in map: {}"#
        );
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            smp(doc.clone(), patch, DEPLOYMENT)["spec"]["strategy"],
            json!({"type": "Recreate"})
        );

        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = smp_err(doc, bad, DEPLOYMENT);
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::RetainKeysMismatch)
        ));
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn null_deletes_a_map_key() {
        let doc = deployment(json!([]));
        let out = smp(
            doc,
            json!({"metadata": {"labels": {"tier": null, "missing": null}}}),
            DEPLOYMENT,
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn new_values_lose_their_nulls() {
        let out = smp(
            json!({"spec": {}}),
            json!({"spec": {"nodeSelector": {"a": "1", "b": null}}}),
            POD,
        );
        assert_eq!(out["spec"]["nodeSelector"], json!({"a": "1"}));
    }

    #[test]
    fn container_ports_merge_on_container_port() {
        let doc = json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "name": "http"}, {"containerPort": 443}
        ]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}});
        let out = smp(doc, patch, POD);
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
        );
    }

    #[test]
    fn service_ports_merge_on_port() {
        let doc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let out = smp(doc, patch, GroupKind::new("", "Service"));
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }

    #[test]
    fn volume_mounts_merge_on_mount_path_and_volumes_on_name() {
        let doc = json!({"spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/data", "name": "data"}]}]
        }});
        let patch = json!({"spec": {
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]
        }});
        let out = smp(doc, patch, POD);
        assert_eq!(out["spec"]["volumes"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"mountPath": "/data", "name": "data", "readOnly": true}])
        );
    }

    #[test]
    fn tolerations_and_unknown_lists_are_replaced() {
        let doc = json!({"spec": {"tolerations": [{"key": "a"}], "custom": [1, 2]}});
        let out = smp(
            doc,
            json!({"spec": {"tolerations": [{"key": "b"}], "custom": [3]}}),
            POD,
        );
        assert_eq!(
            out["spec"],
            json!({"tolerations": [{"key": "b"}], "custom": [3]})
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(
            doc.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            doc,
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b"], "$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
            POD,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b"]));
    }

    #[test]
    fn owner_references_merge_on_uid() {
        let doc = json!({"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet"}]}});
        let patch = json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2"}]}});
        let out = smp(doc, patch, POD);
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "1", "kind": "ReplicaSet", "controller": true}, {"uid": "2"}])
        );
    }

    #[test]
    fn status_conditions_merge_on_type_for_every_kind() {
        let doc = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        for kind in [
            POD,
            DEPLOYMENT,
            GroupKind::new("", "Node"),
            GroupKind::new("policy", "PodDisruptionBudget"),
        ] {
            let out = smp(doc.clone(), patch.clone(), kind);
            assert_eq!(
                out["status"]["conditions"],
                json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}]),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn node_addresses_merge_on_type() {
        let doc = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}});
        let patch =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}});
        let out = smp(doc, patch, GroupKind::new("", "Node"));
        assert_eq!(out["status"]["addresses"][0]["address"], "10.0.0.2");
        assert_eq!(out["status"]["addresses"][1]["address"], "n1");
    }

    #[test]
    fn cron_job_template_containers_merge_by_name() {
        let doc = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "1"}
        ]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}}});
        let out = smp(doc, patch, GroupKind::new("batch", "CronJob"));
        let list = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        assert_eq!(list[1], json!({"name": "b", "image": "2"}));
    }

    #[test]
    fn custom_resources_are_unsupported() {
        let err = smp_err(
            json!({}),
            json!({}),
            GroupKind::new("example.com", "Widget"),
        );
        assert!(matches!(err, PatchError::UnsupportedStrategicKind { .. }));
        assert_eq!(err.status_code(), 415);
        assert!(
            err.to_string()
                .starts_with("the body of the request was in an unknown format")
        );
    }

    #[test]
    fn merge_list_items_need_their_merge_key() {
        let err = smp_err(
            deployment(json!([])),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            DEPLOYMENT,
        );
        assert_eq!(
            err.to_string(),
            r#"map: {"image":"x"} does not contain declared merge key: name"#
        );
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let err = strategic_merge_patch(&json!({}), b"[1]", POD).expect_err("array");
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::NotAnObject)
        ));
        let err = strategic_merge_patch(&json!({}), b"{", POD).expect_err("not json");
        assert!(matches!(err, PatchError::InvalidJson(_)));
        let err = smp_err(
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            POD,
        );
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::ListOfLists)
        ));
        let err = smp_err(
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [1]}}),
            POD,
        );
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::MixedListTypes { .. })
        ));
        let err = smp_err(
            json!({}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            POD,
        );
        assert!(matches!(
            err,
            PatchError::InvalidPatch(Malformed::BadPrimitiveList)
        ));
    }

    #[test]
    fn type_changes_replace_the_value() {
        let out = smp(
            json!({"spec": {"a": {"b": 1}}}),
            json!({"spec": {"a": [1]}}),
            POD,
        );
        assert_eq!(out["spec"]["a"], json!([1]));
    }
}
