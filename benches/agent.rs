//! Scenario benchmark for the node agent: `k3s server` (agent included) on a fresh data directory.
//! Prints, asserting nothing:
//! - time from launch to the node being Ready;
//! - pod startup latency (create → Running, image present) p50/p99 over 100 pods created one
//!   after another;
//! - resident memory of the k3s process and, separately, of containerd (with its shims): idle,
//!   with 30 pods and with 100 pods.
//!
//! Needs root, containerd, runc, the CNI plugins and a static busybox (as tests/agent.rs).
//! Run: `cargo bench --bench agent` (release build).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 100;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(why) = common::agent_prerequisites() {
        println!("agent benchmark skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("agent/images")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/busybox_image.py");
    assert!(
        Command::new("python3")
            .arg(script)
            .arg(data.join("agent/images/busybox.tar"))
            .status()
            .unwrap()
            .success()
    );
    let port = common::free_port();
    let kubeconfig = dir.path().join("kc.yaml");
    let config = dir.path().join("empty.yaml");
    std::fs::write(&config, "").unwrap();

    let t0 = Instant::now();
    let mut child = Command::new(common::k3s_bin())
        .args(["server", "--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = Admin {
        port,
        tls: data.join("server/tls"),
    };
    loop {
        if admin.node_ready() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "node never Ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = t0.elapsed();
    println!(
        "launch → node Ready: {:.0} ms",
        ready.as_secs_f64() * 1000.0
    );

    std::thread::sleep(Duration::from_secs(5));
    report_memory("idle", child.id());

    // Pods one after another; a poller notes when each is first seen Running.
    let kc = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("kcache"))
            .args(args)
            .output()
            .unwrap()
    };
    let mut created: BTreeMap<String, Instant> = BTreeMap::new();
    let mut running: BTreeMap<String, Instant> = BTreeMap::new();
    for i in 0..PODS {
        let name = format!("p{i:03}");
        let out = kc(&[
            "run",
            &name,
            "--image=busybox:test",
            "--image-pull-policy=IfNotPresent",
            "--restart=Never",
            "--",
            "sleep",
            "3600",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        created.insert(name, Instant::now());
        admin.note_running(&mut running);
        if i + 1 == 30 {
            wait_running(&admin, &mut running, 30);
            report_memory("30 pods", child.id());
        }
    }
    wait_running(&admin, &mut running, PODS);
    report_memory("100 pods", child.id());
    let mut lat: Vec<Duration> = created
        .iter()
        .filter_map(|(n, c)| running.get(n).map(|r| r.saturating_duration_since(*c)))
        .collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "pod startup (create → Running, polled every 20 ms): n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
        lat.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        lat[lat.len() - 1].as_secs_f64() * 1000.0
    );

    let _ = kc(&["delete", "pods", "--all", "--grace-period=1", "--wait=true"]);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}

struct Admin {
    port: u16,
    tls: std::path::PathBuf,
}

impl Admin {
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let ca = std::fs::read_to_string(self.tls.join("server-ca.crt")).ok()?;
        let cert = std::fs::read_to_string(self.tls.join("client-admin.crt")).ok()?;
        let key = std::fs::read_to_string(self.tls.join("client-admin.key")).ok()?;
        let (code, body) = common::https(self.port, &ca, Some((&cert, &key)), "GET", path).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn node_ready(&self) -> bool {
        self.get("/api/v1/nodes").is_some_and(|l| {
            l["items"].as_array().into_iter().flatten().any(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    }

    fn note_running(&self, running: &mut BTreeMap<String, Instant>) {
        let Some(list) = self.get("/api/v1/namespaces/default/pods") else {
            return;
        };
        let now = Instant::now();
        for p in list["items"].as_array().into_iter().flatten() {
            if p["status"]["phase"] == "Running"
                && let Some(n) = p["metadata"]["name"].as_str()
            {
                running.entry(n.to_owned()).or_insert(now);
            }
        }
    }
}

fn wait_running(admin: &Admin, running: &mut BTreeMap<String, Instant>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while running.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} pods Running",
            running.len()
        );
        admin.note_running(running);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RSS of k3s, and of containerd plus its shims (processes whose command line names them).
fn report_memory(when: &str, k3s: u32) {
    let mut containerd = 0;
    let mut shims = 0;
    let mut n_shims = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("containerd-shim") || cmd.contains("/containerd-shim") {
            shims += common::rss_kib(pid);
            n_shims += 1;
        } else if (cmd.starts_with("containerd\0") || cmd.contains("/containerd\0"))
            && parent(pid) == Some(k3s)
        {
            containerd += common::rss_kib(pid);
        }
    }
    println!(
        "RSS {when:<9} k3s {:.1} MiB | containerd {:.1} MiB | {n_shims} shims {:.1} MiB",
        common::rss_kib(k3s) as f64 / 1024.0,
        containerd as f64 / 1024.0,
        shims as f64 / 1024.0
    );
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
