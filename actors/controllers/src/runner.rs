//! Driving a `kube::runtime::Controller` as a leader-gated loop: stop when the loop is cancelled
//! (the service stops or leadership is lost), log each reconcile error, and back off per key.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::controller::Action;
use tokio_util::sync::CancellationToken;

/// What one run of a loop is given: a token cancelled when the service stops or this process
/// loses leadership. A loop runs from the moment leadership is gained until then.
#[derive(Debug, Clone)]
pub(crate) struct LoopCtx {
    token: CancellationToken,
}

impl LoopCtx {
    pub fn new(token: CancellationToken) -> Self {
        Self { token }
    }

    /// Marks the loop started (the service itself is ready once it waits for leadership).
    pub fn ready(&self) {}

    /// Resolves when the loop must stop.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// The stop token, for the loop's own tasks.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// Per-key failure counts, for exponential requeue backoff (1 s doubling up to 2 min).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The requeue action after one more failure of `key`.
    pub fn failed(&self, key: String) -> Action {
        Action::requeue(self.next(key))
    }

    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: String) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

/// What a workload controller's reconciler needs: the client, its event recorder and its
/// per-key back-off. Shared by the Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and
/// CronJob loops.
pub(crate) struct Workload {
    pub(crate) client: kube::Client,
    pub(crate) events: crate::events::Recorder,
    pub(crate) backoff: Backoff,
}

impl Workload {
    /// The context of a loop whose events name `component` as their source.
    pub(crate) fn new(client: kube::Client, component: &'static str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            events: crate::events::Recorder::new(client.clone(), component),
            client,
            backoff: Backoff::default(),
        })
    }
}

/// The backoff after `n` consecutive failures.
pub(crate) fn delay(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(7);
    Duration::from_secs(secs.min(120))
}

/// A key for backoff bookkeeping.
pub(crate) fn key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Marks the service ready and drains the controller's stream until cancelled.
pub(crate) async fn drive<S, T, E>(
    ctx: LoopCtx,
    name: &'static str,
    stream: S,
) -> Result<(), kernel::BoxError>
where
    S: Stream<Item = Result<T, E>> + Send,
    E: std::fmt::Display + Debug,
{
    ctx.ready();
    let cancelled = ctx.cancelled();
    let run = stream.for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(controller = name, error = %e, "reconcile failed");
        }
    });
    tokio::select! {
        () = cancelled => {}
        () = run => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs(2));
        assert_eq!(delay(5), Duration::from_secs(16));
        assert_eq!(delay(30), Duration::from_secs(120));
    }
}
