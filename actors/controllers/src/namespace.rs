//! The Namespace controller: a Namespace being deleted is emptied (every namespaced resource found
//! through discovery is deleted by collection, in the background), then, once nothing is left
//! (pods may take a while: the kubelet removes them after their containers stop), the `kubernetes`
//! finalizer is removed through `PUT namespaces/{name}/finalize` and the API server deletes it.
//! While waiting, the status conditions say what remains, like upstream.

use std::sync::Arc;
use std::time::Duration;

use crate::runner::LoopCtx;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::Shared;
use crate::error::{Error, is_status};
use crate::runner::{self, Backoff};

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

struct Ctx {
    client: kube::Client,
    backoff: Backoff,
}

/// The `namespace` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        client: client.clone(),
        backoff: Backoff::default(),
    });
    let stream = Controller::new(Api::<Namespace>::all(client), watcher::Config::default()).run(
        reconcile,
        |n, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&n.metadata)),
        data,
    );
    runner::drive(ctx, "namespace", stream).await
}

/// Namespaced resources that can be listed and deleted, by preferred version.
pub(crate) async fn namespaced_resources(client: &kube::Client) -> Result<Vec<ApiResource>, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
            {
                out.push(ar);
            }
        }
    }
    Ok(out)
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(Timestamp::now())),
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().ok_or(Error::Missing {
        kind: "Namespace",
        field: "metadata.name",
    })?;
    let mut remaining: Vec<(String, usize)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for ar in namespaced_resources(&ctx.client).await? {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &ar);
        let list = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if is_status(&e, 404) || is_status(&e, 405) => continue,
            Err(e) => {
                failures.push(format!("{}: {e}", ar.plural));
                continue;
            }
        };
        if list.items.is_empty() {
            continue;
        }
        remaining.push((ar.plural.clone(), list.items.len()));
        let pending: Vec<_> = list
            .items
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .collect();
        if pending.is_empty() {
            continue;
        }
        let dp = DeleteParams::background();
        if let Err(e) = api.delete_collection(&dp, &ListParams::default()).await {
            // Not every resource has deletecollection: delete one by one.
            tracing::debug!(resource = ar.plural, error = %e, "deletecollection failed");
            for o in pending {
                let n = o.metadata.name.clone().unwrap_or_default();
                if let Err(e) = api.delete(&n, &dp).await
                    && !is_status(&e, 404)
                {
                    failures.push(format!("{}/{n}: {e}", ar.plural));
                }
            }
        }
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    if remaining.is_empty() && failures.is_empty() {
        let mut ns2 = (*ns).clone();
        if let Some(spec) = ns2.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &ns2)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(Error::api(format!("finalize namespace {name}"))(e)),
        }
        ctx.backoff.succeeded(&runner::key(&ns.metadata));
        return Ok(Action::await_change());
    }
    let content = if remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            "False",
            "ContentDeleted",
            "All content successfully removed".into(),
        )
    } else {
        let what: Vec<String> = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", what.join(", ")),
        )
    };
    let failed = if failures.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                failures.len(),
                failures.join(", ")
            ),
        )
    };
    let discovery_ok = condition(
        "NamespaceDeletionDiscoveryFailure",
        "False",
        "ResourcesDiscovered",
        "All resources successfully discovered".into(),
    );
    let conds = vec![discovery_ok, failed, content];
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let same = conds.iter().all(|c| {
        current
            .iter()
            .any(|x| x.type_ == c.type_ && x.status == c.status && x.message == c.message)
    });
    if !same {
        let patch = json!({"status": {"conditions": conds}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(namespace = name, error = %e, "namespace conditions not set");
        }
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}
