//! Leader election: two controller supervisors on one API server; only the Lease holder runs the
//! loops, and the other takes over when it stops (released Lease) or dies (expired Lease).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, election, eventually, obj};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn pod(name: &str) -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
}

async fn holder(client: &kube::Client, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get(name)
        .await
        .ok()?
        .spec?
        .holder_identity
}

async fn scheduled_events(client: &kube::Client, pod: &str) -> usize {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Scheduled"))
        .count()
}

async fn bound(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_takeover_on_release() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client.clone();
    eventually(10, "test-a leads", || async {
        (holder(&client, "kube-controller-manager").await.as_deref() == Some("test-a")
            && holder(&client, "kube-scheduler").await.as_deref() == Some("test-a"))
        .then_some(())
    })
    .await;
    let second = cluster
        .second_controllers(controllers::Options {
            leader_election: Some(election("test-b")),
            ..controllers::Options::default()
        })
        .await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}")))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let name = format!("p{i}");
        eventually(30, "pod bound", || bound(&pods, &name)).await;
    }
    // b stays a candidate: a keeps renewing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        holder(&client, "kube-controller-manager").await.as_deref(),
        Some("test-a")
    );
    assert_eq!(
        holder(&client, "kube-scheduler").await.as_deref(),
        Some("test-a")
    );
    for i in 0..3 {
        assert_eq!(scheduled_events(&client, &format!("p{i}")).await, 1);
    }

    // Stop a's controllers (a graceful shutdown releases the Leases); a pod created meanwhile is
    // bound once, by b, well within the lease time.
    let a = std::mem::replace(&mut cluster.kernel, kernel::Kernel::new());
    let shutdown = tokio::spawn(async move { a.shutdown(Duration::from_secs(5)).await });
    pods.create(&PostParams::default(), &pod("late"))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    shutdown.await.unwrap();
    eventually(10, "test-b leads", || async {
        (holder(&client, "kube-scheduler").await.as_deref() == Some("test-b")
            && holder(&client, "kube-controller-manager").await.as_deref() == Some("test-b"))
        .then_some(())
    })
    .await;
    eventually(15, "late pod bound", || bound(&pods, "late")).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took over after the lease time"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scheduled_events(&client, "late").await, 1);
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-scheduler")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    second.shutdown(Duration::from_secs(5)).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_over_an_expired_lease() {
    // A dead leader's lease: held by "ghost", renewed now, 4 s.
    let mut cluster = Cluster::start_with(controllers::Options {
        leader_election: None,
        ..common::options()
    })
    .await;
    let client = cluster.client.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    // The first cluster runs without election; stop it and start an electing one.
    let a = std::mem::replace(&mut cluster.kernel, kernel::Kernel::new());
    a.shutdown(Duration::from_secs(5)).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    leases
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
                "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 4,
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
            })),
        )
        .await
        .unwrap();
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let b = cluster
        .second_controllers(controllers::Options {
            leader_election: Some(election("test-b")),
            ..controllers::Options::default()
        })
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("waiting"))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        bound(&pods, "waiting").await.is_none(),
        "scheduled without the lease"
    );
    eventually(15, "pod bound after expiry", || bound(&pods, "waiting")).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(
        holder(&client, "kube-scheduler").await.as_deref(),
        Some("test-b")
    );
    // The Scheduled event follows the binding.
    eventually(5, "Scheduled event", || async {
        (scheduled_events(&client, "waiting").await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scheduled_events(&client, "waiting").await, 1);
    b.shutdown(Duration::from_secs(5)).await;
    // Released on shutdown.
    assert_eq!(holder(&client, "kube-scheduler").await, None);
    cluster.stop().await;
}
