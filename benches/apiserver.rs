//! Scenario benchmark of the API server over HTTPS with kube-rs (admin client certificate from
//! the kubeconfig the server writes), against the release binary (`k3s server --disable-agent`)
//! on a temporary data directory with the default SQLite datastore. Prints numbers; asserts
//! nothing. Run: `cargo bench --bench apiserver`.
//!
//! Phases:
//! 1. ConfigMap creates from `K3S_BENCH_CLIENTS` (64) concurrent clients, each its own
//!    connection: creates/s and the p50/p99/max latency of single writes under that load.
//! 2. ConfigMap GETs from the same clients: gets/s and latency.
//! 3. `K3S_BENCH_PODS` (10,000) small Pods created (they stay Pending: no nodes), then LIST
//!    latency of all of them (one request, and paginated with limit=500 as kubectl does), and
//!    the server's RSS (`VmRSS`) holding them.
//! 4. Watch fan-out: `K3S_BENCH_WATCHERS` (1,000) concurrent watches on ConfigMaps of one
//!    namespace, then `K3S_BENCH_WATCH_EVENTS` (20) creates one after another; delivery latency
//!    p50/p99 from the create's response (ack) to the event's receipt at every watcher.
//!
//! Other sizes: `K3S_BENCH_WRITES` (ConfigMap creates, 6,400), `K3S_BENCH_READS` (GETs,
//! 12,800), `K3S_BENCH_LISTS` (full LIST repetitions, 5). The client and the server share the
//! machine, so the numbers are what one box does with both.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    format!(
        "p50 {}, p99 {}, max {}",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 1.0))
    )
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "data": {"key": "value", "n": name},
    }))
    .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }))
    .unwrap()
}

/// Run `total` operations spread over `clients`, each client doing its share one after another;
/// returns the wall time and every operation's latency.
async fn spread<F, Fut>(clients: &[Client], total: usize, op: F) -> (Duration, Vec<Duration>)
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let n = clients.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        let (c, op) = (c.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (ci..total).step_by(n) {
                let t = Instant::now();
                op(c.clone(), i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (start.elapsed(), all)
}

async fn main_async() {
    let n_clients = env_usize("K3S_BENCH_CLIENTS", 64).max(1);
    let n_writes = env_usize("K3S_BENCH_WRITES", 6_400);
    let n_reads = env_usize("K3S_BENCH_READS", 12_800);
    let n_pods = env_usize("K3S_BENCH_PODS", 10_000);
    let n_lists = env_usize("K3S_BENCH_LISTS", 5).max(1);
    let n_watchers = env_usize("K3S_BENCH_WATCHERS", 1_000);
    let n_events = env_usize("K3S_BENCH_WATCH_EVENTS", 20);

    let server = common::Server::start(&[]);
    let pid = server.child.as_ref().unwrap().id();
    let bench_start = Instant::now();
    println!(
        "apiserver bench: {n_clients} clients, {n_writes} writes, {n_reads} reads, {n_pods} pods, \
         {n_watchers} watchers x {n_events} events ({} CPUs shared by client and server)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  server RSS idle: {:.1} MiB",
        common::rss_kib(pid) as f64 / 1024.0
    );

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    // One client (its own connection pool) per simulated client.
    let clients: Vec<Client> = (0..n_clients)
        .map(|_| Client::try_from(config.clone()).unwrap())
        .collect();
    let admin = clients[0].clone();
    for ns in ["bench", "pods", "watch"] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
    }

    // 1. Creates.
    let (wall, lat) = spread(&clients, n_writes, |c, i| async move {
        Api::<ConfigMap>::namespaced(c, "bench")
            .create(&PostParams::default(), &config_map(&format!("cm-{i}")))
            .await
            .unwrap();
    })
    .await;
    println!(
        "  configmap creates: {:.0}/s ({n_writes} in {:.2} s); write latency under load: {}",
        n_writes as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        summary(lat)
    );

    // 2. Gets.
    let stored = n_writes.max(1);
    let (wall, lat) = spread(&clients, n_reads, move |c, i| async move {
        Api::<ConfigMap>::namespaced(c, "bench")
            .get(&format!("cm-{}", i % stored))
            .await
            .unwrap();
    })
    .await;
    println!(
        "  configmap gets: {:.0}/s ({n_reads} in {:.2} s); read latency: {}",
        n_reads as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        summary(lat)
    );
    println!(
        "  server RSS after {n_writes} configmaps: {:.1} MiB",
        common::rss_kib(pid) as f64 / 1024.0
    );

    // 3. Pods: create, LIST, memory.
    let (wall, lat) = spread(&clients, n_pods, |c, i| async move {
        Api::<Pod>::namespaced(c, "pods")
            .create(&PostParams::default(), &pod(&format!("pod-{i:05}")))
            .await
            .unwrap();
    })
    .await;
    println!(
        "  pod creates: {:.0}/s ({n_pods} in {:.2} s); latency: {}",
        n_pods as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        summary(lat)
    );
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "pods");
    let mut full = Vec::new();
    let mut count = 0;
    for _ in 0..n_lists {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await.unwrap();
        full.push(t.elapsed());
        count = l.items.len();
    }
    let mut paged = Vec::new();
    for _ in 0..n_lists {
        let t = Instant::now();
        let mut lp = ListParams::default().limit(500);
        let mut seen = 0;
        loop {
            let l = pods.list(&lp).await.unwrap();
            seen += l.items.len();
            match l.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        assert_eq!(seen, count);
        paged.push(t.elapsed());
    }
    let mut meta = Vec::new();
    for _ in 0..n_lists {
        let t = Instant::now();
        pods.list_metadata(&ListParams::default()).await.unwrap();
        meta.push(t.elapsed());
    }
    println!(
        "  LIST {count} pods, one request: {}; limit=500 pages: {}; metadata-only: {}",
        summary(full),
        summary(paged),
        summary(meta)
    );
    println!(
        "  server RSS holding {n_pods} pods (+{n_writes} configmaps): {:.1} MiB",
        common::rss_kib(pid) as f64 / 1024.0
    );

    // 4. Watch fan-out.
    if n_watchers > 0 && n_events > 0 {
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "watch");
        let rv = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        // Watchers spread over the clients' pools (each watch holds one connection).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        let t = Instant::now();
        let mut streams = Vec::new();
        for w in 0..n_watchers {
            let api: Api<ConfigMap> = Api::namespaced(clients[w % n_clients].clone(), "watch");
            streams.push(
                api.watch(&WatchParams::default().timeout(290), &rv)
                    .await
                    .unwrap()
                    .boxed(),
            );
        }
        println!(
            "  {n_watchers} watches established in {:.2} s; server RSS {:.1} MiB",
            t.elapsed().as_secs_f64(),
            common::rss_kib(pid) as f64 / 1024.0
        );
        let mut tasks = Vec::new();
        for mut s in streams {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = 0;
                while let Ok(Some(ev)) = s.try_next().await {
                    if let WatchEvent::Added(cm) = ev {
                        let now = Instant::now();
                        let i = cm
                            .metadata
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix("w-"))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(usize::MAX);
                        let _ = tx.send((i, now));
                        got += 1;
                        if got == n_events {
                            return;
                        }
                    }
                }
            }));
        }
        drop(tx);
        let mut sent = Vec::new();
        for i in 0..n_events {
            let t0 = Instant::now();
            cms.create(&PostParams::default(), &config_map(&format!("w-{i}")))
                .await
                .unwrap();
            sent.push((t0, Instant::now()));
            // Let each event's fan-out finish before the next, so latencies do not queue.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut after_ack = Vec::new();
        let mut after_send = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while after_ack.len() < n_watchers * n_events {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, at))) if i < n_events => {
                    let (t0, ack) = sent[i];
                    after_ack.push(at.saturating_duration_since(ack));
                    after_send.push(at.saturating_duration_since(t0));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let delivered = after_ack.len();
        println!(
            "  watch fan-out: {delivered}/{} deliveries; after create ack: {}; after create sent: {}",
            n_watchers * n_events,
            summary(after_ack),
            summary(after_send)
        );
        println!(
            "  server RSS with {n_watchers} watchers: {:.1} MiB",
            common::rss_kib(pid) as f64 / 1024.0
        );
        for t in tasks {
            t.abort();
        }
    }
    println!(
        "  total bench time: {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
    drop(server);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument or `--list` is not meaningful here.
    if std::env::args().any(|a| a == "--list") {
        println!("apiserver: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(main_async());
}
