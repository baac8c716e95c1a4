//! The garbage collector: dependents whose owners are all gone are deleted; owners deleted with
//! `propagationPolicy: Foreground` wait (finalizer `foregroundDeletion`) until their blocking
//! dependents are gone; owners deleted with `Orphan` (finalizer `orphan`) first have their
//! dependents' owner references removed.
//!
//! Layout like upstream's graph builder: one watcher per resource found through discovery (every
//! resource that can be listed, watched and deleted) feeds a single task that keeps the owner
//! graph (uid → object, owner uid → dependents) and a deduplicated work queue of uids. An owner
//! missing from the graph is confirmed gone with a live GET (404, or another uid under the
//! name) before anything is deleted, so a cold or partial graph never causes a wrong deletion.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::runner::LoopCtx;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::mpsc;

use crate::Shared;
use crate::error::{Error, is_status};

/// The finalizer of foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of orphaning deletion.
pub const ORPHAN: &str = "orphan";

/// One object in the graph.
#[derive(Debug, Clone)]
struct Node {
    res: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// What the watchers report.
enum Msg {
    Apply(usize, DynamicObject),
    Delete(DynamicObject),
    Init(usize),
    InitDone(usize),
}

/// A discovered resource.
struct Resource {
    ar: ApiResource,
    namespaced: bool,
}

struct Gc {
    client: kube::Client,
    resources: Vec<Resource>,
    /// (group, kind) → resource index.
    kinds: HashMap<(String, String), usize>,
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    /// uids seen during a resource's current initial list.
    init_seen: HashMap<usize, HashSet<String>>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// uids to retry later (an API error), with their attempt count.
    retry: HashMap<String, u32>,
}

/// Resources excluded from collection: high churn, never owned.
const SKIPPED: &[&str] = &["events", "leases"];

/// The `garbagecollector` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut resources = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v))
                && !SKIPPED.contains(&ar.plural.as_str())
            {
                resources.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    ar,
                });
            }
        }
    }
    let kinds = resources
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.ar.group.clone(), r.ar.kind.clone()), i))
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let token = ctx.token();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, r) in resources.iter().enumerate() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &r.ar);
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                let msg = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Msg::Apply(i, o),
                    Ok(watcher::Event::Delete(o)) => Msg::Delete(o),
                    Ok(watcher::Event::Init) => Msg::Init(i),
                    Ok(watcher::Event::InitDone) => Msg::InitDone(i),
                    Err(e) => {
                        tracing::debug!(error = %e, "garbage collector watch error");
                        continue;
                    }
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut gc = Gc {
        client,
        resources,
        kinds,
        nodes: HashMap::new(),
        dependents: HashMap::new(),
        init_seen: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        retry: HashMap::new(),
    };
    ctx.ready();
    let mut retry_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(m) => gc.observe(m),
                None => break,
            },
            _ = retry_tick.tick() => {
                let retry: Vec<String> = gc.retry.keys().cloned().collect();
                for uid in retry {
                    gc.enqueue(uid);
                }
            }
            Some(uid) = async { gc.queue.pop_front() }, if !gc.queue.is_empty() => {
                gc.queued.remove(&uid);
                match gc.process(&uid).await {
                    Ok(()) => { gc.retry.remove(&uid); }
                    Err(e) => {
                        tracing::debug!(uid, error = %e, "garbage collection failed; retrying");
                        let n = gc.retry.entry(uid).or_insert(0);
                        *n += 1;
                    }
                }
            }
        }
    }
    tasks.abort_all();
    Ok(())
}

impl Gc {
    fn enqueue(&mut self, uid: String) {
        if self.queued.insert(uid.clone()) {
            self.queue.push_back(uid);
        }
    }

    fn observe(&mut self, msg: Msg) {
        match msg {
            Msg::Apply(res, o) => self.upsert(res, o),
            Msg::Delete(o) => {
                if let Some(uid) = o.metadata.uid.clone() {
                    self.remove(&uid);
                }
            }
            Msg::Init(res) => {
                self.init_seen.insert(res, HashSet::new());
            }
            Msg::InitDone(res) => {
                let seen = self.init_seen.remove(&res).unwrap_or_default();
                let stale: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(uid, n)| n.res == res && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in stale {
                    self.remove(&uid);
                }
            }
        }
    }

    fn upsert(&mut self, res: usize, o: DynamicObject) {
        let Some(uid) = o.metadata.uid.clone() else {
            return;
        };
        if let Some(seen) = self.init_seen.get_mut(&res) {
            seen.insert(uid.clone());
        }
        let owners = o.metadata.owner_references.clone().unwrap_or_default();
        if let Some(old) = self.nodes.get(&uid) {
            for ow in &old.owners {
                if let Some(d) = self.dependents.get_mut(&ow.uid) {
                    d.remove(&uid);
                }
            }
        }
        for ow in &owners {
            self.dependents
                .entry(ow.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        let node = Node {
            res,
            namespace: o.metadata.namespace.clone(),
            name: o.metadata.name.clone().unwrap_or_default(),
            owners,
            deleting: o.metadata.deletion_timestamp.is_some(),
            finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
        };
        let interesting = !node.owners.is_empty()
            || (node.deleting
                && node
                    .finalizers
                    .iter()
                    .any(|f| f == FOREGROUND || f == ORPHAN));
        self.nodes.insert(uid.clone(), node);
        if interesting {
            self.enqueue(uid);
        }
    }

    fn remove(&mut self, uid: &str) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        for ow in &node.owners {
            if let Some(d) = self.dependents.get_mut(&ow.uid) {
                d.remove(uid);
            }
            // An owner waiting for its dependents may now be done.
            if self.nodes.contains_key(&ow.uid) {
                self.enqueue(ow.uid.clone());
            }
        }
        let deps: Vec<String> = self
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for d in deps {
            self.enqueue(d);
        }
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        let r = &self.resources[node.res];
        match (&node.namespace, r.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            _ => Api::all_with(self.client.clone(), &r.ar),
        }
    }

    /// Whether the owner `o` of an object in `namespace` exists (checked live if not in the graph).
    /// `None`: cannot tell (unknown kind).
    async fn owner_exists(
        &self,
        o: &OwnerReference,
        namespace: Option<&str>,
    ) -> Result<Option<bool>, Error> {
        if self.nodes.contains_key(&o.uid) {
            return Ok(Some(true));
        }
        let group = o
            .api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned();
        let Some(&res) = self.kinds.get(&(group, o.kind.clone())) else {
            return Ok(None);
        };
        let r = &self.resources[res];
        let api: Api<DynamicObject> = match (namespace, r.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            (None, true) => return Ok(Some(false)),
            _ => Api::all_with(self.client.clone(), &r.ar),
        };
        match api.get_metadata(&o.name).await {
            Ok(m) => Ok(Some(m.metadata.uid.as_deref() == Some(o.uid.as_str()))),
            Err(e) if is_status(&e, 404) => Ok(Some(false)),
            Err(e) => Err(Error::api(format!("get {} {}", o.kind, o.name))(e)),
        }
    }

    async fn process(&mut self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.nodes.get(uid).cloned() else {
            return Ok(());
        };
        let api = self.api(&node);
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            let deps: Vec<String> = self
                .dependents
                .get(uid)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default();
            for d in deps {
                let Some(dn) = self.nodes.get(&d).cloned() else {
                    continue;
                };
                let owners: Vec<&OwnerReference> =
                    dn.owners.iter().filter(|o| o.uid != uid).collect();
                let patch = json!({"metadata": {"uid": d, "ownerReferences": owners}});
                match self
                    .api(&dn)
                    .patch(&dn.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                    Err(e) => return Err(Error::api(format!("orphan {}", dn.name))(e)),
                }
            }
            return self.remove_finalizer(&api, &node, ORPHAN).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            let deps: Vec<String> = self
                .dependents
                .get(uid)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default();
            let mut blocking = 0;
            for d in deps {
                let Some(dn) = self.nodes.get(&d).cloned() else {
                    continue;
                };
                let blocks = dn
                    .owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if !dn.deleting {
                    let dp = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        preconditions: Some(Preconditions {
                            uid: Some(d.clone()),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    match self.api(&dn).delete(&dn.name, &dp).await {
                        Ok(_) => {}
                        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                        Err(e) => {
                            return Err(Error::api(format!("delete dependent {}", dn.name))(e));
                        }
                    }
                }
            }
            if blocking == 0 {
                return self.remove_finalizer(&api, &node, FOREGROUND).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        let mut absent = BTreeSet::new();
        let mut owner_deleting_foreground = false;
        for o in &node.owners {
            match self.owner_exists(o, node.namespace.as_deref()).await? {
                Some(false) => {
                    absent.insert(o.uid.clone());
                }
                Some(true) => {
                    if let Some(on) = self.nodes.get(&o.uid)
                        && on.deleting
                        && on.finalizers.iter().any(|f| f == FOREGROUND)
                    {
                        owner_deleting_foreground = true;
                    }
                }
                None => {}
            }
        }
        if absent.len() == node.owners.len() {
            tracing::debug!(name = node.name, "deleting object whose owners are gone");
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&node.name, &dp).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
                Err(e) => Err(Error::api(format!("delete {}", node.name))(e)),
            }
        } else if !absent.is_empty() {
            // Drop the dangling references, keep the object.
            let owners: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|o| !absent.contains(&o.uid))
                .collect();
            let patch = json!({"metadata": {"uid": uid, "ownerReferences": owners}});
            match api
                .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
                Err(e) => Err(Error::api(format!("drop dangling owners of {}", node.name))(e)),
            }
        } else if owner_deleting_foreground {
            // The owner's foreground deletion deletes us; make sure it runs.
            for o in &node.owners {
                self.enqueue(o.uid.clone());
            }
            Ok(())
        } else {
            Ok(())
        }
    }

    async fn remove_finalizer(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        finalizer: &str,
    ) -> Result<(), Error> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"finalizers": rest}});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(Error::api(format!(
                "remove finalizer {finalizer} of {}",
                node.name
            ))(e)),
        }
    }
}
