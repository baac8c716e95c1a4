//! Objects in the datastore: key layout, JSON encoding, and the resource version.
//!
//! Keys are `/registry/<group|core>/<plural>/[<namespace>/]<name>`. Values are the object's
//! JSON without `metadata.resourceVersion`: the resource version *is* the key's mod revision,
//! filled in on every read, so it can never disagree with the store.

use crate::error::ApiError;
use crate::resources::Resource;
use bytes::Bytes;
use datastore::{Backend, Event, KeyValue, Revision, StoreError};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use std::sync::Arc;

/// A change to an object, as a watch delivers it.
#[derive(Clone, Debug)]
pub enum Change {
    /// Created or updated; `prev` is the object before, if it existed.
    Put {
        /// The object now.
        obj: Value,
        /// The object before, when this is an update.
        prev: Option<Value>,
    },
    /// Deleted; the object as it was, with the deletion's resource version.
    Delete {
        /// The last state.
        obj: Value,
    },
}

/// Typed access to objects over a [`Backend`].
#[derive(Clone)]
pub struct ObjectStore {
    backend: Arc<dyn Backend>,
    /// Revision of the latest write this server made, per resource root (for consistent reads
    /// from the watch cache).
    last_writes: Arc<parking_lot::Mutex<std::collections::HashMap<String, Revision>>>,
}

/// The resource root of a key: `/registry/<group>/<plural>/`.
fn root_of(key: &str) -> &str {
    let mut slashes = 0;
    for (i, b) in key.bytes().enumerate() {
        if b == b'/' {
            slashes += 1;
            if slashes == 4 {
                return &key[..=i];
            }
        }
    }
    key
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore").finish_non_exhaustive()
    }
}

/// The key prefix of a resource, optionally narrowed to a namespace.
pub fn prefix(r: &Resource, namespace: Option<&str>) -> String {
    match namespace.filter(|_| r.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/", r.storage_group(), r.plural),
        None => format!("/registry/{}/{}/", r.storage_group(), r.plural),
    }
}

/// The key of one object.
pub fn key(r: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(r, namespace))
}

fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!("stored object {} is not valid JSON: {e}", kv.key))
    })?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

/// Set `metadata.resourceVersion`.
pub fn set_rv(v: &mut Value, rev: Revision) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

fn encode(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    /// The objects.
    pub items: Vec<Value>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// The last key returned, when more remain.
    pub next_after: Option<String>,
}

impl ObjectStore {
    /// Over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        ObjectStore {
            backend,
            last_writes: Arc::default(),
        }
    }

    fn note_write(&self, key: &str, rev: Revision) {
        let mut w = self.last_writes.lock();
        let e = w.entry(root_of(key).to_owned()).or_default();
        *e = (*e).max(rev);
    }

    /// The revision of the latest write this server made under a resource root.
    pub fn last_write(&self, root: &str) -> Revision {
        self.last_writes.lock().get(root).copied().unwrap_or(0)
    }

    /// The raw backend (for allocation keys).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Read one object (with its mod revision).
    pub async fn get(&self, key: &str) -> Result<Option<(Value, Revision)>, ApiError> {
        match self.backend.get(key, None).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Create; `Ok(None)` when the key exists.
    pub async fn create(
        &self,
        key: &str,
        obj: &Value,
        ttl: Option<std::time::Duration>,
    ) -> Result<Option<Value>, ApiError> {
        match self.backend.create(key, encode(obj), ttl).await {
            Ok(rev) => {
                self.note_write(key, rev);
                let mut out = obj.clone();
                set_rv(&mut out, rev);
                Ok(Some(out))
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Compare-and-swap update; `Ok(None)` when the mod revision moved on.
    pub async fn update(
        &self,
        key: &str,
        expected: Revision,
        obj: &Value,
    ) -> Result<Option<Value>, ApiError> {
        match self.backend.update(key, expected, encode(obj), None).await {
            Ok(rev) => {
                self.note_write(key, rev);
                let mut out = obj.clone();
                set_rv(&mut out, rev);
                Ok(Some(out))
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Compare-and-swap delete; `Ok(None)` when the object changed or vanished meanwhile.
    pub async fn delete(&self, key: &str, expected: Revision) -> Result<Option<Value>, ApiError> {
        match self.backend.delete(key, Some(expected)).await {
            Ok((kv, rev)) => {
                self.note_write(key, rev);
                let mut v = decode(&kv)?;
                set_rv(&mut v, rev);
                Ok(Some(v))
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of keys under `prefix` after `after`, read at `at` (None = latest).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        at: Option<Revision>,
    ) -> Result<Page, ApiError> {
        let res = self.backend.list(prefix, after, limit, at).await?;
        let next_after = if res.more {
            res.items.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        let items = res
            .items
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            revision: res.revision,
            next_after,
        })
    }

    /// Changes under `prefix` after `after`, in order. Ends with `Err(Gone)` when history
    /// before `after` was compacted or the watcher fell too far behind.
    pub async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<(Change, Revision), ApiError>>, ApiError> {
        let stream = self.backend.watch(prefix, after).await?;
        Ok(stream
            .map(|ev| {
                let ev = ev.map_err(ApiError::from)?;
                match ev {
                    Event::Put { kv, prev } => {
                        let obj = decode(&kv)?;
                        let prev = prev.as_ref().map(decode).transpose()?;
                        Ok((Change::Put { obj, prev }, kv.mod_revision))
                    }
                    Event::Delete { prev, revision } => {
                        let mut obj = decode(&prev)?;
                        set_rv(&mut obj, revision);
                        Ok((Change::Delete { obj }, revision))
                    }
                }
            })
            .boxed())
    }
}
