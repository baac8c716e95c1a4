//! `protocols::protobuf` against real kubectl 1.32.4 request bodies (captured by
//! `fixtures/capture.py`) and against random input.

use proptest::prelude::*;
use protocols::protobuf::{MAGIC, ProtobufError, decode, encode, supports};
use serde_json::{Value, json};

/// `(name, protobuf body, what kubectl --dry-run=client -o json prints for the same command)`.
const CREATE_FIXTURES: &[(&str, &[u8], &str)] = &[
    (
        "configmap",
        include_bytes!("fixtures/configmap.pb"),
        include_str!("fixtures/configmap.kubectl.json"),
    ),
    (
        "secret",
        include_bytes!("fixtures/secret.pb"),
        include_str!("fixtures/secret.kubectl.json"),
    ),
    (
        "namespace",
        include_bytes!("fixtures/namespace.pb"),
        include_str!("fixtures/namespace.kubectl.json"),
    ),
    (
        "serviceaccount",
        include_bytes!("fixtures/serviceaccount.pb"),
        include_str!("fixtures/serviceaccount.kubectl.json"),
    ),
    (
        "deployment",
        include_bytes!("fixtures/deployment.pb"),
        include_str!("fixtures/deployment.kubectl.json"),
    ),
    (
        "service",
        include_bytes!("fixtures/service.pb"),
        include_str!("fixtures/service.kubectl.json"),
    ),
    (
        "role",
        include_bytes!("fixtures/role.pb"),
        include_str!("fixtures/role.kubectl.json"),
    ),
    (
        "rolebinding",
        include_bytes!("fixtures/rolebinding.pb"),
        include_str!("fixtures/rolebinding.kubectl.json"),
    ),
    (
        "clusterrole",
        include_bytes!("fixtures/clusterrole.pb"),
        include_str!("fixtures/clusterrole.kubectl.json"),
    ),
    (
        "clusterrolebinding",
        include_bytes!("fixtures/clusterrolebinding.pb"),
        include_str!("fixtures/clusterrolebinding.kubectl.json"),
    ),
    (
        "job",
        include_bytes!("fixtures/job.pb"),
        include_str!("fixtures/job.kubectl.json"),
    ),
    (
        "cronjob",
        include_bytes!("fixtures/cronjob.pb"),
        include_str!("fixtures/cronjob.kubectl.json"),
    ),
    (
        "quota",
        include_bytes!("fixtures/quota.pb"),
        include_str!("fixtures/quota.kubectl.json"),
    ),
    (
        "priorityclass",
        include_bytes!("fixtures/priorityclass.pb"),
        include_str!("fixtures/priorityclass.kubectl.json"),
    ),
    (
        "pdb",
        include_bytes!("fixtures/pdb.pb"),
        include_str!("fixtures/pdb.kubectl.json"),
    ),
    (
        "ingress",
        include_bytes!("fixtures/ingress.pb"),
        include_str!("fixtures/ingress.kubectl.json"),
    ),
];

const TOKEN: &[u8] = include_bytes!("fixtures/token.pb");
const CAN_I: &[u8] = include_bytes!("fixtures/can-i.pb");
const CAN_I_LIST: &[u8] = include_bytes!("fixtures/can-i-list.pb");
const WHOAMI: &[u8] = include_bytes!("fixtures/whoami.pb");
const DRAIN_DELETE: &[u8] = include_bytes!("fixtures/drain-delete.pb");

fn all_fixtures() -> Vec<&'static [u8]> {
    let mut all: Vec<&[u8]> = CREATE_FIXTURES.iter().map(|(_, body, _)| *body).collect();
    all.extend([TOKEN, CAN_I, CAN_I_LIST, WHOAMI, DRAIN_DELETE]);
    all
}

/// Removes members whose value is `0`, `""` or `false`: Go writes these for value fields that
/// lack `omitempty` (`PodDisruptionBudgetStatus.currentHealthy: 0`); the decoder leaves zero
/// value fields out (see the module docs). None of the fixtures has such a value in a map.
fn without_zero_members(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| {
                    !matches!(v, Value::Bool(false)) && v != &json!(0) && v != &json!("")
                })
                .map(|(k, v)| (k, without_zero_members(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_zero_members).collect()),
        other => other,
    }
}

#[test]
fn kubectl_create_bodies_decode_to_what_kubectl_would_send_as_json() {
    for (name, body, kubectl_json) in CREATE_FIXTURES {
        let expected: Value = serde_json::from_str(kubectl_json).expect("fixture JSON");
        let decoded = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, without_zero_members(expected), "{name}");
    }
}

#[test]
fn only_the_pdb_fixture_has_go_zero_members() {
    for (name, _, kubectl_json) in CREATE_FIXTURES {
        let expected: Value = serde_json::from_str(kubectl_json).expect("fixture JSON");
        let differs = without_zero_members(expected.clone()) != expected;
        assert_eq!(differs, *name == "pdb", "{name}");
    }
}

#[test]
fn kubectl_create_token() {
    assert_eq!(
        decode(TOKEN).expect("decode"),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
            "status": {"expirationTimestamp": null}
        })
    );
}

#[test]
fn kubectl_auth_can_i() {
    assert_eq!(
        decode(CAN_I).expect("decode"),
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "kube-system", "verb": "get", "resource": "pods"}},
            "status": {}
        })
    );
    assert_eq!(
        decode(CAN_I_LIST).expect("decode"),
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"namespace": "default"},
            "status": {}
        })
    );
}

#[test]
fn kubectl_auth_whoami() {
    assert_eq!(
        decode(WHOAMI).expect("decode"),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {}}
        })
    );
}

#[test]
fn kubectl_drain_delete_options() {
    // `kubectl drain --disable-eviction --grace-period=7` deletes pods with this body.
    assert_eq!(
        decode(DRAIN_DELETE).expect("decode"),
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 7})
    );
}

#[test]
fn encoding_the_decoded_json_gives_kubectl_bytes_back() {
    for body in all_fixtures() {
        let decoded = decode(body).expect("decode");
        assert_eq!(encode(&decoded).expect("encode"), body, "{decoded}");
    }
}

#[test]
fn supports_what_kubectl_sends() {
    for body in all_fixtures() {
        let decoded = decode(body).expect("decode");
        assert!(supports(
            decoded["apiVersion"].as_str().expect("apiVersion"),
            decoded["kind"].as_str().expect("kind"),
        ));
    }
}

/// Random edits of a valid body: flip, insert, delete, truncate.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    let n = all_fixtures().len();
    (
        0..n,
        prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..8),
    )
        .prop_map(|(i, edits)| {
            let mut body = all_fixtures()[i].to_vec();
            for (op, at, byte) in edits {
                if body.is_empty() {
                    break;
                }
                let pos = at.index(body.len());
                match op {
                    0 => body[pos] ^= byte | 1,
                    1 => body.insert(pos, byte),
                    2 => {
                        body.remove(pos);
                    }
                    _ => body.truncate(pos),
                }
            }
            body
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9:+./ -]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("metadata".to_owned()),
            Just("spec".to_owned()),
            Just("status".to_owned()),
            Just("name".to_owned()),
            Just("labels".to_owned()),
            Just("data".to_owned()),
            Just("replicas".to_owned()),
            Just("template".to_owned()),
            Just("containers".to_owned()),
            Just("ports".to_owned()),
            Just("targetPort".to_owned()),
            Just("creationTimestamp".to_owned()),
            Just("resources".to_owned()),
            Just("requests".to_owned()),
            "[a-z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&body);
        let _ = decode(&with_magic);
    }

    #[test]
    fn mutated_kubectl_bodies_never_panic(body in mutated_fixture()) {
        if let Ok(value) = decode(&body) {
            // Whatever decodes must encode again (or fail cleanly).
            let _ = encode(&value);
        }
    }

    #[test]
    fn random_json_never_panics_encode(
        kind in prop::sample::select(vec![
            ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "Pod"),
            ("apps/v1", "Deployment"), ("batch/v1", "CronJob"), ("v1", "DeleteOptions"),
            ("coordination.k8s.io/v1", "Lease"), ("authentication.k8s.io/v1", "TokenRequest"),
        ]),
        body in json_value(),
    ) {
        let mut object = match body {
            Value::Object(map) => map,
            other => [("spec".to_owned(), other)].into_iter().collect(),
        };
        object.insert("apiVersion".into(), json!(kind.0));
        object.insert("kind".into(), json!(kind.1));
        let object = Value::Object(object);
        if let Ok(bytes) = encode(&object) {
            // What we encode, we decode.
            prop_assert!(decode(&bytes).is_ok(), "{object}");
        }
    }
}

#[test]
fn not_protobuf_is_bad_magic() {
    assert!(matches!(
        decode(b"{\"kind\":\"ConfigMap\"}"),
        Err(ProtobufError::BadMagic)
    ));
}
