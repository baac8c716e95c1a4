//! CronJobs against a real API server. No test waits for the clock: `status.lastScheduleTime` is
//! moved into the past, which makes the current minute's run due at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Cluster, EXIT_LABEL, eventually, obj};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn finished_kind(j: &Job) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_schedule_runs_once_and_history_is_pruned() {
    let mut cluster = Cluster::start().await;
    cluster.add_node("n1", "8", "16Gi", json!({})).await;
    let client = cluster.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let cj = cronjobs
        .create(
            &pp,
            &obj(json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "tick", "namespace": "default"},
                "spec": {"schedule": "* * * * *", "timeZone": "Etc/UTC",
                    "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1,
                    "jobTemplate": {"metadata": {"labels": {"cron": "tick"}}, "spec": {"template": {
                        "metadata": {"labels": {EXIT_LABEL: "0"}},
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
            })),
        )
        .await
        .unwrap();
    let uid = cj.metadata.uid.clone().unwrap();
    // Old finished runs: three succeeded, two failed.
    let owner = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": uid,
        "controller": true, "blockOwnerDeletion": true}]);
    for (i, kind) in ["Complete", "Complete", "Complete", "Failed", "Failed"]
        .iter()
        .enumerate()
    {
        let name = format!("tick-old-{i}");
        jobs.create(
            &pp,
            &obj(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "namespace": "default", "ownerReferences": owner},
                "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}},
            })),
        )
        .await
        .unwrap();
        let start = Timestamp::from_second(1_700_000_000 + i64::try_from(i).unwrap() * 60).unwrap();
        let mut status = json!({"status": {"startTime": start.to_string(),
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": start.to_string()}]}});
        if *kind == "Complete" {
            common::merge(
                &mut status,
                json!({"status": {"completionTime": start.to_string(), "succeeded": 1}}),
            );
        }
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    // Make the current minute due.
    let before = Timestamp::now();
    let past = Timestamp::from_second(before.as_second() - 600).unwrap();
    cronjobs
        .patch_status(
            "tick",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastScheduleTime": past.to_string()}})),
        )
        .await
        .unwrap();
    let expected = format!("tick-{}", before.as_second() / 60);
    let job = eventually(30, "the due job", || async {
        jobs.get_opt(&expected).await.unwrap()
    })
    .await;
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels["cron"], "tick");
    assert!(
        job.metadata
            .annotations
            .unwrap()
            .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp")
    );
    // Completes; lastSuccessfulTime follows; history keeps 2 succeeded (the newest) and 1 failed.
    let cj = eventually(60, "lastSuccessfulTime", || async {
        let c = cronjobs.get("tick").await.ok()?;
        let s = c.status.clone()?;
        (s.last_successful_time.is_some() && s.active.as_ref().is_none_or(Vec::is_empty))
            .then_some(c)
    })
    .await;
    assert!(
        cj.status.unwrap().last_schedule_time.unwrap().0.as_second() >= before.as_second() - 60
    );
    let names = eventually(30, "history pruned", || async {
        let mut l: Vec<(String, String)> = jobs
            .list(&Default::default())
            .await
            .ok()?
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| Some((finished_kind(j)?, j.metadata.name.clone()?)))
            .collect();
        l.sort();
        (l.len() == 3).then_some(l)
    })
    .await;
    let after = Timestamp::now();
    if before.as_second() / 60 == after.as_second() / 60 {
        // Exactly one run for the one due minute; the two newest successes and newest failure kept.
        assert_eq!(
            names,
            [
                ("Complete".to_owned(), expected.clone()),
                ("Complete".to_owned(), "tick-old-2".to_owned()),
                ("Failed".to_owned(), "tick-old-4".to_owned()),
            ]
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_cronjob_creates_nothing() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    cronjobs
        .create(
            &PostParams::default(),
            &obj(json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "off", "namespace": "default"},
                "spec": {"schedule": "@every 1m", "suspend": true,
                    "jobTemplate": {"spec": {"template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
            })),
        )
        .await
        .unwrap();
    let past = Timestamp::from_second(Timestamp::now().as_second() - 600).unwrap();
    cronjobs
        .patch_status(
            "off",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastScheduleTime": past.to_string()}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        jobs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Unsuspended: the missed run starts at once.
    cronjobs
        .patch(
            "off",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    eventually(30, "a job", || async {
        let l = jobs.list(&Default::default()).await.ok()?.items;
        (l.len() == 1).then_some(())
    })
    .await;
    cluster.stop().await;
}

/// A CronJob with `policy` whose earlier run (a suspended Job, so never finishing) is still
/// active when the current minute becomes due; returns the Jobs' names afterwards.
async fn with_active_run(policy: &str) -> Vec<String> {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let cj = cronjobs
        .create(
            &pp,
            &obj(json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "c", "namespace": "default"},
                "spec": {"schedule": "* * * * *", "concurrencyPolicy": policy,
                    "jobTemplate": {"spec": {"suspend": true, "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
            })),
        )
        .await
        .unwrap();
    let owner = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "c",
        "uid": cj.metadata.uid.unwrap(), "controller": true, "blockOwnerDeletion": true}]);
    jobs.create(
        &pp,
        &obj(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "c-earlier", "namespace": "default", "ownerReferences": owner},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}},
        })),
    )
    .await
    .unwrap();
    eventually(10, "earlier run active", || async {
        let s = cronjobs.get("c").await.ok()?.status?;
        (s.active?.len() == 1).then_some(())
    })
    .await;
    let past = Timestamp::from_second(Timestamp::now().as_second() - 600).unwrap();
    cronjobs
        .patch_status(
            "c",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastScheduleTime": past.to_string()}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut names: Vec<String> = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    cluster.stop().await;
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_policies() {
    // Forbid: the active run blocks the due one.
    assert_eq!(with_active_run("Forbid").await, ["c-earlier"]);
    // Replace: the active run is deleted, the due one created.
    let replaced = with_active_run("Replace").await;
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(replaced[0], "c-earlier");
    // Allow: both (a third if the clock crossed into the next minute meanwhile).
    let both = with_active_run("Allow").await;
    assert!(both.len() == 2 || both.len() == 3, "{both:?}");
    assert!(both.contains(&"c-earlier".to_owned()));
}
