//! Network driver: bridges, per-container network namespaces and veth pairs, addresses (IPAM),
//! the firewall (nftables or iptables), published ports, links and `/etc/hosts`.
//!
//! The driver does not know the manifest types or the SQLite store: it takes its own request
//! types ([`types`], [`config`]) and persists through the [`ipam::IpamStore`] trait (the daemon
//! implements it over SQLite; [`ipam::FileStore`] is a JSON-file implementation).
//!
//! Module map: [`config`] (networks and driver options), [`types`] (requests and results),
//! [`ipam`] (addresses, random host ports, records), [`ports`] (port specs, host port choice),
//! [`dns`] (service names: the records file and the DNS server process),
//! [`links`] (hosts file, link variables), [`firewall`] (the `FirewallDriver` trait and its
//! nftables and iptables backends), [`bridge`], [`netns`], [`netlink`] (kernel plumbing, every
//! netlink socket on a thread inside the namespace it manages), [`hostroutes`] (the host's own
//! routes and addresses a network's subnet must not overlap), [`driver`] (attach, detach,
//! networks), [`cleanup`] (start-up) and [`repair`] (drift). See `docs/network.md` for the whole picture.

pub mod bridge;
pub mod cleanup;
pub mod config;
pub mod dns;
pub mod driver;
pub mod firewall;
pub mod hostroutes;
pub mod ipam;
pub mod links;
pub mod netlink;
pub mod netns;
pub mod ports;
pub mod repair;
pub mod types;

pub use cleanup::CleanupReport;
pub use config::{DriverOptions, FirewallChoice, NetworkConfig};
pub use driver::NetworkDriver;
pub use firewall::{AnyFirewall, FirewallDriver, FirewallState};
pub use ipam::{FileStore, IpamStore, StoreError};
pub use repair::{Drift, Repair, RepairSnapshot};
pub use types::{
    AttachRequest, Attachment, AttachmentRecord, Endpoint, LinkRequest, NetworkMode, PortMapping,
    Protocol, PublishedPort,
};

/// Errors of the network driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {network}: {field}: {reason}")]
    Config {
        network: String,
        field: String,
        reason: String,
    },
    #[error("network driver option {field}: {reason}")]
    Options { field: String, reason: String },
    #[error(
        "network {network}: subnet {subnet} overlaps {conflict}; a bridge with this subnet would \
         take that traffic away from {device} and could cut the host off the network it is \
         reached through. Nothing was created: choose another subnet for network {network}"
    )]
    HostOverlap {
        network: String,
        subnet: String,
        /// The host's route or address (and how many more), e.g. `the host's route
        /// 192.168.1.0/24 dev eth0`.
        conflict: String,
        /// Its interface.
        device: String,
    },
    #[error("network {network}: no free address left in {subnet}; the subnet is full")]
    SubnetFull { network: String, subnet: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("port {spec:?}: {reason}")]
    PortSpec { spec: String, reason: String },
    #[error("container {container}: host port {port} is already published by container {owner}")]
    PortConflict {
        container: String,
        port: String,
        owner: String,
    },
    #[error("container {container}: host port {port} is in use by another process: {source}")]
    PortInUse {
        container: String,
        port: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container {container}: no free host port in {range}")]
    NoFreePort { container: String, range: String },
    #[error("firewall: {0}")]
    Firewall(#[from] firewall::Error),
    #[error("netlink: {op}: {reason}")]
    Netlink { op: String, reason: String },
    #[error("network namespace {path}: {op}: {reason}")]
    Netns {
        path: std::path::PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error("setting sysctl {key}={value}: {reason}")]
    Sysctl {
        key: String,
        value: String,
        reason: String,
    },
    #[error("container {container}: {reason}")]
    BadRequest { container: String, reason: String },
    #[error("container {container}: unknown network {network:?}; known networks: {known:?}")]
    UnknownNetwork {
        container: String,
        network: String,
        known: Vec<String>,
    },
    #[error("network {network} is in use by container(s) {containers:?}; detach them first")]
    NetworkInUse {
        network: String,
        containers: Vec<String>,
    },
    #[error("DNS server: {op} {}: {reason}", path.display())]
    Dns {
        op: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("container {container}: teardown failed: {}", failures.join("; "))]
    Teardown {
        container: String,
        failures: Vec<String>,
    },
}
