//! Property tests: whatever bytes, content type and query a client sends to a write endpoint,
//! the API server answers like upstream's does with bad input, and never corrupts what it stores.
//!
//! Requests go through [`apiserver::router`] in process (`tower::ServiceExt::oneshot`, the admin
//! identity in the request extensions) over a temporary SQLite store, against POST/PUT/PATCH of
//! ConfigMaps, Deployments (and their status) and a custom resource (and its status). For every
//! request:
//!
//! - no panic and no 5xx;
//! - an error is a JSON `Status` (`kind: Status`, `status: Failure`, `code` = the HTTP code);
//! - a success is a JSON object;
//! - after an error, or after a `dryRun=All` success, every object of the namespace is exactly
//!   what it was before (nothing half-stored).
//!
//! Inputs: random bytes, mutated valid objects encoded as JSON or YAML, valid encodings corrupted
//! byte-wise or truncated, JSON patches of random operations, bodies around the size limit and
//! deeply nested documents, random content types and random query strings. Case counts are
//! moderate so the whole file runs in seconds; `PROPTEST_CASES` raises them.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use tower::ServiceExt;

/// The namespace every generated request targets.
const NS: &str = "fuzz";
/// The object PUT and PATCH requests target (it exists in every collection).
const BASE: &str = "base";
/// The API's request body limit (3 MiB, as upstream).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Longest any one request may take (a debug build, a loaded CI machine).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One API server over a temporary store, with a runtime to drive it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

/// A response: status, content type, body.
struct Reply {
    code: StatusCode,
    content_type: String,
    body: bytes::Bytes,
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {
    "group": "example.com", "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
          "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 100},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "blue"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
          }},
          "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }
      }}
    }]
  }
}"#;

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = apiserver::ApiConfig {
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            advertise: "127.0.0.1:6443".into(),
            endpoint: ("127.0.0.1".parse().unwrap(), 6443),
        };
        let state = rt.block_on(async {
            let state = apiserver::ApiState::open("", dir.path(), config)
                .await
                .unwrap();
            apiserver::bootstrap(&state).await.unwrap();
            state
        });
        let f = Fixture {
            rt,
            router: apiserver::router(state),
            _dir: dir,
        };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        f.must(Method::POST, "/api/v1/namespaces", &ns.to_string());
        f.must(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            CRD,
        );
        // The custom resource is served once the CRD is established.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while f
            .call(Method::GET, &Kind::Widget.collection(), None, Vec::new())
            .code
            != StatusCode::OK
        {
            assert!(std::time::Instant::now() < deadline, "widgets never served");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for kind in Kind::ALL {
            f.must(
                Method::POST,
                &kind.collection(),
                &kind.valid(BASE).to_string(),
            );
        }
        f
    }

    fn call(&self, method: Method, uri: &str, ct: Option<&str>, body: Vec<u8>) -> Reply {
        self.try_call(method, uri, ct, body).unwrap()
    }

    /// Send a request on the runtime; an error when the handler panics or takes longer than
    /// [`REQUEST_TIMEOUT`].
    fn try_call(
        &self,
        method: Method,
        uri: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut()
            .insert(protocols::user::UserInfo::authenticated(
                "system:admin",
                [protocols::user::MASTERS.to_owned()],
            ));
        let router = self.router.clone();
        let task = self.rt.spawn(async move {
            let resp = router.oneshot(req).await.unwrap();
            let code = resp.status();
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Reply {
                code,
                content_type,
                body,
            }
        });
        self.rt.block_on(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, task).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    Err(format!("the handler panicked: {msg}"))
                }
                Ok(Err(e)) => Err(format!("the handler task failed: {e}")),
                Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
            }
        })
    }

    /// A setup request that must succeed.
    fn must(&self, method: Method, uri: &str, body: &str) {
        let r = self.call(
            method.clone(),
            uri,
            Some("application/json"),
            body.as_bytes().to_vec(),
        );
        assert!(
            r.code.is_success(),
            "{method} {uri}: {} {}",
            r.code,
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Every stored object of the namespace, by kind and name.
    fn snapshot(&self) -> BTreeMap<(Kind, String), Value> {
        let mut all = BTreeMap::new();
        for kind in Kind::ALL {
            let r = self.call(Method::GET, &kind.collection(), None, Vec::new());
            assert_eq!(
                r.code,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            let list: Value = serde_json::from_slice(&r.body).unwrap();
            for item in list["items"].as_array().unwrap() {
                // Keyed by the name as stored (checked to be a string by `well_formed`).
                let name = match &item["metadata"]["name"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                all.insert((kind, name), item.clone());
            }
        }
        all
    }

    /// Send one generated request and check every invariant.
    fn check(&self, req: &Generated) -> Result<(), TestCaseError> {
        let before = self.snapshot();
        let uri = req.uri();
        let r = self
            .try_call(
                req.target.verb.method(),
                &uri,
                req.content_type.as_deref(),
                req.body.clone(),
            )
            .map_err(|e| {
                TestCaseError::fail(format!(
                    "{e}: {} {uri} ({:?}, {} bytes: {:?})",
                    req.target.verb.method(),
                    req.content_type,
                    req.body.len(),
                    String::from_utf8_lossy(&req.body[..req.body.len().min(2000)]),
                ))
            })?;
        let shown = || {
            format!(
                "{} {uri} ({:?}, {} bytes: {:?}) -> {} {}",
                req.target.verb.method(),
                req.content_type,
                req.body.len(),
                String::from_utf8_lossy(&req.body[..req.body.len().min(300)]),
                r.code,
                String::from_utf8_lossy(&r.body[..r.body.len().min(600)])
            )
        };
        prop_assert!(!r.code.is_server_error(), "server error: {}", shown());
        prop_assert!(
            r.content_type.starts_with("application/json"),
            "content type {:?}: {}",
            r.content_type,
            shown()
        );
        let v: Value = match serde_json::from_slice(&r.body) {
            Ok(v) => v,
            Err(e) => return Err(TestCaseError::fail(format!("not JSON ({e}): {}", shown()))),
        };
        prop_assert!(v.is_object(), "not an object: {}", shown());
        let unchanged = r.code.is_client_error() || req.dry_run();
        if r.code.is_client_error() {
            prop_assert_eq!(&v["kind"], "Status", "{}", shown());
            prop_assert_eq!(&v["apiVersion"], "v1", "{}", shown());
            prop_assert_eq!(&v["status"], "Failure", "{}", shown());
            prop_assert_eq!(
                v["code"].as_u64(),
                Some(u64::from(r.code.as_u16())),
                "{}",
                shown()
            );
            prop_assert!(
                v["reason"].as_str().is_some_and(|s| !s.is_empty()),
                "no reason: {}",
                shown()
            );
            prop_assert!(
                v["message"].as_str().is_some_and(|s| !s.is_empty()),
                "no message: {}",
                shown()
            );
        } else {
            prop_assert!(r.code.is_success(), "unexpected code: {}", shown());
        }
        let after = self.snapshot();
        for ((kind, _), obj) in &after {
            if let Err(e) = well_formed(*kind, obj) {
                return Err(TestCaseError::fail(format!(
                    "stored object is malformed ({e}): {obj}\nafter: {}",
                    shown()
                )));
            }
        }
        if unchanged && after != before {
            let diff: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
                .collect();
            return Err(TestCaseError::fail(format!(
                "store changed by a failed or dry-run request ({diff:?}): {}",
                shown()
            )));
        }
        Ok(())
    }
}

/// What every stored object must look like, whatever was sent.
fn well_formed(kind: Kind, obj: &Value) -> Result<(), String> {
    let (api_version, k) = match kind {
        Kind::ConfigMap => ("v1", "ConfigMap"),
        Kind::Deployment => ("apps/v1", "Deployment"),
        Kind::Widget => ("example.com/v1", "Widget"),
    };
    if obj["apiVersion"] != api_version || obj["kind"] != k {
        return Err("wrong apiVersion/kind".into());
    }
    let m = &obj["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    if name.is_empty() || name.len() > 253 || name.contains('/') {
        return Err(format!("bad name {}", m["name"]));
    }
    if m["namespace"] != NS {
        return Err(format!("bad namespace {}", m["namespace"]));
    }
    for f in ["uid", "resourceVersion", "creationTimestamp"] {
        if m[f].as_str().is_none_or(str::is_empty) {
            return Err(format!("bad {f} {}", m[f]));
        }
    }
    Ok(())
}

/// The resources under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ConfigMap,
    Deployment,
    Widget,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::ConfigMap, Kind::Deployment, Kind::Widget];

    fn collection(self) -> String {
        match self {
            Kind::ConfigMap => format!("/api/v1/namespaces/{NS}/configmaps"),
            Kind::Deployment => format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            Kind::Widget => format!("/apis/example.com/v1/namespaces/{NS}/widgets"),
        }
    }

    fn has_status(self) -> bool {
        !matches!(self, Kind::ConfigMap)
    }

    /// A valid object of this kind named `name`.
    fn valid(self, name: &str) -> Value {
        match self {
            Kind::ConfigMap => json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"app": "fuzz"}, "annotations": {"a": "b"}},
                "data": {"key": "value", "other": "x"},
                "binaryData": {"bin": "AAEC"},
            }),
            Kind::Deployment => json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "labels": {"app": "fuzz"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "fuzz"}},
                    "template": {
                        "metadata": {"labels": {"app": "fuzz"}},
                        "spec": {"containers": [
                            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                             "env": [{"name": "A", "value": "1"}]},
                            {"name": "side", "image": "busybox", "args": ["sleep", "1d"]},
                        ]},
                    },
                },
                "status": {"replicas": 0},
            }),
            Kind::Widget => json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"size": 3, "color": "red", "tags": ["a", "b"], "extra": {"x": [1, 2]}},
                "status": {"ready": false},
            }),
        }
    }
}

/// What a request does.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Post,
    Put,
    Patch,
    PutStatus,
    PatchStatus,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Post => Method::POST,
            Verb::Put | Verb::PutStatus => Method::PUT,
            Verb::Patch | Verb::PatchStatus => Method::PATCH,
        }
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug)]
struct Target {
    kind: Kind,
    verb: Verb,
}

impl Target {
    fn path(self) -> String {
        let c = self.kind.collection();
        match self.verb {
            Verb::Post => c,
            Verb::Put | Verb::Patch => format!("{c}/{BASE}"),
            Verb::PutStatus | Verb::PatchStatus => format!("{c}/{BASE}/status"),
        }
    }

    /// The content types a well-behaved client would send here.
    fn natural_content_types(self) -> &'static [&'static str] {
        match self.verb {
            Verb::Post | Verb::Put | Verb::PutStatus => &["application/json", "application/yaml"],
            Verb::Patch | Verb::PatchStatus => &[
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
                "application/json-patch+json",
            ],
        }
    }
}

/// One generated request.
#[derive(Clone, Debug)]
struct Generated {
    target: Target,
    content_type: Option<String>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Generated {
    fn uri(&self) -> String {
        let mut uri = self.target.path();
        if !self.query.is_empty() {
            uri.push('?');
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            uri.push_str(&q.join("&"));
        }
        uri
    }

    /// Whether the server must not persist anything even on success (last `dryRun` wins).
    fn dry_run(&self) -> bool {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == "dryRun")
            .is_some_and(|(_, v)| v == "All")
    }
}

/// Percent-encode everything but unreserved characters (so any string makes a valid URI).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn arb_target() -> impl Strategy<Value = Target> {
    (
        prop::sample::select(Kind::ALL.to_vec()),
        prop::sample::select(vec![
            Verb::Post,
            Verb::Put,
            Verb::Patch,
            Verb::PutStatus,
            Verb::PatchStatus,
        ]),
    )
        .prop_map(|(kind, verb)| {
            let verb = match verb {
                Verb::PutStatus if !kind.has_status() => Verb::Put,
                Verb::PatchStatus if !kind.has_status() => Verb::Patch,
                v => v,
            };
            Target { kind, verb }
        })
}

/// Any content type: the known ones, with parameters, absent, or junk.
fn arb_content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "application/json",
            "application/yaml",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/json-patch+json",
            "application/apply-patch+yaml",
            "application/vnd.kubernetes.protobuf",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/apply-patch+cbor",
            ";",
            "",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
}

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "generateName",
    "resourceVersion",
    "uid",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "deletionTimestamp",
    "creationTimestamp",
    "generation",
    "spec",
    "status",
    "data",
    "binaryData",
    "immutable",
    "replicas",
    "selector",
    "matchLabels",
    "template",
    "containers",
    "image",
    "ports",
    "containerPort",
    "env",
    "size",
    "color",
    "tags",
    "extra",
    "$patch",
    "$setElementOrder/containers",
    "$retainKeys",
    "$deleteFromPrimitiveList/args",
    "",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9/.$_-]{0,12}",
        1 => any::<String>(),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "", "base", "fuzz", "v1", "apps/v1", "example.com/v1", "ConfigMap", "Deployment",
            "Widget", "replace", "delete", "merge", "nginx", "1", "-1", "true", "null", "AAEC",
            "not base64!", "2024-01-01T00:00:00Z", "Invalid-Name_", "a.b.c", "UPPER",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z0-9.-]{0,70}",
        1 => any::<String>(),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, -1, 2, 5, 100, 101, i32::MAX as i64 + 1])
            .prop_map(Value::from),
        arb_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A change to a JSON tree.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the `n`th node (pre-order) with a value.
    Replace(usize, Value),
    /// Remove the `n`th node from its parent.
    Remove(usize),
    /// Insert a key into the `n`th node (if it is an object) or push onto it (if an array).
    Insert(usize, String, Value),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), arb_json()).prop_map(|(n, v)| Mutation::Replace(n, v)),
            any::<usize>().prop_map(Mutation::Remove),
            (any::<usize>(), arb_key(), arb_json()).prop_map(|(n, k, v)| Mutation::Insert(n, k, v)),
        ],
        1..5,
    )
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`th node in pre-order, as a mutable reference, with a way to remove it.
fn apply_mutation(root: &mut Value, m: &Mutation) {
    let total = count_nodes(root);
    let pick = |n: usize| n % total;
    match m {
        Mutation::Replace(n, v) => {
            if let Some(node) = nth(root, pick(*n)) {
                *node = v.clone();
            }
        }
        Mutation::Insert(n, k, v) => match nth(root, pick(*n)) {
            Some(Value::Object(o)) => {
                o.insert(k.clone(), v.clone());
            }
            Some(Value::Array(a)) => a.push(v.clone()),
            _ => {}
        },
        Mutation::Remove(n) => {
            // Removing the root makes no sense; remove a child of the picked node instead.
            if let Some(node) = nth(root, pick(*n)) {
                match node {
                    Value::Object(o) if !o.is_empty() => {
                        let idx = n % o.len();
                        if let Some(k) = o.keys().nth(idx).cloned() {
                            o.remove(&k);
                        }
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let idx = n % a.len();
                        a.remove(idx);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn nth(v: &mut Value, mut n: usize) -> Option<&mut Value> {
    fn go<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| go(c, n)),
            Value::Object(o) => o.values_mut().find_map(|c| go(c, n)),
            _ => None,
        }
    }
    go(v, &mut n)
}

/// Encode `v` for `ct`: YAML for the YAML types, JSON otherwise.
fn encode(v: &Value, ct: &str) -> Vec<u8> {
    if ct.contains("yaml") {
        serde_saphyr::to_string(v)
            .map(String::into_bytes)
            .unwrap_or_else(|_| serde_json::to_vec(v).unwrap())
    } else {
        serde_json::to_vec(v).unwrap()
    }
}

/// The valid object for `target`, named so that PUT/PATCH hit the base object.
fn valid_for(target: Target, post_name: &str) -> Value {
    match target.verb {
        Verb::Post => target.kind.valid(post_name),
        _ => target.kind.valid(BASE),
    }
}

fn arb_query() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "fieldManager", "force", "dryRun", "fieldValidation", "resourceVersion",
            "gracePeriodSeconds", "propagationPolicy", "pretty", "timeout", "limit", "continue",
            "labelSelector", "fieldSelector", "orphanDependents", "resourceVersionMatch",
            "timeoutSeconds", "allowWatchBookmarks",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,10}",
    ];
    let value = prop_oneof![
        4 => prop::sample::select(vec![
            "All", "all", "Strict", "Warn", "Ignore", "true", "false", "1", "0", "-1",
            "99999999999999999999", "mgr", "kubectl", "", "x=y", "Background", "Orphan",
            "app in (a,b)", "metadata.name=base",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop::collection::vec((key, value), 0..4)
}

/// Mostly the request's natural content type, sometimes any.
fn pick_content_type(target: Target, natural: usize, any_ct: Option<String>) -> Option<String> {
    match any_ct {
        Some(ct) if natural.is_multiple_of(4) => Some(ct),
        _ => {
            let list = target.natural_content_types();
            Some(list[natural % list.len()].to_owned())
        }
    }
}

/// A runner with `cases` cases unless `PROPTEST_CASES` says otherwise; shrinking is bounded
/// (`PROPTEST_MAX_SHRINK_ITERS` overrides) so a failure is reported in seconds.
fn runner(cases: u32) -> TestRunner {
    let env = |name: &str| std::env::var(name).ok().and_then(|c| c.parse().ok());
    TestRunner::new(Config {
        cases: env("PROPTEST_CASES").unwrap_or(cases),
        max_shrink_iters: env("PROPTEST_MAX_SHRINK_ITERS").unwrap_or(64),
        // Milliseconds; a failing case that times out must not shrink for minutes.
        max_shrink_time: env("PROPTEST_MAX_SHRINK_TIME").unwrap_or(30_000),
        failure_persistence: None,
        ..Config::default()
    })
}

fn run<S: Strategy<Value = Generated>>(cases: u32, strategy: S) {
    let fixture = Fixture::new();
    let mut runner = runner(cases);
    let first = std::sync::atomic::AtomicBool::new(true);
    let result = runner.run(&strategy, |g| {
        let r = fixture.check(&g);
        if let Err(e) = &r
            && first.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            // The original failure, before shrinking (shown with --nocapture).
            eprintln!("first failure: {e}");
        }
        r
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn random_bytes() {
    let strategy = (
        arb_target(),
        arb_content_type(),
        arb_query(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1024),
            // Printable noise hits the text parsers' deeper paths.
            "[ -~\n\t]{0,512}".prop_map(String::into_bytes),
            // Protobuf envelope magic followed by noise.
            prop::collection::vec(any::<u8>(), 0..256).prop_map(|mut b| {
                let mut v = b"k8s\0".to_vec();
                v.append(&mut b);
                v
            }),
        ],
    )
        .prop_map(|(target, content_type, query, body)| Generated {
            target,
            content_type,
            query,
            body,
        });
    run(128, strategy);
}

#[test]
fn mutated_objects() {
    let strategy = (
        arb_target(),
        any::<usize>(),
        arb_content_type(),
        "[a-z][a-z0-9-]{0,10}",
        arb_mutations(),
        prop::collection::vec((arb_key(), arb_json()), 0..3),
    )
        .prop_map(|(target, natural, any_ct, name, muts, extra)| {
            let mut v = valid_for(target, &name);
            for m in &muts {
                apply_mutation(&mut v, m);
            }
            if let Value::Object(o) = &mut v {
                o.extend(extra);
            }
            let content_type = pick_content_type(target, natural, any_ct);
            let body = encode(&v, content_type.as_deref().unwrap_or(""));
            Generated {
                target,
                content_type,
                query: Vec::new(),
                body,
            }
        });
    run(128, strategy);
}

#[test]
fn corrupted_encodings() {
    let strategy = (
        arb_target(),
        any::<usize>(),
        "[a-z][a-z0-9-]{0,10}",
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<bool>(),
    )
        .prop_map(|(target, natural, name, cut, flips, truncate)| {
            let content_type = pick_content_type(target, natural, None);
            let mut body = encode(
                &valid_for(target, &name),
                content_type.as_deref().unwrap_or(""),
            );
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            if truncate {
                body.truncate(cut.index(body.len()));
            }
            Generated {
                target,
                content_type,
                query: Vec::new(),
                body,
            }
        });
    run(128, strategy);
}

#[test]
fn json_patches() {
    let path = prop_oneof![
        prop::sample::select(vec![
            "",
            "/",
            "/metadata",
            "/metadata/name",
            "/metadata/resourceVersion",
            "/metadata/uid",
            "/metadata/labels/app",
            "/metadata/namespace",
            "/data/key",
            "/data/-",
            "/spec",
            "/spec/replicas",
            "/spec/size",
            "/spec/tags/0",
            "/spec/tags/-",
            "/spec/tags/9",
            "/spec/template/spec/containers/0",
            "/spec/template/spec/containers/1/image",
            "/spec/template/spec/containers/-",
            "/status",
            "/status/ready",
            "/kind",
            "/apiVersion",
            "/metadata/managedFields",
            "/a~1b",
            "/~2",
            "/data/01",
        ])
        .prop_map(str::to_owned),
        "(/[a-z0-9~-]{0,6}){0,4}",
    ];
    let op = (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        path.clone(),
        path,
        arb_json(),
        0u8..4,
    )
        .prop_map(|(op, path, from, value, shape)| {
            let mut o = json!({"op": op, "path": path});
            if shape != 1 {
                o["value"] = value;
            }
            if shape != 2 {
                o["from"] = json!(from);
            }
            if shape == 3 {
                o.as_object_mut().unwrap().remove("op");
            }
            o
        });
    let strategy = (arb_target(), prop::collection::vec(op, 0..5), arb_query()).prop_map(
        |(target, ops, query)| {
            let verb = match target.verb {
                Verb::PutStatus | Verb::PatchStatus => Verb::PatchStatus,
                _ => Verb::Patch,
            };
            Generated {
                target: Target { verb, ..target },
                content_type: Some("application/json-patch+json".into()),
                query,
                body: serde_json::to_vec(&ops).unwrap(),
            }
        },
    );
    run(128, strategy);
}

#[test]
fn random_queries() {
    let strategy = (
        arb_target(),
        any::<usize>(),
        "[a-z][a-z0-9-]{0,10}",
        arb_query(),
    )
        .prop_map(|(target, natural, name, query)| {
            let content_type = pick_content_type(target, natural, None);
            let ct = content_type.as_deref().unwrap_or("");
            let v = valid_for(target, &name);
            let body = if ct == "application/json-patch+json" {
                serde_json::to_vec(
                    &json!([{"op": "add", "path": "/metadata/labels/q", "value": "1"}]),
                )
                .unwrap()
            } else if ct.contains("patch") {
                serde_json::to_vec(&json!({"metadata": {"labels": {"q": "1"}}})).unwrap()
            } else {
                encode(&v, ct)
            };
            let body = if ct == "application/apply-patch+yaml" {
                encode(&v, ct)
            } else {
                body
            };
            Generated {
                target,
                content_type,
                query,
                body,
            }
        });
    run(128, strategy);
}

/// Bodies at and around the size limit, and documents nested far deeper than any object.
#[test]
fn huge_and_deep_bodies() {
    let strategy = (
        arb_target(),
        any::<usize>(),
        prop_oneof![
            // A value whose body lands just under or just over the limit.
            (-2048i64..2048).prop_map(Shape::Big),
            // Many keys.
            (1usize..20_000).prop_map(Shape::Wide),
            // Deep nesting of arrays or objects, in JSON or YAML flow style.
            (1usize..20_000, any::<bool>()).prop_map(|(d, obj)| Shape::Deep(d, obj)),
            // Deep nesting of YAML block mappings.
            (1usize..2_000).prop_map(Shape::DeepBlock),
            // A YAML alias bomb.
            (1usize..12).prop_map(Shape::Aliases),
        ],
    )
        .prop_map(|(target, natural, shape)| {
            let content_type = pick_content_type(target, natural, None);
            let ct = content_type.clone().unwrap_or_default();
            let base = valid_for(target, "huge");
            let body = shape.body(&base, &ct);
            Generated {
                target,
                content_type,
                query: Vec::new(),
                body,
            }
        });
    run(24, strategy);
}

#[derive(Clone, Debug)]
enum Shape {
    Big(i64),
    Wide(usize),
    Deep(usize, bool),
    DeepBlock(usize),
    Aliases(usize),
}

impl Shape {
    fn body(&self, base: &Value, ct: &str) -> Vec<u8> {
        let yaml = ct.contains("yaml");
        match self {
            Shape::Big(delta) => {
                let mut v = base.clone();
                v["metadata"]["annotations"] = json!({"big": ""});
                let overhead = serde_json::to_vec(&v).unwrap().len();
                let n = (MAX_BODY as i64 + delta - overhead as i64).max(0) as usize;
                v["metadata"]["annotations"]["big"] = json!("x".repeat(n));
                serde_json::to_vec(&v).unwrap()
            }
            Shape::Wide(n) => {
                let mut v = base.clone();
                let labels: Map<String, Value> = (0..*n)
                    .map(|i| (format!("k{i}"), json!(format!("v{i}"))))
                    .collect();
                v["metadata"]["labels"] = Value::Object(labels);
                encode(&v, ct)
            }
            Shape::Deep(depth, obj) => {
                let (open, close) = if *obj { ("{\"a\":", "}") } else { ("[", "]") };
                let inner = format!("{}1{}", open.repeat(*depth), close.repeat(*depth));
                let mut s = serde_json::to_string(base).unwrap();
                // Put the nested value into a field every kind accepts.
                s.pop();
                s.push_str(&format!(",\"deep\":{inner}}}"));
                s.into_bytes()
            }
            Shape::DeepBlock(depth) => {
                if !yaml {
                    return Shape::Deep(*depth, true).body(base, ct);
                }
                let mut s = String::from("deep:\n");
                for i in 1..=*depth {
                    s.push_str(&" ".repeat(i));
                    s.push_str("a:\n");
                }
                s.push_str(&" ".repeat(depth + 1));
                s.push_str("b: 1\n");
                let mut doc = String::from_utf8(encode(base, ct)).unwrap();
                doc.push_str(&s);
                doc.into_bytes()
            }
            Shape::Aliases(levels) => {
                if !yaml {
                    return Shape::Wide(levels * 100).body(base, ct);
                }
                let mut s = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
                for i in 1..=*levels {
                    let prev = format!("*l{}", i - 1);
                    s.push_str(&format!("l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
                }
                let mut doc = String::from_utf8(encode(base, ct)).unwrap();
                doc.push_str(&s);
                doc.into_bytes()
            }
        }
    }
}

/// Sanity check of the harness itself: valid writes succeed and are stored.
#[test]
fn valid_requests_succeed() {
    let f = Fixture::new();
    for kind in Kind::ALL {
        let g = Generated {
            target: Target {
                kind,
                verb: Verb::Post,
            },
            content_type: Some("application/json".into()),
            query: Vec::new(),
            body: kind.valid("fresh").to_string().into_bytes(),
        };
        f.check(&g).unwrap();
        let r = f.call(
            Method::GET,
            &format!("{}/fresh", kind.collection()),
            None,
            Vec::new(),
        );
        assert_eq!(r.code, StatusCode::OK);
        let g = Generated {
            target: Target {
                kind,
                verb: Verb::Patch,
            },
            content_type: Some("application/merge-patch+json".into()),
            query: vec![("dryRun".into(), "All".into())],
            body: br#"{"metadata":{"labels":{"dry":"run"}}}"#.to_vec(),
        };
        f.check(&g).unwrap();
    }
}
