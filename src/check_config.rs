//! `k3s check-config`: can this machine run a node? Checks what the agent will need and says
//! exactly what is missing.

use std::fmt::Write;
use std::path::Path;

/// One finding.
struct Check {
    what: &'static str,
    ok: bool,
    detail: String,
}

fn on_path(bin: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// cgroups: v2 (unified) or v1 with the controllers pods use (cpu, memory, pids), as K3s
/// accepts either.
fn cgroups() -> Check {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Check {
            what: "cgroups",
            ok: true,
            detail: "v2 (/sys/fs/cgroup/cgroup.controllers)".into(),
        };
    }
    let v1: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !Path::new("/sys/fs/cgroup").join(c).is_dir())
        .collect();
    Check {
        what: "cgroups",
        ok: v1.is_empty(),
        detail: if v1.is_empty() {
            "v1 with cpu, memory and pids controllers".into()
        } else {
            format!(
                "neither cgroup v2 nor the v1 controllers {} under /sys/fs/cgroup",
                v1.join(", ")
            )
        },
    }
}

fn binary(what: &'static str, bin: &str, package: &str) -> Check {
    match on_path(bin) {
        Some(p) => Check {
            what,
            ok: true,
            detail: p,
        },
        None => Check {
            what,
            ok: false,
            detail: format!("'{bin}' not found on PATH (Debian package {package})"),
        },
    }
}

fn file_contains(path: &str, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}

/// Run the checks; `Ok(report)` when all pass, `Err(report)` when something required is missing.
pub fn run() -> Result<String, String> {
    let cni_dir = ["/usr/lib/cni", "/opt/cni/bin"]
        .into_iter()
        .find(|d| Path::new(d).join("bridge").is_file());
    let checks = vec![
        binary("containerd", "containerd", "containerd"),
        binary("runc", "runc", "runc"),
        binary("iptables", "iptables", "iptables"),
        binary("iptables-restore", "iptables-restore", "iptables"),
        Check {
            what: "CNI plugins",
            ok: cni_dir.is_some(),
            detail: cni_dir.map_or_else(
                || "bridge plugin not in /usr/lib/cni or /opt/cni/bin (Debian package containernetworking-plugins)".into(),
                |d| d.to_owned(),
            ),
        },
        Check {
            what: "overlay filesystem",
            ok: file_contains("/proc/filesystems", "overlay"),
            detail: "listed in /proc/filesystems (modprobe overlay)".into(),
        },
        cgroups(),
        Check {
            what: "network namespaces",
            ok: Path::new("/proc/self/ns/net").exists(),
            detail: "/proc/self/ns/net".into(),
        },
        Check {
            what: "running as root",
            ok: std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))),
            detail: "a node agent manages containers, mounts and iptables".into(),
        },
    ];
    let mut out = String::new();
    for c in &checks {
        let _ = writeln!(
            out,
            "{:<22} {:<4} {}",
            c.what,
            if c.ok { "ok" } else { "MISSING" },
            c.detail
        );
    }
    if checks.iter().all(|c| c.ok) {
        Ok(out)
    } else {
        Err(out)
    }
}
