//! Network driver: bridge, veth, IPAM, firewall (nftables/iptables), ports, links, hosts files.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
