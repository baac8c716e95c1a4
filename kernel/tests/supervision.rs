//! Supervision: the {panic, error} x {start, handle} x strategy matrix, restart policies,
//! intensity and escalation, ordered start and reverse stop, stop deadlines.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Fault, Log, Msg, Starts, eventually, node, probe, recorder, stubborn};
use kernel::{ChildSpec, Kernel, KernelError, Restart, Status, Strategy, SupervisorSpec};
use tokio::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Handle,
}

/// Children a, b, c; b fails once. `expected` is how many times each was started.
async fn matrix(fault: Fault, phase: Phase, strategy: Strategy, expected: [u32; 3]) {
    let k = Kernel::new();
    let starts = Starts::default();
    let fail_start = (phase == Phase::Start).then_some(fault);
    let spec = SupervisorSpec::new("t", strategy)
        .child(probe("a", Restart::Permanent, &starts, None))
        .child(probe("b", Restart::Permanent, &starts, fail_start))
        .child(probe("c", Restart::Permanent, &starts, None));
    k.start(spec).await.unwrap();
    if phase == Phase::Handle {
        k.lookup::<Msg>("t/b")
            .unwrap()
            .send(Msg::Fail(fault))
            .await
            .unwrap();
    }
    let counts = || ["a", "b", "c"].map(|n| starts.get(n));
    let all_running = || {
        ["t/a", "t/b", "t/c"]
            .iter()
            .all(|p| node(&k, p).status == Status::Running)
    };
    eventually("expected starts", || counts() == expected && all_running()).await;
    // Nothing else happens afterwards.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counts(), expected);

    let b = node(&k, "t/b");
    assert_eq!(b.restarts, 1);
    let reason = b.last_failure.unwrap().reason;
    let what = if phase == Phase::Start {
        "boom in start"
    } else {
        "boom in handle"
    };
    assert!(reason.contains(what), "{reason}");
    assert_eq!(
        reason.starts_with("panicked: "),
        fault == Fault::Panic,
        "{reason}"
    );
    for (path, n) in [("t/a", expected[0]), ("t/c", expected[2])] {
        let s = node(&k, path);
        assert_eq!(s.restarts, n - 1, "{path}");
        assert!(s.last_failure.is_none(), "{path}");
    }
    k.shutdown(Duration::from_secs(1)).await;
}

macro_rules! matrix {
    ($($name:ident: $fault:ident, $phase:ident, $strategy:ident, $expected:expr;)*) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            matrix(Fault::$fault, Phase::$phase, Strategy::$strategy, $expected).await;
        }
    )*};
}

// A failure in handling restarts b, all, or b and the ones after it. A failure in b's first start
// happens while c is not started yet, so only running siblings (a, for one_for_all) restart.
matrix! {
    panic_in_handle_one_for_one: Panic, Handle, OneForOne, [1, 2, 1];
    panic_in_handle_one_for_all: Panic, Handle, OneForAll, [2, 2, 2];
    panic_in_handle_rest_for_one: Panic, Handle, RestForOne, [1, 2, 2];
    error_in_handle_one_for_one: Error, Handle, OneForOne, [1, 2, 1];
    error_in_handle_one_for_all: Error, Handle, OneForAll, [2, 2, 2];
    error_in_handle_rest_for_one: Error, Handle, RestForOne, [1, 2, 2];
    panic_in_start_one_for_one: Panic, Start, OneForOne, [1, 2, 1];
    panic_in_start_one_for_all: Panic, Start, OneForAll, [2, 2, 1];
    panic_in_start_rest_for_one: Panic, Start, RestForOne, [1, 2, 1];
    error_in_start_one_for_one: Error, Start, OneForOne, [1, 2, 1];
    error_in_start_one_for_all: Error, Start, OneForAll, [2, 2, 1];
    error_in_start_rest_for_one: Error, Start, RestForOne, [1, 2, 1];
}

/// Starts a one-child tree, sends `msg` to it, and waits until it settles into `status`.
async fn policy(restart: Restart, msg: Msg, status: Status) -> (Kernel, Starts) {
    let k = Kernel::new();
    let starts = Starts::default();
    let spec =
        SupervisorSpec::new("t", Strategy::OneForOne).child(probe("p", restart, &starts, None));
    k.start(spec).await.unwrap();
    k.lookup::<Msg>("t/p").unwrap().send(msg).await.unwrap();
    eventually("status", || {
        let p = node(&k, "t/p");
        p.status == status && (status != Status::Running || p.restarts == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    (k, starts)
}

#[tokio::test(start_paused = true)]
async fn transient_is_not_restarted_after_normal_exit() {
    let (k, starts) = policy(Restart::Transient, Msg::Quit, Status::Stopped).await;
    assert_eq!((starts.get("p"), node(&k, "t/p").restarts), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn transient_is_restarted_after_failure() {
    let (_k, starts) = policy(Restart::Transient, Msg::Fail(Fault::Error), Status::Running).await;
    assert_eq!(starts.get("p"), 2);
}

#[tokio::test(start_paused = true)]
async fn temporary_is_never_restarted() {
    let (k, starts) = policy(Restart::Temporary, Msg::Fail(Fault::Panic), Status::Failed).await;
    assert_eq!((starts.get("p"), node(&k, "t/p").restarts), (1, 0));
    assert!(node(&k, "t/p").last_failure.is_some());
}

#[tokio::test(start_paused = true)]
async fn permanent_is_restarted_after_normal_exit() {
    let (_k, starts) = policy(Restart::Permanent, Msg::Quit, Status::Running).await;
    assert_eq!(starts.get("p"), 2);
}

/// A service that is ready and then fails, on its first `failures` runs; later runs stay up.
fn flaky(name: &str, failures: u32, runs: &Arc<AtomicU32>) -> ChildSpec {
    let runs = runs.clone();
    ChildSpec::service(name, "flaky", Restart::Permanent, move |ctx| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            ctx.ready();
            if run <= failures {
                return Err(format!("flaky run {run}").into());
            }
            ctx.cancelled().await;
            Ok(())
        })
    })
}

#[tokio::test(start_paused = true)]
async fn root_exceeding_intensity_resolves_failed() {
    let k = Kernel::new();
    let runs = Arc::new(AtomicU32::new(0));
    let spec = SupervisorSpec::new("root", Strategy::OneForOne)
        .intensity(2, Duration::from_secs(10))
        .child(flaky("f", u32::MAX, &runs));
    k.start(spec).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), k.failed())
        .await
        .unwrap();
    let KernelError::Escalated { path, reason } = e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "root");
    assert!(reason.contains("root/f: flaky run 3"), "{reason}");
    // Two restarts were allowed; the third failure exceeded the intensity.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    eventually("settled", || node(&k, "root").status == Status::Failed).await;
    // Its last exit was a failure, and nobody restarted it.
    let f = node(&k, "root/f");
    assert_eq!((f.status, f.restarts), (Status::Failed, 2));
}

#[tokio::test(start_paused = true)]
async fn start_failure_is_returned_by_start() {
    let k = Kernel::new();
    let bad = ChildSpec::service("bad", "bad", Restart::Permanent, |_ctx| {
        Box::pin(async { Err("no config".into()) })
    });
    let spec = SupervisorSpec::new("root", Strategy::OneForOne)
        .intensity(1, Duration::from_secs(10))
        .child(bad);
    let e = k.start(spec).await.unwrap_err();
    assert_eq!(
        e,
        KernelError::StartFailed {
            path: "root/bad".into(),
            reason: "no config".into()
        }
    );
    // A start failure is the caller's to handle: `failed` stays pending.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), k.failed())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn service_not_ready_in_time_fails_to_start() {
    let k = Kernel::new();
    let slow = ChildSpec::service("slow", "slow", Restart::Permanent, |ctx| {
        Box::pin(async move {
            ctx.cancelled().await;
            Ok(())
        })
    });
    let spec = SupervisorSpec::new("root", Strategy::OneForOne)
        .intensity(0, Duration::from_secs(1))
        .child(slow);
    let started = Instant::now();
    let e = k.start(spec).await.unwrap_err();
    assert!(
        matches!(&e, KernelError::StartFailed { reason, .. } if reason.contains("not started within 30s")),
        "{e:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn nested_supervisor_escalates_and_parent_restarts_it() {
    let k = Kernel::new();
    let runs = Arc::new(AtomicU32::new(0));
    let inner = SupervisorSpec::new("inner", Strategy::OneForOne)
        .intensity(1, Duration::from_secs(10))
        .child(flaky("f", 3, &runs));
    let spec = SupervisorSpec::new("root", Strategy::OneForOne).child(ChildSpec::supervisor(inner));
    k.start(spec).await.unwrap();
    // Run 1 fails: restarted. Run 2 fails: intensity 1 exceeded, inner gives up and root restarts
    // it. Run 3 fails: the new inner restarts it. Run 4 stays up.
    eventually("fourth run up", || {
        runs.load(Ordering::SeqCst) == 4 && node(&k, "root/inner/f").status == Status::Running
    })
    .await;
    let inner = node(&k, "root/inner");
    assert_eq!((inner.status, inner.restarts), (Status::Running, 1));
    assert!(
        inner
            .last_failure
            .unwrap()
            .reason
            .contains("root/inner/f: flaky run 2")
    );
    assert_eq!(node(&k, "root/inner/f").restarts, 2);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), k.failed())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_ordered_and_stop_is_reversed() {
    let k = Kernel::new();
    let log = Log::default();
    let sub = SupervisorSpec::new("sub", Strategy::OneForAll)
        .child(recorder("x", &log))
        .child(recorder("y", &log));
    let spec = SupervisorSpec::new("t", Strategy::OneForOne)
        .child(recorder("a", &log))
        .child(ChildSpec::supervisor(sub))
        .child(recorder("b", &log));
    k.start(spec).await.unwrap();
    assert_eq!(log.entries(), ["start a", "start x", "start y", "start b"]);
    let order: Vec<String> = k.snapshot().nodes.into_iter().map(|n| n.path).collect();
    assert_eq!(order, ["t", "t/a", "t/sub", "t/sub/x", "t/sub/y", "t/b"]);
    k.shutdown(Duration::from_secs(5)).await;
    assert_eq!(log.entries()[4..], ["stop b", "stop y", "stop x", "stop a"]);
    assert!(
        k.snapshot()
            .nodes
            .iter()
            .all(|n| n.status == Status::Stopped)
    );
}

#[tokio::test(start_paused = true)]
async fn stop_aborts_a_child_that_ignores_cancellation_after_its_deadline() {
    let k = Kernel::new();
    let spec = SupervisorSpec::new("t", Strategy::OneForOne)
        .child(stubborn("s").with_shutdown(Duration::from_secs(2)));
    k.start(spec).await.unwrap();
    let t0 = Instant::now();
    k.stop("t/s").await.unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let s = node(&k, "t/s");
    assert_eq!(s.status, Status::Stopped);
    assert!(s.last_failure.unwrap().reason.contains("killed"));
    // Stopped through the API: not restarted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node(&k, "t/s").status, Status::Stopped);
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_is_total_and_then_hard() {
    let k = Kernel::new();
    let log = Log::default();
    let spec = SupervisorSpec::new("t", Strategy::OneForOne)
        .child(stubborn("s").with_shutdown(Duration::from_secs(60)))
        .child(recorder("polite", &log));
    k.start(spec).await.unwrap();
    let t0 = Instant::now();
    k.shutdown(Duration::from_secs(3)).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(log.entries(), ["start polite", "stop polite"]);
    assert!(
        k.snapshot()
            .nodes
            .iter()
            .all(|n| n.status == Status::Stopped)
    );
}
