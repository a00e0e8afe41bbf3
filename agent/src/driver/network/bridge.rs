//! Bridges and the kernel settings they need.
//!
//! - `net.ipv4.ip_forward=1`: containers' outbound traffic and published ports are routed (as
//!   Docker does when it starts).
//! - `net.ipv4.conf.<bridge>.route_localnet=1`, on the agent's bridges only: lets the host reach
//!   published ports on 127.0.0.1 (see [`super::firewall`]).
//! - `net.bridge.bridge-nf-call-iptables=1` when a bridge has `icc: false`: traffic between two
//!   ports of one bridge is switched, not routed, and only passes the firewall's forward hook
//!   when the bridge netfilter hook is on (Docker sets the same).
//! - where firewalld runs, the bridge in its `trusted` zone while it exists (runtime only; see
//!   [`super::firewall::firewalld`]).

use std::fs;
use std::path::Path;

use super::config::NetworkConfig;
use super::{Error, netlink};

/// Writes a sysctl under `/proc/sys`; the error names the key.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), Error> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(&path, value).map_err(|e| Error::Sysctl {
        key: key.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// Creates (or repairs) the bridge of `net`: device, MTU, gateway address, up, sysctls.
pub fn ensure(net: &NetworkConfig) -> Result<(), Error> {
    let (name, mtu, gw, prefix) = (
        net.bridge.clone(),
        net.mtu,
        net.gateway(),
        net.subnet.prefix_len(),
    );
    netlink::run_in(None, move |h| async move {
        netlink::ensure_bridge(&h, &name, mtu, gw, prefix).await
    })?;
    set_sysctl("net.ipv4.ip_forward", "1")?;
    // The interface name may contain '.', which sysctl paths keep as is.
    let localnet = Path::new("/proc/sys/net/ipv4/conf")
        .join(&net.bridge)
        .join("route_localnet");
    fs::write(&localnet, "1").map_err(|e| Error::Sysctl {
        key: format!("net.ipv4.conf.{}.route_localnet", net.bridge),
        value: "1".into(),
        reason: e.to_string(),
    })?;
    if !net.icc {
        set_sysctl("net.bridge.bridge-nf-call-iptables", "1").map_err(|e| match e {
            Error::Sysctl { key, value, reason } => Error::Sysctl {
                key,
                value,
                reason: format!(
                    "{reason}; icc: false needs the br_netfilter kernel module \
                     (modprobe br_netfilter)"
                ),
            },
            other => other,
        })?;
    }
    // Not fatal: `forward_problems` reports a bridge firewalld still drops.
    if let Err(e) = super::firewall::firewalld::trust(std::slice::from_ref(&net.bridge)) {
        tracing::warn!(bridge = %net.bridge, error = %e, "firewalld: adding the bridge to the trusted zone");
    }
    Ok(())
}

/// Deletes the bridge device (absent is fine).
pub fn remove(bridge: &str) -> Result<(), Error> {
    if let Err(e) = super::firewall::firewalld::untrust(bridge) {
        tracing::warn!(bridge, error = %e, "firewalld: removing the bridge from the trusted zone");
    }
    let name = bridge.to_string();
    netlink::run_in(None, move |h| async move {
        netlink::delete_link(&h, &name).await.map(drop)
    })
}
