//! `kind: Container` spec: what Docker users set on `docker run`.
//!
//! Several fields accept a short string form besides the long (mapping) form, as in Compose:
//! volumes (`"kv-data:/data:ro"`), links (`"kv:db"`), volumesFrom (`"kv:ro"`), extraHosts
//! (`"db.local:10.214.7.5"`), restart (`always`) and ulimits (`nofile: 1024`). The typed value is
//! always the long form, and that is what serialising writes back.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ports::PortMapping;
use super::types::is_false;
use super::units::{ByteSize, Duration, parse_string};

/// Everything about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// The name of an Image manifest, or a registry reference such as `127.0.0.1:5000/web:1.4`.
    pub image: String,
    /// Replaces the image's entrypoint (exec form, a list of strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command (exec form, a list of strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Working directory inside the container (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBuf>,
    /// `user`, `uid`, `user:group` or `uid:gid` to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Host name inside the container (a DNS name); default the container's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Environment variables, added to the image's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Dotenv files (Compose's `env_file`), relative to the manifest's directory or absolute:
    /// their variables are added to the image's, a later file winning over an earlier one and
    /// `env` over every file. Root-owned, not writable by group or others, not readable by
    /// others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<String>,
    /// What intake read from `envFiles` ([`super::envfile`]); never serialised: values may be
    /// secrets.
    #[serde(skip)]
    #[schemars(skip)]
    pub env_file_data: Vec<super::envfile::EnvFileData>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Named volumes, bind mounts and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// Mount every volume of these containers at the same targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<VolumesFrom>,
    /// Docker-style links: hosts entries and `ALIAS_PORT_...` variables for other containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Start conditions (Compose's `depends_on`): `[db]`, or `{db: {condition: healthy}}` with
    /// `started`, `healthy` or `completed`; see [`super::depends`]. Ordering only: a change
    /// does not recreate the container.
    #[serde(default, skip_serializing_if = "super::depends::DependsOn::is_empty")]
    pub depends_on: super::depends::DependsOn,
    /// Resource limits (`setrlimit`), by Docker's names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<UlimitName, Ulimit>,
    /// cgroup limits.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// What to do when the container exits; default `no`.
    #[serde(default, skip_serializing_if = "RestartPolicy::is_no")]
    pub restart: RestartPolicy,
    /// A command run inside the container to judge its health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Signal sent to stop the container (`SIGTERM`, `TERM` or a number); default the image's or
    /// SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<Signal>,
    /// How long to wait after the stop signal before SIGKILL; default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    /// Mount the container's root filesystem read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_root_filesystem: bool,
    /// Capabilities added to Docker's default set (`NET_ADMIN` or `CAP_NET_ADMIN`, or `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<Capability>,
    /// Capabilities removed from Docker's default set (or `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<Capability>,
    /// Namespaced kernel parameters (`net.*`, `kernel.shm*`, `kernel.msg*`, `kernel.sem`,
    /// `fs.mqueue.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `bridge` (default), `host`, `none` or `container:NAME`.
    #[serde(default, skip_serializing_if = "NetworkMode::is_bridge")]
    pub network_mode: NetworkMode,
    /// Network manifests to join (bridge mode only); empty means the agent's default network.
    /// A list of names, or a mapping of name to `{aliases: [...]}` (more DNS names of the
    /// container on that network).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::net::deserialize_networks",
        serialize_with = "super::net::serialize_networks"
    )]
    #[schemars(schema_with = "super::net::networks_schema")]
    pub networks: Vec<super::net::NetworkRef>,
    /// DNS servers for the container's resolv.conf; default the host's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// DNS search domains for the container's resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Extra `/etc/hosts` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<ExtraHost>,
    /// Size of `/dev/shm`, e.g. `256Mi`; default 64Mi (Docker's `--shm-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    /// The OOM killer's preference for the container's processes, -1000 (never kill) to 1000
    /// (kill first); default the agent's own (Docker's `--oom-score-adj`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub oom_score_adj: Option<i64>,
    /// Supplementary groups of the container's process, by name (from the image's `/etc/group`)
    /// or gid, added to the user's own (Docker's `--group-add`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<GroupRef>,
    /// Secrets mounted read-only as files (Compose's `secrets`): a Secret manifest's name (at
    /// `/run/secrets/NAME`) or `{source, target, uid, gid, mode}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<super::secret::SecretRef>,
    /// Environment variables set to a secret's value: `{DB_PASSWORD: db-password}` (variable
    /// name: Secret manifest name). Wins over `env` and the image's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Run the agent's small init as the container's process 1: it forwards signals to the
    /// command and reaps zombies (Docker's `--init`); default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub init: bool,
    /// Host device nodes (`/dev/ttyUSB0`, `/dev/video0:/dev/cam0:rw`, `{source, target,
    /// permissions}`) and CDI devices (`nvidia.com/gpu=all`) (Docker's `--device`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<super::device::Device>,
    /// Device cgroup rules for devices that come and go (`c 188:* rmw`; Docker's
    /// `--device-cgroup-rule`): access to matching nodes the container makes itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<super::device::DeviceRule>,
    /// Every capability, every host device, no seccomp filter, writable /sys (Docker's
    /// `--privileged`): root on the host in practice. `agent validate` warns about it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Where the container's output goes and how much of it is kept; what is left out comes
    /// from the agent config's `[container_logs]` (Compose's `logging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

/// A container's log settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// `json-file` (default): the agent's rotated JSON-lines file (`agent logs`); `journald`:
    /// each line also to the systemd journal, with `CONTAINER_NAME` and `CONTAINER_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<LogDriver>,
    /// Rotate the log file when it reaches this size (Docker's `max-size`); default the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// Log files kept, the current one included, 1-100 (Docker's `max-file`); default the
    /// config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_files: Option<u32>,
}

/// Where a container's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// The rotated JSON-lines file only.
    #[default]
    JsonFile,
    /// The file and the systemd journal.
    Journald,
}

impl fmt::Display for LogDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::Journald => "journald",
        })
    }
}

/// A group by name or number (`video`, `44`, or the YAML integer `44`); kept as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupRef(pub String);

impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GroupRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a group name or a gid 0-2147483647")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GroupRef, E> {
                Ok(GroupRef(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GroupRef, E> {
                Ok(GroupRef(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GroupRef, E> {
                Ok(GroupRef(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for GroupRef {
    fn schema_name() -> Cow<'static, str> {
        "GroupRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A group name from the image's /etc/group, or a gid 0-2147483647.",
            "anyOf": [
                {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
                {"type": "integer", "minimum": 0, "maximum": 2147483647u32}
            ]
        })
    }
}

// ---------------------------------------------------------------------------------------------
// String-or-mapping helpers

/// Deserialises a value written either as a string (parsed by `from_str`) or as a mapping (read
/// into `R`, then converted by `from_long`).
pub(crate) fn str_or_map<'de, D, T, R>(
    d: D,
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, String>,
    from_long: fn(R) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: DeserializeOwned,
{
    struct V<T, R> {
        expecting: &'static str,
        from_str: fn(&str) -> Result<T, String>,
        from_long: fn(R) -> Result<T, String>,
        _p: PhantomData<(T, R)>,
    }
    impl<'de, T, R: DeserializeOwned> Visitor<'de> for V<T, R> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.from_str)(v).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let long = R::deserialize(de::value::MapAccessDeserializer::new(map))?;
            (self.from_long)(long).map_err(de::Error::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_str,
        from_long,
        _p: PhantomData,
    })
}

/// Schema: a string (described, optionally with a pattern) or the long form `R`.
pub(crate) fn str_or_obj_schema<R: JsonSchema>(
    generator: &mut SchemaGenerator,
    desc: &str,
    pattern: Option<&str>,
) -> Schema {
    let long = generator.subschema_for::<R>();
    let mut s = json_schema!({"type": "string", "description": desc});
    if let Some(p) = pattern {
        s.insert("pattern".into(), p.into());
    }
    json_schema!({"anyOf": [s, long]})
}

// ---------------------------------------------------------------------------------------------
// Volumes

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Mount {
    /// A named volume (a Volume manifest).
    #[serde(rename_all = "camelCase")]
    Volume {
        volume: String,
        target: PathBuf,
        #[serde(skip_serializing_if = "is_false")]
        read_only: bool,
        /// Do not copy the image's files at `target` into the volume when it is new.
        #[serde(rename = "nocopy", skip_serializing_if = "is_false")]
        no_copy: bool,
    },
    /// A host directory or file.
    #[serde(rename_all = "camelCase")]
    Bind {
        bind: PathBuf,
        target: PathBuf,
        #[serde(skip_serializing_if = "is_false")]
        read_only: bool,
    },
    /// A tmpfs at the given path.
    #[serde(rename_all = "camelCase")]
    Tmpfs {
        tmpfs: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<ByteSize>,
    },
}

impl Mount {
    /// The path inside the container.
    pub fn target(&self) -> &std::path::Path {
        match self {
            Mount::Volume { target, .. } | Mount::Bind { target, .. } => target,
            Mount::Tmpfs { tmpfs, .. } => tmpfs,
        }
    }
}

/// The long form of a mount: exactly one of `volume`, `bind`, `tmpfs`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "MountLong")]
struct MountLong {
    /// Name of a Volume manifest.
    volume: Option<String>,
    /// Absolute host path to bind-mount.
    bind: Option<PathBuf>,
    /// Absolute path inside the container where a tmpfs is mounted.
    tmpfs: Option<PathBuf>,
    /// Absolute path inside the container (with `volume` or `bind`).
    target: Option<PathBuf>,
    /// Mount read-only (with `volume` or `bind`).
    #[serde(default)]
    read_only: Option<bool>,
    /// Size limit of a tmpfs, e.g. `16Mi`.
    size: Option<ByteSize>,
    /// With `volume`: do not copy the image's files at `target` into the volume when it is new
    /// and empty (Docker's `nocopy`). Default false: a new volume starts with the image's
    /// content, owner and mode there.
    #[serde(default)]
    nocopy: Option<bool>,
}

const MOUNT_HELP: &str = "a mount is {volume: NAME, target: /path}, {bind: /host/path, target: /path, readOnly: true}, {tmpfs: /path, size: 16Mi}, or \"NAME|/host/path:/target[:ro|rw]\"";

fn mount_from_long(m: MountLong) -> Result<Mount, String> {
    match (m.volume, m.bind, m.tmpfs) {
        (Some(volume), None, None) => {
            if m.size.is_some() {
                return Err("`size` applies only to tmpfs mounts".into());
            }
            let target = m.target.ok_or("a volume mount needs `target`")?;
            Ok(Mount::Volume {
                volume,
                target,
                read_only: m.read_only.unwrap_or(false),
                no_copy: m.nocopy.unwrap_or(false),
            })
        }
        (None, Some(bind), None) => {
            if m.nocopy.is_some() {
                return Err("`nocopy` applies only to volume mounts".into());
            }
            if m.size.is_some() {
                return Err("`size` applies only to tmpfs mounts".into());
            }
            let target = m.target.ok_or("a bind mount needs `target`")?;
            Ok(Mount::Bind {
                bind,
                target,
                read_only: m.read_only.unwrap_or(false),
            })
        }
        (None, None, Some(tmpfs)) => {
            if m.nocopy.is_some() {
                return Err("`nocopy` applies only to volume mounts".into());
            }
            if m.target.is_some() {
                return Err("a tmpfs mount takes its path from `tmpfs`; drop `target`".into());
            }
            if m.read_only.is_some() {
                return Err("`readOnly` does not apply to tmpfs mounts".into());
            }
            Ok(Mount::Tmpfs {
                tmpfs,
                size: m.size,
            })
        }
        _ => Err(format!(
            "a mount needs exactly one of `volume`, `bind`, `tmpfs`; {MOUNT_HELP}"
        )),
    }
}

fn mount_from_str(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, target, ro) = match parts.as_slice() {
        [src, target] => (*src, *target, false),
        [src, target, "ro"] => (*src, *target, true),
        [src, target, "rw"] => (*src, *target, false),
        [_, _, mode] => {
            return Err(format!(
                "invalid mount {s:?}: mode {mode:?} is not ro or rw"
            ));
        }
        _ => return Err(format!("invalid mount {s:?}: {MOUNT_HELP}")),
    };
    if src.is_empty() || target.is_empty() {
        return Err(format!("invalid mount {s:?}: {MOUNT_HELP}"));
    }
    let target = PathBuf::from(target);
    Ok(if src.starts_with('/') {
        Mount::Bind {
            bind: src.into(),
            target,
            read_only: ro,
        }
    } else {
        Mount::Volume {
            volume: src.into(),
            target,
            read_only: ro,
            no_copy: false,
        }
    })
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_or_map(d, MOUNT_HELP, mount_from_str, mount_from_long)
    }
}

impl JsonSchema for Mount {
    fn schema_name() -> Cow<'static, str> {
        "Mount".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        str_or_obj_schema::<MountLong>(
            generator,
            "\"NAME:/target[:ro|rw]\" (named volume) or \"/host/path:/target[:ro|rw]\" (bind mount)",
            Some("^[^:]+:/[^:]*(:(ro|rw))?$"),
        )
    }
}

/// Mount the volumes of another container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "VolumesFromLong")]
struct VolumesFromLong {
    /// The other container's name.
    container: String,
    /// Mount them read-only.
    #[serde(default)]
    read_only: bool,
}

/// `volumesFrom` entry: `{container: NAME, readOnly: bool}` or `"NAME[:ro|rw]"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumesFrom {
    pub container: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
}

impl<'de> Deserialize<'de> for VolumesFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_or_map(
            d,
            "a container name, \"NAME:ro\", or {container: NAME, readOnly: true}",
            |s| {
                let (container, ro) = match s.split_once(':') {
                    None => (s, false),
                    Some((c, "ro")) => (c, true),
                    Some((c, "rw")) => (c, false),
                    Some((_, m)) => {
                        return Err(format!(
                            "invalid volumesFrom {s:?}: mode {m:?} is not ro or rw"
                        ));
                    }
                };
                Ok(VolumesFrom {
                    container: container.into(),
                    read_only: ro,
                })
            },
            |l: VolumesFromLong| {
                Ok(VolumesFrom {
                    container: l.container,
                    read_only: l.read_only,
                })
            },
        )
    }
}

impl JsonSchema for VolumesFrom {
    fn schema_name() -> Cow<'static, str> {
        "VolumesFrom".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        str_or_obj_schema::<VolumesFromLong>(
            generator,
            "\"NAME[:ro|rw]\"",
            Some("^[^:]+(:(ro|rw))?$"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Links and hosts

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "LinkLong")]
struct LinkLong {
    /// The linked container's name.
    container: String,
    /// Host name under which it is reachable; default its name.
    alias: Option<String>,
}

/// A Docker-style link to another container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// The linked container's name.
    pub container: String,
    /// The name it is known by inside this container; default its own name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Link {
    /// The alias, or the container's name when there is none.
    pub fn effective_alias(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.container)
    }
}

impl<'de> Deserialize<'de> for Link {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_or_map(
            d,
            "a container name, \"NAME:ALIAS\", or {container: NAME, alias: ALIAS}",
            |s| {
                let (c, a) = match s.split_once(':') {
                    None => (s, None),
                    Some((c, a)) => (c, Some(a.to_string())),
                };
                Ok(Link {
                    container: c.into(),
                    alias: a,
                })
            },
            |l: LinkLong| {
                Ok(Link {
                    container: l.container,
                    alias: l.alias,
                })
            },
        )
    }
}

impl JsonSchema for Link {
    fn schema_name() -> Cow<'static, str> {
        "Link".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        str_or_obj_schema::<LinkLong>(generator, "\"NAME[:ALIAS]\"", Some("^[^:]+(:[^:]+)?$"))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "ExtraHostLong")]
struct ExtraHostLong {
    /// Host name.
    host: String,
    /// Its address.
    ip: IpAddr,
}

/// An extra `/etc/hosts` entry: `{host, ip}` or `"host:ip"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ExtraHost {
    pub host: String,
    pub ip: IpAddr,
}

impl<'de> Deserialize<'de> for ExtraHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_or_map(
            d,
            "\"host:ip\" or {host: NAME, ip: ADDRESS}",
            |s| {
                let (h, ip) = s
                    .split_once(':')
                    .ok_or_else(|| format!("invalid extra host {s:?}: expected \"host:ip\""))?;
                let ip = ip.parse().map_err(|_| {
                    format!("invalid extra host {s:?}: {ip:?} is not an IP address")
                })?;
                Ok(ExtraHost { host: h.into(), ip })
            },
            |l: ExtraHostLong| {
                Ok(ExtraHost {
                    host: l.host,
                    ip: l.ip,
                })
            },
        )
    }
}

impl JsonSchema for ExtraHost {
    fn schema_name() -> Cow<'static, str> {
        "ExtraHost".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        str_or_obj_schema::<ExtraHostLong>(generator, "\"host:ip\"", Some("^[^:]+:.+$"))
    }
}

/// `bridge`, `host`, `none` or `container:NAME` (share another container's network namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
    Container(String),
}

impl NetworkMode {
    fn is_bridge(&self) -> bool {
        *self == NetworkMode::Bridge
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            _ => match s.strip_prefix("container:") {
                Some(c) if !c.is_empty() => Ok(NetworkMode::Container(c.into())),
                _ => Err(format!(
                    "invalid networkMode {s:?}: allowed are bridge, host, none, container:NAME"
                )),
            },
        }
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, "bridge, host, none or container:NAME")
    }
}

impl JsonSchema for NetworkMode {
    fn schema_name() -> Cow<'static, str> {
        "NetworkMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "bridge (default), host, none, or container:NAME.",
            "type": "string",
            "pattern": "^(bridge|host|none|container:.+)$"
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Ulimits

/// The resource limits Docker accepts for `--ulimit`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UlimitName {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl UlimitName {
    /// The name as written in manifests (`nofile`).
    pub fn as_str(self) -> &'static str {
        match self {
            UlimitName::As => "as",
            UlimitName::Core => "core",
            UlimitName::Cpu => "cpu",
            UlimitName::Data => "data",
            UlimitName::Fsize => "fsize",
            UlimitName::Locks => "locks",
            UlimitName::Memlock => "memlock",
            UlimitName::Msgqueue => "msgqueue",
            UlimitName::Nice => "nice",
            UlimitName::Nofile => "nofile",
            UlimitName::Nproc => "nproc",
            UlimitName::Rss => "rss",
            UlimitName::Rtprio => "rtprio",
            UlimitName::Rttime => "rttime",
            UlimitName::Sigpending => "sigpending",
            UlimitName::Stack => "stack",
        }
    }

    /// The OCI runtime spec's rlimit type (`RLIMIT_NOFILE`).
    pub fn rlimit_name(self) -> String {
        format!("RLIMIT_{}", self.as_str().to_ascii_uppercase())
    }
}

impl fmt::Display for UlimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One limit value: a number or unlimited (`-1` or `unlimited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl Limit {
    /// The value for `setrlimit` (`RLIM_INFINITY` is `u64::MAX`).
    pub fn as_rlim(self) -> u64 {
        match self {
            Limit::Value(v) => v,
            Limit::Unlimited => u64::MAX,
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Value(v) => s.serialize_u64(*v),
            Limit::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative number, -1 or \"unlimited\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                match v {
                    -1 => Ok(Limit::Unlimited),
                    v if v >= 0 => Ok(Limit::Value(v as u64)),
                    v => Err(E::custom(format!(
                        "invalid limit {v}: allowed are a non-negative number, -1 or \"unlimited\""
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                match v {
                    "unlimited" | "-1" => Ok(Limit::Unlimited),
                    _ => v.parse().map(Limit::Value).map_err(|_| {
                        E::custom(format!("invalid limit {v:?}: allowed are a non-negative number, -1 or \"unlimited\""))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Limit {
    fn schema_name() -> Cow<'static, str> {
        "Limit".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A non-negative number, or -1 / \"unlimited\".",
            "anyOf": [{"type": "integer", "minimum": -1}, {"const": "unlimited"}]
        })
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "UlimitLong")]
struct UlimitLong {
    /// Soft limit (must not exceed the hard limit).
    soft: Limit,
    /// Hard limit.
    hard: Limit,
}

/// A soft and hard limit. `nofile: 1024` sets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Ulimit {
    pub soft: Limit,
    pub hard: Limit,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number (soft = hard), \"unlimited\", or {soft: N, hard: N}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                Ok(Ulimit {
                    soft: Limit::Value(v),
                    hard: Limit::Value(v),
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                let l = Limit::deserialize(de::value::I64Deserializer::<E>::new(v))?;
                Ok(Ulimit { soft: l, hard: l })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
                let l = Limit::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(Ulimit { soft: l, hard: l })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let l = UlimitLong::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit {
                    soft: l.soft,
                    hard: l.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Ulimit {
    fn schema_name() -> Cow<'static, str> {
        "Ulimit".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let limit = generator.subschema_for::<Limit>();
        let long = generator.subschema_for::<UlimitLong>();
        json_schema!({"anyOf": [limit, long]})
    }
}

// ---------------------------------------------------------------------------------------------
// Resources, restart, healthcheck, signals, capabilities

/// cgroup limits. All optional; absent means unlimited.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Memory limit, e.g. `256Mi` (at least 6Mi, as Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Soft memory limit (below `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<ByteSize>,
    /// Memory plus swap limit (Docker's `--memory-swap`, at least `memory`), or -1 / `unlimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<MemorySwap>,
    /// CPUs, e.g. `0.5` (a CFS quota of half a CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Relative CPU weight, 2-262144 (Docker's `--cpu-shares`, default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on, e.g. `0-2,4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Maximum number of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// Docker's `--memory-swap`: a size or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemorySwap {
    Limit(ByteSize),
    Unlimited,
}

impl Serialize for MemorySwap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MemorySwap::Limit(b) => b.serialize(s),
            MemorySwap::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for MemorySwap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MemorySwap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size, -1 or \"unlimited\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MemorySwap, E> {
                Ok(MemorySwap::Limit(ByteSize(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MemorySwap, E> {
                if v == -1 {
                    Ok(MemorySwap::Unlimited)
                } else {
                    ByteSize::deserialize(de::value::I64Deserializer::<E>::new(v))
                        .map(MemorySwap::Limit)
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemorySwap, E> {
                match v {
                    "unlimited" | "-1" => Ok(MemorySwap::Unlimited),
                    _ => v.parse().map(MemorySwap::Limit).map_err(E::custom),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for MemorySwap {
    fn schema_name() -> Cow<'static, str> {
        "MemorySwap".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let size = generator.subschema_for::<ByteSize>();
        json_schema!({"anyOf": [size, {"const": -1}, {"const": "unlimited"}]})
    }
}

/// What to do when the container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// Never restart (default, as Docker).
    #[default]
    No,
    /// Always restart, also after the agent or host restarts.
    Always,
    /// Restart after a non-zero exit, at most `max_retries` times in a row (unbounded if `None`).
    OnFailure { max_retries: Option<u32> },
    /// Like `always`, except after the container was stopped by `agent stop`.
    UnlessStopped,
}

impl RestartPolicy {
    fn is_no(&self) -> bool {
        *self == RestartPolicy::No
    }
    fn as_str(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum PolicyName {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "RestartLong")]
struct RestartLong {
    /// no, always, on-failure or unless-stopped.
    policy: PolicyName,
    /// With on-failure: give up after this many consecutive failed restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
}

const RESTART_HELP: &str = "restart is one of no, always, on-failure, unless-stopped, or {policy: on-failure, maxRetries: N}";

fn restart_from_long(l: RestartLong) -> Result<RestartPolicy, String> {
    match (l.policy, l.max_retries) {
        (PolicyName::OnFailure, n) => Ok(RestartPolicy::OnFailure { max_retries: n }),
        (_, Some(_)) => Err("`maxRetries` applies only to the on-failure policy".into()),
        (PolicyName::No, None) => Ok(RestartPolicy::No),
        (PolicyName::Always, None) => Ok(RestartPolicy::Always),
        (PolicyName::UnlessStopped, None) => Ok(RestartPolicy::UnlessStopped),
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => RestartLong {
                policy: PolicyName::OnFailure,
                max_retries: Some(*n),
            }
            .serialize(s),
            other => s.serialize_str(other.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_or_map(
            d,
            RESTART_HELP,
            |s| match s {
                "no" => Ok(RestartPolicy::No),
                "always" => Ok(RestartPolicy::Always),
                "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
                "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
                _ => match s.strip_prefix("on-failure:").map(str::parse::<u32>) {
                    Some(Ok(n)) => Ok(RestartPolicy::OnFailure {
                        max_retries: Some(n),
                    }),
                    _ => Err(format!("invalid restart policy {s:?}: {RESTART_HELP}")),
                },
            },
            restart_from_long,
        )
    }
}

impl JsonSchema for RestartPolicy {
    fn schema_name() -> Cow<'static, str> {
        "RestartPolicy".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let long = generator.subschema_for::<RestartLong>();
        json_schema!({
            "anyOf": [
                {"type": "string", "pattern": "^(no|always|unless-stopped|on-failure(:[0-9]+)?)$"},
                long
            ]
        })
    }
}

/// A health check run inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Healthcheck {
    /// The command (exec form); exit 0 means healthy. For a shell: `["/bin/sh", "-c", "..."]`.
    pub command: Vec<String>,
    /// Time between checks; default 30s.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// A check running longer fails; default 30s.
    #[serde(default = "default_interval")]
    pub timeout: Duration,
    /// Consecutive failures before the container is unhealthy; default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failures during this time after start do not count; default 0s.
    #[serde(default)]
    pub start_period: Duration,
    /// What the agent does when the container becomes unhealthy: `restart` (default: stop it,
    /// and its restart policy brings it back) or `none` (only report it, as Docker and Compose
    /// do).
    #[serde(default, skip_serializing_if = "OnUnhealthy::is_default")]
    pub on_unhealthy: OnUnhealthy,
}

/// `healthcheck.onUnhealthy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// Stop it; its restart policy (every policy but `no`) restarts it.
    #[default]
    Restart,
    /// Only report it (`agent ps`, the `container.health` event); it keeps running.
    None,
}

impl OnUnhealthy {
    /// Whether it is the default (left out of the stored config, so that configs stored
    /// before the field existed keep their hash).
    pub fn is_default(&self) -> bool {
        *self == OnUnhealthy::Restart
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnUnhealthy::Restart => "restart",
            OnUnhealthy::None => "none",
        }
    }
}

impl std::fmt::Display for OnUnhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_interval() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_retries() -> u32 {
    3
}

/// A signal by name (`SIGTERM`, `TERM`, any case) or number; stored as its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub nix::sys::signal::Signal);

impl Signal {
    /// The signal number.
    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use nix::sys::signal::Signal as S;
        let parsed = if let Ok(n) = s.parse::<i32>() {
            S::try_from(n).ok()
        } else {
            let up = s.to_ascii_uppercase();
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            name.parse::<S>().ok()
        };
        parsed.map(Signal).ok_or_else(|| {
            format!("invalid signal {s:?}: use a name like SIGTERM, TERM, SIGINT or a number 1-31")
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Signal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a signal name like SIGTERM or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Signal, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Signal, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Signal, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Signal {
    fn schema_name() -> Cow<'static, str> {
        "Signal".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A signal name (SIGTERM, TERM) or number.",
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 64}]
        })
    }
}

/// Linux capability names (without the `CAP_` prefix), as of Linux 6.x.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability, stored canonically as `CAP_NET_ADMIN`, or `ALL`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(String);

impl Capability {
    /// `CAP_NET_ADMIN`, or `ALL`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether this is `ALL`.
    pub fn is_all(&self) -> bool {
        self.0 == "ALL"
    }
}

impl std::str::FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.to_ascii_uppercase();
        if up == "ALL" {
            return Ok(Capability(up));
        }
        let bare = up.strip_prefix("CAP_").unwrap_or(&up);
        if CAPABILITIES.contains(&bare) {
            return Ok(Capability(format!("CAP_{bare}")));
        }
        let hint = CAPABILITIES
            .iter()
            .map(|c| (strsim::jaro_winkler(c, bare), c))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| format!(" (did you mean {c}?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown capability {s:?}{hint}: use a Linux capability name such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
        ))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, "a capability name such as NET_ADMIN")
    }
}

impl JsonSchema for Capability {
    fn schema_name() -> Cow<'static, str> {
        "Capability".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut names: Vec<String> = vec!["ALL".into()];
        for c in CAPABILITIES {
            names.push(c.to_string());
            names.push(format!("CAP_{c}"));
        }
        json_schema!({
            "description": "A Linux capability (NET_ADMIN or CAP_NET_ADMIN), or ALL.",
            "type": "string",
            "enum": names
        })
    }
}
