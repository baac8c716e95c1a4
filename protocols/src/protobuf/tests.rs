//! Payloads built field by field as client-go writes them (with prost-reflect's own encoder, not
//! ours), decoded and compared with the JSON the JSON API would receive; then encoded back.

use prost::Message as _;
use prost_reflect::{DynamicMessage, MapKey, Value as PbValue};
use serde_json::{Value, json};

use super::schema::Schema;
use super::{MAGIC, MAX_EMBEDDED_ENVELOPES, ProtobufError, decode, encode, supports};

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const CORE: &str = "k8s.io.api.core.v1";

/// A message under construction, by field name.
struct M(DynamicMessage);

fn m(name: &str) -> M {
    let schema = Schema::get().expect("schema");
    let desc = schema
        .pool
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"));
    M(DynamicMessage::new(desc))
}

impl M {
    fn set(mut self, field: &str, value: PbValue) -> Self {
        let f = self.0.descriptor_ref_field(field);
        self.0.set_field(&f, value);
        self
    }
    fn s(self, field: &str, v: &str) -> Self {
        self.set(field, PbValue::String(v.into()))
    }
    fn i32(self, field: &str, v: i32) -> Self {
        self.set(field, PbValue::I32(v))
    }
    fn i64(self, field: &str, v: i64) -> Self {
        self.set(field, PbValue::I64(v))
    }
    fn b(self, field: &str, v: bool) -> Self {
        self.set(field, PbValue::Bool(v))
    }
    fn bytes(self, field: &str, v: &[u8]) -> Self {
        self.set(field, PbValue::Bytes(v.to_vec().into()))
    }
    fn msg(self, field: &str, v: M) -> Self {
        self.set(field, PbValue::Message(v.0))
    }
    fn strs(self, field: &str, v: &[&str]) -> Self {
        self.set(
            field,
            PbValue::List(v.iter().map(|s| PbValue::String((*s).into())).collect()),
        )
    }
    fn msgs(self, field: &str, v: Vec<M>) -> Self {
        self.set(
            field,
            PbValue::List(v.into_iter().map(|m| PbValue::Message(m.0)).collect()),
        )
    }
    fn map(self, field: &str, v: Vec<(&str, PbValue)>) -> Self {
        let map = v
            .into_iter()
            .map(|(k, v)| (MapKey::String(k.into()), v))
            .collect();
        self.set(field, PbValue::Map(map))
    }
    fn labels(self, field: &str, v: &[(&str, &str)]) -> Self {
        self.map(
            field,
            v.iter()
                .map(|(k, v)| (*k, PbValue::String((*v).into())))
                .collect(),
        )
    }
}

trait FieldByName {
    fn descriptor_ref_field(&self, name: &str) -> prost_reflect::FieldDescriptor;
}

impl FieldByName for DynamicMessage {
    fn descriptor_ref_field(&self, name: &str) -> prost_reflect::FieldDescriptor {
        use prost_reflect::ReflectMessage as _;
        let desc = self.descriptor();
        desc.get_field_by_name(name)
            .unwrap_or_else(|| panic!("{} has no field {name}", desc.full_name()))
    }
}

/// `metav1.ObjectMeta` as client-go writes it for a new object: every value field present.
fn object_meta(name: &str, namespace: &str) -> M {
    m(&format!("{META}.ObjectMeta"))
        .s("name", name)
        .s("generateName", "")
        .s("namespace", namespace)
        .s("selfLink", "")
        .s("uid", "")
        .s("resourceVersion", "")
        .i64("generation", 0)
        .msg("creationTimestamp", m(&format!("{META}.Time")))
}

fn quantity(s: &str) -> PbValue {
    PbValue::Message(
        m("k8s.io.apimachinery.pkg.api.resource.Quantity")
            .s("string", s)
            .0,
    )
}

fn int_or_string_int(n: i32) -> M {
    m("k8s.io.apimachinery.pkg.util.intstr.IntOrString")
        .i64("type", 0)
        .i32("intVal", n)
        .s("strVal", "")
}

fn int_or_string_str(s: &str) -> M {
    m("k8s.io.apimachinery.pkg.util.intstr.IntOrString")
        .i64("type", 1)
        .i32("intVal", 0)
        .s("strVal", s)
}

/// The `k8s\0` + `runtime.Unknown` envelope around `object`.
fn envelope(api_version: &str, kind: &str, object: M) -> Vec<u8> {
    let unknown = m("k8s.io.apimachinery.pkg.runtime.Unknown")
        .msg(
            "typeMeta",
            m("k8s.io.apimachinery.pkg.runtime.TypeMeta")
                .s("apiVersion", api_version)
                .s("kind", kind),
        )
        .bytes("raw", &object.0.encode_to_vec())
        .s("contentEncoding", "")
        .s("contentType", "");
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0.encode_to_vec());
    out
}

/// Decodes `body`, compares with `expected`, and checks that encoding the JSON gives a body that
/// decodes to the same JSON again.
fn check(body: &[u8], expected: Value) {
    let decoded = decode(body).expect("decode");
    assert_eq!(decoded, expected);
    let again = encode(&decoded).expect("encode");
    assert_eq!(decode(&again).expect("decode re-encoded"), expected);
}

#[test]
fn configmap_with_data_and_labels() {
    let cm = m(&format!("{CORE}.ConfigMap"))
        .msg(
            "metadata",
            object_meta("cm1", "default").labels("labels", &[("app", "web"), ("tier", "")]),
        )
        .labels("data", &[("a", "b"), ("empty", "")]);
    check(
        &envelope("v1", "ConfigMap", cm),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "namespace": "default", "creationTimestamp": null,
                         "labels": {"app": "web", "tier": ""}},
            "data": {"a": "b", "empty": ""}
        }),
    );
}

#[test]
fn secret_data_is_base64_and_pointer_false_is_kept() {
    let secret = m(&format!("{CORE}.Secret"))
        .msg("metadata", object_meta("s1", "default"))
        .b("immutable", false)
        .map(
            "data",
            vec![("password", PbValue::Bytes(b"hunter2".to_vec().into()))],
        )
        .s("type", "Opaque");
    check(
        &envelope("v1", "Secret", secret),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s1", "namespace": "default", "creationTimestamp": null},
            "immutable": false,
            "data": {"password": "aHVudGVyMg=="},
            "type": "Opaque"
        }),
    );
}

#[test]
fn namespace() {
    let ns = m(&format!("{CORE}.Namespace"))
        .msg("metadata", object_meta("ns1", ""))
        .msg("spec", m(&format!("{CORE}.NamespaceSpec")))
        .msg(
            "status",
            m(&format!("{CORE}.NamespaceStatus")).s("phase", ""),
        );
    check(
        &envelope("v1", "Namespace", ns),
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "ns1", "creationTimestamp": null},
            "spec": {}, "status": {}
        }),
    );
}

#[test]
fn deployment_with_quantities_probe_and_volume() {
    let container = m(&format!("{CORE}.Container"))
        .s("name", "web")
        .s("image", "nginx:1.27")
        .msgs(
            "ports",
            vec![
                m(&format!("{CORE}.ContainerPort"))
                    .s("name", "http")
                    .i32("containerPort", 80)
                    .s("protocol", "TCP"),
            ],
        )
        .msg(
            "resources",
            m(&format!("{CORE}.ResourceRequirements"))
                .map(
                    "requests",
                    vec![("cpu", quantity("250m")), ("memory", quantity("64Mi"))],
                )
                .map("limits", vec![("memory", quantity("128Mi"))]),
        )
        .msg(
            "livenessProbe",
            m(&format!("{CORE}.Probe"))
                .msg(
                    "handler",
                    m(&format!("{CORE}.ProbeHandler")).msg(
                        "httpGet",
                        m(&format!("{CORE}.HTTPGetAction"))
                            .s("path", "/healthz")
                            .msg("port", int_or_string_str("http")),
                    ),
                )
                .i32("periodSeconds", 10),
        )
        .msgs(
            "volumeMounts",
            vec![
                m(&format!("{CORE}.VolumeMount"))
                    .s("name", "conf")
                    .b("readOnly", true)
                    .s("mountPath", "/etc/conf"),
            ],
        )
        .b("stdin", false);
    let volume = m(&format!("{CORE}.Volume")).s("name", "conf").msg(
        "volumeSource",
        m(&format!("{CORE}.VolumeSource")).msg(
            "configMap",
            m(&format!("{CORE}.ConfigMapVolumeSource"))
                .msg(
                    "localObjectReference",
                    m(&format!("{CORE}.LocalObjectReference")).s("name", "cm1"),
                )
                .set("defaultMode", PbValue::I32(0o644)),
        ),
    );
    let selector = m(&format!("{META}.LabelSelector")).labels("matchLabels", &[("app", "web")]);
    let template = m(&format!("{CORE}.PodTemplateSpec"))
        .msg(
            "metadata",
            object_meta("", "").labels("labels", &[("app", "web")]),
        )
        .msg(
            "spec",
            m(&format!("{CORE}.PodSpec"))
                .msgs("containers", vec![container])
                .msgs("volumes", vec![volume]),
        );
    let deployment = m("k8s.io.api.apps.v1.Deployment")
        .msg("metadata", object_meta("web", "default"))
        .msg(
            "spec",
            m("k8s.io.api.apps.v1.DeploymentSpec")
                .i32("replicas", 0)
                .msg("selector", selector)
                .msg("template", template)
                .msg(
                    "strategy",
                    m("k8s.io.api.apps.v1.DeploymentStrategy").s("type", ""),
                )
                .i32("minReadySeconds", 0),
        )
        .msg("status", m("k8s.io.api.apps.v1.DeploymentStatus"));
    check(
        &envelope("apps/v1", "Deployment", deployment),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "64Mi"},
                                "limits": {"memory": "128Mi"}
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 10
                            },
                            "volumeMounts": [{"name": "conf", "readOnly": true, "mountPath": "/etc/conf"}]
                        }],
                        "volumes": [{"name": "conf", "configMap": {"name": "cm1", "defaultMode": 420}}]
                    }
                },
                "strategy": {}
            },
            "status": {}
        }),
    );
}

#[test]
fn service_ports_int_or_string() {
    let port = |name: &str, port: i32, target: M| {
        m(&format!("{CORE}.ServicePort"))
            .s("name", name)
            .s("protocol", "TCP")
            .i32("port", port)
            .msg("targetPort", target)
    };
    let service = m(&format!("{CORE}.Service"))
        .msg("metadata", object_meta("svc1", "default"))
        .msg(
            "spec",
            m(&format!("{CORE}.ServiceSpec"))
                .msgs(
                    "ports",
                    vec![
                        port("web", 80, int_or_string_int(8080)),
                        port("tls", 443, int_or_string_str("https")),
                    ],
                )
                .labels("selector", &[("app", "web")])
                .s("type", "ClusterIP"),
        )
        .msg(
            "status",
            m(&format!("{CORE}.ServiceStatus"))
                .msg("loadBalancer", m(&format!("{CORE}.LoadBalancerStatus"))),
        );
    check(
        &envelope("v1", "Service", service),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc1", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "web", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "tls", "protocol": "TCP", "port": 443, "targetPort": "https"}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        }),
    );
}

#[test]
fn self_subject_access_review() {
    let review = m("k8s.io.api.authorization.v1.SelfSubjectAccessReview")
        .msg("metadata", object_meta("", ""))
        .msg(
            "spec",
            m("k8s.io.api.authorization.v1.SelfSubjectAccessReviewSpec").msg(
                "resourceAttributes",
                m("k8s.io.api.authorization.v1.ResourceAttributes")
                    .s("namespace", "kube-system")
                    .s("verb", "list")
                    .s("group", "")
                    .s("resource", "secrets")
                    .s("subresource", "")
                    .s("name", ""),
            ),
        )
        .msg(
            "status",
            m("k8s.io.api.authorization.v1.SubjectAccessReviewStatus")
                .b("allowed", false)
                .s("reason", ""),
        );
    check(
        &envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", review),
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "kube-system", "verb": "list", "resource": "secrets"}},
            "status": {}
        }),
    );
}

#[test]
fn token_request() {
    let request = m("k8s.io.api.authentication.v1.TokenRequest")
        .msg("metadata", object_meta("", ""))
        .msg(
            "spec",
            m("k8s.io.api.authentication.v1.TokenRequestSpec")
                .strs("audiences", &["https://kubernetes.default.svc", "vault"])
                .i64("expirationSeconds", 3600)
                .msg(
                    "boundObjectRef",
                    m("k8s.io.api.authentication.v1.BoundObjectReference")
                        .s("kind", "Pod")
                        .s("apiVersion", "v1")
                        .s("name", "web-0")
                        .s("uID", "0d6f7c1e-7d4b-4a4e-9b1a-111111111111"),
                ),
        )
        .msg(
            "status",
            m("k8s.io.api.authentication.v1.TokenRequestStatus")
                .s("token", "")
                .msg("expirationTimestamp", m(&format!("{META}.Time"))),
        );
    check(
        &envelope("authentication.k8s.io/v1", "TokenRequest", request),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "audiences": ["https://kubernetes.default.svc", "vault"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0",
                                   "uid": "0d6f7c1e-7d4b-4a4e-9b1a-111111111111"}
            },
            "status": {"expirationTimestamp": null}
        }),
    );
}

#[test]
fn delete_options_in_any_group_version() {
    let options = || {
        m(&format!("{META}.DeleteOptions"))
            .i64("gracePeriodSeconds", 0)
            .msg(
                "preconditions",
                m(&format!("{META}.Preconditions")).s("uid", "u-1"),
            )
            .s("propagationPolicy", "Foreground")
            .strs("dryRun", &["All"])
    };
    for api_version in [
        "v1",
        "apps/v1",
        "batch/v1",
        "meta.k8s.io/v1",
        "example.com/v1alpha1",
    ] {
        check(
            &envelope(api_version, "DeleteOptions", options()),
            json!({
                "apiVersion": api_version, "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u-1"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }),
        );
    }
}

#[test]
fn eviction_with_delete_options() {
    let eviction = m("k8s.io.api.policy.v1.Eviction")
        .msg("metadata", object_meta("web-0", "default"))
        .msg(
            "deleteOptions",
            m(&format!("{META}.DeleteOptions")).i64("gracePeriodSeconds", 30),
        );
    check(
        &envelope("policy/v1", "Eviction", eviction),
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 30}
        }),
    );
}

#[test]
fn times_micro_times_and_managed_fields() {
    let time = |s: i64, n: i32| m(&format!("{META}.Time")).i64("seconds", s).i32("nanos", n);
    let meta = object_meta("n1", "")
        .msg("creationTimestamp", time(1_767_323_045, 0))
        .msg("deletionTimestamp", time(0, 0))
        .set("deletionGracePeriodSeconds", PbValue::I64(30))
        .msgs(
            "managedFields",
            vec![
                m(&format!("{META}.ManagedFieldsEntry"))
                    .s("manager", "kubectl")
                    .s("operation", "Update")
                    .s("apiVersion", "v1")
                    .msg("time", time(1_767_323_045, 0))
                    .s("fieldsType", "FieldsV1")
                    .msg(
                        "fieldsV1",
                        m(&format!("{META}.FieldsV1")).bytes("Raw", br#"{"f:data":{"f:a":{}}}"#),
                    )
                    .s("subresource", ""),
            ],
        );
    let lease = m("k8s.io.api.coordination.v1.Lease")
        .msg("metadata", meta)
        .msg(
            "spec",
            m("k8s.io.api.coordination.v1.LeaseSpec")
                .s("holderIdentity", "node-1")
                .i32("leaseDurationSeconds", 40)
                .msg(
                    "renewTime",
                    m(&format!("{META}.MicroTime"))
                        .i64("seconds", 1_767_323_045)
                        .i32("nanos", 123_456_789),
                ),
        );
    check(
        &envelope("coordination.k8s.io/v1", "Lease", lease),
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {
                "name": "n1",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "deletionTimestamp": "1970-01-01T00:00:00Z",
                "deletionGracePeriodSeconds": 30,
                "managedFields": [{
                    "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                    "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:a": {}}}
                }]
            },
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 40,
                "renewTime": "2026-01-02T03:04:05.123456Z"
            }
        }),
    );
}

#[test]
fn user_info_extra_is_arrays() {
    let extra = m("k8s.io.api.authentication.v1.ExtraValue").strs("items", &["a", "b"]);
    let review = m("k8s.io.api.authentication.v1.SelfSubjectReview")
        .msg("metadata", object_meta("", ""))
        .msg(
            "status",
            m("k8s.io.api.authentication.v1.SelfSubjectReviewStatus").msg(
                "userInfo",
                m("k8s.io.api.authentication.v1.UserInfo")
                    .s("username", "alice")
                    .strs("groups", &["devs"])
                    .map("extra", vec![("scopes", PbValue::Message(extra.0))]),
            ),
        );
    check(
        &envelope("authentication.k8s.io/v1", "SelfSubjectReview", review),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}}}
        }),
    );
}

#[test]
fn raw_extension_holds_json_or_a_nested_envelope() {
    let revision = |raw: &[u8]| {
        m("k8s.io.api.apps.v1.ControllerRevision")
            .msg("metadata", object_meta("rev", "default"))
            .msg(
                "data",
                m("k8s.io.apimachinery.pkg.runtime.RawExtension").bytes("raw", raw),
            )
            .i64("revision", 2)
    };
    let expected = |data: Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "rev", "namespace": "default", "creationTimestamp": null},
            "data": data, "revision": 2
        })
    };
    check(
        &envelope(
            "apps/v1",
            "ControllerRevision",
            revision(br#"{"spec":{"x":1}}"#),
        ),
        expected(json!({"spec": {"x": 1}})),
    );

    let inner = envelope(
        "v1",
        "Namespace",
        m(&format!("{CORE}.Namespace")).msg("metadata", object_meta("ns", "")),
    );
    let decoded =
        decode(&envelope("apps/v1", "ControllerRevision", revision(&inner))).expect("decode");
    assert_eq!(
        decoded,
        expected(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns", "creationTimestamp": null}})
        )
    );

    let bad = decode(&envelope(
        "apps/v1",
        "ControllerRevision",
        revision(b"{not json"),
    ));
    assert!(
        matches!(bad, Err(ProtobufError::InvalidValue { .. })),
        "{bad:?}"
    );
}

#[test]
fn json_inside_the_envelope_is_accepted() {
    let unknown = m("k8s.io.apimachinery.pkg.runtime.Unknown")
        .msg(
            "typeMeta",
            m("k8s.io.apimachinery.pkg.runtime.TypeMeta")
                .s("apiVersion", "v1")
                .s("kind", "ConfigMap"),
        )
        .bytes("raw", br#"{"metadata":{"name":"x"}}"#)
        .s("contentType", "application/json");
    let mut body = MAGIC.to_vec();
    body.extend(unknown.0.encode_to_vec());
    assert_eq!(
        decode(&body).expect("decode"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(decode(b""), Err(ProtobufError::BadMagic)));
    assert!(matches!(
        decode(br#"{"kind":"ConfigMap"}"#),
        Err(ProtobufError::BadMagic)
    ));

    let body = envelope(
        "v1",
        "ConfigMap",
        m(&format!("{CORE}.ConfigMap")).msg("metadata", object_meta("x", "y")),
    );
    let truncated = decode(&body[..body.len() - 3]);
    assert!(
        matches!(truncated, Err(ProtobufError::Decode { .. })),
        "{truncated:?}"
    );

    let unknown_kind = decode(&envelope("v1", "Gadget", m(&format!("{CORE}.ConfigMap"))));
    assert!(
        matches!(&unknown_kind, Err(ProtobufError::UnknownKind { api_version, kind }) if api_version == "v1" && kind == "Gadget"),
        "{unknown_kind:?}"
    );
    assert!(
        unknown_kind
            .as_ref()
            .is_err_and(ProtobufError::is_unsupported_media_type)
    );
    // A nested type is not a kind, nor is a kind of a group this server has no schema for.
    assert!(matches!(
        decode(&envelope("v1", "PodSpec", m(&format!("{CORE}.PodSpec")))),
        Err(ProtobufError::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&envelope(
            "apps/v1beta1",
            "Deployment",
            m(&format!("{CORE}.Pod"))
        )),
        Err(ProtobufError::UnknownKind { .. })
    ));

    let gzip = m("k8s.io.apimachinery.pkg.runtime.Unknown")
        .msg(
            "typeMeta",
            m("k8s.io.apimachinery.pkg.runtime.TypeMeta")
                .s("apiVersion", "v1")
                .s("kind", "ConfigMap"),
        )
        .s("contentEncoding", "gzip");
    let mut body = MAGIC.to_vec();
    body.extend(gzip.0.encode_to_vec());
    assert!(
        matches!(decode(&body), Err(ProtobufError::UnsupportedEncoding { encoding }) if encoding == "gzip")
    );

    let yaml = m("k8s.io.apimachinery.pkg.runtime.Unknown").s("contentType", "application/yaml");
    let mut body = MAGIC.to_vec();
    body.extend(yaml.0.encode_to_vec());
    assert!(matches!(
        decode(&body),
        Err(ProtobufError::UnsupportedContentType { .. })
    ));

    let bad_port = m(&format!("{CORE}.Service")).msg(
        "spec",
        m(&format!("{CORE}.ServiceSpec")).msgs(
            "ports",
            vec![m(&format!("{CORE}.ServicePort")).msg(
                "targetPort",
                m("k8s.io.apimachinery.pkg.util.intstr.IntOrString").i64("type", 7),
            )],
        ),
    );
    let err = decode(&envelope("v1", "Service", bad_port));
    assert!(
        matches!(&err, Err(ProtobufError::InvalidValue { field, .. }) if field.ends_with("ServicePort.targetPort")),
        "{err:?}"
    );

    let far_future = m(&format!("{CORE}.Namespace")).msg(
        "metadata",
        object_meta("x", "").msg(
            "creationTimestamp",
            m(&format!("{META}.Time")).i64("seconds", i64::MAX),
        ),
    );
    assert!(matches!(
        decode(&envelope("v1", "Namespace", far_future)),
        Err(ProtobufError::InvalidValue { .. })
    ));
}

#[test]
fn nesting_is_bounded() {
    // 100 000 nested groups under an unknown field number: an error, not a stack overflow.
    let mut raw = vec![0x7b_u8; 100_000]; // field 15, start group
    raw.extend(std::iter::repeat_n(0x7c_u8, 100_000)); // field 15, end group
    let unknown = m("k8s.io.apimachinery.pkg.runtime.Unknown")
        .msg(
            "typeMeta",
            m("k8s.io.apimachinery.pkg.runtime.TypeMeta")
                .s("apiVersion", "v1")
                .s("kind", "ConfigMap"),
        )
        .bytes("raw", &raw);
    let mut body = MAGIC.to_vec();
    body.extend(unknown.0.encode_to_vec());
    assert!(matches!(decode(&body), Err(ProtobufError::Decode { .. })));

    // Envelopes inside RawExtensions: bounded by MAX_EMBEDDED_ENVELOPES.
    let wrap = |inner: &[u8]| {
        let watch = m(&format!("{META}.WatchEvent")).s("type", "ADDED").msg(
            "object",
            m("k8s.io.apimachinery.pkg.runtime.RawExtension").bytes("raw", inner),
        );
        envelope("v1", "WatchEvent", watch)
    };
    let mut body = envelope("v1", "Namespace", m(&format!("{CORE}.Namespace")));
    for _ in 0..MAX_EMBEDDED_ENVELOPES - 1 {
        body = wrap(&body);
    }
    assert!(decode(&body).is_ok());
    assert!(matches!(
        decode(&wrap(&body)),
        Err(ProtobufError::TooDeep { .. })
    ));
}

#[test]
fn encode_rejects_what_does_not_fit() {
    let err = |v: Value| encode(&v).expect_err("must fail");
    assert!(matches!(err(json!([1])), ProtobufError::InvalidJson { .. }));
    assert!(
        matches!(err(json!({"kind": "ConfigMap"})), ProtobufError::InvalidJson { path, .. } if path == "apiVersion")
    );
    assert!(matches!(
        err(json!({"apiVersion": "v1", "kind": "Gadget"})),
        ProtobufError::UnknownKind { .. }
    ));
    assert!(matches!(
        err(json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "three"}})),
        ProtobufError::InvalidJson { path, .. } if path == "spec.replicas"
    ));
    assert!(matches!(
        err(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 4_294_967_296_u64}})
        ),
        ProtobufError::InvalidJson { .. }
    ));
    assert!(matches!(
        err(json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}})),
        ProtobufError::InvalidJson { path, .. } if path == "data.k"
    ));
    assert!(matches!(
        err(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"creationTimestamp": "yesterday"}})
        ),
        ProtobufError::InvalidJson { .. }
    ));
}

#[test]
fn encode_drops_unknown_members_and_writes_value_fields() {
    let body = encode(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "futureField": 1},
        "data": {"a": "b"},
        "somethingNew": true
    }))
    .expect("encode");
    assert_eq!(
        decode(&body).expect("decode"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "creationTimestamp": null}, "data": {"a": "b"}})
    );
    // Deterministic: map entries are sorted, so the same object always gives the same bytes.
    let object =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"z": "1", "a": "2", "m": "3"}});
    assert_eq!(
        encode(&object).expect("encode"),
        encode(&object).expect("encode")
    );
}

#[test]
fn supported_kinds() {
    assert!(supports("v1", "ConfigMap"));
    assert!(supports("apps/v1", "Deployment"));
    assert!(supports("policy/v1", "Eviction"));
    assert!(supports("example.com/v1", "DeleteOptions"));
    assert!(supports("events.k8s.io/v1", "Event"));
    assert!(!supports("v1", "Gadget"));
    assert!(!supports("apps/v1", "ConfigMap"));
    assert!(!supports("v1", "ObjectMeta"));
    assert!(!supports("v1", "ConfigMap.DataEntry"));
}
