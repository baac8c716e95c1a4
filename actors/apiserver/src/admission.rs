//! Defaulting and validation of built-in kinds, as upstream's registry strategies do on writes.
//!
//! Works on the JSON form. Defaults are only filled where absent, so they are idempotent and
//! an update that omits a defaulted field gets the same value back (no spurious generation bump).

use crate::error::Cause;
use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn default(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.entry(k.to_owned()).or_insert(v);
}

fn child<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    obj(m.entry(k.to_owned()).or_insert_with(|| json!({})))
}

/// Fill in upstream's defaults for `kind` (group-qualified by `group`).
pub fn apply_defaults(group: &str, kind: &str, o: &mut Value) {
    let root = obj(o);
    match (group, kind) {
        ("", "Pod") => {
            let spec = child(root, "spec");
            default_pod_spec(spec);
            default(spec, "serviceAccountName", json!("default"));
            let sa = spec
                .get("serviceAccountName")
                .cloned()
                .unwrap_or(json!("default"));
            default(spec, "serviceAccount", sa);
            default_tolerations(spec);
            let status = child(root, "status");
            default(status, "phase", json!("Pending"));
        }
        ("apps", "Deployment") => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate");
                default(ru, "maxSurge", json!("25%"));
                default(ru, "maxUnavailable", json!("25%"));
            }
            default_template(spec);
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = child(root, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy");
            default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                default(child(us, "rollingUpdate"), "partition", json!(0));
            }
            let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
            default(retention, "whenDeleted", json!("Retain"));
            default(retention, "whenScaled", json!("Retain"));
            default_template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = child(root, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy");
            default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(us, "rollingUpdate");
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
            default_template(spec);
        }
        ("batch", "Job") => default_job_spec(child(root, "spec")),
        ("batch", "CronJob") => {
            let spec = child(root, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            let jt = child(spec, "jobTemplate");
            default_job_spec(child(jt, "spec"));
        }
        ("", "Service") => {
            let spec = child(root, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_owned();
            if ty != "ExternalName" {
                default(spec, "internalTrafficPolicy", json!("Cluster"));
                default(spec, "ipFamilies", json!(["IPv4"]));
                default(spec, "ipFamilyPolicy", json!("SingleStack"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut() {
                    let p = obj(p);
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "Namespace") => {
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .cloned()
                .unwrap_or(json!(""));
            let meta = child(root, "metadata");
            child(meta, "labels").insert("kubernetes.io/metadata.name".into(), name);
            default(child(root, "spec"), "finalizers", json!(["kubernetes"]));
            default(child(root, "status"), "phase", json!("Active"));
        }
        ("", "Secret") => {
            default(root, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = root.remove("stringData") {
                use base64::Engine;
                let data = child(root, "data");
                for (k, v) in sd {
                    let s = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            let spec = child(root, "spec");
            default(spec, "volumeMode", json!("Filesystem"));
            default(child(root, "status"), "phase", json!("Pending"));
        }
        ("", "PersistentVolume") => {
            let spec = child(root, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
            default(child(root, "status"), "phase", json!("Pending"));
        }
        _ => {}
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    let t = child(spec, "template");
    default_pod_spec(child(t, "spec"));
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if !spec.contains_key("completions") {
        let p = spec.get("parallelism").cloned().unwrap_or(json!(1));
        // Upstream: completions defaults to 1 unless parallelism was set (then it stays unset
        // meaning "any"); kubectl-created jobs always get 1.
        let _ = p;
        spec.insert("completions".into(), json!(1));
    }
    default_template(spec);
}

/// Defaults of a PodSpec (pods and pod templates).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                default_container(obj(c));
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag = image.rsplit('/').next().unwrap_or("");
    let latest = !image.contains('@') && (!tag.contains(':') || tag.ends_with(":latest"));
    default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut() {
            default(obj(p), "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            let p = obj(p);
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet") {
                default(obj(h), "scheme", json!("HTTP"));
            }
        }
    }
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable nodes for 300 s.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Value::Array(list) = tolerations else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !list
            .iter()
            .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
        {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Whether `s` is a DNS-1123 label (namespaces, services, container names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Kinds whose names must be DNS labels rather than subdomains.
fn name_is_label(group: &str, kind: &str) -> bool {
    matches!((group, kind), ("", "Namespace" | "Service"))
}

/// Validate what every object has (its name and labels); custom resources get only this plus
/// their schema.
pub fn validate_meta(group: &str, kind: &str, o: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else if name_is_label(group, kind) && !is_dns_label(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), LABEL_MSG));
    } else if !is_dns_subdomain(name)
        && !matches!(
            kind,
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        )
    {
        causes.push(Cause::invalid("metadata.name", &json!(name), SUBDOMAIN_MSG));
    }
    validate_labels(o, &mut causes);
    causes
}

/// Validate an object of `kind`; an empty result means valid.
pub fn validate(group: &str, kind: &str, o: &Value) -> Vec<Cause> {
    let mut causes = validate_meta(group, kind, o);
    match (group, kind) {
        ("", "Pod") => validate_pod_spec(o.get("spec"), "spec", &mut causes),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload(o, &mut causes)
        }
        ("batch", "Job") => validate_pod_spec(
            o.pointer("/spec/template/spec"),
            "spec.template.spec",
            &mut causes,
        ),
        ("batch", "CronJob") => {
            if o.pointer("/spec/schedule")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required("spec.schedule"));
            }
            validate_pod_spec(
                o.pointer("/spec/jobTemplate/spec/template/spec"),
                "spec.jobTemplate.spec.template.spec",
                &mut causes,
            );
        }
        ("", "ConfigMap" | "Secret") => validate_data_size(o, &mut causes),
        ("", "Service") => validate_service(o, &mut causes),
        _ => {}
    }
    causes
}

fn validate_labels(o: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let Some(v) = v.as_str() else {
                causes.push(Cause::invalid(
                    format!("metadata.labels[{k}]"),
                    v,
                    "label values must be strings",
                ));
                continue;
            };
            if v.len() > 63
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                causes.push(Cause::invalid("metadata.labels", &json!(v), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(Cause::required(at));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{at}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{at}.containers"))),
        Some(cs) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{at}.containers[{i}].name")));
                } else if !is_dns_label(name) {
                    causes.push(Cause::invalid(
                        format!("{at}.containers[{i}].name"),
                        &json!(name),
                        LABEL_MSG,
                    ));
                } else if !seen.insert(name) {
                    causes.push(Cause::duplicate(
                        format!("{at}.containers[{i}].name"),
                        &json!(name),
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!("{at}.containers[{i}].image")));
                }
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&rp)
    {
        causes.push(Cause::not_supported(
            format!("{at}.restartPolicy"),
            &json!(rp),
            &["Always", "OnFailure", "Never"],
        ));
    }
}

fn validate_workload(o: &Value, causes: &mut Vec<Cause>) {
    let selector = o.pointer("/spec/selector");
    let labels = o
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    match selector {
        None => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let sel_empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            if sel_empty {
                causes.push(Cause::invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for deployment",
                ));
            } else if let Ok(s) = protocols::selector::LabelSelector::from_json(sel) {
                let empty = Map::new();
                if !s.matches(labels.unwrap_or(&empty)) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &json!(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    validate_pod_spec(
        o.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
    if let Some(r) = o.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &json!(r),
            "must be greater than or equal to 0",
        ));
    }
}

/// ConfigMaps and Secrets hold at most 1 MiB (upstream's limit).
fn validate_data_size(o: &Value, causes: &mut Vec<Cause>) {
    const MAX: usize = 1024 * 1024;
    let mut total = 0;
    for field in ["data", "binaryData"] {
        if let Some(m) = o.get(field).and_then(Value::as_object) {
            for (k, v) in m {
                if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    causes.push(Cause::invalid(format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"));
                }
                total += k.len() + v.as_str().map_or(0, str::len);
            }
        }
    }
    if total > MAX {
        causes.push(Cause::too_long("", MAX));
    }
}

fn validate_service(o: &Value, causes: &mut Vec<Cause>) {
    let ty = o
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = o.pointer("/spec/ports").and_then(Value::as_array);
    let headless = o.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ty != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            None => causes.push(Cause::required(format!("spec.ports[{i}].port"))),
        }
        if ports.is_some_and(|ps| ps.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults_match_upstream() {
        let mut p =
            json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}});
        apply_defaults("", "Pod", &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(p["status"]["phase"], "Pending");
        let again = p.clone();
        apply_defaults("", "Pod", &mut p);
        assert_eq!(p, again, "defaulting is idempotent");
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, want) in [
            ("busybox:acc", "IfNotPresent"),
            ("busybox:latest", "Always"),
            ("reg:5000/x", "Always"),
            ("reg:5000/x:1", "IfNotPresent"),
        ] {
            let mut c = json!({"image": image});
            default_container(obj(&mut c));
            assert_eq!(c["imagePullPolicy"], want, "{image}");
        }
    }

    #[test]
    fn deployment_defaults() {
        let mut d =
            json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x:1"}]}}}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn invalid_pods_name_the_fields() {
        let p = json!({"metadata":{"name":"p"},"spec":{"containers":[]}});
        let causes = validate("", "Pod", &p);
        assert_eq!(causes, vec![Cause::required("spec.containers")]);
        let p = json!({"metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c"}]}});
        let fields: Vec<String> = validate("", "Pod", &p)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["metadata.name", "spec.containers[0].image"]);
    }

    #[test]
    fn secrets_fold_string_data() {
        let mut s = json!({"metadata":{"name":"s"},"stringData":{"p":"x"}});
        apply_defaults("", "Secret", &mut s);
        assert_eq!(s["data"]["p"], "eA==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
