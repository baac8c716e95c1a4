//! The StatefulSet controller: pods with stable names `<sts>-0..N-1`, stable storage and ordered
//! rollout.
//!
//! Each pod gets hostname `<sts>-<ordinal>`, subdomain `serviceName`, the labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash` (`<sts>-<template hash>`), and for every volumeClaimTemplate a
//! PersistentVolumeClaim `<claim>-<sts>-<ordinal>` (created before the pod, never deleted here)
//! mounted as the volume of the claim's name. OrderedReady creates one pod at a time in ordinal
//! order, each after its predecessors are Running and Ready, and scales down from the highest
//! ordinal one at a time; Parallel creates and deletes all at once. RollingUpdate replaces pods
//! whose revision is not the update revision from the highest ordinal down to `partition`, one
//! at a time, once all pods are Running and Ready; OnDelete replaces only pods someone deleted.
//! Failed pods are deleted and recreated.
//!
//! Revisions are the template hash only (no ControllerRevision objects): a pod recreated below
//! the partition gets the current template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::Shared;
use crate::daemonset::REVISION_HASH;
use crate::deployment::template_hash;
use crate::error::{Error, is_status};
use crate::events::Kind;
use crate::pods::{self, controlled_by};
use crate::runner::{self, LoopCtx};

/// The label with a StatefulSet pod's name.
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

type Ctx = runner::Workload;

/// The `statefulset` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "statefulset-controller");
    let stream = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    .run(
        reconcile,
        |s, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&s.metadata)),
        data,
    );
    runner::drive(ctx, "statefulset", stream).await
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = sync(&sts, &ctx).await?;
    ctx.backoff.succeeded(&runner::key(&sts.metadata));
    Ok(action)
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The claim name for a template and ordinal.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pods::is_ready(p)
}

fn revision_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH)
        .map(String::as_str)
}

/// The pod for `ordinal`.
pub fn pod_for(sts: &StatefulSet, ordinal: i32, revision: &str) -> Result<Pod, Error> {
    let set = sts.metadata.name.clone().unwrap_or_default();
    let spec = sts.spec.as_ref().ok_or(Error::Missing {
        kind: "StatefulSet",
        field: "spec",
    })?;
    let template = spec.template.clone();
    let meta = template.metadata.unwrap_or_default();
    let name = format!("{set}-{ordinal}");
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME.into(), name.clone());
    labels.insert(POD_INDEX.into(), ordinal.to_string());
    labels.insert(REVISION_HASH.into(), revision.to_owned());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
        pod_spec.subdomain = spec.service_name.clone();
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let Some(cname) = claim.metadata.name.clone() else {
            continue;
        };
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != cname);
        volumes.push(Volume {
            name: cname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, &set, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "StatefulSet",
                &sts.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}

async fn ensure_claims(sts: &StatefulSet, ordinal: i32, ctx: &Ctx) -> Result<(), Error> {
    let (Some(ns), Some(set), Some(spec)) = (
        sts.metadata.namespace.as_deref(),
        sts.metadata.name.as_deref(),
        sts.spec.as_ref(),
    ) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for t in spec.volume_claim_templates.iter().flatten() {
        let Some(cname) = t.metadata.name.as_deref() else {
            continue;
        };
        let name = claim_name(cname, set, ordinal);
        if api
            .get_opt(&name)
            .await
            .map_err(Error::api(format!("get pvc {ns}/{name}")))?
            .is_some()
        {
            continue;
        }
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
        let pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_owned()),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                ..ObjectMeta::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &pvc).await {
            Ok(_) => {
                ctx.events
                    .emit(
                        sts,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {set}-{ordinal} in StatefulSet {set} success"
                        ),
                    )
                    .await;
            }
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(Error::api(format!("create pvc {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

async fn delete_pod(api: &Api<Pod>, sts: &StatefulSet, ctx: &Ctx, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            let set = sts.metadata.name.as_deref().unwrap_or("");
            ctx.events
                .emit(
                    sts,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {set} successful"),
                )
                .await;
            Ok(())
        }
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(Error::api(format!("delete pod {name}"))(e)),
    }
}

async fn sync(sts: &StatefulSet, ctx: &Ctx) -> Result<Action, Error> {
    let ns = sts.metadata.namespace.as_deref().ok_or(Error::Missing {
        kind: "StatefulSet",
        field: "metadata.namespace",
    })?;
    let set = sts.metadata.name.as_deref().ok_or(Error::Missing {
        kind: "StatefulSet",
        field: "metadata.name",
    })?;
    let uid = sts.metadata.uid.as_deref().ok_or(Error::Missing {
        kind: "StatefulSet",
        field: "metadata.uid",
    })?;
    let spec = sts.spec.as_ref().ok_or(Error::Missing {
        kind: "StatefulSet",
        field: "spec",
    })?;
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let update_revision = format!(
        "{set}-{}",
        template_hash(
            &spec.template,
            sts.status.as_ref().and_then(|s| s.collision_count)
        )
    );
    let current_revision = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .unwrap_or_else(|| update_revision.clone());
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods: BTreeMap<i32, Pod> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, uid))
        .filter_map(|p| Some((ordinal(set, p.metadata.name.as_deref()?)?, p)))
        .collect();

    // Create or replace pods in order.
    let mut waiting = false;
    for ord in 0..replicas {
        match pods.get(&ord) {
            None => {
                ensure_claims(sts, ord, ctx).await?;
                let pod = pod_for(sts, ord, &update_revision)?;
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        ctx.events
                            .emit(
                                sts,
                                Kind::Normal,
                                "SuccessfulCreate",
                                format!("create Pod {set}-{ord} in StatefulSet {set} successful"),
                            )
                            .await;
                    }
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => {
                        return Err(Error::api(format!("create pod {ns}/{set}-{ord}"))(e));
                    }
                }
                if !parallel {
                    waiting = true;
                    break;
                }
            }
            Some(p) => {
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
                    && p.metadata.deletion_timestamp.is_none()
                {
                    delete_pod(&pods_api, sts, ctx, &format!("{set}-{ord}")).await?;
                    if !parallel {
                        waiting = true;
                        break;
                    }
                }
                if !parallel && (!running_and_ready(p) || p.metadata.deletion_timestamp.is_some()) {
                    waiting = true;
                    break;
                }
            }
        }
    }

    // Scale down: highest ordinal first.
    let mut condemned: Vec<(&i32, &Pod)> = pods.range(replicas..).collect();
    condemned.reverse();
    if !waiting {
        for (ord, p) in condemned {
            if p.metadata.deletion_timestamp.is_some() {
                if parallel {
                    continue;
                }
                waiting = true;
                break;
            }
            delete_pod(&pods_api, sts, ctx, &format!("{set}-{ord}")).await?;
            if !parallel {
                waiting = true;
                break;
            }
        }
    }

    // Rolling update from the highest ordinal down to the partition.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let live: Vec<(&i32, &Pod)> = pods.range(..replicas).collect();
    let all_healthy = live.len() == usize::try_from(replicas).unwrap_or(0)
        && live
            .iter()
            .all(|(_, p)| running_and_ready(p) && p.metadata.deletion_timestamp.is_none());
    if rolling
        && !waiting
        && all_healthy
        && let Some((ord, _)) = live
            .iter()
            .rev()
            .find(|(o, p)| **o >= partition && revision_of(p) != Some(update_revision.as_str()))
    {
        delete_pod(&pods_api, sts, ctx, &format!("{set}-{ord}")).await?;
    }

    // Status.
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(pods.values().filter(|p| f(p)).count()).unwrap_or(0)
    };
    let updated = count(&|p| revision_of(p) == Some(update_revision.as_str()));
    let current = count(&|p| revision_of(p) == Some(current_revision.as_str()));
    let ready = count(&|p| pods::is_ready(p));
    let available = count(&|p| {
        pods::is_available(
            p,
            spec.min_ready_seconds.unwrap_or(0),
            k8s_openapi::jiff::Timestamp::now(),
        )
    });
    let existing = i32::try_from(pods.len()).unwrap_or(0);
    let mut status = sts.status.clone().unwrap_or_default();
    let old = status.clone();
    status.replicas = existing;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.updated_replicas = Some(updated);
    status.current_replicas = Some(current);
    status.update_revision = Some(update_revision.clone());
    status.current_revision = Some(current_revision.clone());
    status.observed_generation = sts.metadata.generation;
    // The update is complete when every wanted pod runs the update revision and is ready.
    if updated == replicas && ready == replicas && existing == replicas {
        status.current_revision = Some(update_revision.clone());
        status.current_replicas = Some(updated);
    }
    if status != old {
        let mut updated_sts = sts.clone();
        updated_sts.status = Some(status);
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
        match api
            .replace_status(set, &PostParams::default(), &updated_sts)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "update status of statefulset {ns}/{set}"
                ))(e));
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_pod_shape() {
        assert_eq!(ordinal("web", "web-3"), Some(3));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        }))
        .unwrap();
        let p = pod_for(&sts, 1, "web-abc").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let v = &spec.volumes.unwrap()[0];
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-1"
        );
        let l = p.metadata.labels.unwrap();
        assert_eq!(l[POD_INDEX], "1");
        assert_eq!(l[REVISION_HASH], "web-abc");
    }
}
