//! Pure computation of a pod's status from what the runtime reports: phase, conditions and
//! container statuses with upstream's states and reasons.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use crate::cri::v1;

/// What the worker knows of one container of the spec.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The newest runtime container for this name.
    pub latest: Option<v1::ContainerStatus>,
    /// The one before it.
    pub previous: Option<v1::ContainerStatus>,
    /// Why no container runs right now (reason, message), when the worker knows.
    pub waiting: Option<(String, String)>,
    /// The readiness result for `latest`.
    pub ready: bool,
    /// Whether `latest` passed its startup probe (or has none).
    pub started: bool,
}

impl Observed {
    pub fn state(&self) -> Option<v1::ContainerState> {
        self.latest
            .as_ref()
            .and_then(|s| v1::ContainerState::try_from(s.state).ok())
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.state() {
            Some(v1::ContainerState::ContainerExited | v1::ContainerState::ContainerUnknown) => {
                self.latest.as_ref().map(|s| s.exit_code)
            }
            _ => None,
        }
    }
}

/// A CRI timestamp (ns) as a Kubernetes time (seconds, UTC).
pub(crate) fn time(ns: i64) -> Option<String> {
    (ns > 0)
        .then(|| jiff::Timestamp::from_second(ns / 1_000_000_000).ok())
        .flatten()
        .map(|t| t.to_string())
}

fn terminated(s: &v1::ContainerStatus) -> Value {
    let reason = if s.reason.is_empty() {
        if s.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_owned()
    } else {
        s.reason.clone()
    };
    let mut t = json!({
        "exitCode": s.exit_code,
        "reason": reason,
        "startedAt": time(s.started_at),
        "finishedAt": time(s.finished_at),
        "containerID": format!("containerd://{}", s.id),
    });
    if !s.message.is_empty() {
        t["message"] = json!(s.message);
    }
    json!({ "terminated": t })
}

/// One entry of `containerStatuses`/`initContainerStatuses`.
pub(crate) fn container_status(c: &Container, o: &Observed, default_waiting: &str) -> Value {
    let image = c.image.clone().unwrap_or_default();
    let mut st = json!({
        "name": c.name,
        "image": image,
        "imageID": "",
        "ready": false,
        "restartCount": 0,
        "started": false,
        "state": {"waiting": {"reason": default_waiting}},
        "lastState": {},
    });
    if let Some((reason, message)) = &o.waiting {
        st["state"] = json!({"waiting": {"reason": reason, "message": message}});
    }
    let Some(latest) = &o.latest else {
        return st;
    };
    st["restartCount"] = json!(latest.metadata.as_ref().map_or(0, |m| m.attempt));
    st["containerID"] = json!(format!("containerd://{}", latest.id));
    st["imageID"] = json!(latest.image_ref);
    if let Some(prev) = &o.previous {
        st["lastState"] = terminated(prev);
    }
    match o.state() {
        Some(v1::ContainerState::ContainerRunning) => {
            st["state"] = json!({"running": {"startedAt": time(latest.started_at)}});
            st["ready"] = json!(o.ready);
            st["started"] = json!(o.started);
        }
        Some(v1::ContainerState::ContainerCreated) => {
            st["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        }
        _ => {
            if o.waiting.is_some() {
                // Restarting (back-off, or a failed re-creation): the exit is the last state.
                st["lastState"] = terminated(latest);
            } else {
                st["state"] = terminated(latest);
            }
        }
    }
    st
}

/// The pod's phase, by upstream's rules.
pub(crate) fn phase(
    restart_policy: &str,
    init: &[(&Container, &Observed)],
    containers: &[(&Container, &Observed)],
) -> &'static str {
    let mut initialized = true;
    for (_, o) in init {
        match o.exit_code() {
            Some(0) => {}
            Some(_) if restart_policy == "Never" => return "Failed",
            _ => initialized = false,
        }
    }
    if !initialized {
        return "Pending";
    }
    let (mut waiting_fresh, mut running, mut failed) = (0, 0, 0);
    for (_, o) in containers {
        match o.state() {
            Some(v1::ContainerState::ContainerRunning) => running += 1,
            None | Some(v1::ContainerState::ContainerCreated) => waiting_fresh += 1,
            _ => {
                if o.exit_code().unwrap_or(1) != 0 {
                    failed += 1;
                }
            }
        }
    }
    if waiting_fresh > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else {
        match restart_policy {
            "Never" if failed > 0 => "Failed",
            "OnFailure" if failed > 0 => "Running",
            "Always" => "Running",
            _ => "Succeeded",
        }
    }
}

/// The inputs of [`pod_status`].
#[derive(Debug)]
pub(crate) struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub host_ip: &'a str,
    pub pod_ips: &'a [String],
    pub init: Vec<(&'a Container, &'a Observed)>,
    pub containers: Vec<(&'a Container, &'a Observed)>,
    pub now: &'a str,
}

/// The pod's status as a JSON object for a merge patch.
pub(crate) fn pod_status(i: &StatusInput<'_>) -> Value {
    let spec = i.pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let phase = phase(&policy, &i.init, &i.containers);
    let initialized = i.init.iter().all(|(_, o)| o.exit_code() == Some(0));
    let unready: Vec<&str> = i
        .containers
        .iter()
        .filter(|(_, o)| !(o.ready && o.state() == Some(v1::ContainerState::ContainerRunning)))
        .map(|(c, _)| c.name.as_str())
        .collect();
    let existing = i.pod.status.clone().unwrap_or_default();
    let old_conditions = existing.conditions.clone().unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = old_conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or_else(|| i.now.to_owned(), |t| t.0.to_string());
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let completed = phase == "Succeeded" || phase == "Failed";
    let containers_ready = unready.is_empty();
    let (not_ready_reason, not_ready_message) = if completed {
        (Some("PodCompleted"), None)
    } else if containers_ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let uninit: Vec<&str> = i
        .init
        .iter()
        .filter(|(_, o)| o.exit_code() != Some(0))
        .map(|(c, _)| c.name.as_str())
        .collect();
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !i.pod_ips.is_empty() && !completed,
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            (!initialized)
                .then(|| format!("containers with incomplete status: [{}]", uninit.join(" "))),
        ),
        condition(
            "Ready",
            containers_ready && !completed,
            not_ready_reason,
            not_ready_message.clone(),
        ),
        condition(
            "ContainersReady",
            containers_ready && !completed,
            not_ready_reason,
            not_ready_message,
        ),
    ];
    let scheduled = old_conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map_or_else(
            || condition("PodScheduled", true, None, None),
            |c| serde_json::to_value(c).unwrap_or(Value::Null),
        );
    conditions.push(scheduled);

    let default_waiting = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": i.host_ip,
        "hostIPs": [{"ip": i.host_ip}],
        "startTime": existing.start_time.map_or_else(|| i.now.to_owned(), |t| t.0.to_string()),
        "qosClass": crate::pods::spec::qos_class(i.pod),
        "containerStatuses": i.containers.iter().map(|(c, o)| container_status(c, o, default_waiting)).collect::<Vec<_>>(),
    });
    if !i.init.is_empty() {
        status["initContainerStatuses"] = json!(
            i.init
                .iter()
                .map(|(c, o)| container_status(c, o, "PodInitializing"))
                .collect::<Vec<_>>()
        );
    }
    if let Some(ip) = i.pod_ips.first() {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!(
            i.pod_ips
                .iter()
                .map(|ip| json!({"ip": ip}))
                .collect::<Vec<_>>()
        );
    }
    status
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            ..Default::default()
        }
    }

    fn exited(code: i32, attempt: u32) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: format!("id{attempt}"),
            metadata: Some(v1::ContainerMetadata {
                name: "c".into(),
                attempt,
            }),
            state: v1::ContainerState::ContainerExited as i32,
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            started_at: 1_700_000_000_000_000_000,
            finished_at: 1_700_000_001_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_exit_as_last_state() {
        let c = container("c");
        let o = Observed {
            latest: Some(exited(1, 2)),
            waiting: Some(("CrashLoopBackOff".into(), "back-off 20s".into())),
            ..Default::default()
        };
        let s = container_status(&c, &o, "ContainerCreating");
        assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(s["restartCount"], 2);
        assert_eq!(phase("Always", &[], &[(&c, &o)]), "Running");
    }

    #[test]
    fn phases() {
        let c = container("c");
        let done = Observed {
            latest: Some(exited(0, 0)),
            ..Default::default()
        };
        let failed = Observed {
            latest: Some(exited(1, 0)),
            ..Default::default()
        };
        let none = Observed::default();
        assert_eq!(phase("Never", &[], &[(&c, &done)]), "Succeeded");
        assert_eq!(phase("Never", &[], &[(&c, &failed)]), "Failed");
        assert_eq!(phase("OnFailure", &[], &[(&c, &failed)]), "Running");
        assert_eq!(phase("Always", &[], &[(&c, &none)]), "Pending");
        assert_eq!(phase("Never", &[(&c, &failed)], &[(&c, &none)]), "Failed");
        assert_eq!(phase("Always", &[(&c, &none)], &[(&c, &none)]), "Pending");
    }

    #[test]
    fn times_are_whole_seconds() {
        assert_eq!(
            time(1_700_000_000_123_456_789).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(time(0), None);
    }
}
