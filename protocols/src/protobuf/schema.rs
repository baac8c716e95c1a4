//! The compiled Kubernetes schema: the descriptor pool built from `proto/` at compile time, plus
//! what the JSON mapping needs to know beyond plain protobuf.
//!
//! Invariants: the pool holds every file listed in `build.rs` (and their imports), the gogoproto
//! extensions included; it is built once, on first use, and never changes afterwards.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, FieldDescriptor, MessageDescriptor, Value as PbValue};

use super::ProtobufError;

/// The encoded `FileDescriptorSet` written by `build.rs`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// Built on first use; a failure here means the embedded descriptors are broken (a build bug).
static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(Schema::load);

/// Package of `meta/v1`, whose option kinds (`DeleteOptions`...) travel under any group version.
pub(crate) const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// API group name → the `k8s.io.api.<dir>` package directory that holds its messages.
const GROUPS: &[(&str, &str)] = &[
    ("", "core"),
    ("apps", "apps"),
    ("batch", "batch"),
    ("policy", "policy"),
    ("autoscaling", "autoscaling"),
    ("rbac.authorization.k8s.io", "rbac"),
    ("networking.k8s.io", "networking"),
    ("scheduling.k8s.io", "scheduling"),
    ("authentication.k8s.io", "authentication"),
    ("authorization.k8s.io", "authorization"),
    ("coordination.k8s.io", "coordination"),
    ("discovery.k8s.io", "discovery"),
    ("certificates.k8s.io", "certificates"),
    ("storage.k8s.io", "storage"),
    ("node.k8s.io", "node"),
    ("events.k8s.io", "events"),
];

/// `meta/v1` kinds that are sent as top-level bodies in every group version.
const META_KINDS: &[&str] = &[
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
    "Status",
    "WatchEvent",
    "PartialObjectMetadata",
    "PartialObjectMetadataList",
];

/// Fields that Go embeds anonymously with `json:",inline"`: their members appear directly in the
/// parent JSON object. The protobuf schema cannot tell these apart from named fields of the same
/// shape (`RoleBinding.roleRef` is named, `Volume.volumeSource` is inline), so they are listed;
/// the list covers every such field in the vendored groups (checked by a test).
const INLINE_FIELDS: &[&str] = &[
    "k8s.io.api.core.v1.ConfigMapEnvSource.localObjectReference",
    "k8s.io.api.core.v1.ConfigMapKeySelector.localObjectReference",
    "k8s.io.api.core.v1.ConfigMapProjection.localObjectReference",
    "k8s.io.api.core.v1.ConfigMapVolumeSource.localObjectReference",
    "k8s.io.api.core.v1.SecretEnvSource.localObjectReference",
    "k8s.io.api.core.v1.SecretKeySelector.localObjectReference",
    "k8s.io.api.core.v1.SecretProjection.localObjectReference",
    "k8s.io.api.core.v1.EphemeralContainer.ephemeralContainerCommon",
    "k8s.io.api.core.v1.PersistentVolumeSpec.persistentVolumeSource",
    "k8s.io.api.core.v1.Probe.handler",
    "k8s.io.api.core.v1.Volume.volumeSource",
    "k8s.io.api.networking.v1.IngressRule.ingressRuleValue",
];

/// Fields whose proto name is not their Go JSON name (go-to-protobuf derived these from the Go
/// field name). `extract_from_kubectl.py` lists them from kubectl's struct tags.
const JSON_NAMES: &[(&str, &str)] = &[
    (
        "k8s.io.api.authentication.v1.BoundObjectReference.uID",
        "uid",
    ),
    (
        "k8s.io.api.networking.v1.IngressClassParametersReference.aPIGroup",
        "apiGroup",
    ),
];

/// Messages whose Go type has its own JSON form instead of an object of fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// `meta.v1.Time`: `{seconds, nanos}` ↔ RFC 3339 with seconds precision, `null` when zero.
    Time,
    /// `meta.v1.MicroTime`: like `Time` with six fractional digits.
    MicroTime,
    /// `meta.v1.Duration`: `{duration}` nanoseconds ↔ a Go duration string (`1h2m3s`).
    Duration,
    /// `util.intstr.IntOrString`: `{type, intVal, strVal}` ↔ a JSON number or string.
    IntOrString,
    /// `api.resource.Quantity`: `{string}` ↔ the string.
    Quantity,
    /// `runtime.RawExtension`: `{raw}` ↔ the embedded object (JSON, or a nested protobuf envelope).
    RawExtension,
    /// `meta.v1.FieldsV1`: `{Raw}` ↔ the embedded JSON.
    FieldsV1,
    /// `runtime.Unknown`: an embedded envelope, decoded like a request body.
    Unknown,
    /// Go slice types (`ExtraValue`, `Verbs`) wrapped as `{items}` ↔ a JSON array.
    StringList,
}

impl Special {
    /// The special JSON form of the message named `full_name`, if it has one.
    pub(crate) fn of(full_name: &str) -> Option<Special> {
        Some(match full_name {
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
            "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Special::FieldsV1,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"
            | "k8s.io.api.authentication.v1.ExtraValue"
            | "k8s.io.api.authorization.v1.ExtraValue"
            | "k8s.io.api.certificates.v1.ExtraValue" => Special::StringList,
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => Special::Quantity,
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => Special::RawExtension,
            "k8s.io.apimachinery.pkg.runtime.Unknown" => Special::Unknown,
            _ => return None,
        })
    }
}

/// The descriptor pool and the per-field facts derived from its gogoproto options.
#[derive(Debug)]
pub(crate) struct Schema {
    /// All vendored messages.
    pub(crate) pool: DescriptorPool,
    /// `runtime.Unknown`, the envelope of every body.
    pub(crate) unknown: MessageDescriptor,
    /// Full names of fields marked `(gogoproto.nullable) = false`: Go value (non-pointer) fields,
    /// which client-go always writes, even at their zero value.
    value_fields: HashSet<String>,
    /// Full names of `json:",inline"` fields.
    inline_fields: HashSet<&'static str>,
    /// Full field name → JSON name, for the fields in [`JSON_NAMES`].
    json_names: HashMap<&'static str, &'static str>,
    /// Message full name → JSON name → proto field name: the reverse of `json_names`.
    renamed: HashMap<&'static str, HashMap<&'static str, &'static str>>,
}

impl Schema {
    /// The process-wide schema, built on first use.
    pub(crate) fn get() -> Result<&'static Schema, ProtobufError> {
        SCHEMA.as_ref().map_err(|reason| ProtobufError::Schema {
            reason: reason.clone(),
        })
    }

    fn load() -> Result<Schema, String> {
        let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        let unknown = pool
            .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
            .ok_or("runtime.Unknown is missing from the embedded descriptors")?;
        let nullable = pool
            .get_extension_by_name("gogoproto.nullable")
            .ok_or("gogoproto.nullable is missing from the embedded descriptors")?;
        let mut value_fields = HashSet::new();
        for message in pool.all_messages() {
            for field in message.fields() {
                let options = field.options();
                if options.has_extension(&nullable)
                    && matches!(*options.get_extension(&nullable), PbValue::Bool(false))
                {
                    value_fields.insert(field.full_name().to_owned());
                }
            }
        }
        let inline_fields: HashSet<&'static str> = INLINE_FIELDS.iter().copied().collect();
        for name in &inline_fields {
            let found = pool.all_messages().any(|m| {
                m.fields()
                    .any(|f| f.full_name() == *name && f.kind().as_message().is_some())
            });
            if !found {
                return Err(format!(
                    "inline field {name} is not a message field of the schema"
                ));
            }
        }
        let mut renamed = HashMap::new();
        for (full, json) in JSON_NAMES {
            let (message, proto) = full
                .rsplit_once('.')
                .ok_or_else(|| format!("bad JSON_NAMES entry {full}"))?;
            let exists = pool
                .get_message_by_name(message)
                .is_some_and(|m| m.get_field_by_name(proto).is_some());
            if !exists {
                return Err(format!("renamed field {full} is not in the schema"));
            }
            renamed
                .entry(message)
                .or_insert_with(HashMap::new)
                .insert(*json, proto);
        }
        let json_names = JSON_NAMES.iter().copied().collect();
        Ok(Schema {
            pool,
            unknown,
            value_fields,
            inline_fields,
            json_names,
            renamed,
        })
    }

    /// Whether `field` is a Go value (non-pointer) field, written by client-go even when zero.
    pub(crate) fn is_value_field(&self, field: &FieldDescriptor) -> bool {
        self.value_fields.contains(field.full_name())
    }

    /// Whether `field` is embedded `json:",inline"` in its parent's JSON.
    pub(crate) fn is_inline(&self, field: &FieldDescriptor) -> bool {
        self.inline_fields.contains(field.full_name())
    }

    /// The JSON member name of `field`: its proto name except for the few in [`JSON_NAMES`].
    pub(crate) fn json_name<'f>(&self, field: &'f FieldDescriptor) -> &'f str {
        match self.json_names.get(field.full_name()) {
            Some(json) => json,
            None => field.name(),
        }
    }

    /// The field of `desc` that JSON member `key` names, if any.
    pub(crate) fn field_by_json_name(
        &self,
        desc: &MessageDescriptor,
        key: &str,
    ) -> Option<FieldDescriptor> {
        if let Some(proto) = self.renamed.get(desc.full_name()).and_then(|m| m.get(key)) {
            return desc.get_field_by_name(proto);
        }
        desc.get_field_by_name(key)
            .filter(|f| !self.json_names.contains_key(f.full_name()))
    }

    /// The message for a top-level object of `kind` in `api_version`, if the schema has one.
    ///
    /// Kinds of the group's own package win; `meta/v1` option kinds (`DeleteOptions`, `Status`...)
    /// are accepted under any group version, as client-go stamps them with the client's version.
    pub(crate) fn resolve(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if !is_identifier(kind) || !is_identifier(version) {
            return None;
        }
        let package = if group == "meta.k8s.io" {
            None
        } else {
            GROUPS
                .iter()
                .find(|(g, _)| *g == group)
                .map(|(_, dir)| *dir)
        };
        if let Some(dir) = package {
            let name = format!("k8s.io.api.{dir}.{version}.{kind}");
            if let Some(message) = self.pool.get_message_by_name(&name)
                && is_top_level(&message)
            {
                return Some(message);
            }
        }
        if META_KINDS.contains(&kind) {
            return self.pool.get_message_by_name(&format!("{META_V1}.{kind}"));
        }
        None
    }
}

/// Kinds and versions are Go identifiers: letters and digits only.
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Top-level kinds carry `metadata` (`ObjectMeta`, or `ListMeta` for lists).
fn is_top_level(message: &MessageDescriptor) -> bool {
    message.get_field_by_name("metadata").is_some_and(|f| {
        f.kind().as_message().is_some_and(|m| {
            matches!(
                m.full_name(),
                "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
                    | "k8s.io.apimachinery.pkg.apis.meta.v1.ListMeta"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value fields named after their type that Go nevertheless gives a JSON name: they look
    /// like embedded structs in the schema but are not inline.
    const NAMED_LOOKALIKES: &[&str] = &[
        "k8s.io.api.core.v1.PreferAvoidPodsEntry.podSignature",
        "k8s.io.api.core.v1.WeightedPodAffinityTerm.podAffinityTerm",
        "k8s.io.api.rbac.v1.ClusterRoleBinding.roleRef",
        "k8s.io.api.rbac.v1.RoleBinding.roleRef",
        "k8s.io.api.authentication.v1.SelfSubjectReviewStatus.userInfo",
        "k8s.io.api.storage.v1.VolumeError.time",
    ];

    /// An embedded Go struct is a value field whose Go name (`customname`) is its type's name.
    /// Each such field must be listed as inline or as a known named look-alike, so a schema
    /// update that adds an inline struct cannot slip through unnoticed.
    #[test]
    fn every_embedded_looking_field_is_classified() {
        let schema = Schema::get().expect("schema");
        let customname = schema
            .pool
            .get_extension_by_name("gogoproto.customname")
            .expect("customname");
        let mut unclassified = Vec::new();
        // Special messages (the envelope's own `Unknown.typeMeta`) have their own JSON form.
        for message in schema
            .pool
            .all_messages()
            .filter(|m| Special::of(m.full_name()).is_none())
        {
            for field in message.fields() {
                let Some(inner) = field.kind().as_message().cloned() else {
                    continue;
                };
                let options = field.options();
                let go_name = match &*options.get_extension(&customname) {
                    PbValue::String(s) => s.clone(),
                    _ => continue,
                };
                if field.name() == "metadata"
                    || !schema.is_value_field(&field)
                    || go_name != inner.name()
                {
                    continue;
                }
                let name = field.full_name();
                if !INLINE_FIELDS.contains(&name) && !NAMED_LOOKALIKES.contains(&name) {
                    unclassified.push(name.to_owned());
                }
            }
        }
        assert!(
            unclassified.is_empty(),
            "classify as inline or named: {unclassified:#?}"
        );
    }

    #[test]
    fn value_fields_come_from_gogoproto_nullable() {
        let schema = Schema::get().expect("schema");
        let meta = schema
            .pool
            .get_message_by_name(&format!("{META_V1}.ObjectMeta"))
            .expect("ObjectMeta");
        let field = |name: &str| meta.get_field_by_name(name).expect("field");
        assert!(schema.is_value_field(&field("name")));
        assert!(schema.is_value_field(&field("creationTimestamp")));
        assert!(!schema.is_value_field(&field("deletionTimestamp")));
        assert!(!schema.is_value_field(&field("deletionGracePeriodSeconds")));
    }

    #[test]
    fn renamed_fields_use_their_json_names() {
        let schema = Schema::get().expect("schema");
        let desc = schema
            .pool
            .get_message_by_name("k8s.io.api.authentication.v1.BoundObjectReference")
            .expect("BoundObjectReference");
        let uid = schema.field_by_json_name(&desc, "uid").expect("uid");
        assert_eq!(uid.name(), "uID");
        assert_eq!(schema.json_name(&uid), "uid");
        assert!(schema.field_by_json_name(&desc, "uID").is_none());
        assert!(schema.field_by_json_name(&desc, "kind").is_some());
    }
}
