//! The data model shared by every backend: revisions, key-value versions, change events and list
//! pages.
//!
//! Invariants (etcd's model, which the API server relies on):
//! - the store has one cluster-wide [`Revision`] that increases by at least one with every write;
//!   a write is identified by the revision it created;
//! - a [`KeyValue`] is one version of a key: `create_revision` is the revision that created the key
//!   (it survives updates and is reset by delete + create), `mod_revision` the revision of this
//!   version;
//! - every write produces exactly one [`Event`], whose [`Event::revision`] is the write's revision.

use bytes::Bytes;

/// A cluster-wide store revision (etcd's `revision`, Kubernetes' `resourceVersion`).
///
/// Revisions start at 1 for the first write; 0 means "before any write".
pub type Revision = i64;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// The revision that created the key (unchanged by updates).
    pub create_revision: Revision,
    /// The revision of this version.
    pub mod_revision: Revision,
    /// The time-to-live this version was written with, in whole seconds (rounded up), if any.
    pub lease_ttl: Option<i64>,
}

/// One change to one key, as delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is `None`) or updated (`prev` is the version it replaced).
    Put {
        /// The new version.
        kv: KeyValue,
        /// The version it replaced, `None` for a create.
        prev: Option<KeyValue>,
    },
    /// The key was deleted (by a client or by TTL expiry).
    Delete {
        /// The version that was deleted.
        prev: KeyValue,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl Event {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }

    /// Approximate heap size, used to bound in-memory event buffers.
    pub(crate) fn approx_size(&self) -> usize {
        fn kv_size(kv: &KeyValue) -> usize {
            kv.key.len() + kv.value.len() + 64
        }
        match self {
            Event::Put { kv, prev } => kv_size(kv) + prev.as_ref().map_or(0, kv_size),
            Event::Delete { prev, .. } => kv_size(prev),
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// The keys, ordered by key (byte order).
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at: pass it back as `at` to read the next page from the
    /// same snapshot.
    pub revision: Revision,
    /// Whether more keys with the prefix follow the last item.
    pub more: bool,
    /// When `more`, the last key of this page: pass it as `start_after` for the next page.
    pub continue_after: Option<String>,
}

/// The exclusive upper bound of the keys that start with `prefix`, as bytes: `prefix` with its last
/// byte incremented. `None` means "no upper bound" (the empty prefix).
///
/// Keys are UTF-8, so no byte is 0xFF and the increment never carries.
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.pop()?;
    // UTF-8 never contains 0xFF, so `last + 1` cannot overflow.
    end.push(last.saturating_add(1));
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(""), None);
        let end = prefix_end("é").unwrap_or_default();
        assert!("é".as_bytes() < end.as_slice());
        assert!("éz".as_bytes() < end.as_slice());
    }

    #[test]
    fn event_revision_and_key() {
        let kv = KeyValue {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            create_revision: 3,
            mod_revision: 5,
            lease_ttl: None,
        };
        let put = Event::Put {
            kv: kv.clone(),
            prev: None,
        };
        assert_eq!(put.revision(), 5);
        let del = Event::Delete {
            prev: kv,
            revision: 9,
        };
        assert_eq!(del.revision(), 9);
        assert_eq!(del.key(), "k");
    }
}
