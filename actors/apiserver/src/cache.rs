//! The watch cache: per resource, the current objects and a window of recent events in memory,
//! kept up to date by one datastore watch, so lists and watches are served from memory instead of
//! each hitting (and decoding from) the datastore.
//!
//! Invariants: `objects` is the state at `revision`; `events` holds every change with a
//! revision in `(oldest, revision]`, in order; a subscriber registered under the same lock as a
//! snapshot misses nothing and sees nothing twice. When the datastore watch fails (compaction,
//! lag), the cache relists and moves `oldest` forward; watchers older than that get 410 from the
//! cache and fall back to the datastore's own history.

use crate::error::ApiError;
use crate::store::{Change, ObjectStore};
use datastore::Revision;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events kept for watchers that resume from a recent revision.
const WINDOW: usize = 2048;
/// Buffer of the live event channel; a watcher further behind is dropped (and relists).
const LIVE_BUFFER: usize = 4096;
/// How long a consistent read waits for the cache to catch up before reading the store.
const CATCH_UP: Duration = Duration::from_secs(3);

/// One change, as the cache keeps and fans it out.
#[derive(Debug, Clone)]
pub struct CachedEvent {
    /// Its revision.
    pub revision: Revision,
    /// The object's key.
    pub key: String,
    /// What happened.
    pub change: Change,
}

#[derive(Debug)]
struct State {
    objects: BTreeMap<String, Value>,
    events: VecDeque<Arc<CachedEvent>>,
    revision: Revision,
    oldest: Revision,
    /// Replaced on relist, which ends every subscriber (they resume or relist, as after a 410).
    live: broadcast::Sender<Arc<CachedEvent>>,
}

#[derive(Debug)]
struct ResourceCache {
    state: RwLock<State>,
    progress: tokio::sync::watch::Sender<Revision>,
}

/// All resource caches of the server.
#[derive(Debug, Clone, Default)]
pub struct WatchCache {
    caches: Arc<Mutex<HashMap<String, Arc<ResourceCache>>>>,
}

/// A snapshot plus the events after it.
pub struct Subscription {
    /// Objects under the requested prefix at `revision` (only when asked for).
    pub initial: Vec<Value>,
    /// Buffered events after the requested revision.
    pub backlog: Vec<Arc<CachedEvent>>,
    /// Live events after those.
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
    /// The revision the snapshot/backlog reach.
    pub revision: Revision,
}

impl WatchCache {
    /// The cache of the resource whose keys start with `root` (started on first use).
    async fn get(&self, store: &ObjectStore, root: &str) -> Result<Arc<ResourceCache>, ApiError> {
        if let Some(c) = self.caches.lock().get(root) {
            return Ok(c.clone());
        }
        let page = store.list(root, None, 0, None).await?;
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let mut state = State {
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            revision: page.revision,
            oldest: page.revision,
            live,
        };
        for o in page.items {
            if let Some(k) = key_of(root, &o) {
                state.objects.insert(k, o);
            }
        }
        let (progress, _) = tokio::sync::watch::channel(page.revision);
        let cache = Arc::new(ResourceCache {
            state: RwLock::new(state),
            progress,
        });
        {
            let mut all = self.caches.lock();
            if let Some(existing) = all.get(root) {
                return Ok(existing.clone());
            }
            all.insert(root.to_owned(), cache.clone());
        }
        tokio::spawn(feed(store.clone(), root.to_owned(), Arc::downgrade(&cache)));
        Ok(cache)
    }

    /// Objects under `prefix` (a prefix of `root`) and the revision they are at. A
    /// `consistent` read first waits until the cache holds every write this server made to the
    /// resource. `None` when it could not catch up in time (the caller reads the store).
    pub async fn list(
        &self,
        store: &ObjectStore,
        root: &str,
        prefix: &str,
        consistent: bool,
    ) -> Result<Option<(Vec<Value>, Revision)>, ApiError> {
        let cache = self.get(store, root).await?;
        if consistent && !wait_for(&cache, store.last_write(root)).await {
            return Ok(None);
        }
        let st = cache.state.read();
        let items = st
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok(Some((items, st.revision)))
    }

    /// Subscribe to changes under `prefix` after `after`, or (`after` = None) to the current
    /// objects and every later change. `None` when `after` is older than the cache's window
    /// (the caller watches the store's history instead).
    pub async fn subscribe(
        &self,
        store: &ObjectStore,
        root: &str,
        prefix: &str,
        after: Option<Revision>,
    ) -> Result<Option<Subscription>, ApiError> {
        let cache = self.get(store, root).await?;
        if !wait_for(&cache, store.last_write(root)).await {
            return Ok(None);
        }
        let st = cache.state.read();
        let live = st.live.subscribe();
        match after {
            None => {
                let initial = st
                    .objects
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect();
                Ok(Some(Subscription {
                    initial,
                    backlog: Vec::new(),
                    live,
                    revision: st.revision,
                }))
            }
            Some(after) if after < st.oldest => Ok(None),
            Some(after) => {
                // A revision past the cache's is fine: the cache holds every write to this resource
                // up to now, so nothing for it lies between; live events are filtered by revision.
                let backlog = st
                    .events
                    .iter()
                    .filter(|e| e.revision > after && e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Ok(Some(Subscription {
                    initial: Vec::new(),
                    backlog,
                    live,
                    revision: st.revision.max(after),
                }))
            }
        }
    }
}

async fn wait_for(cache: &ResourceCache, min: Revision) -> bool {
    let mut rx = cache.progress.subscribe();
    tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= min))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn key_of(root: &str, o: &Value) -> Option<String> {
    let name = o.pointer("/metadata/name").and_then(Value::as_str)?;
    Some(
        match o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(ns) => format!("{root}{ns}/{name}"),
            None => format!("{root}{name}"),
        },
    )
}

/// Keep one resource cache current until it is dropped.
async fn feed(store: ObjectStore, root: String, cache: std::sync::Weak<ResourceCache>) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        let from = c.state.read().revision;
        drop(c);
        let mut stream = match store.watch(&root, from).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(prefix = %root, error = %e, "watch cache: cannot watch; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            let Some(c) = cache.upgrade() else { return };
            match ev {
                Ok((change, revision)) => {
                    let obj = match &change {
                        Change::Put { obj, .. } | Change::Delete { obj } => obj,
                    };
                    let Some(key) = key_of(&root, obj) else {
                        // Nothing to cache (no name), but the cache is current up to here:
                        // consistent reads wait for this revision.
                        c.state.write().revision = revision;
                        c.progress.send_replace(revision);
                        continue;
                    };
                    let event = Arc::new(CachedEvent {
                        revision,
                        key: key.clone(),
                        change: change.clone(),
                    });
                    {
                        let mut st = c.state.write();
                        match &change {
                            Change::Put { obj, .. } => {
                                st.objects.insert(key, obj.clone());
                            }
                            Change::Delete { .. } => {
                                st.objects.remove(&key);
                            }
                        }
                        st.revision = revision;
                        st.events.push_back(event.clone());
                        while st.events.len() > WINDOW {
                            if let Some(old) = st.events.pop_front() {
                                st.oldest = old.revision;
                            }
                        }
                        // Sent under the lock so subscribers registered under it see it exactly once.
                        let _ = st.live.send(event);
                    }
                    c.progress.send_replace(revision);
                }
                Err(e) => {
                    tracing::info!(prefix = %root, error = %e, "watch cache: relisting");
                    break;
                }
            }
        }
        // The watch ended (compaction or lag): rebuild from a fresh list.
        let Some(c) = cache.upgrade() else { return };
        match store.list(&root, None, 0, None).await {
            Ok(page) => {
                let mut st = c.state.write();
                st.objects.clear();
                for o in page.items {
                    if let Some(k) = key_of(&root, &o) {
                        st.objects.insert(k, o);
                    }
                }
                st.events.clear();
                st.revision = page.revision;
                st.oldest = page.revision;
                st.live = broadcast::channel(LIVE_BUFFER).0;
                drop(st);
                c.progress.send_replace(page.revision);
            }
            Err(e) => {
                tracing::warn!(prefix = %root, error = %e, "watch cache: relist failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
