//! The DaemonSet controller: one pod per eligible Node.
//!
//! A Node is eligible when a pod from the template (with the tolerations upstream adds to every
//! daemon pod: not-ready/unreachable NoExecute, disk/memory/pid pressure and unschedulable
//! NoSchedule, network-unavailable for hostNetwork pods) matches its nodeSelector and required
//! node affinity and tolerates its NoSchedule/NoExecute taints. Like upstream the pods are not
//! bound here: each is created with a required node affinity term `matchFields metadata.name In
//! [<node>]` and left to the scheduler. Pods carry `controller-revision-hash`, the template's hash;
//! RollingUpdate deletes pods of older hashes node by node, at most `maxUnavailable` (default 1)
//! nodes without an available pod at a time (unavailable old pods go first); OnDelete only
//! replaces pods someone deleted. Failed pods are deleted and replaced; pods on Nodes no longer
//! eligible are deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};

use crate::Shared;
use crate::deployment::{scaled_value, template_hash};
use crate::error::{Error, is_status};
use crate::events::Kind;
use crate::pods::{self, controlled_by};
use crate::runner::{self, LoopCtx};
use crate::scheduler::{affinity_matches, untolerated_taint};

/// The label with the template hash on a DaemonSet's (and StatefulSet's) pods.
pub const REVISION_HASH: &str = "controller-revision-hash";

type Ctx = runner::Workload;

/// The `daemonset` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "daemonset-controller");
    let node_changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .filter_map(|r| async move { r.ok().map(|_| ()) });
    let stream = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    .reconcile_all_on(node_changes)
    .run(
        reconcile,
        |d, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&d.metadata)),
        data,
    );
    runner::drive(ctx, "daemonset", stream).await
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&ds, &ctx).await?;
    ctx.backoff.succeeded(&runner::key(&ds.metadata));
    Ok(action)
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some(effect.to_owned()),
        ..Toleration::default()
    }
}

/// The template's pod spec with upstream's daemon tolerations added.
pub fn with_daemon_tolerations(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        wanted.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    for w in wanted {
        if !tolerations
            .iter()
            .any(|t| t.key == w.key && t.effect == w.effect)
        {
            tolerations.push(w);
        }
    }
    t
}

/// Whether a daemon pod from `template` should run on `node`.
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    let t = with_daemon_tolerations(template);
    let pod = Pod {
        metadata: ObjectMeta::default(),
        spec: t.spec,
        status: None,
    };
    affinity_matches(&pod, node) && untolerated_taint(&pod, node).is_none()
}

/// The daemon pod for `node`.
pub fn pod_for(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: &str) -> Pod {
    let t = with_daemon_tolerations(template);
    let meta = t.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.to_owned());
    let mut spec = t.spec.unwrap_or_default();
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "DaemonSet",
                &ds.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The node a daemon pod is for: its nodeName, or its matchFields metadata.name target.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH)
        .map(String::as_str)
}

async fn delete(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let Some(name) = pod.metadata.name.as_deref() else {
        return Ok(());
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::api(format!("delete pod {name}"))(e)),
    }
}

async fn sync(ds: &DaemonSet, ctx: &Ctx) -> Result<Action, Error> {
    let (ns, name, uid) = crate::error::identity(&ds.metadata, "DaemonSet")?;
    let spec = ds.spec.as_ref().ok_or(Error::Missing {
        kind: "DaemonSet",
        field: "spec",
    })?;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let hash = template_hash(
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    );
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list nodes"))?
        .items;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, uid) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for p in &pods {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let eligible: BTreeMap<String, bool> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, should_run(&spec.template, n))))
        .collect();

    let mut create: Vec<String> = Vec::new();
    let mut remove: Vec<&Pod> = Vec::new();
    // Per node: (has pod, its pod is new, available).
    let mut state: BTreeMap<String, (bool, bool, bool)> = BTreeMap::new();
    for (node, ok) in &eligible {
        let mut here: Vec<&Pod> = by_node.get(node).cloned().unwrap_or_default();
        here.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if !ok {
            remove.extend(here);
            continue;
        }
        // Failed pods are replaced.
        let (failed, mut live): (Vec<&Pod>, Vec<&Pod>) = here
            .into_iter()
            .partition(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
        remove.extend(failed);
        if live.is_empty() {
            create.push(node.clone());
            state.insert(node.clone(), (false, false, false));
            continue;
        }
        // Keep one: a new one if any, else the oldest.
        if let Some(i) = live.iter().position(|p| hash_of(p) == Some(hash.as_str())) {
            let keep = live.remove(i);
            remove.extend(live);
            state.insert(
                node.clone(),
                (true, true, pods::is_available(keep, min_ready, now)),
            );
        } else {
            let keep = live.remove(0);
            remove.extend(live);
            state.insert(
                node.clone(),
                (true, false, pods::is_available(keep, min_ready, now)),
            );
        }
    }
    // Pods for nodes that no longer exist.
    for (node, ps) in &by_node {
        if !eligible.contains_key(node) {
            remove.extend(ps.iter().copied());
        }
    }

    // Rolling update: replace old pods within maxUnavailable.
    let desired = i32::try_from(eligible.values().filter(|v| **v).count()).unwrap_or(0);
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = strategy
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let mut budget = scaled_value(&max_unavailable, desired, true)?.max(1);
        let unavailable = i32::try_from(state.values().filter(|s| !s.2).count()).unwrap_or(0);
        budget -= unavailable;
        for (node, (has, new, available)) in &state {
            if !*has || *new {
                continue;
            }
            let Some(old) = by_node.get(node).and_then(|ps| {
                ps.iter().copied().find(|p| {
                    hash_of(p) != Some(hash.as_str())
                        && !remove.iter().any(|r| std::ptr::eq(*r, *p))
                })
            }) else {
                continue;
            };
            if !available {
                remove.push(old);
            } else if budget > 0 {
                budget -= 1;
                remove.push(old);
            }
        }
    }

    for p in &remove {
        delete(&pods_api, p).await?;
        ctx.events
            .emit(
                ds,
                Kind::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {}", p.metadata.name.as_deref().unwrap_or("")),
            )
            .await;
    }
    for node in &create {
        let pod = pod_for(ds, &spec.template, &hash, node);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                ctx.events
                    .emit(
                        ds,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                    )
                    .await;
            }
            Err(e) => {
                ctx.events
                    .emit(
                        ds,
                        Kind::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                return Err(Error::api(format!("create pod for daemonset {ns}/{name}"))(
                    e,
                ));
            }
        }
    }

    // Status from what was seen.
    let count = |f: &dyn Fn(&(bool, bool, bool)) -> bool| {
        i32::try_from(state.values().filter(|s| f(s)).count()).unwrap_or(0)
    };
    let current = count(&|s| s.0);
    let updated = count(&|s| s.0 && s.1);
    let available = count(&|s| s.2);
    let ready = i32::try_from(
        state
            .keys()
            .filter(|n| {
                by_node
                    .get(*n)
                    .is_some_and(|ps| ps.iter().any(|p| pods::is_ready(p)))
            })
            .count(),
    )
    .unwrap_or(0);
    let misscheduled = i32::try_from(
        by_node
            .iter()
            .filter(|(n, _)| !eligible.get(*n).copied().unwrap_or(false))
            .count(),
    )
    .unwrap_or(0);
    let mut status = ds.status.clone().unwrap_or_default();
    let old = status.clone();
    status.desired_number_scheduled = desired;
    status.current_number_scheduled = current;
    status.number_misscheduled = misscheduled;
    status.number_ready = ready;
    status.updated_number_scheduled = Some(updated);
    status.number_available = Some(available);
    status.number_unavailable = Some((desired - available).max(0));
    status.observed_generation = ds.metadata.generation;
    if status != old {
        let mut updated_ds = ds.clone();
        updated_ds.status = Some(status);
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), ns);
        match api
            .replace_status(name, &PostParams::default(), &updated_ds)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "update status of daemonset {ns}/{name}"
                ))(e));
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(if min_ready > 0 {
        u64::try_from(min_ready).unwrap_or(1)
    } else {
        300
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn eligibility_and_pod_shape() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "d"}},
            "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let node = |labels: serde_json::Value, taints: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": labels},
                "spec": {"taints": taints}}))
            .unwrap()
        };
        assert!(should_run(
            &template,
            &node(json!({"role": "worker"}), json!([]))
        ));
        assert!(!should_run(&template, &node(json!({}), json!([]))));
        // Daemon tolerations cover unschedulable and unreachable; not a custom taint.
        assert!(should_run(
            &template,
            &node(
                json!({"role": "worker"}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                       {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
            )
        ));
        assert!(!should_run(
            &template,
            &node(
                json!({"role": "worker"}),
                json!([{"key": "gpu", "effect": "NoSchedule"}])
            )
        ));
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "default", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": template}
        }))
        .unwrap();
        let p = pod_for(&ds, &template, "h1", "n7");
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()[REVISION_HASH], "h1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("d-"));
    }
}
