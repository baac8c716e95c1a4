//! The embedded SQLite backend (K3s' default datastore): `<data-dir>/server/db/state.db`.
//!
//! Layout (see the submodules): `schema` opens and validates the file; `writer` is the one
//! thread that mutates it (group commit, TTL expiry, compaction steps); `reader` is a pool of
//! reader threads serving gets, lists, counts and watch history; the backend-neutral
//! [`WatchHub`] fans committed events out to watchers; a tokio task owned by the store compacts
//! periodically. Tokio workers never block on SQLite: they only await channels.
//!
//! Lifecycle: [`SqliteBackend::open`] starts everything; `close` (or dropping the backend) stops
//! the compactor, lets the writer finish its current batch, stops the readers, ends watches with
//! `Closed`, and releases the lock file.

mod checkpoint;
mod reader;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use self::checkpoint::{CheckpointMsg, Checkpointer};
use self::reader::{ReaderPool, SqliteHistory};
use self::writer::{WriteOp, WriteOutcome, Writer, WriterMsg};
use crate::backend::{Backend, WatchStream};
use crate::error::StoreError;
use crate::options::StoreOptions;
use crate::types::{KeyValue, ListResult, Revision};
use crate::watch::WatchHub;

/// Revisions shared between the writer thread and the async side.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The latest committed and published revision.
    pub rev: AtomicI64,
    /// The compacted revision.
    pub compacted: AtomicI64,
    /// A wake-up for the checkpointer is queued (coalesces wake-ups from many commits).
    pub checkpoint_pending: AtomicBool,
}

/// Queue depth in front of the writer; callers wait (asynchronously) when it is full.
const WRITER_QUEUE: usize = 8192;
/// Upper bound on reclaim steps after one compaction (each returns up to 4 MiB).
const MAX_RECLAIM_STEPS: usize = 4096;

/// The SQLite backend. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: flume::Sender<WriterMsg>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: flume::Sender<CheckpointMsg>,
    checkpointer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<ReaderPool>,
    hub: Arc<WatchHub>,
    shared: Arc<Shared>,
    opts: StoreOptions,
    closed: AtomicBool,
    /// Set to `true` to stop the compactor task.
    stop: watch::Sender<bool>,
    compactor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held (locked) while the store is open.
    lock: Mutex<Option<std::fs::File>>,
}

impl SqliteBackend {
    /// Opens (creating if absent) the database at `path`. An existing file that is not a valid
    /// database of this store is reported and left untouched.
    pub async fn open(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        opts.validate()
            .map_err(|errors| StoreError::InvalidOptions { errors })?;
        let path = path.to_owned();
        let started = {
            let path = path.clone();
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || start(&path, opts))
                .await
                .map_err(|e| StoreError::Unavailable {
                    reason: format!("open task failed: {e}"),
                })??
        };
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            path,
            writer: started.writer,
            writer_thread: Mutex::new(Some(started.writer_thread)),
            checkpointer: started.checkpointer,
            checkpointer_thread: Mutex::new(Some(started.checkpointer_thread)),
            readers: started.readers,
            hub: started.hub,
            shared: started.shared,
            opts,
            closed: AtomicBool::new(false),
            stop,
            compactor: Mutex::new(None),
            lock: Mutex::new(Some(started.lock)),
        });
        if let Some(interval) = inner.opts.compaction.interval {
            let span = tracing::info_span!("datastore.compactor", path = %inner.path.display());
            let task =
                tokio::spawn(run_compactor(Arc::clone(&inner), interval, stop_rx).instrument(span));
            *inner.compactor.lock() = Some(task);
        }
        tracing::info!(path = %inner.path.display(), rev = inner.shared.rev.load(Ordering::Acquire), "sqlite datastore open");
        Ok(SqliteBackend { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

struct Started {
    writer: flume::Sender<WriterMsg>,
    writer_thread: JoinHandle<()>,
    checkpointer: flume::Sender<CheckpointMsg>,
    checkpointer_thread: JoinHandle<()>,
    readers: Arc<ReaderPool>,
    hub: Arc<WatchHub>,
    shared: Arc<Shared>,
    lock: std::fs::File,
}

/// Blocking part of `open`: validate, open connections, start threads.
fn start(path: &Path, opts: StoreOptions) -> Result<Started, StoreError> {
    let opened = schema::open_writer(path, &opts.sqlite)?;
    let shared = Arc::new(Shared {
        rev: AtomicI64::new(opened.revision),
        compacted: AtomicI64::new(opened.compacted),
        checkpoint_pending: AtomicBool::new(false),
    });
    let readers = ReaderPool::start(path, &opts.sqlite)?;
    let spawn_err = |what: &'static str| {
        move |source| StoreError::Io {
            op: what,
            path: path.to_owned(),
            source,
        }
    };
    let checkpointer = Checkpointer {
        conn: schema::open_checkpointer(path, &opts.sqlite)?,
        path: path.to_owned(),
        shared: Arc::clone(&shared),
    };
    let (checkpoint_tx, checkpoint_rx) = flume::unbounded();
    let checkpointer_thread = std::thread::Builder::new()
        .name("sqlite-checkpointer".to_owned())
        .spawn(move || checkpointer.run(checkpoint_rx))
        .map_err(spawn_err("spawn checkpointer thread for"))?;
    let history = Arc::new(SqliteHistory {
        readers: Arc::clone(&readers),
        shared: Arc::clone(&shared),
    });
    let hub = WatchHub::new(opened.revision, history, opts.watch.clone());
    let writer = Writer::new(
        opened.conn,
        path.to_owned(),
        (opened.revision, opened.compacted),
        Arc::clone(&hub),
        Arc::clone(&shared),
        &opts,
        checkpoint_tx.clone(),
    )?;
    let (tx, rx) = flume::bounded(WRITER_QUEUE);
    let writer_thread = std::thread::Builder::new()
        .name("sqlite-writer".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(spawn_err("spawn writer thread for"))?;
    Ok(Started {
        writer: tx,
        writer_thread,
        checkpointer: checkpoint_tx,
        checkpointer_thread,
        readers,
        hub,
        shared,
        lock: opened.lock,
    })
}

impl Inner {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        self.check_open()?;
        let (reply, rx) = oneshot::channel();
        self.writer
            .send_async(WriterMsg::Write { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriterMsg,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let (reply, rx) = oneshot::channel();
        self.writer
            .send_async(msg(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Compacts to `target` in writer-sized steps, then returns free space to the file system.
    async fn compact_to(&self, target: Revision) -> Result<(), StoreError> {
        if target <= self.shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            let reached = self
                .ask(|reply| WriterMsg::Compact { target, reply })
                .await?;
            if reached >= target {
                break;
            }
        }
        for step in 0..MAX_RECLAIM_STEPS {
            let first = step == 0;
            if self
                .ask(|reply| WriterMsg::Reclaim { first, reply })
                .await?
                == 0
            {
                break;
            }
        }
        // Copy everything into the main file (the checkpointer, concurrently with writers), then
        // truncate the WAL, which also lets the file shrink (the writer: a short tail is left).
        let (reply, rx) = oneshot::channel();
        self.checkpointer
            .send_async(CheckpointMsg::CatchUp { reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?;
        self.ask(|reply| WriterMsg::Truncate { reply }).await?;
        tracing::debug!(
            target,
            elapsed_ms = started.elapsed().as_millis(),
            "compacted"
        );
        Ok(())
    }

    /// Marks the store closed and stops the compactor; returns its task for joining.
    fn stop_background(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.closed.store(true, Ordering::Release);
        self.stop.send_replace(true);
        self.compactor.lock().take()
    }

    /// Stops readers and watches; returns the reader threads for joining.
    fn stop_readers(&self) -> Vec<JoinHandle<()>> {
        let readers = self.readers.shutdown();
        self.hub.close();
        readers
    }
}

/// The store-owned compactor: every `interval`, compacts to the newest revision that is both at
/// least `retain_for` old and at least `min_retain_revisions` behind the head.
async fn run_compactor(inner: Arc<Inner>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let opts = inner.opts.compaction.clone();
    // (time, revision) samples: when did the store reach which revision.
    let mut samples: VecDeque<(tokio::time::Instant, Revision)> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let head = inner.shared.rev.load(Ordering::Acquire);
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
        if target <= inner.shared.compacted.load(Ordering::Acquire) {
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

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        if !self.inner.closed.load(Ordering::Acquire) {
            // Without waiting: threads exit on their own (`close` is the way to wait for them).
            // If the writer's queue is full, it still exits once every sender is gone.
            let _ = self.inner.stop_background();
            let _ = self.inner.writer.try_send(WriterMsg::Shutdown);
            let _ = self.inner.checkpointer.send(CheckpointMsg::Stop);
            let _ = self.inner.stop_readers();
        }
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: String::new(),
            reason: "empty",
        });
    }
    Ok(())
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        Ok(self.inner.shared.rev.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, StoreError> {
        self.inner.check_open()?;
        let key = key.to_owned();
        self.inner
            .readers
            .run(move |txn| reader::get(txn, &key, at))
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        self.inner.check_open()?;
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.inner
            .readers
            .run(move |txn| reader::list(txn, &prefix, start_after.as_deref(), limit, at))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<(i64, Revision), StoreError> {
        self.inner.check_open()?;
        let prefix = prefix.to_owned();
        self.inner
            .readers
            .run(move |txn| reader::count(txn, &prefix).map(Ok))
            .await
    }

    async fn create(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        match self
            .inner
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
                ttl,
            })
            .await?
        {
            WriteOutcome::Written(rev) => Ok(rev),
            WriteOutcome::Deleted(_, rev) => Ok(rev),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected_mod_revision: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        let op = WriteOp::Update {
            key: key.to_owned(),
            expected: expected_mod_revision,
            value,
            ttl,
        };
        match self.inner.write(op).await? {
            WriteOutcome::Written(rev) => Ok(rev),
            WriteOutcome::Deleted(_, rev) => Ok(rev),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        check_key(key)?;
        match self
            .inner
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected: expected_mod_revision,
            })
            .await?
        {
            WriteOutcome::Deleted(kv, rev) => Ok((kv, rev)),
            // The writer answers a delete only with `Deleted`.
            WriteOutcome::Written(rev) => Err(StoreError::Unavailable {
                reason: format!("internal error: delete of {key:?} answered as a write at {rev}"),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.check_open()?;
        Ok(self.inner.hub.watch(prefix, after))
    }

    async fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        self.inner.check_open()?;
        self.inner.compact_to(keep_after).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.check_open()?;
        Ok(self.inner.shared.compacted.load(Ordering::Acquire))
    }

    async fn db_size(&self) -> Result<u64, StoreError> {
        self.inner.check_open()?;
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || {
            let main = std::fs::metadata(&path)
                .map_err(|source| StoreError::Io {
                    op: "stat database",
                    path: path.clone(),
                    source,
                })?
                .len();
            let wal = std::fs::metadata(schema::wal_path(&path)).map_or(0, |m| m.len());
            Ok(main + wal)
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            reason: format!("size task failed: {e}"),
        })?
    }

    async fn close(&self) {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) && inner.lock.lock().is_none() {
            return;
        }
        if let Some(task) = inner.stop_background() {
            let _ = task.await;
        }
        // Readers (they finish queued reads) and the checkpointer first, then the writer, so the
        // writer's connection is the last one and leaves a checkpointed file.
        let readers = inner.stop_readers();
        let _ = inner.checkpointer.send(CheckpointMsg::Stop);
        let checkpointer = inner.checkpointer_thread.lock().take();
        let joined = tokio::task::spawn_blocking(move || {
            for r in readers {
                let _ = r.join();
            }
            if let Some(c) = checkpointer {
                let _ = c.join();
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::warn!(error = %e, "joining datastore reader threads failed");
        }
        // Queued behind any writes already accepted; those complete first.
        let _ = inner.writer.send_async(WriterMsg::Shutdown).await;
        let writer = inner.writer_thread.lock().take();
        let joined = tokio::task::spawn_blocking(move || {
            if let Some(w) = writer {
                let _ = w.join();
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::warn!(error = %e, "joining datastore threads failed");
        }
        inner.lock.lock().take();
        tracing::info!(path = %inner.path.display(), "sqlite datastore closed");
    }
}
