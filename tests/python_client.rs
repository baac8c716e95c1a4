//! End to end: the Python `kubernetes` client from PyPI (installed by tests/run.sh) works
//! unchanged against the server: CRUD, patch, selectors, 404s, watch, scale.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn python_kubernetes_client_works_unchanged() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the Python kubernetes client is not installed (tests/run.sh installs it): {}",
        stderr(&probe)
    );
    let s = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_test.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("KUBECONFIG", s.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n--- server log:\n{}",
        stdout(&out),
        stderr(&out),
        s.logs()
    );
    assert!(stdout(&out).contains("all python client checks passed"));
}
