//! CustomResourceDefinitions: serving custom resources as soon as a CRD is stored, and the
//! structural-schema work on their objects (defaulting, pruning, validation).

use crate::ApiState;
use crate::error::Cause;
use crate::resources::{RW, Resource, Subresource};
use crate::store;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Check a CRD and fill its status (names accepted, established), as the apiextensions
/// controllers would.
pub fn prepare(crd: &mut Value) -> Result<(), Vec<Cause>> {
    let mut causes = Vec::new();
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (group, plural, kind, scope) = (
        s("/spec/group"),
        s("/spec/names/plural"),
        s("/spec/names/kind"),
        s("/spec/scope"),
    );
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::not_supported(
            "spec.scope",
            &json!(scope),
            &["Cluster", "Namespaced"],
        ));
    }
    let name = s("/metadata/name");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(storage),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if names.get("singular").is_none() {
        names["singular"] = json!(kind.to_ascii_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    crd["spec"]["names"] = names.clone();
    let now = crate::meta::now_rfc3339();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    let stored: Vec<Value> = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    crd["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
    Ok(())
}

/// The resources a CRD serves.
pub fn resources_of(crd: &Value) -> Vec<Resource> {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let strings = |p: &str| -> Vec<String> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = s("/spec/group");
    let kind = s("/spec/names/kind");
    let mut out = Vec::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served") == Some(&json!(false)) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subresources.push(Subresource {
                name: "status".into(),
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        if v.pointer("/subresources/scale").is_some() {
            subresources.push(Subresource {
                name: "scale".into(),
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        out.push(Resource {
            group: group.clone(),
            version,
            plural: s("/spec/names/plural"),
            singular: crd
                .pointer("/spec/names/singular")
                .and_then(Value::as_str)
                .map_or_else(|| kind.to_ascii_lowercase(), str::to_owned),
            kind: kind.clone(),
            namespaced: s("/spec/scope") == "Namespaced",
            verbs: RW.iter().map(|v| (*v).to_owned()).collect(),
            short_names: strings("/spec/names/shortNames"),
            categories: strings("/spec/names/categories"),
            subresources,
            custom: Some(Arc::new(v.clone())),
        });
    }
    out
}

/// Serve (or re-serve) a stored CRD's resources.
pub fn sync(s: &ApiState, crd: &Value) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    s.catalogue.set_custom(group, plural, resources_of(crd));
}

/// Stop serving a deleted CRD's resources and delete its objects.
pub fn remove(s: &ApiState, crd: &Value) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let resources = resources_of(crd);
    s.catalogue.set_custom(&group, &plural, Vec::new());
    let Some(r) = resources.into_iter().next() else {
        return;
    };
    let st = s.store.clone();
    tokio::spawn(async move {
        let prefix = store::prefix(&r, None);
        loop {
            let Ok(page) = st.list(&prefix, None, 500, None).await else {
                return;
            };
            if page.items.is_empty() {
                return;
            }
            for o in page.items {
                let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
                let name = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let _ = st.backend().delete(&store::key(&r, ns, name), None).await;
            }
        }
    });
}

fn schema(version: &Value) -> Option<&Value> {
    version.pointer("/schema/openAPIV3Schema")
}

/// Fields the schema does not know (for `fieldValidation=Strict`).
pub fn unknown_fields(version: &Value, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sch) = schema(version) {
        for (k, v) in obj.as_object().into_iter().flatten() {
            if ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
                continue;
            }
            match sch.pointer(&format!("/properties/{k}")) {
                Some(sub) => walk_unknown(sub, v, k, &mut out),
                None if !preserves(sch) => out.push(k.clone()),
                None => {}
            }
        }
    }
    out
}

fn preserves(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
}

fn walk_unknown(s: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    if preserves(s) || s.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, child) in m {
                    match props.get(k) {
                        Some(cs) => walk_unknown(cs, child, &format!("{path}.{k}"), out),
                        None => out.push(format!("{path}.{k}")),
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m {
                    walk_unknown(ap, child, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    walk_unknown(is, it, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Apply schema defaults, prune unknown fields, and validate. Returns the violations.
pub fn default_and_validate(version: &Value, obj: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(sch) = schema(version) else {
        return causes;
    };
    let Some(root) = obj.as_object_mut() else {
        return causes;
    };
    let props = sch
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let keys: Vec<String> = root.keys().cloned().collect();
    for k in keys {
        if ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
            continue;
        }
        match props.get(&k) {
            Some(s) => {
                if let Some(v) = root.get_mut(&k) {
                    walk(s, v, &k, &mut causes);
                }
            }
            None if !preserves(sch) => {
                root.remove(&k);
            }
            None => {}
        }
    }
    for (k, s) in &props {
        if ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
            continue;
        }
        if !root.contains_key(k)
            && let Some(d) = s.get("default")
        {
            let mut d = d.clone();
            walk(s, &mut d, k, &mut causes);
            root.insert(k.clone(), d);
        }
    }
    required(sch, root, "", &mut causes);
    causes
}

fn required(s: &Value, m: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !m.contains_key(r) {
            causes.push(Cause::required(join(path, r)));
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_owned()
    } else {
        format!("{path}.{k}")
    }
}

fn type_ok(ty: &str, v: &Value, s: &Value) -> bool {
    if s.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        return v.is_i64() || v.is_u64() || v.is_string();
    }
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn walk(s: &Value, v: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() && s.get("nullable") == Some(&json!(true)) {
        return;
    }
    if let Some(ty) = s.get("type").and_then(Value::as_str)
        && !type_ok(ty, v, s)
    {
        let shown = match v {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
            Value::Number(_) => "number",
        };
        causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            field: path.into(),
            message: format!(
                "Invalid value: \"{shown}\": {path} in body must be of type {ty}: \"{shown}\""
            ),
        });
        return;
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    s["minimum"]
                ),
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be less than or equal to {}",
                    s["maximum"]
                ),
            ));
        }
    }
    if let Some(t) = v.as_str() {
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && (t.chars().count() as u64) < min
        {
            causes.push(Cause::invalid(
                path,
                v,
                &format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && (t.chars().count() as u64) > max
        {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: path.into(),
                message: format!("Too long: may not be more than {max} bytes"),
            });
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| {
                a.as_str()
                    .map_or_else(|| a.to_string(), |x| format!("\"{x}\""))
            })
            .collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.into(),
            message: format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        });
    }
    if preserves(s) || s.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    match props.get(&k) {
                        Some(cs) => {
                            if let Some(child) = m.get_mut(&k) {
                                walk(cs, child, &join(path, &k), causes);
                            }
                        }
                        None => {
                            m.remove(&k);
                        }
                    }
                }
                for (k, cs) in props {
                    if !m.contains_key(k)
                        && let Some(d) = cs.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
                required(s, m, path, causes);
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m.iter_mut() {
                    walk(ap, child, &join(path, k), causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    walk(is, it, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

/// Serve every stored CRD (at start).
pub async fn load_all(s: &ApiState) -> Result<(), crate::error::ApiError> {
    let Some(r) = s
        .catalogue
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Ok(());
    };
    let page = s
        .store
        .list(&store::prefix(&r, None), None, 0, None)
        .await?;
    for crd in &page.items {
        sync(s, crd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> Value {
        json!({"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{
            "spec":{"type":"object","required":["size"],"properties":{"size":{"type":"integer","minimum":1},"color":{"type":"string","default":"blue"}}},
            "status":{"type":"object","properties":{"ready":{"type":"boolean"}}}}}}})
    }

    #[test]
    fn defaults_prune_and_validate() {
        let mut o = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":3,"extra":1}});
        assert!(default_and_validate(&version(), &mut o).is_empty());
        assert_eq!(o["spec"]["color"], "blue");
        assert!(o["spec"].get("extra").is_none());
        let mut bad = json!({"spec":{"size":0}});
        let causes = default_and_validate(&version(), &mut bad);
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0].message.contains("greater than or equal to 1"),
            "{:?}",
            causes
        );
        let mut missing = json!({"spec":{}});
        assert_eq!(
            default_and_validate(&version(), &mut missing)[0].field,
            "spec.size"
        );
    }

    #[test]
    fn unknown_fields_for_strict_validation() {
        let o = json!({"spec":{"size":1,"bogus":2},"top":1});
        assert_eq!(unknown_fields(&version(), &o), ["spec.bogus", "top"]);
    }
}
