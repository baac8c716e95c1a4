//! The Deployment controller: a Deployment owns ReplicaSets, one per pod template, and moves pods
//! from the old ones to the new one by its strategy.
//!
//! Like upstream: the new ReplicaSet is `<deployment>-<pod-template-hash>`, the hash label is added
//! to its selector and template; an old ReplicaSet whose template equals the Deployment's again
//! (after `kubectl rollout undo`) is reused and gets the next revision
//! (`deployment.kubernetes.io/revision`, also set on the Deployment). RollingUpdate scales the new
//! ReplicaSet up within `maxSurge` and the old ones down within `maxUnavailable`; Recreate scales
//! the old ones to zero and waits for their pods to be gone first. Old ReplicaSets beyond
//! `revisionHistoryLimit` are deleted once the rollout is complete. Status carries the replica
//! counts and the Available and Progressing conditions `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::runner::LoopCtx;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::error::{Error, is_status};
use crate::events::Kind;
use crate::pods::{self, controlled_by, controller_of};
use crate::runner;
use crate::{Shared, selector};

/// The revision annotation on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The replicas the Deployment wanted when it last scaled this ReplicaSet.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when it last scaled this ReplicaSet.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the ReplicaSets of one Deployment apart.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

type Ctx = runner::Workload;

/// The `deployment` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Ctx::new(client.clone(), "deployment-controller");
    let stream = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
    .run(
        reconcile,
        |d, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&d.metadata)),
        data,
    );
    runner::drive(ctx, "deployment", stream).await
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let action = Sync::new(&d, &ctx)?.run().await?;
    ctx.backoff.succeeded(&runner::key(&d.metadata));
    Ok(action)
}

// ---- pure rollout arithmetic -------------------------------------------------------------------

/// Resolves an int-or-percent against `total`, rounding up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::Invalid {
                    what: "int or percent".into(),
                    reason: format!("{s:?} is neither an integer nor a percentage"),
                })?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// `(maxSurge, maxUnavailable)` like upstream: surge rounds up, unavailable rounds down, and if
/// both are zero unavailable is one.
pub fn fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), Error> {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(surge.unwrap_or(&quarter), desired, true)?;
    let mut unavailable = scaled_value(unavailable.unwrap_or(&quarter), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// The encoding upstream uses for generated names: no vowels, no look-alikes.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod-template-hash of a template (FNV-1a over its JSON, with the collision count).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    bytes.iter().copied().for_each(&mut feed);
    if let Some(c) = collision_count {
        c.to_le_bytes().into_iter().for_each(&mut feed);
    }
    h.to_string()
        .bytes()
        .map(|c| char::from(ALPHANUMS[usize::from(c) % ALPHANUMS.len()]))
        .collect()
}

/// Whether two templates are equal once the hash label is ignored.
pub fn templates_equal(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn norm(t: &PodTemplateSpec) -> Value {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if let Some(labels) = v
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(HASH_LABEL);
            if labels.is_empty()
                && let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut)
            {
                m.remove("labels");
            }
        }
        if v.pointer("/metadata")
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty)
            && let Some(o) = v.as_object_mut()
        {
            o.remove("metadata");
        }
        v
    }
    norm(a) == norm(b)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (Option<Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

// ---- one sync of one Deployment --------------------------------------------------------------

struct Sync<'a> {
    d: &'a Deployment,
    ctx: &'a Ctx,
    ns: String,
    name: String,
    uid: String,
    replicas: i32,
    rs_api: Api<ReplicaSet>,
    /// A Progressing condition set while finding or creating the new ReplicaSet.
    progress_hint: Option<DeploymentCondition>,
    collision_count: Option<i32>,
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Time(Timestamp::now());
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets `c` among `conds`, keeping the transition time when the status does not change.
/// Returns false when an equal condition (status and reason) is already there.
fn set_condition(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) -> bool {
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return false;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
    true
}

impl<'a> Sync<'a> {
    fn new(d: &'a Deployment, ctx: &'a Ctx) -> Result<Self, Error> {
        let missing = |field| Error::Missing {
            kind: "Deployment",
            field,
        };
        let ns = d
            .metadata
            .namespace
            .clone()
            .ok_or(missing("metadata.namespace"))?;
        let name = d.metadata.name.clone().ok_or(missing("metadata.name"))?;
        let uid = d.metadata.uid.clone().ok_or(missing("metadata.uid"))?;
        let spec = d.spec.as_ref().ok_or(missing("spec"))?;
        Ok(Self {
            rs_api: Api::namespaced(ctx.client.clone(), &ns),
            d,
            ctx,
            ns,
            name,
            uid,
            replicas: spec.replicas.unwrap_or(1),
            progress_hint: None,
            collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        })
    }

    fn spec(&self) -> &k8s_openapi::api::apps::v1::DeploymentSpec {
        // `new` checked that spec is there.
        self.d
            .spec
            .as_ref()
            .unwrap_or_else(|| unreachable!("checked in Sync::new"))
    }

    fn rolling(&self) -> bool {
        self.spec()
            .strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .is_none_or(|t| t != "Recreate")
    }

    /// (maxSurge, maxUnavailable) resolved against replicas; (0, 0) for Recreate.
    fn surge_unavailable(&self) -> Result<(i32, i32), Error> {
        if !self.rolling() {
            return Ok((0, 0));
        }
        let ru = self
            .spec()
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let (s, u) = fenceposts(
            ru.and_then(|r| r.max_surge.as_ref()),
            ru.and_then(|r| r.max_unavailable.as_ref()),
            self.replicas,
        )?;
        Ok((s, u.min(self.replicas)))
    }

    async fn run(mut self) -> Result<Action, Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let sel = self.spec().selector.clone();
        if selector::is_empty(&sel) {
            self.ctx
                .events
                .emit(
                    self.d,
                    Kind::Warning,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required."
                        .into(),
                )
                .await;
            return Ok(Action::await_change());
        }
        let rss = self.replica_sets().await?;
        let paused = self.spec().paused == Some(true);
        let mut all = rss;
        if paused {
            let new = self.new_replica_set(&mut all, false).await?;
            if let Some(i) = new {
                // Only proportional scaling while paused: a lone active ReplicaSet follows replicas.
                let active = all.iter().filter(|r| replicas_of(r) > 0).count();
                if active <= 1 && replicas_of(&all[i]) != self.replicas {
                    let n = self.replicas;
                    self.scale(&mut all[i], n).await?;
                }
            }
            return self.status(&all, new, true).await;
        }
        if self.rolling() {
            self.rolling_update(all).await
        } else {
            self.recreate(all).await
        }
    }

    /// This Deployment's ReplicaSets, adopting orphans its selector matches.
    async fn replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let list = self
            .rs_api
            .list(&ListParams::default())
            .await
            .map_err(Error::api(format!("list replicasets in {}", self.ns)))?;
        let sel = &self.spec().selector;
        let empty = BTreeMap::new();
        let mut out = Vec::new();
        for mut rs in list.items {
            if controlled_by(&rs.metadata, &self.uid) {
                out.push(rs);
            } else if controller_of(&rs.metadata).is_none()
                && rs.metadata.deletion_timestamp.is_none()
                && selector::matches(sel, rs.metadata.labels.as_ref().unwrap_or(&empty))
            {
                let mut owners = rs.metadata.owner_references.clone().unwrap_or_default();
                owners.push(pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                ));
                let patch =
                    json!({"metadata": {"ownerReferences": owners, "uid": rs.metadata.uid}});
                match self
                    .rs_api
                    .patch(
                        &name_of(&rs),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => rs = adopted,
                    Err(e) => {
                        tracing::debug!(rs = name_of(&rs), error = %e, "adoption failed");
                        continue;
                    }
                }
                out.push(rs);
            }
        }
        out.sort_by_key(created);
        Ok(out)
    }

    /// Finds (and if `create`, creates) the ReplicaSet of the current template; syncs revisions.
    /// Returns its index in `all`.
    async fn new_replica_set(
        &mut self,
        all: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<usize>, Error> {
        let template = self.spec().template.clone();
        let existing = all.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| templates_equal(t, &template))
        });
        let max_old = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != existing)
            .map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = existing {
            let rs = &all[i];
            let mut annotations = self.copied_annotations();
            let current = rs.metadata.annotations.clone().unwrap_or_default();
            let revision = if revision_of(rs) < new_revision {
                new_revision
            } else {
                revision_of(rs)
            };
            annotations.insert(REVISION.to_owned(), revision.to_string());
            let changed = annotations.iter().any(|(k, v)| current.get(k) != Some(v));
            if changed {
                let patch = json!({"metadata": {"annotations": annotations}});
                all[i] = self
                    .rs_api
                    .patch(&name_of(rs), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::api(format!(
                        "annotate replicaset {}/{}",
                        self.ns,
                        name_of(rs)
                    )))?;
            }
            self.set_deployment_revision(revision).await?;
            let has_progressing = self
                .d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Progressing"));
            if !has_progressing {
                self.progress_hint = Some(condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set {:?}", name_of(&all[i])),
                ));
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let rs = self.build_replica_set(&template, new_revision, all)?;
        let rs_name = name_of(&rs);
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                let n = replicas_of(&created);
                self.ctx
                    .events
                    .emit(
                        self.d,
                        Kind::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {rs_name} from 0 to {n}"),
                    )
                    .await;
                self.set_deployment_revision(new_revision).await?;
                self.progress_hint = Some(condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set {rs_name:?}"),
                ));
                all.push(created);
                Ok(Some(all.len() - 1))
            }
            Err(e) if is_status(&e, 409) => {
                // Either our own stale read or a hash collision: bump collisionCount if the existing
                // one is not ours with this template, and retry.
                let other = self
                    .rs_api
                    .get(&rs_name)
                    .await
                    .map_err(Error::api(format!("get replicaset {}/{rs_name}", self.ns)))?;
                let ours = controlled_by(&other.metadata, &self.uid)
                    && other
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| templates_equal(t, &template));
                if !ours {
                    let count = self.collision_count.unwrap_or(0).saturating_add(1);
                    let patch = json!({"status": {"collisionCount": count}});
                    Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns)
                        .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(Error::api(format!(
                            "update status of deployment {}/{}",
                            self.ns, self.name
                        )))?;
                }
                Err(Error::Waiting(format!(
                    "replicaset {rs_name} already exists"
                )))
            }
            Err(e) => Err(Error::api(format!("create replicaset in {}", self.ns))(e)),
        }
    }

    fn copied_annotations(&self) -> BTreeMap<String, String> {
        let (surge, _) = self.surge_unavailable().unwrap_or((0, 0));
        let mut a: BTreeMap<String, String> = self
            .d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        a.insert(DESIRED_REPLICAS.to_owned(), self.replicas.to_string());
        a.insert(MAX_REPLICAS.to_owned(), (self.replicas + surge).to_string());
        a
    }

    fn build_replica_set(
        &self,
        template: &PodTemplateSpec,
        revision: i64,
        all: &[ReplicaSet],
    ) -> Result<ReplicaSet, Error> {
        let hash = template_hash(template, self.collision_count);
        let mut template = template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        let mut labels = meta.labels.clone().unwrap_or_default();
        labels.insert(HASH_LABEL.to_owned(), hash.clone());
        meta.labels = Some(labels.clone());
        let mut selector = self.spec().selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.to_owned(), hash.clone());
        let mut annotations = self.copied_annotations();
        annotations.insert(REVISION.to_owned(), revision.to_string());
        let replicas = if self.rolling() {
            let (surge, _) = self.surge_unavailable()?;
            let current: i32 = all.iter().map(replicas_of).sum();
            let max_total = self.replicas + surge;
            if current >= max_total {
                0
            } else {
                (max_total - current).min(self.replicas)
            }
        } else {
            self.replicas
        };
        Ok(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name)),
                namespace: Some(self.ns.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: self.spec().min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        })
    }

    async fn set_deployment_revision(&self, revision: i64) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision.to_string().as_str()) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "annotate deployment {}/{}",
                self.ns, self.name
            )))?;
        Ok(())
    }

    /// Scales `rs` to `n` (and refreshes its desired/max annotations); records the event.
    async fn scale(&self, rs: &mut ReplicaSet, n: i32) -> Result<bool, Error> {
        let old = replicas_of(rs);
        let annotations = self.copied_annotations();
        let current = rs.metadata.annotations.clone().unwrap_or_default();
        let stale = [DESIRED_REPLICAS, MAX_REPLICAS]
            .iter()
            .any(|k| current.get(*k) != annotations.get(*k));
        if old == n && !stale {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS: annotations.get(DESIRED_REPLICAS),
                MAX_REPLICAS: annotations.get(MAX_REPLICAS),
            }},
            "spec": {"replicas": n},
        });
        let name = name_of(rs);
        *rs = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!("scale replicaset {}/{name}", self.ns)))?;
        if old != n {
            let dir = if n > old { "up" } else { "down" };
            self.ctx
                .events
                .emit(
                    self.d,
                    Kind::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled {dir} replica set {name} to {n} from {old}"),
                )
                .await;
        }
        Ok(old != n)
    }

    async fn rolling_update(mut self, mut all: Vec<ReplicaSet>) -> Result<Action, Error> {
        let new = self.new_replica_set(&mut all, true).await?;
        let (surge, unavailable) = self.surge_unavailable()?;
        // Scale the new ReplicaSet up.
        if let Some(i) = new {
            let cur = replicas_of(&all[i]);
            let target = if cur > self.replicas {
                self.replicas
            } else {
                let total: i32 = all.iter().map(replicas_of).sum();
                let max_total = self.replicas + surge;
                if total >= max_total {
                    cur
                } else {
                    cur + (max_total - total).min(self.replicas - cur)
                }
            };
            if target != cur && self.scale(&mut all[i], target).await? {
                return self.status(&all, new, false).await;
            }
        }
        // Scale the old ones down.
        let old_idx: Vec<usize> = (0..all.len()).filter(|i| Some(*i) != new).collect();
        let old_pods: i32 = old_idx.iter().map(|i| replicas_of(&all[*i])).sum();
        if old_pods > 0 {
            let all_pods: i32 = all.iter().map(replicas_of).sum();
            let min_available = self.replicas - unavailable;
            let new_unavailable = new.map_or(0, |i| replicas_of(&all[i]) - available_of(&all[i]));
            let max_scaled_down = all_pods - min_available - new_unavailable;
            let mut scaled = 0;
            if max_scaled_down > 0 {
                // Unhealthy replicas of old ReplicaSets first, oldest first.
                for &i in &old_idx {
                    if scaled >= max_scaled_down {
                        break;
                    }
                    let (r, a) = (replicas_of(&all[i]), available_of(&all[i]));
                    if r == 0 || r == a {
                        continue;
                    }
                    let down = (max_scaled_down - scaled).min(r - a);
                    self.scale(&mut all[i], r - down).await?;
                    scaled += down;
                }
                // Then available ones, keeping minAvailable.
                let available: i32 = all.iter().map(available_of).sum();
                if available > min_available {
                    let total_down = available - min_available;
                    let mut done = 0;
                    for &i in &old_idx {
                        if done >= total_down {
                            break;
                        }
                        let r = replicas_of(&all[i]);
                        if r == 0 {
                            continue;
                        }
                        let down = r.min(total_down - done);
                        self.scale(&mut all[i], r - down).await?;
                        done += down;
                    }
                    scaled += done;
                }
            }
            if scaled > 0 {
                return self.status(&all, new, false).await;
            }
        }
        self.status(&all, new, false).await
    }

    async fn recreate(mut self, mut all: Vec<ReplicaSet>) -> Result<Action, Error> {
        let mut new = self.new_replica_set(&mut all, false).await?;
        let mut scaled = false;
        for (i, rs) in all.iter_mut().enumerate() {
            if Some(i) != new && replicas_of(rs) > 0 {
                scaled |= self.scale(rs, 0).await?;
            }
        }
        if scaled {
            return self.status(&all, new, false).await;
        }
        // Wait until no pod of an old ReplicaSet is running.
        let old_uids: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .filter_map(|(_, rs)| rs.metadata.uid.clone())
            .collect();
        if !old_uids.is_empty() {
            let pods = Api::<Pod>::namespaced(self.ctx.client.clone(), &self.ns)
                .list(&ListParams::default())
                .await
                .map_err(Error::api(format!("list pods in {}", self.ns)))?;
            let running = pods.items.iter().any(|p| {
                !pods::is_terminal(p)
                    && controller_of(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid))
            });
            if running {
                self.status(&all, new, false).await?;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
        }
        if new.is_none() {
            new = self.new_replica_set(&mut all, true).await?;
        }
        if let Some(i) = new {
            let n = self.replicas;
            if self.scale(&mut all[i], n).await? {
                return self.status(&all, new, false).await;
            }
        }
        self.status(&all, new, false).await
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, lowest revision first.
    async fn cleanup(&self, all: &[ReplicaSet], new: Option<usize>) -> Result<(), Error> {
        let limit =
            usize::try_from(self.spec().revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
        let mut old: Vec<&ReplicaSet> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .map(|(_, rs)| rs)
            .filter(|rs| {
                rs.metadata.deletion_timestamp.is_none()
                    && replicas_of(rs) == 0
                    && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
            })
            .collect();
        if old.len() <= limit {
            return Ok(());
        }
        old.sort_by_key(|rs| (revision_of(rs), created(rs)));
        for rs in &old[..old.len() - limit] {
            match self
                .rs_api
                .delete(&name_of(rs), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    return Err(Error::api(format!(
                        "delete replicaset {}/{}",
                        self.ns,
                        name_of(rs)
                    ))(e));
                }
            }
        }
        Ok(())
    }

    /// Computes and writes the status; returns when to look again.
    async fn status(
        &self,
        all: &[ReplicaSet],
        new: Option<usize>,
        paused: bool,
    ) -> Result<Action, Error> {
        let (_, unavailable) = self.surge_unavailable()?;
        let sum = |f: &dyn Fn(&ReplicaSet) -> i32| -> i32 { all.iter().map(f).sum() };
        let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
        let replicas = sum(&|rs| st(rs).replicas);
        let updated = new.map_or(0, |i| st(&all[i]).replicas);
        let ready = sum(&|rs| st(rs).ready_replicas.unwrap_or(0));
        let available = sum(&|rs| st(rs).available_replicas.unwrap_or(0));
        let old = self.d.status.clone().unwrap_or_default();
        let mut conds = old.conditions.clone().unwrap_or_default();
        if available >= self.replicas - unavailable {
            set_condition(
                &mut conds,
                condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                ),
            );
        } else {
            set_condition(
                &mut conds,
                condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                ),
            );
        }
        let mut requeue = Duration::from_secs(300);
        let new_name = new.map(|i| name_of(&all[i]));
        let progressing = conds.iter().find(|c| c.type_ == "Progressing").cloned();
        let reason = progressing.as_ref().and_then(|c| c.reason.clone());
        if paused {
            if reason.as_deref() != Some("DeploymentPaused") {
                set_condition(
                    &mut conds,
                    condition(
                        "Progressing",
                        "Unknown",
                        "DeploymentPaused",
                        "Deployment is paused".into(),
                    ),
                );
            }
        } else {
            if reason.as_deref() == Some("DeploymentPaused") {
                set_condition(
                    &mut conds,
                    condition(
                        "Progressing",
                        "Unknown",
                        "DeploymentResumed",
                        "Deployment is resumed".into(),
                    ),
                );
            }
            if let Some(h) = self.progress_hint.clone() {
                set_condition(&mut conds, h);
            }
            let deadline = self.spec().progress_deadline_seconds.unwrap_or(600);
            let cur = conds.iter().find(|c| c.type_ == "Progressing").cloned();
            let complete_cond = replicas == updated
                && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
            if deadline != i32::MAX && !complete_cond {
                let complete = updated == self.replicas
                    && replicas == self.replicas
                    && available == self.replicas;
                let progressed = updated > old.updated_replicas.unwrap_or(0)
                    || ready > old.ready_replicas.unwrap_or(0)
                    || available > old.available_replicas.unwrap_or(0)
                    || (replicas - updated)
                        < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0));
                let name = new_name.clone().unwrap_or_default();
                if complete && new_name.is_some() {
                    let mut c = condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet {name:?} has successfully progressed."),
                    );
                    if let Some(t) = cur.as_ref().filter(|c| c.status == "True") {
                        c.last_transition_time = t.last_transition_time.clone();
                    }
                    conds.retain(|c| c.type_ != "Progressing");
                    conds.push(c);
                } else if progressed && new_name.is_some() {
                    let mut c = condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet {name:?} is progressing."),
                    );
                    if let Some(t) = cur.as_ref().filter(|c| c.status == "True") {
                        c.last_transition_time = t.last_transition_time.clone();
                    }
                    conds.retain(|c| c.type_ != "Progressing");
                    conds.push(c);
                    requeue = Duration::from_secs(u64::try_from(deadline).unwrap_or(600) + 1);
                } else if let Some(c) = &cur {
                    let timed_out = c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                        || c.last_update_time.as_ref().is_some_and(|t| {
                            Timestamp::now().as_second() - t.0.as_second() > i64::from(deadline)
                        });
                    if timed_out {
                        set_condition(
                            &mut conds,
                            condition(
                                "Progressing",
                                "False",
                                "ProgressDeadlineExceeded",
                                format!("ReplicaSet {name:?} has timed out progressing."),
                            ),
                        );
                    } else if let Some(t) = &c.last_update_time {
                        let left =
                            i64::from(deadline) - (Timestamp::now().as_second() - t.0.as_second());
                        requeue = Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0) + 1);
                    }
                }
            }
        }
        let status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: (replicas > 0).then_some(replicas),
            updated_replicas: (updated > 0).then_some(updated),
            ready_replicas: (ready > 0).then_some(ready),
            available_replicas: (available > 0).then_some(available),
            unavailable_replicas: {
                let u = (self.replicas - available).max(0);
                (u > 0).then_some(u)
            },
            terminating_replicas: None,
            conditions: Some(conds),
            collision_count: self.collision_count,
        };
        if self.d.status.as_ref() != Some(&status) {
            let mut body = serde_json::to_value(&status).unwrap_or(Value::Null);
            if let Some(o) = body.as_object_mut() {
                for k in [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                    "unavailableReplicas",
                ] {
                    o.entry(k).or_insert(Value::Null);
                }
            }
            Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns)
                .patch_status(
                    &self.name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": body})),
                )
                .await
                .map_err(Error::api(format!(
                    "update status of deployment {}/{}",
                    self.ns, self.name
                )))?;
        }
        let complete =
            updated == self.replicas && replicas == self.replicas && available == self.replicas;
        if complete && !paused {
            self.cleanup(all, new).await?;
        }
        if !complete && !paused {
            requeue = requeue.min(Duration::from_secs(30));
        }
        Ok(Action::requeue(requeue))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ios(s: &str) -> IntOrString {
        match s.parse() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        }
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        assert_eq!(fenceposts(None, None, 3).unwrap(), (1, 0));
        assert_eq!(fenceposts(None, None, 4).unwrap(), (1, 1));
        assert_eq!(fenceposts(None, None, 10).unwrap(), (3, 2));
        assert_eq!(
            fenceposts(Some(&ios("0")), Some(&ios("0")), 5).unwrap(),
            (0, 1)
        );
        assert_eq!(
            fenceposts(Some(&ios("50%")), Some(&ios("2")), 3).unwrap(),
            (2, 2)
        );
        assert!(fenceposts(Some(&ios("x")), None, 3).is_err());
    }

    #[test]
    fn hash_ignores_its_label_and_changes_with_collisions() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        let mut labeled = t.clone();
        labeled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "x".into());
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&labeled, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert!(templates_equal(&t, &labeled));
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx".into());
        assert!(!templates_equal(&t, &other));
    }
}
