//! Scenario benchmark: how fast `k3s server --disable-agent` answers `/ping` over TLS verified with
//! its own `/cacerts`, on a fresh data directory (certificates generated) and on a second start
//! (reused), and how much memory the idle process holds. Prints numbers; asserts nothing.
//! Run: `cargo bench --bench startup`.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn start_and_ping(dir: &std::path::Path) -> (Duration, std::process::Child, u16) {
    let port = common::free_port();
    let config = dir.join("empty.yaml");
    std::fs::write(&config, "").unwrap();
    let t0 = Instant::now();
    let child = Command::new(common::k3s_bin())
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kc.yaml"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        // As an agent would: fetch /cacerts, then verify the server with it.
        let ca = std::fs::read_to_string(dir.join("data/server/tls/server-ca.crt")).ok();
        if let Some(ca) = ca
            && common::https(port, &ca, None, "GET", "/ping")
                .is_ok_and(|(c, b)| c == 200 && b == "pong")
        {
            return (t0.elapsed(), child, port);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "server did not answer"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn stop(mut child: std::process::Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={} min={:.1}ms p50={:.1}ms max={:.1}ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    let (mut fresh, mut reuse) = (Vec::new(), Vec::new());
    let mut rss = 0;
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let (t, child, _) = start_and_ping(dir.path());
        fresh.push(t);
        stop(child);
        let (t, child, _) = start_and_ping(dir.path());
        reuse.push(t);
        std::thread::sleep(Duration::from_millis(300));
        rss = rss.max(common::rss_kib(child.id()));
        stop(child);
    }
    summary("launch to verified /ping, fresh data dir", fresh);
    summary("launch to verified /ping, existing data dir", reuse);
    println!(
        "idle server RSS (max over runs): {:.1} MiB",
        rss as f64 / 1024.0
    );
}
