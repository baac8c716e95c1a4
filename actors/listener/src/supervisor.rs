//! K3s's "supervisor" join endpoints: how an agent that holds the join token gets its
//! certificates.
//!
//! | path | answer |
//! |---|---|
//! | `GET /v1-k3s/client-kubelet.crt` | PEM certificate + key, client CA, `CN=system:node:<name>`, `O=system:nodes` |
//! | `GET /v1-k3s/serving-kubelet.crt` | PEM certificate + key, server CA, SANs: the node name, `k3s-Node-IP` addresses, localhost |
//! | `GET /v1-k3s/client-kube-proxy.crt` | PEM certificate + key, client CA, `CN=system:kube-proxy` |
//! | `GET /v1-k3s/client-ca.crt`, `/v1-k3s/server-ca.crt` | the CA certificate (PEM) |
//! | `GET /v1-k3s/config` | JSON: `clusterDNS`, `clusterDomain`, `clusterCIDR`, `serviceCIDR` |
//!
//! Every request authenticates with HTTP basic auth: user `node` (or `server`) and the join
//! token's password, compared in constant time; anything else is a 401. The kubelet certificates
//! also need the node's name (`k3s-Node-Name`) and its node password (`k3s-Node-Password`): the
//! first join of a name stores a salted hash of the password ([`NodePasswords`], a Secret
//! `kube-system/<name>.node-password.k3s` in the server); a later join of the same name with
//! another password is refused with 403, so one agent cannot take over another's node.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use pki::{ClusterPki, ServingNames, Usage};
use protocols::status::Status;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Header carrying the joining node's name.
pub const NODE_NAME_HEADER: &str = "k3s-Node-Name";
/// Header carrying the joining node's password.
pub const NODE_PASSWORD_HEADER: &str = "k3s-Node-Password";
/// Header carrying the joining node's IP addresses (comma list) for its serving certificate.
pub const NODE_IP_HEADER: &str = "k3s-Node-IP";

/// Errors of the node-password store.
#[derive(Debug, thiserror::Error)]
pub enum NodePasswordError {
    /// The store (the API server) failed.
    #[error("node password store: {0}")]
    Store(String),
    /// Another join of the same node stored its hash at the same moment.
    #[error("node password for {0} was stored concurrently; retry")]
    Conflict(String),
}

/// Where the hashes of node passwords live (the server keeps them in Secrets).
pub trait NodePasswords: Send + Sync + 'static {
    /// The stored hash for `node`, if it ever joined.
    fn get(&self, node: &str) -> BoxFuture<'static, Result<Option<String>, NodePasswordError>>;
    /// Store the hash for a node's first join; `Conflict` if one appeared meanwhile.
    fn create(&self, node: &str, hash: &str) -> BoxFuture<'static, Result<(), NodePasswordError>>;
}

/// Cluster settings an agent needs and cannot know by itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// The cluster DNS service IP.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: String,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The pod network.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    /// The service network.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
}

/// What the join endpoints need.
#[derive(Clone)]
pub struct SupervisorState {
    /// The join token's password.
    pub token_password: Arc<str>,
    /// The cluster's CAs, to sign with.
    pub pki: Arc<ClusterPki>,
    /// The node-password store.
    pub node_passwords: Arc<dyn NodePasswords>,
    /// Served at `/v1-k3s/config`.
    pub agent_config: AgentConfig,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorState")
            .field("agent_config", &self.agent_config)
            .finish_non_exhaustive()
    }
}

/// The join endpoints, to be merged into the front door's router.
pub fn router(state: SupervisorState) -> Router {
    Router::new()
        .route("/v1-k3s/client-kubelet.crt", get(client_kubelet))
        .route("/v1-k3s/serving-kubelet.crt", get(serving_kubelet))
        .route("/v1-k3s/client-kube-proxy.crt", get(client_kube_proxy))
        .route("/v1-k3s/client-ca.crt", get(client_ca))
        .route("/v1-k3s/server-ca.crt", get(server_ca))
        .route("/v1-k3s/config", get(config))
        .with_state(state)
}

fn pem_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], body).into_response()
}

fn unauthorized(msg: &str) -> Response {
    let mut r = crate::status(Status::failure(401, "Unauthorized", msg));
    if let Ok(v) = "Basic realm=\"k3s\"".parse() {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn bad_request(msg: impl Into<String>) -> Response {
    crate::status(Status::failure(400, "BadRequest", msg))
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check basic auth against the token password.
#[allow(clippy::result_large_err)] // a ready-made answer, built once on the refusal path
fn check_token(s: &SupervisorState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "the join endpoints need basic auth with the cluster token",
        ));
    };
    let creds = value
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(unauthorized("malformed basic auth"));
    };
    let password_ok = constant_time_eq(password.as_bytes(), s.token_password.as_bytes());
    if !(password_ok && (user == "node" || user == "server")) {
        return Err(unauthorized("the token is not valid for this cluster"));
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Whether `s` is a valid node name (a DNS subdomain).
pub fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A salted hash of a node password: `sha256$<salt hex>$<digest hex>`.
pub fn hash_node_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    format!("sha256${}${}", hex::encode(salt), digest(&salt, password))
}

fn digest(salt: &[u8], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `password` matches a hash made by [`hash_node_password`].
pub fn verify_node_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("sha256"), Some(salt), Some(want), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(salt) = hex::decode(salt) else {
        return false;
    };
    constant_time_eq(digest(&salt, password).as_bytes(), want.as_bytes())
}

/// Authenticate a kubelet certificate request: token, node name, node password.
async fn check_node(s: &SupervisorState, headers: &HeaderMap) -> Result<String, Response> {
    check_token(s, headers)?;
    let Some(node) = header_str(headers, NODE_NAME_HEADER) else {
        return Err(bad_request(format!(
            "the {NODE_NAME_HEADER} header is required"
        )));
    };
    if !is_node_name(node) {
        return Err(bad_request(format!(
            "node name '{node}' is not a valid DNS subdomain"
        )));
    }
    let Some(password) = header_str(headers, NODE_PASSWORD_HEADER) else {
        return Err(bad_request(format!(
            "the {NODE_PASSWORD_HEADER} header is required"
        )));
    };
    let internal = |e: NodePasswordError| {
        tracing::warn!(node, error = %e, "node password check failed");
        crate::status(Status::failure(500, "InternalError", e.to_string()))
    };
    let stored = match s.node_passwords.get(node).await.map_err(internal)? {
        Some(h) => h,
        None => {
            let hash = hash_node_password(password);
            match s.node_passwords.create(node, &hash).await {
                Ok(()) => {
                    tracing::info!(node, "stored the password of a newly joining node");
                    return Ok(node.to_owned());
                }
                Err(NodePasswordError::Conflict(_)) => s
                    .node_passwords
                    .get(node)
                    .await
                    .map_err(internal)?
                    .unwrap_or_default(),
                Err(e) => return Err(internal(e)),
            }
        }
    };
    if verify_node_password(&stored, password) {
        Ok(node.to_owned())
    } else {
        tracing::warn!(node, "refused a join: node password mismatch");
        Err(crate::status(Status::failure(
            403,
            "Forbidden",
            format!(
                "Node password rejected, duplicate hostname or contents of the node password file do not match the server's record for node {node} (delete Secret kube-system/{node}.node-password.k3s to let a re-installed node join)"
            ),
        )))
    }
}

fn issued(r: Result<pki::Leaf, pki::PkiError>) -> Response {
    match r {
        Ok(leaf) => pem_response(format!("{}{}", leaf.cert_pem, leaf.key_pem)),
        Err(e) => crate::status(Status::failure(500, "InternalError", e.to_string())),
    }
}

async fn client_kubelet(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    let node = match check_node(&s, &headers).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    issued(s.pki.client_ca.issue(
        &format!("system:node:{node}"),
        &["system:nodes".to_owned()],
        Usage::Client,
        &ServingNames::default(),
    ))
}

async fn serving_kubelet(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    let node = match check_node(&s, &headers).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut names = ServingNames::default();
    names.add(&node);
    names.add("localhost");
    names.add("127.0.0.1");
    for ip in header_str(&headers, NODE_IP_HEADER)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return bad_request(format!("{NODE_IP_HEADER} '{ip}' is not an IP address"));
        }
        names.add(ip);
    }
    issued(s.pki.server_ca.issue(&node, &[], Usage::Server, &names))
}

async fn client_kube_proxy(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&s, &headers) {
        return r;
    }
    issued(s.pki.client_ca.issue(
        "system:kube-proxy",
        &[],
        Usage::Client,
        &ServingNames::default(),
    ))
}

async fn client_ca(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&s, &headers) {
        return r;
    }
    pem_response(s.pki.client_ca.cert_pem.clone())
}

async fn server_ca(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&s, &headers) {
        return r;
    }
    pem_response(s.pki.server_ca.cert_pem.clone())
}

async fn config(State(s): State<SupervisorState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_token(&s, &headers) {
        return r;
    }
    axum::Json(s.agent_config.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::collections::HashMap;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Memory(std::sync::Mutex<HashMap<String, String>>);

    impl NodePasswords for Memory {
        fn get(&self, node: &str) -> BoxFuture<'static, Result<Option<String>, NodePasswordError>> {
            let v = self.0.lock().expect("lock").get(node).cloned();
            Box::pin(async move { Ok(v) })
        }
        fn create(
            &self,
            node: &str,
            hash: &str,
        ) -> BoxFuture<'static, Result<(), NodePasswordError>> {
            let mut m = self.0.lock().expect("lock");
            let r = if m.contains_key(node) {
                Err(NodePasswordError::Conflict(node.to_owned()))
            } else {
                m.insert(node.to_owned(), hash.to_owned());
                Ok(())
            };
            Box::pin(async move { r })
        }
    }

    fn state() -> (SupervisorState, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki::ensure(
            dir.path(),
            &ServingNames::for_apiserver("cluster.local", "10.43.0.1".parse().expect("ip"), &[]),
        )
        .expect("pki");
        (
            SupervisorState {
                token_password: "s3cret".into(),
                pki: Arc::new(pki),
                node_passwords: Arc::new(Memory::default()),
                agent_config: AgentConfig {
                    cluster_dns: "10.43.0.10".into(),
                    cluster_domain: "cluster.local".into(),
                    cluster_cidr: "10.42.0.0/16".into(),
                    service_cidr: "10.43.0.0/16".into(),
                },
            },
            dir,
        )
    }

    async fn call(
        app: &Router,
        path: &str,
        token: &str,
        node: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut req = http::Request::get(path).header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(format!("node:{token}"))),
        );
        if let Some((name, pw)) = node {
            req = req
                .header(NODE_NAME_HEADER, name)
                .header(NODE_PASSWORD_HEADER, pw)
                .header(NODE_IP_HEADER, "10.1.2.3");
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn password_hashes_verify() {
        let h = hash_node_password("pw");
        assert!(verify_node_password(&h, "pw"));
        assert!(!verify_node_password(&h, "other"));
        assert!(!verify_node_password("garbage", "pw"));
        assert_ne!(h, hash_node_password("pw"), "salted");
    }

    #[tokio::test]
    async fn certificates_need_the_token_and_the_node_password() {
        let (s, _dir) = state();
        let app = router(s);
        let (code, _) = call(&app, "/v1-k3s/client-ca.crt", "wrong", None).await;
        assert_eq!(code, 401);
        let (code, body) = call(&app, "/v1-k3s/server-ca.crt", "s3cret", None).await;
        assert_eq!(code, 200);
        assert!(body.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");

        let (code, body) = call(
            &app,
            "/v1-k3s/client-kubelet.crt",
            "s3cret",
            Some(("worker-1", "pw1")),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let info = pki::CertInfo::from_pem(&body).expect("cert");
        assert!(
            info.subject.contains("CN=system:node:worker-1"),
            "{}",
            info.subject
        );
        assert!(info.subject.contains("O=system:nodes"), "{}", info.subject);
        assert!(body.contains("PRIVATE KEY"));

        let (code, body) = call(
            &app,
            "/v1-k3s/serving-kubelet.crt",
            "s3cret",
            Some(("worker-1", "pw1")),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let info = pki::CertInfo::from_pem(&body).expect("cert");
        assert!(info.dns.iter().any(|d| d == "worker-1"), "{:?}", info.dns);
        assert!(info.ips.contains(&"10.1.2.3".parse().expect("ip")));

        // Another machine claiming the same name is refused.
        let (code, body) = call(
            &app,
            "/v1-k3s/client-kubelet.crt",
            "s3cret",
            Some(("worker-1", "pw2")),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("Node password rejected"), "{body}");
        // A wrong token never reaches the node-password check.
        let (code, _) = call(
            &app,
            "/v1-k3s/client-kubelet.crt",
            "nope",
            Some(("worker-9", "pw")),
        )
        .await;
        assert_eq!(code, 401);

        let (code, body) = call(&app, "/v1-k3s/client-kube-proxy.crt", "s3cret", None).await;
        assert_eq!(code, 200);
        let info = pki::CertInfo::from_pem(&body).expect("cert");
        assert!(
            info.subject.contains("CN=system:kube-proxy"),
            "{}",
            info.subject
        );

        let (code, body) = call(&app, "/v1-k3s/config", "s3cret", None).await;
        assert_eq!(code, 200);
        assert!(body.contains("\"clusterDNS\":\"10.43.0.10\""), "{body}");
    }

    #[tokio::test]
    async fn node_name_is_required_and_checked() {
        let (s, _dir) = state();
        let app = router(s);
        let (code, body) = call(&app, "/v1-k3s/client-kubelet.crt", "s3cret", None).await;
        assert_eq!(code, 400);
        assert!(body.contains(NODE_NAME_HEADER), "{body}");
        let (code, _) = call(
            &app,
            "/v1-k3s/client-kubelet.crt",
            "s3cret",
            Some(("Bad_Name", "pw")),
        )
        .await;
        assert_eq!(code, 400);
    }
}
