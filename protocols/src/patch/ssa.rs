//! Server-side apply (`application/apply-patch+yaml`) and the managed-fields bookkeeping of every
//! other write.
//!
//! A port of structured-merge-diff's `merge.Updater` as kube-apiserver drives it:
//! - [`apply`] merges the applied configuration into the live object (objects field by field,
//!   associative lists by key, atomic values replaced), removes what the manager applied last time
//!   and no manager owns any more, and fails with [`ApplyError::Conflicts`] when a changed field
//!   belongs to another manager, unless `force` moves the ownership;
//! - [`update_managed_fields`] records a non-apply write: its manager takes every changed field.
//!
//! Ownership lives in `metadata.managedFields` entries (one per manager, operation, API version
//! for updates, and subresource) holding a [`FieldSet`] in `FieldsV1` form. Paths upstream never
//! records (`apiVersion`, `kind`, `metadata.name`, `metadata.uid`, ...) are left out of every set.
//! Custom resources have no list metadata here, so their lists are atomic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{FieldPath, FieldSet, PathElement, canonical};
use super::schema::{Schema, Ssa};
use super::{GroupKind, same_value};

/// The manager credited with the fields of an object that had no managed fields when it was
/// first applied.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Paths never recorded as owned (upstream's `stripMetaManager`).
const UNOWNED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

fn unowned() -> FieldSet {
    let mut set = FieldSet::new();
    for path in UNOWNED {
        let path: Vec<PathElement> = path
            .iter()
            .map(|f| PathElement::Field((*f).to_owned()))
            .collect();
        set.insert(&path);
    }
    set
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields the configuration changes are owned by other managers and `force` was not set
    /// (409; each conflict is a `FieldManagerConflict` cause).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not a JSON object (400).
    #[error("the applied configuration must be a JSON object")]
    NotAnObject,
    /// The applied configuration sets `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// An associative-list element lacks a key field that has no default (422).
    #[error(
        "{field}: associative list with keys has an element that omits key field {key:?} \
         (and doesn't have default value)"
    )]
    MissingListKey {
        /// The list, e.g. `.spec.containers`.
        field: String,
        /// The missing key field.
        key: String,
    },
    /// Two elements of an associative or set list share a key (422).
    #[error("{field}: duplicate entries for key {key}")]
    DuplicateListKey {
        /// The list.
        field: String,
        /// The repeated key, e.g. `[name="c"]`.
        key: String,
    },
    /// An associative-list element that is not an object (422).
    #[error("{field}: associative list elements must be objects")]
    ListElementNotObject {
        /// The list.
        field: String,
    },
    /// An entry of the live `metadata.managedFields` cannot be read (500).
    #[error("failed to decode managed fields entry {index}: {reason}")]
    InvalidManagedFields {
        /// Position of the entry.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApplyError {
    /// The HTTP status upstream answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::NotAnObject | ApplyError::ManagedFieldsInConfig => 400,
            ApplyError::MissingListKey { .. }
            | ApplyError::DuplicateListKey { .. }
            | ApplyError::ListElementNotObject { .. } => 422,
            ApplyError::InvalidManagedFields { .. } => 500,
        }
    }
}

/// A field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// How it wrote the field: `Apply` or `Update`.
    pub operation: String,
    /// The API version it wrote with (shown for `Update` owners).
    pub api_version: String,
    /// The subresource it wrote through, empty for the main resource.
    pub subresource: String,
    /// The field, e.g. `.spec.replicas` or `.spec.containers[name="c"].image`.
    pub field: String,
}

impl Conflict {
    /// The owner as upstream prints it: `"x"`, or `"x" using apps/v1` for an `Update` owner.
    pub fn owner(&self) -> String {
        let mut owner = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            owner.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            owner.push_str(&format!(" using {}", self.api_version));
        }
        owner
    }

    /// The `StatusCause.message` upstream sends: `conflict with "x" using apps/v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.owner())
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict with {}: {}", self.owner(), self.field)
    }
}

/// Upstream's `getConflictMessage`: one line for one conflict, else grouped by owner.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {only}");
    }
    let mut by_owner: BTreeMap<(&str, &str, &str, &str), Vec<&Conflict>> = BTreeMap::new();
    for c in conflicts {
        let owner = (
            c.manager.as_str(),
            c.operation.as_str(),
            c.api_version.as_str(),
            c.subresource.as_str(),
        );
        by_owner.entry(owner).or_default().push(c);
    }
    let mut lines = Vec::new();
    for group in by_owner.values() {
        if let Some(first) = group.first() {
            lines.push(format!("conflicts with {}:", first.owner()));
        }
        lines.extend(group.iter().map(|c| format!("- {}", c.field)));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The fields an applied configuration sets, as recorded in its manager's `FieldsV1`: leaves and
/// list elements (`k:`/`v:`), without the paths upstream never records. Malformed associative
/// lists count as one atomic field here; [`apply`] rejects them.
pub fn fields_of(obj: &Value, kind: GroupKind<'_>) -> FieldSet {
    let walker = Walker {
        schema: Schema::of(kind),
        strict: false,
    };
    walker
        .field_set(obj, Collect::Leaves)
        .unwrap_or_default()
        .difference(&unowned())
}

/// Applies `applied` for `manager` (server-side apply) over `live` (`None` creates).
///
/// `managed_fields` are the live object's `metadata.managedFields`; `api_version` is the request's
/// (`apps/v1`); `now_rfc3339` stamps the entries of managers whose fields changed. Returns the new
/// object, with its `metadata.managedFields` already set, and those entries.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per input of upstream's apply"
)]
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    managed_fields: &[Value],
    force: bool,
    kind: GroupKind<'_>,
    api_version: &str,
    now_rfc3339: &str,
) -> Result<(Value, Vec<Value>), ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let sets_managed_fields = applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|list| !list.is_empty()));
    if sets_managed_fields {
        return Err(ApplyError::ManagedFieldsInConfig);
    }
    let walker = Walker {
        schema: Schema::of(kind),
        strict: true,
    };
    let config = walker.field_set(applied, Collect::Leaves)?;
    let mut entries = decode(managed_fields)?;
    let existed = live.is_some();
    let live = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);

    if existed && entries.is_empty() {
        // Upstream credits the fields of an object nobody manages to one updater, so that
        // applying over them conflicts. Only set values count: empty objects and lists are the
        // zero values of Go structs there.
        let fields = fields_of(&live, kind);
        if !fields.is_empty() {
            entries.push(Entry::new(
                BEFORE_FIRST_APPLY,
                Operation::Update,
                api_version,
                now_rfc3339,
                fields,
            ));
        }
    }
    let mine = entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, api_version));

    let mut merged = walker
        .merge(
            Some(live.clone()),
            applied,
            &mut Vec::new(),
            &mut Vec::new(),
        )?
        .unwrap_or_else(|| Value::Object(Map::new()));

    // Remove what this manager applied last time, no longer applies, and nobody else owns.
    if let Some(last) = mine.and_then(|i| entries.get(i)) {
        let still_owned = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != mine)
            .fold(config.with_parent_fields(), |acc, (_, e)| {
                acc.union(&e.fields.with_parent_fields())
            });
        let stale = last
            .fields
            .with_parent_fields()
            .difference(&still_owned)
            .difference(&unowned());
        walker.remove(&mut merged, &stale, &mut Vec::new());
    }

    let diff = walker.compare(&live, &merged);
    let changed = diff.added.union(&diff.modified);
    let mut conflicts: Vec<Conflict> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .flat_map(|(_, e)| e.conflicts(&changed))
        .collect();
    if !force && !conflicts.is_empty() {
        conflicts.sort();
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            entry.fields = entry.fields.difference(&changed).difference(&diff.removed);
        }
    }

    let fields = config.difference(&unowned());
    let object_changed = !same_value(&live, &merged);
    match mine.and_then(|i| entries.get_mut(i)) {
        Some(entry) => {
            if object_changed || entry.fields != fields || entry.time.is_none() {
                entry.time = Some(now_rfc3339.to_owned());
            }
            entry.fields = fields;
            api_version.clone_into(&mut entry.api_version);
        }
        None => entries.push(Entry::new(
            manager,
            Operation::Apply,
            api_version,
            now_rfc3339,
            fields,
        )),
    }
    let encoded = encode(entries);
    set_managed_fields(&mut merged, &encoded);
    Ok((merged, encoded))
}

/// The `metadata.managedFields` after a non-apply write (create, update, patch) by `manager`
/// from `old` (`None` for a create) to `new`.
///
/// The manager takes the fields it added or changed (an `Update` entry for `api_version`, stamped
/// `now_rfc3339`), other managers lose them, and everyone loses removed fields. `managed_fields`
/// are the live object's entries; as upstream, entries set in `new` itself replace them, and
/// `[]` or `[{}]` there clears them. Undecodable entries are dropped, as upstream resets them.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    managed_fields: &[Value],
    kind: GroupKind<'_>,
    api_version: &str,
    now_rfc3339: &str,
) -> Vec<Value> {
    let walker = Walker {
        schema: Schema::of(kind),
        strict: false,
    };
    let live_entries = || decode(managed_fields).unwrap_or_default();
    let mut entries = match new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        Some(list)
            if list.is_empty()
                || (list.len() == 1 && list.first() == Some(&Value::Object(Map::new()))) =>
        {
            Vec::new()
        }
        Some(list) => decode(list)
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(live_entries),
        None => live_entries(),
    };
    let old = old.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let diff = walker.compare(&old, &without_managed_fields(new));
    let taken = diff.added.union(&diff.modified).difference(&unowned());
    for entry in &mut entries {
        entry.fields = entry.fields.difference(&taken).difference(&diff.removed);
    }
    if !taken.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(manager, Operation::Update, api_version))
        {
            Some(entry) => {
                entry.fields = entry.fields.union(&taken);
                entry.time = Some(now_rfc3339.to_owned());
            }
            None => entries.push(Entry::new(
                manager,
                Operation::Update,
                api_version,
                now_rfc3339,
                taken,
            )),
        }
    }
    encode(entries)
}

/// How a manager wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One decoded `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        time: &str,
        fields: FieldSet,
    ) -> Entry {
        Entry {
            manager: manager.to_owned(),
            operation,
            api_version: api_version.to_owned(),
            subresource: String::new(),
            time: Some(time.to_owned()),
            fields,
        }
    }

    /// Whether this is the main-resource entry of `manager` for `operation` (updates are told
    /// apart by API version, applies are not).
    fn is(&self, manager: &str, operation: Operation, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_empty()
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn same_owner(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    fn conflicts(&self, changed: &FieldSet) -> Vec<Conflict> {
        let field_paths = self.fields.intersection(changed).paths();
        field_paths
            .into_iter()
            .map(|path| Conflict {
                manager: self.manager.clone(),
                operation: self.operation.as_str().to_owned(),
                api_version: self.api_version.clone(),
                subresource: self.subresource.clone(),
                field: path.to_string(),
            })
            .collect()
    }
}

/// Reads `managedFields` entries, merging entries of the same owner.
fn decode(raw: &[Value]) -> Result<Vec<Entry>, ApplyError> {
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        let bad = |reason: String| ApplyError::InvalidManagedFields { index, reason };
        let Value::Object(e) = value else {
            return Err(bad("not an object".to_owned()));
        };
        let text = |name: &str| {
            e.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let operation = match e.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(bad(format!("invalid operation {other:?}"))),
        };
        match e.get("fieldsType").and_then(Value::as_str) {
            None | Some("FieldsV1") => {}
            Some(other) => return Err(bad(format!("unsupported fieldsType {other:?}"))),
        }
        let fields = match e.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(fields) => FieldSet::from_fields_v1(fields).map_err(|err| bad(err.to_string()))?,
        };
        let entry = Entry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            subresource: text("subresource"),
            time: e.get("time").and_then(Value::as_str).map(str::to_owned),
            fields,
        };
        match entries.iter_mut().find(|seen| seen.same_owner(&entry)) {
            Some(seen) => {
                seen.fields = seen.fields.union(&entry.fields);
                seen.time = seen.time.take().max(entry.time);
            }
            None => entries.push(entry),
        }
    }
    Ok(entries)
}

/// Writes entries back in upstream's order (operation, time, manager, API version,
/// subresource), dropping managers left without fields. Times compare as RFC 3339 text, which
/// orders correctly for the UTC second-precision stamps the API server writes.
fn encode(mut entries: Vec<Entry>) -> Vec<Value> {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        let key = |e: &Entry| {
            (
                e.operation,
                e.time.clone().unwrap_or_default(),
                e.manager.clone(),
                e.api_version.clone(),
                e.subresource.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    entries
        .into_iter()
        .map(|e| {
            let mut entry = Map::new();
            entry.insert("manager".to_owned(), Value::String(e.manager));
            entry.insert(
                "operation".to_owned(),
                Value::String(e.operation.as_str().to_owned()),
            );
            entry.insert("apiVersion".to_owned(), Value::String(e.api_version));
            if let Some(time) = e.time {
                entry.insert("time".to_owned(), Value::String(time));
            }
            entry.insert(
                "fieldsType".to_owned(),
                Value::String("FieldsV1".to_owned()),
            );
            entry.insert("fieldsV1".to_owned(), e.fields.to_fields_v1());
            if !e.subresource.is_empty() {
                entry.insert("subresource".to_owned(), Value::String(e.subresource));
            }
            Value::Object(entry)
        })
        .collect()
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
    obj
}

fn set_managed_fields(obj: &mut Value, entries: &[Value]) {
    let Value::Object(obj) = obj else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".to_owned(), Value::Array(entries.to_vec()));
        }
    }
}

/// Objects with `null` fields dropped at every level, as they come out of Go types.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        scalar => scalar.clone(),
    }
}

/// List items by path element; the first of duplicates wins.
fn first_of_each(entries: Vec<(PathElement, &Value)>) -> BTreeMap<PathElement, &Value> {
    let mut map = BTreeMap::new();
    for (element, item) in entries {
        map.entry(element).or_insert(item);
    }
    map
}

/// Which paths [`Walker::collect`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collect {
    /// Leaves and list elements: what a configuration sets (structured-merge-diff's
    /// `ToFieldSet`; an empty object or list sets nothing).
    Leaves,
    /// Every node: what appears or disappears with a subtree.
    Nodes,
}

/// Paths that differ between two objects.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    removed: FieldSet,
    modified: FieldSet,
}

/// The typed walks over objects of one kind. `fields` holds the field names from the root (the
/// schema lookup key), `path` the full path elements.
struct Walker {
    schema: Schema,
    /// Reject malformed associative lists instead of treating them as atomic.
    strict: bool,
}

impl Walker {
    fn field_set(&self, value: &Value, mode: Collect) -> Result<FieldSet, ApplyError> {
        let mut set = FieldSet::new();
        self.collect(value, mode, &mut Vec::new(), &mut Vec::new(), &mut set)?;
        Ok(set)
    }

    /// Whether the object at `path` merges field by field (the root always does).
    fn granular(&self, fields: &[String], path: &[PathElement]) -> bool {
        path.is_empty() || !self.schema.atomic_map(fields)
    }

    /// The path element naming `item` in a list of type `list`.
    fn element(
        &self,
        item: &Value,
        list: Ssa,
        path: &[PathElement],
    ) -> Result<PathElement, ApplyError> {
        let Ssa::Map(keys) = list else {
            return Ok(PathElement::value(item));
        };
        let field = || FieldPath(path.to_vec()).to_string();
        let Value::Object(obj) = item else {
            return Err(ApplyError::ListElementNotObject { field: field() });
        };
        let mut key = Map::new();
        for k in keys {
            let value = match (obj.get(k.name), k.default) {
                (Some(v), _) if !v.is_null() => v.clone(),
                (_, Some(default)) => Value::String(default.to_owned()),
                _ => {
                    return Err(ApplyError::MissingListKey {
                        field: field(),
                        key: k.name.to_owned(),
                    });
                }
            };
            key.insert(k.name.to_owned(), value);
        }
        Ok(PathElement::Key(canonical(&Value::Object(key))))
    }

    /// The path elements of a list's items; duplicates are an error when strict.
    fn index<'v>(
        &self,
        items: &'v [Value],
        list: Ssa,
        path: &[PathElement],
    ) -> Result<Vec<(PathElement, &'v Value)>, ApplyError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let element = self.element(item, list, path)?;
            if !seen.insert(element.clone()) && self.strict {
                return Err(ApplyError::DuplicateListKey {
                    field: FieldPath(path.to_vec()).to_string(),
                    key: element.to_string(),
                });
            }
            out.push((element, item));
        }
        Ok(out)
    }

    /// Records the paths of `value`, found at `path`, into `out`.
    fn collect(
        &self,
        value: &Value,
        mode: Collect,
        fields: &mut Vec<String>,
        path: &mut Vec<PathElement>,
        out: &mut FieldSet,
    ) -> Result<(), ApplyError> {
        let list = self.schema.list_type(fields);
        match value {
            Value::Object(map) if self.granular(fields, path) => {
                if mode == Collect::Nodes {
                    out.insert(path);
                }
                for (name, child) in map {
                    fields.push(name.clone());
                    path.push(PathElement::Field(name.clone()));
                    self.collect(child, mode, fields, path, out)?;
                    fields.pop();
                    path.pop();
                }
            }
            Value::Array(items) if list != Ssa::Atomic => match self.index(items, list, path) {
                Ok(entries) => {
                    if mode == Collect::Nodes {
                        out.insert(path);
                    }
                    for (element, item) in entries {
                        path.push(element);
                        out.insert(path);
                        if matches!(list, Ssa::Map(_)) {
                            self.collect(item, mode, fields, path, out)?;
                        }
                        path.pop();
                    }
                }
                Err(err) if self.strict => return Err(err),
                Err(_) => out.insert(path),
            },
            _ => out.insert(path),
        }
        Ok(())
    }

    /// Added, removed and modified paths from `old` to `new` (structured-merge-diff's `Compare`).
    fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let lenient = Walker {
            schema: self.schema,
            strict: false,
        };
        let mut diff = Comparison::default();
        lenient.diff(
            Some(old),
            Some(new),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut diff,
        );
        diff
    }

    /// Records how `old` and `new`, found at `path`, differ into `out`.
    fn diff(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        fields: &mut Vec<String>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        let list = self.schema.list_type(fields);
        match (old, new) {
            (None, None) => {}
            (None, Some(new)) => {
                // Lenient walks never fail: malformed lists become leaves.
                let _ = self.collect(new, Collect::Nodes, fields, path, &mut out.added);
                out.added.insert(path);
            }
            (Some(old), None) => {
                let _ = self.collect(old, Collect::Nodes, fields, path, &mut out.removed);
                out.removed.insert(path);
            }
            (Some(Value::Object(a)), Some(Value::Object(b)))
                if self.granular(fields, path) && !(a.is_empty() && b.is_empty()) =>
            {
                let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for name in names {
                    fields.push(name.clone());
                    path.push(PathElement::Field(name.clone()));
                    self.diff(a.get(name), b.get(name), fields, path, out);
                    fields.pop();
                    path.pop();
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b)))
                if list != Ssa::Atomic && !(a.is_empty() && b.is_empty()) =>
            {
                match (self.index(a, list, path), self.index(b, list, path)) {
                    (Ok(a), Ok(b)) => {
                        let (a, b) = (first_of_each(a), first_of_each(b));
                        let elements: BTreeSet<&PathElement> = a.keys().chain(b.keys()).collect();
                        for element in elements {
                            path.push(element.clone());
                            self.diff(
                                a.get(element).copied(),
                                b.get(element).copied(),
                                fields,
                                path,
                                out,
                            );
                            path.pop();
                        }
                    }
                    // Lists that cannot be keyed compare as one value.
                    _ if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| !same_value(x, y)) => {
                        out.modified.insert(path)
                    }
                    _ => {}
                }
            }
            (Some(a), Some(b)) => {
                if !same_value(a, b) {
                    out.modified.insert(path);
                }
            }
        }
    }

    /// Merges the applied `config` into `live` (structured-merge-diff's `Merge`); `None` means
    /// the field is gone (the configuration set it to `null`).
    fn merge(
        &self,
        live: Option<Value>,
        config: &Value,
        fields: &mut Vec<String>,
        path: &mut Vec<PathElement>,
    ) -> Result<Option<Value>, ApplyError> {
        match config {
            Value::Null => Ok(None),
            Value::Object(config) if self.granular(fields, path) => {
                let mut out = match live {
                    Some(Value::Object(live)) => live,
                    _ => Map::new(),
                };
                for (name, value) in config {
                    fields.push(name.clone());
                    path.push(PathElement::Field(name.clone()));
                    let merged = self.merge(out.remove(name), value, fields, path)?;
                    fields.pop();
                    path.pop();
                    if let Some(merged) = merged {
                        out.insert(name.clone(), merged);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) if self.schema.list_type(fields) != Ssa::Atomic => {
                let list = self.schema.list_type(fields);
                let rhs = self.index(items, list, path)?;
                let lhs = match live {
                    Some(Value::Array(live)) => {
                        let elements: Result<Vec<_>, _> = live
                            .iter()
                            .map(|item| self.element(item, list, path))
                            .collect();
                        // A live list that cannot be keyed is replaced.
                        elements
                            .map(|e| e.into_iter().zip(live).collect())
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                Ok(Some(Value::Array(self.merge_list(lhs, rhs, fields, path)?)))
            }
            atomic => Ok(Some(without_nulls(atomic))),
        }
    }

    /// Merges associative or set lists, keeping live-only items where they are and shared and
    /// new items in the configuration's order (structured-merge-diff's `visitListItems`).
    fn merge_list(
        &self,
        mut lhs: Vec<(PathElement, Value)>,
        rhs: Vec<(PathElement, &Value)>,
        fields: &mut Vec<String>,
        path: &mut Vec<PathElement>,
    ) -> Result<Vec<Value>, ApplyError> {
        let mut lhs_first: BTreeMap<PathElement, usize> = BTreeMap::new();
        for (i, (element, _)) in lhs.iter().enumerate() {
            lhs_first.entry(element.clone()).or_insert(i);
        }
        let in_rhs: BTreeSet<&PathElement> = rhs.iter().map(|(e, _)| e).collect();
        let mut shared: VecDeque<&PathElement> = rhs
            .iter()
            .map(|(e, _)| e)
            .filter(|e| lhs_first.contains_key(*e))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_rhs: BTreeSet<PathElement> = BTreeSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let (mut l, mut r) = (0, 0);
        while l < lhs.len() || r < rhs.len() {
            if let (Some((left, _)), Some((right, config))) = (lhs.get(l), rhs.get(r)) {
                if left == right {
                    let live = lhs_first
                        .get(left)
                        .and_then(|&i| lhs.get_mut(i))
                        .map(|(_, v)| std::mem::take(v));
                    merged_rhs.insert(right.clone());
                    out.extend(self.merge_item(live, config, right, fields, path)?);
                    l += 1;
                    r += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if in_rhs.contains(left) && next_shared.is_some_and(|next| next != left) {
                    l += 1;
                    continue;
                }
            }
            if let Some((left, _)) = lhs.get(l) {
                if !in_rhs.contains(left) {
                    if let Some((_, live)) = lhs.get_mut(l) {
                        out.push(std::mem::take(live));
                    }
                    l += 1;
                    continue;
                }
                if merged_rhs.contains(left) {
                    l += 1;
                    continue;
                }
            }
            if let Some((right, config)) = rhs.get(r) {
                let live = lhs_first
                    .get(right)
                    .and_then(|&i| lhs.get_mut(i))
                    .map(|(_, v)| std::mem::take(v));
                merged_rhs.insert(right.clone());
                out.extend(self.merge_item(live, config, right, fields, path)?);
                r += 1;
                if next_shared == Some(right) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Ok(out)
    }

    /// Merges one list item, found at `element` below `path`.
    fn merge_item(
        &self,
        live: Option<Value>,
        config: &Value,
        element: &PathElement,
        fields: &mut Vec<String>,
        path: &mut Vec<PathElement>,
    ) -> Result<Option<Value>, ApplyError> {
        path.push(element.clone());
        let merged = self.merge(live, config, fields, path);
        path.pop();
        merged
    }

    /// Removes every path of `set` (with what is below it) from `value`.
    fn remove(&self, value: &mut Value, set: &FieldSet, fields: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for element in set.members() {
                    if let PathElement::Field(name) = element {
                        map.remove(name);
                    }
                }
                for (element, below) in set.children() {
                    let PathElement::Field(name) = element else {
                        continue;
                    };
                    if let Some(child) = map.get_mut(name) {
                        fields.push(name.clone());
                        self.remove(child, below, fields);
                        fields.pop();
                    }
                }
            }
            Value::Array(items) => {
                let list = self.schema.list_type(fields);
                if list == Ssa::Atomic {
                    return;
                }
                let kept = std::mem::take(items).into_iter().filter_map(|mut item| {
                    let element = self.element(&item, list, &[]).ok();
                    match element {
                        Some(e) if set.members().contains(&e) => None,
                        Some(e) => {
                            if let Some(below) = set.children().get(&e) {
                                self.remove(&mut item, below, fields);
                            }
                            Some(item)
                        }
                        None => Some(item),
                    }
                });
                *items = kept.collect();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CM: GroupKind<'static> = GroupKind::new("", "ConfigMap");
    const DEPLOYMENT: GroupKind<'static> = GroupKind::new("apps", "Deployment");
    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:00:10Z";

    fn config_map(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data})
    }

    /// Applies `config` for `manager` over `live`, threading its managed fields.
    fn apply_as(
        live: Option<&Value>,
        config: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let managed = managed_of(live);
        apply(live, &config, manager, &managed, force, CM, "v1", T2).map(|(obj, _)| obj)
    }

    fn managed_of(obj: Option<&Value>) -> Vec<Value> {
        obj.and_then(|o| o.pointer("/metadata/managedFields"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj.pointer("/metadata/managedFields")?
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}
        })
    }

    #[test]
    fn fields_of_matches_upstream_fields_v1() {
        let config =
            deployment(json!([{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]));
        let fields = fields_of(&config, DEPLOYMENT);
        assert_eq!(
            fields.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                    }}
                }}}}
            })
        );
        let paths: Vec<String> = fields.paths().iter().map(ToString::to_string).collect();
        assert!(paths.contains(&r#".spec.template.spec.containers[name="c"].image"#.to_owned()));
        assert!(paths.contains(&".spec.replicas".to_owned()));
    }

    #[test]
    fn fields_of_sets_and_atomic_values() {
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {
            "tolerations": [{"key": "k"}], "nodeSelector": {"disk": "ssd"}
        }});
        let fields = fields_of(&pod, GroupKind::new("", "Pod"));
        assert_eq!(
            fields.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
                "f:spec": {"f:nodeSelector": {}, "f:tolerations": {}}
            })
        );
        // Custom resources: every list is atomic.
        let cr = json!({"spec": {"items": [{"name": "a"}]}});
        let fields = fields_of(&cr, GroupKind::new("example.com", "Widget"));
        assert_eq!(fields.to_fields_v1(), json!({"f:spec": {"f:items": {}}}));
    }

    #[test]
    fn apply_creates_the_object_and_its_entry() {
        let (obj, managed) = apply(
            None,
            &config_map(json!({"a": "1"})),
            "first",
            &[],
            false,
            CM,
            "v1",
            T1,
        )
        .expect("create");
        assert_eq!(obj["data"], json!({"a": "1"}));
        assert_eq!(
            managed,
            vec![json!({
                "manager": "first", "operation": "Apply", "apiVersion": "v1", "time": T1,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}
            })]
        );
        assert_eq!(obj["metadata"]["managedFields"], Value::Array(managed));
        assert_eq!(obj["metadata"]["name"], "cm");
    }

    #[test]
    fn reapplying_the_same_configuration_is_a_no_op() {
        let config = config_map(json!({"a": "1"}));
        let (first, _) = apply(None, &config, "first", &[], false, CM, "v1", T1).expect("create");
        let (again, _) = apply(
            Some(&first),
            &config,
            "first",
            &managed_of(Some(&first)),
            false,
            CM,
            "v1",
            T2,
        )
        .expect("re-apply");
        assert_eq!(
            again, first,
            "object and managed fields (time included) unchanged"
        );
    }

    #[test]
    fn reapplying_a_configuration_that_sets_nothing_is_a_no_op() {
        // Found by proptest: the manager ends up without an entry, and the second apply must not
        // mistake the object for an unmanaged one and credit `.spec` to "before-first-apply".
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {}});
        let (first, managed) = apply(None, &config, "m", &[], false, CM, "v1", T1).expect("create");
        assert!(managed.is_empty());
        let (again, managed) =
            apply(Some(&first), &config, "m", &managed, false, CM, "v1", T2).expect("again");
        assert_eq!(again, first);
        assert!(managed.is_empty());
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts() {
        let live =
            apply_as(None, config_map(json!({"owner": "first"})), "first", false).expect("create");
        let err = apply_as(
            Some(&live),
            config_map(json!({"owner": "second"})),
            "second",
            false,
        )
        .expect_err("conflict");
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "first": .data.owner"#
        );
        assert_eq!(err.status_code(), 409);
        let ApplyError::Conflicts(conflicts) = err else {
            panic!("expected conflicts");
        };
        assert_eq!(conflicts[0].field, ".data.owner");
        assert_eq!(conflicts[0].message(), r#"conflict with "first""#);
    }

    #[test]
    fn conflicts_with_updaters_name_their_api_version_and_group_by_owner() {
        let created = config_map(json!({"a": "1", "b": "1", "c": "1"}));
        let managed = update_managed_fields(None, &created, "kubectl-edit", &[], CM, "v1", T1);
        let mut live = created.clone();
        live["metadata"]["managedFields"] = Value::Array(managed);
        let live =
            apply_as(Some(&live), config_map(json!({"c": "1"})), "first", false).expect("shared c");
        let err = apply_as(
            Some(&live),
            config_map(json!({"a": "2", "b": "2", "c": "2"})),
            "second",
            false,
        )
        .expect_err("conflicts");
        assert_eq!(
            err.to_string(),
            "Apply failed with 4 conflicts: conflicts with \"first\":\n- .data.c\n\
             conflicts with \"kubectl-edit\" using v1:\n- .data.a\n- .data.b\n- .data.c"
        );
    }

    #[test]
    fn force_takes_ownership() {
        let live = apply_as(
            None,
            config_map(json!({"owner": "first", "x": "1"})),
            "first",
            false,
        )
        .expect("create");
        let live = apply_as(
            Some(&live),
            config_map(json!({"owner": "second"})),
            "second",
            true,
        )
        .expect("forced");
        assert_eq!(live["data"], json!({"owner": "second", "x": "1"}));
        assert_eq!(
            entry(&live, "first").map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:data": {"f:x": {}}}))
        );
        assert_eq!(
            entry(&live, "second").map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:data": {"f:owner": {}}}))
        );
        // The first manager now conflicts in turn.
        let err = apply_as(
            Some(&live),
            config_map(json!({"owner": "first", "x": "1"})),
            "first",
            false,
        )
        .expect_err("conflict");
        assert!(
            err.to_string()
                .ends_with(r#"conflict with "second": .data.owner"#)
        );
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed() {
        let live = apply_as(
            None,
            config_map(json!({"a": "1", "b": "2"})),
            "first",
            false,
        )
        .expect("create");
        let live =
            apply_as(Some(&live), config_map(json!({"a": "1"})), "first", false).expect("drop b");
        assert_eq!(live["data"], json!({"a": "1"}));
        assert_eq!(
            entry(&live, "first").map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:data": {"f:a": {}}}))
        );
        assert_eq!(
            entry(&live, "first").map(|e| e["time"].clone()),
            Some(json!(T2))
        );
    }

    #[test]
    fn fields_another_manager_owns_survive_removal() {
        let live =
            apply_as(None, config_map(json!({"shared": "v"})), "first", false).expect("create");
        let live = apply_as(
            Some(&live),
            config_map(json!({"shared": "v"})),
            "second",
            false,
        )
        .expect("co-own");
        let live =
            apply_as(Some(&live), config_map(json!({})), "first", false).expect("first lets go");
        assert_eq!(live["data"], json!({"shared": "v"}));
        assert!(
            entry(&live, "first").is_none(),
            "an entry without fields is dropped"
        );
        let live = apply_as(
            Some(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
            "second",
            false,
        )
        .expect("second lets go");
        assert_eq!(live.get("data"), None);
        assert_eq!(live["metadata"]["name"], "cm");
        assert_eq!(live["metadata"].get("managedFields"), None);
    }

    #[test]
    fn applying_the_same_value_shares_ownership() {
        let live = apply_as(None, config_map(json!({"a": "1"})), "first", false).expect("create");
        let live = apply_as(
            Some(&live),
            config_map(json!({"a": "1", "b": "2"})),
            "second",
            false,
        )
        .expect("no conflict");
        assert_eq!(live["data"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            entry(&live, "first").map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:data": {"f:a": {}}}))
        );
        assert_eq!(
            entry(&live, "second").map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:data": {"f:a": {}, "f:b": {}}}))
        );
    }

    #[test]
    fn associative_lists_merge_by_key_across_managers() {
        let first = deployment(json!([{"name": "app", "image": "app:1"}]));
        let second = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:1"}]}}}});
        let (live, managed) =
            apply(None, &first, "first", &[], false, DEPLOYMENT, "apps/v1", T1).expect("create");
        let (live, managed) = apply(
            Some(&live),
            &second,
            "second",
            &managed,
            false,
            DEPLOYMENT,
            "apps/v1",
            T2,
        )
        .expect("add sidecar");
        let names: Vec<&Value> = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|c| c.iter().map(|c| &c["name"]).collect())
            .unwrap_or_default();
        assert_eq!(names, [&json!("app"), &json!("sidecar")]);

        // The first manager drops its container; the sidecar stays.
        let without = deployment(json!([]));
        let (live, _) = apply(
            Some(&live),
            &without,
            "first",
            &managed,
            false,
            DEPLOYMENT,
            "apps/v1",
            T2,
        )
        .expect("drop app");
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"],
            json!([{"name": "sidecar", "image": "proxy:1"}])
        );
    }

    #[test]
    fn conflicting_container_image_names_the_keyed_path() {
        let (live, managed) = apply(
            None,
            &deployment(json!([{"name": "c", "image": "a"}])),
            "first",
            &[],
            false,
            DEPLOYMENT,
            "apps/v1",
            T1,
        )
        .expect("create");
        let err = apply(
            Some(&live),
            &deployment(json!([{"name": "c", "image": "b"}])),
            "second",
            &managed,
            false,
            DEPLOYMENT,
            "apps/v1",
            T2,
        )
        .expect_err("conflict");
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "first": .spec.template.spec.containers[name="c"].image"#
        );
    }

    #[test]
    fn apply_over_a_created_object_conflicts_with_the_creator_until_forced() {
        let created = deployment(json!([{"name": "c", "image": "a"}]));
        let managed = update_managed_fields(
            None,
            &created,
            "kubectl-create",
            &[],
            DEPLOYMENT,
            "apps/v1",
            T1,
        );
        let mut live = created.clone();
        live["metadata"]["managedFields"] = Value::Array(managed.clone());
        let mut config = deployment(json!([{"name": "c", "image": "a"}]));
        config["spec"]["replicas"] = json!(3);

        let err = apply(
            Some(&live),
            &config,
            "kubectl",
            &managed,
            false,
            DEPLOYMENT,
            "apps/v1",
            T2,
        )
        .expect_err("replicas owned by the creator");
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas"#
        );
        let (live, managed) = apply(
            Some(&live),
            &config,
            "kubectl",
            &managed,
            true,
            DEPLOYMENT,
            "apps/v1",
            T2,
        )
        .expect("forced");
        assert_eq!(live["spec"]["replicas"], 3);
        let creator = managed
            .iter()
            .find(|e| e["manager"] == "kubectl-create")
            .expect("creator keeps the rest");
        assert_eq!(creator["fieldsV1"]["f:spec"].get("f:replicas"), None);
        assert!(creator["fieldsV1"]["f:spec"].get("f:template").is_some());
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let live = apply_as(
            None,
            config_map(json!({"a": "1", "b": "1"})),
            "first",
            false,
        )
        .expect("create");
        let mut edited = live.clone();
        edited["data"]["a"] = json!("2");
        edited["data"]["c"] = json!("3");
        edited["data"].as_object_mut().map(|d| d.remove("b"));
        let managed = update_managed_fields(
            Some(&live),
            &edited,
            "kubectl-edit",
            &managed_of(Some(&live)),
            CM,
            "v1",
            T2,
        );
        let find = |m: &str| managed.iter().find(|e| e["manager"] == m).cloned();
        assert_eq!(find("first"), None, "first lost a (taken) and b (removed)");
        let edit = find("kubectl-edit").expect("entry");
        assert_eq!(edit["operation"], "Update");
        assert_eq!(edit["apiVersion"], "v1");
        assert_eq!(edit["time"], T2);
        assert_eq!(edit["fieldsV1"], json!({"f:data": {"f:a": {}, "f:c": {}}}));
    }

    #[test]
    fn create_records_every_field_with_dots_for_new_maps() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "uid": "u", "labels": {"app": "x"}}, "data": {"a": "1"}});
        let managed = update_managed_fields(None, &obj, "kubectl-create", &[], CM, "v1", T1);
        assert_eq!(managed.len(), 1);
        assert_eq!(
            managed[0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        );
    }

    #[test]
    fn an_unchanged_update_keeps_entries_and_request_can_reset_them() {
        let live = apply_as(None, config_map(json!({"a": "1"})), "first", false).expect("create");
        let managed = managed_of(Some(&live));
        assert_eq!(
            update_managed_fields(Some(&live), &live, "x", &managed, CM, "v1", T2),
            managed
        );
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([]);
        assert!(update_managed_fields(Some(&live), &reset, "x", &managed, CM, "v1", T2).is_empty());
    }

    #[test]
    fn first_apply_over_an_unmanaged_object_credits_its_fields() {
        let legacy = config_map(json!({"a": "1"}));
        let err = apply(
            Some(&legacy),
            &config_map(json!({"a": "2"})),
            "first",
            &[],
            false,
            CM,
            "v1",
            T1,
        )
        .expect_err("legacy value is owned");
        assert!(
            err.to_string()
                .contains(r#"conflict with "before-first-apply" using v1: .data.a"#)
        );
    }

    #[test]
    fn null_in_the_configuration_removes_the_field() {
        let live = apply_as(
            None,
            config_map(json!({"a": "1", "b": "2"})),
            "first",
            false,
        )
        .expect("create");
        let live = apply_as(
            Some(&live),
            config_map(json!({"a": null, "b": "2"})),
            "first",
            false,
        )
        .expect("null");
        assert_eq!(live["data"], json!({"b": "2"}));
    }

    #[test]
    fn malformed_configurations_are_rejected() {
        let dup = deployment(json!([{"name": "c"}, {"name": "c"}]));
        let err =
            apply(None, &dup, "m", &[], false, DEPLOYMENT, "apps/v1", T1).expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            r#".spec.template.spec.containers: duplicate entries for key [name="c"]"#
        );
        let missing = deployment(json!([{"image": "x"}]));
        let err = apply(None, &missing, "m", &[], false, DEPLOYMENT, "apps/v1", T1)
            .expect_err("missing key");
        assert!(matches!(err, ApplyError::MissingListKey { ref key, .. } if key == "name"));
        assert_eq!(err.status_code(), 422);
        let with_managed = json!({"metadata": {"managedFields": [{"manager": "x"}]}});
        let err =
            apply(None, &with_managed, "m", &[], false, CM, "v1", T1).expect_err("managed fields");
        assert!(matches!(err, ApplyError::ManagedFieldsInConfig));
        let err = apply(None, &json!([]), "m", &[], false, CM, "v1", T1).expect_err("array");
        assert!(matches!(err, ApplyError::NotAnObject));
        let err = apply(
            None,
            &config_map(json!({})),
            "m",
            &[json!({"operation": "Nope"})],
            false,
            CM,
            "v1",
            T1,
        )
        .expect_err("bad entry");
        assert!(matches!(
            err,
            ApplyError::InvalidManagedFields { index: 0, .. }
        ));
    }

    #[test]
    fn entries_sort_like_upstream() {
        let live = apply_as(None, config_map(json!({"a": "1"})), "zeta", false).expect("create");
        let mut edited = live.clone();
        edited["data"]["b"] = json!("2");
        let managed = update_managed_fields(
            Some(&live),
            &edited,
            "alpha",
            &managed_of(Some(&live)),
            CM,
            "v1",
            T1,
        );
        let order: Vec<(&Value, &Value)> = managed
            .iter()
            .map(|e| (&e["operation"], &e["manager"]))
            .collect();
        assert_eq!(
            order,
            [
                (&json!("Apply"), &json!("zeta")),
                (&json!("Update"), &json!("alpha"))
            ]
        );
    }
}
