//! The `node` child: registers this Node, posts its status every 10 s, renews its Lease in
//! `kube-node-lease` every 10 s, and once the server has assigned `spec.podCIDR` writes the CNI
//! configuration (a `cni0` bridge with host-local IPAM over the pod CIDR, plus portmap).
//!
//! The node is Ready when containerd answers and the CNI configuration is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kernel::{BoxError, ServiceCtx};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::{info, warn};

use crate::Shared;
use crate::cri::Cri;

/// The kubelet version this node reports.
pub(crate) const KUBELET_VERSION: &str = "v1.32.4+k3s-rs";
/// The port reported as the kubelet endpoint (the API server reaches the kubelet through its own
/// dialer, not this port).
const KUBELET_PORT: i32 = 10250;
/// Status and lease period.
const PERIOD: Duration = Duration::from_secs(10);
/// Lease duration, as upstream's default.
const LEASE_SECONDS: i32 = 40;

/// Errors of the node child.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The `node` service.
pub(crate) async fn run(ctx: ServiceCtx, shared: Arc<Shared>) -> Result<(), BoxError> {
    let cri = Cri::connect(&shared.paths.containerd_socket);
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let facts = HostFacts::gather(&shared.paths.agent_dir).await;
    register(&nodes, &shared).await?;
    enable_forwarding();
    ctx.ready();

    let mut last_status = tokio::time::Instant::now() - PERIOD;
    let mut cni_written: Option<String> = None;
    loop {
        // The pod CIDR arrives once the server's IPAM has run: poll each second until then.
        if cni_written.is_none() {
            match nodes.get(&shared.config.node_name).await {
                Ok(node) => {
                    if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
                        match write_cni_config(&shared, &cidr) {
                            Ok(()) => {
                                info!(%cidr, "wrote the CNI configuration");
                                cni_written = Some(cidr);
                                last_status = tokio::time::Instant::now() - PERIOD;
                            }
                            Err(e) => warn!(error = %e, "writing the CNI configuration"),
                        }
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    if let Err(e) = register(&nodes, &shared).await {
                        warn!(error = %e, "re-registering the node");
                    }
                }
                Err(e) => warn!(error = %e, "reading the node"),
            }
        }
        if last_status.elapsed() >= PERIOD {
            last_status = tokio::time::Instant::now();
            let runtime = cri.version().await;
            let cni_ready = shared.paths.cni_conflist().exists();
            let status = node_status(
                &shared,
                &facts,
                runtime.as_ref().ok(),
                runtime.as_ref().err(),
                cni_ready,
            );
            if let Err(e) = nodes
                .patch_status(
                    &shared.config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
            {
                warn!(error = %e, "posting node status");
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    let _ = register(&nodes, &shared).await;
                }
            }
            if let Err(e) = renew_lease(&shared).await {
                warn!(error = %e, "renewing the node lease");
            }
        }
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Creates the Node if it does not exist; otherwise makes sure its labels are set.
async fn register(nodes: &Api<Node>, shared: &Shared) -> Result<(), NodeError> {
    let name = &shared.config.node_name;
    let mut labels: BTreeMap<String, String> = shared.config.node_labels.clone();
    labels.extend(
        [
            ("kubernetes.io/hostname", name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", crate::tar::go_arch()),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", crate::tar::go_arch()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    match nodes.get_opt(name).await {
        Ok(Some(_)) => {
            nodes
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .map_err(|source| NodeError::Api {
                    what: "labelling the node",
                    source,
                })?;
            info!(node = %name, "node already registered");
        }
        Ok(None) => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => info!(node = %name, "registered the node"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(source) => {
                    return Err(NodeError::Api {
                        what: "registering the node",
                        source,
                    });
                }
            }
        }
        Err(source) => {
            return Err(NodeError::Api {
                what: "reading the node",
                source,
            });
        }
    }
    Ok(())
}

/// Facts about the host read once at start.
#[derive(Debug, Clone)]
struct HostFacts {
    cpus: usize,
    memory_kib: u64,
    storage_kib: Option<u64>,
    kernel: String,
    os_image: String,
    machine_id: String,
    boot_id: String,
    system_uuid: String,
}

impl HostFacts {
    async fn gather(agent_dir: &Path) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo_total(&m))
            .unwrap_or(0);
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| parse_pretty_name(&s))
            .unwrap_or_else(|| "Linux".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            storage_kib: disk_size_kib(agent_dir).await,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            system_uuid: read("/sys/class/dmi/id/product_uuid"),
        }
    }
}

/// `MemTotal` of /proc/meminfo, in KiB.
fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `PRETTY_NAME` of /etc/os-release.
fn parse_pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

/// The size of the filesystem holding `dir`, from `df`.
async fn disk_size_kib(dir: &Path) -> Option<u64> {
    let _ = std::fs::create_dir_all(dir);
    let out = tokio::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(1)?.parse().ok()
}

/// The status subresource body this node posts.
fn node_status(
    shared: &Shared,
    facts: &HostFacts,
    runtime: Option<&crate::cri::v1::VersionResponse>,
    runtime_error: Option<&tonic::Status>,
    cni_ready: bool,
) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let mut capacity = json!({
        "cpu": facts.cpus.to_string(),
        "memory": format!("{}Ki", facts.memory_kib),
        "pods": "110",
    });
    if let Some(kib) = facts.storage_kib {
        capacity["ephemeral-storage"] = json!(format!("{kib}Ki"));
    }
    let (ready, reason, message) = match (runtime, cni_ready) {
        (Some(_), true) => ("True", "KubeletReady", "kubelet is posting ready status".to_owned()),
        (None, _) => (
            "False",
            "KubeletNotReady",
            format!(
                "container runtime is down: {}",
                runtime_error.map(|e| e.message().to_owned()).unwrap_or_default()
            ),
        ),
        (Some(_), false) => (
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni config uninitialized (waiting for the pod CIDR)".to_owned(),
        ),
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let runtime_version = runtime.map_or_else(String::new, |v| {
        format!("{}://{}", v.runtime_name, v.runtime_version)
    });
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", ready, reason, &message),
        ],
        "addresses": [
            {"type": "InternalIP", "address": shared.config.node_ip.to_string()},
            {"type": "Hostname", "address": shared.config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.system_uuid,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel,
            "osImage": facts.os_image,
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": crate::tar::go_arch(),
        },
    })
}

/// Creates or renews `kube-node-lease/<node>`.
async fn renew_lease(shared: &Shared) -> Result<(), NodeError> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let name = &shared.config.node_name;
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..Default::default()
    };
    let patch = json!({"spec": {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": spec.renew_time,
    }});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|source| NodeError::Api {
                    what: "creating the node lease",
                    source,
                })
        }
        Err(source) => Err(NodeError::Api {
            what: "renewing the node lease",
            source,
        }),
    }
}

/// The CNI network configuration for a node with `pod_cidr`.
pub(crate) fn cni_conflist(pod_cidr: &str, data_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "k3s-rs",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir.join("networks").to_string_lossy(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

fn write_cni_config(shared: &Shared, pod_cidr: &str) -> Result<(), NodeError> {
    let paths = &shared.paths;
    let write = |path: &Path, data: &[u8]| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NodeError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        // Write then rename: containerd watches the directory and must never read half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| NodeError::Write {
                path: path.to_owned(),
                source,
            })
    };
    std::fs::create_dir_all(&paths.cni_data_dir).map_err(|source| NodeError::Write {
        path: paths.cni_data_dir.clone(),
        source,
    })?;
    let conf = cni_conflist(pod_cidr, &paths.cni_data_dir);
    let body = serde_json::to_vec_pretty(&conf).unwrap_or_default();
    let path = paths.cni_conflist();
    if std::fs::read(&path).ok().as_deref() == Some(body.as_slice()) {
        return Ok(());
    }
    write(&path, &body)
}

/// Routing between pods and services needs forwarding on (in this network namespace), and bridged
/// traffic seen by iptables so that service rules apply between pods on this node.
fn enable_forwarding() {
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        warn!(error = %e, "enabling net.ipv4.ip_forward");
    }
    if !Path::new("/proc/sys/net/bridge").exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .status();
    }
    for f in [
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
        "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    ] {
        if let Err(e) = std::fs::write(f, "1") {
            warn!(error = %e, file = f, "enabling bridged traffic through iptables");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24683912 kB\nMemFree: 1 kB\n"),
            Some(24_683_912)
        );
        assert_eq!(
            parse_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn cni_config_uses_the_pod_cidr_and_the_agent_dir() {
        let c = cni_conflist("10.42.0.0/24", Path::new("/d/agent/cni"));
        assert_eq!(c["plugins"][0]["bridge"], "cni0");
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.0.0/24"
        );
        assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/d/agent/cni/networks");
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }
}
