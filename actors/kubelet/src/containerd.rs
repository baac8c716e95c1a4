//! The `containerd` child: writes containerd's configuration under the agent directory, runs
//! `containerd --config ...` as a child process and fails (so the supervisor restarts it) when it
//! dies. With a `container_runtime_endpoint`, it only waits for that runtime to answer.
//!
//! Invariants: the child is killed when this service's future is dropped (`kill_on_drop`); a clean
//! stop sends SIGTERM and waits, and containerd leaves the pod containers' shims running, so the
//! next start adopts them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kernel::{BoxError, ServiceCtx};
use tracing::{info, warn};

use crate::Shared;
use crate::cri::Cri;
use crate::images::PAUSE_IMAGE;

/// Errors of the containerd child.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// A file or directory could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The containerd process could not be started.
    #[error("starting containerd: {0}")]
    Spawn(#[source] std::io::Error),
    /// containerd did not answer on its socket in time.
    #[error("containerd did not answer on {socket} (see {log}): {status}")]
    NotAnswering {
        /// The socket.
        socket: PathBuf,
        /// containerd's log file.
        log: PathBuf,
        /// The last CRI error.
        status: tonic::Status,
    },
    /// containerd exited.
    #[error("containerd exited ({status}); see {log}")]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// containerd's log file.
        log: PathBuf,
    },
    /// Waiting for the process failed.
    #[error("waiting for containerd: {0}")]
    Wait(#[source] std::io::Error),
}

/// What containerd's configuration depends on.
#[derive(Debug, Clone)]
pub(crate) struct ContainerdConfig<'a> {
    pub root: &'a Path,
    pub state: &'a Path,
    pub socket: &'a Path,
    pub cni_bin_dir: &'a Path,
    pub cni_conf_dir: &'a Path,
    pub stream_port: u16,
    pub sandbox_image: &'a str,
}

/// containerd 1.6's configuration (version 2) for a CRI node on cgroupfs.
pub(crate) fn render_config(c: &ContainerdConfig<'_>) -> String {
    let q = |p: &Path| toml_string(&p.to_string_lossy());
    format!(
        r#"# Written by the k3s-rs kubelet at every start; edits are overwritten.
version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "{port}"
  enable_selinux = false
  disable_apparmor = true
  # Never ask for a lower OOM score than containerd has: in restricted environments it fails.
  restrict_oom_score_adj = true
  sandbox_image = {sandbox}

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {runc_root}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}
  max_conf_num = 1
"#,
        root = q(c.root),
        state = q(c.state),
        socket = q(c.socket),
        opt = q(&c.root.join("opt")),
        port = c.stream_port,
        sandbox = toml_string(c.sandbox_image),
        runc_root = q(&c.state.join("runc")),
        cni_bin = q(c.cni_bin_dir),
        cni_conf = q(c.cni_conf_dir),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where the CNI plugins are installed (Debian's containernetworking-plugins).
pub(crate) const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The `containerd` service.
pub(crate) async fn run(ctx: ServiceCtx, shared: Arc<Shared>) -> Result<(), BoxError> {
    let paths = &shared.paths;
    let cri = Cri::connect(&paths.containerd_socket);
    if !paths.run_containerd {
        let version = cri
            .wait_ready(Duration::from_secs(30))
            .await
            .map_err(|status| ContainerdError::NotAnswering {
                socket: paths.containerd_socket.clone(),
                log: PathBuf::from("(external runtime)"),
                status,
            })?;
        info!(runtime = %version.runtime_version, socket = %paths.containerd_socket.display(), "using an existing container runtime");
        ctx.ready();
        ctx.cancelled().await;
        return Ok(());
    }

    for dir in [
        &paths.containerd_root,
        &paths.containerd_state,
        &paths.cni_conf_dir,
    ] {
        create_dir(dir)?;
    }
    if let Some(parent) = paths.containerd_socket.parent() {
        create_dir(parent)?;
    }
    let config_path = &paths.containerd_config;
    if let Some(parent) = config_path.parent() {
        create_dir(parent)?;
    }
    let stream_port = free_port().map_err(ContainerdError::Spawn)?;
    let config = render_config(&ContainerdConfig {
        root: &paths.containerd_root,
        state: &paths.containerd_state,
        socket: &paths.containerd_socket,
        cni_bin_dir: Path::new(CNI_BIN_DIR),
        cni_conf_dir: &paths.cni_conf_dir,
        stream_port,
        sandbox_image: PAUSE_IMAGE,
    });
    std::fs::write(config_path, config).map_err(|source| ContainerdError::Write {
        path: config_path.clone(),
        source,
    })?;

    let log_path = paths.containerd_root.join("containerd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| ContainerdError::Write {
            path: log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| ContainerdError::Write {
        path: log_path.clone(),
        source,
    })?;
    let pid_file = paths.containerd_root.join("containerd.pid");
    stop_orphan(&pid_file, config_path).await;
    // `setpriv --pdeathsig KILL` (util-linux) makes the kernel kill containerd if this process
    // dies without stopping it (SIGKILL, a crash), as K3s does; the shims, and so the pods, live
    // on and are adopted by the next start.
    let mut command = match which("setpriv") {
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", "containerd"]);
            c
        }
        None => tokio::process::Command::new("containerd"),
    };
    let mut child = command
        .arg("--config")
        .arg(config_path)
        .env("PATH", search_path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(ContainerdError::Spawn)?;
    let pid = child.id();
    if let Some(pid) = pid
        && let Err(e) = std::fs::write(&pid_file, format!("{pid}\n"))
    {
        warn!(file = %pid_file.display(), error = %e, "cannot record containerd's pid");
    }
    info!(?pid, config = %config_path.display(), socket = %paths.containerd_socket.display(), "started containerd");

    tokio::select! {
        ready = cri.wait_ready(Duration::from_secs(45)) => {
            let version = ready.map_err(|status| ContainerdError::NotAnswering {
                socket: paths.containerd_socket.clone(),
                log: log_path.clone(),
                status,
            })?;
            info!(version = %version.runtime_version, "containerd is answering");
        }
        exit = child.wait() => {
            let status = exit.map_err(ContainerdError::Wait)?;
            return Err(ContainerdError::Exited { status, log: log_path }.into());
        }
    }
    ctx.ready();

    tokio::select! {
        exit = child.wait() => {
            let status = exit.map_err(ContainerdError::Wait)?;
            Err(ContainerdError::Exited { status, log: log_path }.into())
        }
        () = ctx.cancelled() => {
            // SIGTERM lets containerd close its database; the shims (and the pods) keep running.
            if let Some(pid) = pid {
                let _ = tokio::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            match tokio::time::timeout(Duration::from_secs(8), child.wait()).await {
                Ok(_) => info!("containerd stopped"),
                Err(_) => {
                    warn!("containerd did not stop in 8 s; killing it");
                    let _ = child.kill().await;
                }
            }
            Ok(())
        }
    }
}

/// Kills a containerd left running on this node's state by a previous process that died
/// without stopping it (its pid is in `pid_file` and its command line names `config`): two
/// containerds on one state directory would fight over its database.
async fn stop_orphan(pid_file: &Path, config: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let ours = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("containerd") && c.contains(&*config.to_string_lossy())
        })
    };
    if !ours(pid) {
        return;
    }
    warn!(
        pid,
        "a containerd from a previous run is still running on this node's state; stopping it"
    );
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await;
    for _ in 0..50 {
        if !ours(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first executable named `name` on the search path.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&search_path())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn create_dir(dir: &Path) -> Result<(), ContainerdError> {
    std::fs::create_dir_all(dir).map_err(|source| ContainerdError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// A TCP port free on loopback right now.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// PATH for containerd: it runs `containerd-shim-runc-v2` and `runc` from it.
pub(crate) fn search_path() -> String {
    const SYSTEM: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{p}:{SYSTEM}"),
        _ => SYSTEM.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_path_under_the_agent_dir() {
        let root = PathBuf::from("/d/agent/containerd");
        let state = root.join("state");
        let socket = root.join("containerd.sock");
        let conf = PathBuf::from("/d/agent/etc/cni/net.d");
        let text = render_config(&ContainerdConfig {
            root: &root,
            state: &state,
            socket: &socket,
            cni_bin_dir: Path::new(CNI_BIN_DIR),
            cni_conf_dir: &conf,
            stream_port: 12345,
            sandbox_image: "docker.io/rancher/mirrored-pause:3.6",
        });
        assert!(text.contains("root = \"/d/agent/containerd\""));
        assert!(text.contains("address = \"/d/agent/containerd/containerd.sock\""));
        assert!(text.contains("stream_server_port = \"12345\""));
        assert!(text.contains("SystemdCgroup = false"));
        assert!(text.contains("conf_dir = \"/d/agent/etc/cni/net.d\""));
        assert!(text.contains("sandbox_image = \"docker.io/rancher/mirrored-pause:3.6\""));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
