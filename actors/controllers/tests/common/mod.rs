//! Test fixtures: a real API server in-process, the controllers on a kernel, and simulated nodes
//! (a Node object plus a loop that plays the kubelet: bound pods become Running and Ready with a
//! pod IP, terminating pods are removed).

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use protocols::user::UserInfo;
use serde_json::json;

/// A `kube::Client` served by `api` as `user` (as in the server's `src/inprocess.rs`).
pub fn client(api: axum::Router, user: UserInfo) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            req
        })
        .service(api);
    kube::Client::new(service, "default")
}

async fn state(dir: &std::path::Path) -> apiserver::ApiState {
    let config = apiserver::ApiConfig {
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        advertise: "127.0.0.1:6443".into(),
        endpoint: ("127.0.0.1".parse().unwrap(), 6443),
    };
    let state = apiserver::ApiState::open("", dir, config).await.unwrap();
    apiserver::bootstrap(&state).await.unwrap();
    state
}

/// A running API server with the controllers.
pub struct Cluster {
    pub client: kube::Client,
    pub kernel: kernel::Kernel,
    state: apiserver::ApiState,
    _dir: tempfile::TempDir,
    sims: Vec<tokio::task::JoinHandle<()>>,
    paused: BTreeMap<String, Arc<AtomicBool>>,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(options()).await
    }

    /// A cluster whose controllers use `options`.
    pub async fn start_with(options: controllers::Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let admin = UserInfo::authenticated("system:admin", [protocols::user::MASTERS.to_owned()]);
        let client = client(apiserver::router(state.clone()), admin);
        let kernel = kernel::Kernel::new();
        kernel
            .start(controllers::supervisor_with(
                client.clone(),
                config(),
                options,
            ))
            .await
            .unwrap();
        Self {
            client,
            kernel,
            state,
            _dir: dir,
            sims: Vec::new(),
            paused: BTreeMap::new(),
        }
    }

    /// Adds a Ready node (cpu, memory allocatable; extra merged into the object) and starts
    /// playing its kubelet.
    pub async fn add_node(
        &mut self,
        name: &str,
        cpu: &str,
        memory: &str,
        extra: serde_json::Value,
    ) {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
        });
        merge(&mut v, extra);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(v).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let status = json!({"status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
                "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        let client = self.client.clone();
        let node = name.to_owned();
        let index = self.sims.len();
        let paused = Arc::new(AtomicBool::new(false));
        self.paused.insert(name.to_owned(), paused.clone());
        self.sims.push(tokio::spawn(async move {
            kubelet(client, node, index, paused).await
        }));
    }

    /// Stops (true) or resumes (false) the simulated kubelet of `node`: no heartbeats, no pod
    /// updates while stopped.
    pub fn pause_node(&self, node: &str, paused: bool) {
        self.paused[node].store(paused, Ordering::SeqCst);
    }

    /// Another controllers supervisor (another "server") on the same API server.
    pub async fn second_controllers(&self, options: controllers::Options) -> kernel::Kernel {
        let admin = UserInfo::authenticated("system:admin", [protocols::user::MASTERS.to_owned()]);
        let client = client(apiserver::router(self.state.clone()), admin);
        let kernel = kernel::Kernel::new();
        kernel
            .start(controllers::supervisor_with(client, config(), options))
            .await
            .unwrap();
        kernel
    }

    pub async fn stop(self) {
        for s in &self.sims {
            s.abort();
        }
        self.kernel.shutdown(Duration::from_secs(5)).await;
        self.state.close().await;
    }
}

pub fn config() -> controllers::ControllersConfig {
    controllers::ControllersConfig {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        node_cidr_mask: 24,
        root_ca_pem: "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n".into(),
    }
}

/// Test options: leader election with short timings.
pub fn options() -> controllers::Options {
    controllers::Options {
        leader_election: Some(election("test-a")),
        node_monitor_period: Duration::from_millis(500),
        ..controllers::Options::default()
    }
}

/// Leader election as `identity`, lease 4 s, renew every 500 ms.
pub fn election(identity: &str) -> controllers::LeaderElection {
    controllers::LeaderElection {
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
        ..controllers::LeaderElection::default()
    }
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

pub fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// The label that makes the simulated kubelet finish a pod's containers with this exit code:
/// "0" → Succeeded; anything else → Failed (restartPolicy Never) or a restart (OnFailure/Always).
pub const EXIT_LABEL: &str = "sim.test/exit";

/// Plays the kubelet of `node`: renews its Lease in kube-node-lease and keeps Ready True; pods
/// bound to it become Running+Ready with an IP in 10.42.<index>.0/24, then finish if they carry
/// [`EXIT_LABEL`]; terminating pods are deleted at once. Does nothing while `paused`.
async fn kubelet(client: kube::Client, node: String, index: usize, paused: Arc<AtomicBool>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let mut next_ip = 2u32;
    let mut ips: BTreeMap<String, String> = BTreeMap::new();
    let mut beat = tokio::time::Instant::now() - Duration::from_secs(10);
    loop {
        if paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if beat.elapsed() > Duration::from_millis(500) {
            beat = tokio::time::Instant::now();
            let lease = json!({"metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now()}});
            if let Err(e) = leases
                .patch(
                    &node,
                    &PatchParams::apply("sim-kubelet").force(),
                    &Patch::Apply(&lease),
                )
                .await
            {
                eprintln!("sim kubelet {node}: lease not renewed: {e}");
            }
            if let Ok(n) = nodes.get(&node).await {
                let ready = n
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if !ready {
                    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                        "reason": "KubeletReady", "message": "ok",
                        "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
                    let _ = nodes
                        .patch_status(&node, &PatchParams::default(), &Patch::Strategic(&status))
                        .await;
                }
            }
        }
        if let Ok(list) = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
        {
            for p in list.items {
                let ns = p.metadata.namespace.clone().unwrap();
                let name = p.metadata.name.clone().unwrap();
                let uid = p.metadata.uid.clone().unwrap();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    continue;
                }
                let exit = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(EXIT_LABEL))
                    .and_then(|v| v.parse::<i32>().ok());
                let restart = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.clone())
                    .unwrap_or_else(|| "Always".into());
                if phase == Some("Running") {
                    let Some(code) = exit else { continue };
                    let restarts = p
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|c| c.first())
                        .map_or(0, |c| c.restart_count);
                    let status = if code == 0 || restart == "Never" {
                        let phase = if code == 0 { "Succeeded" } else { "Failed" };
                        json!({"status": {"phase": phase,
                            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now()}],
                            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                                "restartCount": restarts,
                                "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                                    "startedAt": now(), "finishedAt": now()}}}]}})
                    } else {
                        if restarts > 20 {
                            continue;
                        }
                        json!({"status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                            "ready": true, "restartCount": restarts + 1,
                            "state": {"running": {"startedAt": now()}},
                            "lastState": {"terminated": {"exitCode": code, "reason": "Error"}}}]}})
                    };
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                    continue;
                }
                let ip = ips
                    .entry(uid)
                    .or_insert_with(|| {
                        next_ip += 1;
                        format!("10.42.{index}.{next_ip}")
                    })
                    .clone();
                let status = json!({"status": {
                    "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.1",
                    "startTime": now(),
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
                    ],
                    "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                        "restartCount": 0, "state": {"running": {"startedAt": now()}}}],
                }});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `f` until it returns `Some`, or panics after `secs` with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}
