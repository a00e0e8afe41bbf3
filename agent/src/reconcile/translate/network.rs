//! The daemon's side of networking: the network driver over the state store, and how effective
//! container configs become attach requests and OCI spec fields.
//!
//! - The driver persists through [`SqliteIpam`] (addresses, random host ports, attachment records
//!   and its networks in `state.db`). The driver keys everything by the container's runtime id;
//!   the store keys addresses and ports by name. So a container row is written *before* it is
//!   attached, and a recreated container's row is updated in place with its new id: its address
//!   and random host ports carry over. Removing the container (row deleted) releases them.
//! - Bridge mode (the default) gets its own namespace `/run/netns/<instance>-<id>`, one veth per
//!   network, the published ports, link entries in `/etc/hosts` and Docker's link variables.
//!   A container that names no network joins the agent's default network ([`DEFAULT_NETWORK`],
//!   bridge, subnet and MTU from `[network]` of the config), created the first time a container
//!   needs it and kept afterwards, like Docker's `docker0`. Its name is not a DNS label, so no
//!   manifest can name it, and the planner leaves it alone.
//! - `none` and `host` need no driver (the exec driver makes an empty namespace or uses the
//!   host's). `container:NAME` joins the namespace of NAME: its bridge namespace, or the host's,
//!   or (for a `none` container) its process's namespace.
//! - Locking: the driver's store calls lock the shared store for one short transaction each, so
//!   nothing here may be called while the caller holds the store's lock.
//!
//! Start-up ([`Net::startup`]): bridges of recorded networks are brought back (after a reboot),
//! then everything the agent's names cover that no container in the store accounts for is
//! removed: veths, namespaces, attachment records, addresses and port records, firewall rules.
//! Running containers are not attached again (their namespaces and veths are still there); the
//! firewall is rebuilt from the records, so their published ports keep working.
//!
//! Drift ([`Net::drift`], at start-up, resync and `agent apply`): each running container's
//! namespace and veths are checked, changing nothing; what drifted becomes a
//! [`crate::plan::Change::RepairNetwork`] work that the applier runs: a missing veth (deleted by
//! hand) or bridge is created again inside the existing namespace, with the same address, and
//! the container keeps running; a namespace that is gone is attached again and the container
//! restarted, since its processes hold the old one.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::daemon::config::Config;
use crate::driver::exec::spec;
use crate::driver::network::{
    self as net, AttachRequest, CleanupReport, DriverOptions, LinkRequest, NetworkDriver,
    PortMapping, Protocol, Repair,
};
use crate::manifest::NetworkMode;
use crate::plan::EffectiveContainer;
use crate::plan::effective::EffectiveNetwork;
use crate::store::{ContainerRecord, ContainerState, SqliteIpam, Store};

/// The agent's default bridge network, used by bridge-mode containers that name no network.
pub const DEFAULT_NETWORK: &str = "_default";

/// The store shared by the daemon and the driver.
pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the shared store (a poisoned lock is taken over: the panicking transaction rolled back).
pub fn lock(store: &SharedStore) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why networking a container or a network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Driver(#[from] net::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("container {container}: {reason}")]
    Container { container: String, reason: String },
    #[error("network {network}: {reason}")]
    Network { network: String, reason: String },
}

/// What the exec driver's spec gets from networking.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub network: spec::NetworkMode,
    /// The container's `/etc/hosts` (`None`: the exec driver's default).
    pub hosts: Option<String>,
    /// `/etc/resolv.conf` (`None`: the host's, without loopback servers).
    pub resolv_conf: Option<String>,
    /// Link variables, added to the environment where the manifest does not set them.
    pub env: Vec<(String, String)>,
    /// The namespace the container joins, recorded in the store.
    pub netns: Option<PathBuf>,
    /// Addresses and ports, for the log.
    pub summary: String,
}

/// The network driver of the daemon and its default network.
pub struct Net {
    driver: NetworkDriver,
    default: net::NetworkConfig,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("driver", &self.driver).finish()
    }
}

/// True when the container is networked by the driver (bridge mode).
pub fn uses_driver(config: &EffectiveContainer) -> bool {
    config.fixed.network_mode == NetworkMode::Bridge
}

fn proto(p: crate::manifest::Protocol) -> Option<Protocol> {
    match p {
        crate::manifest::Protocol::Tcp => Some(Protocol::Tcp),
        crate::manifest::Protocol::Udp => Some(Protocol::Udp),
        crate::manifest::Protocol::Sctp => None,
    }
}

/// The driver's view of a `Network` manifest.
pub fn driver_network(n: &EffectiveNetwork) -> Result<net::NetworkConfig, NetError> {
    let bad = |reason: String| NetError::Network {
        network: n.name.clone(),
        reason,
    };
    let subnet = format!("{}/{}", n.subnet.addr, n.subnet.prefix)
        .parse()
        .map_err(|e| bad(format!("subnet: {e}")))?;
    let gateway = match n.gateway {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => return Err(bad(format!("gateway {v6}: only IPv4 is supported"))),
    };
    Ok(net::NetworkConfig {
        name: n.name.clone(),
        bridge: n.bridge.clone(),
        subnet,
        gateway,
        mtu: n.mtu,
        icc: n.icc,
        dns: true,
    })
}

impl Net {
    /// The driver over `store`, with the options and default network of `config`.
    pub fn open(config: &Config, store: SharedStore) -> Result<Net, String> {
        let n = &config.network;
        let opts = DriverOptions {
            instance: n.instance.clone(),
            veth_prefix: n.veth_prefix.clone(),
            firewall: n.firewall,
            ..DriverOptions::default()
        };
        let subnet = n
            .subnet
            .parse()
            .map_err(|e| format!("network.subnet {:?}: {e}", n.subnet))?;
        let default = net::NetworkConfig {
            name: DEFAULT_NETWORK.into(),
            bridge: n.bridge.clone(),
            subnet,
            gateway: None,
            mtu: n.mtu,
            icc: true,
            dns: true,
        };
        default.validate().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("finding the agent binary for the DNS server: {e}"))?;
        let driver = NetworkDriver::new(opts, Arc::new(SqliteIpam::new(store)))
            .map_err(|e| e.to_string())?
            .with_dns(net::dns::DnsOptions {
                dir: config.state_dir.join("dns"),
                upstreams: n.dns_upstreams.clone(),
                exe,
            });
        Ok(Net { driver, default })
    }

    pub fn driver(&self) -> &NetworkDriver {
        &self.driver
    }

    /// Replaces the DNS aliases of container `id` (runtime id) in the network driver's records;
    /// nothing when it is not attached (its next attach carries them).
    pub fn update_aliases(
        &self,
        id: &str,
        aliases: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(), NetError> {
        Ok(self.driver.update_aliases(id, aliases)?)
    }

    /// Creates or repairs a `Network` manifest's bridge, subnet and firewall.
    pub fn create_network(&self, n: &EffectiveNetwork) -> Result<(), NetError> {
        Ok(self.driver.ensure_network(&driver_network(n)?)?)
    }

    /// Removes a network (refused while containers are attached to it).
    pub fn remove_network(&self, name: &str) -> Result<(), NetError> {
        Ok(self.driver.remove_network(name)?)
    }

    /// The networks a bridge-mode container joins; the default network is set up on first use.
    fn networks_of(&self, config: &EffectiveContainer) -> Result<Vec<String>, NetError> {
        if config.fixed.networks.is_empty() {
            let recorded = self.driver.store().networks().map_err(net::Error::from)?;
            let d = &self.default;
            if !recorded.iter().any(|n| {
                n.name == d.name
                    && n.bridge == d.bridge
                    && n.network() == d.network()
                    && n.mtu == d.mtu
            }) {
                self.driver.ensure_network(&self.default)?;
            }
            Ok(vec![DEFAULT_NETWORK.to_string()])
        } else {
            Ok(config.fixed.networks.clone())
        }
    }

    /// How a container is networked, attaching it first in bridge mode. The container's row
    /// (with runtime id `id`) must be in the store already.
    pub fn wire(
        &self,
        store: &SharedStore,
        id: &str,
        config: &EffectiveContainer,
    ) -> Result<Wiring, NetError> {
        let f = &config.fixed;
        let plain = |network| Wiring {
            network,
            hosts: None,
            resolv_conf: resolv_conf(config),
            env: Vec::new(),
            netns: None,
            summary: String::new(),
        };
        match &f.network_mode {
            NetworkMode::None => return Ok(plain(spec::NetworkMode::None)),
            NetworkMode::Host => return Ok(plain(spec::NetworkMode::Host)),
            NetworkMode::Container(target) => {
                let rec = lock(store).transaction(|tx| tx.container(target))?;
                let rec = rec.ok_or_else(|| NetError::Container {
                    container: config.name.clone(),
                    reason: format!("network mode container:{target}: no such container"),
                })?;
                let mode = container_netns(&rec).ok_or_else(|| NetError::Container {
                    container: config.name.clone(),
                    reason: format!(
                        "network mode container:{target}: {target} is not running, so it has no \
                         network namespace to share"
                    ),
                })?;
                let mut w = plain(mode.clone());
                if let spec::NetworkMode::Path(p) = mode {
                    w.netns = Some(p);
                }
                return Ok(w);
            }
            NetworkMode::Bridge => {}
        }
        let networks = self.networks_of(config)?;
        let mut ports = Vec::new();
        for p in &f.ports {
            let host_ip = match p.host_ip {
                None => None,
                Some(IpAddr::V4(v4)) if v4.is_unspecified() => None,
                Some(IpAddr::V4(v4)) => Some(v4),
                Some(IpAddr::V6(_)) => {
                    return Err(NetError::Container {
                        container: config.name.clone(),
                        reason: format!("port {p}: IPv6 host addresses are not supported yet"),
                    });
                }
            };
            let protocol = proto(p.protocol).ok_or_else(|| NetError::Container {
                container: config.name.clone(),
                reason: format!("port {p}: sctp is not supported; use tcp or udp"),
            })?;
            ports.push(PortMapping {
                host_ip,
                host_port: p.host_port.unwrap_or(0),
                container_port: p.container_port,
                protocol,
            });
        }
        let links = self.link_requests(store, config, &networks)?;
        let req = AttachRequest {
            container_id: id.to_string(),
            name: config.name.clone(),
            mode: net::NetworkMode::Bridge(networks),
            ports,
            links,
            aliases: config.live.aliases.clone(),
        };
        let att = self.driver.attach(&req)?;
        // Fixed and random host ports alike, for `agent ps` (random ones were recorded already).
        let bindings: Vec<crate::store::PortBinding> = att
            .ports
            .iter()
            .map(|p| crate::store::PortBinding {
                container: config.name.clone(),
                host_ip: IpAddr::V4(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)),
                host_port: p.host_port,
                proto: match p.protocol {
                    Protocol::Tcp => crate::store::Protocol::Tcp,
                    Protocol::Udp => crate::store::Protocol::Udp,
                },
                container_port: p.container_port,
            })
            .collect();
        lock(store).transaction(|tx| tx.set_container_ports(&config.name, &bindings))?;
        let ip = att.endpoints.first().map(|e| e.ip);
        let summary = att
            .endpoints
            .iter()
            .map(|e| format!("{} {}", e.network, e.ip))
            .chain(att.ports.iter().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(", ");
        let netns = att.netns.clone();
        Ok(Wiring {
            network: netns
                .clone()
                .map_or(spec::NetworkMode::None, spec::NetworkMode::Path),
            hosts: Some(hosts_file(&att.hosts, config, ip)),
            // The network's DNS server (service names) unless the manifest names its own
            // servers, which then answer everything (as with `dns` in Podman; Docker forwards
            // from its embedded server to them instead).
            resolv_conf: match att.nameserver {
                Some(gw) if config.fixed.dns.is_empty() => {
                    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                    Some(net::dns::resolv_conf(gw, &host, &config.fixed.dns_search))
                }
                _ => resolv_conf(config),
            },
            env: att.env,
            netns,
            summary,
        })
    }

    /// The link requests of a bridge-mode container: each target's address on the first of
    /// `networks` it is on, its ports (published and exposed by its image) and environment.
    fn link_requests(
        &self,
        store: &SharedStore,
        config: &EffectiveContainer,
        networks: &[String],
    ) -> Result<Vec<LinkRequest>, NetError> {
        if config.fixed.links.is_empty() {
            return Ok(Vec::new());
        }
        let ips = self.driver.store().ips().map_err(net::Error::from)?;
        let mut out = Vec::new();
        for l in &config.fixed.links {
            let bad = |reason: String| NetError::Container {
                container: config.name.clone(),
                reason: format!("link to {} (alias {}): {reason}", l.container, l.alias),
            };
            let (target, exposed) = lock(store).transaction(|tx| {
                let Some(t) = tx.container(&l.container)? else {
                    return Ok::<_, crate::store::Error>((None, Vec::new()));
                };
                let cfg = serde_json::from_value::<EffectiveContainer>(t.config.clone()).ok();
                let exposed = match &cfg {
                    Some(c) => tx
                        .image(&c.image.key)?
                        .map(|i| exposed_ports(&i.config))
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                Ok((Some((t, cfg)), exposed))
            })?;
            let Some((target, target_cfg)) = target else {
                return Err(bad("no such container (yet)".into()));
            };
            let ip = networks
                .iter()
                .find_map(|n| {
                    ips.iter()
                        .find(|a| a.container_id == target.id && &a.network == n)
                        .map(|a| a.ip)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "it has no address on a network of this container ({}); is it created \
                         and in bridge mode?",
                        networks.join(", ")
                    ))
                })?;
            let mut ports: BTreeSet<(u16, Protocol)> = exposed.into_iter().collect();
            let mut env = Vec::new();
            if let Some(t) = &target_cfg {
                ports.extend(
                    t.fixed
                        .ports
                        .iter()
                        .filter_map(|p| Some((p.container_port, proto(p.protocol)?))),
                );
                env = t
                    .fixed
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            out.push(LinkRequest {
                target_name: l.container.clone(),
                alias: Some(l.alias.clone()),
                target_ip: ip,
                target_ports: ports.into_iter().collect(),
                target_env: env,
            });
        }
        Ok(out)
    }

    /// Rewrites the `/etc/hosts` of container `name` and its link allow rules, after a link
    /// target was recreated. The file is rewritten in place (it is bind-mounted by inode).
    pub fn refresh_links(
        &self,
        store: &SharedStore,
        state_dir: &Path,
        name: &str,
    ) -> Result<(), NetError> {
        let rec = lock(store).transaction(|tx| tx.container(name))?;
        let Some(rec) = rec else {
            return Ok(());
        };
        let config: EffectiveContainer =
            serde_json::from_value(rec.config.clone()).map_err(|e| NetError::Container {
                container: name.to_string(),
                reason: format!("its recorded config cannot be read: {e}"),
            })?;
        if !uses_driver(&config) {
            return Ok(());
        }
        let networks = self.networks_of(&config)?;
        let links = self.link_requests(store, &config, &networks)?;
        let att = self.driver.update_links(&rec.id, &links)?;
        let hosts = hosts_file(&att.hosts, &config, att.endpoints.first().map(|e| e.ip));
        let path = crate::driver::exec::paths::container_dir(state_dir, &rec.id).join("etc/hosts");
        std::fs::write(&path, hosts).map_err(|e| NetError::Container {
            container: name.to_string(),
            reason: format!("writing {}: {e}", path.display()),
        })
    }

    /// Detaches a stopped container (its address and random ports stay recorded).
    pub fn detach(&self, id: &str) -> Result<(), NetError> {
        Ok(self.driver.detach(id)?)
    }

    /// Detaches a container that is being removed and releases its address and ports.
    pub fn release(&self, id: &str) -> Result<(), NetError> {
        Ok(self.driver.release(id)?)
    }

    /// Start-up: bridges of recorded networks back up, then leftovers removed (module docs).
    pub fn startup(&self, store: &SharedStore) -> CleanupReport {
        let mut report = CleanupReport::default();
        match self.driver.store().networks() {
            Ok(nets) => {
                for n in nets {
                    if let Err(e) = self.driver.ensure_network(&n) {
                        report.failures.push(format!("network {}: {e}", n.name));
                    }
                }
            }
            Err(e) => report.failures.push(e.to_string()),
        }
        let existing = match lock(store).transaction(|tx| tx.containers()) {
            Ok(cs) => cs.into_iter().map(|c| c.id).collect(),
            Err(e) => {
                report.failures.push(format!("reading containers: {e}"));
                return report;
            }
        };
        match self.driver.cleanup(Some(&existing)) {
            Ok(r) => {
                report.removed.extend(r.removed);
                report.failures.extend(r.failures);
            }
            Err(e) => report.failures.push(e.to_string()),
        }
        report
    }

    /// Checks the network of every running bridge-mode container (`skip` says which to leave
    /// alone: a work on them is in flight), changing nothing. Returns the containers whose
    /// network drifted, with what was found, and the checks that failed. The repair is a work
    /// ([`crate::plan::Change::RepairNetwork`]) the applier runs.
    pub fn drift(
        &self,
        store: &SharedStore,
        skip: &dyn Fn(&str) -> bool,
    ) -> (Vec<(String, net::Drift)>, Vec<String>) {
        let (mut found, mut failed) = (Vec::new(), Vec::new());
        let containers = match lock(store).transaction(|tx| tx.containers()) {
            Ok(c) => c,
            Err(e) => return (found, vec![format!("reading containers: {e}")]),
        };
        // One read of the attachments and links serves every container.
        let mut snapshot = None;
        for rec in containers {
            if !matches!(
                rec.state,
                ContainerState::Running | ContainerState::Restarting | ContainerState::Created
            ) || skip(&rec.name)
            {
                continue;
            }
            let Ok(config) = serde_json::from_value::<EffectiveContainer>(rec.config.clone())
            else {
                continue;
            };
            if !uses_driver(&config) {
                continue;
            }
            match self.driver.check_with(&rec.id, &mut snapshot) {
                Ok(net::Drift::Intact) => {}
                Ok(d) => found.push((rec.name, d)),
                Err(e) => failed.push(format!("checking the network of {}: {e}", rec.name)),
            }
        }
        (found, failed)
    }

    /// Makes sure a bridge-mode container that is about to start is attached (it was detached
    /// when it stopped, or its namespace went with a reboot): attaches it again under its id,
    /// which gives it the same address and ports, and rewrites its `/etc/hosts`.
    pub fn ensure_attached(
        &self,
        store: &SharedStore,
        state_dir: &Path,
        id: &str,
        config: &EffectiveContainer,
    ) -> Result<Option<String>, NetError> {
        if !uses_driver(config) {
            return Ok(None);
        }
        match self.driver.repair(id)? {
            Repair::Intact => Ok(None),
            Repair::Repaired(what) => Ok(Some(format!("repaired {}", what.join(", ")))),
            Repair::NotAttached | Repair::NamespaceGone => {
                let w = self.wire(store, id, config)?;
                if let Some(h) = &w.hosts {
                    let path =
                        crate::driver::exec::paths::container_dir(state_dir, id).join("etc/hosts");
                    if path.exists() {
                        std::fs::write(&path, h).map_err(|e| NetError::Container {
                            container: config.name.clone(),
                            reason: format!("writing {}: {e}", path.display()),
                        })?;
                    }
                }
                Ok(Some(format!("attached again ({})", w.summary)))
            }
        }
    }
}

/// The namespace a `container:NAME` container joins, from NAME's record.
fn container_netns(target: &ContainerRecord) -> Option<spec::NetworkMode> {
    let cfg = serde_json::from_value::<EffectiveContainer>(target.config.clone()).ok()?;
    match cfg.fixed.network_mode {
        NetworkMode::Host => Some(spec::NetworkMode::Host),
        NetworkMode::Bridge => target
            .runtime
            .netns_path
            .as_ref()
            .map(|p| spec::NetworkMode::Path(PathBuf::from(p))),
        _ => target
            .runtime
            .container_pid
            .filter(|_| target.state == ContainerState::Running)
            .map(|pid| spec::NetworkMode::Path(PathBuf::from(format!("/proc/{pid}/ns/net")))),
    }
}

/// The driver's hosts file plus the hostname (when it differs from the name) and `extraHosts`.
fn hosts_file(base: &str, config: &EffectiveContainer, ip: Option<Ipv4Addr>) -> String {
    let mut s = base.to_string();
    let f = &config.fixed;
    if let Some(ip) = ip
        && !f.hostname.is_empty()
        && f.hostname != config.name
    {
        s.push_str(&format!("{ip}\t{}\n", f.hostname));
    }
    for h in &f.extra_hosts {
        s.push_str(&format!("{}\t{}\n", h.ip, h.host));
    }
    s
}

/// `/etc/resolv.conf` from `dns` and `dnsSearch`; `None` keeps the host's.
fn resolv_conf(config: &EffectiveContainer) -> Option<String> {
    let f = &config.fixed;
    if f.dns.is_empty() && f.dns_search.is_empty() {
        return None;
    }
    let mut s = String::new();
    for d in &f.dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    if !f.dns_search.is_empty() {
        s.push_str(&format!("search {}\n", f.dns_search.join(" ")));
    }
    Some(s)
}

/// `ExposedPorts` of an image config (`{"6379/tcp": {}}`).
fn exposed_ports(image_config: &serde_json::Value) -> Vec<(u16, Protocol)> {
    image_config
        .get("config")
        .and_then(|c| c.get("ExposedPorts"))
        .and_then(|e| e.as_object())
        .map(|m| {
            m.keys()
                .filter_map(|k| {
                    let (port, p) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
                    Some((port.parse().ok()?, p.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::{Desired, FileInput, FileState, Resolutions};

    /// The desired state of one file holding a busybox image, network `shop` and container
    /// `web` with `spec` (indented under `spec:`).
    fn desired(spec: &str) -> Desired {
        let yaml = format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: busybox\nspec:\n  dockerArchive:\n    path: /x.tar\n---\napiVersion: agent/v1\nkind: Network\nmetadata:\n  name: shop\nspec:\n  subnet: 10.214.7.0/24\n  bridge: agent-shop\n  icc: false\n---\napiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: busybox\n{spec}"
        );
        let path = PathBuf::from("/m/web.yaml");
        let loaded = crate::manifest::Loaded::from_sources(vec![(path.clone(), yaml.into_bytes())]);
        let objects = match &loaded.files[0].outcome {
            Ok(o) => o.iter().map(|o| o.manifest.clone()).collect(),
            Err(d) => panic!("{d:?}"),
        };
        Desired::build(
            vec![FileInput {
                path,
                state: FileState::Loaded(objects),
            }],
            &Resolutions::new(),
        )
    }

    fn web(spec: &str) -> EffectiveContainer {
        desired(spec).containers["web"].value.config.clone()
    }

    #[test]
    fn hosts_file_gets_the_hostname_and_extra_hosts() {
        let c = web("  hostname: front\n  extraHosts: [\"kv.local:10.0.0.9\"]\n");
        let base = "127.0.0.1\tlocalhost\n10.214.7.3\tweb\n";
        let h = hosts_file(base, &c, Some(Ipv4Addr::new(10, 214, 7, 3)));
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost\n10.214.7.3\tweb\n10.214.7.3\tfront\n10.0.0.9\tkv.local\n"
        );
        // No second line when the hostname is the name.
        let c = web("  hostname: web\n");
        assert_eq!(
            hosts_file(base, &c, Some(Ipv4Addr::new(10, 214, 7, 3))),
            base
        );
    }

    #[test]
    fn resolv_conf_only_when_dns_is_set() {
        assert_eq!(resolv_conf(&web("")), None);
        let c = web("  dns: [10.214.7.1, 10.214.7.2]\n  dnsSearch: [shop.local]\n");
        assert_eq!(
            resolv_conf(&c).as_deref(),
            Some("nameserver 10.214.7.1\nnameserver 10.214.7.2\nsearch shop.local\n")
        );
    }

    #[test]
    fn networks_and_modes_translate_for_the_driver() {
        let d = desired("");
        let n = driver_network(&d.networks["shop"].value).unwrap();
        assert_eq!(n.name, "shop");
        assert_eq!(n.bridge, "agent-shop");
        assert_eq!(n.subnet.to_string(), "10.214.7.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 214, 7, 1));
        assert!(!n.icc);
        n.validate().unwrap();
        assert!(uses_driver(&web("")), "bridge is the default mode");
        assert!(!uses_driver(&web("  networkMode: none\n")));
        assert!(!uses_driver(&web("  networkMode: host\n")));
    }

    #[test]
    fn exposed_ports_are_read_from_the_image_config() {
        let v = serde_json::json!({"config": {"ExposedPorts": {"6379/tcp": {}, "53/udp": {}, "x/tcp": {}}}});
        let mut p = exposed_ports(&v);
        p.sort();
        assert_eq!(p, vec![(53, Protocol::Udp), (6379, Protocol::Tcp)]);
        assert!(exposed_ports(&serde_json::json!({})).is_empty());
    }
}
