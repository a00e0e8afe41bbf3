//! Tables `networks` and `ip_allocations`: bridges, subnets and the addresses handed out.
//!
//! Choosing the next candidate address (skipping the network and broadcast addresses and the
//! gateway) is the network driver's job; the store guarantees, inside one transaction, that an
//! address is given to at most one container per network and that a container keeps the address
//! it already has.

use std::net::IpAddr;

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{ip_text, is_constraint, json, parse, to_json};
use super::{Error, Result, Tx};

/// A bridge network.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    /// The Linux bridge device (unique among networks).
    pub bridge: String,
    /// CIDR, e.g. `10.88.0.0/16`.
    pub subnet: String,
    pub gateway: Option<IpAddr>,
    /// The network's effective config (opaque to the store).
    pub config: Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One address of one container in one network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpAllocation {
    pub network: String,
    pub ip: IpAddr,
    pub container: String,
    /// Unix milliseconds.
    pub allocated_at: i64,
}

const NETWORK_COLUMNS: &str = "name, bridge, subnet, gateway, config, created_at";

fn network_row(r: &Row<'_>) -> rusqlite::Result<NetworkRecord> {
    let name: String = r.get(0)?;
    let gateway: Option<String> = r.get(3)?;
    Ok(NetworkRecord {
        bridge: r.get(1)?,
        subnet: r.get(2)?,
        gateway: match gateway {
            Some(g) => Some(parse("networks", &name, "gateway", &g)?),
            None => None,
        },
        config: json("networks", &name, "config", &r.get::<_, String>(4)?)?,
        created_at: r.get(5)?,
        name,
    })
}

fn allocation_row(r: &Row<'_>) -> rusqlite::Result<IpAllocation> {
    let network: String = r.get(0)?;
    let ip: String = r.get(1)?;
    Ok(IpAllocation {
        ip: parse("ip_allocations", &format!("{network} {ip}"), "ip", &ip)?,
        container: r.get(2)?,
        allocated_at: r.get(3)?,
        network,
    })
}

impl Tx<'_> {
    /// Records `net`, updating the row of the same name.
    pub fn upsert_network(&self, net: &NetworkRecord) -> Result<()> {
        if let Some(other) = self.network_by_bridge(&net.bridge)?
            && other.name != net.name
        {
            return Err(Error::Invalid {
                what: format!("network {}", net.name),
                reason: format!(
                    "bridge {} is already used by network {}",
                    net.bridge, other.name
                ),
            });
        }
        self.conn().execute(
            "INSERT INTO networks (name, bridge, subnet, gateway, config, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET bridge = excluded.bridge, subnet = excluded.subnet,
                gateway = excluded.gateway, config = excluded.config,
                created_at = excluded.created_at",
            params![
                net.name,
                net.bridge,
                net.subnet,
                net.gateway.map(ip_text),
                to_json(&format!("network {} config", net.name), &net.config)?,
                net.created_at
            ],
        )?;
        Ok(())
    }

    pub fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        let sql = format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE name = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [name], network_row)
            .optional()?)
    }

    pub fn network_by_bridge(&self, bridge: &str) -> Result<Option<NetworkRecord>> {
        let sql = format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE bridge = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [bridge], network_row)
            .optional()?)
    }

    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let sql = format!("SELECT {NETWORK_COLUMNS} FROM networks ORDER BY name");
        self.collect(&sql, [], network_row)
    }

    /// Removes a network; refused with [`Error::NetworkInUse`] while containers hold addresses
    /// in it. True if it existed.
    pub fn delete_network(&self, name: &str) -> Result<bool> {
        let users: Vec<String> = self.collect(
            "SELECT container FROM ip_allocations WHERE network = ?1 ORDER BY container",
            [name],
            |r| r.get(0),
        )?;
        if !users.is_empty() {
            return Err(Error::NetworkInUse {
                name: name.to_string(),
                users,
            });
        }
        let n = self
            .conn()
            .execute("DELETE FROM networks WHERE name = ?1", [name])?;
        Ok(n > 0)
    }

    /// The address of `container` in `network`: the one it already has, or else the first of
    /// `candidates` that no container holds, recorded at `now`. Fails with
    /// [`Error::NetworkFull`] when every candidate is taken.
    pub fn allocate_ip(
        &self,
        network: &str,
        container: &str,
        candidates: impl IntoIterator<Item = IpAddr>,
        now: i64,
    ) -> Result<IpAllocation> {
        self.require_network(network)?;
        self.require_container(container)?;
        if let Some(existing) = self.container_ip(network, container)? {
            return Ok(existing);
        }
        let taken: std::collections::HashSet<String> = self
            .collect(
                "SELECT ip FROM ip_allocations WHERE network = ?1",
                [network],
                |r| r.get(0),
            )?
            .into_iter()
            .collect();
        let ip = candidates
            .into_iter()
            .find(|ip| !taken.contains(&ip_text(*ip)))
            .ok_or_else(|| Error::NetworkFull {
                network: network.to_string(),
            })?;
        self.insert_allocation(network, container, ip, now)
    }

    /// Gives `container` exactly `ip` in `network` (a static address). Succeeds if it already has
    /// it; fails with [`Error::IpInUse`] if another container holds it, and with
    /// [`Error::Invalid`] if the container already has a different address there.
    pub fn reserve_ip(
        &self,
        network: &str,
        container: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<IpAllocation> {
        self.require_network(network)?;
        self.require_container(container)?;
        if let Some(existing) = self.container_ip(network, container)? {
            if existing.ip == ip {
                return Ok(existing);
            }
            return Err(Error::Invalid {
                what: format!("address {ip} for container {container} in network {network}"),
                reason: format!(
                    "the container already has {}; release it first",
                    existing.ip
                ),
            });
        }
        self.insert_allocation(network, container, ip, now)
    }

    fn insert_allocation(
        &self,
        network: &str,
        container: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<IpAllocation> {
        let res = self.conn().execute(
            "INSERT INTO ip_allocations (network, ip, container, allocated_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![network, ip_text(ip), container, now],
        );
        match res {
            Ok(_) => Ok(IpAllocation {
                network: network.to_string(),
                ip,
                container: container.to_string(),
                allocated_at: now,
            }),
            Err(e) if is_constraint(&e) => match self.ip_holder(network, ip)? {
                Some(holder) => Err(Error::IpInUse {
                    network: network.to_string(),
                    ip,
                    container: holder,
                }),
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The container holding `ip` in `network`, if any.
    pub fn ip_holder(&self, network: &str, ip: IpAddr) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT container FROM ip_allocations WHERE network = ?1 AND ip = ?2",
                params![network, ip_text(ip)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The address of `container` in `network`, if it has one.
    pub fn container_ip(&self, network: &str, container: &str) -> Result<Option<IpAllocation>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT network, ip, container, allocated_at FROM ip_allocations
                 WHERE network = ?1 AND container = ?2",
                [network, container],
                allocation_row,
            )
            .optional()?)
    }

    /// Every address of `container`, by network.
    pub fn container_ips(&self, container: &str) -> Result<Vec<IpAllocation>> {
        self.collect(
            "SELECT network, ip, container, allocated_at FROM ip_allocations
             WHERE container = ?1 ORDER BY network",
            [container],
            allocation_row,
        )
    }

    /// Every address handed out, by network and container.
    pub fn all_ip_allocations(&self) -> Result<Vec<IpAllocation>> {
        self.collect(
            "SELECT network, ip, container, allocated_at FROM ip_allocations
             ORDER BY network, container",
            [],
            allocation_row,
        )
    }

    /// Every address handed out in `network`, by container.
    pub fn ip_allocations(&self, network: &str) -> Result<Vec<IpAllocation>> {
        self.collect(
            "SELECT network, ip, container, allocated_at FROM ip_allocations
             WHERE network = ?1 ORDER BY container",
            [network],
            allocation_row,
        )
    }

    /// Releases the address of `container` in `network`; true if it had one.
    pub fn release_ip(&self, network: &str, container: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM ip_allocations WHERE network = ?1 AND container = ?2",
            [network, container],
        )?;
        Ok(n > 0)
    }

    fn require_network(&self, name: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM networks WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::NotFound {
                kind: "network",
                name: name.to_string(),
            }),
        }
    }
}
