//! The actor kernel: an Erlang/OTP-style microkernel over tokio.
//!
//! The kernel owns the *runtime shape* of the product and nothing of its domain: it knows no
//! component. It owns
//! - the **supervision tree**: supervisors ([`SupervisorSpec`]) start their children in order,
//!   restart them by strategy and restart policy within a restart intensity, escalate to their
//!   parent when it is exceeded, and stop them in reverse order with a deadline;
//! - the two kinds of worker child: **actors** ([`Actor`]), which read a bounded mailbox, and
//!   **services** ([`ServiceCtx`]), which run their own concurrency (a listener, a watch loop);
//! - the **registry** of every child by path (`server/agent/kubelet`), with mailboxes that belong to
//!   the child's slot, so an [`Addr`] stays valid across restarts and swaps;
//! - the typed, bounded event [`Bus`];
//! - **introspection** ([`TreeSnapshot`]) and **tracing**: one span per handled message whose parent is
//!   the sender's span, so one trace follows a request across actors.
//!
//! Invariants: every task the kernel spawns is owned (by a supervisor's `JoinSet` or by the
//! [`Kernel`] for top-level supervisors) and carries its child's span; a panic never leaves the task
//! it happened in; control (stop, swap, fault injection) is always read before work.

mod actor;
mod bus;
mod registry;
mod service;
mod snapshot;
mod supervisor;
mod system;

pub use crate::{
    actor::{Actor, Addr, CallError, Ctx, SendError},
    bus::{Bus, RecvError, Subscriber, Topic},
    service::ServiceCtx,
    snapshot::{Failure, Kind, Mailbox, NodeSnapshot, Status, TreeSnapshot},
    supervisor::{ChildSpec, Intensity, Restart, Strategy, SupervisorSpec},
    system::Kernel,
};

/// The error type children return: anything that can cross tasks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the kernel's control API ([`Kernel`]) and of supervisors that give up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// No child is registered under this path.
    #[error("no child at {path}")]
    NotFound {
        /// The path that was looked up.
        path: String,
    },
    /// The child (or top-level supervisor) is already running.
    #[error("{path} is already running")]
    AlreadyRunning {
        /// The running child.
        path: String,
    },
    /// The child, or the supervisor that owns it, is not running.
    #[error("{path} is not running")]
    NotRunning {
        /// The child or supervisor that is not running.
        path: String,
    },
    /// A child failed to start (an error or panic before it was started, an exit before
    /// `ready()`, or no `ready()` within its start timeout).
    #[error("{path} failed to start: {reason}")]
    StartFailed {
        /// The child that failed to start.
        path: String,
        /// Why, as the child reported it.
        reason: String,
    },
    /// A supervisor exceeded its restart intensity, stopped its children and gave up.
    #[error("supervisor {path} gave up: {reason}")]
    Escalated {
        /// The supervisor that gave up.
        path: String,
        /// The failure that exhausted the intensity.
        reason: String,
    },
    /// The operation does not apply to a top-level supervisor: use `start` and `shutdown`.
    #[error("{path} is a top-level supervisor")]
    TopLevel {
        /// The top-level supervisor.
        path: String,
    },
    /// A swap whose replacement does not fit the slot (kind, name, role or message type differ).
    #[error("cannot swap {path}: {reason}")]
    Incompatible {
        /// The child being swapped.
        path: String,
        /// What differs.
        reason: String,
    },
}
