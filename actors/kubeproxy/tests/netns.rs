//! kube-proxy against the real iptables tools, in a private network namespace (`ip netns add`,
//! commands through `nsenter`), so the host's rules are never touched.
//!
//! Needs root, `ip`, `nsenter` and the iptables tools. Without them the tests say why and
//! pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubeproxy::{Iptables, ProxyConfig, model, render};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A network namespace that is deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace, or `None` (with the reason printed) when this machine cannot make one.
    fn create(tag: &str) -> Option<Netns> {
        let why_not = if !is_root() {
            Some("not running as root".to_owned())
        } else {
            [
                "ip",
                "nsenter",
                "iptables",
                "iptables-restore",
                "iptables-save",
            ]
            .iter()
            .find(|p| which(p).is_none())
            .map(|p| format!("{p} is not installed"))
        };
        if let Some(why) = why_not {
            skip(&why);
            return None;
        }
        let name = format!("kp-{tag}-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        if !out.status.success() {
            skip(&format!(
                "ip netns add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Some(Netns { name })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn save(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg("iptables-save")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A child process killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Netns {
    fn run(&self, args: &[&str]) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("cannot run the network namespace tests under CI: {why}");
    }
    eprintln!("skipping: {why}");
}

fn service(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "smoke"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn slice(service: &str, ips: &[&str]) -> Value {
    let eps: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "smoke",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}

fn cidr() -> ipnet::IpNet {
    "10.42.0.0/16".parse().unwrap()
}

fn count(save: &str, line: &str) -> usize {
    save.lines().filter(|l| *l == line).count()
}

#[tokio::test]
async fn rules_apply_update_and_clean_up_in_a_netns() {
    let Some(ns) = Netns::create("apply") else {
        return;
    };
    let ipt = Iptables::in_netns(&ns.path());
    let svc: Service = serde_json::from_value(service("web", "10.43.0.20")).unwrap();
    let eps: EndpointSlice =
        serde_json::from_value(slice("web", &["10.42.0.5", "10.42.0.6"])).unwrap();
    let ports = model::service_ports(&[&svc], &[&eps]);
    assert_eq!(ports.len(), 1);
    let svc_chain = render::svc_chain(&ports[0]);

    let applied = ipt.sync(&ports, &cidr()).await.unwrap();
    assert_eq!(applied.dynamic_chains.len(), 3);
    // Twice: the jumps stay single.
    ipt.sync(&ports, &cidr()).await.unwrap();
    let save = ns.save();
    for c in &applied.dynamic_chains {
        assert!(
            save.contains(&format!(":{c} - [0:0]")),
            "{c} missing:\n{save}"
        );
    }
    assert!(save.contains("-d 10.43.0.20/32"), "{save}");
    assert!(save.contains("--to-destination 10.42.0.5:8080"), "{save}");
    assert!(
        save.contains("--probability 0.50000000000") || save.contains("--probability 0.5000000000"),
        "{save}"
    );
    for (line, n) in [
        (
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            1,
        ),
        (
            "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            1,
        ),
        (
            "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
            1,
        ),
        (
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
            1,
        ),
        (
            "-A KUBE-FORWARD -s 10.42.0.0/16 -m comment --comment \"cluster CIDR (source)\" -j ACCEPT",
            1,
        ),
    ] {
        assert_eq!(count(&save, line), n, "{line}\n{save}");
    }
    // Traffic flows: from inside the namespace (the OUTPUT path, as curl on a node) the
    // cluster IP reaches both endpoints (addresses on lo, served by python's http.server).
    if which("python3").is_some() && which("curl").is_some() {
        let web = tempfile::tempdir().unwrap();
        std::fs::write(web.path().join("index.html"), "served\n").unwrap();
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["ip", "route", "add", "10.43.0.0/16", "dev", "lo"]);
        let mut servers = Vec::new();
        for ip in ["10.42.0.5", "10.42.0.6"] {
            ns.run(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]);
            servers.push(Server(
                Command::new("nsenter")
                    .arg(format!("--net={}", ns.path().display()))
                    .args([
                        "python3",
                        "-m",
                        "http.server",
                        "8080",
                        "--bind",
                        ip,
                        "--directory",
                    ])
                    .arg(web.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            ));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut ok = 0;
        while ok < 6 {
            let out = Command::new("nsenter")
                .arg(format!("--net={}", ns.path().display()))
                .args(["curl", "-sS", "--max-time", "2", "http://10.43.0.20/"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("served") {
                ok += 1;
            } else {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster IP does not serve: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    } else {
        eprintln!("python3 or curl missing: not checking traffic through the rules");
    }

    // Forwarding is on in the namespace.
    ipt.enable_forwarding().await.unwrap();
    let fwd = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");

    // No ready endpoints: the service chains go, a REJECT takes their place.
    let empty: EndpointSlice = serde_json::from_value(slice("web", &[])).unwrap();
    let ports = model::service_ports(&[&svc], &[&empty]);
    ipt.sync(&ports, &cidr()).await.unwrap();
    let save = ns.save();
    assert!(!save.contains(&svc_chain), "{save}");
    assert!(!save.contains("KUBE-SEP-"), "{save}");
    assert!(save.contains("smoke/web:http has no endpoints"), "{save}");

    // The Service is deleted: nothing names its IP any more.
    ipt.sync(&[], &cidr()).await.unwrap();
    assert!(!ns.save().contains("10.43.0.20"));

    ipt.cleanup().await.unwrap();
    let save = ns.save();
    assert!(!save.contains("KUBE-"), "left behind:\n{save}");
}

/// The whole loop: an in-process API server, Services and EndpointSlices created through it,
/// and the rules following them in the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_follow_the_api() {
    let Some(ns) = Netns::create("loop") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = apiserver::ApiConfig {
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        advertise: "127.0.0.1:6443".into(),
        endpoint: ("127.0.0.1".parse().unwrap(), 6443),
    };
    let state = apiserver::ApiState::open("", dir.path(), config)
        .await
        .unwrap();
    apiserver::bootstrap(&state).await.unwrap();
    let router = apiserver::router(state);
    let svc =
        tower::ServiceExt::map_request(router, |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut()
                .insert(protocols::user::UserInfo::authenticated(
                    "system:kube-proxy",
                    [protocols::user::MASTERS.to_owned()],
                ));
            req.map(axum::body::Body::new)
        });
    let client = kube::Client::new(svc, "default");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ipt = Iptables::in_netns(&ns.path());
    let proxy = tokio::spawn(kubeproxy::run(
        client.clone(),
        ProxyConfig {
            node_name: "n1".into(),
            node_ip: "10.0.0.1".parse().unwrap(),
            cluster_cidr: cidr(),
        },
        ipt,
        || {},
        async move {
            let _ = stop_rx.await;
        },
    ));

    let nsapi: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    nsapi
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "smoke"}})).unwrap(),
        )
        .await
        .unwrap();
    let svcs: kube::Api<Service> = kube::Api::namespaced(client.clone(), "smoke");
    let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client.clone(), "smoke");
    svcs.create(
        &Default::default(),
        &serde_json::from_value(service("web", "10.43.0.30")).unwrap(),
    )
    .await
    .unwrap();
    slices
        .create(
            &Default::default(),
            &serde_json::from_value(slice("web", &["10.42.0.9"])).unwrap(),
        )
        .await
        .unwrap();

    let wait_for = |want: &'static str, present: bool| {
        let ns = &ns;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let save = ns.save();
                if save.contains(want) == present {
                    return save;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "waited for {want:?} present={present}:\n{save}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let save = wait_for("--to-destination 10.42.0.9:8080", true).await;
    assert!(save.contains("-d 10.43.0.30/32"), "{save}");

    svcs.delete("web", &Default::default()).await.unwrap();
    wait_for("10.43.0.30", false).await;

    stop_tx.send(()).unwrap();
    proxy.await.unwrap().unwrap();
    let save = ns.save();
    let ours: BTreeSet<&str> = save.lines().filter(|l| l.contains("KUBE-")).collect();
    assert!(ours.is_empty(), "left behind: {ours:?}");
}
