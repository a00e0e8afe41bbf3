//! Requests to the network driver and what it hands back, independent of the manifest types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol of a published or exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(format!("protocol {s:?}: allowed are tcp and udp")),
        }
    }
}

/// One port to publish (ranges already expanded, see [`super::ports::parse_port_spec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; `None` means every host address (including 127.0.0.1).
    pub host_ip: Option<Ipv4Addr>,
    /// Host port; 0 asks for a random free port, recorded so it stays the same on restarts.
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A port as it was published: the host port is the real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self
            .host_ip
            .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string());
        write!(
            f,
            "{host}:{}->{}:{}/{}",
            self.host_port, self.container_ip, self.container_port, self.protocol
        )
    }
}

/// A Docker-style link from the attaching container to a target container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    /// The target container's name.
    pub target_name: String,
    /// The name the source uses for it (hosts entry, `ALIAS_*` variables); defaults to the name.
    pub alias: Option<String>,
    /// The target's address on a network both share.
    pub target_ip: Ipv4Addr,
    /// The target's exposed ports (for `ALIAS_PORT_*` and, with `icc: false`, the allow rules;
    /// no ports means all traffic to the target is allowed).
    pub target_ports: Vec<(u16, Protocol)>,
    /// The target's environment (becomes `ALIAS_ENV_*`, except `HOME` and `PATH`).
    pub target_env: Vec<(String, String)>,
}

impl LinkRequest {
    /// The alias, or the target's name when no alias was given.
    pub fn alias(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.target_name)
    }
}

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own namespace with one veth per listed network (by network name; first one gets the
    /// default route).
    Bridge(Vec<String>),
    /// The host's network namespace: no isolation, no ports (they are the host's own).
    Host,
    /// Own namespace with only loopback.
    None,
    /// Share the namespace of another container (by container id).
    Container(String),
}

/// Everything needed to attach one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Stable container id (survives recreation if the daemon wants addresses to survive it).
    pub container_id: String,
    /// The container's name and hostname (its own `/etc/hosts` entry).
    pub name: String,
    pub mode: NetworkMode,
    pub ports: Vec<PortMapping>,
    pub links: Vec<LinkRequest>,
    /// More names of the container on a network (network name -> names), answered by the DNS
    /// server of that network besides the container's name.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// One network a container is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Host-side veth name.
    pub host_veth: String,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
}

/// The result of attaching: what the exec driver needs for the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    /// The network namespace to join (put in the OCI spec's `linux.namespaces` `network` path).
    /// `None` for host mode: the container keeps the host's namespace.
    pub netns: Option<PathBuf>,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PublishedPort>,
    /// Contents for the container's `/etc/hosts`.
    pub hosts: String,
    /// Link variables (`DB_PORT_5432_TCP_ADDR=...`) to add to the container's environment.
    pub env: Vec<(String, String)>,
    /// The name server for the container's resolv.conf: the DNS server on its first network's
    /// gateway, when that network has names on and the driver runs a DNS server.
    pub nameserver: Option<Ipv4Addr>,
}

/// What the store records per attached container: enough to tear it down after a crash and to
/// rebuild the firewall from scratch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub container_id: String,
    pub name: String,
    pub mode: NetworkMode,
    /// False while attaching: start-up cleanup undoes an attachment that never completed.
    pub complete: bool,
    /// The namespace this attachment created (and must delete), if any.
    pub owned_netns: Option<PathBuf>,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PublishedPort>,
    /// Allow rules for links (used when the bridge has `icc: false`).
    pub links: Vec<LinkAllow>,
    /// The container's aliases per network, for the DNS records (absent in records written
    /// before aliases existed: none).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// Traffic from `src` to `dst` allowed on a bridge with `icc: false`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkAllow {
    pub bridge: String,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// `None`: every port.
    pub port: Option<(u16, Protocol)>,
}
