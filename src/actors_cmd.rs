//! `k3s actors`: read the running server's actor tree and drive its controls through
//! `/debug/actors`, authenticated with the admin kubeconfig.

use crate::cli::{ActorsAction, ActorsArgs, DEFAULT_KUBECONFIG};
use crate::client;
use crate::kubeconfig::Kubeconfig;
use kernel::{NodeSnapshot, TreeSnapshot};
use std::fmt::Write;
use std::path::PathBuf;

/// Run the command; the returned text goes to stdout.
pub async fn run(args: ActorsArgs) -> anyhow::Result<String> {
    let path = args
        .kubeconfig
        .clone()
        .or_else(|| {
            std::env::var_os("KUBECONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG));
    let creds = Kubeconfig::load(&path)?;
    let (method, url) = match args.action.verb_and_path() {
        None => (http::Method::GET, "/debug/actors".to_owned()),
        Some((verb, actor)) => (
            http::Method::POST,
            format!("/debug/actors/{verb}?path={}", encode(actor)),
        ),
    };
    let (code, body) = client::request(&creds, method, &url).await?;
    if !(200..300).contains(&code) {
        let message = serde_json::from_slice::<protocols::status::Status>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        anyhow::bail!("server answered {code}: {message}");
    }
    if args.output == "json" {
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    match args.action {
        ActorsAction::List => {
            let snap: TreeSnapshot = serde_json::from_slice(&body)?;
            Ok(render_tree(&snap))
        }
        _ => {
            let node: Option<NodeSnapshot> = serde_json::from_slice(&body)?;
            Ok(node
                .map(|n| render_tree(&TreeSnapshot { nodes: vec![n] }))
                .unwrap_or_default())
        }
    }
}

/// Percent-encode an actor path for a query string (paths are ASCII names and slashes).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A readable tree: indentation by depth, then status, restarts, mailbox and uptime columns.
pub fn render_tree(snap: &TreeSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:<22} {:<10} {:>8} {:>9} {:>9} {:>10}",
        "PATH", "ROLE", "STATUS", "RESTARTS", "MAILBOX", "HANDLED", "UPTIME"
    );
    for n in &snap.nodes {
        let depth = n.path.matches('/').count();
        let name = format!(
            "{}{}",
            "  ".repeat(depth),
            n.path.rsplit('/').next().unwrap_or(&n.path)
        );
        let mailbox = n
            .mailbox
            .as_ref()
            .map(|m| format!("{}/{}", m.depth, m.capacity))
            .unwrap_or_else(|| "-".into());
        let uptime = n
            .uptime_ms
            .map(human_duration)
            .unwrap_or_else(|| "-".into());
        let status = serde_json::to_value(n.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<36} {:<22} {:<10} {:>8} {:>9} {:>9} {:>10}",
            name, n.role, status, n.restarts, mailbox, n.handled, uptime
        );
        if let Some(f) = &n.last_failure {
            let _ = writeln!(
                out,
                "{}  last failure: {}",
                "  ".repeat(depth + 1),
                f.reason
            );
        }
    }
    out
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5_000), "5s");
        assert_eq!(human_duration(125_000), "2m5s");
        assert_eq!(human_duration(7_260_000), "2h1m");
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode("server/pki"), "server/pki");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
