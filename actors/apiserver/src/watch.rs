//! Watch: newline-delimited JSON events streamed as they commit.
//!
//! Rules (upstream's): no resourceVersion or "0" starts with synthetic ADDED events for the
//! current state; "N" sends only changes after N. A compacted N, or a watcher the store dropped
//! for falling behind, gets an in-stream `ERROR` event with a 410 Status (clients relist). Label
//! and field selectors apply to the transitions: an object leaving the selection is DELETED, one
//! entering it ADDED. Bookmarks carry the last delivered revision.

use crate::error::ApiError;
use crate::handlers::{Ctx, list_items, partial_metadata, selected, selectors};
use crate::request::Shape;
use crate::store::{self, Change};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

/// Bookmarks are sent this often when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Upper bound of a watch without timeoutSeconds (clients re-watch).
const MAX_WATCH: Duration = Duration::from_secs(1800);

/// Serve a watch request.
pub async fn serve(ctx: &Ctx<'_>, shape: Shape) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(ctx)?;
    let rv = ctx.q.get("resourceVersion").map(str::to_owned);
    let bookmarks = ctx.q.flag("allowWatchBookmarks");
    let send_initial = ctx.q.flag("sendInitialEvents");
    let timeout = ctx
        .q
        .number("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map_or(MAX_WATCH, |t| Duration::from_secs(t as u64));
    let after = match rv.as_deref() {
        None | Some("0") => None,
        Some(_) if send_initial => None,
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version {n:?}")))?,
        ),
    };
    let root = store::prefix(&ctx.r, None);
    let prefix = store::prefix(&ctx.r, ctx.ns.as_deref());
    let (initial, from, stream) = match ctx
        .s
        .cache
        .subscribe(&ctx.s.store, &root, &prefix, after)
        .await?
    {
        Some(sub) => {
            let from = sub.revision;
            let backlog = futures::stream::iter(
                sub.backlog
                    .into_iter()
                    .map(|e| Ok((e.change.clone(), e.revision))),
            );
            let prefix = prefix.clone();
            let live = futures::stream::unfold(sub.live, move |mut rx| {
                let prefix = prefix.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(e) if e.revision <= from || !e.key.starts_with(&prefix) => continue,
                            Ok(e) => return Some((Ok((e.change.clone(), e.revision)), rx)),
                            Err(_) => {
                                // Lagged or the cache relisted: the client must resume or relist.
                                return Some((
                                    Err(ApiError::Gone(format!(
                                        "too old resource version: {from}"
                                    ))),
                                    rx,
                                ));
                            }
                        }
                    }
                }
            });
            (sub.initial, from, Ok(backlog.chain(live).boxed()))
        }
        None => {
            let (initial, from) = match after {
                None => {
                    let sub = Ctx {
                        s: ctx.s,
                        r: ctx.r.clone(),
                        ns: ctx.ns.clone(),
                        q: strip_limit(ctx.q.clone()),
                        user: ctx.user,
                    };
                    let (items, rev, _) = list_items(&sub).await?;
                    (items, rev)
                }
                Some(n) => (Vec::new(), n),
            };
            (initial, from, ctx.s.store.watch(&prefix, from).await)
        }
    };
    let initial: Vec<Value> = initial
        .into_iter()
        .filter(|o| selected(o, &labels, &fields))
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let encoder = Encoder {
        shape,
        printer: crate::printing::Printer::new(ctx),
        headers_sent: false,
    };
    let kind = ctx.r.kind.clone();
    let api_version = ctx.r.api_version();
    tokio::spawn(async move {
        let mut enc = encoder;
        let mut last = from;
        let send = |line: Value| {
            let mut b = serde_json::to_vec(&line).unwrap_or_default();
            b.push(b'\n');
            bytes::Bytes::from(b)
        };
        for obj in initial {
            if tx.send(Ok(send(enc.event("ADDED", &obj)))).await.is_err() {
                return;
            }
        }
        let bookmark = |rv: i64| json!({"type":"BOOKMARK","object":{"kind": kind, "apiVersion": api_version, "metadata":{"resourceVersion": rv.to_string()}}});
        if send_initial && bookmarks {
            let mut b = bookmark(last);
            b["object"]["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if tx.send(Ok(send(b))).await.is_err() {
                return;
            }
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Ok(send(error_event(&e)))).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(Ok(send(bookmark(last)))).await;
                    }
                    return;
                }
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(send(bookmark(last)))).await.is_err() { return; }
                }
                ev = stream.next() => {
                    let Some(ev) = ev else { return };
                    let (change, rev) = match ev {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = tx.send(Ok(send(error_event(&e)))).await;
                            return;
                        }
                    };
                    last = rev;
                    let out = match change {
                        Change::Put { obj, prev } => {
                            let now = selected(&obj, &labels, &fields);
                            let before = prev.as_ref().is_some_and(|p| selected(p, &labels, &fields));
                            match (before, now) {
                                (false, true) => Some(enc.event("ADDED", &obj)),
                                (true, true) => Some(enc.event("MODIFIED", &obj)),
                                (true, false) => Some(enc.event("DELETED", &obj)),
                                (false, false) => None,
                            }
                        }
                        Change::Delete { obj } => selected(&obj, &labels, &fields).then(|| enc.event("DELETED", &obj)),
                    };
                    if let Some(line) = out
                        && tx.send(Ok(send(line))).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

fn strip_limit(q: crate::request::Query) -> crate::request::Query {
    q.without(&["limit", "continue"])
}

fn error_event(e: &ApiError) -> Value {
    json!({"type": "ERROR", "object": serde_json::to_value(e.status()).unwrap_or_default()})
}

/// Shapes each event's object the way the client asked (plain, metadata-only, or a one-row Table
/// whose column definitions are sent only with the first event).
struct Encoder {
    shape: Shape,
    printer: crate::printing::Printer,
    headers_sent: bool,
}

impl Encoder {
    fn event(&mut self, ty: &str, obj: &Value) -> Value {
        let object = match self.shape {
            Shape::Object => obj.clone(),
            Shape::Metadata => partial_metadata(obj),
            Shape::Table => {
                let t = self
                    .printer
                    .table(std::slice::from_ref(obj), !self.headers_sent);
                self.headers_sent = true;
                t
            }
        };
        json!({"type": ty, "object": object})
    }
}
