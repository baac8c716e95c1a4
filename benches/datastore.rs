//! Datastore benchmarks (embedded SQLite backend, default options: `synchronous=FULL`, so every
//! acknowledged write is durable). A plain `harness = false` program that prints one line per
//! figure:
//!
//! - creates and updates per second from 1 and from 64 concurrent writers;
//! - get latency (p50/p99) over 10,000 keys;
//! - list latency for a prefix holding 10,000 keys (at the latest and at an older revision);
//! - watch delivery latency (p50/p99) to 1,000 watchers;
//! - resident memory added by a store holding 100,000 keys;
//! - the database file size after 200,000 updates to 1,000 keys, before and after compaction.
//!
//! Targets: >= 5,000 writes/s with 64 writers, watch p99 < 10 ms, list of 10,000 keys < 20 ms.
//! `DATASTORE_BENCH_DIR` chooses where the database files go (default: a temporary directory;
//! use a real disk, not tmpfs, or fsync costs nothing). `DATASTORE_BENCH_ONLY=writes,reads,watch,
//! memory,size` runs a subset.
//!
//! The same workloads (all but `memory`, which measures this process) also run against each
//! external datastore whose test variable is set, one section per backend, for a side-by-side
//! comparison with etcd: `K3S_TEST_POSTGRES`, `K3S_TEST_MYSQL` (each workload in a fresh database
//! `k3s_bench_<workload>_<pid>`, dropped afterwards) and `K3S_TEST_ETCD` (a fresh key namespace;
//! the `size` workload compacts the whole etcd). `DATASTORE_BENCH_BACKENDS=sqlite,postgres,mysql,
//! etcd` selects backends.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datastore::etcd::{EtcdBackend, EtcdOptions};
use datastore::sql::{SqlBackend, SqlOptions, TlsFiles};
use datastore::{Backend, DbUrl, Endpoint, Event, SqliteBackend, StoreOptions};
use futures::StreamExt;
use tempfile::TempDir;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let base = std::env::var_os("DATASTORE_BENCH_DIR");
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let only = std::env::var("DATASTORE_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    for target in targets(&dir) {
        println!("== {}", target.describe());
        if run("writes") {
            writes(&target).await;
        }
        if run("reads") {
            reads(&target).await;
        }
        if run("watch") {
            watch_latency(&target, 1000, 100).await;
            watch_latency(&target, 1000, 1000).await;
        }
        if run("memory") && matches!(target, Target::Sqlite(_)) {
            memory(&target).await;
        }
        if run("size") {
            file_size(&target).await;
        }
    }
}

/// A backend to benchmark.
enum Target<'a> {
    Sqlite(&'a TempDir),
    Postgres(DbUrl),
    Mysql(DbUrl),
    Etcd(Vec<String>),
}

/// SQLite, plus every external datastore whose test variable is set (filtered by
/// `DATASTORE_BENCH_BACKENDS`).
fn targets(dir: &TempDir) -> Vec<Target<'_>> {
    let wanted = std::env::var("DATASTORE_BENCH_BACKENDS").unwrap_or_default();
    let want = |name: &str| wanted.is_empty() || wanted.split(',').any(|w| w == name);
    let parse = |var: &str| {
        let url = std::env::var(var).ok().filter(|u| !u.is_empty())?;
        Some(datastore::parse_endpoint(&url, dir.path()).unwrap())
    };
    let mut out = Vec::new();
    if want("sqlite") {
        out.push(Target::Sqlite(dir));
    }
    if want("postgres")
        && let Some(Endpoint::Postgres(u)) = parse("K3S_TEST_POSTGRES")
    {
        out.push(Target::Postgres(u));
    }
    if want("mysql")
        && let Some(Endpoint::Mysql(u)) = parse("K3S_TEST_MYSQL")
    {
        out.push(Target::Mysql(u));
    }
    if want("etcd")
        && let Some(Endpoint::Etcd { endpoints }) = parse("K3S_TEST_ETCD")
    {
        out.push(Target::Etcd(endpoints));
    }
    out
}

impl Target<'_> {
    fn describe(&self) -> String {
        match self {
            Target::Sqlite(dir) => format!("sqlite (synchronous=FULL) in {}", dir.path().display()),
            Target::Postgres(u) => format!("postgres://{u}"),
            Target::Mysql(u) => format!("mysql://{u}"),
            Target::Etcd(e) => format!("etcd {}", e.join(",")),
        }
    }

    /// A fresh, empty store for workload `name`.
    async fn open(&self, name: &str) -> Arc<dyn Backend> {
        let db = |u: &DbUrl| {
            let mut u = u.clone();
            u.database = format!(
                "k3s_bench_{}_{}",
                name.replace('-', "_"),
                std::process::id()
            );
            u
        };
        let tls = TlsFiles::default();
        match self {
            Target::Sqlite(dir) => {
                let path = dir.path().join(name).join("state.db");
                Arc::new(SqliteBackend::open(&path, options()).await.unwrap())
            }
            Target::Postgres(u) => Arc::new(
                SqlBackend::open_postgres(&db(u), &options(), &SqlOptions::default(), &tls)
                    .await
                    .unwrap(),
            ),
            Target::Mysql(u) => Arc::new(
                SqlBackend::open_mysql(&db(u), &options(), &SqlOptions::default(), &tls)
                    .await
                    .unwrap(),
            ),
            Target::Etcd(endpoints) => {
                let etcd = EtcdOptions {
                    namespace: format!("/k3s-bench/{name}-{}", std::process::id()),
                    ..EtcdOptions::default()
                };
                Arc::new(
                    EtcdBackend::connect(endpoints, &options(), &etcd, &tls)
                        .await
                        .unwrap(),
                )
            }
        }
    }

    /// Closes `s` and removes what workload `name` left behind (the SQL database; etcd keys are
    /// left to the next compaction of the benchmark's etcd).
    async fn finish(&self, s: Arc<dyn Backend>, name: &str) {
        s.close().await;
        let name = format!(
            "k3s_bench_{}_{}",
            name.replace('-', "_"),
            std::process::id()
        );
        use sqlx::Executor;
        match self {
            Target::Postgres(u) => {
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
                let p = sqlx::PgPool::connect_with(o).await.unwrap();
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                p.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
                p.close().await;
            }
            Target::Mysql(u) => {
                let mut o = sqlx::mysql::MySqlConnectOptions::new()
                    .host(&u.host)
                    .port(u.port.unwrap_or(3306));
                if let Some(user) = &u.user {
                    o = o.username(user);
                }
                if let Some(pw) = &u.password {
                    o = o.password(pw.expose());
                }
                let p = sqlx::MySqlPool::connect_with(o).await.unwrap();
                let sql = format!("DROP DATABASE IF EXISTS `{name}`");
                p.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
                p.close().await;
            }
            Target::Sqlite(_) | Target::Etcd(_) => {}
        }
    }
}

fn options() -> StoreOptions {
    let mut o = StoreOptions::default();
    // Benchmarks compact explicitly.
    o.compaction.interval = None;
    o
}

fn value(len: usize, seed: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| b'a' + ((i + seed) % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Runs `per_task` operations in each of `tasks` tasks; returns operations per second.
async fn throughput<F, Fut>(tasks: usize, per_task: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                op(t, i).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

async fn writes(target: &Target<'_>) {
    const VALUE: usize = 1024;
    for (tasks, per_task) in [(1usize, 1000usize), (64, 300)] {
        let name = format!("writes-{tasks}");
        let s = target.open(&name).await;
        let st = s.clone();
        let creates = throughput(tasks, per_task, move |t, i| {
            let s = st.clone();
            async move {
                s.create(&format!("/bench/w/{t:03}/{i:06}"), value(VALUE, i), None)
                    .await
                    .unwrap();
            }
        })
        .await;
        let st = s.clone();
        let updates = throughput(tasks, per_task, move |t, i| {
            let s = st.clone();
            async move {
                // Each task updates its own keys: no conflicts, every update commits.
                let key = format!("/bench/w/{t:03}/{:06}", i % per_task.min(50));
                let cur = s.get(&key, None).await.unwrap().unwrap();
                s.update(&key, cur.mod_revision, value(VALUE, i + 1), None)
                    .await
                    .unwrap();
            }
        })
        .await;
        println!(
            "writes, {tasks:>2} writer(s), 1 KiB values: {creates:>8.0} creates/s, {updates:>8.0} updates/s (update = get + CAS update)"
        );
        target.finish(s, &name).await;
    }
}

async fn reads(target: &Target<'_>) {
    const KEYS: usize = 10_000;
    let s = target.open("reads").await;
    let st = s.clone();
    throughput(64, KEYS / 64 + 1, move |t, i| {
        let s = st.clone();
        async move {
            let n = t * (KEYS / 64 + 1) + i;
            if n < KEYS {
                s.create(
                    &format!("/registry/pods/default/pod-{n:05}"),
                    value(1024, n),
                    None,
                )
                .await
                .unwrap();
            }
        }
    })
    .await;
    let old_rev = s.current_revision().await.unwrap();
    // Some later history so the older-revision list has to skip newer versions.
    for n in 0..1000 {
        let key = format!("/registry/pods/default/pod-{:05}", n * 7 % KEYS);
        let cur = s.get(&key, None).await.unwrap().unwrap();
        s.update(&key, cur.mod_revision, value(1024, n + 3), None)
            .await
            .unwrap();
    }

    let mut lat = Vec::new();
    for n in 0..20_000usize {
        let key = format!("/registry/pods/default/pod-{:05}", n * 7919 % KEYS);
        let t = Instant::now();
        let kv = s.get(&key, None).await.unwrap();
        lat.push(t.elapsed());
        assert!(kv.is_some());
    }
    lat.sort();
    println!(
        "get (10,000 keys, 1 KiB values): p50 {} p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );

    for (label, at) in [("latest revision", None), ("older revision", Some(old_rev))] {
        let mut lat = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let page = s.list("/registry/pods/", None, 0, at).await.unwrap();
            lat.push(t.elapsed());
            assert_eq!(page.items.len(), KEYS);
        }
        lat.sort();
        println!(
            "list 10,000 keys (1 KiB values, {label}): p50 {} p99 {}",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99))
        );
    }
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = s
            .list(
                "/registry/pods/",
                Some("/registry/pods/default/pod-05000"),
                500,
                None,
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(page.items.len(), 500);
    }
    lat.sort();
    println!(
        "list page of 500 from 10,000 keys: p50 {} p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    let t = Instant::now();
    let (n, _) = s.count("/registry/pods/").await.unwrap();
    println!("count 10,000 keys: {} (n={n})", ms(t.elapsed()));
    target.finish(s, "reads").await;
}

/// `watchers` watchers on one prefix; one writer updates a key `rate` times per second for 3 s.
/// Latency is measured from the write being acknowledged to each watcher receiving the event
/// (and, in brackets, from the write being submitted, which adds the commit's fsync).
async fn watch_latency(target: &Target<'_>, watchers: usize, rate: u64) {
    let name = format!("watch-{rate}");
    let s = target.open(&name).await;
    let writes = (rate * 3) as usize;
    let mut rev = s.create("/watch/key", value(512, 0), None).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(i64, Instant)>>();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for _ in 0..watchers {
        let mut w = s.watch("/watch/", rev).await.unwrap();
        let tx = tx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            ready.wait().await;
            let mut got = Vec::with_capacity(writes);
            while got.len() < writes {
                match w.next().await {
                    Some(Ok(Event::Put { kv, .. })) => got.push((kv.mod_revision, Instant::now())),
                    other => panic!("watch: {other:?}"),
                }
            }
            let _ = tx.send(got);
        });
    }
    drop(tx);
    ready.wait().await;
    let mut sent = std::collections::HashMap::new();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..writes {
        tick.tick().await;
        let submitted = Instant::now();
        rev = s
            .update("/watch/key", rev, value(512, i + 1), None)
            .await
            .unwrap();
        sent.insert(rev, (submitted, Instant::now()));
    }
    let mut from_ack = Vec::with_capacity(watchers * writes);
    let mut from_submit = Vec::with_capacity(watchers * writes);
    while let Some(got) = rx.recv().await {
        for (r, at) in got {
            let (submitted, acked) = sent[&r];
            from_ack.push(at.saturating_duration_since(acked));
            from_submit.push(at.saturating_duration_since(submitted));
        }
    }
    from_ack.sort();
    from_submit.sort();
    println!(
        "watch delivery, {watchers} watchers, {rate} writes/s ({} deliveries): p50 {} p99 {} max {} after ack [after submit: p50 {} p99 {}]",
        from_ack.len(),
        ms(pct(&from_ack, 0.5)),
        ms(pct(&from_ack, 0.99)),
        ms(pct(&from_ack, 1.0)),
        ms(pct(&from_submit, 0.5)),
        ms(pct(&from_submit, 0.99)),
    );
    target.finish(s, &name).await;
}

/// (anonymous, file-backed) resident KiB. File-backed pages are the memory-mapped database:
/// shared with the OS page cache and reclaimable.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

async fn memory(target: &Target<'_>) {
    const KEYS: usize = 100_000;
    let before = rss_kib();
    let s = target.open("memory").await;
    let st = s.clone();
    let start = Instant::now();
    throughput(64, KEYS / 64 + 1, move |t, i| {
        let s = st.clone();
        async move {
            let n = t * (KEYS / 64 + 1) + i;
            if n < KEYS {
                s.create(
                    &format!("/registry/configmaps/ns{}/cm-{n:06}", n % 50),
                    value(512, n),
                    None,
                )
                .await
                .unwrap();
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    let loaded = rss_kib();
    // Touch everything once, as an API server's initial list would; then drop the result.
    let listed = s
        .list("/registry/", None, 0, None)
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(listed, KEYS);
    let after = rss_kib();
    let size = s.db_size().await.unwrap();
    println!(
        "memory: 100,000 keys (512 B values) loaded in {:.1} s; file {:.1} MiB; anonymous RSS +{} MiB after loading, +{} MiB after a full list (page caches warm); mapped file pages +{} MiB",
        elapsed.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        loaded.0.saturating_sub(before.0) / 1024,
        after.0.saturating_sub(before.0) / 1024,
        after.1.saturating_sub(before.1) / 1024,
    );
    target.finish(s, "memory").await;
}

async fn file_size(target: &Target<'_>) {
    const KEYS: usize = 1000;
    const UPDATES: usize = 200_000;
    const VALUE: usize = 1024;
    let s = target.open("size").await;
    for k in 0..KEYS {
        s.create(&format!("/size/{k:04}"), value(VALUE, k), None)
            .await
            .unwrap();
    }
    let st = s.clone();
    let start = Instant::now();
    let rate = throughput(64, UPDATES / 64, move |t, i| {
        let s = st.clone();
        async move {
            // Task t owns keys t, t+64, ...: no conflicts.
            let owned = (KEYS - t).div_ceil(64);
            let key = format!("/size/{:04}", t + 64 * (i % owned));
            let cur = s.get(&key, None).await.unwrap().unwrap();
            s.update(&key, cur.mod_revision, value(VALUE, i), None)
                .await
                .unwrap();
        }
    })
    .await;
    let load = start.elapsed();
    let before = s.db_size().await.unwrap();
    let head = s.current_revision().await.unwrap();
    // A writer keeps going during compaction: how long does it wait? Baseline first (same
    // writer, same store, no compaction), since the machine's own fsync latency varies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let baseline = probe(&s, "/probe-baseline", &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut base = baseline.await.unwrap();
    base.sort();
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let probe = probe(&s, "/probe", &stop);
    let t = Instant::now();
    s.compact(head).await.unwrap();
    let compaction = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = probe.await.unwrap();
    lat.sort();
    let after = s.db_size().await.unwrap();
    let live = (KEYS * VALUE) as f64 / (1 << 20) as f64;
    println!(
        "file size: {} updates to {KEYS} keys (1 KiB values) in {:.1} s ({rate:.0} updates/s): {:.1} MiB before compaction, {:.2} MiB after (live values {live:.2} MiB); compaction took {:.1} s",
        UPDATES / 64 * 64,
        load.as_secs_f64(),
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        compaction.as_secs_f64(),
    );
    println!(
        "write latency of one writer during that compaction ({} writes): p50 {} p99 {} max {} [same writer without compaction ({} writes): p50 {} p99 {} max {}]",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0)),
        base.len(),
        ms(pct(&base, 0.5)),
        ms(pct(&base, 0.99)),
        ms(pct(&base, 1.0)),
    );
    target.finish(s, "size").await;
}

/// One writer updating `key` in a loop until `stop`; returns each update's latency.
fn probe(
    s: &Arc<dyn Backend>,
    key: &'static str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    let (s, stop) = (s.clone(), stop.clone());
    tokio::spawn(async move {
        let mut lat = Vec::new();
        let mut rev = s.create(key, value(1024, 0), None).await.unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            rev = s.update(key, rev, value(1024, 1), None).await.unwrap();
            lat.push(t.elapsed());
        }
        lat
    })
}
