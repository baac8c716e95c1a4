//! The Kubernetes API server.
//!
//! Owns the REST API (discovery, OpenAPI, CRUD, list/watch, patch and apply, subresources,
//! custom resources, service-account tokens and bearer authentication) and is the only component
//! that touches the datastore. It is a kernel
//! service: [`serve`] bootstraps the cluster's built-in objects, then serves requests through
//! [`router`], which the TLS front door mounts and in-process components call directly.

mod admission;
mod apply;
mod authn;
mod cache;
mod crd;
mod discovery;
mod error;
mod handlers;
mod meta;
mod nodeproxy;
mod openapi;
mod printing;
mod request;
mod resources;
mod reviews;
mod services;
mod store;
mod tokens;
mod watch;

pub use error::ApiError;
pub use nodeproxy::{KubeletDialer, KubeletStream};
pub use resources::Catalogue;
pub use tokens::{Issuer as ServiceAccountIssuer, KeyError as ServiceAccountKeyError};

use datastore::Backend;
use ipnet::IpNet;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;

/// Settings the API server needs from the command line.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `--service-cidr`.
    pub service_cidr: IpNet,
    /// `--cluster-dns` (reserved in the service range).
    pub cluster_dns: IpAddr,
    /// The address clients should use (`host:port`), for legacy discovery.
    pub advertise: String,
    /// The node IP and port the `kubernetes` Service's endpoints point to.
    pub endpoint: (IpAddr, u16),
}

/// Shared state of every request.
#[derive(Clone, Debug)]
pub struct ApiState {
    store: store::ObjectStore,
    cache: cache::WatchCache,
    catalogue: Catalogue,
    config: Arc<ApiConfig>,
    dialer: nodeproxy::DialerSlot,
    issuer: authn::IssuerSlot,
}

/// The datastore could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `--datastore-endpoint` is malformed.
    #[error(transparent)]
    Endpoint(#[from] datastore::EndpointError),
    /// The database is unusable (corrupt file, unreachable server, bad credentials).
    #[error(transparent)]
    Store(#[from] datastore::StoreError),
}

impl ApiState {
    /// Open the datastore `endpoint` names (K3s's `--datastore-endpoint`; empty for SQLite
    /// under `data_dir`) and build the state over it.
    pub async fn open(
        endpoint: &str,
        data_dir: &std::path::Path,
        config: ApiConfig,
    ) -> Result<Self, OpenError> {
        Self::open_with(
            endpoint,
            data_dir,
            config,
            &datastore::StoreOptions::default(),
        )
        .await
    }

    /// [`ApiState::open`] with datastore options (e.g. the TLS files of an external datastore).
    pub async fn open_with(
        endpoint: &str,
        data_dir: &std::path::Path,
        config: ApiConfig,
        options: &datastore::StoreOptions,
    ) -> Result<Self, OpenError> {
        let endpoint = datastore::parse_endpoint(endpoint, data_dir)?;
        let backend = datastore::open(&endpoint, options).await?;
        Ok(Self::new(backend, config))
    }

    /// Stop background work of the datastore (compaction, watch feeds).
    pub async fn close(&self) {
        self.store.backend().close().await;
    }

    /// The sealed cluster identity stored under `key`, if any (see `pki::bootstrap`).
    pub async fn bootstrap_data(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(self
            .store
            .backend()
            .get(key, None)
            .await?
            .map(|kv| kv.value.to_vec()))
    }

    /// Whether any cluster identity is stored (under any token).
    pub async fn has_bootstrap_data(&self) -> Result<bool, ApiError> {
        Ok(self.store.backend().count("/bootstrap/").await?.0 > 0)
    }

    /// Store the sealed cluster identity under `key`; `false` when another server was first.
    pub async fn put_bootstrap_data(&self, key: &str, sealed: Vec<u8>) -> Result<bool, ApiError> {
        match self.store.backend().create(key, sealed.into(), None).await {
            Ok(_) => Ok(true),
            Err(datastore::StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// State over an opened datastore.
    pub fn new(backend: Arc<dyn Backend>, config: ApiConfig) -> Self {
        ApiState {
            store: store::ObjectStore::new(backend),
            cache: cache::WatchCache::default(),
            catalogue: Catalogue::default(),
            config: Arc::new(config),
            dialer: nodeproxy::DialerSlot::default(),
            issuer: authn::IssuerSlot::default(),
        }
    }

    /// Route the pod subresources `log`, `exec`, `attach` and `portforward` to kubelets
    /// through `dialer` (shared by every clone of this state). Until it is set they answer
    /// 503: no node can be reached.
    pub fn set_kubelet_dialer(&self, dialer: Arc<dyn KubeletDialer>) {
        self.dialer.set(dialer);
    }

    /// Issue and accept service-account tokens signed by `issuer` (shared by every clone of this
    /// state). Until it is set, TokenRequests answer 503 and bearer tokens do not authenticate.
    pub fn set_service_account_issuer(&self, issuer: ServiceAccountIssuer) {
        self.issuer.set(issuer);
    }
}

/// The API as an axum router (mounted behind the front door, or called in process).
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let state = state.clone();
        async move { handlers::serve(state, req).await }
    })
}

/// The API server as a kernel service: bootstrap, report ready, run until stopped.
pub async fn run(state: ApiState, ctx: kernel::ServiceCtx) -> Result<(), ApiError> {
    bootstrap(&state).await?;
    ctx.ready();
    ctx.cancelled().await;
    Ok(())
}

/// Create what every cluster has from the start (idempotent): the four namespaces, the
/// `kubernetes` Service with its endpoints, and the custom resources of stored CRDs.
pub async fn bootstrap(state: &ApiState) -> Result<(), ApiError> {
    crd::load_all(state).await?;
    let admin = protocols::user::UserInfo::authenticated(
        "system:apiserver",
        [protocols::user::MASTERS.to_owned()],
    );
    let cat = &state.catalogue;
    let ns_res = cat.find("", "v1", "namespaces").ok_or(ApiError::NoRoute)?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let ctx = handlers::Ctx {
            s: state,
            r: ns_res.clone(),
            ns: None,
            q: request::Query::parse(Some("fieldManager=k3s")),
            user: &admin,
        };
        match handlers::create(
            &ctx,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let first_ip = services_first_ip(&state.config.service_cidr)?;
    let svc_res = cat.find("", "v1", "services").ok_or(ApiError::NoRoute)?;
    let ctx = handlers::Ctx {
        s: state,
        r: svc_res,
        ns: Some("default".into()),
        q: request::Query::parse(Some("fieldManager=k3s")),
        user: &admin,
    };
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": first_ip.to_string(), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": state.config.endpoint.1}]},
    });
    match handlers::create(&ctx, svc).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let (ip, port) = state.config.endpoint;
    let subsets = json!([{"addresses": [{"ip": ip.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}, "subsets": subsets});
    keep_current(state, &admin, ("", "v1", "endpoints"), ep, &["subsets"]).await?;
    // The same endpoints as an EndpointSlice (what kube-proxy reads), kept by the API server as
    // upstream does: the Endpoints above are marked skip-mirror.
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": address_type,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    keep_current(
        state,
        &admin,
        ("discovery.k8s.io", "v1", "endpointslices"),
        slice,
        &["endpoints", "ports"],
    )
    .await?;
    Ok(())
}

/// Creates `obj` in `default`, or, when it exists, sets its `fields` to `obj`'s (this server's
/// address or port may have changed since it was written).
async fn keep_current(
    state: &ApiState,
    user: &protocols::user::UserInfo,
    (group, version, resource): (&str, &str, &str),
    obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let r = state
        .catalogue
        .find(group, version, resource)
        .ok_or(ApiError::NoRoute)?;
    let ctx = handlers::Ctx {
        s: state,
        r,
        ns: Some("default".into()),
        q: request::Query::parse(Some("fieldManager=k3s")),
        user,
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match handlers::create(&ctx, obj.clone()).await {
        Ok(_) => Ok(()),
        Err(ApiError::AlreadyExists { .. }) => {
            handlers::update_with(&ctx, &name, None, handlers::Write::Update, |cur| {
                let mut new = cur.clone();
                for f in fields {
                    new[*f] = obj[*f].clone();
                }
                Ok(new)
            })
            .await
            .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

fn services_first_ip(net: &IpNet) -> Result<IpAddr, ApiError> {
    match net {
        IpNet::V4(v) => Ok(IpAddr::from(std::net::Ipv4Addr::from(
            u32::from(v.network()) + 1,
        ))),
        IpNet::V6(v) => Ok(IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(v.network()) + 1,
        ))),
    }
}
