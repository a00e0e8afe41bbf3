//! Firewall drivers: the [`FirewallDriver`] trait, its two backends ([`nft::Nftables`],
//! [`iptables::Iptables`]) in the closed enum [`AnyFirewall`], and [`select`], which picks
//! nftables when `nft` works on this host and iptables otherwise.
//!
//! The driver is declarative: [`FirewallState`] is everything the agent wants (networks, published
//! ports, link allowances) and [`FirewallDriver::apply`] makes the host's rules equal to it,
//! replacing the agent's previous rules as a whole. That makes every apply idempotent, makes
//! start-up repair a plain apply of the recorded state, and makes "no leftovers" checkable by
//! comparing listings. Everything lives in the agent's own table (`ip <instance>`) or chains
//! (`<INSTANCE>-FORWARD`, `<INSTANCE>-INPUT`, `<INSTANCE>-PORTS`, `<INSTANCE>-POSTROUTING`),
//! except the jumps to those chains and, for the nftables backend on hosts where iptables filters
//! forwarded traffic too (Docker), two accept rules per bridge tagged `agent:<instance>` in
//! iptables' `DOCKER-USER` or `FORWARD` ([`host`]), and, where firewalld runs, the bridges in its
//! `trusted` zone ([`firewalld`], for both backends: done with the bridge, see `bridge.rs`).
//!
//! The rules, per bridge `B` with subnet `S` (both backends, same order):
//!
//! ```text
//! forward:      oif B, ct state established,related        accept
//!               iif != B, oif B, daddr C, dport P (published) accept
//!               iif B, oif B, saddr X, daddr Y [dport P]  accept   (links, icc: false)
//!               iif B, oif B                              accept | drop  (icc)
//!               iif B                                     accept   (outbound)
//!               oif B                                     drop     (unsolicited inbound)
//! input:        iif B, daddr 127.0.0.0/8, ct status dnat       accept   (replies, published ports)
//!               iif B, daddr 127.0.0.0/8                  drop     (CVE-2020-8558)
//!               iif B, daddr G, udp|tcp dport 53          accept   (DNS server on the gateway G)
//! nat:          prerouting and output: daddr is a local address -> jump ports
//! ports:        [daddr H] dport HP                        dnat to C:P
//! postrouting:  saddr S, oif != B                         masquerade   (outbound NAT)
//!               saddr 127.0.0.0/8, oif B                  masquerade   (host's 127.0.0.1 -> port)
//! ```
//!
//! Reaching a published port on 127.0.0.1 from the host itself: the DNAT happens in the output
//! hook, the kernel then routes a packet with source 127.0.0.1 out of the bridge, which it only
//! allows with `net.ipv4.conf.<bridge>.route_localnet=1` (set on the agent's own bridges only,
//! see `bridge.rs`), and the source is masqueraded to the bridge address so the container can
//! answer. This is what Docker does with `userland-proxy: false`; no proxy process is needed.
//!
//! The same sysctl would let a container reach the host's own services on 127.0.0.0/8 (send a
//! packet to 127.0.0.1 with the gateway's MAC address: CVE-2020-8558), so the input rules drop
//! everything from the agent's bridges to 127.0.0.0/8 except the replies of connections that
//! were DNATed, which is Kubernetes' `KUBE-FIREWALL` rule (`! --ctstate RELATED,ESTABLISHED,DNAT`).

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod conformance;
pub mod firewalld;
pub mod host;
pub mod iptables;
pub mod nft;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::config::FirewallChoice;
use super::types::{LinkAllow, PublishedPort};

pub use iptables::Iptables;
pub use nft::Nftables;

/// Errors of the firewall drivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("no usable firewall: {0}")]
    Unavailable(String),
    #[error("encoding nftables JSON: {0}")]
    Encode(String),
}

/// A bridge network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FwNetwork {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub icc: bool,
    /// The gateway address where the networks' DNS server listens for this bridge, when the
    /// network has service names on: the input rules accept udp and tcp port 53 to it.
    pub dns: Option<Ipv4Addr>,
}

/// A published port on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwPort {
    pub bridge: String,
    pub port: PublishedPort,
}

/// Everything the agent wants in the firewall. [`FirewallState::normalize`] sorts it so that the
/// same state always renders to the same rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    pub networks: Vec<FwNetwork>,
    pub ports: Vec<FwPort>,
    pub links: Vec<LinkAllow>,
}

impl FirewallState {
    /// Sorts and de-duplicates; drops ports and links of bridges not in `networks`.
    pub fn normalize(mut self) -> Self {
        self.networks.sort();
        self.networks.dedup_by(|a, b| a.bridge == b.bridge);
        let known = |b: &str| self.networks.iter().any(|n| n.bridge == b);
        self.ports.retain(|p| known(&p.bridge));
        self.links.retain(|l| known(&l.bridge));
        let key = |p: &FwPort| {
            (
                p.port.protocol,
                p.port.host_port,
                p.port.host_ip.map(u32::from),
                u32::from(p.port.container_ip),
                p.port.container_port,
                p.bridge.clone(),
            )
        };
        self.ports.sort_by_key(key);
        self.ports.dedup();
        self.links
            .sort_by_key(|l| (l.bridge.clone(), u32::from(l.src), u32::from(l.dst), l.port));
        self.links.dedup();
        self
    }
}

/// A firewall backend. Implementations own exactly one table or chain set, named from the
/// driver's instance, and never touch other rules except for the one jump per built-in chain
/// that the iptables backend needs.
pub trait FirewallDriver {
    /// `nftables` or `iptables`.
    fn name(&self) -> &'static str;
    /// Makes the agent's rules equal to `state` (one atomic batch where the backend allows).
    fn apply(&self, state: &FirewallState) -> Result<(), Error>;
    /// Removes every rule, chain and table of this instance; absent is success.
    fn remove_all(&self) -> Result<(), Error>;
    /// The instance's rules as the backend lists them (empty when there are none), for
    /// comparisons and leak checks.
    fn list(&self) -> Result<String, Error>;
}

/// The closed set of firewall backends.
#[derive(Debug, Clone)]
pub enum AnyFirewall {
    Nftables(Nftables),
    Iptables(Iptables),
}

impl FirewallDriver for AnyFirewall {
    fn name(&self) -> &'static str {
        match self {
            AnyFirewall::Nftables(f) => f.name(),
            AnyFirewall::Iptables(f) => f.name(),
        }
    }
    fn apply(&self, state: &FirewallState) -> Result<(), Error> {
        match self {
            AnyFirewall::Nftables(f) => f.apply(state),
            AnyFirewall::Iptables(f) => f.apply(state),
        }
    }
    fn remove_all(&self) -> Result<(), Error> {
        match self {
            AnyFirewall::Nftables(f) => f.remove_all(),
            AnyFirewall::Iptables(f) => f.remove_all(),
        }
    }
    fn list(&self) -> Result<String, Error> {
        match self {
            AnyFirewall::Nftables(f) => f.list(),
            AnyFirewall::Iptables(f) => f.list(),
        }
    }
}

impl AnyFirewall {
    /// Why forwarded traffic on `bridges` would be dropped by another firewall of the host (one
    /// sentence each; empty when nothing known drops it). See [`host`].
    pub fn forward_problems(&self, instance: &str, bridges: &[String]) -> Vec<String> {
        let own = match self {
            AnyFirewall::Nftables(_) => Some(instance),
            AnyFirewall::Iptables(_) => None,
        };
        host::forward_problems(instance, own, bridges)
    }
}

/// Picks the backend: the configured one, or for [`FirewallChoice::Auto`] nftables when
/// `nft list tables` works and iptables when `iptables -L` works.
pub fn select(choice: FirewallChoice, instance: &str) -> Result<AnyFirewall, Error> {
    let nft = || AnyFirewall::Nftables(Nftables::new(instance));
    let ipt = || AnyFirewall::Iptables(Iptables::new(&instance.to_uppercase()));
    match choice {
        FirewallChoice::Nftables => Ok(nft()),
        FirewallChoice::Iptables => Ok(ipt()),
        FirewallChoice::Auto => {
            let nft_err = match run("nft", &["list", "tables"], None) {
                Ok(_) => return Ok(nft()),
                Err(e) => e,
            };
            match run("iptables", &["-w", "-n", "-L", "FORWARD"], None) {
                Ok(_) => Ok(ipt()),
                Err(ipt_err) => Err(Error::Unavailable(format!(
                    "nftables: {nft_err}; iptables: {ipt_err}; install the nftables or iptables \
                     package"
                ))),
            }
        }
    }
}

/// Runs a command, feeding `stdin`; returns stdout or an error with stderr.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    use std::io::Write;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Spawn {
        program: program.to_string(),
        source: e,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| Error::Spawn {
            program: program.to_string(),
            source: e,
        })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Spawn {
        program: program.to_string(),
        source: e,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// 127.0.0.0/8, the source masqueraded for host-local access to published ports.
pub(crate) fn loopback_net() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::driver::network::types::Protocol;

    /// A state with two bridges (one `icc: false`), ports on both and a link.
    pub(crate) fn sample() -> FirewallState {
        FirewallState {
            networks: vec![
                FwNetwork {
                    bridge: "brb".into(),
                    subnet: "10.99.2.0/24".parse().unwrap(),
                    icc: false,
                    dns: None,
                },
                FwNetwork {
                    bridge: "bra".into(),
                    subnet: "10.99.1.0/24".parse().unwrap(),
                    icc: true,
                    dns: Some(Ipv4Addr::new(10, 99, 1, 1)),
                },
            ],
            ports: vec![
                FwPort {
                    bridge: "bra".into(),
                    port: PublishedPort {
                        host_ip: None,
                        host_port: 8080,
                        container_ip: Ipv4Addr::new(10, 99, 1, 2),
                        container_port: 80,
                        protocol: Protocol::Tcp,
                    },
                },
                FwPort {
                    bridge: "brb".into(),
                    port: PublishedPort {
                        host_ip: Some(Ipv4Addr::LOCALHOST),
                        host_port: 5353,
                        container_ip: Ipv4Addr::new(10, 99, 2, 2),
                        container_port: 53,
                        protocol: Protocol::Udp,
                    },
                },
                FwPort {
                    bridge: "gone".into(),
                    port: PublishedPort {
                        host_ip: None,
                        host_port: 1,
                        container_ip: Ipv4Addr::new(10, 99, 3, 2),
                        container_port: 1,
                        protocol: Protocol::Tcp,
                    },
                },
            ],
            links: vec![
                LinkAllow {
                    bridge: "brb".into(),
                    src: Ipv4Addr::new(10, 99, 2, 3),
                    dst: Ipv4Addr::new(10, 99, 2, 2),
                    port: Some((53, Protocol::Udp)),
                },
                LinkAllow {
                    bridge: "brb".into(),
                    src: Ipv4Addr::new(10, 99, 2, 4),
                    dst: Ipv4Addr::new(10, 99, 2, 2),
                    port: None,
                },
            ],
        }
        .normalize()
    }

    #[test]
    fn normalize_sorts_and_drops_unknown_bridges() {
        let s = sample();
        assert_eq!(s.networks[0].bridge, "bra");
        assert_eq!(s.ports.len(), 2);
        assert!(s.ports.iter().all(|p| p.bridge != "gone"));
        assert_eq!(s.clone().normalize(), s, "idempotent");
    }
}
