//! Network definitions ([`NetworkConfig`]) and the driver's own options ([`DriverOptions`]).
//!
//! These are the network driver's request types. They do not depend on the manifest types: the
//! reconciler translates `Network` manifests and the agent config into them.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::Error;

/// The default bridge's name. Not Docker's `docker0`, not Podman's `podman0`/`cni-podman0`.
pub const DEFAULT_BRIDGE: &str = "agent0";
/// The default network's name, as containers refer to it.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default subnet: clear of Docker's 172.17.0.0/16 and Podman's 10.88.0.0/16.
pub const DEFAULT_SUBNET: &str = "10.213.0.0/16";
/// The default MTU of bridges and veths.
pub const DEFAULT_MTU: u32 = 1500;

/// One bridge network: the bridge device, its IPv4 subnet and gateway, and its policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The network's name (what containers list in their networks).
    pub name: String,
    /// The Linux bridge device (at most 15 bytes, letters, digits, `-`, `_`, `.`).
    pub bridge: String,
    /// The IPv4 subnet containers get addresses from. IPv4 is required; IPv6 is not supported yet.
    pub subnet: Ipv4Net,
    /// The bridge's own address; `None` means the subnet's first host address.
    pub gateway: Option<Ipv4Addr>,
    /// MTU of the bridge and of every veth attached to it.
    pub mtu: u32,
    /// Inter-container communication: when false, containers on this bridge reach each other only
    /// over links (as Docker's `--icc=false`).
    pub icc: bool,
    /// Service names: a DNS server on the gateway answers the names and aliases of the
    /// containers on this network (see [`super::dns`]). Absent in networks recorded before it
    /// existed: on.
    #[serde(default = "yes")]
    pub dns: bool,
}

fn yes() -> bool {
    true
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            name: DEFAULT_NETWORK.to_string(),
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: DEFAULT_SUBNET.parse().unwrap_or_else(|_| {
                Ipv4Net::new(Ipv4Addr::new(10, 213, 0, 0), 16).unwrap_or_default()
            }),
            gateway: None,
            mtu: DEFAULT_MTU,
            icc: true,
            dns: true,
        }
    }
}

impl NetworkConfig {
    /// The subnet in canonical form (host bits cleared).
    pub fn network(&self) -> Ipv4Net {
        self.subnet.trunc()
    }

    /// The bridge's address: the configured gateway or the subnet's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.network().network()) + 1))
    }

    /// Checks names, subnet size, gateway placement and MTU; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, reason: String| Error::Config {
            network: self.name.clone(),
            field: field.to_string(),
            reason,
        };
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(bad("name", "must be 1 to 64 characters".into()));
        }
        validate_ifname(&self.bridge).map_err(|r| bad("bridge", r))?;
        let prefix = self.subnet.prefix_len();
        if !(8..=30).contains(&prefix) {
            return Err(bad(
                "subnet",
                format!("{}: prefix length must be between /8 and /30", self.subnet),
            ));
        }
        let gw = self.gateway();
        if !self.host_range_contains(gw) {
            return Err(bad(
                "gateway",
                format!("{gw} is not a usable host address of {}", self.network()),
            ));
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err(bad(
                "mtu",
                format!("{} is out of range; allowed is 576 to 65535", self.mtu),
            ));
        }
        Ok(())
    }

    /// True when `ip` is inside the subnet and neither its network nor its broadcast address.
    pub fn host_range_contains(&self, ip: Ipv4Addr) -> bool {
        let net = self.network();
        net.contains(&ip) && ip != net.network() && ip != net.broadcast()
    }
}

/// Checks a Linux interface name: 1 to 15 bytes of `[A-Za-z0-9_.-]`.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?}: interface names are 1 to 15 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "{name:?}: allowed are letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// The number of hex digits after the veth prefix (`<prefix><8 hex>`).
pub const VETH_SUFFIX_LEN: usize = 8;

/// Why veths named `<prefix><8 hex>` would collide with interfaces named by others, if they
/// would: the agent's own bridges of `Network` manifests (`agent-<network>`, any name) and the
/// host veths of CNI plugins (Kubernetes, Podman with CNI: exactly `veth<8 hex>`). Docker's
/// `veth<7 hex>` cannot collide: the agent matches the suffix length exactly.
fn veth_prefix_clash(prefix: &str) -> Option<&'static str> {
    if prefix.starts_with("agent-") {
        Some("bridges of Network manifests are named agent-<network>")
    } else if prefix == "veth" {
        Some("CNI plugins (Kubernetes, Podman) name their host veths veth<8 hex>")
    } else {
        None
    }
}

/// Which firewall backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallChoice {
    /// nftables when `nft` works on this host, iptables otherwise.
    #[default]
    Auto,
    Nftables,
    Iptables,
}

/// Options of one network driver instance. Everything the driver creates on the host is named
/// from these, which is how start-up cleanup recognises what it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverOptions {
    /// The instance name: the nftables table (`ip <instance>`), the iptables chain prefix
    /// (upper-cased: `AGENT-FORWARD`, ...), and the netns name prefix (`<instance>-<container>`).
    /// Lowercase letters, digits and `_`, 1 to 16 characters.
    pub instance: String,
    /// Prefix of host-side veth names (`<prefix><8 hex>`), 1 to 6 characters. Prefixes whose
    /// names could collide with others' interfaces (`veth`, `agent-`) are refused.
    pub veth_prefix: String,
    /// Where named network namespaces are bind-mounted (`/run/netns` makes them visible to
    /// `ip netns`).
    pub netns_dir: PathBuf,
    /// Firewall backend.
    pub firewall: FirewallChoice,
    /// Host ports handed out for "random" publications (inclusive range).
    pub random_ports: (u16, u16),
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            instance: "agent".into(),
            veth_prefix: "agv".into(),
            netns_dir: PathBuf::from("/run/netns"),
            firewall: FirewallChoice::Auto,
            random_ports: (32768, 60999),
        }
    }
}

impl DriverOptions {
    /// Checks the name parts; the error says which option and what is allowed.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, reason: String| Error::Options {
            field: field.to_string(),
            reason,
        };
        if self.instance.is_empty()
            || self.instance.len() > 16
            || !self
                .instance
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(bad(
                "instance",
                format!(
                    "{:?}: 1 to 16 characters of lowercase letters, digits and '_'",
                    self.instance
                ),
            ));
        }
        if self.veth_prefix.is_empty()
            || self.veth_prefix.len() > 6
            || validate_ifname(&self.veth_prefix).is_err()
        {
            return Err(bad(
                "veth_prefix",
                format!(
                    "{:?}: 1 to 6 characters of letters, digits, '-', '_', '.'",
                    self.veth_prefix
                ),
            ));
        }
        if let Some(why) = veth_prefix_clash(&self.veth_prefix) {
            return Err(bad(
                "veth_prefix",
                format!(
                    "{:?}: names {}<8 hex> could collide with others' interfaces: {why}; \
                     choose another prefix",
                    self.veth_prefix, self.veth_prefix
                ),
            ));
        }
        let (lo, hi) = self.random_ports;
        if lo == 0 || lo > hi {
            return Err(bad(
                "random_ports",
                format!("{lo}-{hi}: must be a non-empty range of ports 1 to 65535"),
            ));
        }
        Ok(())
    }

    /// Whether `name` has the shape of this instance's host-side veths: the prefix followed by
    /// exactly [`VETH_SUFFIX_LEN`] lowercase hex digits. Exact, so that instances whose
    /// prefixes nest (`asc` and `ascd`) never take each other's veths for their own.
    pub fn owns_veth_name(&self, name: &str) -> bool {
        name.strip_prefix(self.veth_prefix.as_str())
            .is_some_and(|rest| {
                rest.len() == VETH_SUFFIX_LEN
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }

    /// The iptables chain prefix (`AGENT` for instance `agent`).
    pub fn chain_prefix(&self) -> String {
        self.instance.to_uppercase()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_network_is_valid_and_clear_of_docker_and_podman() {
        let n = NetworkConfig::default();
        n.validate().unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        let docker: Ipv4Net = "172.17.0.0/16".parse().unwrap();
        let podman: Ipv4Net = "10.88.0.0/16".parse().unwrap();
        assert!(!n.subnet.contains(&docker.network()) && !docker.contains(&n.subnet.network()));
        assert!(!n.subnet.contains(&podman.network()) && !podman.contains(&n.subnet.network()));
        DriverOptions::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut n = NetworkConfig {
            bridge: "a-very-long-bridge-name".into(),
            ..Default::default()
        };
        assert!(n.validate().unwrap_err().to_string().contains("bridge"));
        n.bridge = "br0".into();
        n.gateway = Some(Ipv4Addr::new(10, 1, 0, 1));
        let e = n.validate().unwrap_err().to_string();
        assert!(e.contains("gateway") && e.contains("10.1.0.1"), "{e}");
        n.gateway = Some(Ipv4Addr::new(10, 213, 255, 255));
        assert!(n.validate().is_err(), "broadcast address is no gateway");
        n.gateway = None;
        n.subnet = "10.0.0.0/31".parse().unwrap();
        assert!(n.validate().unwrap_err().to_string().contains("subnet"));
        n.subnet = "10.0.0.0/24".parse().unwrap();
        n.mtu = 100;
        assert!(n.validate().unwrap_err().to_string().contains("mtu"));
        let o = DriverOptions {
            instance: "Bad-Name".into(),
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("instance"));
    }

    #[test]
    fn veth_names_match_exactly() {
        let o = |p: &str| DriverOptions {
            veth_prefix: p.into(),
            ..Default::default()
        };
        let (asc, ascd) = (o("asc"), o("ascd"));
        assert!(asc.owns_veth_name("asc0123abcd"));
        assert!(ascd.owns_veth_name("ascd0123abcd"));
        // Nested prefixes never take each other's names.
        assert!(!asc.owns_veth_name("ascd0123abcd"));
        assert!(!ascd.owns_veth_name("ascd123abcd"));
        for bad in [
            "asc",
            "asc0123abc",
            "asc0123ABCD",
            "asc0123abcg",
            "asc0123abcd0",
            "x0123abcd",
        ] {
            assert!(!asc.owns_veth_name(bad), "{bad}");
        }
    }

    #[test]
    fn veth_prefixes_that_collide_are_refused() {
        for bad in ["veth", "agent-", "agent-x"] {
            let o = DriverOptions {
                veth_prefix: bad.into(),
                ..Default::default()
            };
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("veth_prefix") && e.contains(bad), "{e}");
        }
        for good in [
            "agv", "vet", "veth0", "vethx", "ve", "agent", "agent0", "ag",
        ] {
            let o = DriverOptions {
                veth_prefix: good.into(),
                ..Default::default()
            };
            assert!(o.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn gateway_uses_truncated_subnet() {
        let n = NetworkConfig {
            subnet: "10.9.8.77/24".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 9, 8, 1));
        assert_eq!(n.network().to_string(), "10.9.8.0/24");
    }
}
