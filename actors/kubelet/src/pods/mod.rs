//! The `pods` child: watches the Pods bound to this node and runs one [`worker::Worker`] per pod.
//!
//! At start (after the first complete list) sandboxes of pods that no longer exist are removed;
//! sandboxes and containers of existing pods are adopted by their workers, never duplicated.
//! Stopping this service stops the workers but not the containers.

mod events;
mod probe;
mod resolve;
mod spec;
mod status;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kernel::{BoxError, ServiceCtx};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::Shared;
use crate::cri::{self, Cri, v1};
use worker::{Desired, Worker};

/// The `pods` service.
pub(crate) async fn run(ctx: ServiceCtx, shared: Arc<Shared>) -> Result<(), BoxError> {
    let cri = Cri::connect(&shared.paths.containerd_socket);
    cri.wait_ready(Duration::from_secs(30)).await?;
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    ctx.ready();

    let token = ctx.token();
    let mut workers: HashMap<String, watch::Sender<Desired>> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut cleanup: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.cancelled() => {
                tasks.abort_all();
                cleanup.abort_all();
                return Ok(());
            }
            Some(done) = tasks.join_next() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            Some(_) = cleanup.join_next() => {}
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let Some(uid) = pod.metadata.uid.clone() {
                        listed.insert(uid);
                    }
                    dispatch(&shared, &cri, &token, &mut workers, &mut tasks, pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    for (uid, tx) in &workers {
                        if !listed.contains(uid) {
                            let _ = tx.send(Desired::Gone);
                        }
                    }
                    let known: HashSet<String> = listed.iter().chain(workers.keys()).cloned().collect();
                    let cri = cri.clone();
                    let shared = shared.clone();
                    cleanup.spawn(async move { remove_orphans(&cri, &shared, &known).await });
                }
                Some(Ok(watcher::Event::Apply(pod))) => dispatch(&shared, &cri, &token, &mut workers, &mut tasks, pod),
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                        let _ = tx.send(Desired::Gone);
                    }
                }
                Some(Err(e)) => warn!(error = %e, "watching pods"),
                None => return Err("the pod watch ended".into()),
            }
        }
    }
}

/// Hands `pod` to its worker, starting one if needed.
fn dispatch(
    shared: &Arc<Shared>,
    cri: &Cri,
    token: &tokio_util::sync::CancellationToken,
    workers: &mut HashMap<String, watch::Sender<Desired>>,
    tasks: &mut JoinSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let desired = Desired::Pod(Arc::new(pod));
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(desired);
        return;
    }
    let (tx, rx) = watch::channel(desired);
    let worker = Worker::new(shared.clone(), cri.clone(), uid.clone(), rx);
    let span = tracing::info_span!("pod", %uid);
    tasks.spawn(tracing::Instrument::instrument(
        worker.run(token.child_token()),
        span,
    ));
    workers.insert(uid, tx);
}

/// Removes sandboxes (and their containers and files) of pods this node no longer has.
async fn remove_orphans(cri: &Cri, shared: &Shared, known: &HashSet<String>) {
    let mut rt = cri.runtime.clone();
    let sandboxes = match rt
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await
    {
        Ok(r) => r.into_inner().items,
        Err(e) => {
            warn!(error = %e, "listing sandboxes to clean up");
            return;
        }
    };
    let orphans: HashSet<String> = sandboxes
        .iter()
        .filter_map(|s| s.labels.get(cri::LABEL_POD_UID).cloned())
        .filter(|uid| !known.contains(uid))
        .collect();
    for uid in orphans {
        info!(%uid, "removing the sandbox of a pod that no longer exists");
        if let Err(e) = worker::remove_sandboxes(cri, &uid).await {
            warn!(%uid, error = %e, "removing an orphaned sandbox");
        }
        let _ = std::fs::remove_dir_all(shared.paths.pod_dir(&uid));
    }
}
