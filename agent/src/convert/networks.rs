//! The top-level `networks` of a compose file and the project's default network: Network
//! manifests, their subnets (a free /24 of the pool for those that name none) and bridge names,
//! and what needs the subnets known (`extra_hosts` `host-gateway`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::top::{metadata, object_name, settings};
use super::value::{self, boolean};
use super::{Converted, Cx, Error, at, at_key};
use crate::manifest::node::{Key, Node, NodeKind};
use crate::manifest::{ApiVersion, Ipv4Cidr, Manifest, NetworkManifest, NetworkSpec};

/// A Network waiting for its subnet.
pub(super) struct PendingNetwork {
    pub name: String,
    pub from: String,
    pub line: u32,
    pub col: u32,
    pub labels: BTreeMap<String, String>,
    pub spec: Map<String, Value>,
}

/// `extra_hosts: ["NAME:host-gateway"]`: Docker's `host-gateway` is the host's address on its
/// bridge; here it is the gateway of the container's first network (the host's address on that
/// bridge, which the container reaches), written as the address.
pub(super) fn host_gateway(cx: &mut Cx, networks: &[Converted], containers: &mut [Converted]) {
    use crate::manifest::{ExtraHost, NetworkMode};
    for hg in std::mem::take(&mut cx.host_gateway) {
        let Some(spec) = containers.iter_mut().find_map(|c| match &mut c.manifest {
            Manifest::Container(m) if m.metadata.name == hg.container => Some(&mut m.spec),
            _ => None,
        }) else {
            continue;
        };
        let gateway = match (&spec.network_mode, spec.networks.first()) {
            // The container shares the host's network: the host is itself.
            (NetworkMode::Host, _) => Some((
                std::net::Ipv4Addr::LOCALHOST.into(),
                "host (network_mode)".to_string(),
            )),
            (NetworkMode::Bridge, Some(first)) => networks.iter().find_map(|n| match &n.manifest {
                Manifest::Network(m) if m.metadata.name == first.name => Some((
                    m.spec
                        .gateway
                        .unwrap_or_else(|| m.spec.subnet.first_host().into()),
                    format!("Network {:?}", first.name),
                )),
                _ => None,
            }),
            _ => None,
        };
        let Some((ip, net)) = gateway else {
            cx.drop(hg.loc, hg.key, format!("not carried over: {}: `host-gateway` is the host's address on the container's network, and this container has no network of its own (network_mode); write the address", hg.host));
            continue;
        };
        spec.extra_hosts.push(ExtraHost {
            host: hg.host.clone(),
            ip,
        });
        cx.change(
            hg.loc,
            hg.key,
            format!(
                "{}: `host-gateway` written as {ip}, the host's address on {net} (Docker's is the host's address on its bridge); the host's services must listen there",
                hg.host
            ),
        );
    }
}

pub(super) fn top_networks(cx: &mut Cx, n: &Node, out: &mut Vec<PendingNetwork>) {
    let list = match value::mapping(n) {
        Ok(e) => e,
        Err(why) => return cx.drop(at(n), "networks", format!("not carried over: {why}")),
    };
    for (k, def) in list {
        let path = format!("networks.{}", k.name);
        let name = object_name(cx, &path, k, def);
        let mut spec = Map::new();
        let lab = settings(cx, &path, def, |cx, fk, fv, fpath| {
            match fk.name.as_str() {
                "driver" if value::scalar(fv).as_deref() == Some("bridge") => {}
                "driver" => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks are bridges on this host (no overlay, macvlan or other drivers); converted as a bridge"),
                "attachable" => {}
                "external" if boolean(fv).unwrap_or(false) => cx.change(
                    at_key(fk),
                    fpath,
                    format!("an external network: the agent makes and owns its own bridge network {name:?}"),
                ),
                "external" => {}
                "internal" if boolean(fv).unwrap_or(false) => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks always have outbound NAT; an internal network is not supported"),
                "internal" => {}
                "enable_ipv6" if boolean(fv).unwrap_or(false) => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks are IPv4"),
                "enable_ipv6" => {}
                "ipam" => ipam(cx, &fpath, fv, &mut spec),
                "driver_opts" => driver_opts(cx, &fpath, fv, &mut spec),
                other => cx.drop(at_key(fk), fpath, format!("not carried over: `{other}` is not a network setting the agent has")),
            }
        });
        if k.name == "default" {
            cx.default_network = None;
        }
        cx.networks.insert(k.name.clone(), name.clone());
        out.push(PendingNetwork {
            name,
            from: path,
            line: k.line,
            col: k.col,
            labels: lab,
            spec,
        });
    }
}

fn ipam(cx: &mut Cx, path: &str, n: &Node, spec: &mut Map<String, Value>) {
    let NodeKind::Map(fields) = &n.kind else {
        return;
    };
    for (k, v) in fields {
        let kpath = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "driver" if value::scalar(v).as_deref() == Some("default") => {}
            "config" => {
                let NodeKind::Seq(items) = &v.kind else {
                    cx.drop(at(v), kpath, format!("not carried over: expected a list, found {}", v.describe()));
                    continue;
                };
                let mut taken = false;
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{kpath}[{i}]");
                    let subnet = item.get("subnet").and_then(value::scalar);
                    match subnet.as_deref().map(str::parse::<Ipv4Cidr>) {
                        Some(Ok(s)) if !taken => {
                            spec.insert("subnet".into(), json!(s.to_string()));
                            if let Some(g) = item.get("gateway").and_then(value::scalar) {
                                spec.insert("gateway".into(), json!(g));
                            }
                            for (ik, _) in node_entries(item) {
                                if !matches!(ik.name.as_str(), "subnet" | "gateway") {
                                    cx.drop(at_key(ik), format!("{ipath}.{}", ik.name), "not carried over: the agent hands out addresses from the whole subnet (no ip_range, aux_addresses)");
                                }
                            }
                            taken = true;
                        }
                        Some(Ok(_)) => cx.drop(at(item), ipath, "not carried over: a Network has one subnet; the first IPv4 one is used"),
                        Some(Err(e)) => cx.drop(at(item), ipath, format!("not carried over: {e} (the agent's networks are IPv4)")),
                        None => cx.drop(at(item), ipath, "not carried over: an ipam config without `subnet`"),
                    }
                }
            }
            _ => cx.drop(at_key(k), kpath, "not carried over: the agent has its own address management (only `config[].subnet` and `gateway` are read)"),
        }
    }
}

fn node_entries(n: &Node) -> &[(Key, Node)] {
    match &n.kind {
        NodeKind::Map(e) => e,
        _ => &[],
    }
}

fn driver_opts(cx: &mut Cx, path: &str, n: &Node, spec: &mut Map<String, Value>) {
    for (k, v) in node_entries(n) {
        let kpath = format!("{path}.{}", k.name);
        let val = value::scalar(v).unwrap_or_default();
        match k.name.as_str() {
            "com.docker.network.bridge.name" => {
                spec.insert("bridge".into(), json!(val));
            }
            "com.docker.network.driver.mtu" => match val.parse::<u32>() {
                Ok(m) => {
                    spec.insert("mtu".into(), json!(m));
                }
                Err(_) => cx.drop(at(v), kpath, format!("not carried over: MTU {val:?} is not a number")),
            },
            "com.docker.network.bridge.enable_icc" => {
                spec.insert("icc".into(), json!(val != "false"));
            }
            _ => cx.drop(at_key(k), kpath, "not carried over: not a bridge option the agent has (bridge name, MTU and enable_icc are)"),
        }
    }
}

/// Gives every network a subnet (a free /24 of `pool` when it names none) and a bridge name no
/// other network of the project has, and builds the manifests.
pub(super) fn finish_networks(
    cx: &mut Cx,
    pending: Vec<PendingNetwork>,
    pool: Ipv4Cidr,
) -> Result<Vec<Converted>, Error> {
    let mut used: Vec<Ipv4Cidr> = pending
        .iter()
        .filter_map(|p| p.spec.get("subnet")?.as_str()?.parse().ok())
        .collect();
    let mut out = Vec::new();
    for mut p in pending {
        if !p.spec.contains_key("subnet") {
            let Some(s) = free_subnet(pool, &used, &p.name) else {
                return Err(Error::At {
                    file: cx.file.clone(),
                    line: p.line,
                    col: p.col,
                    message: format!(
                        "no free /24 left in the subnet pool {pool} for network {:?}; pass a larger --subnet-pool",
                        p.name
                    ),
                });
            };
            used.push(s);
            p.spec.insert("subnet".into(), json!(s.to_string()));
            cx.change(
                (p.line, p.col),
                &p.from,
                format!("Network {:?} gets subnet {s} (Docker chose one itself; change it if it overlaps another network of this host)", p.name),
            );
        }
        if !p.spec.contains_key("bridge") && format!("agent-{}", p.name).len() > 15 {
            // The agent's default bridge name, `agent-<name>` cut to 15 characters, would be the
            // same for `myproject-front` and `myproject-back`: name it by a digest of the name.
            let hash = hex::encode(Sha256::digest(p.name.as_bytes()));
            p.spec
                .insert("bridge".into(), json!(format!("agent-{}", &hash[..9])));
        }
        let spec: NetworkSpec =
            serde_json::from_value(Value::Object(p.spec)).map_err(|e| Error::At {
                file: cx.file.clone(),
                line: p.line,
                col: p.col,
                message: format!("network {:?}: {e}", p.name),
            })?;
        out.push(Converted {
            file: Default::default(),
            manifest: Manifest::Network(NetworkManifest {
                api_version: ApiVersion::V1,
                metadata: metadata(&p.name, p.labels),
                spec,
            }),
            from: p.from,
            line: p.line,
            col: p.col,
        });
    }
    Ok(out)
}

/// A /24 of `pool` (or the pool itself when it is smaller) that overlaps nothing in `used`:
/// the first free one from a place given by a digest of the network's `name`, so that the
/// networks of projects converted one after the other (`shop-default`, `blog-default`) rarely
/// get the same subnet, and converting a file again gives the same one.
fn free_subnet(pool: Ipv4Cidr, used: &[Ipv4Cidr], name: &str) -> Option<Ipv4Cidr> {
    let prefix = pool.prefix.max(24);
    let count = 1u32 << (prefix - pool.prefix);
    let base = u32::from(pool.addr);
    let digest = Sha256::digest(name.as_bytes());
    let start = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % count;
    (0..count)
        .map(|i| Ipv4Cidr {
            addr: std::net::Ipv4Addr::from(
                base + (((start + i) % count) << (32 - u32::from(prefix))),
            ),
            prefix,
        })
        .find(|c| !used.iter().any(|u| u.overlaps(c)))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnets_skip_used_ones() {
        let pool: Ipv4Cidr = "10.214.0.0/16".parse().expect("pool");
        let a = free_subnet(pool, &[], "shop-default").expect("a");
        assert_eq!(a.prefix, 24);
        assert!(pool.contains(a.addr));
        // The same name, the same subnet; another project's network, another one.
        assert_eq!(free_subnet(pool, &[], "shop-default"), Some(a));
        let other = free_subnet(pool, &[], "blog-default").expect("other");
        assert_ne!(other, a);
        // Taken ones are skipped: the next one after it.
        let next = Ipv4Cidr {
            addr: std::net::Ipv4Addr::from(u32::from(a.addr) + 256),
            prefix: 24,
        };
        let b = free_subnet(pool, &[a], "shop-default").expect("b");
        assert!(!b.overlaps(&a));
        if pool.contains(next.addr) {
            assert_eq!(b, next);
        }
        let small: Ipv4Cidr = "10.9.9.0/24".parse().expect("small");
        assert_eq!(free_subnet(small, &[], "x"), Some(small));
        assert_eq!(free_subnet(small, &[small], "x"), None);
        let full: Vec<Ipv4Cidr> = vec![pool];
        assert_eq!(free_subnet(pool, &full, "x"), None);
    }
}
