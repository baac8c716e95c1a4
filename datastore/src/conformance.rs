//! The backend conformance suite: written once against `Arc<dyn Backend>`, run unchanged for
//! every backend (SQLite now; PostgreSQL, MySQL and etcd later).
//!
//! A backend's tests provide a [`Fixture`] (a fresh, empty store that can be closed and reopened)
//! and expand [`conformance_tests!`](crate::conformance_tests), which generates one `#[tokio::test]`
//! per check. Each check panics with a message on failure. Timing assumptions are generous
//! (deadline polling, never fixed sleeps for correctness) so slow CI machines pass.
//!
//! What is checked: CRUD and compare-and-swap semantics, exactly one winner per CAS round under
//! contention, list ordering/limit/continue and consistency at a revision while writes happen,
//! count, watch ordering under concurrent writers (no gap, no duplicate, strictly increasing),
//! watch resume from any revision with correct previous values, compaction (reads and watches
//! below it fail with `Compacted`, above it keep working), a lagging watcher never skipping
//! events, TTL expiry with a delete event, persistence across close/reopen, and behaviour after
//! close.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Backend, WatchStream};
use crate::error::StoreError;
use crate::types::{Event, KeyValue, Revision};

/// Provides the store under test.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// Opens the fixture's store: empty the first time; after `close`, the same data again.
    async fn open(&self) -> Result<Arc<dyn Backend>, StoreError>;
}

/// Generates one `#[tokio::test]` per conformance check for the fixture expression `$fixture`
/// (evaluated once per test, so each test gets a fresh store).
#[macro_export]
macro_rules! conformance_tests {
    (@store $fixture:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture;
                let store = $crate::conformance::Fixture::open(&fixture).await.expect("open store");
                $crate::conformance::$name(store.clone()).await;
                store.close().await;
            }
        )*
    };
    ($fixture:expr) => {
        $crate::conformance_tests!(@store $fixture;
            crud, list_and_count, list_consistent_during_writes, cas_race,
            watch_ordering_concurrent, watch_resume, compaction, ttl_expiry, closed_store);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn restart_persistence() {
            let fixture = $fixture;
            $crate::conformance::restart_persistence(&fixture).await;
        }
    };
}

const WAIT: Duration = Duration::from_secs(20);

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

async fn next_event(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// Asserts no event arrives within a short time.
async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), w.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

async fn get(s: &Arc<dyn Backend>, key: &str, at: Option<Revision>) -> Option<KeyValue> {
    s.get(key, at).await.expect("get")
}

/// Create, get, update, delete and their compare-and-swap failures.
pub async fn crud(s: Arc<dyn Backend>) {
    let r0 = s.current_revision().await.expect("current_revision");
    let r1 = s.create("/a", b("v1"), None).await.expect("create");
    assert!(r1 > r0, "create must advance the revision");
    let kv = get(&s, "/a", None).await.expect("created key present");
    assert_eq!(
        kv,
        KeyValue {
            key: "/a".into(),
            value: b("v1"),
            create_revision: r1,
            mod_revision: r1,
            lease_ttl: None
        }
    );
    assert!(
        matches!(s.create("/a", b("x"), None).await, Err(StoreError::AlreadyExists { key }) if key == "/a")
    );

    let r2 = s.update("/a", r1, b("v2"), None).await.expect("update");
    assert!(r2 > r1);
    let kv2 = get(&s, "/a", None).await.expect("updated key present");
    assert_eq!(
        (kv2.value.clone(), kv2.create_revision, kv2.mod_revision),
        (b("v2"), r1, r2)
    );
    match s.update("/a", r1, b("stale"), None).await {
        Err(StoreError::Conflict {
            key,
            current: Some(cur),
        }) => {
            assert_eq!(key, "/a");
            assert_eq!(*cur, kv2);
        }
        other => panic!("stale update: {other:?}"),
    }
    assert!(matches!(
        s.update("/missing", 1, b("x"), None).await,
        Err(StoreError::Conflict { current: None, .. })
    ));

    // Reads at a revision.
    assert_eq!(
        get(&s, "/a", Some(r1)).await.map(|kv| kv.value),
        Some(b("v1"))
    );
    assert_eq!(get(&s, "/a", Some(r0)).await, None);
    let now = s.current_revision().await.expect("current_revision");
    assert_eq!(now, r2);
    assert!(matches!(
        s.get("/a", Some(now + 10)).await,
        Err(StoreError::FutureRevision { requested, current }) if requested == now + 10 && current == now
    ));

    // Delete.
    assert!(matches!(
        s.delete("/a", Some(r1)).await,
        Err(StoreError::Conflict {
            current: Some(_),
            ..
        })
    ));
    let (deleted, r3) = s.delete("/a", Some(r2)).await.expect("delete");
    assert_eq!(deleted, kv2);
    assert!(r3 > r2);
    assert!(matches!(s.delete("/a", None).await, Err(StoreError::NotFound { key }) if key == "/a"));
    assert!(matches!(
        s.update("/a", r2, b("x"), None).await,
        Err(StoreError::Conflict { current: None, .. })
    ));
    assert_eq!(get(&s, "/a", None).await, None);
    assert_eq!(
        get(&s, "/a", Some(r2)).await.map(|kv| kv.value),
        Some(b("v2"))
    );

    // Re-create starts a new lifecycle; unconditional delete.
    let r4 = s.create("/a", b("v3"), None).await.expect("re-create");
    assert_eq!(
        get(&s, "/a", None).await.map(|kv| kv.create_revision),
        Some(r4)
    );
    let (_, r5) = s.delete("/a", None).await.expect("unconditional delete");
    assert_eq!(s.current_revision().await.expect("current_revision"), r5);

    // Bad input and odd values.
    assert!(matches!(
        s.create("", b("x"), None).await,
        Err(StoreError::InvalidKey { .. })
    ));
    let r6 = s
        .create("/empty", Bytes::new(), None)
        .await
        .expect("empty value");
    assert_eq!(
        get(&s, "/empty", None)
            .await
            .map(|kv| (kv.value, kv.mod_revision)),
        Some((Bytes::new(), r6))
    );
    let big = Bytes::from(vec![7u8; 1 << 20]);
    s.create("/big", big.clone(), None)
        .await
        .expect("1 MiB value");
    assert_eq!(get(&s, "/big", None).await.map(|kv| kv.value), Some(big));
    assert!(s.db_size().await.expect("db_size") > 0);
}

/// Ordering, prefixes, limit/continue, count.
pub async fn list_and_count(s: Arc<dyn Backend>) {
    let keys = [
        "/reg/pods/ns1/a",
        "/reg/pods/ns1/b",
        "/reg/pods/ns2/a",
        "/reg/pods/ns2/é",
        "/reg/podsx/ns1/a",
        "/reg/pod",
        "/reg/services/ns1/a",
    ];
    for k in keys {
        s.create(k, b(format!("value of {k}")), None)
            .await
            .expect("create");
    }
    let rev = s.current_revision().await.expect("current_revision");
    let page = s.list("/reg/pods/", None, 0, None).await.expect("list");
    let got: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        got,
        [
            "/reg/pods/ns1/a",
            "/reg/pods/ns1/b",
            "/reg/pods/ns2/a",
            "/reg/pods/ns2/é"
        ]
    );
    assert_eq!(
        (page.revision, page.more, page.continue_after),
        (rev, false, None)
    );
    assert_eq!(page.items[0].value, b("value of /reg/pods/ns1/a"));

    let all = s.list("", None, 0, None).await.expect("list all");
    let mut sorted: Vec<_> = keys.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        all.items
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        sorted
    );

    // Paging.
    let p1 = s.list("/reg/pods/", None, 3, None).await.expect("page 1");
    assert_eq!(p1.items.len(), 3);
    assert!(p1.more);
    assert_eq!(p1.continue_after.as_deref(), Some("/reg/pods/ns2/a"));
    let p2 = s
        .list(
            "/reg/pods/",
            p1.continue_after.as_deref(),
            3,
            Some(p1.revision),
        )
        .await
        .expect("page 2");
    assert_eq!(
        p2.items
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/reg/pods/ns2/é"]
    );
    assert!(!p2.more);
    assert_eq!(p2.continue_after, None);
    let exact = s
        .list("/reg/pods/", None, 4, None)
        .await
        .expect("exact page");
    assert_eq!((exact.items.len(), exact.more), (4, false));
    // start_after before the prefix starts at the prefix.
    let before = s
        .list("/reg/pods/", Some("/a"), 1, None)
        .await
        .expect("start before prefix");
    assert_eq!(before.items[0].key, "/reg/pods/ns1/a");
    let none = s
        .list("/nothing/", None, 0, None)
        .await
        .expect("empty list");
    assert!(none.items.is_empty() && !none.more);

    assert_eq!(s.count("/reg/pods/").await.expect("count"), (4, rev));
    assert_eq!(s.count("/reg/").await.expect("count").0, 7);
    assert_eq!(s.count("/zzz").await.expect("count").0, 0);
    s.delete("/reg/pods/ns1/a", None).await.expect("delete");
    assert_eq!(s.count("/reg/pods/").await.expect("count").0, 3);
    // The old revision still lists the deleted key.
    let old = s
        .list("/reg/pods/", None, 0, Some(rev))
        .await
        .expect("list at old revision");
    assert_eq!(old.items.len(), 4);
    assert_eq!(old.revision, rev);
}

/// Paging at a fixed revision returns exactly the snapshot, while other tasks write.
pub async fn list_consistent_during_writes(s: Arc<dyn Backend>) {
    for i in 0..300 {
        s.create(&format!("/c/{i:04}"), b(format!("v0-{i}")), None)
            .await
            .expect("create");
    }
    let snapshot = s.list("/c/", None, 0, None).await.expect("snapshot");
    assert_eq!(snapshot.items.len(), 300);
    let mut writers = Vec::new();
    for t in 0..4u32 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..60u32 {
                let n = (i * 4 + t) % 300;
                let key = format!("/c/{n:04}");
                match i % 3 {
                    0 => {
                        let _ = s.delete(&key, None).await;
                    }
                    1 => {
                        let _ = s.create(&format!("/c/{n:04}-new{t}"), b("new"), None).await;
                    }
                    _ => {
                        if let Ok(Some(kv)) = s.get(&key, None).await {
                            let _ = s.update(&key, kv.mod_revision, b("changed"), None).await;
                        }
                    }
                }
            }
        }));
    }
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .list("/c/", after.as_deref(), 37, Some(snapshot.revision))
            .await
            .expect("page");
        assert_eq!(page.revision, snapshot.revision);
        paged.extend(page.items);
        if !page.more {
            break;
        }
        after = page.continue_after;
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.expect("writer task");
    }
    assert_eq!(
        paged, snapshot.items,
        "pages at a fixed revision must equal the snapshot"
    );
    // And again after all writes finished.
    let again = s
        .list("/c/", None, 0, Some(snapshot.revision))
        .await
        .expect("relist");
    assert_eq!(again.items, snapshot.items);
    let latest = s.list("/c/", None, 0, None).await.expect("latest");
    assert_eq!(
        s.count("/c/").await.expect("count").0 as usize,
        latest.items.len()
    );
}

/// Many tasks race on the same compare-and-swap: exactly one wins each round.
pub async fn cas_race(s: Arc<dyn Backend>) {
    const TASKS: usize = 16;
    const ROUNDS: usize = 20;
    // Create race.
    let mut creators = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        creators.push(tokio::spawn(async move {
            s.create("/race", b(format!("creator {t}")), None).await
        }));
    }
    let mut created = 0;
    for c in creators {
        match c.await.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("create race: {e}"),
        }
    }
    assert_eq!(created, 1, "exactly one create wins");

    // Update rounds: every task reads the same revision, then all update from it.
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let wins: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (s, barrier, wins) = (s.clone(), barrier.clone(), wins.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let cur = s
                    .get("/race", None)
                    .await
                    .expect("get")
                    .expect("key present");
                barrier.wait().await;
                match s
                    .update(
                        "/race",
                        cur.mod_revision,
                        b(format!("round {round} task {t}")),
                        None,
                    )
                    .await
                {
                    Ok(rev) => {
                        assert!(rev > cur.mod_revision);
                        wins[round].fetch_add(1, Ordering::SeqCst);
                    }
                    Err(StoreError::Conflict {
                        current: Some(now), ..
                    }) => {
                        assert!(
                            now.mod_revision > cur.mod_revision,
                            "conflict must report the winner"
                        );
                    }
                    Err(e) => panic!("update race: {e}"),
                }
                barrier.wait().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for (round, w) in wins.iter().enumerate() {
        assert_eq!(
            w.load(Ordering::SeqCst),
            1,
            "round {round} must have exactly one winner"
        );
    }

    // Delete race from the same revision.
    let cur = s.get("/race", None).await.expect("get").expect("present");
    let mut deleters = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        deleters.push(tokio::spawn(async move {
            s.delete("/race", Some(cur.mod_revision)).await
        }));
    }
    let mut deleted = 0;
    for d in deleters {
        match d.await.expect("task") {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => panic!("delete race: {e}"),
        }
    }
    assert_eq!(deleted, 1, "exactly one delete wins");
}

/// What a writer did, for checking watches against.
#[derive(Clone, Debug, PartialEq)]
enum Ack {
    Put {
        key: String,
        value: Bytes,
        prev: Option<Bytes>,
    },
    Delete {
        key: String,
        prev: Bytes,
    },
}

/// Watch events under concurrent writers: strictly increasing, no gaps, no duplicates, correct.
pub async fn watch_ordering_concurrent(s: Arc<dyn Backend>) {
    const WRITERS: usize = 8;
    const OPS: usize = 60;
    let start = s.current_revision().await.expect("current_revision");
    let mut w = s.watch("/w/", start).await.expect("watch");
    let mut other = s.watch("/x/", start).await.expect("watch other prefix");
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks: Vec<(Revision, Ack)> = Vec::new();
            let key = format!("/w/{t}");
            let mut cur: Option<(Revision, Bytes)> = None;
            for i in 0..OPS {
                let value = b(format!("{t}-{i}"));
                // Noise under another prefix, which the watch must not see.
                s.create(&format!("/w-not/{t}/{i}"), b("noise"), None)
                    .await
                    .expect("noise");
                match cur.take() {
                    None => {
                        let rev = s.create(&key, value.clone(), None).await.expect("create");
                        acks.push((
                            rev,
                            Ack::Put {
                                key: key.clone(),
                                value: value.clone(),
                                prev: None,
                            },
                        ));
                        cur = Some((rev, value));
                    }
                    Some((mod_rev, old)) if i % 5 == 4 => {
                        let (_, rev) = s.delete(&key, Some(mod_rev)).await.expect("delete");
                        acks.push((
                            rev,
                            Ack::Delete {
                                key: key.clone(),
                                prev: old,
                            },
                        ));
                    }
                    Some((mod_rev, old)) => {
                        let rev = s
                            .update(&key, mod_rev, value.clone(), None)
                            .await
                            .expect("update");
                        acks.push((
                            rev,
                            Ack::Put {
                                key: key.clone(),
                                value: value.clone(),
                                prev: Some(old),
                            },
                        ));
                        cur = Some((rev, value));
                    }
                }
            }
            acks
        }));
    }
    let mut expected: BTreeMap<Revision, Ack> = BTreeMap::new();
    for t in tasks {
        for (rev, ack) in t.await.expect("writer task") {
            assert!(
                expected.insert(rev, ack).is_none(),
                "two writes acknowledged with revision {rev}"
            );
        }
    }
    let mut last = start;
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let ev = next_event(&mut w).await;
        let rev = ev.revision();
        assert!(
            rev > last,
            "revisions must strictly increase: {rev} after {last}"
        );
        last = rev;
        let got = match ev {
            Event::Put { kv, prev } => {
                assert_eq!(kv.mod_revision, rev);
                Ack::Put {
                    key: kv.key,
                    value: kv.value,
                    prev: prev.map(|p| p.value),
                }
            }
            Event::Delete { prev, .. } => Ack::Delete {
                key: prev.key,
                prev: prev.value,
            },
        };
        assert_eq!(Some(&got), expected.get(&rev), "event at revision {rev}");
        seen.push(rev);
    }
    assert_eq!(
        seen,
        expected.keys().copied().collect::<Vec<_>>(),
        "every acknowledged write, once"
    );
    assert_quiet(&mut w).await;
    assert_quiet(&mut other).await;
}

/// Watching from any past revision replays exactly the later changes, then continues live.
pub async fn watch_resume(s: Arc<dyn Backend>) {
    let base = s.current_revision().await.expect("current_revision");
    let mut log: Vec<(Revision, String, Option<Bytes>)> = Vec::new(); // (rev, key, value or None = delete)
    let mut mods: HashMap<String, Revision> = HashMap::new();
    for i in 0..40u32 {
        let key = format!("/r/{}", i % 7);
        let value = b(format!("v{i}"));
        let rev = match mods.get(&key).copied() {
            None => s.create(&key, value.clone(), None).await.expect("create"),
            Some(m) if i % 4 == 0 => {
                let (_, rev) = s.delete(&key, Some(m)).await.expect("delete");
                mods.remove(&key);
                log.push((rev, key, None));
                continue;
            }
            Some(m) => s
                .update(&key, m, value.clone(), None)
                .await
                .expect("update"),
        };
        mods.insert(key.clone(), rev);
        log.push((rev, key, Some(value)));
        s.create(&format!("/q/{i}"), b("other prefix"), None)
            .await
            .expect("noise");
    }
    let starts = [
        base,
        log[10].0,
        log[10].0 + 1,
        log[39 - 1].0,
        s.current_revision().await.expect("rev"),
    ];
    for start in starts {
        let mut w = s.watch("/r/", start).await.expect("watch");
        let want: Vec<_> = log.iter().filter(|(r, _, _)| *r > start).collect();
        for (rev, key, value) in want {
            let ev = next_event(&mut w).await;
            assert_eq!(ev.revision(), *rev, "resume from {start}");
            assert_eq!(ev.key(), key);
            match (ev, value) {
                (Event::Put { kv, .. }, Some(v)) => assert_eq!(&kv.value, v),
                (Event::Delete { .. }, None) => {}
                (ev, v) => panic!("resume from {start}: got {ev:?}, wanted value {v:?}"),
            }
        }
        // Then live.
        let key = format!("/r/live-{start}");
        let rev = s.create(&key, b("live"), None).await.expect("create");
        let ev = next_event(&mut w).await;
        assert_eq!((ev.revision(), ev.key()), (rev, key.as_str()));
        log.push((rev, key, Some(b("live"))));
    }
    // Previous values are correct on updates and deletes.
    let rev1 = s.create("/p/k", b("one"), None).await.expect("create");
    let mut w = s.watch("/p/", rev1).await.expect("watch");
    let rev2 = s
        .update("/p/k", rev1, b("two"), Some(Duration::from_secs(3600)))
        .await
        .expect("update");
    let (_, rev3) = s.delete("/p/k", None).await.expect("delete");
    match next_event(&mut w).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(
                (kv.mod_revision, kv.create_revision, kv.lease_ttl),
                (rev2, rev1, Some(3600))
            );
            assert_eq!((prev.value, prev.mod_revision), (b("one"), rev1));
        }
        other => panic!("expected update, got {other:?}"),
    }
    match next_event(&mut w).await {
        Event::Delete { prev, revision } => {
            assert_eq!(
                (revision, prev.value, prev.mod_revision),
                (rev3, b("two"), rev2)
            );
        }
        other => panic!("expected delete, got {other:?}"),
    }
    // A watch from the future starts when the store gets there.
    let now = s.current_revision().await.expect("rev");
    let mut future = s.watch("/f/", now + 2).await.expect("future watch");
    s.create("/f/1", b("1"), None).await.expect("create");
    s.create("/f/2", b("2"), None).await.expect("create");
    s.create("/f/3", b("3"), None).await.expect("create");
    assert_eq!(next_event(&mut future).await.key(), "/f/3");
}

/// Compaction: below the compacted revision reads and watches fail; above they keep working.
pub async fn compaction(s: Arc<dyn Backend>) {
    assert_eq!(s.compacted_revision().await.expect("compacted"), 0);
    let r1 = s.create("/k/1", b("v1"), None).await.expect("w");
    let r2 = s.update("/k/1", r1, b("v2"), None).await.expect("w");
    let _r3 = s.create("/k/2", b("x"), None).await.expect("w");
    let (_, _r4) = s.delete("/k/2", None).await.expect("w");
    let r5 = s.create("/k/3", b("y"), None).await.expect("w");
    let r6 = s.update("/k/1", r2, b("v3"), None).await.expect("w");
    s.compact(r5).await.expect("compact");
    assert_eq!(s.compacted_revision().await.expect("compacted"), r5);
    match s.get("/k/1", Some(r5 - 1)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r5 - 1, r5)),
        other => panic!("read below compaction: {other:?}"),
    }
    assert!(matches!(
        s.list("/k/", None, 0, Some(r1)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        get(&s, "/k/1", Some(r5)).await.map(|kv| kv.value),
        Some(b("v2"))
    );
    assert_eq!(get(&s, "/k/2", Some(r5)).await, None);
    assert_eq!(
        get(&s, "/k/3", Some(r5)).await.map(|kv| kv.mod_revision),
        Some(r5)
    );
    let at = s
        .list("/k/", None, 0, Some(r5))
        .await
        .expect("list at compacted revision");
    let got: Vec<_> = at
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(got, [("/k/1", b("v2")), ("/k/3", b("y"))]);

    let mut too_old = s.watch("/k/", r5 - 1).await.expect("watch");
    match tokio::time::timeout(WAIT, too_old.next()).await {
        Ok(Some(Err(StoreError::Compacted { compacted, .. }))) => assert_eq!(compacted, r5),
        other => panic!("watch below compaction: {other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, too_old.next())
            .await
            .expect("ends")
            .is_none(),
        "stream ends after the error"
    );
    let mut ok = s.watch("/k/", r5).await.expect("watch");
    match next_event(&mut ok).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(
                (kv.mod_revision, kv.value, prev.value, prev.mod_revision),
                (r6, b("v3"), b("v2"), r2)
            );
        }
        other => panic!("watch from compacted revision: {other:?}"),
    }

    s.compact(r5 - 1)
        .await
        .expect("older compaction is a no-op");
    assert_eq!(s.compacted_revision().await.expect("compacted"), r5);
    let now = s.current_revision().await.expect("rev");
    assert!(matches!(
        s.compact(now + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    s.compact(now).await.expect("compact to head");
    assert_eq!(
        get(&s, "/k/1", Some(now)).await.map(|kv| kv.value),
        Some(b("v3"))
    );
    assert_eq!(
        s.list("/k/", None, 0, None)
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    // Writes continue; watches from the head work.
    let mut w = s.watch("/k/", now).await.expect("watch");
    let r7 = s
        .update("/k/1", r6, b("v4"), None)
        .await
        .expect("write after compaction");
    assert_eq!(next_event(&mut w).await.revision(), r7);
}

/// A watcher that stops reading while thousands of writes and a compaction pass never skips an
/// event: it delivers a gap-free sequence and then either everything or a `Compacted` error.
/// Returns `true` if it ended with `Compacted`.
pub async fn lagging_watcher(s: Arc<dyn Backend>) -> bool {
    const WRITES: i64 = 3000;
    let start = s.current_revision().await.expect("rev");
    let mut w = s.watch("/lag/", start).await.expect("watch");
    let mut revs = Vec::new();
    for i in 0..WRITES {
        revs.push(
            s.create(&format!("/lag/{i:05}"), b("x"), None)
                .await
                .expect("create"),
        );
    }
    let head = s.current_revision().await.expect("rev");
    s.compact(head).await.expect("compact");
    let mut delivered = 0usize;
    loop {
        match tokio::time::timeout(WAIT, w.next())
            .await
            .expect("watch item")
        {
            Some(Ok(ev)) => {
                assert_eq!(
                    ev.revision(),
                    revs[delivered],
                    "lagging watcher skipped or repeated an event"
                );
                delivered += 1;
                if delivered == revs.len() {
                    return false;
                }
            }
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert!(requested < compacted);
                assert!(w.next().await.is_none(), "stream ends after Compacted");
                return true;
            }
            other => panic!("lagging watcher: {other:?}"),
        }
    }
}

/// Keys with a TTL are deleted by the store, with a delete event.
pub async fn ttl_expiry(s: Arc<dyn Backend>) {
    let start = s.current_revision().await.expect("rev");
    let mut w = s.watch("/ttl/", start).await.expect("watch");
    let ra = s
        .create("/ttl/a", b("a"), Some(Duration::from_millis(800)))
        .await
        .expect("create");
    s.create("/ttl/b", b("b"), None).await.expect("create");
    let rc = s
        .create("/ttl/c", b("c"), Some(Duration::from_millis(800)))
        .await
        .expect("create");
    s.update("/ttl/c", rc, b("c2"), None)
        .await
        .expect("update drops the ttl");
    let rd = s
        .create("/ttl/d", b("d"), Some(Duration::from_millis(800)))
        .await
        .expect("create");
    s.update("/ttl/d", rd, b("d2"), Some(Duration::from_secs(3600)))
        .await
        .expect("update extends the ttl");
    assert_eq!(
        get(&s, "/ttl/a", None).await.and_then(|kv| kv.lease_ttl),
        Some(1)
    );
    // 6 puts, then the expiry.
    for _ in 0..6 {
        assert!(matches!(next_event(&mut w).await, Event::Put { .. }));
    }
    match next_event(&mut w).await {
        Event::Delete { prev, revision } => {
            assert_eq!(
                (prev.key.as_str(), prev.value, prev.mod_revision),
                ("/ttl/a", b("a"), ra)
            );
            assert!(revision > rd);
        }
        other => panic!("expected the expiry of /ttl/a, got {other:?}"),
    }
    assert_eq!(get(&s, "/ttl/a", None).await, None);
    let left: Vec<_> = s
        .list("/ttl/", None, 0, None)
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, ["/ttl/b", "/ttl/c", "/ttl/d"]);
    assert_quiet(&mut w).await;
}

/// After `close`, operations fail with `Closed` and watches end.
pub async fn closed_store(s: Arc<dyn Backend>) {
    s.create("/z", b("z"), None).await.expect("create");
    let mut w = s.watch("/", 0).await.expect("watch");
    assert_eq!(next_event(&mut w).await.key(), "/z");
    s.close().await;
    s.close().await;
    assert!(matches!(s.get("/z", None).await, Err(StoreError::Closed)));
    assert!(matches!(
        s.create("/y", b("y"), None).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.watch("/", 0).await, Err(StoreError::Closed)));
    match tokio::time::timeout(WAIT, w.next())
        .await
        .expect("watch ends")
    {
        Some(Err(StoreError::Closed)) | None => {}
        other => panic!("watch after close: {other:?}"),
    }
}

/// Data, history, compaction and TTLs survive close and reopen.
pub async fn restart_persistence(f: &dyn Fixture) {
    let s = f.open().await.expect("open");
    let r1 = s.create("/p/a", b("a1"), None).await.expect("w");
    let r2 = s.update("/p/a", r1, b("a2"), None).await.expect("w");
    s.create("/p/b", b("b"), None).await.expect("w");
    s.create("/p/ttl", b("t"), Some(Duration::from_secs(3)))
        .await
        .expect("w");
    s.compact(r2).await.expect("compact");
    let r5 = s.create("/p/c", b("c"), None).await.expect("w");
    let before = s.list("/p/", None, 0, None).await.expect("list");
    s.close().await;

    let s = f.open().await.expect("reopen");
    assert_eq!(s.current_revision().await.expect("rev"), r5);
    assert_eq!(s.compacted_revision().await.expect("compacted"), r2);
    assert_eq!(s.list("/p/", None, 0, None).await.expect("list"), before);
    assert_eq!(
        get(&s, "/p/a", Some(r2)).await.map(|kv| kv.value),
        Some(b("a2"))
    );
    assert!(matches!(
        s.get("/p/a", Some(r1)).await,
        Err(StoreError::Compacted { .. })
    ));
    // Watch from before the restart replays history, then the TTL expiry arrives.
    let mut w = s.watch("/p/", r2).await.expect("watch");
    assert_eq!(next_event(&mut w).await.key(), "/p/b");
    assert_eq!(next_event(&mut w).await.key(), "/p/ttl");
    assert_eq!(next_event(&mut w).await.revision(), r5);
    let r6 = s
        .create("/p/d", b("d"), None)
        .await
        .expect("write after reopen");
    assert!(r6 > r5);
    let mut expired = false;
    let mut saw_d = false;
    while !(expired && saw_d) {
        match next_event(&mut w).await {
            Event::Delete { prev, .. } if prev.key == "/p/ttl" => expired = true,
            Event::Put { kv, .. } if kv.key == "/p/d" => saw_d = true,
            other => panic!("after reopen: {other:?}"),
        }
    }
    assert_eq!(get(&s, "/p/ttl", None).await, None);
    s.close().await;
}
