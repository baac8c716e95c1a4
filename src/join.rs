//! The server's side of agents joining: node passwords kept in Secrets, and the router that puts
//! the K3s join endpoints and the agent tunnel in front of the API server.

use crate::inprocess;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use listener::supervisor::{NodePasswordError, NodePasswords};
use protocols::user::{MASTERS, UserInfo};
use std::collections::BTreeMap;

/// The namespace of the node-password Secrets.
const NAMESPACE: &str = "kube-system";
/// The key of the hash in a node-password Secret.
const HASH_KEY: &str = "hash";

/// Node passwords as Secrets `kube-system/<node>.node-password.k3s` (K3s's names), holding a
/// salted hash under `hash`.
#[derive(Clone)]
pub struct SecretNodePasswords {
    secrets: Api<Secret>,
}

impl std::fmt::Debug for SecretNodePasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretNodePasswords")
    }
}

impl SecretNodePasswords {
    /// Over the in-process API, as the supervisor's own identity.
    pub fn new(api: &axum::Router) -> Self {
        let client = inprocess::client(
            api.clone(),
            UserInfo::authenticated("system:k3s-supervisor", [MASTERS.to_owned()]),
        );
        SecretNodePasswords {
            secrets: Api::namespaced(client, NAMESPACE),
        }
    }
}

/// The Secret name for `node`'s password.
pub fn secret_name(node: &str) -> String {
    format!("{node}.node-password.k3s")
}

impl NodePasswords for SecretNodePasswords {
    fn get(&self, node: &str) -> BoxFuture<'static, Result<Option<String>, NodePasswordError>> {
        let (secrets, name) = (self.secrets.clone(), secret_name(node));
        Box::pin(async move {
            let s = secrets.get_opt(&name).await.map_err(|e| {
                NodePasswordError::Store(format!("reading Secret {NAMESPACE}/{name}: {e}"))
            })?;
            Ok(s.map(|s| {
                s.data
                    .and_then(|d| d.get(HASH_KEY).cloned())
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default()
            }))
        })
    }

    fn create(&self, node: &str, hash: &str) -> BoxFuture<'static, Result<(), NodePasswordError>> {
        let (secrets, name, node) = (self.secrets.clone(), secret_name(node), node.to_owned());
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(NAMESPACE.to_owned()),
                labels: Some(BTreeMap::from([(
                    "k3s.io/node-password".to_owned(),
                    "true".to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                HASH_KEY.to_owned(),
                ByteString(hash.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        Box::pin(async move {
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Err(NodePasswordError::Conflict(node)),
                Err(e) => Err(NodePasswordError::Store(format!(
                    "creating Secret {NAMESPACE}/{name}: {e}"
                ))),
            }
        })
    }
}

/// The join endpoints and `/v1-k3s/connect`, with every other path going to `api`.
pub fn router(
    supervisor: listener::supervisor::SupervisorState,
    tunnels: tunnel::Registry,
    api: axum::Router,
) -> axum::Router {
    listener::supervisor::router(supervisor)
        .merge(tunnel::server::router(tunnels))
        .fallback_service(api)
}
