//! Node IPAM: every Node without `spec.podCIDR` gets the next free `/node_cidr_mask` range of the
//! cluster CIDR in `spec.podCIDR` and `spec.podCIDRs`.
//!
//! One node at a time; the ranges in use are read from the live Node list on every allocation, so
//! the state is rebuilt from the API after any restart and two nodes never share a range.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::runner::LoopCtx;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::Shared;
use crate::error::Error;
use crate::runner::{self, Backoff};

struct Ctx {
    client: kube::Client,
    cluster_cidr: IpNet,
    mask: u8,
    backoff: Backoff,
}

/// The `nodeipam` service.
pub(crate) async fn run(ctx: LoopCtx, shared: Arc<Shared>) -> Result<(), kernel::BoxError> {
    let client = shared.client.clone();
    let data = Arc::new(Ctx {
        client: client.clone(),
        cluster_cidr: shared.config.cluster_cidr,
        mask: shared.config.node_cidr_mask,
        backoff: Backoff::default(),
    });
    let stream = Controller::new(Api::<Node>::all(client), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(1))
        .run(
            reconcile,
            |n, _e: &Error, ctx: Arc<Ctx>| ctx.backoff.failed(runner::key(&n.metadata)),
            data,
        );
    runner::drive(ctx, "nodeipam", stream).await
}

/// The first `/mask` subnet of `cluster` not in `used`.
pub fn next_free(cluster: IpNet, mask: u8, used: &BTreeSet<IpNet>) -> Result<IpNet, Error> {
    let subnets = cluster.subnets(mask).map_err(|_| Error::Invalid {
        what: "node CIDR mask".into(),
        reason: format!("/{mask} does not fit in {cluster}"),
    })?;
    for s in subnets {
        if !used
            .iter()
            .any(|u| u.contains(&s.network()) || s.contains(&u.network()))
        {
            return Ok(s);
        }
    }
    Err(Error::Invalid {
        what: "cluster CIDR".into(),
        reason: format!("{cluster} has no free /{mask} left"),
    })
}

fn has_cidr(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if has_cidr(&node) || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().ok_or(Error::Missing {
        kind: "Node",
        field: "metadata.name",
    })?;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let nodes = api
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list nodes"))?;
    let mut used = BTreeSet::new();
    for n in &nodes.items {
        if n.metadata.name.as_deref() == Some(name.as_str()) && has_cidr(n) {
            return Ok(Action::await_change());
        }
        let spec = n.spec.as_ref();
        for c in spec
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default()
            .iter()
            .chain(spec.and_then(|s| s.pod_cidr.as_ref()))
        {
            if let Ok(net) = c.parse::<IpNet>() {
                used.insert(net);
            }
        }
    }
    let cidr = next_free(ctx.cluster_cidr, ctx.mask, &used)?;
    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!("set podCIDR of node {name}")))?;
    tracing::info!(node = name, %cidr, "allocated pod CIDR");
    ctx.backoff.succeeded(&runner::key(&node.metadata));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn next_free_skips_used() {
        let cluster: IpNet = "10.42.0.0/16".parse().unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(
            next_free(cluster, 24, &used).unwrap().to_string(),
            "10.42.0.0/24"
        );
        used.insert("10.42.0.0/24".parse().unwrap());
        used.insert("10.42.2.0/24".parse().unwrap());
        assert_eq!(
            next_free(cluster, 24, &used).unwrap().to_string(),
            "10.42.1.0/24"
        );
        used.insert("10.42.1.0/24".parse().unwrap());
        assert_eq!(
            next_free(cluster, 24, &used).unwrap().to_string(),
            "10.42.3.0/24"
        );
        let tiny: IpNet = "10.0.0.0/24".parse().unwrap();
        let full: BTreeSet<IpNet> = [tiny].into();
        assert!(next_free(tiny, 24, &full).is_err());
        assert!(next_free(tiny, 16, &BTreeSet::new()).is_err());
    }
}
