//! Drift repair: put back what was deleted from under a running container (a veth deleted by
//! hand, a bridge removed), without touching the container itself.
//!
//! A container's namespace is the anchor: as long as it is still mounted at its recorded path,
//! the missing host veth is created again with its peer directly inside that namespace, and the
//! recorded address and default route are configured on the new peer. The container's processes
//! keep running; open connections over the old interface are lost, new ones work. A namespace
//! that is gone cannot be repaired from here (the running processes hold the old one, which no
//! path names any more): [`Repair::NamespaceGone`] tells the caller to restart the container
//! after attaching it again.

use std::collections::HashSet;

use super::driver::NetworkDriver;
use super::types::NetworkMode;
use super::{Error, bridge, netlink, netns};

/// What [`NetworkDriver::repair`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// No complete attachment is recorded for this container.
    NotAttached,
    /// Everything recorded is in place.
    Intact,
    /// Things were put back; one line each.
    Repaired(Vec<String>),
    /// The container's own namespace is no longer mounted.
    NamespaceGone,
}

/// The recorded attachments and the host's link names, read once to check many containers
/// ([`NetworkDriver::repair_with`]): a check per container that dumps every link is quadratic
/// in the number of containers (50 containers: 50 dumps of 100+ links per resync).
#[derive(Debug, Default)]
pub struct RepairSnapshot {
    attachments: Vec<super::types::AttachmentRecord>,
    links: HashSet<String>,
}

/// What [`NetworkDriver::check_with`] found, without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// No complete attachment is recorded for this container.
    NotAttached,
    /// Everything recorded is in place.
    Intact,
    /// A bridge or host veth is missing; one line each (the namespace is still there).
    Missing(Vec<String>),
    /// The container's own namespace is no longer mounted.
    NamespaceGone,
}

impl NetworkDriver {
    /// Checks a container's recorded attachment against the kernel, changing nothing: what
    /// drift repair (a [`NetworkDriver::repair`] later, by the applier) would have to put back.
    /// `snapshot` as for [`NetworkDriver::repair_with`].
    pub fn check_with(
        &self,
        container_id: &str,
        snapshot: &mut Option<RepairSnapshot>,
    ) -> Result<Drift, Error> {
        let snap = match snapshot {
            Some(s) => s,
            None => snapshot.insert(RepairSnapshot {
                attachments: self.store().attachments()?,
                links: netlink::run_in(None, |h| async move { netlink::list_links(&h).await })?
                    .into_iter()
                    .map(|l| l.name)
                    .collect(),
            }),
        };
        let Some(rec) = snap
            .attachments
            .iter()
            .find(|r| r.container_id == container_id && r.complete)
        else {
            return Ok(Drift::NotAttached);
        };
        let Some(path) = &rec.owned_netns else {
            return Ok(Drift::Intact);
        };
        if !netns::is_mounted(path) {
            return Ok(Drift::NamespaceGone);
        }
        if !matches!(rec.mode, NetworkMode::Bridge(_)) {
            return Ok(Drift::Intact);
        }
        let mut missing = Vec::new();
        for e in &rec.endpoints {
            if !snap.links.contains(&e.bridge) {
                missing.push(format!("bridge {}", e.bridge));
            }
            if !snap.links.contains(&e.host_veth) {
                missing.push(format!("veth {}", e.host_veth));
            }
        }
        Ok(if missing.is_empty() {
            Drift::Intact
        } else {
            Drift::Missing(missing)
        })
    }

    /// Checks a container's recorded attachment against the kernel and puts back missing
    /// bridges and veths (see the module docs).
    pub fn repair(&self, container_id: &str) -> Result<Repair, Error> {
        self.repair_with(container_id, &mut None)
    }

    /// [`NetworkDriver::repair`] with what it reads kept in `snapshot` for the next container
    /// (read when `None`). The caller sets it to `None` after anything that changes attachments
    /// or links (a re-attach); a repair here does so itself.
    pub fn repair_with(
        &self,
        container_id: &str,
        snapshot: &mut Option<RepairSnapshot>,
    ) -> Result<Repair, Error> {
        let _g = self.guard()?;
        let snap = match snapshot {
            Some(s) => s,
            None => snapshot.insert(RepairSnapshot {
                attachments: self.store().attachments()?,
                links: netlink::run_in(None, |h| async move { netlink::list_links(&h).await })?
                    .into_iter()
                    .map(|l| l.name)
                    .collect(),
            }),
        };
        let Some(rec) = snap
            .attachments
            .iter()
            .find(|r| r.container_id == container_id && r.complete)
            .cloned()
        else {
            return Ok(Repair::NotAttached);
        };
        let Some(path) = rec.owned_netns.clone() else {
            // host and container: modes own nothing.
            return Ok(Repair::Intact);
        };
        if !netns::is_mounted(&path) {
            return Ok(Repair::NamespaceGone);
        }
        if !matches!(rec.mode, NetworkMode::Bridge(_)) {
            return Ok(Repair::Intact);
        }
        let present = &snap.links;
        if rec
            .endpoints
            .iter()
            .all(|e| present.contains(&e.bridge) && present.contains(&e.host_veth))
        {
            return Ok(Repair::Intact);
        }
        // Something is missing: work on fresh facts, and make the next check read them again.
        *snapshot = None;
        let present: HashSet<String> =
            netlink::run_in(None, |h| async move { netlink::list_links(&h).await })?
                .into_iter()
                .map(|l| l.name)
                .collect();
        let networks = self.store().networks()?;
        let mut done = Vec::new();
        for (i, e) in rec.endpoints.iter().enumerate() {
            let bridge_gone = !present.contains(&e.bridge);
            if !bridge_gone && present.contains(&e.host_veth) {
                continue;
            }
            let net = networks
                .iter()
                .find(|n| n.name == e.network)
                .ok_or_else(|| Error::BadRequest {
                    container: rec.name.clone(),
                    reason: format!("network {} is no longer recorded", e.network),
                })?;
            if bridge_gone {
                // Not while another interface of the host has the subnet (see `hostroutes`).
                self.check_host(net)?;
                bridge::ensure(net)?;
                done.push(format!("bridge {}", e.bridge));
            }
            if let Err(err) =
                recreate_veth(&e.host_veth, (&e.ifname, e.ip), &e.bridge, &path, net.mtu)
            {
                // The peer may have survived inside (removing a bridge keeps its veths): remove
                // it and try once more.
                let ifname = e.ifname.clone();
                netlink::run_in(Some(&path), move |h| async move {
                    netlink::delete_link(&h, &ifname).await.map(drop)
                })?;
                recreate_veth(&e.host_veth, (&e.ifname, e.ip), &e.bridge, &path, net.mtu).map_err(
                    |again| Error::Netlink {
                        op: format!("repairing veth {}", e.host_veth),
                        reason: format!("{err}; after removing {} inside: {again}", e.ifname),
                    },
                )?;
            }
            let (ifname, ip, prefix, gw) = (e.ifname.clone(), e.ip, e.prefix_len, e.gateway);
            netlink::run_in(Some(&path), move |h| async move {
                netlink::configure_interface(&h, &ifname, ip, prefix, gw, i == 0).await
            })?;
            tracing::info!(container = %rec.name, veth = %e.host_veth, ip = %e.ip, "repaired a missing veth");
            done.push(format!("veth {} ({} {})", e.host_veth, e.ifname, e.ip));
        }
        if done.is_empty() {
            return Ok(Repair::Intact);
        }
        self.sync_firewall()?;
        Ok(Repair::Repaired(done))
    }
}

/// Deletes host veth `host` if present and creates the pair again with `ifname` inside `ns`.
fn recreate_veth(
    host: &str,
    (ifname, ip): (&str, std::net::Ipv4Addr),
    bridge_name: &str,
    ns: &std::path::Path,
    mtu: u32,
) -> Result<(), Error> {
    let (host, ifname, bridge_name, ns) = (
        host.to_string(),
        ifname.to_string(),
        bridge_name.to_string(),
        ns.to_path_buf(),
    );
    netlink::run_in(None, move |h| async move {
        let br = netlink::link_index(&h, &bridge_name)
            .await?
            .ok_or_else(|| Error::Netlink {
                op: format!("repairing {host}"),
                reason: format!("bridge {bridge_name} does not exist"),
            })?;
        netlink::delete_link(&h, &host).await?;
        netlink::create_veth(&h, &host, (&ifname, netlink::mac_for(ip)), &ns, mtu, br).await
    })
}
