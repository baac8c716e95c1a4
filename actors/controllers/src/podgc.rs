//! The pod garbage collector: deletes pods nobody else will.
//!
//! Every `pod_gc_period` (20 s upstream) it lists the Pods and Nodes and force-deletes (grace 0)
//! pods bound to a Node that no longer exists (confirmed by a live GET, so a Node created since
//! the list is not mistaken for a missing one), terminating pods that were never scheduled (no
//! kubelet will finish them), and, when more than `terminated_pod_gc_threshold` pods have
//! terminated (Succeeded or Failed), the oldest of them down to the threshold. It also drops the
//! Job tracking finalizer from pods whose Job is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};

use crate::Shared;
use crate::error::{Error, is_status};
use crate::pods;
use crate::runner::LoopCtx;

/// The `podgc` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let mut tick = tokio::time::interval(shared.options.pod_gc_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancelled = ctx.cancelled();
    tokio::pin!(cancelled);
    ctx.ready();
    loop {
        tokio::select! {
            () = &mut cancelled => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&shared.client, shared.options.terminated_pod_gc_threshold).await {
            tracing::debug!(error = %e, "pod gc pass failed");
        }
    }
}

/// The terminated pods to delete so at most `threshold` remain: the oldest first.
pub fn excess_terminated(all: &[Pod], threshold: usize) -> Vec<&Pod> {
    let mut terminated: Vec<&Pod> = all
        .iter()
        .filter(|p| pods::is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
    let n = terminated.len() - threshold;
    terminated.truncate(n);
    terminated
}

async fn force_delete(client: &kube::Client, pod: &Pod, why: &str) {
    let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
        return;
    };
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(client.clone(), ns)
        .delete(name, &dp)
        .await
    {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), why, "pod garbage collected"),
        Err(e) if is_status(&e, 404) => {}
        Err(e) => tracing::debug!(pod = name, error = %e, "pod gc delete failed"),
    }
}

async fn pass(client: &kube::Client, threshold: usize) -> Result<(), Error> {
    let all = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list pods"))?
        .items;
    for pod in excess_terminated(&all, threshold) {
        force_delete(client, pod, "terminated pods above the threshold").await;
    }
    release_orphaned_job_pods(client, &all).await;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes: HashSet<String> = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list nodes"))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let mut missing: HashSet<String> = HashSet::new();
    for pod in &all {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        if node.is_empty() {
            if pod.metadata.deletion_timestamp.is_some() {
                force_delete(client, pod, "terminating and never scheduled").await;
            }
            continue;
        }
        if nodes.contains(node) {
            continue;
        }
        if !missing.contains(node) {
            match nodes_api.get_opt(node).await {
                Ok(None) => {
                    missing.insert(node.to_owned());
                }
                Ok(Some(_)) => continue,
                Err(e) => return Err(Error::api(format!("get node {node}"))(e)),
            }
        }
        force_delete(client, pod, "bound to a node that no longer exists").await;
    }
    Ok(())
}

/// Drops the Job tracking finalizer from pods whose Job is gone (deleted in the background before
/// the Job controller could count them), so they can be deleted.
async fn release_orphaned_job_pods(client: &kube::Client, all: &[Pod]) {
    for pod in all {
        let tracked = pod
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == crate::job::TRACKING_FINALIZER));
        if !tracked {
            continue;
        }
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let owner = pods::controller_of(&pod.metadata).filter(|o| o.kind == "Job");
        let alive = match owner {
            None => false,
            Some(o) => {
                match Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), ns)
                    .get_opt(&o.name)
                    .await
                {
                    Ok(Some(j)) => j.metadata.uid.as_deref() == Some(o.uid.as_str()),
                    Ok(None) => false,
                    Err(_) => true,
                }
            }
        };
        if alive {
            continue;
        }
        let rest: Vec<&String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != crate::job::TRACKING_FINALIZER)
            .collect();
        let patch = serde_json::json!({"metadata": {"finalizers": rest, "uid": pod.metadata.uid}});
        if let Err(e) = Api::<Pod>::namespaced(client.clone(), ns)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(pod = name, error = %e, "job tracking finalizer not removed");
        }
    }
}

/// Upstream's period between passes.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn pod(name: &str, phase: &str, created: i64) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"containers": []},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn oldest_terminated_beyond_threshold() {
        let all = [
            pod("new-done", "Succeeded", 300),
            pod("running", "Running", 1),
            pod("old-failed", "Failed", 100),
            pod("mid-done", "Succeeded", 200),
        ];
        let names = |v: Vec<&Pod>| -> Vec<String> {
            v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(
            names(excess_terminated(&all, 1)),
            ["old-failed", "mid-done"]
        );
        assert!(excess_terminated(&all, 3).is_empty());
        assert_eq!(names(excess_terminated(&all, 0)).len(), 3);
    }
}
