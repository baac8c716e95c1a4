//! Patch metadata of the built-in kinds: which lists merge, and by which keys.
//!
//! Transcribed by hand from the Go struct tags of k8s.io/api v0.32 (`patchStrategy`,
//! `patchMergeKey`, `+listType`, `+listMapKey`, `+mapType=atomic`, `+structType=atomic`), the data
//! the OpenAPI document carries as `x-kubernetes-patch-*` and `x-kubernetes-list-*`. Only fields
//! that differ from the defaults are listed: objects merge field by field, lists are atomic.
//!
//! Paths are dotted field names relative to a [`Shape`] with list positions left out, and shapes
//! nest, so the pod-spec table serves Pods, every pod template and CronJob's job template.
//! Server-side apply reads the same rules: upstream turns a list with `patchStrategy=merge` and a
//! merge key into an associative list on that key unless `+listType` says otherwise.

use super::GroupKind;

/// One key field of an associative list, with the default upstream fills in when it is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// Field name.
    pub name: &'static str,
    /// Value used when the element omits the field (a string in every built-in case).
    pub default: Option<&'static str>,
}

const fn key(name: &'static str) -> Key {
    Key {
        name,
        default: None,
    }
}

/// How server-side apply treats a field (its `x-kubernetes-list-type` / `map-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ssa {
    /// Replaced whole and owned as one leaf: lists by default, and atomic maps or structs.
    Atomic,
    /// A list of scalars merged as a set (`v:<value>` paths).
    Set,
    /// A list of objects merged by these key fields (`k:{...}` paths).
    Map(&'static [Key]),
}

/// The non-default merge behaviour of one field.
#[derive(Debug)]
struct Rule {
    /// Dotted path relative to the enclosing [`Shape`].
    path: &'static str,
    /// Strategic merge patch: `None` replaces the list, `Some("")` merges scalars as a set,
    /// `Some(key)` merges objects by `key`.
    smp: Option<&'static str>,
    /// Server-side apply.
    ssa: Ssa,
}

impl Rule {
    /// `patchStrategy=merge, patchMergeKey=merge_key`; associative on `keys` for apply.
    const fn keyed(path: &'static str, merge_key: &'static str, keys: &'static [Key]) -> Rule {
        Rule {
            path,
            smp: Some(merge_key),
            ssa: Ssa::Map(keys),
        }
    }

    /// `patchStrategy=merge` on scalars; `+listType=set`.
    const fn set(path: &'static str) -> Rule {
        Rule {
            path,
            smp: Some(""),
            ssa: Ssa::Set,
        }
    }

    /// `+listType=map` without a patch strategy: replaced by strategic merge patch.
    const fn apply_keyed(path: &'static str, keys: &'static [Key]) -> Rule {
        Rule {
            path,
            smp: None,
            ssa: Ssa::Map(keys),
        }
    }

    /// `+mapType=atomic` / `+structType=atomic`: one leaf for apply; merged by key otherwise.
    const fn atomic(path: &'static str) -> Rule {
        Rule {
            path,
            smp: None,
            ssa: Ssa::Atomic,
        }
    }
}

/// The rules of one API type, and the types it embeds at dotted paths.
#[derive(Debug)]
pub(crate) struct Shape {
    rules: &'static [Rule],
    nested: &'static [(&'static str, &'static Shape)],
}

const NAME: &[Key] = &[key("name")];
const TYPE: &[Key] = &[key("type")];
const IP: &[Key] = &[key("ip")];
const UID: &[Key] = &[key("uid")];
const TCP: Option<&str> = Some("TCP");
const CONTAINER_PORT: &[Key] = &[
    key("containerPort"),
    Key {
        name: "protocol",
        default: TCP,
    },
];
const SERVICE_PORT: &[Key] = &[
    key("port"),
    Key {
        name: "protocol",
        default: TCP,
    },
];

/// `metav1.ObjectMeta`.
static OBJECT_META: Shape = Shape {
    rules: &[
        Rule::set("finalizers"),
        Rule::keyed("ownerReferences", "uid", UID),
    ],
    nested: &[],
};

/// `Container` and `EphemeralContainerCommon`.
static CONTAINER: Shape = Shape {
    rules: &[
        Rule::keyed("ports", "containerPort", CONTAINER_PORT),
        Rule::keyed("env", "name", NAME),
        Rule::keyed("volumeMounts", "mountPath", &[key("mountPath")]),
        Rule::keyed("volumeDevices", "devicePath", &[key("devicePath")]),
        Rule::apply_keyed("resources.claims", NAME),
        Rule::atomic("env.valueFrom.configMapKeyRef"),
        Rule::atomic("env.valueFrom.secretKeyRef"),
        Rule::atomic("env.valueFrom.fieldRef"),
        Rule::atomic("env.valueFrom.resourceFieldRef"),
    ],
    nested: &[],
};

/// `PodSpec`. Tolerations, readiness gates and `envFrom` are atomic: the default.
static POD_SPEC: Shape = Shape {
    rules: &[
        Rule::keyed("containers", "name", NAME),
        Rule::keyed("initContainers", "name", NAME),
        Rule::keyed("ephemeralContainers", "name", NAME),
        Rule::keyed("volumes", "name", NAME),
        Rule::keyed("imagePullSecrets", "name", NAME),
        Rule::keyed("hostAliases", "ip", IP),
        Rule::keyed(
            "topologySpreadConstraints",
            "topologyKey",
            &[key("topologyKey"), key("whenUnsatisfiable")],
        ),
        Rule::keyed("schedulingGates", "name", NAME),
        Rule::keyed("resourceClaims", "name", NAME),
        Rule::atomic("nodeSelector"),
        Rule::atomic("affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
    ],
    nested: &[
        ("containers", &CONTAINER),
        ("initContainers", &CONTAINER),
        ("ephemeralContainers", &CONTAINER),
    ],
};

/// `PodTemplateSpec`.
static POD_TEMPLATE_SPEC: Shape = Shape {
    rules: &[],
    nested: &[("metadata", &OBJECT_META), ("spec", &POD_SPEC)],
};

/// `PodStatus`. Container statuses are atomic.
static POD_STATUS: Shape = Shape {
    rules: &[
        Rule::keyed("conditions", "type", TYPE),
        Rule::keyed("podIPs", "ip", IP),
        Rule::keyed("hostIPs", "ip", IP),
        Rule::keyed("resourceClaimStatuses", "name", NAME),
    ],
    nested: &[],
};

/// Every built-in status with `conditions` merges them by `type`.
static CONDITIONS: Shape = Shape {
    rules: &[Rule::keyed("conditions", "type", TYPE)],
    nested: &[],
};

static POD: Shape = Shape {
    rules: &[],
    nested: &[
        ("metadata", &OBJECT_META),
        ("spec", &POD_SPEC),
        ("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE: Shape = Shape {
    rules: &[],
    nested: &[("metadata", &OBJECT_META), ("template", &POD_TEMPLATE_SPEC)],
};

/// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job: a pod template and an atomic
/// `LabelSelector` (StatefulSet's `volumeClaimTemplates` is atomic, the default).
static WORKLOAD: Shape = Shape {
    rules: &[Rule::atomic("spec.selector")],
    nested: &[
        ("metadata", &OBJECT_META),
        ("spec.template", &POD_TEMPLATE_SPEC),
        ("status", &CONDITIONS),
    ],
};

static CRON_JOB: Shape = Shape {
    rules: &[Rule::atomic("spec.jobTemplate.spec.selector")],
    nested: &[
        ("metadata", &OBJECT_META),
        ("spec.jobTemplate.metadata", &OBJECT_META),
        ("spec.jobTemplate.spec.template", &POD_TEMPLATE_SPEC),
    ],
};

/// ReplicationController: its selector is an atomic map.
static REPLICATION_CONTROLLER: Shape = Shape {
    rules: &[Rule::atomic("spec.selector")],
    nested: &[
        ("metadata", &OBJECT_META),
        ("spec.template", &POD_TEMPLATE_SPEC),
        ("status", &CONDITIONS),
    ],
};

static SERVICE: Shape = Shape {
    rules: &[
        Rule::keyed("spec.ports", "port", SERVICE_PORT),
        Rule::atomic("spec.selector"),
    ],
    nested: &[("metadata", &OBJECT_META), ("status", &CONDITIONS)],
};

/// Node: taints, images and attached volumes are atomic.
static NODE: Shape = Shape {
    rules: &[
        Rule::set("spec.podCIDRs"),
        Rule::keyed("status.addresses", "type", TYPE),
    ],
    nested: &[("metadata", &OBJECT_META), ("status", &CONDITIONS)],
};

static SERVICE_ACCOUNT: Shape = Shape {
    rules: &[Rule::keyed("secrets", "name", NAME)],
    nested: &[("metadata", &OBJECT_META)],
};

/// Every other built-in kind (Endpoints subsets, RBAC rules, webhooks... are atomic lists).
static GENERIC: Shape = Shape {
    rules: &[],
    nested: &[("metadata", &OBJECT_META), ("status", &CONDITIONS)],
};

/// Kinds with more than [`GENERIC`] metadata.
static KINDS: &[(&str, &str, &Shape)] = &[
    ("", "Pod", &POD),
    ("", "PodTemplate", &POD_TEMPLATE),
    ("", "ReplicationController", &REPLICATION_CONTROLLER),
    ("", "Service", &SERVICE),
    ("", "Node", &NODE),
    ("", "ServiceAccount", &SERVICE_ACCOUNT),
    ("apps", "Deployment", &WORKLOAD),
    ("apps", "ReplicaSet", &WORKLOAD),
    ("apps", "StatefulSet", &WORKLOAD),
    ("apps", "DaemonSet", &WORKLOAD),
    ("batch", "Job", &WORKLOAD),
    ("batch", "CronJob", &CRON_JOB),
];

/// The API groups served by the API server itself (kube-apiserver 1.32). Custom resources cannot
/// use these exact groups, so group membership decides "built-in".
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Whether `group` is served by the API server itself rather than by custom resources.
pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// The patch metadata of one kind; empty for custom resources.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schema {
    root: Option<&'static Shape>,
}

impl Schema {
    /// The metadata for `kind`.
    pub fn of(kind: GroupKind<'_>) -> Schema {
        let root = is_builtin_group(kind.group).then(|| {
            KINDS
                .iter()
                .find(|(group, name, _)| *group == kind.group && *name == kind.kind)
                .map_or(&GENERIC, |(_, _, shape)| *shape)
        });
        Schema { root }
    }

    /// Whether the kind is built in (strategic merge patch is available).
    pub fn is_builtin(&self) -> bool {
        self.root.is_some()
    }

    /// Strategic merge patch strategy of the list at `path`: `None` replaces it, `Some("")`
    /// merges scalars, `Some(key)` merges objects by `key`.
    pub fn merge_key<S: AsRef<str>>(&self, path: &[S]) -> Option<&'static str> {
        self.rule(path).and_then(|rule| rule.smp)
    }

    /// Server-side apply treatment of the list at `path` (atomic unless listed).
    pub fn list_type<S: AsRef<str>>(&self, path: &[S]) -> Ssa {
        self.rule(path).map_or(Ssa::Atomic, |rule| rule.ssa)
    }

    /// Whether the object at `path` is an atomic map or struct for server-side apply.
    pub fn atomic_map<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.rule(path).is_some_and(|rule| rule.ssa == Ssa::Atomic)
    }

    fn rule<S: AsRef<str>>(&self, path: &[S]) -> Option<&'static Rule> {
        find(self.root?, path)
    }
}

fn find<S: AsRef<str>>(shape: &'static Shape, path: &[S]) -> Option<&'static Rule> {
    shape
        .rules
        .iter()
        .find(|rule| strip(rule.path, path).is_some_and(<[S]>::is_empty))
        .or_else(|| {
            shape
                .nested
                .iter()
                .find_map(|(prefix, inner)| find(inner, strip(prefix, path)?))
        })
}

/// `path` after the dotted `prefix`, if it starts with it.
fn strip<'p, S: AsRef<str>>(prefix: &str, path: &'p [S]) -> Option<&'p [S]> {
    prefix
        .split('.')
        .try_fold(path, |rest, segment| match rest {
            [head, tail @ ..] if head.as_ref() == segment => Some(tail),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dotted: &str) -> Vec<&str> {
        dotted.split('.').collect()
    }

    #[test]
    fn pod_spec_rules_apply_wherever_a_pod_spec_is_embedded() {
        let cases = [
            (("", "Pod"), "spec.containers.env"),
            (("apps", "Deployment"), "spec.template.spec.containers.env"),
            (("batch", "Job"), "spec.template.spec.initContainers.env"),
            (
                ("batch", "CronJob"),
                "spec.jobTemplate.spec.template.spec.containers.env",
            ),
            (("", "PodTemplate"), "template.spec.ephemeralContainers.env"),
        ];
        for ((group, kind), field) in cases {
            let schema = Schema::of(GroupKind::new(group, kind));
            assert_eq!(
                schema.merge_key(&path(field)),
                Some("name"),
                "{kind} {field}"
            );
            assert_eq!(schema.list_type(&path(field)), Ssa::Map(NAME));
        }
    }

    #[test]
    fn unlisted_lists_replace_and_unknown_groups_are_custom() {
        let pod = Schema::of(GroupKind::new("", "Pod"));
        assert_eq!(pod.merge_key(&path("spec.tolerations")), None);
        assert_eq!(pod.list_type(&path("spec.tolerations")), Ssa::Atomic);
        assert_eq!(pod.merge_key(&path("metadata.finalizers")), Some(""));
        assert!(pod.atomic_map(&path("spec.nodeSelector")));
        assert!(!pod.atomic_map(&path("metadata.labels")));
        let role = Schema::of(GroupKind::new("rbac.authorization.k8s.io", "Role"));
        assert!(role.is_builtin());
        assert_eq!(role.merge_key(&path("status.conditions")), Some("type"));
        let custom = Schema::of(GroupKind::new("gateway.networking.k8s.io", "Gateway"));
        assert!(!custom.is_builtin());
        assert_eq!(custom.merge_key(&path("metadata.finalizers")), None);
    }

    #[test]
    fn ports_key_on_port_and_protocol_for_apply() {
        let svc = Schema::of(GroupKind::new("", "Service"));
        assert_eq!(svc.merge_key(&path("spec.ports")), Some("port"));
        assert_eq!(svc.list_type(&path("spec.ports")), Ssa::Map(SERVICE_PORT));
        let pod = Schema::of(GroupKind::new("", "Pod"));
        assert_eq!(
            pod.merge_key(&path("spec.containers.ports")),
            Some("containerPort")
        );
    }
}
