//! The backend-neutral watch hub: fans committed events out to any number of watchers.
//!
//! A backend feeds the hub with [`WatchHub::publish`] (the SQLite writer after each commit; later a
//! poller of an external database's revision high-water mark) and answers history queries through
//! [`HistorySource`]. The hub keeps the most recent events in one shared, bounded ring; each
//! watcher is just a cursor (the last revision it has passed) and reads from the ring, so a slow
//! watcher costs no memory of its own.
//!
//! Invariants:
//! - `publish` is called with strictly increasing revisions, only for committed writes, and the
//!   backend's history returns exactly the same events for revisions `<= head`;
//! - the ring holds every published event with revision in `(start, head]`;
//! - a watcher's cursor only moves forward, past events it has delivered or that do not match its
//!   prefix, so it never skips or repeats an event. When its cursor falls out of the ring (it
//!   started from an old revision or read too slowly) it reads `(cursor, start]` from history
//!   page by page and then returns to the ring; if that history was compacted away the watch ends
//!   with [`StoreError::Compacted`].
//!
//! Why a shared ring and not a queue per watcher: the buffer's memory is bounded once for all
//! watchers (by events and bytes), publishing costs the writer O(1) plus one wake-up signal,
//! and a slow watcher is not dropped at the first burst (kine closes the channel of a watcher
//! that would block); it re-reads what it missed from the database, like etcd's "unsynced"
//! watchers, and only a watcher that falls behind compaction ends (the API server relists).
//!
//! Feeding the hub from another process's writes (several servers on one PostgreSQL or MySQL):
//! a poller reads rows above the hub's head in revision order, waits briefly for a missing
//! revision (a transaction still committing) and, once it is known never to appear (a rolled back
//! sequence value), publishes past it; `publish(events, head)` accepts such gaps.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::backend::WatchStream;
use crate::error::StoreError;
use crate::options::WatchOptions;
use crate::types::{Event, Revision};

/// A page of history read from a backend.
#[derive(Debug, Default)]
pub struct HistoryPage {
    /// Events with revision in `(after, scanned_to]` for the prefix, in revision order.
    pub events: Vec<Event>,
    /// The revision up to which the history was examined: the next page starts after it.
    pub scanned_to: Revision,
}

/// Read access to a backend's history, used by watchers that are behind the in-memory ring.
pub trait HistorySource: Send + Sync + 'static {
    /// Events for keys with `prefix` with revision in `(after, up_to]`, in revision order, at most
    /// `limit` of them. Fails with [`StoreError::Compacted`] if `after` is older than the
    /// compacted revision.
    fn read_history<'a>(
        &'a self,
        prefix: &'a str,
        after: Revision,
        up_to: Revision,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>>;

    /// The compacted revision as currently known.
    fn compacted(&self) -> Revision;
}

/// Recent events shared by all watchers.
#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Events with revision `<= start` are not (or no longer) in the ring.
    start: Revision,
    /// The latest published revision.
    head: Revision,
    bytes: usize,
    closed: bool,
}

/// Fan-out of committed events to watchers. See the module docs.
pub struct WatchHub {
    ring: RwLock<Ring>,
    /// Wakes watchers: carries the head revision after every publish (and on close).
    signal: watch::Sender<Revision>,
    history: Arc<dyn HistorySource>,
    opts: WatchOptions,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring.read();
        f.debug_struct("WatchHub")
            .field("start", &ring.start)
            .field("head", &ring.head)
            .field("buffered", &ring.events.len())
            .field("closed", &ring.closed)
            .finish()
    }
}

/// How many ring events a watcher copies per lock acquisition.
const RING_BATCH: usize = 256;

impl WatchHub {
    /// A hub whose history starts at `head` (the backend's current revision).
    pub fn new(head: Revision, history: Arc<dyn HistorySource>, opts: WatchOptions) -> Arc<Self> {
        let (signal, _) = watch::channel(head);
        Arc::new(WatchHub {
            ring: RwLock::new(Ring {
                events: VecDeque::new(),
                start: head,
                head,
                bytes: 0,
                closed: false,
            }),
            signal,
            history,
            opts,
        })
    }

    /// The latest published revision.
    pub fn head(&self) -> Revision {
        self.ring.read().head
    }

    /// Publishes committed `events` (strictly increasing revisions, all `<= head`) and advances the
    /// head to `head` (which may be beyond the last event: revisions without an event for anyone,
    /// e.g. gaps in an external database's sequence). Events at or below the current head are
    /// ignored, so a feeder may safely re-publish.
    pub fn publish(&self, events: Vec<Event>, head: Revision) {
        {
            let mut ring = self.ring.write();
            if ring.closed || head <= ring.head {
                return;
            }
            let mut last = ring.head;
            for ev in events {
                let rev = ev.revision();
                if rev <= last || rev > head {
                    // A feeder bug; dropping it here would hide a gap, so make it loud. History
                    // still has the event, so watchers reading from the database see it.
                    tracing::error!(rev, last, head, "watch hub: out-of-order event ignored");
                    continue;
                }
                last = rev;
                ring.bytes += ev.approx_size();
                ring.events.push_back(Arc::new(ev));
            }
            ring.head = head;
            while ring.events.len() > self.opts.buffer_events || ring.bytes > self.opts.buffer_bytes
            {
                let Some(old) = ring.events.pop_front() else {
                    break;
                };
                ring.bytes -= old.approx_size();
                ring.start = old.revision();
            }
            if ring.events.is_empty() {
                // Nothing buffered: every revision up to head is in history only.
                ring.start = head;
            }
        }
        self.signal.send_replace(head);
    }

    /// Ends every watch with [`StoreError::Closed`] (after the events they already hold).
    pub fn close(&self) {
        let head = {
            let mut ring = self.ring.write();
            ring.closed = true;
            ring.events.clear();
            ring.bytes = 0;
            ring.head
        };
        self.signal.send_replace(head);
    }

    /// A stream of every event for `prefix` with revision > `after`. See the module docs.
    pub fn watch(self: &Arc<Self>, prefix: &str, after: Revision) -> WatchStream {
        let compacted = self.history.compacted();
        let state = Watcher {
            hub: Arc::clone(self),
            prefix: prefix.to_owned(),
            cursor: after,
            pending: VecDeque::new(),
            signal: self.signal.subscribe(),
            phase: if after < compacted {
                Phase::Failed(Some(StoreError::Compacted {
                    requested: after,
                    compacted,
                }))
            } else {
                Phase::Running
            },
        };
        Box::pin(futures::stream::unfold(state, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        }))
    }
}

/// Where a watcher stands.
enum Phase {
    /// Delivering events.
    Running,
    /// Will yield this error once, then end.
    Failed(Option<StoreError>),
}

/// One watcher: a cursor over the ring or history, plus events copied but not yet yielded.
struct Watcher {
    hub: Arc<WatchHub>,
    prefix: String,
    /// The last revision passed (delivered, queued in `pending`, or skipped as not matching).
    cursor: Revision,
    pending: VecDeque<Arc<Event>>,
    signal: watch::Receiver<Revision>,
    phase: Phase,
}

/// What a look at the ring found.
enum Step {
    /// Events were queued (or the cursor advanced past non-matching ones): look again.
    Progress,
    /// Nothing after the cursor yet: wait for a publish.
    Wait,
    /// The cursor is behind the ring: read `(cursor, up_to]` from history.
    History { up_to: Revision },
    /// The hub is closed.
    Closed,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Phase::Failed(err) = &mut self.phase {
                return err.take().map(Err);
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(Event::clone(&ev)));
            }
            // Mark the current signal as seen *before* looking at the ring, so a publish that
            // lands after the look wakes the wait below.
            self.signal.borrow_and_update();
            match self.step_ring() {
                Step::Progress => {}
                Step::Wait => {
                    if self.signal.changed().await.is_err() {
                        self.phase = Phase::Failed(Some(StoreError::Closed));
                    }
                }
                Step::History { up_to } => {
                    let page = self
                        .hub
                        .history
                        .read_history(&self.prefix, self.cursor, up_to, self.hub.opts.history_page)
                        .await;
                    match page {
                        Ok(page) if page.scanned_to <= self.cursor => {
                            // A non-conforming source; asking again would spin forever.
                            let reason = format!(
                                "watch history made no progress after revision {}",
                                self.cursor
                            );
                            self.phase = Phase::Failed(Some(StoreError::Unavailable { reason }));
                        }
                        Ok(page) => {
                            debug_assert!(page.scanned_to <= up_to);
                            for ev in page.events {
                                debug_assert!(
                                    ev.revision() > self.cursor && ev.revision() <= page.scanned_to
                                );
                                self.pending.push_back(Arc::new(ev));
                            }
                            self.cursor = page.scanned_to;
                        }
                        Err(e) => self.phase = Phase::Failed(Some(e)),
                    }
                }
                Step::Closed => self.phase = Phase::Failed(Some(StoreError::Closed)),
            }
        }
    }

    /// Copies up to [`RING_BATCH`] matching events after the cursor out of the ring.
    fn step_ring(&mut self) -> Step {
        let ring = self.hub.ring.read();
        if ring.closed {
            return Step::Closed;
        }
        if self.cursor >= ring.head {
            return Step::Wait;
        }
        if self.cursor < ring.start {
            return Step::History { up_to: ring.start };
        }
        // First event with revision > cursor.
        let from = ring.events.partition_point(|e| e.revision() <= self.cursor);
        let mut scanned_to = ring.head;
        for ev in ring.events.range(from..) {
            if ev.key().starts_with(self.prefix.as_str()) {
                if self.pending.len() == RING_BATCH {
                    scanned_to = ev.revision() - 1;
                    break;
                }
                self.pending.push_back(Arc::clone(ev));
            }
        }
        self.cursor = scanned_to;
        Step::Progress
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::types::KeyValue;

    /// An in-memory history with a settable compacted revision.
    #[derive(Default)]
    struct MemHistory {
        events: Mutex<Vec<Event>>,
        compacted: Mutex<Revision>,
    }

    impl HistorySource for MemHistory {
        fn read_history<'a>(
            &'a self,
            prefix: &'a str,
            after: Revision,
            up_to: Revision,
            limit: usize,
        ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
            Box::pin(async move {
                let compacted = self.compacted();
                if after < compacted {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted,
                    });
                }
                let all = self.events.lock().map_err(|_| StoreError::Closed)?;
                let mut page = HistoryPage {
                    events: vec![],
                    scanned_to: up_to,
                };
                for ev in all
                    .iter()
                    .filter(|e| e.revision() > after && e.revision() <= up_to)
                {
                    if ev.key().starts_with(prefix) {
                        if page.events.len() == limit {
                            page.scanned_to = ev.revision() - 1;
                            break;
                        }
                        page.events.push(ev.clone());
                    }
                }
                Ok(page)
            })
        }

        fn compacted(&self) -> Revision {
            self.compacted.lock().map(|c| *c).unwrap_or(0)
        }
    }

    fn put(key: &str, rev: Revision) -> Event {
        Event::Put {
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from(format!("v{rev}")),
                create_revision: rev,
                mod_revision: rev,
                lease_ttl: None,
            },
            prev: None,
        }
    }

    fn hub(buffer: usize) -> (Arc<MemHistory>, Arc<WatchHub>) {
        let history = Arc::new(MemHistory::default());
        let opts = WatchOptions {
            buffer_events: buffer,
            buffer_bytes: 1 << 20,
            history_page: 3,
        };
        let hub = WatchHub::new(0, history.clone(), opts);
        (history, hub)
    }

    fn feed(history: &MemHistory, hub: &WatchHub, from: Revision, to: Revision) {
        for rev in from..=to {
            let key = if rev % 2 == 0 {
                format!("/a/{rev}")
            } else {
                format!("/b/{rev}")
            };
            let ev = put(&key, rev);
            if let Ok(mut h) = history.events.lock() {
                h.push(ev.clone());
            }
            hub.publish(vec![ev], rev);
        }
    }

    async fn take(stream: &mut WatchStream, n: usize) -> Vec<Revision> {
        let mut out = vec![];
        for _ in 0..n {
            match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(ev))) => out.push(ev.revision()),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn live_then_history_then_ring_without_gaps() {
        let (history, hub) = hub(4);
        feed(&history, &hub, 1, 20);
        // From 0: revisions 1..=16 come from history (the ring holds 17..=20), then the ring.
        let mut all = hub.watch("", 0);
        assert_eq!(take(&mut all, 20).await, (1..=20).collect::<Vec<_>>());
        let mut a = hub.watch("/a/", 5);
        assert_eq!(take(&mut a, 7).await, vec![6, 8, 10, 12, 14, 16, 18]);
        feed(&history, &hub, 21, 30);
        assert_eq!(take(&mut a, 6).await, vec![20, 22, 24, 26, 28, 30]);
        assert_eq!(take(&mut all, 10).await, (21..=30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn lagging_watcher_catches_up_or_fails_compacted() {
        let (history, hub) = hub(4);
        let mut slow = hub.watch("", 0);
        let mut doomed = hub.watch("", 0);
        feed(&history, &hub, 1, 3);
        assert_eq!(take(&mut doomed, 1).await, vec![1]);
        feed(&history, &hub, 4, 50);
        assert_eq!(take(&mut slow, 50).await, (1..=50).collect::<Vec<_>>());
        if let Ok(mut c) = history.compacted.lock() {
            *c = 40;
        }
        // `doomed` copied 1..=3 out of the ring before falling behind; it delivers those, then
        // fails because 4..=40 is gone.
        assert_eq!(take(&mut doomed, 2).await, vec![2, 3]);
        match doomed.next().await {
            Some(Err(StoreError::Compacted {
                requested: 3,
                compacted: 40,
            })) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(doomed.next().await.is_none());
        // A new watch from before the compacted revision fails at once.
        let mut late = hub.watch("", 39);
        assert!(matches!(
            late.next().await,
            Some(Err(StoreError::Compacted { .. }))
        ));
    }

    #[tokio::test]
    async fn future_start_and_close() {
        let (history, hub) = hub(8);
        let mut w = hub.watch("", 5);
        feed(&history, &hub, 1, 7);
        assert_eq!(take(&mut w, 2).await, vec![6, 7]);
        hub.close();
        assert!(matches!(w.next().await, Some(Err(StoreError::Closed))));
        assert!(w.next().await.is_none());
    }

    #[tokio::test]
    async fn publish_with_gaps_advances_head() {
        let (_history, hub) = hub(8);
        let mut w = hub.watch("", 0);
        hub.publish(vec![put("/x", 2), put("/y", 5)], 9);
        assert_eq!(hub.head(), 9);
        assert_eq!(take(&mut w, 2).await, vec![2, 5]);
        // Re-publishing old revisions is ignored.
        hub.publish(vec![put("/x", 2)], 9);
        hub.publish(vec![put("/z", 10)], 10);
        assert_eq!(take(&mut w, 1).await, vec![10]);
    }
}
