//! An in-process `kube::Client` over the API router: no TCP, no TLS, no serialization beyond the
//! JSON bodies the API speaks anyway.
//!
//! Controllers running in the server process talk to the API server through this client exactly
//! as an external controller would (typed `Api<K>`, patches, `watcher`), while the requests go
//! straight into [`apiserver::router`]. The identity is not authenticated from a certificate: a
//! tower layer puts the caller's [`UserInfo`] into each request's extensions, which the router
//! reads and which cannot be forged over the wire (the front door overwrites them).
//!
//! Watches work because the router streams watch bodies (`Body::from_stream`). Upgrades
//! (exec/attach/port-forward) do not: they need a real hyper connection.

use protocols::user::UserInfo;

/// A `kube::Client` whose requests are served by `api` as `user`.
///
/// `default_namespace` of the client is `default`, as for a kubeconfig without a namespace.
pub fn client(api: axum::Router, user: UserInfo) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            req
        })
        .service(api);
    kube::Client::new(service, "default")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};
    use kube::runtime::watcher;
    use std::time::Duration;

    fn config_map(name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"test": "inprocess"}},
            "data": {"k": "v"},
        }))
        .unwrap()
    }

    async fn state(dir: &std::path::Path) -> apiserver::ApiState {
        let config = apiserver::ApiConfig {
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            advertise: "127.0.0.1:6443".into(),
            endpoint: ("127.0.0.1".parse().unwrap(), 6443),
        };
        let state = apiserver::ApiState::open("", dir, config).await.unwrap();
        apiserver::bootstrap(&state).await.unwrap();
        state
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crud_and_watch_through_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let admin = UserInfo::authenticated("system:admin", [protocols::user::MASTERS.to_owned()]);
        let client = client(apiserver::router(state.clone()), admin);
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());

        // Create and list.
        let created = cms
            .create(&PostParams::default(), &config_map("first"))
            .await
            .unwrap();
        assert!(created.metadata.resource_version.is_some());
        let list = cms
            .list(&ListParams::default().labels("test=inprocess"))
            .await
            .unwrap();
        let names: Vec<_> = list
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(names, ["first"]);

        // A watcher sees the existing object at init, then a create streamed after it.
        let mut events = watcher(
            cms.clone(),
            watcher::Config::default().labels("test=inprocess"),
        )
        .boxed();
        let saw_initial = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.try_next().await.unwrap() {
                    Some(watcher::Event::InitApply(c)) => {
                        assert_eq!(c.metadata.name.as_deref(), Some("first"));
                    }
                    Some(watcher::Event::InitDone) => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        })
        .await
        .unwrap();
        assert!(saw_initial);
        cms.create(&PostParams::default(), &config_map("second"))
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.try_next().await.unwrap() {
                    Some(watcher::Event::Apply(c)) => return c.metadata.name,
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some("second"));

        // Errors come back as API errors with upstream's reason.
        match cms.get("missing").await {
            Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
            other => panic!("expected NotFound, got {other:?}"),
        }
        drop(events);
        state.close().await;
    }
}
