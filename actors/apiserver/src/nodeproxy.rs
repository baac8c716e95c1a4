//! Node proxying: the pod subresources `log`, `exec`, `attach` and `portforward`.
//!
//! The API server checks the request against the stored pod (it exists, it is bound to a node,
//! the container is named or can be defaulted, a log's container has started), then opens a
//! byte stream to that node's kubelet through the [`KubeletDialer`] the embedding process set
//! and speaks HTTP/1.1 over it:
//!
//! | subresource | kubelet request |
//! |---|---|
//! | `log` (GET) | `GET /containerLogs/{ns}/{pod}/{container}?<log options>` |
//! | `exec`, `attach` (GET, POST) | same method, `/{exec,attach}/{ns}/{pod}/{container}?<query minus container>` |
//! | `portforward` (GET, POST) | same method, `/portForward/{ns}/{pod}?<query>` |
//!
//! Log answers are streamed back as they are. For the streaming subresources every request
//! header goes to the kubelet (Upgrade, Connection, `X-Stream-Protocol-Version`,
//! `Sec-WebSocket-*`) and its answer comes back verbatim; when that answer is
//! `101 Switching Protocols`, the client's upgraded connection is spliced with the kubelet's
//! both ways until either side closes. A non-101 answer (kubectl falls back from WebSocket to
//! SPDY on a 400) is relayed as it is.

use crate::ApiState;
use crate::error::ApiError;
use crate::handlers::{self, Ctx};
use crate::request::{Query, ResourcePath};
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use protocols::user::UserInfo;
use serde_json::Value;
use std::sync::Arc;

/// Opens a byte stream to a node's kubelet API (a unix socket for the local node; later the
/// agent tunnel).
pub trait KubeletDialer: Send + Sync + 'static {
    /// A fresh connection to the kubelet of `node`; an error when the node cannot be reached.
    fn dial(&self, node: &str) -> BoxFuture<'static, std::io::Result<Box<dyn KubeletStream>>>;
}

/// A connection to a kubelet: any async byte stream.
pub trait KubeletStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> KubeletStream for T {}

/// The dialer the embedding process set, shared by every clone of the state.
#[derive(Clone, Default)]
pub(crate) struct DialerSlot(Arc<parking_lot::RwLock<Option<Arc<dyn KubeletDialer>>>>);

impl std::fmt::Debug for DialerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.read().is_some();
        f.debug_struct("DialerSlot").field("set", &set).finish()
    }
}

impl DialerSlot {
    pub(crate) fn set(&self, dialer: Arc<dyn KubeletDialer>) {
        *self.0.write() = Some(dialer);
    }

    fn get(&self) -> Option<Arc<dyn KubeletDialer>> {
        self.0.read().clone()
    }
}

/// The `Host` the kubelet sees (it serves one node; the value only has to be well formed).
const KUBELET_HOST: &str = "kubelet";

/// Query parameters of `pods/log` the kubelet understands (`container` goes into the path).
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "limitBytes",
];

/// Whether this module serves the path: `pods/{name}/{log,exec,attach,portforward}` in core v1.
pub(crate) fn serves(p: &ResourcePath) -> bool {
    p.group.is_empty()
        && p.version == "v1"
        && p.resource == "pods"
        && p.namespace.is_some()
        && p.name.is_some()
        && matches!(
            p.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward")
        )
}

/// Serve one node-proxied subresource request.
pub(crate) async fn serve(
    s: &ApiState,
    mut parts: Parts,
    body: Body,
    p: ResourcePath,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let (Some(ns), Some(name), Some(sub)) = (p.namespace, p.name, p.subresource) else {
        return Err(ApiError::NoRoute);
    };
    let streaming = sub != "log";
    let method_ok = if streaming {
        parts.method == Method::GET || parts.method == Method::POST
    } else {
        parts.method == Method::GET
    };
    if !method_ok {
        return Err(ApiError::MethodNotAllowed);
    }
    let r = s
        .catalogue
        .find("", "v1", "pods")
        .ok_or(ApiError::NoRoute)?;
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let ctx = Ctx {
        s,
        r,
        ns: Some(ns.clone()),
        q: Query::parse(Some(&raw_query)),
        user,
    };
    let (pod, _) = handlers::get(&ctx, &name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?
        .to_owned();
    let path = match sub.as_str() {
        "log" => {
            let c = container_for(&pod, &name, ctx.q.get("container"))?;
            check_log_status(&pod, &name, &c, ctx.q.flag("previous"))?;
            let q = filter_query(&raw_query, |k| LOG_PARAMS.contains(&k));
            format!("/containerLogs/{ns}/{name}/{c}{q}")
        }
        "exec" | "attach" => {
            let c = container_for(&pod, &name, ctx.q.get("container"))?;
            let q = filter_query(&raw_query, |k| k != "container");
            format!("/{sub}/{ns}/{name}/{c}{q}")
        }
        _ => {
            format!("/portForward/{ns}/{name}{}", port_forward_query(&raw_query))
        }
    };
    // Upgrades need the client's HTTP/1.1 connection; refuse before touching the node.
    let client_upgrade = if streaming {
        Some(
            parts
                .extensions
                .remove::<hyper::upgrade::OnUpgrade>()
                .ok_or_else(|| ApiError::BadRequest("Upgrade request required".into()))?,
        )
    } else {
        None
    };
    let dialer = s.dialer.get().ok_or_else(|| {
        ApiError::Unavailable(format!(
            "cannot reach the kubelet of node {node:?}: no node agent is connected to this server"
        ))
    })?;
    let stream = dialer.dial(&node).await.map_err(|e| {
        ApiError::Unavailable(format!("cannot reach the kubelet of node {node:?}: {e}"))
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| kubelet_error(&node, &e))?;
    let conn_node = node.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(node = %conn_node, error = %e, "kubelet connection ended with an error");
        }
    });

    let mut req = Request::builder().method(parts.method.clone()).uri(&path);
    if streaming {
        for (k, v) in &parts.headers {
            if !matches!(
                *k,
                header::HOST
                    | header::AUTHORIZATION
                    | header::CONTENT_LENGTH
                    | header::TRANSFER_ENCODING
            ) {
                req = req.header(k, v);
            }
        }
    }
    let req = req
        .header(header::HOST, HeaderValue::from_static(KUBELET_HOST))
        .body(Full::new(read_small_body(body).await?))
        .map_err(|e| ApiError::Internal(format!("cannot build the kubelet request {path}: {e}")))?;
    tracing::debug!(%node, %path, "proxying to the kubelet");
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| kubelet_error(&node, &e))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        let (head, _) = resp.into_parts();
        tokio::spawn(async move {
            let (client, kubelet) = futures::join!(client_upgrade, kubelet_upgrade);
            match (client, kubelet) {
                (Ok(client), Ok(kubelet)) => {
                    let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
                    match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                        Ok((up, down)) => {
                            tracing::debug!(%node, up, down, "stream to the kubelet closed");
                        }
                        Err(e) => {
                            tracing::debug!(%node, error = %e, "stream to the kubelet broke");
                        }
                    }
                }
                (Err(e), _) => tracing::debug!(%node, error = %e, "the client did not upgrade"),
                (_, Err(e)) => tracing::debug!(%node, error = %e, "the kubelet did not upgrade"),
            }
        });
        return Ok(Response::from_parts(head, Body::empty()));
    }
    let (head, incoming) = resp.into_parts();
    Ok(Response::from_parts(head, Body::new(incoming)))
}

fn kubelet_error(node: &str, e: &hyper::Error) -> ApiError {
    ApiError::Internal(format!(
        "error talking to the kubelet of node {node:?}: {e}"
    ))
}

/// The request body (upgrade requests carry none; anything else is small), size-limited.
async fn read_small_body(body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, crate::request::MAX_BODY)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// `?k=v&...` with the pairs of `raw` whose decoded key passes `keep`, kept as sent (repeated
/// keys like `command` stay in order); empty when none is left.
fn filter_query(raw: &str, keep: impl Fn(&str) -> bool) -> String {
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            keep(&crate::request::decode(key))
        })
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// The kubelet's port-forward query: the API's `ports=80,8080` (PodPortForwardOptions) becomes
/// one `port=` per port, as upstream's API server sends it; other pairs are kept as sent.
fn port_forward_query(raw: &str) -> String {
    let mut pairs: Vec<String> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if crate::request::decode(k) == "ports" => {
                for port in crate::request::decode(v).split(',') {
                    let port = port.trim();
                    if !port.is_empty() {
                        pairs.push(format!("port={port}"));
                    }
                }
            }
            _ => pairs.push(pair.to_owned()),
        }
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Names of every container of the pod, in upstream's order (init, regular, ephemeral).
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod.get("spec")?.get(*k)?.as_array())
        .flatten()
        .filter_map(|c| c.get("name")?.as_str())
        .collect()
}

/// The container a request is about: the one named (which must exist), else the only regular
/// container; upstream's 400s otherwise.
fn container_for(pod: &Value, pod_name: &str, given: Option<&str>) -> Result<String, ApiError> {
    if let Some(c) = given {
        return if container_names(pod).contains(&c) {
            Ok(c.to_owned())
        } else {
            Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {pod_name}"
            )))
        };
    }
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name")?.as_str())
        .collect();
    match regular.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// A log request for a container that never ran is a 400 naming why it waits (as the kubelet
/// words it). A container with a previous run has logs to show, so only waiting without one
/// is refused; without a status the kubelet decides.
fn check_log_status(
    pod: &Value,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<(), ApiError> {
    if previous {
        return Ok(());
    }
    let status = [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod.get("status")?.get(*k)?.as_array())
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(status) = status else {
        return Ok(());
    };
    let state = status.get("state");
    let running_or_done = ["running", "terminated"]
        .iter()
        .any(|k| state.and_then(|s| s.get(*k)).is_some());
    let ran_before = status.pointer("/lastState/terminated").is_some();
    let Some(waiting) = state.and_then(|s| s.get("waiting")) else {
        return Ok(());
    };
    if running_or_done || ran_before {
        return Ok(());
    }
    let reason = waiting.get("reason").and_then(Value::as_str).unwrap_or("");
    let why = match reason {
        "ErrImagePull" => "image can't be pulled",
        "ImagePullBackOff" => "trying and failing to pull image",
        other => other,
    };
    Err(ApiError::BadRequest(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}]}})
    }

    #[test]
    fn containers_default_like_upstream() {
        let one = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(container_for(&one, "p", None).expect("defaults"), "c");
        let e = container_for(&pod(), "p", None).expect_err("ambiguous");
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(container_for(&pod(), "p", Some("b")).expect("named"), "b");
        assert_eq!(
            container_for(&pod(), "p", Some("x"))
                .expect_err("unknown")
                .to_string(),
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn waiting_containers_have_no_logs() {
        let mut p = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"containerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        let e = check_log_status(&p, "p", "c", false).expect_err("waiting");
        assert_eq!(
            e.to_string(),
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert!(check_log_status(&p, "p", "c", true).is_ok());
        // CrashLoopBackOff waits, but the last run's logs are there.
        p["status"]["containerStatuses"][0]["lastState"] =
            json!({"terminated": {"exitCode": 1, "containerID": "containerd://x"}});
        assert!(check_log_status(&p, "p", "c", false).is_ok());
        let pull = json!({"status": {"containerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(
            check_log_status(&pull, "p", "c", false)
                .expect_err("pull")
                .to_string(),
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
    }

    #[test]
    fn queries_are_filtered_as_sent() {
        let raw = "command=sh&command=-c&command=echo%20hi&container=c&stdout=true";
        assert_eq!(
            filter_query(raw, |k| k != "container"),
            "?command=sh&command=-c&command=echo%20hi&stdout=true"
        );
        assert_eq!(
            filter_query(
                "container=c&follow=true&sinceTime=2024-01-01T00%3A00%3A00Z&pretty=1",
                |k| LOG_PARAMS.contains(&k)
            ),
            "?follow=true&sinceTime=2024-01-01T00%3A00%3A00Z"
        );
        assert_eq!(filter_query("container=c", |k| k != "container"), "");
        assert_eq!(port_forward_query("ports=80%2C8080"), "?port=80&port=8080");
        assert_eq!(port_forward_query("ports=80&x=1"), "?port=80&x=1");
        assert_eq!(port_forward_query(""), "");
    }
}
