//! End-to-end on cgroup v2 (root).
//!
//! This host is hybrid: v1 controllers plus a cgroup2 mount (`/sys/fs/cgroup/unified`) that
//! has no memory, pids or cpu controllers. The test re-runs itself in a private mount namespace
//! with that cgroup2 mount bound over `/sys/fs/cgroup`, so that the agent, its monitors and
//! libcontainer all see a v2-only host. There it checks what v2 without controllers can show:
//! libcontainer's v2 manager creates and removes the container's cgroup, the process lives in
//! it, the container gets a cgroup namespace, pause/unpause work through `cgroup.freeze`, and
//! exit codes and stop still work. Memory and pids limits on v2 (and `memory.events` OOM
//! counting) cannot be exercised here: the controllers are bound to v1. On a v2-only host the
//! test runs directly.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use agent::driver::exec::cgroups::{self, CgroupVersion};
use agent::driver::exec::{ContainerStatus, ExecDriver, ExecRequest, ExecStdio, state};
use agent_e2e::exec::{Fixture, exited, require_root};

const HELPER_ENV: &str = "AGENT_EXEC_V2_HELPER";
const NAME: &str = "containers_run_on_a_cgroup_v2_view";

/// The mount point of a cgroup2 file system, if any.
fn cgroup2_mount() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(pre.split_whitespace().nth(4)?))
    })
}

fn helper(unified: &str) {
    if cgroups::version() != CgroupVersion::V2 {
        let st = Command::new("mount")
            .args(["--bind", unified, "/sys/fs/cgroup"])
            .status()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(st.success(), "bind {unified} over /sys/fs/cgroup");
    }
    assert_eq!(cgroups::version(), CgroupVersion::V2);
    let mut f = Fixture::new("v2");
    let mut s = f.spec("v2box");
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);
    let st = state::ContainerState::load(&f.dir(&id))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    let pid = st.pid.unwrap_or_else(|| panic!("no pid"));
    let cg_rel = format!("{}/{}", f.cgroup_parent, id);
    let cg_dir = PathBuf::from("/sys/fs/cgroup").join(cg_rel.trim_start_matches('/'));
    let procs = std::fs::read_to_string(cg_dir.join("cgroup.procs")).unwrap_or_default();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{pid} not in {}: {procs:?}",
        cg_dir.display()
    );
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(own.contains(&format!("0::{cg_rel}")), "{own}");
    // the container has a cgroup namespace: it sees itself at the root
    let o = f
        .driver
        .exec(
            &id,
            &ExecRequest {
                argv: vec!["cat".into(), "/proc/self/cgroup".into()],
                ..ExecRequest::default()
            },
            ExecStdio::Capture,
        )
        .unwrap_or_else(|e| panic!("exec: {e}"));
    // (the kernel also lists the v1 hierarchies of this hybrid host; all at their root too)
    let seen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(seen.lines().any(|l| l == "0::/"), "{seen}");
    assert!(seen.lines().all(|l| l.ends_with(":/")), "{seen}");
    // its cgroup2 mount is read-only and rooted at its own cgroup (no other cgroup in it)
    let o = f
        .driver
        .exec(
            &id,
            &ExecRequest {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "mkdir /sys/fs/cgroup/x && echo made; echo max > /sys/fs/cgroup/pids.max && echo wrote; \
                     find /sys/fs/cgroup -mindepth 1 -type d; grep ' /sys/fs/cgroup ' /proc/self/mountinfo"
                        .into(),
                ],
                ..ExecRequest::default()
            },
            ExecStdio::Capture,
        )
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let seen = String::from_utf8_lossy(&o.stdout).into_owned();
    let mount: Vec<&str> = seen.lines().filter(|l| l.contains(" cgroup2 ")).collect();
    assert_eq!(mount.len(), 1, "{seen}");
    assert!(
        mount[0]
            .split_whitespace()
            .nth(5)
            .is_some_and(|o| o.starts_with("ro")),
        "{seen}"
    );
    assert_eq!(
        seen.lines().count(),
        1,
        "writable or other cgroups visible: {seen}"
    );
    // pause and unpause through cgroup.freeze
    f.driver.pause(&id).unwrap_or_else(|e| panic!("pause: {e}"));
    assert_eq!(
        std::fs::read_to_string(cg_dir.join("cgroup.freeze"))
            .map(|s| s.trim().to_string())
            .ok(),
        Some("1".into())
    );
    assert!(matches!(
        f.driver.state(&id).map(|i| i.status),
        Ok(ContainerStatus::Paused { .. })
    ));
    f.driver
        .unpause(&id)
        .unwrap_or_else(|e| panic!("unpause: {e}"));
    assert!(matches!(
        f.driver.state(&id).map(|i| i.status),
        Ok(ContainerStatus::Running { .. })
    ));
    // stop: `sleep` as pid 1 ignores SIGTERM, so the grace period ends in SIGKILL
    let info = f
        .driver
        .stop(&id, Some(Duration::from_millis(300)))
        .unwrap_or_else(|e| panic!("stop: {e}"));
    assert_eq!(exited(&info.status, "v2box"), (137, Some(9), false));
    assert!(!cg_dir.exists(), "{} left behind", cg_dir.display());
    let s = f.spec("v2code");
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "echo on-v2; exit 3"]);
    assert_eq!(exited(&st, "v2code").0, 3);
    assert_eq!(log, "on-v2\n");
    println!("cgroup-v2-view: ok");
}

#[test]
fn containers_run_on_a_cgroup_v2_view() {
    if let Ok(unified) = std::env::var(HELPER_ENV) {
        return helper(&unified);
    }
    if !require_root(NAME) {
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = if cgroups::version() == CgroupVersion::V2 {
        Command::new(&exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, "/sys/fs/cgroup")
            .output()
    } else {
        let Some(unified) = cgroup2_mount() else {
            panic!(
                "no cgroup2 mount on this host: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) \
                 to test the v2 paths"
            );
        };
        Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(&exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, &unified)
            .output()
    }
    .unwrap_or_else(|e| panic!("run helper: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cgroup-v2-view: ok"), "{text}");
}
