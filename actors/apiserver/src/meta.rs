//! Object metadata helpers: names, timestamps, uids, strict top-level field checks.

use serde_json::{Map, Value, json};

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, `Z`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random RFC 4122 version-4 UID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 5 random characters `generateName` appends (upstream's alphabet, no vowels).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The object's metadata map (created when missing).
pub fn metadata(o: &mut Value) -> &mut Map<String, Value> {
    if !o.get("metadata").is_some_and(Value::is_object) {
        o["metadata"] = json!({});
    }
    match o.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// A string field of metadata.
pub fn meta_str<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Metadata fields clients may send.
const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Top-level fields of built-in kinds besides apiVersion, kind and metadata.
fn top_level(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "ConfigMap") => &["data", "binaryData", "immutable"],
        ("", "Secret") => &["data", "stringData", "type", "immutable"],
        ("", "ServiceAccount") => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        ("", "Endpoints") => &["subsets"],
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
            "regarding",
            "note",
            "reportingController",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ],
        ("", "Binding") => &["target"],
        ("", "PodTemplate") => &["template"],
        ("rbac.authorization.k8s.io", "Role") => &["rules"],
        ("rbac.authorization.k8s.io", "ClusterRole") => &["rules", "aggregationRule"],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            &["subjects", "roleRef"]
        }
        ("discovery.k8s.io", "EndpointSlice") => &["addressType", "endpoints", "ports"],
        ("storage.k8s.io", "StorageClass") => &[
            "provisioner",
            "parameters",
            "reclaimPolicy",
            "mountOptions",
            "allowVolumeExpansion",
            "volumeBindingMode",
            "allowedTopologies",
        ],
        ("storage.k8s.io", "CSIStorageCapacity") => &[
            "nodeTopology",
            "storageClassName",
            "capacity",
            "maximumVolumeSize",
        ],
        ("scheduling.k8s.io", "PriorityClass") => {
            &["value", "globalDefault", "description", "preemptionPolicy"]
        }
        ("node.k8s.io", "RuntimeClass") => &["handler", "overhead", "scheduling"],
        ("apps", "ControllerRevision") => &["data", "revision"],
        (_, _) => &["spec", "status"],
    })
}

/// Unknown top-level and metadata fields, as `strict decoding error` paths.
pub fn unknown_fields(group: &str, kind: &str, o: &Value, custom: bool) -> Vec<String> {
    let mut out = Vec::new();
    let Some(m) = o.as_object() else { return out };
    let allowed = if custom { None } else { top_level(group, kind) };
    for k in m.keys() {
        if ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
            continue;
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&k.as_str())
        {
            out.push(k.clone());
        }
    }
    if let Some(meta) = m.get("metadata").and_then(Value::as_object) {
        for k in meta.keys() {
            if !META_FIELDS.contains(&k.as_str()) {
                out.push(format!("metadata.{k}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn unknown_top_level_fields_are_found() {
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","bogus2":1},"data":{},"bogus":true});
        assert_eq!(
            unknown_fields("", "ConfigMap", &cm, false),
            ["bogus", "metadata.bogus2"]
        );
        assert!(
            unknown_fields(
                "example.com",
                "Widget",
                &json!({"spec":{}, "extra": 1}),
                true
            )
            .is_empty()
        );
    }
}
