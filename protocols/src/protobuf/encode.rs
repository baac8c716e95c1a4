//! JSON → protobuf: builds a [`DynamicMessage`] from a Kubernetes JSON object the way client-go
//! would marshal the same Go object, then wraps it in the `k8s\0` + `runtime.Unknown` envelope.
//!
//! Like Go's typed decoding, JSON members the schema does not know are dropped. Go value
//! (non-pointer) fields missing from the JSON are written at their zero value, as gogo-protobuf
//! does, and the bytes are written in gogo's stable order, so the output is byte-identical to
//! client-go's for the same object. Quantities are written as given (Go would first put them in
//! canonical form, `1.5` → `1500m`).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _,
    Value as PbValue,
};
use serde_json::{Map, Value};

use super::schema::{Schema, Special};
use super::time::{parse_go_duration, parse_rfc3339};
use super::wire::write_message;
use super::{CONTENT_TYPE_JSON, MAGIC, ProtobufError};

/// Encodes a top-level object (with `apiVersion` and `kind`) as a Kubernetes protobuf body.
pub(crate) fn envelope(schema: &Schema, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let map = object
        .as_object()
        .ok_or_else(|| bad("", "the object is not a JSON object"))?;
    let text = |name: &str| -> Result<&str, ProtobufError> {
        map.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name, "missing or not a string"))
    };
    let (api_version, kind) = (text("apiVersion")?, text("kind")?);
    let desc = schema
        .resolve(api_version, kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })?;
    let builder = Builder { schema };
    let message = builder.message(&desc, map, "")?;
    let mut raw = Vec::new();
    write_message(&message, &mut raw);
    let unknown = builder.unknown(api_version, kind, raw, "")?;
    let mut out = MAGIC.to_vec();
    write_message(&unknown, &mut out);
    Ok(out)
}

struct Builder<'a> {
    schema: &'a Schema,
}

impl Builder<'_> {
    /// A `runtime.Unknown` holding `raw`, with every field written as client-go writes them.
    fn unknown(
        &self,
        api_version: &str,
        kind: &str,
        raw: Vec<u8>,
        content_type: &str,
    ) -> Result<DynamicMessage, ProtobufError> {
        let desc = &self.schema.unknown;
        let mut unknown = DynamicMessage::new(desc.clone());
        let type_meta_field = field(desc, "typeMeta")?;
        let Kind::Message(type_meta_desc) = type_meta_field.kind() else {
            return Err(bad("typeMeta", "runtime.Unknown.typeMeta is not a message"));
        };
        let mut type_meta = DynamicMessage::new(type_meta_desc.clone());
        set(
            &mut type_meta,
            &field(&type_meta_desc, "apiVersion")?,
            PbValue::String(api_version.to_owned()),
            "apiVersion",
        )?;
        set(
            &mut type_meta,
            &field(&type_meta_desc, "kind")?,
            PbValue::String(kind.to_owned()),
            "kind",
        )?;
        set(
            &mut unknown,
            &type_meta_field,
            PbValue::Message(type_meta),
            "typeMeta",
        )?;
        set(
            &mut unknown,
            &field(desc, "raw")?,
            PbValue::Bytes(raw.into()),
            "raw",
        )?;
        set(
            &mut unknown,
            &field(desc, "contentEncoding")?,
            PbValue::String(String::new()),
            "contentEncoding",
        )?;
        set(
            &mut unknown,
            &field(desc, "contentType")?,
            PbValue::String(content_type.to_owned()),
            "contentType",
        )?;
        Ok(unknown)
    }

    /// A message from a JSON object: named members to fields, the rest to inline fields.
    fn message(
        &self,
        desc: &MessageDescriptor,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<DynamicMessage, ProtobufError> {
        let mut message = DynamicMessage::new(desc.clone());
        let mut rest = Map::new();
        for (key, value) in map {
            match self.schema.field_by_json_name(desc, key) {
                Some(f) if !self.schema.is_inline(&f) => {
                    let child = join(path, key);
                    if let Some(v) = self.field_value(&f, value, &child)? {
                        set(&mut message, &f, v, &child)?;
                    }
                }
                _ => {
                    rest.insert(key.clone(), value.clone());
                }
            }
        }
        for f in desc.fields().filter(|f| self.schema.is_inline(f)) {
            let Kind::Message(inner) = f.kind() else {
                continue;
            };
            let members: Map<String, Value> = rest
                .iter()
                .filter(|(k, _)| self.accepts(&inner, k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let inner_message = self.message(&inner, &members, path)?;
            set(&mut message, &f, PbValue::Message(inner_message), path)?;
        }
        self.fill_value_fields(&mut message, path)?;
        Ok(message)
    }

    /// Whether JSON member `key` belongs in a message of type `desc`, directly or inline.
    fn accepts(&self, desc: &MessageDescriptor, key: &str) -> bool {
        match self.schema.field_by_json_name(desc, key) {
            Some(f) if !self.schema.is_inline(&f) => true,
            _ => desc
                .fields()
                .filter(|f| self.schema.is_inline(f))
                .any(|f| match f.kind() {
                    Kind::Message(inner) => self.accepts(&inner, key),
                    _ => false,
                }),
        }
    }

    /// Writes unset Go value fields at their zero value, as gogo-protobuf always writes them.
    fn fill_value_fields(
        &self,
        message: &mut DynamicMessage,
        path: &str,
    ) -> Result<(), ProtobufError> {
        let desc = message.descriptor();
        for f in desc.fields() {
            if message.has_field(&f) || f.is_list() || f.is_map() || !self.schema.is_value_field(&f)
            {
                continue;
            }
            let zero = match f.kind() {
                // Go skips nil byte slices even in value fields.
                Kind::Bytes => continue,
                Kind::Message(inner) => PbValue::Message(self.zero_message(&inner, path)?),
                kind => PbValue::default_value(&kind),
            };
            set(message, &f, zero, path)?;
        }
        Ok(())
    }

    /// The protobuf form of a Go zero value of message type `desc`.
    fn zero_message(
        &self,
        desc: &MessageDescriptor,
        path: &str,
    ) -> Result<DynamicMessage, ProtobufError> {
        match Special::of(desc.full_name()) {
            // A zero Time marshals to nothing at all.
            Some(Special::Time | Special::MicroTime) => Ok(DynamicMessage::new(desc.clone())),
            // Quantity marshals its canonical string, "0" for zero.
            Some(Special::Quantity) => {
                let mut q = DynamicMessage::new(desc.clone());
                set(
                    &mut q,
                    &field(desc, "string")?,
                    PbValue::String("0".to_owned()),
                    path,
                )?;
                Ok(q)
            }
            _ => self.message(desc, &Map::new(), path),
        }
    }

    /// The protobuf value for JSON `value` in `field`; `None` for JSON `null` (field left unset).
    fn field_value(
        &self,
        f: &FieldDescriptor,
        value: &Value,
        path: &str,
    ) -> Result<Option<PbValue>, ProtobufError> {
        if value.is_null() {
            return Ok(None);
        }
        if f.is_map() {
            let Kind::Message(entry) = f.kind() else {
                return Err(bad(path, "map field without a map entry type"));
            };
            let value_field = entry.map_entry_value_field();
            let object = value
                .as_object()
                .ok_or_else(|| bad(path, "expected a JSON object"))?;
            let mut out = HashMap::with_capacity(object.len());
            for (key, item) in object {
                let child = join(path, key);
                if let Some(v) = self.single(&value_field, item, &child)? {
                    out.insert(MapKey::String(key.clone()), v);
                }
            }
            return Ok(Some(PbValue::Map(out)));
        }
        if f.is_list() {
            let items = value
                .as_array()
                .ok_or_else(|| bad(path, "expected a JSON array"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let child = format!("{path}[{i}]");
                // Go turns a null list element into the zero value.
                match self.single(f, item, &child)? {
                    Some(v) => out.push(v),
                    None => out.push(match f.kind() {
                        Kind::Message(inner) => {
                            PbValue::Message(self.zero_message(&inner, &child)?)
                        }
                        kind => PbValue::default_value(&kind),
                    }),
                }
            }
            return Ok(Some(PbValue::List(out)));
        }
        self.single(f, value, path)
    }

    /// One value (not a list or map) of the field's kind.
    fn single(
        &self,
        f: &FieldDescriptor,
        value: &Value,
        path: &str,
    ) -> Result<Option<PbValue>, ProtobufError> {
        if value.is_null() {
            return Ok(None);
        }
        let v = match f.kind() {
            Kind::Bool => PbValue::Bool(
                value
                    .as_bool()
                    .ok_or_else(|| bad(path, "expected a boolean"))?,
            ),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PbValue::I32(integer(value, path)?),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PbValue::I64(integer(value, path)?),
            Kind::Uint32 | Kind::Fixed32 => PbValue::U32(integer(value, path)?),
            Kind::Uint64 | Kind::Fixed64 => PbValue::U64(integer(value, path)?),
            Kind::Enum(_) => PbValue::EnumNumber(integer(value, path)?),
            Kind::Double => PbValue::F64(
                value
                    .as_f64()
                    .ok_or_else(|| bad(path, "expected a number"))?,
            ),
            Kind::Float => {
                let n = value
                    .as_f64()
                    .ok_or_else(|| bad(path, "expected a number"))?;
                PbValue::F32(n as f32)
            }
            Kind::String => PbValue::String(
                value
                    .as_str()
                    .ok_or_else(|| bad(path, "expected a string"))?
                    .to_owned(),
            ),
            Kind::Bytes => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad(path, "expected a base64 string"))?;
                let bytes = BASE64
                    .decode(text)
                    .map_err(|e| bad(path, &format!("invalid base64: {e}")))?;
                PbValue::Bytes(bytes.into())
            }
            Kind::Message(desc) => PbValue::Message(self.message_value(&desc, value, path)?),
        };
        Ok(Some(v))
    }

    /// A message from JSON: special forms first, otherwise a JSON object of fields.
    fn message_value(
        &self,
        desc: &MessageDescriptor,
        value: &Value,
        path: &str,
    ) -> Result<DynamicMessage, ProtobufError> {
        let Some(special) = Special::of(desc.full_name()) else {
            let object = value
                .as_object()
                .ok_or_else(|| bad(path, "expected a JSON object"))?;
            return self.message(desc, object, path);
        };
        let mut m = DynamicMessage::new(desc.clone());
        let put = |m: &mut DynamicMessage, name: &str, v: PbValue| -> Result<(), ProtobufError> {
            set(m, &field(desc, name)?, v, path)
        };
        match special {
            Special::Time | Special::MicroTime => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad(path, "expected an RFC 3339 time string"))?;
                let (seconds, nanos) = parse_rfc3339(text)
                    .ok_or_else(|| bad(path, "not an RFC 3339 time in years 0000-9999"))?;
                // Go keeps the parsed fraction and writes it; decoders drop it again for Time.
                put(&mut m, "seconds", PbValue::I64(seconds))?;
                put(
                    &mut m,
                    "nanos",
                    PbValue::I32(i32::try_from(nanos).unwrap_or(0)),
                )?;
            }
            Special::Duration => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad(path, "expected a duration string"))?;
                let nanos =
                    parse_go_duration(text).ok_or_else(|| bad(path, "not a Go duration"))?;
                put(&mut m, "duration", PbValue::I64(nanos))?;
            }
            Special::IntOrString => match value {
                Value::String(s) => {
                    put(&mut m, "type", PbValue::I64(1))?;
                    put(&mut m, "intVal", PbValue::I32(0))?;
                    put(&mut m, "strVal", PbValue::String(s.clone()))?;
                }
                _ => {
                    put(&mut m, "type", PbValue::I64(0))?;
                    put(&mut m, "intVal", PbValue::I32(integer(value, path)?))?;
                    put(&mut m, "strVal", PbValue::String(String::new()))?;
                }
            },
            Special::Quantity => {
                let text = match value {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad(path, "expected a quantity string")),
                };
                put(&mut m, "string", PbValue::String(text))?;
            }
            Special::RawExtension | Special::FieldsV1 => {
                let name = if special == Special::FieldsV1 {
                    "Raw"
                } else {
                    "raw"
                };
                let raw = serde_json::to_vec(value).map_err(|e| bad(path, &e.to_string()))?;
                put(&mut m, name, PbValue::Bytes(raw.into()))?;
            }
            Special::StringList => {
                let items = value
                    .as_array()
                    .ok_or_else(|| bad(path, "expected an array of strings"))?;
                let items = items
                    .iter()
                    .map(|item| item.as_str().map(|s| PbValue::String(s.to_owned())))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(path, "expected an array of strings"))?;
                put(&mut m, "items", PbValue::List(items))?;
            }
            Special::Unknown => {
                let object = value
                    .as_object()
                    .ok_or_else(|| bad(path, "expected a JSON object"))?;
                let text =
                    |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
                let raw = serde_json::to_vec(value).map_err(|e| bad(path, &e.to_string()))?;
                return self.unknown(text("apiVersion"), text("kind"), raw, CONTENT_TYPE_JSON);
            }
        }
        Ok(m)
    }
}

/// A JSON integer (or an integral float, as Go accepts `1.0` for ints) in the target's range.
fn integer<T>(value: &Value, path: &str) -> Result<T, ProtobufError>
where
    T: TryFrom<i64> + TryFrom<u64>,
{
    let out_of_range = || bad(path, "integer out of range");
    if let Some(n) = value.as_i64() {
        return T::try_from(n).map_err(|_| out_of_range());
    }
    if let Some(n) = value.as_u64() {
        return T::try_from(n).map_err(|_| out_of_range());
    }
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            T::try_from(f as i64).map_err(|_| out_of_range())
        }
        _ => Err(bad(path, "expected an integer")),
    }
}

fn field(desc: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, ProtobufError> {
    desc.get_field_by_name(name)
        .ok_or_else(|| bad(name, &format!("{} has no field {name}", desc.full_name())))
}

fn set(
    message: &mut DynamicMessage,
    f: &FieldDescriptor,
    value: PbValue,
    path: &str,
) -> Result<(), ProtobufError> {
    message
        .try_set_field(f, value)
        .map_err(|e| bad(path, &format!("value does not fit {}: {e}", f.full_name())))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn bad(path: &str, reason: &str) -> ProtobufError {
    ProtobufError::InvalidJson {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}
