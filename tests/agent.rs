//! End to end with the node agent: `k3s server` (agent included) runs real containers through the
//! containerd it starts, with CNI pod networking and kube-proxy's iptables rules, driven by the
//! real kubectl.
//!
//! Needs root, containerd, runc, the CNI plugins, iptables and a static busybox (tests/run.sh
//! installs them). Without them the tests say why and pass, except under CI, where they fail.
//! Every scenario shares one server (the node owns host-wide things: the `cni0` bridge and the
//! KUBE-* iptables chains), so they run in one test function, in order.

mod common;

use common::Server;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Cluster {
    server: Server,
    cache: tempfile::TempDir,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=30s")
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl `args`, which must succeed; its stdout.
    fn kc(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}\n--- server log tail:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.server.logs(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Retry `check` every 500 ms until it returns `Some`, or fail after `limit` with `what`.
    fn eventually<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}\n--- server log tail:\n{}",
                tail(&self.server.logs(), 60)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn stdout_of(&self, args: &[&str]) -> Option<String> {
        let out = self.kubectl(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The pid of the `containerd` process whose parent is `parent`.
fn containerd_child(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(')')?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (name == "containerd" && ppid == parent).then_some(pid)
    })
}

fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: busybox:test
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www; echo served-by-$(hostname) > /www/index.html; echo starting; exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: e2e}
spec:
  containers: [{name: c, image: busybox:test, command: ["sh", "-c", "echo dying; exit 1"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: badname, namespace: e2e}
spec:
  containers: [{name: c, image: "UPPER/Case::bad"}]
"#;

#[test]
fn deployment_runs_in_containerd_and_serves_through_its_service() {
    if common::skip_unless_agent_can_run("agent end-to-end tests") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("data/agent/images");
    std::fs::create_dir_all(&images).expect("images dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/busybox_image.py");
    let made = Command::new("python3")
        .arg(&script)
        .arg(images.join("busybox.tar"))
        .status()
        .expect("run busybox_image.py");
    assert!(made.success(), "building the busybox image failed");

    let c = Cluster {
        server: Server::start_with_agent(dir, &["--node-label", "tier=edge"]),
        cache: tempfile::tempdir().expect("cache dir"),
    };

    // The node registers, gets a pod CIDR and reports containerd.
    c.eventually(Duration::from_secs(60), "node Ready", || {
        c.stdout_of(&["get", "nodes", "--no-headers"])
            .filter(|o| o.contains(" Ready "))
    });
    let runtime = c.kc(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert!(runtime.starts_with("containerd://"), "{runtime}");
    let pod_cidr = c.kc(&["get", "nodes", "-o", "jsonpath={.items[0].spec.podCIDR}"]);
    assert!(pod_cidr.starts_with("10.42."), "{pod_cidr}");
    // A server's node carries the control-plane roles (as K3s) and the --node-label values.
    let roles = c.kc(&["get", "nodes", "--no-headers", "-L", "tier"]);
    assert!(roles.contains("control-plane,master"), "{roles}");
    assert!(roles.trim_end().ends_with("edge"), "{roles}");

    // A Deployment and a Service: pods run, get IPs, and the ClusterIP answers from the host.
    c.kc(&["create", "namespace", "e2e"]);
    let manifest = c.server.dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB).expect("write manifest");
    c.kc(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    c.kc(&[
        "-n",
        "e2e",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=120s",
    ]);
    let ip = c.kc(&[
        "-n",
        "e2e",
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    assert!(ip.starts_with("10.42."), "pod IP {ip}");
    let cluster_ip = c.kc(&[
        "-n",
        "e2e",
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let body = c.eventually(Duration::from_secs(30), "ClusterIP answers", || {
        http_get(&format!("http://{cluster_ip}/")).filter(|b| b.contains("served-by-web-"))
    });
    assert!(body.starts_with("served-by-web-"), "{body}");

    // Node-side commands through the API server: logs and exec.
    let logs = c.kc(&["-n", "e2e", "logs", "deploy/web"]);
    assert!(logs.contains("starting"), "{logs}");
    let pod = c.kc(&[
        "-n",
        "e2e",
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let hi = c.kc(&["-n", "e2e", "exec", &pod, "--", "echo", "hi"]);
    assert_eq!(hi.trim(), "hi");
    let exit = c.kubectl(&["-n", "e2e", "exec", &pod, "--", "sh", "-c", "exit 3"]);
    assert_eq!(exit.status.code(), Some(3), "exec exit code");

    // Pod to pod and pod to Service, from inside a container. (Not `wget -T`: Debian's static
    // busybox 1.35 segfaults on that option, with or without a container.)
    for target in [
        format!("http://{ip}:8080/"),
        format!("http://{cluster_ip}/"),
    ] {
        let body = c.eventually(Duration::from_secs(30), "reachable from a pod", || {
            c.stdout_of(&[
                "-n", "e2e", "exec", &pod, "--", "timeout", "5", "wget", "-qO-", &target,
            ])
            .filter(|b| b.contains("served-by-web-"))
        });
        assert!(body.starts_with("served-by-web-"), "{target}: {body}");
    }

    // The Python client's WebSocket exec and port-forward (v4.channel.k8s.io) reach the pod too.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/stream_test.py");
    let has_client = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .status()
        .is_ok_and(|s| s.success());
    if has_client {
        let out = Command::new("python3")
            .arg(&script)
            .arg(c.server.kubeconfig())
            .args(["e2e", pod.as_str(), "8080"])
            .output()
            .expect("run stream_test.py");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python streams failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("EXEC:exec-from-python"), "{text}");
        assert!(text.contains("served-by-web-"), "{text}");
    } else if std::env::var_os("CI").is_some() {
        panic!("the Python kubernetes client is not installed (tests/run.sh installs it)");
    }

    // containerd killed with SIGKILL is restarted by the kubelet's supervisor; the pods (whose
    // shims outlive it) keep serving, and the node stays usable.
    let server_pid = c.server.child.as_ref().expect("server running").id();
    let first = containerd_child(server_pid).expect("containerd runs as a child of k3s");
    Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("kill containerd");
    c.eventually(Duration::from_secs(30), "containerd restarted", || {
        containerd_child(server_pid).filter(|p| *p != first)
    });
    let after = c.eventually(
        Duration::from_secs(30),
        "exec after containerd restart",
        || c.stdout_of(&["-n", "e2e", "exec", &pod, "--", "echo", "still-here"]),
    );
    assert_eq!(after.trim(), "still-here");
    c.eventually(
        Duration::from_secs(30),
        "ClusterIP answers after containerd restart",
        || http_get(&format!("http://{cluster_ip}/")).filter(|b| b.contains("served-by-web-")),
    );

    // A crashing container backs off with upstream's reason.
    c.eventually(Duration::from_secs(90), "CrashLoopBackOff", || {
        c.stdout_of(&["-n", "e2e", "get", "pod", "crasher", "--no-headers"])
            .filter(|o| o.contains("CrashLoopBackOff"))
    });

    // An image name that cannot be a reference is InvalidImageName, not a pull attempt.
    c.eventually(Duration::from_secs(60), "InvalidImageName", || {
        c.stdout_of(&["-n", "e2e", "get", "pod", "badname", "--no-headers"])
            .filter(|o| o.contains("InvalidImageName"))
    });

    // Deleting the namespace removes the pods, and kube-proxy drops the Service's rules.
    c.kc(&["delete", "namespace", "e2e", "--timeout=120s"]);
    c.eventually(Duration::from_secs(60), "pods gone", || {
        c.stdout_of(&["get", "pods", "-A", "--no-headers"])
            .filter(|o| !o.lines().any(|l| l.starts_with("e2e ")))
    });
    c.eventually(Duration::from_secs(30), "service rules gone", || {
        let out = Command::new("iptables-save").output().ok()?;
        (!String::from_utf8_lossy(&out.stdout).contains(cluster_ip.as_str())).then_some(())
    });
}
