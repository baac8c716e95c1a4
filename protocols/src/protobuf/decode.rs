//! Protobuf → JSON: walks a decoded [`DynamicMessage`] and writes the JSON that Go's
//! `encoding/json` would write for the same Go object (see the module docs of `protobuf` for the
//! rules and the one deliberate difference).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage as _, Value as PbValue,
};
use serde_json::{Map, Number, Value};

use super::schema::{Schema, Special};
use super::time::{format_go_duration, format_rfc3339};
use super::{
    CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, MAGIC, MAX_EMBEDDED_ENVELOPES, ProtobufError,
};

/// Decodes a body that starts with the `k8s\0` magic. `depth` counts envelopes already open.
pub(crate) fn envelope(schema: &Schema, body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(&MAGIC).ok_or(ProtobufError::BadMagic)?;
    let unknown = DynamicMessage::decode(schema.unknown.clone(), rest).map_err(|source| {
        ProtobufError::Decode {
            what: "runtime.Unknown envelope".into(),
            source,
        }
    })?;
    unknown_message(schema, &unknown, depth)
}

/// Decodes a `runtime.Unknown`: `typeMeta` names the type, `raw` holds the object in
/// `contentType` (protobuf when empty).
fn unknown_message(
    schema: &Schema,
    unknown: &DynamicMessage,
    depth: usize,
) -> Result<Value, ProtobufError> {
    if depth >= MAX_EMBEDDED_ENVELOPES {
        return Err(ProtobufError::TooDeep {
            limit: MAX_EMBEDDED_ENVELOPES,
        });
    }
    let string = |msg: &DynamicMessage, name: &str| -> String {
        match msg.get_field_by_name(name).as_deref() {
            Some(PbValue::String(s)) => s.clone(),
            _ => String::new(),
        }
    };
    let (api_version, kind) = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(PbValue::Message(type_meta)) => {
            (string(type_meta, "apiVersion"), string(type_meta, "kind"))
        }
        _ => (String::new(), String::new()),
    };
    let encoding = string(unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding { encoding });
    }
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(PbValue::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let content_type = string(unknown, "contentType");
    let mut object = match media_type(&content_type) {
        "" | CONTENT_TYPE_PROTOBUF => {
            let desc =
                schema
                    .resolve(&api_version, &kind)
                    .ok_or_else(|| ProtobufError::UnknownKind {
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                    })?;
            let message = DynamicMessage::decode(desc, raw.as_ref()).map_err(|source| {
                ProtobufError::Decode {
                    what: format!("{api_version} {kind}"),
                    source,
                }
            })?;
            let walker = Walker { schema, depth };
            Value::Object(walker.object(&message)?)
        }
        CONTENT_TYPE_JSON => {
            serde_json::from_slice::<Value>(&raw).map_err(|e| ProtobufError::InvalidValue {
                field: format!("{api_version} {kind}"),
                reason: format!("embedded JSON does not parse: {e}"),
            })?
        }
        _ => return Err(ProtobufError::UnsupportedContentType { content_type }),
    };
    if let Value::Object(map) = &mut object {
        if !api_version.is_empty() {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        if !kind.is_empty() {
            map.insert("kind".into(), Value::String(kind));
        }
    }
    Ok(object)
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// One decoding pass; `depth` is the number of envelopes around the message being walked.
struct Walker<'a> {
    schema: &'a Schema,
    depth: usize,
}

impl Walker<'_> {
    /// A message as a JSON object of its present fields (inline fields flattened).
    fn object(&self, message: &DynamicMessage) -> Result<Map<String, Value>, ProtobufError> {
        let mut out = Map::new();
        self.fields_into(message, &mut out)?;
        Ok(out)
    }

    fn fields_into(
        &self,
        message: &DynamicMessage,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        for field in message.descriptor().fields() {
            if !message.has_field(&field) {
                continue;
            }
            let value = message.get_field(&field);
            if self.schema.is_inline(&field) {
                if let PbValue::Message(inner) = value.as_ref() {
                    self.fields_into(inner, out)?;
                }
                continue;
            }
            // A Go value field is always on the wire; at its zero value it stands for a field
            // Go's JSON would (almost always) omit, so it is left out.
            if !field.is_list()
                && !field.is_map()
                && self.schema.is_value_field(&field)
                && is_zero_scalar(value.as_ref())
            {
                continue;
            }
            let json = self.field_value(&field, value.as_ref())?;
            out.insert(self.schema.json_name(&field).to_owned(), json);
        }
        Ok(())
    }

    fn field_value(
        &self,
        field: &FieldDescriptor,
        value: &PbValue,
    ) -> Result<Value, ProtobufError> {
        match value {
            PbValue::List(items) => items
                .iter()
                .map(|item| self.value(field, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            PbValue::Map(entries) => {
                let value_field = match field.kind() {
                    Kind::Message(entry) if entry.is_map_entry() => entry.map_entry_value_field(),
                    _ => return Err(invalid(field, "map field without a map entry type")),
                };
                let mut out = Map::new();
                for (key, item) in entries {
                    out.insert(map_key(key), self.value(&value_field, item)?);
                }
                Ok(Value::Object(out))
            }
            single => self.value(field, single),
        }
    }

    /// One (non-list, non-map) value of `field`.
    fn value(&self, field: &FieldDescriptor, value: &PbValue) -> Result<Value, ProtobufError> {
        Ok(match value {
            PbValue::Bool(b) => Value::Bool(*b),
            PbValue::I32(n) => Value::from(*n),
            PbValue::I64(n) => Value::from(*n),
            PbValue::U32(n) => Value::from(*n),
            PbValue::U64(n) => Value::from(*n),
            PbValue::F32(n) => float(field, f64::from(*n))?,
            PbValue::F64(n) => float(field, *n)?,
            PbValue::String(s) => Value::String(s.clone()),
            PbValue::Bytes(b) => Value::String(BASE64.encode(b)),
            PbValue::EnumNumber(n) => Value::from(*n),
            PbValue::Message(m) => self.message(field, m)?,
            PbValue::List(_) | PbValue::Map(_) => {
                return Err(invalid(
                    field,
                    "nested list or map where a single value belongs",
                ));
            }
        })
    }

    /// A message value: its special JSON form, or an object of fields.
    fn message(&self, field: &FieldDescriptor, m: &DynamicMessage) -> Result<Value, ProtobufError> {
        let Some(special) = Special::of(m.descriptor().full_name()) else {
            return Ok(Value::Object(self.object(m)?));
        };
        let int = |name: &str| -> i64 {
            match m.get_field_by_name(name).as_deref() {
                Some(PbValue::I64(n)) => *n,
                Some(PbValue::I32(n)) => i64::from(*n),
                _ => 0,
            }
        };
        let present = |name: &str| m.has_field_by_name(name);
        Ok(match special {
            // Go decodes an empty Time as the zero time, which its JSON writes as null; protobuf
            // keeps only whole seconds of a Time (nanos are dropped on decode, as in Go).
            Special::Time | Special::MicroTime => {
                if !present("seconds") && !present("nanos") {
                    return Ok(Value::Null);
                }
                let micros = (special == Special::MicroTime).then(|| {
                    u32::try_from(int("nanos").clamp(0, 999_999_999)).unwrap_or(0) / 1_000
                });
                let text = format_rfc3339(int("seconds"), micros)
                    .ok_or_else(|| invalid(field, "time outside years 0000-9999"))?;
                Value::String(text)
            }
            Special::Duration => Value::String(format_go_duration(int("duration"))),
            Special::IntOrString => match int("type") {
                0 => Value::from(int("intVal")),
                1 => match m.get_field_by_name("strVal").as_deref() {
                    Some(PbValue::String(s)) => Value::String(s.clone()),
                    _ => Value::String(String::new()),
                },
                other => {
                    return Err(invalid(
                        field,
                        &format!("IntOrString type {other} is neither 0 nor 1"),
                    ));
                }
            },
            Special::Quantity => match m.get_field_by_name("string").as_deref() {
                Some(PbValue::String(s)) if !s.is_empty() => Value::String(s.clone()),
                _ => Value::String("0".to_owned()),
            },
            Special::RawExtension | Special::FieldsV1 => {
                let name = if special == Special::FieldsV1 {
                    "Raw"
                } else {
                    "raw"
                };
                match m.get_field_by_name(name).as_deref() {
                    Some(PbValue::Bytes(raw)) if !raw.is_empty() => self.embedded(field, raw)?,
                    _ => Value::Null,
                }
            }
            Special::Unknown => unknown_message(self.schema, m, self.depth + 1)?,
            Special::StringList => match m.get_field_by_name("items").as_deref() {
                Some(PbValue::List(items)) => Value::Array(
                    items
                        .iter()
                        .map(|item| match item {
                            PbValue::String(s) => Ok(Value::String(s.clone())),
                            _ => Err(invalid(field, "list item is not a string")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => Value::Array(Vec::new()),
            },
        })
    }

    /// The payload of a `RawExtension` or `FieldsV1`: JSON, or a nested protobuf envelope.
    fn embedded(&self, field: &FieldDescriptor, raw: &[u8]) -> Result<Value, ProtobufError> {
        if raw.starts_with(&MAGIC) {
            return envelope(self.schema, raw, self.depth + 1);
        }
        serde_json::from_slice(raw)
            .map_err(|e| invalid(field, &format!("embedded JSON does not parse: {e}")))
    }
}

/// The zero value of a scalar (`""`, `0`, `false`, empty bytes); messages are never "zero".
fn is_zero_scalar(value: &PbValue) -> bool {
    match value {
        PbValue::Bool(b) => !b,
        PbValue::I32(n) | PbValue::EnumNumber(n) => *n == 0,
        PbValue::I64(n) => *n == 0,
        PbValue::U32(n) => *n == 0,
        PbValue::U64(n) => *n == 0,
        PbValue::F32(n) => *n == 0.0,
        PbValue::F64(n) => *n == 0.0,
        PbValue::String(s) => s.is_empty(),
        PbValue::Bytes(b) => b.is_empty(),
        PbValue::Message(_) | PbValue::List(_) | PbValue::Map(_) => false,
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

fn float(field: &FieldDescriptor, n: f64) -> Result<Value, ProtobufError> {
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| invalid(field, "NaN or infinite number"))
}

fn invalid(field: &FieldDescriptor, reason: &str) -> ProtobufError {
    ProtobufError::InvalidValue {
        field: field.full_name().to_owned(),
        reason: reason.to_owned(),
    }
}
