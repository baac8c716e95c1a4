//! Pure translation of a Pod's spec into CRI sandbox and container configurations: DNS, ports,
//! labels, cgroups, namespaces, resources, security context, `$(VAR)` expansion and quantities.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cri::{self, v1};

/// The pod's sandbox configuration. Deterministic: adopting a sandbox after a restart rebuilds the
/// same configuration for CreateContainer.
pub(crate) fn sandbox_config(
    pod: &Pod,
    log_directory: &str,
    cgroup_root: &str,
    cluster_dns: IpAddr,
    cluster_domain: &str,
    attempt: u32,
) -> v1::PodSandboxConfig {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);

    let hostname = if host_network {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    } else {
        let mut h = spec.hostname.clone().unwrap_or_else(|| name.clone());
        h.truncate(63);
        h.trim_end_matches(['-', '.']).to_owned()
    };

    let mut labels: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(cri::LABEL_POD_UID.into(), uid.clone());
    labels.insert(cri::LABEL_POD_NAME.into(), name.clone());
    labels.insert(cri::LABEL_POD_NAMESPACE.into(), namespace.clone());

    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| v1::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => v1::Protocol::Udp as i32,
                Some("SCTP") => v1::Protocol::Sctp as i32,
                _ => v1::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();

    let security = spec.security_context.clone().unwrap_or_default();
    let sysctls = security
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });

    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        }),
        hostname,
        log_directory: log_directory.to_owned(),
        dns_config: dns_config(pod, &namespace, cluster_dns, cluster_domain),
        port_mappings,
        labels,
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: format!("{cgroup_root}/pod{uid}"),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces(pod)),
                run_as_user: security.run_as_user.map(|value| v1::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| v1::Int64Value { value }),
                supplemental_groups: security.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                readonly_rootfs: false,
            }),
            sysctls,
        }),
    }
}

/// The pod's DNS configuration by `dnsPolicy`; `None` lets the runtime copy the host's.
fn dns_config(
    pod: &Pod,
    namespace: &str,
    cluster_dns: IpAddr,
    domain: &str,
) -> Option<v1::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut cfg = match policy {
        "ClusterFirst" if host_network => return None,
        "ClusterFirst" | "ClusterFirstWithHostNet" => v1::DnsConfig {
            servers: vec![cluster_dns.to_string()],
            searches: vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_owned(),
            ],
            options: vec!["ndots:5".into()],
        },
        "None" => v1::DnsConfig::default(),
        _ => {
            spec.dns_config.as_ref()?;
            v1::DnsConfig::default()
        }
    };
    if let Some(extra) = &spec.dns_config {
        cfg.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        cfg.searches
            .extend(extra.searches.iter().flatten().cloned());
        for o in extra.options.iter().flatten() {
            let Some(name) = &o.name else { continue };
            cfg.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            });
        }
    }
    Some(cfg)
}

fn pod_namespaces(pod: &Pod) -> v1::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |host: Option<bool>, otherwise: v1::NamespaceMode| {
        if host.unwrap_or(false) {
            v1::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid_otherwise = if spec.share_process_namespace.unwrap_or(false) {
        v1::NamespaceMode::Pod
    } else {
        v1::NamespaceMode::Container
    };
    v1::NamespaceOption {
        network: mode(spec.host_network, v1::NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid_otherwise),
        ipc: mode(spec.host_ipc, v1::NamespaceMode::Pod),
        target_id: String::new(),
    }
}

/// Everything resolved for one container before CreateContainer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub env: Vec<(String, String)>,
    pub mounts: Vec<v1::Mount>,
}

/// The container's CRI configuration.
pub(crate) fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    resolved: &Resolved,
) -> v1::ContainerConfig {
    let meta = &pod.metadata;
    let vars: HashMap<&str, &str> = resolved
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| expand(s, &|k| vars.get(k).map(|v| (*v).to_owned())))
            .collect()
    };
    let labels: HashMap<String, String> = [
        (cri::LABEL_POD_UID, meta.uid.clone().unwrap_or_default()),
        (cri::LABEL_POD_NAME, meta.name.clone().unwrap_or_default()),
        (
            cri::LABEL_POD_NAMESPACE,
            meta.namespace.clone().unwrap_or_default(),
        ),
        (cri::LABEL_CONTAINER_NAME, c.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let annotations: HashMap<String, String> = [
        ("io.kubernetes.container.restartCount", attempt.to_string()),
        (
            "io.kubernetes.container.terminationMessagePath",
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(v1::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: resolved
            .env
            .iter()
            .map(|(key, value)| v1::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: resolved.mounts.clone(),
        labels,
        annotations,
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(resources(pod, c)),
            security_context: Some(security_context(pod, c)),
        }),
    }
}

/// The pod's QoS class, as upstream computes it.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            let (q, l) = (req.get(res).or(lim.get(res)), lim.get(res));
            if q.is_some() || l.is_some() {
                any = true;
            }
            match (q, l) {
                (Some(q), Some(l)) if quantity(&q.0) == quantity(&l.0) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn resources(pod: &Pod, c: &Container) -> v1::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let milli = |q: Option<&Quantity>| {
        q.and_then(|q| quantity(&q.0))
            .map(|v| (v * 1000.0).ceil() as i64)
    };
    let bytes = |q: Option<&Quantity>| q.and_then(|q| quantity(&q.0)).map(|v| v.ceil() as i64);
    let cpu_request = milli(requests.get("cpu").or(limits.get("cpu")));
    let cpu_limit = milli(limits.get("cpu"));
    let memory_limit = bytes(limits.get("memory"));
    let memory_request = bytes(requests.get("memory").or(limits.get("memory")));
    let shares = cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2));
    let (period, quota) = match cpu_limit {
        Some(m) if m > 0 => (100_000, (m * 100).max(1000)),
        _ => (0, 0),
    };
    let oom_score_adj = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let total = memory_total_bytes().max(1);
            let req = memory_request.unwrap_or(0);
            (1000 - 1000 * req / total).clamp(3, 999)
        }
    };
    v1::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        oom_score_adj,
        ..Default::default()
    }
}

fn memory_total_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<i64>().ok())
        })
        .map_or(1 << 30, |kib| kib * 1024)
}

fn security_context(pod: &Pod, c: &Container) -> v1::LinuxContainerSecurityContext {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut groups = pod_sc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = pod_sc.fs_group {
        groups.push(fs);
    }
    let mut ns = pod_namespaces(pod);
    ns.pid = if pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false) {
        v1::NamespaceMode::Node as i32
    } else {
        ns.pid
    };
    v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
        }),
        privileged: sc.privileged.unwrap_or(false),
        namespace_options: Some(ns),
        run_as_user: sc
            .run_as_user
            .or(pod_sc.run_as_user)
            .map(|value| v1::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(pod_sc.run_as_group)
            .map(|value| v1::Int64Value { value }),
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: groups,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
    }
}

/// Expands `$(VAR)` references as Kubernetes does: `$$` is a literal `$`, unknown or unterminated
/// references stay as written.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes quantity as a number (`100m` → 0.1, `64Mi` → 67108864).
pub(crate) fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let lookup = |k: &str| (k == "A").then(|| "x".to_owned());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$(", &lookup), "x-$(B)-$(A)-$(");
        assert_eq!(
            expand("echo served-by-$(hostname)", &lookup),
            "echo served-by-$(hostname)"
        );
        assert_eq!(expand("a$b", &lookup), "a$b");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("100m"), Some(0.1));
        assert_eq!(quantity("64Mi"), Some(67_108_864.0));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("x"), None);
    }

    #[test]
    fn sandbox_has_cluster_dns_labels_and_cgroup() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "smoke", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}
        }));
        let s = sandbox_config(
            &p,
            "/logs",
            "/k3s-rs-abc",
            "10.43.0.10".parse().unwrap(),
            "cluster.local",
            0,
        );
        assert_eq!(s.hostname, "web-1");
        let dns = s.dns_config.unwrap();
        assert_eq!(dns.servers, ["10.43.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "smoke.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(s.labels[cri::LABEL_POD_UID], "u1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.linux.unwrap().cgroup_parent, "/k3s-rs-abc/podu1");
    }

    #[test]
    fn container_resources_and_log_path() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo $(X)"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi", "cpu": "500m"}}}]}
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let resolved = Resolved {
            env: vec![("X".into(), "y".into())],
            mounts: vec![],
        };
        let cfg = container_config(&p, c, 2, &resolved);
        assert_eq!(cfg.command, ["sh", "-c", "echo y"]);
        assert_eq!(cfg.log_path, "c/2.log");
        let r = cfg.linux.unwrap().resources.unwrap();
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        assert_eq!(r.cpu_shares, 10);
        assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 50_000));
        assert_eq!(qos_class(&p), "Burstable");
    }
}
