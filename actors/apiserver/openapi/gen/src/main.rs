//! Generates `actors/apiserver/openapi/schemas.json`: the OpenAPI v3 component schemas of the
//! built-in Kubernetes kinds the apiserver serves, keyed by upstream definition name
//! (`io.k8s.api.apps.v1.Deployment`, ...), with `$ref`s pointing at `#/components/schemas/<name>`.
//!
//! Source of the schemas: k8s-openapi's `schemars` impls (feature `v1_33`, the earliest one it
//! has). k8s-openapi drops the list/patch vendor extensions, so those are added back from the
//! table in `extensions.rs`. See ../README.md.
//!
//! Usage (from the repository root):
//!   cargo run --manifest-path actors/apiserver/openapi/gen/Cargo.toml --release [-- OUTPUT]

mod extensions;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::{ListableResource, Resource};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

const REF_PREFIX: &str = "#/components/schemas/";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const JSON: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Keywords kept in every (sub)schema; everything else (`$schema`, `title`, `nullable`,
/// `example`, ...) is schemars noise and is dropped. `allOf` carries `$ref`s that have sibling
/// keywords (OpenAPI 3.0 ignores siblings of `$ref`, so upstream wraps them the same way);
/// `anyOf`/`oneOf` carry int-or-string and k8s-openapi's JSONSchemaPropsOr* unions.
const KEPT_KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "allOf",
    "anyOf",
    "oneOf",
];

struct Collector {
    generator: SchemaGenerator,
    /// definition name -> its x-kubernetes-group-version-kind entries
    gvks: BTreeMap<String, Vec<Value>>,
    /// (list definition name, item definition name, list kind)
    lists: Vec<(String, String, &'static str)>,
    /// group-versions seen, for the DeleteOptions / WatchEvent GVK lists
    group_versions: BTreeSet<(&'static str, &'static str)>,
}

impl Collector {
    fn add_gvk(
        &mut self,
        name: &str,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
    ) {
        self.gvks
            .entry(name.to_owned())
            .or_default()
            .push(json!({ "group": group, "kind": kind, "version": version }));
    }

    fn kind<T: JsonSchema + Resource>(&mut self) {
        self.generator.subschema_for::<T>();
        self.add_gvk(&T::schema_name(), T::GROUP, T::VERSION, T::KIND);
        self.group_versions.insert((T::GROUP, T::VERSION));
    }

    /// A kind plus its `<Kind>List` (k8s-openapi models lists as the generic `List<T>`, which has
    /// no schema of its own, so the list definition is synthesized after generation).
    fn listable<T: JsonSchema + ListableResource>(&mut self) {
        self.kind::<T>();
        let item = T::schema_name().into_owned();
        let list = match item.rsplit_once('.') {
            Some((prefix, _)) => format!("{prefix}.{}", T::LIST_KIND),
            None => T::LIST_KIND.to_owned(),
        };
        self.add_gvk(&list, T::GROUP, T::VERSION, T::LIST_KIND);
        self.lists.push((list, item, T::KIND));
    }

    fn meta<T: JsonSchema>(&mut self, kind: Option<&'static str>) {
        self.generator.subschema_for::<T>();
        if let Some(kind) = kind {
            self.add_gvk(&T::schema_name(), "", "v1", kind);
        }
    }
}

macro_rules! kinds {
    ($c:expr; $( $how:ident $($seg:ident)::+ ),* $(,)?) => {
        $( kinds!(@one $c, $how, k8s_openapi::$($seg)::+); )*
    };
    (@one $c:expr, list, $t:ty) => { $c.listable::<$t>() };
    (@one $c:expr, kind, $t:ty) => { $c.kind::<$t>() };
}

fn collect(c: &mut Collector) {
    kinds!(c;
        // core/v1
        list api::core::v1::ComponentStatus,
        list api::core::v1::ConfigMap,
        list api::core::v1::Endpoints,
        list api::core::v1::Event,
        list api::core::v1::LimitRange,
        list api::core::v1::Namespace,
        list api::core::v1::Node,
        list api::core::v1::PersistentVolume,
        list api::core::v1::PersistentVolumeClaim,
        list api::core::v1::Pod,
        list api::core::v1::PodTemplate,
        list api::core::v1::ReplicationController,
        list api::core::v1::ResourceQuota,
        list api::core::v1::Secret,
        list api::core::v1::Service,
        list api::core::v1::ServiceAccount,
        kind api::core::v1::Binding,
        // apps/v1
        list api::apps::v1::ControllerRevision,
        list api::apps::v1::DaemonSet,
        list api::apps::v1::Deployment,
        list api::apps::v1::ReplicaSet,
        list api::apps::v1::StatefulSet,
        // batch/v1
        list api::batch::v1::CronJob,
        list api::batch::v1::Job,
        // autoscaling/v1
        list api::autoscaling::v1::HorizontalPodAutoscaler,
        kind api::autoscaling::v1::Scale,
        // autoscaling/v2
        list api::autoscaling::v2::HorizontalPodAutoscaler,
        // policy/v1
        list api::policy::v1::PodDisruptionBudget,
        kind api::policy::v1::Eviction,
        // networking.k8s.io/v1 (IPAddress and ServiceCIDR went v1 only in 1.33: left out, since
        // kubectl 1.32 / Kubernetes 1.32 know them as v1beta1 only)
        list api::networking::v1::Ingress,
        list api::networking::v1::IngressClass,
        list api::networking::v1::NetworkPolicy,
        // discovery.k8s.io/v1
        list api::discovery::v1::EndpointSlice,
        // coordination.k8s.io/v1
        list api::coordination::v1::Lease,
        // events.k8s.io/v1
        list api::events::v1::Event,
        // rbac.authorization.k8s.io/v1
        list api::rbac::v1::ClusterRole,
        list api::rbac::v1::ClusterRoleBinding,
        list api::rbac::v1::Role,
        list api::rbac::v1::RoleBinding,
        // storage.k8s.io/v1
        list api::storage::v1::CSIDriver,
        list api::storage::v1::CSINode,
        list api::storage::v1::CSIStorageCapacity,
        list api::storage::v1::StorageClass,
        list api::storage::v1::VolumeAttachment,
        // scheduling.k8s.io/v1
        list api::scheduling::v1::PriorityClass,
        // node.k8s.io/v1
        list api::node::v1::RuntimeClass,
        // certificates.k8s.io/v1
        list api::certificates::v1::CertificateSigningRequest,
        // apiextensions.k8s.io/v1
        list apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        // authentication.k8s.io/v1
        kind api::authentication::v1::SelfSubjectReview,
        kind api::authentication::v1::TokenRequest,
        kind api::authentication::v1::TokenReview,
        // authorization.k8s.io/v1
        kind api::authorization::v1::LocalSubjectAccessReview,
        kind api::authorization::v1::SelfSubjectAccessReview,
        kind api::authorization::v1::SelfSubjectRulesReview,
        kind api::authorization::v1::SubjectAccessReview,
        // admissionregistration.k8s.io/v1
        list api::admissionregistration::v1::MutatingWebhookConfiguration,
        list api::admissionregistration::v1::ValidatingAdmissionPolicy,
        list api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        list api::admissionregistration::v1::ValidatingWebhookConfiguration,
    );

    // meta/v1 and friends. Upstream gives these GVK group "" version "v1"; DeleteOptions and
    // WatchEvent get one entry per served group-version (added below).
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    c.meta::<meta::Status>(Some("Status"));
    c.meta::<meta::APIResourceList>(Some("APIResourceList"));
    c.meta::<meta::APIGroup>(Some("APIGroup"));
    c.meta::<meta::APIGroupList>(Some("APIGroupList"));
    c.meta::<meta::APIVersions>(Some("APIVersions"));
    c.meta::<meta::DeleteOptions>(None);
    c.meta::<meta::WatchEvent<()>>(None);
    c.meta::<meta::ListMeta>(None);
    c.meta::<meta::Patch>(None);
    c.meta::<k8s_openapi::apimachinery::pkg::version::Info>(None);
    let gvs: Vec<_> = c.group_versions.iter().copied().collect();
    for (group, version) in gvs {
        c.add_gvk(
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            group,
            version,
            "DeleteOptions",
        );
        c.add_gvk(
            "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
            group,
            version,
            "WatchEvent",
        );
    }
}

fn main() {
    let out: PathBuf = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas.json"),
        PathBuf::from,
    );

    let mut c = Collector {
        generator: SchemaSettings::openapi3().into_generator(),
        gvks: BTreeMap::new(),
        lists: Vec::new(),
        group_versions: BTreeSet::new(),
    };
    collect(&mut c);

    let mut defs: BTreeMap<String, Value> =
        c.generator.take_definitions(true).into_iter().collect();

    // Name collisions would show up as "<name>2" from schemars: there must be none.
    for name in defs.keys() {
        assert!(
            name.starts_with("io.k8s."),
            "unexpected definition name {name}"
        );
        let base = name.trim_end_matches(|ch: char| ch.is_ascii_digit());
        assert!(
            base == name || !defs.contains_key(base),
            "schema name collision: {name}"
        );
    }

    for (list, item, kind) in &c.lists {
        let schema = list_schema(&defs[item], item, kind);
        defs.insert(list.clone(), schema);
    }

    // IntOrString / Quantity: upstream's v3 structural form.
    for name in [INT_OR_STRING, QUANTITY] {
        let obj = defs
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{name} missing"));
        obj.remove("type");
        obj.remove("format");
        obj.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
        obj.insert(
            "anyOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }

    // apiextensions/v1 JSON holds any JSON value (a CRD `default` may be `5`); k8s-openapi types
    // it as an object, upstream leaves it untyped.
    defs.get_mut(JSON)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{JSON} missing"))
        .remove("type");

    let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
    for schema in defs.values_mut() {
        clean(schema, &mut dropped);
    }

    for (name, gvks) in c.gvks {
        let obj = defs
            .get_mut(&name)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("GVK for missing definition {name}"));
        obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }

    let applied = extensions::apply(&mut defs);

    // Every $ref must resolve.
    let mut refs = BTreeSet::new();
    for schema in defs.values() {
        collect_refs(schema, &mut refs);
    }
    for r in &refs {
        let target = r
            .strip_prefix(REF_PREFIX)
            .unwrap_or_else(|| panic!("bad $ref {r}"));
        assert!(defs.contains_key(target), "dangling $ref {r}");
    }

    // One definition per line: compact, yet diffable.
    let mut text = String::from("{\n");
    let n = defs.len();
    for (i, (name, schema)) in defs.iter().enumerate() {
        text.push_str(&serde_json::to_string(name).expect("string"));
        text.push(':');
        text.push_str(&serde_json::to_string(schema).expect("json"));
        text.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    text.push_str("}\n");
    std::fs::write(&out, &text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));

    eprintln!(
        "wrote {} ({} bytes, {} definitions, {} $ref targets, {} extension entries applied)",
        out.display(),
        text.len(),
        n,
        refs.len(),
        applied
    );
    if !dropped.is_empty() {
        eprintln!("dropped keywords: {dropped:?}");
    }
}

/// `<Kind>List`, shaped like upstream's (apiVersion, items, kind, metadata; items required).
fn list_schema(item_schema: &Value, item: &str, kind: &str) -> Value {
    let item_prop = |p: &str| {
        item_schema
            .pointer(&format!("/properties/{p}"))
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": item_prop("apiVersion"),
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": { "$ref": format!("{REF_PREFIX}{item}") },
            },
            "kind": item_prop("kind"),
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [{ "$ref": format!("{REF_PREFIX}{LIST_META}") }],
            },
        },
        "required": ["items"],
    })
}

/// Keeps only [`KEPT_KEYWORDS`] and `x-kubernetes-*`, recursing into subschemas.
fn clean(schema: &mut Value, dropped: &mut BTreeMap<String, usize>) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.retain(|k, _| {
        let keep = KEPT_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-kubernetes-");
        if !keep {
            *dropped.entry(k.clone()).or_default() += 1;
        }
        keep
    });
    if let Some(Value::String(r)) = obj.get_mut("$ref")
        && let Some(name) = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
    {
        *r = format!("{REF_PREFIX}{name}");
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for sub in props.values_mut() {
            clean(sub, dropped);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            clean(sub, dropped);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            for sub in subs {
                clean(sub, dropped);
            }
        }
    }
}

fn collect_refs(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(obj) => {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Helper for extensions.rs: the object at `defs[def].properties[prop]`.
fn property_mut<'a>(
    defs: &'a mut BTreeMap<String, Value>,
    def: &str,
    prop: &str,
) -> Option<&'a mut Map<String, Value>> {
    defs.get_mut(def)?
        .get_mut("properties")?
        .get_mut(prop)?
        .as_object_mut()
}
