//! The Job controller (batch/v1): a Job runs pods until `completions` of them succeed, at most
//! `parallelism` at a time, and fails after more than `backoffLimit` pod failures or after
//! `activeDeadlineSeconds`.
//!
//! Pods are created from the template with generateName `<job>-` (Indexed: `<job>-<index>-`),
//! a controller reference, the labels `batch.kubernetes.io/controller-uid`, `controller-uid`,
//! `batch.kubernetes.io/job-name` and `job-name` (Indexed jobs also the completion index as
//! annotation and label, `JOB_COMPLETION_INDEX` in every container's environment and hostname
//! `<job>-<index>`), and the finalizer `batch.kubernetes.io/job-tracking`, so that a finished pod
//! is counted before it can vanish. Counting is idempotent like upstream: a finished pod's uid is
//! first written to `status.uncountedTerminatedPods` together with the new counts, then its
//! finalizer is removed, then the uid is dropped from the list.
//!
//! Failures: a Failed pod, or a pod deleted before it succeeded, counts as failed; with
//! `restartPolicy: OnFailure` container restarts count too. More than `backoffLimit` gives the
//! condition `FailureTarget` then `Failed` with reason `BackoffLimitExceeded`; the deadline
//! `DeadlineExceeded`. Success sets `SuccessCriteriaMet` then `Complete` and `completionTime`.
//! When finished, remaining pods are deleted; `ttlSecondsAfterFinished` later the Job itself is
//! deleted (background propagation). `suspend: true` deletes the active pods and sets the
//! `Suspended` condition; resuming resets `startTime`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::Shared;
use crate::error::{Error, is_status};
use crate::events::Kind;
use crate::pods::{self, controlled_by};
use crate::runner::{self, LoopCtx};

/// The finalizer on a Job's pods until they are counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of an Indexed Job's pod (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Labels naming the Job on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// ... and its uid.
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

type Ctx = runner::Workload;

/// The `job` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "job-controller");
    let stream = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(
            reconcile,
            |j, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&j.metadata)),
            data,
        );
    runner::drive(ctx, "job", stream).await
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&job, &ctx).await?;
    ctx.backoff.succeeded(&runner::key(&job.metadata));
    Ok(action)
}

// ---- pure helpers --------------------------------------------------------------------------

/// Parses `completedIndexes` ("1,3-5") into a set.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats a set of indexes as ranges ("1,3-5").
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The completion index of a pod.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| pod.metadata.labels.as_ref()?.get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    msg: &str,
) {
    let now = Time(Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.to_owned();
                c.last_transition_time = Some(now.clone());
            }
            c.reason = Some(reason.to_owned());
            c.message = Some(msg.to_owned());
            c.last_probe_time = Some(now);
        }
        None => conds.push(JobCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(msg.to_owned()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Builds the pod for `index` (Indexed jobs) from the Job's template.
pub fn pod_for(job: &Job, index: Option<i32>) -> Result<Pod, Error> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or(Error::Missing {
            kind: "Job",
            field: "spec.template",
        })?;
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_UID.into(), uid.clone());
    labels.insert("controller-uid".into(), uid);
    labels.insert(JOB_NAME.into(), name.clone());
    labels.insert("job-name".into(), name.clone());
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut spec = template.spec.ok_or(Error::Missing {
        kind: "Job",
        field: "spec.template.spec",
    })?;
    let mut generate_name = format!("{name}-");
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        generate_name = format!("{name}-{i}-");
        if spec.hostname.is_none() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                env.push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        }),
                        ..EnvVarSource::default()
                    }),
                });
            }
        }
    }
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![pods::controller_ref("batch/v1", "Job", &job.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

// ---- the sync ------------------------------------------------------------------------------

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let Some(name) = pod.metadata.name.as_deref() else {
        return Ok(());
    };
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {"finalizers": rest, "uid": pod.metadata.uid}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn sync(job: &Job, ctx: &Ctx) -> Result<Action, Error> {
    let (ns, name, uid) = crate::error::identity(&job.metadata, "Job")?;
    let spec = job.spec.as_ref().ok_or(Error::Missing {
        kind: "Job",
        field: "spec",
    })?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, uid))
        .collect();
    let now = Timestamp::now();

    // A Job being deleted lets its pods go.
    if job.metadata.deletion_timestamp.is_some() {
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pods_api, p)
                .await
                .map_err(Error::api(format!(
                    "remove finalizer of a pod of job {ns}/{name}"
                )))?;
        }
        return Ok(Action::await_change());
    }

    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let finished = is_finished(job);
    let targeted = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet")
                    && c.status == "True"
            })
        });
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let mut completed: BTreeSet<i32> =
        parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));

    // 1. Count newly finished pods (recording their uids), then drop their finalizers.
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_ok: BTreeSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_failed: BTreeSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut succeeded = status.succeeded.unwrap_or(0);
    let mut failed = status.failed.unwrap_or(0);
    let mut to_release: Vec<&Pod> = Vec::new();
    for p in &pods {
        let Some(puid) = p.metadata.uid.clone() else {
            continue;
        };
        let done = phase(p) == "Succeeded";
        let fail = phase(p) == "Failed" || (p.metadata.deletion_timestamp.is_some() && !done);
        if !(done || fail) || !has_finalizer(p) {
            continue;
        }
        to_release.push(p);
        if unc_ok.contains(&puid) || unc_failed.contains(&puid) {
            continue;
        }
        if done {
            let in_range =
                pod_index(p).is_some_and(|i| i >= 0 && i < spec.completions.unwrap_or(i32::MAX));
            let newly = !indexed || (in_range && pod_index(p).is_some_and(|i| completed.insert(i)));
            if newly {
                succeeded += 1;
            }
            unc_ok.insert(puid);
        } else {
            // Pods deleted because the Job already reached its end do not count.
            if !(finished || targeted && p.metadata.deletion_timestamp.is_some()) {
                failed += 1;
            }
            unc_failed.insert(puid);
        }
    }
    // Uids whose pods are released (no finalizer, or gone) leave the uncounted list.
    let still_tracked = |u: &String| {
        pods.iter()
            .any(|p| p.metadata.uid.as_ref() == Some(u) && has_finalizer(p))
    };
    let counted_now = unc_ok.clone();
    let failed_now = unc_failed.clone();
    unc_ok.retain(|u| still_tracked(u));
    unc_failed.retain(|u| still_tracked(u));

    let active: Vec<&Pod> = pods.iter().filter(|p| pods::is_active(p)).collect();
    let restarts: i32 = if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
    {
        active
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };

    // 2. Decide.
    let mut conds = status.conditions.clone().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let start = status.start_time.as_ref().map(|t| t.0);
    let deadline_passed = spec
        .active_deadline_seconds
        .is_some_and(|d| start.is_some_and(|s| now.as_second() - s.as_second() >= d) && !suspended);
    let success = match completions {
        Some(c) if indexed => i32::try_from(completed.len()).unwrap_or(i32::MAX) >= c,
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    let mut failure: Option<(&str, String)> = None;
    if !finished && !success {
        if failed + restarts > backoff_limit {
            failure = Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        } else if deadline_passed {
            failure = Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ));
        }
    }
    let mut requeue: Option<Duration> = None;
    if !finished {
        if let Some((reason, msg)) = &failure {
            set_condition(&mut conds, "FailureTarget", "True", reason, msg);
        } else if success {
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
        }
    }
    let terminal_target =
        has_condition_in(&conds, "FailureTarget") || has_condition_in(&conds, "SuccessCriteriaMet");

    // 3. Act on pods.
    let mut deleted: usize = 0;
    if terminal_target || finished || suspended {
        for p in &active {
            delete_pod(&pods_api, p).await?;
            deleted += 1;
        }
    } else {
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        // How many should run.
        let mut create_indexes: Vec<Option<i32>> = Vec::new();
        let mut excess: Vec<&Pod> = Vec::new();
        if indexed {
            let n = completions.unwrap_or(0);
            let running: BTreeSet<i32> = active.iter().filter_map(|p| pod_index(p)).collect();
            // Duplicates of one index: keep the oldest.
            let mut seen = BTreeSet::new();
            let mut sorted = active.clone();
            sorted.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for p in sorted {
                match pod_index(p) {
                    Some(i) if (0..n).contains(&i) && !completed.contains(&i) && seen.insert(i) => {
                    }
                    _ => excess.push(p),
                }
            }
            let room = usize::try_from(parallelism)
                .unwrap_or(0)
                .saturating_sub(seen.len());
            create_indexes = (0..n)
                .filter(|i| !completed.contains(i) && !running.contains(i))
                .take(room)
                .map(Some)
                .collect();
            if seen.len() > usize::try_from(parallelism).unwrap_or(0) {
                let mut extra: Vec<&Pod> = active
                    .iter()
                    .copied()
                    .filter(|p| !excess.iter().any(|e| std::ptr::eq(*e, *p)))
                    .collect();
                extra.sort_by_key(|p| std::cmp::Reverse(pod_index(p)));
                excess.extend(
                    extra
                        .into_iter()
                        .take(seen.len() - usize::try_from(parallelism).unwrap_or(0)),
                );
            }
        } else {
            let want = match completions {
                Some(c) => parallelism.min((c - succeeded).max(0)),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            let want = usize::try_from(want).unwrap_or(0);
            if active.len() < want {
                create_indexes = vec![None; want - active.len()];
            } else if active.len() > want {
                let mut sorted = active.clone();
                sorted.sort_by_key(|p| {
                    (
                        pods::is_ready(p),
                        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    )
                });
                excess = sorted.into_iter().take(active.len() - want).collect();
            }
        }
        for p in excess {
            delete_pod(&pods_api, p).await?;
            deleted += 1;
        }
        for index in create_indexes {
            let pod = pod_for(job, index)?;
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    ctx.events
                        .emit(
                            job,
                            Kind::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                        )
                        .await;
                }
                Err(e) => {
                    ctx.events
                        .emit(
                            job,
                            Kind::Warning,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        )
                        .await;
                    return Err(Error::api(format!("create pod for job {ns}/{name}"))(e));
                }
            }
        }
        if let Some(d) = spec.active_deadline_seconds
            && let Some(s) = status.start_time.as_ref()
        {
            let left = d - (now.as_second() - s.0.as_second());
            requeue = Some(Duration::from_secs(
                u64::try_from(left.max(0)).unwrap_or(0) + 1,
            ));
        }
    }

    // Suspension.
    if suspended && !finished {
        if !has_condition_in(&conds, "Suspended") {
            set_condition(
                &mut conds,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
            );
            ctx.events
                .emit(job, Kind::Normal, "Suspended", "Job suspended".into())
                .await;
        }
        status.start_time = None;
    } else if has_condition_in(&conds, "Suspended") {
        set_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
        );
        ctx.events
            .emit(job, Kind::Normal, "Resumed", "Job resumed".into())
            .await;
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
    }

    // Finish once no pod is left running or uncounted.
    let remaining = active.len().saturating_sub(deleted) + unc_ok.len() + unc_failed.len();
    let all_released = remaining == 0 && to_release.is_empty();
    if !finished && all_released {
        if let Some(c) = conds
            .iter()
            .find(|c| c.type_ == "FailureTarget" && c.status == "True")
            .cloned()
        {
            let reason = c.reason.clone().unwrap_or_default();
            let msg = c.message.clone().unwrap_or_default();
            set_condition(&mut conds, "Failed", "True", &reason, &msg);
            ctx.events.emit(job, Kind::Warning, &reason, msg).await;
        } else if has_condition_in(&conds, "SuccessCriteriaMet") {
            set_condition(
                &mut conds,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            status.completion_time = Some(Time(now));
            ctx.events
                .emit(job, Kind::Normal, "Completed", "Job completed".into())
                .await;
        }
    }

    status.active = Some(i32::try_from(active.len().saturating_sub(deleted)).unwrap_or(0));
    status.ready =
        Some(i32::try_from(active.iter().filter(|p| pods::is_ready(p)).count()).unwrap_or(0));
    status.terminating = Some(
        i32::try_from(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
                .count(),
        )
        .unwrap_or(0),
    );
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.completed_indexes = indexed.then(|| format_indexes(&completed));
    uncounted.succeeded = Some(
        counted_now
            .iter()
            .filter(|u| still_tracked(u))
            .cloned()
            .collect(),
    );
    uncounted.failed = Some(
        failed_now
            .iter()
            .filter(|u| still_tracked(u))
            .cloned()
            .collect(),
    );
    status.uncounted_terminated_pods = Some(uncounted);
    status.conditions = (!conds.is_empty()).then_some(conds);
    if status != old {
        write_status(&jobs_api, job, &status).await?;
    }
    // Counted: now the finalizers may go.
    for p in to_release {
        remove_finalizer(&pods_api, p)
            .await
            .map_err(Error::api(format!(
                "remove finalizer of a pod of job {ns}/{name}"
            )))?;
    }

    // TTL after finishing.
    let job_now_finished = status.conditions.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    });
    if job_now_finished && let Some(ttl) = spec.ttl_seconds_after_finished {
        let finished_at = status
            .conditions
            .iter()
            .flatten()
            .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
            .max()
            .unwrap_or(now);
        let left = i64::from(ttl) - (now.as_second() - finished_at.as_second());
        if left <= 0 {
            match jobs_api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(job = %format!("{ns}/{name}"), "deleted after ttlSecondsAfterFinished")
                }
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(Error::api(format!("delete finished job {ns}/{name}"))(e)),
            }
            return Ok(Action::await_change());
        }
        requeue = Some(Duration::from_secs(u64::try_from(left).unwrap_or(1)));
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

fn has_condition_in(conds: &[JobCondition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let Some(name) = pod.metadata.name.as_deref() else {
        return Ok(());
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::api(format!("delete pod {name}"))(e)),
    }
}

/// Writes `status` over the Job as read (its resourceVersion makes a concurrent change a
/// conflict, retried with the fresh object).
async fn write_status(api: &Api<Job>, job: &Job, status: &JobStatus) -> Result<(), Error> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let mut updated = job.clone();
    updated.status = Some(status.clone());
    match api
        .replace_status(name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::api(format!("update status of job {name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn indexes_round_trip() {
        let s = parse_indexes("0,2-4,7");
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&s), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert!(parse_indexes("").is_empty());
    }

    #[test]
    fn indexed_pod_template() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap();
        let p = pod_for(&job, Some(2)).unwrap();
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[JOB_NAME], "j");
        assert_eq!(labels["controller-uid"], "u1");
        assert_eq!(labels[COMPLETION_INDEX], "2");
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            "2"
        );
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-2-"));
        assert_eq!(p.spec.as_ref().unwrap().hostname.as_deref(), Some("j-2"));
        assert_eq!(
            p.metadata.finalizers.as_ref().unwrap(),
            &[TRACKING_FINALIZER]
        );
        let env = p.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        assert_eq!(pod_index(&pod_for(&job, Some(1)).unwrap()), Some(1));
    }
}
