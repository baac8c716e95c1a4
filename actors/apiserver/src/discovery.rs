//! Discovery documents: `/version`, `/api`, `/apis` (aggregated v2/v2beta1 by content
//! negotiation, or legacy), and per group-version resource lists.

use crate::resources::{Catalogue, Resource};
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// The Kubernetes version this server speaks.
pub const KUBE_VERSION: (&str, &str, &str) = ("1", "32", "v1.32.4+k3s-rs");

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_VERSION.0,
        "minor": KUBE_VERSION.1,
        "gitVersion": KUBE_VERSION.2,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-12-03T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    })
}

/// Which aggregated discovery version the client asked for, if any.
pub fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(axum::http::header::ACCEPT)?.to_str().ok()?;
    for media in accept.split(',') {
        let params: Vec<(&str, &str)> = media
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .collect();
        let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| *pk == k && *pv == v);
        if has("g", "apidiscovery.k8s.io") && has("as", "APIGroupDiscoveryList") {
            if has("v", "v2") {
                return Some("v2");
            }
            if has("v", "v2beta1") {
                return Some("v2beta1");
            }
        }
        if !media.contains("apidiscovery.k8s.io") {
            // A plain type listed before any aggregated one wins.
            return None;
        }
    }
    None
}

/// The content type of an aggregated document.
pub fn aggregated_content_type(v: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")
}

fn resource_entry(r: &Resource) -> Value {
    let mut subs = Vec::new();
    for s in &r.subresources {
        subs.push(json!({
            "subresource": s.name,
            "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
            "verbs": s.verbs,
        }));
    }
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    e
}

/// Aggregated discovery of the core group (`/api`) or of all named groups (`/apis`).
pub fn aggregated(cat: &Catalogue, core: bool, v: &str) -> Value {
    let all = cat.all();
    let items: Vec<Value> = cat
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|ver| {
                    let resources: Vec<Value> = all
                        .iter()
                        .filter(|r| r.group == g && &r.version == ver)
                        .map(|r| resource_entry(r))
                        .collect();
                    json!({"version": ver, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut item = json!({"metadata": {"creationTimestamp": null}, "versions": versions});
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{v}"), "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// Legacy `/apis`.
pub fn groups(cat: &Catalogue) -> Value {
    let groups: Vec<Value> = cat
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(&g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/{group}`.
pub fn group(cat: &Catalogue, name: &str) -> Option<Value> {
    cat.groups()
        .into_iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| {
            let mut e = group_entry(&g, &vs);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

/// Legacy `/api/v1` or `/apis/{group}/{version}`: `APIResourceList`.
pub fn resource_list(cat: &Catalogue, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<_> = cat
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &rs {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for s in &r.subresources {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                e["group"] = json!(s.group);
                e["version"] = json!(s.version);
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_is_chosen_by_accept() {
        let mut h = HeaderMap::new();
        h.insert("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json".parse().expect("hv"));
        assert_eq!(aggregated_version(&h), Some("v2"));
        h.insert("accept", "application/json, */*".parse().expect("hv"));
        assert_eq!(aggregated_version(&h), None);
    }

    #[test]
    fn legacy_lists_subresources_with_their_groups() {
        let cat = Catalogue::default();
        let v1 = resource_list(&cat, "", "v1").expect("v1");
        let eviction = v1["resources"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .expect("eviction");
        assert_eq!(eviction["group"], "policy");
        let agg = aggregated(&cat, false, "v2");
        let apps = agg["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .expect("apps");
        assert_eq!(
            apps["versions"][0]["resources"][0]["resource"],
            "deployments"
        );
    }
}
