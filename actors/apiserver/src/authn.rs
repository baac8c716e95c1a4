//! Service-account authentication at the API edge: the TokenRequest subresource
//! (`serviceaccounts/token`), bearer-token authentication of requests, TokenReview, and
//! service-account issuer discovery (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! The front door authenticates client certificates and marks everything else anonymous; an
//! anonymous request that carries `Authorization: Bearer <token>` is authenticated here, because
//! a token is only valid while its service account (and the object it is bound to) still exists
//! with the same uid, and only the API server reads the datastore. As upstream, a bearer token
//! that does not authenticate is a 401, never a downgrade to anonymous. Identities set by
//! in-process callers (request extensions) cannot be forged over the wire: the front door always
//! overwrites the extension.

use crate::error::{ApiError, Cause};
use crate::handlers::{self, Ctx};
use crate::tokens::{self, Claims, Issuer, ObjectRef, VerifyError};
use crate::{ApiState, store};
use axum::http::{HeaderMap, header};
use protocols::user::UserInfo;
use serde_json::{Value, json};
use std::sync::Arc;

/// The token issuer, shared by every clone of the state; unset until the server configures it.
#[derive(Clone, Default)]
pub(crate) struct IssuerSlot(Arc<parking_lot::RwLock<Option<Arc<Issuer>>>>);

impl std::fmt::Debug for IssuerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IssuerSlot").field(&*self.0.read()).finish()
    }
}

impl IssuerSlot {
    pub(crate) fn set(&self, issuer: Issuer) {
        *self.0.write() = Some(Arc::new(issuer));
    }

    fn get(&self) -> Option<Arc<Issuer>> {
        self.0.read().clone()
    }
}

/// Group of every service account.
const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The bearer token of `Authorization: Bearer <token>`, if any (an empty one counts as none,
/// as upstream).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who makes the request: `user` (from the front door or an in-process caller) unless it is
/// anonymous and the request carries a bearer token, which must then authenticate.
pub async fn identify(
    s: &ApiState,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    if user.is_authenticated() {
        return Ok(user);
    }
    let Some(token) = bearer(headers) else {
        return Ok(user);
    };
    match authenticate(s, token, None).await {
        Ok((user, _)) => Ok(user),
        Err(reason) => {
            tracing::debug!(%reason, "bearer token refused");
            Err(ApiError::Unauthorized)
        }
    }
}

/// Why a token does not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// The server has no service-account key configured.
    #[error("no service-account token issuer is configured on this server")]
    NoIssuer,
    /// The token itself is not valid.
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// The service account or the bound object is gone, or was recreated (another uid).
    #[error("{what} has been deleted or recreated since the token was issued")]
    Revoked {
        /// `serviceaccount ns/name`, `pod ns/name`, ...
        what: String,
    },
    /// The datastore could not be read.
    #[error("cannot check the token's service account: {0}")]
    Store(#[source] ApiError),
}

/// Verify `token` (against `audiences`, or the server's when `None`) and that what it names still
/// exists; the user it authenticates and the audiences it was accepted for.
pub async fn authenticate(
    s: &ApiState,
    token: &str,
    audiences: Option<&[String]>,
) -> Result<(UserInfo, Vec<String>), AuthnError> {
    let issuer = s.issuer.get().ok_or(AuthnError::NoIssuer)?;
    let claims = match audiences {
        Some(a) => issuer.verify_for(token, now(), a)?,
        None => issuer.verify(token, now())?,
    };
    let k = &claims.kubernetes;
    let ns = k.namespace.as_str();
    still_there(s, "serviceaccounts", Some(ns), &k.serviceaccount).await?;
    if let Some(pod) = &k.pod {
        still_there(s, "pods", Some(ns), pod).await?;
    }
    if let Some(secret) = &k.secret {
        still_there(s, "secrets", Some(ns), secret).await?;
    }
    if let Some(node) = &k.node {
        still_there(s, "nodes", None, node).await?;
    }
    let accepted = audiences.unwrap_or(issuer.audiences());
    let audiences = claims
        .aud
        .iter()
        .filter(|a| accepted.contains(a))
        .cloned()
        .collect();
    let user = UserInfo::authenticated(
        claims.sub.clone(),
        [
            SERVICE_ACCOUNTS.to_owned(),
            format!("{SERVICE_ACCOUNTS}:{ns}"),
        ],
    );
    Ok((user, audiences))
}

/// The stored object `plural` `namespace/r.name`, if it exists.
async fn read(
    s: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let r = s
        .catalogue
        .find("", "v1", plural)
        .ok_or(ApiError::NoRoute)?;
    Ok(s.store
        .get(&store::key(&r, namespace, name))
        .await?
        .map(|(v, _)| v))
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn still_there(
    s: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    r: &ObjectRef,
) -> Result<(), AuthnError> {
    let obj = read(s, plural, namespace, &r.name)
        .await
        .map_err(AuthnError::Store)?;
    match obj {
        Some(o) if uid_of(&o) == r.uid => Ok(()),
        _ => Err(AuthnError::Revoked {
            what: format!(
                "{plural} {}{}",
                namespace.map(|n| format!("{n}/")).unwrap_or_default(),
                r.name
            ),
        }),
    }
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        kind: "TokenRequest".into(),
        name: name.to_owned(),
        group: "authentication.k8s.io".into(),
        causes,
    }
}

/// `POST .../serviceaccounts/{name}/token`: issue a token for the service account `name`.
pub async fn token_request(ctx: &Ctx<'_>, name: &str, mut req: Value) -> Result<Value, ApiError> {
    let issuer = ctx.s.issuer.get().ok_or_else(|| {
        ApiError::Unavailable("no service-account token issuer is configured on this server".into())
    })?;
    let ns = ctx.ns.clone().unwrap_or_default();
    let (sa, _) = handlers::get(ctx, name).await?;
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences: Vec<String> = match spec.get("audiences") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        name,
                        vec![Cause::invalid("spec.audiences", v, "must be a string")],
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => issuer.audiences().to_vec(),
    };
    let lifetime = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => tokens::DEFAULT_EXPIRATION,
        Some(v) => match v.as_i64() {
            Some(n) if n < tokens::MIN_EXPIRATION => {
                return Err(invalid(
                    name,
                    vec![Cause::invalid(
                        "spec.expirationSeconds",
                        v,
                        "may not specify a duration less than 10 minutes",
                    )],
                ));
            }
            Some(n) if n > tokens::MAX_EXPIRATION => {
                return Err(invalid(
                    name,
                    vec![Cause::invalid(
                        "spec.expirationSeconds",
                        v,
                        "may not specify a duration larger than 2^32 seconds",
                    )],
                ));
            }
            Some(n) => n,
            None => {
                return Err(invalid(
                    name,
                    vec![Cause::invalid(
                        "spec.expirationSeconds",
                        v,
                        "must be an integer",
                    )],
                ));
            }
        },
    };
    let issued = now();
    let mut claims = Claims::new(
        issuer.issuer(),
        audiences.clone(),
        &ns,
        ObjectRef {
            name: name.to_owned(),
            uid: uid_of(&sa).to_owned(),
        },
        issued,
        lifetime,
    );
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        bind(ctx, name, &ns, bound, &mut claims).await?;
    }
    let token = issuer
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map_err(|e| ApiError::Internal(format!("token expiry out of range: {e}")))?
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    if !req.get("metadata").is_some_and(Value::is_object) {
        req["metadata"] = json!({});
    }
    req["metadata"]["name"] = json!(name);
    req["metadata"]["namespace"] = json!(ns);
    req["metadata"]["creationTimestamp"] = json!(crate::meta::now_rfc3339());
    if !req.get("spec").is_some_and(Value::is_object) {
        req["spec"] = json!({});
    }
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(lifetime);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(req)
}

/// Bind the token to the object `bound` names (a Pod, Secret or Node that must exist, with the
/// given uid if one is given): the token dies with it.
async fn bind(
    ctx: &Ctx<'_>,
    sa: &str,
    ns: &str,
    bound: &Value,
    claims: &mut Claims,
) -> Result<(), ApiError> {
    let field = |f: &str| bound.get(f).and_then(Value::as_str).unwrap_or("");
    let (kind, name, uid) = (field("kind"), field("name"), field("uid"));
    let api_version = field("apiVersion");
    if !api_version.is_empty() && api_version != "v1" {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token to object of apiVersion {api_version:?}: only v1 Pods, Secrets and Nodes can be bound"
        )));
    }
    let (plural, namespace) = match kind {
        "Pod" => ("pods", Some(ns)),
        "Secret" => ("secrets", Some(ns)),
        "Node" => ("nodes", None),
        other => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token for serviceaccount \"{sa}\" to object of kind {other:?}: only Pod, Secret and Node are supported"
            )));
        }
    };
    if name.is_empty() {
        return Err(invalid(
            sa,
            vec![Cause::required("spec.boundObjectRef.name")],
        ));
    }
    let obj = read(ctx.s, plural, namespace, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: plural.to_owned(),
            name: name.to_owned(),
        })?;
    let stored_uid = uid_of(&obj);
    if !uid.is_empty() && uid != stored_uid {
        return Err(ApiError::Conflict {
            resource: plural.to_owned(),
            name: name.to_owned(),
            reason: format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record ({stored_uid}). The object might have been deleted and then recreated"
            ),
        });
    }
    if kind == "Pod" {
        let pod_sa = obj
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if pod_sa != sa {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token for serviceaccount \"{sa}\" to pod \"{name}\": the pod runs as serviceaccount \"{pod_sa}\""
            )));
        }
    }
    let r = Some(ObjectRef {
        name: name.to_owned(),
        uid: stored_uid.to_owned(),
    });
    match kind {
        "Pod" => claims.kubernetes.pod = r,
        "Secret" => claims.kubernetes.secret = r,
        _ => claims.kubernetes.node = r,
    }
    Ok(())
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: whether `spec.token` authenticates (for
/// `spec.audiences`, or this server's), and as whom.
pub async fn token_review(ctx: &Ctx<'_>, mut obj: Value) -> Result<Value, ApiError> {
    let token = obj
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let audiences: Option<Vec<String>> = obj
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenReview");
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    obj["status"] = match authenticate(ctx.s, &token, audiences.as_deref()).await {
        Ok((user, accepted)) => json!({
            "authenticated": true,
            "user": {"username": user.name, "groups": user.groups},
            "audiences": accepted,
        }),
        Err(AuthnError::Store(e)) => return Err(e),
        Err(e) => json!({"authenticated": false, "error": e.to_string()}),
    };
    Ok(obj)
}

/// `/.well-known/openid-configuration`: where relying parties find the keys.
pub fn openid_configuration(s: &ApiState) -> Result<Value, ApiError> {
    let issuer = s.issuer.get().ok_or(ApiError::NoRoute)?;
    Ok(json!({
        "issuer": issuer.issuer(),
        "jwks_uri": format!("{}/openid/v1/jwks", issuer.issuer()),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [issuer.alg()],
    }))
}

/// `/openid/v1/jwks`: the public key that verifies service-account tokens.
pub fn jwks(s: &ApiState) -> Result<Value, ApiError> {
    Ok(s.issuer.get().ok_or(ApiError::NoRoute)?.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        assert_eq!(bearer(&h), Some("abc.def.ghi"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  xyz "),
        );
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(bearer(&h), None);
    }
}
