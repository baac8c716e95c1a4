//! The kernel handle: top-level supervisors, the registry, the bus and the control API.
//!
//! Control requests for a child go to the supervisor that owns its slot, which performs them
//! between supervision events, so an operator's stop never races a restart.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::actor::MailboxCell;
use crate::bus::Bus;
use crate::registry::{Node, Registry};
use crate::snapshot::{Status, TreeSnapshot};
use crate::supervisor::{
    ChildRun, ChildSpec, Control, Op, StopSignal, SupervisorSpec, after, child_future,
    panic_message,
};
use crate::{Addr, KernelError};

/// The kernel: cheap to clone, one per process.
#[derive(Clone, Default)]
pub struct Kernel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: Registry,
    bus: Bus,
    roots: Mutex<Vec<Root>>,
    failed: watch::Sender<Option<KernelError>>,
}

/// A running top-level supervisor.
struct Root {
    name: String,
    stop: StopSignal,
    handle: JoinHandle<()>,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots: Vec<String> = self
            .inner
            .roots
            .lock()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        f.debug_struct("Kernel")
            .field("roots", &roots)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// A kernel with no supervisor running.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event bus.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Starts a top-level supervisor (e.g. "server"). Returns once all its children started in
    /// order, or with the start failure of the child whose restart intensity was exhausted.
    /// A failure after this returned resolves [`Kernel::failed`].
    pub async fn start(&self, spec: SupervisorSpec) -> Result<(), KernelError> {
        let path = spec.name.clone();
        let child = ChildSpec::supervisor(spec);
        // Held while spawning, so two starts of one name cannot both pass the check.
        let (node, started_rx, mut exit_rx) = {
            let mut roots = self.inner.roots.lock();
            if roots
                .iter()
                .any(|r| r.name == path && !r.handle.is_finished())
            {
                return Err(KernelError::AlreadyRunning { path });
            }
            let node = self.inner.registry.root(&child);
            node.set_status(Status::Starting);
            let (started_tx, started_rx) = oneshot::channel();
            let stop = StopSignal::default();
            let (handle, exit_rx) = self.spawn_root(&child, node.clone(), stop.clone(), started_tx);
            roots.retain(|r| r.name != path);
            roots.push(Root {
                name: path.clone(),
                stop,
                handle,
            });
            (node, started_rx, exit_rx)
        };
        if started_rx.await.is_ok() {
            // Unless the task already recorded that the tree stopped or failed.
            node.transition(Status::Starting, Status::Running);
            // Closing first means an exit is either already here or will be published by the task.
            exit_rx.close();
            if let Ok(Some(e)) = exit_rx.try_recv() {
                self.publish_failure(e);
            }
            return Ok(());
        }
        match exit_rx.await {
            Ok(Some(e)) => Err(e),
            _ => Err(KernelError::NotRunning { path }),
        }
    }

    /// Runs a top-level supervisor in its own task. Its exit goes to `start` while that waits,
    /// and is published as the kernel's failure otherwise.
    fn spawn_root(
        &self,
        child: &ChildSpec,
        node: Arc<Node>,
        stop: StopSignal,
        started: oneshot::Sender<()>,
    ) -> (JoinHandle<()>, oneshot::Receiver<Option<KernelError>>) {
        let path = node.path.to_string();
        let run = ChildRun {
            path: node.path.clone(),
            kernel: self.clone(),
            node,
            stop,
            started,
        };
        let node = run.node.clone();
        let body = child_future(child, run);
        let (exit_tx, exit_rx) = oneshot::channel();
        let kernel = self.clone();
        let handle = tokio::spawn(async move {
            let failure = match AssertUnwindSafe(body).catch_unwind().await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.downcast::<KernelError>().map_or_else(
                    |e| KernelError::Escalated {
                        path,
                        reason: e.to_string(),
                    },
                    |e| *e,
                )),
                Err(panic) => {
                    let reason = format!("panicked: {}", panic_message(&*panic));
                    Some(KernelError::Escalated { path, reason })
                }
            };
            kernel.registry().settle(&node);
            match &failure {
                None => node.set_status(Status::Stopped),
                Some(e) => {
                    error!(path = %node.path, error = %e, "top-level supervisor failed");
                    node.record_failure(&e.to_string());
                    node.set_status(Status::Failed);
                }
            }
            // Nobody waits in `start` any more: this is a failure of a running tree.
            if let Err(Some(e)) = exit_tx.send(failure) {
                kernel.publish_failure(e);
            }
        });
        (handle, exit_rx)
    }

    fn publish_failure(&self, e: KernelError) {
        self.inner.failed.send_if_modified(|failed| {
            let first = failed.is_none();
            if first {
                *failed = Some(e);
            }
            first
        });
    }

    /// Resolves when a top-level supervisor failed after it started (restart intensity exhausted
    /// at the root, or a panic injected into it), with its error.
    pub async fn failed(&self) -> KernelError {
        let mut rx = self.inner.failed.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            // The sender lives in `self.inner`, so this only errs if it is gone; then never resolve.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The whole tree; reads shared state only, never waits for an actor.
    pub fn snapshot(&self) -> TreeSnapshot {
        self.inner.registry.snapshot()
    }

    /// Stops the child gracefully and starts it again (restarts += 1; not counted against the
    /// restart intensity). Also starts a child that is not running.
    pub async fn restart(&self, path: &str) -> Result<(), KernelError> {
        self.control(path, Op::Restart).await
    }

    /// Stops the child gracefully (within its shutdown time); it stays stopped until
    /// [`Kernel::start_child`] (its supervisor will not restart it).
    pub async fn stop(&self, path: &str) -> Result<(), KernelError> {
        self.control(path, Op::Stop).await
    }

    /// Starts a stopped child again.
    pub async fn start_child(&self, path: &str) -> Result<(), KernelError> {
        self.control(path, Op::Start).await
    }

    /// Replaces the implementation of a child (same name, kind and role; for actors the same
    /// message type). The old instance stops gracefully after its current message; queued messages
    /// stay in the mailbox for the new one, and `Addr`s stay valid. A stopped child stays stopped.
    pub async fn swap(&self, path: &str, spec: ChildSpec) -> Result<(), KernelError> {
        self.control(path, Op::Swap(Box::new(spec))).await
    }

    /// Fault injection: the child's task panics; supervision treats it as a failure.
    pub async fn inject_panic(&self, path: &str) -> Result<(), KernelError> {
        self.control(path, Op::Panic).await
    }

    async fn control(&self, path: &str, op: Op) -> Result<(), KernelError> {
        let not_found = || KernelError::NotFound { path: path.into() };
        let node = self.inner.registry.get(path).ok_or_else(not_found)?;
        let Some(parent) = node.parent() else {
            return match op {
                Op::Panic => self.panic_root(path),
                _ => Err(KernelError::TopLevel { path: path.into() }),
            };
        };
        let parent_path = path.rsplit_once('/').map_or(path, |(p, _)| p);
        let not_running = || KernelError::NotRunning {
            path: parent_path.into(),
        };
        let (reply, rx) = oneshot::channel();
        parent
            .send(Control {
                name: node.name.clone(),
                op,
                reply,
            })
            .map_err(|_| not_running())?;
        rx.await.map_err(|_| not_running())?
    }

    fn panic_root(&self, path: &str) -> Result<(), KernelError> {
        let roots = self.inner.roots.lock();
        let root = roots
            .iter()
            .find(|r| r.name == path && !r.handle.is_finished());
        let root = root.ok_or_else(|| KernelError::NotRunning { path: path.into() })?;
        root.stop.panic.notify_one();
        Ok(())
    }

    /// The address of the actor at `path`, if there is one with message type `M`.
    pub fn lookup<M: Send + 'static>(&self, path: &str) -> Option<Addr<M>> {
        let node = self.inner.registry.get(path)?;
        let cell = node
            .mailbox
            .as_ref()?
            .as_any()
            .downcast_ref::<MailboxCell<M>>()?;
        Some(cell.addr())
    }

    /// Stops everything: top-level supervisors in reverse start order, each stopping its children
    /// in reverse order, all within `deadline` in total; whatever is left then is aborted.
    /// Mailboxes are closed afterwards (senders get `Closed`).
    pub async fn shutdown(&self, deadline: Duration) {
        let by = after(deadline);
        let roots = std::mem::take(&mut *self.inner.roots.lock());
        for mut root in roots.into_iter().rev() {
            root.stop.request(by);
            if tokio::time::timeout_at(by, &mut root.handle).await.is_err() {
                warn!(path = %root.name, "shutdown deadline passed; aborting");
                root.handle.abort();
                let _ = root.handle.await;
            }
        }
        self.inner.registry.close_all();
    }
}
