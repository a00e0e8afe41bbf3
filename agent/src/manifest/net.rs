//! Small network value types of the manifests: IPv4 subnets in CIDR form.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network `a.b.c.d/len` whose host bits are zero (`10.214.7.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// The netmask as an integer.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    /// The broadcast address (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// The first usable host address, the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let help = "an IPv4 subnet is \"a.b.c.d/len\" with len 8-30 and no host bits set, e.g. \"10.214.7.0/24\"";
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet {s:?}: {help}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid subnet {s:?}: {a:?} is not an IPv4 address; {help}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                format!("invalid subnet {s:?}: prefix length {p:?} is not in 8-30; {help}")
            })?;
        let cidr = Ipv4Cidr { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & cidr.mask());
            return Err(format!(
                "invalid subnet {s:?}: host bits are set (did you mean \"{net}/{prefix}\"?)"
            ));
        }
        Ok(cidr)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::units::parse_string(d, "an IPv4 subnet such as \"10.214.7.0/24\"")
    }
}

impl JsonSchema for Ipv4Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Ipv4Cidr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An IPv4 subnet \"a.b.c.d/len\" (len 8-30, no host bits set).",
            "type": "string",
            "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_host_bits() {
        let c: Ipv4Cidr = "10.214.7.0/24".parse().expect("cidr");
        assert_eq!(c.first_host(), Ipv4Addr::new(10, 214, 7, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 214, 7, 255));
        assert!(c.contains(Ipv4Addr::new(10, 214, 7, 9)));
        assert!(!c.contains(Ipv4Addr::new(10, 214, 8, 9)));
        let e = "10.214.7.1/24".parse::<Ipv4Cidr>().expect_err("host bits");
        assert!(e.contains("did you mean \"10.214.7.0/24\""), "{e}");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/7",
            "x/24",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap() {
        let a: Ipv4Cidr = "10.0.0.0/8".parse().expect("a");
        let b: Ipv4Cidr = "10.214.7.0/24".parse().expect("b");
        let c: Ipv4Cidr = "10.214.8.0/24".parse().expect("c");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&c));
    }
}

/// One network a container joins, with its extra names there (the `networks` field of a
/// Container).
///
/// Written as a list of names (`networks: [backend, front]`) or, with aliases, as a mapping of
/// name to settings (`networks: {backend: {aliases: [db]}, front: {}}`, Compose's long form; an
/// empty value may be left out: `front:`). Serialising writes the list when no network has
/// aliases, else the mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkRef {
    /// The Network manifest's name.
    pub name: String,
    /// More names of the container on this network, answered by the network's DNS server
    /// besides the container's own name.
    pub aliases: Vec<String>,
}

/// A network reference compares equal to its name when it has no aliases (the short form).
impl PartialEq<String> for NetworkRef {
    fn eq(&self, other: &String) -> bool {
        self.aliases.is_empty() && self.name == *other
    }
}

/// The settings of one network in the mapping form.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "NetworkSettings")]
pub struct NetworkSettings {
    /// More names of the container on this network (DNS names: letters, digits, '-' and '.').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// Reads the `networks` field: a list of names or a mapping of name to settings.
pub fn deserialize_networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NetworkRef>, D::Error> {
    use serde::de::{MapAccess, SeqAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<NetworkRef>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a list of network names, or a mapping of network name to {aliases: [NAME, ...]}",
            )
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.push(NetworkRef {
                    name,
                    aliases: Vec::new(),
                });
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((name, settings)) =
                map.next_entry::<String, Option<NetworkSettings>>()?
            {
                out.push(NetworkRef {
                    name,
                    aliases: settings.unwrap_or_default().aliases,
                });
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Writes the `networks` field: the list of names, or the mapping when some network has aliases.
pub fn serialize_networks<S: Serializer>(v: &[NetworkRef], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    if v.iter().all(|n| n.aliases.is_empty()) {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for n in v {
            seq.serialize_element(&n.name)?;
        }
        seq.end()
    } else {
        let mut map = s.serialize_map(Some(v.len()))?;
        for n in v {
            map.serialize_entry(
                &n.name,
                &NetworkSettings {
                    aliases: n.aliases.clone(),
                },
            )?;
        }
        map.end()
    }
}

/// The schema of the `networks` field.
pub fn networks_schema(generator: &mut SchemaGenerator) -> Schema {
    let settings = generator.subschema_for::<NetworkSettings>();
    json_schema!({
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {
                "type": "object",
                "additionalProperties": {"anyOf": [settings, {"type": "null"}]}
            }
        ]
    })
}
