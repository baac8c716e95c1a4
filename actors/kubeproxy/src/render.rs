//! The ruleset, rendered whole as `iptables-restore` input in kube-proxy's iptables-mode shape.
//!
//! nat table:
//! - `KUBE-SERVICES` (from PREROUTING and OUTPUT): per service port with ready endpoints, its
//!   cluster IP and external IPs jump to `KUBE-SVC-<hash>`; the last rule sends traffic to
//!   local addresses (`-m addrtype --dst-type LOCAL`) to `KUBE-NODEPORTS`.
//! - `KUBE-NODEPORTS`: node port → `KUBE-SVC-<hash>`.
//! - `KUBE-SVC-<hash>`: marks the packet for masquerade, then spreads connections over the
//!   endpoints with `-m statistic --mode random --probability 1/(n-i)` (ClientIP affinity
//!   first sends known clients back with `-m recent --rcheck`).
//! - `KUBE-SEP-<hash>`: one endpoint; DNAT to it (and `-m recent --set` with affinity).
//! - `KUBE-MARK-MASQ` sets mark 0x4000; `KUBE-POSTROUTING` (from POSTROUTING) masquerades
//!   marked packets and clears the mark.
//!
//! Masquerade-all: every DNATed service packet is marked, not only those from outside the
//! cluster CIDR. Without it a pod reaching a Service whose endpoint sits on the same bridge
//! would need `br_netfilter` for the reply to be un-NATed (the reply would go pod to pod on
//! the bridge, never seeing the host's conntrack); with the source rewritten to the node, the
//! reply comes back through the host.
//!
//! filter table:
//! - `KUBE-SERVICES` (from FORWARD and OUTPUT, new connections): REJECT for cluster IPs of
//!   service ports without ready endpoints.
//! - `KUBE-EXTERNAL-SERVICES` (from INPUT and FORWARD, new connections): REJECT for their
//!   external IPs and node ports.
//! - `KUBE-FORWARD` (from FORWARD): ACCEPT marked service traffic and anything from or to the
//!   cluster CIDR (as K3s does, so a default-DROP FORWARD policy does not cut pods off).
//!
//! Each chain we own is declared (`:CHAIN - [0:0]`), which flushes it inside the restore;
//! stale `KUBE-SVC-`/`KUBE-SEP-` chains are declared and deleted (`-X`) in the same
//! transaction. Output is deterministic (sorted) so equal inputs render equal text.

use crate::model::{Endpoint, ServicePort};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Mark for packets to masquerade (upstream's default bit 14).
pub const MASQ_MARK: &str = "0x4000";

/// Fixed chains of the nat table we own.
pub const NAT_CHAINS: [&str; 4] = [
    "KUBE-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-MARK-MASQ",
];

/// Chains of the filter table we own.
pub const FILTER_CHAINS: [&str; 3] = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD"];

/// Prefixes of the per-service and per-endpoint nat chains we own.
pub const OWNED_PREFIXES: [&str; 2] = ["KUBE-SVC-", "KUBE-SEP-"];

/// Whether a nat chain name is one of our per-service or per-endpoint chains.
pub fn is_dynamic_chain(name: &str) -> bool {
    OWNED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A jump from a built-in chain into ours; kept at the top of the built-in chain, exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// The built-in chain.
    pub chain: &'static str,
    /// The rule after the chain name (`-m comment --comment ... -j KUBE-...`), as arguments.
    pub rule: Vec<&'static str>,
    /// Our chain it jumps to.
    pub target: &'static str,
    /// The comment that identifies the rule.
    pub comment: &'static str,
}

fn jump(
    table: &'static str,
    chain: &'static str,
    new_only: bool,
    comment: &'static str,
    target: &'static str,
) -> Jump {
    let mut rule = Vec::new();
    if new_only {
        rule.extend(["-m", "conntrack", "--ctstate", "NEW"]);
    }
    rule.extend(["-m", "comment", "--comment", comment, "-j", target]);
    Jump {
        table,
        chain,
        rule,
        target,
        comment,
    }
}

/// The jump rules, in the order they should appear in each built-in chain.
pub fn jumps() -> Vec<Jump> {
    vec![
        jump(
            "nat",
            "PREROUTING",
            false,
            "kubernetes service portals",
            "KUBE-SERVICES",
        ),
        jump(
            "nat",
            "OUTPUT",
            false,
            "kubernetes service portals",
            "KUBE-SERVICES",
        ),
        jump(
            "nat",
            "POSTROUTING",
            false,
            "kubernetes postrouting rules",
            "KUBE-POSTROUTING",
        ),
        jump(
            "filter",
            "INPUT",
            true,
            "kubernetes externally-visible service portals",
            "KUBE-EXTERNAL-SERVICES",
        ),
        jump(
            "filter",
            "FORWARD",
            true,
            "kubernetes service portals",
            "KUBE-SERVICES",
        ),
        jump(
            "filter",
            "FORWARD",
            true,
            "kubernetes externally-visible service portals",
            "KUBE-EXTERNAL-SERVICES",
        ),
        jump(
            "filter",
            "FORWARD",
            false,
            "kubernetes forwarding rules",
            "KUBE-FORWARD",
        ),
        jump(
            "filter",
            "OUTPUT",
            true,
            "kubernetes service portals",
            "KUBE-SERVICES",
        ),
    ]
}

/// A rendered ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// `iptables-restore --noflush` input for the nat and filter tables.
    pub text: String,
    /// The `KUBE-SVC-`/`KUBE-SEP-` chains it writes (everything else of ours is stale).
    pub dynamic_chains: BTreeSet<String>,
}

/// Upstream-style chain suffix: the first 16 base32 characters of SHA-256 of `key`.
fn hash16(key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(16);
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in digest {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < 16 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
        buf &= (1 << bits) - 1;
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// `KUBE-SVC-<hash>` of a service port.
pub fn svc_chain(sp: &ServicePort) -> String {
    format!(
        "KUBE-SVC-{}",
        hash16(&format!("{}{}", sp.display_name(), sp.protocol.as_str()))
    )
}

/// `KUBE-SEP-<hash>` of one endpoint of a service port.
pub fn sep_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!(
            "{}{}{ep}",
            sp.display_name(),
            sp.protocol.as_str()
        ))
    )
}

/// Render the whole ruleset for `ports`. `stale` names dynamic chains present in the kernel;
/// those not written again are deleted.
pub fn render(ports: &[ServicePort], cluster_cidr: &IpNet, stale: &BTreeSet<String>) -> Ruleset {
    let mut dynamic = BTreeSet::new();
    // nat rules, per chain, and the filter rules.
    let mut services = String::new();
    let mut nodeports = String::new();
    let mut per_service = String::new();
    let mut reject = String::new();
    let mut reject_external = String::new();

    for sp in ports {
        let name = sp.display_name();
        let proto = sp.protocol.as_str();
        let svc = svc_chain(sp);
        if sp.endpoints.is_empty() {
            let comment = format!("\"{name} has no endpoints\"");
            if let Some(ip) = sp.cluster_ip {
                let _ = writeln!(
                    reject,
                    "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment {comment} -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    sp.port
                );
            }
            for ip in &sp.external_ips {
                let _ = writeln!(
                    reject_external,
                    "-A KUBE-EXTERNAL-SERVICES -d {ip}/32 -p {proto} -m comment --comment {comment} -m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    sp.port
                );
            }
            if let Some(np) = sp.node_port {
                let _ = writeln!(
                    reject_external,
                    "-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment {comment} -m addrtype --dst-type LOCAL -m {proto} --dport {np} -j REJECT --reject-with icmp-port-unreachable"
                );
            }
            continue;
        }
        dynamic.insert(svc.clone());
        if let Some(ip) = sp.cluster_ip {
            let _ = writeln!(
                services,
                "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport {} -j {svc}",
                sp.port
            );
        }
        for ip in &sp.external_ips {
            let _ = writeln!(
                services,
                "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{name} external IP\" -m {proto} --dport {} -j {svc}",
                sp.port
            );
        }
        if let Some(np) = sp.node_port {
            let _ = writeln!(
                nodeports,
                "-A KUBE-NODEPORTS -p {proto} -m comment --comment \"{name}\" -m {proto} --dport {np} -j {svc}"
            );
        }
        // Masquerade-all (see the module docs).
        let _ = writeln!(
            per_service,
            "-A {svc} -m comment --comment \"{name} masquerade service traffic\" -j KUBE-MARK-MASQ"
        );
        let seps: Vec<(String, &Endpoint)> = sp
            .endpoints
            .iter()
            .map(|ep| (sep_chain(sp, ep), ep))
            .collect();
        if let Some(secs) = sp.affinity_seconds {
            for (sep, ep) in &seps {
                let _ = writeln!(
                    per_service,
                    "-A {svc} -m comment --comment \"{name} -> {ep}\" -m recent --name {sep} --rcheck --seconds {secs} --reap -j {sep}"
                );
            }
        }
        let n = seps.len();
        for (i, (sep, ep)) in seps.iter().enumerate() {
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                let _ = writeln!(
                    per_service,
                    "-A {svc} -m comment --comment \"{name} -> {ep}\" -m statistic --mode random --probability {probability:.10} -j {sep}"
                );
            } else {
                let _ = writeln!(
                    per_service,
                    "-A {svc} -m comment --comment \"{name} -> {ep}\" -j {sep}"
                );
            }
        }
        for (sep, ep) in &seps {
            dynamic.insert(sep.clone());
            let recent = if sp.affinity_seconds.is_some() {
                format!(" -m recent --name {sep} --set")
            } else {
                String::new()
            };
            let _ = writeln!(
                per_service,
                "-A {sep} -s {}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
                ep.ip
            );
            let _ = writeln!(
                per_service,
                "-A {sep} -p {proto} -m comment --comment \"{name}\"{recent} -m {proto} -j DNAT --to-destination {ep}"
            );
        }
    }

    let mut t = String::new();
    t.push_str("*nat\n");
    for c in NAT_CHAINS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(dynamic.iter().cloned())
    {
        let _ = writeln!(t, ":{c} - [0:0]");
    }
    let gone: Vec<&String> = stale
        .iter()
        .filter(|c| is_dynamic_chain(c) && !dynamic.contains(*c))
        .collect();
    for c in &gone {
        let _ = writeln!(t, ":{c} - [0:0]");
    }
    let _ = writeln!(
        t,
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(t, "-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}");
    let _ = writeln!(
        t,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE"
    );
    let _ = writeln!(t, "-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}");
    t.push_str(&services);
    t.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    t.push_str(&nodeports);
    t.push_str(&per_service);
    for c in &gone {
        let _ = writeln!(t, "-X {c}");
    }
    t.push_str("COMMIT\n*filter\n");
    for c in FILTER_CHAINS {
        let _ = writeln!(t, ":{c} - [0:0]");
    }
    t.push_str(&reject);
    t.push_str(&reject_external);
    let _ = writeln!(
        t,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
    );
    if let IpNet::V4(cidr) = cluster_cidr {
        let _ = writeln!(
            t,
            "-A KUBE-FORWARD -s {cidr} -m comment --comment \"cluster CIDR (source)\" -j ACCEPT"
        );
        let _ = writeln!(
            t,
            "-A KUBE-FORWARD -d {cidr} -m comment --comment \"cluster CIDR (destination)\" -j ACCEPT"
        );
    }
    t.push_str("COMMIT\n");
    Ruleset {
        text: t,
        dynamic_chains: dynamic,
    }
}

/// `iptables-restore --noflush` input that empties and deletes every chain of ours: the fixed
/// ones and the dynamic ones in `present` (the jump rules must be gone first).
pub fn cleanup(present_nat: &BTreeSet<String>, present_filter: &BTreeSet<String>) -> String {
    let nat: Vec<&str> = present_nat
        .iter()
        .map(String::as_str)
        .filter(|c| NAT_CHAINS.contains(c) || is_dynamic_chain(c))
        .collect();
    let filter: Vec<&str> = present_filter
        .iter()
        .map(String::as_str)
        .filter(|c| FILTER_CHAINS.contains(c))
        .collect();
    let mut t = String::new();
    for (table, chains) in [("nat", nat), ("filter", filter)] {
        let _ = writeln!(t, "*{table}");
        for c in &chains {
            let _ = writeln!(t, ":{c} - [0:0]");
        }
        for c in &chains {
            let _ = writeln!(t, "-X {c}");
        }
        t.push_str("COMMIT\n");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use std::net::Ipv4Addr;

    fn cidr() -> IpNet {
        "10.42.0.0/16".parse().expect("cidr")
    }

    fn port(name: &str, eps: &[u8]) -> ServicePort {
        ServicePort {
            namespace: "d".into(),
            name: name.into(),
            port_name: String::new(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 5)),
            port: 80,
            node_port: None,
            external_ips: Vec::new(),
            affinity_seconds: None,
            endpoints: eps
                .iter()
                .map(|i| Endpoint {
                    ip: Ipv4Addr::new(10, 42, 0, *i),
                    port: 8080,
                })
                .collect(),
        }
    }

    fn lines(t: &str) -> Vec<&str> {
        t.lines().collect()
    }

    #[test]
    fn chain_names_are_stable_and_short() {
        let sp = port("web", &[1]);
        let a = svc_chain(&sp);
        assert_eq!(a, svc_chain(&sp.clone()));
        assert!(a.starts_with("KUBE-SVC-") && a.len() == 25, "{a}");
        assert!(
            a[9..]
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
        let mut udp = sp.clone();
        udp.protocol = Protocol::Udp;
        assert_ne!(a, svc_chain(&udp));
        assert_ne!(
            sep_chain(&sp, &sp.endpoints[0]),
            sep_chain(&udp, &sp.endpoints[0])
        );
    }

    #[test]
    fn no_endpoints_rejects_in_filter() {
        let r = render(&[port("web", &[])], &cidr(), &BTreeSet::new());
        assert!(r.dynamic_chains.is_empty());
        assert!(!r.text.contains("KUBE-SVC-"));
        assert!(lines(&r.text).contains(
            &"-A KUBE-SERVICES -d 10.43.0.5/32 -p tcp -m comment --comment \"d/web has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
        ));
        // The reject is in the filter table, after the nat COMMIT.
        let filter = r.text.split("*filter\n").nth(1).expect("filter table");
        assert!(filter.contains("-j REJECT"));
    }

    #[test]
    fn one_endpoint_dnat() {
        let sp = port("web", &[7]);
        let (svc, sep) = (svc_chain(&sp), sep_chain(&sp, &sp.endpoints[0]));
        let r = render(std::slice::from_ref(&sp), &cidr(), &BTreeSet::new());
        let l = lines(&r.text);
        for want in [
            format!(":{svc} - [0:0]"),
            format!(":{sep} - [0:0]"),
            format!("-A KUBE-SERVICES -d 10.43.0.5/32 -p tcp -m comment --comment \"d/web cluster IP\" -m tcp --dport 80 -j {svc}"),
            format!("-A {svc} -m comment --comment \"d/web masquerade service traffic\" -j KUBE-MARK-MASQ"),
            format!("-A {svc} -m comment --comment \"d/web -> 10.42.0.7:8080\" -j {sep}"),
            format!("-A {sep} -s 10.42.0.7/32 -m comment --comment \"d/web\" -j KUBE-MARK-MASQ"),
            format!("-A {sep} -p tcp -m comment --comment \"d/web\" -m tcp -j DNAT --to-destination 10.42.0.7:8080"),
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000".to_owned(),
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE".to_owned(),
            "-A KUBE-FORWARD -s 10.42.0.0/16 -m comment --comment \"cluster CIDR (source)\" -j ACCEPT".to_owned(),
            "-A KUBE-FORWARD -d 10.42.0.0/16 -m comment --comment \"cluster CIDR (destination)\" -j ACCEPT".to_owned(),
        ] {
            assert!(l.contains(&want.as_str()), "missing {want}\n{}", r.text);
        }
        assert!(!r.text.contains("statistic"));
        assert!(!r.text.contains("REJECT"));
        assert_eq!(r.dynamic_chains, BTreeSet::from([svc, sep]));
        // The nodeports jump is the last rule of KUBE-SERVICES.
        let last = l
            .iter()
            .rfind(|x| x.starts_with("-A KUBE-SERVICES"))
            .expect("rules");
        assert!(last.ends_with("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"));
        assert!(r.text.starts_with("*nat\n") && r.text.ends_with("COMMIT\n"));
    }

    #[test]
    fn three_endpoints_spread_evenly() {
        let sp = port("web", &[1, 2, 3]);
        let r = render(std::slice::from_ref(&sp), &cidr(), &BTreeSet::new());
        let svc = svc_chain(&sp);
        let jumps: Vec<&str> = lines(&r.text)
            .into_iter()
            .filter(|l| l.starts_with(&format!("-A {svc}")) && l.contains("-j KUBE-SEP-"))
            .collect();
        assert_eq!(jumps.len(), 3, "{}", r.text);
        assert!(jumps[0].contains("--probability 0.3333333333"));
        assert!(jumps[1].contains("--probability 0.5000000000"));
        assert!(!jumps[2].contains("--probability"));
        for (j, ep) in jumps.iter().zip(&sp.endpoints) {
            assert!(j.ends_with(&sep_chain(&sp, ep)));
        }
        assert_eq!(r.dynamic_chains.len(), 4);
    }

    #[test]
    fn nodeport_external_ip_affinity_udp() {
        let mut sp = port("dns", &[4, 5]);
        sp.protocol = Protocol::Udp;
        sp.port = 53;
        sp.node_port = Some(30053);
        sp.external_ips = vec![Ipv4Addr::new(192, 0, 2, 10)];
        sp.affinity_seconds = Some(600);
        let r = render(std::slice::from_ref(&sp), &cidr(), &BTreeSet::new());
        let svc = svc_chain(&sp);
        let sep = sep_chain(&sp, &sp.endpoints[0]);
        let l = lines(&r.text);
        for want in [
            format!(
                "-A KUBE-NODEPORTS -p udp -m comment --comment \"d/dns\" -m udp --dport 30053 -j {svc}"
            ),
            format!(
                "-A KUBE-SERVICES -d 192.0.2.10/32 -p udp -m comment --comment \"d/dns external IP\" -m udp --dport 53 -j {svc}"
            ),
            format!(
                "-A {svc} -m comment --comment \"d/dns -> 10.42.0.4:8080\" -m recent --name {sep} --rcheck --seconds 600 --reap -j {sep}"
            ),
            format!(
                "-A {sep} -p udp -m comment --comment \"d/dns\" -m recent --name {sep} --set -m udp -j DNAT --to-destination 10.42.0.4:8080"
            ),
        ] {
            assert!(l.contains(&want.as_str()), "missing {want}\n{}", r.text);
        }
        // Affinity checks come before the random spread.
        let first_recent = l
            .iter()
            .position(|x| x.contains("--rcheck"))
            .expect("recent");
        let first_random = l
            .iter()
            .position(|x| x.contains("statistic"))
            .expect("random");
        assert!(first_recent < first_random);

        // Without endpoints the node port and external IP are rejected from outside.
        sp.endpoints.clear();
        let r = render(std::slice::from_ref(&sp), &cidr(), &BTreeSet::new());
        let l = lines(&r.text);
        assert!(l.contains(&"-A KUBE-EXTERNAL-SERVICES -p udp -m comment --comment \"d/dns has no endpoints\" -m addrtype --dst-type LOCAL -m udp --dport 30053 -j REJECT --reject-with icmp-port-unreachable"));
        assert!(l.contains(&"-A KUBE-EXTERNAL-SERVICES -d 192.0.2.10/32 -p udp -m comment --comment \"d/dns has no endpoints\" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable"));
    }

    #[test]
    fn removed_services_delete_their_chains() {
        let web = port("web", &[1]);
        let before = render(std::slice::from_ref(&web), &cidr(), &BTreeSet::new());
        let mut present = before.dynamic_chains.clone();
        present.insert("KUBE-SOMETHING-ELSE".into());
        let after = render(&[], &cidr(), &present);
        assert!(after.dynamic_chains.is_empty());
        for c in &before.dynamic_chains {
            assert!(after.text.contains(&format!(":{c} - [0:0]\n")));
            assert!(after.text.contains(&format!("-X {c}\n")));
        }
        assert!(!after.text.contains("KUBE-SOMETHING-ELSE"));
        assert!(!after.text.contains("-A KUBE-SVC-"));
        // Still present ones are not deleted.
        let again = render(std::slice::from_ref(&web), &cidr(), &present);
        assert!(!again.text.contains("-X "));
    }

    #[test]
    fn cleanup_deletes_only_ours() {
        let nat = BTreeSet::from([
            "KUBE-SERVICES".to_owned(),
            "KUBE-SVC-AAAA".to_owned(),
            "DOCKER".to_owned(),
        ]);
        let filter = BTreeSet::from(["KUBE-FORWARD".to_owned(), "KUBE-FIREWALL".to_owned()]);
        let t = cleanup(&nat, &filter);
        assert_eq!(
            t,
            "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-AAAA - [0:0]\n-X KUBE-SERVICES\n-X KUBE-SVC-AAAA\nCOMMIT\n*filter\n:KUBE-FORWARD - [0:0]\n-X KUBE-FORWARD\nCOMMIT\n"
        );
    }
}
