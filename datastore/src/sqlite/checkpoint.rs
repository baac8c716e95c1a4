//! The checkpointer: copies committed WAL frames into the database file on its own thread and
//! connection, so the writer never stalls on a checkpoint.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, which here is the single
//! writer: every few MB of WAL one commit would also copy the WAL into the database and fsync it,
//! a latency spike for every queued writer. A `PASSIVE` checkpoint from another connection runs
//! concurrently with the writer instead (it never takes the write lock), so when the writer's own
//! automatic checkpoint fires (it must, for the WAL to restart from its beginning while writes
//! keep coming) almost everything has already been copied.
//!
//! The writer wakes this thread after commits (coalesced through [`Shared::checkpoint_pending`]).
//! After compaction it is asked to catch up; the writer then runs a `TRUNCATE` checkpoint itself
//! (it cannot lose a race for the write lock against itself), which shrinks the WAL file and
//! applies the file truncation done by incremental vacuum.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Shared;

/// Messages to the checkpointer.
#[derive(Debug)]
pub(crate) enum CheckpointMsg {
    /// Commits happened; checkpoint soon.
    Committed,
    /// Copy every committed frame now (without the write lock); replies when done, so that the
    /// writer's following `TRUNCATE` checkpoint has only a short tail left.
    CatchUp { reply: oneshot::Sender<()> },
    /// Exit (the store is closing; the writer closes last and checkpoints then).
    Stop,
}

/// At most one passive checkpoint per this interval: commits in between are coalesced.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
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
                Ok(CheckpointMsg::CatchUp { reply }) => {
                    self.passive();
                    let _ = reply.send(());
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
}
