//! Introspection: a serializable picture of the supervision tree, taken without asking any actor.

use serde::{Deserialize, Serialize};

/// The whole tree, in tree order: parents before children, children in start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSnapshot {
    /// Every node of every top-level supervisor.
    pub nodes: Vec<NodeSnapshot>,
}

impl TreeSnapshot {
    /// The node at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.path == path)
    }
}

/// One supervisor, actor or service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Parent path + "/" + name.
    pub path: String,
    /// Name within the parent.
    pub name: String,
    /// What the child does (implementations of one role can be swapped).
    pub role: String,
    /// Supervisor, actor or service.
    pub kind: Kind,
    /// Lifecycle state.
    pub status: Status,
    /// How many times the child was restarted (by its supervisor or by the API).
    pub restarts: u32,
    /// The most recent abnormal exit.
    pub last_failure: Option<Failure>,
    /// When the current instance started, if it is running.
    pub started_at_unix_ms: Option<u64>,
    /// How long the current instance has been running.
    pub uptime_ms: Option<u64>,
    /// Mailbox fill (actors only).
    pub mailbox: Option<Mailbox>,
    /// Messages handled, across restarts (actors only).
    pub handled: u64,
    /// Restart strategy (supervisors only), e.g. `one_for_one`.
    pub strategy: Option<String>,
}

/// The kind of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Supervises other children.
    Supervisor,
    /// Reads a mailbox.
    Actor,
    /// Runs its own concurrency.
    Service,
}

/// Lifecycle state of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being started for the first time (or after `start_child`/`swap`).
    Starting,
    /// Started and not asked to stop.
    Running,
    /// Being started again after a failure or a restart request.
    Restarting,
    /// Stopped gracefully, exited normally and not restarted, or not started yet.
    Stopped,
    /// Exited abnormally and not restarted.
    Failed,
}

/// An abnormal exit: an error or a panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The error's message, or "panicked: " and the panic message.
    pub reason: String,
    /// When it happened.
    pub at_unix_ms: u64,
}

/// Mailbox fill of an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// Messages waiting.
    pub depth: usize,
    /// Bound of the mailbox.
    pub capacity: usize,
}
