//! A deterministic protobuf writer for [`DynamicMessage`]s, matching gogo-protobuf's stable
//! marshaler byte for byte: fields in number order, map entries sorted by key with both key and
//! value always written, proto2 repeated scalars unpacked (packed only where the schema says so).
//!
//! prost-reflect's own encoder writes map entries in hash order, so the same object would not
//! always give the same bytes; this one does.

use prost::encoding::{WireType, encode_key, encode_varint};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, Value};

/// Appends the encoding of `message` (its known fields; unknown fields are not kept) to `buf`.
pub(crate) fn write_message(message: &DynamicMessage, buf: &mut Vec<u8>) {
    for (field, value) in message.fields() {
        write_field(&field, value, buf);
    }
}

fn write_field(field: &FieldDescriptor, value: &Value, buf: &mut Vec<u8>) {
    let number = field.number();
    match value {
        Value::List(items) if field.is_packed() => {
            let mut packed = Vec::new();
            let kind = field.kind();
            for item in items {
                write_bare(&kind, item, &mut packed);
            }
            encode_key(number, WireType::LengthDelimited, buf);
            encode_varint(packed.len() as u64, buf);
            buf.extend_from_slice(&packed);
        }
        Value::List(items) => {
            for item in items {
                write_single(number, &field.kind(), item, buf);
            }
        }
        Value::Map(entries) => {
            let Kind::Message(entry) = field.kind() else {
                return;
            };
            let (key_field, value_field) =
                (entry.map_entry_key_field(), entry.map_entry_value_field());
            let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in sorted {
                let mut body = Vec::new();
                write_single(
                    key_field.number(),
                    &key_field.kind(),
                    &Value::from(key.clone()),
                    &mut body,
                );
                write_single(value_field.number(), &value_field.kind(), item, &mut body);
                encode_key(number, WireType::LengthDelimited, buf);
                encode_varint(body.len() as u64, buf);
                buf.extend_from_slice(&body);
            }
        }
        single => write_single(number, &field.kind(), single, buf),
    }
}

/// One tagged value.
fn write_single(number: u32, kind: &Kind, value: &Value, buf: &mut Vec<u8>) {
    encode_key(number, wire_type(kind), buf);
    write_bare(kind, value, buf);
}

/// A value of `kind` without its tag (what packed lists and tagged fields hold).
fn write_bare(kind: &Kind, value: &Value, buf: &mut Vec<u8>) {
    match (kind, value) {
        (Kind::Sint32, Value::I32(n)) => {
            encode_varint(u64::from(((n << 1) ^ (n >> 31)) as u32), buf)
        }
        (Kind::Sint64, Value::I64(n)) => encode_varint(((n << 1) ^ (n >> 63)) as u64, buf),
        (Kind::Sfixed32, Value::I32(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (Kind::Sfixed64, Value::I64(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (Kind::Fixed32, Value::U32(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (Kind::Fixed64, Value::U64(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (_, Value::Bool(b)) => encode_varint(u64::from(*b), buf),
        // int32 and enums are sign-extended to 64 bits on the wire.
        (_, Value::I32(n) | Value::EnumNumber(n)) => encode_varint(i64::from(*n) as u64, buf),
        (_, Value::I64(n)) => encode_varint(*n as u64, buf),
        (_, Value::U32(n)) => encode_varint(u64::from(*n), buf),
        (_, Value::U64(n)) => encode_varint(*n, buf),
        (_, Value::F32(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (_, Value::F64(n)) => buf.extend_from_slice(&n.to_le_bytes()),
        (_, Value::String(s)) => {
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
        (_, Value::Bytes(b)) => {
            encode_varint(b.len() as u64, buf);
            buf.extend_from_slice(b);
        }
        (_, Value::Message(m)) => {
            let mut body = Vec::new();
            write_message(m, &mut body);
            encode_varint(body.len() as u64, buf);
            buf.extend_from_slice(&body);
        }
        // Lists and maps are handled per field; they never nest directly.
        (_, Value::List(_) | Value::Map(_)) => {}
    }
}

fn wire_type(kind: &Kind) -> WireType {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => WireType::SixtyFourBit,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => WireType::ThirtyTwoBit,
        Kind::String | Kind::Bytes | Kind::Message(_) => WireType::LengthDelimited,
        _ => WireType::Varint,
    }
}
