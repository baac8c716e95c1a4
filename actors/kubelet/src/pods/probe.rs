//! Probes: readiness, liveness and startup, over HTTP GET (to the pod IP), TCP or exec (CRI
//! ExecSync), with upstream's thresholds and periods.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::cri::{Cri, v1};

/// The outcome of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The probe succeeded.
    Success,
    /// The probe failed, with why.
    Failure(String),
}

/// The counters of one probe of one container.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTrack {
    pub next_at: Instant,
    pub successes: i32,
    pub failures: i32,
}

/// The probe state of one container instance (reset when its container ID changes).
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    pub container_id: String,
    pub started: bool,
    pub ready: bool,
    pub readiness: ProbeTrack,
    pub liveness: ProbeTrack,
    pub startup: ProbeTrack,
}

impl Probes {
    /// Fresh state for container `id` started at `started_at`.
    pub fn new(id: &str, c: &Container, started_at: Instant) -> Self {
        let track = |p: &Option<Probe>| ProbeTrack {
            next_at: started_at
                + Duration::from_secs(
                    p.as_ref()
                        .and_then(|p| p.initial_delay_seconds)
                        .unwrap_or(0)
                        .max(0) as u64,
                ),
            successes: 0,
            failures: 0,
        };
        Self {
            container_id: id.to_owned(),
            started: c.startup_probe.is_none(),
            ready: false,
            readiness: track(&c.readiness_probe),
            liveness: track(&c.liveness_probe),
            startup: track(&c.startup_probe),
        }
    }
}

/// What the worker must do after probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing.
    Keep,
    /// The container failed its liveness or startup probe: restart it.
    Restart(String),
}

/// Where probes connect to.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub cri: &'a Cri,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
}

/// Runs the probes of one running container that are due; updates `state`.
pub(crate) async fn run(
    c: &Container,
    state: &mut Probes,
    target: &Target<'_>,
) -> (Verdict, Option<String>) {
    let now = Instant::now();
    let mut unhealthy = None;
    if !state.started {
        if let Some(p) = &c.startup_probe
            && now >= state.startup.next_at
        {
            let out = execute(p, c, target).await;
            if let Some(reached) = account(p, &mut state.startup, &out, now) {
                if reached {
                    state.started = true;
                } else {
                    return (
                        Verdict::Restart(format!(
                            "Container {} failed startup probe, will be restarted",
                            c.name
                        )),
                        failure_message("Startup", &out),
                    );
                }
            }
            unhealthy = failure_message("Startup", &out);
        }
        if !state.started {
            return (Verdict::Keep, unhealthy);
        }
    }
    match &c.readiness_probe {
        None => state.ready = true,
        Some(p) if now >= state.readiness.next_at => {
            let out = execute(p, c, target).await;
            if let Some(reached) = account(p, &mut state.readiness, &out, now) {
                state.ready = reached;
            }
            unhealthy = unhealthy.or(failure_message("Readiness", &out));
        }
        Some(_) => {}
    }
    if let Some(p) = &c.liveness_probe
        && now >= state.liveness.next_at
    {
        let out = execute(p, c, target).await;
        if account(p, &mut state.liveness, &out, now) == Some(false) {
            return (
                Verdict::Restart(format!(
                    "Container {} failed liveness probe, will be restarted",
                    c.name
                )),
                failure_message("Liveness", &out),
            );
        }
        unhealthy = unhealthy.or(failure_message("Liveness", &out));
    }
    (Verdict::Keep, unhealthy)
}

fn failure_message(kind: &str, out: &Outcome) -> Option<String> {
    match out {
        Outcome::Success => None,
        Outcome::Failure(why) => Some(format!("{kind} probe failed: {why}")),
    }
}

/// Counts one result; returns `Some(true)` when the success threshold is reached, `Some(false)`
/// when the failure threshold is, `None` otherwise. Schedules the next run.
fn account(p: &Probe, t: &mut ProbeTrack, out: &Outcome, now: Instant) -> Option<bool> {
    t.next_at = now + Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
    match out {
        Outcome::Success => {
            t.failures = 0;
            t.successes += 1;
            (t.successes >= p.success_threshold.unwrap_or(1).max(1)).then_some(true)
        }
        Outcome::Failure(_) => {
            t.successes = 0;
            t.failures += 1;
            (t.failures >= p.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Runs one probe once, within its timeout.
pub(crate) async fn execute(p: &Probe, c: &Container, target: &Target<'_>) -> Outcome {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let run = async {
        if let Some(h) = &p.http_get {
            let host = h
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| target.pod_ip.to_owned());
            let port = resolve_port(&h.port, c)?;
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = h
                .http_headers
                .iter()
                .flatten()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect();
            http_get(&host, port, &path, &headers).await
        } else if let Some(t) = &p.tcp_socket {
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| target.pod_ip.to_owned());
            let port = resolve_port(&t.port, c)?;
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if let Some(e) = &p.exec {
            let mut runtime = target.cri.runtime.clone();
            let reply = runtime
                .exec_sync(v1::ExecSyncRequest {
                    container_id: target.container_id.to_owned(),
                    cmd: e.command.clone().unwrap_or_default(),
                    timeout: timeout.as_secs() as i64,
                })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            if reply.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "command exited with {}: {}",
                    reply.exit_code,
                    String::from_utf8_lossy(&reply.stdout).trim()
                ))
            }
        } else {
            // gRPC probes are not supported: count them as passing rather than kill the pod.
            Ok(())
        }
    };
    match tokio::time::timeout(timeout + Duration::from_millis(200), run).await {
        Ok(Ok(())) => Outcome::Success,
        Ok(Err(why)) => Outcome::Failure(why),
        Err(_) => Outcome::Failure(format!("timed out after {}s", timeout.as_secs())),
    }
}

fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

/// One HTTP/1.1 GET; a status in 200..400 passes.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": dial tcp {host}:{port}: {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed HTTP response {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn thresholds() {
        let p: Probe = serde_json::from_value(
            serde_json::json!({"failureThreshold": 2, "successThreshold": 1, "periodSeconds": 1}),
        )
        .unwrap();
        let now = Instant::now();
        let mut t = ProbeTrack {
            next_at: now,
            successes: 0,
            failures: 0,
        };
        let fail = Outcome::Failure("x".into());
        assert_eq!(account(&p, &mut t, &fail, now), None);
        assert_eq!(account(&p, &mut t, &fail, now), Some(false));
        assert_eq!(account(&p, &mut t, &Outcome::Success, now), Some(true));
        assert_eq!(t.next_at, now + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn http_probe_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for code in [200, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await.unwrap();
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        assert_eq!(http_get("127.0.0.1", port, "/", &[]).await, Ok(()));
        assert!(
            http_get("127.0.0.1", port, "/", &[])
                .await
                .unwrap_err()
                .contains("503")
        );
    }
}
