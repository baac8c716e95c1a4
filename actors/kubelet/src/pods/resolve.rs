//! What a container needs from the API before it can be created: its environment (`env` with
//! `valueFrom`, `envFrom`) and its volumes, materialised as files under the pod's directory
//! (emptyDir, configMap, secret, hostPath, downwardAPI, projected).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use crate::cri::v1;
use crate::pods::spec::quantity;

/// Why a container's configuration could not be resolved (upstream's CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A referenced ConfigMap or Secret, or a key in it, does not exist.
    #[error("{kind} {name:?} not found")]
    Missing {
        /// "configmap", "secret" or "key ... in configmap ...".
        kind: String,
        /// The name.
        name: String,
    },
    /// An API request failed.
    #[error("reading {what}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A file or directory could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume kind this kubelet does not support.
    #[error("volume {name:?}: unsupported volume type")]
    Unsupported {
        /// The volume.
        name: String,
    },
    /// A field path the downward API does not support.
    #[error("unsupported fieldRef {0:?}")]
    FieldPath(String),
    /// A volumeMount names no volume of the pod.
    #[error("volumeMount {0:?} names no volume of the pod")]
    NoVolume(String),
}

/// Reads ConfigMaps, Secrets and tokens for one pod, caching within one resolution.
pub(crate) struct Resolver<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub host_ip: String,
    pub pod_ip: String,
    configmaps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl std::fmt::Debug for Resolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl<'a> Resolver<'a> {
    pub fn new(client: &'a kube::Client, pod: &'a Pod, host_ip: String, pod_ip: String) -> Self {
        Self {
            client,
            pod,
            host_ip,
            pod_ip,
            configmaps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    async fn configmap(&mut self, name: &str) -> Result<Option<ConfigMap>, ResolveError> {
        if let Some(c) = self.configmaps.get(name) {
            return Ok(c.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace());
        let c = api
            .get_opt(name)
            .await
            .map_err(|source| ResolveError::Api {
                what: format!("configmap {name}"),
                source,
            })?;
        self.configmaps.insert(name.to_owned(), c.clone());
        Ok(c)
    }

    async fn secret(&mut self, name: &str) -> Result<Option<Secret>, ResolveError> {
        if let Some(s) = self.secrets.get(name) {
            return Ok(s.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace());
        let s = api
            .get_opt(name)
            .await
            .map_err(|source| ResolveError::Api {
                what: format!("secret {name}"),
                source,
            })?;
        self.secrets.insert(name.to_owned(), s.clone());
        Ok(s)
    }

    async fn configmap_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, ResolveError> {
        match self.configmap(name).await? {
            Some(cm) => {
                let mut out: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                out.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                Ok(out)
            }
            None if optional => Ok(BTreeMap::new()),
            None => Err(ResolveError::Missing {
                kind: "configmap".into(),
                name: name.into(),
            }),
        }
    }

    async fn secret_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, ResolveError> {
        match self.secret(name).await? {
            Some(s) => {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                out.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                Ok(out)
            }
            None if optional => Ok(BTreeMap::new()),
            None => Err(ResolveError::Missing {
                kind: "secret".into(),
                name: name.into(),
            }),
        }
    }

    /// A downward API field of the pod.
    pub fn field(&self, path: &str) -> Result<String, ResolveError> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let label_like = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
            let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
            Some(
                map.as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        Ok(match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "metadata.labels" => format_map(&meta.labels),
            "metadata.annotations" => format_map(&meta.annotations),
            "spec.nodeName" => spec.node_name.unwrap_or_default(),
            "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
            "status.hostIP" | "status.hostIPs" => self.host_ip.clone(),
            "status.podIP" | "status.podIPs" => self.pod_ip.clone(),
            p => label_like("metadata.labels['", &meta.labels)
                .or_else(|| label_like("metadata.annotations['", &meta.annotations))
                .ok_or_else(|| ResolveError::FieldPath(p.to_owned()))?,
        })
    }

    /// A container's resource field (`limits.cpu`, `requests.memory`...) as upstream formats it.
    fn resource_field(
        &self,
        c: Option<&Container>,
        resource: &str,
        divisor: Option<&str>,
    ) -> String {
        let r = c.and_then(|c| c.resources.clone()).unwrap_or_default();
        let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
        let map = if kind == "requests" {
            r.requests
        } else {
            r.limits
        };
        let value = map
            .and_then(|m| m.get(name).and_then(|q| quantity(&q.0)))
            .unwrap_or_else(|| {
                if name == "cpu" {
                    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
                } else {
                    0.0
                }
            });
        let div = divisor
            .and_then(quantity)
            .filter(|d| *d > 0.0)
            .unwrap_or(1.0);
        format!("{}", (value / div).ceil() as i64)
    }

    /// The container's environment, in order, with `$(VAR)` references to earlier variables
    /// expanded.
    pub async fn env(&mut self, c: &Container) -> Result<Vec<(String, String)>, ResolveError> {
        let mut out: Vec<(String, String)> = Vec::new();
        let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
            out.retain(|(key, _)| *key != k);
            out.push((k, v));
        };
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let data = if let Some(cm) = &from.config_map_ref {
                self.configmap_data(&cm.name, cm.optional.unwrap_or(false))
                    .await?
            } else if let Some(s) = &from.secret_ref {
                self.secret_data(&s.name, s.optional.unwrap_or(false))
                    .await?
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                set(
                    &mut out,
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(from) = &e.value_from {
                if let Some(f) = &from.field_ref {
                    self.field(&f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = r
                        .container_name
                        .as_ref()
                        .and_then(|n| {
                            self.pod
                                .spec
                                .as_ref()?
                                .containers
                                .iter()
                                .find(|x| &x.name == n)
                        })
                        .or(Some(c));
                    self.resource_field(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                    )
                } else if let Some(k) = &from.config_map_key_ref {
                    let data = self
                        .configmap_data(&k.name, k.optional.unwrap_or(false))
                        .await?;
                    match data.get(&k.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if k.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(ResolveError::Missing {
                                kind: format!("key {:?} in configmap", k.key),
                                name: k.name.clone(),
                            });
                        }
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    let data = self
                        .secret_data(&k.name, k.optional.unwrap_or(false))
                        .await?;
                    match data.get(&k.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if k.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(ResolveError::Missing {
                                kind: format!("key {:?} in secret", k.key),
                                name: k.name.clone(),
                            });
                        }
                    }
                } else {
                    String::new()
                }
            } else {
                let raw = e.value.clone().unwrap_or_default();
                let known: HashMap<String, String> = out.iter().cloned().collect();
                crate::pods::spec::expand(&raw, &|k| known.get(k).cloned())
            };
            set(&mut out, e.name.clone(), value);
        }
        Ok(out)
    }

    /// Writes every volume of the pod under `pod_dir/volumes` (or finds its host path) and
    /// returns the host path of each, by volume name.
    pub async fn volumes(
        &mut self,
        pod_dir: &Path,
    ) -> Result<HashMap<String, PathBuf>, ResolveError> {
        let mut out = HashMap::new();
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            let path = self.volume(pod_dir, v).await?;
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    async fn volume(&mut self, pod_dir: &Path, v: &Volume) -> Result<PathBuf, ResolveError> {
        let dir = |kind: &str| pod_dir.join("volumes").join(kind).join(&v.name);
        if v.empty_dir.is_some() {
            let d = dir("kubernetes.io~empty-dir");
            mkdir(&d, Some(0o777))?;
            return Ok(d);
        }
        if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref() {
                Some("DirectoryOrCreate") => mkdir(&p, Some(0o755))?,
                Some("FileOrCreate") if !p.exists() => {
                    if let Some(parent) = p.parent() {
                        mkdir(parent, None)?;
                    }
                    write_file(&p, b"", 0o644)?;
                }
                _ => {}
            }
            return Ok(p);
        }
        if let Some(cm) = &v.config_map {
            let data = self
                .configmap_data(&cm.name, cm.optional.unwrap_or(false))
                .await?;
            let files = select_items(&data, cm.items.as_deref(), cm.default_mode.unwrap_or(0o644));
            let d = dir("kubernetes.io~configmap");
            write_tree(&d, &files)?;
            return Ok(d);
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let data = self.secret_data(&name, s.optional.unwrap_or(false)).await?;
            let files = select_items(&data, s.items.as_deref(), s.default_mode.unwrap_or(0o644));
            let d = dir("kubernetes.io~secret");
            write_tree(&d, &files)?;
            return Ok(d);
        }
        if let Some(d_api) = &v.downward_api {
            let mode = d_api.default_mode.unwrap_or(0o644);
            let files = self.downward_files(d_api.items.as_deref().unwrap_or_default(), mode)?;
            let d = dir("kubernetes.io~downward-api");
            write_tree(&d, &files)?;
            return Ok(d);
        }
        if let Some(p) = &v.projected {
            let mode = p.default_mode.unwrap_or(0o644);
            let mut files = Vec::new();
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let data = self
                        .configmap_data(&cm.name, cm.optional.unwrap_or(false))
                        .await?;
                    files.extend(select_items(&data, cm.items.as_deref(), mode));
                }
                if let Some(s) = &src.secret {
                    let data = self
                        .secret_data(&s.name, s.optional.unwrap_or(false))
                        .await?;
                    files.extend(select_items(&data, s.items.as_deref(), mode));
                }
                if let Some(d_api) = &src.downward_api {
                    files.extend(
                        self.downward_files(d_api.items.as_deref().unwrap_or_default(), mode)?,
                    );
                }
                if let Some(t) = &src.service_account_token {
                    let token = self.token(t.audience.clone(), t.expiration_seconds).await;
                    files.push((t.path.clone(), token.into_bytes(), mode));
                }
            }
            let d = dir("kubernetes.io~projected");
            write_tree(&d, &files)?;
            return Ok(d);
        }
        Err(ResolveError::Unsupported {
            name: v.name.clone(),
        })
    }

    fn downward_files(
        &self,
        items: &[DownwardAPIVolumeFile],
        mode: i32,
    ) -> Result<Vec<(String, Vec<u8>, i32)>, ResolveError> {
        let mut files = Vec::new();
        for item in items {
            let value = if let Some(f) = &item.field_ref {
                self.field(&f.field_path)?
            } else if let Some(r) = &item.resource_field_ref {
                let c = r.container_name.as_ref().and_then(|n| {
                    self.pod
                        .spec
                        .as_ref()?
                        .containers
                        .iter()
                        .find(|x| &x.name == n)
                });
                self.resource_field(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))
            } else {
                String::new()
            };
            files.push((
                item.path.clone(),
                value.into_bytes(),
                item.mode.unwrap_or(mode),
            ));
        }
        Ok(files)
    }

    /// A service account token from the TokenRequest API; empty when the API refuses.
    async fn token(&self, audience: Option<String>, expiration: Option<i64>) -> String {
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace());
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().collect(),
                expiration_seconds: expiration,
                bound_object_ref: None,
            },
            ..Default::default()
        };
        match api
            .create_token_request(&sa, &PostParams::default(), &req)
            .await
        {
            Ok(t) => t.status.map(|s| s.token).unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "token request failed; the token file stays empty");
                String::new()
            }
        }
    }
}

/// The host mounts of a container's volumeMounts (plus `/etc/hosts`).
pub(crate) fn mounts(
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
    etc_hosts: Option<&Path>,
) -> Result<Vec<v1::Mount>, ResolveError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| ResolveError::NoVolume(m.name.clone()))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = base.join(sub.trim_start_matches('/'));
                if !p.exists() {
                    mkdir(&p, Some(0o755))?;
                }
                p
            }
            None => base.clone(),
        };
        out.push(v1::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false),
            selinux_relabel: false,
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => v1::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => v1::MountPropagation::PropagationBidirectional as i32,
                _ => v1::MountPropagation::PropagationPrivate as i32,
            },
        });
    }
    if let Some(hosts) = etc_hosts
        && !out.iter().any(|m| m.container_path == "/etc/hosts")
    {
        out.push(v1::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// The pod's `/etc/hosts`.
pub(crate) fn etc_hosts(pod: &Pod, pod_ip: &str, domain: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let host = spec.hostname.clone().unwrap_or(name);
    if !pod_ip.is_empty() {
        match (&spec.subdomain, &pod.metadata.namespace) {
            (Some(sub), Some(ns)) => {
                s.push_str(&format!(
                    "{pod_ip}\t{host}.{sub}.{ns}.svc.{domain}\t{host}\n"
                ));
            }
            _ => s.push_str(&format!("{pod_ip}\t{host}\n")),
        }
    }
    for a in spec.host_aliases.iter().flatten() {
        s.push_str(&format!(
            "{}\t{}\n",
            a.ip,
            a.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    s
}

/// The files of a configMap/secret source: all keys, or the listed items.
fn select_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> Vec<(String, Vec<u8>, i32)> {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone(), i.mode.unwrap_or(mode)))
            })
            .collect(),
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), mode))
            .collect(),
    }
}

/// `k="v"` lines, as the downward API writes labels and annotations.
fn format_map(map: &Option<BTreeMap<String, String>>) -> String {
    map.iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mkdir(path: &Path, mode: Option<u32>) -> Result<(), ResolveError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(|source| ResolveError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| ResolveError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: i32) -> Result<(), ResolveError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| ResolveError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("k3s-rs-tmp");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode as u32 & 0o777))
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `files` (relative paths) under `dir`, replacing files that changed.
fn write_tree(dir: &Path, files: &[(String, Vec<u8>, i32)]) -> Result<(), ResolveError> {
    mkdir(dir, Some(0o755))?;
    for (rel, data, mode) in files {
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|p| p == "..") {
            continue;
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            mkdir(parent, None)?;
        }
        if std::fs::read(&p).ok().as_deref() != Some(data.as_slice()) {
            write_file(&p, data, *mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn items_select_and_rename_keys() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]
        .into();
        let items = [KeyToPath {
            key: "b".into(),
            path: "x/b.txt".into(),
            mode: None,
        }];
        assert_eq!(
            select_items(&data, Some(&items), 0o644),
            [("x/b.txt".to_owned(), b"2".to_vec(), 0o644)]
        );
        assert_eq!(select_items(&data, None, 0o600).len(), 2);
    }

    #[test]
    fn tree_is_written_and_escapes_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(
            dir.path(),
            &[
                ("k".into(), b"v".to_vec(), 0o644),
                ("../evil".into(), b"x".to_vec(), 0o644),
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("k")).unwrap(), b"v");
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": []}})).unwrap();
        assert!(etc_hosts(&pod, "10.42.0.5", "cluster.local").contains("10.42.0.5\tp\n"));
    }
}
