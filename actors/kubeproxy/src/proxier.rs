//! The service loop: watch Services and EndpointSlices into reflector stores, and after changes
//! settle (debounced) render and apply the whole ruleset.
//!
//! States: *waiting* until both stores have their first full list (rendering before that
//! would delete the rules of Services not yet seen), then *synced* / *dirty*. A change marks
//! the state dirty and arms a short timer, so a burst of events (a rollout) costs one apply.
//! A failed apply is retried with a growing delay; a periodic resync repairs rules someone
//! else flushed. On cancellation the jump rules and our chains are removed.

use crate::iptables::Iptables;
use crate::{ProxyConfig, model};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::time::Duration;
use tokio::time::Instant;

/// How long changes settle before a sync.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Full resync period (repairs rules flushed behind our back).
const RESYNC: Duration = Duration::from_secs(30);
/// Longest delay between retries of a failed sync.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Failures that end the loop (the kernel restarts it).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A watch stream ended, which a watcher never does on its own.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Run the proxy until `cancelled` resolves, applying rules with `iptables`; `ready` is called
/// once the watches are set up. [`crate::child`] runs it as a kernel service on the host.
pub async fn run(
    client: Client,
    config: ProxyConfig,
    iptables: Iptables,
    ready: impl FnOnce(),
    cancelled: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError> {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    futures::pin_mut!(svc_events, slice_events, cancelled);
    if let Err(e) = iptables.enable_forwarding().await {
        tracing::warn!(error = %e, "pods on other nodes and services may be unreachable");
    }
    ready();
    tracing::info!(node = %config.node_name, node_ip = %config.node_ip, cluster_cidr = %config.cluster_cidr, "kube-proxy started (iptables mode)");

    let (mut svc_listed, mut slices_listed) = (false, false);
    let mut due: Option<Instant> = None;
    let mut retry = Duration::from_secs(1);
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let changed = tokio::select! {
            biased;
            () = &mut cancelled => break Ok(()),
            ev = svc_events.next() => match ev {
                Some(Ok(watcher::Event::InitDone)) => { svc_listed = true; true }
                Some(Ok(_)) => true,
                Some(Err(e)) => { tracing::warn!(error = %e, "watching services"); false }
                None => break Err(ProxyError::WatchEnded("services")),
            },
            ev = slice_events.next() => match ev {
                Some(Ok(watcher::Event::InitDone)) => { slices_listed = true; true }
                Some(Ok(_)) => true,
                Some(Err(e)) => { tracing::warn!(error = %e, "watching endpointslices"); false }
                None => break Err(ProxyError::WatchEnded("endpointslices")),
            },
            () = sleep_until(due) => {
                due = None;
                if svc_listed && slices_listed {
                    match sync(&iptables, &config, &services, &slices).await {
                        Ok(()) => retry = Duration::from_secs(1),
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?retry, "syncing service rules failed");
                            due = Some(Instant::now() + retry);
                            retry = (retry * 2).min(MAX_RETRY);
                        }
                    }
                }
                false
            }
            _ = resync.tick() => true,
        };
        if changed && due.is_none() {
            due = Some(Instant::now() + DEBOUNCE);
        }
    };
    match iptables.cleanup().await {
        Ok(()) => tracing::info!("service rules removed"),
        Err(e) => tracing::warn!(error = %e, "removing service rules failed"),
    }
    result
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn sync(
    iptables: &Iptables,
    config: &ProxyConfig,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Result<(), crate::iptables::IptablesError> {
    let started = std::time::Instant::now();
    let svcs = services.state();
    let eps = slices.state();
    let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
    let ep_refs: Vec<&EndpointSlice> = eps.iter().map(AsRef::as_ref).collect();
    let ports = model::service_ports(&svc_refs, &ep_refs);
    let rules = iptables.sync(&ports, &config.cluster_cidr).await?;
    tracing::debug!(
        service_ports = ports.len(),
        chains = rules.dynamic_chains.len(),
        took = ?started.elapsed(),
        "service rules synced"
    );
    Ok(())
}
