//! The effective config of a container, split into the fields that need a new container when
//! they change ([`FixedConfig`]) and the ones the agent can change on the running container
//! ([`LiveConfig`]).
//!
//! Normalisations (each has a table test in `tests.rs`):
//! - defaults: hostname = the container's name, stop grace period 10s, link alias = the linked
//!   container's name, `cpuShares: 1024` = unset (Docker's default weight);
//! - the manifest types already make `restart: no` and no `restart`, `1024Mi` and `1Gi`, short and
//!   long port/mount/link forms, `NET_ADMIN` and `CAP_NET_ADMIN`, `TERM` and `SIGTERM` equal;
//! - ports: ranges expanded to single ports (`8000-8001:80-81` = `8000:80` + `8001:81`), sorted,
//!   duplicates dropped; a missing host IP stays distinct from `0.0.0.0` (it also means `::`);
//! - mounts: paths without `.`/trailing `/`, sorted by target, duplicates dropped; the mounts a
//!   container gets through `volumesFrom` are folded in (the container's own mount wins on the
//!   same target), so a change to the source container's mounts reaches its users;
//! - env, labels, sysctls, ulimits are maps (sorted); capabilities, networks, links, extra hosts,
//!   volumesFrom are sorted sets; `dns` and `dnsSearch` keep their order (it matters in
//!   resolv.conf) but drop repeats; `cpuset` is rewritten as sorted ranges (`2,0-1` = `0-2`);
//!   `cpus` becomes an integer of nano-CPUs (Docker's `NanoCpus`), so `0.5` and `0.50` are equal;
//!   `shmSize: 64Mi` (Docker's default) = unset; `groupAdd` is a sorted set;
//! - networks are empty outside bridge mode;
//! - `envFiles` keep their order (a later file wins) and carry what intake read: the digest and
//!   keys of their variables in the config (and its hash: a changed file recreates), the values
//!   only in memory ([`FixedConfig::env_file_vars`]).
//!
//! In-place fields (changed without recreating, like `docker update`): the restart policy,
//! resource limits (cgroup values), the health check (the agent runs it through exec) and the stop
//! signal and grace period (the agent reads them when it stops the container) and the labels
//! (recorded; a new container gets them as OCI annotations) and `dependsOn` (start order only).
//! Everything else needs a new container.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::normalize_path;
use crate::manifest::{
    ByteSize, ContainerManifest, Duration, ExtraHost, Healthcheck, Limit, MemorySwap, Mount,
    NetworkMode, Protocol, RestartPolicy, Signal,
};
use crate::plan::hash::{ConfigHash, Hasher};

/// Default time between the stop signal and SIGKILL.
pub const DEFAULT_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Docker's default CPU weight; `cpuShares: 1024` is the same as no value.
pub const DEFAULT_CPU_SHARES: u64 = 1024;
/// Docker's default size of `/dev/shm`; `shmSize: 64Mi` is the same as no value.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// One container, canonical. Serialised as the store's `containers.config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveContainer {
    pub name: String,
    pub image: ImageRef,
    pub fixed: FixedConfig,
    pub live: LiveConfig,
}

/// The image of a container: its key (display only) and the digest it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The image key ([`super::ImageSource::key`]). Not part of the hash.
    pub key: String,
    /// `sha256:...`; `None` while the image is not fetched yet.
    pub digest: Option<String>,
}

/// Fields whose change needs a new container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FixedConfig {
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub working_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub hostname: String,
    pub env: BTreeMap<String, String>,
    /// `envFiles` in order, each with the digest and keys of its variables (never the values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<EnvFileRef>,
    /// The variables of `env_files`, merged (a later file wins): for the container's spec only,
    /// never serialised (not in the store, the plan, events or `inspect`). `None`: not read
    /// here (a config from the store or a last good version); the applier reads the files.
    #[serde(skip)]
    pub env_file_vars: Option<EnvVars>,
    pub ports: Vec<Port>,
    pub mounts: Vec<EffectiveMount>,
    /// Containers whose mounts are folded into `mounts` (kept for ordering and display).
    pub volumes_from: Vec<String>,
    pub links: Vec<EffectiveLink>,
    pub ulimits: BTreeMap<String, EffectiveUlimit>,
    pub read_only_root_filesystem: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub network_mode: NetworkMode,
    pub networks: Vec<String>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<ExtraHost>,
    /// Size of `/dev/shm` in bytes; `None`: the default 64 MiB (an explicit `64Mi` is `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// Supplementary groups as written (names or gids), sorted, without repeats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Secrets: file mounts, env variables and the digests of their values ([`super::secret`]).
    #[serde(flatten)]
    pub secrets: super::secret::EffectiveSecrets,
    /// `init: true`: the agent's init is process 1.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// `devices`, `deviceCgroupRules`, `privileged` ([`super::device`]).
    #[serde(flatten)]
    pub devices: super::device::EffectiveDevices,
    /// `logging` as written, `None` when it asks for nothing (`driver: json-file` is the
    /// default); the config's defaults are applied when the container is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<crate::manifest::Logging>,
}

/// One `envFiles` entry of a container, without its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFileRef {
    /// As written in the manifest.
    pub path: String,
    /// Resolved against the manifest's directory.
    pub resolved: PathBuf,
    /// [`crate::manifest::envfile::digest`] of its variables; empty when not read.
    pub digest: String,
    /// Its variables' names, sorted.
    pub keys: Vec<String>,
}

/// Environment variables whose values stay in memory; `Debug` shows the keys only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EnvVars(pub BTreeMap<String, String>);

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Fields the agent changes on the existing container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveConfig {
    pub restart: RestartPolicy,
    #[serde(default)]
    pub resources: EffectiveResources,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub stop_signal: Option<Signal>,
    pub stop_grace_period: Duration,
    /// `metadata.labels`: the OCI annotations of a new container; a change is recorded without
    /// touching the running one (before this field was live, records kept them in `fixed`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `dependsOn`, by name: ordering only ([`crate::plan::depends`]), so a change is recorded
    /// without touching the container. Left out of the JSON when empty (the hash of a container
    /// without it is what it was before the field existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, EffectiveDependency>,
    /// DNS aliases per network (the long form of `networks`), sorted, without repeats or
    /// networks without any: the network driver's records change, the container runs on. Left
    /// out of the JSON when empty (hashes as before the field existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// One `dependsOn` entry, canonical (the short and long forms of the same condition are equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveDependency {
    pub condition: crate::manifest::Condition,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Display for EffectiveDependency {
    /// `healthy`, `healthy, restart`, `started, optional`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if self.restart {
            f.write_str(", restart")?;
        }
        if !self.required {
            f.write_str(", optional")?;
        }
        Ok(())
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            restart: RestartPolicy::No,
            resources: EffectiveResources::default(),
            healthcheck: None,
            stop_signal: None,
            stop_grace_period: Duration(DEFAULT_STOP_GRACE),
            labels: BTreeMap::new(),
            depends_on: BTreeMap::new(),
            aliases: BTreeMap::new(),
        }
    }
}

/// cgroup limits, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EffectiveResources {
    pub memory: Option<ByteSize>,
    pub memory_reservation: Option<ByteSize>,
    pub memory_swap: Option<MemorySwap>,
    /// CPUs x 10^9 (Docker's `NanoCpus`).
    pub nano_cpus: Option<u64>,
    pub cpu_shares: Option<u64>,
    /// Sorted ranges, `0-2,4`.
    pub cpuset: Option<String>,
    pub pids: Option<u64>,
}

/// One published port (ranges expanded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// `None`: every address.
    pub host_ip: Option<IpAddr>,
    /// `None`: the agent picks a free port.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for Port {
    /// Docker's short form: `127.0.0.1:8080:80/tcp`, `8080:80/tcp`, `80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match self.host_port {
            Some(p) => write!(f, "{p}:")?,
            None if self.host_ip.is_some() => f.write_str(":")?,
            None => {}
        }
        write!(f, "{}/{}", self.container_port, self.protocol)
    }
}

/// One mount, canonical. Ordered by target first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveMount {
    pub target: PathBuf,
    pub source: MountSource,
    pub read_only: bool,
    /// A volume mount that does not copy the image's files into a new volume (`nocopy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
}

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountSource {
    Volume(String),
    Bind(PathBuf),
    /// A tmpfs with its size limit in bytes.
    Tmpfs(Option<u64>),
}

impl std::fmt::Display for EffectiveMount {
    /// `data:/data:ro`, `/srv/conf:/etc/conf`, `tmpfs:/run(16Mi)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            MountSource::Volume(v) => write!(f, "{v}:{}", self.target.display())?,
            MountSource::Bind(b) => write!(f, "{}:{}", b.display(), self.target.display())?,
            MountSource::Tmpfs(None) => write!(f, "tmpfs:{}", self.target.display())?,
            MountSource::Tmpfs(Some(s)) => {
                write!(f, "tmpfs:{}({})", self.target.display(), ByteSize(*s))?
            }
        }
        if self.read_only {
            f.write_str(":ro")?;
        }
        if self.no_copy {
            f.write_str(":nocopy")?;
        }
        Ok(())
    }
}

/// A link: `container` reachable as `alias`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EffectiveLink {
    pub alias: String,
    pub container: String,
}

impl std::fmt::Display for EffectiveLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.container, self.alias)
    }
}

/// A ulimit; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveUlimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl std::fmt::Display for EffectiveUlimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |x: Option<u64>| x.map_or("unlimited".to_string(), |n| n.to_string());
        if self.soft == self.hard {
            f.write_str(&v(self.soft))
        } else {
            write!(f, "{}:{}", v(self.soft), v(self.hard))
        }
    }
}

impl EffectiveContainer {
    /// The config hash, or `None` while the image digest is unknown: the hash covers the digest,
    /// the fixed and the live fields (not the name, which is the key, nor the image key).
    pub fn hash(&self) -> Option<ConfigHash> {
        let digest = self.image.digest.as_deref()?;
        Some(hash_parts(digest, &self.fixed, &self.live))
    }

    /// This config with the image digest a fetch resolved, and its hash: what the daemon
    /// records for a change planned before the digest was known.
    pub fn with_digest(&self, digest: &str) -> (EffectiveContainer, ConfigHash) {
        let mut c = self.clone();
        c.image.digest = Some(digest.to_string());
        let hash = hash_parts(digest, &c.fixed, &c.live);
        (c, hash)
    }

    /// The containers this one needs first: link targets, volumesFrom sources, the
    /// container whose network namespace it joins and its `dependsOn`. Sorted, without repeats.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self.dependency_names().collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    }

    /// The same names as [`Self::dependencies`], unsorted and possibly repeated, without
    /// allocating (the planner calls this once or twice per container per plan).
    pub fn dependency_names(&self) -> impl Iterator<Item = &str> {
        let mode = match &self.fixed.network_mode {
            NetworkMode::Container(c) => Some(c.as_str()),
            _ => None,
        };
        self.fixed
            .links
            .iter()
            .map(|l| l.container.as_str())
            .chain(self.fixed.volumes_from.iter().map(String::as_str))
            .chain(mode)
            .chain(self.live.depends_on.keys().map(String::as_str))
    }

    /// The named volumes it mounts.
    pub fn volumes(&self) -> impl Iterator<Item = &str> {
        self.fixed.mounts.iter().filter_map(|m| match &m.source {
            MountSource::Volume(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

fn hash_parts(digest: &str, fixed: &FixedConfig, live: &LiveConfig) -> ConfigHash {
    Hasher::new("agent/container/v1")
        .bytes(digest.as_bytes())
        .json(fixed)
        .json(live)
        .finish()
}

/// Reads a container manifest into its effective config, before `volumesFrom` folding and
/// image resolution (see [`canonicalise_all`]). `image_key` is the image's key.
pub fn canonicalise(m: &ContainerManifest, image_key: String) -> EffectiveContainer {
    let s = &m.spec;
    let name = m.metadata.name.clone();

    let mut ports: Vec<Port> = Vec::with_capacity(s.ports.len());
    for p in &s.ports {
        let cp = p.container_port;
        for i in 0..=(cp.end - cp.start) {
            ports.push(Port {
                host_ip: p.host_ip,
                host_port: p.host_port.map(|h| h.start.saturating_add(i)),
                container_port: cp.start + i,
                protocol: p.protocol,
            });
        }
    }
    ports.sort_unstable();
    ports.dedup();

    let mut mounts: Vec<EffectiveMount> = s.volumes.iter().map(mount).collect();
    sort_mounts(&mut mounts);

    let mut volumes_from: Vec<String> =
        s.volumes_from.iter().map(|v| v.container.clone()).collect();
    volumes_from.sort_unstable();
    volumes_from.dedup();

    let mut links: Vec<EffectiveLink> = s
        .links
        .iter()
        .map(|l| EffectiveLink {
            alias: l.effective_alias().to_string(),
            container: l.container.clone(),
        })
        .collect();
    links.sort_unstable();
    links.dedup();

    let ulimits = s
        .ulimits
        .iter()
        .map(|(k, u)| {
            let lim = |l: Limit| match l {
                Limit::Value(v) => Some(v),
                Limit::Unlimited => None,
            };
            (
                k.as_str().to_string(),
                EffectiveUlimit {
                    soft: lim(u.soft),
                    hard: lim(u.hard),
                },
            )
        })
        .collect();

    let caps = |v: &[crate::manifest::Capability]| {
        let set: BTreeSet<String> = v.iter().map(|c| c.as_str().to_string()).collect();
        set.into_iter().collect::<Vec<_>>()
    };

    let networks = if s.network_mode == NetworkMode::Bridge {
        let set: BTreeSet<&String> = s.networks.iter().map(|n| &n.name).collect();
        set.into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let aliases: BTreeMap<String, Vec<String>> = s
        .networks
        .iter()
        .filter(|n| s.network_mode == NetworkMode::Bridge && !n.aliases.is_empty())
        .map(|n| {
            let set: BTreeSet<String> = n.aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
            (n.name.clone(), set.into_iter().collect())
        })
        .collect();

    let mut extra_hosts = s.extra_hosts.clone();
    extra_hosts.sort_unstable_by(|a, b| (&a.host, a.ip).cmp(&(&b.host, b.ip)));
    extra_hosts.dedup();

    let r = &s.resources;
    let resources = EffectiveResources {
        memory: r.memory,
        memory_reservation: r.memory_reservation,
        memory_swap: r.memory_swap,
        nano_cpus: r.cpus.map(|c| (c * 1e9).round() as u64),
        cpu_shares: r.cpu_shares.filter(|&c| c != DEFAULT_CPU_SHARES),
        cpuset: r.cpuset.as_deref().map(canonical_cpuset),
        pids: r.pids,
    };

    EffectiveContainer {
        image: ImageRef {
            key: image_key,
            digest: None,
        },
        fixed: FixedConfig {
            entrypoint: s.entrypoint.clone(),
            command: s.command.clone(),
            working_dir: s.working_dir.as_deref().map(normalize_path),
            user: s.user.clone(),
            hostname: s.hostname.clone().unwrap_or_else(|| name.clone()),
            env: s.env.clone(),
            env_files: env_file_refs(s),
            env_file_vars: (!s.env_files.is_empty() && s.env_file_data.len() == s.env_files.len())
                .then(|| {
                    EnvVars(
                        s.env_file_data
                            .iter()
                            .flat_map(|d| d.vars.clone())
                            .collect(),
                    )
                }),
            ports,
            mounts,
            volumes_from,
            links,
            ulimits,
            read_only_root_filesystem: s.read_only_root_filesystem,
            cap_add: caps(&s.cap_add),
            cap_drop: caps(&s.cap_drop),
            sysctls: s.sysctls.clone(),
            network_mode: s.network_mode.clone(),
            networks,
            dns: first_of_each(&s.dns),
            dns_search: first_of_each(&s.dns_search),
            extra_hosts,
            shm_size: s
                .shm_size
                .map(ByteSize::bytes)
                .filter(|&b| b != DEFAULT_SHM_SIZE),
            // validate keeps it within -1000..=1000
            oom_score_adj: s.oom_score_adj.map(|v| v.clamp(-1000, 1000) as i32),
            group_add: {
                let set: BTreeSet<&str> = s.group_add.iter().map(|g| g.0.as_str()).collect();
                set.into_iter().map(str::to_string).collect()
            },
            secrets: super::secret::EffectiveSecrets::from_spec(s),
            init: s.init,
            devices: super::device::EffectiveDevices::from_spec(s),
            logging: s
                .logging
                .clone()
                .map(|mut l| {
                    l.driver = l
                        .driver
                        .filter(|d| *d != crate::manifest::LogDriver::JsonFile);
                    l
                })
                .filter(|l| *l != crate::manifest::Logging::default()),
        },
        live: LiveConfig {
            restart: s.restart,
            resources,
            healthcheck: s.healthcheck.clone(),
            stop_signal: s.stop_signal,
            stop_grace_period: s.stop_grace_period.unwrap_or(Duration(DEFAULT_STOP_GRACE)),
            labels: m.metadata.labels.clone(),
            depends_on: s
                .depends_on
                .iter()
                .map(|d| {
                    (
                        d.container.clone(),
                        EffectiveDependency {
                            condition: d.condition,
                            restart: d.restart,
                            required: d.required,
                        },
                    )
                })
                .collect(),
            aliases,
        },
        name,
    }
}

/// The `envFiles` entries with what intake read of them (digest and keys; empty when not read).
fn env_file_refs(s: &crate::manifest::ContainerSpec) -> Vec<EnvFileRef> {
    s.env_files
        .iter()
        .map(|path| {
            let data = s.env_file_data.iter().find(|d| &d.path == path);
            EnvFileRef {
                path: path.clone(),
                resolved: data.map(|d| d.resolved.clone()).unwrap_or_default(),
                digest: data.map(|d| d.digest.clone()).unwrap_or_default(),
                keys: data
                    .map(|d| d.vars.keys().cloned().collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn mount(m: &Mount) -> EffectiveMount {
    match m {
        Mount::Volume {
            volume,
            target,
            read_only,
            no_copy,
        } => EffectiveMount {
            target: normalize_path(target),
            source: MountSource::Volume(volume.clone()),
            read_only: *read_only,
            no_copy: *no_copy,
        },
        Mount::Bind {
            bind,
            target,
            read_only,
        } => EffectiveMount {
            target: normalize_path(target),
            source: MountSource::Bind(normalize_path(bind)),
            read_only: *read_only,
            no_copy: false,
        },
        Mount::Tmpfs { tmpfs, size } => EffectiveMount {
            target: normalize_path(tmpfs),
            source: MountSource::Tmpfs(size.map(ByteSize::bytes)),
            read_only: false,
            no_copy: false,
        },
    }
}

/// Sorts by target and drops exact repeats.
fn sort_mounts(mounts: &mut Vec<EffectiveMount>) {
    mounts.sort_unstable();
    mounts.dedup();
}

/// Keeps the first occurrence of each value, in order.
fn first_of_each<T: Clone + Eq + std::hash::Hash>(v: &[T]) -> Vec<T> {
    let mut seen = HashSet::with_capacity(v.len());
    v.iter().filter(|x| seen.insert(*x)).cloned().collect()
}

/// `2,0-1` -> `0-2`; a value that is not a cpu list is kept as written (trimmed).
pub fn canonical_cpuset(s: &str) -> String {
    let mut cpus = BTreeSet::new();
    for part in s.split(',') {
        let part = part.trim();
        let parsed = match part.split_once('-') {
            Some((a, b)) => a
                .trim()
                .parse::<u32>()
                .ok()
                .zip(b.trim().parse::<u32>().ok()),
            None => part.parse::<u32>().ok().map(|n| (n, n)),
        };
        match parsed {
            Some((a, b)) if a <= b && b - a < 65536 => cpus.extend(a..=b),
            _ => return s.trim().to_string(),
        }
    }
    let mut out = String::new();
    let mut iter = cpus.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
    }
    out
}

/// Folds `volumesFrom` mounts into each container's mounts, transitively (a source's own
/// inherited mounts come along, as in Docker). Bind and volume mounts are inherited, tmpfs
/// mounts are not; `readOnly` on the volumesFrom entry makes the inherited mounts read-only; a
/// container's own mount wins over an inherited one on the same target. Sources that are not in
/// `containers` are skipped (validation reports them); cycles are cut.
pub fn fold_volumes_from(
    containers: &mut HashMap<String, EffectiveContainer>,
    read_only_from: &HashMap<String, BTreeSet<String>>,
) {
    // Memoised depth-first walk over the sources.
    let names: Vec<String> = containers
        .iter()
        .filter(|(_, c)| !c.fixed.volumes_from.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return;
    }
    let mut done: HashMap<String, Vec<EffectiveMount>> = HashMap::new();
    for name in &names {
        let mut visiting = HashSet::new();
        resolve(name, containers, read_only_from, &mut done, &mut visiting);
    }
    for (name, mounts) in done {
        if let Some(c) = containers.get_mut(&name) {
            c.fixed.mounts = mounts;
        }
    }
}

fn resolve(
    name: &str,
    containers: &HashMap<String, EffectiveContainer>,
    read_only_from: &HashMap<String, BTreeSet<String>>,
    done: &mut HashMap<String, Vec<EffectiveMount>>,
    visiting: &mut HashSet<String>,
) -> Vec<EffectiveMount> {
    if let Some(m) = done.get(name) {
        return m.clone();
    }
    let Some(c) = containers.get(name) else {
        return Vec::new();
    };
    if c.fixed.volumes_from.is_empty() || !visiting.insert(name.to_string()) {
        return c.fixed.mounts.clone();
    }
    let mut by_target: BTreeMap<PathBuf, EffectiveMount> = BTreeMap::new();
    for src in &c.fixed.volumes_from {
        let ro = read_only_from
            .get(name)
            .is_some_and(|set| set.contains(src));
        for m in resolve(src, containers, read_only_from, done, visiting) {
            if matches!(m.source, MountSource::Tmpfs(_)) {
                continue;
            }
            let m = EffectiveMount {
                read_only: m.read_only || ro,
                ..m
            };
            by_target.entry(m.target.clone()).or_insert(m);
        }
    }
    for m in &c.fixed.mounts {
        by_target.insert(m.target.clone(), m.clone());
    }
    let mut mounts: Vec<EffectiveMount> = by_target.into_values().collect();
    sort_mounts(&mut mounts);
    visiting.remove(name);
    done.insert(name.to_string(), mounts.clone());
    mounts
}
