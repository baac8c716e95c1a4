//! What the rules are made from: one [`ServicePort`] per port of every proxied Service, joined
//! with its ready endpoints from the Service's EndpointSlices.
//!
//! Pure: built from the watched objects and read by [`crate::render`]. Only IPv4 is proxied
//! (the iptables renderer writes the IPv4 tables); SCTP ports, headless and ExternalName
//! Services are left alone, as kube-proxy leaves them.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Default ClientIP affinity timeout (3 hours), as upstream.
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// A transport protocol kube-proxy writes rules for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// From a Service or EndpointSlice port's `protocol` (default TCP); `None` for SCTP.
    pub fn parse(p: Option<&str>) -> Option<Self> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The iptables name (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One endpoint: a ready pod address and the target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Target port on the pod.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One port of one Service, with everything the rules need.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Name of the port (may be empty when the Service has one port).
    pub port_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The cluster IP (IPv4); `None` for headless Services that still have node ports.
    pub cluster_ip: Option<Ipv4Addr>,
    /// The Service port.
    pub port: u16,
    /// The node port, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` (IPv4).
    pub external_ips: Vec<Ipv4Addr>,
    /// ClientIP session affinity timeout in seconds, when affinity is on.
    pub affinity_seconds: Option<u32>,
    /// Ready endpoints, sorted and without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name:port`, as kube-proxy names a service port in comments.
    pub fn display_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }
}

/// Every proxied service port, from the current Services and EndpointSlices, sorted by
/// namespace, name and port name.
pub fn service_ports(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| *ip != "None" && !ip.is_empty())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let own_slices: Vec<&EndpointSlice> = slices
            .iter()
            .copied()
            .filter(|s| {
                s.metadata.namespace.as_ref() == Some(ns)
                    && s.address_type == "IPv4"
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        == Some(name)
            })
            .collect();
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let node_port = p.node_port.and_then(|n| u16::try_from(n).ok());
            if cluster_ip.is_none() && node_port.is_none() {
                continue;
            }
            let port_name = p.name.clone().unwrap_or_default();
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                endpoints: ready_endpoints(&own_slices, &port_name, protocol),
                port_name,
                protocol,
                cluster_ip,
                port,
                node_port,
                external_ips: external_ips.clone(),
                affinity_seconds,
            });
        }
    }
    out.sort();
    out
}

/// Ready, non-terminating endpoints of the slices' port named `port_name` (a missing ready
/// condition counts as ready, as upstream reads it).
fn ready_endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<Endpoint> {
    let mut set = BTreeSet::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let cond = ep.conditions.as_ref();
            let ready = cond.and_then(|c| c.ready) != Some(false);
            let terminating = cond.and_then(|c| c.terminating) == Some(true);
            if !ready || terminating {
                continue;
            }
            if let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            {
                set.insert(Endpoint { ip, port });
            }
        }
    }
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    #[test]
    fn joins_services_with_ready_endpoints() {
        let web = svc(
            json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {
            "clusterIP": "10.43.0.5", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                      {"name": "dns", "port": 53, "protocol": "UDP"},
                      {"name": "s", "port": 9, "protocol": "SCTP"}]}}),
        );
        let headless = svc(
            json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}),
        );
        let s1 = slice(
            json!({"metadata": {"name": "web-1", "namespace": "d", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"]},
                {"addresses": ["10.42.0.8"], "conditions": {"ready": false}},
                {"addresses": ["10.42.0.9"], "conditions": {"ready": true, "terminating": true}}]}),
        );
        let other_ns = slice(
            json!({"metadata": {"name": "web-2", "namespace": "e", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.42.1.1"]}]}),
        );
        let ports = service_ports(&[&web, &headless], &[&s1, &other_ns]);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].port_name, "dns");
        assert_eq!(ports[0].protocol, Protocol::Udp);
        assert_eq!(
            ports[0].endpoints,
            vec![
                Endpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 6),
                    port: 5353
                },
                Endpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 7),
                    port: 5353
                }
            ]
        );
        assert_eq!(ports[1].display_name(), "d/web:http");
        assert_eq!(ports[1].affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS));
        assert_eq!(ports[1].endpoints.len(), 2);
        assert_eq!(ports[1].endpoints[0].port, 8080);
    }
}
