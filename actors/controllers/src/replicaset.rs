//! The ReplicaSet controller: a ReplicaSet's active Pods (not terminal, not being deleted,
//! controlled by it) number `spec.replicas`.
//!
//! Each reconcile lists the namespace's Pods live, adopts orphans its selector matches, releases
//! Pods it no longer selects, creates Pods from the template (generateName `<rs>-`, a controller
//! reference) or deletes the least valuable ones (unscheduled, pending, not ready, newest first),
//! and writes `status` from the Pods it saw.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use crate::runner::LoopCtx;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::error::Error;
use crate::events::Kind;
use crate::pods::{self, controlled_by, controller_of};
use crate::runner;
use crate::{Shared, selector};

type Ctx = runner::Workload;

/// The `replicaset` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "replicaset-controller");
    let stream = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    .run(
        reconcile,
        |rs, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&rs.metadata)),
        data,
    );
    runner::drive(ctx, "replicaset", stream).await
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&rs, &ctx).await?;
    ctx.backoff.succeeded(&runner::key(&rs.metadata));
    Ok(action)
}

/// What the reconcile of one ReplicaSet decided about its pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pods to create.
    pub create: usize,
    /// Names of pods to delete, in order.
    pub delete: Vec<String>,
}

/// Pods to create or delete so `active` becomes `replicas`; deletes the least valuable first.
pub fn plan(active: &[&Pod], replicas: i32) -> Plan {
    let want = usize::try_from(replicas.max(0)).unwrap_or(0);
    if active.len() < want {
        return Plan {
            create: want - active.len(),
            delete: Vec::new(),
        };
    }
    let mut ranked: Vec<&Pod> = active.to_vec();
    // Unassigned < assigned; Pending < Unknown < Running; not ready < ready; newer first.
    ranked.sort_by_key(|p| {
        (
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| !n.is_empty()),
            pods::phase_rank(p),
            pods::is_ready(p),
            Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            p.metadata.name.clone(),
        )
    });
    Plan {
        create: 0,
        delete: ranked
            .iter()
            .take(active.len() - want)
            .filter_map(|p| p.metadata.name.clone())
            .collect(),
    }
}

async fn sync(rs: &ReplicaSet, ctx: &Ctx) -> Result<Action, Error> {
    let (ns, name, uid) = crate::error::identity(&rs.metadata, "ReplicaSet")?;
    let spec = rs.spec.as_ref().ok_or(Error::Missing {
        kind: "ReplicaSet",
        field: "spec",
    })?;
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut all = pods_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?
        .items;

    // Adopt orphans we select; release pods we no longer select.
    let empty = Default::default();
    for pod in &mut all {
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let selected =
            !selector::is_empty(&spec.selector) && selector::matches(&spec.selector, labels);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        if selected && !deleting && controller_of(&pod.metadata).is_none() && pods::is_active(pod) {
            let mut owners = pod.metadata.owner_references.clone().unwrap_or_default();
            owners.push(pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
            let patch = json!({"metadata": {"ownerReferences": owners, "uid": pod.metadata.uid}});
            match pods_api
                .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(p) => *pod = p,
                Err(e) => tracing::debug!(pod = pod_name, error = %e, "adoption failed"),
            }
        } else if !selected
            && controlled_by(&pod.metadata, uid)
            && pod.metadata.deletion_timestamp.is_none()
        {
            let owners: Vec<_> = pod
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o.uid != uid)
                .collect();
            let patch = json!({"metadata": {"ownerReferences": owners, "uid": pod.metadata.uid}});
            match pods_api
                .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(p) => *pod = p,
                Err(e) => tracing::debug!(pod = pod_name, error = %e, "release failed"),
            }
        }
    }
    let owned: Vec<&Pod> = all
        .iter()
        .filter(|p| controlled_by(&p.metadata, uid))
        .collect();
    let active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();

    if !deleting {
        let replicas = spec.replicas.unwrap_or(1);
        let plan = plan(&active, replicas);
        if plan.create > 0 {
            create_pods(rs, ns, name, plan.create, &pods_api, ctx).await?;
        }
        for pod in &plan.delete {
            match pods_api.delete(pod, &Default::default()).await {
                Ok(_) => {
                    ctx.events
                        .emit(
                            rs,
                            Kind::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {pod}"),
                        )
                        .await;
                }
                Err(e) if crate::error::is_status(&e, 404) => {}
                Err(e) => return Err(Error::api(format!("delete pod {ns}/{pod}"))(e)),
            }
        }
    }

    // Status from the pods seen at the start of this sync, like upstream.
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let replicas = count(&|_| true);
    let fully_labeled = count(&|p| {
        selector::map_matches(
            &template_labels,
            p.metadata.labels.as_ref().unwrap_or(&empty),
        )
    });
    let ready = count(&|p| pods::is_ready(p));
    let available = count(&|p| pods::is_available(p, min_ready, now));
    let nonzero = |n: i32| if n > 0 { json!(n) } else { json!(null) };
    let status = rs.status.as_ref();
    let unchanged = status.is_some_and(|s| {
        s.replicas == replicas
            && s.fully_labeled_replicas.unwrap_or(0) == fully_labeled
            && s.ready_replicas.unwrap_or(0) == ready
            && s.available_replicas.unwrap_or(0) == available
            && s.observed_generation == rs.metadata.generation
    });
    if !unchanged {
        let patch = json!({"status": {
            "replicas": replicas,
            "fullyLabeledReplicas": nonzero(fully_labeled),
            "readyReplicas": nonzero(ready),
            "availableReplicas": nonzero(available),
            "observedGeneration": rs.metadata.generation,
        }});
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if crate::error::is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "update status of replicaset {ns}/{name}"
                ))(e));
            }
        }
    }
    let next = active
        .iter()
        .filter_map(|p| pods::seconds_until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs(u64::try_from(s).unwrap_or(1) + 1)),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// A pod from the ReplicaSet's template.
pub fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, Error> {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or(Error::Missing {
            kind: "ReplicaSet",
            field: "spec.template",
        })?;
    let meta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

async fn create_pods(
    rs: &ReplicaSet,
    ns: &str,
    name: &str,
    n: usize,
    api: &Api<Pod>,
    ctx: &Ctx,
) -> Result<(), Error> {
    let pod = pod_from_template(rs)?;
    // Slow start like upstream: batches of 1, 2, 4, ... stop at the first failure.
    let mut left = n;
    let mut batch = 1;
    while left > 0 {
        let size = batch.min(left);
        let pp = PostParams::default();
        let results = join_all((0..size).map(|_| api.create(&pp, &pod))).await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => {
                    let pod_name = p.metadata.name.unwrap_or_default();
                    ctx.events
                        .emit(
                            rs,
                            Kind::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {pod_name}"),
                        )
                        .await;
                }
                Err(e) => {
                    ctx.events
                        .emit(
                            rs,
                            Kind::Warning,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        )
                        .await;
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(Error::api(format!("create pod for replicaset {ns}/{name}"))(e));
        }
        left -= size;
        batch *= 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn deletes_least_valuable_first() {
        let a = pod("running-old", Some("n"), "Running", true, 100);
        let b = pod("running-new", Some("n"), "Running", true, 200);
        let c = pod("unscheduled", None, "Pending", false, 50);
        let d = pod("notready", Some("n"), "Running", false, 10);
        let active = [&a, &b, &c, &d];
        assert_eq!(
            plan(&active, 1).delete,
            ["unscheduled", "notready", "running-new"]
        );
        assert_eq!(
            plan(&active, 6),
            Plan {
                create: 2,
                delete: vec![]
            }
        );
        assert_eq!(plan(&active, 4), Plan::default());
    }
}
