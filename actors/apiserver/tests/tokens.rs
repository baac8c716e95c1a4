//! Service-account tokens through the API router: TokenRequest (defaults, validation, bound
//! objects), bearer authentication of anonymous requests, and which identity wins when both an
//! in-process identity and a bearer header are present.

#![allow(clippy::unwrap_used)]

use aws_lc_rs::encoding::AsDer;
use axum::body::Body;
use base64::Engine;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use protocols::user::{MASTERS, UserInfo};
use serde_json::{Value, json};
use tower::ServiceExt;

fn key_pem() -> String {
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = key.as_der().unwrap();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    )
}

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

enum As<'a> {
    Admin,
    Anonymous,
    Bearer(&'a str),
    /// An in-process identity plus a bearer header.
    AdminWithBearer(&'a str),
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = apiserver::ApiConfig {
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            advertise: "127.0.0.1:6443".into(),
            endpoint: ("127.0.0.1".parse().unwrap(), 6443),
        };
        let state = apiserver::ApiState::open("", dir.path(), config)
            .await
            .unwrap();
        apiserver::bootstrap(&state).await.unwrap();
        state.set_service_account_issuer(
            apiserver::ServiceAccountIssuer::new(&key_pem(), "cluster.local").unwrap(),
        );
        Api {
            router: apiserver::router(state),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        who: As<'_>,
        method: Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        match who {
            As::Bearer(t) | As::AdminWithBearer(t) => {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            As::Admin | As::Anonymous => {}
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let mut req = req.body(body).unwrap();
        if matches!(who, As::Admin | As::AdminWithBearer(_)) {
            req.extensions_mut()
                .insert(UserInfo::authenticated("admin", [MASTERS.to_owned()]));
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn create(&self, path: &str, obj: Value) -> Value {
        let (code, v) = self.call(As::Admin, Method::POST, path, obj).await;
        assert_eq!(code, StatusCode::CREATED, "{v}");
        v
    }

    async fn token(&self, sa: &str, spec: Value) -> (StatusCode, Value) {
        self.call(
            As::Admin,
            Method::POST,
            &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        )
        .await
    }

    async fn whoami(&self, who: As<'_>) -> (StatusCode, Value) {
        self.call(
            who,
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await
    }
}

fn claims(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn token_requests_authenticate_and_validate() {
    let api = Api::new().await;
    let (code, v) = api.token("robot", json!({})).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["message"], "serviceaccounts \"robot\" not found");

    api.create(
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
    )
    .await;
    let (code, v) = api.token("robot", json!({})).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "TokenRequest");
    assert_eq!(v["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        v["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local", "k3s"])
    );
    assert!(
        v["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let token = v["status"]["token"].as_str().unwrap().to_owned();

    let (code, who) = api.whoami(As::Bearer(&token)).await;
    assert_eq!(code, StatusCode::CREATED, "{who}");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    // The in-process identity wins over a header (a certificate does too, as upstream).
    let (_, who) = api.whoami(As::AdminWithBearer("garbage")).await;
    assert_eq!(who["status"]["userInfo"]["username"], "admin");
    // No credentials at all: 401; a bad token: 401 as well, never anonymous.
    assert_eq!(api.whoami(As::Anonymous).await.0, StatusCode::UNAUTHORIZED);
    let (code, v) = api.whoami(As::Bearer("not.a.token")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(v["reason"], "Unauthorized");

    let (code, v) = api.token("robot", json!({"expirationSeconds": 599})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("may not specify a duration less than 10 minutes"),
        "{v}"
    );
    let (code, v) = api
        .token(
            "robot",
            json!({"expirationSeconds": 7200, "audiences": ["vault"]}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let vault = v["status"]["token"].as_str().unwrap();
    let c = claims(vault);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );
    assert_eq!(
        api.whoami(As::Bearer(vault)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // TokenReview for another audience accepts the vault token and reports the audience.
    let (code, review) = api
        .call(
            As::Admin,
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": vault, "audiences": ["vault"]}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{review}");
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["audiences"], json!(["vault"]));
    let (_, review) = api
        .call(
            As::Admin,
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": vault}}),
        )
        .await;
    assert_eq!(review["status"]["authenticated"], false, "{review}");
}

#[tokio::test]
async fn pod_bound_tokens_die_with_the_pod() {
    let api = Api::new().await;
    for sa in ["default", "other"] {
        api.create(
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        )
        .await;
    }
    let pod = api
        .create(
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    let uid = pod["metadata"]["uid"].as_str().unwrap();

    let (code, v) = api
        .token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nope"}}),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    let (code, v) = api
        .token("default", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "wrong"}}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{v}");
    let (code, v) = api
        .token(
            "other",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    let (code, v) = api
        .token(
            "default",
            json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");

    let (code, v) = api
        .token(
            "default",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": uid}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let token = v["status"]["token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["kubernetes.io"]["pod"], json!({"name": "p", "uid": uid}));
    assert_eq!(api.whoami(As::Bearer(&token)).await.0, StatusCode::CREATED);

    let (code, v) = api
        .call(
            As::Admin,
            Method::DELETE,
            "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0",
            Value::Null,
        )
        .await;
    assert!(code.is_success(), "{v}");
    assert_eq!(
        api.whoami(As::Bearer(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn issuer_discovery_serves_the_public_key() {
    let api = Api::new().await;
    let (code, v) = api
        .call(
            As::Admin,
            Method::GET,
            "/.well-known/openid-configuration",
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["issuer"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        v["jwks_uri"],
        "https://kubernetes.default.svc.cluster.local/openid/v1/jwks"
    );
    let (code, v) = api
        .call(As::Admin, Method::GET, "/openid/v1/jwks", Value::Null)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["keys"][0]["kty"], "RSA");
    assert_eq!(v["keys"][0]["alg"], "RS256");
}
