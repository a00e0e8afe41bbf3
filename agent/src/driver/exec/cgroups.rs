//! Reading a container's cgroup: OOM kills and resource use, on cgroup v1 and v2.
//!
//! libcontainer (libcgroups, systemd off) creates and removes the cgroups and applies the limits;
//! this module only reads. Paths: v1 `<mount of controller>/<cgroups_path>` (the mount found in
//! `/proc/self/mountinfo`), v2 `/sys/fs/cgroup/<cgroups_path>`.
//!
//! OOM kills: v1 `memory.oom_control` line `oom_kill N` (kernel 4.13+), v2 `memory.events` line
//! `oom_kill N`. Any OOM kill in the container's cgroup counts as "OOM killed", as in Docker.

use std::path::{Path, PathBuf};

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

/// The directory of `cgroups_path` for `controller` (v1) or the unified one (v2).
pub fn dir(version: CgroupVersion, controller: &str, cgroups_path: &str) -> Option<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => Some(Path::new("/sys/fs/cgroup").join(rel)),
        CgroupVersion::V1 => {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            Some(v1_mount_in(&mi, controller)?.join(rel))
        }
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
    fn reads_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(v2, "oom_kill"), Some(1));
        assert_eq!(keyed(v2, "missing"), None);
    }
}
