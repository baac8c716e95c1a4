//! StatefulSets against a real API server: ordered creation, claims, scale down in reverse,
//! partitioned rolling update, status.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, eventually, obj};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Live pods of the set by name with their revision.
async fn members(client: &kube::Client) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let l = p.metadata.labels.unwrap();
            (
                p.metadata.name.unwrap(),
                l["controller-revision-hash"].clone(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn created_at(client: &kube::Client, name: &str) -> k8s_openapi::jiff::Timestamp {
    Api::<Pod>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_claims_scale_down_and_partitioned_update() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "8", "16Gi", json!({})).await;
    let client = cluster.client.clone();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "db:1"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        })),
    )
    .await
    .unwrap();
    let sts = eventually(60, "3 ready replicas", || async {
        let s = api.get("db").await.ok()?;
        let st = s.status.clone()?;
        (st.ready_replicas == Some(3) && st.replicas == 3 && st.updated_replicas == Some(3))
            .then_some(s)
    })
    .await;
    let rev1 = sts
        .status
        .as_ref()
        .unwrap()
        .update_revision
        .clone()
        .unwrap();
    assert_eq!(
        sts.status.as_ref().unwrap().current_revision.as_deref(),
        Some(rev1.as_str())
    );
    // Ordered: each pod created after its predecessor.
    let (t0, t1, t2) = (
        created_at(&client, "db-0").await,
        created_at(&client, "db-1").await,
        created_at(&client, "db-2").await,
    );
    assert!(t0 <= t1 && t1 <= t2);
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get("db-1")
        .await
        .unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("db-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("db"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        assert!(
            pvcs.get_opt(&format!("data-db-{i}"))
                .await
                .unwrap()
                .is_some()
        );
    }

    // Partitioned update: only ordinals >= 2 move to the new revision.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "c", "image": "db:2"}]}}}})),
    )
    .await
    .unwrap();
    let rev2 = eventually(60, "db-2 updated", || async {
        let s = api.get("db").await.ok()?.status?;
        let rev2 = s.update_revision.clone()?;
        let m = members(&client).await;
        (rev2 != rev1
            && m.len() == 3
            && m[2].1 == rev2
            && s.ready_replicas == Some(3)
            && s.updated_replicas == Some(1))
        .then_some(rev2)
    })
    .await;
    let m = members(&client).await;
    assert_eq!(m[0].1, rev1);
    assert_eq!(m[1].1, rev1);
    let s = api.get("db").await.unwrap().status.unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(s.current_replicas, Some(2));

    // Partition 0: the rest follow, highest first; then currentRevision moves.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    eventually(60, "all updated", || async {
        let s = api.get("db").await.ok()?.status?;
        (s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3)
            && s.current_revision.as_deref() == Some(rev2.as_str()))
        .then_some(())
    })
    .await;
    assert!(created_at(&client, "db-1").await <= created_at(&client, "db-0").await);

    // Scale down to 1: db-2 then db-1 go; claims stay.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(60, "scaled down", || async {
        let m = members(&client).await;
        (m.len() == 1 && m[0].0 == "db-0").then_some(())
    })
    .await;
    eventually(30, "status replicas 1", || async {
        (api.get("db").await.ok()?.status?.replicas == 1).then_some(())
    })
    .await;
    for i in 0..3 {
        assert!(
            pvcs.get_opt(&format!("data-db-{i}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    cluster.stop().await;
}
