//! The scheduler and the kube-controller-manager's control loops, as kernel services.
//!
//! This crate owns the cluster's *convergence*: every loop here watches API objects and drives the
//! cluster toward what they declare, talking to the API server only through the `kube::Client` it
//! is given (an in-process client in the server). It owns no state of its own beyond caches that
//! are rebuilt from the API at start.
//!
//! Only the leader runs the loops: with several servers on one datastore, each supervisor runs
//! leader electors ([`leader`]) over the Leases `kube-system/kube-controller-manager` (every
//! controller) and `kube-system/kube-scheduler` (the scheduler), and each loop's service waits
//! for its Lease, runs while it is held and is cancelled the moment it is lost.
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
//! | `job` | [`job`] | Jobs run pods to completion (indexed, backoff, deadline, TTL, suspend) |
//! | `cronjob` | [`cronjob`] | CronJobs create Jobs on their schedule ([`cron`]), keep history |
//! | `daemonset` | [`daemonset`] | DaemonSets have one pod per eligible Node (rolling update) |
//! | `statefulset` | [`statefulset`] | StatefulSets own `<sts>-<n>` pods and their claims, in order |
//! | `nodeipam` | [`nodeipam`] | Nodes get a pod CIDR |
//! | `nodelifecycle` | [`nodelifecycle`] | silent Nodes become Unknown and tainted; NoExecute evicts |
//! | `podgc` | [`podgc`] | pods of vanished Nodes and terminated pods beyond a threshold go |
//! | `namespace` | [`namespace`] | terminating Namespaces are emptied and finalized |
//! | `garbagecollector` | [`gc`] | dependents of deleted owners are deleted or orphaned |
//! | `serviceaccount` | [`serviceaccount`] | every Namespace has `default` and `kube-root-ca.crt` |

pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
mod error;
mod events;
pub mod gc;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
mod pods;
pub mod quantity;
pub mod replicaset;
mod runner;
pub mod scheduler;
pub mod selector;
pub mod serviceaccount;
pub mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use kernel::{ChildSpec, Restart, Strategy, SupervisorSpec};
use tokio::sync::watch;

pub use crate::error::Error;
pub use crate::leader::LeaderElection;
use crate::runner::LoopCtx;

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

/// Tunables with upstream's defaults ([`Options::default`]); [`supervisor`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leader election; `None` runs the loops unconditionally (a single server by construction).
    pub leader_election: Option<LeaderElection>,
    /// How long a Node's Lease may go unrenewed before its Ready condition becomes Unknown
    /// (`--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// Terminated pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`, 12500).
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs (20 s).
    pub pod_gc_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            leader_election: Some(LeaderElection::default()),
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            terminated_pod_gc_threshold: 12_500,
            pod_gc_period: podgc::DEFAULT_PERIOD,
        }
    }
}

/// The Lease a loop runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    ControllerManager,
    Scheduler,
}

/// What every loop is given.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub config: ControllersConfig,
    pub options: Options,
    controller_manager: watch::Sender<bool>,
    scheduler: watch::Sender<bool>,
}

impl Shared {
    fn leadership(&self, lease: Lease) -> &watch::Sender<bool> {
        match lease {
            Lease::ControllerManager => &self.controller_manager,
            Lease::Scheduler => &self.scheduler,
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish()
    }
}

type Run =
    fn(LoopCtx, Arc<Shared>) -> futures::future::BoxFuture<'static, Result<(), kernel::BoxError>>;

/// How long a cancelled loop may take to wind down before it is dropped.
const LOOP_STOP: Duration = Duration::from_secs(5);

/// A loop's service: ready at once; runs the loop while `lease` is held, cancels it when it is
/// lost, and waits for the lease again.
fn child(name: &'static str, lease: Lease, shared: &Arc<Shared>, run: Run) -> ChildSpec {
    let shared = shared.clone();
    ChildSpec::service(name, "controller", Restart::Permanent, move |ctx| {
        let shared = shared.clone();
        Box::pin(async move {
            ctx.ready();
            let mut leader = shared.leadership(lease).subscribe();
            loop {
                tokio::select! {
                    () = ctx.cancelled() => return Ok(()),
                    ok = async { leader.wait_for(|l| *l).await.is_ok() } => if !ok { return Ok(()) },
                }
                let token = ctx.token().child_token();
                let fut = run(LoopCtx::new(token.clone()), shared.clone());
                tokio::pin!(fut);
                tracing::debug!(controller = name, "leading: loop started");
                tokio::select! {
                    r = &mut fut => {
                        r?;
                        if ctx.token().is_cancelled() {
                            return Ok(());
                        }
                    }
                    _ = async { leader.wait_for(|l| !*l).await.is_ok() } => {
                        token.cancel();
                        let _ = tokio::time::timeout(LOOP_STOP, &mut fut).await;
                        tracing::info!(controller = name, "leadership lost: loop stopped");
                    }
                    () = ctx.cancelled() => {
                        token.cancel();
                        let _ = tokio::time::timeout(LOOP_STOP, &mut fut).await;
                        return Ok(());
                    }
                }
            }
        })
    })
}

/// The service electing the leader of `lease`; with election off it just declares leadership.
fn elector(name: &'static str, lease: Lease, shared: &Arc<Shared>) -> ChildSpec {
    let shared = shared.clone();
    ChildSpec::service(name, "leader-election", Restart::Permanent, move |ctx| {
        let shared = shared.clone();
        Box::pin(async move {
            let tx = shared.leadership(lease).clone();
            ctx.ready();
            match shared.options.leader_election.clone() {
                None => {
                    tx.send_replace(true);
                    ctx.cancelled().await;
                    tx.send_replace(false);
                }
                Some(config) => {
                    let lease_name = match lease {
                        Lease::ControllerManager => "kube-controller-manager",
                        Lease::Scheduler => "kube-scheduler",
                    };
                    leader::Elector::new(shared.client.clone(), lease_name, config, tx)
                        .run(LoopCtx::new(ctx.token()))
                        .await;
                }
            }
            Ok(())
        })
    })
}

/// [`supervisor_with`] and the default [`Options`].
pub fn supervisor(client: kube::Client, config: ControllersConfig) -> SupervisorSpec {
    supervisor_with(client, config, Options::default())
}

/// A supervisor named "controllers": the electors `leader-controller-manager` and
/// `leader-scheduler` first (stopped last, so the Leases are released after the loops stopped),
/// then one child service per loop (`scheduler`, `deployment`, `replicaset`, `endpoints`,
/// `endpointslice`, `job`, `cronjob`, `daemonset`, `statefulset`, `nodeipam`, `nodelifecycle`, `podgc`, `namespace`, `garbagecollector`, `serviceaccount`). The loops
/// are independent: one-for-one restarts.
pub fn supervisor_with(
    client: kube::Client,
    config: ControllersConfig,
    options: Options,
) -> SupervisorSpec {
    let shared = Arc::new(Shared {
        client,
        config,
        options,
        controller_manager: watch::Sender::new(false),
        scheduler: watch::Sender::new(false),
    });
    let cm = Lease::ControllerManager;
    SupervisorSpec::new("controllers", Strategy::OneForOne)
        .intensity(20, Duration::from_secs(60))
        .child(elector("leader-controller-manager", cm, &shared))
        .child(elector("leader-scheduler", Lease::Scheduler, &shared))
        .child(child("scheduler", Lease::Scheduler, &shared, |c, s| {
            Box::pin(scheduler::run(c, s))
        }))
        .child(child("deployment", cm, &shared, |c, s| {
            Box::pin(deployment::run(c, s))
        }))
        .child(child("replicaset", cm, &shared, |c, s| {
            Box::pin(replicaset::run(c, s))
        }))
        .child(child("endpoints", cm, &shared, |c, s| {
            Box::pin(endpoints::run_endpoints(c, s))
        }))
        .child(child("endpointslice", cm, &shared, |c, s| {
            Box::pin(endpoints::run_endpointslices(c, s))
        }))
        .child(child("job", cm, &shared, |c, s| Box::pin(job::run(c, s))))
        .child(child("cronjob", cm, &shared, |c, s| {
            Box::pin(cronjob::run(c, s))
        }))
        .child(child("daemonset", cm, &shared, |c, s| {
            Box::pin(daemonset::run(c, s))
        }))
        .child(child("statefulset", cm, &shared, |c, s| {
            Box::pin(statefulset::run(c, s))
        }))
        .child(child("nodeipam", cm, &shared, |c, s| {
            Box::pin(nodeipam::run(c, s))
        }))
        .child(child("nodelifecycle", cm, &shared, |c, s| {
            Box::pin(nodelifecycle::run(c, s))
        }))
        .child(child("podgc", cm, &shared, |c, s| {
            Box::pin(podgc::run(c, s))
        }))
        .child(child("namespace", cm, &shared, |c, s| {
            Box::pin(namespace::run(c, s))
        }))
        .child(child("garbagecollector", cm, &shared, |c, s| {
            Box::pin(gc::run(c, s))
        }))
        .child(child("serviceaccount", cm, &shared, |c, s| {
            Box::pin(serviceaccount::run(c, s))
        }))
}
