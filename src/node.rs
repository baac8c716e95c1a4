//! The server's in-process control loops and node agent: wiring only.
//!
//! The controllers (scheduler included) and, unless `--disable-agent`, the node agent (kubelet on
//! containerd, kube-proxy) run as supervisors in the server's actor tree. Each talks to the API
//! server through an in-process `kube::Client` ([`crate::inprocess`]) carrying its own identity,
//! exactly the requests a remote component would send over HTTPS. The API server reaches this
//! node's kubelet (logs, exec, attach, port-forward) through [`LocalKubelet`], a dialer for the
//! kubelet's unix socket.

use crate::inprocess;
use crate::server::Resolved;
use futures::future::BoxFuture;
use kernel::{ChildSpec, Intensity, Restart, Strategy, SupervisorSpec};
use protocols::user::UserInfo;
use std::path::PathBuf;
use std::sync::Arc;
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

/// The node agent's supervisor: the kubelet's tree, then kube-proxy. The kubelet's API socket is
/// registered with the API server so that logs, exec and port-forward reach it.
pub fn agent(router: &axum::Router, api: &apiserver::ApiState, cfg: &Resolved) -> ChildSpec {
    let agent_dir = cfg.args.data_dir.join("agent");
    let node_user = UserInfo::authenticated(
        format!("system:node:{}", cfg.node_name),
        ["system:nodes".to_owned()],
    );
    let client = inprocess::client(router.clone(), node_user);
    api.set_kubelet_dialer(Arc::new(LocalKubelet {
        node: cfg.node_name.clone(),
        socket: kubelet::socket_path(&agent_dir),
    }));
    let kubelet_config = kubelet::KubeletConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        agent_dir,
        cluster_dns: cfg.args.cluster_dns,
        cluster_domain: cfg.args.cluster_domain.clone(),
        container_runtime_endpoint: cfg.args.container_runtime_endpoint.clone(),
    };
    let proxy_config = kubeproxy::ProxyConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        cluster_cidr: cfg.args.cluster_cidr,
    };
    ChildSpec::supervisor(SupervisorSpec {
        name: "agent".into(),
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        children: vec![
            ChildSpec::supervisor(kubelet::supervisor(client.clone(), kubelet_config)),
            kubeproxy::child(client, proxy_config).with_restart(Restart::Permanent),
        ],
    })
}

/// Each node's share of the cluster CIDR: /24 for IPv4 (as K3s), /64 for IPv6.
fn node_cidr_mask(cluster: &ipnet::IpNet) -> u8 {
    match cluster {
        ipnet::IpNet::V4(_) => 24,
        ipnet::IpNet::V6(_) => 64,
    }
}

/// Reaches the kubelet of this process's own node over its unix socket.
#[derive(Debug)]
struct LocalKubelet {
    node: String,
    socket: PathBuf,
}

impl apiserver::KubeletDialer for LocalKubelet {
    fn dial(
        &self,
        node: &str,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn apiserver::KubeletStream>>> {
        let socket = self.socket.clone();
        let known = node == self.node;
        let node = node.to_owned();
        Box::pin(async move {
            if !known {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("node {node} is not connected to this server"),
                ));
            }
            let stream = tokio::net::UnixStream::connect(&socket).await?;
            Ok(Box::new(stream) as Box<dyn apiserver::KubeletStream>)
        })
    }
}
