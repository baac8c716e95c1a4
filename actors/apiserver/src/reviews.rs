//! Create-only "review" resources answered on the spot: who am I, may I, what may I.
//!
//! Authorization today: every authenticated user (client certificate, service-account token or
//! in-process component) may do everything; RBAC replaces [`allowed`]. TokenReview is answered
//! by [`crate::authn`].

use crate::error::ApiError;
use crate::handlers::Ctx;
use protocols::user::UserInfo;
use serde_json::{Value, json};

/// Whether `user` may perform the request described by `attrs` (resourceAttributes or
/// nonResourceAttributes of a SubjectAccessReview).
pub fn allowed(user: &UserInfo, _attrs: &Value) -> bool {
    user.is_authenticated()
}

/// Answer a review.
pub fn create(ctx: &Ctx<'_>, mut obj: Value) -> Result<Value, ApiError> {
    obj["apiVersion"] = json!(ctx.r.api_version());
    obj["kind"] = json!(ctx.r.kind);
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let user_json = |u: &UserInfo| json!({"username": u.name, "groups": u.groups});
    match ctx.r.kind.as_str() {
        "SelfSubjectReview" => obj["status"] = json!({"userInfo": user_json(ctx.user)}),
        "SelfSubjectAccessReview" => {
            let attrs = obj
                .pointer("/spec/resourceAttributes")
                .or_else(|| obj.pointer("/spec/nonResourceAttributes"))
                .cloned()
                .unwrap_or_default();
            let ok = allowed(ctx.user, &attrs);
            obj["status"] = json!({"allowed": ok, "denied": !ok, "reason": if ok { "authenticated users may do everything until RBAC is enabled" } else { "" }});
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let user = obj
                .pointer("/spec/user")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let groups: Vec<String> = obj
                .pointer("/spec/groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let subject = if user.is_empty() && groups.is_empty() {
                UserInfo::anonymous()
            } else {
                UserInfo::authenticated(user, groups)
            };
            let attrs = obj
                .pointer("/spec/resourceAttributes")
                .cloned()
                .unwrap_or_default();
            let ok = allowed(&subject, &attrs);
            obj["status"] = json!({"allowed": ok, "denied": !ok});
        }
        "SelfSubjectRulesReview" => {
            obj["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        "Binding" => return Err(ApiError::MethodNotAllowed),
        other => {
            return Err(ApiError::BadRequest(format!(
                "{other} cannot be created on this server"
            )));
        }
    }
    Ok(obj)
}
