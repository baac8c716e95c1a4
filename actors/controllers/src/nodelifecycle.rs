//! The node lifecycle controller: Nodes that stop heartbeating become Unknown and tainted, and
//! pods on NoExecute-tainted Nodes that do not tolerate the taint are evicted.
//!
//! Every `node_monitor_period` it lists the Nodes and their Leases in `kube-node-lease`. A Node's
//! heartbeat is its Lease's `renewTime` or its Ready condition's `lastHeartbeatTime`; like
//! upstream the grace period is measured on this process's clock from the moment the heartbeat was
//! last seen to *change* (so clock skew and a fresh leader do not fail Nodes at once). After
//! `node_monitor_grace_period` without a change its Ready (and pressure) conditions become
//! Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node status.") and its pods' Ready
//! condition False. The Ready condition decides the taints: False gives
//! `node.kubernetes.io/not-ready`, Unknown `node.kubernetes.io/unreachable`, each NoSchedule and
//! NoExecute; True removes them (the kubelet sets Ready True again when it comes back).
//!
//! Eviction (upstream's taint manager): a pod on a Node with NoExecute taints is deleted at once
//! when it does not tolerate one of them, else when the smallest `tolerationSeconds` of the
//! tolerations it uses has passed since the taint was added (no `tolerationSeconds`: never).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Shared;
use crate::error::{Error, is_status};
use crate::events::{Kind, Recorder};
use crate::pods;
use crate::runner::LoopCtx;
use crate::scheduler::tolerates;

/// The taint of a Node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a Node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// What one Node's heartbeat looked like when it last changed.
#[derive(Debug, Clone)]
struct Probe {
    heartbeat: Option<Timestamp>,
    seen: tokio::time::Instant,
}

/// The `nodelifecycle` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let events = Recorder::new(client.clone(), "node-controller");
    let grace = shared.options.node_monitor_grace_period;
    let mut tick = tokio::time::interval(shared.options.node_monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes: HashMap<String, Probe> = HashMap::new();
    let cancelled = ctx.cancelled();
    tokio::pin!(cancelled);
    ctx.ready();
    loop {
        tokio::select! {
            () = &mut cancelled => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&client, &events, grace, &mut probes).await {
            tracing::debug!(error = %e, "node lifecycle pass failed");
        }
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The taints a Node should carry for its Ready condition (key, effect).
pub fn wanted_taints(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    }
}

/// `taints` with the not-ready/unreachable taints replaced by those of `key` (None: removed);
/// existing taints keep their `timeAdded`.
pub fn reconcile_taints(taints: &[Taint], key: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| {
            !((t.key == NOT_READY || t.key == UNREACHABLE)
                && (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && Some(t.key.as_str()) != key)
        })
        .cloned()
        .collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.to_owned(),
                    effect: effect.to_owned(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
    }
    out
}

/// When `pod` must be evicted from a Node with `taints`: `Some(None)` now, `Some(Some(t))` at `t`,
/// `None` never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<Option<Timestamp>> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(None);
        }
        // Any toleration without tolerationSeconds tolerates it forever.
        let Some(secs) = used
            .iter()
            .map(|t| t.toleration_seconds)
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().min())
        else {
            continue;
        };
        let added = taint
            .time_added
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let when = added
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(added);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at.map(Some)
}

async fn pass(
    client: &kube::Client,
    events: &Recorder,
    grace: Duration,
    probes: &mut HashMap<String, Probe>,
) -> Result<(), Error> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list nodes"))?
        .items;
    let leases: HashMap<String, Timestamp> =
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .list(&ListParams::default())
            .await
            .map_err(Error::api("list node leases"))?
            .items
            .into_iter()
            .filter_map(|l| {
                let t = l.spec?.renew_time?.0;
                Some((l.metadata.name?, t))
            })
            .collect();
    let now = tokio::time::Instant::now();
    probes.retain(|n, _| nodes.iter().any(|x| x.metadata.name.as_ref() == Some(n)));
    for node in nodes {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        let heartbeat = [
            leases.get(&name).copied(),
            condition(&node, "Ready")
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0),
        ]
        .into_iter()
        .flatten()
        .max();
        let probe = probes.entry(name.clone()).or_insert_with(|| Probe {
            heartbeat,
            seen: now,
        });
        if probe.heartbeat != heartbeat {
            *probe = Probe {
                heartbeat,
                seen: now,
            };
        }
        let stale = now.duration_since(probe.seen) > grace;
        let mut node = node;
        let ready_status = condition(&node, "Ready").map(|c| c.status.clone());
        if stale && ready_status.as_deref() != Some("Unknown") {
            node = match mark_unknown(&nodes_api, &node, &name).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(node = name, error = %e, "node status not updated");
                    continue;
                }
            };
            mark_pods_not_ready(client, &name).await;
            events
                .emit(
                    &node,
                    Kind::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
        let ready = condition(&node, "Ready").map(|c| c.status.clone());
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let wanted = reconcile_taints(&taints, wanted_taints(ready.as_deref()), Timestamp::now());
        let taints = if wanted == taints {
            taints
        } else {
            let mut n = node.clone();
            n.spec.get_or_insert_with(Default::default).taints =
                (!wanted.is_empty()).then(|| wanted.clone());
            match nodes_api.replace(&name, &PostParams::default(), &n).await {
                Ok(_) => wanted,
                Err(e) => {
                    tracing::debug!(node = name, error = %e, "node taints not updated");
                    continue;
                }
            }
        };
        if taints.iter().any(|t| t.effect == "NoExecute") {
            evict(client, events, &name, &taints).await;
        }
    }
    Ok(())
}

async fn mark_unknown(api: &Api<Node>, node: &Node, name: &str) -> Result<Node, kube::Error> {
    let now = Time(Timestamp::now());
    let mut n = node.clone();
    let status = n.status.get_or_insert_with(Default::default);
    let conds = status.conditions.get_or_insert_with(Vec::new);
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conds.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.last_transition_time = Some(now.clone());
                }
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
            }
            None => conds.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(now.clone()),
                last_heartbeat_time: None,
            }),
        }
    }
    tracing::info!(node = name, "node stopped heartbeating: Ready is Unknown");
    api.replace_status(name, &PostParams::default(), &n).await
}

async fn mark_pods_not_ready(client: &kube::Client, node: &str) {
    let pods = match Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(node, error = %e, "pods not listed");
            return;
        }
    };
    for pod in pods
        .iter()
        .filter(|p| pods::is_ready(p) && !pods::is_terminal(p))
    {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let patch = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        if let Err(e) = Api::<Pod>::namespaced(client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(pod = name, error = %e, "pod not marked not ready");
        }
    }
}

async fn evict(client: &kube::Client, events: &Recorder, node: &str, taints: &[Taint]) {
    let pods = match Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(node, error = %e, "pods not listed");
            return;
        }
    };
    let now = Timestamp::now();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !pods::is_terminal(p))
    {
        let due = match eviction_time(pod, taints) {
            None => false,
            Some(None) => true,
            Some(Some(t)) => t <= now,
        };
        if !due {
            continue;
        }
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        match Api::<Pod>::namespaced(client.clone(), ns)
            .delete(name, &Default::default())
            .await
        {
            Ok(_) => {
                events
                    .emit(
                        pod,
                        Kind::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {ns}/{name}"),
                    )
                    .await;
            }
            Err(e) if is_status(&e, 404) => {}
            Err(e) => tracing::debug!(pod = name, error = %e, "eviction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(|s| Time(Timestamp::from_second(s).unwrap())),
            value: None,
        }
    }

    #[test]
    fn taints_follow_ready() {
        let now = Timestamp::from_second(100).unwrap();
        let other = taint("dedicated", "NoSchedule", None);
        let t = reconcile_taints(std::slice::from_ref(&other), Some(UNREACHABLE), now);
        assert_eq!(t.len(), 3);
        assert!(t.iter().any(|t| t.key == UNREACHABLE
            && t.effect == "NoExecute"
            && t.time_added.as_ref().unwrap().0 == now));
        // Switching to not-ready replaces unreachable; keeps unrelated taints.
        let t2 = reconcile_taints(&t, Some(NOT_READY), now);
        assert!(t2.iter().all(|t| t.key != UNREACHABLE));
        assert_eq!(t2.len(), 3);
        // Idempotent, and keeps timeAdded.
        let later = Timestamp::from_second(200).unwrap();
        assert_eq!(reconcile_taints(&t2, Some(NOT_READY), later), t2);
        assert_eq!(reconcile_taints(&t2, None, later), vec![other]);
    }

    #[test]
    fn eviction_times() {
        let taints = [taint(UNREACHABLE, "NoExecute", Some(1000))];
        let pod = |tol: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tol}}))
            .unwrap()
        };
        assert_eq!(eviction_time(&pod(json!([])), &taints), Some(None));
        let forever =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_time(&forever, &taints), None);
        let timed = pod(
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
        );
        assert_eq!(
            eviction_time(&timed, &taints),
            Some(Some(Timestamp::from_second(1300).unwrap()))
        );
        // NoSchedule taints never evict.
        assert_eq!(
            eviction_time(&pod(json!([])), &[taint(UNREACHABLE, "NoSchedule", None)]),
            None
        );
    }
}
