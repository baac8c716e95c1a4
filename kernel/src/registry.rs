//! The registry: one [`Node`] per child path, shared by the supervisor that owns the slot, the
//! instances that run in it, and readers (snapshots, lookups, control).
//!
//! Nodes outlive instances: a restarted supervisor adopts the nodes already registered under its
//! children's paths, so mailboxes (and the `Addr`s handed out) and restart counts survive
//! restarts at any level. Locks are held only for field updates, never across an await.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use crate::actor::ErasedMailbox;
use crate::snapshot::{Failure, Kind, Mailbox, NodeSnapshot, Status, TreeSnapshot};
use crate::supervisor::{Body, ChildSpec, CtlTx};

/// A child slot.
pub(crate) struct Node {
    pub(crate) path: Arc<str>,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) kind: Kind,
    /// Actors only; belongs to the slot, not to an instance.
    pub(crate) mailbox: Option<Arc<dyn ErasedMailbox>>,
    pub(crate) handled: AtomicU64,
    state: Mutex<NodeState>,
}

struct NodeState {
    status: Status,
    restarts: u32,
    last_failure: Option<Failure>,
    started: Option<(u64, Instant)>,
    strategy: Option<String>,
    children: Vec<Arc<Node>>,
    /// Control channel of the supervisor that owns this slot (none for top-level supervisors).
    parent: Option<CtlTx>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Node {
    fn new(path: String, spec: &ChildSpec) -> Self {
        let (kind, mailbox, strategy) = match &spec.body {
            Body::Actor(body) => (Kind::Actor, Some(body.mailbox()), None),
            Body::Service(_) => (Kind::Service, None, None),
            Body::Supervisor(s) => (Kind::Supervisor, None, Some(s.strategy.to_string())),
        };
        Self {
            path: path.into(),
            name: spec.name.clone(),
            role: spec.role.clone(),
            kind,
            mailbox,
            handled: AtomicU64::new(0),
            state: Mutex::new(NodeState {
                status: Status::Stopped,
                restarts: 0,
                last_failure: None,
                started: None,
                strategy,
                children: Vec::new(),
                parent: None,
            }),
        }
    }

    /// Whether `spec` can run in this slot: same name, kind and role, and for actors the same
    /// message type over a mailbox that is still open.
    pub(crate) fn fits(&self, spec: &ChildSpec) -> Result<(), String> {
        let kind = match &spec.body {
            Body::Actor(_) => Kind::Actor,
            Body::Service(_) => Kind::Service,
            Body::Supervisor(_) => Kind::Supervisor,
        };
        if spec.name != self.name || kind != self.kind || spec.role != self.role {
            return Err(format!(
                "slot is {:?} {} ({}), replacement is {kind:?} {} ({})",
                self.kind, self.name, self.role, spec.name, spec.role
            ));
        }
        match (&spec.body, &self.mailbox) {
            (Body::Actor(body), Some(mb)) if body.msg_type() != mb.msg_type() => {
                Err("the message type differs".into())
            }
            (Body::Actor(_), Some(mb)) if mb.is_closed() => Err("the mailbox is closed".into()),
            _ => Ok(()),
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.state.lock().status
    }

    pub(crate) fn set_status(&self, status: Status) {
        let mut st = self.state.lock();
        st.status = status;
        st.started = (status == Status::Running).then(|| (unix_ms(), Instant::now()));
    }

    /// Sets `to` only if the status is still `from`; false otherwise.
    pub(crate) fn transition(&self, from: Status, to: Status) -> bool {
        let ok = self.status() == from;
        if ok {
            self.set_status(to);
        }
        ok
    }

    pub(crate) fn record_failure(&self, reason: &str) {
        self.state.lock().last_failure = Some(Failure {
            reason: reason.to_owned(),
            at_unix_ms: unix_ms(),
        });
    }

    pub(crate) fn count_restart(&self) {
        self.state.lock().restarts += 1;
    }

    pub(crate) fn set_strategy(&self, strategy: String) {
        self.state.lock().strategy = Some(strategy);
    }

    pub(crate) fn parent(&self) -> Option<CtlTx> {
        self.state.lock().parent.clone()
    }

    fn snapshot(&self) -> NodeSnapshot {
        let st = self.state.lock();
        NodeSnapshot {
            path: self.path.to_string(),
            name: self.name.clone(),
            role: self.role.clone(),
            kind: self.kind,
            status: st.status,
            restarts: st.restarts,
            last_failure: st.last_failure.clone(),
            started_at_unix_ms: st.started.map(|(ms, _)| ms),
            uptime_ms: st
                .started
                .map(|(_, at)| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            mailbox: self.mailbox.as_ref().map(|m| Mailbox {
                depth: m.depth(),
                capacity: m.capacity(),
            }),
            handled: self.handled.load(Ordering::Relaxed),
            strategy: st.strategy.clone(),
        }
    }
}

/// Every node by path, and the top-level supervisors in start order.
#[derive(Default)]
pub(crate) struct Registry {
    nodes: RwLock<HashMap<Arc<str>, Arc<Node>>>,
    roots: Mutex<Vec<Arc<Node>>>,
}

impl Registry {
    pub(crate) fn get(&self, path: &str) -> Option<Arc<Node>> {
        self.nodes.read().get(path).cloned()
    }

    /// The node of a top-level supervisor, reused if it ran before.
    pub(crate) fn root(&self, spec: &ChildSpec) -> Arc<Node> {
        let node = self.reuse_or_create(spec.name.clone(), spec);
        let mut roots = self.roots.lock();
        if !roots.iter().any(|r| Arc::ptr_eq(r, &node)) {
            roots.retain(|r| r.path != node.path);
            roots.push(node.clone());
        }
        node
    }

    fn reuse_or_create(&self, path: String, spec: &ChildSpec) -> Arc<Node> {
        let mut nodes = self.nodes.write();
        if let Some(node) = nodes.get(path.as_str()).filter(|n| n.fits(spec).is_ok()) {
            if let Body::Supervisor(s) = &spec.body {
                node.set_strategy(s.strategy.to_string());
            }
            return node.clone();
        }
        let node = Arc::new(Node::new(path, spec));
        nodes.insert(node.path.clone(), node.clone());
        node
    }

    /// Registers the children of a (re)starting supervisor: reuses fitting nodes, links them to
    /// the supervisor's control channel and forgets the subtrees of children it no longer has.
    pub(crate) fn adopt(&self, parent: &Node, specs: &[ChildSpec], ctl: &CtlTx) -> Vec<Arc<Node>> {
        let children: Vec<Arc<Node>> = specs
            .iter()
            .map(|spec| {
                let node = self.reuse_or_create(format!("{}/{}", parent.path, spec.name), spec);
                node.state.lock().parent = Some(ctl.clone());
                node
            })
            .collect();
        let old = std::mem::replace(&mut parent.state.lock().children, children.clone());
        for gone in old
            .iter()
            .filter(|o| !children.iter().any(|c| Arc::ptr_eq(c, o)))
        {
            self.forget(gone);
        }
        children
    }

    fn forget(&self, node: &Arc<Node>) {
        let children = std::mem::take(&mut node.state.lock().children);
        children.iter().for_each(|c| self.forget(c));
        if let Some(mb) = &node.mailbox {
            mb.close();
        }
        let mut nodes = self.nodes.write();
        if nodes.get(&node.path).is_some_and(|n| Arc::ptr_eq(n, node)) {
            nodes.remove(&node.path);
        }
    }

    /// After a supervisor's task ended (possibly aborted or panicked, leaving no time to update
    /// its children), shows its descendants that were still up as stopped.
    pub(crate) fn settle(&self, node: &Node) {
        let children = node.state.lock().children.clone();
        for child in children {
            if matches!(
                child.status(),
                Status::Running | Status::Starting | Status::Restarting
            ) {
                child.set_status(Status::Stopped);
            }
            self.settle(&child);
        }
    }

    /// After a shutdown: every node is settled and every mailbox closed.
    pub(crate) fn close_all(&self) {
        for root in self.roots.lock().iter() {
            if matches!(
                root.status(),
                Status::Running | Status::Starting | Status::Restarting
            ) {
                root.set_status(Status::Stopped);
            }
            self.settle(root);
        }
        for node in self.nodes.read().values() {
            if let Some(mb) = &node.mailbox {
                mb.close();
            }
        }
    }

    /// The tree in tree order.
    pub(crate) fn snapshot(&self) -> TreeSnapshot {
        fn walk(node: &Arc<Node>, out: &mut Vec<NodeSnapshot>) {
            out.push(node.snapshot());
            let children = node.state.lock().children.clone();
            children.iter().for_each(|c| walk(c, out));
        }
        let mut nodes = Vec::new();
        let roots = self.roots.lock().clone();
        roots.iter().for_each(|r| walk(r, &mut nodes));
        TreeSnapshot { nodes }
    }
}
