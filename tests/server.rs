//! End to end: `k3s server` first slice — TLS front door, certificates, token, kubeconfig,
//! the actor tree and its controls, restarts, bad input, and graceful stop.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

#[test]
fn serves_ping_and_cacerts_over_tls_verified_with_cacerts() {
    let s = Server::start(&[]);
    // /cacerts needs no authentication and is the CA that verifies this very connection.
    let (code, cacerts) = s.get_anonymous("/cacerts").unwrap();
    assert_eq!(code, 200);
    assert_eq!(cacerts, s.server_ca());
    let (code, body) = https(s.port, &cacerts, None, "GET", "/ping").unwrap();
    assert_eq!((code, body.as_str()), (200, "pong"));
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(s.get_anonymous(p).unwrap(), (200, "ok".to_owned()), "{p}");
    }
    // A CA that is not the cluster's is refused by the client: the server cert is really signed by it.
    let other = Server::start(&[]).server_ca();
    assert!(https(s.port, &other, None, "GET", "/ping").is_err());
}

#[test]
fn writes_certificates_token_and_kubeconfig_like_k3s() {
    let s = Server::start(&["--tls-san", "k3s.example.com,10.11.12.13"]);
    let tls = s.data_dir().join("server/tls");
    use std::os::unix::fs::PermissionsExt;
    for name in [
        "server-ca",
        "client-ca",
        "request-header-ca",
        "serving-kube-apiserver",
        "client-admin",
    ] {
        assert!(tls.join(format!("{name}.crt")).is_file(), "{name}.crt");
        let mode = std::fs::metadata(tls.join(format!("{name}.key")))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}.key");
    }
    assert!(tls.join("service.key").is_file());
    let token = std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let hash = sha256_hex(s.server_ca().as_bytes());
    assert!(token.starts_with(&format!("K10{hash}::server:")), "{token}");
    let mode = std::fs::metadata(s.kubeconfig())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let kc = std::fs::read_to_string(s.kubeconfig()).unwrap();
    assert!(
        kc.contains(&format!("server: https://127.0.0.1:{}", s.port)),
        "{kc}"
    );
    assert_eq!(kubectl_context(&s), "default");
    // The serving certificate carries the K3s SANs plus --tls-san values.
    let pem = std::fs::read(tls.join("serving-kube-apiserver.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
            x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    for name in [
        "k3s.example.com",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "10.11.12.13",
        "10.43.0.1",
        "127.0.0.1",
    ] {
        assert!(san.iter().any(|n| n == name), "{name} not in {san:?}");
    }
}

fn kubectl_context(s: &Server) -> String {
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            path_str(&s.kubeconfig()),
            "config",
            "current-context",
        ])
        .output()
        .unwrap();
    stdout(&out).trim().to_owned()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn second_start_reuses_the_ca_and_token() {
    let mut s = Server::start(&[]);
    let token1 = std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let ca1 = s.server_ca();
    assert!(s.terminate().success());
    s.spawn(&[]);
    assert_eq!(s.server_ca(), ca1);
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("server/token")).unwrap(),
        token1
    );
    // A different --token for an existing server is refused, naming the problem.
    assert!(s.terminate().success());
    let empty = s.dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let out = std::process::Command::new("timeout")
        .args([
            "20",
            k3s_bin(),
            "server",
            "--disable-agent",
            "--token",
            "some-other-secret",
        ])
        .args([
            "--data-dir",
            path_str(&s.data_dir()),
            "--config",
            path_str(&empty),
        ])
        .args(["--https-listen-port", &free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(s.data_dir().join("server/token")).unwrap(),
        token1
    );
}

#[test]
fn actors_list_restart_stop_start_and_panic() {
    let s = Server::start(&[]);
    let kc = s.kubeconfig();
    let kc = path_str(&kc);
    let list = k3s(&["actors", "list", "--kubeconfig", kc]);
    assert!(list.status.success(), "{}", stderr(&list));
    let tree = stdout(&list);
    for row in ["server", "  pki", "  apiserver", "  listener"] {
        assert!(
            tree.lines().any(|l| l.starts_with(row)),
            "{row} missing:\n{tree}"
        );
    }

    let restarts = |s: &Server| -> u64 {
        let (code, body) = s.get("/debug/actors").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let node = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["path"] == "server/pki")
            .unwrap()
            .clone();
        node["restarts"].as_u64().unwrap()
    };
    let before = restarts(&s);
    let out = k3s(&["actors", "restart", "server/pki", "--kubeconfig", kc]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(restarts(&s), before + 1);
    assert_eq!(s.get("/ping").unwrap().0, 200, "server keeps answering");

    // An injected panic is contained, restarts the actor, and is reported as the last failure.
    let out = k3s(&["actors", "panic", "server/pki", "--kubeconfig", kc]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(eventually(Duration::from_secs(5), || restarts(&s) == before + 2));
    let json = k3s(&["actors", "list", "-o", "json", "--kubeconfig", kc]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let pki = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["path"] == "server/pki")
        .unwrap();
    assert!(
        pki["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("panic"),
        "{pki}"
    );
    assert_eq!(pki["status"], "running");
    assert_eq!(s.get("/ping").unwrap().0, 200);

    let out = k3s(&["actors", "stop", "server/pki", "--kubeconfig", kc]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stopped"), "{}", stdout(&out));
    let out = k3s(&["actors", "start", "server/pki", "--kubeconfig", kc]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("running"), "{}", stdout(&out));

    let out = k3s(&["actors", "restart", "server/nope", "--kubeconfig", kc]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("server/nope"), "{}", stderr(&out));
}

#[test]
fn introspection_and_metrics_need_credentials() {
    let s = Server::start(&[]);
    assert_eq!(s.get_anonymous("/debug/actors").unwrap().0, 401);
    assert_eq!(s.get_anonymous("/metrics").unwrap().0, 401);
    let (code, body) = s.get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("k3s_actor_up{path=\"server/listener\"} 1"),
        "{body}"
    );
    // The API refuses anonymous requests with a Kubernetes Status, and serves the admin.
    let (code, body) = s.get_anonymous("/api/v1/namespaces").unwrap();
    assert_eq!(code, 401);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["reason"].as_str()),
        (Some("Status"), Some("Unauthorized"))
    );
    let (code, body) = s.get("/api/v1/namespaces").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = s.get("/no/such/path").unwrap();
    assert_eq!(code, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reason"], "NotFound");
}

#[test]
fn sigterm_stops_cleanly_with_exit_zero() {
    let mut s = Server::start(&[]);
    let status = s.terminate();
    assert!(status.success(), "{status}\n{}", s.logs());
}

#[test]
fn bad_flags_config_and_data_dir_are_clear_errors() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["server", "--no-such-flag"], "--no-such-flag"),
        (
            vec!["server", "--cluster-cidr", "10.42.0.0/99"],
            "--cluster-cidr",
        ),
        (
            vec!["server", "--https-listen-port", "99999"],
            "--https-listen-port",
        ),
        (
            vec!["server", "--write-kubeconfig-mode", "0999"],
            "--write-kubeconfig-mode",
        ),
    ];
    for (args, needle) in cases {
        let out = k3s(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "disable-agent: true\nbogus-key: 1\n").unwrap();
    let out = k3s(&["server", "--config", path_str(&cfg)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown key 'bogus-key'") && stderr(&out).contains("config.yaml"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&cfg, "cluster-cidr: not-a-cidr\n").unwrap();
    let out = k3s(&["server", "--config", path_str(&cfg)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--cluster-cidr"), "{}", stderr(&out));

    // A data dir that cannot be created (a path under a regular file).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    std::fs::write(&cfg, "").unwrap();
    let data = file.join("data");
    let out = k3s(&[
        "server",
        "--config",
        path_str(&cfg),
        "--disable-agent",
        "--data-dir",
        path_str(&data),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("data directory") && stderr(&out).contains(path_str(&data)),
        "{}",
        stderr(&out)
    );

    let out = k3s(&[
        "server",
        "--config",
        path_str(&cfg),
        "--service-cidr",
        "10.42.0.0/24",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("overlap"), "{}", stderr(&out));
}

#[test]
fn config_file_values_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yaml");
    let data = dir.path().join("data");
    let kc = dir.path().join("kc.yaml");
    std::fs::write(
        &cfg,
        format!(
            "https-listen-port: {port}\ndata-dir: {}\nwrite-kubeconfig: {}\nwrite-kubeconfig-mode: \"0640\"\ndisable-agent: true\n",
            data.display(),
            kc.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(k3s_bin())
        .args(["server", "--config", path_str(&cfg)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(20), || {
        kc.exists()
            && std::fs::read_to_string(data.join("server/tls/server-ca.crt"))
                .ok()
                .and_then(|ca| https(port, &ca, None, "GET", "/ping").ok())
                .is_some_and(|(c, _)| c == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "server from config file did not come up on port {port}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn unfinished_subcommands_say_so() {
    // `k3s agent` is implemented: an unreachable server is a clear error, not a hang.
    let out = k3s(&["agent", "--server", "https://127.0.0.1:1", "--token", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the server at https://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    let out = k3s(&["token", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not yet supported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kubectl_subcommand_defaults_to_the_admin_kubeconfig() {
    let s = Server::start(&[]);
    let out = std::process::Command::new(k3s_bin())
        .args([
            "kubectl",
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .env("KUBECONFIG", s.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        format!("https://127.0.0.1:{}", s.port),
        "{}",
        stderr(&out)
    );
}
