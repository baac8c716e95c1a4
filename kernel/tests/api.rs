//! The control API (restart, stop, start_child, inject_panic, lookup) and what snapshots show.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Log, Msg, Starts, eventually, node, probe, recorder};
use kernel::{
    ChildSpec, Kernel, KernelError, Kind, Mailbox, Restart, Status, Strategy, SupervisorSpec,
    TreeSnapshot,
};

async fn tree() -> (Kernel, Starts, Log) {
    let (k, starts, log) = (Kernel::new(), Starts::default(), Log::default());
    let spec = SupervisorSpec::new("t", Strategy::OneForOne)
        .child(probe("a", Restart::Permanent, &starts, None))
        .child(recorder("s", &log));
    k.start(spec).await.unwrap();
    (k, starts, log)
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn snapshot_shows_the_tree() {
    let (k, _, _) = tree().await;
    let snap = k.snapshot();
    let shape: Vec<_> = snap
        .nodes
        .iter()
        .map(|n| (n.path.as_str(), n.kind, n.status))
        .collect();
    assert_eq!(
        shape,
        [
            ("t", Kind::Supervisor, Status::Running),
            ("t/a", Kind::Actor, Status::Running),
            ("t/s", Kind::Service, Status::Running)
        ]
    );
    let (t, a, s) = (&snap.nodes[0], &snap.nodes[1], &snap.nodes[2]);
    assert_eq!(t.strategy.as_deref(), Some("one_for_one"));
    assert_eq!(
        (a.strategy.as_deref(), a.role.as_str(), a.name.as_str()),
        (None, "probe", "a")
    );
    assert_eq!(
        a.mailbox,
        Some(Mailbox {
            depth: 0,
            capacity: 64
        })
    );
    assert_eq!(s.mailbox, None);
    assert!(
        snap.nodes
            .iter()
            .all(|n| n.started_at_unix_ms.is_some() && n.uptime_ms.is_some())
    );

    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["nodes"][1]["status"], "running");
    assert_eq!(json["nodes"][1]["kind"], "actor");
    assert_eq!(serde_json::from_value::<TreeSnapshot>(json).unwrap(), snap);
}

#[tokio::test(start_paused = true)]
async fn restart_stop_and_start_child() {
    let (k, starts, log) = tree().await;
    let addr = k.lookup::<Msg>("t/a").unwrap();
    for _ in 0..3 {
        addr.call(Msg::Ping, SECOND).await.unwrap();
    }
    // Counted once `handle` returned, which is just after the reply was sent.
    eventually("handled", || node(&k, "t/a").handled == 3).await;

    k.restart("t/a").await.unwrap();
    let a = node(&k, "t/a");
    assert_eq!(
        (a.status, a.restarts, a.handled, starts.get("a")),
        (Status::Running, 1, 3, 2)
    );
    // The same Addr reaches the new instance (a fresh ping count).
    assert_eq!(addr.call(Msg::Ping, SECOND).await, Ok(1));

    k.stop("t/a").await.unwrap();
    let a = node(&k, "t/a");
    assert_eq!(
        (a.status, a.uptime_ms, a.started_at_unix_ms),
        (Status::Stopped, None, None)
    );
    assert_eq!(
        k.stop("t/a").await,
        Err(KernelError::NotRunning { path: "t/a".into() })
    );
    // The mailbox belongs to the slot: messages wait for the next instance.
    for _ in 0..3 {
        addr.try_send(Msg::Quit).ok().unwrap();
    }
    assert_eq!(node(&k, "t/a").mailbox.unwrap().depth, 3);
    k.start_child("t/a").await.unwrap();
    assert_eq!(
        k.start_child("t/a").await,
        Err(KernelError::AlreadyRunning { path: "t/a".into() })
    );
    // Each Quit ends an instance normally; a permanent child is restarted each time.
    eventually("drained", || {
        let a = node(&k, "t/a");
        a.mailbox.unwrap().depth == 0 && a.status == Status::Running && a.restarts == 4
    })
    .await;
    eventually("handled", || node(&k, "t/a").handled == 7).await;

    k.restart("t/s").await.unwrap();
    assert_eq!(log.entries(), ["start s", "stop s", "start s"]);
}

#[tokio::test(start_paused = true)]
async fn inject_panic_is_a_supervised_failure() {
    let (k, _, log) = tree().await;
    k.inject_panic("t/s").await.unwrap();
    eventually("restarted", || {
        node(&k, "t/s").restarts == 1 && node(&k, "t/s").status == Status::Running
    })
    .await;
    let failure = node(&k, "t/s").last_failure.unwrap();
    assert_eq!(failure.reason, "panicked: injected panic");
    assert!(failure.at_unix_ms > 0);
    // Aborted by the panic: no graceful "stop s".
    assert_eq!(log.entries(), ["start s", "start s"]);
}

#[tokio::test(start_paused = true)]
async fn errors_of_the_control_api() {
    let (k, _, _) = tree().await;
    assert_eq!(
        k.restart("t/nope").await,
        Err(KernelError::NotFound {
            path: "t/nope".into()
        })
    );
    assert_eq!(
        k.stop("t").await,
        Err(KernelError::TopLevel { path: "t".into() })
    );
    assert!(k.lookup::<String>("t/a").is_none(), "wrong message type");
    assert!(k.lookup::<Msg>("t/s").is_none(), "a service has no mailbox");
    let again = SupervisorSpec::new("t", Strategy::OneForOne);
    assert_eq!(
        k.start(again).await,
        Err(KernelError::AlreadyRunning { path: "t".into() })
    );
    let svc = ChildSpec::service("s", "recorder", Restart::Permanent, |_| {
        Box::pin(async { Ok(()) })
    });
    k.stop("t/s").await.unwrap();
    // Swapping a stopped child keeps it stopped.
    k.swap("t/s", svc).await.unwrap();
    assert_eq!(node(&k, "t/s").status, Status::Stopped);
}

#[tokio::test(start_paused = true)]
async fn panic_injected_into_the_root_resolves_failed() {
    let (k, _, _) = tree().await;
    k.inject_panic("t").await.unwrap();
    let e = tokio::time::timeout(SECOND, k.failed()).await.unwrap();
    assert_eq!(
        e,
        KernelError::Escalated {
            path: "t".into(),
            reason: "panicked: injected panic".into()
        }
    );
    let snap = k.snapshot();
    assert_eq!(snap.get("t").unwrap().status, Status::Failed);
    assert_eq!(snap.get("t/a").unwrap().status, Status::Stopped);
    // `failed` keeps answering.
    assert_eq!(k.failed().await, e);
}
