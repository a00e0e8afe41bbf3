//! What the exec driver is asked to run: [`ContainerSpec`], the driver's own input type, and the
//! builder that turns it plus the image config into an OCI runtime spec ([`build::build`]).
//!
//! The driver does not know the manifest types: the daemon maps a container's effective config to
//! a `ContainerSpec`. Everything here is plain data with Docker's defaults; values that have a
//! fixed set of choices are enums so that they are checked where they enter the program.

pub mod build;
pub mod caps;
pub mod seccomp;
pub mod user;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use build::{HostInfo, build};

/// Everything the exec driver needs to create one container.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerSpec {
    /// The exec driver's id: 1-64 characters of `[A-Za-z0-9_.-]`, not starting with `.`. It names
    /// the state directory, the cgroup and libcontainer's container.
    pub id: String,
    /// The user-facing name (what `agent logs NAME` resolves).
    pub name: String,
    /// The root filesystem, already mounted (the graph driver's container layer).
    pub rootfs: PathBuf,
    /// The image's config (`config` object of the OCI image config), if the image has one.
    #[serde(default)]
    pub image: Option<oci_spec::image::Config>,
    /// Replaces the image's entrypoint; `Some(vec![])` clears it (Docker's `--entrypoint ""`).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Added to the image's environment; a key given here wins over the image's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute); the image's, else `/`. Created when missing.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `user`, `uid`, `user:group`, `uid:gid` (any mix), resolved against the image's
    /// `/etc/passwd` and `/etc/group`; the image's `User`, else root.
    #[serde(default)]
    pub user: Option<String>,
    /// The container's hostname; defaults to the container name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Size of `/dev/shm` in bytes (Docker's default: 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// The OOM killer's preference for the container's processes (-1000..1000); `None`: the
    /// agent's own, inherited. A value below the agent's own needs CAP_SYS_RESOURCE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// Supplementary groups added to the user's (names from the image's `/etc/group`, or gids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// OCI annotations (the manifest's `metadata.labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Run the agent's init as process 1, the command as its child (Docker's `--init`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub resources: Resources,
    /// Namespaced sysctls (`net.*`, `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Capabilities added to Docker's default set (`NET_ADMIN` or `CAP_NET_ADMIN`, or `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities removed from the set (`ALL` removes every one).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Set `no_new_privs` (default true, as the agent's security defaults say).
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub seccomp: SeccompMode,
    #[serde(default)]
    pub network: NetworkMode,
    /// Contents of the container's `/etc/hosts`; `None`: localhost entries and the hostname.
    #[serde(default)]
    pub hosts: Option<String>,
    /// Contents of `/etc/resolv.conf`; `None`: the host's, without loopback name servers.
    #[serde(default)]
    pub resolv_conf: Option<String>,
    /// Signal `stop` sends first (`SIGTERM`, `TERM` or a number); the image's, else SIGTERM.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// How long `stop` waits after the stop signal before SIGKILL.
    #[serde(default = "default_grace", with = "duration_secs")]
    pub stop_grace: Duration,
    #[serde(default)]
    pub log: LogConfig,
    /// Secret files, copied into the bundle when it is written (see [`SecretFile`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretFile>,
    /// Variables set to the content of a secret file (variable -> the file on the host), read
    /// when the bundle is written: the value reaches only the root-only `config.json` that the
    /// runtime needs, never `spec.json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, PathBuf>,
    /// Host device nodes made in the container and allowed by its device cgroup
    /// ([`crate::driver::exec::devices`]); a missing one fails the create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
    /// CDI device names (`nvidia.com/gpu=all`), resolved from the CDI spec files at create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdi_devices: Vec<String>,
    /// Extra device cgroup allow rules (`c 188:* rwm`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_rules: Vec<DeviceRule>,
    /// Docker's `--privileged` (see [`build`]'s docs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

/// A host device node given to the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRequest {
    /// The node on the host (symlinks followed).
    pub host: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Device cgroup access: a combination of `r`, `w`, `m`.
    pub access: String,
}

/// A device cgroup allow rule; `None` numbers match any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRule {
    /// `a` (all), `b` (block) or `c` (char).
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

/// A secret mounted into the container: `source` is read (held to
/// [`crate::manifest::source::perms::read_secret`]) when the bundle is written, copied to
/// `<bundle>/secrets/<name>` (directory 0700, root only; the copy owned by `uid:gid` with
/// `mode`) and bound read-only, nosuid, nodev, noexec at `target`. Podman copies secrets into
/// the container's run directory in the same way; nothing world-readable is made on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretFile {
    pub name: String,
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn yes() -> bool {
    true
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

/// Durations on disk are (fractional) seconds.
mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v: f64 = serde::Deserialize::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl ContainerSpec {
    /// A spec with Docker's defaults for everything but the identity and root filesystem.
    pub fn new(id: impl Into<String>, name: impl Into<String>, rootfs: impl Into<PathBuf>) -> Self {
        ContainerSpec {
            id: id.into(),
            name: name.into(),
            rootfs: rootfs.into(),
            image: None,
            entrypoint: None,
            command: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            hostname: None,
            read_only: false,
            mounts: Vec::new(),
            shm_size: None,
            oom_score_adj: None,
            group_add: Vec::new(),
            annotations: BTreeMap::new(),
            init: false,
            rlimits: Vec::new(),
            resources: Resources::default(),
            sysctls: BTreeMap::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            no_new_privileges: true,
            seccomp: SeccompMode::Default,
            network: NetworkMode::None,
            hosts: None,
            resolv_conf: None,
            stop_signal: None,
            stop_grace: default_grace(),
            log: LogConfig::default(),
            secrets: Vec::new(),
            secret_env: BTreeMap::new(),
            devices: Vec::new(),
            cdi_devices: Vec::new(),
            device_rules: Vec::new(),
            privileged: false,
        }
    }
}

/// One mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    pub source: MountSource,
    #[serde(default)]
    pub read_only: bool,
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum MountSource {
    /// A named volume's host directory (created when missing).
    Volume { path: PathBuf },
    /// A host path that must exist.
    Bind { path: PathBuf },
    /// A fresh tmpfs; `size` in bytes (unlimited: the kernel's default of half the RAM).
    Tmpfs {
        #[serde(default)]
        size: Option<u64>,
        /// Octal permission bits of the tmpfs root (default 1777).
        #[serde(default)]
        mode: Option<u32>,
    },
}

/// A resource limit (`ulimit`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimit {
    /// `nofile`, `nproc`, `core`, ... (as `ulimit` and Docker name them).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// cgroup limits; `None` leaves the kernel's default (unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory: Option<i64>,
    /// Soft limit (reservation) in bytes.
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap in bytes, as Docker's `--memory-swap` (-1: unlimited swap). When unset
    /// and a memory limit is set, swap is limited to the same amount again (Docker's default)
    /// where the host accounts swap.
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// CFS quota in microseconds per period.
    #[serde(default)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (default 100000).
    #[serde(default)]
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (cgroup v1 shares, 2-262144; mapped to v2 weight).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may use (`0-3,5`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[serde(default)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (tasks) in the container.
    #[serde(default)]
    pub pids: Option<i64>,
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// Docker's default profile ([`seccomp`]).
    #[default]
    Default,
    /// No filter.
    Unconfined,
}

/// The container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "path")]
pub enum NetworkMode {
    /// A new namespace with only a loopback interface (Docker's `--network none`).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Join an existing namespace (the network driver's `/run/netns/...` file).
    Path(PathBuf),
}

/// Log rotation of the container's output, and where else it goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// Rotate when the current file reaches this size (bytes).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
    /// Also send each line to the systemd journal ([`super::logs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journald: Option<Journald>,
}

/// Where the journal listens and what identifies the container's lines there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journald {
    /// The journal's native socket (`/run/systemd/journal/socket`).
    pub socket: PathBuf,
    /// `CONTAINER_NAME` and `SYSLOG_IDENTIFIER`.
    pub container_name: String,
    /// `CONTAINER_ID`.
    pub container_id: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
            journald: None,
        }
    }
}

/// The `config` object of an OCI image config blob (what [`ContainerSpec::image`] takes); `None`
/// when the image has none.
pub fn image_config(blob: &[u8]) -> Result<Option<oci_spec::image::Config>, serde_json::Error> {
    let c: oci_spec::image::ImageConfiguration = serde_json::from_slice(blob)?;
    Ok(c.config().clone())
}
