//! The CronJob controller: creates a Job for each scheduled time, keeps a bounded history.
//!
//! Each reconcile reads the CronJob's Jobs (controlled by it) live, refreshes `status.active` and
//! `lastSuccessfulTime`, then finds the most recent scheduled time in `(lastScheduleTime or
//! creation, now]` (bounded below by `now - startingDeadlineSeconds`) in `spec.timeZone` (the
//! process's zone if unset). If there is one that was not run yet, the concurrency policy
//! decides: Allow creates, Forbid skips while a Job is active, Replace deletes the active Jobs
//! first. The Job is named `<cronjob>-<scheduled time in minutes since the epoch>`, so a retried
//! or concurrent attempt for the same time finds it already there (exactly once). Finished Jobs
//! beyond `successfulJobsHistoryLimit` (3) and `failedJobsHistoryLimit` (1) are deleted, oldest
//! first. The key is requeued at the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::Shared;
use crate::cron::Schedule;
use crate::error::{Error, is_status};
use crate::events::Kind;
use crate::pods::{self, controlled_by};
use crate::runner::{self, LoopCtx};

/// The annotation on a Job with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

type Ctx = runner::Workload;

/// The `cronjob` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "cronjob-controller");
    let stream = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .run(
        reconcile,
        |c, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&c.metadata)),
        data,
    );
    runner::drive(ctx, "cronjob", stream).await
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&cj, &ctx).await?;
    ctx.backoff.succeeded(&runner::key(&cj.metadata));
    Ok(action)
}

/// The Job name for a scheduled time.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The most recent scheduled time in `(earliest, now]` and how many there were (capped at 101).
pub fn most_recent(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now {
            break;
        }
        last = Some(next);
        count += 1;
        t = next;
        if count > 100 {
            // Jump ahead: only the most recent matters.
            return (most_recent_tail(schedule, tz, now).or(last), count);
        }
    }
    (last, count)
}

/// The most recent scheduled time within the last 5 years before `now`, searched backwards in
/// growing windows.
fn most_recent_tail(schedule: &Schedule, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let mut window = 3600i64;
    while window < 5 * 366 * 86_400 {
        let from = Timestamp::from_second(now.as_second() - window).unwrap_or(now);
        let mut t = from;
        let mut last = None;
        while let Some(next) = schedule.next_after(t, tz) {
            if next > now {
                break;
            }
            last = Some(next);
            t = next;
        }
        if last.is_some() {
            return last;
        }
        window *= 8;
    }
    None
}

fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    if conds
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        Some("Complete")
    } else if conds
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True")
    {
        Some("Failed")
    } else {
        None
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

async fn sync(cj: &CronJob, ctx: &Ctx) -> Result<Action, Error> {
    let (ns, name, uid) = crate::error::identity(&cj.metadata, "CronJob")?;
    let spec = cj.spec.as_ref().ok_or(Error::Missing {
        kind: "CronJob",
        field: "spec",
    })?;
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list jobs in {ns}")))?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, uid))
        .collect();
    let now = Timestamp::now();
    let old = cj.status.clone().unwrap_or_default();
    let mut status = old.clone();

    // Active and last successful from the Jobs.
    let mut active: Vec<ObjectReference> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none())
        .map(job_ref)
        .collect();
    for j in jobs.iter().filter(|j| finished(j) == Some("Complete")) {
        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
        if let Some(done) = done
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
        {
            status.last_successful_time = Some(done);
        }
    }

    let tz = match spec.time_zone.as_deref() {
        Some(z) => match TimeZone::get(z) {
            Ok(tz) => tz,
            Err(e) => {
                ctx.events
                    .emit(
                        cj,
                        Kind::Warning,
                        "UnknownTimeZone",
                        format!("invalid timeZone {z:?}: {e}"),
                    )
                    .await;
                return Err(Error::Invalid {
                    what: format!("timeZone of cronjob {ns}/{name}"),
                    reason: e.to_string(),
                });
            }
        },
        None => TimeZone::system(),
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            ctx.events
                .emit(cj, Kind::Warning, "UnparseableSchedule", e.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };
    let mut requeue = schedule
        .next_after(now, &tz)
        .map(|n| n.as_millisecond() - now.as_millisecond() + 100);

    if spec.suspend != Some(true) {
        let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
        if let Some(sds) = spec.starting_deadline_seconds {
            let floor = Timestamp::from_second(now.as_second() - sds).unwrap_or(now);
            if floor > earliest {
                earliest = floor;
            }
        }
        let (due, missed) = most_recent(&schedule, &tz, earliest, now);
        if missed > 100 {
            ctx.events
                .emit(
                    cj,
                    Kind::Warning,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                )
                .await;
        }
        if let Some(due) = due {
            let too_late = spec
                .starting_deadline_seconds
                .is_some_and(|sds| due.as_second() + sds < now.as_second());
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let job_name = job_name(name, due);
            let exists = jobs
                .iter()
                .any(|j| j.metadata.name.as_deref() == Some(&job_name));
            if too_late {
                ctx.events
                    .emit(
                        cj,
                        Kind::Warning,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {due}"),
                    )
                    .await;
            } else if exists {
                // Already run (status may have failed to record it).
                status.last_schedule_time = Some(Time(due));
            } else if policy == "Forbid" && !active.is_empty() {
                tracing::debug!(
                    cronjob = name,
                    "not starting: a job is still active (Forbid)"
                );
                requeue = Some(requeue.unwrap_or(10_000).min(10_000));
            } else {
                if policy == "Replace" {
                    for a in &active {
                        let Some(n) = a.name.as_deref() else { continue };
                        match jobs_api.delete(n, &DeleteParams::background()).await {
                            Ok(_) => {
                                ctx.events
                                    .emit(
                                        cj,
                                        Kind::Normal,
                                        "SuccessfulDelete",
                                        format!("Deleted job {n}"),
                                    )
                                    .await;
                            }
                            Err(e) if is_status(&e, 404) => {}
                            Err(e) => return Err(Error::api(format!("delete job {ns}/{n}"))(e)),
                        }
                    }
                    active.clear();
                }
                let job = job_from_template(cj, &job_name, due)?;
                match jobs_api.create(&PostParams::default(), &job).await {
                    Ok(created) => {
                        ctx.events
                            .emit(
                                cj,
                                Kind::Normal,
                                "SuccessfulCreate",
                                format!("Created job {job_name}"),
                            )
                            .await;
                        active.push(job_ref(&created));
                        jobs.push(created);
                    }
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => {
                        ctx.events
                            .emit(
                                cj,
                                Kind::Warning,
                                "FailedCreate",
                                format!("Error creating job: {e}"),
                            )
                            .await;
                        return Err(Error::api(format!("create job {ns}/{job_name}"))(e));
                    }
                }
                status.last_schedule_time = Some(Time(due));
            }
        }
    } else {
        requeue = None;
    }

    // History limits.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        if done.len() <= keep {
            continue;
        }
        done.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0),
                j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        for j in &done[..done.len() - keep] {
            let Some(n) = j.metadata.name.as_deref() else {
                continue;
            };
            match jobs_api.delete(n, &DeleteParams::background()).await {
                Ok(_) => {
                    ctx.events
                        .emit(
                            cj,
                            Kind::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {n}"),
                        )
                        .await;
                }
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(Error::api(format!("delete job {ns}/{n}"))(e)),
            }
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if status != old {
        // Over the CronJob as read: a concurrent change is a conflict, retried.
        let mut updated = cj.clone();
        updated.status = Some(status);
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), ns);
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!("update status of cronjob {ns}/{name}"))(
                    e,
                ));
            }
        }
    }
    Ok(match requeue {
        Some(ms) => Action::requeue(Duration::from_millis(
            u64::try_from(ms.max(100)).unwrap_or(100),
        )),
        None => Action::await_change(),
    })
}

/// The Job for scheduled time `due`.
pub fn job_from_template(cj: &CronJob, name: &str, due: Timestamp) -> Result<Job, Error> {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .ok_or(Error::Missing {
            kind: "CronJob",
            field: "spec.jobTemplate",
        })?;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), due.to_string());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_most_recent() {
        let t: Timestamp = "2024-01-01T10:05:00Z".parse().unwrap();
        assert_eq!(
            job_name("backup", t),
            format!("backup-{}", t.as_second() / 60)
        );
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let earliest: Timestamp = "2024-01-01T09:52:00Z".parse().unwrap();
        let now: Timestamp = "2024-01-01T10:07:30Z".parse().unwrap();
        let (last, n) = most_recent(&s, &TimeZone::UTC, earliest, now);
        assert_eq!(last.unwrap().to_string(), "2024-01-01T10:05:00Z");
        assert_eq!(n, 3);
        let (none, n) = most_recent(&s, &TimeZone::UTC, now, now);
        assert!(none.is_none() && n == 0);
        // Long outage: many missed, still the most recent.
        let every = Schedule::parse("* * * * *").unwrap();
        let long_ago: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let (last, n) = most_recent(&every, &TimeZone::UTC, long_ago, now);
        assert_eq!(last.unwrap().to_string(), "2024-01-01T10:07:00Z");
        assert!(n > 100);
    }
}
