//! Where the containers' cgroups go: below the systemd unit's delegated cgroup when there is
//! one, else `/agent`.
//!
//! Without systemd (or in a unit without `Delegate=yes`) every container's cgroup is
//! `/agent/<id>` in each hierarchy ([`DEFAULT_PARENT`]).
//!
//! Under systemd with `Delegate=yes` (packaging/agent.service) the unit's cgroup
//! (`/system.slice/agent.service`) is the agent's to manage, and nothing outside it is:
//!
//! - cgroup v2: the unit sets `DelegateSubgroup=agent` (systemd 254 and later), so systemd
//!   starts the agent in the leaf `<unit>/agent`, and containers are created below
//!   `<unit>/containers` ([`container_parent`]). The leaf is what cgroup v2's "no internal
//!   processes" rule asks: controllers are enabled for a cgroup's children (libcontainer does it
//!   on its way down to the container's cgroup) only while no process lives in it, and systemd
//!   puts every start of the unit's main process into the cgroup `DelegateSubgroup=` names. At
//!   start-up `agent run` moves what else runs directly in the unit's cgroup (monitors of an
//!   earlier version) into the leaf ([`enter_leaf`]); the monitors inherit the agent's cgroup.
//!   Under an older systemd, which ignores `DelegateSubgroup=` and starts the agent in
//!   `<unit>` itself, the containers stay below `/agent`: were they below the unit, its
//!   `cgroup.subtree_control` would be set and the next start of the agent (a restart, an
//!   upgrade), which systemd puts into `<unit>`, would fail with EBUSY while they run.
//! - cgroup v1 and hybrid: the controllers are v1 hierarchies, which have no such rule, and
//!   libcontainer leaves systemd's own hierarchy (the unified one of a hybrid host, or
//!   `name=systemd`) alone, so nothing moves: the containers' cgroups are `<unit>/containers/<id>`
//!   in every v1 controller hierarchy, and in systemd's hierarchy the containers stay in the
//!   unit's cgroup with their monitors.
//!
//! So `systemctl status agent` lists the agent, its monitors and the containers, and
//! `KillMode=process` still signals only the agent on stop.
//!
//! A cgroup counts as delegated when it carries the extended attribute `trusted.delegate` (or
//! `user.delegate`) with the value `1`, which systemd (v251 and later) sets on the cgroup of a
//! unit with `Delegate=yes`, in its own hierarchy (`/sys/fs/cgroup` on v2; on v1 and hybrid
//! hosts both `/sys/fs/cgroup/unified` and `/sys/fs/cgroup/systemd` are looked at). Where it is
//! missing (older systemd, a unit without `Delegate=yes`, an agent started from a shell) the
//! containers stay under `/agent`, outside any unit, as before. Containers created earlier keep
//! the cgroup their state records.

use std::path::{Path, PathBuf};

use super::cgroups::{self, CgroupVersion};

/// The parent of the containers' cgroups outside a delegated unit.
pub const DEFAULT_PARENT: &str = "/agent";
/// The leaf of the unit's cgroup the agent and its monitors run in.
pub const LEAF: &str = "agent";
/// The cgroup of the unit under which containers are created.
pub const CONTAINERS: &str = "containers";

/// The v2 hierarchy of a cgroup v2 host.
const V2_ROOT: &str = "/sys/fs/cgroup";
/// systemd's own hierarchy on a cgroup v1 or hybrid host, where it marks a delegated unit's
/// cgroup, and the controllers field of its line in /proc/PID/cgroup: the unified hierarchy of a
/// hybrid host (systemd tracks the units' processes there), and `name=systemd`.
const V1_MARKED: &[(&str, &str)] = &[
    ("/sys/fs/cgroup/unified", ""),
    ("/sys/fs/cgroup/systemd", "name=systemd"),
];

/// The parent of every new container's cgroup for this process: `<unit>/containers` when the
/// process runs in the delegated cgroup of a unit (on cgroup v2, in its leaf `<unit>/agent`: see
/// [`enter_leaf`]), else [`DEFAULT_PARENT`].
pub fn container_parent() -> String {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return DEFAULT_PARENT.into();
    };
    let unit = match cgroups::version() {
        CgroupVersion::V2 => {
            own_in(&text, "").and_then(|own| leaf_base(&own, |b| is_delegated(V2_ROOT, b)))
        }
        CgroupVersion::V1 => v1_unit(&text, is_delegated),
    };
    match unit {
        Some(base) => format!("{base}/{CONTAINERS}"),
        None => DEFAULT_PARENT.into(),
    }
}

/// On a cgroup v1 or hybrid host: the delegated unit cgroup this process runs in (or in whose
/// leaf `agent` it runs), from its line of systemd's hierarchy in `proc_cgroup`;
/// `delegated(hierarchy, cgroup)`.
fn v1_unit(proc_cgroup: &str, delegated: impl Fn(&str, &str) -> bool) -> Option<String> {
    V1_MARKED.iter().find_map(|(root, controllers)| {
        let own = own_in(proc_cgroup, controllers)?;
        if own != "/" && delegated(root, &own) {
            return Some(own);
        }
        leaf_base(&own, |b| delegated(root, b))
    })
}

/// On a cgroup v2 host where systemd started this process in the leaf `agent` of its unit's
/// delegated cgroup (`DelegateSubgroup=agent`), moves whatever else still runs directly in the
/// unit's cgroup (monitors of an earlier version, started when the containers went below
/// `/agent`) into the leaf too, so that controllers can be enabled for `<unit>/containers`.
/// Returns the unit's cgroup (`/system.slice/agent.service`), `None` where there is none. An
/// error where the unit's cgroup is delegated but this process runs in it directly (systemd
/// before 254 ignores `DelegateSubgroup=`): then the containers go below [`DEFAULT_PARENT`],
/// because a cgroup with controllers enabled for its children cannot take a process, and
/// systemd puts the next start of the agent into the unit's cgroup: a restart (or upgrade)
/// with containers running would fail. Call it before starting threads or child processes.
pub fn enter_leaf() -> Result<Option<String>, String> {
    if cgroups::version() != CgroupVersion::V2 {
        return Ok(None);
    }
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let Some(own) = own_in(&text, "") else {
        return Ok(None);
    };
    let delegated = |rel: &str| is_delegated(V2_ROOT, rel);
    if own != "/" && delegated(&own) {
        return Err(format!(
            "systemd started the agent in its unit's cgroup {own}, not in its leaf {own}/{LEAF} \
             (DelegateSubgroup={LEAF} needs systemd 254 or later); containers below {own} would \
             make the unit's next start fail while they run"
        ));
    }
    let Some(base) = leaf_base(&own, delegated) else {
        return Ok(None);
    };
    let base_dir = dir_of(V2_ROOT, &base);
    let procs = base_dir.join(LEAF).join("cgroup.procs");
    // Monitors of an earlier version: one that exits meanwhile is no loss.
    let others = std::fs::read_to_string(base_dir.join("cgroup.procs")).unwrap_or_default();
    for pid in others.lines().map(str::trim).filter(|p| !p.is_empty()) {
        if let Err(e) = std::fs::write(&procs, pid) {
            tracing::warn!(pid, error = %e, cgroup = %procs.display(), "cannot move a process of the unit's cgroup into its leaf");
        }
    }
    Ok(Some(base))
}

/// This process's cgroup in the hierarchy whose line in `proc_cgroup` (/proc/self/cgroup) has
/// the controllers field `controllers`: `""` for the v2 (unified) one (`0::/path`),
/// `name=systemd`, `memory`...
fn own_in(proc_cgroup: &str, controllers: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            (f.next()? == controllers).then(|| f.next())?
        })
        .map(|p| p.trim().to_string())
        .filter(|p| p.starts_with('/'))
}

/// The delegated cgroup whose leaf `agent` is `own`, if it is one.
fn leaf_base(own: &str, delegated: impl Fn(&str) -> bool) -> Option<String> {
    let base = own.strip_suffix(&format!("/{LEAF}"))?;
    (!base.is_empty() && delegated(base)).then(|| base.to_string())
}

/// The directory of cgroup `rel` in the hierarchy mounted at `root`.
fn dir_of(root: &str, rel: &str) -> PathBuf {
    Path::new(root).join(rel.trim_start_matches('/'))
}

/// Whether systemd marked cgroup `rel` of the hierarchy mounted at `root` as delegated
/// (`trusted.delegate` or `user.delegate` is `1`).
fn is_delegated(root: &str, rel: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir_of(root, rel).as_os_str().as_bytes()) else {
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
    fn own_cgroup_is_the_line_of_the_hierarchy() {
        let text = "12:memory:/system.slice/x\n1:name=systemd:/s\n0::/system.slice/agent.service\n";
        assert_eq!(
            own_in(text, "").as_deref(),
            Some("/system.slice/agent.service")
        );
        assert_eq!(own_in(text, "name=systemd").as_deref(), Some("/s"));
        assert_eq!(own_in(text, "memory").as_deref(), Some("/system.slice/x"));
        assert_eq!(own_in("4:memory:/x\n", ""), None);
        assert_eq!(own_in("4:cpu,cpuacct:/x\n", "cpu"), None);
    }

    #[test]
    fn v1_unit_is_marked_in_systemds_hierarchy() {
        let unit = "/system.slice/agent.service";
        // Hybrid: systemd marks the unified hierarchy's cgroup.
        let hybrid = "9:name=systemd:/system.slice/agent.service\n\
                      4:memory:/system.slice/agent.service\n0::/system.slice/agent.service\n";
        let on_unified = |root: &str, c: &str| root == "/sys/fs/cgroup/unified" && c == unit;
        assert_eq!(v1_unit(hybrid, on_unified).as_deref(), Some(unit));
        // Legacy: name=systemd only (no unified line).
        let legacy =
            "9:name=systemd:/system.slice/agent.service\n4:memory:/system.slice/agent.service\n";
        let on_named = |root: &str, c: &str| root == "/sys/fs/cgroup/systemd" && c == unit;
        assert_eq!(v1_unit(legacy, on_named).as_deref(), Some(unit));
        // The leaf of a delegated cgroup counts for its unit.
        let leaf = "0::/system.slice/agent.service/agent\n";
        assert_eq!(v1_unit(leaf, on_unified).as_deref(), Some(unit));
        // Not marked, or marked in a controller's hierarchy only; the root never.
        assert_eq!(v1_unit(hybrid, |_, _| false), None);
        assert_eq!(
            v1_unit(hybrid, |root: &str, _: &str| root.ends_with("memory")),
            None
        );
        assert_eq!(v1_unit("9:name=systemd:/\n0::/\n", |_, _| true), None);
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
