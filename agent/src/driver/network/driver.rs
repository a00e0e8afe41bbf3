//! [`NetworkDriver`]: networks, attaching and detaching containers, firewall sync.
//!
//! Attaching records its intent first ([`AttachmentRecord`] with `complete: false`), then creates
//! the namespace and veths, then marks the record complete and rewrites the firewall from all
//! complete records. A crash at any point leaves either a complete record (kept) or an
//! incomplete one plus some kernel objects, which [`NetworkDriver::cleanup`] removes at start-up.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::{DriverOptions, NetworkConfig};
use super::firewall::{self, AnyFirewall, FirewallDriver, FirewallState, FwNetwork, FwPort};
use super::ipam::{self, IpamStore};
use super::ports::{self, TakenPort};
use super::types::{
    AttachRequest, Attachment, AttachmentRecord, Endpoint, LinkAllow, NetworkMode, PublishedPort,
};
use super::{Error, bridge, dns, hostroutes, links, netlink, netns};

/// The network driver of one agent instance. Calls block (each netlink exchange runs on its
/// own short-lived thread), so async callers use `spawn_blocking`.
///
/// Locking: one lock serialises the decisions (addresses, host ports, records written as
/// incomplete, teardown, networks); the plumbing of a container's own namespace and veths runs
/// outside it, so attaches of different containers overlap (the caller runs at most one call
/// per container at a time). The firewall has its own lock: a sync reads the records and
/// applies them whole; syncs asked for while one runs are served by the next one, which reads
/// the records after they were asked for ([`NetworkDriver::sync_firewall`]).
pub struct NetworkDriver {
    opts: DriverOptions,
    store: Arc<dyn IpamStore>,
    firewall: AnyFirewall,
    lock: Mutex<()>,
    /// Firewall syncs asked for so far, and (under the lock) the last one applied.
    fw_asked: AtomicU64,
    fw_applied: Mutex<u64>,
    /// The DNS server of the networks' names, if this driver runs one ([`NetworkDriver::with_dns`]).
    dns: Option<dns::DnsOptions>,
}

impl std::fmt::Debug for NetworkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkDriver")
            .field("opts", &self.opts)
            .field("firewall", &self.firewall.name())
            .finish()
    }
}

/// Checks a container id: 1 to 128 characters of letters, digits, `_`, `-`, `.`.
fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest {
            container: id.to_string(),
            reason: "container ids are 1 to 128 letters, digits, '_', '-', '.'".into(),
        })
    }
}

impl NetworkDriver {
    /// A driver with the given options and store; picks the firewall backend.
    pub fn new(opts: DriverOptions, store: Arc<dyn IpamStore>) -> Result<Self, Error> {
        opts.validate()?;
        let firewall = firewall::select(opts.firewall, &opts.instance)?;
        Ok(NetworkDriver {
            opts,
            store,
            firewall,
            lock: Mutex::new(()),
            fw_asked: AtomicU64::new(0),
            fw_applied: Mutex::new(0),
            dns: None,
        })
    }

    /// Runs a DNS server for the names of the networks that have `dns` on (see [`dns`]):
    /// every firewall sync also rewrites its records and starts, reloads or stops it.
    pub fn with_dns(mut self, opts: dns::DnsOptions) -> Self {
        self.dns = Some(opts);
        self
    }

    /// The DNS server's options, if the driver runs one.
    pub fn dns(&self) -> Option<&dns::DnsOptions> {
        self.dns.as_ref()
    }

    /// Makes the DNS server's records equal to what the store's records explain, and starts,
    /// reloads or (no network left) stops the server. Nothing without [`NetworkDriver::with_dns`].
    pub fn sync_dns(&self) -> Result<(), Error> {
        let Some(opts) = &self.dns else {
            return Ok(());
        };
        let records = dns::render(
            &self.store.networks()?,
            &self.store.attachments()?,
            &opts.upstreams,
        );
        dns::sync(opts, &records)
    }

    /// The name server a container on `first` (its first network) gets, if any.
    fn nameserver(&self, first: &NetworkConfig) -> Option<Ipv4Addr> {
        (self.dns.is_some() && first.dns).then(|| first.gateway())
    }

    /// The driver's options.
    pub fn options(&self) -> &DriverOptions {
        &self.opts
    }

    /// The firewall backend in use.
    pub fn firewall(&self) -> &AnyFirewall {
        &self.firewall
    }

    /// The store.
    pub fn store(&self) -> &dyn IpamStore {
        self.store.as_ref()
    }

    pub(crate) fn guard(&self) -> Result<MutexGuard<'_, ()>, Error> {
        self.lock.lock().map_err(|_| Error::Netlink {
            op: "network driver".into(),
            reason: "lock poisoned by an earlier panic".into(),
        })
    }

    /// Where a container's own namespace is mounted: `<netns_dir>/<instance>-<id>`.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.opts
            .netns_dir
            .join(format!("{}-{container_id}", self.opts.instance))
    }

    /// The host-side veth of a container on a network: `<veth_prefix><8 hex>` (a hash of both).
    pub fn veth_name(&self, container_id: &str, network: &str) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("{container_id}\0{network}").as_bytes());
        format!("{}{}", self.opts.veth_prefix, hex::encode(&d[..4]))
    }

    /// The firewall state the store's records explain.
    pub fn firewall_state(&self) -> Result<FirewallState, Error> {
        let networks = self.store.networks()?;
        let records = self.store.attachments()?;
        let bridge_of = |ip: Ipv4Addr| {
            records
                .iter()
                .flat_map(|r| r.endpoints.iter())
                .find(|e| e.ip == ip)
                .map(|e| e.bridge.clone())
        };
        let mut state = FirewallState {
            networks: networks
                .iter()
                .map(|n| FwNetwork {
                    bridge: n.bridge.clone(),
                    subnet: n.network(),
                    icc: n.icc,
                    dns: (self.dns.is_some() && n.dns).then(|| n.gateway()),
                })
                .collect(),
            ..Default::default()
        };
        for r in records.iter().filter(|r| r.complete) {
            for p in &r.ports {
                if let Some(bridge) = bridge_of(p.container_ip) {
                    state.ports.push(FwPort { bridge, port: *p });
                }
            }
            state.links.extend(r.links.iter().cloned());
        }
        Ok(state.normalize())
    }

    /// Why traffic on this instance's bridges would be dropped by another firewall of the host
    /// (iptables' `FORWARD` policy DROP without the agent's accepts, another nftables table
    /// dropping forwarded traffic, firewalld), one sentence each; empty when nothing known
    /// drops it. For `agent status` and start-up warnings.
    pub fn forward_problems(&self) -> Result<Vec<String>, Error> {
        let bridges: Vec<String> = self
            .store
            .networks()?
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        Ok(self
            .firewall
            .forward_problems(&self.opts.instance, &bridges))
    }

    /// Puts this instance's bridges that firewalld forgot (it was reloaded or restarted) back
    /// into its trusted zone; returns those it added. Nothing when firewalld does not run.
    pub fn refresh_firewalld(&self) -> Result<Vec<String>, Error> {
        let bridges: Vec<String> = self
            .store
            .networks()?
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        Ok(super::firewall::firewalld::trust(&bridges)?)
    }

    /// Logs [`NetworkDriver::forward_problems`] as warnings.
    pub(crate) fn warn_forward_problems(&self) {
        match self.forward_problems() {
            Ok(problems) => {
                for p in problems {
                    tracing::warn!("network: traffic of containers would be dropped: {p}");
                }
            }
            Err(e) => tracing::warn!(error = %e, "network: checking the host's firewall"),
        }
    }

    /// Makes the firewall equal to what the records explain.
    ///
    /// Concurrent callers are coalesced: a caller whose request a sync that started later has
    /// covered (that sync read the records after the request) returns at once.
    pub fn sync_firewall(&self) -> Result<(), Error> {
        let mine = self.fw_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut applied = self.fw_applied.lock().map_err(|_| Error::Netlink {
            op: "firewall".into(),
            reason: "lock poisoned by an earlier panic".into(),
        })?;
        if *applied >= mine {
            return Ok(());
        }
        let upto = self.fw_asked.load(Ordering::SeqCst);
        // The DNS records follow the same records; a DNS failure does not fail the change
        // (lookups of names fail until the next sync), it is logged.
        if let Err(e) = self.sync_dns() {
            tracing::warn!(error = %e, "network: DNS server");
        }
        let state = self.firewall_state()?;
        if state.networks.is_empty() {
            self.firewall.remove_all()?;
        } else {
            self.firewall.apply(&state)?;
        }
        *applied = upto;
        Ok(())
    }

    /// Creates or repairs a network: checks it against the others, records it, sets up the
    /// bridge and the firewall.
    pub fn ensure_network(&self, net: &NetworkConfig) -> Result<(), Error> {
        net.validate()?;
        if self.opts.owns_veth_name(&net.bridge) {
            return Err(Error::Config {
                network: net.name.clone(),
                field: "bridge".into(),
                reason: format!(
                    "{}: looks like this agent's veth names (veth_prefix {:?} and 8 hex digits); \
                     choose another bridge name",
                    net.bridge, self.opts.veth_prefix
                ),
            });
        }
        let _g = self.guard()?;
        for other in self.store.networks()? {
            if other.name == net.name {
                continue;
            }
            let clash = if other.bridge == net.bridge {
                Some(format!("uses the same bridge {}", net.bridge))
            } else if other.network().contains(&net.network().network())
                || net.network().contains(&other.network().network())
            {
                Some(format!(
                    "subnet {} overlaps {}",
                    net.network(),
                    other.network()
                ))
            } else {
                None
            };
            if let Some(reason) = clash {
                return Err(Error::Config {
                    network: net.name.clone(),
                    field: "subnet/bridge".into(),
                    reason: format!("{reason} of network {}", other.name),
                });
            }
        }
        // Before anything is made or moved: a subnet the host reaches through another
        // interface is refused (creating or readdressing the bridge only).
        self.check_host(net)?;
        if let Some(old) = self
            .store
            .networks()?
            .into_iter()
            .find(|n| n.name == net.name)
            && (old.bridge != net.bridge || old.network() != net.network())
        {
            let users = self.users_of(&net.name)?;
            if !users.is_empty() {
                return Err(Error::NetworkInUse {
                    network: net.name.clone(),
                    containers: users,
                });
            }
            if old.bridge != net.bridge {
                bridge::remove(&old.bridge)?;
            }
        }
        let new = !self.store.networks()?.iter().any(|n| n == net);
        self.store.put_network(net)?;
        bridge::ensure(net)?;
        self.sync_firewall()?;
        if new {
            self.warn_forward_problems();
        }
        Ok(())
    }

    /// Refuses to give `net`'s bridge its address (create it, or move it to a new subnet) while
    /// a route or address of another interface of the host overlaps its subnet (see
    /// [`hostroutes`]). A bridge that carries its address already passes: what it overlaps is
    /// reported by [`NetworkDriver::host_problems`], and it is left alone.
    ///
    /// A bridge name that is an interface the agent did not make (no recorded network has it)
    /// with an address other than the gateway is refused too: it would be adopted (given the
    /// gateway, its ports taken over, deleted with the network).
    pub(crate) fn check_host(&self, net: &NetworkConfig) -> Result<(), Error> {
        let view = self.host_view()?;
        let recorded = self.store.networks()?;
        let (gw, prefix) = (net.gateway(), net.subnet.prefix_len());
        if !recorded.iter().any(|n| n.bridge == net.bridge)
            && let Some(other) = view.other_addresses(&net.bridge, gw, prefix).first()
        {
            return Err(Error::Config {
                network: net.name.clone(),
                field: "bridge".into(),
                reason: format!(
                    "{}: an interface of that name exists already and is not one of this \
                     agent's bridges (the host's {other}); nothing was changed: choose another \
                     bridge name",
                    net.bridge
                ),
            });
        }
        if view.has_address(&net.bridge, gw, prefix) {
            return Ok(());
        }
        // The bridge's own routes count only when the agent made it (a recorded network).
        let own = |d: &str| self.own_device(&recorded, d);
        let found = hostroutes::conflicts(net.network(), &view, &own);
        if found.is_empty() {
            return Ok(());
        }
        let (conflict, device) = hostroutes::describe(&found);
        Err(Error::HostOverlap {
            network: net.name.clone(),
            subnet: net.network().to_string(),
            conflict,
            device,
        })
    }

    /// The host's IPv4 routes, addresses and rule tables.
    fn host_view(&self) -> Result<hostroutes::HostView, Error> {
        netlink::run_in(None, |h| async move { hostroutes::read(&h).await })
    }

    /// Whether interface `dev` is one of this instance's bridges (of `recorded`) or veths.
    fn own_device(&self, recorded: &[NetworkConfig], dev: &str) -> bool {
        recorded.iter().any(|n| n.bridge == dev) || self.opts.owns_veth_name(dev)
    }

    /// The instance's networks whose subnet a route or address of another interface of the
    /// host overlaps (one came up after the network was made: a LAN, a VPN), one sentence
    /// each. Nothing is torn down for it.
    pub fn route_overlaps(&self) -> Result<Vec<String>, Error> {
        let recorded = self.store.networks()?;
        if recorded.is_empty() {
            return Ok(Vec::new());
        }
        let view = self.host_view()?;
        let own = |d: &str| self.own_device(&recorded, d);
        Ok(recorded
            .iter()
            .filter_map(|n| {
                let found = hostroutes::conflicts(n.network(), &view, &own);
                if found.is_empty() {
                    return None;
                }
                let (conflict, device) = hostroutes::describe(&found);
                Some(format!(
                    "network {} (bridge {}, subnet {}) overlaps {conflict}: traffic for those \
                     addresses may go to the bridge instead of {device}, or the other way; its \
                     containers are left running, but once the bridge is gone (a reboot) the \
                     agent will not create it again while the overlap lasts; choose another \
                     subnet for network {}",
                    n.name,
                    n.bridge,
                    n.network(),
                    n.name
                ))
            })
            .collect())
    }

    /// Host problems for `agent status`: [`NetworkDriver::forward_problems`], then
    /// [`NetworkDriver::route_overlaps`] (logged and left out when the host's routes cannot be
    /// read).
    pub fn host_problems(&self) -> Result<Vec<String>, Error> {
        let mut out = self.forward_problems()?;
        match self.route_overlaps() {
            Ok(w) => out.extend(w),
            Err(e) => tracing::warn!(error = %e, "network: reading the host's routes"),
        }
        Ok(out)
    }

    fn users_of(&self, network: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .store
            .attachments()?
            .into_iter()
            .filter(|r| r.endpoints.iter().any(|e| e.network == network))
            .map(|r| r.name)
            .collect())
    }

    /// Removes a network that no container is attached to: bridge, record, its rules.
    pub fn remove_network(&self, name: &str) -> Result<(), Error> {
        let _g = self.guard()?;
        let Some(net) = self.store.networks()?.into_iter().find(|n| n.name == name) else {
            return Ok(());
        };
        let users = self.users_of(name)?;
        if !users.is_empty() {
            return Err(Error::NetworkInUse {
                network: name.to_string(),
                containers: users,
            });
        }
        bridge::remove(&net.bridge)?;
        self.store.remove_network(name)?;
        self.sync_firewall()
    }

    /// Attaches a container (re-attaching replaces an earlier attachment of the same id) and
    /// returns what the exec driver needs. An error leaves nothing of this attempt behind
    /// except the container's address and random-port records, which are kept for stability.
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment, Error> {
        validate_id(&req.container_id)?;
        let g = self.guard()?;
        if let Some(old) = self.record(&req.container_id)? {
            self.detach_locked(&old)?;
        }
        let bad = |reason: &str| Error::BadRequest {
            container: req.name.clone(),
            reason: reason.to_string(),
        };
        match &req.mode {
            NetworkMode::Host => {
                if !req.links.is_empty() {
                    return Err(bad("host networking can't be used with links"));
                }
                if !req.ports.is_empty() {
                    tracing::warn!(container = %req.name, "published ports are discarded in host network mode");
                }
                let rec = self.bare_record(req, None);
                self.store.put_attachment(&rec)?;
                let hosts = std::fs::read_to_string("/etc/hosts")
                    .unwrap_or_else(|_| links::render_hosts(&[], &[]));
                Ok(self.result(&rec, None, Vec::new(), hosts, Vec::new()))
            }
            NetworkMode::None => {
                if !req.links.is_empty() {
                    return Err(bad("network mode none can't be used with links"));
                }
                if !req.ports.is_empty() {
                    tracing::warn!(container = %req.name, "published ports are discarded in network mode none");
                }
                let path = self.netns_path(&req.container_id);
                let mut rec = self.bare_record(req, Some(path.clone()));
                rec.complete = false;
                self.store.put_attachment(&rec)?;
                if let Err(e) =
                    netns::prepare_dir(&self.opts.netns_dir).and_then(|()| netns::create(&path))
                {
                    self.undo(&rec);
                    return Err(e);
                }
                rec.complete = true;
                self.store.put_attachment(&rec)?;
                let hosts = links::render_hosts(&[], &[]);
                Ok(self.result(&rec, Some(path), Vec::new(), hosts, Vec::new()))
            }
            NetworkMode::Container(target) => {
                if !req.ports.is_empty() || !req.links.is_empty() {
                    return Err(bad(
                        "ports and links can't be used with network mode container:<name>; \
                         set them on the container that owns the namespace",
                    ));
                }
                let t = self.record(target)?.filter(|r| r.complete).ok_or_else(|| {
                    bad(&format!(
                        "network mode container:{target}: that container is not attached"
                    ))
                })?;
                let netns = match (&t.mode, &t.owned_netns) {
                    (NetworkMode::Host, _) => None,
                    (_, Some(p)) => Some(p.clone()),
                    (_, None) => {
                        return Err(bad(&format!(
                            "network mode container:{target}: it shares another container's \
                             namespace; name that container instead"
                        )));
                    }
                };
                let rec = self.bare_record(req, None);
                self.store.put_attachment(&rec)?;
                let own: Vec<(Ipv4Addr, &str)> = t
                    .endpoints
                    .iter()
                    .map(|e| (e.ip, t.name.as_str()))
                    .collect();
                let hosts = links::render_hosts(&own, &[]);
                Ok(self.result(&rec, netns, t.endpoints.clone(), hosts, Vec::new()))
            }
            NetworkMode::Bridge(names) => self.attach_bridge(req, names, g),
        }
    }

    fn bare_record(&self, req: &AttachRequest, netns: Option<PathBuf>) -> AttachmentRecord {
        AttachmentRecord {
            container_id: req.container_id.clone(),
            name: req.name.clone(),
            mode: req.mode.clone(),
            complete: true,
            owned_netns: netns,
            endpoints: Vec::new(),
            ports: Vec::new(),
            links: Vec::new(),
            aliases: req.aliases.clone(),
        }
    }

    fn result(
        &self,
        rec: &AttachmentRecord,
        netns: Option<PathBuf>,
        endpoints: Vec<Endpoint>,
        hosts: String,
        env: Vec<(String, String)>,
    ) -> Attachment {
        Attachment {
            container_id: rec.container_id.clone(),
            netns,
            endpoints,
            ports: rec.ports.clone(),
            hosts,
            env,
            nameserver: None,
        }
    }

    fn record(&self, container_id: &str) -> Result<Option<AttachmentRecord>, Error> {
        Ok(self
            .store
            .attachments()?
            .into_iter()
            .find(|r| r.container_id == container_id))
    }

    /// Bridge mode: addresses, host ports and the incomplete record under the driver's lock
    /// `g`, then the namespace, veths and firewall without it.
    fn attach_bridge(
        &self,
        req: &AttachRequest,
        names: &[String],
        g: MutexGuard<'_, ()>,
    ) -> Result<Attachment, Error> {
        let id = req.container_id.as_str();
        let bad = |reason: String| Error::BadRequest {
            container: req.name.clone(),
            reason,
        };
        if names.is_empty() {
            return Err(bad("bridge mode needs at least one network".into()));
        }
        let all = self.store.networks()?;
        let mut nets: Vec<NetworkConfig> = Vec::new();
        for n in names {
            if nets.iter().any(|x| &x.name == n) {
                return Err(bad(format!("network {n} is listed twice")));
            }
            let net = all
                .iter()
                .find(|x| &x.name == n)
                .ok_or_else(|| Error::UnknownNetwork {
                    container: req.name.clone(),
                    network: n.clone(),
                    known: all.iter().map(|x| x.name.clone()).collect(),
                })?;
            nets.push(net.clone());
        }
        let mut endpoints = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let ip = ipam::allocate_ip(self.store.as_ref(), net, id)?;
            endpoints.push(Endpoint {
                network: net.name.clone(),
                bridge: net.bridge.clone(),
                ip,
                prefix_len: net.subnet.prefix_len(),
                gateway: net.gateway(),
                host_veth: self.veth_name(id, &net.name),
                ifname: format!("eth{i}"),
            });
        }
        let taken: Vec<TakenPort> = self
            .store
            .attachments()?
            .iter()
            .filter(|r| r.container_id != id)
            .flat_map(|r| {
                r.ports.iter().map(|p| TakenPort {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    protocol: p.protocol,
                    owner: r.name.clone(),
                })
            })
            .collect();
        let host_ports = ports::choose_host_ports(
            self.store.as_ref(),
            id,
            &req.name,
            &req.ports,
            self.opts.random_ports,
            &taken,
            &ports::probe_bind,
        )?;
        let first = &endpoints[0];
        let published: Vec<PublishedPort> = req
            .ports
            .iter()
            .zip(host_ports)
            .map(|(m, host_port)| PublishedPort {
                host_ip: m.host_ip,
                host_port,
                container_ip: first.ip,
                container_port: m.container_port,
                protocol: m.protocol,
            })
            .collect();
        let allows = link_allows(&req.name, &endpoints, &nets, &req.links)?;
        let path = self.netns_path(id);
        let mut rec = AttachmentRecord {
            container_id: id.to_string(),
            name: req.name.clone(),
            mode: req.mode.clone(),
            complete: false,
            owned_netns: Some(path.clone()),
            endpoints: endpoints.clone(),
            ports: published,
            links: allows,
            aliases: req.aliases.clone(),
        };
        self.store.put_attachment(&rec)?;
        // The namespace directory's mount is shared by all: made under the lock.
        if let Err(e) = netns::prepare_dir(&self.opts.netns_dir) {
            self.undo(&rec);
            return Err(e);
        }
        drop(g);
        if let Err(e) = self.plumb(&rec, &nets) {
            self.undo(&rec);
            return Err(e);
        }
        rec.complete = true;
        let done = self
            .store
            .put_attachment(&rec)
            .map_err(Error::from)
            .and_then(|()| self.sync_firewall());
        if let Err(e) = done {
            self.undo(&rec);
            let _ = self.sync_firewall();
            return Err(e);
        }
        let own: Vec<(Ipv4Addr, &str)> = vec![(first.ip, req.name.as_str())];
        let hosts = links::render_hosts(&own, &req.links);
        let env = links::link_env(&req.name, &req.links);
        let mut att = self.result(&rec, Some(path), endpoints, hosts, env);
        att.nameserver = self.nameserver(&nets[0]);
        Ok(att)
    }

    /// Replaces the links of an attached container (a link target was recreated, or a link was
    /// added): new allow rules, and the new hosts file and variables for the exec driver to
    /// write. The namespace and veths stay as they are.
    pub fn update_links(
        &self,
        container_id: &str,
        links: &[super::types::LinkRequest],
    ) -> Result<Attachment, Error> {
        let _g = self.guard()?;
        let mut rec = self
            .record(container_id)?
            .filter(|r| r.complete)
            .ok_or_else(|| Error::BadRequest {
                container: container_id.to_string(),
                reason: "not attached".into(),
            })?;
        if !matches!(rec.mode, NetworkMode::Bridge(_)) {
            return Err(Error::BadRequest {
                container: rec.name.clone(),
                reason: "links need bridge network mode".into(),
            });
        }
        let all = self.store.networks()?;
        let nets: Vec<NetworkConfig> = rec
            .endpoints
            .iter()
            .filter_map(|e| all.iter().find(|n| n.name == e.network).cloned())
            .collect();
        rec.links = link_allows(&rec.name, &rec.endpoints, &nets, links)?;
        self.store.put_attachment(&rec)?;
        self.sync_firewall()?;
        let own: Vec<(Ipv4Addr, &str)> = rec
            .endpoints
            .first()
            .map(|e| (e.ip, rec.name.as_str()))
            .into_iter()
            .collect();
        let hosts = links::render_hosts(&own, links);
        let env = links::link_env(&rec.name, links);
        Ok(self.result(
            &rec,
            rec.owned_netns.clone(),
            rec.endpoints.clone(),
            hosts,
            env,
        ))
    }

    /// Replaces the DNS aliases of an attached container (a manifest changed only them): the
    /// record and the DNS server's names; the container keeps running untouched. A container
    /// that is not attached (stopped) has nothing to change: its next attach request carries
    /// the aliases.
    pub fn update_aliases(
        &self,
        container_id: &str,
        aliases: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(), Error> {
        {
            let _g = self.guard()?;
            let Some(mut rec) = self.record(container_id)?.filter(|r| r.complete) else {
                return Ok(());
            };
            if rec.aliases == *aliases {
                return Ok(());
            }
            rec.aliases = aliases.clone();
            self.store.put_attachment(&rec)?;
        }
        self.sync_dns()
    }

    /// Creates the namespace and the veths of a record (its directory is prepared already).
    fn plumb(&self, rec: &AttachmentRecord, nets: &[NetworkConfig]) -> Result<(), Error> {
        let Some(path) = rec.owned_netns.clone() else {
            return Ok(());
        };
        netns::create(&path)?;
        for net in nets {
            let idx = netlink::run_in(None, {
                let b = net.bridge.clone();
                move |h| async move { netlink::link_index(&h, &b).await }
            })?;
            if idx.is_none() {
                tracing::warn!(bridge = %net.bridge, "bridge missing; recreating it");
                self.check_host(net)?;
                bridge::ensure(net)?;
            }
        }
        let mtus: Vec<u32> = nets.iter().map(|n| n.mtu).collect();
        let eps = rec.endpoints.clone();
        let ns = path.clone();
        netlink::run_in(None, move |h| async move {
            for (e, mtu) in eps.iter().zip(mtus) {
                let br =
                    netlink::link_index(&h, &e.bridge)
                        .await?
                        .ok_or_else(|| Error::Netlink {
                            op: format!("attaching {}", e.host_veth),
                            reason: format!("bridge {} does not exist", e.bridge),
                        })?;
                netlink::delete_link(&h, &e.host_veth).await?;
                netlink::create_veth(
                    &h,
                    &e.host_veth,
                    (&e.ifname, netlink::mac_for(e.ip)),
                    &ns,
                    mtu,
                    br,
                )
                .await?;
            }
            Ok(())
        })?;
        let eps = rec.endpoints.clone();
        netlink::run_in(Some(&path), move |h| async move {
            for (i, e) in eps.iter().enumerate() {
                netlink::configure_interface(&h, &e.ifname, e.ip, e.prefix_len, e.gateway, i == 0)
                    .await?;
            }
            Ok(())
        })
    }

    /// Best-effort removal of a failed attachment's kernel objects and record.
    fn undo(&self, rec: &AttachmentRecord) {
        let failures = self.teardown(rec);
        for f in &failures {
            tracing::warn!(container = %rec.name, "undoing failed attachment: {f}");
        }
        if failures.is_empty() {
            if let Err(e) = self.store.remove_attachment(&rec.container_id) {
                tracing::warn!(container = %rec.name, "undoing failed attachment: {e}");
            }
        } else {
            let mut r = rec.clone();
            r.complete = false;
            let _ = self.store.put_attachment(&r);
        }
    }

    /// Deletes a record's veths and namespace, going on past failures; returns them all.
    pub(crate) fn teardown(&self, rec: &AttachmentRecord) -> Vec<String> {
        let mut failures = Vec::new();
        for e in &rec.endpoints {
            let name = e.host_veth.clone();
            let r = netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await.map(drop)
            });
            if let Err(err) = r {
                failures.push(format!("veth {}: {err}", e.host_veth));
            }
        }
        if let Some(p) = &rec.owned_netns
            && let Err(err) = netns::delete(p)
        {
            failures.push(err.to_string());
        }
        failures
    }

    fn detach_locked(&self, rec: &AttachmentRecord) -> Result<(), Error> {
        let mut failures = self.teardown(rec);
        if failures.is_empty() {
            if let Err(e) = self.store.remove_attachment(&rec.container_id) {
                failures.push(e.to_string());
            }
        } else {
            let mut r = rec.clone();
            r.complete = false;
            if let Err(e) = self.store.put_attachment(&r) {
                failures.push(e.to_string());
            }
        }
        if let Err(e) = self.sync_firewall() {
            failures.push(e.to_string());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown {
                container: rec.name.clone(),
                failures,
            })
        }
    }

    /// Detaches a container (stopped): removes its veths, namespace and rules, keeps its address
    /// and random host ports for the next attach. Unknown containers are fine.
    pub fn detach(&self, container_id: &str) -> Result<(), Error> {
        let _g = self.guard()?;
        match self.record(container_id)? {
            Some(rec) => self.detach_locked(&rec),
            None => Ok(()),
        }
    }

    /// Detaches a container that is being removed and releases its addresses and host ports.
    pub fn release(&self, container_id: &str) -> Result<(), Error> {
        let _g = self.guard()?;
        let mut failures = Vec::new();
        let mut name = container_id.to_string();
        if let Some(rec) = self.record(container_id)? {
            name = rec.name.clone();
            if let Err(e) = self.detach_locked(&rec) {
                match e {
                    Error::Teardown { failures: f, .. } => failures.extend(f),
                    other => failures.push(other.to_string()),
                }
            }
        }
        if let Err(e) = self.store.release_ips(container_id) {
            failures.push(e.to_string());
        }
        if let Err(e) = self.store.release_host_ports(container_id) {
            failures.push(e.to_string());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown {
                container: name,
                failures,
            })
        }
    }

    /// The recorded attachments that are complete.
    pub fn attachments(&self) -> Result<Vec<AttachmentRecord>, Error> {
        Ok(self
            .store
            .attachments()?
            .into_iter()
            .filter(|r| r.complete)
            .collect())
    }

    /// The container ids that have attachment records (complete or not).
    pub fn recorded_ids(&self) -> Result<HashSet<String>, Error> {
        Ok(self
            .store
            .attachments()?
            .into_iter()
            .map(|r| r.container_id)
            .collect())
    }
}

/// The firewall allowances of a container's links: to each target's exposed ports, or to every
/// port when it exposes none, on the bridge the two share.
fn link_allows(
    name: &str,
    endpoints: &[Endpoint],
    nets: &[NetworkConfig],
    links: &[super::types::LinkRequest],
) -> Result<Vec<LinkAllow>, Error> {
    let mut allows = Vec::new();
    for l in links {
        let ep = endpoints
            .iter()
            .zip(nets)
            .find(|(_, n)| n.network().contains(&l.target_ip))
            .map(|(e, _)| e)
            .ok_or_else(|| Error::BadRequest {
                container: name.to_string(),
                reason: format!(
                    "link to {} ({}): no network of this container contains that address",
                    l.target_name, l.target_ip
                ),
            })?;
        let mut push = |port| {
            allows.push(LinkAllow {
                bridge: ep.bridge.clone(),
                src: ep.ip,
                dst: l.target_ip,
                port,
            })
        };
        if l.target_ports.is_empty() {
            push(None);
        }
        for p in &l.target_ports {
            push(Some(*p));
        }
    }
    Ok(allows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_checked_and_stable() {
        assert!(validate_id("web-1.a_b").is_ok());
        for bad in ["", "..", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ipam::FileStore::open(dir.path().join("s.json")).unwrap());
        let opts = DriverOptions {
            firewall: super::super::FirewallChoice::Nftables,
            veth_prefix: "tv".into(),
            ..Default::default()
        };
        let d = NetworkDriver::new(opts, store).unwrap();
        let v = d.veth_name("c1", "bridge");
        assert_eq!(v.len(), 10);
        assert!(v.starts_with("tv"));
        assert_eq!(v, d.veth_name("c1", "bridge"));
        assert_ne!(v, d.veth_name("c1", "other"));
        assert_eq!(d.netns_path("c1"), PathBuf::from("/run/netns/agent-c1"));
    }
}
