//! DaemonSets against a real API server: placement by selector and taints (scheduled by the
//! scheduler through matchFields), new nodes, rolling update, status.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, eventually, obj};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn placed(client: &kube::Client) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            Some((
                p.spec?.node_name?,
                p.metadata.labels?.get("controller-revision-hash")?.clone(),
            ))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node_and_rolling_update() {
    let mut cluster = Cluster::start().await;
    let worker = json!({"metadata": {"labels": {"role": "worker"}}});
    cluster.add_node("w1", "4", "8Gi", worker.clone()).await;
    cluster.add_node("other", "4", "8Gi", json!({})).await;
    cluster
        .add_node(
            "w-tainted",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"role": "worker"}},
                "spec": {"taints": [{"key": "gpu", "value": "x", "effect": "NoSchedule"}]}}),
        )
        .await;
    let client = cluster.client.clone();
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &obj(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"role": "worker"},
                        "containers": [{"name": "c", "image": "agent:1"}]}}},
        })),
    )
    .await
    .unwrap();
    let first = eventually(30, "pod on w1 only", || async {
        let p = placed(&client).await;
        (p.len() == 1 && p[0].0 == "w1").then_some(p)
    })
    .await;
    // A new worker gets one too.
    cluster.add_node("w2", "4", "8Gi", worker.clone()).await;
    eventually(30, "pods on w1 and w2", || async {
        let p = placed(&client).await;
        (p.iter().map(|x| x.0.as_str()).collect::<Vec<_>>() == ["w1", "w2"]).then_some(())
    })
    .await;
    let ds = eventually(30, "status", || async {
        let d = api.get("agent").await.ok()?;
        let s = d.status.clone()?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_available == Some(2)
            && s.updated_number_scheduled == Some(2)
            && s.observed_generation == d.metadata.generation)
            .then_some(d)
    })
    .await;
    assert_eq!(ds.status.unwrap().number_misscheduled, 0);
    // The pods were placed by the scheduler through the matchFields affinity.
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .remove(0);
    let terms = pod
        .spec
        .unwrap()
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(
        terms[0].match_fields.as_ref().unwrap()[0].key,
        "metadata.name"
    );

    // Rolling update: every pod replaced with the new hash.
    api.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}})),
    )
    .await
    .unwrap();
    let old_hash = first[0].1.clone();
    eventually(60, "rolled", || async {
        let p = placed(&client).await;
        (p.len() == 2 && p.iter().all(|x| x.1 != old_hash)).then_some(())
    })
    .await;
    eventually(30, "updated status", || async {
        let d = api.get("agent").await.ok()?;
        let s = d.status?;
        (s.updated_number_scheduled == Some(2) && s.number_available == Some(2)).then_some(())
    })
    .await;
    cluster.stop().await;
}
