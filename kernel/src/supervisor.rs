//! Supervisors: ordered start, restart by strategy and policy within an intensity, escalation,
//! reverse-order stop with a deadline, and the control operations of [`crate::Kernel`].
//!
//! A supervisor is a task that owns its children's tasks in a `JoinSet` (dropping it aborts them)
//! and runs one loop, reading control before work: its own stop request, then control messages,
//! then child exits. Every procedure that waits for one child (start, stop) parks the exits of
//! other children in `pending`, and a child's slot is marked not running as soon as its exit is
//! read, so no exit is lost or handled twice.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::actor::{Actor, ActorBody, Factory};
use crate::registry::Node;
use crate::service::ServiceCtx;
use crate::snapshot::{Kind, Status};
use crate::{BoxError, Kernel, KernelError};

/// How long a worker gets to stop gracefully unless its spec says otherwise.
pub(crate) const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);
/// How long a worker may take to start (actor `started`, service `ready()`) unless its spec says
/// otherwise.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which siblings are restarted with a failed child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every running child (stopped in reverse order, started in order).
    OneForAll,
    /// The failed child and the running children started after it.
    RestForOne,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OneForOne => "one_for_one",
            Self::OneForAll => "one_for_all",
            Self::RestForOne => "rest_for_one",
        })
    }
}

/// When a child that exited is restarted (OTP meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (an error or a panic).
    Transient,
    /// Never.
    Temporary,
}

/// Restart intensity: more than `max_restarts` restarts within `within` and the supervisor stops
/// its children and fails, escalating to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed in the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within: Duration::from_secs(10),
        }
    }
}

/// A supervisor and its children, in start order.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    /// Name within the parent (the first path segment for a top-level supervisor).
    pub name: String,
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restart intensity.
    pub intensity: Intensity,
    /// Children, in start order.
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with the default intensity and no children.
    pub fn new(name: &str, strategy: Strategy) -> Self {
        Self {
            name: name.into(),
            strategy,
            intensity: Intensity::default(),
            children: Vec::new(),
        }
    }

    /// Adds a child after the others.
    #[must_use]
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// Sets the restart intensity.
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            within,
        };
        self
    }
}

pub(crate) type ServiceFn =
    Arc<dyn Fn(ServiceCtx) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// What runs in a slot.
#[derive(Clone)]
pub(crate) enum Body {
    Actor(Arc<dyn ActorBody>),
    Service(ServiceFn),
    Supervisor(SupervisorSpec),
}

/// One child of a supervisor: what to run, and how to restart and stop it.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Duration,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) body: Body,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ChildSpec");
        d.field("name", &self.name)
            .field("role", &self.role)
            .field("restart", &self.restart);
        if let Body::Supervisor(spec) = &self.body {
            d.field("supervisor", spec);
        }
        d.finish_non_exhaustive()
    }
}

impl ChildSpec {
    fn worker(name: &str, role: &str, restart: Restart, body: Body) -> Self {
        Self {
            name: name.into(),
            role: role.into(),
            restart,
            shutdown: DEFAULT_SHUTDOWN,
            start_timeout: Some(DEFAULT_START_TIMEOUT),
            body,
        }
    }

    /// An actor; `factory` builds a fresh instance for every (re)start.
    pub fn actor<A: Actor>(
        name: &str,
        role: &str,
        restart: Restart,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        Self::worker(
            name,
            role,
            restart,
            Body::Actor(Arc::new(Factory(Arc::new(factory)))),
        )
    }

    /// A service; `run` is called for every (re)start.
    pub fn service(
        name: &str,
        role: &str,
        restart: Restart,
        run: impl Fn(ServiceCtx) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync + 'static,
    ) -> Self {
        Self::worker(name, role, restart, Body::Service(Arc::new(run)))
    }

    /// A nested supervisor (permanent, role "supervisor"). It has no start timeout of its own,
    /// and its shutdown time is the sum of its children's.
    pub fn supervisor(spec: SupervisorSpec) -> Self {
        Self {
            name: spec.name.clone(),
            role: "supervisor".into(),
            restart: Restart::Permanent,
            shutdown: spec.children.iter().map(|c| c.shutdown).sum(),
            start_timeout: None,
            body: Body::Supervisor(spec),
        }
    }

    /// Sets how long the child gets to stop gracefully before it is aborted (default 5 s for
    /// actors and services).
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: Duration) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Sets how long the child may take to start (default 30 s for actors and services; `None`:
    /// no limit).
    #[must_use]
    pub fn with_start_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets the restart policy.
    #[must_use]
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's role.
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// A control request for one child of a supervisor.
pub(crate) enum Op {
    Restart,
    Stop,
    Start,
    Swap(Box<ChildSpec>),
    Panic,
}

pub(crate) struct Control {
    pub(crate) name: String,
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<(), KernelError>>,
}

pub(crate) type CtlTx = mpsc::UnboundedSender<Control>;

/// How an owner asks a running child to stop (by a deadline) or, for fault injection, to panic.
#[derive(Clone, Default)]
pub(crate) struct StopSignal {
    pub(crate) token: CancellationToken,
    deadline: Arc<Mutex<Option<Instant>>>,
    pub(crate) panic: Arc<Notify>,
}

impl StopSignal {
    pub(crate) fn request(&self, deadline: Instant) {
        *self.deadline.lock() = Some(deadline);
        self.token.cancel();
    }

    fn deadline(&self) -> Instant {
        self.deadline
            .lock()
            .unwrap_or_else(|| after(DEFAULT_SHUTDOWN))
    }
}

/// `now + d`, saturating far in the future.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Everything one instance of a child gets.
pub(crate) struct ChildRun {
    pub(crate) path: Arc<str>,
    pub(crate) kernel: Kernel,
    pub(crate) node: Arc<Node>,
    pub(crate) stop: StopSignal,
    /// Sent once the instance is started.
    pub(crate) started: oneshot::Sender<()>,
}

/// The task of one child instance: its body, under its span, panicking on injection.
pub(crate) fn child_future(
    spec: &ChildSpec,
    run: ChildRun,
) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
    let span = tracing::info_span!("child", path = %run.path, kind = ?run.node.kind);
    let panic = run.stop.panic.clone();
    let body: BoxFuture<'static, Result<(), BoxError>> = match &spec.body {
        Body::Actor(actor) => actor.run(run),
        Body::Service(service) => {
            let ctx = ServiceCtx::new(run.path, run.kernel, run.stop.token, run.started);
            service(ctx)
        }
        Body::Supervisor(spec) => Box::pin(supervise(spec.clone(), run)),
    };
    async move {
        tokio::select! {
            biased;
            () = panic.notified() => panic!("injected panic"),
            result = body => result,
        }
    }
    .instrument(span)
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string payload".into())
}

/// Why an instance ended, or failed to start.
enum Outcome {
    Normal,
    Abnormal(Cause),
}

#[derive(Clone)]
struct Cause {
    reason: String,
    /// The typed error, when the child was a supervisor that failed.
    error: Option<KernelError>,
}

impl Cause {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            error: None,
        }
    }
}

struct Exit {
    idx: usize,
    outcome: Outcome,
}

/// Why the supervisor loop ended.
enum Halt {
    /// Asked to stop.
    Stopping,
    /// Gave up.
    Fail(KernelError),
}

struct Slot {
    spec: ChildSpec,
    node: Arc<Node>,
    run: Option<Running>,
    /// Stopped through the API: not restarted until `start_child`.
    held: bool,
}

struct Running {
    id: Id,
    abort: AbortHandle,
    stop: StopSignal,
}

/// The sliding window of restart times.
struct Window {
    intensity: Intensity,
    times: VecDeque<Instant>,
}

impl Window {
    /// Records a restart at `now`; false if that exceeds the intensity.
    fn allow(&mut self, now: Instant) -> bool {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.intensity.within)
        {
            self.times.pop_front();
        }
        self.times.len() <= self.intensity.max_restarts as usize
    }
}

struct Supervisor {
    kernel: Kernel,
    node: Arc<Node>,
    strategy: Strategy,
    window: Window,
    slots: Vec<Slot>,
    tasks: JoinSet<Result<(), BoxError>>,
    pending: VecDeque<Exit>,
    ctl: mpsc::UnboundedReceiver<Control>,
    stop: StopSignal,
    /// Still in the initial start sequence (escalation then reports the child's start failure).
    starting: bool,
}

/// One supervisor instance: start children in order, supervise, and stop them in reverse order.
async fn supervise(spec: SupervisorSpec, run: ChildRun) -> Result<(), BoxError> {
    let (ctl_tx, ctl) = mpsc::unbounded_channel();
    let nodes = run
        .kernel
        .registry()
        .adopt(&run.node, &spec.children, &ctl_tx);
    drop(ctl_tx);
    let slots = spec
        .children
        .into_iter()
        .zip(nodes)
        .map(|(spec, node)| Slot {
            spec,
            node,
            run: None,
            held: false,
        })
        .collect();
    let mut sup = Supervisor {
        kernel: run.kernel,
        node: run.node,
        strategy: spec.strategy,
        window: Window {
            intensity: spec.intensity,
            times: VecDeque::new(),
        },
        slots,
        tasks: JoinSet::new(),
        pending: VecDeque::new(),
        ctl,
        stop: run.stop,
        starting: true,
    };
    let halt = sup.run(run.started).await;
    // Asked to stop: everything by the deadline we were given. Giving up: each child its own time.
    let deadline = matches!(halt, Halt::Stopping).then(|| sup.stop.deadline());
    sup.stop_all(deadline).await;
    match halt {
        Halt::Stopping => Ok(()),
        Halt::Fail(e) => Err(e.into()),
    }
}

impl Supervisor {
    async fn run(&mut self, started: oneshot::Sender<()>) -> Halt {
        match self.run_inner(started).await {
            Ok(never) => match never {},
            Err(halt) => halt,
        }
    }

    async fn run_inner(
        &mut self,
        started: oneshot::Sender<()>,
    ) -> Result<std::convert::Infallible, Halt> {
        for i in 0..self.slots.len() {
            if let Err(cause) = self.start(i, false).await? {
                self.after_exit(Exit {
                    idx: i,
                    outcome: Outcome::Abnormal(cause),
                })
                .await?;
            }
        }
        self.starting = false;
        let _ = started.send(());
        loop {
            if let Some(exit) = self.pending.pop_front() {
                self.after_exit(exit).await?;
                continue;
            }
            tokio::select! {
                biased;
                () = self.stop.token.cancelled() => return Err(Halt::Stopping),
                Some(ctl) = self.ctl.recv() => self.control(ctl).await?,
                Some(joined) = self.tasks.join_next_with_id() => {
                    if let Some(exit) = self.take_exit(joined) {
                        self.after_exit(exit).await?;
                    }
                }
            }
        }
    }

    /// Maps a joined task to its slot, which is marked not running; records a failure.
    fn take_exit(&mut self, joined: Result<(Id, Result<(), BoxError>), JoinError>) -> Option<Exit> {
        let (id, outcome) = match joined {
            Ok((id, Ok(()))) => (id, Outcome::Normal),
            Ok((id, Err(e))) => {
                let error = e.downcast_ref::<KernelError>().cloned();
                (
                    id,
                    Outcome::Abnormal(Cause {
                        reason: e.to_string(),
                        error,
                    }),
                )
            }
            Err(e) => {
                let id = e.id();
                let reason = if e.is_panic() {
                    format!("panicked: {}", panic_message(&*e.into_panic()))
                } else {
                    "killed: did not stop before its deadline".into()
                };
                (id, Outcome::Abnormal(Cause::new(reason)))
            }
        };
        let idx = self
            .slots
            .iter()
            .position(|s| s.run.as_ref().is_some_and(|r| r.id == id))?;
        let slot = &mut self.slots[idx];
        slot.run = None;
        if slot.node.kind == Kind::Supervisor {
            self.kernel.registry().settle(&slot.node);
        }
        match &outcome {
            Outcome::Normal => slot.node.set_status(Status::Stopped),
            Outcome::Abnormal(cause) => {
                warn!(path = %slot.node.path, reason = %cause.reason, "child failed");
                slot.node.record_failure(&cause.reason);
                slot.node.set_status(Status::Failed);
            }
        }
        Some(Exit { idx, outcome })
    }

    /// Decides what an exit means: nothing (restarted since, held, or not to be restarted by
    /// policy) or a restart by strategy.
    async fn after_exit(&mut self, exit: Exit) -> Result<(), Halt> {
        let slot = &self.slots[exit.idx];
        if slot.run.is_some() || slot.held {
            return Ok(());
        }
        let keep_down = matches!(
            (&exit.outcome, slot.spec.restart),
            (_, Restart::Temporary) | (Outcome::Normal, Restart::Transient)
        );
        if keep_down {
            info!(path = %slot.node.path, "child exited and is not restarted");
            return Ok(());
        }
        let cause = match exit.outcome {
            Outcome::Normal => Cause::new("exited normally"),
            Outcome::Abnormal(cause) => cause,
        };
        self.recover(exit.idx, cause).await
    }

    /// Restarts `failed` (and siblings by strategy), within the intensity; a restart that fails
    /// to start is handled the same way.
    async fn recover(&mut self, mut failed: usize, mut cause: Cause) -> Result<(), Halt> {
        'recover: loop {
            if !self.window.allow(Instant::now()) {
                return Err(Halt::Fail(self.give_up(failed, cause)));
            }
            let range = match self.strategy {
                Strategy::OneForOne => failed..failed + 1,
                Strategy::OneForAll => 0..self.slots.len(),
                Strategy::RestForOne => failed..self.slots.len(),
            };
            let set: Vec<usize> = range
                .filter(|&j| j == failed || self.slots[j].run.is_some())
                .collect();
            for &j in set.iter().rev().filter(|&&j| j != failed) {
                self.stop_child(j, after(self.slots[j].spec.shutdown)).await;
            }
            for &j in &set {
                let slot = &self.slots[j];
                if j != failed && slot.spec.restart == Restart::Temporary {
                    continue;
                }
                slot.node.count_restart();
                info!(path = %slot.node.path, strategy = %self.strategy, "restarting child");
                if let Err(c) = self.start(j, true).await? {
                    if self.slots[j].spec.restart == Restart::Temporary {
                        continue;
                    }
                    (failed, cause) = (j, c);
                    continue 'recover;
                }
            }
            return Ok(());
        }
    }

    fn give_up(&self, failed: usize, cause: Cause) -> KernelError {
        let child = &self.slots[failed].node.path;
        let Intensity {
            max_restarts,
            within,
        } = self.window.intensity;
        warn!(path = %self.node.path, %child, reason = %cause.reason,
            "restart intensity exceeded ({max_restarts} in {within:?}); supervisor gives up");
        match cause.error {
            Some(e @ KernelError::StartFailed { .. }) if self.starting => e,
            _ if self.starting => KernelError::StartFailed {
                path: child.to_string(),
                reason: cause.reason,
            },
            _ => KernelError::Escalated {
                path: self.node.path.to_string(),
                reason: format!(
                    "{child}: {} (more than {max_restarts} restarts in {within:?})",
                    cause.reason
                ),
            },
        }
    }

    /// Spawns child `i` and waits until it is started, it exits, or its start timeout passes.
    async fn start(&mut self, i: usize, restarting: bool) -> Result<Result<(), Cause>, Halt> {
        let slot = &mut self.slots[i];
        slot.held = false;
        slot.node.set_status(if restarting {
            Status::Restarting
        } else {
            Status::Starting
        });
        let (started_tx, mut started) = oneshot::channel();
        let stop = StopSignal::default();
        let run = ChildRun {
            path: slot.node.path.clone(),
            kernel: self.kernel.clone(),
            node: slot.node.clone(),
            stop: stop.clone(),
            started: started_tx,
        };
        let abort = self.tasks.spawn(child_future(&slot.spec, run));
        slot.run = Some(Running {
            id: abort.id(),
            abort,
            stop,
        });
        let limit = slot.spec.start_timeout;
        let timeout = tokio::time::sleep_until(after(limit.unwrap_or(Duration::MAX)));
        tokio::pin!(timeout);
        let mut waiting = true;
        loop {
            tokio::select! {
                biased;
                () = self.stop.token.cancelled() => return Err(Halt::Stopping),
                signal = &mut started, if waiting => match signal {
                    Ok(()) => {
                        self.slots[i].node.set_status(Status::Running);
                        return Ok(Ok(()));
                    }
                    // The instance is gone: its exit follows.
                    Err(_) => waiting = false,
                },
                Some(joined) = self.tasks.join_next_with_id() => match self.take_exit(joined) {
                    Some(Exit { idx, outcome }) if idx == i => {
                        return Ok(Err(match outcome {
                            Outcome::Abnormal(cause) => cause,
                            Outcome::Normal => self.start_failure(i, "exited before it started"),
                        }));
                    }
                    Some(other) => self.pending.push_back(other),
                    None => {}
                },
                () = &mut timeout => {
                    let reason = format!("not started within {:?}", limit.unwrap_or_default());
                    if let Some(run) = &self.slots[i].run {
                        run.abort.abort();
                    }
                    self.wait_exit(i).await;
                    return Ok(Err(self.start_failure(i, &reason)));
                }
            }
        }
    }

    fn start_failure(&self, i: usize, reason: &str) -> Cause {
        let node = &self.slots[i].node;
        warn!(path = %node.path, reason, "child failed to start");
        node.record_failure(reason);
        node.set_status(Status::Failed);
        Cause::new(reason)
    }

    /// Waits for the exit of child `i`, parking other exits.
    async fn wait_exit(&mut self, i: usize) -> Option<Exit> {
        while self.slots[i].run.is_some() {
            let joined = self.tasks.join_next_with_id().await?;
            match self.take_exit(joined) {
                Some(exit) if exit.idx == i => return Some(exit),
                Some(other) => self.pending.push_back(other),
                None => {}
            }
        }
        None
    }

    /// Asks child `i` to stop by `deadline`, aborts it after that, and marks it stopped.
    async fn stop_child(&mut self, i: usize, deadline: Instant) {
        let Some(run) = &self.slots[i].run else {
            return;
        };
        let (stop, abort) = (run.stop.clone(), run.abort.clone());
        stop.request(deadline);
        if tokio::time::timeout_at(deadline, self.wait_exit(i))
            .await
            .is_err()
        {
            warn!(path = %self.slots[i].node.path, "child did not stop in time; aborting it");
            abort.abort();
            self.wait_exit(i).await;
        }
        self.slots[i].node.set_status(Status::Stopped);
    }

    /// Stops every running child in reverse start order, all by `deadline` if given.
    async fn stop_all(&mut self, deadline: Option<Instant>) {
        for i in (0..self.slots.len()).rev() {
            let by = deadline.unwrap_or_else(|| after(self.slots[i].spec.shutdown));
            self.stop_child(i, by).await;
        }
    }

    async fn control(&mut self, ctl: Control) -> Result<(), Halt> {
        let Some(i) = self.slots.iter().position(|s| s.node.name == ctl.name) else {
            let path = format!("{}/{}", self.node.path, ctl.name);
            let _ = ctl.reply.send(Err(KernelError::NotFound { path }));
            return Ok(());
        };
        let path = self.slots[i].node.path.to_string();
        let running = self.slots[i].run.is_some();
        let shutdown = after(self.slots[i].spec.shutdown);
        let result = match ctl.op {
            Op::Stop if !running => Err(KernelError::NotRunning { path }),
            Op::Stop => {
                info!(%path, "stopping child on request");
                self.stop_child(i, shutdown).await;
                self.slots[i].held = true;
                Ok(())
            }
            Op::Start if running => Err(KernelError::AlreadyRunning { path }),
            Op::Start => self.requested(i, false).await?,
            Op::Restart => {
                info!(%path, "restarting child on request");
                self.stop_child(i, shutdown).await;
                self.slots[i].node.count_restart();
                self.requested(i, true).await?
            }
            Op::Swap(spec) => match self.slots[i].node.fits(&spec) {
                Err(reason) => Err(KernelError::Incompatible { path, reason }),
                Ok(()) => {
                    info!(%path, "swapping child implementation");
                    self.stop_child(i, shutdown).await;
                    self.slots[i].spec = *spec;
                    if let Body::Supervisor(s) = &self.slots[i].spec.body {
                        self.slots[i].node.set_strategy(s.strategy.to_string());
                    }
                    if running {
                        self.requested(i, false).await?
                    } else {
                        Ok(())
                    }
                }
            },
            Op::Panic => match &self.slots[i].run {
                Some(run) => {
                    run.stop.panic.notify_one();
                    Ok(())
                }
                None => Err(KernelError::NotRunning { path }),
            },
        };
        let _ = ctl.reply.send(result);
        Ok(())
    }

    /// Starts a child on request. A start failure is the reply, and is then supervised like any
    /// other failure.
    async fn requested(
        &mut self,
        i: usize,
        restarting: bool,
    ) -> Result<Result<(), KernelError>, Halt> {
        Ok(match self.start(i, restarting).await? {
            Ok(()) => Ok(()),
            Err(cause) => {
                let path = self.slots[i].node.path.to_string();
                let error = KernelError::StartFailed {
                    path,
                    reason: cause.reason.clone(),
                };
                self.pending.push_back(Exit {
                    idx: i,
                    outcome: Outcome::Abnormal(cause),
                });
                Err(error)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_allows_max_restarts_then_refuses_until_old_ones_age_out() {
        let mut w = Window {
            intensity: Intensity {
                max_restarts: 2,
                within: Duration::from_secs(10),
            },
            times: VecDeque::new(),
        };
        let t0 = Instant::now();
        assert!(w.allow(t0));
        assert!(w.allow(t0 + Duration::from_secs(1)));
        assert!(!w.allow(t0 + Duration::from_secs(2)));
        // 11 s later the first two have aged out.
        assert!(w.allow(t0 + Duration::from_secs(13)));
    }

    #[test]
    fn strategy_names_are_snake_case() {
        assert_eq!(Strategy::RestForOne.to_string(), "rest_for_one");
    }
}
