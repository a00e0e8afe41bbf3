//! Network driver: bridges, per-container network namespaces and veth pairs, addresses (IPAM),
//! the firewall (nftables or iptables), published ports, links and `/etc/hosts`.
//!
//! The driver does not know the manifest types or the SQLite store: it takes its own request
//! types ([`types`], [`config`]) and persists through the [`ipam::IpamStore`] trait (the daemon
//! implements it over SQLite; [`ipam::FileStore`] is a JSON-file implementation).
//!
//! Module map: [`config`] (networks and driver options), [`types`] (requests and results),
//! [`ipam`] (addresses, random host ports, records), [`ports`] (port specs, host port choice),
//! [`links`] (hosts file, link variables), [`firewall`] (the `FirewallDriver` trait and its
//! nftables and iptables backends). See `docs/network.md` for the whole picture.

pub mod config;
pub mod firewall;
pub mod ipam;
pub mod links;
pub mod ports;
pub mod types;

pub use config::{DriverOptions, FirewallChoice, NetworkConfig};
pub use firewall::{AnyFirewall, FirewallDriver, FirewallState};
pub use ipam::{FileStore, IpamStore, StoreError};
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
}
