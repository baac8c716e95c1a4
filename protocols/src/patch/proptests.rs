//! Property tests: the merge patch laws, strategic merge patch agreeing with merge patch where no
//! list or directive is involved, and no patch or apply input making the code panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const DEPLOYMENT: GroupKind<'static> = GroupKind::new("apps", "Deployment");

/// Keys that exercise the directives and the pod-spec merge keys.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$patch"),
        Just("$retainKeys"),
        Just("$setElementOrder/containers"),
        Just("$setElementOrder/finalizers"),
        Just("$deleteFromPrimitiveList/finalizers"),
        Just("metadata"),
        Just("finalizers"),
        Just("spec"),
        Just("template"),
        Just("containers"),
        Just("name"),
        Just("env"),
        Just("ports"),
        Just("containerPort"),
        Just("a"),
    ]
    .prop_map(str::to_owned)
}

/// Arbitrary JSON, nulls and directive values included.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(Value::from),
        prop_oneof![
            Just("replace"),
            Just("delete"),
            Just("merge"),
            Just("a"),
            Just("b")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Objects without nulls: every document a merge patch can produce.
fn plain_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-d]", value, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// The RFC 7386 patch that turns `from` into `to` (objects without nulls).
fn merge_diff(from: &Value, to: &Value) -> Value {
    let (Value::Object(from), Value::Object(to)) = (from, to) else {
        return to.clone();
    };
    let mut patch = Map::new();
    for gone in from.keys().filter(|k| !to.contains_key(*k)) {
        patch.insert(gone.clone(), Value::Null);
    }
    for (k, new) in to {
        match from.get(k) {
            Some(old) if old == new => {}
            Some(old @ Value::Object(_)) if new.is_object() => {
                patch.insert(k.clone(), merge_diff(old, new));
            }
            _ => {
                patch.insert(k.clone(), new.clone());
            }
        }
    }
    Value::Object(patch)
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

proptest! {
    #[test]
    fn merge_patch_of_a_diff_reaches_the_target(from in plain_object(), to in plain_object()) {
        let patch = merge_diff(&from, &to);
        prop_assert_eq!(merge_patch(&from, &bytes(&patch)).expect("valid"), to);
    }

    #[test]
    fn merge_patch_is_idempotent(doc in plain_object(), patch in any_json()) {
        let once = merge_patch(&doc, &bytes(&patch)).expect("valid");
        let twice = merge_patch(&once, &bytes(&patch)).expect("valid");
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn empty_merge_patch_is_the_identity(doc in plain_object()) {
        prop_assert_eq!(merge_patch(&doc, b"{}").expect("valid"), doc);
    }

    #[test]
    fn strategic_patch_agrees_with_merge_patch_without_lists_to_merge(
        from in plain_object(),
        to in plain_object(),
    ) {
        // ConfigMap fields a-d carry no list strategy: both patch types must agree.
        let patch = bytes(&merge_diff(&from, &to));
        let strategic = strategic_merge_patch(&from, &patch, GroupKind::new("", "ConfigMap"));
        prop_assert_eq!(strategic.expect("valid"), to);
    }

    #[test]
    fn strategic_patch_never_panics(doc in any_json(), patch in any_json()) {
        for kind in [GroupKind::new("", "Pod"), DEPLOYMENT, GroupKind::new("", "ConfigMap")] {
            let _ = strategic_merge_patch(&doc, &bytes(&patch), kind);
        }
    }

    #[test]
    fn reapplying_a_configuration_changes_nothing(spec in any_json()) {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": spec});
        let t = "2025-01-01T00:00:00Z";
        if let Ok((created, managed)) = apply(None, &config, "m", &[], false, DEPLOYMENT, "apps/v1", t) {
            let (again, managed_again) =
                apply(Some(&created), &config, "m", &managed, false, DEPLOYMENT, "apps/v1", "later")
                    .expect("re-apply of an accepted configuration");
            prop_assert_eq!(again, created);
            prop_assert_eq!(managed_again, managed);
        }
    }

    #[test]
    fn updates_never_panic_and_field_sets_round_trip(old in any_json(), new in any_json()) {
        let (old, new) = (json!({"spec": old}), json!({"spec": new}));
        let _ = update_managed_fields(Some(&old), &new, "m", &[], DEPLOYMENT, "apps/v1", "t");
        let fields = fields_of(&new, DEPLOYMENT);
        prop_assert_eq!(FieldSet::from_fields_v1(&fields.to_fields_v1()).expect("valid"), fields);
    }
}
