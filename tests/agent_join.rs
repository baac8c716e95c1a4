//! End to end: `k3s agent` joins a `k3s server --disable-agent` over HTTPS with the join token,
//! becomes a Ready node, runs a pod, and the API server reaches its kubelet (logs, exec) through
//! the agent's tunnel. Wrong tokens, CA hashes and a second machine claiming the same node name
//! are refused, and no Node appears for them.
//!
//! Needs root, containerd, runc, the CNI plugins, iptables and a static busybox (tests/run.sh
//! installs them). Without them the test says why and passes, except under CI, where it fails.
//! The server and the agent share the network namespace (the server runs no node of its own).

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `k3s agent`, stopped with SIGTERM when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_command(server: &Server, token: &str, data_dir: &Path, node: &str) -> Command {
    let config = server.dir.path().join("empty-config.yaml");
    let mut cmd = Command::new(common::k3s_bin());
    cmd.arg("agent")
        .arg("--config")
        .arg(&config)
        .arg("--server")
        .arg(format!("https://127.0.0.1:{}", server.port))
        .arg("--token")
        .arg(token)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--node-name")
        .arg(node);
    for (k, _) in std::env::vars() {
        if k.starts_with("K3S_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn start_agent(server: &Server, token: &str, data_dir: &Path, node: &str) -> Agent {
    std::fs::create_dir_all(data_dir).expect("agent data dir");
    let log = data_dir.join("agent.log");
    let file = std::fs::File::create(&log).expect("agent log");
    let child = agent_command(server, token, data_dir, node)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("spawn agent");
    Agent { child, log }
}

/// Run an agent that must be refused: its exit status and stderr.
fn refused_agent(server: &Server, token: &str, data_dir: &Path, node: &str) -> (bool, String) {
    let out = agent_command(server, token, data_dir, node)
        .output()
        .expect("run agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl(server: &Server, cache: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=30s")
        .args(args)
        .output()
        .expect("run kubectl")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: joined, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: worker-1}
  containers:
  - name: c
    image: busybox:test
    command: ["sh", "-c", "echo log-of-joined; exec sleep 3600"]
"#;

#[test]
fn an_agent_joins_with_the_token_and_is_reached_through_its_tunnel() {
    if common::skip_unless_agent_can_run("agent join test") {
        return;
    }
    let server = Server::start(&[]);
    let cache = tempfile::tempdir().expect("cache");
    let work = tempfile::tempdir().expect("agent dirs");
    let token = std::fs::read_to_string(server.data_dir().join("server/token"))
        .expect("token")
        .trim()
        .to_owned();
    let (prefix, password) = token.split_once("::server:").expect("K10 token");
    let kc = |args: &[&str]| kubectl(&server, cache.path(), args);
    let ok = |args: &[&str]| {
        let out = kc(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}\n--- server log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&server.logs(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Refusals first: nothing may join with a wrong token or a wrong CA hash.
    let (success, err) = refused_agent(
        &server,
        &format!("{prefix}::server:not-the-password"),
        &work.path().join("bad-token"),
        "worker-2",
    );
    assert!(!success, "a wrong token must fail");
    assert!(err.contains("401") && err.contains("token"), "{err}");
    let (success, err) = refused_agent(
        &server,
        &format!("K10{}::server:{password}", "0".repeat(64)),
        &work.path().join("bad-ca"),
        "worker-2",
    );
    assert!(!success, "a wrong CA hash must fail");
    assert!(
        err.contains("does not match the CA hash in the token"),
        "{err}"
    );
    assert!(
        !work.path().join("bad-ca/agent").exists(),
        "a refused CA leaves nothing behind"
    );

    // The real join.
    let d2 = work.path().join("d2");
    let images = d2.join("agent/images");
    std::fs::create_dir_all(&images).expect("images dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/busybox_image.py");
    let made = Command::new("python3")
        .arg(&script)
        .arg(images.join("busybox.tar"))
        .arg("docker.io/library/busybox:test")
        .status()
        .expect("run busybox_image.py");
    assert!(made.success(), "building the busybox image failed");
    let agent = start_agent(&server, &token, &d2, "worker-1");
    let eventually = |limit: Duration, what: &str, check: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}\n--- agent log:\n{}\n--- server log:\n{}",
                tail(&agent.logs(), 40),
                tail(&server.logs(), 40)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    eventually(Duration::from_secs(90), "worker-1 Ready", &mut || {
        let out = kc(&["get", "nodes", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("worker-1 ") && l.contains(" Ready "))
    });
    for f in [
        "client-kubelet.crt",
        "client-kubelet.key",
        "serving-kubelet.crt",
        "client-kube-proxy.crt",
        "server-ca.crt",
        "kubelet.kubeconfig",
        "kubeproxy.kubeconfig",
        "node-password",
    ] {
        assert!(d2.join("agent").join(f).exists(), "{f} missing");
    }
    let secret = ok(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "worker-1.node-password.k3s",
        "-o",
        "name",
    ]);
    assert!(secret.contains("worker-1.node-password.k3s"), "{secret}");

    // Another machine claiming worker-1 is refused by the node password.
    let (success, err) = refused_agent(&server, &token, &work.path().join("imposter"), "worker-1");
    assert!(!success, "a second worker-1 must be refused");
    assert!(
        err.contains("403") && err.contains("Node password rejected"),
        "{err}"
    );

    // A pod on the joined node; logs and exec go through the tunnel.
    let mut apply = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    {
        use std::io::Write;
        apply
            .stdin
            .take()
            .expect("stdin")
            .write_all(POD.as_bytes())
            .expect("write pod");
    }
    assert!(apply.wait().expect("apply").success());
    ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/joined",
        "--timeout=90s",
    ]);
    let node = ok(&["get", "pod", "joined", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "worker-1");
    eventually(
        Duration::from_secs(30),
        "logs through the tunnel",
        &mut || String::from_utf8_lossy(&kc(&["logs", "joined"]).stdout).contains("log-of-joined"),
    );
    let exec = ok(&["exec", "joined", "--", "echo", "through-the-tunnel"]);
    assert_eq!(exec.trim(), "through-the-tunnel");

    // No node appeared for the refused agents.
    let nodes = ok(&[
        "get",
        "nodes",
        "--no-headers",
        "-o",
        "custom-columns=N:.metadata.name",
    ]);
    assert_eq!(nodes.trim(), "worker-1", "{nodes}");

    ok(&["delete", "pod", "joined", "--timeout=60s"]);
    drop(agent);
}
