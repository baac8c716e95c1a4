//! Jobs against a real API server, with a simulated kubelet that finishes pods by their
//! `sim.test/exit` label.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, EXIT_LABEL, eventually, obj};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn job(name: &str, exit: Option<&str>, spec: serde_json::Value) -> Job {
    let labels = match exit {
        Some(e) => json!({"app": name, EXIT_LABEL: e}),
        None => json!({"app": name}),
    };
    let mut v = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    });
    common::merge(&mut v, json!({"spec": spec}));
    obj(v)
}

async fn condition(api: &Api<Job>, name: &str, type_: &str) -> Option<(Job, String)> {
    let j = api.get(name).await.ok()?;
    let c = j
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?
        .clone();
    Some((j, c.reason.unwrap_or_default()))
}

async fn job_pods(client: &kube::Client, job: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_and_expire() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "8", "16Gi", json!({})).await;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // Three completions, two at a time, then deleted 2 s after finishing.
    jobs.create(
        &pp,
        &job(
            "ok",
            Some("0"),
            json!({"completions": 3, "parallelism": 2, "ttlSecondsAfterFinished": 2}),
        ),
    )
    .await
    .unwrap();
    // Fails twice with backoffLimit 1.
    jobs.create(&pp, &job("bad", Some("1"), json!({"backoffLimit": 1})))
        .await
        .unwrap();
    // Runs forever, deadline 2 s.
    jobs.create(&pp, &job("slow", None, json!({"activeDeadlineSeconds": 2})))
        .await
        .unwrap();
    // Indexed.
    jobs.create(
        &pp,
        &job(
            "idx",
            Some("0"),
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await
    .unwrap();

    let (ok, reason) = eventually(60, "ok complete", || condition(&jobs, "ok", "Complete")).await;
    assert_eq!(reason, "CompletionsReached");
    let s = ok.status.unwrap();
    assert_eq!(s.succeeded, Some(3));
    assert_eq!(s.failed, Some(0));
    assert_eq!(s.active, Some(0));
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    assert!(
        s.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "SuccessCriteriaMet")
    );
    let uid = ok.metadata.uid.clone().unwrap();
    for p in job_pods(&client, "ok").await {
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l["controller-uid"], uid);
        assert_eq!(l["job-name"], "ok");
        assert!(p.metadata.finalizers.unwrap_or_default().is_empty());
    }

    let (bad, reason) = eventually(60, "bad failed", || condition(&jobs, "bad", "Failed")).await;
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(bad.status.as_ref().unwrap().failed, Some(2));
    assert!(
        bad.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "FailureTarget")
    );

    let (_, reason) = eventually(30, "slow failed", || condition(&jobs, "slow", "Failed")).await;
    assert_eq!(reason, "DeadlineExceeded");
    eventually(30, "slow's pods gone", || async {
        job_pods(&client, "slow")
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;

    let (idx, _) = eventually(60, "idx complete", || condition(&jobs, "idx", "Complete")).await;
    assert_eq!(
        idx.status.unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let mut indexes: Vec<String> = job_pods(&client, "idx")
        .await
        .iter()
        .map(|p| {
            p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"]
                .clone()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // TTL: "ok" is deleted after finishing.
    eventually(30, "ok deleted by ttl", || async {
        jobs.get_opt("ok").await.unwrap().is_none().then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_job_resumes() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "8", "16Gi", json!({})).await;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "later",
            Some("0"),
            json!({"suspend": true, "completions": 2, "parallelism": 2}),
        ),
    )
    .await
    .unwrap();
    let (_, reason) = eventually(30, "suspended", || condition(&jobs, "later", "Suspended")).await;
    assert_eq!(reason, "JobSuspended");
    assert!(job_pods(&client, "later").await.is_empty());
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let (j, _) = eventually(60, "complete", || condition(&jobs, "later", "Complete")).await;
    assert_eq!(j.status.as_ref().unwrap().succeeded, Some(2));
    assert!(
        j.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "False")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_count_toward_the_backoff_limit() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "8", "16Gi", json!({})).await;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut j = job("crashy", Some("1"), json!({"backoffLimit": 2}));
    j.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("OnFailure".into());
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let (j, reason) =
        eventually(60, "crashy failed", || condition(&jobs, "crashy", "Failed")).await;
    assert_eq!(reason, "BackoffLimitExceeded");
    // One pod, restarted in place (never Failed itself), then removed.
    let s = j.status.unwrap();
    assert_eq!(s.failed, Some(0));
    assert_eq!(s.active, Some(0));
    eventually(30, "pod deleted", || async {
        job_pods(&client, "crashy")
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    cluster.stop().await;
}
