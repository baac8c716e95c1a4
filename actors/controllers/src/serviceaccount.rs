//! The ServiceAccount and root-CA publisher loops: every active Namespace has a `default`
//! ServiceAccount and a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::runner::LoopCtx;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::Shared;
use crate::error::{Error, is_status};
use crate::runner::{self, Backoff};

/// The ConfigMap with the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

struct Ctx {
    client: kube::Client,
    ca: String,
    backoff: Backoff,
}

/// The `serviceaccount` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        client: client.clone(),
        ca: shared.config.root_ca_pem.clone(),
        backoff: Backoff::default(),
    });
    let to_ns = |meta: &ObjectMeta| meta.namespace.as_deref().map(ObjectRef::<Namespace>::new);
    let stream = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields("metadata.name=default"),
        move |sa| to_ns(&sa.metadata),
    )
    .watches(
        Api::<ConfigMap>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
        move |cm| to_ns(&cm.metadata),
    )
    .run(
        reconcile,
        |n, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&n.metadata)),
        data,
    );
    runner::drive(ctx, "serviceaccount", stream).await
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().ok_or(Error::Missing {
        kind: "Namespace",
        field: "metadata.name",
    })?;
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_owned()),
        namespace: Some(name.clone()),
        ..ObjectMeta::default()
    };
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    match sas.get("default").await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {
            let sa = ServiceAccount {
                metadata: meta("default"),
                ..ServiceAccount::default()
            };
            match sas.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => {}
                // The namespace may be going away under us.
                Err(e) if is_status(&e, 403) || is_status(&e, 404) => {
                    return Ok(Action::await_change());
                }
                Err(e) => {
                    return Err(Error::api(format!("create serviceaccount {name}/default"))(
                        e,
                    ));
                }
            }
        }
        Err(e) => return Err(Error::api(format!("get serviceaccount {name}/default"))(e)),
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data: BTreeMap<String, String> = [("ca.crt".to_owned(), ctx.ca.clone())].into();
    match cms.get(ROOT_CA_CONFIGMAP).await {
        Ok(cm) if cm.data.as_ref() == Some(&data) => {}
        Ok(mut cm) => {
            cm.data = Some(data);
            cms.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm)
                .await
                .map_err(Error::api(format!(
                    "update configmap {name}/{ROOT_CA_CONFIGMAP}"
                )))?;
        }
        Err(e) if is_status(&e, 404) => {
            let mut m = meta(ROOT_CA_CONFIGMAP);
            m.annotations = Some(
                [("kubernetes.io/description".to_owned(), "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_owned())].into(),
            );
            let cm = ConfigMap {
                metadata: m,
                data: Some(data),
                ..ConfigMap::default()
            };
            match cms.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => {}
                Err(e) if is_status(&e, 403) || is_status(&e, 404) => {
                    return Ok(Action::await_change());
                }
                Err(e) => {
                    return Err(Error::api(format!(
                        "create configmap {name}/{ROOT_CA_CONFIGMAP}"
                    ))(e));
                }
            }
        }
        Err(e) => {
            return Err(Error::api(format!(
                "get configmap {name}/{ROOT_CA_CONFIGMAP}"
            ))(e));
        }
    }
    ctx.backoff.succeeded(&runner::key(&ns.metadata));
    Ok(Action::await_change())
}
