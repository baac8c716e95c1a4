//! The server's in-process control loops and node agent: wiring only.
//!
//! The controllers (scheduler included) and, unless `--disable-agent`, the node agent (kubelet on
//! containerd, kube-proxy) run as supervisors in the server's actor tree. Each talks to the API
//! server through an in-process `kube::Client` ([`crate::inprocess`]) carrying its own identity,
//! exactly the requests a remote component would send over HTTPS. The API server reaches
//! kubelets (logs, exec, attach, port-forward) through [`KubeletDialer`]: this node's over its
//! unix socket, a joined agent's through its tunnel. `k3s agent` builds the same agent tree
//! ([`agent_supervisor`]) over HTTPS clients.

use crate::inprocess;
use crate::server::Resolved;
use futures::future::BoxFuture;
use kernel::{ChildSpec, Intensity, Restart, Strategy, SupervisorSpec};
use protocols::user::UserInfo;
use std::path::PathBuf;
use std::time::Duration;

/// The supervisor of the scheduler and the controllers, as the controller-manager's identity.
pub fn controllers(router: &axum::Router, cfg: &Resolved, root_ca_pem: &str) -> ChildSpec {
    let client = inprocess::client(
        router.clone(),
        UserInfo::authenticated("system:kube-controller-manager", []),
    );
    let config = controllers::ControllersConfig {
        cluster_cidr: cfg.args.cluster_cidr,
        node_cidr_mask: node_cidr_mask(&cfg.args.cluster_cidr),
        root_ca_pem: root_ca_pem.to_owned(),
    };
    ChildSpec::supervisor(controllers::supervisor(client, config))
}

/// What a node agent needs to know, in the server process or in `k3s agent`.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's InternalIP.
    pub node_ip: std::net::IpAddr,
    /// `<data-dir>/agent`.
    pub agent_dir: PathBuf,
    /// The cluster DNS service IP.
    pub cluster_dns: std::net::IpAddr,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The pod network.
    pub cluster_cidr: ipnet::IpNet,
    /// An existing containerd socket: then no containerd is started.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Extra Node labels.
    pub node_labels: std::collections::BTreeMap<String, String>,
}

/// The node agent's supervisor: the kubelet's tree, then kube-proxy, then `extra` children
/// (the agent tunnel in `k3s agent`).
pub fn agent_supervisor(
    kubelet_client: kube::Client,
    proxy_client: kube::Client,
    cfg: &NodeConfig,
    extra: Vec<ChildSpec>,
) -> SupervisorSpec {
    let kubelet_config = kubelet::KubeletConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        agent_dir: cfg.agent_dir.clone(),
        cluster_dns: cfg.cluster_dns,
        cluster_domain: cfg.cluster_domain.clone(),
        container_runtime_endpoint: cfg.container_runtime_endpoint.clone(),
        node_labels: cfg.node_labels.clone(),
    };
    let proxy_config = kubeproxy::ProxyConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        cluster_cidr: cfg.cluster_cidr,
    };
    let mut children = vec![
        ChildSpec::supervisor(kubelet::supervisor(kubelet_client, kubelet_config)),
        kubeproxy::child(proxy_client, proxy_config).with_restart(Restart::Permanent),
    ];
    children.extend(extra);
    SupervisorSpec {
        name: "agent".into(),
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        children,
    }
}

/// The server process's own node agent, over in-process clients as the node's identity.
pub fn agent(router: &axum::Router, cfg: &Resolved) -> ChildSpec {
    let node_user = UserInfo::authenticated(
        format!("system:node:{}", cfg.node_name),
        ["system:nodes".to_owned()],
    );
    let client = inprocess::client(router.clone(), node_user);
    ChildSpec::supervisor(agent_supervisor(
        client.clone(),
        client,
        &local_node(cfg),
        Vec::new(),
    ))
}

/// The server's own node, as a [`NodeConfig`].
pub fn local_node(cfg: &Resolved) -> NodeConfig {
    NodeConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        agent_dir: cfg.args.data_dir.join("agent"),
        cluster_dns: cfg.args.cluster_dns,
        cluster_domain: cfg.args.cluster_domain.clone(),
        cluster_cidr: cfg.args.cluster_cidr,
        container_runtime_endpoint: cfg.args.container_runtime_endpoint.clone(),
        node_labels: cfg.node_labels.clone(),
    }
}

/// `--node-label` values (`key=value`) as a map; a malformed one is an error naming it, with
/// upstream's reasons (the same checks the API server applies to labels).
pub fn parse_node_labels(
    list: &[String],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    use protocols::selector::{label_value_errors, qualified_name_errors};
    let mut labels = std::collections::BTreeMap::new();
    for item in list.iter().filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            format!("--node-label '{item}' is not a valid label: expected key=value")
        })?;
        let errors: Vec<String> = qualified_name_errors(key)
            .into_iter()
            .chain(label_value_errors(value))
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "--node-label '{item}' is not a valid label: {}",
                errors.join("; ")
            ));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

/// Each node's share of the cluster CIDR: /24 for IPv4 (as K3s), /64 for IPv6.
fn node_cidr_mask(cluster: &ipnet::IpNet) -> u8 {
    match cluster {
        ipnet::IpNet::V4(_) => 24,
        ipnet::IpNet::V6(_) => 64,
    }
}

/// Reaches kubelets: this process's own node over its unix socket, any other node through its
/// agent tunnel.
#[derive(Debug)]
pub struct KubeletDialer {
    /// This process's node and its kubelet socket, when it runs an agent.
    pub local: Option<(String, PathBuf)>,
    /// The connected agents.
    pub tunnels: tunnel::Registry,
}

impl apiserver::KubeletDialer for KubeletDialer {
    fn dial(
        &self,
        node: &str,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn apiserver::KubeletStream>>> {
        let local = self
            .local
            .as_ref()
            .filter(|(n, _)| n == node)
            .map(|(_, socket)| socket.clone());
        let tunnels = self.tunnels.clone();
        let node = node.to_owned();
        Box::pin(async move {
            if let Some(socket) = local {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                return Ok(Box::new(stream) as Box<dyn apiserver::KubeletStream>);
            }
            let stream = tunnels.dial(&node).await?;
            Ok(Box::new(stream) as Box<dyn apiserver::KubeletStream>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_node_labels;

    #[test]
    fn node_labels_are_key_value_pairs_with_kubernetes_syntax() {
        let ok = parse_node_labels(&[
            "tier=edge".into(),
            "example.com/zone=a-1".into(),
            "empty=".into(),
        ])
        .expect("valid labels");
        assert_eq!(ok["tier"], "edge");
        assert_eq!(ok["example.com/zone"], "a-1");
        assert_eq!(ok["empty"], "");
        for bad in ["novalue", "=x", "bad key=x", "k=has space", "k=-dash"] {
            let e = parse_node_labels(&[bad.into()]).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
