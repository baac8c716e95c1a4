//! Server-side `Table` output: what `kubectl get` prints.
//!
//! kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells
//! the server computes, so the columns and cell texts here follow upstream's printers
//! (k/k `pkg/printers/internalversion/printers.go`), the default convertor for kinds without a
//! printer (`Name`, `Created At`) and the CRD convertor (`additionalPrinterColumns`).
//!
//! Invariants:
//! - every row has one cell per column of [`columns`] for the same resource, priority-1 (`-o wide`)
//!   cells included, as upstream generates tables with `Wide: true` and kubectl hides them;
//! - cells are computed from the stored JSON form of the object and `now`, never from a clock;
//! - the shape of a cell (string, integer, boolean) is the one upstream's printer emits.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::selector::LabelSelector;

/// One column definition (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Header text; kubectl upper-cases it.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `name` for the column holding the object's name, else usually empty.
    pub format: String,
    /// Human-readable description of the column.
    pub description: String,
    /// 0 = always shown; higher = only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The wire form (`{"name","type","format","description","priority"}`).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// What each row carries in `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default; kubectl needs it for the
    /// NAMESPACE column, `--show-labels` and `-L`).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// The `includeObject` query value (`None`, `Metadata`, `Object`; empty means the default).
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" | "" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Column definitions: one static list per printer.

#[derive(Clone, Copy)]
struct Col {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

const fn c(name: &'static str, type_: &'static str, description: &'static str) -> Col {
    Col {
        name,
        type_,
        format: "",
        priority: 0,
        description,
    }
}

const fn w(name: &'static str, type_: &'static str, description: &'static str) -> Col {
    Col {
        name,
        type_,
        format: "",
        priority: 1,
        description,
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Col = Col {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
    description: NAME_DOC,
};
const AGE: Col = c("Age", "string", CREATED_DOC);
const CREATED_AT: Col = c("Created At", "date", CREATED_DOC);
const CONTAINERS: Col = w(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Col = w(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Col = w(
    "Selector",
    "string",
    "A label query over pods that are managed by this object.",
);
const BINDING_SUBJECTS: [Col; 3] = [
    w("Users", "string", "Users in the binding"),
    w("Groups", "string", "Groups in the binding"),
    w(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the binding",
    ),
];

type RowFn = fn(&Value, Timestamp) -> Vec<Value>;

/// A resource's columns and the function computing one row.
struct Printer {
    resources: &'static [&'static str],
    columns: &'static [Col],
    row: RowFn,
}

#[rustfmt::skip]
static PRINTERS: &[Printer] = &[
    Printer {
        resources: &["pods"],
        columns: &[
            NAME,
            c("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            c("Status", "string", "The aggregate status of the containers in this pod."),
            c("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            w("IP", "string", "IP address allocated to the pod. Routable at least within the cluster."),
            w("Node", "string", "NodeName indicates in which node this pod is scheduled."),
            w("Nominated Node", "string", "nominatedNodeName is set when this pod preempts other pods on the node."),
            w("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        row: pod,
    },
    Printer {
        resources: &["podtemplates"],
        columns: &[
            NAME,
            c("Containers", "string", "Names of each container in the template."),
            c("Images", "string", "Images referenced by each container in the template."),
            c("Pod Labels", "string", "The labels for the pod template."),
        ],
        row: pod_template,
    },
    Printer {
        resources: &["deployments"],
        columns: &[
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            c("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            c("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        row: deployment,
    },
    Printer {
        resources: &["replicasets", "replicationcontrollers"],
        columns: &[
            NAME,
            c("Desired", "integer", "Replicas is the number of desired replicas."),
            c("Current", "integer", "Replicas is the most recently observed number of replicas."),
            c("Ready", "integer", "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        row: replica_set,
    },
    Printer {
        resources: &["statefulsets"],
        columns: &[
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        row: stateful_set,
    },
    Printer {
        resources: &["daemonsets"],
        columns: &[
            NAME,
            c("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
            c("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            c("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            c("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
            c("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            c("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        row: daemon_set,
    },
    Printer {
        resources: &["jobs"],
        columns: &[
            NAME,
            c("Status", "string", "Status of the job."),
            c("Completions", "string", "The number of pods which reached phase Succeeded."),
            c("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        row: job,
    },
    Printer {
        resources: &["cronjobs"],
        columns: &[
            NAME,
            c("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            c("Timezone", "string", "The time zone name for the given schedule."),
            c("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
            c("Active", "integer", "A list of pointers to currently running jobs."),
            c("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        row: cron_job,
    },
    Printer {
        resources: &["services"],
        columns: &[
            NAME,
            c("Type", "string", "type determines how the Service is exposed."),
            c("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
            c("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            c("Port(s)", "string", "The list of ports that are exposed by this service."),
            AGE,
            w("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
        ],
        row: service,
    },
    Printer {
        resources: &["ingresses"],
        columns: &[
            NAME,
            c("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
            c("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            c("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            c("Ports", "string", "Ports of TLS configurations that open"),
            AGE,
        ],
        row: ingress,
    },
    Printer {
        resources: &["ingressclasses"],
        columns: &[
            NAME,
            c("Controller", "string", "Controller that is responsible for handling this class"),
            c("Parameters", "string", "A reference to a resource with additional parameters"),
            AGE,
        ],
        row: ingress_class,
    },
    Printer {
        resources: &["endpoints"],
        columns: &[
            NAME,
            c("Endpoints", "string", "The set of all endpoints is the union of all subsets."),
            AGE,
        ],
        row: endpoints,
    },
    Printer {
        resources: &["endpointslices"],
        columns: &[
            NAME,
            c("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
            c("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            c("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        row: endpoint_slice,
    },
    Printer {
        resources: &["nodes"],
        columns: &[
            NAME,
            c("Status", "string", "The status of the node"),
            c("Roles", "string", "The roles of the node"),
            AGE,
            c("Version", "string", "Kubelet Version reported by the node."),
            w("Internal-IP", "string", "List of addresses reachable to the node."),
            w("External-IP", "string", "List of addresses reachable to the node."),
            w("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            w("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            w("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        row: node,
    },
    Printer {
        resources: &["events"],
        columns: &[
            c("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            c("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            c("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            c("Object", "string", "The object that this event is about."),
            w("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            w("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
            c("Message", "string", "A human-readable description of the status of this operation."),
            w("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            w("Count", "string", "The number of times this event has occurred."),
            Col {
                priority: 1,
                ..NAME
            },
        ],
        row: event,
    },
    Printer {
        resources: &["namespaces"],
        columns: &[
            NAME,
            c("Status", "string", "The status of the namespace"),
            AGE,
        ],
        row: namespace,
    },
    Printer {
        resources: &["secrets"],
        columns: &[
            NAME,
            c("Type", "string", "Used to facilitate programmatic handling of secret data."),
            c("Data", "string", "Data contains the secret data."),
            AGE,
        ],
        row: secret,
    },
    Printer {
        resources: &["configmaps"],
        columns: &[
            NAME,
            c("Data", "string", "Data contains the configuration data."),
            AGE,
        ],
        row: config_map,
    },
    Printer {
        resources: &["serviceaccounts"],
        columns: &[
            NAME,
            c("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            AGE,
        ],
        row: service_account,
    },
    Printer {
        resources: &["persistentvolumes"],
        columns: &[
            NAME,
            c("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
            c("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
            c("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            c("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            c("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            c("StorageClass", "string", "StorageClass of the pv"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            c("Reason", "string", "reason is a brief CamelCase string that describes any failure."),
            AGE,
            w("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        row: persistent_volume,
    },
    Printer {
        resources: &["persistentvolumeclaims"],
        columns: &[
            NAME,
            c("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            c("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            c("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            c("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
            c("StorageClass", "string", "StorageClass of the pvc"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            AGE,
            w("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
        ],
        row: persistent_volume_claim,
    },
    Printer {
        resources: &["rolebindings", "clusterrolebindings"],
        columns: &[
            NAME,
            c("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            AGE,
            BINDING_SUBJECTS[0],
            BINDING_SUBJECTS[1],
            BINDING_SUBJECTS[2],
        ],
        row: role_binding,
    },
    Printer {
        // No printer upstream: the default table convertor.
        resources: &[
            "roles",
            "clusterroles",
            "limitranges",
            "customresourcedefinitions",
        ],
        columns: &[NAME, CREATED_AT],
        row: created_at,
    },
    Printer {
        resources: &["certificatesigningrequests", "csr"],
        columns: &[
            NAME,
            AGE,
            c("SignerName", "string", "Requested signer for the request."),
            c("Requestor", "string", "Name of the user which created the CSR."),
            c("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate."),
            c("Condition", "string", "Conditions applied to the request."),
        ],
        row: csr,
    },
    Printer {
        resources: &["leases"],
        columns: &[
            NAME,
            c("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
            AGE,
        ],
        row: lease,
    },
    Printer {
        resources: &["storageclasses"],
        columns: &[
            NAME,
            c("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            c("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            c("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            c("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            AGE,
        ],
        row: storage_class,
    },
    Printer {
        resources: &["poddisruptionbudgets"],
        columns: &[
            NAME,
            c("Min Available", "string", "The minimum number of pods that must be available."),
            c("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            c("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ],
        row: pod_disruption_budget,
    },
    Printer {
        resources: &["horizontalpodautoscalers"],
        columns: &[
            NAME,
            c("Reference", "string", "scaleTargetRef points to the target resource to scale."),
            c("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count."),
            c("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            c("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            c("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        row: horizontal_pod_autoscaler,
    },
    Printer {
        resources: &["priorityclasses"],
        columns: &[
            NAME,
            c("Value", "integer", "value represents the integer value of this priority class."),
            c("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            AGE,
            c("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        row: priority_class,
    },
    Printer {
        resources: &["runtimeclasses"],
        columns: &[
            NAME,
            c("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use."),
            AGE,
        ],
        row: runtime_class,
    },
    Printer {
        resources: &["networkpolicies"],
        columns: &[
            NAME,
            c("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies."),
            AGE,
        ],
        row: network_policy,
    },
    Printer {
        resources: &["resourcequotas"],
        columns: &[
            NAME,
            c("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            c("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            AGE,
        ],
        row: resource_quota,
    },
    Printer {
        resources: &[
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
        ],
        columns: &[
            NAME,
            c("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
            AGE,
        ],
        row: webhook_configuration,
    },
    Printer {
        resources: &["controllerrevisions"],
        columns: &[
            NAME,
            c("Controller", "string", "Controller of the object"),
            c("Revision", "string", "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        row: controller_revision,
    },
];

/// Kinds without an entry: the object's name and age.
static FALLBACK: Printer = Printer {
    resources: &[],
    columns: &[NAME, AGE],
    row: name_and_age,
};

fn printer(resource: &str) -> &'static Printer {
    PRINTERS
        .iter()
        .find(|p| p.resources.contains(&resource))
        .unwrap_or(&FALLBACK)
}

/// The columns upstream serves for `resource` (the plural name, e.g. `pods`; `csr` is accepted
/// for certificatesigningrequests). Unknown resources get `Name`, `Age`.
pub fn columns(resource: &str) -> Vec<Column> {
    printer(resource)
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.to_owned(),
            type_: c.type_.to_owned(),
            format: c.format.to_owned(),
            description: c.description.to_owned(),
            priority: c.priority,
        })
        .collect()
}

/// The cells of one row for `obj`, one per column of [`columns`], as of `now`.
pub fn row(resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    (printer(resource).row)(obj, now)
}

/// Row conditions upstream attaches (pods that have finished are marked `Completed`).
fn row_conditions(resource: &str, obj: &Value) -> Option<Value> {
    let (reason, message) = match (resource, st(obj, "status.phase")) {
        ("pods", "Succeeded") => ("Succeeded", "The pod has completed successfully."),
        ("pods", "Failed") => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// The full `meta.k8s.io/v1` `Table` for `items` of `resource`. Without headers (`with_headers`
/// false, e.g. watch events after the first), `columnDefinitions` is empty. The caller fills
/// `metadata` (`resourceVersion`, `continue`).
pub fn table(
    resource: &str,
    items: &[Value],
    include_object: IncludeObject,
    with_headers: bool,
    now: Timestamp,
) -> Value {
    build_table(
        &columns(resource),
        items,
        include_object,
        with_headers,
        |o| (row(resource, o, now), row_conditions(resource, o)),
    )
}

/// The `Table` for custom resources, from the CRD version's `additionalPrinterColumns`.
pub fn custom_table(
    printer_columns: &[Value],
    items: &[Value],
    include_object: IncludeObject,
    with_headers: bool,
    now: Timestamp,
) -> Value {
    build_table(
        &custom_columns(printer_columns),
        items,
        include_object,
        with_headers,
        |o| (custom_row(printer_columns, o, now), None),
    )
}

fn build_table(
    columns: &[Column],
    items: &[Value],
    include_object: IncludeObject,
    with_headers: bool,
    cells: impl Fn(&Value) -> (Vec<Value>, Option<Value>),
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let (cells, conditions) = cells(obj);
            let mut row = Map::new();
            row.insert("cells".to_owned(), Value::Array(cells));
            if let Some(conditions) = conditions {
                row.insert("conditions".to_owned(), conditions);
            }
            let object = match include_object {
                IncludeObject::None => None,
                IncludeObject::Metadata => Some(json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                })),
                IncludeObject::Object => Some(obj.clone()),
            };
            if let Some(object) = object {
                row.insert("object".to_owned(), object);
            }
            Value::Object(row)
        })
        .collect();
    let definitions: Vec<Value> = if with_headers {
        columns.iter().map(Column::to_json).collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

// ---------------------------------------------------------------------------------------------
// Durations and times.

/// apimachinery's `duration.HumanDuration`, for a whole number of seconds (Go truncates the
/// duration to seconds first): `<2m` "Ns", `<10m` "XmYs", `<3h` "Xm", `<8h` "XhYm", `<48h` "Xh",
/// `<8d` "XdYh", `<2y` "Xd", `<8y` "XyYd", else "Xy"; up to 1s in the future is "0s".
pub fn human_duration(seconds: i64) -> String {
    let with = |major: i64, a: &str, minor: i64, b: &str| {
        if minor == 0 {
            format!("{major}{a}")
        } else {
            format!("{major}{a}{minor}{b}")
        }
    };
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match seconds {
        ..-1 => "<invalid>".to_owned(),
        -1 => "0s".to_owned(),
        0..120 => format!("{seconds}s"),
        _ if minutes < 10 => with(minutes, "m", seconds % 60, "s"),
        _ if minutes < 60 * 3 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(hours / 24, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{}d", hours / 24),
        _ if hours < 24 * 365 * 8 => with(hours / 24 / 365, "y", (hours / 24) % 365, "d"),
        _ => format!("{}y", hours / 24 / 365),
    }
}

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, which upstream treats as unset.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// A timestamp field; `None` when absent, unparsable or Go's zero time.
fn time(v: &Value) -> Option<Timestamp> {
    v.as_str()?
        .parse::<Timestamp>()
        .ok()
        .filter(|t| t.as_second() != GO_ZERO_SECONDS)
}

/// Whole seconds from `from` to `to`, truncated toward zero like Go's `Duration.Seconds()`.
fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    let nanos = (to.as_nanosecond() - from.as_nanosecond()) / 1_000_000_000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// Upstream's `translateTimestampSince`: "<unknown>" for an unset time.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "<unknown>".to_owned(),
        |t| human_duration(seconds_between(t, now)),
    )
}

// ---------------------------------------------------------------------------------------------
// JSON access helpers: a missing field reads as null / "" / 0, like a Go zero value.

static NULL: Value = Value::Null;

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&NULL)
}

fn st<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}

fn int(v: &Value, path: &str) -> i64 {
    at(v, path).as_i64().unwrap_or(0)
}

fn list<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path).as_array().map_or(&[], Vec::as_slice)
}

fn len(v: &Value, path: &str) -> i64 {
    let n = match at(v, path) {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

/// A map entry whose key has dots or slashes (labels, annotations, resource names).
fn entry<'a>(v: &'a Value, path: &str, key: &str) -> &'a Value {
    at(v, path).get(key).unwrap_or(&NULL)
}

fn name(o: &Value) -> Value {
    Value::from(st(o, "metadata.name"))
}

fn age(o: &Value, now: Timestamp) -> Value {
    Value::from(since(time(at(o, "metadata.creationTimestamp")), now))
}

fn is_deleting(o: &Value) -> bool {
    !at(o, "metadata.deletionTimestamp").is_null()
}

/// A `resource.Quantity` as upstream prints it: the stored canonical string, "0" when unset.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_owned(),
    }
}

/// An `IntOrString` as its `String()`, or `default` when unset.
fn int_or_string(v: &Value, default: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => default.to_owned(),
    }
}

/// Upstream's `layoutContainerCells`: comma-joined names and images.
fn container_cells(pod_spec: &Value) -> [Value; 2] {
    let cs = list(pod_spec, "containers");
    let join = |field: &str| {
        cs.iter()
            .map(|c| st(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    [Value::from(join("name")), Value::from(join("image"))]
}

/// `labels.FormatLabels`: sorted `k=v` pairs, "<none>" when empty.
fn format_labels(map: &Value) -> String {
    let mut pairs: Vec<String> = map
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_owned()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: "<error>" for an invalid selector, "<none>" for an empty one.
fn format_label_selector(selector: &Value) -> String {
    match LabelSelector::from_json(selector) {
        Err(_) => "<error>".to_owned(),
        Ok(s) => or(&s.to_string(), "<none>").to_owned(),
    }
}

macro_rules! cells {
    ($($cell:expr),* $(,)?) => { vec![$(Value::from($cell)),*] };
}

// ---------------------------------------------------------------------------------------------
// Row functions, one per printer.

fn name_and_age(o: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(o), age(o, now)]
}

/// The default table convertor: the creation time as RFC 3339 in UTC.
fn created_at(o: &Value, _now: Timestamp) -> Vec<Value> {
    let created = match at(o, "metadata.creationTimestamp")
        .as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
    {
        Some(t) => Timestamp::from_second(t.as_second())
            .unwrap_or(t)
            .to_string(),
        None => "0001-01-01T00:00:00Z".to_owned(),
    };
    vec![name(o), Value::from(created)]
}

fn pod(o: &Value, now: Timestamp) -> Vec<Value> {
    let status = at(o, "status");
    let phase = st(status, "phase");
    let conditions = list(status, "conditions");
    let condition_true = |ty: &str| {
        conditions
            .iter()
            .any(|c| st(c, "type") == ty && st(c, "status") == "True")
    };
    let mut reason = or(st(status, "reason"), phase).to_owned();
    if conditions
        .iter()
        .any(|c| st(c, "type") == "PodScheduled" && st(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }

    let init_specs = list(o, "spec.initContainers");
    let sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| st(c, "name") == name && st(c, "restartPolicy") == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| st(c, "restartPolicy") == "Always")
        .count();
    let total = list(o, "spec.containers").len() + sidecars;
    let (mut ready, mut restarts, mut sidecar_restarts) = (0, 0, 0);
    let (mut last_restart, mut sidecar_last_restart) = (None, None);

    let mut initializing = false;
    for (i, cs) in list(status, "initContainerStatuses").iter().enumerate() {
        let finished = time(at(cs, "lastState.terminated.finishedAt"));
        restarts += int(cs, "restartCount");
        last_restart = last_restart.max(finished);
        let is_sidecar = sidecar(st(cs, "name"));
        if is_sidecar {
            sidecar_restarts += int(cs, "restartCount");
            sidecar_last_restart = sidecar_last_restart.max(finished);
        }
        let terminated = at(cs, "state.terminated");
        let waiting = st(cs, "state.waiting.reason");
        if terminated.is_object() && int(terminated, "exitCode") == 0 {
            continue;
        }
        if is_sidecar && at(cs, "started").as_bool() == Some(true) {
            if at(cs, "ready").as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match (st(terminated, "reason"), int(terminated, "signal")) {
                ("", 0) => format!("Init:ExitCode:{}", int(terminated, "exitCode")),
                ("", signal) => format!("Init:Signal:{signal}"),
                (r, _) => format!("Init:{r}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true("Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for cs in list(status, "containerStatuses").iter().rev() {
            restarts += int(cs, "restartCount");
            last_restart = last_restart.max(time(at(cs, "lastState.terminated.finishedAt")));
            let terminated = at(cs, "state.terminated");
            let waiting = st(cs, "state.waiting.reason");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if terminated.is_object() {
                reason = match (st(terminated, "reason"), int(terminated, "signal")) {
                    ("", 0) => format!("ExitCode:{}", int(terminated, "exitCode")),
                    ("", signal) => format!("Signal:{signal}"),
                    (r, _) => r.to_owned(),
                };
            } else if at(cs, "ready").as_bool() == Some(true) && at(cs, "state.running").is_object()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }

    if is_deleting(o) && st(status, "reason") == "NodeLost" {
        reason = "Unknown".to_owned();
    } else if is_deleting(o) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_owned();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    let ip = at(status, "podIPs")
        .pointer("/0/ip")
        .and_then(Value::as_str)
        .unwrap_or(st(status, "podIP"));
    let gates = list(o, "spec.readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        // Upstream counts the first condition of each gate's type.
        let met = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| st(c, "type") == st(g, "conditionType"))
                    .is_some_and(|c| st(c, "status") == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    cells![
        st(o, "metadata.name"),
        format!("{ready}/{total}"),
        reason,
        restarts,
        age(o, now),
        or(ip, "<none>"),
        or(st(o, "spec.nodeName"), "<none>"),
        or(st(status, "nominatedNodeName"), "<none>"),
        readiness_gates,
    ]
}

fn pod_template(o: &Value, _now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(o, "template.spec"));
    cells![
        name(o),
        names,
        images,
        format_labels(at(o, "template.metadata.labels"))
    ]
}

/// `spec.replicas`, which the API server defaults to 1.
fn desired_replicas(o: &Value) -> i64 {
    at(o, "spec.replicas").as_i64().unwrap_or(1)
}

fn deployment(o: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(o, "spec.template.spec"));
    let selector = match LabelSelector::from_json(at(o, "spec.selector")) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".to_owned(),
    };
    cells![
        name(o),
        format!("{}/{}", int(o, "status.readyReplicas"), desired_replicas(o)),
        int(o, "status.updatedReplicas"),
        int(o, "status.availableReplicas"),
        age(o, now),
        names,
        images,
        selector,
    ]
}

/// ReplicaSets (a `metav1.LabelSelector`) and ReplicationControllers (a plain map).
fn replica_set(o: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(o, "spec.template.spec"));
    let selector = at(o, "spec.selector");
    let is_label_selector =
        selector.get("matchLabels").is_some() || selector.get("matchExpressions").is_some();
    let selector = if is_label_selector || st(o, "kind") == "ReplicaSet" {
        format_label_selector(selector)
    } else {
        format_labels(selector)
    };
    cells![
        name(o),
        desired_replicas(o),
        int(o, "status.replicas"),
        int(o, "status.readyReplicas"),
        age(o, now),
        names,
        images,
        selector,
    ]
}

fn stateful_set(o: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        format!("{}/{}", int(o, "status.readyReplicas"), desired_replicas(o)),
        age(o, now),
        names,
        images
    ]
}

fn daemon_set(o: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        int(o, "status.desiredNumberScheduled"),
        int(o, "status.currentNumberScheduled"),
        int(o, "status.numberReady"),
        int(o, "status.updatedNumberScheduled"),
        int(o, "status.numberAvailable"),
        format_labels(at(o, "spec.template.spec.nodeSelector")),
        age(o, now),
        names,
        images,
        format_label_selector(at(o, "spec.selector")),
    ]
}

fn job(o: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(o, "status.succeeded");
    let completions = match at(o, "spec.completions").as_i64() {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int(o, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time(at(o, "status.startTime")),
        time(at(o, "status.completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(seconds_between(start, now)),
        (Some(start), Some(end)) => human_duration(seconds_between(start, end)),
    };
    // Upstream looks at the first condition of each type.
    let conditions = list(o, "status.conditions");
    let has = |ty: &str| {
        conditions
            .iter()
            .find(|c| st(c, "type") == ty)
            .is_some_and(|c| st(c, "status") == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(o) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        status,
        completions,
        duration,
        age(o, now),
        names,
        images,
        format_label_selector(at(o, "spec.selector"))
    ]
}

fn cron_job(o: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match at(o, "status.lastScheduleTime") {
        Value::Null => "<none>".to_owned(),
        t => since(time(t), now),
    };
    let suspend = match at(o, "spec.suspend").as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let template = at(o, "spec.jobTemplate.spec");
    let [names, images] = container_cells(at(template, "template.spec"));
    cells![
        name(o),
        st(o, "spec.schedule"),
        at(o, "spec.timeZone").as_str().unwrap_or("<none>"),
        suspend,
        len(o, "status.active"),
        last_schedule,
        age(o, now),
        names,
        images,
        format_label_selector(at(template, "selector")),
    ]
}

/// Upstream's load balancer stringers (wide form: not truncated): sorted unique IPs or hostnames.
fn load_balancer_addresses(status: &Value) -> String {
    let mut set: Vec<&str> = list(status, "ingress")
        .iter()
        .map(|i| or(st(i, "ip"), st(i, "hostname")))
        .filter(|s| !s.is_empty())
        .collect();
    set.sort_unstable();
    set.dedup();
    set.join(",")
}

fn service(o: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(o, "spec");
    let ty = or(st(spec, "type"), "ClusterIP");
    let cluster_ip = list(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or(st(spec, "clusterIP"));
    let external = list(spec, "externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(at(o, "status.loadBalancer"));
            let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
            all.extend(&external);
            if all.is_empty() {
                "<pending>".to_owned()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => st(spec, "externalName").to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = list(spec, "ports")
        .iter()
        .map(|p| {
            let proto = or(st(p, "protocol"), "TCP");
            match int(p, "nodePort") {
                n if n > 0 => format!("{}:{n}/{proto}", int(p, "port")),
                _ => format!("{}/{proto}", int(p, "port")),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    };
    cells![
        name(o),
        ty,
        or(cluster_ip, "<none>"),
        external_ip,
        ports,
        age(o, now),
        format_labels(at(spec, "selector"))
    ]
}

fn ingress(o: &Value, now: Timestamp) -> Vec<Value> {
    let rules = list(o, "spec.rules");
    let (mut hosts, mut more) = (Vec::new(), false);
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
        }
        if !more && !st(rule, "host").is_empty() {
            hosts.push(st(rule, "host"));
        }
    }
    let hosts = match (hosts.is_empty(), more) {
        (true, _) => "*".to_owned(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
        (false, false) => hosts.join(","),
    };
    let ports = if list(o, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    cells![
        name(o),
        at(o, "spec.ingressClassName").as_str().unwrap_or("<none>"),
        hosts,
        load_balancer_addresses(at(o, "status.loadBalancer")),
        ports,
        age(o, now),
    ]
}

fn ingress_class(o: &Value, now: Timestamp) -> Vec<Value> {
    let p = at(o, "spec.parameters");
    let parameters = if p.is_object() {
        let group = p
            .get("apiGroup")
            .and_then(Value::as_str)
            .map(|g| format!(".{g}"))
            .unwrap_or_default();
        format!("{}{group}/{}", st(p, "kind"), st(p, "name"))
    } else {
        "<none>".to_owned()
    };
    cells![name(o), st(o, "spec.controller"), parameters, age(o, now)]
}

/// `net.JoinHostPort`: brackets around IPv6 addresses.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Upstream's `formatEndpoints`: at most three `ip:port`, then " + N more...".
fn endpoints(o: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = list(o, "subsets");
    const MAX: usize = 3;
    let (mut shown, mut total) = (Vec::new(), 0);
    for ss in subsets {
        let addresses = list(ss, "addresses");
        let ports = list(ss, "ports");
        // Headless services may have no ports: the bare IPs are listed.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int(p, "port"))).collect()
        };
        for port in port_numbers {
            total += addresses.len();
            for a in addresses.iter().take(MAX.saturating_sub(shown.len())) {
                shown.push(
                    port.map_or_else(|| st(a, "ip").to_owned(), |p| host_port(st(a, "ip"), p)),
                );
            }
        }
    }
    let text = if subsets.is_empty() {
        "<none>".to_owned()
    } else if total > MAX {
        format!("{} + {} more...", shown.join(","), total - MAX)
    } else {
        shown.join(",")
    };
    cells![name(o), text, age(o, now)]
}

/// Upstream's `listWithMoreString`: at most three items, "<unset>" for none.
fn list_with_more(items: Vec<String>) -> String {
    match items.len() {
        0 => "<unset>".to_owned(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

fn endpoint_slice(o: &Value, now: Timestamp) -> Vec<Value> {
    let ports = list(o, "ports")
        .iter()
        .map(|p| match (at(p, "port").as_i64(), at(p, "name").as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses = list(o, "endpoints")
        .iter()
        .flat_map(|e| {
            list(e, "addresses")
                .iter()
                .map(|a| a.as_str().unwrap_or("").to_owned())
        })
        .collect();
    cells![
        name(o),
        st(o, "addressType"),
        list_with_more(ports),
        list_with_more(addresses),
        age(o, now)
    ]
}

fn node(o: &Value, now: Timestamp) -> Vec<Value> {
    let ready = list(o, "status.conditions")
        .iter()
        .rfind(|c| st(c, "type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if st(c, "status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(o, "spec.unschedulable").as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = at(o, "metadata.labels")
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) => Some(role),
                    None if k == "kubernetes.io/role" => v.as_str(),
                    None => None,
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    roles.dedup();
    let address = |ty: &str| {
        list(o, "status.addresses")
            .iter()
            .find(|a| st(a, "type") == ty)
            .map_or("<none>", |a| st(a, "address"))
    };
    let info = at(o, "status.nodeInfo");
    cells![
        name(o),
        status.join(","),
        if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        },
        age(o, now),
        st(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        or(st(info, "osImage"), "<unknown>"),
        or(st(info, "kernelVersion"), "<unknown>"),
        or(st(info, "containerRuntimeVersion"), "<unknown>"),
    ]
}

/// A core/v1 event field, or its events.k8s.io/v1 name when the event is stored in that form.
fn event_field<'a>(o: &'a Value, core: &str, events_v1: &str) -> &'a Value {
    match at(o, core) {
        Value::Null => at(o, events_v1),
        v => v,
    }
}

fn event(o: &Value, now: Timestamp) -> Vec<Value> {
    let first = match time(event_field(o, "firstTimestamp", "deprecatedFirstTimestamp")) {
        Some(t) => since(Some(t), now),
        None => since(time(at(o, "eventTime")), now),
    };
    let mut last = match time(event_field(o, "lastTimestamp", "deprecatedLastTimestamp")) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = event_field(o, "count", "deprecatedCount")
        .as_i64()
        .unwrap_or(0);
    let series = at(o, "series");
    if series.is_object() {
        last = since(time(at(series, "lastObservedTime")), now);
        count = int(series, "count");
    } else if count == 0 {
        count = 1;
    }
    let involved = event_field(o, "involvedObject", "regarding");
    let kind = st(involved, "kind").to_lowercase();
    let target = match st(involved, "name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = event_field(o, "source", "deprecatedSource");
    let controller = event_field(o, "reportingComponent", "reportingController")
        .as_str()
        .unwrap_or("");
    let component = or(st(source, "component"), controller);
    let source = match or(st(source, "host"), st(o, "reportingInstance")) {
        "" => component.to_owned(),
        instance => format!("{component}, {instance}"),
    };
    let message = event_field(o, "message", "note")
        .as_str()
        .unwrap_or("")
        .trim();
    cells![
        last,
        st(o, "type"),
        st(o, "reason"),
        target,
        st(involved, "fieldPath"),
        source,
        message,
        first,
        count,
        name(o)
    ]
}

fn namespace(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), st(o, "status.phase"), age(o, now)]
}

fn secret(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), st(o, "type"), len(o, "data"), age(o, now)]
}

fn config_map(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), len(o, "data") + len(o, "binaryData"), age(o, now)]
}

fn service_account(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), len(o, "secrets"), age(o, now)]
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, once each.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta storage-class annotation wins over `spec.storageClassName`, as upstream.
fn storage_class_of(o: &Value) -> &str {
    entry(
        o,
        "metadata.annotations",
        "volume.beta.kubernetes.io/storage-class",
    )
    .as_str()
    .unwrap_or(st(o, "spec.storageClassName"))
}

fn persistent_volume(o: &Value, now: Timestamp) -> Vec<Value> {
    let claim = at(o, "spec.claimRef");
    let claim = if claim.is_object() {
        format!("{}/{}", st(claim, "namespace"), st(claim, "name"))
    } else {
        String::new()
    };
    let phase = if is_deleting(o) {
        "Terminating"
    } else {
        st(o, "status.phase")
    };
    cells![
        name(o),
        quantity(entry(o, "spec.capacity", "storage")),
        access_modes(list(o, "spec.accessModes")),
        st(o, "spec.persistentVolumeReclaimPolicy"),
        phase,
        claim,
        storage_class_of(o),
        at(o, "spec.volumeAttributesClassName")
            .as_str()
            .unwrap_or("<unset>"),
        st(o, "status.reason"),
        age(o, now),
        at(o, "spec.volumeMode").as_str().unwrap_or("<unset>"),
    ]
}

fn persistent_volume_claim(o: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(o) {
        "Terminating"
    } else {
        st(o, "status.phase")
    };
    let volume = st(o, "spec.volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(entry(o, "status.capacity", "storage")),
            access_modes(list(o, "status.accessModes")),
        )
    };
    cells![
        name(o),
        phase,
        volume,
        capacity,
        modes,
        storage_class_of(o),
        at(o, "spec.volumeAttributesClassName")
            .as_str()
            .unwrap_or("<unset>"),
        age(o, now),
        at(o, "spec.volumeMode").as_str().unwrap_or("<unset>"),
    ]
}

fn role_binding(o: &Value, now: Timestamp) -> Vec<Value> {
    let subjects = list(o, "subjects");
    let of = |kind: &str| {
        subjects
            .iter()
            .filter(|s| st(s, "kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", st(s, "namespace"), st(s, "name")),
                _ => st(s, "name").to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let role = format!("{}/{}", st(o, "roleRef.kind"), st(o, "roleRef.name"));
    cells![
        name(o),
        role,
        age(o, now),
        of("User"),
        of("Group"),
        of("ServiceAccount")
    ]
}

fn csr(o: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = list(o, "status.conditions");
    let has = |ty: &str| conditions.iter().any(|c| st(c, "type") == ty);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !st(o, "status.certificate").is_empty() {
        condition.push_str(",Issued");
    }
    let duration = at(o, "spec.expirationSeconds")
        .as_i64()
        .map_or_else(|| "<none>".to_owned(), human_duration);
    cells![
        name(o),
        age(o, now),
        or(st(o, "spec.signerName"), "<none>"),
        st(o, "spec.username"),
        duration,
        condition
    ]
}

fn lease(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), st(o, "spec.holderIdentity"), age(o, now)]
}

fn storage_class(o: &Value, now: Timestamp) -> Vec<Value> {
    let default = |key: &str| entry(o, "metadata.annotations", key).as_str() == Some("true");
    let is_default = default("storageclass.kubernetes.io/is-default-class")
        || default("storageclass.beta.kubernetes.io/is-default-class");
    let shown = if is_default {
        format!("{} (default)", st(o, "metadata.name"))
    } else {
        st(o, "metadata.name").to_owned()
    };
    cells![
        shown,
        st(o, "provisioner"),
        or(st(o, "reclaimPolicy"), "Delete"),
        or(st(o, "volumeBindingMode"), "Immediate"),
        at(o, "allowVolumeExpansion").as_bool().unwrap_or(false),
        age(o, now),
    ]
}

fn pod_disruption_budget(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![
        name(o),
        int_or_string(at(o, "spec.minAvailable"), "N/A"),
        int_or_string(at(o, "spec.maxUnavailable"), "N/A"),
        int(o, "status.disruptionsAllowed"),
        age(o, now),
    ]
}

/// Upstream's `formatHPAMetrics` over the autoscaling/v2 form (v1's CPU target also handled).
fn hpa_metrics(o: &Value) -> String {
    let specs = list(o, "spec.metrics");
    if specs.is_empty() {
        let Some(target) = at(o, "spec.targetCPUUtilizationPercentage").as_i64() else {
            return "<none>".to_owned();
        };
        let current = at(o, "status.currentCPUUtilizationPercentage").as_i64();
        let current = current.map_or_else(|| "<unknown>".to_owned(), |c| format!("{c}%"));
        return format!("cpu: {current}/{target}%");
    }
    let statuses = list(o, "status.currentMetrics");
    // `*Quantity.String()` of a nil quantity.
    let q = |v: &Value| {
        if v.is_null() {
            "<nil>".to_owned()
        } else {
            quantity(v)
        }
    };
    let items: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let ty = st(spec, "type");
            let key = match ty {
                "External" => "external",
                "Pods" => "pods",
                "Object" => "object",
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                _ => return "<unknown type>".to_owned(),
            };
            let target = at(&spec[key], "target");
            let current = statuses
                .get(i)
                .map(|s| &s[key])
                .filter(|s| !s.is_null())
                .map(|s| at(s, "current"));
            let avg = at(target, "averageValue");
            match ty {
                "External" | "Object" if !avg.is_null() => {
                    let cur = current
                        .map(|c| at(c, "averageValue"))
                        .filter(|v| !v.is_null());
                    format!(
                        "{}/{} (avg)",
                        cur.map_or_else(|| "<unknown>".to_owned(), q),
                        q(avg)
                    )
                }
                "External" | "Object" => {
                    let cur = current.map_or_else(|| "<unknown>".to_owned(), |c| q(at(c, "value")));
                    format!("{cur}/{}", q(at(target, "value")))
                }
                "Pods" => {
                    let cur = current
                        .map_or_else(|| "<unknown>".to_owned(), |c| q(at(c, "averageValue")));
                    format!("{cur}/{}", q(avg))
                }
                _ => {
                    let resource = st(&spec[key], "name");
                    if !avg.is_null() {
                        let cur = current
                            .map_or_else(|| "<unknown>".to_owned(), |c| q(at(c, "averageValue")));
                        format!("{resource}: {cur}/{}", q(avg))
                    } else {
                        let cur = current.and_then(|c| at(c, "averageUtilization").as_i64());
                        let cur = cur.map_or_else(|| "<unknown>".to_owned(), |u| format!("{u}%"));
                        let want = at(target, "averageUtilization").as_i64();
                        let want = want.map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                        format!("{resource}: {cur}/{want}")
                    }
                }
            }
        })
        .collect();
    if items.len() > 2 {
        format!("{} + {} more...", items[..2].join(", "), items.len() - 2)
    } else {
        items.join(", ")
    }
}

fn horizontal_pod_autoscaler(o: &Value, now: Timestamp) -> Vec<Value> {
    let min = at(o, "spec.minReplicas")
        .as_i64()
        .map_or_else(|| "<unset>".to_owned(), |n| n.to_string());
    cells![
        name(o),
        format!(
            "{}/{}",
            st(o, "spec.scaleTargetRef.kind"),
            st(o, "spec.scaleTargetRef.name")
        ),
        hpa_metrics(o),
        min,
        int(o, "spec.maxReplicas"),
        int(o, "status.currentReplicas"),
        age(o, now),
    ]
}

fn priority_class(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![
        name(o),
        int(o, "value"),
        at(o, "globalDefault").as_bool().unwrap_or(false),
        age(o, now),
        st(o, "preemptionPolicy"),
    ]
}

fn runtime_class(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), st(o, "handler"), age(o, now)]
}

fn network_policy(o: &Value, now: Timestamp) -> Vec<Value> {
    // `spec.podSelector` is not a pointer upstream: missing means `{}` (everything), not nothing.
    let selector = match at(o, "spec.podSelector") {
        Value::Null => json!({}),
        s => s.clone(),
    };
    cells![name(o), format_label_selector(&selector), age(o, now)]
}

fn resource_quota(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = at(o, "status.hard")
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let text = format!(
            "{r}: {}/{}",
            quantity(entry(o, "status.used", r)),
            quantity(entry(o, "status.hard", r))
        );
        let is_limit = r.split('.').count() > 1 && r.split('.').next() == Some("limits");
        if is_limit {
            limits.push(text)
        } else {
            requests.push(text)
        }
    }
    cells![name(o), requests.join(", "), limits.join(", "), age(o, now)]
}

fn webhook_configuration(o: &Value, now: Timestamp) -> Vec<Value> {
    cells![name(o), len(o, "webhooks"), age(o, now)]
}

fn controller_revision(o: &Value, now: Timestamp) -> Vec<Value> {
    let owner = list(o, "metadata.ownerReferences")
        .iter()
        .find(|r| at(r, "controller").as_bool() == Some(true));
    let controller = owner.map_or_else(
        || "<none>".to_owned(),
        |r| {
            let group = st(r, "apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
            let kind = if group.is_empty() {
                st(r, "kind").to_owned()
            } else {
                format!("{}.{group}", st(r, "kind"))
            };
            if kind.is_empty() {
                st(r, "name").to_owned()
            } else {
                format!("{}/{}", kind.to_lowercase(), st(r, "name"))
            }
        },
    );
    cells![name(o), controller, int(o, "revision"), age(o, now)]
}

// ---------------------------------------------------------------------------------------------
// Custom resources: additionalPrinterColumns with a JSONPath subset.

/// The columns for a CRD version's `additionalPrinterColumns` (`name`, `type`, `format`,
/// `description`, `priority`, `jsonPath`), after the `Name` column; with none, `Age` (a `date`
/// column over `.metadata.creationTimestamp`), as the apiextensions server defaults.
pub fn custom_columns(printer_columns: &[Value]) -> Vec<Column> {
    let mut out = columns("");
    out.truncate(1);
    out.extend(
        effective_printer_columns(printer_columns)
            .iter()
            .map(|c| Column {
                name: st(c, "name").to_owned(),
                type_: st(c, "type").to_owned(),
                format: st(c, "format").to_owned(),
                description: match st(c, "description") {
                    "" => format!(
                        "Custom resource definition column (in JSONPath format): {}",
                        json_path_of(c)
                    ),
                    d => d.to_owned(),
                },
                priority: i32::try_from(int(c, "priority")).unwrap_or(0),
            }),
    );
    out
}

/// The cells for a custom resource: its name, then each printer column's value (null when the
/// path finds nothing), typed as the column says; `date` values print as an age.
pub fn custom_row(printer_columns: &[Value], obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = vec![name(obj)];
    for c in &effective_printer_columns(printer_columns) {
        let found = JsonPath::parse(json_path_of(c)).and_then(|p| p.first(obj));
        cells.push(found.map_or(Value::Null, |v| custom_cell(st(c, "type"), v, now)));
    }
    cells
}

fn effective_printer_columns(printer_columns: &[Value]) -> Vec<Value> {
    if printer_columns.is_empty() {
        vec![
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": CREATED_DOC}),
        ]
    } else {
        printer_columns.to_vec()
    }
}

/// `jsonPath` (v1), or `JSONPath` (v1beta1).
fn json_path_of(column: &Value) -> &str {
    or(st(column, "jsonPath"), st(column, "JSONPath"))
}

/// The apiextensions convertor's `cellForJSONValue` (and JSONPath printing for strings).
fn custom_cell(type_: &str, v: &Value, now: Timestamp) -> Value {
    match (type_, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(s)) => Value::from(s.as_str()),
        ("string", Value::Number(n)) => Value::from(go_number(n)),
        ("string", Value::Bool(b)) => Value::from(b.to_string()),
        ("string", other) => Value::from(other.to_string()),
        ("integer", Value::Number(n)) => {
            // Go converts a float64 to int64 by truncation.
            let truncated = n.as_f64().map(|f| f as i64);
            n.as_i64().or(truncated).map_or(Value::Null, Value::from)
        }
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::from(*b),
        ("date", Value::String(s)) => {
            if s.is_empty() || s == "null" {
                return Value::from("<unknown>");
            }
            match s.parse::<Timestamp>() {
                Ok(t) if t.as_second() == GO_ZERO_SECONDS => Value::from("<unknown>"),
                Ok(t) => Value::from(human_duration(seconds_between(t, now))),
                Err(_) => Value::from("<invalid>"),
            }
        }
        _ => Value::Null,
    }
}

/// A JSON number as Go's `%v` prints the value unstructured JSON decodes to (int64, or float64
/// in `%g` form: an exponent below 1e-4 and from 1e6, as `fmt.Println(1e6)` gives `1e+06`).
fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        f.to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// One step of the JSONPath subset CRD columns use.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[n]`, negative from the end.
    Index(i64),
    /// `[*]`.
    All,
    /// `[?(@.a.b == "x")]` (or `!=`; without an operator, the field must exist).
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

/// A parsed JSONPath: dotted fields, `[n]`, `[*]`, `['key']` and `[?(@.f=="v")]` filters.
#[derive(Debug, Clone, PartialEq)]
struct JsonPath(Vec<Step>);

impl JsonPath {
    fn parse(path: &str) -> Option<JsonPath> {
        let mut p = path.trim();
        if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            p = inner.trim();
        }
        p = p.strip_prefix('$').unwrap_or(p);
        let owned;
        if !p.starts_with(['.', '[']) {
            owned = format!(".{p}");
            p = &owned;
        }
        let mut steps = Vec::new();
        let mut rest = p;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return None;
                }
                steps.push(Step::Field(r[..end].to_owned()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = closing_bracket(r)?;
                steps.push(Self::bracket(r[..end].trim())?);
                rest = &r[end + 1..];
            } else {
                return None;
            }
        }
        Some(JsonPath(steps))
    }

    fn bracket(inner: &str) -> Option<Step> {
        if inner == "*" {
            return Some(Step::All);
        }
        if let Some(expr) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
            let (left, op) = match expr
                .find("==")
                .map(|i| (i, true))
                .or_else(|| expr.find("!=").map(|i| (i, false)))
            {
                Some((i, eq)) => (&expr[..i], Some((eq, literal(expr[i + 2..].trim())?))),
                None => (expr, None),
            };
            let left = left.trim().strip_prefix('@')?;
            let path = left
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            return Some(Step::Filter { path, op });
        }
        if let Some(Value::String(key)) = literal(inner) {
            return Some(Step::Field(key));
        }
        inner.parse().ok().map(Step::Index)
    }

    /// The first value the path finds in `root`, as the CRD convertor takes `results[0][0]`.
    fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut current = vec![root];
        for step in &self.0 {
            current = current.into_iter().flat_map(|v| apply(step, v)).collect();
        }
        current.first().copied()
    }
}

/// The index of the `]` closing a bracket whose content starts `s`, skipping quoted text.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, ch) in s.char_indices() {
        match (quote, ch) {
            (Some(q), _) if ch == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A filter literal: a quoted string, a number or a boolean.
fn literal(s: &str) -> Option<Value> {
    let quoted = s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
    if quoted {
        return Some(Value::from(&s[1..s.len() - 1]));
    }
    match s {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => s.parse::<f64>().ok().map(Value::from),
    }
}

fn apply<'a>(step: &Step, v: &'a Value) -> Vec<&'a Value> {
    match (step, v) {
        (Step::Field(name), Value::Object(m)) => m.get(name).into_iter().collect(),
        (Step::Index(i), Value::Array(a)) => {
            let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
            let i = if *i < 0 { len + i } else { *i };
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i))
                .into_iter()
                .collect()
        }
        (Step::All, Value::Array(a)) => a.iter().collect(),
        (Step::All, Value::Object(m)) => m.values().collect(),
        (Step::Filter { path, op }, Value::Array(a)) => a
            .iter()
            .filter(|item| {
                let Some(left) = path.iter().try_fold(*item, |v, k| v.get(k)) else {
                    return false;
                };
                match op {
                    None => true,
                    Some((eq, right)) => same(left, right) == *eq,
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Equality for filters: numbers compare by value, other kinds must match exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("timestamp")
    }

    /// An RFC 3339 time `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        Timestamp::from_second(now().as_second() - secs)
            .expect("in range")
            .to_string()
    }

    fn meta(name: &str, created_secs_ago: i64) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": ago(created_secs_ago), "uid": "u1"})
    }

    fn cells(resource: &str, obj: &Value) -> Vec<Value> {
        let r = row(resource, obj, now());
        assert_eq!(
            r.len(),
            columns(resource).len(),
            "one cell per column for {resource}"
        );
        r
    }

    #[test]
    fn human_duration_matches_upstream() {
        const M: i64 = 60;
        const H: i64 = 3600;
        const D: i64 = 24 * H;
        const Y: i64 = 365 * D;
        // duration_test.go TestHumanDuration and TestHumanDurationBoundaries, in whole seconds
        // (Go truncates, so "x - 1ms" is x - 1 second here).
        let cases = [
            (1, "1s"),
            (70, "70s"),
            (190, "3m10s"),
            (70 * M, "70m"),
            (47 * H, "47h"),
            (49 * H, "2d1h"),
            ((8 * 24 + 2) * H, "8d"),
            (367 * D, "367d"),
            (2 * Y + 25 * H, "2y1d"),
            (8 * Y + 2 * H, "8y"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (2 * M - 1, "119s"),
            (2 * M, "2m"),
            (2 * M + 1, "2m1s"),
            (10 * M - 1, "9m59s"),
            (10 * M, "10m"),
            (10 * M + 1, "10m"),
            (3 * H - 1, "179m"),
            (3 * H, "3h"),
            (3 * H + M, "3h1m"),
            (8 * H - 1, "7h59m"),
            (8 * H, "8h"),
            (8 * H + 59 * M, "8h"),
            (2 * D - 1, "47h"),
            (2 * D, "2d"),
            (2 * D + H, "2d1h"),
            (8 * D - 1, "7d23h"),
            (8 * D, "8d"),
            (8 * D + 23 * H, "8d"),
            (2 * Y - 1, "729d"),
            (2 * Y, "2y"),
            (2 * Y + 23 * H, "2y"),
            (2 * Y + 23 * H + 59 * M, "2y"),
            (2 * Y + D - 1, "2y"),
            (2 * Y + D, "2y1d"),
            (3 * Y, "3y"),
            (4 * Y, "4y"),
            (5 * Y, "5y"),
            (6 * Y, "6y"),
            (7 * Y, "7y"),
            (8 * Y - 1, "7y364d"),
            (8 * Y, "8y"),
            (8 * Y + 364 * D, "8y"),
            (9 * Y, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn every_listed_resource_has_upstream_columns() {
        for r in [
            "pods",
            "deployments",
            "replicasets",
            "statefulsets",
            "daemonsets",
            "jobs",
            "cronjobs",
            "services",
            "nodes",
            "namespaces",
            "secrets",
            "configmaps",
            "serviceaccounts",
            "events",
            "endpoints",
            "endpointslices",
            "ingresses",
            "persistentvolumes",
            "persistentvolumeclaims",
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
            "storageclasses",
            "leases",
            "poddisruptionbudgets",
            "horizontalpodautoscalers",
            "priorityclasses",
            "customresourcedefinitions",
            "csr",
            "runtimeclasses",
            "networkpolicies",
            "ingressclasses",
            "replicationcontrollers",
            "limitranges",
            "resourcequotas",
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
        ] {
            let cols = columns(r);
            assert!(!std::ptr::eq(printer(r), &FALLBACK), "{r} has a printer");
            assert_eq!(
                cols.iter().filter(|c| c.format == "name").count(),
                1,
                "{r}: one name column"
            );
            if r != "events" {
                assert_eq!(cols[0].name, "Name", "{r}");
            }
            // Every printer tolerates an empty object.
            assert_eq!(row(r, &json!({}), now()).len(), cols.len(), "{r}");
        }
        let names = |r: &str| columns(r).into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names("pods"),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            names("deployments"),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            names("services"),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(
            names("cronjobs")[..7],
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age"
            ]
        );
        assert_eq!(names("roles"), ["Name", "Created At"]);
        assert_eq!(names("unknownthings"), ["Name", "Age"]);
        assert_eq!(
            names("events"),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        let pod_cols = columns("pods");
        assert_eq!(pod_cols.iter().filter(|c| c.priority == 1).count(), 4);
        assert_eq!(pod_cols[0].to_json()["format"], "name");
    }

    #[test]
    fn pod_partially_ready_with_restart() {
        let p = json!({
            "kind": "Pod", "metadata": meta("web-1", 3600),
            "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "sidecar"}]},
            "status": {
                "phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(3000)}}},
                    {"name": "sidecar", "ready": false, "restartCount": 2, "state": {"running": {"startedAt": ago(60)}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}}
                ]
            }
        });
        assert_eq!(
            cells("pods", &p),
            vec![
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("2 (5m ago)"),
                json!("60m"),
                json!("10.42.0.5"),
                json!("node-a"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_crash_loop_back_off() {
        let p = json!({
            "metadata": meta("crash", 600),
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "c", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(90)}}
            }]}
        });
        let c = cells("pods", &p);
        assert_eq!(
            c[1..5],
            [
                json!("0/1"),
                json!("CrashLoopBackOff"),
                json!("5 (90s ago)"),
                json!("10m")
            ]
        );
        assert_eq!(c[5], json!("<none>"));
    }

    #[test]
    fn pod_status_variants() {
        let pending = json!({"metadata": meta("p", 5), "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(cells("pods", &pending)[2], "ContainerCreating");

        let init = json!({"metadata": meta("p", 5),
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}
            ], "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(
            cells("pods", &init)[1..3],
            [json!("0/1"), json!("Init:1/2")]
        );

        let init_failed = json!({"metadata": meta("p", 5), "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            cells("pods", &init_failed)[2..4],
            [json!("Init:CrashLoopBackOff"), json!("3")]
        );

        let completed = json!({"metadata": meta("p", 5), "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(
            cells("pods", &completed)[1..3],
            [json!("0/1"), json!("Completed")]
        );
        let t = table("pods", &[completed], IncludeObject::None, true, now());
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
        assert!(t["rows"][0].get("object").is_none());

        let exit = json!({"metadata": meta("p", 5), "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 0}}}]}});
        assert_eq!(cells("pods", &exit)[2], "ExitCode:137");

        let mut terminating = json!({"metadata": meta("p", 5), "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}});
        terminating["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells("pods", &terminating)[2], "Terminating");

        let gated = json!({"metadata": meta("p", 5), "spec": {"containers": [{"name": "c"}],
                "readinessGates": [{"conditionType": "example.com/gate"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "example.com/gate", "status": "True"}]}});
        let c = cells("pods", &gated);
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[8], "1/1");
    }

    #[test]
    fn sidecar_containers_count_towards_ready() {
        let p = json!({"metadata": meta("p", 5),
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
                "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(
            cells("pods", &p)[1..4],
            [json!("2/2"), json!("Running"), json!("1 (2m ago)")]
        );
    }

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn workloads() {
        let tpl = template(
            json!([{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]),
        );
        let d = json!({"kind": "Deployment", "metadata": meta("web", 7200),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": tpl},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("deployments", &d),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web"),
            ]
        );

        let rs = json!({"kind": "ReplicaSet", "metadata": meta("web-abc", 100),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}, "template": tpl},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            cells("replicasets", &rs)[..5],
            [
                json!("web-abc"),
                json!(3),
                json!(3),
                json!(1),
                json!("100s")
            ]
        );
        assert_eq!(
            cells("replicasets", &rs)[7],
            "app=web,pod-template-hash=abc"
        );

        let rc = json!({"kind": "ReplicationController", "metadata": meta("old", 100),
            "spec": {"replicas": 1, "selector": {"app": "old"}, "template": tpl}, "status": {"replicas": 1}});
        assert_eq!(cells("replicationcontrollers", &rc)[7], "app=old");

        let sts = json!({"metadata": meta("db", 100), "spec": {"replicas": 2, "template": tpl}, "status": {"readyReplicas": 2}});
        assert_eq!(
            cells("statefulsets", &sts)[..3],
            [json!("db"), json!("2/2"), json!("100s")]
        );

        let ds = json!({"metadata": meta("agent", 100),
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "a:1"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            cells("daemonsets", &ds),
            vec![
                json!("agent"),
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("kubernetes.io/os=linux"),
                json!("100s"),
                json!("a"),
                json!("a:1"),
                json!("app=agent"),
            ]
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        let tpl = template(json!([{"name": "pi", "image": "perl"}]));
        let done = json!({"metadata": meta("pi", 600),
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": tpl},
            "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(580),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells("jobs", &done)[..5],
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("20s"),
                json!("10m")
            ]
        );
        assert_eq!(
            cells("jobs", &done)[7],
            "batch.kubernetes.io/controller-uid=u"
        );

        let running = json!({"metadata": meta("work", 300), "spec": {"parallelism": 3, "template": tpl},
            "status": {"succeeded": 1, "startTime": ago(250)}});
        assert_eq!(
            cells("jobs", &running)[1..4],
            [json!("Running"), json!("1/1 of 3"), json!("4m10s")]
        );

        let failed = json!({"metadata": meta("bad", 300), "spec": {"template": tpl},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(
            cells("jobs", &failed)[1..4],
            [json!("Failed"), json!("0/1"), json!("")]
        );

        let cj = json!({"metadata": meta("nightly", 86400 * 3),
            "spec": {"schedule": "0 3 * * *", "suspend": false, "jobTemplate": {"spec": {"template": tpl}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(3 * 3600)}});
        assert_eq!(
            cells("cronjobs", &cj)[..7],
            [
                json!("nightly"),
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("3h"),
                json!("3d"),
            ]
        );
        let never = json!({"metadata": meta("n", 5), "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        assert_eq!(
            cells("cronjobs", &never)[2..6],
            [
                json!("Etc/UTC"),
                json!("<unset>"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn services() {
        let np = json!({"metadata": meta("web", 60), "spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30001, "protocol": "TCP"}]}});
        assert_eq!(
            cells("services", &np),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("80/TCP,443:30001/TCP"),
                json!("60s"),
                json!("app=web"),
            ]
        );
        let lb = json!({"metadata": meta("lb", 60), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.11"],
            "ports": [{"port": 53, "protocol": "UDP", "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}, {"ip": "192.168.1.10"}]}}});
        assert_eq!(
            cells("services", &lb)[3..5],
            [json!("192.168.1.10,192.168.1.20"), json!("53:31000/UDP")]
        );
        let pending = json!({"metadata": meta("lb", 60), "spec": {"type": "LoadBalancer"}});
        assert_eq!(
            cells("services", &pending)[2..5],
            [json!("<none>"), json!("<pending>"), json!("<none>")]
        );
        let headless = json!({"metadata": meta("h", 60), "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}});
        assert_eq!(
            cells("services", &headless)[1..7],
            [
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("5432/TCP"),
                json!("60s"),
                json!("<none>"),
            ]
        );
        let ext = json!({"metadata": meta("e", 60), "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(cells("services", &ext)[3], "example.com");
    }

    #[test]
    fn nodes() {
        let cordoned = json!({"metadata": {"name": "worker-1", "creationTimestamp": ago(86400 * 10),
                "labels": {"kubernetes.io/hostname": "worker-1", "node-role.kubernetes.io/worker": "true"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}, {"type": "Hostname", "address": "worker-1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.23-k3s2"}}});
        assert_eq!(
            cells("nodes", &cordoned),
            vec![
                json!("worker-1"),
                json!("NotReady,SchedulingDisabled"),
                json!("worker"),
                json!("10d"),
                json!("v1.32.4+k3s1"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("containerd://1.7.23-k3s2"),
            ]
        );
        let server = json!({"metadata": {"name": "server", "creationTimestamp": ago(60),
                "labels": {"node-role.kubernetes.io/master": "true", "node-role.kubernetes.io/control-plane": "true"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            cells("nodes", &server)[1..3],
            [json!("Ready"), json!("control-plane,master")]
        );
        let bare = json!({"metadata": {"name": "new"}});
        assert_eq!(
            cells("nodes", &bare)[1..5],
            [
                json!("Unknown"),
                json!("<none>"),
                json!("<unknown>"),
                json!("")
            ]
        );
        assert_eq!(cells("nodes", &bare)[7], "<unknown>");
    }

    #[test]
    fn config_and_identity() {
        let s = json!({"metadata": meta("tls", 60), "type": "kubernetes.io/tls", "data": {"tls.crt": "x", "tls.key": "y"}});
        assert_eq!(
            cells("secrets", &s),
            vec![
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("60s")
            ]
        );
        let cm =
            json!({"metadata": meta("cfg", 60), "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(
            cells("configmaps", &cm),
            vec![json!("cfg"), json!(2), json!("60s")]
        );
        let empty_cm = json!({"metadata": meta("kube-root-ca.crt", 60)});
        assert_eq!(cells("configmaps", &empty_cm)[1], 0);
        let sa = json!({"metadata": meta("default", 60)});
        assert_eq!(
            cells("serviceaccounts", &sa),
            vec![json!("default"), json!(0), json!("60s")]
        );
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(3600)}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("namespaces", &ns),
            vec![json!("kube-system"), json!("Active"), json!("60m")]
        );
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-02T03:04:05Z"}});
        assert_eq!(
            cells("roles", &role),
            vec![json!("r"), json!("2024-01-02T03:04:05Z")]
        );
        assert_eq!(
            cells("clusterroles", &json!({"metadata": {"name": "x"}}))[1],
            "0001-01-01T00:00:00Z"
        );
        let rb = json!({"metadata": meta("rb", 60), "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(
            cells("rolebindings", &rb),
            vec![
                json!("rb"),
                json!("ClusterRole/view"),
                json!("60s"),
                json!("alice, bob"),
                json!("devs"),
                json!("build/ci"),
            ]
        );
        let csr = json!({"metadata": meta("node-csr", 60),
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:n1", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            cells("csr", &csr),
            vec![
                json!("node-csr"),
                json!("60s"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued"),
            ]
        );
    }

    #[test]
    fn events() {
        let ev = json!({"kind": "Event", "metadata": meta("p.17a", 300),
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "fieldPath": "spec.containers{c}"},
            "reason": "BackOff", "message": "Back-off restarting failed container c\n", "type": "Warning",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(300), "lastTimestamp": ago(30), "count": 7});
        assert_eq!(
            cells("events", &ev),
            vec![
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/p"),
                json!("spec.containers{c}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container c"),
                json!("5m"),
                json!(7),
                json!("p.17a"),
            ]
        );
        let new_style = json!({"metadata": meta("e2", 10), "eventTime": ago(10).replace('Z', ".123456Z"),
            "involvedObject": {"kind": "Node", "name": "n1"}, "reportingComponent": "k3s", "reportingInstance": "server",
            "reason": "Starting", "type": "Normal", "series": {"count": 3, "lastObservedTime": ago(2)}});
        let c = cells("events", &new_style);
        assert_eq!(c[0], "2s");
        assert_eq!(c[3], "node/n1");
        assert_eq!(c[5], "k3s, server");
        assert_eq!(c[7], "9s", "9.88s truncates like Go");
        assert_eq!(c[8], 3);
        let singleton =
            json!({"metadata": meta("e3", 10), "involvedObject": {"kind": "Namespace"}});
        assert_eq!(
            cells("events", &singleton)[..4],
            [json!("<unknown>"), json!(""), json!(""), json!("namespace")]
        );
        assert_eq!(cells("events", &singleton)[8], 1);
    }

    #[test]
    fn networking() {
        let ep = json!({"metadata": meta("web", 60), "subsets": [
            {"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}], "ports": [{"port": 8080}, {"port": 9090}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cells("endpoints", &ep)[1],
            "10.42.0.5:8080,10.42.0.6:8080,10.42.0.5:9090 + 2 more..."
        );
        let few = json!({"metadata": meta("db", 60), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 5432}]}]});
        assert_eq!(cells("endpoints", &few)[1], "[fd00::1]:5432");
        let headless =
            json!({"metadata": meta("h", 60), "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(cells("endpoints", &headless)[1], "10.0.0.1");
        assert_eq!(
            cells("endpoints", &json!({"metadata": meta("none", 60)}))[1],
            "<none>"
        );

        let slice = json!({"metadata": meta("web-abc", 60), "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}]});
        assert_eq!(
            cells("endpointslices", &slice)[1..4],
            [json!("IPv4"), json!("8080"), json!("10.42.0.5,10.42.0.6")]
        );
        assert_eq!(
            cells("endpointslices", &json!({}))[2..4],
            [json!("<unset>"), json!("<unset>")]
        );

        let ing = json!({"metadata": meta("ing", 60), "spec": {"ingressClassName": "traefik",
                "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}],
                "tls": [{"hosts": ["a.example.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}}});
        assert_eq!(
            cells("ingresses", &ing),
            vec![
                json!("ing"),
                json!("traefik"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("192.168.1.10"),
                json!("80, 443"),
                json!("60s"),
            ]
        );
        let bare = json!({"metadata": meta("i", 60), "spec": {"rules": [{}]}});
        assert_eq!(
            cells("ingresses", &bare)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );

        let class = json!({"metadata": meta("traefik", 60), "spec": {"controller": "traefik.io/ingress-controller",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
        assert_eq!(
            cells("ingressclasses", &class)[1..3],
            [
                json!("traefik.io/ingress-controller"),
                json!("IngressParameters.k8s.example.com/p")
            ]
        );

        let np = json!({"metadata": meta("deny", 60), "spec": {"podSelector": {}}});
        assert_eq!(cells("networkpolicies", &np)[1], "<none>");
        let np2 = json!({"metadata": meta("web", 60), "spec": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}});
        assert_eq!(cells("networkpolicies", &np2)[1], "app in (web)");
    }

    #[test]
    fn storage() {
        let pv = json!({"metadata": meta("pvc-1", 60),
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("persistentvolumes", &pv),
            vec![
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Delete"),
                json!("Bound"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>"),
                json!(""),
                json!("60s"),
                json!("Filesystem"),
            ]
        );
        let pvc = json!({"metadata": meta("data", 60), "spec": {"volumeName": "pvc-1", "storageClassName": "local-path",
                "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            cells("persistentvolumeclaims", &pvc),
            vec![
                json!("data"),
                json!("Bound"),
                json!("pvc-1"),
                json!("1Gi"),
                json!("RWO"),
                json!("local-path"),
                json!("<unset>"),
                json!("60s"),
                json!("<unset>"),
            ]
        );
        let pending = json!({"metadata": meta("wait", 60), "spec": {"storageClassName": "local-path"}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells("persistentvolumeclaims", &pending)[1..5],
            [json!("Pending"), json!(""), json!(""), json!("")]
        );
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(60),
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells("storageclasses", &sc),
            vec![
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60s"),
            ]
        );
    }

    #[test]
    fn policy_scheduling_and_misc() {
        let lease = json!({"metadata": meta("node-a", 60), "spec": {"holderIdentity": "node-a"}});
        assert_eq!(
            cells("leases", &lease),
            vec![json!("node-a"), json!("node-a"), json!("60s")]
        );
        let pdb = json!({"metadata": meta("web", 60), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells("poddisruptionbudgets", &pdb)[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let hpa = json!({"metadata": meta("web", 60),
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35, "averageValue": "70m"}}}]}});
        assert_eq!(
            cells("horizontalpodautoscalers", &hpa),
            vec![
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 35%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("1"),
                json!(5),
                json!(2),
                json!("60s"),
            ]
        );
        let v1 = json!({"metadata": meta("old", 60), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"},
            "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        assert_eq!(
            cells("horizontalpodautoscalers", &v1)[2..4],
            [json!("cpu: <unknown>/50%"), json!("<unset>")]
        );
        let pc = json!({"metadata": meta("system-cluster-critical", 60), "value": 2000000000, "globalDefault": false,
            "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells("priorityclasses", &pc),
            vec![
                json!("system-cluster-critical"),
                json!(2000000000),
                json!(false),
                json!("60s"),
                json!("PreemptLowerPriority"),
            ]
        );
        let rc = json!({"metadata": meta("crun", 60), "handler": "crun"});
        assert_eq!(
            cells("runtimeclasses", &rc),
            vec![json!("crun"), json!("crun"), json!("60s")]
        );
        let rq = json!({"metadata": meta("q", 60), "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi", "limits.cpu": "2"},
            "used": {"pods": "3", "requests.cpu": "250m", "limits.cpu": "500m"}}});
        assert_eq!(
            cells("resourcequotas", &rq)[1..3],
            [
                json!("pods: 3/10, requests.cpu: 250m/1"),
                json!("limits.cpu: 500m/2, limits.memory: 0/2Gi"),
            ]
        );
        let wh = json!({"metadata": meta("hooks", 60), "webhooks": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(cells("validatingwebhookconfigurations", &wh)[1], 2);
        assert_eq!(
            cells(
                "mutatingwebhookconfigurations",
                &json!({"metadata": meta("m", 1)})
            )[1],
            0
        );
        let lr =
            json!({"metadata": {"name": "limits", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(cells("limitranges", &lr)[1], "2024-05-01T11:00:00Z");
        let cr = json!({"metadata": {"name": "web-5d8", "creationTimestamp": ago(60),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            cells("controllerrevisions", &cr)[1..3],
            [json!("daemonset.apps/web"), json!(2)]
        );
        let unknown = json!({"metadata": meta("thing", 60)});
        assert_eq!(
            cells("widgets", &unknown),
            vec![json!("thing"), json!("60s")]
        );
    }

    #[test]
    fn table_shape_and_include_object() {
        let p = json!({"kind": "Pod", "apiVersion": "v1", "metadata": meta("p1", 5),
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let t = table(
            "pods",
            std::slice::from_ref(&p),
            IncludeObject::default(),
            true,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
        );
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "p1", "0/1", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"
            ])
        );
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]})
        );
        assert!(t["rows"][0].get("conditions").is_none());
        let t = table(
            "pods",
            std::slice::from_ref(&p),
            IncludeObject::Object,
            false,
            now(),
        );
        assert_eq!(t["columnDefinitions"], json!([]));
        assert_eq!(t["rows"][0]["object"], p);
        assert_eq!(IncludeObject::from_query("None"), Some(IncludeObject::None));
        assert_eq!(IncludeObject::from_query(""), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::from_query("All"), None);
        assert_eq!(
            table("pods", &[], IncludeObject::Metadata, true, now())["rows"],
            json!([])
        );
    }

    #[test]
    fn custom_resource_columns() {
        let printer = [
            json!({"name": "Size", "type": "integer", "jsonPath": ".spec.size"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "ready?"}),
            json!({"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1}),
            json!({"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"}),
            json!({"name": "Last", "type": "date", "jsonPath": ".status.lastUpdate"}),
            json!({"name": "First Port", "type": "string", "jsonPath": ".spec.ports[0].port"}),
            json!({"name": "Last Port", "type": "integer", "jsonPath": ".spec.ports[-1]['port']"}),
            json!({"name": "Labels", "type": "string", "jsonPath": ".metadata.labels"}),
            json!({"name": "Missing", "type": "string", "jsonPath": ".spec.nothing.here"}),
            json!({"name": "Bad", "type": "string", "jsonPath": ".spec[1:2]"}),
        ];
        let cols = custom_columns(&printer);
        assert_eq!(cols[0].name, "Name");
        assert_eq!(cols[0].format, "name");
        assert_eq!(
            cols[1].description,
            "Custom resource definition column (in JSONPath format): .spec.size"
        );
        assert_eq!(cols[2].description, "ready?");
        assert_eq!(cols[3].priority, 1);
        let obj = json!({"metadata": {"name": "db1", "labels": {"app": "db"}},
            "spec": {"size": 3.7, "ratio": 1, "paused": true, "ports": [{"port": 5432}, {"port": 8008}]},
            "status": {"lastUpdate": ago(125), "conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            custom_row(&printer, &obj, now()),
            vec![
                json!("db1"),
                json!(3),
                json!("True"),
                json!(1.0),
                json!(true),
                json!("2m5s"),
                json!("5432"),
                json!(8008),
                json!("{\"app\":\"db\"}"),
                Value::Null,
                Value::Null,
            ]
        );
        let t = custom_table(&printer, &[obj], IncludeObject::Metadata, true, now());
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(11));
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "db1");
    }

    #[test]
    fn custom_resource_default_columns_and_edge_values() {
        let cols = custom_columns(&[]);
        assert_eq!(
            cols.iter()
                .map(|c| (c.name.as_str(), c.type_.as_str()))
                .collect::<Vec<_>>(),
            [("Name", "string"), ("Age", "date")]
        );
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": ago(3 * 86400)}});
        assert_eq!(custom_row(&[], &obj, now()), vec![json!("x"), json!("3d")]);
        assert_eq!(
            custom_row(&[], &json!({"metadata": {"name": "y"}}), now()),
            vec![json!("y"), Value::Null]
        );
        let date = [json!({"name": "D", "type": "date", "JSONPath": "{.spec.d}"})];
        assert_eq!(
            custom_row(&date, &json!({"spec": {"d": "yesterday"}}), now())[1],
            "<invalid>"
        );
        assert_eq!(
            custom_row(&date, &json!({"spec": {"d": ""}}), now())[1],
            "<unknown>"
        );
        let s = [json!({"name": "S", "type": "string", "jsonPath": "$.spec.v"})];
        let cell = |v: Value| custom_row(&s, &json!({"spec": {"v": v}}), now())[1].clone();
        assert_eq!(cell(json!(1.5)), "1.5");
        assert_eq!(cell(json!(1e21)), "1e+21");
        assert_eq!(cell(json!(0.00001)), "1e-05");
        assert_eq!(cell(json!(42)), "42");
        assert_eq!(cell(json!(1000000.0)), "1e+06");
        assert_eq!(cell(json!(123456.5)), "123456.5");
        assert_eq!(cell(json!(false)), "false");
        assert_eq!(cell(json!([1, "a"])), "[1,\"a\"]");
        let wrong = [json!({"name": "I", "type": "integer", "jsonPath": ".spec.v"})];
        assert_eq!(
            custom_row(&wrong, &json!({"spec": {"v": "3"}}), now())[1],
            Value::Null
        );
    }

    #[test]
    fn json_path_subset() {
        let doc = json!({"items": [{"k": "a", "n": 1, "v": {"x": 1}}, {"k": "b", "n": 2, "v": {"x": 2}}], "m": {"a.b/c": 7}});
        let first = |p: &str| JsonPath::parse(p).and_then(|p| p.first(&doc).cloned());
        assert_eq!(first(".items[1].k"), Some(json!("b")));
        assert_eq!(first(".items[-1].v.x"), Some(json!(2)));
        assert_eq!(first(".items[*].k"), Some(json!("a")));
        assert_eq!(first(".items[?(@.k=='b')].n"), Some(json!(2)));
        assert_eq!(first(".items[?(@.n == 1)].k"), Some(json!("a")));
        assert_eq!(first(".items[?(@.k!=\"a\")].v.x"), Some(json!(2)));
        assert_eq!(first(".items[?(@.v.x)].k"), Some(json!("a")));
        assert_eq!(first(".m['a.b/c']"), Some(json!(7)));
        assert_eq!(first(".items[5]"), None);
        assert_eq!(first(".items.k"), None);
        assert!(JsonPath::parse(".a..b").is_none());
        assert!(JsonPath::parse(".a[").is_none());
    }
}
