//! The admin kubeconfig: written by the server, read by `k3s actors` and `k3s kubectl`.
//!
//! Only the fields a client-certificate kubeconfig uses are modelled; reading tolerates the rest.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors reading a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file cannot be read.
    #[error("cannot read kubeconfig {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a kubeconfig this tool understands.
    #[error("kubeconfig {path} is not usable: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A kubeconfig file (the subset used here).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    current_context: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Context {
    cluster: String,
    user: String,
}

/// What a client needs to reach the server: URL, CA, and client certificate (all PEM).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `https://host:port`.
    pub server: String,
    /// The CA to verify the server with.
    pub ca_pem: Option<String>,
    /// The client certificate and key, PEM.
    pub client_cert_pem: Option<(String, String)>,
    /// A bearer token.
    pub token: Option<String>,
}

impl Kubeconfig {
    /// A kubeconfig for the admin user against `server`, K3s-style (everything named `default`).
    pub fn admin(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        let b64 = |s: &str| STANDARD.encode(s.as_bytes());
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: "default".into(),
                cluster: Cluster {
                    server: server.into(),
                    certificate_authority_data: Some(b64(ca_pem)),
                },
            }],
            users: vec![NamedUser {
                name: "default".into(),
                user: User {
                    client_certificate_data: Some(b64(cert_pem)),
                    client_key_data: Some(b64(key_pem)),
                    token: None,
                },
            }],
            contexts: vec![NamedContext {
                name: "default".into(),
                context: Context {
                    cluster: "default".into(),
                    user: "default".into(),
                },
            }],
            current_context: "default".into(),
        }
    }

    /// The YAML text, laid out exactly as K3s writes `k3s.yaml` (one line per value, so
    /// scripts that grep the file keep working).
    pub fn to_yaml(&self) -> String {
        let cluster = self.clusters.first();
        let user = self.users.first();
        let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: default\n\
             contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n\
             current-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n\
             \x20   client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = opt(cluster.and_then(|c| c.cluster.certificate_authority_data.as_ref())),
            server = cluster
                .map(|c| c.cluster.server.clone())
                .unwrap_or_default(),
            cert = opt(user.and_then(|u| u.user.client_certificate_data.as_ref())),
            key = opt(user.and_then(|u| u.user.client_key_data.as_ref())),
        )
    }

    /// Read and resolve the current context's credentials.
    pub fn load(path: &Path) -> Result<Credentials, KubeconfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
            path: path.into(),
            source,
        })?;
        let invalid = |reason: String| KubeconfigError::Invalid {
            path: path.into(),
            reason,
        };
        let kc: Kubeconfig = serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == kc.current_context)
            .or_else(|| kc.contexts.first())
            .map(|c| &c.context)
            .ok_or_else(|| invalid("it has no context".into()))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .map(|c| &c.cluster)
            .ok_or_else(|| {
                invalid(format!(
                    "context refers to missing cluster '{}'",
                    ctx.cluster
                ))
            })?;
        let user = kc
            .users
            .iter()
            .find(|u| u.name == ctx.user)
            .map(|u| &u.user);
        let decode = |what: &str, s: &str| {
            STANDARD
                .decode(s.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid(format!("{what} is not base64 PEM")))
        };
        let ca_pem = cluster
            .certificate_authority_data
            .as_deref()
            .map(|d| decode("certificate-authority-data", d))
            .transpose()?;
        let client_cert_pem = match user.map(|u| (&u.client_certificate_data, &u.client_key_data)) {
            Some((Some(c), Some(k))) => Some((
                decode("client-certificate-data", c)?,
                decode("client-key-data", k)?,
            )),
            _ => None,
        };
        Ok(Credentials {
            server: cluster.server.clone(),
            ca_pem,
            client_cert_pem,
            token: user.and_then(|u| u.token.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_kubeconfig_reads_back() {
        let kc = Kubeconfig::admin("https://127.0.0.1:6443", "CA", "CERT", "KEY");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kc.yaml");
        std::fs::write(&path, kc.to_yaml()).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("current-context: default"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.trim()
                    == format!("certificate-authority-data: {}", STANDARD.encode("CA"))),
            "{text}"
        );
        let creds = Kubeconfig::load(&path).expect("load");
        assert_eq!(creds.server, "https://127.0.0.1:6443");
        assert_eq!(creds.ca_pem.as_deref(), Some("CA"));
        assert_eq!(creds.client_cert_pem, Some(("CERT".into(), "KEY".into())));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kc.yaml");
        std::fs::write(&path, "clusters: 3\n").expect("write");
        let e = Kubeconfig::load(&path).expect_err("must fail").to_string();
        assert!(e.contains("kc.yaml") && e.contains("not usable"), "{e}");
    }
}
