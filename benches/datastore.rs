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
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datastore::{Backend, Event, SqliteBackend, StoreOptions};
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
    println!(
        "datastore benchmark (sqlite, synchronous=FULL) in {}",
        dir.path().display()
    );
    let only = std::env::var("DATASTORE_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if run("writes") {
        writes(&dir).await;
    }
    if run("reads") {
        reads(&dir).await;
    }
    if run("watch") {
        watch_latency(&dir, 1000, 100).await;
        watch_latency(&dir, 1000, 1000).await;
    }
    if run("memory") {
        memory(&dir).await;
    }
    if run("size") {
        file_size(&dir).await;
    }
}

fn options() -> StoreOptions {
    let mut o = StoreOptions::default();
    // Benchmarks compact explicitly.
    o.compaction.interval = None;
    o
}

async fn open(dir: &TempDir, name: &str) -> Arc<SqliteBackend> {
    let path = dir.path().join(name).join("state.db");
    Arc::new(SqliteBackend::open(&path, options()).await.unwrap())
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

async fn writes(dir: &TempDir) {
    const VALUE: usize = 1024;
    for (tasks, per_task) in [(1usize, 1000usize), (64, 300)] {
        let s = open(dir, &format!("writes-{tasks}")).await;
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
        s.close().await;
    }
}

async fn reads(dir: &TempDir) {
    const KEYS: usize = 10_000;
    let s = open(dir, "reads").await;
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
    s.close().await;
}

/// `watchers` watchers on one prefix; one writer updates a key `rate` times per second for 3 s.
/// Latency is measured from the write being acknowledged to each watcher receiving the event
/// (and, in brackets, from the write being submitted, which adds the commit's fsync).
async fn watch_latency(dir: &TempDir, watchers: usize, rate: u64) {
    let s = open(dir, &format!("watch-{rate}")).await;
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
    s.close().await;
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

async fn memory(dir: &TempDir) {
    const KEYS: usize = 100_000;
    let before = rss_kib();
    let s = open(dir, "memory").await;
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
    s.close().await;
}

async fn file_size(dir: &TempDir) {
    const KEYS: usize = 1000;
    const UPDATES: usize = 200_000;
    const VALUE: usize = 1024;
    let s = open(dir, "size").await;
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
    // A writer keeps going during compaction: how long does it wait?
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rev = s.create("/probe", value(VALUE, 0), None).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                rev = s
                    .update("/probe", rev, value(VALUE, 1), None)
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        })
    };
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
        "write latency during that compaction ({} writes): p50 {} p99 {} max {}",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0)),
    );
    s.close().await;
}
