//! The scheduler and the kube-controller-manager's control loops, as kernel services.
//!
//! This crate owns the cluster's *convergence*: every loop here watches API objects and drives the
//! cluster toward what they declare, talking to the API server only through the `kube::Client` it
//! is given (an in-process client in the server). It owns no state of its own beyond caches that
//! are rebuilt from the API at start.
//!
//! Each loop is a child service of the `controllers` supervisor ([`supervisor`]) and is
//! level-triggered: `kube::runtime` watchers feed a work queue keyed by object (the runtime's
//! `Controller`: one reconcile per key at a time, the latest change held, not dropped), each
//! reconcile reads the live state it needs from the API (consistent reads, so a loop never acts on
//! a cache older than its own writes), and errors requeue the key with a per-key backoff.
//!
//! | child | module | what it converges |
//! |---|---|---|
//! | `scheduler` | [`scheduler`] | unbound Pods get a Node (filters, least-allocated score) |
//! | `deployment` | [`deployment`] | Deployments own ReplicaSets (rolling update, recreate, history) |
//! | `replicaset` | [`replicaset`] | ReplicaSets own their Pods |
//! | `endpoints` | [`endpoints`] | Services with a selector get Endpoints |
//! | `endpointslice` | [`endpoints`] | ... and EndpointSlices |
//! | `nodeipam` | [`nodeipam`] | Nodes get a pod CIDR |
//! | `namespace` | [`namespace`] | terminating Namespaces are emptied and finalized |
//! | `garbagecollector` | [`gc`] | dependents of deleted owners are deleted or orphaned |
//! | `serviceaccount` | [`serviceaccount`] | every Namespace has `default` and `kube-root-ca.crt` |

pub mod deployment;
pub mod endpoints;
mod error;
mod events;
pub mod gc;
pub mod namespace;
pub mod nodeipam;
mod pods;
pub mod quantity;
pub mod replicaset;
mod runner;
pub mod scheduler;
pub mod selector;
pub mod serviceaccount;

use std::sync::Arc;
use std::time::Duration;

use kernel::{ChildSpec, Restart, ServiceCtx, Strategy, SupervisorSpec};

pub use crate::error::Error;

/// What the controllers need to know about the cluster.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// The pod network (`--cluster-cidr`), cut into per-node ranges by `nodeipam`.
    pub cluster_cidr: ipnet::IpNet,
    /// The prefix length of each node's range (24 in K3s).
    pub node_cidr_mask: u8,
    /// The cluster CA in PEM, published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
}

/// What every loop is given.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub config: ControllersConfig,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish()
    }
}

type Run = fn(
    ServiceCtx,
    Arc<Shared>,
) -> futures::future::BoxFuture<'static, Result<(), kernel::BoxError>>;

fn child(name: &str, shared: &Arc<Shared>, run: Run) -> ChildSpec {
    let shared = shared.clone();
    ChildSpec::service(name, "controller", Restart::Permanent, move |ctx| {
        run(ctx, shared.clone())
    })
}

/// A supervisor named "controllers" with one child service per loop (`scheduler`, `deployment`,
/// `replicaset`, `endpoints`, `endpointslice`, `nodeipam`, `namespace`, `garbagecollector`,
/// `serviceaccount`), in that start order. The loops are independent: one-for-one restarts.
pub fn supervisor(client: kube::Client, config: ControllersConfig) -> SupervisorSpec {
    let shared = Arc::new(Shared { client, config });
    SupervisorSpec::new("controllers", Strategy::OneForOne)
        .intensity(20, Duration::from_secs(60))
        .child(child("scheduler", &shared, |c, s| {
            Box::pin(scheduler::run(c, s))
        }))
        .child(child("deployment", &shared, |c, s| {
            Box::pin(deployment::run(c, s))
        }))
        .child(child("replicaset", &shared, |c, s| {
            Box::pin(replicaset::run(c, s))
        }))
        .child(child("endpoints", &shared, |c, s| {
            Box::pin(endpoints::run_endpoints(c, s))
        }))
        .child(child("endpointslice", &shared, |c, s| {
            Box::pin(endpoints::run_endpointslices(c, s))
        }))
        .child(child("nodeipam", &shared, |c, s| {
            Box::pin(nodeipam::run(c, s))
        }))
        .child(child("namespace", &shared, |c, s| {
            Box::pin(namespace::run(c, s))
        }))
        .child(child("garbagecollector", &shared, |c, s| {
            Box::pin(gc::run(c, s))
        }))
        .child(child("serviceaccount", &shared, |c, s| {
            Box::pin(serviceaccount::run(c, s))
        }))
}
