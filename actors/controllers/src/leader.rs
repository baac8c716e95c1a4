//! Leader election over `coordination.k8s.io/v1` Leases, like client-go's leaderelection.
//!
//! Each elector is a service that owns one Lease (`kube-system/kube-controller-manager` for the
//! controllers, `kube-system/kube-scheduler` for the scheduler) and publishes whether this process
//! holds it on a `watch` channel the loops wait on. A candidate takes the Lease when it does not
//! exist, has no holder, or has expired (`renewTime + leaseDurationSeconds < now`); every write
//! carries the `resourceVersion` it read, so of two candidates racing for one expired Lease the
//! API server lets exactly one win (the other gets 409 Conflict). The holder renews every
//! `retry_period`; when it cannot renew for `renew_deadline`, or finds another holder, it steps
//! down at once. On shutdown the holder releases the Lease (no holder, duration 1 s) so another
//! server takes over without waiting for expiry.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::error::is_status;
use crate::runner::LoopCtx;

/// Timings and identity of leader election.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Who this process is in `holderIdentity`: hostname plus a random suffix by default.
    pub identity: String,
    /// The Leases' namespace (`kube-system`).
    pub namespace: String,
    /// `leaseDurationSeconds` (15 s): how long others wait before taking an unrenewed Lease.
    pub lease_duration: Duration,
    /// The holder steps down when it could not renew for this long (10 s).
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates retry (2 s).
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    fn default() -> Self {
        Self {
            identity: default_identity(),
            namespace: "kube-system".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<random hex>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Timestamp::now().as_nanosecond().unsigned_abs());
    h.write_u32(std::process::id());
    format!("{host}_{:016x}", h.finish())
}

/// Whether `lease` is free for `identity` to take at `now`.
pub fn can_acquire(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expires = renewed.0.as_millisecond() + duration * 1000;
    expires < now.as_millisecond()
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One elector: acquires and renews the Lease `name`, publishing leadership on `leader`.
pub(crate) struct Elector {
    api: Api<Lease>,
    name: &'static str,
    config: LeaderElection,
    leader: watch::Sender<bool>,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        name: &'static str,
        config: LeaderElection,
        leader: watch::Sender<bool>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            name,
            config,
            leader,
        }
    }

    /// Tries once to take or renew the Lease; true when this process holds it afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let me = &self.config.identity;
        let existing = match self.api.get_opt(self.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.to_owned()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(seconds(self.config.lease_duration)),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_status(&e, 409) => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        if !can_acquire(&existing, me, now) {
            return Ok(false);
        }
        let mut lease = existing;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let held = spec.holder_identity.as_deref() == Some(me.as_str());
        if !held {
            spec.holder_identity = Some(me.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds(self.config.lease_duration));
        spec.renew_time = Some(MicroTime(now));
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this process holds it.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = self.name, "leader lease released"),
            Err(e) => tracing::warn!(lease = self.name, error = %e, "leader lease not released"),
        }
    }

    fn set_leader(&self, leader: bool) {
        let changed = self
            .leader
            .send_if_modified(|l| std::mem::replace(l, leader) != leader);
        if changed {
            if leader {
                tracing::info!(lease = self.name, identity = %self.config.identity, "became leader");
            } else {
                tracing::warn!(lease = self.name, identity = %self.config.identity, "stopped leading");
            }
        }
    }

    /// Runs until `ctx` is cancelled, then steps down and releases the Lease.
    pub async fn run(self, ctx: LoopCtx) {
        let cancelled = ctx.cancelled();
        tokio::pin!(cancelled);
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            let leading = *self.leader.borrow();
            let attempt = tokio::time::timeout(
                self.config.retry_period.max(Duration::from_millis(100)),
                self.try_acquire_or_renew(),
            );
            let result = tokio::select! {
                () = &mut cancelled => break,
                r = attempt => r,
            };
            match result {
                Ok(Ok(true)) => {
                    last_renew = Some(tokio::time::Instant::now());
                    self.set_leader(true);
                }
                Ok(Ok(false)) => {
                    // Someone else holds it (or won the race): step down at once.
                    last_renew = None;
                    self.set_leader(false);
                }
                Ok(Err(e)) => {
                    tracing::debug!(lease = self.name, error = %e, "lease request failed");
                }
                Err(_) => tracing::debug!(lease = self.name, "lease request timed out"),
            }
            if leading && last_renew.is_none_or(|t| t.elapsed() > self.config.renew_deadline) {
                self.set_leader(false);
            }
            tokio::select! {
                () = &mut cancelled => break,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        let was_leader = *self.leader.borrow();
        self.set_leader(false);
        if was_leader {
            self.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l", "namespace": "kube-system"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration,
                "renewTime": Timestamp::from_second(renewed).unwrap().to_string(),
            }
        }))
        .unwrap()
    }

    #[test]
    fn acquire_only_when_free_expired_or_ours() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert!(can_acquire(&lease(None, 999, 15), "me", now));
        assert!(can_acquire(&lease(Some(""), 999, 15), "me", now));
        assert!(can_acquire(&lease(Some("me"), 999, 15), "me", now));
        assert!(!can_acquire(&lease(Some("other"), 990, 15), "me", now));
        assert!(!can_acquire(&lease(Some("other"), 985, 15), "me", now));
        assert!(can_acquire(&lease(Some("other"), 984, 15), "me", now));
        // A released lease (duration 1) is free a second later anyway.
        assert!(can_acquire(&lease(Some("other"), 998, 1), "me", now));
    }

    #[test]
    fn identities_differ() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        assert!(a.contains('_'));
    }
}
