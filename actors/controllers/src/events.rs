//! Core v1 Events about the objects the loops act on (what `kubectl describe` shows).
//! Emitting is best effort: a failed event is logged, never an error of the reconcile.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Resource};

/// Emits Events as one component (`deployment-controller`, `default-scheduler`, ...).
#[derive(Clone)]
pub(crate) struct Recorder {
    client: Client,
    component: &'static str,
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    Warning,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .finish()
    }
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Self { client, component }
    }

    /// Records `reason`/`message` about `obj`.
    pub async fn emit<K>(&self, obj: &K, kind: Kind, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.emit_ref(obj.object_ref(&()), kind, reason, message)
            .await;
    }

    /// Records `reason`/`message` about the object `regarding`.
    pub async fn emit_ref(
        &self,
        regarding: ObjectReference,
        kind: Kind,
        reason: &str,
        message: String,
    ) {
        let now = Timestamp::now();
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(self.component),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding,
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(match kind {
                Kind::Normal => "Normal".to_owned(),
                Kind::Warning => "Warning".to_owned(),
            }),
            source: Some(EventSource {
                component: Some(self.component.to_owned()),
                host: None,
            }),
            reporting_component: Some(self.component.to_owned()),
            reporting_instance: Some(self.component.to_owned()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(component = self.component, reason, error = %e, "event not recorded");
        }
    }
}
