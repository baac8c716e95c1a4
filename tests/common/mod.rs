//! Shared helpers for end-to-end tests: start the real `k3s` binary in a private data directory,
//! talk to it over verified TLS, and stop it.
#![allow(dead_code, clippy::unwrap_used)]

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn k3s_bin() -> &'static str {
    env!("CARGO_BIN_EXE_k3s")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `k3s ARGS` to completion with a clean environment for K3S_* variables.
pub fn k3s(args: &[&str]) -> Output {
    let mut cmd = Command::new(k3s_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("K3S_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

/// A running `k3s server`, killed when dropped.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Whether the server runs its node agent (no `--disable-agent`).
    pub agent: bool,
}

impl Server {
    /// Start `k3s server --disable-agent` on a free port with `extra` flags, and wait for /ping.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    /// Start in an existing directory (for restart tests).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::launch(dir, false, extra)
    }

    /// Start `k3s server` with its node agent (containerd, kubelet, kube-proxy): needs root.
    pub fn start_with_agent(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::launch(dir, true, extra)
    }

    fn launch(dir: tempfile::TempDir, agent: bool, extra: &[&str]) -> Server {
        let port = free_port();
        let mut s = Server {
            log: dir.path().join("server.log"),
            dir,
            port,
            child: None,
            agent,
        };
        s.spawn(extra);
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// (Re)launch the process in the same directory and wait until it answers.
    pub fn spawn(&mut self, extra: &[&str]) {
        let config = self.dir.path().join("empty-config.yaml");
        std::fs::write(&config, "").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(k3s_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args((!self.agent).then_some("--disable-agent"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, _) in std::env::vars() {
            if k.starts_with("K3S_") {
                cmd.env_remove(k);
            }
        }
        self.child = Some(cmd.spawn().unwrap());
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}:\n{}", self.logs());
            }
            if self.kubeconfig().exists() && self.get("/ping").is_ok_and(|(c, _)| c == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in {limit:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CA the server serves on /cacerts (fetched without verification, as an agent does).
    pub fn server_ca(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server/tls/server-ca.crt")).unwrap()
    }

    /// GET `path` as the admin (client certificate), verifying the server with its CA.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let tls = self.data_dir().join("server/tls");
        let cert = std::fs::read_to_string(tls.join("client-admin.crt"))?;
        let key = std::fs::read_to_string(tls.join("client-admin.key"))?;
        https(
            self.port,
            &self.server_ca(),
            Some((&cert, &key)),
            "GET",
            path,
        )
    }

    /// GET `path` with no client certificate.
    pub fn get_anonymous(&self, path: &str) -> std::io::Result<(u16, String)> {
        https(self.port, &self.server_ca(), None, "GET", path)
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Give back the directory (after the process stopped) to restart in it.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        if self.child.is_some() {
            self.terminate();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTPS request over a fresh connection; the server is verified against `ca_pem`.
pub fn https(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?;
            let key =
                PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(std::io::Error::other)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(std::io::Error::other)?
        }
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("127.0.0.1").unwrap())
            .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify; what was read is complete for Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Poll `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether this machine can run a node agent (root, containerd, runc, iptables, the CNI plugins,
/// a static busybox for test images, python3 and kubectl); `Err` says what is missing.
pub fn agent_prerequisites() -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Err("not running as root".into());
    }
    for tool in [
        "containerd",
        "ctr",
        "runc",
        "iptables-restore",
        "busybox",
        "python3",
        "kubectl",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Err("the CNI plugins (/usr/lib/cni) are not installed".into());
    }
    Ok(())
}

/// True (after saying why) when `what` cannot run here; under CI a missing prerequisite fails.
pub fn skip_unless_agent_can_run(what: &str) -> bool {
    match agent_prerequisites() {
        Ok(()) => false,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{what} cannot run under CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping {what}: {why}");
            true
        }
    }
}

/// Resident memory (`VmRSS`) of process `pid` in KiB, 0 when it is gone (for the benchmarks).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
