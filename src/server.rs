//! `k3s server`: prepare the data directory, certificates, token and kubeconfig, then start the
//! actor tree and run until SIGTERM/SIGINT.
//!
//! Everything that can be wrong with the machine or the flags (an unwritable data dir, a bad
//! CIDR combination, a token for another cluster) is found here, before any actor starts, and
//! reported with what is wrong.

use crate::cli::ServerArgs;
use crate::kubeconfig::Kubeconfig;
use ipnet::IpNet;
use kernel::{ChildSpec, Intensity, Kernel, Restart, Strategy, SupervisorSpec};
use pki::{CertAuthority, ClusterPki, ServingNames};
use protocols::token::Token;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long actors get to stop gracefully on SIGTERM before they are aborted.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A flag value that parsed but does not fit with the others.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file the server writes (token, kubeconfig) cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The token file or `--token` cannot be used.
    #[error("token: {0}")]
    Token(String),
    /// Certificate material is unusable.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The service-account signing key cannot be used.
    #[error(transparent)]
    ServiceAccountKey(#[from] apiserver::ServiceAccountKeyError),
    /// The TLS listener cannot be configured.
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
    /// The datastore failed while reading or writing the cluster identity.
    #[error("datastore: {0}")]
    Api(#[from] apiserver::ApiError),
    /// The datastore could not be opened.
    #[error("datastore: {0}")]
    Datastore(#[from] apiserver::OpenError),
    /// An actor could not be started.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
}

/// Settings resolved from the flags: defaults filled in and cross-checked.
#[derive(Debug)]
pub struct Resolved {
    /// The flags as given.
    pub args: ServerArgs,
    /// The node's name.
    pub node_name: String,
    /// The node's IP.
    pub node_ip: IpAddr,
    /// The first address of the service CIDR (the `kubernetes` Service).
    pub first_service_ip: IpAddr,
    /// Labels of this server's node: `--node-label` and the control-plane roles.
    pub node_labels: std::collections::BTreeMap<String, String>,
}

impl Resolved {
    /// Fill in defaults and check the flags against each other.
    pub fn new(args: ServerArgs) -> Result<Self, ServerError> {
        if args.cluster_cidr.contains(&args.service_cidr)
            || args.service_cidr.contains(&args.cluster_cidr)
        {
            return Err(ServerError::Config(format!(
                "--cluster-cidr {} and --service-cidr {} overlap",
                args.cluster_cidr, args.service_cidr
            )));
        }
        if !args.service_cidr.contains(&args.cluster_dns) {
            return Err(ServerError::Config(format!(
                "--cluster-dns {} is not inside --service-cidr {}",
                args.cluster_dns, args.service_cidr
            )));
        }
        let first_service_ip = nth_address(&args.service_cidr, 1).ok_or_else(|| {
            ServerError::Config(format!(
                "--service-cidr {} has no room for service IPs",
                args.service_cidr
            ))
        })?;
        if args.cluster_domain.is_empty()
            || !args.cluster_domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return Err(ServerError::Config(format!(
                "--cluster-domain '{}' is not a DNS domain",
                args.cluster_domain
            )));
        }
        let node_name = match &args.node_name {
            Some(n) => n.clone(),
            None => hostname().to_ascii_lowercase(),
        };
        if !is_dns_subdomain(&node_name) {
            return Err(ServerError::Config(format!(
                "node name '{node_name}' is not a valid DNS subdomain (lowercase letters, digits, '-' and '.'); set --node-name"
            )));
        }
        let mut node_labels =
            crate::node::parse_node_labels(&args.node_label).map_err(ServerError::Config)?;
        for role in ["control-plane", "master"] {
            node_labels.insert(format!("node-role.kubernetes.io/{role}"), "true".into());
        }
        let node_ip = args
            .node_ip
            .or(args.advertise_address)
            .unwrap_or_else(default_route_ip);
        Ok(Resolved {
            args,
            node_name,
            node_ip,
            first_service_ip,
            node_labels,
        })
    }

    /// `<data-dir>/server`.
    pub fn server_dir(&self) -> PathBuf {
        self.args.data_dir.join("server")
    }

    /// The URL local clients use.
    pub fn local_url(&self) -> String {
        let host = match self.args.bind_address {
            a if a.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        format!("https://{host}:{}", self.args.https_listen_port)
    }
}

/// Run the server until a signal or an unrecoverable actor failure.
pub async fn run(args: ServerArgs) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let cfg = Resolved::new(args)?;
    let server_dir = cfg.server_dir();
    ensure_dir(&cfg.args.data_dir)?;
    ensure_dir(&server_dir)?;

    let (given_token, password) = resolve_token(&cfg)?;
    let api_config = apiserver::ApiConfig {
        service_cidr: cfg.args.service_cidr,
        cluster_dns: cfg.args.cluster_dns,
        advertise: format!(
            "{}:{}",
            cfg.args.advertise_address.unwrap_or(cfg.node_ip),
            cfg.args.https_listen_port
        ),
        endpoint: (
            cfg.args.advertise_address.unwrap_or(cfg.node_ip),
            cfg.args.https_listen_port,
        ),
    };
    let endpoint = cfg.args.datastore_endpoint.clone().unwrap_or_default();
    let store_options = datastore::StoreOptions {
        tls: datastore::TlsFiles {
            ca_file: cfg.args.datastore_cafile.clone(),
            cert_file: cfg.args.datastore_certfile.clone(),
            key_file: cfg.args.datastore_keyfile.clone(),
        },
        ..Default::default()
    };
    let api =
        apiserver::ApiState::open_with(&endpoint, &cfg.args.data_dir, api_config, &store_options)
            .await?;

    let mut names = ServingNames::for_apiserver(
        &cfg.args.cluster_domain,
        cfg.first_service_ip,
        &cfg.args.tls_san,
    );
    names.add(&cfg.node_ip.to_string());
    if let Some(a) = cfg.args.advertise_address {
        names.add(&a.to_string());
    }
    names.add(&cfg.node_name);
    let tls_dir = server_dir.join("tls");
    let stored = join_cluster_identity(&api, &tls_dir, &password).await?;
    let pki = Arc::new(pki::ensure(&tls_dir, &names)?);
    for f in &pki.written {
        tracing::info!(file = %f.display(), "wrote certificate material");
    }
    if !stored {
        let sealed = pki::bootstrap::seal(&tls_dir, &password)
            .map_err(|e| ServerError::Token(e.to_string()))?;
        if !api
            .put_bootstrap_data(&pki::bootstrap::storage_key(&password), sealed)
            .await?
        {
            return Err(ServerError::Token(
                "another server stored the cluster identity at the same moment; start this server again to join it".into(),
            ));
        }
    }
    api.set_service_account_issuer(apiserver::ServiceAccountIssuer::new(
        &pki.service_account_key_pem,
        &cfg.args.cluster_domain,
    )?);
    let token = write_token(&cfg, &pki, given_token.as_ref(), &password)?;
    write_kubeconfig(&cfg, &pki)?;

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let tls = listener::server_config(
        &pki.serving.cert_pem,
        &pki.serving.key_pem,
        &pki.client_ca.cert_pem,
    )?;
    let kernel = Kernel::new();
    let state = listener::ListenerState {
        kernel: kernel.clone(),
        cacerts: pki.server_ca.cert_pem.clone().into(),
        metrics,
    };
    let api_router = apiserver::router(api.clone());
    // Agents join through the K3s supervisor endpoints and reach back through their tunnels.
    let tunnels = tunnel::Registry::new();
    api.set_kubelet_dialer(Arc::new(crate::node::KubeletDialer {
        local: (!cfg.args.disable_agent).then(|| {
            let socket = kubelet::socket_path(&cfg.args.data_dir.join("agent"));
            (cfg.node_name.clone(), socket)
        }),
        tunnels: tunnels.clone(),
    }));
    let supervisor = listener::supervisor::SupervisorState {
        token_password: password.as_str().into(),
        pki: pki.clone(),
        node_passwords: Arc::new(crate::join::SecretNodePasswords::new(&api_router)),
        agent_config: listener::supervisor::AgentConfig {
            cluster_dns: cfg.args.cluster_dns.to_string(),
            cluster_domain: cfg.args.cluster_domain.clone(),
            cluster_cidr: cfg.args.cluster_cidr.to_string(),
            service_cidr: cfg.args.service_cidr.to_string(),
        },
    };
    let front = crate::join::router(supervisor, tunnels.clone(), api_router.clone());
    let app = listener::router(state, front);
    let addr = SocketAddr::new(cfg.args.bind_address, cfg.args.https_listen_port);

    let pki_for_actor = pki.clone();
    let api_for_actor = api.clone();
    let mut tree = SupervisorSpec {
        name: "server".into(),
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: 5,
            within: Duration::from_secs(10),
        },
        children: vec![
            ChildSpec::actor(
                "pki",
                "certificate-authority",
                Restart::Permanent,
                move || CertAuthority::new(pki_for_actor.clone()),
            ),
            ChildSpec::service(
                "apiserver",
                "kube-apiserver",
                Restart::Permanent,
                move |ctx| {
                    let api = api_for_actor.clone();
                    Box::pin(async move { apiserver::run(api, ctx).await.map_err(Into::into) })
                },
            ),
            ChildSpec::service("listener", "https", Restart::Permanent, move |ctx| {
                let (tls, app) = (tls.clone(), app.clone());
                Box::pin(async move {
                    listener::serve(addr, tls, app, ctx)
                        .await
                        .map_err(Into::into)
                })
            }),
        ],
    };
    // The control loops, then the node agent: both need the API server, not the listener.
    tree.children.push(crate::node::controllers(
        &api_router,
        &cfg,
        &pki.server_ca.cert_pem,
    ));
    if !cfg.args.disable_agent {
        tree.children.push(crate::node::agent(&api_router, &cfg));
    }
    kernel.start(tree).await?;
    tracing::info!(
        node = %cfg.node_name,
        url = %cfg.local_url(),
        token_hash = token.ca_hash.as_deref().unwrap_or(""),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "k3s server is running"
    );

    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        e = kernel.failed() => Err(ServerError::Kernel(e)),
    };
    tracing::info!("stopping");
    tunnels.close_all();
    kernel.shutdown(SHUTDOWN_DEADLINE).await;
    api.close().await;
    outcome
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies on the default action.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub(crate) fn ensure_dir(path: &Path) -> Result<(), ServerError> {
    let err = |source| ServerError::DataDir {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    // Prove it is writable now rather than failing halfway through writing certificates.
    let probe = path.join(format!(".k3s-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// Read, or create, `<data-dir>/server/token` (and `node-token`), in K3s's secure format.
/// The token password: `--token`/`--token-file`, else the one this server was started with,
/// else a new random one. A `--token` that differs from the stored one is refused.
fn resolve_token(cfg: &Resolved) -> Result<(Option<Token>, String), ServerError> {
    let path = cfg.server_dir().join("token");
    let given = match (&cfg.args.token, &cfg.args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f).map_err(|e| {
            ServerError::Token(format!("cannot read --token-file {}: {e}", f.display()))
        })?),
        (None, None) => None,
    };
    let given = given
        .map(|t| {
            Token::parse(&t).map_err(|e| ServerError::Token(format!("--token is not usable: {e}")))
        })
        .transpose()?;
    let existing =
        match std::fs::read_to_string(&path) {
            Ok(s) => Some(Token::parse(&s).map_err(|e| {
                ServerError::Token(format!("{} is not usable: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ServerError::Token(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
    if let (Some(g), Some(e)) = (&given, &existing)
        && g.password != e.password
    {
        return Err(ServerError::Token(format!(
            "--token does not match the token this server was started with ({}); use the original token",
            path.display()
        )));
    }
    let password = given
        .clone()
        .or(existing)
        .map(|t| t.password)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    Ok((given, password))
}

/// Load the cluster's identity from the datastore when another server stored it (same token),
/// refuse a datastore that belongs to a cluster with another token. Returns whether it was there.
async fn join_cluster_identity(
    api: &apiserver::ApiState,
    tls_dir: &Path,
    password: &str,
) -> Result<bool, ServerError> {
    match api.bootstrap_data(&pki::bootstrap::storage_key(password)).await? {
        Some(sealed) => {
            let written = pki::bootstrap::restore(tls_dir, password, &sealed).map_err(|e| ServerError::Token(e.to_string()))?;
            if !written.is_empty() {
                tracing::info!(files = ?written, "joined the cluster: loaded its certificate authorities from the datastore");
            }
            Ok(true)
        }
        None if api.has_bootstrap_data().await? => Err(ServerError::Token(
            "the datastore belongs to a cluster created with a different token; start this server with that cluster's --token".into(),
        )),
        None => Ok(false),
    }
}

/// Write `<data-dir>/server/token` and `node-token` in the secure format.
fn write_token(
    cfg: &Resolved,
    pki: &ClusterPki,
    given: Option<&Token>,
    password: &str,
) -> Result<Token, ServerError> {
    let ca = pki.server_ca.cert_pem.as_bytes();
    if let Some(t) = given
        && !t.matches_ca(ca)
    {
        return Err(ServerError::Token(
            "--token pins a different cluster CA than this cluster's".into(),
        ));
    }
    let token = Token::server(ca, password);
    let text = format!("{token}\n");
    for name in ["token", "node-token"] {
        let p = cfg.server_dir().join(name);
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
            pki::certs::write_secret(&p, &text).map_err(|e| ServerError::Token(e.to_string()))?;
        }
    }
    Ok(token)
}

fn write_kubeconfig(cfg: &Resolved, pki: &ClusterPki) -> Result<(), ServerError> {
    let path = &cfg.args.write_kubeconfig;
    let kc = Kubeconfig::admin(
        &cfg.local_url(),
        &pki.server_ca.cert_pem,
        &pki.admin.cert_pem,
        &pki.admin.key_pem,
    );
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::Write {
            path: path.clone(),
            source,
        })?;
    }
    pki::certs::write_file(path, &kc.to_yaml(), cfg.args.write_kubeconfig_mode).map_err(|e| match e
    {
        pki::PkiError::Io { source, .. } => ServerError::Write {
            path: path.clone(),
            source,
        },
        other => ServerError::Pki(other),
    })
}

/// The `n`th address of a network (1 = the first after the network address).
pub fn nth_address(net: &IpNet, n: u32) -> Option<IpAddr> {
    match net {
        IpNet::V4(v4) => {
            let base = u32::from(v4.network());
            let addr = base.checked_add(n)?;
            v4.contains(&std::net::Ipv4Addr::from(addr))
                .then(|| IpAddr::from(std::net::Ipv4Addr::from(addr)))
        }
        IpNet::V6(v6) => {
            let base = u128::from(v6.network());
            let addr = std::net::Ipv6Addr::from(base.checked_add(u128::from(n))?);
            v6.contains(&addr).then_some(IpAddr::V6(addr))
        }
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
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

/// The address of the interface that holds the default route, else loopback.
///
/// Connecting a UDP socket only selects a route; no packet is sent.
pub(crate) fn default_route_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn resolve(extra: &[&str]) -> Result<Resolved, ServerError> {
        let mut argv = vec!["k3s", "server", "--node-name", "n1"];
        argv.extend(extra);
        let Command::Server(args) = Cli::try_parse_from(argv).expect("parse").command else {
            panic!("server")
        };
        Resolved::new(*args)
    }

    #[test]
    fn cidrs_are_cross_checked() {
        let e = resolve(&["--service-cidr", "10.42.0.0/24"])
            .expect_err("overlap")
            .to_string();
        assert!(e.contains("overlap"), "{e}");
        let e = resolve(&["--cluster-dns", "10.99.0.10"])
            .expect_err("dns outside")
            .to_string();
        assert!(e.contains("--cluster-dns"), "{e}");
        let r = resolve(&[]).expect("defaults");
        assert_eq!(r.first_service_ip.to_string(), "10.43.0.1");
    }

    #[test]
    fn node_names_must_be_dns_names() {
        let e = resolve(&["--node-name", "Bad_Name"])
            .expect_err("bad")
            .to_string();
        assert!(e.contains("Bad_Name"), "{e}");
    }

    #[test]
    fn nth_address_stays_in_the_network() {
        let net: IpNet = "10.43.0.0/30".parse().expect("net");
        assert_eq!(nth_address(&net, 1), Some("10.43.0.1".parse().expect("ip")));
        assert_eq!(nth_address(&net, 4), None);
    }
}
