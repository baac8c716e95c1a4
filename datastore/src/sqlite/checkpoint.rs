//! The checkpointer: copies committed WAL frames into the database file on its own thread and
//! connection, so the writer never stalls on a checkpoint.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, which here is the single
//! writer: every few MB of WAL one commit would also copy the WAL into the database and fsync it,
//! a latency spike for every queued writer. A `PASSIVE` checkpoint from another connection runs
//! concurrently with the writer instead (it never takes the write lock). The writer keeps a high
//! automatic-checkpoint threshold only as a safety net should this thread fall behind.
//!
//! The writer wakes this thread after commits (coalesced through [`Shared::checkpoint_pending`]);
//! compaction asks it for a `TRUNCATE` checkpoint, which also shrinks the WAL file and applies
//! the file truncation done by incremental vacuum.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Shared;
use super::schema::db_err;
use crate::error::StoreError;

/// Messages to the checkpointer.
#[derive(Debug)]
pub(crate) enum CheckpointMsg {
    /// Commits happened; checkpoint soon.
    Committed,
    /// Checkpoint everything and truncate the WAL; replies whether it completed (it does not
    /// when readers still use old frames).
    Truncate {
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Exit (the store is closing; the writer closes last and checkpoints then).
    Stop,
}

/// At most one passive checkpoint per this interval: commits in between are coalesced.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Longest wait of a TRUNCATE checkpoint for readers (and for the writer's transaction).
const TRUNCATE_WAIT: Duration = Duration::from_millis(100);
/// Passive checkpoint even without a wake-up this often (cheap when there is nothing to copy).
const IDLE_INTERVAL: Duration = Duration::from_secs(5);

/// The checkpointer's state, driven by [`Checkpointer::run`].
pub(crate) struct Checkpointer {
    pub conn: Connection,
    pub path: PathBuf,
    pub shared: Arc<Shared>,
}

impl Checkpointer {
    /// The thread body: returns on [`CheckpointMsg::Stop`] or when every sender is gone.
    pub(crate) fn run(self, rx: flume::Receiver<CheckpointMsg>) {
        let span = tracing::info_span!("datastore.checkpointer", path = %self.path.display());
        let _entered = span.enter();
        let mut last = Instant::now();
        loop {
            match rx.recv_timeout(IDLE_INTERVAL) {
                Ok(CheckpointMsg::Committed) => {
                    let since = last.elapsed();
                    if since < MIN_INTERVAL {
                        std::thread::sleep(MIN_INTERVAL - since);
                    }
                    // Clear before checkpointing: a commit after this point wakes us again.
                    self.shared
                        .checkpoint_pending
                        .store(false, Ordering::Release);
                    self.passive();
                    last = Instant::now();
                }
                Ok(CheckpointMsg::Truncate { reply }) => {
                    let r = self.truncate().map_err(|e| db_err(&self.path, e));
                    let _ = reply.send(r);
                    last = Instant::now();
                }
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.passive();
                    last = Instant::now();
                }
                Ok(CheckpointMsg::Stop) | Err(flume::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn passive(&self) {
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        if let Err(e) = r {
            tracing::warn!(error = %e, "passive WAL checkpoint failed");
        }
    }

    fn truncate(&self) -> rusqlite::Result<bool> {
        // While it waits for readers of old frames, a TRUNCATE checkpoint holds the write lock;
        // bound that wait so the writer is never stalled for long (it is retried next time).
        self.conn.busy_timeout(TRUNCATE_WAIT)?;
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn.busy_timeout(Duration::from_secs(5))?;
        let busy = busy?;
        if busy != 0 {
            tracing::debug!("WAL truncation postponed: readers still use old frames");
        }
        Ok(busy == 0)
    }
}
