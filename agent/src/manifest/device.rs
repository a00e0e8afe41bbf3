//! Devices of a container: `devices` (host device nodes, Docker's
//! `--device /dev/video0:/dev/cam0:rw`, Compose's long form `{source, target, permissions}`, or
//! CDI names `vendor.com/class=name`) and `deviceCgroupRules` (Docker's
//! `--device-cgroup-rule 'c 188:* rmw'`).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::units::parse_string;

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Device {
    /// A device node of the host, made in the container at `target` (default: the same path)
    /// and allowed by the device cgroup with `permissions`.
    Node {
        source: PathBuf,
        target: Option<PathBuf>,
        permissions: DeviceAccess,
    },
    /// A CDI device (`nvidia.com/gpu=all`), resolved from the CDI spec files when the container
    /// is created.
    Cdi(CdiName),
}

/// A CDI fully qualified device name: `vendor/class=name`, with a vendor of a DNS-ish name
/// (`nvidia.com`), a class of `[A-Za-z0-9_.-]` and a device name of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CdiName {
    /// `vendor/class`: the `kind` of the CDI spec that defines it.
    pub kind: String,
    pub name: String,
}

impl CdiName {
    /// Parses `vendor/class=name` (as the CDI spec's `parser.ParseQualifiedName`).
    pub fn parse(s: &str) -> Result<CdiName, String> {
        let bad = |why: &str| {
            format!("invalid CDI device name {s:?}: {why}; expected vendor.com/class=name")
        };
        let (kind, name) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (vendor, class) = kind
            .split_once('/')
            .ok_or_else(|| bad("no '/' in the kind"))?;
        let word = |v: &str, extra: &[u8]| {
            !v.is_empty()
                && v.as_bytes()[0].is_ascii_alphanumeric()
                && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        };
        if !word(vendor, b"-._") {
            return Err(bad("bad vendor"));
        }
        if !word(class, b"-._") {
            return Err(bad("bad class"));
        }
        if !word(name, b"-._:") {
            return Err(bad("bad device name"));
        }
        Ok(CdiName {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for CdiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.name)
    }
}

/// Device cgroup access: a non-empty subset of `r` (read), `w` (write), `m` (mknod), kept in
/// that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceAccess(String);

impl DeviceAccess {
    /// `rwm`, Docker's default for `--device`.
    pub fn all() -> DeviceAccess {
        DeviceAccess("rwm".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DeviceAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || !s.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "invalid device permissions {s:?}: a non-empty combination of r, w and m"
            ));
        }
        let canon: String = "rwm".chars().filter(|c| s.contains(*c)).collect();
        if canon.len() != s.len() {
            return Err(format!(
                "invalid device permissions {s:?}: a letter repeats"
            ));
        }
        Ok(DeviceAccess(canon))
    }
}

impl fmt::Display for DeviceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const DEVICE_HELP: &str = "a device is \"/dev/HOST[:/dev/CONTAINER][:rwm]\", {source: /dev/HOST, target: /dev/CONTAINER, permissions: rw}, or a CDI name \"vendor.com/class=name\"";

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            if s.contains('=') {
                return CdiName::parse(s).map(Device::Cdi);
            }
            return Err(format!("invalid device {s:?}: {DEVICE_HELP}"));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, perms) = match parts.as_slice() {
            [src] => (*src, None, None),
            [src, p] if !p.starts_with('/') => (*src, None, Some(*p)),
            [src, dst] => (*src, Some(*dst), None),
            [src, dst, p] => (*src, Some(*dst), Some(*p)),
            _ => return Err(format!("invalid device {s:?}: {DEVICE_HELP}")),
        };
        if target.is_some_and(|t| !t.starts_with('/')) {
            return Err(format!(
                "invalid device {s:?}: the container path must be absolute; {DEVICE_HELP}"
            ));
        }
        Ok(Device::Node {
            source: source.into(),
            target: target.map(PathBuf::from),
            permissions: perms.map_or(Ok(DeviceAccess::all()), str::parse)?,
        })
    }
}

impl fmt::Display for Device {
    /// The short form, `/dev/a:/dev/b:rw` (target and permissions left out when defaults).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cdi(n) => n.fmt(f),
            Device::Node {
                source,
                target,
                permissions,
            } => {
                write!(f, "{}", source.display())?;
                if let Some(t) = target {
                    write!(f, ":{}", t.display())?;
                }
                if permissions.as_str() != "rwm" {
                    write!(f, ":{permissions}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "DeviceLong")]
struct DeviceLong {
    /// Host device node (absolute path).
    source: PathBuf,
    /// Path in the container; default the host path.
    target: Option<PathBuf>,
    /// Device cgroup access, a combination of r, w, m; default rwm.
    permissions: Option<String>,
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::container::str_or_map(d, DEVICE_HELP, str::parse, |l: DeviceLong| {
            Ok(Device::Node {
                source: l.source,
                target: l.target,
                permissions: l
                    .permissions
                    .as_deref()
                    .map_or(Ok(DeviceAccess::all()), str::parse)?,
            })
        })
    }
}

impl JsonSchema for Device {
    fn schema_name() -> Cow<'static, str> {
        "Device".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        super::container::str_or_obj_schema::<DeviceLong>(
            generator,
            "/dev/HOST[:/dev/CONTAINER][:rwm], or a CDI name vendor.com/class=name.",
            None,
        )
    }
}

/// A device cgroup rule, `TYPE MAJOR:MINOR ACCESS` (`c 188:* rmw`; type `a`, `b` or `c`; `*`
/// for any number), as Docker's `--device-cgroup-rule`. Stored canonically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceRule {
    /// `a`, `b` or `c`.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: DeviceAccess,
}

impl std::str::FromStr for DeviceRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid device cgroup rule {s:?}: expected TYPE MAJOR:MINOR ACCESS, e.g. \"c 188:* rmw\" (type a, b or c; * for any number; access r, w, m)"
            )
        };
        let f: Vec<&str> = s.split_whitespace().collect();
        let [kind, nums, access] = f.as_slice() else {
            return Err(bad());
        };
        let kind = match *kind {
            "a" => 'a',
            "b" => 'b',
            "c" => 'c',
            _ => return Err(bad()),
        };
        let (maj, min) = nums.split_once(':').ok_or_else(bad)?;
        let num = |v: &str| -> Result<Option<i64>, String> {
            if v == "*" {
                return Ok(None);
            }
            v.parse::<u32>()
                .map(|n| Some(i64::from(n)))
                .map_err(|_| bad())
        };
        Ok(DeviceRule {
            kind,
            major: num(maj)?,
            minor: num(min)?,
            access: access.parse()?,
        })
    }
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

impl Serialize for DeviceRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, "a device cgroup rule such as \"c 188:* rmw\"")
    }
}

impl JsonSchema for DeviceRule {
    fn schema_name() -> Cow<'static, str> {
        "DeviceRule".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "TYPE MAJOR:MINOR ACCESS, e.g. \"c 188:* rmw\".",
            "type": "string",
            "pattern": "^[abc] ([0-9]+|\\*):([0-9]+|\\*) [rwm]{1,3}$"
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        let d: Device = "/dev/video0:/dev/cam0:rw".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/video0:/dev/cam0:rw");
        let d: Device = "/dev/ttyUSB0".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/ttyUSB0");
        let d: Device = "/dev/ttyUSB0:r".parse().unwrap();
        assert_eq!(d.to_string(), "/dev/ttyUSB0:r");
        let d: Device = "nvidia.com/gpu=all".parse().unwrap();
        assert!(matches!(&d, Device::Cdi(n) if n.kind == "nvidia.com/gpu" && n.name == "all"));
        assert!("/dev/a:/dev/b:rx".parse::<Device>().is_err());
        assert!("/dev/a:dev/b:rw".parse::<Device>().is_err());
        assert!("video0".parse::<Device>().is_err());
        assert!("nvidia.com=all".parse::<Device>().is_err());
        assert_eq!("wr".parse::<DeviceAccess>().unwrap().as_str(), "rw");
        assert!("rr".parse::<DeviceAccess>().is_err());
    }

    #[test]
    fn rules() {
        let r: DeviceRule = "c 188:* rmw".parse().unwrap();
        assert_eq!((r.kind, r.major, r.minor), ('c', Some(188), None));
        assert_eq!(r.to_string(), "c 188:* rwm");
        assert!("x 1:2 r".parse::<DeviceRule>().is_err());
        assert!("c 1 r".parse::<DeviceRule>().is_err());
        assert!("c 1:-2 r".parse::<DeviceRule>().is_err());
    }
}
