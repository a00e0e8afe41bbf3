//! A container's cgroup: OOM kills, resource use and changing the limits of a running container,
//! on cgroup v1 and v2.
//!
//! libcontainer (libcgroups, systemd off) creates and removes the cgroups and applies the limits
//! at start. [`update`] changes them later, as `runc update` / `youki update` do: libcgroups'
//! manager writes the limits that are set, and this module resets the ones the new spec drops,
//! which libcgroups leaves alone (a limit that is not set means "do not touch" there, while here
//! it means "unlimited", as when the container was created without it). Paths: v1
//! `<mount of controller>/<cgroups_path>` (the mount found in `/proc/self/mountinfo`), v2
//! `/sys/fs/cgroup/<cgroups_path>`.
//!
//! OOM kills: v1 `memory.oom_control` line `oom_kill N` (kernel 4.13+), v2 `memory.events` line
//! `oom_kill N`. Any OOM kill in the container's cgroup counts as "OOM killed", as in Docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt};
use oci_spec::runtime::LinuxResources;

use super::spec::Resources;

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Detects the layout by the file system type of `/sys/fs/cgroup`.
pub fn version() -> CgroupVersion {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

/// The v1 mount point of `controller`, from mountinfo text.
pub fn v1_mount_in(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        if post.next()? != "cgroup" {
            return None;
        }
        let _source = post.next()?;
        let opts = post.next()?;
        if !opts.split(',').any(|o| o == controller) {
            return None;
        }
        Some(PathBuf::from(pre.split_whitespace().nth(4)?))
    })
}

/// The v1 controllers libcgroups manages: it makes the container's directory in each
/// hierarchy that has one of them (and in no other: not `name=systemd`, `rdma`, `misc`).
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// One cgroup v1 hierarchy of the host in which each container gets a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where the host mounts it (`/sys/fs/cgroup/cpu,cpuacct`).
    pub mount: PathBuf,
    /// The controllers it carries, of [`V1_CONTROLLERS`] (`cpu`, `cpuacct`).
    pub controllers: Vec<String>,
}

/// The v1 hierarchies under `/sys/fs/cgroup` that carry a controller of [`V1_CONTROLLERS`],
/// from mountinfo text, in mount order; a hierarchy mounted twice is listed once.
pub fn v1_hierarchies_in(mountinfo: &str) -> Vec<V1Hierarchy> {
    let mut out: Vec<V1Hierarchy> = Vec::new();
    for l in mountinfo.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let (Some(_source), Some(opts)) = (post.next(), post.next()) else {
            continue;
        };
        let Some(mount) = pre.split_whitespace().nth(4).map(PathBuf::from) else {
            continue;
        };
        let controllers: Vec<String> = opts
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty()
            || mount.parent() != Some(Path::new("/sys/fs/cgroup"))
            || out.iter().any(|h| h.controllers == controllers)
        {
            continue;
        }
        out.push(V1Hierarchy { mount, controllers });
    }
    out
}

/// The v1 mount point of `controller`. Found ones are remembered (status checks ask for them
/// every second per container, and mountinfo is long); a miss reads mountinfo again.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    static FOUND: std::sync::Mutex<BTreeMap<String, PathBuf>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = found.get(controller) {
        return Some(p.clone());
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let p = v1_mount_in(&mi, controller)?;
    found.insert(controller.to_string(), p.clone());
    Some(p)
}

/// The directory of `cgroups_path` for `controller` (v1) or the unified one (v2).
pub fn dir(version: CgroupVersion, controller: &str, cgroups_path: &str) -> Option<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => Some(Path::new("/sys/fs/cgroup").join(rel)),
        CgroupVersion::V1 => Some(v1_mount(controller)?.join(rel)),
    }
}

/// Removes the cgroup directories of `cgroups_path` that are left, with any child cgroups below
/// them: in every v1 hierarchy, or the v2 one. libcontainer removes the container's own directory
/// when a container is deleted, but not one that has children; this also covers a libcontainer
/// state that could not be loaded (a monitor killed in the middle of a start).
/// Returns the directories that could not be removed, with why (a process still in them).
pub fn remove_leftovers(version: CgroupVersion, cgroups_path: &str) -> Vec<String> {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    let dirs: Vec<PathBuf> = match version {
        CgroupVersion::V2 => vec![Path::new("/sys/fs/cgroup").join(rel)],
        CgroupVersion::V1 => std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                if post.split_whitespace().next()? != "cgroup" {
                    return None;
                }
                Some(PathBuf::from(pre.split_whitespace().nth(4)?).join(rel))
            })
            .collect(),
    };
    let mut failed = Vec::new();
    for d in dirs {
        remove_tree(&d, 0, &mut failed);
    }
    failed
}

/// [`remove_leftovers`], tried again every 20 ms while something is left, for at most `limit`: a
/// cgroup still holds a process that is exiting for a moment (`rmdir` says EBUSY). Returns what
/// is left at the end.
pub fn remove_leftovers_within(
    version: CgroupVersion,
    cgroups_path: &str,
    limit: std::time::Duration,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let failed = remove_leftovers(version, cgroups_path);
        if failed.is_empty() || std::time::Instant::now() >= deadline {
            return failed;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes cgroup directory `d` and every child cgroup below it, children first (a cgroup
/// directory goes only with `rmdir`, and only once it has no children). A child made inside the
/// container would otherwise keep the container's cgroup alive, and on v1 make every later start
/// with the same cgroup fail (`devices.deny` refuses a cgroup that has children). Does not follow
/// symlinks (cgroupfs has none) and stops 64 levels down.
fn remove_tree(d: &Path, depth: usize, failed: &mut Vec<String>) {
    if depth > 64 {
        failed.push(format!("{}: nested too deep", d.display()));
        return;
    }
    match std::fs::read_dir(d) {
        Ok(rd) => {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path(), depth + 1, failed);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    match std::fs::remove_dir(d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => failed.push(format!("{}: {e}", d.display())),
    }
}

/// The value of `key` in a flat keyed file (`key value` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// How many processes of the cgroup the OOM killer killed; `None` if unknown.
pub fn oom_kills(version: CgroupVersion, cgroups_path: &str) -> Option<u64> {
    let d = dir(version, "memory", cgroups_path)?;
    let file = match version {
        CgroupVersion::V1 => d.join("memory.oom_control"),
        CgroupVersion::V2 => d.join("memory.events"),
    };
    keyed(&std::fs::read_to_string(file).ok()?, "oom_kill")
}

/// Resource use of a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit, bytes (`None`: unlimited).
    pub memory_limit: Option<u64>,
    /// Processes (tasks).
    pub pids: Option<u64>,
    /// CPU time used, nanoseconds.
    pub cpu_nanos: Option<u64>,
}

fn read_u64(p: PathBuf) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads the container's current resource use.
pub fn stats(version: CgroupVersion, cgroups_path: &str) -> Stats {
    let d = |c: &str| dir(version, c, cgroups_path);
    match version {
        CgroupVersion::V1 => Stats {
            memory_bytes: d("memory").and_then(|d| read_u64(d.join("memory.usage_in_bytes"))),
            memory_limit: d("memory")
                .and_then(|d| read_u64(d.join("memory.limit_in_bytes")))
                .filter(|&l| l < (1 << 62)),
            pids: d("pids").and_then(|d| read_u64(d.join("pids.current"))),
            cpu_nanos: d("cpuacct").and_then(|d| read_u64(d.join("cpuacct.usage"))),
        },
        CgroupVersion::V2 => {
            let d = d("");
            Stats {
                memory_bytes: d.as_ref().and_then(|d| read_u64(d.join("memory.current"))),
                memory_limit: d.as_ref().and_then(|d| read_u64(d.join("memory.max"))),
                pids: d.as_ref().and_then(|d| read_u64(d.join("pids.current"))),
                cpu_nanos: d
                    .as_ref()
                    .and_then(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
                    .and_then(|t| keyed(&t, "usage_usec"))
                    .map(|u| u * 1000),
            }
        }
    }
}

/// What the metrics endpoint and `agent stats` read of a container's cgroup, under the names
/// cAdvisor gives them. `None`: the file is missing or unreadable (a controller not mounted).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// CPU time, nanoseconds: total, user, system (v1 `cpuacct.usage` and `cpuacct.stat` in
    /// USER_HZ ticks; v2 `cpu.stat` `usage_usec`, `user_usec`, `system_usec`).
    pub cpu_nanos: Option<u64>,
    pub cpu_user_nanos: Option<u64>,
    pub cpu_system_nanos: Option<u64>,
    /// Memory in use including the page cache (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_bytes: Option<u64>,
    /// `memory_bytes` less the inactive file cache: what the kernel cannot reclaim easily
    /// (cAdvisor's and `docker stats`' working set).
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss_bytes: Option<u64>,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache_bytes: Option<u64>,
    /// The memory limit; `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// Tasks (threads) in the cgroup and their limit (`None`: unlimited).
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
    /// OOM kills in the cgroup.
    pub oom_kills: Option<u64>,
}

/// Ticks per second of v1 `cpuacct.stat` (USER_HZ, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

fn read_limit(p: PathBuf) -> Option<u64> {
    let t = std::fs::read_to_string(p).ok()?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    t.parse().ok().filter(|&l: &u64| l < (1 << 62))
}

/// Reads the container's resource use for metrics and `agent stats`: a few small files per
/// controller, nothing that walks the process list.
pub fn usage(version: CgroupVersion, cgroups_path: &str) -> Usage {
    let d = |c: &str| dir(version, c, cgroups_path);
    let text = |d: &Option<PathBuf>, f: &str| {
        d.as_ref()
            .and_then(|d| std::fs::read_to_string(d.join(f)).ok())
    };
    let working_set = |usage: Option<u64>, inactive: Option<u64>| {
        usage.map(|u| u.saturating_sub(inactive.unwrap_or(0)))
    };
    match version {
        CgroupVersion::V1 => {
            let mem = d("memory");
            let cpu = d("cpuacct");
            let pids = d("pids");
            let stat = text(&mem, "memory.stat").unwrap_or_default();
            let cpu_stat = text(&cpu, "cpuacct.stat").unwrap_or_default();
            let ticks = |k| keyed(&cpu_stat, k).map(|t| t * (1_000_000_000 / USER_HZ));
            let memory_bytes = mem
                .as_ref()
                .and_then(|d| read_u64(d.join("memory.usage_in_bytes")));
            Usage {
                cpu_nanos: cpu.as_ref().and_then(|d| read_u64(d.join("cpuacct.usage"))),
                cpu_user_nanos: ticks("user"),
                cpu_system_nanos: ticks("system"),
                memory_bytes,
                working_set_bytes: working_set(memory_bytes, keyed(&stat, "total_inactive_file")),
                rss_bytes: keyed(&stat, "total_rss"),
                cache_bytes: keyed(&stat, "total_cache"),
                memory_limit: mem
                    .as_ref()
                    .and_then(|d| read_limit(d.join("memory.limit_in_bytes"))),
                pids: pids.as_ref().and_then(|d| read_u64(d.join("pids.current"))),
                pids_limit: pids.as_ref().and_then(|d| read_limit(d.join("pids.max"))),
                oom_kills: text(&mem, "memory.oom_control").and_then(|t| keyed(&t, "oom_kill")),
            }
        }
        CgroupVersion::V2 => {
            let d = d("");
            let stat = text(&d, "memory.stat").unwrap_or_default();
            let cpu = text(&d, "cpu.stat").unwrap_or_default();
            let usec = |k| keyed(&cpu, k).map(|u| u * 1000);
            let memory_bytes = d.as_ref().and_then(|d| read_u64(d.join("memory.current")));
            Usage {
                cpu_nanos: usec("usage_usec"),
                cpu_user_nanos: usec("user_usec"),
                cpu_system_nanos: usec("system_usec"),
                memory_bytes,
                working_set_bytes: working_set(memory_bytes, keyed(&stat, "inactive_file")),
                rss_bytes: keyed(&stat, "anon"),
                cache_bytes: keyed(&stat, "file"),
                memory_limit: d.as_ref().and_then(|d| read_limit(d.join("memory.max"))),
                pids: d.as_ref().and_then(|d| read_u64(d.join("pids.current"))),
                pids_limit: d.as_ref().and_then(|d| read_limit(d.join("pids.max"))),
                oom_kills: text(&d, "memory.events").and_then(|t| keyed(&t, "oom_kill")),
            }
        }
    }
}

/// The processes of the cgroup (`cgroup.procs`: v1 in the `pids` hierarchy, else `memory`;
/// v2 the unified one), sorted. Empty when the cgroup is gone.
pub fn procs(version: CgroupVersion, cgroups_path: &str) -> Vec<i32> {
    let dirs: Vec<Option<PathBuf>> = match version {
        CgroupVersion::V1 => vec![
            dir(version, "pids", cgroups_path),
            dir(version, "memory", cgroups_path),
        ],
        CgroupVersion::V2 => vec![dir(version, "", cgroups_path)],
    };
    for d in dirs.into_iter().flatten() {
        if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
            let mut pids: Vec<i32> = t.lines().filter_map(|l| l.trim().parse().ok()).collect();
            pids.sort_unstable();
            pids.dedup();
            return pids;
        }
    }
    Vec::new()
}

/// A file write of [`resets`]: `controller`'s `file` gets `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: ResetValue,
}

/// What a [`Reset`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetValue {
    Text(&'static str),
    /// The same file of the parent cgroup (v1 cpuset: an empty set is refused while tasks run).
    FromParent,
}

/// The writes that return the limits `old` sets and `new` drops to the kernel's defaults, in
/// order (v1 memory+swap before memory: the kernel keeps `memsw >= limit`).
pub fn resets(version: CgroupVersion, old: &Resources, new: &Resources) -> Vec<Reset> {
    use ResetValue::{FromParent, Text};
    let v1 = version == CgroupVersion::V1;
    let dropped = |o: bool, n: bool| o && !n;
    let mut out = Vec::new();
    let mut put = |controller, file, value| {
        out.push(Reset {
            controller,
            file,
            value,
        })
    };
    if dropped(old.memory.is_some(), new.memory.is_some()) {
        if v1 {
            put("memory", "memory.memsw.limit_in_bytes", Text("-1"));
            put("memory", "memory.limit_in_bytes", Text("-1"));
        } else {
            put("memory", "memory.swap.max", Text("max"));
            put("memory", "memory.max", Text("max"));
        }
    }
    if dropped(
        old.memory_reservation.is_some(),
        new.memory_reservation.is_some(),
    ) {
        if v1 {
            put("memory", "memory.soft_limit_in_bytes", Text("-1"));
        } else {
            put("memory", "memory.low", Text("0"));
        }
    }
    if dropped(old.cpu_quota.is_some(), new.cpu_quota.is_some()) {
        if v1 {
            put("cpu", "cpu.cfs_quota_us", Text("-1"));
        } else {
            put("cpu", "cpu.max", Text("max 100000"));
        }
    }
    if v1 && dropped(old.cpu_period.is_some(), new.cpu_period.is_some()) {
        put("cpu", "cpu.cfs_period_us", Text("100000"));
    }
    if dropped(old.cpu_shares.is_some(), new.cpu_shares.is_some()) {
        if v1 {
            put("cpu", "cpu.shares", Text("1024"));
        } else {
            put("cpu", "cpu.weight", Text("100"));
        }
    }
    // v2: an empty set means "the parent's".
    let cpuset = if v1 { FromParent } else { Text("") };
    if dropped(old.cpuset_cpus.is_some(), new.cpuset_cpus.is_some()) {
        put("cpuset", "cpuset.cpus", cpuset.clone());
    }
    if dropped(old.cpuset_mems.is_some(), new.cpuset_mems.is_some()) {
        put("cpuset", "cpuset.mems", cpuset);
    }
    if dropped(old.pids.is_some(), new.pids.is_some()) {
        put("pids", "pids.max", Text("max"));
    }
    out
}

/// Changes the limits of the running container in `cgroups_path` from `old` to `new`; `built`
/// is the runtime spec's form of `new` (validated). Errors say which file or limit failed.
pub fn update(
    cgroups_path: &str,
    built: &LinuxResources,
    old: &Resources,
    new: &Resources,
) -> Result<(), String> {
    let version = version();
    for r in resets(version, old, new) {
        let Some(d) = dir(version, r.controller, cgroups_path) else {
            return Err(format!(
                "the {} cgroup controller is not mounted",
                r.controller
            ));
        };
        let value = match r.value {
            ResetValue::Text(t) => t.to_string(),
            ResetValue::FromParent => {
                let p = d.parent().unwrap_or(&d).join(r.file);
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("read {}: {e}", p.display()))?
                    .trim()
                    .to_string()
            }
        };
        let path = d.join(r.file);
        if r.file.contains("sw") && !path.exists() {
            continue; // memsw / swap.max: no swap accounting on this host
        }
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| format!("write {value:?} to {}: {e}", path.display()))?;
    }
    // The devices rules stay as created: writing them again would deny every device for an
    // instant before allowing the defaults back.
    let mut set = built.clone();
    set.set_devices(None);
    let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(cgroups_path),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .map_err(|e| format!("opening the cgroup {cgroups_path}: {e}"))?;
    manager
        .apply(&ControllerOpt {
            resources: &set,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| format!("applying the limits to the cgroup {cgroups_path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
        40 31 0:34 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn finds_v1_mounts() {
        assert_eq!(
            v1_mount_in(MOUNTINFO, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            v1_mount_in(MOUNTINFO, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_mount_in(MOUNTINFO, "pids"), None);
    }

    #[test]
    fn lists_v1_hierarchies_with_managed_controllers() {
        let mi = format!(
            "{MOUNTINFO}41 31 0:35 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             42 31 0:36 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n\
             43 31 0:37 / /sys/fs/cgroup/rdma rw - cgroup cgroup rw,rdma\n\
             44 1 0:32 / /mnt/again rw - cgroup cgroup rw,memory\n"
        );
        let h = v1_hierarchies_in(&mi);
        let got: Vec<(&str, Vec<&str>)> = h
            .iter()
            .map(|h| {
                (
                    h.mount.to_str().unwrap_or(""),
                    h.controllers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/sys/fs/cgroup/memory", vec!["memory"]),
                ("/sys/fs/cgroup/cpu,cpuacct", vec!["cpu", "cpuacct"]),
                (
                    "/sys/fs/cgroup/net_cls,net_prio",
                    vec!["net_cls", "net_prio"]
                ),
            ]
        );
    }

    #[test]
    fn removes_child_cgroups_first() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = dir.path().join("agent/c1");
        std::fs::create_dir_all(top.join("x/y")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(top.join("z")).unwrap_or_else(|e| panic!("{e}"));
        let mut failed = Vec::new();
        remove_tree(&top, 0, &mut failed);
        assert!(failed.is_empty(), "{failed:?}");
        assert!(!top.exists() && dir.path().join("agent").exists());
        remove_tree(&top, 0, &mut failed);
        assert!(failed.is_empty(), "gone is success: {failed:?}");
    }

    #[test]
    fn dropped_limits_are_reset_to_the_defaults() {
        let old = Resources {
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids: Some(50),
            ..Resources::default()
        };
        let files = |v, new: &Resources| -> Vec<(&str, ResetValue)> {
            resets(v, &old, new)
                .into_iter()
                .map(|r| (r.file, r.value))
                .collect()
        };
        // Nothing dropped: nothing reset (changed values are libcgroups' job).
        let mut same = old.clone();
        same.memory = Some(128 << 20);
        assert!(files(CgroupVersion::V1, &same).is_empty());
        use ResetValue::{FromParent, Text};
        assert_eq!(
            files(CgroupVersion::V1, &Resources::default()),
            vec![
                ("memory.memsw.limit_in_bytes", Text("-1")),
                ("memory.limit_in_bytes", Text("-1")),
                ("memory.soft_limit_in_bytes", Text("-1")),
                ("cpu.cfs_quota_us", Text("-1")),
                ("cpu.cfs_period_us", Text("100000")),
                ("cpu.shares", Text("1024")),
                ("cpuset.cpus", FromParent),
                ("pids.max", Text("max")),
            ]
        );
        assert_eq!(
            files(CgroupVersion::V2, &Resources::default()),
            vec![
                ("memory.swap.max", Text("max")),
                ("memory.max", Text("max")),
                ("memory.low", Text("0")),
                ("cpu.max", Text("max 100000")),
                ("cpu.weight", Text("100")),
                ("cpuset.cpus", Text("")),
                ("pids.max", Text("max")),
            ]
        );
    }

    #[test]
    fn reads_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(v2, "oom_kill"), Some(1));
        assert_eq!(keyed(v2, "missing"), None);
    }
}
