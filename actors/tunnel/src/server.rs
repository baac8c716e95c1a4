//! Server side: `GET /v1-k3s/connect` (WebSocket upgrade) and the registry of connected nodes.
//!
//! Only a client certificate of a node (`CN=system:node:<name>`, group `system:nodes`) may
//! connect, and its session is registered under that name: a node can only carry its own
//! kubelet's traffic. A new connection of a node replaces its old one.

use crate::mux::{self, Session};
use crate::{CONNECT_PATH, KUBELET_TARGET};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use protocols::user::UserInfo;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The nodes connected to this server, by name.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: Mutex<HashMap<String, (u64, Arc<Session>)>>,
    serial: AtomicU64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Whether `node` has a live tunnel.
    pub fn is_connected(&self, node: &str) -> bool {
        self.inner
            .sessions
            .lock()
            .get(node)
            .is_some_and(|(_, s)| !s.is_closed())
    }

    /// The names of the connected nodes.
    pub fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.sessions.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// A new stream to `node`'s kubelet.
    pub async fn dial(&self, node: &str) -> std::io::Result<DuplexStream> {
        let session = self
            .inner
            .sessions
            .lock()
            .get(node)
            .map(|(_, s)| s.clone())
            .filter(|s| !s.is_closed());
        let Some(session) = session else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "node {node} has no tunnel to this server (is its agent running and connected?)"
                ),
            ));
        };
        session.open(KUBELET_TARGET).await
    }

    fn register(&self, node: &str, session: Arc<Session>) -> u64 {
        let id = self.inner.serial.fetch_add(1, Ordering::Relaxed);
        if let Some((_, old)) = self
            .inner
            .sessions
            .lock()
            .insert(node.to_owned(), (id, session))
        {
            old.close();
        }
        id
    }

    fn unregister(&self, node: &str, id: u64) {
        let mut m = self.inner.sessions.lock();
        if m.get(node).is_some_and(|(i, _)| *i == id) {
            m.remove(node);
        }
    }

    /// Close every session (shutdown).
    pub fn close_all(&self) {
        for (_, (_, s)) in self.inner.sessions.lock().drain() {
            s.close();
        }
    }
}

/// The `/v1-k3s/connect` route.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route(CONNECT_PATH, get(connect))
        .with_state(registry)
}

fn refuse(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn connect(State(registry): State<Registry>, mut req: Request) -> Response {
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous);
    if !user.is_authenticated() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the tunnel needs a node's client certificate".into(),
        );
    }
    let node = match user.name.strip_prefix("system:node:") {
        Some(n) if !n.is_empty() && user.in_group("system:nodes") => n.to_owned(),
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("user {} is not a node; only nodes open tunnels", user.name),
            );
        }
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade (Sec-WebSocket-Key) is required".into(),
        );
    };
    if !upgrade {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is required".into(),
        );
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%node, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (session, out) = Session::new();
        let id = registry.register(&node, session.clone());
        tracing::info!(%node, "agent tunnel connected");
        let result = mux::run(ws, session, out, None).await;
        registry.unregister(&node, id);
        match result {
            Ok(()) => tracing::info!(%node, "agent tunnel closed"),
            Err(e) => tracing::warn!(%node, error = %e, "agent tunnel lost"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
