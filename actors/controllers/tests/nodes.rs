//! Node lifecycle (silent nodes become Unknown and tainted; NoExecute eviction) and pod garbage
//! collection against a real API server.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, eventually, obj};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn pod(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": tolerations},
    }))
}

fn taint_keys(n: &Node) -> Vec<(String, String)> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .map(|t| (t.key.clone(), t.effect.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn deleting(pods: &Api<Pod>, name: &str) -> bool {
    match pods.get_opt(name).await.unwrap() {
        None => true,
        Some(p) => p.metadata.deletion_timestamp.is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_becomes_unknown_tainted_and_evicted() {
    let mut cluster = Cluster::start_with(controllers::Options {
        node_monitor_grace_period: Duration::from_secs(3),
        ..common::options()
    })
    .await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("defaulted", "n1", json!([])))
        .await
        .unwrap();
    pods.create(
        &pp,
        &pod(
            "short",
            "n1",
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]),
        ),
    )
    .await
    .unwrap();
    eventually(10, "pods running", || async {
        let p = pods.get("short").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // Healthy: no taints after several grace periods' worth of heartbeats.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(taint_keys(&nodes.get("n1").await.unwrap()).is_empty());

    // The kubelet goes silent: Unknown, unreachable taints, the short-tolerance pod is evicted.
    cluster.pause_node("n1", true);
    let started = tokio::time::Instant::now();
    let n = eventually(15, "n1 unreachable", || async {
        let n = nodes.get("n1").await.ok()?;
        let t = taint_keys(&n);
        (t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into())))
        .then_some(n)
    })
    .await;
    // The last heartbeat was up to 0.5 s before the pause.
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    let ready = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    eventually(10, "short evicted", || async {
        deleting(&pods, "short").await.then_some(())
    })
    .await;
    // The default 300 s toleration keeps the other pod; its Ready condition is False.
    let p = pods.get("defaulted").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_none());
    assert!(
        p.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False")
    );

    // Heartbeats again: Ready True (the kubelet), taints gone (the controller).
    cluster.pause_node("n1", false);
    eventually(10, "taints removed", || async {
        taint_keys(&nodes.get("n1").await.ok()?)
            .is_empty()
            .then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_execute_taints_evict_by_toleration() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("intolerant", "n1", json!([])))
        .await
        .unwrap();
    pods.create(
        &pp,
        &pod(
            "two-seconds",
            "n1",
            json!([{"key": "evict", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &pod(
            "forever",
            "n1",
            json!([{"key": "evict", "operator": "Exists"}]),
        ),
    )
    .await
    .unwrap();
    eventually(10, "pods running", || async {
        let p = pods.get("forever").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let taint = json!({"spec": {"taints": [{"key": "evict", "value": "x", "effect": "NoExecute",
        "timeAdded": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    eventually(10, "intolerant evicted", || async {
        deleting(&pods, "intolerant").await.then_some(())
    })
    .await;
    assert!(!deleting(&pods, "two-seconds").await || started.elapsed() >= Duration::from_secs(2));
    eventually(10, "two-seconds evicted", || async {
        deleting(&pods, "two-seconds").await.then_some(())
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!deleting(&pods, "forever").await);
    // The custom taint stays: the lifecycle controller only manages its own.
    assert_eq!(
        taint_keys(&nodes.get("n1").await.unwrap()),
        vec![("evict".to_owned(), "NoExecute".to_owned())]
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_orphans_and_terminated_threshold() {
    let mut cluster = Cluster::start_with(controllers::Options {
        terminated_pod_gc_threshold: 2,
        pod_gc_period: Duration::from_millis(500),
        ..common::options()
    })
    .await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    // Pods bound to a node that does not exist are force-deleted; those on n1 stay.
    pods.create(&pp, &pod("ghost", "gone", json!([])))
        .await
        .unwrap();
    pods.create(&pp, &pod("alive", "n1", json!([])))
        .await
        .unwrap();
    eventually(10, "ghost pod deleted", || async {
        pods.get_opt("ghost").await.unwrap().is_none().then_some(())
    })
    .await;
    // Four finished pods, threshold 2: the two oldest go.
    for i in 0..4 {
        let mut p = pod(&format!("done-{i}"), "n1", json!([]));
        p.metadata.labels = Some([(common::EXIT_LABEL.to_owned(), "0".to_owned())].into());
        pods.create(&pp, &p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    eventually(20, "two oldest finished pods deleted", || async {
        let left: Vec<String> = pod_names(&pods).await;
        (left == ["alive", "done-2", "done-3"]).then_some(())
    })
    .await;
    assert!(
        pods.get("alive")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    cluster.stop().await;
}

async fn pod_names(pods: &Api<Pod>) -> Vec<String> {
    let mut v: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    v.sort();
    v
}
