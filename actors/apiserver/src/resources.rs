//! The catalogue of resources the server serves: the built-in Kubernetes 1.32 kinds, plus the
//! custom resources that CustomResourceDefinitions add at run time.
//!
//! Discovery, OpenAPI, request routing and storage keys all read this one table, so a resource
//! exists everywhere or nowhere.

use parking_lot::RwLock;
use serde_json::Value;
use std::sync::Arc;

/// The standard verbs of a read-write resource.
pub const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// A resource clients can only create (reviews, requests).
pub const CREATE_ONLY: &[&str] = &["create"];

/// One subresource (`pods/status`, `deployments/scale`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Subresource {
    /// Name after the slash.
    pub name: String,
    /// Group of the object the subresource speaks (`autoscaling` for scale).
    pub group: String,
    /// Version of that object.
    pub version: String,
    /// Kind of that object.
    pub kind: String,
    /// Verbs allowed on it.
    pub verbs: Vec<String>,
}

/// A served resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs on the resource itself.
    pub verbs: Vec<String>,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Subresources.
    pub subresources: Vec<Subresource>,
    /// For custom resources: the CRD version object (schema, printer columns, subresources).
    pub custom: Option<Arc<Value>>,
}

impl Resource {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a subresource exists.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    /// The storage group name (`core` for the core group).
    pub fn storage_group(&self) -> &str {
        if self.group.is_empty() {
            "core"
        } else {
            &self.group
        }
    }

    /// Whether this resource can be listed and watched (reviews cannot).
    pub fn is_readable(&self) -> bool {
        self.verbs.iter().any(|v| v == "get")
    }
}

fn sub(name: &str, gvk: (&str, &str, &str), verbs: &[&str]) -> Subresource {
    Subresource {
        name: name.into(),
        group: gvk.0.into(),
        version: gvk.1.into(),
        kind: gvk.2.into(),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// Compact description of a built-in resource: (group, version, plural, kind, namespaced,
/// short names, categories, subresources, verbs).
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const GET_PUT_PATCH: &[&str] = &["get", "patch", "update"];

/// The built-in table. Subresource names map to their kinds in [`builtin`].
const BUILTIN: &[Row] = &[
    // group, version, plural, kind, namespaced, short names, in category "all", subresources, verbs
    (
        "",
        "v1",
        "pods",
        "Pod",
        true,
        &["po"],
        true,
        &[
            "status",
            "log",
            "exec",
            "attach",
            "portforward",
            "binding",
            "eviction",
            "ephemeralcontainers",
            "proxy",
        ],
        RW,
    ),
    (
        "",
        "v1",
        "services",
        "Service",
        true,
        &["svc"],
        true,
        &["status", "proxy"],
        RW,
    ),
    (
        "",
        "v1",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
        &[],
        RW,
    ),
    (
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        &["ns"],
        false,
        &["status", "finalize"],
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    ),
    (
        "",
        "v1",
        "nodes",
        "Node",
        false,
        &["no"],
        false,
        &["status", "proxy"],
        RW,
    ),
    (
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        true,
        &["cm"],
        false,
        &[],
        RW,
    ),
    ("", "v1", "secrets", "Secret", true, &[], false, &[], RW),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
        &["token"],
        RW,
    ),
    ("", "v1", "events", "Event", true, &["ev"], false, &[], RW),
    (
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        false,
        &["status"],
        RW,
    ),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        false,
        &["status"],
        RW,
    ),
    (
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        &["rc"],
        true,
        &["status", "scale"],
        RW,
    ),
    (
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        false,
        &[],
        RW,
    ),
    (
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        false,
        &["status"],
        RW,
    ),
    (
        "",
        "v1",
        "podtemplates",
        "PodTemplate",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "",
        "v1",
        "bindings",
        "Binding",
        true,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
        &["status", "scale"],
        RW,
    ),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        &["rs"],
        true,
        &["status", "scale"],
        RW,
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
        &["status", "scale"],
        RW,
    ),
    (
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        true,
        &["ds"],
        true,
        &["status"],
        RW,
    ),
    (
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "batch",
        "v1",
        "jobs",
        "Job",
        true,
        &[],
        true,
        &["status"],
        RW,
    ),
    (
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        true,
        &["cj"],
        true,
        &["status"],
        RW,
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        true,
        &["status"],
        RW,
    ),
    (
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        true,
        &["status"],
        RW,
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        false,
        &["status"],
        RW,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        false,
        &["status"],
        RW,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
        &[],
        RW,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
        &[],
        RW,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        false,
        &[],
        RW,
    ),
    (
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        false,
        &[],
        false,
        &["status"],
        RW,
    ),
    (
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "CSIDriver",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "storage.k8s.io",
        "v1",
        "csinodes",
        "CSINode",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "storage.k8s.io",
        "v1",
        "csistoragecapacities",
        "CSIStorageCapacity",
        true,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        false,
        &[],
        RW,
    ),
    (
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "RuntimeClass",
        false,
        &[],
        false,
        &[],
        RW,
    ),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        &["csr"],
        false,
        &["status", "approval"],
        RW,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        false,
        &["status"],
        RW,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        false,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        false,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
        &[],
        false,
        &[],
        CREATE_ONLY,
    ),
];

fn builtin_subresource(r: &Row, name: &str) -> Subresource {
    let (group, version, kind) = (r.0, r.1, r.3);
    match name {
        "status" => sub(name, (group, version, kind), GET_PUT_PATCH),
        "scale" => sub(name, ("autoscaling", "v1", "Scale"), GET_PUT_PATCH),
        "log" => sub(name, ("", "v1", "Pod"), &["get"]),
        "exec" | "attach" | "portforward" => {
            sub(name, ("", "v1", "PodExecOptions"), &["create", "get"])
        }
        "proxy" => sub(
            name,
            (group, version, &format!("{kind}ProxyOptions")),
            &["create", "delete", "get", "patch", "update"],
        ),
        "binding" => sub(name, ("", "v1", "Binding"), &["create"]),
        "eviction" => sub(name, ("policy", "v1", "Eviction"), &["create"]),
        "ephemeralcontainers" => sub(name, ("", "v1", "Pod"), GET_PUT_PATCH),
        "token" => sub(
            name,
            ("authentication.k8s.io", "v1", "TokenRequest"),
            &["create"],
        ),
        "finalize" => sub(name, ("", "v1", "Namespace"), &["update"]),
        "approval" => sub(name, (group, version, kind), GET_PUT_PATCH),
        other => sub(other, (group, version, kind), &["get"]),
    }
}

fn builtin() -> Vec<Resource> {
    BUILTIN
        .iter()
        .map(|r| Resource {
            group: r.0.into(),
            version: r.1.into(),
            plural: r.2.into(),
            singular: r.3.to_ascii_lowercase(),
            kind: r.3.into(),
            namespaced: r.4,
            verbs: r.8.iter().map(|v| (*v).to_owned()).collect(),
            short_names: r.5.iter().map(|v| (*v).to_owned()).collect(),
            categories: if r.6 { vec!["all".into()] } else { Vec::new() },
            subresources: r.7.iter().map(|s| builtin_subresource(r, s)).collect(),
            custom: None,
        })
        .collect()
}

/// The live catalogue: built-ins plus custom resources. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Catalogue {
    inner: Arc<RwLock<Vec<Arc<Resource>>>>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue {
            inner: Arc::new(RwLock::new(builtin().into_iter().map(Arc::new).collect())),
        }
    }
}

impl Catalogue {
    /// Every served resource, in discovery order.
    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.inner.read().clone()
    }

    /// Find a resource by group, version and plural name.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.inner
            .read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Find by group, version and kind.
    pub fn find_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.inner
            .read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Group versions in preference order, e.g. `[("apps", ["v1"]), ("autoscaling", ["v2","v1"])]`.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.inner.read().iter() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
                Some(_) => {}
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// Replace the custom resources of one CRD (`group`, `plural`) with `resources`
    /// (empty to remove them).
    pub fn set_custom(&self, group: &str, plural: &str, resources: Vec<Resource>) {
        let mut all = self.inner.write();
        all.retain(|r| !(r.custom.is_some() && r.group == group && r.plural == plural));
        all.extend(resources.into_iter().map(Arc::new));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_and_preferred_versions_come_first() {
        let c = Catalogue::default();
        let d = c.find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(d.kind, "Deployment");
        assert!(d.has_subresource("scale"));
        assert_eq!(
            d.subresources
                .iter()
                .find(|s| s.name == "scale")
                .map(|s| s.group.as_str()),
            Some("autoscaling")
        );
        let groups = c.groups();
        assert_eq!(groups[0], ("".to_owned(), vec!["v1".to_owned()]));
        let autoscaling = groups
            .iter()
            .find(|(g, _)| g == "autoscaling")
            .expect("autoscaling");
        assert_eq!(autoscaling.1, ["v2", "v1"]);
    }
}
