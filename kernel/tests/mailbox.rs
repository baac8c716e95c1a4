//! Mailboxes: backpressure, request/reply with a timeout, swapping with messages in flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Log, Msg, Starts, eventually, node, probe};
use kernel::{
    Actor, BoxError, CallError, ChildSpec, Ctx, Kernel, KernelError, Restart, SendError, Strategy,
    SupervisorSpec,
};
use tokio::sync::Semaphore;

/// Logs `version:n` for each message, once its gate lets it through.
struct Gated {
    version: &'static str,
    gate: Arc<Semaphore>,
    log: Log,
}

impl Actor for Gated {
    type Msg = u32;
    const MAILBOX: usize = 2;

    async fn handle(&mut self, n: u32, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        self.gate.acquire().await?.forget();
        self.log.push(format!("{}:{n}", self.version));
        Ok(())
    }
}

fn gated(version: &'static str, gate: &Arc<Semaphore>, log: &Log) -> ChildSpec {
    let (gate, log) = (gate.clone(), log.clone());
    ChildSpec::actor("g", "gated", Restart::Permanent, move || Gated {
        version,
        gate: gate.clone(),
        log: log.clone(),
    })
}

async fn start_gated(gate: &Arc<Semaphore>, log: &Log) -> Kernel {
    let k = Kernel::new();
    let spec = SupervisorSpec::new("t", Strategy::OneForOne).child(gated("v1", gate, log));
    k.start(spec).await.unwrap();
    k
}

#[tokio::test(start_paused = true)]
async fn send_waits_when_full_and_try_send_hands_the_message_back() {
    let (gate, log) = (Arc::new(Semaphore::new(0)), Log::default());
    let k = start_gated(&gate, &log).await;
    let addr = k.lookup::<u32>("t/g").unwrap();
    addr.send(0).await.unwrap();
    // The actor holds 0 while 1 and 2 fill the mailbox (capacity 2).
    eventually("0 taken", || node(&k, "t/g").mailbox.unwrap().depth == 0).await;
    addr.send(1).await.unwrap();
    addr.send(2).await.unwrap();
    let Err(SendError::Full(back)) = addr.try_send(3) else {
        panic!("mailbox should be full")
    };
    assert_eq!(back, 3);
    let blocked = tokio::spawn({
        let addr = addr.clone();
        async move { addr.send(3).await.map_err(SendError::into_inner) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blocked.is_finished(), "send must wait for room");
    let mb = node(&k, "t/g").mailbox.unwrap();
    assert_eq!((mb.depth, mb.capacity), (2, 2));

    gate.add_permits(4);
    blocked.await.unwrap().unwrap();
    eventually("all handled", || node(&k, "t/g").handled == 4).await;
    assert_eq!(log.entries(), ["v1:0", "v1:1", "v1:2", "v1:3"]);

    k.shutdown(Duration::from_secs(1)).await;
    assert!(matches!(addr.try_send(9), Err(SendError::Closed(9))));
}

#[tokio::test(start_paused = true)]
async fn call_replies_times_out_or_reports_no_reply() {
    let k = Kernel::new();
    let starts = Starts::default();
    let spec = SupervisorSpec::new("t", Strategy::OneForOne).child(probe(
        "p",
        Restart::Permanent,
        &starts,
        None,
    ));
    k.start(spec).await.unwrap();
    let addr = k.lookup::<Msg>("t/p").unwrap();
    let second = Duration::from_secs(1);
    assert_eq!(addr.call(Msg::Ping, second).await, Ok(1));
    assert_eq!(
        addr.call(Msg::Hoard, second).await,
        Err(CallError::Timeout(second))
    );
    assert_eq!(
        addr.call(Msg::Ignore, second).await,
        Err(CallError::NoReply)
    );
    assert_eq!(addr.call(Msg::Ping, second).await, Ok(2));
}

#[tokio::test(start_paused = true)]
async fn swap_keeps_in_flight_messages_for_the_new_implementation() {
    let (gate1, log) = (Arc::new(Semaphore::new(0)), Log::default());
    let k = start_gated(&gate1, &log).await;
    let addr = k.lookup::<u32>("t/g").unwrap();
    // v1 takes 0 and holds it; 1 and 2 wait in the mailbox; 3 waits for room.
    for n in 0..3 {
        addr.send(n).await.unwrap();
    }
    let late = tokio::spawn({
        let addr = addr.clone();
        async move { addr.send(3).await.map_err(SendError::into_inner) }
    });
    eventually("mailbox full", || {
        node(&k, "t/g").mailbox.unwrap().depth == 2
    })
    .await;

    let gate2 = Arc::new(Semaphore::new(100));
    let swap = tokio::spawn({
        let (k, v2) = (k.clone(), gated("v2", &gate2, &log));
        async move { k.swap("t/g", v2).await }
    });
    // The swap waits for v1 to finish the message it holds.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!swap.is_finished());
    gate1.add_permits(1);
    swap.await.unwrap().unwrap();
    late.await.unwrap().unwrap();
    addr.send(4).await.unwrap();
    eventually("all handled", || node(&k, "t/g").handled == 5).await;
    assert_eq!(log.entries(), ["v1:0", "v2:1", "v2:2", "v2:3", "v2:4"]);
    assert_eq!(node(&k, "t/g").restarts, 0);

    // Only an implementation of the same role and message type fits the slot.
    let other_role = ChildSpec::actor("g", "other", Restart::Permanent, move || Gated {
        version: "v3",
        gate: gate2.clone(),
        log: Log::default(),
    });
    assert!(matches!(
        k.swap("t/g", other_role).await,
        Err(KernelError::Incompatible { .. })
    ));
    let other_msg = ChildSpec::actor("g", "gated", Restart::Permanent, || Other);
    assert!(matches!(
        k.swap("t/g", other_msg).await,
        Err(KernelError::Incompatible { .. })
    ));
}

/// Same role as `Gated`, another message type.
struct Other;

impl Actor for Other {
    type Msg = String;

    async fn handle(&mut self, _msg: String, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        Ok(())
    }
}
