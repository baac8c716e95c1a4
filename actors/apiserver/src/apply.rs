//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): field ownership through
//! `managedFields`, conflicts between managers, and `force`.

use crate::error::{ApiError, Cause};
use crate::handlers::{Ctx, Write, create_as, update_with};
use crate::meta;
use crate::request;
use axum::http::StatusCode;
use protocols::patch::{ApplyError, GroupKind};
use serde_json::{Value, json};

fn conflict(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(list) => {
            let causes = list
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict",
                    field: c.field.clone(),
                    message: format!("conflict with \"{}\"", c.manager),
                })
                .collect();
            ApiError::ApplyConflict {
                message: ApplyError::Conflicts(list).to_string(),
                causes,
            }
        }
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// Apply `body` as `fieldManager` to the object `name`, creating it when missing.
pub async fn server_side_apply(
    ctx: &Ctx<'_>,
    name: &str,
    body: &[u8],
    sub: Option<&str>,
) -> Result<(StatusCode, Value), ApiError> {
    let manager = ctx
        .q
        .get("fieldManager")
        .ok_or_else(|| {
            ApiError::BadRequest(
                "PATCH /apply requests require a fieldManager query parameter".into(),
            )
        })?
        .to_owned();
    let applied = request::decode_object("application/yaml", body)?;
    if meta::meta_str(&applied, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::meta_str(&applied, "name").unwrap_or_default()
        )));
    }
    let force = ctx.q.flag("force");
    let (group, kind) = (ctx.r.group.clone(), ctx.r.kind.clone());
    let api_version = ctx.r.api_version();
    let exists = ctx
        .s
        .store
        .get(&crate::store::key(&ctx.r, ctx.ns.as_deref(), name))
        .await?
        .is_some();
    if !exists && sub.is_none() {
        let (mut obj, fields) = protocols::patch::apply(
            None,
            &applied,
            &manager,
            &[],
            force,
            GroupKind::new(&group, &kind),
            &api_version,
            &meta::now_rfc3339(),
        )
        .map_err(conflict)?;
        meta::metadata(&mut obj).insert("name".into(), json!(name));
        meta::metadata(&mut obj).insert("managedFields".into(), Value::Array(fields));
        let created = create_as(ctx, obj, Write::Apply).await?;
        return Ok((StatusCode::CREATED, created));
    }
    let v = update_with(ctx, name, sub, Write::Apply, |current| {
        let live_fields: Vec<Value> = current
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (mut obj, fields) = protocols::patch::apply(
            Some(current),
            &applied,
            &manager,
            &live_fields,
            force,
            GroupKind::new(&group, &kind),
            &api_version,
            &meta::now_rfc3339(),
        )
        .map_err(conflict)?;
        meta::metadata(&mut obj).insert("managedFields".into(), Value::Array(fields));
        Ok(obj)
    })
    .await?;
    Ok((StatusCode::OK, v))
}
