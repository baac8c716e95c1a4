//! The routes the front door answers itself, before anything reaches the API server.

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use kernel::{Kernel, KernelError, Status as ActorStatus};
use metrics_exporter_prometheus::PrometheusHandle;
use protocols::status::Status;
use protocols::user::{MASTERS, UserInfo};
use std::collections::HashMap;
use std::fmt::Write;

/// What the built-in routes need.
#[derive(Clone, Debug)]
pub struct ListenerState {
    /// The kernel, for `/debug/actors` and the actor metrics.
    pub kernel: Kernel,
    /// The CA bundle `/cacerts` serves (the bytes the join token's hash covers).
    pub cacerts: Bytes,
    /// Renders the process's Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
}

/// The front door's routes, with everything else going to `api`.
pub fn router(state: ListenerState, api: Router) -> Router {
    Router::new()
        .route("/ping", get(|| async { text("pong") }))
        .route("/cacerts", get(cacerts))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/metrics", get(metrics))
        .route("/debug/actors", get(actors))
        .route("/debug/actors/{verb}", post(control))
        .with_state(state)
        .fallback_service(api)
        .layer(axum::middleware::from_fn(count_requests))
}

async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    metrics::counter!("k3s_http_requests_total", "method" => method.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("k3s_http_request_duration_seconds", "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}

fn text(body: impl Into<Body>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A `metav1.Status` response.
pub fn status(s: Status) -> Response {
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&s).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn cacerts(State(s): State<ListenerState>) -> Response {
    text(s.cacerts.clone())
}

async fn health(State(s): State<ListenerState>) -> Response {
    let snap = s.kernel.snapshot();
    let failed: Vec<&str> = snap
        .nodes
        .iter()
        .filter(|n| n.status == ActorStatus::Failed)
        .map(|n| n.path.as_str())
        .collect();
    if failed.is_empty() {
        text("ok")
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed actors: {}", failed.join(", ")),
        )
            .into_response()
    }
}

fn require(user: &UserInfo, masters_only: bool, what: &str) -> Result<(), Response> {
    if !user.is_authenticated() {
        return Err(status(Status::unauthorized()));
    }
    if masters_only && !user.in_group(MASTERS) {
        return Err(status(Status::forbidden(&user.name, what)));
    }
    Ok(())
}

fn identity(user: Option<Extension<UserInfo>>) -> UserInfo {
    user.map(|Extension(u)| u)
        .unwrap_or_else(UserInfo::anonymous)
}

async fn metrics(State(s): State<ListenerState>, user: Option<Extension<UserInfo>>) -> Response {
    if let Err(r) = require(&identity(user), false, "get path \"/metrics\"") {
        return r;
    }
    let mut out = s
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let snap = s.kernel.snapshot();
    let _ = writeln!(out, "# TYPE k3s_actor_up gauge");
    for n in &snap.nodes {
        let _ = writeln!(
            out,
            "k3s_actor_up{{path=\"{}\"}} {}",
            n.path,
            u8::from(n.status == ActorStatus::Running)
        );
    }
    let _ = writeln!(out, "# TYPE k3s_actor_restarts_total counter");
    for n in &snap.nodes {
        let _ = writeln!(
            out,
            "k3s_actor_restarts_total{{path=\"{}\"}} {}",
            n.path, n.restarts
        );
    }
    let _ = writeln!(out, "# TYPE k3s_actor_messages_handled_total counter");
    for n in &snap.nodes {
        let _ = writeln!(
            out,
            "k3s_actor_messages_handled_total{{path=\"{}\"}} {}",
            n.path, n.handled
        );
    }
    let _ = writeln!(out, "# TYPE k3s_actor_mailbox_depth gauge");
    for n in &snap.nodes {
        if let Some(m) = &n.mailbox {
            let _ = writeln!(
                out,
                "k3s_actor_mailbox_depth{{path=\"{}\"}} {}",
                n.path, m.depth
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn actors(State(s): State<ListenerState>, user: Option<Extension<UserInfo>>) -> Response {
    if let Err(r) = require(&identity(user), true, "get path \"/debug/actors\"") {
        return r;
    }
    axum::Json(s.kernel.snapshot()).into_response()
}

async fn control(
    State(s): State<ListenerState>,
    user: Option<Extension<UserInfo>>,
    Path(verb): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = require(&identity(user), true, "post path \"/debug/actors\"") {
        return r;
    }
    let Some(path) = q.get("path").filter(|p| !p.is_empty()) else {
        return status(Status::failure(
            400,
            "BadRequest",
            "the 'path' query parameter names the actor",
        ));
    };
    let result = match verb.as_str() {
        "restart" => s.kernel.restart(path).await,
        "stop" => s.kernel.stop(path).await,
        "start" => s.kernel.start_child(path).await,
        "panic" => s.kernel.inject_panic(path).await,
        other => {
            return status(Status::failure(
                404,
                "NotFound",
                format!("unknown actor control '{other}' (restart, stop, start, panic)"),
            ));
        }
    };
    match result {
        Ok(()) => {
            let node = s
                .kernel
                .snapshot()
                .nodes
                .into_iter()
                .find(|n| &n.path == path);
            axum::Json(node).into_response()
        }
        Err(e) => status(kernel_error_status(&e)),
    }
}

fn kernel_error_status(e: &KernelError) -> Status {
    match e {
        KernelError::NotFound { .. } => Status::failure(404, "NotFound", e.to_string()),
        KernelError::AlreadyRunning { .. } | KernelError::NotRunning { .. } => {
            Status::failure(409, "Conflict", e.to_string())
        }
        _ => Status::failure(500, "InternalError", e.to_string()),
    }
}
