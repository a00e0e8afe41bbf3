//! Start-up cleanup: make the host hold exactly what the records explain.
//!
//! Ownership is recognised by name: host-side veths are exactly `<veth_prefix><8 hex>` (so that
//! agents whose prefixes nest, `asc` and `ascd`, never take each other's) and are not on a bridge
//! of someone else's,
//! namespaces are `<netns_dir>/<instance>-<id>`, firewall rules live in the instance's own table
//! or chains. Anything of that shape that no complete attachment record accounts for is removed
//! and logged; incomplete records (an attach interrupted by a crash) are undone.

use std::collections::HashSet;

use super::driver::NetworkDriver;
use super::{Error, netlink, netns};

/// What [`NetworkDriver::cleanup`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// One line per removed thing ("veth agv1a2b3c4d", "namespace /run/netns/agent-x", ...).
    pub removed: Vec<String>,
    /// Failures; cleanup went on past each of them.
    pub failures: Vec<String>,
}

impl NetworkDriver {
    /// Removes what no record explains. With `existing` (the ids of every container the daemon
    /// still has), attachments and address/port records of other containers are released too.
    pub fn cleanup(&self, existing: Option<&HashSet<String>>) -> Result<CleanupReport, Error> {
        let _g = self.guard()?;
        let mut report = CleanupReport::default();
        let store = self.store();

        for rec in store.attachments()? {
            let gone = existing.is_some_and(|e| !e.contains(&rec.container_id));
            if rec.complete && !gone {
                continue;
            }
            let why = if rec.complete {
                "container no longer exists"
            } else {
                "attachment never completed"
            };
            let failures = self.teardown(&rec);
            if failures.is_empty() {
                store.remove_attachment(&rec.container_id)?;
                tracing::info!(container = %rec.name, "cleanup: removed attachment ({why})");
                report
                    .removed
                    .push(format!("attachment of {} ({why})", rec.name));
            } else {
                report.failures.extend(failures);
            }
        }
        if let Some(existing) = existing {
            let mut stale: Vec<String> = store
                .ips()?
                .into_iter()
                .map(|a| a.container_id)
                .chain(store.host_ports()?.into_iter().map(|p| p.key.container_id))
                .filter(|c| !existing.contains(c))
                .collect();
            stale.sort();
            stale.dedup();
            for c in stale {
                for a in store.release_ips(&c)? {
                    tracing::info!(container = %c, ip = %a.ip, "cleanup: released address");
                    report
                        .removed
                        .push(format!("address {} of {c} on {}", a.ip, a.network));
                }
                store.release_host_ports(&c)?;
            }
        }

        let kept = store.attachments()?;
        let kept_veths: HashSet<String> = kept
            .iter()
            .flat_map(|r| r.endpoints.iter().map(|e| e.host_veth.clone()))
            .collect();
        let kept_ns: HashSet<_> = kept.iter().filter_map(|r| r.owned_netns.clone()).collect();

        let links = netlink::run_in(None, |h| async move { netlink::list_links(&h).await })?;
        let own_bridges: HashSet<String> =
            store.networks()?.into_iter().map(|n| n.bridge).collect();
        let bridge_of = |index: u32| links.iter().find(|b| b.index == index).map(|b| &b.name);
        for l in &links {
            if !netlink::is_veth(l)
                || !self.options().owns_veth_name(&l.name)
                || kept_veths.contains(&l.name)
            {
                continue;
            }
            // On a bridge that is not one of this instance's networks: another agent's (the
            // same veth_prefix) or someone's by hand. Not ours to delete.
            if let Some(other) = l.controller.and_then(bridge_of)
                && !own_bridges.contains(other)
            {
                tracing::warn!(veth = %l.name, bridge = %other, "cleanup: veth named like this agent's is on a bridge that is not one of its networks; left alone (another agent with the same veth_prefix?)");
                continue;
            }
            let name = l.name.clone();
            match netlink::run_in(None, move |h| async move {
                netlink::delete_link(&h, &name).await
            }) {
                Ok(false) => {} // went with its peer
                Ok(true) => {
                    tracing::info!(veth = %l.name, "cleanup: removed veth no record accounts for");
                    report.removed.push(format!("veth {}", l.name));
                }
                Err(e) => report.failures.push(format!("veth {}: {e}", l.name)),
            }
        }

        let ns_prefix = format!("{}-", self.options().instance);
        let dir = &self.options().netns_dir;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if !name.starts_with(&ns_prefix) || kept_ns.contains(&path) {
                    continue;
                }
                match netns::delete(&path) {
                    Ok(()) => {
                        tracing::info!(netns = %path.display(), "cleanup: removed namespace no record accounts for");
                        report.removed.push(format!("namespace {}", path.display()));
                    }
                    Err(e) => report.failures.push(e.to_string()),
                }
            }
        }

        let before = super::FirewallDriver::list(self.firewall()).unwrap_or_default();
        if let Err(e) = self.sync_firewall() {
            report.failures.push(e.to_string());
        }
        // firewalld forgets runtime zone members when it restarts: put the bridges back.
        let mut own: Vec<String> = own_bridges.iter().cloned().collect();
        own.sort();
        if let Err(e) = super::firewall::firewalld::trust(&own) {
            report.failures.push(e.to_string());
        }
        self.warn_forward_problems();
        let after = super::FirewallDriver::list(self.firewall()).unwrap_or_default();
        if before != after {
            tracing::info!("cleanup: firewall rewritten from the records");
            report
                .removed
                .push("firewall rules the records do not explain".into());
        }
        Ok(report)
    }
}
