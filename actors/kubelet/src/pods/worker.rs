//! One worker per pod: a level-triggered loop that drives the runtime towards the pod's spec once
//! a second and on every change of the pod: sandbox (created or adopted), init containers in
//! order, containers with restart policy and back-off, image pulls with back-off, probes, status,
//! and termination when the pod is deleted.
//!
//! The worker keeps only what the runtime cannot tell it (back-off timers, probe counters); the
//! containers themselves are re-read from the runtime on every pass, so a restarted kubelet picks
//! up where the last one left off.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Shared;
use crate::cri::{self, Cri, v1};
use crate::pods::events::Recorder;
use crate::pods::probe::{self, Probes, Verdict};
use crate::pods::resolve::{self, Resolver};
use crate::pods::spec::{self, Resolved};
use crate::pods::status::{self, Observed, StatusInput};

/// First crash-loop back-off.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Longest crash-loop and image-pull back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Pass period when nothing changes.
const TICK: Duration = Duration::from_secs(1);

/// What the manager wants for a pod.
#[derive(Debug, Clone)]
pub(crate) enum Desired {
    /// The pod as last seen.
    Pod(Arc<Pod>),
    /// The pod no longer exists in the API: remove everything.
    Gone,
}

/// Errors of one pass; the pass is retried.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A runtime call failed.
    #[error("{what}: {status}")]
    Cri {
        /// The call.
        what: &'static str,
        /// The runtime's status.
        status: tonic::Status,
    },
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call.
        what: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Volumes could not be prepared.
    #[error("preparing volumes: {0}")]
    Volumes(#[from] resolve::ResolveError),
    /// The runtime timed out.
    #[error("{0} timed out")]
    Timeout(&'static str),
}

fn cri_err(what: &'static str) -> impl FnOnce(tonic::Status) -> WorkerError {
    move |status| WorkerError::Cri { what, status }
}

/// The sandbox this worker uses.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: v1::PodSandboxConfig,
    ips: Vec<String>,
}

impl Track {
    /// The crash-loop delay to wait now (none the first time), doubling the next one up to
    /// [`BACKOFF_MAX`].
    fn advance_backoff(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = if delay.is_zero() {
            BACKOFF_INITIAL
        } else {
            (delay * 2).min(BACKOFF_MAX)
        };
        delay
    }
}

/// Timers and probe state of one container name.
#[derive(Debug, Default)]
struct Track {
    /// The next crash-loop delay.
    backoff: Duration,
    /// The exited container being backed off, and when it may restart.
    restart_at: Option<(String, Instant, Duration)>,
    /// When a container that could not be created may be tried again.
    create_retry_at: Option<Instant>,
    /// The next image-pull delay, and when pulling may be retried.
    pull_backoff: Duration,
    pull_retry_at: Option<Instant>,
    /// Why the container is not running, when the worker knows better than the runtime.
    waiting: Option<(String, String)>,
    probes: Option<Probes>,
}

/// The per-pod worker.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    cri: Cri,
    uid: String,
    rx: watch::Receiver<Desired>,
    sandbox: Option<Sandbox>,
    volumes: Option<HashMap<String, PathBuf>>,
    tracks: HashMap<String, Track>,
    exited: HashMap<String, v1::ContainerStatus>,
    last_status: Option<Value>,
    events: Recorder,
    finished: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(shared: Arc<Shared>, cri: Cri, uid: String, rx: watch::Receiver<Desired>) -> Self {
        let events = Recorder::new(shared.client.clone(), shared.config.node_name.clone());
        Self {
            shared,
            cri,
            uid,
            rx,
            sandbox: None,
            volumes: None,
            tracks: HashMap::new(),
            exited: HashMap::new(),
            last_status: None,
            events,
            finished: false,
        }
    }

    /// Runs until the pod is gone and cleaned up (returns its UID) or `token` is cancelled.
    pub async fn run(mut self, token: CancellationToken) -> String {
        loop {
            let desired = self.rx.borrow_and_update().clone();
            match desired {
                Desired::Gone => {
                    if let Err(e) = self.teardown(None).await {
                        warn!(uid = %self.uid, error = %e, "cleaning up a deleted pod");
                    }
                    return self.uid;
                }
                Desired::Pod(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    match self.teardown(Some(&pod)).await {
                        Ok(()) => return self.uid,
                        Err(e) => warn!(pod = %name(&pod), error = %e, "terminating the pod"),
                    }
                }
                Desired::Pod(pod) => {
                    if let Err(e) = self.sync(&pod).await {
                        warn!(pod = %name(&pod), error = %e, "pod sync failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = token.cancelled() => return self.uid,
                changed = self.rx.changed() => if changed.is_err() { return self.uid },
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass over a live pod.
    async fn sync(&mut self, pod: &Pod) -> Result<(), WorkerError> {
        let recorded_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.finished || matches!(recorded_phase, Some("Succeeded" | "Failed")) {
            // A finished pod never runs again (upstream: phases are terminal); its sandbox was
            // stopped when it finished, possibly by a previous kubelet.
            self.finished = true;
            return Ok(());
        }
        if let Err(e) = self.ensure_sandbox(pod).await {
            self.events
                .warning(
                    pod,
                    None,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                )
                .await;
            let observed = HashMap::new();
            self.post_status(pod, &observed).await?;
            return Err(e);
        }
        let mut observed = self.observe().await?;
        if self.act(pod, &observed).await? {
            observed = self.observe().await?;
        }
        self.probe(pod, &mut observed).await;
        let phase = self.post_status(pod, &observed).await?;
        if phase == "Succeeded" || phase == "Failed" {
            // A finished pod keeps its containers (for logs) but gives back its sandbox and IP.
            if let Some(sb) = &self.sandbox {
                let mut rt = self.cri.runtime.clone();
                rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
                .map_err(cri_err("StopPodSandbox"))?;
            }
            info!(pod = %name(pod), phase, "pod finished");
            self.finished = true;
        }
        Ok(())
    }

    /// Finds this pod's ready sandbox or creates one; refreshes its IPs.
    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<(), WorkerError> {
        let mut rt = self.cri.runtime.clone();
        if let Some(sb) = &self.sandbox {
            let st = rt
                .pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: sb.id.clone(),
                    verbose: false,
                })
                .await
                .map_err(cri_err("PodSandboxStatus"))?
                .into_inner();
            if st
                .status
                .as_ref()
                .is_some_and(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
            {
                return Ok(());
            }
            warn!(pod = %name(pod), "the pod sandbox is no longer ready; creating a new one");
            self.sandbox = None;
        }
        let items = rt
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(v1::PodSandboxFilter {
                    label_selector: [(cri::LABEL_POD_UID.to_owned(), self.uid.clone())].into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(cri_err("ListPodSandbox"))?
            .into_inner()
            .items;
        let attempt_of = |s: &v1::PodSandbox| s.metadata.as_ref().map_or(0, |m| m.attempt);
        let ready = items
            .iter()
            .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| (attempt_of(s), s.created_at));
        let paths = &self.shared.paths;
        let log_dir = paths.pod_log_dir(&self.uid);
        let config_for = |attempt| {
            spec::sandbox_config(
                pod,
                &log_dir.to_string_lossy(),
                &paths.cgroup_root,
                self.shared.config.cluster_dns,
                &self.shared.config.cluster_domain,
                attempt,
            )
        };
        let (id, config) = if let Some(s) = ready {
            debug!(pod = %name(pod), sandbox = %s.id, "adopted the pod sandbox");
            (s.id.clone(), config_for(attempt_of(s)))
        } else {
            let attempt = items.iter().map(|s| attempt_of(s) + 1).max().unwrap_or(0);
            std::fs::create_dir_all(&log_dir).map_err(|source| resolve::ResolveError::Io {
                path: log_dir.clone(),
                source,
            })?;
            let config = config_for(attempt);
            let reply = tokio::time::timeout(
                Duration::from_secs(240),
                rt.run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                }),
            )
            .await
            .map_err(|_| WorkerError::Timeout("RunPodSandbox"))?
            .map_err(cri_err("RunPodSandbox"))?
            .into_inner();
            info!(pod = %name(pod), sandbox = %reply.pod_sandbox_id, "created the pod sandbox");
            (reply.pod_sandbox_id, config)
        };
        let st = rt
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(cri_err("PodSandboxStatus"))?
            .into_inner();
        let ips = st
            .status
            .and_then(|s| s.network)
            .map(|n| {
                std::iter::once(n.ip)
                    .chain(n.additional_ips.into_iter().map(|i| i.ip))
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        self.sandbox = Some(Sandbox { id, config, ips });
        Ok(())
    }

    /// The runtime's containers of this pod, newest and previous per name.
    async fn observe(&mut self) -> Result<HashMap<String, Observed>, WorkerError> {
        let mut rt = self.cri.runtime.clone();
        let list = rt
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    label_selector: [(cri::LABEL_POD_UID.to_owned(), self.uid.clone())].into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(cri_err("ListContainers"))?
            .into_inner()
            .containers;
        let mut by_name: HashMap<String, Vec<v1::Container>> = HashMap::new();
        for c in list {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            by_name.entry(name).or_default().push(c);
        }
        let mut out = HashMap::new();
        for (name, mut cs) in by_name {
            cs.sort_by_key(|c| {
                std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
            });
            let mut obs = Observed::default();
            for (i, c) in cs.iter().take(2).enumerate() {
                let st = self.container_status(&c.id).await?;
                if i == 0 {
                    obs.latest = st;
                } else {
                    obs.previous = st;
                }
            }
            if let Some(t) = self.tracks.get(&name) {
                obs.waiting = t.waiting.clone();
                if let (Some(p), Some(l)) = (&t.probes, &obs.latest)
                    && p.container_id == l.id
                {
                    obs.ready = p.ready;
                    obs.started = p.started;
                }
            }
            out.insert(name, obs);
        }
        for (name, t) in &self.tracks {
            out.entry(name.clone()).or_insert_with(|| Observed {
                waiting: t.waiting.clone(),
                ..Default::default()
            });
        }
        Ok(out)
    }

    async fn container_status(
        &mut self,
        id: &str,
    ) -> Result<Option<v1::ContainerStatus>, WorkerError> {
        if let Some(s) = self.exited.get(id) {
            return Ok(Some(s.clone()));
        }
        let mut rt = self.cri.runtime.clone();
        let st = match rt
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.into_inner().status,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(cri_err("ContainerStatus")(s)),
        };
        if let Some(s) = &st
            && s.state == v1::ContainerState::ContainerExited as i32
        {
            self.exited.insert(id.to_owned(), s.clone());
        }
        Ok(st)
    }

    /// Starts, restarts or backs off containers; returns whether anything was started.
    async fn act(
        &mut self,
        pod: &Pod,
        observed: &HashMap<String, Observed>,
    ) -> Result<bool, WorkerError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let empty = Observed::default();
        for c in spec.init_containers.iter().flatten() {
            let o = observed.get(&c.name).unwrap_or(&empty);
            match o.state() {
                None => return Ok(self.start(pod, c, 0).await),
                Some(v1::ContainerState::ContainerCreated) => {
                    return Ok(self.start_created(pod, c, o).await);
                }
                Some(v1::ContainerState::ContainerRunning) => return Ok(false),
                _ => {
                    if o.exit_code() == Some(0) {
                        continue;
                    }
                    if policy == "Never" {
                        return Ok(false);
                    }
                    return Ok(self.restart(pod, c, o).await);
                }
            }
        }
        let mut acted = false;
        for c in &spec.containers {
            let o = observed.get(&c.name).unwrap_or(&empty);
            acted |= match o.state() {
                None => self.start(pod, c, 0).await,
                Some(v1::ContainerState::ContainerCreated) => self.start_created(pod, c, o).await,
                Some(v1::ContainerState::ContainerRunning) => {
                    self.tracks.entry(c.name.clone()).or_default().waiting = None;
                    false
                }
                _ => {
                    let code = o.exit_code().unwrap_or(1);
                    let again = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if again {
                        self.restart(pod, c, o).await
                    } else {
                        self.tracks.entry(c.name.clone()).or_default().waiting = None;
                        false
                    }
                }
            };
        }
        Ok(acted)
    }

    /// A container left in `Created` (the kubelet stopped between create and start): start it.
    async fn start_created(&mut self, pod: &Pod, c: &Container, o: &Observed) -> bool {
        let Some(latest) = &o.latest else {
            return false;
        };
        let mut rt = self.cri.runtime.clone();
        match rt
            .start_container(v1::StartContainerRequest {
                container_id: latest.id.clone(),
            })
            .await
        {
            Ok(_) => {
                self.events
                    .normal(
                        pod,
                        Some(&c.name),
                        "Started",
                        format!("Started container {}", c.name),
                    )
                    .await;
                true
            }
            Err(s) => {
                let _ = rt
                    .remove_container(v1::RemoveContainerRequest {
                        container_id: latest.id.clone(),
                    })
                    .await;
                self.set_waiting(&c.name, "RunContainerError", s.message());
                false
            }
        }
    }

    /// An exited container that must run again: now, or after its back-off.
    async fn restart(&mut self, pod: &Pod, c: &Container, o: &Observed) -> bool {
        let Some(latest) = &o.latest else {
            return false;
        };
        let attempt = latest.metadata.as_ref().map_or(0, |m| m.attempt) + 1;
        let now = Instant::now();
        let track = self.tracks.entry(c.name.clone()).or_default();
        let due = match &track.restart_at {
            Some((id, at, _)) if *id == latest.id => *at,
            _ => {
                // A container whose start failed never ran (no start time): it does not reset
                // the back-off however long ago it was created.
                let ran = if latest.started_at > 0 {
                    Duration::from_nanos((latest.finished_at - latest.started_at).max(0) as u64)
                } else {
                    Duration::ZERO
                };
                if ran >= BACKOFF_RESET {
                    track.backoff = Duration::ZERO;
                }
                let delay = track.advance_backoff();
                // A container that never ran (its start failed) has no finish time: its whole
                // back-off is still ahead.
                let since_exit = if latest.finished_at > 0 {
                    Duration::from_nanos(
                        (jiff::Timestamp::now().as_nanosecond() as i64 - latest.finished_at).max(0)
                            as u64,
                    )
                } else {
                    Duration::ZERO
                };
                let at = now + delay.saturating_sub(since_exit);
                track.restart_at = Some((latest.id.clone(), at, delay));
                at
            }
        };
        if now < due {
            let delay = track.restart_at.as_ref().map_or(Duration::ZERO, |r| r.2);
            let (pod_name, ns) = (
                pod.metadata.name.clone().unwrap_or_default(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            );
            track.waiting = Some((
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {}s restarting failed container={} pod={pod_name}_{ns}({})",
                    delay.as_secs(),
                    c.name,
                    self.uid
                ),
            ));
            self.events
                .warning(
                    pod,
                    Some(&c.name),
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {pod_name}_{ns}({})",
                        c.name, self.uid
                    ),
                )
                .await;
            return false;
        }
        self.start(pod, c, attempt).await
    }

    /// The runtime refused to create or start `c`: the waiting reason and a `Failed` event.
    async fn container_failed(&mut self, pod: &Pod, c: &Container, reason: &str, message: &str) {
        self.set_waiting(&c.name, reason, message);
        self.events
            .warning(pod, Some(&c.name), "Failed", format!("Error: {message}"))
            .await;
    }

    fn set_waiting(&mut self, container: &str, reason: &str, message: &str) {
        self.tracks.entry(container.to_owned()).or_default().waiting =
            Some((reason.to_owned(), message.to_owned()));
    }

    /// Pulls (if needed), creates and starts attempt `attempt` of `c`; returns whether it started.
    async fn start(&mut self, pod: &Pod, c: &Container, attempt: u32) -> bool {
        if let Some(track) = self.tracks.get_mut(&c.name)
            && let Some(at) = track.create_retry_at
        {
            if Instant::now() < at {
                return false;
            }
            track.create_retry_at = None;
        }
        let image = c.image.clone().unwrap_or_default();
        if !self.ensure_image(pod, c, &image).await {
            return false;
        }
        let Some(sandbox) = self.sandbox.clone() else {
            return false;
        };
        let resolved = match self.resolve(pod, c, &sandbox).await {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                self.set_waiting(&c.name, "CreateContainerConfigError", &msg);
                self.events
                    .warning(pod, Some(&c.name), "Failed", format!("Error: {msg}"))
                    .await;
                return false;
            }
        };
        let config = spec::container_config(pod, c, attempt, &resolved);
        let mut rt = self.cri.runtime.clone();
        let created = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone()),
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(s) => {
                // Back off like a crash loop rather than retrying every sync.
                let track = self.tracks.entry(c.name.clone()).or_default();
                let delay = track.advance_backoff().max(BACKOFF_INITIAL);
                track.create_retry_at = Some(Instant::now() + delay);
                self.container_failed(pod, c, "CreateContainerError", s.message())
                    .await;
                return false;
            }
        };
        self.events
            .normal(
                pod,
                Some(&c.name),
                "Created",
                format!("Created container: {}", c.name),
            )
            .await;
        if let Err(s) = rt
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            self.container_failed(pod, c, "RunContainerError", s.message())
                .await;
            return true;
        }
        self.events
            .normal(
                pod,
                Some(&c.name),
                "Started",
                format!("Started container {}", c.name),
            )
            .await;
        let track = self.tracks.entry(c.name.clone()).or_default();
        track.waiting = None;
        debug!(pod = %name(pod), container = %c.name, attempt, "started a container");
        true
    }

    /// Makes sure the image is present per the pull policy; sets the waiting reason otherwise.
    async fn ensure_image(&mut self, pod: &Pod, c: &Container, image: &str) -> bool {
        if !is_image_reference(image) {
            // Upstream's reason and wording; nothing is pulled for a name that can't be one.
            let msg = format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            );
            self.set_waiting(&c.name, "InvalidImageName", &msg);
            self.events
                .warning(pod, Some(&c.name), "InspectFailed", msg)
                .await;
            return false;
        }
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(image).into());
        let present = crate::images::image_present(&self.cri, image)
            .await
            .unwrap_or(false);
        if present && policy != "Always" {
            if self
                .tracks
                .get(&c.name)
                .is_none_or(|t| t.pull_backoff.is_zero())
            {
                self.events
                    .normal(
                        pod,
                        Some(&c.name),
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    )
                    .await;
            }
            if let Some(t) = self.tracks.get_mut(&c.name) {
                t.pull_backoff = Duration::ZERO;
                t.pull_retry_at = None;
            }
            return true;
        }
        if policy == "Never" {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.set_waiting(&c.name, "ErrImageNeverPull", &msg);
            self.events
                .warning(pod, Some(&c.name), "ErrImageNeverPull", msg)
                .await;
            return false;
        }
        let now = Instant::now();
        let track = self.tracks.entry(c.name.clone()).or_default();
        if let Some(at) = track.pull_retry_at
            && now < at
        {
            let msg = format!("Back-off pulling image \"{image}\"");
            track.waiting = Some(("ImagePullBackOff".into(), msg.clone()));
            self.events.normal(pod, Some(&c.name), "BackOff", msg).await;
            return false;
        }
        self.events
            .normal(
                pod,
                Some(&c.name),
                "Pulling",
                format!("Pulling image \"{image}\""),
            )
            .await;
        let started = Instant::now();
        let mut images = self.cri.images.clone();
        let pulled = tokio::time::timeout(
            Duration::from_secs(600),
            images.pull_image(v1::PullImageRequest {
                image: Some(v1::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                sandbox_config: self.sandbox.as_ref().map(|s| s.config.clone()),
            }),
        )
        .await;
        let track = self.tracks.entry(c.name.clone()).or_default();
        match pulled {
            Ok(Ok(_)) => {
                track.pull_backoff = Duration::ZERO;
                track.pull_retry_at = None;
                self.events
                    .normal(
                        pod,
                        Some(&c.name),
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{image}\" in {:.3}s",
                            started.elapsed().as_secs_f64()
                        ),
                    )
                    .await;
                true
            }
            failed => {
                let why = match failed {
                    Ok(Err(s)) => {
                        format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
                    }
                    _ => "pull timed out".to_owned(),
                };
                let delay = if track.pull_backoff.is_zero() {
                    BACKOFF_INITIAL
                } else {
                    (track.pull_backoff * 2).min(BACKOFF_MAX)
                };
                track.pull_backoff = delay;
                track.pull_retry_at = Some(Instant::now() + delay);
                let msg = format!("Failed to pull image \"{image}\": {why}");
                track.waiting = Some(("ErrImagePull".into(), msg.clone()));
                self.events.warning(pod, Some(&c.name), "Failed", msg).await;
                self.events
                    .warning(pod, Some(&c.name), "Failed", "Error: ErrImagePull".into())
                    .await;
                false
            }
        }
    }

    /// Environment and mounts for `c`; writes volumes and `/etc/hosts` on first use.
    async fn resolve(
        &mut self,
        pod: &Pod,
        c: &Container,
        sandbox: &Sandbox,
    ) -> Result<Resolved, resolve::ResolveError> {
        let pod_ip = sandbox.ips.first().cloned().unwrap_or_default();
        let mut r = Resolver::new(
            &self.shared.client,
            pod,
            self.shared.config.node_ip.to_string(),
            pod_ip.clone(),
        );
        let pod_dir = self.shared.paths.pod_dir(&self.uid);
        let volumes = r.volumes(&pod_dir).await?;
        self.volumes = Some(volumes.clone());
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let hosts_path = pod_dir.join("etc-hosts");
        let hosts = if host_network {
            None
        } else {
            let text = resolve::etc_hosts(pod, &pod_ip, &self.shared.config.cluster_domain);
            std::fs::write(&hosts_path, text).map_err(|source| resolve::ResolveError::Io {
                path: hosts_path.clone(),
                source,
            })?;
            Some(hosts_path.as_path())
        };
        let mounts = resolve::mounts(c, &volumes, hosts)?;
        let env = r.env(c).await?;
        Ok(Resolved { env, mounts })
    }

    /// Runs due probes of running containers; restarts those that fail liveness.
    async fn probe(&mut self, pod: &Pod, observed: &mut HashMap<String, Observed>) {
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let pod_ip = sandbox.ips.first().cloned().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        for c in &spec.containers {
            let Some(o) = observed.get_mut(&c.name) else {
                continue;
            };
            let Some(latest) = o.latest.clone() else {
                continue;
            };
            if o.state() != Some(v1::ContainerState::ContainerRunning) {
                continue;
            }
            let track = self.tracks.entry(c.name.clone()).or_default();
            if track
                .probes
                .as_ref()
                .is_none_or(|p| p.container_id != latest.id)
            {
                let age = Duration::from_nanos(
                    (jiff::Timestamp::now().as_nanosecond() as i64 - latest.started_at).max(0)
                        as u64,
                );
                let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                track.probes = Some(Probes::new(&latest.id, c, started));
            }
            let Some(state) = track.probes.as_mut() else {
                continue;
            };
            let target = probe::Target {
                cri: &self.cri,
                container_id: &latest.id,
                pod_ip: &pod_ip,
            };
            let (verdict, unhealthy) = probe::run(c, state, &target).await;
            o.ready = state.ready;
            o.started = state.started;
            if let Some(msg) = unhealthy {
                self.events
                    .warning(pod, Some(&c.name), "Unhealthy", msg)
                    .await;
            }
            if let Verdict::Restart(msg) = verdict {
                self.events.normal(pod, Some(&c.name), "Killing", msg).await;
                let mut rt = self.cri.runtime.clone();
                if let Err(s) = rt
                    .stop_container(v1::StopContainerRequest {
                        container_id: latest.id.clone(),
                        timeout: grace,
                    })
                    .await
                {
                    warn!(container = %c.name, error = %s, "stopping a container that failed its probe");
                }
            }
        }
    }

    /// Computes and, when it changed, patches the pod's status; returns the phase.
    async fn post_status(
        &mut self,
        pod: &Pod,
        observed: &HashMap<String, Observed>,
    ) -> Result<String, WorkerError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let empty = Observed::default();
        let pick = |cs: &'_ [Container]| -> Vec<(Container, Observed)> {
            cs.iter()
                .map(|c| {
                    (
                        c.clone(),
                        observed
                            .get(&c.name)
                            .cloned()
                            .unwrap_or_else(|| empty.clone()),
                    )
                })
                .collect()
        };
        let init = pick(spec.init_containers.as_deref().unwrap_or_default());
        let containers = pick(&spec.containers);
        let ips = self
            .sandbox
            .as_ref()
            .map(|s| s.ips.clone())
            .unwrap_or_default();
        let host_ip = self.shared.config.node_ip.to_string();
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        let status = status::pod_status(&StatusInput {
            pod,
            host_ip: &host_ip,
            pod_ips: &ips,
            init: init.iter().map(|(c, o)| (c, o)).collect(),
            containers: containers.iter().map(|(c, o)| (c, o)).collect(),
            now: &now,
        });
        let phase = status["phase"].as_str().unwrap_or("Pending").to_owned();
        if self.last_status.as_ref() == Some(&status) {
            return Ok(phase);
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        api.patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|source| WorkerError::Api {
            what: "updating pod status",
            source,
        })?;
        self.last_status = Some(status);
        Ok(phase)
    }

    /// Stops the pod's containers (with their grace period), removes its sandboxes and files, and
    /// when `pod` is given deletes it from the API.
    async fn teardown(&mut self, pod: Option<&Pod>) -> Result<(), WorkerError> {
        let mut rt = self.cri.runtime.clone();
        let containers = rt
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    label_selector: [(cri::LABEL_POD_UID.to_owned(), self.uid.clone())].into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(cri_err("ListContainers"))?
            .into_inner()
            .containers;
        let grace = pod
            .and_then(|p| {
                p.metadata
                    .deletion_grace_period_seconds
                    .or(p.spec.as_ref()?.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        let mut stops = Vec::new();
        for c in containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
        {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if let Some(pod) = pod {
                self.events
                    .normal(
                        pod,
                        Some(&name),
                        "Killing",
                        format!("Stopping container {name}"),
                    )
                    .await;
            }
            let mut rt = self.cri.runtime.clone();
            let id = c.id.clone();
            stops.push(async move {
                rt.stop_container(v1::StopContainerRequest {
                    container_id: id,
                    timeout: grace,
                })
                .await
            });
        }
        for r in futures::future::join_all(stops).await {
            r.map_err(cri_err("StopContainer"))?;
        }
        remove_sandboxes(&self.cri, &self.uid).await?;
        let dir = self.shared.paths.pod_dir(&self.uid);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            warn!(dir = %dir.display(), error = %e, "removing the pod directory");
        }
        if let Some(pod) = pod {
            let api: Api<Pod> = Api::namespaced(
                self.shared.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api
                .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
                .await
            {
                Ok(_) => info!(pod = %name(pod), "pod terminated and deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => {
                    return Err(WorkerError::Api {
                        what: "deleting the pod",
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Stops and removes every sandbox of pod `uid` (which removes its containers).
pub(crate) async fn remove_sandboxes(cri: &Cri, uid: &str) -> Result<(), WorkerError> {
    let mut rt = cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: [(cri::LABEL_POD_UID.to_owned(), uid.to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri_err("ListPodSandbox"))?
        .into_inner()
        .items;
    for s in sandboxes {
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: s.id.clone(),
        })
        .await
        .map_err(cri_err("StopPodSandbox"))?;
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: s.id,
        })
        .await
        .map_err(cri_err("RemovePodSandbox"))?;
    }
    Ok(())
}

/// Whether `image` is a valid image reference (`[host[:port]/]path[:tag][@algo:hex]`, path
/// components lowercase), as the container runtime parses it.
pub(crate) fn is_image_reference(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return false;
        };
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let first_ok = tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok
            || tag.len() > 128
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host when it looks like one (a '.', a ':' or localhost).
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host
            .split_once(':')
            .map_or((host, None), |(h, p)| (h, Some(p)));
        let host_ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok {
            return false;
        }
    }
    parts.iter().all(|p| {
        let b = p.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
    })
}

/// Upstream's default pull policy: Always for `:latest` or untagged images, else IfNotPresent.
pub(crate) fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_references_are_parsed_like_the_runtime_does() {
        for ok in [
            "busybox",
            "busybox:test",
            "docker.io/library/busybox:1.36",
            "registry.invalid/none/such:1.0",
            "localhost:5000/team/app_v2:v1.2.3-rc.1",
            "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(super::is_image_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "UPPER/Case::bad@@",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "app@sha256:short",
            "with space",
        ] {
            assert!(!super::is_image_reference(bad), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:acc"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/x"), "Always");
        assert_eq!(default_pull_policy("r/x@sha256:abc"), "IfNotPresent");
    }
}
