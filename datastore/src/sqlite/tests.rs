//! SQLite backend tests: the conformance suite, plus what only a file-based store has (bad files,
//! locking, crash safety, bounded file size, query plans, automatic compaction).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;
use tempfile::TempDir;

use super::SqliteBackend;
use crate::conformance::{self, Fixture};
use crate::{Backend, StoreError, StoreOptions, parse_endpoint};

/// A fresh database in a temporary directory, with a small watch buffer so lagging watchers fall
/// back to history, and no background compaction (tests compact explicitly).
struct SqliteFixture {
    dir: TempDir,
    opts: StoreOptions,
}

impl SqliteFixture {
    fn new() -> Self {
        SqliteFixture {
            dir: tempfile::tempdir().expect("tempdir"),
            opts: test_options(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("server/db/state.db")
    }
}

fn test_options() -> StoreOptions {
    let mut opts = StoreOptions::default();
    opts.compaction.interval = None;
    opts.watch.buffer_events = 256;
    opts.watch.history_page = 100;
    opts.sqlite.readers = 2;
    opts
}

#[async_trait::async_trait]
impl Fixture for SqliteFixture {
    async fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(Arc::new(
            SqliteBackend::open(&self.path(), self.opts.clone()).await?,
        ))
    }
}

crate::conformance_tests!(SqliteFixture::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_beyond_buffer_ends_compacted() {
    let f = SqliteFixture::new();
    let store = f.open().await.expect("open");
    assert!(
        conformance::lagging_watcher(store.clone()).await,
        "with a 256-event buffer the watcher must lag"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_within_history_catches_up() {
    // Buffer smaller than the backlog, but nothing compacted: the watcher reads history instead
    // of failing.
    let f = SqliteFixture::new();
    let store = f.open().await.expect("open");
    let mut w = store.watch("/h/", 0).await.expect("watch");
    for i in 0..1000 {
        store
            .create(&format!("/h/{i:04}"), Bytes::from_static(b"x"), None)
            .await
            .expect("create");
    }
    for i in 0..1000 {
        let ev = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut w))
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        assert_eq!(ev.key(), format!("/h/{i:04}"));
    }
    store.close().await;
}

fn sqlite_open(
    path: &Path,
) -> impl std::future::Future<Output = Result<SqliteBackend, StoreError>> {
    SqliteBackend::open(path, test_options())
}

#[tokio::test]
async fn garbage_file_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).expect("write");
    match sqlite_open(&path).await {
        Err(StoreError::Corrupt { path: p, reason }) => {
            assert_eq!(p, path);
            let msg = StoreError::Corrupt { path: p, reason }.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        std::fs::read(&path).expect("read") == garbage,
        "a corrupt file must not be modified"
    );
    // Too short for a header.
    std::fs::write(&path, b"SQLite").expect("write");
    assert!(matches!(
        sqlite_open(&path).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(std::fs::read(&path).expect("read"), b"SQLite");
}

#[tokio::test]
async fn damaged_database_pages_are_corrupt_and_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let s = sqlite_open(&path).await.expect("open");
        for i in 0..2000 {
            s.create(&format!("/k/{i:05}"), Bytes::from(vec![b'v'; 300]), None)
                .await
                .expect("create");
        }
        s.close().await;
    }
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 64 * 4096, "database is {} bytes", bytes.len());
    // Overwrite pages 20..40 (b-tree pages of the log) with garbage, keeping the header intact.
    for b in &mut bytes[20 * 4096..40 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    match sqlite_open(&path).await {
        Err(StoreError::Corrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let after = std::fs::read(&path).expect("read");
    let changed: Vec<usize> = (0..after.len().max(bytes.len()))
        .filter(|&i| after.get(i) != bytes.get(i))
        .collect();
    assert!(
        changed.is_empty(),
        "a corrupt file must not be modified: {} bytes changed, first at {:?}, len {} -> {}",
        changed.len(),
        changed.first(),
        bytes.len(),
        after.len()
    );
}

#[tokio::test]
async fn unreadable_paths_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The path is a directory.
    let as_dir = dir.path().join("state.db");
    std::fs::create_dir(&as_dir).expect("mkdir");
    match sqlite_open(&as_dir).await {
        Err(e @ StoreError::Io { .. }) => {
            assert!(e.to_string().contains(&as_dir.display().to_string()), "{e}")
        }
        other => panic!("expected Io, got {other:?}"),
    }
    // A parent is a regular file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let under_file = file.join("db/state.db");
    match sqlite_open(&under_file).await {
        Err(e @ StoreError::Io { .. }) => {
            assert!(e.to_string().contains(&file.display().to_string()), "{e}")
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[tokio::test]
async fn foreign_schema_is_incompatible_and_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let c = Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB);",
        )
        .expect("create");
    }
    let before = std::fs::read(&path).expect("read");
    match sqlite_open(&path).await {
        Err(StoreError::Incompatible { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains("kine"), "{reason}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    assert!(
        std::fs::read(&path).expect("read") == before,
        "an incompatible file must not be modified"
    );
}

#[tokio::test]
async fn second_open_is_locked_until_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let first = sqlite_open(&path).await.expect("open");
    match sqlite_open(&path).await {
        Err(StoreError::Locked { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    first.close().await;
    let again = sqlite_open(&path).await.expect("reopen after close");
    again.close().await;
    // Dropping without close releases the lock too (once the threads exit).
    drop(sqlite_open(&path).await.expect("open"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sqlite_open(&path).await {
            Ok(s) => {
                s.close().await;
                break;
            }
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen after drop: {e}"),
        }
    }
}

#[tokio::test]
async fn endpoints_open_sqlite_and_validate_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = parse_endpoint("", dir.path()).expect("parse");
    let store = crate::open(&ep, &test_options())
        .await
        .expect("open default endpoint");
    store
        .create("/x", Bytes::from_static(b"1"), None)
        .await
        .expect("create");
    store.close().await;
    assert!(dir.path().join("server/db/state.db").is_file());
    // External databases have their own tests (tests/external.rs) against real servers.
    let mut bad = test_options();
    bad.sqlite.readers = 0;
    let ep = parse_endpoint("", dir.path()).expect("parse");
    assert!(matches!(
        crate::open(&ep, &bad).await,
        Err(StoreError::InvalidOptions { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_bounds_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = test_options();
    opts.compaction.interval = Some(Duration::from_millis(50));
    opts.compaction.retain_for = Duration::ZERO;
    opts.compaction.min_retain_revisions = 10;
    let s = SqliteBackend::open(&dir.path().join("state.db"), opts)
        .await
        .expect("open");
    let mut rev = s
        .create("/a", Bytes::from_static(b"0"), None)
        .await
        .expect("create");
    for i in 0..200 {
        rev = s
            .update("/a", rev, Bytes::from(format!("{i}")), None)
            .await
            .expect("update");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.compacted_revision().await.expect("compacted") < rev - 10 {
        assert!(
            Instant::now() < deadline,
            "background compaction did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        s.get("/a", Some(rev - 20)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        s.get("/a", Some(rev - 10))
            .await
            .expect("get")
            .map(|kv| kv.mod_revision),
        Some(rev - 10)
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_size_stays_bounded_after_compaction() {
    const KEYS: usize = 200;
    const UPDATES: usize = 20_000;
    const VALUE: usize = 512;
    let f = SqliteFixture::new();
    let s = f.open().await.expect("open");
    for k in 0..KEYS {
        s.create(&format!("/b/{k:04}"), Bytes::from(vec![b'0'; VALUE]), None)
            .await
            .expect("create");
    }
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..UPDATES / 16 {
                let key = format!("/b/{:04}", (i * 16 + t) % KEYS);
                loop {
                    let cur = s.get(&key, None).await.expect("get").expect("present");
                    let value = Bytes::from(vec![b'a' + (i % 26) as u8; VALUE]);
                    match s.update(&key, cur.mod_revision, value, None).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("update: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let before = s.db_size().await.expect("size");
    let head = s.current_revision().await.expect("rev");
    s.compact(head).await.expect("compact");
    let after = s.db_size().await.expect("size");
    let live = (KEYS * VALUE) as u64;
    eprintln!(
        "file size: {before} bytes before compaction, {after} after; live values {live} bytes"
    );
    assert!(
        after < before / 4,
        "compaction must shrink the file ({before} -> {after})"
    );
    assert!(
        after < live + (1 << 20),
        "after compaction the file must be within 1 MiB of the live data ({after})"
    );
    // Still fully readable.
    assert_eq!(s.count("/b/").await.expect("count").0, KEYS as i64);
    s.close().await;
}

#[tokio::test]
async fn read_queries_never_scan_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let s = sqlite_open(&path).await.expect("open");
    s.create("/a", Bytes::from_static(b"1"), None)
        .await
        .expect("create");
    let c = Connection::open(&path).expect("open");
    // The store never runs ANALYZE, so these are the plans production uses.
    use super::reader::sql;
    for q in [
        sql::CURRENT_ROW,
        sql::GET_AT,
        sql::FETCH_REV,
        sql::LIST_CURRENT_FROM,
        sql::LIST_CURRENT_AFTER,
        sql::LIST_AT_FROM,
        sql::LIST_AT_AFTER,
        sql::COUNT,
        sql::HISTORY,
        sql::EXPIRED,
        sql::NEXT_EXPIRY,
        sql::COMPACT_RANGE,
    ] {
        let mut stmt = c
            .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
            .expect("explain");
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        let plan = plan.join(" | ");
        assert!(
            !plan.contains("SCAN log") && !plan.contains("SCAN l "),
            "{q}\n  plan: {plan}"
        );
        assert!(
            !plan.contains("SCAN c") && !plan.contains("SCAN current"),
            "{q}\n  plan: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{q} sorts: {plan}");
    }
    drop(c);
    s.close().await;
}

/// Environment variable that turns [`crash_child`] into the crash-test writer.
const CRASH_CHILD_DB: &str = "DATASTORE_CRASH_CHILD_DB";

/// Not a test on its own: when re-executed by [`acknowledged_writes_survive_kill_9`] it writes
/// in a loop from 16 tasks and prints `ACK <key> <rev>` after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(path) = std::env::var(CRASH_CHILD_DB) else {
        return;
    };
    let s = Arc::new(
        SqliteBackend::open(Path::new(&path), test_options())
            .await
            .expect("child open"),
    );
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{t:02}/{i:06}");
                let value = Bytes::from(format!("{key} {}", "x".repeat(i % 2000)));
                let rev = s.create(&key, value, None).await.expect("child write");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ACK {key} {rev}");
                let _ = out.flush();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "sqlite::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked: Vec<(String, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 3000 && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').expect("ack format");
            acked.push((key.to_owned(), rev.parse().expect("rev")));
        }
    }
    // SIGKILL mid-load: the child is still writing.
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(
        acked.len() >= 3000,
        "child acknowledged only {} writes",
        acked.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = sqlite_open(&path).await.expect("reopen after kill -9");
        let max = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);
        assert!(s.current_revision().await.expect("rev") >= max);
        for (key, rev) in &acked {
            let kv = s
                .get(key, None)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged {key} lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
            assert!(kv.value.starts_with(key.as_bytes()), "{key} value damaged");
        }
        s.close().await;
    });
    let c = Connection::open(&path).expect("open");
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}
