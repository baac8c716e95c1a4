//! Watches on etcd: one gRPC `Watch` stream per store watch, resumed after transport failures.
//!
//! Invariants: `last` is the revision of the last event handed out (or the start point); a
//! resumed stream starts at `last + 1`, so nothing is delivered twice or skipped; etcd delivers a
//! watch's events in revision order, and the events of one revision (a transaction) are never
//! split across responses because fragmenting is not requested. The stream ends after yielding
//! `Compacted` (etcd cancelled the watch for compaction), `Closed` (the store closed) or a
//! non-retryable error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::SinkExt;
use futures::channel::mpsc;

use super::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};
use super::pb::mvccpb;
use super::{Inner, non_empty, range_end};
use crate::backend::WatchStream;
use crate::error::StoreError;
use crate::types::{Event, KeyValue, Revision};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Watcher {
    inner: Arc<Inner>,
    key: Vec<u8>,
    end: Vec<u8>,
    last: Revision,
    pending: VecDeque<Event>,
    /// The request sender (kept open: closing it ends the gRPC stream) and the responses.
    conn: Option<(mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>)>,
    closed: tokio::sync::watch::Receiver<bool>,
    backoff: Duration,
    done: bool,
}

/// Every change under `prefix` after `after`; see the module docs.
pub(super) fn watch(inner: Arc<Inner>, prefix: &str, after: Revision) -> WatchStream {
    let compacted = inner.compacted.load(Ordering::Acquire);
    let epoch = inner.epoch.load(Ordering::Acquire);
    let key = inner.key(prefix);
    let end = range_end(&key);
    let key = non_empty(key);
    let closed = inner.close_tx.subscribe();
    let mut w = Watcher {
        inner,
        key,
        end,
        // Nothing of a namespace happened before its creation.
        last: after.max(epoch),
        pending: VecDeque::new(),
        conn: None,
        closed,
        backoff: Duration::from_millis(100),
        done: false,
    };
    if after < compacted {
        w.done = true;
        let err = StoreError::Compacted {
            requested: after,
            compacted,
        };
        return Box::pin(futures::stream::once(async move { Err(err) }));
    }
    Box::pin(futures::stream::unfold(w, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

impl Watcher {
    fn fail(&mut self, e: StoreError) -> Option<Result<Event, StoreError>> {
        self.done = true;
        self.conn = None;
        Some(Err(e))
    }

    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if *self.closed.borrow() {
                return self.fail(StoreError::Closed);
            }
            let Some((_, stream)) = self.conn.as_mut() else {
                match self.open().await {
                    Ok(conn) => self.conn = Some(conn),
                    Err(e @ StoreError::Unavailable { .. }) => {
                        tracing::debug!(error = %e, "etcd watch: reconnecting");
                        if self.pause().await {
                            return self.fail(StoreError::Closed);
                        }
                    }
                    Err(e) => return self.fail(e),
                }
                continue;
            };
            let msg = tokio::select! {
                _ = self.closed.changed() => return self.fail(StoreError::Closed),
                msg = stream.message() => msg,
            };
            match msg {
                Ok(Some(resp)) => {
                    self.backoff = Duration::from_millis(100);
                    if resp.compact_revision > 0 {
                        return self.fail(StoreError::Compacted {
                            requested: self.last,
                            compacted: resp.compact_revision,
                        });
                    }
                    if resp.canceled {
                        let reason = format!(
                            "etcd {}: watch cancelled: {}",
                            self.inner.endpoints, resp.cancel_reason
                        );
                        return self.fail(StoreError::Unavailable { reason });
                    }
                    for ev in resp.events {
                        if let Some(ev) = self.convert(ev) {
                            self.last = self.last.max(ev.revision());
                            self.pending.push_back(ev);
                        }
                    }
                }
                Ok(None) => self.conn = None,
                Err(status) => {
                    self.conn = None;
                    match self.inner.status_err(status) {
                        e @ StoreError::Unavailable { .. } => {
                            tracing::debug!(error = %e, "etcd watch: stream failed, resuming");
                            if self.pause().await {
                                return self.fail(StoreError::Closed);
                            }
                        }
                        e => return self.fail(e),
                    }
                }
            }
        }
    }

    /// Sleeps for the backoff; `true` if the store closed meanwhile.
    async fn pause(&mut self) -> bool {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = self.closed.changed() => true,
            _ = tokio::time::sleep(delay) => *self.closed.borrow(),
        }
    }

    /// Opens a gRPC watch from `last + 1`.
    async fn open(
        &self,
    ) -> Result<(mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>), StoreError> {
        let (mut tx, rx) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: self.key.clone(),
                    range_end: self.end.clone(),
                    start_revision: self.last + 1,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.map_err(|_| StoreError::Closed)?;
        let stream = self
            .inner
            .watch
            .clone()
            .watch(rx)
            .await
            .map_err(|s| self.inner.status_err(s))?
            .into_inner();
        Ok((tx, stream))
    }

    fn convert(&self, ev: mvccpb::Event) -> Option<Event> {
        let kv = ev.kv?;
        let inner = &self.inner;
        if ev.r#type == mvccpb::event::EventType::Delete as i32 {
            let revision = kv.mod_revision;
            let key = inner.user_key(&kv.key)?;
            let prev = ev.prev_kv.and_then(|p| inner.to_kv(p)).unwrap_or(KeyValue {
                // The previous version was compacted away (only for watchers far behind).
                key,
                value: bytes::Bytes::new(),
                create_revision: 0,
                mod_revision: 0,
                lease_ttl: None,
            });
            Some(Event::Delete { prev, revision })
        } else {
            let created = kv.version == 1;
            let kv = inner.to_kv(kv)?;
            let prev = if created {
                None
            } else {
                ev.prev_kv.and_then(|p| inner.to_kv(p))
            };
            Some(Event::Put { kv, prev })
        }
    }
}
