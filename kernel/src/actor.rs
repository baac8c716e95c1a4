//! Actors: a message loop over a bounded mailbox that belongs to the child's slot.
//!
//! The mailbox is created once per slot (registry node) and outlives actor instances: after a
//! restart or a swap the next instance reads the same queue, so an [`Addr`] never goes stale and
//! queued messages are not lost. Each message travels with the sender's current span, which becomes
//! the parent of the `actor.handle` span that handles it.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::supervisor::ChildRun;
use crate::{BoxError, Kernel};

/// A component that handles messages one at a time.
///
/// `started` runs before the supervisor starts the next sibling; an error or panic there is a
/// start failure. An error or panic in `handle` is a failure; `stopping` runs on a graceful stop
/// and after `handle` returned an error (not after a panic).
pub trait Actor: Send + Sized + 'static {
    /// The message type; usually one enum per actor.
    type Msg: Send + 'static;
    /// Mailbox bound; senders wait (or get [`SendError::Full`]) beyond it.
    const MAILBOX: usize = 64;

    /// Called once per instance before any message.
    fn started(&mut self, ctx: &Ctx<Self>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles one message.
    fn handle(
        &mut self,
        msg: Self::Msg,
        ctx: &Ctx<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Called once when the instance stops.
    fn stopping(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What an actor instance knows about itself.
pub struct Ctx<A: Actor> {
    path: Arc<str>,
    addr: Addr<A::Msg>,
    kernel: Kernel,
    token: CancellationToken,
}

impl<A: Actor> fmt::Debug for Ctx<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("path", &self.path).finish()
    }
}

impl<A: Actor> Ctx<A> {
    /// The actor's path, e.g. `server/scheduler`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The actor's own address.
    pub fn addr(&self) -> Addr<A::Msg> {
        self.addr.clone()
    }

    /// The kernel, for lookups, the bus and control.
    pub fn kernel(&self) -> Kernel {
        self.kernel.clone()
    }

    /// Cancelled when this instance is asked to stop; hand it to work the actor spawns.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops this instance normally after the current message (a `Transient` actor is then not
    /// restarted). To stop yourself use this, not `Kernel::stop`, which waits for you.
    pub fn stop(&self) {
        self.token.cancel();
    }
}

/// A message in a mailbox, with the span it was sent from.
pub(crate) struct Envelope<M> {
    msg: M,
    span: Span,
}

/// The address of an actor: a sender into its slot's mailbox, valid across restarts and swaps.
pub struct Addr<M> {
    tx: flume::Sender<Envelope<M>>,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<M> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("depth", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

impl<M: Send + 'static> Addr<M> {
    fn envelope(msg: M) -> Envelope<M> {
        Envelope {
            msg,
            span: Span::current(),
        }
    }

    /// Queues a message, waiting while the mailbox is full (backpressure).
    pub async fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.tx
            .send_async(Self::envelope(msg))
            .await
            .map_err(|e| SendError::Closed(e.into_inner().msg))
    }

    /// Queues a message if there is room now.
    pub fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.tx.try_send(Self::envelope(msg)).map_err(|e| match e {
            flume::TrySendError::Full(env) => SendError::Full(env.msg),
            flume::TrySendError::Disconnected(env) => SendError::Closed(env.msg),
        })
    }

    /// Request/reply: builds the message around a reply sender, sends it and waits for the reply;
    /// `timeout` covers both waiting for mailbox room and for the reply.
    pub async fn call<R: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let (tx, rx) = oneshot::channel();
        let msg = make(tx);
        tokio::time::timeout(timeout, async {
            self.send(msg).await.map_err(|_| CallError::Closed)?;
            rx.await.map_err(|_| CallError::NoReply)
        })
        .await
        .map_err(|_| CallError::Timeout(timeout))?
    }
}

/// A message that could not be queued; both variants hand the message back.
pub enum SendError<M> {
    /// The mailbox is full (only from `try_send`).
    Full(M),
    /// The mailbox is closed: its slot is gone (the kernel shut down or the child was removed).
    Closed(M),
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            Self::Full(m) | Self::Closed(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Closed(_) => "Closed(..)",
        })
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "mailbox full",
            Self::Closed(_) => "mailbox closed",
        })
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The mailbox is closed.
    #[error("mailbox closed")]
    Closed,
    /// The actor dropped the reply sender without answering (it failed, or chose not to reply).
    #[error("the actor dropped the request without replying")]
    NoReply,
}

/// A slot's mailbox: the sender handed out as [`Addr`]s and the receiver each instance reads.
pub(crate) struct MailboxCell<M> {
    tx: flume::Sender<Envelope<M>>,
    /// `None` once closed; instances read clones of it.
    rx: Mutex<Option<flume::Receiver<Envelope<M>>>>,
}

impl<M: Send + 'static> MailboxCell<M> {
    pub(crate) fn addr(&self) -> Addr<M> {
        Addr {
            tx: self.tx.clone(),
        }
    }
}

/// A mailbox whose message type is not known to the caller (registry, snapshots).
pub(crate) trait ErasedMailbox: Send + Sync {
    fn depth(&self) -> usize;
    fn capacity(&self) -> usize;
    fn msg_type(&self) -> TypeId;
    fn is_closed(&self) -> bool;
    /// Drops the slot's receiver: once running instances are gone, senders get `Closed`.
    fn close(&self);
    fn as_any(&self) -> &dyn Any;
}

impl<M: Send + 'static> ErasedMailbox for MailboxCell<M> {
    fn depth(&self) -> usize {
        self.tx.len()
    }
    fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }
    fn msg_type(&self) -> TypeId {
        TypeId::of::<M>()
    }
    fn is_closed(&self) -> bool {
        self.rx.lock().is_none()
    }
    fn close(&self) {
        self.rx.lock().take();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An actor factory with its types erased, as stored in a `ChildSpec`.
pub(crate) trait ActorBody: Send + Sync {
    fn msg_type(&self) -> TypeId;
    fn mailbox(&self) -> Arc<dyn ErasedMailbox>;
    fn run(&self, run: ChildRun) -> BoxFuture<'static, Result<(), BoxError>>;
}

pub(crate) struct Factory<A>(pub(crate) Arc<dyn Fn() -> A + Send + Sync>);

impl<A: Actor> ActorBody for Factory<A> {
    fn msg_type(&self) -> TypeId {
        TypeId::of::<A::Msg>()
    }

    fn mailbox(&self) -> Arc<dyn ErasedMailbox> {
        let (tx, rx) = flume::bounded::<Envelope<A::Msg>>(A::MAILBOX.max(1));
        Arc::new(MailboxCell {
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    fn run(&self, run: ChildRun) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(run_actor(self.0.clone(), run))
    }
}

/// One actor instance: `started`, then the message loop (stop requests first), then `stopping`.
async fn run_actor<A: Actor>(
    factory: Arc<dyn Fn() -> A + Send + Sync>,
    run: ChildRun,
) -> Result<(), BoxError> {
    let cell = run
        .node
        .mailbox
        .as_ref()
        .and_then(|m| m.as_any().downcast_ref::<MailboxCell<A::Msg>>())
        .ok_or("actor slot has no mailbox of its message type")?;
    let rx = cell.rx.lock().clone().ok_or("mailbox closed")?;
    let ctx = Ctx::<A> {
        path: run.path.clone(),
        addr: cell.addr(),
        kernel: run.kernel.clone(),
        token: run.stop.token.clone(),
    };
    let mut actor = factory();
    actor.started(&ctx).await?;
    let _ = run.started.send(());
    let result = loop {
        let envelope = tokio::select! {
            biased;
            () = ctx.token.cancelled() => break Ok(()),
            envelope = rx.recv_async() => match envelope {
                Ok(envelope) => envelope,
                Err(flume::RecvError::Disconnected) => break Ok(()),
            },
        };
        let span = tracing::info_span!(parent: &envelope.span, "actor.handle", path = %ctx.path);
        let handled = actor.handle(envelope.msg, &ctx).instrument(span).await;
        run.node.handled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = handled {
            break Err(e);
        }
    };
    actor.stopping().await;
    result
}
