//! Test fixtures: a configurable probe actor, recording services and deadline polling.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kernel::{Actor, BoxError, ChildSpec, Ctx, Kernel, NodeSnapshot, Restart};
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Polls `cond` every millisecond until it holds; panics after 10 s (virtual time under
/// `start_paused`, where time only advances when every task is idle).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn node(k: &Kernel, path: &str) -> NodeSnapshot {
    k.snapshot()
        .get(path)
        .cloned()
        .unwrap_or_else(|| panic!("no node {path}"))
}

/// An ordered log shared by test children.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().push(entry.into());
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

/// How a probe fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Panic,
    Error,
}

pub fn fault(f: Fault, what: &str) -> Result<(), BoxError> {
    match f {
        Fault::Panic => panic!("{what}"),
        Fault::Error => Err(what.into()),
    }
}

/// Starts per probe name, across instances.
#[derive(Clone, Default)]
pub struct Starts(Arc<Mutex<HashMap<String, u32>>>);

impl Starts {
    fn bump(&self, name: &str) -> u32 {
        let mut m = self.0.lock();
        let n = m.entry(name.to_owned()).or_default();
        *n += 1;
        *n
    }
    pub fn get(&self, name: &str) -> u32 {
        self.0.lock().get(name).copied().unwrap_or(0)
    }
}

pub enum Msg {
    Fail(Fault),
    /// Stop normally.
    Quit,
    /// Replies with the number of pings this instance handled.
    Ping(oneshot::Sender<u64>),
    /// Keeps the reply sender and never answers.
    Hoard(oneshot::Sender<u64>),
    /// Drops the reply sender.
    Ignore(oneshot::Sender<u64>),
}

pub struct Probe {
    name: String,
    starts: Starts,
    fail_first_start: Option<Fault>,
    pings: u64,
    hoard: Vec<oneshot::Sender<u64>>,
}

impl Actor for Probe {
    type Msg = Msg;

    async fn started(&mut self, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        let n = self.starts.bump(&self.name);
        match self.fail_first_start {
            Some(f) if n == 1 => fault(f, "boom in start"),
            _ => Ok(()),
        }
    }

    async fn handle(&mut self, msg: Msg, ctx: &Ctx<Self>) -> Result<(), BoxError> {
        match msg {
            Msg::Fail(f) => return fault(f, "boom in handle"),
            Msg::Quit => ctx.stop(),
            Msg::Ping(tx) => {
                self.pings += 1;
                let _ = tx.send(self.pings);
            }
            Msg::Hoard(tx) => self.hoard.push(tx),
            Msg::Ignore(_) => {}
        }
        Ok(())
    }
}

/// A probe actor; `fail_first_start` makes its first start ever fail.
pub fn probe(
    name: &str,
    restart: Restart,
    starts: &Starts,
    fail_first_start: Option<Fault>,
) -> ChildSpec {
    let (n, starts) = (name.to_owned(), starts.clone());
    ChildSpec::actor(name, "probe", restart, move || Probe {
        name: n.clone(),
        starts: starts.clone(),
        fail_first_start,
        pings: 0,
        hoard: vec![],
    })
}

/// A service that logs "start NAME" when ready and "stop NAME" when asked to stop.
pub fn recorder(name: &str, log: &Log) -> ChildSpec {
    let (n, log) = (name.to_owned(), log.clone());
    ChildSpec::service(name, "recorder", Restart::Permanent, move |ctx| {
        let (n, log) = (n.clone(), log.clone());
        Box::pin(async move {
            // Take a moment, so a supervisor that did not wait for ready() would be caught.
            tokio::time::sleep(Duration::from_millis(5)).await;
            log.push(format!("start {n}"));
            ctx.ready();
            ctx.cancelled().await;
            log.push(format!("stop {n}"));
            Ok(())
        })
    })
}

/// A service that is ready at once and then ignores cancellation.
pub fn stubborn(name: &str) -> ChildSpec {
    ChildSpec::service(name, "stubborn", Restart::Permanent, |ctx| {
        Box::pin(async move {
            ctx.ready();
            std::future::pending::<()>().await;
            Ok(())
        })
    })
}
