//! The event bus: typed, bounded, named broadcast topics.
//!
//! A topic is identified by its name *and* its event type, so two components asking for
//! `topic::<NodeEvent>("nodes")` share one topic. Delivery follows tokio's broadcast semantics:
//! a subscriber that falls more than the capacity behind is told how many events it missed
//! ([`RecvError::Lagged`]) and then continues from the oldest retained event; nothing is skipped
//! silently.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

/// Capacity of a topic created with [`Bus::topic`].
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

type Topics = HashMap<(String, TypeId), Box<dyn Any + Send + Sync>>;

/// The registry of topics; cheap to clone.
#[derive(Clone, Default)]
pub struct Bus {
    topics: Arc<Mutex<Topics>>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("topics", &self.topics.lock().len())
            .finish()
    }
}

impl Bus {
    /// The topic `name` for events of type `T`, created with capacity 1024 on first use.
    pub fn topic<T: Clone + Send + 'static>(&self, name: &str) -> Topic<T> {
        self.topic_with_capacity(name, DEFAULT_CAPACITY)
    }

    /// Like [`Bus::topic`]; `capacity` applies only if this call creates the topic.
    pub fn topic_with_capacity<T: Clone + Send + 'static>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Topic<T> {
        let mut topics = self.topics.lock();
        let entry = topics
            .entry((name.to_owned(), TypeId::of::<T>()))
            .or_insert_with(|| Box::new(broadcast::channel::<T>(capacity.max(1)).0));
        let tx = entry
            .downcast_ref::<broadcast::Sender<T>>()
            .cloned()
            // The key contains TypeId::of::<T>(), so the stored sender is a Sender<T>.
            .unwrap_or_else(|| unreachable!("topic stored under the wrong type"));
        Topic {
            name: name.into(),
            tx,
        }
    }
}

/// A named stream of events of type `T`; cheap to clone.
#[derive(Clone)]
pub struct Topic<T> {
    name: Arc<str>,
    tx: broadcast::Sender<T>,
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

impl<T: Clone + Send + 'static> Topic<T> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes an event to every current subscriber; returns how many there are (0 is fine:
    /// events published with no subscriber are dropped).
    pub fn publish(&self, event: T) -> usize {
        self.tx.send(event).unwrap_or(0)
    }

    /// A subscriber that receives every event published from now on.
    pub fn subscribe(&self) -> Subscriber<T> {
        Subscriber {
            topic: self.name.clone(),
            rx: self.tx.subscribe(),
        }
    }
}

/// Receives a topic's events in publication order.
pub struct Subscriber<T> {
    topic: Arc<str>,
    rx: broadcast::Receiver<T>,
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic)
            .finish()
    }
}

impl<T: Clone> Subscriber<T> {
    /// The next event; [`RecvError::Lagged`] once if events were missed, then the oldest kept one.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        self.rx.recv().await.map_err(Into::into)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<T>, RecvError> {
        match self.rx.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
        }
    }
}

/// Why a subscriber got no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind and missed this many events; the next `recv` continues with the
    /// oldest event still kept.
    #[error("subscriber lagged behind and missed {0} events")]
    Lagged(u64),
    /// The bus is gone.
    #[error("topic closed")]
    Closed,
}

impl From<broadcast::error::RecvError> for RecvError {
    fn from(e: broadcast::error::RecvError) -> Self {
        match e {
            broadcast::error::RecvError::Lagged(n) => Self::Lagged(n),
            broadcast::error::RecvError::Closed => Self::Closed,
        }
    }
}
