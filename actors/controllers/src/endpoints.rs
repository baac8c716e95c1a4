//! The Endpoints and EndpointSlice controllers: every Service with a selector gets an Endpoints
//! object named after it and EndpointSlices labelled `kubernetes.io/service-name`, listing the
//! selected Pods that have an IP, with ports resolved from each service port's `targetPort` (a
//! number, or a container port name looked up in the pod).
//!
//! Endpoints carry ready pods in `addresses` and the others in `notReadyAddresses`; terminating
//! pods are left out. Slices keep terminating pods with `ready: false, terminating: true` and
//! `serving` = the pod's readiness. Services without a selector (like `default/kubernetes`, whose
//! Endpoints the API server keeps, or a Service with hand-written Endpoints) get no Endpoints from
//! here; their Endpoints are mirrored into EndpointSlices (upstream's EndpointSlice mirroring
//! controller), which is what kube-proxy reads. Endpoints whose Service is gone are deleted;
//! slices are owned by their Service and go with it through the garbage collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::runner::LoopCtx;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::error::{Error, is_status};
use crate::runner::{self, Backoff};
use crate::{Shared, pods};

/// The label tying a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// [`MANAGED_BY_LABEL`] of slices mirrored from the Endpoints of a Service without a selector.
pub const MIRROR_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints with this label set to "true" are not mirrored (as upstream).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

struct Ctx {
    client: kube::Client,
    backoff: Backoff,
}

/// One endpoint: a pod with an IP and its readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    /// The pod IP.
    pub ip: String,
    /// The pod's node.
    pub node: Option<String>,
    /// A reference to the pod.
    pub target: ObjectReference,
    /// Ready (and not terminating), or the service publishes not-ready addresses.
    pub ready: bool,
    /// The pod's Ready condition.
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// Endpoints grouped by their resolved ports (sorted by IP).
pub type Groups = BTreeMap<Vec<(Option<String>, i32, String, Option<String>)>, Vec<PodEndpoint>>;

/// The service's endpoints, grouped by resolved port set. `include_terminating` for slices.
pub fn compute(svc: &Service, pods: &[Pod], include_terminating: bool) -> Groups {
    let mut groups = Groups::new();
    let Some(spec) = &svc.spec else { return groups };
    let Some(sel) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return groups;
    };
    let publish = spec.publish_not_ready_addresses == Some(true);
    let empty = BTreeMap::new();
    for pod in pods {
        if !crate::selector::map_matches(sel, pod.metadata.labels.as_ref().unwrap_or(&empty))
            || pods::is_terminal(pod)
        {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if terminating && !include_terminating {
            continue;
        }
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let mut ports = Vec::new();
        for sp in spec.ports.iter().flatten() {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port = match &sp.target_port {
                None => Some(sp.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(name)) => pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| {
                        p.name.as_deref() == Some(name.as_str())
                            && p.protocol.as_deref().unwrap_or("TCP") == protocol
                    })
                    .map(|p| p.container_port)
                    .or_else(|| name.parse().ok()),
            };
            if let Some(port) = port {
                ports.push((sp.name.clone(), port, protocol, sp.app_protocol.clone()));
            }
        }
        let serving = pods::is_ready(pod);
        groups.entry(ports).or_default().push(PodEndpoint {
            ip,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target: ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            ready: (serving || publish) && !terminating,
            serving: serving || publish,
            terminating,
        });
    }
    for eps in groups.values_mut() {
        eps.sort_by(|a, b| a.ip.cmp(&b.ip));
    }
    groups
}

/// The Endpoints subsets of `groups`.
pub fn subsets(groups: &Groups) -> Vec<EndpointSubset> {
    let address = |e: &PodEndpoint| EndpointAddress {
        ip: e.ip.clone(),
        node_name: e.node.clone(),
        target_ref: Some(e.target.clone()),
        hostname: None,
    };
    groups
        .iter()
        .map(|(ports, eps)| {
            let ready: Vec<_> = eps.iter().filter(|e| e.ready).map(address).collect();
            let not_ready: Vec<_> = eps.iter().filter(|e| !e.ready).map(address).collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .iter()
                        .map(|(name, port, protocol, app)| EndpointPort {
                            name: name.clone(),
                            port: *port,
                            protocol: Some(protocol.clone()),
                            app_protocol: app.clone(),
                        })
                        .collect()
                }),
            }
        })
        .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
        .collect()
}

/// Services in the store whose selector matches `pod`.
fn services_of(store: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    store
        .state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| !sel.is_empty() && crate::selector::map_matches(sel, labels))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

async fn selected_pods(client: &kube::Client, svc: &Service) -> Result<Option<Vec<Pod>>, Error> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let Some(sel) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let query: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&query.join(",")))
        .await
        .map_err(Error::api(format!("list pods in {ns}")))?;
    Ok(Some(pods.items))
}

/// The `endpoints` service.
pub(crate) async fn run_endpoints(
    ctx: LoopCtx,
    shared: Arc<Shared>,
) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        client: client.clone(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let services = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod| services_of(&store, &pod),
        )
        .run(
            reconcile_endpoints,
            |s, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&s.metadata)),
            data.clone(),
        )
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string()));
    // Endpoints whose Service is gone are deleted.
    let orphans = Controller::new(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Service>::all(client),
        watcher::Config::default(),
        |svc| {
            Some(
                ObjectRef::<Endpoints>::new(svc.metadata.name.as_deref().unwrap_or(""))
                    .within(svc.metadata.namespace.as_deref().unwrap_or("")),
            )
        },
    )
    .run(
        reconcile_orphan_endpoints,
        |e, _err: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&e.metadata)),
        data,
    )
    .map(|r| r.map(|_| ()).map_err(|e| e.to_string()));
    runner::drive(ctx, "endpoints", futures::stream::select(services, orphans)).await
}

async fn reconcile_endpoints(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(pods) = selected_pods(&ctx.client, &svc).await? else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let subsets = subsets(&compute(&svc, &pods, false));
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = match api.get(&name).await {
        Ok(e) => Some(e),
        Err(e) if is_status(&e, 404) => None,
        Err(e) => return Err(Error::api(format!("get endpoints {ns}/{name}"))(e)),
    };
    let labels = svc.metadata.labels.clone();
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match existing {
        Some(e) if e.subsets == subsets && e.metadata.labels == labels => {}
        Some(mut e) => {
            e.subsets = subsets;
            e.metadata.labels = labels;
            api.replace(&name, &PostParams::default(), &e)
                .await
                .map_err(Error::api(format!("update endpoints {ns}/{name}")))?;
        }
        None => {
            let e = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels,
                    ..ObjectMeta::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &e).await {
                Ok(_) => {}
                Err(err) if is_status(&err, 409) => {
                    return Err(Error::Waiting(format!("endpoints {ns}/{name} appeared")));
                }
                Err(err) => return Err(Error::api(format!("create endpoints {ns}/{name}"))(err)),
            }
        }
    }
    ctx.backoff.succeeded(&runner::key(&svc.metadata));
    Ok(Action::requeue(Duration::from_secs(60)))
}

async fn reconcile_orphan_endpoints(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ep.metadata.namespace.clone().unwrap_or_default();
    let name = ep.metadata.name.clone().unwrap_or_default();
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("control-plane.alpha.kubernetes.io/leader"));
    if leader || (ns == "default" && name == "kubernetes") {
        return Ok(Action::await_change());
    }
    match Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .get(&name)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_status(&e, 404) => {
            match Api::<Endpoints>::namespaced(ctx.client.clone(), &ns)
                .delete(&name, &Default::default())
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if is_status(&e, 404) => Ok(Action::await_change()),
                Err(e) => Err(Error::api(format!("delete endpoints {ns}/{name}"))(e)),
            }
        }
        Err(e) => Err(Error::api(format!("get service {ns}/{name}"))(e)),
    }
}

/// The `endpointslice` service.
pub(crate) async fn run_endpointslices(
    ctx: LoopCtx,
    shared: Arc<Shared>,
) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        client: client.clone(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let stream = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod| services_of(&store, &pod),
        )
        // Endpoints of selector-less Services are mirrored: their changes reconcile the Service
        // of the same name.
        .watches(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            |ep| {
                let ns = ep.metadata.namespace.clone()?;
                let name = ep.metadata.name.clone()?;
                Some(ObjectRef::<Service>::new(&name).within(&ns))
            },
        )
        .owns(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
        )
        .run(
            reconcile_slices,
            |s, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&s.metadata)),
            data,
        );
    runner::drive(ctx, "endpointslice", stream).await
}

/// The slices `groups` should be, without names.
pub fn slices(svc: &Service, groups: &Groups) -> Vec<EndpointSlice> {
    slices_managed_by(svc, groups, MANAGED_BY)
}

/// [`slices`] labelled as managed by `managed_by`.
fn slices_managed_by(svc: &Service, groups: &Groups, managed_by: &str) -> Vec<EndpointSlice> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), managed_by.into());
    let slice = |ports: Vec<SlicePort>, endpoints: Vec<Endpoint>| EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![crate::pods::controller_ref(
                "v1",
                "Service",
                &svc.metadata,
            )]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    };
    let mut out: Vec<EndpointSlice> = groups
        .iter()
        .map(|(ports, eps)| {
            let ports = ports
                .iter()
                .map(|(name, port, protocol, app)| SlicePort {
                    name: Some(name.clone().unwrap_or_default()),
                    port: Some(*port),
                    protocol: Some(protocol.clone()),
                    app_protocol: app.clone(),
                })
                .collect();
            let endpoints = eps
                .iter()
                .map(|e| Endpoint {
                    addresses: vec![e.ip.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(e.ready),
                        serving: Some(e.serving),
                        terminating: Some(e.terminating),
                    }),
                    node_name: e.node.clone(),
                    target_ref: Some(e.target.clone()),
                    ..Endpoint::default()
                })
                .collect();
            slice(ports, endpoints)
        })
        .collect();
    if out.is_empty() {
        // An empty placeholder, like upstream, so consumers see the service has no endpoints.
        out.push(slice(Vec::new(), Vec::new()));
    }
    out
}

/// The endpoints of a Endpoints object, grouped like [`compute`]'s (for mirroring).
pub fn mirrored(ep: &Endpoints) -> Groups {
    let mut groups = Groups::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<_> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                (p.name.clone(), p.port, protocol, p.app_protocol.clone())
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let eps = groups.entry(ports).or_default();
        for (address, ready) in ready.chain(not_ready) {
            eps.push(PodEndpoint {
                ip: address.ip.clone(),
                node: address.node_name.clone(),
                target: address.target_ref.clone().unwrap_or_default(),
                ready,
                serving: ready,
                terminating: false,
            });
        }
        eps.sort_by(|a, b| a.ip.cmp(&b.ip));
    }
    groups
}

async fn reconcile_slices(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let (wanted, managed_by) = match selected_pods(&ctx.client, &svc).await? {
        Some(pods) => (slices(&svc, &compute(&svc, &pods, true)), MANAGED_BY),
        None => {
            // No selector: mirror the Endpoints of the same name, if any (ExternalName
            // Services have none to mirror).
            let ep = Api::<Endpoints>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await
                .map_err(Error::api(format!("get endpoints {ns}/{name}")))?
                .filter(|ep| {
                    ep.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SKIP_MIRROR_LABEL))
                        .is_none_or(|v| v != "true")
                });
            let external =
                svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
            let wanted = match ep {
                Some(ep) if !external => slices_managed_by(&svc, &mirrored(&ep), MIRROR_MANAGED_BY),
                _ => Vec::new(),
            };
            (wanted, MIRROR_MANAGED_BY)
        }
    };
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={managed_by}"
        )))
        .await
        .map_err(Error::api(format!("list endpointslices in {ns}")))?
        .items;
    for want in wanted {
        let pos = existing
            .iter()
            .position(|s| s.ports == want.ports)
            .or_else(|| (!existing.is_empty()).then_some(0));
        match pos {
            Some(i) => {
                let mut cur = existing.remove(i);
                if cur.endpoints != want.endpoints
                    || cur.ports != want.ports
                    || cur.metadata.labels != want.metadata.labels
                {
                    let slice_name = cur.metadata.name.clone().unwrap_or_default();
                    cur.endpoints = want.endpoints;
                    cur.ports = want.ports;
                    cur.metadata.labels = want.metadata.labels;
                    api.replace(&slice_name, &PostParams::default(), &cur)
                        .await
                        .map_err(Error::api(format!(
                            "update endpointslice {ns}/{slice_name}"
                        )))?;
                }
            }
            None => {
                api.create(&PostParams::default(), &want)
                    .await
                    .map_err(Error::api(format!("create endpointslice for {ns}/{name}")))?;
            }
        }
    }
    for extra in existing {
        let slice_name = extra.metadata.name.unwrap_or_default();
        match api.delete(&slice_name, &Default::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "delete endpointslice {ns}/{slice_name}"
                ))(e));
            }
        }
    }
    ctx.backoff.succeeded(&runner::key(&svc.metadata));
    Ok(Action::requeue(Duration::from_secs(60)))
}
