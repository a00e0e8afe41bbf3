//! [`SqliteIpam`]: the network driver's [`IpamStore`] over the state store, so that the daemon
//! keeps container addresses, random host ports, attachment records and the driver's networks in
//! `state.db` instead of the driver's JSON [`FileStore`](crate::driver::network::FileStore).
//!
//! # Sharing the store
//!
//! [`Store`] owns a `rusqlite::Connection`, which is `Send` but not `Sync`, and its transactions
//! need `&mut Store`. The driver wants an `Arc<dyn IpamStore>` (`Send + Sync`) and calls it from
//! blocking code (the daemon runs the driver under `tokio::task::spawn_blocking`). So the adapter
//! holds an `Arc<Mutex<Store>>` shared with the rest of the daemon: every trait call locks the
//! mutex for one short `IMMEDIATE` transaction and releases it before returning. A
//! `std::sync::Mutex` (not tokio's) is the right lock: no call holds it across an `.await`, and
//! async code that uses the same store must not either (lock it inside `spawn_blocking`, or for
//! one short transaction only). A poisoned lock (a panic inside another transaction) is taken
//! over: the panicking transaction was rolled back when it unwound, so the database is intact.
//!
//! # Mapping
//!
//! The driver keys everything by runtime container id; the store keys addresses and ports by the
//! container *name* (foreign key `containers(name)`, `ON DELETE CASCADE`). The adapter maps ids
//! to names with `containers.id` (see `docs/store.md`), so:
//!
//! - A container must be recorded (`Tx::upsert_container`) before the driver allocates for it;
//!   otherwise recording fails with an error naming the id.
//! - Recreation keeps the address and random host ports: the daemon updates the row of the same
//!   name in place with the new id, and the allocations, keyed by name, now answer to the new id.
//!   Releasing the *old* id afterwards finds no container and releases nothing; to free the
//!   address on recreate the daemon would have to release before updating the id.
//! - Removal releases them: `Tx::delete_container` cascades, and `release_ips` /
//!   `release_host_ports` do it explicitly for the driver.
//! - Uniqueness is the database's: `ip_allocations` has `PRIMARY KEY (network, ip)` and
//!   `UNIQUE (network, container)`, `port_bindings` `PRIMARY KEY (host_ip, host_port, proto)`
//!   plus the overlap check of `Tx::bind_port`; a conflict comes back as a [`StoreError`] naming
//!   the address or port and the container holding it.
//!
//! Random host ports live in `port_bindings` (host address `0.0.0.0` stands for the driver's
//! "every address", `None`). The table has no "random" flag: if the daemon also records its fixed
//! bindings there, [`IpamStore::host_ports`] returns them too, which the driver tolerates (they
//! only keep random choices away from ports that are published anyway, and a recorded port is
//! checked for being free before it is reused). Rows the driver cannot have written (IPv6
//! addresses, `sctp`) are left out of its view.
//!
//! Networks go to the `networks` table. The `config` column holds the driver's
//! [`NetworkConfig`] keys (`name`, `bridge`, `subnet`, `gateway`, `mtu`, `icc`) merged into
//! whatever object the row already had, with the subnet in canonical form and the gateway always
//! written out, so the same JSON also reads as the planner's `EffectiveNetwork`. Removing a
//! network through the driver (which refuses while containers are attached) also releases the
//! addresses that stopped containers still held in it: `ip_allocations` would otherwise refuse
//! the delete, and an address on a network that is gone means nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};

use crate::driver::network::config::NetworkConfig;
use crate::driver::network::ipam::{IpAllocation, IpamStore, PortAllocation, PortKey, StoreError};
use crate::driver::network::types::{AttachmentRecord, Protocol as NetProtocol};

use super::{Error, NetworkRecord, PortBinding, Protocol, Store, Tx};

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The network driver's [`IpamStore`] over a shared [`Store`] (see the module docs for how it is
/// shared and how runtime ids map to container names). Cloning shares the same store.
#[derive(Clone)]
pub struct SqliteIpam {
    store: Arc<Mutex<Store>>,
    /// Unix milliseconds "now", for the `*_at` columns (the store never reads the clock).
    clock: fn() -> i64,
}

impl std::fmt::Debug for SqliteIpam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteIpam").finish_non_exhaustive()
    }
}

impl SqliteIpam {
    /// An adapter over `store`, stamping rows with the system clock.
    pub fn new(store: Arc<Mutex<Store>>) -> Self {
        Self::with_clock(store, system_clock)
    }

    /// An adapter over `store` that takes "now" from `clock` (tests).
    pub fn with_clock(store: Arc<Mutex<Store>>, clock: fn() -> i64) -> Self {
        SqliteIpam { store, clock }
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    /// Runs `f` in one transaction; an error is prefixed with `what` (evaluated only on error).
    fn tx<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Tx<'_>, i64) -> Result<T, Error>,
    ) -> Result<T, StoreError> {
        let now = (self.clock)();
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        store
            .transaction(|tx| f(tx, now))
            .map_err(|e| StoreError(format!("{}: {e}", what())))
    }
}

/// The name of the container whose runtime id is `id`, if one is recorded.
fn name_of(tx: &Tx<'_>, id: &str) -> Result<Option<String>, Error> {
    Ok(tx
        .collect("SELECT name FROM containers WHERE id = ?1", [id], |r| {
            r.get::<_, String>(0)
        })?
        .pop())
}

/// Like [`name_of`], failing with an error that says what the daemon must do first.
fn require_name(tx: &Tx<'_>, id: &str) -> Result<String, Error> {
    name_of(tx, id)?.ok_or_else(|| Error::Invalid {
        what: format!("container id {id}"),
        reason: "no container with this runtime id is recorded in the state store (table \
                 containers); record the container before attaching it to a network"
            .into(),
    })
}

/// Container name -> runtime id, for every recorded container.
fn ids_by_name(tx: &Tx<'_>) -> Result<HashMap<String, String>, Error> {
    Ok(tx
        .collect("SELECT name, id FROM containers", [], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .into_iter()
        .collect())
}

fn to_store_proto(p: NetProtocol) -> Protocol {
    match p {
        NetProtocol::Tcp => Protocol::Tcp,
        NetProtocol::Udp => Protocol::Udp,
    }
}

fn from_store_proto(p: Protocol) -> Option<NetProtocol> {
    match p {
        Protocol::Tcp => Some(NetProtocol::Tcp),
        Protocol::Udp => Some(NetProtocol::Udp),
        Protocol::Sctp => None,
    }
}

fn v4(ip: Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}

impl IpamStore for SqliteIpam {
    fn ips(&self) -> Result<Vec<IpAllocation>, StoreError> {
        self.tx(
            || "reading IP allocations".into(),
            |tx, _| {
                let ids = ids_by_name(tx)?;
                Ok(tx
                    .all_ip_allocations()?
                    .into_iter()
                    .filter_map(|a| match (a.ip, ids.get(&a.container)) {
                        (IpAddr::V4(ip), Some(id)) => Some(IpAllocation {
                            network: a.network,
                            container_id: id.clone(),
                            ip,
                        }),
                        _ => None,
                    })
                    .collect())
            },
        )
    }

    fn record_ip(&self, alloc: &IpAllocation) -> Result<(), StoreError> {
        self.tx(
            || {
                format!(
                    "recording address {} of container {} on network {}",
                    alloc.ip, alloc.container_id, alloc.network
                )
            },
            |tx, now| {
                let name = require_name(tx, &alloc.container_id)?;
                if let Some(cur) = tx.container_ip(&alloc.network, &name)? {
                    if cur.ip == v4(alloc.ip) {
                        return Ok(());
                    }
                    tx.release_ip(&alloc.network, &name)?;
                }
                tx.reserve_ip(&alloc.network, &name, v4(alloc.ip), now)?;
                Ok(())
            },
        )
    }

    fn release_ips(&self, container_id: &str) -> Result<Vec<IpAllocation>, StoreError> {
        self.tx(
            || format!("releasing the addresses of container {container_id}"),
            |tx, _| {
                let Some(name) = name_of(tx, container_id)? else {
                    return Ok(Vec::new());
                };
                let mut gone = Vec::new();
                for a in tx.container_ips(&name)? {
                    tx.release_ip(&a.network, &name)?;
                    if let IpAddr::V4(ip) = a.ip {
                        gone.push(IpAllocation {
                            network: a.network,
                            container_id: container_id.to_string(),
                            ip,
                        });
                    }
                }
                Ok(gone)
            },
        )
    }

    fn host_ports(&self) -> Result<Vec<PortAllocation>, StoreError> {
        self.tx(
            || "reading port bindings".into(),
            |tx, _| {
                let ids = ids_by_name(tx)?;
                Ok(tx
                    .port_bindings()?
                    .into_iter()
                    .filter_map(|b| {
                        let IpAddr::V4(host_ip) = b.host_ip else {
                            return None;
                        };
                        Some(PortAllocation {
                            key: PortKey {
                                container_id: ids.get(&b.container)?.clone(),
                                protocol: from_store_proto(b.proto)?,
                                host_ip: (!host_ip.is_unspecified()).then_some(host_ip),
                                container_port: b.container_port,
                            },
                            host_port: b.host_port,
                        })
                    })
                    .collect())
            },
        )
    }

    fn record_host_port(&self, alloc: &PortAllocation) -> Result<(), StoreError> {
        let k = &alloc.key;
        self.tx(
            || {
                format!(
                    "recording host port {}:{}/{} for port {} of container {}",
                    k.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    alloc.host_port,
                    k.protocol,
                    k.container_port,
                    k.container_id
                )
            },
            |tx, _| {
                let name = require_name(tx, &k.container_id)?;
                tx.replace_port_binding(&PortBinding {
                    container: name,
                    host_ip: v4(k.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)),
                    host_port: alloc.host_port,
                    proto: to_store_proto(k.protocol),
                    container_port: k.container_port,
                })
            },
        )
    }

    fn release_host_ports(&self, container_id: &str) -> Result<(), StoreError> {
        self.tx(
            || format!("releasing the host ports of container {container_id}"),
            |tx, _| {
                if let Some(name) = name_of(tx, container_id)? {
                    tx.unbind_ports(&name)?;
                }
                Ok(())
            },
        )
    }

    fn attachments(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        self.tx(
            || "reading network attachment records".into(),
            |tx, _| {
                tx.network_attachments()?
                    .into_iter()
                    .map(|a| {
                        serde_json::from_value(a.record).map_err(|e| Error::Corrupt {
                            table: "network_attachments",
                            key: a.container_id,
                            column: "record",
                            reason: format!("not a network driver attachment record: {e}"),
                        })
                    })
                    .collect()
            },
        )
    }

    fn put_attachment(&self, rec: &AttachmentRecord) -> Result<(), StoreError> {
        self.tx(
            || format!("recording the network attachment of {}", rec.container_id),
            |tx, now| {
                let value = serde_json::to_value(rec).map_err(|e| Error::Invalid {
                    what: format!("network attachment of {}", rec.container_id),
                    reason: format!("cannot be encoded as JSON: {e}"),
                })?;
                tx.put_network_attachment(&rec.container_id, &value, now)
            },
        )
    }

    fn remove_attachment(&self, container_id: &str) -> Result<(), StoreError> {
        self.tx(
            || format!("removing the network attachment of {container_id}"),
            |tx, _| tx.remove_network_attachment(container_id).map(drop),
        )
    }

    fn networks(&self) -> Result<Vec<NetworkConfig>, StoreError> {
        self.tx(
            || "reading networks".into(),
            |tx, _| {
                tx.networks()?
                    .into_iter()
                    .map(|n| {
                        let mut cfg: NetworkConfig =
                            serde_json::from_value(n.config).map_err(|e| Error::Corrupt {
                                table: "networks",
                                key: n.name.clone(),
                                column: "config",
                                reason: format!("not a network config: {e}"),
                            })?;
                        // The columns are authoritative (the bridge column is the UNIQUE one).
                        cfg.name = n.name;
                        cfg.bridge = n.bridge;
                        Ok(cfg)
                    })
                    .collect()
            },
        )
    }

    fn put_network(&self, net: &NetworkConfig) -> Result<(), StoreError> {
        self.tx(
            || format!("recording network {}", net.name),
            |tx, now| {
                let existing = tx.network(&net.name)?;
                let mut config = match existing.as_ref().map(|e| &e.config) {
                    Some(serde_json::Value::Object(m)) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                let gateway = net.gateway();
                let subnet = net.network();
                for (k, v) in [
                    ("name", serde_json::json!(net.name)),
                    ("bridge", serde_json::json!(net.bridge)),
                    ("subnet", serde_json::json!(subnet.to_string())),
                    ("gateway", serde_json::json!(gateway.to_string())),
                    ("mtu", serde_json::json!(net.mtu)),
                    ("icc", serde_json::json!(net.icc)),
                ] {
                    config.insert(k.to_string(), v);
                }
                tx.upsert_network(&NetworkRecord {
                    name: net.name.clone(),
                    bridge: net.bridge.clone(),
                    subnet: subnet.to_string(),
                    gateway: Some(v4(gateway)),
                    config: serde_json::Value::Object(config),
                    created_at: existing.map_or(now, |e| e.created_at),
                })
            },
        )
    }

    fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        self.tx(
            || format!("removing network {name}"),
            |tx, _| {
                for a in tx.ip_allocations(name)? {
                    tx.release_ip(name, &a.container)?;
                    tracing::info!(
                        network = name,
                        container = %a.container,
                        ip = %a.ip,
                        "released the address of a container on a removed network"
                    );
                }
                tx.delete_network(name).map(drop)
            },
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::ipam::allocate_ip;
    use crate::driver::network::ports::choose_host_ports;
    use crate::driver::network::types::{NetworkMode, PortMapping};
    use crate::store::ContainerRecord;

    fn clock() -> i64 {
        1_700_000_000_000
    }

    fn ipam() -> SqliteIpam {
        let store = Store::open_in_memory().unwrap();
        SqliteIpam::with_clock(Arc::new(Mutex::new(store)), clock)
    }

    fn add_container(s: &SqliteIpam, name: &str, id: &str) {
        let mut store = s.store().lock().unwrap();
        store
            .transaction(|tx| {
                let mut c = tx.container(name)?.unwrap_or_else(|| {
                    ContainerRecord::new(name, id, serde_json::json!({}), "h", "sha256:x", 1)
                });
                c.id = id.to_string();
                tx.upsert_container(&c)
            })
            .unwrap();
    }

    fn net(name: &str, bridge: &str, subnet: &str) -> NetworkConfig {
        NetworkConfig {
            name: name.into(),
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn adapter_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SqliteIpam>();
        let _: Arc<dyn IpamStore> = Arc::new(ipam());
    }

    #[test]
    fn addresses_are_allocated_reused_across_recreate_and_released() {
        let s = ipam();
        let n = net("n", "br-n", "10.5.0.0/24");
        s.put_network(&n).unwrap();
        add_container(&s, "web", "id-web-1");
        add_container(&s, "db", "id-db-1");
        let a = allocate_ip(&s, &n, "id-web-1").unwrap();
        let b = allocate_ip(&s, &n, "id-db-1").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 5, 0, 2), "skips network and gateway");
        assert_eq!(b, Ipv4Addr::new(10, 5, 0, 3));
        assert_eq!(allocate_ip(&s, &n, "id-web-1").unwrap(), a, "stable");

        // Recreation: same name, new runtime id; the address follows the name.
        add_container(&s, "web", "id-web-2");
        assert_eq!(allocate_ip(&s, &n, "id-web-2").unwrap(), a);
        assert!(
            s.ips()
                .unwrap()
                .iter()
                .all(|x| x.container_id != "id-web-1"),
            "the old id is gone from the driver's view"
        );
        assert!(s.release_ips("id-web-1").unwrap().is_empty());
        assert_eq!(s.ips().unwrap().len(), 2, "releasing the old id keeps it");

        let gone = s.release_ips("id-web-2").unwrap();
        assert_eq!(
            gone,
            vec![IpAllocation {
                network: "n".into(),
                container_id: "id-web-2".into(),
                ip: a
            }]
        );
        assert!(s.release_ips("id-web-2").unwrap().is_empty(), "twice");
        add_container(&s, "cache", "id-cache");
        assert_eq!(
            allocate_ip(&s, &n, "id-cache").unwrap(),
            a,
            "freed one reused"
        );
    }

    #[test]
    fn addresses_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let n = net("n", "br-n", "10.6.0.0/24");
        let first = {
            let s = SqliteIpam::new(Arc::new(Mutex::new(Store::open(&state).unwrap())));
            s.put_network(&n).unwrap();
            add_container(&s, "web", "id-web");
            add_container(&s, "db", "id-db");
            allocate_ip(&s, &n, "id-web").unwrap();
            allocate_ip(&s, &n, "id-db").unwrap()
        };
        let s = SqliteIpam::new(Arc::new(Mutex::new(Store::open(&state).unwrap())));
        assert_eq!(allocate_ip(&s, &n, "id-db").unwrap(), first);
        assert_eq!(s.networks().unwrap().len(), 1);
    }

    #[test]
    fn conflicts_and_unknown_containers_are_clear_errors() {
        let s = ipam();
        let n = net("n", "br-n", "10.7.0.0/24");
        s.put_network(&n).unwrap();
        add_container(&s, "web", "id-web");
        add_container(&s, "db", "id-db");
        let a = allocate_ip(&s, &n, "id-web").unwrap();
        let e = s
            .record_ip(&IpAllocation {
                network: "n".into(),
                container_id: "id-db".into(),
                ip: a,
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10.7.0.2") && e.contains("already allocated to container web"),
            "{e}"
        );
        let e = s
            .record_ip(&IpAllocation {
                network: "n".into(),
                container_id: "id-ghost".into(),
                ip: Ipv4Addr::new(10, 7, 0, 9),
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("container id id-ghost") && e.contains("record the container"),
            "{e}"
        );
        let e = s
            .record_ip(&IpAllocation {
                network: "nope".into(),
                container_id: "id-db".into(),
                ip: Ipv4Addr::new(10, 7, 0, 9),
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such network: nope"), "{e}");
        // Moving a container to another address replaces its allocation.
        s.record_ip(&IpAllocation {
            network: "n".into(),
            container_id: "id-web".into(),
            ip: Ipv4Addr::new(10, 7, 0, 50),
        })
        .unwrap();
        assert_eq!(s.ips().unwrap().len(), 1);
        assert_eq!(s.ips().unwrap()[0].ip, Ipv4Addr::new(10, 7, 0, 50));

        let e = s
            .put_network(&net("other", "br-n", "10.8.0.0/24"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bridge br-n is already used by network n"),
            "{e}"
        );
    }

    #[test]
    fn random_host_ports_are_recorded_stable_unique_and_released() {
        let s = ipam();
        add_container(&s, "web", "id-web");
        add_container(&s, "db", "id-db");
        let key = |id: &str, ip: Option<Ipv4Addr>| PortKey {
            container_id: id.into(),
            protocol: NetProtocol::Udp,
            host_ip: ip,
            container_port: 53,
        };
        s.record_host_port(&PortAllocation {
            key: key("id-web", None),
            host_port: 40000,
        })
        .unwrap();
        s.record_host_port(&PortAllocation {
            key: key("id-web", None),
            host_port: 40001,
        })
        .unwrap();
        s.record_host_port(&PortAllocation {
            key: key("id-web", Some(Ipv4Addr::LOCALHOST)),
            host_port: 40002,
        })
        .unwrap();
        let mut ports = s.host_ports().unwrap();
        ports.sort_by_key(|p| p.host_port);
        assert_eq!(
            ports,
            vec![
                PortAllocation {
                    key: key("id-web", None),
                    host_port: 40001
                },
                PortAllocation {
                    key: key("id-web", Some(Ipv4Addr::LOCALHOST)),
                    host_port: 40002
                },
            ],
            "replaced per key; 0.0.0.0 reads back as every address"
        );
        // The database refuses a second owner of the port, naming the holder.
        let e = s
            .record_host_port(&PortAllocation {
                key: key("id-db", Some(Ipv4Addr::new(127, 0, 0, 2))),
                host_port: 40001,
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("127.0.0.2:40001/udp") && e.contains("already bound by container web"),
            "{e}"
        );
        let e = s
            .record_host_port(&PortAllocation {
                key: key("id-ghost", None),
                host_port: 40009,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("container id id-ghost"), "{e}");

        // The driver's chooser hands out the recorded port again, also after recreation.
        let m = [PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 80,
            protocol: NetProtocol::Tcp,
        }];
        let free = |_: Option<Ipv4Addr>, _: u16, _: NetProtocol| Ok(());
        let first = choose_host_ports(&s, "id-db", "db", &m, (41000, 41999), &[], &free).unwrap();
        add_container(&s, "db", "id-db-2");
        let again = choose_host_ports(&s, "id-db-2", "db", &m, (41000, 41999), &[], &free).unwrap();
        assert_eq!(first, again);
        assert_eq!(s.host_ports().unwrap().len(), 3);

        s.release_host_ports("id-web").unwrap();
        s.release_host_ports("id-web").unwrap();
        s.release_host_ports("id-unknown").unwrap();
        let left = s.host_ports().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key.container_id, "id-db-2");
    }

    #[test]
    fn removing_the_container_row_releases_everything() {
        let s = ipam();
        let n = net("n", "br-n", "10.9.0.0/24");
        s.put_network(&n).unwrap();
        add_container(&s, "web", "id-web");
        allocate_ip(&s, &n, "id-web").unwrap();
        s.record_host_port(&PortAllocation {
            key: PortKey {
                container_id: "id-web".into(),
                protocol: NetProtocol::Tcp,
                host_ip: None,
                container_port: 80,
            },
            host_port: 42000,
        })
        .unwrap();
        s.store()
            .lock()
            .unwrap()
            .transaction(|tx| tx.delete_container("web"))
            .unwrap();
        assert!(s.ips().unwrap().is_empty());
        assert!(s.host_ports().unwrap().is_empty());
    }

    #[test]
    fn attachments_and_networks_round_trip() {
        let s = ipam();
        let rec = AttachmentRecord {
            container_id: "id-web".into(),
            name: "web".into(),
            mode: NetworkMode::Bridge(vec!["n".into()]),
            complete: false,
            owned_netns: Some("/run/netns/agent-id-web".into()),
            endpoints: vec![],
            ports: vec![],
            links: vec![],
            aliases: Default::default(),
        };
        // No container row needed: the record is written before the container may exist.
        s.put_attachment(&rec).unwrap();
        let mut done = rec.clone();
        done.complete = true;
        s.put_attachment(&done).unwrap();
        assert_eq!(s.attachments().unwrap(), vec![done]);
        s.remove_attachment("id-web").unwrap();
        s.remove_attachment("id-web").unwrap();
        assert!(s.attachments().unwrap().is_empty());

        // A row the planner wrote keeps its own keys and its creation time.
        s.store()
            .lock()
            .unwrap()
            .transaction(|tx| {
                tx.upsert_network(&NetworkRecord {
                    name: "n".into(),
                    bridge: "br-n".into(),
                    subnet: "10.10.0.0/24".into(),
                    gateway: None,
                    config: serde_json::json!({"name": "n", "extra": 7}),
                    created_at: 5,
                })
            })
            .unwrap();
        let mut n = net("n", "br-n", "10.10.0.0/24");
        n.icc = false;
        n.mtu = 1400;
        s.put_network(&n).unwrap();
        let got = s.networks().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].gateway(), Ipv4Addr::new(10, 10, 0, 1));
        assert_eq!((got[0].mtu, got[0].icc), (1400, false));
        assert_eq!(got[0].network(), n.network());
        let row = s
            .store()
            .lock()
            .unwrap()
            .transaction(|tx| tx.network("n"))
            .unwrap()
            .unwrap();
        assert_eq!(row.created_at, 5);
        assert_eq!(row.config["extra"], 7);
        assert_eq!(row.config["gateway"], "10.10.0.1");

        // Removing the network releases addresses stopped containers still held there.
        add_container(&s, "web", "id-web");
        allocate_ip(&s, &n, "id-web").unwrap();
        s.remove_network("n").unwrap();
        s.remove_network("n").unwrap();
        assert!(s.networks().unwrap().is_empty());
        assert!(s.ips().unwrap().is_empty());
    }

    #[test]
    fn concurrent_callers_get_distinct_addresses() {
        let s = ipam();
        let n = net("n", "br-n", "10.11.0.0/24");
        s.put_network(&n).unwrap();
        for i in 0..8 {
            add_container(&s, &format!("c{i}"), &format!("id-{i}"));
        }
        // The driver serialises its own calls; the database still keeps two adapters sharing
        // one store from handing out one address twice.
        let shared: Arc<dyn IpamStore> = Arc::new(s.clone());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let st = shared.clone();
                let n = n.clone();
                std::thread::spawn(move || allocate_ip(st.as_ref(), &n, &format!("id-{i}")))
            })
            .collect();
        let mut got: Vec<Ipv4Addr> = Vec::new();
        let mut failures = Vec::new();
        for h in handles {
            match h.join().unwrap() {
                Ok(ip) => got.push(ip),
                Err(e) => failures.push(e.to_string()),
            }
        }
        // A lost race shows up as the database's uniqueness error, never as a duplicate.
        for f in &failures {
            assert!(f.contains("already allocated to container"), "{f}");
        }
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "{got:?}");
        assert_eq!(s.ips().unwrap().len(), got.len());
    }
}
