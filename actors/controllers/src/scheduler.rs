//! The scheduler: every Pod without `spec.nodeName` whose `schedulerName` is `default-scheduler`
//! (or unset) is bound to a Node.
//!
//! One pod at a time (so two pods never book the same room): the filters are the Ready condition,
//! `spec.unschedulable`, nodeSelector, required node affinity, NoSchedule/NoExecute taints against
//! tolerations, requested cpu/memory/pod count against allocatable minus the pods already there,
//! and host ports; the score is the least allocated node. Pods this scheduler bound but which the
//! API has not shown bound yet are *assumed* on their node, so they are never double-counted out.
//! A pod that fits nowhere gets a `FailedScheduling` event and its PodScheduled condition says
//! why; it is retried with backoff and whenever Nodes change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::runner::LoopCtx;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod, Taint,
    Toleration,
};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::error::{Error, is_status};
use crate::events::{Kind, Recorder};
use crate::quantity::parse_milli;
use crate::runner::{self, Backoff};
use crate::{Shared, pods, selector};

/// The scheduler's name in `spec.schedulerName` and in events.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Requests used for scoring pods that request nothing (upstream's non-zero defaults).
const DEFAULT_CPU_MILLI: i128 = 100;
const DEFAULT_MEMORY_MILLI: i128 = 200 * 1024 * 1024 * 1000;

struct Ctx {
    client: kube::Client,
    events: Recorder,
    backoff: Backoff,
    /// Pods bound by us, by uid, until the API shows them bound: (node, usage).
    assumed: Mutex<HashMap<String, (String, Usage)>>,
}

/// The `scheduler` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        events: Recorder::new(client.clone(), SCHEDULER_NAME),
        client: client.clone(),
        backoff: Backoff::default(),
        assumed: Mutex::new(HashMap::new()),
    });
    let node_changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .filter_map(|r| async move { r.ok().map(|_| ()) });
    let stream = Controller::new(
        Api::<Pod>::all(client),
        watcher::Config::default().fields("spec.nodeName="),
    )
    .with_config(controller::Config::default().concurrency(1))
    .reconcile_all_on(node_changes)
    .run(
        reconcile,
        |p, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&p.metadata)),
        data,
    );
    runner::drive(ctx, "scheduler", stream).await
}

/// Resources a pod uses on a node, in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU in millicores.
    pub cpu: i128,
    /// Memory in thousandths of a byte.
    pub memory: i128,
    /// CPU for scoring (non-zero default).
    pub score_cpu: i128,
    /// Memory for scoring (non-zero default).
    pub score_memory: i128,
}

/// What `pod` requests: the sum over containers, at least the largest init container, plus overhead.
pub fn usage(pod: &Pod) -> Usage {
    let Some(spec) = &pod.spec else {
        return Usage::default();
    };
    let get = |c: &k8s_openapi::api::core::v1::Container, r: &str| -> Option<i128> {
        let res = c.resources.as_ref()?;
        res.requests
            .as_ref()
            .and_then(|m| m.get(r))
            .or_else(|| res.limits.as_ref().and_then(|m| m.get(r)))
            .and_then(|q| parse_milli(&q.0))
    };
    let mut u = Usage::default();
    for c in &spec.containers {
        let (cpu, mem) = (get(c, "cpu"), get(c, "memory"));
        u.cpu += cpu.unwrap_or(0);
        u.memory += mem.unwrap_or(0);
        u.score_cpu += cpu.filter(|v| *v > 0).unwrap_or(DEFAULT_CPU_MILLI);
        u.score_memory += mem.filter(|v| *v > 0).unwrap_or(DEFAULT_MEMORY_MILLI);
    }
    for c in spec.init_containers.iter().flatten() {
        u.cpu = u.cpu.max(get(c, "cpu").unwrap_or(0));
        u.memory = u.memory.max(get(c, "memory").unwrap_or(0));
    }
    if let Some(o) = &spec.overhead {
        let cpu = o.get("cpu").and_then(|q| parse_milli(&q.0)).unwrap_or(0);
        let mem = o.get("memory").and_then(|q| parse_milli(&q.0)).unwrap_or(0);
        u.cpu += cpu;
        u.memory += mem;
        u.score_cpu += cpu;
        u.score_memory += mem;
    }
    u
}

/// What is already on a node.
#[derive(Debug, Clone, Default)]
pub struct NodeLoad {
    /// Summed usage.
    pub usage: Usage,
    /// Pod count.
    pub pods: i128,
    /// Host ports in use: (protocol, port).
    pub ports: Vec<(String, i32)>,
}

impl NodeLoad {
    /// Adds one pod.
    pub fn add(&mut self, u: Usage, ports: &[(String, i32)]) {
        self.usage.cpu += u.cpu;
        self.usage.memory += u.memory;
        self.usage.score_cpu += u.score_cpu;
        self.usage.score_memory += u.score_memory;
        self.pods += 1;
        self.ports.extend_from_slice(ports);
    }
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp))
        })
        .collect()
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name")
                .then(|| node.metadata.name.clone())
                .flatten();
            requirement_matches(r, v.as_ref())
        })
}

/// Whether `node` satisfies the pod's nodeSelector and required node affinity.
pub fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector
        && !selector::map_matches(sel, labels)
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Whether `t` tolerates `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// The first NoSchedule/NoExecute taint of `node` the pod does not tolerate.
pub fn untolerated_taint<'a>(pod: &Pod, node: &'a Node) -> Option<&'a Taint> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn allocatable(node: &Node, r: &str) -> Option<i128> {
    let s = node.status.as_ref()?;
    s.allocatable
        .as_ref()
        .and_then(|a| a.get(r))
        .or_else(|| s.capacity.as_ref().and_then(|c| c.get(r)))
        .and_then(|q| parse_milli(&q.0))
}

/// Why `node` cannot take `pod`, in upstream's words and filter order (unschedulable, taints,
/// affinity, then resources and ports); empty: it fits.
pub fn filter(pod: &Pod, node: &Node, load: &NodeLoad) -> Vec<String> {
    if !node_ready(node) {
        return vec!["node(s) were not ready".into()];
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let tolerated = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|t| {
                tolerates(
                    t,
                    &Taint {
                        key: "node.kubernetes.io/unschedulable".into(),
                        effect: "NoSchedule".into(),
                        ..Taint::default()
                    },
                )
            });
        if !tolerated {
            return vec!["node(s) were unschedulable".into()];
        }
    }
    if let Some(t) = untolerated_taint(pod, node) {
        return vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        )];
    }
    if !affinity_matches(pod, node) {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    let mut reasons = Vec::new();
    let u = usage(pod);
    if allocatable(node, "pods").is_some_and(|max| (load.pods + 1) * 1000 > max) {
        reasons.push("Too many pods".into());
    }
    if u.cpu > 0 && allocatable(node, "cpu").is_some_and(|max| load.usage.cpu + u.cpu > max) {
        reasons.push("Insufficient cpu".into());
    }
    if u.memory > 0
        && allocatable(node, "memory").is_some_and(|max| load.usage.memory + u.memory > max)
    {
        reasons.push("Insufficient memory".into());
    }
    if host_ports(pod).iter().any(|p| load.ports.contains(p)) {
        reasons.push("node(s) didn't have free ports for the requested pod ports".into());
    }
    reasons
}

/// Least-allocated score in 0..=100 (higher is emptier).
pub fn score(pod: &Pod, node: &Node, load: &NodeLoad) -> i128 {
    let u = usage(pod);
    let part = |used: i128, cap: Option<i128>| match cap {
        Some(cap) if cap > 0 => ((cap - used).max(0) * 100) / cap,
        _ => 0,
    };
    (part(load.usage.score_cpu + u.score_cpu, allocatable(node, "cpu"))
        + part(
            load.usage.score_memory + u.score_memory,
            allocatable(node, "memory"),
        ))
        / 2
}

/// Picks a node for `pod`, or says why none fits (`0/N nodes are available: ...`).
pub fn pick(
    pod: &Pod,
    nodes: &[Node],
    loads: &HashMap<String, NodeLoad>,
) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no nodes available to schedule pods".into());
    }
    let empty = NodeLoad::default();
    let mut best: Option<(i128, &str)> = None;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let load = loads.get(name).unwrap_or(&empty);
        let why = filter(pod, node, load);
        if why.is_empty() {
            let s = score(pod, node, load);
            if best.is_none_or(|(b, n)| s > b || (s == b && name < n)) {
                best = Some((s, name));
            }
        } else {
            for r in why {
                *reasons.entry(r).or_insert(0) += 1;
            }
        }
    }
    match best {
        Some((_, n)) => Ok(n.to_owned()),
        None => {
            let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            Err(format!(
                "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
                nodes.len(),
                parts.join(", "),
                nodes.len(),
                nodes.len()
            ))
        }
    }
}

/// Longest wait before an unschedulable pod is tried again when no Node changed (upstream
/// waits up to 5 minutes; node changes requeue every pending pod at once).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(30);

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    schedule(&pod, &ctx).await
}

async fn schedule(pod: &Pod, ctx: &Ctx) -> Result<Action, Error> {
    let spec = pod.spec.as_ref().ok_or(Error::Missing {
        kind: "Pod",
        field: "spec",
    })?;
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        || pod.metadata.deletion_timestamp.is_some()
        || pods::is_terminal(pod)
        || spec
            .scheduler_name
            .as_deref()
            .is_some_and(|s| s != SCHEDULER_NAME)
    {
        return Ok(Action::await_change());
    }
    let ns = pod.metadata.namespace.as_deref().ok_or(Error::Missing {
        kind: "Pod",
        field: "metadata.namespace",
    })?;
    let name = pod.metadata.name.as_deref().ok_or(Error::Missing {
        kind: "Pod",
        field: "metadata.name",
    })?;
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list nodes"))?
        .items;
    // Without nodes nothing can fit: skip reading every bound pod.
    let bound = if nodes.is_empty() {
        Vec::new()
    } else {
        Api::<Pod>::all(ctx.client.clone())
            .list(&ListParams::default().fields("spec.nodeName!="))
            .await
            .map_err(Error::api("list bound pods"))?
            .items
    };
    let mut loads: HashMap<String, NodeLoad> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for p in &bound {
        if let Some(uid) = &p.metadata.uid {
            seen.insert(uid.clone());
        }
        if pods::is_terminal(p) {
            continue;
        }
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            loads.entry(node).or_default().add(usage(p), &host_ports(p));
        }
    }
    {
        let mut assumed = ctx.assumed.lock().unwrap_or_else(|e| e.into_inner());
        assumed.retain(|uid, _| !seen.contains(uid));
        for (node, u) in assumed.values() {
            loads.entry(node.clone()).or_default().add(*u, &[]);
        }
    }
    match pick(pod, &nodes, &loads) {
        Ok(node) => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(ns.to_owned()),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..ObjectReference::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
            match api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
                    return Ok(Action::await_change());
                }
                Err(e) => return Err(Error::api(format!("bind pod {ns}/{name} to {node}"))(e)),
            }
            if let Some(uid) = &pod.metadata.uid {
                ctx.assumed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid.clone(), (node.clone(), usage(pod)));
            }
            ctx.backoff.succeeded(&runner::key(&pod.metadata));
            ctx.events
                .emit(
                    pod,
                    Kind::Normal,
                    "Scheduled",
                    format!("Successfully assigned {ns}/{name} to {node}"),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(message) => {
            let patch = json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                "lastProbeTime": null,
            }]}});
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
            let already = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.type_ == "PodScheduled"
                            && c.status == "False"
                            && c.message.as_deref() == Some(message.as_str())
                    })
                });
            // The event and the condition change only when the reason does, so thousands of
            // pending pods don't each write every retry.
            if !already {
                ctx.events
                    .emit(pod, Kind::Warning, "FailedScheduling", message.clone())
                    .await;
                if let Err(e) = api
                    .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    tracing::debug!(pod = name, error = %e, "PodScheduled condition not set");
                }
            }
            // Retried with backoff (at least every UNSCHEDULABLE_RETRY) and whenever Nodes change.
            let delay = ctx.backoff.next(runner::key(&pod.metadata));
            Ok(Action::requeue(delay.min(UNSCHEDULABLE_RETRY)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn filters_and_message() {
        let nodes = vec![
            node("a", json!({"metadata": {"labels": {"disk": "ssd"}}})),
            node(
                "b",
                json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
            ),
            node("c", json!({"spec": {"unschedulable": true}})),
        ];
        let loads = HashMap::new();
        assert_eq!(pick(&pod(json!({})), &nodes, &loads).unwrap(), "a");
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "hdd"}}}));
        let err = pick(&p, &nodes, &loads).unwrap_err();
        assert!(err.starts_with("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable."), "{err}");
        let tolerant = pod(
            json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "b"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}),
        );
        assert_eq!(pick(&tolerant, &nodes, &loads).unwrap(), "b");
        let affinity = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}]}}}}}),
        );
        assert!(pick(&affinity, &nodes[..1], &loads).is_err());
        assert!(pick(&pod(json!({})), &[], &loads).is_err());
    }

    #[test]
    fn resources_and_least_allocated() {
        let nodes = vec![node("a", json!({})), node("b", json!({}))];
        let big = pod(
            json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]}}),
        );
        let mut loads = HashMap::new();
        loads
            .entry("a".to_owned())
            .or_insert_with(NodeLoad::default)
            .add(usage(&big), &[]);
        assert_eq!(pick(&big, &nodes, &loads).unwrap(), "b");
        loads
            .entry("b".to_owned())
            .or_insert_with(NodeLoad::default)
            .add(usage(&big), &[]);
        let err = pick(&big, &nodes, &loads).unwrap_err();
        assert!(err.contains("2 Insufficient cpu"), "{err}");
        let small = pod(json!({}));
        assert!(pick(&small, &nodes, &loads).is_ok());
    }
}
