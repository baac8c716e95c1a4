//! The `server` child: the kubelet's HTTP API on `<agent_dir>/kubelet.sock`, which the API server
//! proxies node requests to (paths and query strings verbatim):
//! - `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file as text, optionally
//!   followed until the container exits or the client goes away;
//! - `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}`, `/portForward/{ns}/{pod}`:
//!   SPDY upgrades are handed to containerd's streaming server (the CRI Exec/Attach/PortForward URL)
//!   by relaying the request and splicing both connections; WebSocket upgrades get a 400 so that
//!   kubectl falls back to SPDY;
//! - `GET /healthz`.
//!
//! Errors are `metav1.Status` JSON bodies with upstream's codes and messages.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use kernel::{BoxError, ServiceCtx};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::Shared;
use crate::cri::{self, Cri, v1};
use crate::logs::{self, Formatter, LogOptions};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Errors of a kubelet API request, each mapped to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something that does not exist in this state.
    #[error("{0}")]
    BadRequest(String),
    /// No such pod or container on this node.
    #[error("{0}")]
    NotFound(String),
    /// The runtime failed.
    #[error("{0}")]
    Runtime(String),
}

impl ApiError {
    fn code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::NotFound(_) => "NotFound",
            Self::Runtime(_) => "InternalError",
        }
    }
}

fn status_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": e.to_string(), "reason": e.reason(), "code": e.code().as_u16(),
    });
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = e.code();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// The `server` service.
pub(crate) async fn run(ctx: ServiceCtx, shared: Arc<Shared>) -> Result<(), BoxError> {
    let path = crate::socket_path(&shared.paths.agent_dir);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    info!(socket = %path.display(), "kubelet API listening");
    let cri = Cri::connect(&shared.paths.containerd_socket);
    ctx.ready();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = ctx.cancelled() => {
                conns.abort_all();
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
            Some(_) = conns.join_next() => {}
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let cri = cri.clone();
                let token = ctx.token();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let cri = cri.clone();
                        let token = token.clone();
                        async move { Ok::<_, Infallible>(handle(req, cri, token).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                    {
                        debug!(error = %e, "kubelet API connection ended");
                    }
                });
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    cri: Cri,
    token: tokio_util::sync::CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(Response::new(full("ok"))),
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            let query = req.uri().query().unwrap_or_default().to_owned();
            container_logs(&cri, ns, pod, container, &query, token).await
        }
        (&Method::GET | &Method::POST, ["exec" | "attach", ns, pod, container]) => {
            let (ns, pod, container) =
                ((*ns).to_owned(), (*pod).to_owned(), (*container).to_owned());
            stream(req, &cri, &ns, &pod, Some(&container)).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            let (ns, pod) = ((*ns).to_owned(), (*pod).to_owned());
            stream(req, &cri, &ns, &pod, None).await
        }
        _ => Err(ApiError::NotFound(format!(
            "the server could not find the requested resource ({path})"
        ))),
    };
    result.unwrap_or_else(|e| status_response(&e))
}

/// The runtime containers of `ns/pod/container` of the newest pod with that name, newest first.
async fn find_containers(
    cri: &Cri,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<v1::Container>, ApiError> {
    let mut rt = cri.runtime.clone();
    let list = rt
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: [
                    (cri::LABEL_POD_NAMESPACE.to_owned(), ns.to_owned()),
                    (cri::LABEL_POD_NAME.to_owned(), pod.to_owned()),
                    (cri::LABEL_CONTAINER_NAME.to_owned(), container.to_owned()),
                ]
                .into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
        .into_inner()
        .containers;
    let newest_uid = list
        .iter()
        .max_by_key(|c| c.created_at)
        .and_then(|c| c.labels.get(cri::LABEL_POD_UID).cloned());
    let mut list: Vec<_> = list
        .into_iter()
        .filter(|c| c.labels.get(cri::LABEL_POD_UID) == newest_uid.as_ref())
        .collect();
    list.sort_by_key(|c| {
        std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
    });
    Ok(list)
}

async fn container_status(cri: &Cri, id: &str) -> Result<v1::ContainerStatus, ApiError> {
    let mut rt = cri.runtime.clone();
    rt.container_status(v1::ContainerStatusRequest {
        container_id: id.to_owned(),
        verbose: false,
    })
    .await
    .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
    .into_inner()
    .status
    .ok_or_else(|| ApiError::NotFound(format!("container {id} not found")))
}

async fn container_logs(
    cri: &Cri,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
    token: tokio_util::sync::CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let opts = LogOptions::from_query(query, jiff::Timestamp::now())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let list = find_containers(cri, ns, pod, container).await?;
    let chosen = if opts.previous {
        list.get(1).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            ))
        })?
    } else {
        list.first().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
            ))
        })?
    };
    let status = container_status(cri, &chosen.id).await?;
    let log_path = PathBuf::from(&status.log_path);
    let data = tokio::fs::read(&log_path).await.unwrap_or_default();
    let mut formatter = Formatter::new(&opts);
    let (lines, consumed) = logs::format_all(&data, &mut formatter);
    let lines = logs::tail(lines, opts.tail_lines);
    let mut limit = opts.limit_bytes;
    let mut head = Vec::new();
    for l in lines {
        push_limited(&mut head, &l, &mut limit);
    }
    let running = status.state == v1::ContainerState::ContainerRunning as i32;
    let mut response = if !opts.follow || !running || limit == Some(0) {
        Response::new(full(head))
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let cri = cri.clone();
        let id = chosen.id.clone();
        tokio::spawn(async move {
            if !head.is_empty() && tx.send(Bytes::from(head)).await.is_err() {
                return;
            }
            follow(
                &cri,
                &id,
                &log_path,
                consumed as u64,
                formatter,
                limit,
                tx,
                token,
            )
            .await;
        });
        let body = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        Response::new(StreamBody::new(body.boxed()).boxed_unsync())
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

fn push_limited(out: &mut Vec<u8>, line: &[u8], limit: &mut Option<usize>) {
    match limit {
        Some(0) => {}
        Some(left) => {
            let n = line.len().min(*left);
            out.extend_from_slice(&line[..n]);
            *left -= n;
        }
        None => out.extend_from_slice(line),
    }
}

/// Streams new log lines from `offset` until the container stops, the client goes away, the
/// byte limit is reached or the kubelet stops.
#[allow(clippy::too_many_arguments)]
async fn follow(
    cri: &Cri,
    id: &str,
    path: &Path,
    mut offset: u64,
    mut formatter: Formatter,
    mut limit: Option<usize>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut last_check = tokio::time::Instant::now();
    loop {
        let mut chunk = Vec::new();
        if let Ok(mut f) = tokio::fs::File::open(path).await
            && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
            && let Ok(n) = f.read_to_end(&mut chunk).await
        {
            offset += n as u64;
        }
        let got_data = !chunk.is_empty();
        if got_data {
            pending.extend_from_slice(&chunk);
            let (lines, consumed) = logs::format_all(&pending, &mut formatter);
            pending.drain(..consumed);
            let mut out = Vec::new();
            for l in lines {
                push_limited(&mut out, &l, &mut limit);
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            if limit == Some(0) {
                return;
            }
        }
        if !got_data && last_check.elapsed() >= Duration::from_secs(1) {
            last_check = tokio::time::Instant::now();
            let running = container_status(cri, id)
                .await
                .is_ok_and(|s| s.state == v1::ContainerState::ContainerRunning as i32);
            if !running {
                return;
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Whether containerd's streaming server can take this WebSocket request itself: it negotiates
/// the channel protocols up to `v4.channel.k8s.io` (and their base64 forms) but not v5, nor
/// kubectl's SPDY-in-WebSocket port-forward. kubectl offers only those and falls back to SPDY
/// on our 400; kube-rs also offers v4, and the Python client offers only v4.
fn runtime_speaks_websocket(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|p| {
            matches!(
                p,
                "channel.k8s.io"
                    | "base64.channel.k8s.io"
                    | "v4.channel.k8s.io"
                    | "v4.base64.channel.k8s.io"
                    | "portforward.k8s.io"
                    | "base64.portforward.k8s.io"
            )
        })
}

/// exec, attach and port-forward: asks the runtime for a streaming URL and relays the upgrade.
async fn stream(
    mut req: Request<Incoming>,
    cri: &Cri,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if upgrade.contains("websocket") && !runtime_speaks_websocket(req.headers()) {
        return Err(ApiError::BadRequest(
            "WebSocket streaming with v5.channel.k8s.io is not supported by this kubelet yet; use SPDY (or v4.channel.k8s.io)".into(),
        ));
    }
    let pairs = logs::query_pairs(req.uri().query().unwrap_or_default());
    let flag = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .is_some_and(|(_, v)| logs::parse_bool(name, v).unwrap_or(false))
    };
    let mut rt = cri.runtime.clone();
    let url = match container {
        Some(container) => {
            let list = find_containers(cri, ns, pod, container).await?;
            let c = list
                .into_iter()
                .find(|c| c.state == v1::ContainerState::ContainerRunning as i32)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "container {container:?} in pod {pod:?} is not running"
                    ))
                })?;
            if req.uri().path().starts_with("/exec/") {
                let cmd: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect();
                if cmd.is_empty() {
                    return Err(ApiError::BadRequest(
                        "you must specify at least 1 command".into(),
                    ));
                }
                rt.exec(v1::ExecRequest {
                    container_id: c.id,
                    cmd,
                    tty: flag("tty"),
                    stdin: flag("stdin"),
                    stdout: flag("stdout"),
                    stderr: flag("stderr"),
                })
                .await
                .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
                .into_inner()
                .url
            } else {
                rt.attach(v1::AttachRequest {
                    container_id: c.id,
                    stdin: flag("stdin"),
                    tty: flag("tty"),
                    stdout: flag("stdout"),
                    stderr: flag("stderr"),
                })
                .await
                .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
                .into_inner()
                .url
            }
        }
        None => {
            let sandboxes = rt
                .list_pod_sandbox(v1::ListPodSandboxRequest {
                    filter: Some(v1::PodSandboxFilter {
                        state: Some(v1::PodSandboxStateValue {
                            state: v1::PodSandboxState::SandboxReady as i32,
                        }),
                        label_selector: [
                            (cri::LABEL_POD_NAMESPACE.to_owned(), ns.to_owned()),
                            (cri::LABEL_POD_NAME.to_owned(), pod.to_owned()),
                        ]
                        .into(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
                .into_inner()
                .items;
            let sb = sandboxes
                .into_iter()
                .max_by_key(|s| s.created_at)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "pod {ns}/{pod} has no running sandbox on this node"
                    ))
                })?;
            let ports = pairs
                .iter()
                .filter(|(k, _)| k == "port")
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            rt.port_forward(v1::PortForwardRequest {
                pod_sandbox_id: sb.id,
                port: ports,
            })
            .await
            .map_err(|s| ApiError::Runtime(s.message().to_owned()))?
            .into_inner()
            .url
        }
    };
    relay_upgrade(&mut req, &url).await
}

/// Sends the client's request (method, headers) to `url` on the runtime's streaming server; on
/// `101` returns the same answer to the client and splices the two connections.
async fn relay_upgrade(req: &mut Request<Incoming>, url: &str) -> Result<Response<Body>, ApiError> {
    let uri: http::Uri = url.parse().map_err(|e| {
        ApiError::Runtime(format!("runtime returned a bad streaming URL {url:?}: {e}"))
    })?;
    let authority = uri
        .authority()
        .ok_or_else(|| ApiError::Runtime(format!("streaming URL {url:?} has no host")))?
        .to_string();
    let mut path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    // The runtime's URL carries a token for the session; options it reads from the query (the
    // ports of a WebSocket port-forward) come from the client's request.
    if uri.query().is_none()
        && let Some(q) = req.uri().query()
    {
        path = format!("{path}?{q}");
    }
    let mut upstream = TcpStream::connect(&authority).await.map_err(|e| {
        ApiError::Runtime(format!(
            "connecting to the streaming server {authority}: {e}"
        ))
    })?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method(),
        path,
        authority
    );
    for (name, value) in req.headers() {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            head.push_str(&format!("{}: {}\r\n", name.as_str(), v));
        }
    }
    head.push_str("\r\n");
    upstream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| ApiError::Runtime(format!("writing to the streaming server: {e}")))?;

    let (code, headers, rest) = read_response_head(&mut upstream).await?;
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in &headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    if code != 101 {
        let mut body = rest;
        let _ = tokio::time::timeout(Duration::from_secs(5), upstream.read_to_end(&mut body)).await;
        response
            .headers_mut()
            .remove(http::header::TRANSFER_ENCODING);
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        *response.body_mut() = full(body);
        return Ok(response);
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "client upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    Ok(response)
}

/// Reads an HTTP/1.1 response head; returns the status, headers and bytes read past the head.
async fn read_response_head(
    s: &mut TcpStream,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ApiError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return Err(ApiError::Runtime(
                "streaming server response head too large".into(),
            ));
        }
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .map_err(|_| ApiError::Runtime("streaming server did not answer".into()))?
            .map_err(|e| ApiError::Runtime(format!("reading from the streaming server: {e}")))?;
        if n == 0 {
            return Err(ApiError::Runtime(
                "streaming server closed the connection".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ApiError::Runtime("malformed response from the streaming server".into()))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((code, headers, rest))
}

#[cfg(test)]
mod tests {
    use super::runtime_speaks_websocket;

    fn offered(protocols: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for p in protocols {
            h.append(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                http::HeaderValue::from_str(p).expect("header value"),
            );
        }
        h
    }

    #[test]
    fn only_protocols_containerd_negotiates_are_relayed_as_websocket() {
        // kubectl 1.32: v5 only for exec, SPDY-in-WebSocket for port-forward → 400, then SPDY.
        assert!(!runtime_speaks_websocket(&offered(&["v5.channel.k8s.io"])));
        assert!(!runtime_speaks_websocket(&offered(&[
            "SPDY/3.1+portforward.k8s.io"
        ])));
        assert!(!runtime_speaks_websocket(&offered(&[])));
        // kube-rs sends one comma-separated header; the Python client offers v4.
        assert!(runtime_speaks_websocket(&offered(&[
            "v5.channel.k8s.io, v4.channel.k8s.io"
        ])));
        assert!(runtime_speaks_websocket(&offered(&["v4.channel.k8s.io"])));
    }
}
