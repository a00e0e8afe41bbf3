//! Table `port_bindings`: published ports, one host address/port/protocol per container port.
//!
//! Two bindings conflict when they have the same host port and protocol and either the same host
//! address or one of them is the unspecified address of the same family (`0.0.0.0` takes the port
//! on every IPv4 address, `::` on every IPv6 one), as the kernel's `bind` would see it. The
//! primary key (host ip, host port, proto) is the backstop for exact duplicates.

use std::net::IpAddr;

use rusqlite::{Row, params};

use super::row::{int, ip_text, is_constraint, parse};
use super::{Error, Result, Tx};

/// Transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err("expected tcp, udp or sctp".into()),
        }
    }
}

/// A published port: `host_ip:host_port/proto` forwards to `container_port` of `container`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortBinding {
    pub container: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub proto: Protocol,
    pub container_port: u16,
}

const COLUMNS: &str = "container, host_ip, host_port, proto, container_port";

fn binding_row(r: &Row<'_>) -> rusqlite::Result<PortBinding> {
    const T: &str = "port_bindings";
    let container: String = r.get(0)?;
    let host_ip: String = r.get(1)?;
    let key = format!("{container} {host_ip}");
    Ok(PortBinding {
        host_ip: parse(T, &key, "host_ip", &host_ip)?,
        host_port: int(T, &key, "host_port", r.get(2)?)?,
        proto: parse(T, &key, "proto", &r.get::<_, String>(3)?)?,
        container_port: int(T, &key, "container_port", r.get(4)?)?,
        container,
    })
}

fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
}

impl Tx<'_> {
    /// Records `b`. Fails with [`Error::PortAlreadyBound`] naming the holder when the host port
    /// is taken (see the module docs for what conflicts). Recording the identical binding again
    /// succeeds.
    pub fn bind_port(&self, b: &PortBinding) -> Result<()> {
        if b.host_port == 0 || b.container_port == 0 {
            return Err(Error::Invalid {
                what: format!("port binding of container {}", b.container),
                reason: "port 0 is not a port; pick the host port before recording it".into(),
            });
        }
        self.require_container(&b.container)?;
        let sql =
            format!("SELECT {COLUMNS} FROM port_bindings WHERE host_port = ?1 AND proto = ?2");
        let same_port = self.collect(&sql, params![b.host_port, b.proto.as_str()], binding_row)?;
        if same_port.iter().any(|x| x == b) {
            return Ok(());
        }
        if let Some(holder) = same_port.iter().find(|x| overlaps(x.host_ip, b.host_ip)) {
            return Err(port_taken(b, &holder.container));
        }
        let res = self.conn().execute(
            "INSERT INTO port_bindings (container, host_ip, host_port, proto, container_port)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                b.container,
                ip_text(b.host_ip),
                b.host_port,
                b.proto.as_str(),
                b.container_port
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(port_taken(b, "(unknown)")),
            Err(e) => Err(e.into()),
        }
    }

    /// Records `b` in place of the container's binding of the same host address, protocol and
    /// container port (e.g. a new random host port for the same publication). Conflicts as
    /// [`Tx::bind_port`].
    pub fn replace_port_binding(&self, b: &PortBinding) -> Result<()> {
        self.conn().execute(
            "DELETE FROM port_bindings
             WHERE container = ?1 AND host_ip = ?2 AND proto = ?3 AND container_port = ?4",
            params![
                b.container,
                ip_text(b.host_ip),
                b.proto.as_str(),
                b.container_port
            ],
        )?;
        self.bind_port(b)
    }

    /// Replaces every binding of `container` with `bindings`, all or nothing.
    pub fn set_container_ports(&self, container: &str, bindings: &[PortBinding]) -> Result<()> {
        self.require_container(container)?;
        self.unbind_ports(container)?;
        for b in bindings {
            if b.container != container {
                return Err(Error::Invalid {
                    what: format!("port bindings of container {container}"),
                    reason: format!(
                        "binding {}:{}/{} names container {}",
                        b.host_ip, b.host_port, b.proto, b.container
                    ),
                });
            }
            self.bind_port(b)?;
        }
        Ok(())
    }

    /// Every binding, by host port.
    pub fn port_bindings(&self) -> Result<Vec<PortBinding>> {
        let sql = format!("SELECT {COLUMNS} FROM port_bindings ORDER BY host_port, proto, host_ip");
        self.collect(&sql, [], binding_row)
    }

    /// The bindings of `container`, by host port.
    pub fn container_ports(&self, container: &str) -> Result<Vec<PortBinding>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM port_bindings WHERE container = ?1 ORDER BY host_port, proto, host_ip"
        );
        self.collect(&sql, [container], binding_row)
    }

    /// Removes every binding of `container`; returns how many there were.
    pub fn unbind_ports(&self, container: &str) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM port_bindings WHERE container = ?1",
            [container],
        )?)
    }
}

fn port_taken(b: &PortBinding, holder: &str) -> Error {
    Error::PortAlreadyBound {
        host_ip: b.host_ip,
        host_port: b.host_port,
        proto: b.proto,
        container: holder.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_address_overlaps_its_family_only() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let lo4 = IpAddr::from([127, 0, 0, 1]);
        let other4 = IpAddr::from([127, 0, 0, 2]);
        let any6 = IpAddr::from([0u16; 8]);
        let lo6 = IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]);
        assert!(overlaps(any4, lo4));
        assert!(overlaps(lo4, any4));
        assert!(overlaps(lo4, lo4));
        assert!(!overlaps(lo4, other4));
        assert!(overlaps(any6, lo6));
        assert!(!overlaps(any6, lo4));
        assert!(!overlaps(any4, lo6));
    }
}
