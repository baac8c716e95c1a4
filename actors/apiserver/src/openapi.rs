//! OpenAPI v3: the index at `/openapi/v3` and one document per group-version.
//!
//! kubectl uses these for `apply`/`create -f` (it looks for a PATCH operation of the object's
//! GVK with a `fieldValidation` parameter, then validates server-side), for `explain` (schemas
//! with descriptions) and for client-side strategic merge (patch merge keys). Schemas of built-in
//! kinds come from a vendored file generated from k8s-openapi (see `openapi/README.md`); custom
//! resources use their CRD's `openAPIV3Schema`.

use crate::ApiState;
use crate::error::ApiError;
use crate::handlers::json_response;
use crate::resources::Resource;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The vendored schemas, parsed once.
fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        serde_json::from_str(include_str!("../openapi/schemas.json")).unwrap_or_default()
    })
}

/// Upstream's definition-name prefix of a group (`io.k8s.api.apps.v1`).
fn definition_prefix(group: &str, version: &str) -> String {
    match group {
        "" => format!("io.k8s.api.core.{version}"),
        "apiextensions.k8s.io" => {
            format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}")
        }
        "rbac.authorization.k8s.io" => format!("io.k8s.api.rbac.{version}"),
        g => format!(
            "io.k8s.api.{}.{version}",
            g.strip_suffix(".k8s.io").unwrap_or(g)
        ),
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash_of(v: &Value) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(serde_json::to_vec(v).unwrap_or_default())[..8])
}

/// Serve `/openapi/v3` (`rest` empty) or `/openapi/v3/<gv path>`.
pub fn serve(s: &ApiState, rest: &str) -> Result<Response, ApiError> {
    let groups = s.catalogue.groups();
    if rest.is_empty() {
        let mut paths = Map::new();
        for (g, versions) in &groups {
            for v in versions {
                let doc = document(s, g, v);
                let p = gv_path(g, v);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}),
                );
            }
        }
        return Ok(json_response(StatusCode::OK, &json!({"paths": paths})));
    }
    for (g, versions) in &groups {
        for v in versions {
            if gv_path(g, v) == rest {
                return Ok(json_response(StatusCode::OK, &document(s, g, v)));
            }
        }
    }
    Err(ApiError::NoRoute)
}

fn operation(r: &Resource, verb: &str, kind_for: &str) -> Value {
    let mut params = vec![json!({"name": "dryRun", "in": "query", "schema": {"type": "string"}})];
    if matches!(verb, "post" | "put" | "patch") {
        params.push(json!({"name": "fieldManager", "in": "query", "schema": {"type": "string"}}));
        params
            .push(json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}));
    }
    if verb == "patch" {
        params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean"}}));
    }
    let mut op = json!({
        "operationId": format!("{verb}{}", r.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{kind_for}")}}}}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if verb == "patch" {
        // kubectl uses strategic merge (with these schemas' merge keys) only where this lists it;
        // custom resources take JSON merge patches, as upstream.
        let mut content = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        });
        if r.custom.is_none() {
            content["application/strategic-merge-patch+json"] =
                json!({"schema": {"type": "object"}});
        }
        op["requestBody"] = json!({"content": content});
    }
    op
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.insert(r.to_owned());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The OpenAPI v3 document of one group-version.
pub fn document(s: &ApiState, group: &str, version: &str) -> Value {
    let all = schemas();
    let mut paths = Map::new();
    let mut components = Map::new();
    let mut wanted = BTreeSet::new();
    let prefix = definition_prefix(group, version);
    for r in s
        .catalogue
        .all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let def = match &r.custom {
            Some(ver) => {
                let name = format!("{}.{}.{}", reverse_domain(&r.group), r.version, r.kind);
                let mut sch = ver.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                );
                if let Some(props) = sch.get_mut("properties").and_then(Value::as_object_mut) {
                    props.insert("metadata".into(), json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}));
                    props.entry("apiVersion").or_insert(json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                    props.entry("kind").or_insert(json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                }
                sch["x-kubernetes-group-version-kind"] =
                    json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
                wanted.insert("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_owned());
                components.insert(name.clone(), sch);
                name
            }
            None => {
                let name = format!("{prefix}.{}", r.kind);
                let fallback = format!("{prefix}.{}", r.kind);
                let sch = all.get(&name).cloned().unwrap_or_else(|| {
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                           "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}]})
                });
                collect_refs(&sch, &mut wanted);
                components.insert(fallback.clone(), sch);
                fallback
            }
        };
        let base = if r.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                r.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), r.plural)
        };
        if r.is_readable() {
            paths.insert(
                base.clone(),
                json!({"get": operation(r, "list", &def), "post": operation(r, "post", &def)}),
            );
            paths.insert(
                format!("{base}/{{name}}"),
                json!({"get": operation(r, "get", &def), "put": operation(r, "put", &def), "patch": operation(r, "patch", &def), "delete": operation(r, "delete", &def)}),
            );
            for sub in &r.subresources {
                if sub.name == "status" || sub.name == "scale" {
                    paths.insert(format!("{base}/{{name}}/{}", sub.name), json!({"get": operation(r, "get", &def), "patch": operation(r, "patch", &def), "put": operation(r, "put", &def)}));
                }
            }
        } else {
            paths.insert(base, json!({"post": operation(r, "post", &def)}));
        }
    }
    // Transitive closure of referenced definitions.
    let mut queue: Vec<String> = wanted.into_iter().collect();
    while let Some(name) = queue.pop() {
        if components.contains_key(&name) {
            continue;
        }
        if let Some(sch) = all.get(&name) {
            let mut refs = BTreeSet::new();
            collect_refs(sch, &mut refs);
            components.insert(name, sch.clone());
            queue.extend(refs);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::KUBE_VERSION.2},
        "paths": paths,
        "components": {"schemas": components},
    })
}

fn reverse_domain(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_names_follow_upstream() {
        assert_eq!(definition_prefix("", "v1"), "io.k8s.api.core.v1");
        assert_eq!(definition_prefix("apps", "v1"), "io.k8s.api.apps.v1");
        assert_eq!(
            definition_prefix("networking.k8s.io", "v1"),
            "io.k8s.api.networking.v1"
        );
        assert_eq!(
            definition_prefix("rbac.authorization.k8s.io", "v1"),
            "io.k8s.api.rbac.v1"
        );
        assert_eq!(
            definition_prefix("authorization.k8s.io", "v1"),
            "io.k8s.api.authorization.v1"
        );
        assert_eq!(reverse_domain("example.com"), "com.example");
    }
}
