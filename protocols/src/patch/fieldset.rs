//! Field sets: the unit of ownership in server-side apply, and their `FieldsV1` wire form.
//!
//! A [`FieldSet`] is a trie of [`PathElement`]s. A path is in the set when its last element is a
//! member of its parent node; a node may be both a member and have children (`".": {}` in
//! `FieldsV1`, as for list elements: `{"k:{\"name\":\"c\"}":{".":{},"f:image":{}}}`). Children are
//! never empty, so equality is structural.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path (structured-merge-diff's `PathElement`).
///
/// The ordering (fields, indices, keys, values) matches the `f:`/`i:`/`k:`/`v:` wire prefixes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:<name>`: a field of an object.
    Field(String),
    /// `i:<n>`: a list element by position.
    Index(usize),
    /// `k:<json>`: an associative-list element by its key fields, as canonical JSON (keys sorted).
    Key(String),
    /// `v:<json>`: a set-list element by value, as canonical JSON.
    Value(String),
}

impl PathElement {
    /// The element keying an associative-list item by `fields` (name, value pairs).
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> PathElement {
        let map: Map<String, Value> = fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect();
        PathElement::Key(canonical(&Value::Object(map)))
    }

    /// The element naming a set-list item by value.
    pub fn value(value: &Value) -> PathElement {
        PathElement::Value(canonical(value))
    }

    /// The `FieldsV1` key: `f:name`, `i:0`, `k:{"name":"c"}`, `v:"x"`.
    pub fn to_wire(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Index(i) => format!("i:{i}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
        }
    }

    /// Parses a `FieldsV1` key.
    pub fn from_wire(wire: &str) -> Result<PathElement, FieldsV1Error> {
        let bad = || FieldsV1Error::BadPathElement(wire.to_owned());
        let (prefix, rest) = wire.split_once(':').ok_or_else(bad)?;
        let json = || serde_json::from_str::<Value>(rest).map_err(|_| bad());
        Ok(match prefix {
            "f" => PathElement::Field(rest.to_owned()),
            "i" => PathElement::Index(rest.parse().map_err(|_| bad())?),
            "k" => match json()? {
                key @ Value::Object(_) => PathElement::Key(canonical(&key)),
                _ => return Err(bad()),
            },
            "v" => PathElement::Value(canonical(&json()?)),
            _ => return Err(bad()),
        })
    }
}

/// Upstream's rendering: `.name`, `[name="c"]`, `[port=80,protocol="TCP"]`, `[="x"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Index(i) => write!(f, "[{i}]"),
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Key(json) => match serde_json::from_str::<Map<String, Value>>(json) {
                Ok(fields) => {
                    let mut fields: Vec<_> = fields.iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(b.0));
                    f.write_str("[")?;
                    for (i, (name, value)) in fields.into_iter().enumerate() {
                        let sep = if i == 0 { "" } else { "," };
                        write!(f, "{sep}{name}={value}")?;
                    }
                    f.write_str("]")
                }
                Err(_) => write!(f, "[{json}]"),
            },
        }
    }
}

/// A path from the object root, shown like upstream: `.spec.containers[name="c"].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|element| element.fmt(f))
    }
}

/// A `FieldsV1` document that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    /// A node that is not a JSON object.
    #[error("FieldsV1 nodes must be objects")]
    NotAnObject,
    /// A key that is not `.` or a valid `f:`/`i:`/`k:`/`v:` path element.
    #[error("invalid FieldsV1 path element {0:?}")]
    BadPathElement(String),
}

/// A set of field paths (structured-merge-diff's `fieldpath.Set`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` (the empty root path is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, theirs) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(theirs),
                None => theirs.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// Paths of `self` not in `other` (paths below a removed one stay).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            members: self.members.difference(&other.members).cloned().collect(),
            children: self
                .children
                .iter()
                .filter_map(|(element, mine)| {
                    let rest = match other.children.get(element) {
                        Some(theirs) => mine.difference(theirs),
                        None => mine.clone(),
                    };
                    (!rest.is_empty()).then(|| (element.clone(), rest))
                })
                .collect(),
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: self
                .children
                .iter()
                .filter_map(|(element, mine)| {
                    let both = mine.intersection(other.children.get(element)?);
                    (!both.is_empty()).then(|| (element.clone(), both))
                })
                .collect(),
        }
    }

    /// Every path in the set, depth first in element order.
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            prefix.push(element.clone());
            if self.members.contains(element) {
                out.push(FieldPath(prefix.clone()));
            }
            if let Some(child) = self.children.get(element) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The members of this node (paths of length one).
    pub(crate) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    /// The child nodes of this node.
    pub(crate) fn children(&self) -> &BTreeMap<PathElement, FieldSet> {
        &self.children
    }

    /// The set plus every field that has paths below it (structured-merge-diff's
    /// `EnsureNamedFieldsAreMembers`, taking every object key for a named field: built-in maps
    /// hold scalars, so the two only differ for maps of objects).
    pub(crate) fn with_parent_fields(&self) -> FieldSet {
        FieldSet {
            members: self
                .members
                .iter()
                .chain(
                    self.children
                        .keys()
                        .filter(|e| matches!(e, PathElement::Field(_))),
                )
                .cloned()
                .collect(),
            children: self
                .children
                .iter()
                .map(|(element, child)| (element.clone(), child.with_parent_fields()))
                .collect(),
        }
    }

    /// The `FieldsV1` JSON form stored in `metadata.managedFields[].fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut node = Map::new();
        for element in &self.members {
            if !self.children.contains_key(element) {
                node.insert(element.to_wire(), Value::Object(Map::new()));
            }
        }
        for (element, child) in &self.children {
            let mut value = child.to_fields_v1();
            if self.members.contains(element)
                && let Value::Object(map) = &mut value
            {
                map.insert(".".to_owned(), Value::Object(Map::new()));
            }
            node.insert(element.to_wire(), value);
        }
        Value::Object(node)
    }

    /// Reads the `FieldsV1` JSON form.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(node) = fields else {
            return Err(FieldsV1Error::NotAnObject);
        };
        let mut set = FieldSet::new();
        for (wire, child) in node {
            if wire == "." {
                continue;
            }
            let element = PathElement::from_wire(wire)?;
            let Value::Object(inner) = child else {
                return Err(FieldsV1Error::NotAnObject);
            };
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(element.clone());
            }
            let below = FieldSet::from_fields_v1(child)?;
            if !below.is_empty() {
                set.children.insert(element, below);
            }
        }
        Ok(set)
    }
}

/// JSON with object keys sorted at every level: the form of `k:` and `v:` path elements, so the
/// same key always yields the same element.
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn sample() -> Value {
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
        })
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = FieldSet::from_fields_v1(&sample()).expect("valid");
        assert_eq!(set.to_fields_v1(), sample());
        let c = PathElement::key([("name", &json!("c"))]);
        assert!(set.contains(&[field("spec"), field("containers"), c.clone()]));
        assert!(set.contains(&[field("spec"), field("containers"), c, field("image")]));
        assert!(!set.contains(&[field("spec"), field("containers")]));
        assert!(!set.contains(&[field("metadata"), field("labels")]));
    }

    #[test]
    fn paths_render_like_upstream() {
        let set = FieldSet::from_fields_v1(&sample()).expect("valid");
        let paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels.app",
                ".spec.containers[name=\"c\"]",
                ".spec.containers[name=\"c\"].image",
                ".spec.containers[name=\"c\"].name",
            ]
        );
        let port = PathElement::key([("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        assert_eq!(port.to_wire(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(port.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::value(&json!("x")).to_string(), r#"[="x"]"#);
        assert_eq!(PathElement::Index(3).to_string(), "[3]");
    }

    #[test]
    fn set_algebra() {
        let path = |p: &[&str]| p.iter().map(|f| field(f)).collect::<Vec<_>>();
        let mut a = FieldSet::new();
        a.insert(&path(&["data", "x"]));
        a.insert(&path(&["data", "y"]));
        let mut b = FieldSet::new();
        b.insert(&path(&["data", "y"]));
        b.insert(&path(&["spec"]));

        let union = a.union(&b);
        assert_eq!(union.paths().len(), 3);
        let both = a.intersection(&b);
        assert_eq!(both.paths(), vec![FieldPath(path(&["data", "y"]))]);
        let only_a = a.difference(&b);
        assert_eq!(only_a.paths(), vec![FieldPath(path(&["data", "x"]))]);
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a), FieldSet::new());
        assert!(a.intersection(&FieldSet::new()).is_empty());
    }

    #[test]
    fn rejects_malformed_fields_v1() {
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"x:y": {}})),
            Err(FieldsV1Error::BadPathElement("x:y".to_owned()))
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"k:[1]": {}})),
            Err(FieldsV1Error::BadPathElement("k:[1]".to_owned()))
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"f:a": 1})),
            Err(FieldsV1Error::NotAnObject)
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!([])),
            Err(FieldsV1Error::NotAnObject)
        );
    }

    #[test]
    fn keys_are_canonical_whatever_the_input_order() {
        let a = PathElement::from_wire(r#"k:{"protocol":"TCP","containerPort":80}"#).expect("ok");
        let b = PathElement::from_wire(r#"k:{"containerPort":80,"protocol":"TCP"}"#).expect("ok");
        assert_eq!(a, b);
    }
}
