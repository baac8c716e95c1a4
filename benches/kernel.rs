//! Kernel benchmarks: message send throughput to one actor, call round-trip latency, and memory
//! per idle actor (printed, from the RSS delta of spawning 10,000 actors).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kernel::{Actor, BoxError, ChildSpec, Ctx, Kernel, Restart, Strategy, SupervisorSpec};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

enum Msg {
    Inc,
    Get(oneshot::Sender<u64>),
}

struct Counter(u64);

impl Actor for Counter {
    type Msg = Msg;
    const MAILBOX: usize = 1024;

    async fn handle(&mut self, msg: Msg, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        match msg {
            Msg::Inc => self.0 += 1,
            Msg::Get(reply) => {
                let _ = reply.send(self.0);
            }
        }
        Ok(())
    }
}

struct Idle;

impl Actor for Idle {
    type Msg = ();

    async fn handle(&mut self, _msg: (), _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the measured loop as a task on the runtime, like a component would, not on the bench thread.
fn on_worker(rt: &Runtime, f: impl Future<Output = Duration> + Send + 'static) -> Duration {
    rt.block_on(rt.spawn(f)).unwrap()
}

const BATCH: u64 = 10_000;
const TIMEOUT: Duration = Duration::from_secs(10);

fn messaging(c: &mut Criterion) {
    let rt = runtime();
    let k = Kernel::new();
    let spec = SupervisorSpec::new("bench", Strategy::OneForOne).child(ChildSpec::actor(
        "counter",
        "counter",
        Restart::Permanent,
        || Counter(0),
    ));
    rt.block_on(k.start(spec)).unwrap();
    let addr = k.lookup::<Msg>("bench/counter").unwrap();

    let mut group = c.benchmark_group("actor");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("send_10k_then_call", |b| {
        b.iter_custom(|iters| {
            let addr = addr.clone();
            on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..BATCH {
                        addr.send(Msg::Inc).await.unwrap();
                    }
                    addr.call(Msg::Get, TIMEOUT).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("call_round_trip", |b| {
        b.iter_custom(|iters| {
            let addr = addr.clone();
            on_worker(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    addr.call(Msg::Get, TIMEOUT).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    rt.block_on(k.shutdown(TIMEOUT));
}

/// Resident set size from /proc/self/statm (second field, in pages; 4 KiB pages assumed).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}

fn idle_actor_memory(_c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = runtime();
    let before = rss_bytes();
    let k = Kernel::new();
    let spec = (0..N).fold(
        SupervisorSpec::new("idle", Strategy::OneForOne),
        |spec, i| {
            spec.child(ChildSpec::actor(
                &format!("a{i}"),
                "idle",
                Restart::Permanent,
                || Idle,
            ))
        },
    );
    let start = Instant::now();
    rt.block_on(k.start(spec)).unwrap();
    let took = start.elapsed();
    let after = rss_bytes();
    let per_actor = after.saturating_sub(before) / N;
    println!(
        "memory per idle actor: {per_actor} bytes (RSS +{} KiB for {N} actors, started in {took:?})",
        after.saturating_sub(before) / 1024
    );
    rt.block_on(k.shutdown(TIMEOUT));
}

criterion_group!(benches, idle_actor_memory, messaging);
criterion_main!(benches);
