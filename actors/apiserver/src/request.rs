//! Reading a request: which resource a path names, the query options, and the body formats.

use crate::error::ApiError;
use axum::http::HeaderMap;
use serde_json::Value;
use std::collections::HashMap;

/// Largest request body accepted (upstream's limit: 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Where a path points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource, a collection, an object or a subresource.
    Resource(ResourcePath),
}

/// A path to resources.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
}

/// Parse an API path. `None` when it is not an API path at all.
pub fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Some(Target::CoreVersions),
        ["apis"] => return Some(Target::Groups),
        ["apis", g] => return Some(Target::Group((*g).to_owned())),
        ["api", v, rest @ ..] => (String::new(), (*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => ((*g).to_owned(), (*v).to_owned(), rest),
        _ => return None,
    };
    let mut p = ResourcePath {
        group,
        version,
        ..Default::default()
    };
    let rest: &[&str] = match rest {
        [] => {
            return Some(Target::GroupVersion {
                group: p.group,
                version: p.version,
            });
        }
        // /namespaces/{ns}/{resource}... but /namespaces/{name}[/status|finalize] is the namespace itself.
        ["namespaces", ns, res, tail @ ..]
            if !(tail.is_empty() && (*res == "status" || *res == "finalize")) =>
        {
            p.namespace = Some((*ns).to_owned());
            let mut v = vec![*res];
            v.extend_from_slice(tail);
            return finish(p, &v);
        }
        other => other,
    };
    finish(p, rest)
}

fn finish(mut p: ResourcePath, rest: &[&str]) -> Option<Target> {
    match rest {
        [res] => p.resource = (*res).to_owned(),
        [res, name] => {
            p.resource = (*res).to_owned();
            p.name = Some((*name).to_owned());
        }
        [res, name, sub, ..] => {
            // Subresources like pods/x/proxy/some/path keep only the first segment here.
            p.resource = (*res).to_owned();
            p.name = Some((*name).to_owned());
            p.subresource = Some((*sub).to_owned());
        }
        _ => return None,
    }
    Some(Target::Resource(p))
}

/// The query options clients send.
#[derive(Clone, Debug, Default)]
pub struct Query {
    raw: HashMap<String, String>,
}

impl Query {
    /// From the raw query string.
    pub fn parse(q: Option<&str>) -> Self {
        let mut raw = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            raw.insert(decode(k), decode(v));
        }
        Query { raw }
    }

    /// The same query without `keys`.
    pub fn without(mut self, keys: &[&str]) -> Self {
        for k in keys {
            self.raw.remove(*k);
        }
        self
    }

    /// A parameter, if present and non-empty.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.raw
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }

    /// A numeric parameter; a bad number is a 400 naming it.
    pub fn number(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid value for {k}: {v:?}")))
            })
            .transpose()
    }
}

/// Percent-decode one query component (`+` is a space).
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the response should be shaped, from the Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Plain objects (JSON).
    Object,
    /// `as=Table` (kubectl get).
    Table,
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Pick the response shape: the first acceptable media type wins, as upstream negotiates.
pub fn response_shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Shape::Object);
    }
    let mut saw_other = false;
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let ty = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        match ty {
            "application/json"
            | "application/yaml"
            | "*/*"
            | "application/*"
            | "application/vnd.kubernetes.protobuf" => match params.get("as").copied() {
                None => return Ok(Shape::Object),
                Some("Table") if params.get("g").is_none_or(|g| *g == "meta.k8s.io") => {
                    return Ok(Shape::Table);
                }
                Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                    return Ok(Shape::Metadata);
                }
                Some(_) => saw_other = true,
            },
            _ => saw_other = true,
        }
    }
    if saw_other {
        Err(ApiError::NotAcceptable("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf".into()))
    } else {
        Ok(Shape::Object)
    }
}

/// The media type of a request body (without parameters), lowercase; missing means JSON
/// (the Python client sends bodies without Content-Type).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "application/json".into())
}

/// Decode an object body in JSON, YAML or Kubernetes protobuf.
pub fn decode_object(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = match ct {
        "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}")))?,
        "application/yaml"
        | "application/apply-patch+yaml"
        | "application/x-yaml"
        | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::BadRequest("the YAML body is not UTF-8".into()))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::BadRequest(format!("error decoding YAML body: {e}")))?
        }
        "application/vnd.kubernetes.protobuf" => protobuf(body)?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
            )));
        }
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

fn protobuf(body: &[u8]) -> Result<Value, ApiError> {
    protocols::protobuf::decode(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding protobuf body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(
        g: &str,
        v: &str,
        ns: Option<&str>,
        r: &str,
        n: Option<&str>,
        s: Option<&str>,
    ) -> Option<Target> {
        Some(Target::Resource(ResourcePath {
            group: g.into(),
            version: v.into(),
            namespace: ns.map(Into::into),
            resource: r.into(),
            name: n.map(Into::into),
            subresource: s.map(Into::into),
        }))
    }

    #[test]
    fn paths_parse_like_upstream() {
        assert_eq!(parse_path("/api"), Some(Target::CoreVersions));
        assert_eq!(parse_path("/apis/apps"), Some(Target::Group("apps".into())));
        assert_eq!(
            parse_path("/api/v1"),
            Some(Target::GroupVersion {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse_path("/api/v1/pods"),
            rp("", "v1", None, "pods", None, None)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces"),
            rp("", "v1", None, "namespaces", None, None)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/kube-system"),
            rp("", "v1", None, "namespaces", Some("kube-system"), None)
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/x/status"),
            rp("", "v1", None, "namespaces", Some("x"), Some("status"))
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/d/pods/p/log"),
            rp("", "v1", Some("d"), "pods", Some("p"), Some("log"))
        );
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/d/deployments/web/scale"),
            rp(
                "apps",
                "v1",
                Some("d"),
                "deployments",
                Some("web"),
                Some("scale")
            )
        );
        assert_eq!(parse_path("/healthz"), None);
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&limit=5",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.number("limit").expect("number"), Some(5));
        assert!(Query::parse(Some("limit=x")).number("limit").is_err());
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .expect("hv"),
        );
        assert_eq!(response_shape(&h).expect("shape"), Shape::Table);
        h.insert(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
                .parse()
                .expect("hv"),
        );
        assert_eq!(response_shape(&h).expect("shape"), Shape::Metadata);
        h.insert("accept", "text/html".parse().expect("hv"));
        assert!(response_shape(&h).is_err());
    }
}
