//! kube-proxy in iptables mode: Services and their ready endpoints become nat rules.
//!
//! The crate owns the node's service rules: the `KUBE-*` chains of the nat and filter tables
//! and the jumps into them from the built-in chains, plus `net.ipv4.ip_forward=1` and the
//! FORWARD accept for the cluster CIDR (as K3s sets up). It watches Services and
//! `discovery.k8s.io/v1` EndpointSlices, renders the whole ruleset after changes settle
//! ([`render`]) and applies it atomically with `iptables-restore --noflush` ([`iptables`]).
//! On shutdown it removes everything it added.
//!
//! Layout: [`model`] joins Services with ready endpoints (pure), [`render`] writes the
//! `iptables-restore` text (pure), [`iptables`] runs the tools, and the service loop in
//! `proxier` ties them to the watches.

pub mod iptables;
pub mod model;
mod proxier;
pub mod render;

pub use iptables::{Iptables, IptablesError};
pub use proxier::{ProxyError, run};

use kernel::{ChildSpec, Restart, ServiceCtx};

/// What kube-proxy needs to know about its node.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's primary address.
    pub node_ip: std::net::IpAddr,
    /// `--cluster-cidr`: pod addresses (accepted in FORWARD).
    pub cluster_cidr: ipnet::IpNet,
}

/// A kernel service child named "kube-proxy".
pub fn child(client: kube::Client, config: ProxyConfig) -> ChildSpec {
    ChildSpec::service(
        "kube-proxy",
        "kube-proxy",
        Restart::Permanent,
        move |ctx: ServiceCtx| {
            let (client, config) = (client.clone(), config.clone());
            Box::pin(async move {
                let ready_ctx = &ctx;
                proxier::run(
                    client,
                    config,
                    Iptables::host(),
                    || ready_ctx.ready(),
                    ctx.cancelled(),
                )
                .await
                .map_err(Into::into)
            })
        },
    )
}
