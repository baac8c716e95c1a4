//! ClusterIP and NodePort allocation.
//!
//! Each allocated address or port is a key in the datastore (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) created with create-if-absent, so two API servers
//! on one database can never hand out the same one, and allocations survive restarts. A failed
//! write releases what it reserved; deleting or changing a Service releases what it no longer uses.

use crate::ApiState;
use crate::error::Cause;
use ipnet::IpNet;
use serde_json::{Value, json};
use std::net::IpAddr;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// The NodePort range (K3s's default).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// What one write reserved (to release if the write fails).
#[derive(Debug, Default)]
pub struct Allocation {
    ips: Vec<String>,
    ports: Vec<u16>,
}

fn owner(svc: &Value) -> bytes::Bytes {
    let ns = svc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    bytes::Bytes::from(format!("{ns}/{name}"))
}

async fn reserve(s: &ApiState, key: String, svc: &Value) -> Result<bool, Cause> {
    match s.store.backend().create(&key, owner(svc), None).await {
        Ok(_) => Ok(true),
        Err(datastore::StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(Cause {
            reason: "FieldValueInvalid",
            field: "spec".into(),
            message: format!("cannot allocate: {e}"),
        }),
    }
}

/// Number of usable addresses in the range (network and broadcast excluded, capped).
fn range_size(net: &IpNet) -> u64 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len()).min(20);
    (1u64 << host_bits).saturating_sub(2)
}

fn nth(net: &IpNet, n: u64) -> Option<IpAddr> {
    match net {
        IpNet::V4(v) => {
            let a = u32::from(v.network()).checked_add(u32::try_from(n).ok()?)?;
            Some(IpAddr::from(std::net::Ipv4Addr::from(a)))
        }
        IpNet::V6(v) => Some(IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(v.network()).checked_add(u128::from(n))?,
        ))),
    }
}

/// Fill in and reserve the Service's cluster IP and node ports. `old` is the stored Service
/// on update (its allocations are kept).
pub async fn allocate(
    s: &ApiState,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<Allocation, Vec<Cause>> {
    let mut alloc = Allocation::default();
    match allocate_inner(s, svc, old, &mut alloc).await {
        Ok(()) => Ok(alloc),
        Err(c) => {
            release(s, &alloc).await;
            Err(c)
        }
    }
}

async fn allocate_inner(
    s: &ApiState,
    svc: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocation,
) -> Result<(), Vec<Cause>> {
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if ty != "ExternalName" {
        let wanted = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        match (&old_ip, &wanted) {
            (Some(o), Some(w)) if o != w => {
                return Err(vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(w),
                    "may not change once set",
                )]);
            }
            (Some(o), _) => {
                svc["spec"]["clusterIP"] = json!(o);
            }
            (None, Some(w)) if w == "None" => {}
            (None, Some(w)) => {
                let ip: IpAddr = w.parse().map_err(|_| {
                    vec![Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!(w),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )]
                })?;
                if !s.config.service_cidr.contains(&ip) {
                    return Err(vec![Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!(w),
                        &format!(
                            "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}",
                            s.config.service_cidr
                        ),
                    )]);
                }
                if !reserve(s, format!("{IP_PREFIX}{ip}"), svc)
                    .await
                    .map_err(|c| vec![c])?
                {
                    return Err(vec![Cause::invalid(
                        "spec.clusterIPs",
                        &json!([w]),
                        &format!("failed to allocate IP {w}: provided IP is already allocated"),
                    )]);
                }
                alloc.ips.push(ip.to_string());
            }
            (None, None) => {
                let size = range_size(&s.config.service_cidr);
                // Offsets 1 (the kubernetes Service) and the DNS address are handed out explicitly.
                let start = rand::random_range(2..size.max(3));
                let mut got = None;
                for i in 0..size {
                    let off = 2 + (start + i) % size.saturating_sub(1).max(1);
                    let Some(ip) = nth(&s.config.service_cidr, off) else {
                        continue;
                    };
                    if ip == s.config.cluster_dns {
                        continue;
                    }
                    if reserve(s, format!("{IP_PREFIX}{ip}"), svc)
                        .await
                        .map_err(|c| vec![c])?
                    {
                        got = Some(ip);
                        break;
                    }
                }
                let ip = got.ok_or_else(|| {
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: "spec.clusterIPs".into(),
                        message: "failed to allocate a serviceIP: range is full".into(),
                    }]
                })?;
                alloc.ips.push(ip.to_string());
                svc["spec"]["clusterIP"] = json!(ip.to_string());
            }
        }
        if let Some(ip) = svc.pointer("/spec/clusterIP").cloned() {
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let old_ports: Vec<u16> = old.map(node_ports).unwrap_or_default();
        let n = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..n {
            let wanted = svc["spec"]["ports"][i]
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p != 0);
            match wanted {
                Some(p) if old_ports.contains(&(p as u16)) => {}
                Some(p) => {
                    if !NODE_PORTS.contains(&(p as u16)) || p > u64::from(u16::MAX) {
                        return Err(vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &json!(p),
                            "provided port is not in the valid range. The range of valid ports is 30000-32767",
                        )]);
                    }
                    if !reserve(s, format!("{PORT_PREFIX}{p}"), svc)
                        .await
                        .map_err(|c| vec![c])?
                    {
                        return Err(vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &json!(p),
                            "provided port is already allocated",
                        )]);
                    }
                    alloc.ports.push(p as u16);
                }
                None => {
                    let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
                    let start = rand::random_range(0..span);
                    let mut got = None;
                    for k in 0..span {
                        let p = NODE_PORTS.start() + ((start + k) % span) as u16;
                        if reserve(s, format!("{PORT_PREFIX}{p}"), svc)
                            .await
                            .map_err(|c| vec![c])?
                        {
                            got = Some(p);
                            break;
                        }
                    }
                    let p = got.ok_or_else(|| {
                        vec![Cause {
                            reason: "FieldValueInvalid",
                            field: format!("spec.ports[{i}].nodePort"),
                            message: "range is full".into(),
                        }]
                    })?;
                    alloc.ports.push(p);
                    svc["spec"]["ports"][i]["nodePort"] = json!(p);
                }
            }
        }
    }
    Ok(())
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ip(svc: &Value) -> Option<String> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_owned)
}

async fn free(s: &ApiState, ips: &[String], ports: &[u16]) {
    for ip in ips {
        let _ = s
            .store
            .backend()
            .delete(&format!("{IP_PREFIX}{ip}"), None)
            .await;
    }
    for p in ports {
        let _ = s
            .store
            .backend()
            .delete(&format!("{PORT_PREFIX}{p}"), None)
            .await;
    }
}

/// Give back what a failed write reserved.
pub async fn release(s: &ApiState, a: &Allocation) {
    free(s, &a.ips, &a.ports).await;
}

/// Give back what a deleted Service held.
pub async fn release_all(s: &ApiState, svc: &Value) {
    free(
        s,
        &cluster_ip(svc).into_iter().collect::<Vec<_>>(),
        &node_ports(svc),
    )
    .await;
}

/// Give back what an updated Service no longer uses.
pub async fn release_replaced(s: &ApiState, old: &Value, new: &Value) {
    let ips: Vec<String> = cluster_ip(old)
        .into_iter()
        .filter(|ip| cluster_ip(new).as_ref() != Some(ip))
        .collect();
    let new_ports = node_ports(new);
    let ports: Vec<u16> = node_ports(old)
        .into_iter()
        .filter(|p| !new_ports.contains(p))
        .collect();
    free(s, &ips, &ports).await;
}
