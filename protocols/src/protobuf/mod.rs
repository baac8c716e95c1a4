//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) ↔ the JSON objects the API
//! server works with.
//!
//! kubectl 1.32 sends protobuf for `create <configmap|secret|deployment|...>`, `create token`,
//! `auth can-i`, `auth whoami` and the `DeleteOptions` of `drain`, and never falls back to JSON.
//! [`decode`] turns such a body into exactly the JSON object the JSON API receives for the same
//! request; [`encode`] goes the other way, for clients that ask for protobuf responses.
//!
//! # Wire format
//! A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message: `typeMeta`
//! (`apiVersion`, `kind`) = 1, `raw` (the object's own message) = 2, `contentEncoding` = 3,
//! `contentType` = 4. The object's message is looked up from `typeMeta` in the schema compiled
//! from the vendored `generated.proto` files of Kubernetes 1.32 (`protocols/proto/`, see its
//! README), and decoded dynamically with `prost-reflect`.
//!
//! # JSON mapping (Go's `encoding/json`, not proto3 JSON)
//! - Member names are the proto field names (already the Go JSON names); `int64` stays a number;
//!   `bytes` and `map<string, bytes>` values are base64; repeated fields are arrays, maps objects.
//! - Presence follows Go. Pointer fields (`*int32`, `*bool`, `*string`, `*T`) are written by
//!   client-go only when set, so a present one is kept even at zero (`replicas: 0`,
//!   `gracePeriodSeconds: 0`). Value fields (`(gogoproto.nullable) = false` in the schema) are
//!   always on the wire: a zero scalar one (`""`, `0`, `false`) is left out — Go's JSON omits
//!   nearly all of them (`omitempty`) and Kubernetes reads an absent one as zero — while a
//!   struct one is kept (`"status": {}`), as in Go.
//! - `json:",inline"` embedded structs (`Volume.volumeSource`, `Probe.handler`...) are flattened.
//! - `meta.v1.Time` → `"2026-01-02T03:04:05Z"` and `MicroTime` → `"...05.000000Z"` (`null` when
//!   zero); `Duration` → Go duration text (`"1h2m3s"`); `IntOrString` → number or string;
//!   `Quantity` → its string; `RawExtension` and `FieldsV1` → the embedded JSON; an embedded
//!   `runtime.Unknown` or protobuf `RawExtension` → decoded recursively; `ExtraValue`/`Verbs` →
//!   arrays of strings.
//!
//! The one difference from Go's JSON: a value field that Go writes without `omitempty` (say
//! `PriorityClass.value: 0`) comes out absent at zero. The schema does not record `omitempty`,
//! and absent means zero to every Kubernetes reader.
//!
//! # Robustness
//! No input panics: malformed protobuf, unknown kinds and bad values are [`ProtobufError`]s
//! (a property test throws random and mutated bodies at [`decode`]). Message nesting is bounded
//! by prost's recursion limit, embedded envelopes by [`MAX_EMBEDDED_ENVELOPES`].

mod decode;
mod encode;
mod schema;
mod time;
mod wire;

use serde_json::Value;

use self::schema::Schema;

/// The four bytes that open every Kubernetes protobuf body.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The media type of an embedded object stored as JSON inside a `runtime.Unknown`.
const CONTENT_TYPE_JSON: &str = "application/json";

/// How many envelopes may nest inside each other (a `runtime.Unknown` or protobuf
/// `RawExtension` inside an object); deeper bodies are rejected with [`ProtobufError::TooDeep`].
pub const MAX_EMBEDDED_ENVELOPES: usize = 8;

/// Why a body could not be decoded or an object encoded.
///
/// Every variant except [`ProtobufError::Schema`] is the client's fault: answer 415 for
/// [`ProtobufError::is_unsupported_media_type`] ones and 400 (`BadRequest`) for the rest.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with the `k8s\0` magic, so it is not Kubernetes protobuf.
    #[error("the body is not Kubernetes protobuf: it does not start with the \"k8s\\x00\" magic")]
    BadMagic,

    /// The bytes are not a valid protobuf message of the expected type (truncated, a bad wire
    /// type, nesting beyond prost's recursion limit...).
    #[error("invalid protobuf in {what}: {source}")]
    Decode {
        /// What was being decoded: the envelope, or the object's `apiVersion kind`.
        what: String,
        /// The protobuf decoder's complaint.
        #[source]
        source: prost::DecodeError,
    },

    /// `typeMeta` names a type this server has no protobuf schema for (the Go API server
    /// answers such bodies, e.g. for custom resources, with 415 Unsupported Media Type).
    #[error("no protobuf schema for kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind {
        /// The envelope's (or the object's) `apiVersion`.
        api_version: String,
        /// The envelope's (or the object's) `kind`.
        kind: String,
    },

    /// The envelope's `contentEncoding` is set (e.g. `gzip`); Kubernetes defines none.
    #[error("unsupported protobuf content encoding {encoding:?}")]
    UnsupportedEncoding {
        /// The `contentEncoding` found.
        encoding: String,
    },

    /// The envelope's `contentType` is neither protobuf nor JSON.
    #[error("unsupported content type {content_type:?} inside the protobuf envelope")]
    UnsupportedContentType {
        /// The `contentType` found.
        content_type: String,
    },

    /// A well-formed field holds a value Kubernetes does not allow: an `IntOrString` of
    /// unknown type, a time outside years 0000–9999, an embedded object that is not JSON...
    #[error("invalid value in {field}: {reason}")]
    InvalidValue {
        /// The protobuf field, e.g. `k8s.io.api.core.v1.ServicePort.targetPort`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Envelopes nest deeper than [`MAX_EMBEDDED_ENVELOPES`].
    #[error("protobuf envelopes nest deeper than {limit}")]
    TooDeep {
        /// The limit that was hit.
        limit: usize,
    },

    /// ([`encode`] only) The JSON object does not fit the schema: no `apiVersion`/`kind`, or a
    /// member of the wrong JSON type, out of range, or badly formatted.
    #[error("cannot encode {path:?} as protobuf: {reason}")]
    InvalidJson {
        /// Where in the object, e.g. `spec.template.spec.containers[0].ports[0].containerPort`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The embedded schema failed to load: a build defect, not the client's fault (500).
    #[error("the embedded protobuf schema is unusable: {reason}")]
    Schema {
        /// Why loading failed.
        reason: String,
    },
}

impl ProtobufError {
    /// Whether the right answer is 415 Unsupported Media Type rather than 400 Bad Request: the
    /// body is well-formed but uses an encoding or type this server does not speak.
    pub fn is_unsupported_media_type(&self) -> bool {
        matches!(
            self,
            ProtobufError::UnknownKind { .. }
                | ProtobufError::UnsupportedEncoding { .. }
                | ProtobufError::UnsupportedContentType { .. }
        )
    }
}

/// Decodes a Kubernetes protobuf request body into the JSON object the JSON API would have
/// received, with `apiVersion` and `kind` set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode::envelope(Schema::get()?, body, 0)
}

/// Encodes a JSON object (which must carry `apiVersion` and `kind`) as a Kubernetes protobuf
/// body, as client-go or the Go API server would write it. JSON members the schema does not
/// know are dropped, as Go's typed decoding drops them.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    encode::envelope(Schema::get()?, object)
}

/// Whether `kind` in `api_version` has a protobuf schema here, i.e. whether [`decode`] and
/// [`encode`] can handle it (e.g. to decide whether to offer protobuf for a response).
pub fn supports(api_version: &str, kind: &str) -> bool {
    Schema::get().is_ok_and(|schema| schema.resolve(api_version, kind).is_some())
}

#[cfg(test)]
mod tests;
