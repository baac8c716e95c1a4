//! The node agent's kubelet: containerd as a supervised child process, the CRI v1 client, images,
//! the Node object and its lease, pod lifecycle in real containers, and the kubelet HTTP API
//! (logs, exec, attach, port-forward) on a unix socket.
//!
//! The crate owns everything under the agent directory it is given (`<data-dir>/agent`): the
//! containerd configuration, root and state, CNI configuration and IPAM state, pod volumes and
//! container logs, and the kubelet socket. Nothing uses a fixed global path, so two nodes can run
//! on one machine in separate network namespaces.
//!
//! The tree ([`supervisor`]), started in order:
//! - `containerd`: writes containerd's config and runs it (or waits for an existing runtime);
//! - `images`: builds and imports the pause image, then imports `<agent_dir>/images/*.tar`;
//! - `node`: registers the Node, posts its status and renews its lease every 10 s, and writes the
//!   CNI configuration once the node has a pod CIDR;
//! - `pods`: one worker per pod bound to this node (sandbox, containers, probes, status, deletion);
//! - `server`: the kubelet HTTP API the API server proxies logs and streaming requests to.
//!
//! A clean shutdown stops containerd but never the pod containers: their shims keep running and the
//! next start adopts them.

mod containerd;
mod cri;
mod images;
mod logs;
mod node;
mod pods;
mod server;
mod tar;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kernel::{ChildSpec, Restart, Strategy, SupervisorSpec};
use sha2::{Digest, Sha256};

/// The kubelet's configuration; every path derives from `agent_dir`.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's InternalIP.
    pub node_ip: IpAddr,
    /// `<data-dir>/agent`: every file the kubelet and its containerd write lives under it.
    pub agent_dir: PathBuf,
    /// The cluster DNS service IP, the pods' nameserver.
    pub cluster_dns: IpAddr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// An existing containerd socket: then no containerd is started.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Labels the Node gets besides the standard ones (`--node-label`, and the control-plane
    /// roles on a server's node).
    pub node_labels: std::collections::BTreeMap<String, String>,
}

/// The unix socket the kubelet's HTTP API listens on (`<agent_dir>/kubelet.sock`).
pub fn socket_path(agent_dir: &Path) -> PathBuf {
    agent_dir.join("kubelet.sock")
}

/// A supervisor named "kubelet" with the children `containerd`, `images`, `node`, `pods` and
/// `server`, in that start order.
pub fn supervisor(client: kube::Client, config: KubeletConfig) -> SupervisorSpec {
    let shared = Arc::new(Shared::new(client, config));
    let s = shared.clone();
    let containerd = ChildSpec::service("containerd", "runtime", Restart::Permanent, move |ctx| {
        Box::pin(containerd::run(ctx, s.clone()))
    })
    .with_start_timeout(Some(Duration::from_secs(60)))
    .with_shutdown(Duration::from_secs(10));
    let s = shared.clone();
    let images = ChildSpec::service("images", "images", Restart::Permanent, move |ctx| {
        Box::pin(images::run(ctx, s.clone()))
    })
    .with_start_timeout(Some(Duration::from_secs(120)));
    let s = shared.clone();
    let node = ChildSpec::service("node", "node-status", Restart::Permanent, move |ctx| {
        Box::pin(node::run(ctx, s.clone()))
    });
    let s = shared.clone();
    let pods = ChildSpec::service("pods", "pod-workers", Restart::Permanent, move |ctx| {
        Box::pin(pods::run(ctx, s.clone()))
    });
    let s = shared;
    let server = ChildSpec::service("server", "kubelet-api", Restart::Permanent, move |ctx| {
        Box::pin(server::run(ctx, s.clone()))
    });
    SupervisorSpec::new("kubelet", Strategy::OneForOne)
        .intensity(10, Duration::from_secs(60))
        .child(containerd)
        .child(images)
        .child(node)
        .child(pods)
        .child(server)
}

/// What every child of the kubelet shares: the configuration, the derived paths and the API client.
pub(crate) struct Shared {
    pub config: KubeletConfig,
    pub paths: Paths,
    pub client: kube::Client,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(client: kube::Client, config: KubeletConfig) -> Self {
        let paths = Paths::new(&config);
        Self {
            config,
            paths,
            client,
        }
    }
}

/// Every path the kubelet uses, derived from the agent directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub agent_dir: PathBuf,
    /// containerd's root (content, snapshots, metadata).
    pub containerd_root: PathBuf,
    /// containerd's state directory.
    pub containerd_state: PathBuf,
    /// containerd's config file.
    pub containerd_config: PathBuf,
    /// The CRI socket this kubelet talks to.
    pub containerd_socket: PathBuf,
    /// Whether containerd is ours to run (no `container_runtime_endpoint` was given).
    pub run_containerd: bool,
    /// CNI network configuration directory.
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM state.
    pub cni_data_dir: PathBuf,
    /// Image tarballs imported at start and when they appear.
    pub images_dir: PathBuf,
    /// Per-pod directories (`<uid>/volumes`, `<uid>/logs`, `<uid>/etc-hosts`).
    pub pods_dir: PathBuf,
    /// The cgroup under which every pod of this node lives (cgroupfs syntax).
    pub cgroup_root: String,
}

/// Unix socket paths are limited to 108 bytes (with the NUL): beyond this, a short path is used.
const MAX_SOCKET_PATH: usize = 100;

impl Paths {
    fn new(config: &KubeletConfig) -> Self {
        let agent_dir = config.agent_dir.clone();
        let containerd_root = agent_dir.join("containerd");
        let hash = short_hash(&agent_dir);
        let (containerd_socket, run_containerd) = match &config.container_runtime_endpoint {
            Some(endpoint) => (endpoint.clone(), false),
            None => {
                let socket = containerd_root.join("containerd.sock");
                // `<socket>.ttrpc` must fit too.
                if socket.as_os_str().len() + 6 > MAX_SOCKET_PATH {
                    (
                        PathBuf::from("/run/k3s-rs")
                            .join(&hash)
                            .join("containerd.sock"),
                        true,
                    )
                } else {
                    (socket, true)
                }
            }
        };
        Self {
            containerd_state: containerd_root.join("state"),
            containerd_config: agent_dir.join("etc/containerd/config.toml"),
            containerd_root,
            containerd_socket,
            run_containerd,
            cni_conf_dir: agent_dir.join("etc/cni/net.d"),
            cni_data_dir: agent_dir.join("cni"),
            images_dir: agent_dir.join("images"),
            pods_dir: agent_dir.join("pods"),
            cgroup_root: format!("/k3s-rs-{hash}"),
            agent_dir,
        }
    }

    /// The CNI configuration file the node writes once it has a pod CIDR.
    pub fn cni_conflist(&self) -> PathBuf {
        self.cni_conf_dir.join("10-k3s-rs.conflist")
    }

    /// A pod's own directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir.join(uid)
    }

    /// The directory CRI writes a pod's container logs under.
    pub fn pod_log_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("logs")
    }
}

/// The first 12 hex digits of the SHA-256 of a path: names derived from the agent directory.
fn short_hash(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(agent_dir: &str) -> KubeletConfig {
        KubeletConfig {
            node_name: "n1".into(),
            node_ip: "10.0.0.1".parse().unwrap(),
            agent_dir: agent_dir.into(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            container_runtime_endpoint: None,
            node_labels: Default::default(),
        }
    }

    #[test]
    fn paths_derive_from_the_agent_dir() {
        let p = Paths::new(&config("/var/lib/rancher/k3s/agent"));
        assert_eq!(
            p.containerd_socket,
            PathBuf::from("/var/lib/rancher/k3s/agent/containerd/containerd.sock")
        );
        assert!(p.run_containerd);
        assert!(p.cgroup_root.starts_with("/k3s-rs-"));
        assert_eq!(
            socket_path(Path::new("/a/agent")),
            PathBuf::from("/a/agent/kubelet.sock")
        );
        let other = Paths::new(&config("/other/agent"));
        assert_ne!(p.cgroup_root, other.cgroup_root);
    }

    #[test]
    fn long_agent_dirs_get_a_short_socket() {
        let long = format!("/tmp/{}/agent", "x".repeat(100));
        let p = Paths::new(&config(&long));
        assert!(p.containerd_socket.starts_with("/run/k3s-rs"));
        assert!(p.containerd_socket.as_os_str().len() < MAX_SOCKET_PATH);
    }
}

#[cfg(test)]
mod e2e;
