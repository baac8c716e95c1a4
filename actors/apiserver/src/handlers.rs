//! Request handling: routing an authenticated request to discovery, OpenAPI, or a resource verb,
//! and the verbs themselves (get, list, create, update, patch, delete, deletecollection and
//! the status/scale/binding subresources). Watch lives in [`crate::watch`].

use crate::admission;
use crate::error::{ApiError, Cause};
use crate::meta::{self, meta_str};
use crate::request::{self, Query, ResourcePath, Shape, Target};
use crate::resources::Resource;
use crate::store::{self, ObjectStore};
use crate::{ApiState, crd, discovery, openapi, services, watch};
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datastore::Revision;
use http_body_util::BodyExt;
use protocols::patch::GroupKind;
use protocols::selector::{FieldSelector, LabelSelector};
use protocols::user::UserInfo;
use serde_json::{Value, json};
use std::sync::Arc;

/// How many times a read-modify-write retries when another writer got there first.
const UPDATE_RETRIES: usize = 16;

/// Serve one request (the router's fallback for everything the front door does not own).
pub async fn serve(state: ApiState, req: axum::extract::Request) -> Response {
    let given = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous);
    let verb = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = std::time::Instant::now();
    let identity = crate::authn::identify(&state, given, req.headers()).await;
    let name = identity.as_ref().map_or("", |u| u.name.as_str());
    let span = tracing::info_span!("api", %verb, %path, user = %name);
    let _enter = span.enter();
    let resp = match identity {
        Ok(user) => route(&state, req, &user).await,
        Err(e) => Err(e),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            e.into_response()
        }
    };
    let resource = request::parse_path(&path)
        .and_then(|t| match t {
            Target::Resource(p) => Some(p.resource),
            _ => None,
        })
        .unwrap_or_default();
    metrics::counter!("apiserver_request_total", "verb" => verb.to_string(), "resource" => resource.clone(), "code" => resp.status().as_u16().to_string()).increment(1);
    metrics::histogram!("apiserver_request_duration_seconds", "verb" => verb.to_string(), "resource" => resource).record(start.elapsed().as_secs_f64());
    resp
}

/// A JSON response.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut resp = (code, serde_json::to_vec(v).unwrap_or_default()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, request::MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge {
                limit: request::MAX_BODY,
            })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

async fn route(
    s: &ApiState,
    req: axum::extract::Request,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if !user.is_authenticated() {
        return Err(ApiError::Unauthorized);
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let q = Query::parse(parts.uri.query());
    if path == "/version" || path == "/version/" {
        return Ok(json_response(StatusCode::OK, &discovery::version()));
    }
    if path == "/.well-known/openid-configuration" {
        return Ok(json_response(
            StatusCode::OK,
            &crate::authn::openid_configuration(s)?,
        ));
    }
    if path == "/openid/v1/jwks" {
        let mut resp = json_response(StatusCode::OK, &crate::authn::jwks(s)?);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        return Ok(resp);
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        return openapi::serve(s, rest.trim_start_matches('/'));
    }
    let Some(target) = request::parse_path(path) else {
        return Err(ApiError::NoRoute);
    };
    let cat = &s.catalogue;
    let doc = match target {
        Target::CoreVersions => match discovery::aggregated_version(&parts.headers) {
            Some(v) => return Ok(aggregated(discovery::aggregated(cat, true, v), v)),
            None => discovery::core_versions(&s.config.advertise),
        },
        Target::Groups => match discovery::aggregated_version(&parts.headers) {
            Some(v) => return Ok(aggregated(discovery::aggregated(cat, false, v), v)),
            None => discovery::groups(cat),
        },
        Target::Group(g) => discovery::group(cat, &g).ok_or(ApiError::NoRoute)?,
        Target::GroupVersion { group, version } => {
            discovery::resource_list(cat, &group, &version).ok_or(ApiError::NoRoute)?
        }
        Target::Resource(p) if crate::nodeproxy::serves(&p) => {
            return crate::nodeproxy::serve(s, parts, body, p, user).await;
        }
        Target::Resource(p) => {
            return resource(s, parts.method, &parts.headers, p, q, body, user).await;
        }
    };
    Ok(json_response(StatusCode::OK, &doc))
}

fn aggregated(doc: Value, v: &str) -> Response {
    let mut resp = json_response(StatusCode::OK, &doc);
    if let Ok(ct) = HeaderValue::from_str(&discovery::aggregated_content_type(v)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// What one resource request is about, resolved against the catalogue.
pub struct Ctx<'a> {
    /// Shared server state.
    pub s: &'a ApiState,
    /// The resource.
    pub r: Arc<Resource>,
    /// The namespace (for namespaced resources).
    pub ns: Option<String>,
    /// The query.
    pub q: Query,
    /// Who asks.
    pub user: &'a UserInfo,
}

impl Ctx<'_> {
    /// `plural` or `plural.group`, as upstream names resources in messages.
    pub fn qualified(&self) -> String {
        if self.r.group.is_empty() {
            self.r.plural.clone()
        } else {
            format!("{}.{}", self.r.plural, self.r.group)
        }
    }

    fn key(&self, name: &str) -> String {
        store::key(&self.r, self.ns.as_deref(), name)
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: self.qualified(),
            name: name.to_owned(),
        }
    }

    fn store(&self) -> &ObjectStore {
        &self.s.store
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    s: &ApiState,
    method: Method,
    headers: &axum::http::HeaderMap,
    p: ResourcePath,
    q: Query,
    body: Body,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let r = s
        .catalogue
        .find(&p.group, &p.version, &p.resource)
        .ok_or(ApiError::NoRoute)?;
    if p.namespace.is_some() && !r.namespaced {
        return Err(ApiError::NoRoute);
    }
    if let Some(sub) = &p.subresource
        && !r.has_subresource(sub)
    {
        return Err(ApiError::NoRoute);
    }
    let shape = request::response_shape(headers)?;
    let ctx = Ctx {
        s,
        r,
        ns: p.namespace.clone(),
        q,
        user,
    };
    let ct = request::content_type(headers);
    match (method.clone(), p.name.as_deref(), p.subresource.as_deref()) {
        (Method::GET, None, None) if ctx.q.flag("watch") => watch::serve(&ctx, shape).await,
        (Method::GET, None, None) => list(&ctx, shape).await,
        (Method::POST, None, None) => {
            let body = read_body(body).await?;
            let obj = request::decode_object(&ct, &body)?;
            if ctx.r.kind == "TokenReview" {
                return crate::authn::token_review(&ctx, obj)
                    .await
                    .map(|v| json_response(StatusCode::CREATED, &v));
            }
            if !ctx.r.is_readable() {
                return crate::reviews::create(&ctx, obj)
                    .map(|v| json_response(StatusCode::CREATED, &v));
            }
            let created = create(&ctx, obj).await?;
            Ok(json_response(
                if ctx.q.dry_run() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &created,
            ))
        }
        (Method::DELETE, None, None) => {
            let body = read_body(body).await?;
            delete_collection(&ctx, &ct, &body)
                .await
                .map(|v| json_response(StatusCode::OK, &v))
        }
        (Method::GET, Some(name), None) => {
            let (obj, _) = get(&ctx, name).await?;
            Ok(render_one(&ctx, shape, obj))
        }
        (
            Method::PUT,
            Some(name),
            sub @ (None | Some("status") | Some("finalize") | Some("approval")),
        ) => {
            let body = read_body(body).await?;
            let obj = request::decode_object(&ct, &body)?;
            let updated = replace(&ctx, name, obj, sub).await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let body = read_body(body).await?;
            let (code, v) = patch(&ctx, name, &ct, &body, sub).await?;
            Ok(json_response(code, &v))
        }
        (Method::DELETE, Some(name), None) => {
            let body = read_body(body).await?;
            let opts = delete_options(&ctx.q, &ct, &body)?;
            let (code, v) = delete(&ctx, name, &opts).await?;
            Ok(json_response(code, &v))
        }
        (Method::GET, Some(name), Some("status")) => {
            let (obj, _) = get(&ctx, name).await?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::GET, Some(name), Some("scale")) => {
            let (obj, _) = get(&ctx, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&ctx, &obj)))
        }
        (Method::PUT | Method::PATCH, Some(name), Some("scale")) => {
            let body = read_body(body).await?;
            let v = update_scale(&ctx, name, method == Method::PUT, &ct, &body).await?;
            Ok(json_response(StatusCode::OK, &v))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let body = read_body(body).await?;
            let binding = request::decode_object(&ct, &body)?;
            bind(&ctx, name, &binding).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
            ))
        }
        (Method::POST, Some(name), Some("token")) => {
            let body = read_body(body).await?;
            let obj = request::decode_object(&ct, &body)?;
            let v = crate::authn::token_request(&ctx, name, obj).await?;
            Ok(json_response(StatusCode::CREATED, &v))
        }
        (Method::POST, Some(name), Some("eviction")) => {
            let (code, v) = delete(&ctx, name, &DeleteOpts::default()).await?;
            let _ = v;
            Ok(json_response(
                if code == StatusCode::OK {
                    StatusCode::CREATED
                } else {
                    code
                },
                &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
            ))
        }
        (_, Some(_), Some(sub)) => Err(ApiError::Unavailable(format!(
            "the {sub} subresource of {} is not served by this server yet",
            ctx.r.plural
        ))),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Read one object or 404.
pub async fn get(ctx: &Ctx<'_>, name: &str) -> Result<(Value, Revision), ApiError> {
    ctx.store()
        .get(&ctx.key(name))
        .await?
        .ok_or_else(|| ctx.not_found(name))
}

fn render_one(ctx: &Ctx<'_>, shape: Shape, obj: Value) -> Response {
    match shape {
        Shape::Object => json_response(StatusCode::OK, &obj),
        Shape::Metadata => json_response(StatusCode::OK, &partial_metadata(&obj)),
        Shape::Table => json_response(
            StatusCode::OK,
            &crate::printing::table(ctx, std::slice::from_ref(&obj), true, &ctx.q),
        ),
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// Selectors from the query, validated for the resource.
pub fn selectors(
    ctx: &Ctx<'_>,
) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let labels = ctx
        .q
        .get("labelSelector")
        .map(LabelSelector::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = ctx
        .q
        .get("fieldSelector")
        .map(FieldSelector::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(f) = &fields {
        f.validate_for(&ctx.r.plural)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok((labels, fields))
}

/// Whether `obj` passes the selectors.
pub fn selected(
    obj: &Value,
    labels: &Option<LabelSelector>,
    fields: &Option<FieldSelector>,
) -> bool {
    let empty = serde_json::Map::new();
    let l = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    labels.as_ref().is_none_or(|s| s.matches(l)) && fields.as_ref().is_none_or(|f| f.matches(obj))
}

/// A continue token: the revision of the first page and the last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: Revision,
    after: String,
}

fn encode_continue(c: &Continue) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<Continue, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::BadRequest("continue key is not valid".into()))
}

/// List the matching objects (one page when `limit` is set).
pub async fn list_items(ctx: &Ctx<'_>) -> Result<(Vec<Value>, Revision, Option<String>), ApiError> {
    let (labels, fields) = selectors(ctx)?;
    let limit = ctx
        .q
        .number("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let prefix = store::prefix(&ctx.r, ctx.ns.as_deref());
    let (mut after, mut at) = (None, None);
    if let Some(c) = ctx.q.get("continue") {
        let c = decode_continue(c)?;
        after = Some(c.after);
        at = Some(c.rv);
    } else if let (Some(rv), Some("Exact")) = (
        ctx.q.get("resourceVersion"),
        ctx.q.get("resourceVersionMatch"),
    ) {
        at = Some(
            rv.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version {rv:?}")))?,
        );
    }
    if at.is_none() {
        // Served from the watch cache unless an exact revision or a later page was asked for.
        let consistent = ctx.q.get("resourceVersion").is_none();
        let root = store::prefix(&ctx.r, None);
        if let Some((all, rev)) = ctx
            .s
            .cache
            .list(ctx.store(), &root, &prefix, consistent)
            .await?
        {
            let mut items: Vec<Value> = all
                .into_iter()
                .filter(|o| selected(o, &labels, &fields))
                .collect();
            let cont = match limit {
                Some(l) if items.len() > l => {
                    items.truncate(l);
                    let last = items.last().map(|o| {
                        store::key(
                            &ctx.r,
                            meta_str(o, "namespace"),
                            meta_str(o, "name").unwrap_or_default(),
                        )
                    });
                    last.map(|after| encode_continue(&Continue { rv: rev, after }))
                }
                _ => None,
            };
            return Ok((items, rev, cont));
        }
    }
    let mut items = Vec::new();
    loop {
        let want = limit.map_or(0, |l| (l - items.len()).max(1));
        let page = ctx.store().list(&prefix, after.as_deref(), want, at).await.map_err(|e| match e {
            ApiError::Gone(m) if ctx.q.get("continue").is_some() => {
                ApiError::Gone(format!("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. ({m})"))
            }
            other => other,
        })?;
        let revision = page.revision;
        at = Some(page.revision);
        items.extend(
            page.items
                .into_iter()
                .filter(|o| selected(o, &labels, &fields)),
        );
        match page.next_after {
            Some(next) if limit.is_some_and(|l| items.len() < l) => after = Some(next),
            Some(next) if limit.is_some() => {
                return Ok((
                    items,
                    revision,
                    Some(encode_continue(&Continue {
                        rv: revision,
                        after: next,
                    })),
                ));
            }
            Some(next) => after = Some(next),
            None => return Ok((items, revision, None)),
        }
    }
}

async fn list(ctx: &Ctx<'_>, shape: Shape) -> Result<Response, ApiError> {
    let (items, rev, cont) = list_items(ctx).await?;
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = &cont {
        meta["continue"] = json!(c);
    }
    let doc = match shape {
        Shape::Table => {
            let mut t = crate::printing::table(ctx, &items, !ctx.q.flag("noHeaders"), &ctx.q);
            t["metadata"] = meta;
            t
        }
        Shape::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Shape::Object => json!({
            "kind": format!("{}List", ctx.r.kind),
            "apiVersion": ctx.r.api_version(),
            "metadata": meta,
            "items": items,
        }),
    };
    Ok(json_response(StatusCode::OK, &doc))
}

fn check_type(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    // A patch can turn the object into anything (`[{"op":"replace","path":"","value":1}]`).
    if !obj.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the object to store must be a JSON object, not {}",
            json_type(obj)
        )));
    }
    let want_av = ctx.r.api_version();
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let same_group = !ctx.r.group.is_empty() && ctx.r.group == group_of(av);
    if (!av.is_empty() && av != want_av && !same_group) || (!kind.is_empty() && kind != ctx.r.kind)
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av}), or the kind ({kind}) is not {}",
            ctx.r.kind
        )));
    }
    obj["apiVersion"] = json!(want_av);
    obj["kind"] = json!(ctx.r.kind);
    let meta = meta::metadata(obj);
    if ctx.r.namespaced {
        let url_ns = ctx.ns.clone().unwrap_or_default();
        match meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(ns) if ns != url_ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// Strict/Warn/Ignore field validation (only Strict rejects; Warn is the server default).
fn field_validation(ctx: &Ctx<'_>, obj: &Value) -> Result<(), ApiError> {
    if ctx.q.get("fieldValidation") != Some("Strict") {
        return Ok(());
    }
    let unknown = match &ctx.r.custom {
        Some(version) => crd::unknown_fields(version, obj),
        None => meta::unknown_fields(&ctx.r.group, &ctx.r.kind, obj, false),
    };
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::BadRequest(format!(
        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {list}",
        ctx.r.kind,
        ctx.r.api_version(),
        ctx.r.kind
    )))
}

async fn namespace_usable(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let Some(ns) = ctx.ns.as_deref().filter(|_| ctx.r.namespaced) else {
        return Ok(());
    };
    let Some(nsr) = ctx.s.catalogue.find("", "v1", "namespaces") else {
        return Ok(());
    };
    match ctx.store().get(&store::key(&nsr, None, ns)).await? {
        None => Err(ApiError::NotFound {
            resource: "namespaces".into(),
            name: ns.into(),
        }),
        Some((n, _)) if n.pointer("/metadata/deletionTimestamp").is_some() => {
            Err(ApiError::Forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                ctx.qualified(),
                meta_str(&n, "name").unwrap_or_default()
            )))
        }
        Some(_) => Ok(()),
    }
}

fn invalid(ctx: &Ctx<'_>, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        kind: ctx.r.kind.clone(),
        name: name.to_owned(),
        group: ctx.r.group.clone(),
        causes,
    }
}

/// Defaults and validation shared by create and update.
fn admit(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    match &ctx.r.custom {
        Some(version) => {
            let mut causes = admission::validate_meta(&ctx.r.group, &ctx.r.kind, obj);
            causes.extend(crd::default_and_validate(version, obj));
            let name = meta_str(obj, "name").unwrap_or_default().to_owned();
            if !causes.is_empty() {
                return Err(invalid(ctx, &name, causes));
            }
        }
        None => {
            admission::apply_defaults(&ctx.r.group, &ctx.r.kind, obj);
            let causes = admission::validate(&ctx.r.group, &ctx.r.kind, obj);
            if !causes.is_empty() {
                let name = meta_str(obj, "name").unwrap_or_default().to_owned();
                return Err(invalid(ctx, &name, causes));
            }
        }
    }
    Ok(())
}

/// Whether objects of this resource carry a `generation` (those with a spec).
fn has_generation(obj: &Value) -> bool {
    obj.get("spec").is_some()
}

fn managed_entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": meta::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    if let Some(sub) = subresource {
        e["subresource"] = json!(sub);
    }
    e
}

/// Record an Update by `fieldManager` (default: the user agent's stand-in, the user name).
fn record_update(ctx: &Ctx<'_>, old: Option<&Value>, new: &mut Value, subresource: Option<&str>) {
    let manager = ctx.q.get("fieldManager").unwrap_or("unknown").to_owned();
    let existing: Vec<Value> = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let fields = protocols::patch::update_managed_fields(
        old,
        new,
        &manager,
        &existing,
        GroupKind::new(&ctx.r.group, &ctx.r.kind),
        &ctx.r.api_version(),
        &meta::now_rfc3339(),
    );
    let mut fields = fields;
    if let Some(sub) = subresource {
        for f in &mut fields {
            if f["manager"] == manager.as_str() && f["operation"] == "Update" {
                f["subresource"] = json!(sub);
            }
        }
    }
    if fields.is_empty() {
        fields.push(managed_entry(
            &manager,
            "Update",
            &ctx.r.api_version(),
            subresource,
        ));
    }
    meta::metadata(new).insert("managedFields".into(), Value::Array(fields));
}

/// How a write records field ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// A non-apply write: the field manager takes the fields it changed (operation Update).
    Update,
    /// Server-side apply: the caller has already computed managedFields.
    Apply,
}

/// Create an object (POST).
pub async fn create(ctx: &Ctx<'_>, obj: Value) -> Result<Value, ApiError> {
    create_as(ctx, obj, Write::Update).await
}

/// Create an object, recording ownership per `mode`.
pub async fn create_as(ctx: &Ctx<'_>, mut obj: Value, mode: Write) -> Result<Value, ApiError> {
    check_type(ctx, &mut obj)?;
    field_validation(ctx, &obj)?;
    {
        let m = meta::metadata(&mut obj);
        if m.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(g) = m
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
        {
            let name = format!("{g}{}", meta::name_suffix());
            m.insert("name".into(), json!(name));
        }
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    namespace_usable(ctx).await?;
    // Status is written through its subresource (built-in namespaces and nodes excepted).
    let drops_status = ctx.r.has_subresource("status")
        && (ctx.r.custom.is_some() || (ctx.r.kind != "Namespace" && ctx.r.kind != "Node"));
    if drops_status && let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    admit(ctx, &mut obj)?;
    let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    let generated = has_generation(&obj);
    {
        let m = meta::metadata(&mut obj);
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        if generated {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if mode == Write::Update {
        record_update_create(ctx, &mut obj);
    }
    if ctx.r.kind == "CustomResourceDefinition" {
        crd::prepare(&mut obj).map_err(|causes| invalid(ctx, &name, causes))?;
    }
    if ctx.q.dry_run() {
        if ctx.store().get(&ctx.key(&name)).await?.is_some() {
            return Err(ApiError::AlreadyExists {
                resource: ctx.qualified(),
                name,
            });
        }
        return Ok(obj);
    }
    let is_service = ctx.r.group.is_empty() && ctx.r.kind == "Service";
    if is_service && ctx.store().get(&ctx.key(&name)).await?.is_some() {
        // Checked before reserving addresses, so an existing Service never makes its own IP look taken.
        return Err(ApiError::AlreadyExists {
            resource: ctx.qualified(),
            name,
        });
    }
    let allocated = if is_service {
        services::allocate(ctx.s, &mut obj, None)
            .await
            .map_err(|causes| invalid(ctx, &name, causes))?
    } else {
        services::Allocation::default()
    };
    let ttl = (ctx.r.kind == "Event").then(|| std::time::Duration::from_secs(3600));
    match ctx.store().create(&ctx.key(&name), &obj, ttl).await {
        Ok(Some(created)) => {
            if ctx.r.kind == "CustomResourceDefinition" {
                crd::sync(ctx.s, &created);
            }
            Ok(created)
        }
        Ok(None) => {
            services::release(ctx.s, &allocated).await;
            Err(ApiError::AlreadyExists {
                resource: ctx.qualified(),
                name,
            })
        }
        Err(e) => {
            services::release(ctx.s, &allocated).await;
            Err(e)
        }
    }
}

fn record_update_create(ctx: &Ctx<'_>, obj: &mut Value) {
    let manager = ctx.q.get("fieldManager").unwrap_or("unknown").to_owned();
    let fields = protocols::patch::update_managed_fields(
        None,
        obj,
        &manager,
        &[],
        GroupKind::new(&ctx.r.group, &ctx.r.kind),
        &ctx.r.api_version(),
        &meta::now_rfc3339(),
    );
    let fields = if fields.is_empty() {
        vec![managed_entry(
            &manager,
            "Update",
            &ctx.r.api_version(),
            None,
        )]
    } else {
        fields
    };
    meta::metadata(obj).insert("managedFields".into(), Value::Array(fields));
}

/// Read-modify-write with retries on concurrent changes. `f` gets the current object and
/// returns the new one (or an error, e.g. a precondition failure). Returns the stored result,
/// or the deleted object when finalization completes.
pub async fn update_with<F>(
    ctx: &Ctx<'_>,
    name: &str,
    sub: Option<&str>,
    mode: Write,
    mut f: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    for _ in 0..UPDATE_RETRIES {
        let (current, rev) = get(ctx, name).await?;
        let mut new = f(&current)?;
        finish_update(ctx, &current, &mut new, sub, mode)?;
        if ctx.q.dry_run() {
            return Ok(new);
        }
        if finalized(&new) {
            return match ctx.store().delete(&ctx.key(name), rev).await? {
                Some(gone) => {
                    after_delete(ctx, &gone).await;
                    Ok(gone)
                }
                None => continue,
            };
        }
        if new == current {
            return Ok(current);
        }
        let old_svc = (ctx.r.group.is_empty() && ctx.r.kind == "Service").then(|| current.clone());
        let alloc = match &old_svc {
            Some(old) => services::allocate(ctx.s, &mut new, Some(old))
                .await
                .map_err(|c| invalid(ctx, name, c))?,
            None => services::Allocation::default(),
        };
        match ctx.store().update(&ctx.key(name), rev, &new).await? {
            Some(stored) => {
                if let Some(old) = &old_svc {
                    services::release_replaced(ctx.s, old, &stored).await;
                }
                if ctx.r.kind == "CustomResourceDefinition" {
                    crd::sync(ctx.s, &stored);
                }
                return Ok(stored);
            }
            None => services::release(ctx.s, &alloc).await,
        }
    }
    Err(ApiError::Conflict {
        resource: ctx.qualified(),
        name: name.into(),
        reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
    })
}

/// Keep what a write may not change, default and validate, bump the generation.
fn finish_update(
    ctx: &Ctx<'_>,
    current: &Value,
    new: &mut Value,
    sub: Option<&str>,
    mode: Write,
) -> Result<(), ApiError> {
    check_type(ctx, new)?;
    let name = meta_str(current, "name").unwrap_or_default().to_owned();
    if meta_str(new, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(new, "name").unwrap_or_default()
        )));
    }
    {
        let cur_meta = current.get("metadata").cloned().unwrap_or(json!({}));
        let m = meta::metadata(new);
        m.insert("name".into(), json!(name));
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match cur_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.remove("resourceVersion");
    }
    match sub {
        // The status subresource changes only status (and metadata the owner may touch).
        Some("status") => {
            let status = new.get("status").cloned();
            let mut merged = current.clone();
            match status {
                Some(st) => merged["status"] = st,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if let Some(m) = new.get("metadata").cloned() {
                merged["metadata"] = m;
            }
            *new = merged;
        }
        Some("binding") => {}
        Some("finalize") => {
            let fin = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let mut merged = current.clone();
            merged["spec"]["finalizers"] = fin;
            *new = merged;
        }
        _ if ctx.r.has_subresource("status") => match current.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        },
        _ => {}
    }
    if sub.is_none() || sub == Some("status") {
        admit(ctx, new)?;
    }
    if ctx.r.kind == "CustomResourceDefinition" {
        crd::prepare(new).map_err(|c| invalid(ctx, &name, c))?;
    }
    let spec_changed = new.get("spec") != current.get("spec")
        || ctx.r.custom.is_none() && non_meta_changed(current, new);
    if has_generation(new) && spec_changed && sub.is_none() {
        let g = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta::metadata(new).insert("generation".into(), json!(g));
    }
    if mode == Write::Update {
        record_update(ctx, Some(current), new, sub);
    }
    Ok(())
}

/// Changes outside metadata and status (for kinds whose "spec" is top-level, like ConfigMap;
/// those have no generation, so only spec matters in practice).
fn non_meta_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(a).get("spec") != strip(b).get("spec")
}

/// An object marked for deletion whose finalizers are all gone is deleted.
fn finalized(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
        && o.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        && o.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        && !(o.get("kind") == Some(&json!("Pod"))
            && o.pointer("/spec/nodeName").is_some()
            && o.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0)
}

async fn replace(
    ctx: &Ctx<'_>,
    name: &str,
    obj: Value,
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    field_validation(ctx, &obj)?;
    let want_rv = meta_str(&obj, "resourceVersion").map(str::to_owned);
    update_with(ctx, name, sub, Write::Update, |current| {
        if let Some(rv) = &want_rv
            && meta_str(current, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::Conflict {
                resource: ctx.qualified(),
                name: name.into(),
                reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
        Ok(obj.clone())
    })
    .await
}

async fn patch(
    ctx: &Ctx<'_>,
    name: &str,
    ct: &str,
    body: &[u8],
    sub: Option<&str>,
) -> Result<(StatusCode, Value), ApiError> {
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor" {
        return crate::apply::server_side_apply(ctx, name, body, sub).await;
    }
    let bad = |e: protocols::patch::PatchError| match e {
        protocols::patch::PatchError::UnsupportedStrategicKind { .. } => {
            ApiError::UnsupportedMediaType(e.to_string())
        }
        other => ApiError::BadRequest(other.to_string()),
    };
    let (group, kind) = (ctx.r.group.clone(), ctx.r.kind.clone());
    let custom = ctx.r.custom.is_some();
    let v = update_with(ctx, name, sub, Write::Update, |current| {
        let patched = match ct {
            "application/json-patch+json" => protocols::patch::json_patch(current, body).map_err(bad)?,
            "application/merge-patch+json" => protocols::patch::merge_patch(current, body).map_err(bad)?,
            "application/strategic-merge-patch+json" if custom => {
                return Err(ApiError::UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                ));
            }
            "application/strategic-merge-patch+json" => {
                protocols::patch::strategic_merge_patch(current, body, GroupKind::new(&group, &kind)).map_err(bad)?
            }
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                )));
            }
        };
        let patched = strip_rv_unless_given(current, patched)?;
        field_validation(ctx, &patched)?;
        Ok(patched)
    })
    .await?;
    Ok((StatusCode::OK, v))
}

/// A patch that sets metadata.resourceVersion is a precondition; otherwise the current one holds.
fn strip_rv_unless_given(current: &Value, patched: Value) -> Result<Value, ApiError> {
    if let (Some(a), Some(b)) = (
        meta_str(current, "resourceVersion"),
        meta_str(&patched, "resourceVersion"),
    ) && a != b
    {
        return Err(ApiError::Conflict {
            resource: current.get("kind").and_then(Value::as_str).unwrap_or("object").to_ascii_lowercase(),
            name: meta_str(current, "name").unwrap_or_default().into(),
            reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
        });
    }
    Ok(patched)
}

/// Options of a DELETE.
#[derive(Debug, Default)]
pub struct DeleteOpts {
    /// Background, Foreground or Orphan.
    pub propagation: Option<String>,
    /// Grace period override.
    pub grace: Option<i64>,
    /// Persist nothing.
    pub dry_run: bool,
}

fn delete_options(q: &Query, ct: &str, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        propagation: q.get("propagationPolicy").map(str::to_owned),
        grace: q.number("gracePeriodSeconds")?,
        dry_run: q.dry_run(),
    };
    if !body.is_empty() {
        let v = request::decode_object(ct, body)?;
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_owned());
        } else if v.get("orphanDependents") == Some(&json!(true)) {
            o.propagation = Some("Orphan".into());
        }
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace = Some(g);
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
    }
    if let Some(p) = &o.propagation
        && !["Background", "Foreground", "Orphan"].contains(&p.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy {p:?} is not one of Background, Foreground, Orphan"
        )));
    }
    Ok(o)
}

/// Delete one object, honouring finalizers, propagation and pod grace periods.
pub async fn delete(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &DeleteOpts,
) -> Result<(StatusCode, Value), ApiError> {
    for _ in 0..UPDATE_RETRIES {
        let (current, rev) = get(ctx, name).await?;
        let mut marked = current.clone();
        let mut fins: Vec<Value> = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match opts.propagation.as_deref() {
            Some("Foreground") if !fins.contains(&json!("foregroundDeletion")) => {
                fins.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if !fins.contains(&json!("orphan")) => fins.push(json!("orphan")),
            _ => {}
        }
        let is_ns = ctx.r.group.is_empty() && ctx.r.kind == "Namespace";
        let graceful_pod = ctx.r.group.is_empty()
            && ctx.r.kind == "Pod"
            && current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && opts.grace.unwrap_or_else(|| {
                current
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            }) > 0
            && !matches!(
                current.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
        let ns_finalizers = is_ns
            && current
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if fins.is_empty() && !graceful_pod && !ns_finalizers {
            if opts.dry_run {
                return Ok((StatusCode::OK, current));
            }
            match ctx.store().delete(&ctx.key(name), rev).await? {
                Some(gone) => {
                    after_delete(ctx, &gone).await;
                    return Ok((StatusCode::OK, gone));
                }
                None => continue,
            }
        }
        if current.pointer("/metadata/deletionTimestamp").is_some() && !graceful_pod {
            // Already terminating: nothing more to record.
            return Ok((StatusCode::ACCEPTED, current));
        }
        {
            let m = meta::metadata(&mut marked);
            m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
            let grace = if graceful_pod {
                opts.grace.unwrap_or_else(|| {
                    current
                        .pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                })
            } else {
                0
            };
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if !fins.is_empty() {
                m.insert("finalizers".into(), Value::Array(fins.clone()));
            }
        }
        if is_ns {
            marked["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok((StatusCode::OK, marked));
        }
        if let Some(stored) = ctx.store().update(&ctx.key(name), rev, &marked).await? {
            return Ok((StatusCode::OK, stored));
        }
    }
    Err(ApiError::Conflict {
        resource: ctx.qualified(),
        name: name.into(),
        reason: "the object kept changing during deletion".into(),
    })
}

/// Side effects of an object really leaving the store.
async fn after_delete(ctx: &Ctx<'_>, gone: &Value) {
    if ctx.r.group.is_empty() && ctx.r.kind == "Service" {
        services::release_all(ctx.s, gone).await;
    }
    if ctx.r.kind == "CustomResourceDefinition" {
        crd::remove(ctx.s, gone);
    }
}

async fn delete_collection(ctx: &Ctx<'_>, ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    let opts = delete_options(&ctx.q, ct, body)?;
    let (items, rev, _) = list_items(ctx).await?;
    let mut deleted = Vec::new();
    for item in items {
        let name = meta_str(&item, "name").unwrap_or_default().to_owned();
        let ns = meta_str(&item, "namespace").map(str::to_owned);
        let sub = Ctx {
            s: ctx.s,
            r: ctx.r.clone(),
            ns: ns.or_else(|| ctx.ns.clone()),
            q: ctx.q.clone(),
            user: ctx.user,
        };
        match delete(&sub, &name, &opts).await {
            Ok((_, v)) => deleted.push(v),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(
        json!({"kind": format!("{}List", ctx.r.kind), "apiVersion": ctx.r.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": deleted}),
    )
}

fn scale_of(ctx: &Ctx<'_>, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| match s.get("matchLabels").and_then(Value::as_object) {
            Some(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(","),
            None => String::new(),
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": ctx.ns,
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

async fn update_scale(
    ctx: &Ctx<'_>,
    name: &str,
    put: bool,
    ct: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let stored = update_with(ctx, name, None, Write::Update, |current| {
        let scale = scale_of(ctx, current);
        let new_scale = if put {
            request::decode_object(ct, body)?
        } else {
            match ct {
                "application/json-patch+json" => protocols::patch::json_patch(&scale, body),
                _ => protocols::patch::merge_patch(&scale, body),
            }
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
        };
        let replicas = new_scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(ctx, name, vec![Cause::required("spec.replicas")]))?;
        if replicas < 0 {
            return Err(invalid(
                ctx,
                name,
                vec![Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = current.clone();
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })
    .await?;
    Ok(scale_of(ctx, &stored))
}

async fn bind(ctx: &Ctx<'_>, name: &str, binding: &Value) -> Result<(), ApiError> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(ctx, name, vec![Cause::required("target.name")]))?
        .to_owned();
    update_with(ctx, name, Some("binding"), Write::Update, |current| {
        if current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            return Err(ApiError::Conflict {
                resource: "pods".into(),
                name: name.into(),
                reason: format!("pod {name} is already assigned to node {:?}", current.pointer("/spec/nodeName")),
            });
        }
        let mut new = current.clone();
        new["spec"]["nodeName"] = json!(node);
        let conds = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(json!({"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime": meta::now_rfc3339()}));
        new["status"]["conditions"] = Value::Array(conds);
        Ok(new)
    })
    .await
    .map(|_| ())
}
