//! [`ContainerSpec`] + image config -> OCI runtime spec, with Docker's defaults.
//!
//! Pure: everything it needs from the host comes in [`HostInfo`] (detected once by
//! [`HostInfo::detect`]), the resolved user comes from [`super::user`], and the per-container
//! `/etc` files (hosts, hostname, resolv.conf) are already written in `etc_dir`.
//!
//! Decisions (Docker's unless said otherwise):
//! - Command: entrypoint (override or image) followed by the command (override; else the image's
//!   `Cmd`, except when the entrypoint was overridden, which clears the image's `Cmd`).
//! - Env: the image's, then the spec's (same key: the spec wins), `PATH` defaulted, `HOSTNAME`
//!   set, `HOME` from `/etc/passwd` unless given. An entry with an empty name or a NUL, or an
//!   argument with a NUL (the image's config can hold them), is refused naming it.
//! - Mount targets: absolute, no `..`, not `/`, and nothing at or inside `/proc` but a bind of
//!   one of [`PROC_BIND_ALLOWED`] (runc's `checkProcMount`): that covers image `Volumes` too,
//!   whose anonymous volume would otherwise replace procfs with a directory the container
//!   fills and keeps.
//! - Namespaces: pid, ipc, uts, mount, network (new and empty, a path, or the host's); the
//!   cgroup namespace on cgroup v2 only (as Docker).
//! - Root propagation `private` (with MS_REC: rprivate, as runc's default); `/proc` paths
//!   masked and read-only as Docker; `/sys` read-only; `/sys/fs/cgroup` read-only and showing
//!   only the container's own cgroups on v1 and v2 ([`cgroup_mounts`]); devices: deny all but the
//!   standard set (libcgroups adds the allowed defaults after our deny-all rule).
//! - Read-only binds and volumes are read-only recursively (OCI `rro`: mount_setattr with
//!   AT_RECURSIVE), so that a mount below the source is not writable either; kernels before 5.12
//!   lack mount_setattr and such a mount is refused with that reason. The host's `/sys` bound
//!   for `network: host` is recursively read-only too.
//! - rlimits: `nofile` defaults to soft 1024 and a high hard limit ([`default_nofile`]): what
//!   Docker 25+ gives (1024:524288, inherited from systemd) and Podman (1048576, bounded by its
//!   own hard limit when it cannot raise it), so that a server raises its own soft limit as far
//!   as it needs (MariaDB, Redis do) while programs using `select` keep 1024. A hard limit above
//!   the agent's own hard limit when it lacks CAP_SYS_RESOURCE, or a `nofile` above
//!   `fs.nr_open`, is refused up front with the ulimit's name ([`AgentLimits`]; the kernel would
//!   answer EPERM deep inside container creation).
//! - Memory swap: Docker's `--memory-swap` meaning (memory + swap); unset with a memory limit
//!   means twice the memory where the host accounts swap, nothing otherwise.
//! - Devices on cgroup v2: libcontainer enforces the device allow-list on v2 only with its
//!   eBPF feature (`cgroupsv2_devices`, which needs libbpf), not built here. So that a container
//!   cannot create and open a host block device there, CAP_MKNOD is left out of the default set
//!   on v2 hosts (an explicit `cap_add: [MKNOD]` still grants it). On v1 the devices cgroup
//!   enforces the allow-list and Docker's full default set applies.
//! - `privileged` (Docker's `--privileged`): every capability in the agent's bounding set, no
//!   seccomp filter, no masked or read-only `/proc` paths, `/sys` read-write; every host device
//!   and the allow-all device rule come from [`crate::driver::exec::devices`]. The cgroup file
//!   system stays read-only (Docker makes it writable).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount as OciMount, MountBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::user::ResolvedUser;
use super::{ContainerSpec, MountSource, NetworkMode, SeccompMode, caps, seccomp};
use crate::driver::exec::cgroups::{self, V1Hierarchy};
use crate::driver::exec::{Error, init};

/// What the spec builder needs to know about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The unified hierarchy is mounted at `/sys/fs/cgroup` (cgroup v2 only host).
    pub cgroup_v2: bool,
    /// The memory cgroup accounts swap (v1 `memory.memsw.*`, v2 `memory.swap.max`).
    pub swap_accounting: bool,
    /// Go architecture name ([`seccomp::native_arch`]).
    pub arch: String,
    /// Kernel `(major, minor)`.
    pub kernel: (u32, u32),
    /// The agent's hard rlimits, by `ulimit` name.
    pub rlimit_hard: BTreeMap<String, u64>,
    /// The agent holds CAP_SYS_RESOURCE and may raise hard limits.
    pub can_raise_rlimits: bool,
    /// `fs.nr_open`: no `nofile` limit may exceed it, even with CAP_SYS_RESOURCE (`None`:
    /// unknown).
    pub nr_open: Option<u64>,
    /// Parent of every container's cgroup (`/agent`).
    pub cgroup_parent: String,
    /// The v1 hierarchies the container gets a cgroup in (empty on a v2-only host).
    pub cgroup_v1: Vec<V1Hierarchy>,
    /// The agent's capability bounding set (bits); `None`: unknown, not checked.
    pub cap_bounding: Option<u64>,
    /// The agent's own `oom_score_adj`: without CAP_SYS_RESOURCE (`can_raise_rlimits`) a
    /// container cannot get a lower one.
    pub oom_score_adj: i32,
    /// The agent's init executable on the host ([`crate::driver::exec::init`]), for a spec
    /// with `init`; `None`: not prepared, and such a spec is refused.
    pub init_binary: Option<PathBuf>,
}

/// `ulimit` names (Docker's) and their rlimit.
pub const RLIMITS: &[(&str, PosixRlimitType, libc::__rlimit_resource_t)] = &[
    ("core", PosixRlimitType::RlimitCore, libc::RLIMIT_CORE),
    ("cpu", PosixRlimitType::RlimitCpu, libc::RLIMIT_CPU),
    ("data", PosixRlimitType::RlimitData, libc::RLIMIT_DATA),
    ("fsize", PosixRlimitType::RlimitFsize, libc::RLIMIT_FSIZE),
    ("locks", PosixRlimitType::RlimitLocks, libc::RLIMIT_LOCKS),
    (
        "memlock",
        PosixRlimitType::RlimitMemlock,
        libc::RLIMIT_MEMLOCK,
    ),
    (
        "msgqueue",
        PosixRlimitType::RlimitMsgqueue,
        libc::RLIMIT_MSGQUEUE,
    ),
    ("nice", PosixRlimitType::RlimitNice, libc::RLIMIT_NICE),
    ("nofile", PosixRlimitType::RlimitNofile, libc::RLIMIT_NOFILE),
    ("nproc", PosixRlimitType::RlimitNproc, libc::RLIMIT_NPROC),
    ("rss", PosixRlimitType::RlimitRss, libc::RLIMIT_RSS),
    ("rtprio", PosixRlimitType::RlimitRtprio, libc::RLIMIT_RTPRIO),
    ("rttime", PosixRlimitType::RlimitRttime, libc::RLIMIT_RTTIME),
    (
        "sigpending",
        PosixRlimitType::RlimitSigpending,
        libc::RLIMIT_SIGPENDING,
    ),
    ("stack", PosixRlimitType::RlimitStack, libc::RLIMIT_STACK),
    ("as", PosixRlimitType::RlimitAs, libc::RLIMIT_AS),
];

impl HostInfo {
    /// Detects the host's cgroup version, swap accounting, kernel, rlimits and capabilities.
    pub fn detect(cgroup_parent: &str) -> HostInfo {
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let swap_accounting = if cgroup_v2 {
            Path::new("/sys/fs/cgroup/memory.swap.max").exists()
                || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
                    .map(|s| s.split_whitespace().any(|c| c == "memory"))
                    .unwrap_or(false)
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        let kernel = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| seccomp::kernel_version(&u.release().to_string_lossy()))
            .unwrap_or((0, 0));
        let AgentLimits {
            hard: rlimit_hard,
            can_raise: can_raise_rlimits,
            nr_open,
            oom_score_adj,
        } = AgentLimits::detect();
        HostInfo {
            cgroup_v2,
            swap_accounting,
            arch: seccomp::native_arch().to_string(),
            kernel,
            rlimit_hard,
            can_raise_rlimits,
            nr_open,
            cgroup_parent: cgroup_parent.to_string(),
            cap_bounding: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| caps::bounding_in_status(&s)),
            oom_score_adj,
            init_binary: None,
            cgroup_v1: if cgroup_v2 {
                Vec::new()
            } else {
                cgroups::v1_hierarchies_in(
                    &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
                )
            },
        }
    }

    /// The limits of [`HostInfo`] (see [`AgentLimits`]).
    pub fn limits(&self) -> AgentLimits {
        AgentLimits {
            hard: self.rlimit_hard.clone(),
            can_raise: self.can_raise_rlimits,
            nr_open: self.nr_open,
            oom_score_adj: self.oom_score_adj,
        }
    }
}

/// What bounds the hard rlimits and the `oom_score_adj` a process can give a container: its
/// own hard limits and its own `oom_score_adj` when it lacks CAP_SYS_RESOURCE (the kernel
/// refuses to go above the first or below the second without it), and `fs.nr_open` for
/// `nofile` whatever it holds. The exec driver checks a spec against the agent's
/// ([`HostInfo`]); `agent validate` warns with its own rlimits, and the loop checks a
/// replacement against the agent's before it stops the running container
/// (`reconcile::precheck`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentLimits {
    /// The process's hard rlimits, by `ulimit` name.
    pub hard: BTreeMap<String, u64>,
    /// It holds CAP_SYS_RESOURCE and may raise hard limits.
    pub can_raise: bool,
    /// `fs.nr_open` (`None`: unknown).
    pub nr_open: Option<u64>,
    /// The process's own `oom_score_adj`.
    pub oom_score_adj: i32,
}

/// The most `fs.nr_open` can be on any kernel (`sysctl_nr_open_max` on 64-bit: `INT_MAX`
/// rounded down to a multiple of 64): a `nofile` hard limit above it, `unlimited` included,
/// can never be set.
pub const NR_OPEN_MAX: u64 = 2_147_483_584;

/// Why a hard rlimit cannot be set: the bound it is above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitCeiling {
    /// The process's own hard limit, which it lacks CAP_SYS_RESOURCE to raise.
    Own(u64),
    /// `fs.nr_open`, the most open files any process may have (`nofile` only).
    NrOpen(u64),
}

impl RlimitCeiling {
    /// The highest hard limit that can be set.
    pub fn limit(self) -> u64 {
        match self {
            RlimitCeiling::Own(n) | RlimitCeiling::NrOpen(n) => n,
        }
    }
}

impl std::fmt::Display for RlimitCeiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RlimitCeiling::Own(n) => write!(
                f,
                "the agent's own hard limit {n}, which it lacks CAP_SYS_RESOURCE to raise"
            ),
            RlimitCeiling::NrOpen(n) => write!(
                f,
                "the kernel's fs.nr_open {n}, the most open files a process may have"
            ),
        }
    }
}

/// Why `oomScoreAdj` `adj` cannot be set ([`AgentLimits::oom_floor`] is `floor`).
pub fn oom_floor_text(adj: i32, floor: i32) -> String {
    format!(
        "{adj} is below the agent's own oom_score_adj ({floor}) and the agent lacks \
         CAP_SYS_RESOURCE, which the kernel requires to lower it: use a value of at least \
         {floor} or run the agent with CAP_SYS_RESOURCE"
    )
}

/// An rlimit value as a manifest writes it (`u64::MAX` is `unlimited`).
pub fn rlimit_text(v: u64) -> String {
    if v == u64::MAX || v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

impl AgentLimits {
    /// This process's own hard rlimits, capabilities and `fs.nr_open`.
    pub fn detect() -> AgentLimits {
        let mut hard = BTreeMap::new();
        for (name, _, res) in RLIMITS {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we own.
            if unsafe { libc::getrlimit(*res, &mut lim) } == 0 {
                hard.insert(name.to_string(), lim.rlim_max);
            }
        }
        AgentLimits {
            hard,
            can_raise: has_cap_sys_resource(),
            nr_open: std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// This process's own `oom_score_adj` when `adj` is below it and it lacks CAP_SYS_RESOURCE
    /// to go there; `None` when it can give a container `adj`.
    pub fn oom_floor(&self, adj: i32) -> Option<i32> {
        (adj < self.oom_score_adj && !self.can_raise).then_some(self.oom_score_adj)
    }

    /// The bound a hard limit `hard` of rlimit `name` (a `ulimits` name) is above, if any:
    /// `None` when this process can set it.
    pub fn ceiling(&self, name: &str, hard: u64) -> Option<RlimitCeiling> {
        if name == "nofile"
            && let Some(nr_open) = self.nr_open
            && hard > nr_open
        {
            return Some(RlimitCeiling::NrOpen(nr_open));
        }
        match self.hard.get(name) {
            Some(&own) if !self.can_raise && hard > own => Some(RlimitCeiling::Own(own)),
            _ => None,
        }
    }
}

/// Whether this process's effective capabilities include CAP_SYS_RESOURCE (bit 24).
fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|bits| bits & (1u64 << 24) != 0)
}

/// The merged argv: Docker's entrypoint/command rules.
pub fn command(spec: &ContainerSpec) -> Result<Vec<String>, Error> {
    let image = spec.image.as_ref();
    let entrypoint = match &spec.entrypoint {
        Some(e) => e.clone(),
        None => image
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default(),
    };
    let cmd = match &spec.command {
        Some(c) => c.clone(),
        None if spec.entrypoint.is_some() => Vec::new(),
        None => image.and_then(|c| c.cmd().clone()).unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        // An exec argument ends at its first NUL: the process would run something else than
        // what is written (the image's config can hold one; the manifest is refused earlier).
        return Err(invalid(
            spec,
            "command",
            format!(
                "argument {i} of the entrypoint and command {:?} contains a NUL byte",
                argv[i]
            ),
        ));
    }
    if argv.is_empty() {
        return Err(invalid(
            spec,
            "command",
            "no command to run: neither the container spec nor the image gives an entrypoint or \
             a command",
        ));
    }
    Ok(argv)
}

/// The default `PATH` (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The merged environment as `KEY=VALUE`, image order first, new keys after.
pub fn environment(spec: &ContainerSpec, hostname: &str, home: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, out: &mut Vec<(String, String)>| match out
        .iter_mut()
        .find(|(key, _)| key == k)
    {
        Some(e) => e.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    if let Some(env) = spec.image.as_ref().and_then(|c| c.env().as_ref()) {
        for kv in env {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            set(k, v, &mut out);
        }
    }
    for (k, v) in &spec.env {
        set(k, v, &mut out);
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    if !out.iter().any(|(k, _)| k == "HOSTNAME") {
        out.push(("HOSTNAME".into(), hostname.into()));
    }
    if !out.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".into(), home.into()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The container's hostname: the spec's, else the name (truncated to 63 characters).
pub fn hostname(spec: &ContainerSpec) -> String {
    match &spec.hostname {
        Some(h) => h.clone(),
        None => spec.name.chars().take(63).collect(),
    }
}

/// The working directory: the spec's, else the image's, else `/`.
pub fn workdir(spec: &ContainerSpec) -> String {
    spec.workdir
        .clone()
        .or_else(|| spec.image.as_ref().and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// The user string: the spec's, else the image's.
pub fn user(spec: &ContainerSpec) -> Option<String> {
    spec.user
        .clone()
        .or_else(|| spec.image.as_ref().and_then(|c| c.user().clone()))
        .filter(|u| !u.is_empty())
}

fn invalid(spec: &ContainerSpec, field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        container: spec.name.clone(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// The rlimits, defaults included, checked against what the host allows.
/// The highest default `nofile` hard limit: Podman's (and the kernel's default `fs.nr_open`).
pub const NOFILE_HARD_DEFAULT: u64 = 1_048_576;
/// The default `nofile` soft limit: what `select(2)` can handle, systemd's and Docker's default.
pub const NOFILE_SOFT_DEFAULT: u64 = 1024;

/// `nofile` (soft, hard) of a container whose manifest does not set it: soft 1024; hard
/// [`NOFILE_HARD_DEFAULT`] bounded by `fs.nr_open` and, when the agent cannot raise hard limits
/// (no CAP_SYS_RESOURCE), by the agent's own hard limit.
pub fn default_nofile(host: &HostInfo) -> (u64, u64) {
    let mut hard = NOFILE_HARD_DEFAULT;
    if !host.can_raise_rlimits
        && let Some(&own) = host.rlimit_hard.get("nofile")
    {
        hard = hard.min(own);
    }
    if let Some(nr_open) = host.nr_open {
        hard = hard.min(nr_open);
    }
    (NOFILE_SOFT_DEFAULT.min(hard), hard)
}

pub fn rlimits(spec: &ContainerSpec, host: &HostInfo) -> Result<Vec<PosixRlimit>, Error> {
    let mut wanted: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    wanted.insert("nofile", default_nofile(host));
    for r in &spec.rlimits {
        let Some((name, _, _)) = RLIMITS.iter().find(|(n, _, _)| *n == r.name) else {
            let names: Vec<&str> = RLIMITS.iter().map(|(n, _, _)| *n).collect();
            return Err(invalid(
                spec,
                &format!("ulimits.{}", r.name),
                format!("unknown ulimit; allowed: {}", names.join(", ")),
            ));
        };
        if r.soft > r.hard {
            return Err(invalid(
                spec,
                &format!("ulimits.{}", r.name),
                format!("soft limit {} is above the hard limit {}", r.soft, r.hard),
            ));
        }
        wanted.insert(name, (r.soft, r.hard));
    }
    let mut out = Vec::new();
    let bounds = host.limits();
    for (name, (soft, hard)) in wanted {
        if let Some(ceiling) = bounds.ceiling(name, hard) {
            return Err(Error::UlimitAboveHost {
                container: spec.name.clone(),
                ulimit: name.to_string(),
                requested: rlimit_text(hard),
                ceiling,
            });
        }
        let typ = RLIMITS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, _)| *t)
            .unwrap_or_default();
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?,
        );
    }
    Ok(out)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<OciMount, Error> {
    Ok(MountBuilder::default()
        .destination(PathBuf::from(dest))
        .typ(typ)
        .source(PathBuf::from(source))
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Files in `/proc` a bind may replace (runc's list, for lxcfs and the like): everything else in
/// `/proc` is the runtime's, and a mount there could hide or redirect what it masks and what it
/// writes (CVE-2019-16884, CVE-2019-19921; an image `Volumes: {"/proc": {}}` would otherwise
/// give the container a directory of its own making in place of procfs, kept across restarts).
pub const PROC_BIND_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Whether a mount (a bind when `bind`) may have `target` as far as `/proc` goes: not `/proc`
/// nor anything below it, except a bind of one of [`PROC_BIND_ALLOWED`] (as runc's
/// `checkProcMount`).
pub fn proc_target_allowed(target: &Path, bind: bool) -> bool {
    if !target.starts_with("/proc") {
        return true;
    }
    bind && PROC_BIND_ALLOWED.iter().any(|a| target == Path::new(a))
}

fn check_target(spec: &ContainerSpec, target: &str, bind: bool) -> Result<(), Error> {
    let p = Path::new(target);
    if !p.is_absolute()
        || target.contains('\0')
        || p.components().any(|c| c == std::path::Component::ParentDir)
    {
        return Err(invalid(
            spec,
            &format!("mounts[{target}]"),
            "the target must be an absolute path without '..' or NUL",
        ));
    }
    if p == Path::new("/") {
        return Err(invalid(spec, "mounts[/]", "cannot mount over the root"));
    }
    if !proc_target_allowed(p, bind) {
        return Err(invalid(
            spec,
            &format!("mounts[{target}]"),
            format!(
                "nothing may be mounted at /proc or inside it (the runtime's procfs) but a bind \
                 of one of {}",
                PROC_BIND_ALLOWED.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The first kernel with `mount_setattr` (recursive read-only binds).
pub const MOUNT_SETATTR_KERNEL: (u32, u32) = (5, 12);

/// The container's cgroup path (`<cgroup parent>/<id>`).
pub fn cgroups_path(spec: &ContainerSpec, host: &HostInfo) -> String {
    format!("{}/{}", host.cgroup_parent.trim_end_matches('/'), spec.id)
}

/// `/sys/fs/cgroup`: read-only, and showing the container only its own cgroups.
///
/// - v2 (unified only): a `cgroup` mount, which libcontainer makes a `cgroup2` mount inside the
///   container's cgroup namespace (see [`build`]): its root is the container's own cgroup.
/// - v1: libcontainer's own v1 `cgroup` mount is not used. Without a cgroup namespace it binds
///   every hierarchy read-write at the path the container's init is in (for `name=systemd`, the
///   monitor's: the host's root), ignoring `ro`. Instead, as runc does for Docker on v1: a tmpfs,
///   then in it one read-only bind of the container's own directory per hierarchy
///   (`<host mount>/<cgroups path>`, made by libcgroups before the mounts), at the hierarchy's
///   name and, for co-mounted controllers, at each controller's name too (Docker makes those
///   symlinks; a spec cannot). The tmpfs is made read-only after the binds by listing it in
///   `linux.readonlyPaths` ([`build`]). Named hierarchies (`name=systemd`) and controllers
///   libcgroups does not manage get no cgroup of the container's, so they are not shown at all,
///   and neither is the hybrid layout's `unified` hierarchy.
pub fn cgroup_mounts(spec: &ContainerSpec, host: &HostInfo) -> Result<Vec<OciMount>, Error> {
    let opts = ["nosuid", "noexec", "nodev", "relatime", "ro"];
    if host.cgroup_v2 {
        return Ok(vec![mount("/sys/fs/cgroup", "cgroup", "cgroup", &opts)?]);
    }
    let mut out = vec![mount(
        "/sys/fs/cgroup",
        "tmpfs",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=755", "size=64k"],
    )?];
    let rel = cgroups_path(spec, host);
    let rel = rel.trim_start_matches('/');
    let mut seen = BTreeSet::new();
    for h in &host.cgroup_v1 {
        let Some(name) = h.mount.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let source = h.mount.join(rel);
        let names = std::iter::once(name).chain(h.controllers.iter().map(String::as_str));
        for n in names {
            if seen.insert(n.to_string()) {
                out.push(mount(
                    &format!("/sys/fs/cgroup/{n}"),
                    "bind",
                    &source.to_string_lossy(),
                    &["bind", "nosuid", "noexec", "nodev", "ro"],
                )?);
            }
        }
    }
    Ok(out)
}

/// Mounts: the standard file systems, `/dev/shm`, the user's mounts, then the `/etc` files.
pub fn mounts(
    spec: &ContainerSpec,
    host: &HostInfo,
    etc_dir: &Path,
) -> Result<Vec<OciMount>, Error> {
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
    ];
    if spec.network == NetworkMode::Host {
        // sysfs of another network namespace cannot be mounted; Docker binds the host's.
        out.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro", "rro"],
        )?);
    } else {
        out.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if spec.privileged { "rw" } else { "ro" },
            ],
        )?);
    }
    out.extend(cgroup_mounts(spec, host)?);
    out.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    )?);
    let shm = format!("size={}", spec.shm_size.unwrap_or(64 * 1024 * 1024));
    out.push(mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", &shm],
    )?);
    let mut seen = BTreeSet::new();
    for m in &spec.mounts {
        check_target(
            spec,
            &m.target,
            matches!(m.source, MountSource::Bind { .. }),
        )?;
        if !seen.insert(m.target.trim_end_matches('/').to_string()) {
            return Err(invalid(
                spec,
                &format!("mounts[{}]", m.target),
                "two mounts have the same target",
            ));
        }
        let ro = if m.read_only { "ro" } else { "rw" };
        out.push(match &m.source {
            MountSource::Volume { path } | MountSource::Bind { path } => {
                if !path.is_absolute() {
                    return Err(invalid(
                        spec,
                        &format!("mounts[{}]", m.target),
                        format!("host path {} is not absolute", path.display()),
                    ));
                }
                // `ro` alone makes only the top mount read-only: a mount below the source (a
                // USB stick under /srv, a volume in a volume) would stay writable. `rro` is
                // mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) in libcontainer.
                let opts: &[&str] = if m.read_only {
                    if host.kernel < MOUNT_SETATTR_KERNEL {
                        return Err(invalid(
                            spec,
                            &format!("mounts[{}]", m.target),
                            format!(
                                "a read-only bind must be read-only recursively, which needs \
                                 mount_setattr (Linux 5.12 or later); this kernel is {}.{}",
                                host.kernel.0, host.kernel.1
                            ),
                        ));
                    }
                    &["rbind", "rprivate", "ro", "rro"]
                } else {
                    &["rbind", "rprivate", "rw"]
                };
                mount(&m.target, "bind", &path.to_string_lossy(), opts)?
            }
            MountSource::Tmpfs { size, mode } => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    format!("mode={:o}", mode.unwrap_or(0o1777)),
                    ro.to_string(),
                ];
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                mount(&m.target, "tmpfs", "tmpfs", &opts)?
            }
        });
    }
    if spec.init {
        let Some(path) = &host.init_binary else {
            return Err(invalid(
                spec,
                "init",
                "the agent's init executable is not prepared",
            ));
        };
        if seen.contains(init::TARGET) {
            return Err(invalid(
                spec,
                &format!("mounts[{}]", init::TARGET),
                "the init of `init: true` is mounted there; mount something else elsewhere",
            ));
        }
        out.push(mount(
            init::TARGET,
            "bind",
            &path.to_string_lossy(),
            &["bind", "rprivate", "ro", "nosuid", "nodev"],
        )?);
    }
    for (file, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if seen.contains(target) {
            continue;
        }
        out.push(mount(
            target,
            "bind",
            &etc_dir.join(file).to_string_lossy(),
            &["rbind", "rprivate", "rw"],
        )?);
    }
    Ok(out)
}

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's read-only paths, and on v1 the tmpfs that holds the cgroup binds
/// ([`cgroup_mounts`]): it must stay writable until the binds are made, and libcontainer applies
/// read-only paths after every mount.
/// `privileged` keeps only the latter.
fn readonly_paths(host: &HostInfo, privileged: bool) -> Vec<String> {
    let mut out: Vec<String> = READONLY_PATHS
        .iter()
        .filter(|_| !privileged)
        .map(|s| s.to_string())
        .collect();
    if !host.cgroup_v2 {
        out.push("/sys/fs/cgroup".into());
    }
    out
}

/// Checks a sysctl the way Docker does: only namespaced ones, and `net.*` not with the host's
/// network.
fn check_sysctl(spec: &ContainerSpec, key: &str) -> Result<(), Error> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let ok = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        true
    } else if key.starts_with("net.") {
        if spec.network == NetworkMode::Host {
            return Err(invalid(
                spec,
                &format!("sysctls.{key}"),
                "net.* sysctls cannot be set for a container on the host's network",
            ));
        }
        true
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            spec,
            &format!("sysctls.{key}"),
            "not a namespaced sysctl; allowed: net.*, fs.mqueue.*, kernel.msg*, kernel.sem, \
             kernel.shm*",
        ))
    }
}

/// The cgroup resources (validated: errors name the `resources.*` field).
pub fn resources(
    spec: &ContainerSpec,
    host: &HostInfo,
) -> Result<oci_spec::runtime::LinuxResources, Error> {
    let r = &spec.resources;
    let mut mem = LinuxMemoryBuilder::default();
    if let Some(m) = r.memory {
        if m < 6 * 1024 * 1024 {
            return Err(invalid(
                spec,
                "resources.memory",
                format!("{m} bytes is below the minimum of 6 MiB"),
            ));
        }
        mem = mem.limit(m);
        match r.memory_swap {
            Some(s) if s != -1 && s < m => {
                return Err(invalid(
                    spec,
                    "resources.memorySwap",
                    format!("{s} is below the memory limit {m}; it counts memory plus swap"),
                ));
            }
            Some(s) if host.swap_accounting => mem = mem.swap(s),
            None if host.swap_accounting => mem = mem.swap(m.saturating_mul(2)),
            _ => {}
        }
    } else if r.memory_swap.is_some_and(|s| s != -1) {
        return Err(invalid(
            spec,
            "resources.memorySwap",
            "needs a memory limit as well",
        ));
    }
    if let Some(res) = r.memory_reservation {
        mem = mem.reservation(res);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(q) = r.cpu_quota {
        if q != -1 && q < 1000 {
            return Err(invalid(
                spec,
                "resources.cpuQuota",
                format!("{q} microseconds is below the minimum of 1000"),
            ));
        }
        cpu = cpu.quota(q);
    }
    if let Some(p) = r.cpu_period {
        if !(1000..=1_000_000).contains(&p) {
            return Err(invalid(
                spec,
                "resources.cpuPeriod",
                format!("{p} is outside 1000..=1000000 microseconds"),
            ));
        }
        cpu = cpu.period(p);
    } else if r.cpu_quota.is_some() {
        cpu = cpu.period(100_000u64);
    }
    if let Some(s) = r.cpu_shares {
        if !(2..=262_144).contains(&s) {
            return Err(invalid(
                spec,
                "resources.cpuShares",
                format!("{s} is outside 2..=262144"),
            ));
        }
        cpu = cpu.shares(s);
    }
    if let Some(c) = &r.cpuset_cpus {
        cpu = cpu.cpus(c.clone());
    }
    if let Some(m) = &r.cpuset_mems {
        cpu = cpu.mems(m.clone());
    }
    let mut b = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        .memory(mem.build()?)
        .cpu(cpu.build()?);
    if let Some(p) = r.pids {
        if p < 1 && p != -1 {
            return Err(invalid(
                spec,
                "resources.pids",
                format!("{p}: use a positive number or -1 (unlimited)"),
            ));
        }
        b = b.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    Ok(b.build()?)
}

/// Builds the OCI runtime spec. `user` is the resolved user ([`super::user::resolve`]);
/// `etc_dir` holds the container's `hosts`, `hostname` and `resolv.conf`.
pub fn build(
    spec: &ContainerSpec,
    host: &HostInfo,
    user: &ResolvedUser,
    etc_dir: &Path,
) -> Result<Spec, Error> {
    let hostname = hostname(spec);
    let mut argv = command(spec)?;
    if spec.init {
        argv.splice(0..0, [init::TARGET.to_string(), "--".to_string()]);
    }
    let cwd = workdir(spec);
    if !cwd.starts_with('/') {
        return Err(invalid(
            spec,
            "workdir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    // privileged: every capability the agent holds, whatever capAdd/capDrop say (Docker's).
    let (cap_add, cap_drop) = if spec.privileged {
        (vec!["ALL".to_string()], Vec::new())
    } else {
        (spec.cap_add.clone(), spec.cap_drop.clone())
    };
    let mut capset =
        caps::effective(&cap_add, &cap_drop).map_err(|e| invalid(spec, "capabilities", e))?;
    if let Some(bounding) = host.cap_bounding {
        capset = caps::within_bounding(capset, &cap_add, bounding)
            .map_err(|e| invalid(spec, "capabilities", e))?;
    }
    if host.cgroup_v2
        && !cap_add
            .iter()
            .any(|c| matches!(caps::normalize(c).as_deref(), Some("MKNOD" | "ALL")))
    {
        // No device cgroup on v2 in this build (see module docs): no MKNOD unless asked for.
        capset.remove("MKNOD");
    }
    let oci_caps = caps::to_oci(&capset);
    if let Some(adj) = spec.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                spec,
                "oomScoreAdj",
                format!("{adj} is out of range -1000..1000"),
            ));
        }
        if let Some(floor) = host.limits().oom_floor(adj) {
            return Err(invalid(spec, "oomScoreAdj", oom_floor_text(adj, floor)));
        }
    }
    let env = environment(spec, &hostname, &user.home);
    if let Some(bad) = env
        .iter()
        .find(|kv| kv.starts_with('=') || kv.contains('\0'))
    {
        // The runtime cannot set these (a NUL), or they name no variable: refused with the
        // entry (it can only come from the image's config: the manifest's env is checked first).
        return Err(invalid(
            spec,
            "env",
            format!(
                "environment entry {bad:?} (from the image's config) has an empty name or a NUL \
                 byte"
            ),
        ));
    }
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .args(argv)
        .env(env)
        .cwd(PathBuf::from(&cwd))
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .rlimits(rlimits(spec, host)?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(oci_caps.clone())
                .effective(oci_caps.clone())
                .permitted(oci_caps)
                .inheritable(oci_spec::runtime::Capabilities::new())
                .ambient(oci_spec::runtime::Capabilities::new())
                .build()?,
        )
        .no_new_privileges(spec.no_new_privileges);
    if let Some(adj) = spec.oom_score_adj {
        process = process.oom_score_adj(adj);
    }
    let process = process.build()?;

    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Ipc)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Uts)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    ];
    match &spec.network {
        NetworkMode::None => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()?,
        ),
        NetworkMode::Path(p) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(p.clone())
                .build()?,
        ),
        NetworkMode::Host => {}
    }
    if host.cgroup_v2 {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()?,
        );
    }
    for key in spec.sysctls.keys() {
        check_sysctl(spec, key)?;
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(cgroups_path(spec, host)))
        .resources(resources(spec, host)?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .filter(|_| !spec.privileged)
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(readonly_paths(host, spec.privileged))
        .rootfs_propagation("private");
    if !spec.sysctls.is_empty() {
        linux = linux.sysctl(
            spec.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if spec.seccomp == SeccompMode::Default && !spec.privileged {
        linux = linux.seccomp(seccomp::docker_default(&capset, &host.arch, host.kernel)?);
    }
    let mut spec_out = SpecBuilder::default()
        .version("1.0.2")
        .hostname(hostname)
        .root(
            RootBuilder::default()
                .path(spec.rootfs.clone())
                .readonly(spec.read_only)
                .build()?,
        )
        .process(process)
        .mounts(mounts(spec, host, etc_dir)?)
        .linux(linux.build()?);
    if !spec.annotations.is_empty() {
        spec_out = spec_out.annotations(
            spec.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    Ok(spec_out.build()?)
}
