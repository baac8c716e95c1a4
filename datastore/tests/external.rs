//! The external datastores against real servers: the unchanged conformance suite, two store
//! instances sharing one database or etcd (each other's writes through watch, compare-and-swap
//! races between them), the SQL backends' id-gap rule, and bad input.
//!
//! Servers come from `K3S_TEST_POSTGRES`, `K3S_TEST_MYSQL` and `K3S_TEST_ETCD` (tests/run.sh
//! starts them and sets these). Without a variable the tests of that backend print a skip message
//! and pass, except under `CI`, where they fail: CI must run them.
//!
//! Isolation: every SQL test gets its own database (`k3s_test_<pid>_<n>`, created by the backend
//! as kine does, dropped when the fixture is dropped); every etcd test gets its own key namespace
//! and holds a process-wide turn, because etcd's revision counter and compaction are shared by the
//! whole cluster and the suite asserts exact revisions.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use datastore::conformance::{self, Fixture};
use datastore::etcd::{EtcdBackend, EtcdOptions};
use datastore::sql::{SqlBackend, SqlOptions, TlsFiles};
use datastore::{Backend, DbUrl, Endpoint, Event, Revision, StoreError, StoreOptions};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

/// The server URL in `var`, or `None` (after saying so) when it is not set outside CI.
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{var} is not set: CI must run the external datastore tests (tests/run.sh starts the \
             servers and sets it)"
        ),
        _ => {
            eprintln!("skipping: {var} is not set (tests/run.sh starts the server and sets it)");
            None
        }
    }
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{tag}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// Store options of the tests: a small watch buffer so lagging watchers read history, and no
/// background compaction (tests compact explicitly).
fn test_options() -> StoreOptions {
    let mut opts = StoreOptions::default();
    opts.compaction.interval = None;
    opts.watch.buffer_events = 256;
    opts.watch.history_page = 100;
    opts
}

fn sql_options() -> SqlOptions {
    SqlOptions {
        poll_interval: Duration::from_millis(50),
        max_connections: 8,
        connect_timeout: Duration::from_secs(10),
        ..SqlOptions::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SqlKind {
    Postgres,
    Mysql,
}

/// A fresh database on the test server.
struct SqlFixture {
    kind: SqlKind,
    /// The test server as configured (its database is only used to drop ours).
    admin: DbUrl,
    /// Our database.
    url: DbUrl,
    opts: StoreOptions,
}

fn parse_sql(s: &str) -> DbUrl {
    match datastore::parse_endpoint(s, std::path::Path::new("/nonexistent")) {
        Ok(Endpoint::Postgres(u) | Endpoint::Mysql(u)) => u,
        other => panic!("not a SQL endpoint: {other:?}"),
    }
}

impl SqlFixture {
    fn new(kind: SqlKind) -> Option<Self> {
        let var = match kind {
            SqlKind::Postgres => "K3S_TEST_POSTGRES",
            SqlKind::Mysql => "K3S_TEST_MYSQL",
        };
        let admin = parse_sql(&server(var)?);
        let mut url = admin.clone();
        url.database = unique("k3s_test");
        Some(SqlFixture {
            kind,
            admin,
            url,
            opts: test_options(),
        })
    }

    async fn store(&self) -> Result<SqlBackend, StoreError> {
        let tls = TlsFiles::default();
        match self.kind {
            SqlKind::Postgres => {
                SqlBackend::open_postgres(&self.url, &self.opts, &sql_options(), &tls).await
            }
            SqlKind::Mysql => {
                SqlBackend::open_mysql(&self.url, &self.opts, &sql_options(), &tls).await
            }
        }
    }

    /// Runs `sql` on our database through a separate connection (the test's "other client").
    async fn raw(&self) -> RawDb {
        let u = &self.url;
        match self.kind {
            SqlKind::Postgres => {
                let mut o = sqlx::postgres::PgConnectOptions::new_without_pgpass()
                    .host(&u.host)
                    .port(u.port.unwrap_or(5432))
                    .database(&u.database);
                if let Some(user) = &u.user {
                    o = o.username(user);
                }
                if let Some(pw) = &u.password {
                    o = o.password(pw.expose());
                }
                RawDb::Postgres(sqlx::PgPool::connect_with(o).await.expect("raw connection"))
            }
            SqlKind::Mysql => {
                let mut o = sqlx::mysql::MySqlConnectOptions::new()
                    .host(&u.host)
                    .port(u.port.unwrap_or(3306))
                    .database(&u.database);
                if let Some(user) = &u.user {
                    o = o.username(user);
                }
                if let Some(pw) = &u.password {
                    o = o.password(pw.expose());
                }
                RawDb::Mysql(
                    sqlx::MySqlPool::connect_with(o)
                        .await
                        .expect("raw connection"),
                )
            }
        }
    }
}

enum RawDb {
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

impl Drop for SqlFixture {
    /// Drops the test database (best effort), from a thread of its own: `Drop` cannot await.
    fn drop(&mut self) {
        let (kind, admin, name) = (self.kind, self.admin.clone(), self.url.database.clone());
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::Executor;
                let drop_sql = match kind {
                    SqlKind::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    SqlKind::Mysql => format!("DROP DATABASE IF EXISTS `{name}`"),
                };
                let result = match kind {
                    SqlKind::Postgres => {
                        let mut o = sqlx::postgres::PgConnectOptions::new_without_pgpass()
                            .host(&admin.host)
                            .port(admin.port.unwrap_or(5432))
                            .database(&admin.database);
                        if let Some(user) = &admin.user {
                            o = o.username(user);
                        }
                        if let Some(pw) = &admin.password {
                            o = o.password(pw.expose());
                        }
                        match sqlx::PgPool::connect_with(o).await {
                            Ok(p) => p.execute(sqlx::AssertSqlSafe(drop_sql)).await.map(|_| ()),
                            Err(e) => Err(e),
                        }
                    }
                    SqlKind::Mysql => {
                        let mut o = sqlx::mysql::MySqlConnectOptions::new()
                            .host(&admin.host)
                            .port(admin.port.unwrap_or(3306));
                        if let Some(user) = &admin.user {
                            o = o.username(user);
                        }
                        if let Some(pw) = &admin.password {
                            o = o.password(pw.expose());
                        }
                        match sqlx::MySqlPool::connect_with(o).await {
                            Ok(p) => p.execute(sqlx::AssertSqlSafe(drop_sql)).await.map(|_| ()),
                            Err(e) => Err(e),
                        }
                    }
                };
                if let Err(e) = result {
                    eprintln!("could not drop test database {name}: {e}");
                }
            });
        });
        let _ = done.join();
    }
}

#[async_trait::async_trait]
impl Fixture for SqlFixture {
    async fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(Arc::new(self.store().await?))
    }
}

/// One etcd test at a time (see the module docs).
struct EtcdTurn;

static ETCD_BUSY: Mutex<bool> = Mutex::new(false);
static ETCD_FREE: Condvar = Condvar::new();

impl EtcdTurn {
    fn take() -> Self {
        let mut busy = ETCD_BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = ETCD_FREE.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        EtcdTurn
    }
}

impl Drop for EtcdTurn {
    fn drop(&mut self) {
        *ETCD_BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        ETCD_FREE.notify_one();
    }
}

/// A fresh namespace on the test etcd.
struct EtcdFixture {
    endpoints: Vec<String>,
    namespace: String,
    opts: StoreOptions,
    _turn: EtcdTurn,
}

impl EtcdFixture {
    fn new() -> Option<Self> {
        let url = server("K3S_TEST_ETCD")?;
        let endpoints = match datastore::parse_endpoint(&url, std::path::Path::new("/nonexistent"))
        {
            Ok(Endpoint::Etcd { endpoints }) => endpoints,
            other => panic!("K3S_TEST_ETCD is not an etcd endpoint: {other:?}"),
        };
        Some(EtcdFixture {
            endpoints,
            namespace: format!("/k3s-test/{}", unique("ns")),
            opts: test_options(),
            _turn: EtcdTurn::take(),
        })
    }

    async fn store(&self) -> Result<EtcdBackend, StoreError> {
        let etcd = EtcdOptions {
            namespace: self.namespace.clone(),
            connect_timeout: Duration::from_secs(10),
            ..EtcdOptions::default()
        };
        EtcdBackend::connect(&self.endpoints, &self.opts, &etcd, &TlsFiles::default()).await
    }
}

#[async_trait::async_trait]
impl Fixture for EtcdFixture {
    async fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(Arc::new(self.store().await?))
    }
}

async fn next_event(w: &mut datastore::WatchStream) -> Event {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Two instances on one database: each instance's watch delivers both instances' writes, in the
/// same revision order, exactly the acknowledged ones; a read on one instance at a revision the
/// other returned sees that write.
async fn two_instances_see_each_other(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let start = a
        .current_revision()
        .await
        .unwrap()
        .max(b.current_revision().await.unwrap());
    let mut wa = a.watch("/two/", start).await.unwrap();
    let mut wb = b.watch("/two/", start).await.unwrap();
    let mut tasks = Vec::new();
    for (name, s) in [("a", a.clone()), ("b", b.clone())] {
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..40 {
                let key = format!("/two/{name}/{i}");
                let rev = s
                    .create(&key, Bytes::from(key.clone()), None)
                    .await
                    .unwrap();
                acks.push((rev, key));
            }
            acks
        }));
    }
    let mut expected = BTreeMap::new();
    for t in tasks {
        for (rev, key) in t.await.unwrap() {
            assert!(expected.insert(rev, key).is_none(), "duplicate revision");
        }
    }
    for w in [&mut wa, &mut wb] {
        let mut got = BTreeMap::new();
        let mut last = start;
        while got.len() < expected.len() {
            let ev = next_event(w).await;
            assert!(ev.revision() > last, "revision order");
            last = ev.revision();
            got.insert(ev.revision(), ev.key().to_owned());
        }
        assert_eq!(got, expected, "both instances' writes, each once, in order");
    }
    // Read-your-peer's-write at its revision.
    let rev = a
        .create("/two/x", Bytes::from_static(b"x"), None)
        .await
        .unwrap();
    let kv = b
        .get("/two/x", Some(rev))
        .await
        .unwrap()
        .expect("visible on b");
    assert_eq!(kv.mod_revision, rev);
    a.close().await;
    b.close().await;
}

/// Compare-and-swap races between two instances: exactly one winner per round, and the loser is
/// told the winner's version.
async fn cas_race_between_instances(a: Arc<dyn Backend>, b: Arc<dyn Backend>) {
    let mut cur = a
        .create("/cas", Bytes::from_static(b"0"), None)
        .await
        .unwrap();
    for round in 0..30 {
        let (ra, rb) = tokio::join!(
            a.update("/cas", cur, Bytes::from(format!("a{round}")), None),
            b.update("/cas", cur, Bytes::from(format!("b{round}")), None)
        );
        let winner = match (ra, rb) {
            (
                Ok(rev),
                Err(StoreError::Conflict {
                    current: Some(now), ..
                }),
            )
            | (
                Err(StoreError::Conflict {
                    current: Some(now), ..
                }),
                Ok(rev),
            ) => {
                assert_eq!(now.mod_revision, rev, "the loser sees the winner");
                rev
            }
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert!(winner > cur);
        cur = winner;
    }
    // Creates and deletes race too.
    let (ca, cb) = tokio::join!(
        a.create("/cas2", Bytes::new(), None),
        b.create("/cas2", Bytes::new(), None)
    );
    assert_eq!(
        [ca.is_ok(), cb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one create wins"
    );
    let (da, db) = tokio::join!(a.delete("/cas", Some(cur)), b.delete("/cas", Some(cur)));
    assert_eq!(
        [da.is_ok(), db.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one delete wins"
    );
    a.close().await;
    b.close().await;
}

mod postgres {
    use super::*;

    fn fixture() -> Option<SqlFixture> {
        SqlFixture::new(SqlKind::Postgres)
    }

    datastore::conformance_tests!(match fixture() {
        Some(f) => f,
        None => return,
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher() {
        let Some(f) = fixture() else { return };
        let s = f.open().await.unwrap();
        conformance::lagging_watcher(s.clone()).await;
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances() {
        let Some(f) = fixture() else { return };
        // One through `datastore::open`, one directly: two pools on one database.
        let ep = Endpoint::Postgres(f.url.clone());
        let a = datastore::open(&ep, &f.opts).await.unwrap();
        let b = f.open().await.unwrap();
        two_instances_see_each_other(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cas_race_two_instances() {
        let Some(f) = fixture() else { return };
        cas_race_between_instances(f.open().await.unwrap(), f.open().await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn id_gaps() {
        let Some(f) = fixture() else { return };
        super::id_gaps(&f).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input() {
        let Some(f) = fixture() else { return };
        super::sql_bad_input(&f).await;
    }
}

mod mysql {
    use super::*;

    fn fixture() -> Option<SqlFixture> {
        SqlFixture::new(SqlKind::Mysql)
    }

    datastore::conformance_tests!(match fixture() {
        Some(f) => f,
        None => return,
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher() {
        let Some(f) = fixture() else { return };
        let s = f.open().await.unwrap();
        conformance::lagging_watcher(s.clone()).await;
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances() {
        let Some(f) = fixture() else { return };
        let ep = Endpoint::Mysql(f.url.clone());
        let a = datastore::open(&ep, &f.opts).await.unwrap();
        let b = f.open().await.unwrap();
        two_instances_see_each_other(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cas_race_two_instances() {
        let Some(f) = fixture() else { return };
        cas_race_between_instances(f.open().await.unwrap(), f.open().await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn id_gaps() {
        let Some(f) = fixture() else { return };
        super::id_gaps(&f).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input() {
        let Some(f) = fixture() else { return };
        super::sql_bad_input(&f).await;
    }
}

mod etcd {
    use super::*;

    fn fixture() -> Option<EtcdFixture> {
        EtcdFixture::new()
    }

    datastore::conformance_tests!(match fixture() {
        Some(f) => f,
        None => return,
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher() {
        let Some(f) = fixture() else { return };
        let s = f.open().await.unwrap();
        conformance::lagging_watcher(s.clone()).await;
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances() {
        let Some(f) = fixture() else { return };
        two_instances_see_each_other(f.open().await.unwrap(), f.open().await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cas_race_two_instances() {
        let Some(f) = fixture() else { return };
        cas_race_between_instances(f.open().await.unwrap(), f.open().await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_without_namespace() {
        let Some(f) = fixture() else { return };
        // `datastore::open` stores keys as they are; use a key of our own and clean it up.
        let s = datastore::open(
            &Endpoint::Etcd {
                endpoints: f.endpoints.clone(),
            },
            &f.opts,
        )
        .await
        .unwrap();
        let key = format!("{}/plain", f.namespace);
        let rev = s
            .create(&key, Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        assert_eq!(
            s.get(&key, None).await.unwrap().map(|kv| kv.mod_revision),
            Some(rev)
        );
        assert!(s.compacted_revision().await.unwrap() <= rev);
        assert!(s.db_size().await.unwrap() > 0);
        s.delete(&key, Some(rev)).await.unwrap();
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input() {
        let Some(f) = fixture() else { return };
        // Nothing listens on port 1.
        let etcd = EtcdOptions {
            connect_timeout: Duration::from_millis(500),
            ..EtcdOptions::default()
        };
        let err = EtcdBackend::connect(
            &["http://127.0.0.1:1".to_owned()],
            &f.opts,
            &etcd,
            &TlsFiles::default(),
        )
        .await
        .expect_err("unreachable etcd must fail");
        assert!(err.is_retryable(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:1"), "names the endpoint: {msg}");
        // A missing CA file for https is an I/O error naming the file.
        let tls = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = EtcdBackend::connect(&["https://127.0.0.1:1".to_owned()], &f.opts, &etcd, &tls)
            .await
            .expect_err("missing CA must fail");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        // Malformed endpoints are rejected by the parser.
        assert!(
            datastore::parse_endpoint("https://h1:2379,ftp://h2", std::path::Path::new("/"))
                .is_err()
        );
    }
}

/// The SQL gap rule: an id drawn by a transaction that is still running holds the poller (and so
/// later writes' acknowledgements) until it commits, and then both are delivered in order; an id
/// whose transaction rolled back is skipped.
async fn id_gaps(f: &SqlFixture) {
    let s = f.open().await.unwrap();
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/g/", start).await.unwrap();
    let raw = f.raw().await;
    let insert = match &raw {
        RawDb::Postgres(_) => {
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) \
             VALUES ($1, 1, 0, 0, 0, 0, $2)"
        }
        RawDb::Mysql(_) => {
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value) \
             VALUES (?, 1, 0, 0, 0, 0, ?)"
        }
    };
    // 1. A slow transaction: it draws an id, then a store write draws the next one.
    macro_rules! slow_then_fast {
        ($pool:expr, $slow:expr, $commit:expr) => {{
            let mut tx = $pool.begin().await.unwrap();
            sqlx::query(insert)
                .bind($slow)
                .bind(&b"slow"[..])
                .execute(&mut *tx)
                .await
                .unwrap();
            let s2 = s.clone();
            let fast = tokio::spawn(async move {
                s2.create("/g/fast", Bytes::from_static(b"fast"), None)
                    .await
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                !fast.is_finished(),
                "the write after a running transaction's id waits for it"
            );
            if $commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            fast.await.unwrap().unwrap()
        }};
    }
    let fast_rev = match &raw {
        RawDb::Postgres(p) => slow_then_fast!(p, "/g/slow", true),
        RawDb::Mysql(p) => slow_then_fast!(p, "/g/slow", true),
    };
    let first = next_event(&mut w).await;
    let second = next_event(&mut w).await;
    assert_eq!(first.key(), "/g/slow", "the earlier id is delivered first");
    assert_eq!((second.key(), second.revision()), ("/g/fast", fast_rev));
    assert!(first.revision() < second.revision());
    // 2. Rolled back: its id is skipped, nothing is delivered for it.
    s.delete("/g/fast", None).await.unwrap();
    assert_eq!(next_event(&mut w).await.key(), "/g/fast");
    let fast_rev = match &raw {
        RawDb::Postgres(p) => slow_then_fast!(p, "/g/rolled-back", false),
        RawDb::Mysql(p) => slow_then_fast!(p, "/g/rolled-back", false),
    };
    let ev = next_event(&mut w).await;
    assert_eq!((ev.key(), ev.revision()), ("/g/fast", fast_rev));
    assert_eq!(
        s.get("/g/slow", None).await.unwrap().map(|kv| kv.key),
        Some("/g/slow".into())
    );
    assert_eq!(s.get("/g/rolled-back", None).await.unwrap(), None);
    // Reads and lists skip the filler rows.
    let all = s.list("", None, 0, None).await.unwrap();
    assert!(all.items.iter().all(|kv| !kv.key.is_empty()));
    assert_eq!(s.count("").await.unwrap().0, all.items.len() as i64);
    // A new instance replays the recent history with the same gaps resolved.
    let s2 = f.open().await.unwrap();
    assert_eq!(
        s2.current_revision().await.unwrap(),
        s.current_revision().await.unwrap()
    );
    let mut w2 = s2.watch("/g/", start).await.unwrap();
    let replay: Vec<Revision> = [
        next_event(&mut w2).await.revision(),
        next_event(&mut w2).await.revision(),
        next_event(&mut w2).await.revision(),
        next_event(&mut w2).await.revision(),
    ]
    .to_vec();
    assert!(replay.windows(2).all(|p| p[0] < p[1]), "{replay:?}");
    assert_eq!(replay[3], fast_rev);
    s2.close().await;
    s.close().await;
    match raw {
        RawDb::Postgres(p) => p.close().await,
        RawDb::Mysql(p) => p.close().await,
    }
}

/// Wrong password, unreachable port, bad settings and a foreign `kine` table: clear errors that
/// name the endpoint and never the password.
async fn sql_bad_input(f: &SqlFixture) {
    let quick = SqlOptions {
        connect_timeout: Duration::from_millis(500),
        ..sql_options()
    };
    let open = |url: DbUrl, opts: SqlOptions| async move {
        let tls = TlsFiles::default();
        match f.kind {
            SqlKind::Postgres => SqlBackend::open_postgres(&url, &f.opts, &opts, &tls).await,
            SqlKind::Mysql => SqlBackend::open_mysql(&url, &f.opts, &opts, &tls).await,
        }
    };
    let secret = "hunter2-not-the-password";
    // Wrong password: not retryable, names user and host, hides the password.
    let mut url = f.url.clone();
    url.password = parse_sql(&format!("postgres://u:{secret}@h/db")).password;
    let err = open(url.clone(), quick.clone())
        .await
        .expect_err("wrong password must fail");
    let msg = err.to_string();
    assert!(!err.is_retryable(), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
    assert!(msg.contains("***") && msg.contains(&url.host), "{msg}");
    // Unreachable port: retried until the connect timeout, then Unavailable naming the endpoint.
    let mut url = f.url.clone();
    url.port = Some(1);
    url.password = parse_sql(&format!("postgres://u:{secret}@h/db")).password;
    let started = std::time::Instant::now();
    let err = open(url, quick.clone())
        .await
        .expect_err("unreachable must fail");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{msg}");
    assert!(msg.contains(":1/") && !msg.contains(secret), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by connect_timeout"
    );
    // A bad TLS setting is refused before connecting.
    let mut url = f.url.clone();
    url.params = vec![(
        if f.kind == SqlKind::Postgres {
            "sslmode"
        } else {
            "tls"
        }
        .to_owned(),
        "sometimes".to_owned(),
    )];
    let err = open(url, quick.clone())
        .await
        .expect_err("bad sslmode must fail");
    assert!(err.to_string().contains("sometimes"), "{err}");
    // A malformed endpoint never reaches the driver, and its error hides the password.
    let bad = format!("postgres://k3s:{secret}@127.0.0.1:notaport/db");
    let msg = datastore::parse_endpoint(&bad, std::path::Path::new("/"))
        .expect_err("bad URL must fail")
        .to_string();
    assert!(!msg.contains(secret) && msg.contains("***"), "{msg}");
    // A database holding a `kine` table this store did not create (a Go kine database: no
    // kine_meta) is refused and left alone.
    f.open().await.unwrap().close().await;
    let raw = f.raw().await;
    let foreign = "DROP TABLE kine_meta";
    match &raw {
        RawDb::Postgres(p) => {
            sqlx::query(foreign).execute(p).await.unwrap();
        }
        RawDb::Mysql(p) => {
            sqlx::query(foreign).execute(p).await.unwrap();
        }
    }
    let err = open(f.url.clone(), quick)
        .await
        .expect_err("foreign schema must fail");
    assert!(matches!(err, StoreError::Incompatible { .. }), "{err}");
    match raw {
        RawDb::Postgres(p) => p.close().await,
        RawDb::Mysql(p) => p.close().await,
    }
}
