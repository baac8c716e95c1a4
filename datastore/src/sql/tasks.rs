//! The SQL backends' background tasks: the poller (publishes committed rows to the watch hub and
//! resolves id gaps, see the module docs of [`super`]), TTL expiry, and periodic compaction.
//!
//! Each task owns an `Arc` of the backend's state and ends when the store's stop signal fires
//! (`close` also aborts them). Database errors never end a task: it logs, backs off (100 ms
//! doubling to 5 s) and tries again, so a restarted database server is picked up by itself.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::db::Rec;
use super::{Inner, POLL_BATCH};
use crate::error::StoreError;
use crate::types::Revision;

/// Gaps wider than this are logged (each missing id costs one filler insert).
const WIDE_GAP: i64 = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A leased version for the TTL task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Leased {
    rev: Revision,
    key: String,
    secs: i64,
}

impl Leased {
    pub(super) fn of(rec: &Rec) -> Self {
        Leased {
            rev: rec.id,
            key: rec.name.clone(),
            secs: rec.lease,
        }
    }
}

/// Reads the rows after the head once and publishes them. Returns whether more rows may be
/// waiting (a full batch, or a gap turned out to be a row that committed meanwhile).
pub(super) async fn poll_once(inner: &Inner) -> Result<bool, StoreError> {
    let _serial = inner.poll_lock.lock().await;
    let head = inner.hub.head();
    let (compact, recs) = inner
        .db
        .events(head, Revision::MAX, None, POLL_BATCH)
        .await?;
    inner.compacted.fetch_max(compact, Ordering::AcqRel);
    // Every id up to `settled` is a row seen here or a gap taken by a filler.
    let mut settled = head;
    let mut events = Vec::with_capacity(recs.len());
    let mut leased = Vec::new();
    let mut again = recs.len() as i64 >= POLL_BATCH;
    'rows: for rec in &recs {
        if rec.id > settled + 1 {
            let width = rec.id - settled - 1;
            if width > WIDE_GAP {
                tracing::warn!(
                    from = settled + 1,
                    to = rec.id - 1,
                    "datastore: filling a wide id gap"
                );
            }
        }
        while settled + 1 < rec.id {
            if inner.db.fill_gap(settled + 1).await? {
                settled += 1;
            } else {
                // The missing row committed meanwhile: read again from here.
                again = true;
                break 'rows;
            }
        }
        settled = rec.id;
        if rec.lease > 0 && !rec.deleted && !rec.is_filler() {
            leased.push(Leased::of(rec));
        }
        if let Some(ev) = rec.to_event() {
            events.push(ev);
        }
    }
    if settled > head {
        inner.hub.publish(events, settled);
        inner.head_tx.send_replace(settled);
        for l in leased {
            let _ = inner.ttl_tx.send(l);
        }
    }
    Ok(again)
}

/// Starts the poller, the TTL task and (if configured) the compactor.
pub(super) fn spawn_all(inner: &Arc<Inner>, ttl_rx: mpsc::UnboundedReceiver<Leased>) {
    let span = || tracing::info_span!("datastore", endpoint = %inner.db.endpoint);
    let mut tasks = vec![
        tokio::spawn(run_poller(Arc::clone(inner)).instrument(span())),
        tokio::spawn(run_ttl(Arc::clone(inner), ttl_rx).instrument(span())),
    ];
    if let Some(interval) = inner.opts.compaction.interval {
        tasks.push(tokio::spawn(
            run_compactor(Arc::clone(inner), interval).instrument(span()),
        ));
    }
    inner.tasks.lock().extend(tasks);
}

async fn run_poller(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let more = match poll_once(&inner).await {
            Ok(more) => {
                if failing {
                    tracing::info!("datastore poller recovered");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                more
            }
            Err(StoreError::Closed) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "datastore poller failed; retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = inner.nudge.notified() => {}
            _ = tokio::time::sleep(inner.sql_opts.poll_interval) => {}
        }
    }
}

/// Deletes leased versions `secs` after they were first seen, with a compare-and-swap on the
/// version (a version updated since is left alone: the update carries its own lease, if any).
async fn run_ttl(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Leased>) {
    let mut stop = inner.stop.subscribe();
    let mut due: BinaryHeap<Reverse<(Instant, Leased)>> = BinaryHeap::new();
    loop {
        let next = due.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            _ = stop.changed() => return,
            got = rx.recv() => match got {
                Some(l) => {
                    let secs = u64::try_from(l.secs).unwrap_or(0);
                    due.push(Reverse((Instant::now() + Duration::from_secs(secs), l)));
                }
                None => return,
            },
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while due.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                    let Some(Reverse((_, l))) = due.pop() else { break };
                    match inner.delete(&l.key, Some(l.rev)).await {
                        Ok(_) => tracing::debug!(key = %l.key, rev = l.rev, "ttl expired"),
                        Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                        Err(StoreError::Closed) => return,
                        Err(e) => {
                            tracing::warn!(key = %l.key, error = %e, "ttl expiry failed; retrying");
                            due.push(Reverse((now + Duration::from_secs(1), l)));
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Every `interval`, compacts to the newest revision that is both at least `retain_for` old and
/// at least `min_retain_revisions` behind the head (the SQLite backend's rule).
async fn run_compactor(inner: Arc<Inner>, interval: Duration) {
    let mut stop = inner.stop.subscribe();
    let opts = inner.opts.compaction.clone();
    let mut samples: VecDeque<(Instant, Revision)> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let head = inner.hub.head();
        samples.push_back((now, head));
        while samples.len() >= 2
            && samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= opts.retain_for)
        {
            samples.pop_front();
        }
        let Some(&(t, old_enough)) = samples.front() else {
            continue;
        };
        if now.duration_since(t) < opts.retain_for {
            continue;
        }
        let target = old_enough.min(head - opts.min_retain_revisions);
        if target <= inner.compacted.load(Ordering::Acquire) {
            continue;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = inner.compact_to(target) => if let Err(e) = r {
                tracing::warn!(error = %e, target, "background compaction failed");
            }
        }
    }
}
