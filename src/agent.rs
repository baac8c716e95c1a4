//! `k3s agent`: join a server as a worker node, as K3s does, then run the node's actors.
//!
//! The join, in order (nothing is started and no Node object appears before every step passed):
//! 1. fetch `/cacerts` without verifying the server and check its SHA-256 against the token's CA
//!    hash (`K10<hash>::…`); a mismatch is refused;
//! 2. from then on verify the server with that CA; load or create this node's password
//!    (`<data-dir>/agent/node-password`, mode 0600);
//! 3. fetch the kubelet client and serving certificates, the kube-proxy client certificate and
//!    the CA certificates with basic auth (`node:<token password>`) and the `k3s-Node-*` headers,
//!    and the cluster settings (`/v1-k3s/config`); write them under `<data-dir>/agent/` with
//!    `kubelet.kubeconfig` and `kubeproxy.kubeconfig`;
//! 4. start the actor tree "agent": the kubelet (containerd, images, node, pods, its API on a unix
//!    socket), kube-proxy, and the tunnel that lets the server reach the kubelet's socket.
//!
//! It runs until SIGTERM/SIGINT, like the server.

use crate::cli::AgentArgs;
use crate::kubeconfig::Kubeconfig;
use crate::node::{NodeConfig, agent_supervisor};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kernel::Kernel;
use listener::supervisor::{AgentConfig, NODE_IP_HEADER, NODE_NAME_HEADER, NODE_PASSWORD_HEADER};
use protocols::token::{Token, ca_hash};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long actors get to stop on SIGTERM.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
/// How long an unreachable server is retried before giving up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Why the agent could not join or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag is missing or unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The token cannot be read or parsed.
    #[error("token: {0}")]
    Token(String),
    /// The server did not answer.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server's CA is not the one the token pins.
    #[error(
        "the server's CA certificate (sha256 {actual}) does not match the CA hash in the token ({expected}): wrong --server, or a token of another cluster; refusing to join"
    )]
    CaMismatch {
        /// Hash in the token.
        expected: String,
        /// Hash of what the server sent.
        actual: String,
    },
    /// The server refused a join request.
    #[error("the server refused {what} ({code}): {message}")]
    Refused {
        /// What was asked for.
        what: String,
        /// HTTP status.
        code: u16,
        /// The server's explanation.
        message: String,
    },
    /// A file under the data directory cannot be written or read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// TLS material from the server is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The Kubernetes client cannot be built.
    #[error("kubernetes client: {0}")]
    Client(String),
    /// An actor failed.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
}

/// The agent's flags, resolved.
#[derive(Debug)]
struct Resolved {
    server: String,
    host: String,
    port: u16,
    token: Token,
    node_name: String,
    node_ip: IpAddr,
    agent_dir: PathBuf,
    node_labels: std::collections::BTreeMap<String, String>,
}

fn resolve(args: &AgentArgs) -> Result<Resolved, AgentError> {
    let server = args
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AgentError::Config("--server (K3S_URL) is required".into()))?;
    let server = server.trim_end_matches('/').to_owned();
    let (host, port) = tunnel::agent::host_port(&server).ok_or_else(|| {
        AgentError::Config(format!("--server '{server}' is not https://HOST[:PORT]"))
    })?;
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| {
            AgentError::Token(format!("cannot read --token-file {}: {e}", f.display()))
        })?,
        (None, None) => {
            return Err(AgentError::Config(
                "--token (K3S_TOKEN) or --token-file is required".into(),
            ));
        }
    };
    let token = Token::parse(&text).map_err(|e| AgentError::Token(e.to_string()))?;
    let node_name = args
        .node_name
        .clone()
        .unwrap_or_else(|| crate::server::hostname().to_ascii_lowercase());
    if !crate::server::is_dns_subdomain(&node_name) {
        return Err(AgentError::Config(format!(
            "node name '{node_name}' is not a valid DNS subdomain (lowercase letters, digits, '-' and '.'); set --node-name"
        )));
    }
    let node_ip = args
        .node_ip
        .or_else(|| route_to(&host, port))
        .unwrap_or_else(crate::server::default_route_ip);
    Ok(Resolved {
        server,
        host,
        port,
        token,
        node_name,
        node_ip,
        agent_dir: args.data_dir.join("agent"),
        node_labels: crate::node::parse_node_labels(&args.node_label)
            .map_err(AgentError::Config)?,
    })
}

/// The local address the kernel would use to reach the server.
fn route_to(host: &str, port: u16) -> Option<IpAddr> {
    let ip: IpAddr = host.parse().ok()?;
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect((ip, port)).ok()?;
    let local = s.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

/// Join the server and run until a signal or an unrecoverable actor failure.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let cfg = resolve(&args)?;

    // 1. The CA, pinned by the token.
    let cacerts = fetch_cacerts(&cfg).await?;
    if !cfg.token.matches_ca(&cacerts) {
        return Err(AgentError::CaMismatch {
            expected: cfg.token.ca_hash.clone().unwrap_or_default(),
            actual: ca_hash(&cacerts),
        });
    }
    let ca_pem = String::from_utf8(cacerts)
        .map_err(|_| AgentError::Tls("the server's /cacerts is not PEM text".into()))?;
    let verified = tls_config(&ca_pem, None)?;
    crate::server::ensure_dir(&cfg.agent_dir).map_err(|e| AgentError::File {
        path: cfg.agent_dir.clone(),
        reason: e.to_string(),
    })?;

    // 2-3. Node password and certificates.
    let password = node_password(&cfg.agent_dir)?;
    let auth = format!(
        "Basic {}",
        STANDARD.encode(format!("node:{}", cfg.token.password))
    );
    let headers = vec![
        ("authorization", auth),
        (NODE_NAME_HEADER, cfg.node_name.clone()),
        (NODE_PASSWORD_HEADER, password),
        (NODE_IP_HEADER, cfg.node_ip.to_string()),
    ];
    let get = |path: &'static str| {
        let (verified, headers) = (verified.clone(), headers.clone());
        let cfg = &cfg;
        async move { fetch(cfg, verified, path, &headers).await }
    };
    let kubelet_client = split_leaf(&get("/v1-k3s/client-kubelet.crt").await?)?;
    let kubelet_serving = split_leaf(&get("/v1-k3s/serving-kubelet.crt").await?)?;
    let proxy_client = split_leaf(&get("/v1-k3s/client-kube-proxy.crt").await?)?;
    let server_ca = String::from_utf8_lossy(&get("/v1-k3s/server-ca.crt").await?).into_owned();
    let client_ca = String::from_utf8_lossy(&get("/v1-k3s/client-ca.crt").await?).into_owned();
    let settings: AgentConfig = serde_json::from_slice(&get("/v1-k3s/config").await?)
        .map_err(|e| AgentError::Client(format!("/v1-k3s/config is not usable: {e}")))?;

    let dir = &cfg.agent_dir;
    write(dir, "server-ca.crt", &server_ca, 0o644)?;
    write(dir, "client-ca.crt", &client_ca, 0o644)?;
    for (stem, (cert, key)) in [
        ("client-kubelet", &kubelet_client),
        ("serving-kubelet", &kubelet_serving),
        ("client-kube-proxy", &proxy_client),
    ] {
        write(dir, &format!("{stem}.crt"), cert, 0o644)?;
        write(dir, &format!("{stem}.key"), key, 0o600)?;
    }
    let kubelet_kc = dir.join("kubelet.kubeconfig");
    let proxy_kc = dir.join("kubeproxy.kubeconfig");
    for (path, (cert, key)) in [(&kubelet_kc, &kubelet_client), (&proxy_kc, &proxy_client)] {
        let kc = Kubeconfig::admin(&cfg.server, &ca_pem, cert, key);
        pki::certs::write_file(path, &kc.to_yaml(), 0o600).map_err(|e| AgentError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    tracing::info!(node = %cfg.node_name, server = %cfg.server, "joined: certificates written");

    // 4. The node's actors.
    let kubelet = kube_client(&kubelet_kc).await?;
    let proxy = kube_client(&proxy_kc).await?;
    let parse = |what: &str, v: &str| {
        AgentError::Config(format!("the server's {what} '{v}' is not usable"))
    };
    let node = NodeConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        agent_dir: cfg.agent_dir.clone(),
        cluster_dns: settings
            .cluster_dns
            .parse()
            .map_err(|_| parse("clusterDNS", &settings.cluster_dns))?,
        cluster_domain: settings.cluster_domain.clone(),
        cluster_cidr: settings
            .cluster_cidr
            .parse()
            .map_err(|_| parse("clusterCIDR", &settings.cluster_cidr))?,
        container_runtime_endpoint: None,
        node_labels: cfg.node_labels.clone(),
    };
    let tunnel = tunnel::AgentTunnel {
        server: cfg.server.clone(),
        tls: tls_config(&ca_pem, Some(&kubelet_client))?,
        kubelet_socket: kubelet::socket_path(&cfg.agent_dir),
    };
    let kernel = Kernel::new();
    kernel
        .start(agent_supervisor(
            kubelet,
            proxy,
            &node,
            vec![tunnel.child()],
        ))
        .await?;
    tracing::info!(node = %cfg.node_name, ip = %cfg.node_ip, "k3s agent is running");
    let outcome = tokio::select! {
        () = crate::server::shutdown_signal() => Ok(()),
        e = kernel.failed() => Err(AgentError::Kernel(e)),
    };
    tracing::info!("stopping");
    kernel.shutdown(SHUTDOWN_DEADLINE).await;
    outcome
}

/// `/cacerts`, without verifying the server (the token's hash does that next).
async fn fetch_cacerts(cfg: &Resolved) -> Result<Vec<u8>, AgentError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    fetch(cfg, Arc::new(tls), "/cacerts", &[]).await
}

/// GET `path` from the server; non-200 answers are [`AgentError::Refused`].
async fn fetch(
    cfg: &Resolved,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, String)],
) -> Result<Vec<u8>, AgentError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let (code, body) = loop {
        match request(cfg, tls.clone(), path, headers).await {
            Ok(r) => break r,
            Err(AgentError::Unreachable { reason, .. })
                if tokio::time::Instant::now() < deadline && reason.contains("refused") =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if code != 200 {
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        let message = if code == 401 {
            format!("{message} (is the token right?)")
        } else {
            message
        };
        return Err(AgentError::Refused {
            what: path.to_owned(),
            code,
            message,
        });
    }
    Ok(body)
}

async fn request(
    cfg: &Resolved,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(u16, Vec<u8>), AgentError> {
    let unreachable = |reason: String| AgentError::Unreachable {
        url: cfg.server.clone(),
        reason,
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| unreachable("connection timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(cfg.host.clone()).map_err(|e| unreachable(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let authority = if cfg.host.contains(':') {
        format!("[{}]:{}", cfg.host, cfg.port)
    } else {
        format!("{}:{}", cfg.host, cfg.port)
    };
    let mut req = http::Request::get(path).header(http::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| unreachable(format!("GET {path} timed out")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes()
        .to_vec();
    Ok((code, body))
}

/// A TLS client config trusting `ca_pem`, presenting `identity` (certificate, key) if given.
fn tls_config(
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let bad = |e: &dyn std::fmt::Display| AgentError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&e))?
    .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Split the PEM a certificate endpoint returns into (certificates, private key).
fn split_leaf(body: &[u8]) -> Result<(String, String), AgentError> {
    let text = String::from_utf8_lossy(body);
    let key_start = text
        .find("PRIVATE KEY-----")
        .and_then(|end| text[..end].rfind("-----BEGIN"));
    let Some(at) = key_start else {
        return Err(AgentError::Tls(
            "a certificate answer from the server has no private key".into(),
        ));
    };
    let (cert, key) = text.split_at(at);
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(AgentError::Tls(
            "a certificate answer from the server has no certificate".into(),
        ));
    }
    Ok((cert.to_owned(), key.to_owned()))
}

/// This node's password: read from `<agent>/node-password`, or created there (0600).
fn node_password(agent_dir: &Path) -> Result<String, AgentError> {
    let path = agent_dir.join("node-password");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AgentError::File {
                path,
                reason: e.to_string(),
            });
        }
    }
    let password = hex::encode(rand::random::<[u8; 16]>());
    pki::certs::write_secret(&path, &format!("{password}\n")).map_err(|e| AgentError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(password)
}

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> Result<(), AgentError> {
    let path = dir.join(name);
    pki::certs::write_file(&path, contents, mode).map_err(|e| AgentError::File {
        path,
        reason: e.to_string(),
    })
}

/// A `kube::Client` from a kubeconfig file (HTTPS, the server verified with its CA).
async fn kube_client(path: &Path) -> Result<kube::Client, AgentError> {
    let err = |e: &dyn std::fmt::Display| AgentError::Client(format!("{}: {e}", path.display()));
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(&e))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(&e))?;
    kube::Client::try_from(config).map_err(|e| err(&e))
}

/// Accepts any server certificate: only for `/cacerts`, whose answer the token's hash checks.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_answers_split_into_certificate_and_key() {
        let body = b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n";
        let (c, k) = split_leaf(body).expect("split");
        assert!(c.starts_with("-----BEGIN CERTIFICATE-----") && !c.contains("PRIVATE"));
        assert!(k.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(split_leaf(b"-----BEGIN CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn node_password_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = node_password(dir.path()).expect("create");
        let b = node_password(dir.path()).expect("read");
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn server_and_token_are_required() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |argv: &[&str]| {
            let Command::Agent(a) = Cli::try_parse_from(argv).expect("parse").command else {
                panic!("agent")
            };
            a
        };
        let e = resolve(&parse(&["k3s", "agent", "--token", "x"])).expect_err("no server");
        assert!(e.to_string().contains("--server"), "{e}");
        let e =
            resolve(&parse(&["k3s", "agent", "--server", "https://h:1"])).expect_err("no token");
        assert!(e.to_string().contains("--token"), "{e}");
        let e = resolve(&parse(&[
            "k3s",
            "agent",
            "--server",
            "http://h:1",
            "--token",
            "x",
        ]))
        .expect_err("http");
        assert!(e.to_string().contains("https://"), "{e}");
        let r = resolve(&parse(&[
            "k3s",
            "agent",
            "--server",
            "https://127.0.0.1:6443/",
            "--token",
            "x",
            "--node-name",
            "w1",
            "--data-dir",
            "/tmp/d",
        ]))
        .expect("ok");
        assert_eq!((r.host.as_str(), r.port), ("127.0.0.1", 6443));
        assert_eq!(r.agent_dir, PathBuf::from("/tmp/d/agent"));
        assert_eq!(r.node_ip.to_string(), "127.0.0.1");
    }
}
