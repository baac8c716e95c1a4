//! Kubernetes vendor extensions that k8s-openapi's `schemars` output does not carry.
//!
//! k8s-openapi reads `x-kubernetes-patch-strategy` / `-patch-merge-key` / `-list-type` /
//! `-list-map-keys` / `-map-type` only to generate its `DeepMerge` impls and leaves them out of
//! the schemas, so kubectl's client-side strategic merge (`kubectl apply`) and server-side apply
//! list semantics would be lost. [`TABLE`] puts them back. Its rows are the values in the
//! upstream Kubernetes v1.32.0 OpenAPI spec for every definition and property that this generator
//! emits (for the few v1.33-only fields, the v1.33.0 values; no shared field differs between the
//! two). `x-kubernetes-unions` (2 upstream uses, deprecated, unused by clients) is not carried.
//!
//! The generator fails if a row names a definition or property that it did not emit, so a
//! k8s-openapi upgrade that renames or drops a field shows up here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// (definition, property — "" for the definition itself, x-kubernetes-patch-strategy,
/// x-kubernetes-patch-merge-key, x-kubernetes-list-type, x-kubernetes-list-map-keys,
/// x-kubernetes-map-type); "" / `&[]` = absent.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    ("io.k8s.api.admissionregistration.v1.MatchResources", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.admissionregistration.v1.MatchResources", "excludeResourceRules", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.MatchResources", "resourceRules", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "admissionReviewVersions", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiVersions", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "operations", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resourceNames", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resources", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ParamKind", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.admissionregistration.v1.ParamRef", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiVersions", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "operations", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "resources", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.TypeChecking", "expressionWarnings", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", "", "", "set", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "auditAnnotations", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "validations", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", "", "", "map", &["type"], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "admissionReviewVersions", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.admissionregistration.v1.Variable", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", &[], ""),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", &[], ""),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.authentication.v1.TokenRequestSpec", "audiences", "", "", "atomic", &[], ""),
    ("io.k8s.api.authentication.v1.TokenReviewSpec", "audiences", "", "", "atomic", &[], ""),
    ("io.k8s.api.authentication.v1.TokenReviewStatus", "audiences", "", "", "atomic", &[], ""),
    ("io.k8s.api.authentication.v1.UserInfo", "groups", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.FieldSelectorAttributes", "requirements", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.LabelSelectorAttributes", "requirements", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.NonResourceRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.NonResourceRule", "verbs", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.ResourceRule", "apiGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.ResourceRule", "resourceNames", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.ResourceRule", "resources", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.ResourceRule", "verbs", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.SubjectAccessReviewSpec", "groups", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "nonResourceRules", "", "", "atomic", &[], ""),
    ("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "resourceRules", "", "", "atomic", &[], ""),
    ("io.k8s.api.autoscaling.v1.CrossVersionObjectReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.autoscaling.v2.HPAScalingRules", "policies", "", "", "atomic", &[], ""),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", "", "", "atomic", &[], ""),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", "", "", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "", "", "set", &[], ""),
    ("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", "", "", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", "", "", "set", &[], ""),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", "", "", "set", &[], ""),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "groups", "", "", "atomic", &[], ""),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request", "", "", "atomic", &[], ""),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "usages", "", "", "atomic", &[], ""),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "certificate", "", "", "atomic", &[], ""),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", "", "", "map", &["type"], ""),
    ("io.k8s.api.core.v1.Capabilities", "add", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Capabilities", "drop", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Container", "args", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Container", "command", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.Container", "envFrom", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    ("io.k8s.api.core.v1.ContainerImage", "names", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    ("io.k8s.api.core.v1.DownwardAPIProjection", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EndpointAddress", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.EndpointPort", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.EndpointSubset", "addresses", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EndpointSubset", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.Endpoints", "subsets", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "args", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "command", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "envFrom", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    ("io.k8s.api.core.v1.ExecAction", "command", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.FCVolumeSource", "wwids", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.HostAlias", "hostnames", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.LoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.LocalObjectReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.NamespaceSpec", "finalizers", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeSelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeSelectorRequirement", "values", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", "", "set", &[], ""),
    ("io.k8s.api.core.v1.NodeSpec", "taints", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.NodeStatus", "images", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeStatus", "volumesAttached", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ObjectFieldSelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ObjectReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", "", "", "", &[], "granular"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef", "", "", "", &[], "granular"),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodDNSConfig", "nameservers", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodDNSConfig", "options", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodDNSConfig", "searches", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodSecurityContext", "sysctls", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip", "map", &["ip"], ""),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"], ""),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip", "map", &["ip"], ""),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.RBDVolumeSource", "monitors", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.ResourceFieldSelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", "", "", "map", &["name"], ""),
    ("io.k8s.api.core.v1.ResourceStatus", "resources", "", "", "map", &["resourceID"], ""),
    ("io.k8s.api.core.v1.ScopeSelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.SecretKeySelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.SecretProjection", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.SecretReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.SecretVolumeSource", "items", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"], ""),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "matchLabelExpressions", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", &[], ""),
    ("io.k8s.api.core.v1.TypedLocalObjectReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", "", "", "set", &[], ""),
    ("io.k8s.api.discovery.v1.EndpointHints", "forNodes", "", "", "atomic", &[], ""),
    ("io.k8s.api.discovery.v1.EndpointHints", "forZones", "", "", "atomic", &[], ""),
    ("io.k8s.api.discovery.v1.EndpointPort", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[], ""),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IPBlock", "except", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IngressSpec", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IngressSpec", "tls", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.IngressTLS", "hosts", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", "", "", "atomic", &[], ""),
    ("io.k8s.api.networking.v1.ServiceBackendPort", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector", "", "", "", &[], "atomic"),
    ("io.k8s.api.node.v1.Scheduling", "tolerations", "", "", "atomic", &[], ""),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace", "", "", &[], ""),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    ("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.PolicyRule", "resources", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.Role", "rules", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", "", "", "atomic", &[], ""),
    ("io.k8s.api.rbac.v1.RoleRef", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.rbac.v1.Subject", "", "", "", "", &[], "atomic"),
    ("io.k8s.api.storage.v1.CSIDriverSpec", "tokenRequests", "", "", "atomic", &[], ""),
    ("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", "", "", "set", &[], ""),
    ("io.k8s.api.storage.v1.CSINodeDriver", "topologyKeys", "", "", "atomic", &[], ""),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", "name", "map", &["name"], ""),
    ("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", "", "", "atomic", &[], ""),
    ("io.k8s.api.storage.v1.StorageClass", "mountOptions", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "categories", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "shortNames", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", "", "", "map", &["type"], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "additionalPrinterColumns", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "selectableFields", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "allOf", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "anyOf", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "enum", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "oneOf", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "required", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-list-map-keys", "", "", "atomic", &[], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", "merge", "rule", "map", &["rule"], ""),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion", "conversionReviewVersions", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement", "values", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "", "", "", "", &[], "atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", "", "set", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "", "", "", "", &[], "atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", "", "", "atomic", &[], ""),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", "", "", "atomic", &[], ""),
];

/// `required` entries that k8s-openapi adds because its Rust field is not an `Option`, but that
/// upstream does not mark required (so kubectl explain would print a wrong `-required-` and a
/// schema validator would reject valid objects). `metadata` is dropped from every definition's
/// `required` except [`METADATA_REQUIRED`]'s, as upstream has it.
const NOT_REQUIRED: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.ConfigMapEnvSource", "name"),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "name"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "name"),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "name"),
    ("io.k8s.api.core.v1.LocalObjectReference", "name"),
    ("io.k8s.api.core.v1.SecretEnvSource", "name"),
    ("io.k8s.api.core.v1.SecretKeySelector", "name"),
    ("io.k8s.api.core.v1.SecretProjection", "name"),
];

/// The only definition whose upstream schema lists `metadata` as required.
const METADATA_REQUIRED: &[&str] = &["io.k8s.api.core.v1.Event"];

/// Applies [`TABLE`] and [`NOT_REQUIRED`]; returns the number of table rows applied.
pub fn apply(defs: &mut BTreeMap<String, Value>) -> usize {
    for (def, prop, patch_strategy, merge_key, list_type, map_keys, map_type) in TABLE {
        let target: &mut Map<String, Value> = if prop.is_empty() {
            defs.get_mut(*def).and_then(Value::as_object_mut)
        } else {
            crate::property_mut(defs, def, prop)
        }
        .unwrap_or_else(|| panic!("extension table names {def}.{prop}, which was not generated"));
        let mut set = |key: &str, value: Value| {
            target.insert(key.to_owned(), value);
        };
        if !patch_strategy.is_empty() {
            set("x-kubernetes-patch-strategy", (*patch_strategy).into());
        }
        if !merge_key.is_empty() {
            set("x-kubernetes-patch-merge-key", (*merge_key).into());
        }
        if !list_type.is_empty() {
            set("x-kubernetes-list-type", (*list_type).into());
        }
        if !map_keys.is_empty() {
            set(
                "x-kubernetes-list-map-keys",
                map_keys.iter().map(|k| Value::from(*k)).collect(),
            );
        }
        if !map_type.is_empty() {
            set("x-kubernetes-map-type", (*map_type).into());
        }
    }

    for (def, field) in NOT_REQUIRED {
        let listed = defs
            .get(*def)
            .and_then(|d| d.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == field));
        assert!(
            listed,
            "NOT_REQUIRED: {def} does not list {field} as required (stale entry?)"
        );
    }
    for (name, schema) in defs.iter_mut() {
        let Some(Value::Array(required)) = schema.get_mut("required") else {
            continue;
        };
        required.retain(|field| {
            let field = field.as_str().unwrap_or_default();
            (field != "metadata" || METADATA_REQUIRED.contains(&name.as_str()))
                && !NOT_REQUIRED.contains(&(name.as_str(), field))
        });
        if required.is_empty() {
            schema.as_object_mut().map(|o| o.remove("required"));
        }
    }

    TABLE.len()
}
