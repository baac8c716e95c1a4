//! Node proxying through the API server: `pods/log`, `pods/exec` against a fake kubelet on a
//! unix socket. The API server is served over TCP with HTTP upgrades as the front door serves
//! it, so upgraded connections are spliced end to end.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tower::ServiceExt;

/// What the fake kubelet saw: one line per request (`METHOD path?query x-stream-versions`).
type Seen = Arc<Mutex<Vec<String>>>;

/// A tiny kubelet: fixed log text (echoing the query), and an `/exec` that upgrades SPDY
/// requests and echoes bytes, refusing WebSocket ones with a 400 as an old kubelet would.
async fn fake_kubelet(listener: UnixListener, seen: Seen) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let versions: Vec<&str> = req
                        .headers()
                        .get_all("x-stream-protocol-version")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    let pq = req.uri().path_and_query().unwrap().to_string();
                    seen.lock().unwrap().push(format!(
                        "{} {pq} {}",
                        req.method(),
                        versions.join(",")
                    ));
                    let path = req.uri().path().to_owned();
                    let upgrade = req
                        .headers()
                        .get("upgrade")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let resp = if path.starts_with("/containerLogs/") {
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from(format!(
                                "line-0\nline-1\nquery={}\n",
                                req.uri().query().unwrap_or("")
                            ))))
                            .unwrap()
                    } else if path.starts_with("/exec/") && upgrade == "SPDY/3.1" {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            let mut buf = [0u8; 1024];
                            loop {
                                let n = io.read(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    break;
                                }
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                        Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "Upgrade")
                            .header("upgrade", "SPDY/3.1")
                            .header("x-stream-protocol-version", "v4.channel.k8s.io")
                            .body(Full::new(Bytes::new()))
                            .unwrap()
                    } else {
                        Response::builder()
                            .status(StatusCode::BAD_REQUEST)
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from_static(b"websocket not handled here")))
                            .unwrap()
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

struct UnixDialer(PathBuf, Seen);

impl apiserver::KubeletDialer for UnixDialer {
    fn dial(
        &self,
        node: &str,
    ) -> futures::future::BoxFuture<'static, std::io::Result<Box<dyn apiserver::KubeletStream>>>
    {
        let path = self.0.clone();
        self.1.lock().unwrap().push(format!("dial {node}"));
        Box::pin(async move {
            let s = UnixStream::connect(path).await?;
            Ok(Box::new(s) as Box<dyn apiserver::KubeletStream>)
        })
    }
}

/// Serve the API over TCP as the front door does (HTTP/1.1 and 2, upgrades, an admin user).
async fn serve_api(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = router
                .clone()
                .map_request(|mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(protocols::user::UserInfo::authenticated(
                            "admin",
                            [protocols::user::MASTERS.to_owned()],
                        ));
                    req
                });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 request on a fresh connection; the response with its body unread.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap()
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let resp = send(addr, method, path, &[], body).await;
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn status(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["kind"], "Status", "{body}");
    (
        v["reason"].as_str().unwrap_or("").to_owned(),
        v["message"].as_str().unwrap_or("").to_owned(),
    )
}

fn pod(name: &str, node: Option<&str>, containers: &[&str]) -> String {
    let cs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d"},
                       "spec": {"containers": cs}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_reach_the_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let config = apiserver::ApiConfig {
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        advertise: "127.0.0.1:6443".into(),
        endpoint: ("127.0.0.1".parse().unwrap(), 6443),
    };
    let state = apiserver::ApiState::open("", dir.path(), config)
        .await
        .unwrap();
    apiserver::bootstrap(&state).await.unwrap();
    let addr = serve_api(apiserver::router(state.clone())).await;

    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d"}});
    assert_eq!(
        call(addr, Method::POST, "/api/v1/namespaces", &ns.to_string())
            .await
            .0,
        StatusCode::CREATED
    );
    for (name, node, cs) in [
        ("p", Some("n1"), &["c"][..]),
        ("multi", Some("n1"), &["a", "b"][..]),
        ("unbound", None, &["c"][..]),
        ("waiting", Some("n1"), &["c"][..]),
    ] {
        let (code, body) = call(
            addr,
            Method::POST,
            "/api/v1/namespaces/d/pods",
            &pod(name, node, cs),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let (code, body) = call(addr, Method::GET, "/api/v1/namespaces/d/pods/waiting", "").await;
    assert_eq!(code, StatusCode::OK);
    let mut waiting: Value = serde_json::from_str(&body).unwrap();
    waiting["status"] = json!({"phase": "Pending", "containerStatuses": [
        {"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    let (code, body) = call(
        addr,
        Method::PUT,
        "/api/v1/namespaces/d/pods/waiting/status",
        &waiting.to_string(),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");

    // Events of one object, as `kubectl get events --field-selector involvedObject.name=X`.
    for (n, obj) in [("e1", "noimage"), ("e2", "other")] {
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": n, "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": obj, "namespace": "d"}, "reason": "Failed",
            "message": "Failed to pull image \"registry.invalid/none/such:1.0\"", "type": "Warning"});
        let (code, body) = call(
            addr,
            Method::POST,
            "/api/v1/namespaces/d/events",
            &ev.to_string(),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let (code, body) = call(
        addr,
        Method::GET,
        "/api/v1/namespaces/d/events?fieldSelector=involvedObject.name%3Dnoimage",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["e1"]);

    // Without a dialer no node can be reached.
    let (code, body) = call(addr, Method::GET, "/api/v1/namespaces/d/pods/p/log", "").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (reason, message) = status(&body);
    assert_eq!(reason, "ServiceUnavailable");
    assert!(message.contains("\"n1\""), "{message}");

    let seen: Seen = Arc::default();
    let sock = dir.path().join("kubelet.sock");
    tokio::spawn(fake_kubelet(
        UnixListener::bind(&sock).unwrap(),
        seen.clone(),
    ));
    state.set_kubelet_dialer(Arc::new(UnixDialer(sock, seen.clone())));

    // Logs: the only container is the default; log options reach the kubelet, others do not.
    let (code, body) = call(
        addr,
        Method::GET,
        "/api/v1/namespaces/d/pods/p/log?tailLines=1&follow=false&pretty=true",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body, "line-0\nline-1\nquery=tailLines=1&follow=false\n");
    assert!(seen.lock().unwrap().contains(&"dial n1".to_owned()));
    let (code, body) = call(
        addr,
        Method::GET,
        "/api/v1/namespaces/d/pods/multi/log?container=b",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(
        seen.lock()
            .unwrap()
            .contains(&"GET /containerLogs/d/multi/b ".to_owned()),
        "{:?}",
        seen.lock().unwrap()
    );

    // Error statuses, in upstream's words.
    for (path, want_code, want_reason, want_message) in [
        (
            "/api/v1/namespaces/d/pods/absent/log",
            StatusCode::NOT_FOUND,
            "NotFound",
            "pods \"absent\" not found",
        ),
        (
            "/api/v1/namespaces/d/pods/unbound/log",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "pod unbound does not have a host assigned",
        ),
        (
            "/api/v1/namespaces/d/pods/multi/log",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "a container name must be specified for pod multi, choose one of: [a b]",
        ),
        (
            "/api/v1/namespaces/d/pods/p/log?container=x",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "container x is not valid for pod p",
        ),
        (
            "/api/v1/namespaces/d/pods/waiting/log",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "container \"c\" in pod \"waiting\" is waiting to start: ContainerCreating",
        ),
        (
            // Not an upgrade request.
            "/api/v1/namespaces/d/pods/p/exec?command=ls",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required",
        ),
    ] {
        let (code, body) = call(addr, Method::GET, path, "").await;
        assert_eq!(code, want_code, "{path}: {body}");
        assert_eq!(
            status(&body),
            (want_reason.to_owned(), want_message.to_owned()),
            "{path}"
        );
    }
    let (code, _) = call(addr, Method::POST, "/api/v1/namespaces/d/pods/p/log", "{}").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);

    // A refused WebSocket upgrade comes back verbatim (kubectl then falls back to SPDY).
    let resp = send(
        addr,
        Method::GET,
        "/api/v1/namespaces/d/pods/p/exec?command=echo&command=hi&stdout=true",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ],
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"websocket not handled here");

    // SPDY: 101 with the kubelet's headers, then bytes echo through both splices.
    let resp = send(
        addr,
        Method::POST,
        "/api/v1/namespaces/d/pods/p/exec?command=echo&command=hi&container=c&stdout=true",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ],
        "",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    for msg in [&b"hello"[..], b"through the splice"] {
        io.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(std::time::Duration::from_secs(5), io.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(
            &"POST /exec/d/p/c?command=echo&command=hi&stdout=true v5.channel.k8s.io,v4.channel.k8s.io"
                .to_owned()
        ),
        "{seen:?}"
    );
}

/// The in-process router has no connection to upgrade: exec says so instead of hanging.
#[tokio::test]
async fn exec_without_a_connection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = apiserver::ApiConfig {
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        advertise: "127.0.0.1:6443".into(),
        endpoint: ("127.0.0.1".parse().unwrap(), 6443),
    };
    let state = apiserver::ApiState::open("", dir.path(), config)
        .await
        .unwrap();
    apiserver::bootstrap(&state).await.unwrap();
    let router = apiserver::router(state);
    let admin =
        protocols::user::UserInfo::authenticated("admin", [protocols::user::MASTERS.to_owned()]);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces/default/pods")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            pod("p", Some("n1"), &["c"]).replace("\"d\"", "\"default\""),
        ))
        .unwrap();
    req.extensions_mut().insert(admin.clone());
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces/default/pods/p/exec?command=ls")
        .header("upgrade", "SPDY/3.1")
        .header("connection", "Upgrade")
        .body(axum::body::Body::empty())
        .unwrap();
    req.extensions_mut().insert(admin);
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
