//! End to end: service-account tokens against the real binary (`k3s server --disable-agent`):
//! `kubectl create token` (a protobuf TokenRequest), the token authenticating kubectl, curl and the
//! Python client without a client certificate, and tokens refused once invalid (garbage, wrong
//! audience, deleted service account or bound object).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// kubectl with a private discovery cache, either as the admin (the server's kubeconfig) or with
/// only a bearer token (no client certificate).
struct Kc<'a> {
    s: &'a Server,
    cache: tempfile::TempDir,
    token: Option<String>,
}

impl<'a> Kc<'a> {
    fn admin(s: &'a Server) -> Self {
        Kc {
            s,
            cache: tempfile::tempdir().unwrap(),
            token: None,
        }
    }

    fn with_token(s: &'a Server, token: &str) -> Self {
        Kc {
            token: Some(token.to_owned()),
            ..Kc::admin(s)
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("kubectl");
        c.arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=30s");
        match &self.token {
            None => {
                c.arg("--kubeconfig").arg(self.s.kubeconfig());
            }
            Some(t) => {
                let empty = self.cache.path().join("empty-kubeconfig");
                std::fs::write(&empty, "").unwrap();
                c.arg("--kubeconfig")
                    .arg(empty)
                    .arg(format!("--server=https://127.0.0.1:{}", self.s.port))
                    .arg("--certificate-authority")
                    .arg(ca_file(self.s))
                    .arg(format!("--token={t}"));
            }
        }
        c.args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed:\n{}{}\n--- server log tail:\n{}",
            stdout(&o),
            stderr(&o),
            tail(&self.s.logs())
        );
        stdout(&o)
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            stdout(&o)
        );
        stderr(&o)
    }
}

fn ca_file(s: &Server) -> PathBuf {
    s.data_dir().join("server/tls/server-ca.crt")
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `curl` with `Authorization: Bearer <token>` and no client certificate: (status, body).
fn curl_bearer(s: &Server, token: &str, path: &str) -> (u16, String) {
    let out_file = s.dir.path().join("curl.out");
    let o = Command::new("curl")
        .arg("-sS")
        .arg("--cacert")
        .arg(ca_file(s))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("-o")
        .arg(&out_file)
        .arg("-w")
        .arg("%{http_code}")
        .arg(format!("https://127.0.0.1:{}{path}", s.port))
        .output()
        .unwrap();
    let code = stdout(&o).trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&out_file).unwrap_or_default())
}

fn payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn service_account_tokens_authenticate_until_revoked() {
    let s = Server::start(&[]);
    let admin = Kc::admin(&s);
    // The controllers create each namespace's default ServiceAccount.
    assert!(
        eventually(Duration::from_secs(30), || admin
            .run(&["get", "sa", "default", "-n", "default"])
            .status
            .success()),
        "no default ServiceAccount:\n{}",
        tail(&s.logs())
    );
    let api = admin.ok(&["get", "--raw", "/api/v1"]);
    assert!(api.contains("\"serviceaccounts/token\""), "{api}");

    // kubectl 1.32 sends the TokenRequest as protobuf.
    let token = admin.ok(&["create", "token", "default", "-n", "default"]);
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let claims = payload(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local", "k3s"])
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let sa_uid = admin.ok(&[
        "get",
        "sa",
        "default",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], sa_uid);

    // The token authenticates kubectl, curl and the Python client, without a client certificate.
    let kc = Kc::with_token(&s, &token);
    let sas = kc.ok(&["get", "--raw", "/api/v1/namespaces/default/serviceaccounts"]);
    assert!(sas.contains("\"name\":\"default\""), "{sas}");
    assert!(kc.ok(&["get", "sa", "-n", "default"]).contains("default"));
    let who = kc.ok(&["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );
    let groups = who["status"]["userInfo"]["groups"].to_string();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.contains(&format!("\"{g}\"")), "{groups}");
    }
    let (code, body) = curl_bearer(&s, &token, "/api/v1/namespaces/default/serviceaccounts");
    assert_eq!(code, 200, "{body}");
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import sys, kubernetes
c = kubernetes.client.Configuration()
c.host = sys.argv[1]
c.ssl_ca_cert = sys.argv[2]
c.api_key = {"authorization": sys.argv[3]}
c.api_key_prefix = {"authorization": "Bearer"}
api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(c))
print(",".join(sa.metadata.name for sa in api.list_namespaced_service_account("default").items))
"#,
        )
        .arg(format!("https://127.0.0.1:{}", s.port))
        .arg(ca_file(&s))
        .arg(&token)
        .output()
        .unwrap();
    assert!(py.status.success(), "python: {}", stderr(&py));
    assert!(stdout(&py).contains("default"), "{}", stdout(&py));

    // A TokenReview says the same.
    let tr = s.dir.path().join("tokenreview.json");
    std::fs::write(
        &tr,
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}).to_string(),
    )
    .unwrap();
    let review = admin.ok(&[
        "create",
        "--raw",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "-f",
        path_str(&tr),
    ]);
    let review: serde_json::Value = serde_json::from_str(&review).unwrap();
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );

    // Anything else presented as a bearer token is a 401, not anonymous.
    let (code, body) = curl_bearer(&s, "garbage", "/api/v1/namespaces");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(curl_bearer(&s, &forged, "/api/v1/namespaces").0, 401);
    let err = Kc::with_token(&s, "garbage").fails(&["get", "ns"]);
    assert!(err.contains("You must be logged in to the server"), "{err}");
    let vault = admin.ok(&["create", "token", "default", "--audience", "vault"]);
    assert_eq!(curl_bearer(&s, vault.trim(), "/api/v1/namespaces").0, 401);

    // TokenRequest errors.
    let err = admin.fails(&["create", "token", "nosuch"]);
    assert!(
        err.contains("serviceaccounts \"nosuch\" not found"),
        "{err}"
    );
    let err = admin.fails(&["create", "token", "default", "--duration", "5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    // A token dies with its service account.
    admin.ok(&["create", "serviceaccount", "robot"]);
    let robot = admin.ok(&["create", "token", "robot", "--duration", "20m"]);
    let robot = robot.trim();
    assert_eq!(
        payload(robot)["exp"].as_i64().unwrap() - payload(robot)["iat"].as_i64().unwrap(),
        1200
    );
    assert_eq!(curl_bearer(&s, robot, "/api/v1/namespaces").0, 200);
    admin.ok(&["delete", "serviceaccount", "robot"]);
    assert_eq!(curl_bearer(&s, robot, "/api/v1/namespaces").0, 401);
    // ... and a recreated one (another uid) does not revive it.
    admin.ok(&["create", "serviceaccount", "robot"]);
    assert_eq!(curl_bearer(&s, robot, "/api/v1/namespaces").0, 401);

    // A bound token dies with the object it is bound to.
    admin.ok(&["create", "secret", "generic", "s1"]);
    let bound = admin.ok(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Secret",
        "--bound-object-name",
        "s1",
    ]);
    let bound = bound.trim();
    assert_eq!(payload(bound)["kubernetes.io"]["secret"]["name"], "s1");
    assert_eq!(curl_bearer(&s, bound, "/api/v1/namespaces").0, 200);
    admin.ok(&["delete", "secret", "s1"]);
    assert_eq!(curl_bearer(&s, bound, "/api/v1/namespaces").0, 401);

    // Issuer discovery.
    let oidc = admin.ok(&["get", "--raw", "/.well-known/openid-configuration"]);
    let oidc: serde_json::Value = serde_json::from_str(&oidc).unwrap();
    assert_eq!(
        oidc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    let jwks = admin.ok(&["get", "--raw", "/openid/v1/jwks"]);
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
}
