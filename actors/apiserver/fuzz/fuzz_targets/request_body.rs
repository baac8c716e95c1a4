//! Fuzz target `request_body`: one write request per input, through the API router in process.
//!
//! The first byte picks the resource and verb (POST/PUT/PATCH, main resource or status, of a
//! ConfigMap, a Deployment or a custom resource), the second the content type, the third a query
//! string; the rest is the body. Invariants (as in `tests/decode_props.rs`): no panic, no 5xx,
//! errors are JSON `Status` objects, and a failed or dry-run request leaves every object of the
//! namespace exactly as it was.
//!
//! Run from `actors/apiserver`: `cargo +nightly fuzz run request_body`.
#![no_main]

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::OnceLock;
use tower::ServiceExt;

const NS: &str = "fuzz";

const COLLECTIONS: [&str; 3] = [
    "/api/v1/namespaces/fuzz/configmaps",
    "/apis/apps/v1/namespaces/fuzz/deployments",
    "/apis/example.com/v1/namespaces/fuzz/widgets",
];

const CONTENT_TYPES: [&str; 10] = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json; charset=utf-8",
    "text/plain",
    "",
];

const QUERIES: [&str; 8] = [
    "",
    "?dryRun=All",
    "?fieldManager=fuzz",
    "?fieldManager=fuzz&force=true",
    "?fieldValidation=Strict",
    "?fieldManager=other&fieldValidation=Strict&dryRun=All",
    "?resourceVersion=1",
    "?fieldValidation=Ignore&force=false",
];

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
    "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
          "size": {"type": "integer", "minimum": 1}, "tags": {"type": "array", "items": {"type": "string"}}}},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}
}"#;

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = apiserver::ApiConfig {
            service_cidr: "10.43.0.0/16".parse().expect("cidr"),
            cluster_dns: "10.43.0.10".parse().expect("ip"),
            advertise: "127.0.0.1:6443".into(),
            endpoint: ("127.0.0.1".parse().expect("ip"), 6443),
        };
        let state = rt.block_on(async {
            let state = apiserver::ApiState::open("", dir.path(), config)
                .await
                .expect("open store");
            apiserver::bootstrap(&state).await.expect("bootstrap");
            state
        });
        let f = Fixture {
            rt,
            router: apiserver::router(state),
            _dir: dir,
        };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        f.setup("/api/v1/namespaces", &ns.to_string());
        f.setup(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            CRD,
        );
        let cm = json!({"metadata": {"name": "base"}, "data": {"k": "v"}});
        let deploy = json!({"metadata": {"name": "base"}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "base"}, "spec": {"size": 2, "tags": ["x"]}});
        f.setup(COLLECTIONS[0], &cm.to_string());
        f.setup(COLLECTIONS[1], &deploy.to_string());
        f.setup(COLLECTIONS[2], &widget.to_string());
        f
    }

    fn call(&self, method: Method, uri: &str, ct: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if !ct.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let mut req = req.body(Body::from(body)).expect("request");
        req.extensions_mut()
            .insert(protocols::user::UserInfo::authenticated(
                "system:admin",
                [protocols::user::MASTERS.to_owned()],
            ));
        let router = self.router.clone();
        self.rt.block_on(async move {
            let resp = router.oneshot(req).await.expect("infallible");
            let code = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (code, body.to_vec())
        })
    }

    fn setup(&self, uri: &str, body: &str) {
        // The custom resource may need a moment after its CRD is created.
        for _ in 0..500 {
            let (code, _) = self.call(
                Method::POST,
                uri,
                "application/json",
                body.as_bytes().to_vec(),
            );
            if code.is_success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("setup POST {uri} failed");
    }

    fn snapshot(&self) -> Vec<Value> {
        COLLECTIONS
            .iter()
            .map(|c| {
                let (code, body) = self.call(Method::GET, c, "", Vec::new());
                assert_eq!(code, StatusCode::OK);
                let list: Value = serde_json::from_slice(&body).expect("list is JSON");
                list["items"].clone()
            })
            .collect()
    }
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let f = FIXTURE.get_or_init(Fixture::new);
    let (head, body) = data.split_at(data.len().min(3));
    let pick = |i: usize| head.get(i).copied().unwrap_or(0) as usize;
    let target = pick(0);
    let collection = COLLECTIONS[target % 3];
    let (method, path) = match (target / 3) % 5 {
        0 => (Method::POST, collection.to_owned()),
        1 => (Method::PUT, format!("{collection}/base")),
        2 => (Method::PATCH, format!("{collection}/base")),
        3 if target % 3 != 0 => (Method::PUT, format!("{collection}/base/status")),
        _ if target % 3 != 0 => (Method::PATCH, format!("{collection}/base/status")),
        _ => (Method::PATCH, format!("{collection}/base")),
    };
    let ct = CONTENT_TYPES[pick(1) % CONTENT_TYPES.len()];
    let query = QUERIES[pick(2) % QUERIES.len()];
    let uri = format!("{path}{query}");

    let before = f.snapshot();
    let (code, resp) = f.call(method.clone(), &uri, ct, body.to_vec());
    let shown = || format!("{method} {uri} ({ct}) -> {code} {}", String::from_utf8_lossy(&resp));
    assert!(!code.is_server_error(), "server error: {}", shown());
    let v: Value = serde_json::from_slice(&resp).unwrap_or_else(|_| panic!("not JSON: {}", shown()));
    if code.is_client_error() {
        assert_eq!(v["kind"], "Status", "{}", shown());
        assert_eq!(v["status"], "Failure", "{}", shown());
        assert_eq!(v["code"].as_u64(), Some(u64::from(code.as_u16())), "{}", shown());
    }
    if code.is_client_error() || query.contains("dryRun=All") {
        assert!(f.snapshot() == before, "store changed: {}", shown());
    }
});
