//! The host's own IPv4 routes and addresses, and which of them a network's subnet overlaps.
//!
//! A bridge with a subnet the host already reaches through another interface takes that traffic
//! away from it: on an edge device whose LAN is 192.168.1.0/24, a network with that subnet gives
//! the host a second connected route for its LAN, and the device can lose the network it is
//! managed through. So before the driver creates a bridge or gives it an address
//! ([`super::NetworkDriver::ensure_network`] and wherever a missing bridge is made again), it
//! reads the host's routes and addresses ([`read`]) and refuses a subnet that overlaps one of
//! them ([`conflicts`], pure). Networks that exist already are checked the same way for
//! `agent status` ([`super::NetworkDriver::host_problems`]) but never torn down.
//!
//! What counts (see `docs/network.md`, "Subnets the host uses"):
//! - the routes of every table an IPv4 policy rule looks up (`local`, `main`, `default`, and
//!   tables such as a VPN's), of type unicast or local: a connected LAN, a route via a gateway
//!   (a VPN, a site route) as narrow as the subnet or narrower, the `local` table's 127.0.0.0/8
//!   on `lo`;
//! - the addresses of every interface, also of one that is down and has no route yet.
//!
//! A network's bridge name that is already an interface of the host the agent did not make (no
//! recorded network of this instance has that bridge) and that carries an address other than
//! the network's gateway is refused as well: the agent would otherwise adopt it (a `Network`
//! with `bridge: br-lan` put its gateway on the LAN's bridge, and removing the network deleted
//! that bridge).
//!
//! What does not: a route via a gateway broader than the subnet (a corporate VPN's 10.0.0.0/8
//! would otherwise refuse every 10.x network of every device on it; the bridge takes only a
//! part of that route, and the operator knows whether their management station sits in it);
//! routes with prefix length 0 or 1 (the default route, and the two halves of
//! one that OpenVPN's `redirect-gateway def1` installs: every subnet overlaps them); broadcast,
//! multicast, anycast, blackhole, unreachable, prohibit and throw routes (they send nothing to
//! an interface; a bridge's more specific connected route already wins over a blackhole);
//! tables no rule looks up (a VRF's); and everything on this agent's own bridges and veths
//! (the bridges of the instance's recorded networks: the network's own, whose old subnet is
//! going away, and the others, which the driver's own overlap check between networks covers).
//!
//! Docker checks a new network's pool against the host's routes (`netutils.CheckRouteOverlaps`,
//! link-scope routes only since moby 23) only when it picks a pool itself, and a user's explicit
//! `--subnet` is not checked at all; Podman checks interface addresses when it picks a subnet.
//! Both leave an explicit overlapping subnet to the user, who is at the keyboard. Here nobody
//! is, so an explicit subnet is checked too, and routes via a gateway count when the bridge
//! would take all of them: a device managed over a VPN route 10.213.5.0/24 loses its management
//! station to a bridge for 10.213.0.0/16 just as it would lose a connected LAN.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::Error;

/// The kernel's table ids that have names.
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_MAIN: u32 = 254;
pub const TABLE_DEFAULT: u32 = 253;

/// What kind of route an entry is; only unicast and local routes can overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A route to an interface, directly or via a gateway.
    Unicast,
    /// One of the host's own addresses (the `local` table).
    Local,
    /// Broadcast, multicast, anycast, blackhole, unreachable, prohibit, throw, ...
    Other,
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A route of table `table`.
    Route {
        table: u32,
        kind: RouteKind,
        gateway: Option<Ipv4Addr>,
    },
    /// An interface address (`dest` is the address with its prefix length).
    Address,
}

/// One IPv4 route or address of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The route's destination, or the address with its prefix (host bits kept).
    pub dest: Ipv4Net,
    /// The interface, when there is one.
    pub device: Option<String>,
    pub source: Source,
}

impl fmt::Display for HostEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dev = self.device.as_deref().unwrap_or("(no interface)");
        match self.source {
            Source::Address => write!(f, "address {} of interface {dev}", self.dest),
            Source::Route {
                table,
                kind,
                gateway,
            } => {
                let what = if kind == RouteKind::Local {
                    "local route"
                } else {
                    "route"
                };
                write!(f, "{what} {}", self.dest.trunc())?;
                if let Some(gw) = gateway {
                    write!(f, " via {gw}")?;
                }
                write!(f, " dev {dev}")?;
                match table {
                    TABLE_MAIN => Ok(()),
                    TABLE_LOCAL => write!(f, " table local"),
                    TABLE_DEFAULT => write!(f, " table default"),
                    t => write!(f, " table {t}"),
                }
            }
        }
    }
}

/// The host's IPv4 routes and addresses, and the routing tables its rules look up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    pub entries: Vec<HostEntry>,
    /// Tables named by an IPv4 rule; empty means the kernel's default rules (local, main,
    /// default).
    pub tables: Vec<u32>,
}

impl HostView {
    /// Whether interface `device` carries `addr/prefix`.
    pub fn has_address(&self, device: &str, addr: Ipv4Addr, prefix: u8) -> bool {
        self.entries.iter().any(|e| {
            e.source == Source::Address
                && e.device.as_deref() == Some(device)
                && e.dest.addr() == addr
                && e.dest.prefix_len() == prefix
        })
    }

    /// The addresses of interface `device` other than `addr/prefix`.
    pub fn other_addresses(&self, device: &str, addr: Ipv4Addr, prefix: u8) -> Vec<&HostEntry> {
        self.entries
            .iter()
            .filter(|e| {
                e.source == Source::Address
                    && e.device.as_deref() == Some(device)
                    && !(e.dest.addr() == addr && e.dest.prefix_len() == prefix)
            })
            .collect()
    }

    fn table_used(&self, table: u32) -> bool {
        if self.tables.is_empty() {
            matches!(table, TABLE_LOCAL | TABLE_MAIN | TABLE_DEFAULT)
        } else {
            self.tables.contains(&table)
        }
    }
}

/// Whether two subnets share an address.
pub fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The host's routes and addresses that `subnet` overlaps, ignoring interfaces for which `own`
/// is true (this agent's bridges and veths) and what the module docs list; the most telling
/// first (routes of the tables other than `local`, then addresses, then local routes), each
/// once.
pub fn conflicts<'a>(
    subnet: Ipv4Net,
    host: &'a HostView,
    own: &dyn Fn(&str) -> bool,
) -> Vec<&'a HostEntry> {
    let mut found: Vec<&HostEntry> = host
        .entries
        .iter()
        .filter(|e| e.dest.prefix_len() > 1)
        .filter(|e| match e.source {
            Source::Address => true,
            Source::Route { table, kind, .. } => kind != RouteKind::Other && host.table_used(table),
        })
        .filter(|e| !e.device.as_deref().is_some_and(own))
        .filter(|e| overlap(subnet, e.dest))
        .filter(|e| !broader_via_gateway(e, subnet))
        .collect();
    let rank = |e: &HostEntry| match e.source {
        Source::Route {
            kind: RouteKind::Local,
            ..
        } => 2,
        Source::Route { table, .. } if table == TABLE_LOCAL => 2,
        Source::Route { .. } => 0,
        Source::Address => 1,
    };
    found.sort_by_key(|e| rank(e));
    let mut seen = std::collections::HashSet::new();
    found.retain(|e| seen.insert(e.to_string()));
    found
}

/// A route via a gateway that is broader than `subnet` (a VPN's or a site's 10.0.0.0/8 beside a
/// network 10.213.0.0/24): the bridge would take a small part of it, not the whole, so it is not
/// a conflict. One as narrow as the subnet or narrower is: all of it would go to the bridge.
fn broader_via_gateway(e: &HostEntry, subnet: Ipv4Net) -> bool {
    matches!(
        e.source,
        Source::Route {
            gateway: Some(_),
            ..
        }
    ) && e.dest.prefix_len() < subnet.prefix_len()
}

/// The sentence of a refusal or a warning: the first conflict and its interface, and how many
/// more there are.
pub fn describe(found: &[&HostEntry]) -> (String, String) {
    let Some(first) = found.first() else {
        return (String::new(), String::new());
    };
    let device = first
        .device
        .clone()
        .unwrap_or_else(|| "(no interface)".into());
    let mut text = format!("the host's {first}");
    let rest: Vec<String> = found[1..].iter().take(2).map(|e| e.to_string()).collect();
    if !rest.is_empty() {
        text.push_str(&format!(" (also {}", rest.join(", ")));
        if found.len() > 3 {
            text.push_str(&format!(" and {} more", found.len() - 3));
        }
        text.push(')');
    }
    (text, device)
}

fn nl_err(op: &str) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink {
        op: op.to_string(),
        reason: e.to_string(),
    }
}

/// Reads the host's IPv4 routes (every table), addresses and rule tables over rtnetlink, in
/// the namespace of `h`.
pub async fn read(h: &Handle) -> Result<HostView, Error> {
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut links = h.link().get().execute();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(nl_err("listing links for the host's routes"))?
    {
        for a in &msg.attributes {
            if let LinkAttribute::IfName(n) = a {
                names.insert(msg.header.index, n.clone());
            }
        }
    }
    let name = |i: u32| names.get(&i).cloned().or_else(|| Some(format!("#{i}")));
    let mut view = HostView::default();

    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(nl_err("listing the host's addresses"))?
    {
        if msg.header.family != AddressFamily::Inet {
            continue;
        }
        let mut seen = Vec::new();
        for a in &msg.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip))
            | AddressAttribute::Address(IpAddr::V4(ip)) = a
                && !seen.contains(ip)
                && let Ok(dest) = Ipv4Net::new(*ip, msg.header.prefix_len)
            {
                seen.push(*ip);
                view.entries.push(HostEntry {
                    dest,
                    device: name(msg.header.index),
                    source: Source::Address,
                });
            }
        }
    }

    // Table 0 asks for every table (the kernel dumps all of them without strict checking too).
    let mut req = RouteMessageBuilder::<Ipv4Addr>::new().build();
    req.header.table = RouteHeader::RT_TABLE_UNSPEC;
    let mut routes = h.route().get(req).execute();
    while let Some(msg) = routes
        .try_next()
        .await
        .map_err(nl_err("listing the host's routes"))?
    {
        if msg.header.address_family != AddressFamily::Inet {
            continue;
        }
        let mut table = u32::from(msg.header.table);
        let (mut dst, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
        for a in &msg.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::MultiPath(hops) => {
                    if oif.is_none() {
                        oif = hops.first().map(|n| n.interface_index);
                    }
                    if gateway.is_none() {
                        gateway = hops.first().and_then(|n| {
                            n.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                                _ => None,
                            })
                        });
                    }
                }
                _ => {}
            }
        }
        let kind = match msg.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            _ => RouteKind::Other,
        };
        let Ok(dest) = Ipv4Net::new(dst, msg.header.destination_prefix_length) else {
            continue;
        };
        view.entries.push(HostEntry {
            dest,
            device: oif.and_then(name),
            source: Source::Route {
                table,
                kind,
                gateway,
            },
        });
    }

    // The tables the rules look up. A host whose rules cannot be read is checked against the
    // default rules' tables.
    let mut rules = h.rule().get(IpVersion::V4).execute();
    loop {
        match rules.try_next().await {
            Ok(Some(msg)) => {
                if msg.header.action != RuleAction::ToTable {
                    continue;
                }
                let table = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RuleAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(msg.header.table));
                if table != 0 && !view.tables.contains(&table) {
                    view.tables.push(table);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading the host's routing rules; assuming the default ones");
                view.tables.clear();
                break;
            }
        }
    }
    Ok(view)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn route(dest: &str, dev: &str) -> HostEntry {
        HostEntry {
            dest: net(dest),
            device: Some(dev.into()),
            source: Source::Route {
                table: TABLE_MAIN,
                kind: RouteKind::Unicast,
                gateway: None,
            },
        }
    }

    fn with(mut e: HostEntry, table: u32, kind: RouteKind, gw: Option<&str>) -> HostEntry {
        e.source = Source::Route {
            table,
            kind,
            gateway: gw.map(|g| g.parse().unwrap()),
        };
        e
    }

    fn addr(a: &str, dev: &str) -> HostEntry {
        HostEntry {
            dest: net(a),
            device: Some(dev.into()),
            source: Source::Address,
        }
    }

    /// A typical edge device: LAN 192.168.1.0/24 on eth0 (DHCP, default route), lo, the
    /// agent's default bridge agent0 (10.213.0.0/16) and one of its veths.
    fn lan_host() -> HostView {
        HostView {
            entries: vec![
                with(
                    route("0.0.0.0/0", "eth0"),
                    TABLE_MAIN,
                    RouteKind::Unicast,
                    Some("192.168.1.254"),
                ),
                route("192.168.1.0/24", "eth0"),
                route("10.213.0.0/16", "agent0"),
                addr("192.168.1.5/24", "eth0"),
                addr("127.0.0.1/8", "lo"),
                addr("10.213.0.1/16", "agent0"),
                with(
                    route("127.0.0.0/8", "lo"),
                    TABLE_LOCAL,
                    RouteKind::Local,
                    None,
                ),
                with(
                    route("192.168.1.5/32", "eth0"),
                    TABLE_LOCAL,
                    RouteKind::Local,
                    None,
                ),
                with(
                    route("192.168.1.255/32", "eth0"),
                    TABLE_LOCAL,
                    RouteKind::Other,
                    None,
                ),
                with(
                    route("10.213.0.1/32", "agent0"),
                    TABLE_LOCAL,
                    RouteKind::Local,
                    None,
                ),
            ],
            tables: vec![TABLE_LOCAL, TABLE_MAIN, TABLE_DEFAULT],
        }
    }

    fn own(d: &str) -> bool {
        d == "agent0" || d == "agent-lan" || d.starts_with("agv")
    }

    fn found(subnet: &str, host: &HostView) -> Vec<String> {
        conflicts(net(subnet), host, &own)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_lan_subnet_is_refused_naming_route_address_and_interface() {
        let h = lan_host();
        let f = found("192.168.1.0/24", &h);
        assert_eq!(
            f,
            [
                "route 192.168.1.0/24 dev eth0",
                "address 192.168.1.5/24 of interface eth0",
                "local route 192.168.1.5/32 dev eth0 table local",
            ]
        );
        let (text, dev) = describe(&conflicts(net("192.168.1.0/24"), &h, &own));
        assert_eq!(dev, "eth0");
        assert!(text.starts_with("the host's route 192.168.1.0/24 dev eth0 (also "));
        // Inside it and around it overlap too.
        assert!(!found("192.168.1.128/25", &h).is_empty());
        assert!(!found("192.168.0.0/16", &h).is_empty());
    }

    #[test]
    fn other_subnets_and_the_default_route_do_not_count() {
        let h = lan_host();
        for s in [
            "192.168.2.0/24",
            "10.214.0.0/24",
            "172.30.0.0/16",
            "10.0.0.0/8",
        ] {
            // 10.0.0.0/8 contains agent0's subnet, but agent0 is the agent's own (the check
            // between networks covers it).
            assert!(found(s, &h).is_empty(), "{s}: {:?}", found(s, &h));
        }
    }

    #[test]
    fn loopback_counts() {
        let h = lan_host();
        let f = found("127.0.0.0/16", &h);
        assert_eq!(
            f,
            [
                "address 127.0.0.1/8 of interface lo",
                "local route 127.0.0.0/8 dev lo table local"
            ]
        );
    }

    #[test]
    fn the_agents_own_bridges_and_veths_are_ignored() {
        let mut h = lan_host();
        // The network's own bridge, moving from an old subnet to a new one.
        h.entries.push(route("172.31.0.0/24", "agent-lan"));
        h.entries.push(addr("172.31.0.1/24", "agent-lan"));
        h.entries.push(addr("172.31.0.9/32", "agv0011aabb"));
        assert!(found("172.31.0.0/16", &h).is_empty());
        // The same addresses on another interface count.
        h.entries.push(addr("172.31.0.1/24", "wlan0"));
        assert_eq!(
            found("172.31.0.0/16", &h),
            ["address 172.31.0.1/24 of interface wlan0"]
        );
    }

    #[test]
    fn gateway_routes_count_but_default_halves_and_other_types_do_not() {
        let mut h = lan_host();
        // A VPN's route the bridge would take whole counts (as narrow or narrower); a broader
        // one, of which it would take a part, does not.
        h.entries.push(with(
            route("10.0.0.0/8", "tun0"),
            TABLE_MAIN,
            RouteKind::Unicast,
            Some("10.8.0.1"),
        ));
        h.entries.push(with(
            route("10.220.5.0/24", "tun0"),
            TABLE_MAIN,
            RouteKind::Unicast,
            Some("10.8.0.1"),
        ));
        assert_eq!(
            found("10.220.0.0/16", &h),
            ["route 10.220.5.0/24 via 10.8.0.1 dev tun0"]
        );
        assert_eq!(
            found("10.220.5.0/24", &h),
            ["route 10.220.5.0/24 via 10.8.0.1 dev tun0"]
        );
        assert!(found("10.221.0.0/16", &h).is_empty());
        // OpenVPN's redirect-gateway def1 halves do not.
        let mut h = lan_host();
        for half in ["0.0.0.0/1", "128.0.0.0/1"] {
            h.entries.push(with(
                route(half, "tun0"),
                TABLE_MAIN,
                RouteKind::Unicast,
                Some("10.8.0.1"),
            ));
        }
        // Blackhole, unreachable, broadcast: no interface gets the traffic.
        h.entries.push(with(
            route("172.16.0.0/12", "lo"),
            TABLE_MAIN,
            RouteKind::Other,
            None,
        ));
        assert!(found("172.20.0.0/16", &h).is_empty());
        assert!(found("10.220.0.0/16", &h).is_empty());
    }

    #[test]
    fn tables_count_when_a_rule_looks_them_up() {
        let mut h = lan_host();
        h.entries.push(with(
            route("100.64.0.0/10", "tailscale0"),
            52,
            RouteKind::Unicast,
            None,
        ));
        assert!(found("100.100.0.0/16", &h).is_empty(), "no rule for 52");
        h.tables.push(52);
        assert_eq!(
            found("100.100.0.0/16", &h),
            ["route 100.64.0.0/10 dev tailscale0 table 52"]
        );
        // No rules read: the kernel's default ones.
        h.tables.clear();
        assert!(found("100.100.0.0/16", &h).is_empty());
        assert!(!found("192.168.1.0/24", &h).is_empty());
    }

    #[test]
    fn an_address_of_an_interface_without_a_route_counts() {
        // A LAN interface that is down has its address but no route yet.
        let h = HostView {
            entries: vec![addr("192.168.7.20/24", "eth1")],
            tables: Vec::new(),
        };
        assert_eq!(
            found("192.168.7.0/24", &h),
            ["address 192.168.7.20/24 of interface eth1"]
        );
        assert!(h.has_address("eth1", "192.168.7.20".parse().unwrap(), 24));
        let ip: Ipv4Addr = "192.168.7.20".parse().unwrap();
        assert!(h.other_addresses("eth1", ip, 24).is_empty());
        assert_eq!(h.other_addresses("eth1", ip, 16).len(), 1);
        assert_eq!(
            h.other_addresses("eth1", "192.168.7.1".parse().unwrap(), 24)[0].to_string(),
            "address 192.168.7.20/24 of interface eth1"
        );
        assert!(h.other_addresses("eth0", ip, 16).is_empty());
        assert!(!h.has_address("eth1", "192.168.7.20".parse().unwrap(), 16));
        assert!(!h.has_address("eth0", "192.168.7.20".parse().unwrap(), 24));
    }

    /// Reads this host's own view (root: the rule dump needs no privilege, but the test runs
    /// where the other netlink tests do): loopback is there as address and local route.
    #[test]
    fn reads_the_hosts_loopback() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("reads_the_hosts_loopback: skipped: needs root");
            return;
        }
        let h = crate::driver::network::netlink::run_in(None, |h| async move { read(&h).await })
            .unwrap();
        assert!(h.has_address("lo", Ipv4Addr::LOCALHOST, 8), "{h:?}");
        assert!(
            h.tables.contains(&TABLE_LOCAL) && h.tables.contains(&TABLE_MAIN),
            "{h:?}"
        );
        let f = found("127.0.0.0/16", &h);
        assert!(
            f.contains(&"local route 127.0.0.0/8 dev lo table local".to_string()),
            "{f:?}"
        );
        assert!(
            f.contains(&"address 127.0.0.1/8 of interface lo".to_string()),
            "{f:?}"
        );
    }

    #[test]
    fn describe_counts_the_rest() {
        let h = HostView {
            entries: (1..=5)
                .map(|i| addr(&format!("10.1.{i}.1/24"), &format!("eth{i}")))
                .collect(),
            tables: Vec::new(),
        };
        let f = conflicts(net("10.1.0.0/16"), &h, &own);
        let (text, dev) = describe(&f);
        assert_eq!(dev, "eth1");
        assert_eq!(
            text,
            "the host's address 10.1.1.1/24 of interface eth1 (also address 10.1.2.1/24 of \
             interface eth2, address 10.1.3.1/24 of interface eth3 and 2 more)"
        );
    }
}
