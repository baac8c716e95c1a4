//! End to end: the Kubernetes API as kube-rs 5 uses it, against the real binary
//! (`k3s server --disable-agent`) over verified TLS, with the client built from the admin
//! kubeconfig the server writes. Each test has its own server.
//!
//! Covers typed CRUD, the four patch types (merge, strategic, JSON, server-side apply with a
//! conflict between managers and `force`), the `watcher` (init, events, and resuming across a
//! server restart), a `#[derive(CustomResource)]` CRD with its status subresource, label and field
//! selectors, metadata-only lists, and errors as `kube::Error::Api` with upstream's reason/code.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use kube::{Client, Config, CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// How long any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// A client from the admin kubeconfig the server wrote.
async fn client(s: &Server) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn namespace(c: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": data,
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }))
    .unwrap()
}

/// The API status of a failed call, or a panic naming what came back instead.
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The next watcher event matching `f`, skipping others; panics after [`WAIT`].
async fn next_matching<K, S>(
    events: &mut S,
    what: &str,
    mut f: impl FnMut(&watcher::Event<K>) -> bool,
) -> watcher::Event<K>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
    K: std::fmt::Debug,
{
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(Ok(ev)) if f(&ev) => return ev,
                Some(Ok(_)) => {}
                // Transient errors (the server restarting) are retried by the backoff.
                Some(Err(e)) => eprintln!("watcher error: {e}"),
                None => panic!("watch stream ended waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test]
async fn typed_crud_and_upstream_errors() {
    let s = Server::start(&[]);
    let c = client(&s).await;
    namespace(&c, "crud").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "crud");
    let pp = PostParams::default();

    // ConfigMap: create, get, list, replace, delete.
    let created = cms
        .create(&pp, &config_map("one", json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("crud"));
    assert!(created.uid().is_some() && created.resource_version().is_some());
    let got = cms.get("one").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["a"], "1");
    cms.create(&pp, &config_map("two", json!({})))
        .await
        .unwrap();
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert!(list.metadata.resource_version.is_some());
    let mut names: Vec<_> = list.items.iter().map(ResourceExt::name_any).collect();
    names.sort();
    // Every namespace also gets the cluster CA bundle from the controllers, as upstream.
    names.retain(|n| n != "kube-root-ca.crt");
    assert_eq!(names, ["one", "two"]);

    let mut changed = got.clone();
    changed.data = Some([("a".to_owned(), "2".to_owned())].into());
    let replaced = cms.replace("one", &pp, &changed).await.unwrap();
    assert_eq!(replaced.data.as_ref().unwrap()["a"], "2");
    assert_ne!(replaced.resource_version(), got.resource_version());

    // 409 Conflict: replacing with the stale resourceVersion.
    let (code, reason, msg) = api_error(cms.replace("one", &pp, &changed).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{msg}");
    assert!(msg.contains("the object has been modified"), "{msg}");

    // 409 AlreadyExists.
    let (code, reason, msg) = api_error(cms.create(&pp, &config_map("one", json!({}))).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"), "{msg}");
    assert_eq!(msg, r#"configmaps "one" already exists"#);

    // Metadata-only list (PartialObjectMetadataList).
    let meta = cms.list_metadata(&ListParams::default()).await.unwrap();
    let mut meta_names: Vec<_> = meta.items.iter().map(ResourceExt::name_any).collect();
    meta_names.sort();
    assert_eq!(meta_names, ["kube-root-ca.crt", "one", "two"]);
    assert!(meta.items.iter().all(|m| m.metadata.uid.is_some()));
    assert!(meta.metadata.resource_version.is_some());
    let one = cms.get_metadata("one").await.unwrap();
    assert_eq!(one.metadata.labels.as_ref().unwrap()["app"], "kube-rs");

    // Delete, then 404 NotFound.
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    let (code, reason, msg) = api_error(cms.get("one").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"), "{msg}");
    assert_eq!(msg, r#"configmaps "one" not found"#);
    let (code, reason, _) = api_error(cms.delete("one", &DeleteParams::default()).await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    // Deployment: create (defaults applied), get, list, replace, delete.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "crud");
    let d = deps.create(&pp, &deployment("web", 1)).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate"),
        "defaults are applied"
    );
    let mut d = deps.get("web").await.unwrap();
    d.spec.as_mut().unwrap().replicas = Some(4);
    let d = deps.replace("web", &pp, &d).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(d.metadata.generation, Some(2));
    let list = deps
        .list(&ListParams::default().labels("app!=other"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);

    // 422 Invalid, with field causes.
    let mut bad = deployment("bad", 1);
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = None;
    match deps.create(&pp, &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
            let causes = s
                .details
                .as_ref()
                .map(|d| d.causes.clone())
                .unwrap_or_default();
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == "spec.template.spec.containers[0].image"),
                "{s:?}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let (code, reason, _) = api_error(deps.get("bad").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"), "nothing stored");

    deps.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(api_error(deps.get("web").await).0, 404);
}

#[tokio::test]
async fn patches_and_server_side_apply() {
    let s = Server::start(&[]);
    let c = client(&s).await;
    namespace(&c, "patch").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "patch");
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "patch");
    let pp = PostParams::default();
    cms.create(&pp, &config_map("cm", json!({"a": "1", "b": "2"})))
        .await
        .unwrap();

    // Merge patch: set one key, delete another with null.
    let merged = cms
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {"a": "10", "b": null}, "metadata": {"labels": {"x": "y"}}}),
            ),
        )
        .await
        .unwrap();
    let data = merged.data.clone().unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("10"));
    assert!(!data.contains_key("b"));
    assert_eq!(merged.labels()["x"], "y");
    assert_eq!(merged.labels()["app"], "kube-rs");

    // JSON patch: a test that holds, then add and remove.
    let jp: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/data/a", "value": "10"},
            {"op": "add", "path": "/data/c", "value": "3"},
            {"op": "remove", "path": "/metadata/labels/x"},
        ]))
        .unwrap(),
    );
    let patched = cms.patch("cm", &PatchParams::default(), &jp).await.unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["c"], "3");
    assert!(!patched.labels().contains_key("x"));
    // A failing test op is a client error, and nothing changes.
    let failing: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "add", "path": "/data/d", "value": "4"},
            {"op": "test", "path": "/data/a", "value": "wrong"},
        ]))
        .unwrap(),
    );
    let (code, _, msg) = api_error(cms.patch("cm", &PatchParams::default(), &failing).await);
    assert!((400..500).contains(&code), "{code} {msg}");
    let after = cms.get("cm").await.unwrap();
    assert!(!after.data.as_ref().unwrap().contains_key("d"));
    assert_eq!(after.resource_version(), patched.resource_version());

    // Strategic merge patch on a Deployment: containers merge by name (the image stays).
    deps.create(&pp, &deployment("web", 1)).await.unwrap();
    let smp = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "MODE", "value": "fast"}]},
            ]}}}})),
        )
        .await
        .unwrap();
    let containers = &smp
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.27"));
    assert_eq!(containers[0].env.as_ref().unwrap()[0].name, "MODE");
    // Strategic merge patch works on every built-in kind (ConfigMaps too).
    cms.patch(
        "cm",
        &PatchParams::default(),
        &Patch::Strategic(json!({"data": {"s": "1"}})),
    )
    .await
    .unwrap();

    // Server-side apply: creates the object, records ownership.
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ssa"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "ssa"}},
            "template": {"metadata": {"labels": {"app": "ssa"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    });
    let d = deps
        .patch("ssa", &PatchParams::apply("mgr"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    let mf = d.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("mgr") && m.operation.as_deref() == Some("Apply")),
        "{mf:?}"
    );
    // Re-applying the same config is a no-op success.
    deps.patch("ssa", &PatchParams::apply("mgr"), &Patch::Apply(&applied))
        .await
        .unwrap();

    // Another manager changing an owned field conflicts without force...
    let other = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ssa"},
        "spec": {"replicas": 5},
    });
    match deps
        .patch("ssa", &PatchParams::apply("other"), &Patch::Apply(&other))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
            assert!(s.message.contains("conflict"), "{s:?}");
            let causes = s
                .details
                .as_ref()
                .map(|d| d.causes.clone())
                .unwrap_or_default();
            assert!(
                causes
                    .iter()
                    .any(|c| c.reason == "FieldManagerConflict" && c.field == ".spec.replicas"),
                "{s:?}"
            );
        }
        other => panic!("expected an apply conflict, got {other:?}"),
    }
    assert_eq!(
        deps.get("ssa").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    // ...and takes the field with force.
    let forced = deps
        .patch(
            "ssa",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(5));
    let mf = forced.metadata.managed_fields.clone().unwrap_or_default();
    let owns_replicas = |manager: &str| {
        mf.iter().any(|m| {
            m.manager.as_deref() == Some(manager)
                && m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
    };
    assert!(owns_replicas("other"), "{mf:?}");
    assert!(!owns_replicas("mgr"), "{mf:?}");
    // The first manager still owns the rest (its containers are untouched).
    assert_eq!(
        forced
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some("busybox")
    );
    // An apply whose body names another object is a 400.
    let (code, reason, _) = api_error(
        deps.patch(
            "ssa",
            &PatchParams::apply("mgr"),
            &Patch::Apply(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other-name"}})),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn watcher_sees_events_and_resumes_across_a_restart() {
    let mut s = Server::start(&[]);
    let c = client(&s).await;
    namespace(&c, "watched").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "watched");
    let pp = PostParams::default();
    cms.create(&pp, &config_map("before", json!({})))
        .await
        .unwrap();

    let mut events = watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    // Initial list: Init, the existing object, InitDone.
    next_matching(&mut events, "Init", |e| matches!(e, watcher::Event::Init)).await;
    let ev = next_matching(&mut events, "InitApply", |e| {
        matches!(e, watcher::Event::InitApply(_))
    })
    .await;
    let watcher::Event::InitApply(cm) = ev else {
        unreachable!()
    };
    assert_eq!(cm.name_any(), "before");
    next_matching(&mut events, "InitDone", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;

    // Live events: create, modify, delete.
    cms.create(&pp, &config_map("live", json!({"v": "1"})))
        .await
        .unwrap();
    next_matching(
        &mut events,
        "Apply(live)",
        |e| matches!(e, watcher::Event::Apply(c) if c.name_any() == "live"),
    )
    .await;
    cms.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    next_matching(
        &mut events,
        "Apply(live v=2)",
        |e| matches!(e, watcher::Event::Apply(c) if c.data.as_ref().is_some_and(|d| d.get("v").is_some_and(|v| v == "2"))),
    )
    .await;
    cms.delete("live", &DeleteParams::default()).await.unwrap();
    let ev = next_matching(&mut events, "Delete(live)", |e| {
        matches!(e, watcher::Event::Delete(_))
    })
    .await;
    let watcher::Event::Delete(gone) = ev else {
        unreachable!()
    };
    assert_eq!(gone.name_any(), "live");
    assert!(gone.resource_version().is_some_and(|rv| !rv.is_empty()));

    // A raw watch from a resource version streams only later changes.
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut raw = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&pp, &config_map("raw", json!({})))
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, raw.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        kube::api::WatchEvent::Added(cm) => assert_eq!(cm.name_any(), "raw"),
        other => panic!("expected ADDED raw, got {other:?}"),
    }
    drop(raw);

    // Restart the server (same data, same port): the watcher resumes from its resource
    // version and sees a change made after the restart.
    s.terminate();
    s.spawn(&[]);
    let c2 = client(&s).await;
    Api::<ConfigMap>::namespaced(c2, "watched")
        .create(&pp, &config_map("after-restart", json!({})))
        .await
        .unwrap();
    next_matching(&mut events, "Apply(after-restart)", |e| {
        matches!(e, watcher::Event::Apply(c) | watcher::Event::InitApply(c) if c.name_any() == "after-restart")
    })
    .await;

    // A fresh watcher relists: the current state, then InitDone.
    let mut fresh = watcher(
        cms.clone(),
        watcher::Config::default().labels("app=kube-rs"),
    )
    .default_backoff()
    .boxed();
    let mut seen = Vec::new();
    loop {
        match next_matching(&mut fresh, "InitApply/InitDone", |e| {
            matches!(e, watcher::Event::InitApply(_) | watcher::Event::InitDone)
        })
        .await
        {
            watcher::Event::InitApply(c) => seen.push(c.name_any()),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["after-restart", "before", "raw"]);
}

/// A custom resource defined in Rust; its CRD comes from `Widget::crd()`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wdg"
)]
pub struct WidgetSpec {
    /// How big.
    size: i32,
    /// Optional colour.
    color: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    tags: Vec<String>,
}

/// Status of a [`Widget`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    ready: bool,
    observed: Option<i64>,
}

#[tokio::test]
async fn derived_custom_resource() {
    let s = Server::start(&[]);
    let c = client(&s).await;
    namespace(&c, "crs").await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd = Widget::crd();
    assert_eq!(crd.name_any(), "widgets.example.com");
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = await_condition(
        crds.clone(),
        "widgets.example.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .expect("CRD established in time")
        .unwrap();

    let widgets: Api<Widget> = Api::namespaced(c.clone(), "crs");
    // The resource may take a moment to be served after Established; retry briefly.
    let w = Widget::new(
        "w1",
        WidgetSpec {
            size: 3,
            color: Some("red".into()),
            tags: vec!["a".into()],
        },
    );
    let created = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match widgets.create(&PostParams::default(), &w).await {
                Ok(x) => break x,
                Err(kube::Error::Api(s))
                    if s.code == 404 && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create widget: {e:?}"),
            }
        }
    };
    assert_eq!(created.spec.size, 3);
    assert!(created.status.is_none(), "status is dropped on create");
    widgets
        .create(
            &PostParams::default(),
            &Widget::new(
                "w2",
                WidgetSpec {
                    size: 1,
                    color: None,
                    tags: vec![],
                },
            ),
        )
        .await
        .unwrap();
    let list = widgets.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<_> = list.items.iter().map(ResourceExt::name_any).collect();
    names.sort();
    assert_eq!(names, ["w1", "w2"]);

    // Status through the status subresource; spec changes there are ignored.
    let st = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true, "observed": 7}, "spec": {"size": 99}})),
        )
        .await
        .unwrap();
    let status = st.status.clone().unwrap();
    assert!(status.ready);
    assert_eq!(status.observed, Some(7));
    assert_eq!(st.spec.size, 3);
    assert_eq!(
        widgets
            .get_status("w1")
            .await
            .unwrap()
            .status
            .unwrap()
            .observed,
        Some(7)
    );
    // A main-resource patch does not touch status.
    let p = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.size, 4);
    assert!(p.status.unwrap().ready);
    // Server-side apply on a custom resource.
    let applied = widgets
        .patch(
            "w3",
            &PatchParams::apply("mgr"),
            &Patch::Apply(json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w3"}, "spec": {"size": 2},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.size, 2);
    // Schema validation: a string where an integer belongs is 422 Invalid.
    let bad: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.clone(),
        "crs",
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "bad"}, "spec": {"size": "big"},
    }))
    .unwrap();
    let (code, reason, msg) = api_error(bad.create(&PostParams::default(), &obj).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
    // Strategic merge patch is not supported for custom resources (415).
    let (code, reason, _) = api_error(
        widgets
            .patch(
                "w1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 5}})),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    widgets
        .delete("w2", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(widgets.get("w2").await).0, 404);
}

#[tokio::test]
async fn pod_lists_with_label_and_field_selectors() {
    let s = Server::start(&[]);
    let c = client(&s).await;
    namespace(&c, "pods").await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "pods");
    for (name, tier) in [("a1", "front"), ("a2", "front"), ("b1", "back")] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": tier, "app": "shop"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        let created = pods.create(&PostParams::default(), &p).await.unwrap();
        assert_eq!(
            created.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
    }
    let names = |l: kube::api::ObjectList<Pod>| {
        let mut v: Vec<_> = l.items.iter().map(ResourceExt::name_any).collect();
        v.sort();
        v
    };
    let front = pods
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(names(front), ["a1", "a2"]);
    let set = pods
        .list(&ListParams::default().labels("tier in (back),app=shop"))
        .await
        .unwrap();
    assert_eq!(names(set), ["b1"]);
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=a2"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["a2"]);
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName=,status.phase=Pending"))
        .await
        .unwrap();
    assert_eq!(names(unscheduled), ["a1", "a2", "b1"]);
    let both = pods
        .list(
            &ListParams::default()
                .labels("tier=front")
                .fields("metadata.name!=a1"),
        )
        .await
        .unwrap();
    assert_eq!(names(both), ["a2"]);
    // Across namespaces, with a page limit.
    let all: Api<Pod> = Api::all(c.clone());
    let page = all
        .list(&ListParams::default().labels("app=shop").limit(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = all
        .list(
            &ListParams::default()
                .labels("app=shop")
                .limit(2)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    // An unsupported field label is a 400.
    let (code, reason, msg) = api_error(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"), "{msg}");
    // Metadata-only list with selectors.
    let meta = pods
        .list_metadata(&ListParams::default().labels("tier=back"))
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 1);
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("b1"));
}
