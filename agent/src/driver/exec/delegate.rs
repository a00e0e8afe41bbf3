//! Where the containers' cgroups go: below the systemd unit's delegated cgroup when there is
//! one, else `/agent`.
//!
//! Without systemd, and on cgroup v1 or hybrid hosts (whose controllers are v1 hierarchies),
//! every container's cgroup is `/agent/<id>` in each hierarchy ([`DEFAULT_PARENT`]).
//!
//! Under systemd with `Delegate=yes` (packaging/agent.service) on a cgroup v2 host, the unit's
//! cgroup (`/system.slice/agent.service`) is the agent's to manage, and nothing outside it is.
//! At start-up `agent run` moves itself, and whatever else runs directly in the unit's cgroup
//! (the monitors a previous version left there), into the leaf `<unit>/agent` ([`enter_leaf`]),
//! and containers are created below `<unit>/containers` ([`container_parent`]). The move is
//! what cgroup v2's "no internal processes" rule asks: controllers are enabled for a cgroup's
//! children (libcontainer does it on its way down to the container's cgroup) only while no
//! process lives in it. The monitors inherit the agent's cgroup. So `systemctl status agent`
//! lists the agent, its monitors and the containers, and `KillMode=process` still signals only
//! the agent on stop.
//!
//! A cgroup counts as delegated when it carries the extended attribute `trusted.delegate` (or
//! `user.delegate`) with the value `1`, which systemd (v251 and later) sets on the cgroup of a
//! unit with `Delegate=yes`. Where it is missing (older systemd, a unit without `Delegate=yes`,
//! an agent started from a shell) the containers stay under `/agent`, outside any unit, as
//! before. Containers created earlier keep the cgroup their state records.

use std::path::{Path, PathBuf};

use super::cgroups::{self, CgroupVersion};

/// The parent of the containers' cgroups outside a delegated unit.
pub const DEFAULT_PARENT: &str = "/agent";
/// The leaf of the unit's cgroup the agent and its monitors run in.
pub const LEAF: &str = "agent";
/// The cgroup of the unit under which containers are created.
pub const CONTAINERS: &str = "containers";

/// The parent of every new container's cgroup for this process: `<unit>/containers` when the
/// process runs in the leaf `<unit>/agent` of a delegated unit cgroup on a cgroup v2 host (see
/// [`enter_leaf`]), else [`DEFAULT_PARENT`].
pub fn container_parent() -> String {
    if cgroups::version() != CgroupVersion::V2 {
        return DEFAULT_PARENT.into();
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| own_v2(&t));
    match own.and_then(|own| leaf_base(&own, is_delegated)) {
        Some(base) => format!("{base}/{CONTAINERS}"),
        None => DEFAULT_PARENT.into(),
    }
}

/// On a cgroup v2 host whose cgroup of this process is delegated (or is the leaf `agent` of a
/// delegated one), moves every process of the delegated cgroup into its leaf `agent` (created
/// if missing), this one first. Returns the delegated cgroup (`/system.slice/agent.service`),
/// `None` where there is none. Call it before starting threads or child processes.
pub fn enter_leaf() -> Result<Option<String>, String> {
    if cgroups::version() != CgroupVersion::V2 {
        return Ok(None);
    }
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let Some(own) = own_v2(&text) else {
        return Ok(None);
    };
    if let Some(base) = leaf_base(&own, is_delegated) {
        return Ok(Some(base));
    }
    if own == "/" || !is_delegated(&own) {
        return Ok(None);
    }
    let base_dir = dir_of(&own);
    let leaf = base_dir.join(LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating the cgroup {}: {e}", leaf.display())),
    }
    let procs = leaf.join("cgroup.procs");
    let me = std::process::id();
    std::fs::write(&procs, me.to_string())
        .map_err(|e| format!("moving the agent (pid {me}) into {}: {e}", procs.display()))?;
    // The others (monitors of an earlier version): one that exits meanwhile is no loss.
    let others = std::fs::read_to_string(base_dir.join("cgroup.procs")).unwrap_or_default();
    for pid in others.lines().map(str::trim).filter(|p| !p.is_empty()) {
        if let Err(e) = std::fs::write(&procs, pid) {
            tracing::warn!(pid, error = %e, cgroup = %leaf.display(), "cannot move a process of the unit's cgroup into its leaf");
        }
    }
    Ok(Some(own))
}

/// This process's cgroup v2 path (`0::/path` of `/proc/self/cgroup`).
fn own_v2(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
        .filter(|p| p.starts_with('/'))
}

/// The delegated cgroup whose leaf `agent` is `own`, if it is one.
fn leaf_base(own: &str, delegated: impl Fn(&str) -> bool) -> Option<String> {
    let base = own.strip_suffix(&format!("/{LEAF}"))?;
    (!base.is_empty() && delegated(base)).then(|| base.to_string())
}

/// The directory of cgroup `rel` in the v2 hierarchy.
fn dir_of(rel: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'))
}

/// Whether systemd marked cgroup `rel` as delegated (`trusted.delegate` or `user.delegate` is
/// `1`).
fn is_delegated(rel: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir_of(rel).as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let Ok(name) = std::ffi::CString::new(*name) else {
            return false;
        };
        let mut buf = [0u8; 8];
        // SAFETY: both strings are NUL-terminated and live across the call; the kernel writes
        // at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        usize::try_from(n).is_ok_and(|n| buf.get(..n) == Some(b"1".as_slice()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let text = "12:memory:/system.slice/x\n0::/system.slice/agent.service\n";
        assert_eq!(own_v2(text).as_deref(), Some("/system.slice/agent.service"));
        assert_eq!(own_v2("4:memory:/x\n"), None);
    }

    #[test]
    fn leaf_of_a_delegated_unit_names_the_unit() {
        let unit = "/system.slice/agent.service";
        let delegated = |c: &str| c == unit;
        assert_eq!(
            leaf_base("/system.slice/agent.service/agent", delegated).as_deref(),
            Some(unit)
        );
        // not yet moved, a non-delegated parent, the root, another leaf name
        assert_eq!(leaf_base(unit, delegated), None);
        assert_eq!(leaf_base("/user.slice/agent", delegated), None);
        assert_eq!(leaf_base("/agent", |_| true), None);
        assert_eq!(
            leaf_base("/system.slice/agent.service/containers", delegated),
            None
        );
    }
}
