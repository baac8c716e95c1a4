//! Pod events (core/v1 Event) as the kubelet reports them: Pulling, Pulled, Created, Started,
//! Killing, BackOff, Failed, Unhealthy. Repeats of one reason and message for one object within
//! a minute are dropped.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// How long an identical event is suppressed.
const DEDUP: Duration = Duration::from_secs(60);

/// Records events about one pod.
pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
    recent: HashMap<(String, String), Instant>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(client: kube::Client, node: String) -> Self {
        Self {
            client,
            node,
            recent: HashMap::new(),
        }
    }

    /// Records a `Normal` event about container `container` (or the pod when `None`).
    pub async fn normal(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        reason: &str,
        message: String,
    ) {
        self.record(pod, container, "Normal", reason, message).await;
    }

    /// Records a `Warning` event.
    pub async fn warning(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        reason: &str,
        message: String,
    ) {
        self.record(pod, container, "Warning", reason, message)
            .await;
    }

    async fn record(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        kind: &str,
        reason: &str,
        message: String,
    ) {
        let key = (reason.to_owned(), message.clone());
        let now = Instant::now();
        if self
            .recent
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < DEDUP)
        {
            return;
        }
        self.recent.retain(|_, at| now.duration_since(*at) < DEDUP);
        self.recent.insert(key, now);
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let stamp = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", stamp.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: container.map(|c| container_field_path(pod, c)),
            },
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(kind.to_owned()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            first_timestamp: Some(Time(stamp)),
            last_timestamp: Some(Time(stamp)),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, reason, "recording an event failed");
        }
    }
}

/// `spec.containers{c}` or `spec.initContainers{c}`.
fn container_field_path(pod: &Pod, c: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| ics.iter().any(|x| x.name == c));
    if init {
        format!("spec.initContainers{{{c}}}")
    } else {
        format!("spec.containers{{{c}}}")
    }
}
