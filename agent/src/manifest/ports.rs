//! Published ports: Docker's short form `"[ip:][hostPort:]containerPort[/proto]"` and the long form
//! `{hostIp, hostPort, containerPort, protocol}`, both with ranges (`8000-8010:80-90`).
//!
//! Decisions:
//! - Without `hostPort` the agent picks a free host port (Docker's `-p 80`); such mappings never
//!   conflict with others.
//! - A host range must be as long as the container range (`8000-8001:80-81`); Docker's "any port
//!   of this host range" form (`8000-8010:80`) is not supported, because the agent keeps a
//!   container's bindings stable across restarts.
//! - IPv6 host addresses are written in brackets in the short form: `"[::1]:8080:80"`.
//! - A missing host IP means every address (`0.0.0.0`, and `::` when IPv6 is enabled), which
//!   overlaps with every specific address of the same family (see [`PortMapping::host_overlap`]).
//! - Ports are 1..=65535; the protocol is `tcp` (default), `udp` or `sctp`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The allowed forms of a port mapping, used in error messages.
pub const PORT_HELP: &str = "a port is \"[ip:][hostPort:]containerPort[/tcp|udp|sctp]\" (ports 1-65535, ranges like 8000-8010), e.g. \"127.0.0.1:8080:80/tcp\", or {hostIp, hostPort, containerPort, protocol}";

/// Transport protocol of a published port.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// An inclusive range of ports; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// A range of one port.
    pub fn single(port: u16) -> Self {
        PortRange {
            start: port,
            end: port,
        }
    }
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
    /// Never true: a range holds at least one port. (Present for clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Whether the two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is out of range 1-65535")),
        Err(_) => Err(format!("{s:?} is not a port number")),
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('-') {
            None => parse_port(s).map(PortRange::single),
            Some((a, b)) => {
                let (start, end) = (parse_port(a)?, parse_port(b)?);
                if start > end {
                    return Err(format!("port range {s:?} ends before it starts"));
                }
                Ok(PortRange { start, end })
            }
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.start == self.end {
            s.serialize_u16(self.start)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port 1-65535 or a range like \"8000-8010\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                parse_port(&v.to_string())
                    .map(PortRange::single)
                    .map_err(E::custom)
            }
            // YAML integers arrive as i64 when they fit (the long form's `hostPort: 8080`).
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("port {v} is out of range 1-65535"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for PortRange {
    fn schema_name() -> Cow<'static, str> {
        "PortRange".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A port 1-65535 or a range \"start-end\".",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"}
            ]
        })
    }
}

/// One published port (or range). Serialised in the long form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Host address to bind; `None` is every address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// Host port(s); `None` lets the agent pick a free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<PortRange>,
    /// Port(s) inside the container.
    pub container_port: PortRange,
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether two mappings would bind the same host address, port and protocol. A missing or
    /// unspecified (`0.0.0.0` / `::`) host IP overlaps every address of its family (a missing one
    /// overlaps both families). Mappings without a host port never overlap.
    pub fn host_overlap(&self, other: &PortMapping) -> bool {
        let (Some(a), Some(b)) = (self.host_port, other.host_port) else {
            return false;
        };
        if self.protocol != other.protocol || !a.overlaps(&b) {
            return false;
        }
        match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) => {
                x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
            }
        }
    }

    /// Checks the host and container ranges fit together.
    fn check(self) -> Result<Self, String> {
        if let Some(h) = self.host_port
            && h.len() != self.container_port.len()
        {
            return Err(format!(
                "host port range {h} and container port range {} differ in length",
                self.container_port
            ));
        }
        Ok(self)
    }
}

impl fmt::Display for PortMapping {
    /// The short form: `127.0.0.1:8080:80/tcp`, `[::1]:8080:80/udp`, `80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_ip, self.host_port) {
            (_, Some(p)) => write!(f, "{p}:")?,
            (Some(_), None) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_port, self.protocol)
    }
}

impl FromStr for PortMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wrap = |e: String| format!("invalid port {s:?}: {e}; {PORT_HELP}");
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, p)) => {
                let protocol = match p {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "sctp" => Protocol::Sctp,
                    _ => return Err(wrap(format!("unknown protocol {p:?}"))),
                };
                (rest, protocol)
            }
            None => (s, Protocol::Tcp),
        };
        // Split off a bracketed IPv6 address first, then the rest on ':'.
        let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, tail) = r.split_once("]:").ok_or_else(|| {
                wrap("an IPv6 address in brackets must be followed by ':'".into())
            })?;
            (Some(ip), tail)
        } else {
            (None, rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [i, h, c]) => (Some(*i), Some(*h), *c),
            (Some(i), [h, c]) => (Some(i), Some(*h), *c),
            _ => return Err(wrap("too many ':'".into())),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => Some(
                i.parse::<IpAddr>()
                    .map_err(|_| wrap(format!("{i:?} is not an IP address")))?,
            ),
        };
        let host_port = match host {
            None | Some("") => None,
            Some(h) => Some(h.parse::<PortRange>().map_err(wrap)?),
        };
        let container_port = container.parse::<PortRange>().map_err(wrap)?;
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
        .check()
        .map_err(wrap)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LongForm {
    #[serde(default)]
    host_ip: Option<IpAddr>,
    #[serde(default)]
    host_port: Option<PortRange>,
    container_port: PortRange,
    #[serde(default)]
    protocol: Protocol,
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortMapping;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(PORT_HELP)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortMapping, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortMapping, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortMapping, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortMapping, A::Error> {
                let l = LongForm::deserialize(de::value::MapAccessDeserializer::new(map))?;
                PortMapping {
                    host_ip: l.host_ip,
                    host_port: l.host_port,
                    container_port: l.container_port,
                    protocol: l.protocol,
                }
                .check()
                .map_err(|e| de::Error::custom(format!("invalid port: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for PortMapping {
    fn schema_name() -> Cow<'static, str> {
        "PortMapping".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let range = generator.subschema_for::<PortRange>();
        let proto = generator.subschema_for::<Protocol>();
        json_schema!({
            "description": "A published port: short form \"[ip:][hostPort:]containerPort[/proto]\" or the long form.",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^((\\[[0-9a-fA-F:.]+\\]|[0-9.]+)?:)?([0-9]{1,5}(-[0-9]{1,5})?:)?[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp|sctp))?$"},
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["containerPort"],
                    "properties": {
                        "hostIp": {"type": "string", "description": "Host address to bind; default every address.", "format": "ip"},
                        "hostPort": range,
                        "containerPort": range,
                        "protocol": proto
                    }
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMapping {
        match s.parse() {
            Ok(p) => p,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn short_forms() {
        let m = p("80");
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.protocol),
            (None, None, PortRange::single(80), Protocol::Tcp)
        );
        let m = p("8080:80");
        assert_eq!(m.host_port, Some(PortRange::single(8080)));
        let m = p("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(m.protocol, Protocol::Udp);
        let m = p("127.0.0.1::80");
        assert_eq!(
            (m.host_port, m.container_port),
            (None, PortRange::single(80))
        );
        let m = p("[::1]:8080:80/sctp");
        assert_eq!(m.host_ip, Some("::1".parse().expect("ip")));
        let m = p("8000-8010:9000-9010");
        assert_eq!(
            m.host_port,
            Some(PortRange {
                start: 8000,
                end: 8010
            })
        );
        assert_eq!(m.container_port.len(), 11);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "80/tcp",
            "8080:80/tcp",
            "127.0.0.1:8080:80/udp",
            "[::1]:8080:80/tcp",
            "127.0.0.1::80/tcp",
            "1-3:4-6/tcp",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn bad_short_forms() {
        for bad in [
            "",
            "0",
            "65536",
            "80/icmp",
            "a:80",
            "1.2.3.4.5:80:80",
            "1:2:3:4",
            "90-80",
            "8000-8010:80",
            "[::1]8080:80",
            "-1",
        ] {
            let err = bad.parse::<PortMapping>().expect_err(bad);
            assert!(err.contains("invalid port"), "{bad}: {err}");
        }
    }

    #[test]
    fn overlap_rules() {
        let o = |a: &str, b: &str| p(a).host_overlap(&p(b));
        assert!(o("8080:80", "8080:81"));
        assert!(!o("8080:80", "8080:80/udp"));
        assert!(o("0.0.0.0:8080:80", "127.0.0.1:8080:80"));
        assert!(o("8080:80", "127.0.0.1:8080:80"));
        assert!(!o("127.0.0.1:8080:80", "127.0.0.2:8080:80"));
        assert!(o("8000-8010:8000-8010", "8005:80"));
        assert!(!o("8000-8010:8000-8010", "8011:80"));
        assert!(!o("80", "80"));
        assert!(!o("[::]:8080:80", "127.0.0.1:8080:80"));
        assert!(o("[::]:8080:80", "[::1]:8080:80"));
    }
}
