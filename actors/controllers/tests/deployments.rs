//! Deployments end to end against a real API server: rollout, rolling update, undo, scale.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, eventually, obj};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const REVISION: &str = "deployment.kubernetes.io/revision";

fn deployment() -> Deployment {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}]},
            },
        },
    }))
}

/// The deployment once its status says the rollout is done.
async fn converged(api: &Api<Deployment>, replicas: i32) -> Deployment {
    eventually(60, "deployment to converge", || async {
        let d = api.get("web").await.ok()?;
        let s = d.status.clone()?;
        let ok = s.observed_generation == d.metadata.generation
            && s.replicas == Some(replicas)
            && s.updated_replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
            && s.ready_replicas == Some(replicas)
            && s.conditions.as_ref()?.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
            && s.conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
        ok.then_some(d)
    })
    .await
}

fn revision(rs: &ReplicaSet) -> String {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .cloned()
        .unwrap_or_default()
}

async fn replica_sets(client: &kube::Client) -> Vec<ReplicaSet> {
    let mut l = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    l.sort_by_key(revision);
    l
}

/// Live pods of the deployment (not terminating).
async fn live_pods(client: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_update_undo_scale() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "2", "4Gi", json!({})).await;
    cluster.add_node("n2", "2", "4Gi", json!({})).await;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment())
        .await
        .unwrap();

    // 1 ReplicaSet, 3 bound pods with the right labels and owners.
    let d = converged(&api, 3).await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    let rss = replica_sets(&client).await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(revision(rs), "1");
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", Some(true), Some(true))
    );
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );
    let pods = live_pods(&client).await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        assert!(
            p.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            (
                "ReplicaSet",
                rs.metadata.uid.as_deref().unwrap(),
                Some(true)
            )
        );
        assert!(p.spec.as_ref().unwrap().node_name.is_some());
    }
    let first_template = rs.spec.as_ref().unwrap().template.clone().unwrap();

    // A template change rolls to a new ReplicaSet with revision 2.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "VERSION", "value": "2"}]}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let d = converged(&api, 3).await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    let rss = eventually(30, "old replica set scaled to 0", || async {
        let rss = replica_sets(&client).await;
        (rss.len() == 2 && rss[0].spec.as_ref()?.replicas == Some(0)).then_some(rss)
    })
    .await;
    assert_eq!(revision(&rss[1]), "2");
    let new_hash = rss[1].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_ne!(new_hash, hash);
    eventually(30, "only new pods", || async {
        let pods = live_pods(&client).await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"] == new_hash))
        .then_some(())
    })
    .await;

    // Undo like kubectl: the old ReplicaSet's template without the hash label.
    let mut t = first_template;
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": t}]);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch).unwrap()),
    )
    .await
    .unwrap();
    let d = converged(&api, 3).await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "3");
    let rss = replica_sets(&client).await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused");
    let reused = rss
        .iter()
        .find(|r| r.metadata.labels.as_ref().unwrap()["pod-template-hash"] == hash)
        .unwrap();
    assert_eq!(revision(reused), "3");
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(3));

    // Converged: no more writes to the Deployment or its ReplicaSets.
    let before: Vec<_> = replica_sets(&client)
        .await
        .into_iter()
        .map(|r| r.metadata.resource_version)
        .collect();
    let d_rv = api.get("web").await.unwrap().metadata.resource_version;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after: Vec<_> = replica_sets(&client)
        .await
        .into_iter()
        .map(|r| r.metadata.resource_version)
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        api.get("web").await.unwrap().metadata.resource_version,
        d_rv
    );

    // Scale.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    converged(&api, 5).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    converged(&api, 1).await;
    eventually(30, "one pod", || async {
        (live_pods(&client).await.len() == 1).then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_and_history_limit() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment();
    let spec = d.spec.as_mut().unwrap();
    spec.strategy = Some(obj(json!({"type": "Recreate"})));
    spec.revision_history_limit = Some(1);
    api.create(&PostParams::default(), &d).await.unwrap();
    converged(&api, 3).await;
    for v in ["2", "3", "4"] {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"v": v}}}}});
        api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let d = converged(&api, 3).await;
        assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], v);
    }
    // One old ReplicaSet kept besides the current one.
    eventually(30, "history cleaned up", || async {
        let rss = replica_sets(&client).await;
        (rss.len() == 2).then_some(())
    })
    .await;
    let rss = replica_sets(&client).await;
    assert_eq!(rss.iter().map(revision).collect::<Vec<_>>(), ["3", "4"]);
    cluster.stop().await;
}
