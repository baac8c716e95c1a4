//! End to end on this machine: the kubelet tree (real containerd, runc, CNI) against an in-process
//! API server, inside a private network namespace. Runs as root with containerd installed; skips
//! otherwise (and fails when `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use protocols::user::UserInfo;
use serde_json::json;

use crate::cri::{self, Cri, v1};
use crate::tar::{Entry, docker_archive};
use crate::{KubeletConfig, supervisor};

const NETNS_ENV: &str = "K3S_RS_KUBELET_E2E_NETNS";
const NODE: &str = "e2e-node";

fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = ["containerd", "ctr", "runc", "unshare"].iter().all(|t| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) && Path::new("/bin/busybox").exists()
        && Path::new("/usr/lib/cni/bridge").exists();
    if root && tools {
        return true;
    }
    let why = if root {
        "containerd, runc, CNI plugins or busybox missing"
    } else {
        "not root"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "kubelet e2e test cannot run in CI: {why}"
    );
    eprintln!("skipping the kubelet end-to-end test: {why}");
    false
}

/// The busybox image lib.sh builds: static busybox with its applets linked in /bin.
fn busybox_image(out: &Path) {
    let bb = std::fs::read("/bin/busybox").unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    let mut entries = vec![];
    for d in [
        "bin", "tmp", "etc", "proc", "sys", "dev", "www", "var", "root",
    ] {
        entries.push(Entry::Dir(
            d.into(),
            if d == "tmp" { 0o1777 } else { 0o755 },
        ));
    }
    entries.push(Entry::File("bin/busybox".into(), 0o755, bb));
    for a in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if a != "busybox" {
            entries.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
        }
    }
    entries.push(Entry::File(
        "etc/passwd".into(),
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
    ));
    entries.push(Entry::File(
        "etc/group".into(),
        0o644,
        b"root:x:0:\n".to_vec(),
    ));
    let tar = docker_archive("docker.io/library/busybox:acc", &entries, &[]).unwrap();
    std::fs::write(out, tar).unwrap();
}

#[derive(Debug)]
struct Dialer(std::path::PathBuf);

impl apiserver::KubeletDialer for Dialer {
    fn dial(
        &self,
        _node: &str,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn apiserver::KubeletStream>>> {
        let p = self.0.clone();
        Box::pin(async move {
            let s = tokio::net::UnixStream::connect(p).await?;
            Ok(Box::new(s) as Box<dyn apiserver::KubeletStream>)
        })
    }
}

fn client(api: axum::Router, user: UserInfo) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            req
        })
        .service(api);
    kube::Client::new(service, "default")
}

async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kills the shims of containers whose state lives under `dir` and unmounts what is left there.
fn cleanup(dir: &Path) {
    let d = dir.to_string_lossy().into_owned();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&d) && pid != std::process::id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&d))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = std::process::Command::new("umount")
            .args(["-l", m])
            .status();
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!(NODE);
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

async fn get(pods: &Api<Pod>, name: &str) -> Option<Pod> {
    pods.get_opt(name).await.ok().flatten()
}

fn container_state(p: &Pod) -> serde_json::Value {
    serde_json::to_value(
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default(),
    )
    .unwrap()
}

async fn raw_socket_request(socket: &Path, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The body of `http://{ip}:8080/`, or the error.
async fn fetch(ip: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut s = tokio::net::TcpStream::connect((ip, 8080)).await?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(5), get).await {
        Ok(Ok(resp)) => resp
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or(&resp)
            .trim()
            .to_owned(),
        Ok(Err(e)) => format!("GET failed: {e}"),
        Err(_) => "GET timed out".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_run_in_real_containers() {
    if !can_run() {
        return;
    }
    if std::env::var(NETNS_ENV).is_err() {
        // Re-run this test in a private network namespace: the cni0 bridge, iptables rules and pod
        // addresses then never touch the host's.
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(exe)
            .args([
                "--exact",
                "e2e::pods_run_in_real_containers",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NETNS_ENV, "1")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the end-to-end test failed in its network namespace"
        );
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kl-e2e")
        .tempdir_in("/tmp")
        .unwrap();
    let result = tokio::spawn(scenario(tmp.path().to_owned())).await;
    cleanup(tmp.path());
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenario(dir: std::path::PathBuf) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("kubelet=debug,warn"))
        .with_test_writer()
        .try_init();
    let config = apiserver::ApiConfig {
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        advertise: "127.0.0.1:6443".into(),
        endpoint: ("127.0.0.1".parse().unwrap(), 6443),
    };
    std::fs::create_dir_all(dir.join("server")).unwrap();
    let state = apiserver::ApiState::open("", &dir.join("server"), config)
        .await
        .unwrap();
    apiserver::bootstrap(&state).await.unwrap();
    let agent_dir = dir.join("agent");
    state.set_kubelet_dialer(Arc::new(Dialer(crate::socket_path(&agent_dir))));
    let admin = UserInfo::authenticated("system:admin", [protocols::user::MASTERS.to_owned()]);
    let client = client(apiserver::router(state.clone()), admin);

    std::fs::create_dir_all(agent_dir.join("images")).unwrap();
    busybox_image(&agent_dir.join("images/busybox.tar"));
    let kcfg = KubeletConfig {
        node_name: NODE.into(),
        node_ip: "127.0.0.1".parse().unwrap(),
        agent_dir: agent_dir.clone(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
        container_runtime_endpoint: None,
        node_labels: Default::default(),
    };
    let kernel = kernel::Kernel::new();
    kernel
        .start(supervisor(client.clone(), kcfg.clone()))
        .await
        .unwrap();

    // The node registers; the server's IPAM is not running here, so assign the pod CIDR by hand.
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("node registration", 30, || async {
        nodes.get_opt(NODE).await.ok().flatten()
    })
    .await;
    nodes
        .patch(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}}),
            ),
        )
        .await
        .unwrap();
    eventually("node Ready", 60, || async {
        let n = nodes.get(NODE).await.ok()?;
        let st = n.status?;
        let ready = st
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let rt = st.node_info?.container_runtime_version;
        (ready && rt.starts_with("containerd://")).then_some(())
    })
    .await;

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello-cm"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let web = pod(
        "web",
        json!({"containers": [{
        "name": "httpd", "image": "busybox:acc", "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "cat /cfg/greeting > /www/index.html; echo starting $(GREETING) $POD_NAME; exec httpd -f -p 8080 -h /www"],
        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "www", "mountPath": "/www"}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    }], "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "www", "emptyDir": {}}]}),
    );
    let crasher = pod(
        "crasher",
        json!({"containers": [{"name": "c", "image": "busybox:acc", "command": ["sh", "-c", "echo dying; exit 1"]}]}),
    );
    let noimage = pod(
        "noimage",
        json!({"containers": [{"name": "c", "image": "registry.invalid/none/such:1.0"}]}),
    );
    for p in [&web, &crasher, &noimage] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }

    // Running, ready, with an IP from the pod CIDR, serving.
    let running = eventually("web Running and Ready", 90, || async {
        let p = get(&pods, "web").await?;
        let st = p.status.clone()?;
        let ready = st
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (st.phase.as_deref() == Some("Running") && ready && st.pod_ip.is_some()).then_some(p)
    })
    .await;
    let ip = running.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.42.0."), "pod IP {ip}");
    let cs = container_state(&running);
    assert!(
        cs[0]["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{cs}"
    );
    assert_eq!(fetch(&ip).await, "hello-cm");

    // Logs, through the API server's proxy and directly on the socket.
    let logs = eventually("web logs", 15, || async {
        let l = pods.logs("web", &LogParams::default()).await.ok()?;
        l.contains("starting").then_some(l)
    })
    .await;
    assert!(logs.contains("starting hello-cm web"), "{logs}");
    let socket = crate::socket_path(&agent_dir);
    let direct = raw_socket_request(
        &socket,
        "GET /containerLogs/default/web/httpd?tailLines=1 HTTP/1.1\r\nHost: k\r\n\r\n",
    )
    .await;
    assert!(
        direct.starts_with("HTTP/1.1 200") && direct.contains("starting"),
        "{direct}"
    );

    // exec: WebSocket is refused with a 400; an SPDY upgrade reaches containerd's streaming server.
    let ws = raw_socket_request(&socket, "POST /exec/default/web/httpd?command=true&stdout=true HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    assert!(ws.starts_with("HTTP/1.1 400"), "{ws}");
    let spdy = raw_socket_request(&socket, "POST /exec/default/web/httpd?command=true&stdout=true HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").await;
    assert!(spdy.starts_with("HTTP/1.1 101"), "{spdy}");

    // A crashing container backs off, and its previous logs are readable.
    eventually("CrashLoopBackOff", 90, || async {
        let p = get(&pods, "crasher").await?;
        let cs = container_state(&p);
        (cs[0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && cs[0]["restartCount"].as_i64()? >= 1)
            .then_some(())
    })
    .await;
    let prev = pods
        .logs(
            "crasher",
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(prev.contains("dying"), "{prev}");

    // A missing image: ErrImagePull / ImagePullBackOff and a Failed event naming it.
    eventually("image pull error", 60, || async {
        let p = get(&pods, "noimage").await?;
        let r = container_state(&p)[0]["state"]["waiting"]["reason"]
            .as_str()?
            .to_owned();
        (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(())
    })
    .await;
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Failed")
                && e.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("registry.invalid/none/such:1.0")),
        "no Failed event naming the image"
    );

    // Restart the kubelet: containers keep running and are adopted, not duplicated.
    let cri = Cri::connect(&agent_dir.join("containerd/containerd.sock"));
    let uid = running.metadata.uid.clone().unwrap();
    let before = cs[0]["containerID"].clone();
    kernel.shutdown(Duration::from_secs(20)).await;
    assert_eq!(
        fetch(&ip).await,
        "hello-cm",
        "the pod died with the kubelet"
    );
    let kernel = kernel::Kernel::new();
    kernel
        .start(supervisor(client.clone(), kcfg))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = eventually("web status after restart", 30, || async {
        let p = get(&pods, "web").await?;
        let cs = container_state(&p);
        (cs[0]["ready"] == true).then_some(cs[0]["containerID"].clone())
    })
    .await;
    assert_eq!(
        before, after,
        "the container was re-created instead of adopted"
    );
    let sandboxes = cri
        .runtime
        .clone()
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: [(cri::LABEL_POD_UID.to_owned(), uid.clone())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(sandboxes.len(), 1, "one sandbox per pod");

    // Deleting the pod stops its containers, removes its sandbox, then removes it from the API.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web deleted", 60, || async {
        get(&pods, "web").await.is_none().then_some(())
    })
    .await;
    let left = cri
        .runtime
        .clone()
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: [(cri::LABEL_POD_UID.to_owned(), uid)].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(left.is_empty(), "sandboxes left after deletion: {left:?}");

    for name in ["crasher", "noimage"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("all pods deleted", 60, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    kernel.shutdown(Duration::from_secs(20)).await;
    state.close().await;
}
