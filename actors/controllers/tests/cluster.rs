//! Scheduling filters, Endpoints and EndpointSlices, node IPAM, namespaces and service accounts
//! against a real API server.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, eventually, obj};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

fn pod(name: &str, ns: &str, labels: serde_json::Value, spec_extra: serde_json::Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]},
    });
    common::merge(&mut v, json!({"spec": spec_extra}));
    obj(v)
}

async fn node_of(api: &Api<Pod>, name: &str) -> Option<String> {
    api.get(name).await.ok()?.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_filters_and_failed_scheduling() {
    let mut cluster = Cluster::start().await;
    cluster
        .add_node(
            "small",
            "1",
            "1Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
        )
        .await;
    cluster
        .add_node("tainted", "8", "16Gi", json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}))
        .await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The taint keeps plain pods off "tainted".
    pods.create(
        &PostParams::default(),
        &pod("plain", "default", json!({}), json!({})),
    )
    .await
    .unwrap();
    let n = eventually(30, "plain scheduled", || node_of(&pods, "plain")).await;
    assert_eq!(n, "small");
    // A toleration and a nodeSelector put a pod on "tainted".
    let tolerant = pod(
        "tolerant",
        "default",
        json!({}),
        json!({
            "nodeSelector": {"kubernetes.io/hostname": "tainted"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
        }),
    );
    pods.create(&PostParams::default(), &tolerant)
        .await
        .unwrap();
    assert_eq!(
        eventually(30, "tolerant scheduled", || node_of(&pods, "tolerant")).await,
        "tainted"
    );
    // Too big for "small", not tolerated on "tainted".
    let big = pod(
        "big",
        "default",
        json!({}),
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "2"}}}]}),
    );
    pods.create(&PostParams::default(), &big).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let msg = eventually(30, "FailedScheduling event", || async {
        let l = events
            .list(&ListParams::default().fields("involvedObject.name=big"))
            .await
            .ok()?;
        l.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .and_then(|e| e.message)
    })
    .await;
    assert!(
        msg.starts_with("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: db}."),
        "{msg}"
    );
    let cond = eventually(30, "PodScheduled=False", || async {
        let p = pods.get("big").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert!(node_of(&pods, "big").await.is_none());
    // A node that fits arrives: the pod is scheduled without being touched.
    cluster.add_node("large", "4", "8Gi", json!({})).await;
    assert_eq!(
        eventually(30, "big scheduled", || node_of(&pods, "big")).await,
        "large"
    );
    let scheduled = eventually(30, "Scheduled event", || async {
        let l = events
            .list(&ListParams::default().fields("involvedObject.name=big"))
            .await
            .ok()?;
        l.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Scheduled"))
            .and_then(|e| e.message)
    })
    .await;
    assert_eq!(scheduled, "Successfully assigned default/big to large");
    // Pod CIDRs: one per node, no duplicates.
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs = eventually(30, "pod CIDRs", || async {
        let l = nodes.list(&ListParams::default()).await.ok()?;
        let c: Vec<String> = l
            .items
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        (c.len() == 3).then_some(c)
    })
    .await;
    let mut sorted = cidrs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "{cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.42.") && c.ends_with("/24"))
    );
    let n = nodes.get("small").await.unwrap();
    assert_eq!(
        n.spec.as_ref().unwrap().pod_cidrs.as_ref().unwrap(),
        &[n.spec.as_ref().unwrap().pod_cidr.clone().unwrap()]
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let svc: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "byname", "port": 80, "targetPort": "http"},
            {"name": "bynumber", "port": 81, "targetPort": 9090},
        ]},
    }));
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &pod(name, "default", json!({"app": "web"}), json!({})),
        )
        .await
        .unwrap();
    }
    // Unscheduled (no node, no IP): not listed anywhere. Pending with an IP but not ready: not ready.
    pods.create(
        &PostParams::default(),
        &pod(
            "pending",
            "default",
            json!({"app": "web"}),
            json!({"schedulerName": "other"}),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("other", "default", json!({"app": "db"}), json!({})),
    )
    .await
    .unwrap();

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let e = eventually(30, "endpoints with 2 ready addresses", || async {
        let e = eps.get("web").await.ok()?;
        let s = e.subsets.clone()?;
        (s.len() == 1 && s[0].addresses.as_ref()?.len() == 2).then_some(e)
    })
    .await;
    let subset = &e.subsets.unwrap()[0];
    let addrs = subset.addresses.as_ref().unwrap();
    assert!(
        addrs
            .iter()
            .all(|a| a.ip.starts_with("10.42.") && a.node_name.as_deref() == Some("n1"))
    );
    let names: Vec<_> = addrs
        .iter()
        .map(|a| a.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b"]);
    let mut ports: Vec<_> = subset
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [("byname".to_owned(), 8080), ("bynumber".to_owned(), 9090)]
    );

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let s = eventually(30, "slice with 2 endpoints", || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        (l.items.len() == 1 && l.items[0].endpoints.len() == 2).then(|| l.items[0].clone())
    })
    .await;
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(
        s.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Service"
    );
    for ep in &s.endpoints {
        let c = ep.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        assert_eq!(ep.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));
    }

    // Converged objects are left alone (no write loops).
    let rv = |o: &Option<String>| o.clone().unwrap();
    let (slice_rv, ep_rv) = (
        rv(&s.metadata.resource_version),
        rv(&eps.get("web").await.unwrap().metadata.resource_version),
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        rv(&slices
            .get(s.metadata.name.as_ref().unwrap())
            .await
            .unwrap()
            .metadata
            .resource_version),
        slice_rv
    );
    assert_eq!(
        rv(&eps.get("web").await.unwrap().metadata.resource_version),
        ep_rv
    );

    // A pod that is not ready moves to notReadyAddresses.
    let status = json!({"status": {"phase": "Running", "podIP": "10.42.9.9", "conditions": [{"type": "Ready", "status": "False"}]}});
    pods.patch_status(
        "pending",
        &Default::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap();
    eventually(30, "not-ready address", || async {
        let e = eps.get("web").await.ok()?;
        let nr = e.subsets?[0].not_ready_addresses.clone()?;
        (nr.len() == 1 && nr[0].ip == "10.42.9.9").then_some(())
    })
    .await;

    // Deleting a pod removes it; the kubernetes Endpoints stay the API server's.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    eventually(30, "one ready address", || async {
        let e = eps.get("web").await.ok()?;
        (e.subsets?[0].addresses.as_ref()?.len() == 1).then_some(())
    })
    .await;
    // Deleting the Service deletes its Endpoints.
    Api::<Service>::namespaced(client.clone(), "default")
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "endpoints gone", || async {
        eps.get("web").await.is_err().then_some(())
    })
    .await;
    eventually(30, "slices gone", || async {
        let l = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_lifecycle() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    let client = cluster.client.clone();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "scratch"}})),
    )
    .await
    .unwrap();
    // A default ServiceAccount and the root CA ConfigMap appear.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "scratch");
    eventually(30, "default serviceaccount", || async {
        sas.get("default").await.ok()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    let cm = eventually(30, "kube-root-ca.crt", || async {
        cms.get("kube-root-ca.crt").await.ok()
    })
    .await;
    assert!(cm.data.unwrap()["ca.crt"].contains("BEGIN CERTIFICATE"));
    // Content: a bound pod and a config map.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "scratch");
    pods.create(
        &PostParams::default(),
        &pod("p", "scratch", json!({}), json!({})),
    )
    .await
    .unwrap();
    eventually(30, "pod running", || async {
        (pods.get("p").await.ok()?.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    nss.delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    eventually(60, "namespace gone", || async {
        nss.get("scratch").await.is_err().then_some(())
    })
    .await;
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .unwrap();
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid, "blockOwnerDeletion": true}]);
    let ghost_ref = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000000", "controller": true}]);
    // A pod whose owner never existed is collected.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut orphan = pod(
        "orphan",
        "default",
        json!({}),
        json!({"schedulerName": "none"}),
    );
    orphan.metadata.owner_references = Some(serde_json::from_value(ghost_ref).unwrap());
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    eventually(30, "orphaned pod collected", || async {
        pods.get("orphan").await.is_err().then_some(())
    })
    .await;

    // Background: dependents of a deleted owner go.
    let dep = |name: &str| -> ConfigMap {
        obj(json!({"metadata": {"name": name, "ownerReferences": owner_ref}}))
    };
    cms.create(&PostParams::default(), &dep("dep1"))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(30, "dependent collected", || async {
        cms.get("dep1").await.is_err().then_some(())
    })
    .await;

    // Foreground: the owner stays until its dependents are gone.
    let owner = cms
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "owner2"}})),
        )
        .await
        .unwrap();
    let r = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid, "blockOwnerDeletion": true}]);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "dep2", "ownerReferences": r}})),
    )
    .await
    .unwrap();
    cms.delete("owner2", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(30, "foreground owner and dependent gone", || async {
        (cms.get("owner2").await.is_err() && cms.get("dep2").await.is_err()).then_some(())
    })
    .await;

    // Orphan: dependents stay, without the reference.
    let owner = cms
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "owner3"}})),
        )
        .await
        .unwrap();
    let r = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner3", "uid": owner.metadata.uid}]);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "dep3", "ownerReferences": r}})),
    )
    .await
    .unwrap();
    cms.delete("owner3", &DeleteParams::orphan()).await.unwrap();
    eventually(30, "orphaning owner gone", || async {
        cms.get("owner3").await.is_err().then_some(())
    })
    .await;
    let dep3 = cms.get("dep3").await.unwrap();
    assert!(
        dep3.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_services_without_selectors_are_mirrored_into_slices() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // The API server keeps a slice for its own `kubernetes` Service (kube-proxy reads slices).
    let k = eventually(30, "a slice for the kubernetes Service", || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
            .filter(|s| !s.endpoints.is_empty())
    })
    .await;
    assert_eq!(
        k.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    assert_eq!(k.ports.as_ref().unwrap()[0].name.as_deref(), Some("https"));

    // A Service without a selector and hand-written Endpoints.
    let svc: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "manual", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }));
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let ep: Endpoints = obj(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "manual", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.42.0.7"}], "notReadyAddresses": [{"ip": "10.42.0.8"}],
                     "ports": [{"name": "http", "port": 8080}]}],
    }));
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    eps.create(&PostParams::default(), &ep).await.unwrap();
    let m = eventually(30, "a mirrored slice for manual", || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=manual"))
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
            .filter(|s| s.endpoints.len() == 2)
    })
    .await;
    let ready: Vec<(String, Option<bool>)> = m
        .endpoints
        .iter()
        .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready))
        .collect();
    assert_eq!(
        ready,
        [
            ("10.42.0.7".to_owned(), Some(true)),
            ("10.42.0.8".to_owned(), Some(false))
        ]
    );
    assert_eq!(m.ports.as_ref().unwrap()[0].port, Some(8080));

    // Removing the Endpoints removes the mirrored slice.
    eps.delete("manual", &Default::default()).await.unwrap();
    eventually(30, "mirrored slice gone", || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=manual"))
            .await
            .ok()
            .filter(|l| l.items.is_empty())
    })
    .await;
    cluster.stop().await;
}
