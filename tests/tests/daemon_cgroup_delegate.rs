//! Under systemd with `Delegate=yes` on cgroup v2 (packaging/agent.service), the agent moves
//! itself into the leaf `<unit>/agent` of its unit's cgroup and creates the containers' cgroups
//! below `<unit>/containers` (driver/exec/delegate.rs).
//!
//! This host is hybrid (v1 controllers, a cgroup2 mount beside them). The agent runs in a
//! private mount namespace with that cgroup2 mount bound over `/sys/fs/cgroup` (as
//! exec_cgroup_v2.rs does), so that it sees a v2-only host, and is started in a cgroup this test
//! made and marked as delegated the way systemd marks a unit's cgroup (`trusted.delegate=1`),
//! standing in for `/system.slice/agent.service`. On a v2-only host it runs directly. The
//! cgroup2 mount here offers the `hugetlb` controller, which libcontainer enables on its way
//! down to the container's cgroup: that fails while a process lives in the unit's cgroup
//! itself, so the container only starts if the agent left it first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

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

/// The test's stand-in for a unit's cgroup. Dropping it kills whatever is left in it and
/// removes it with its children.
struct UnitCgroup {
    dir: PathBuf,
}

impl UnitCgroup {
    fn create(dir: PathBuf) -> UnitCgroup {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let unit = UnitCgroup { dir };
        let path = std::ffi::CString::new(unit.dir.to_string_lossy().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: NUL-terminated strings and a 1-byte value, all alive across the call.
        let r = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"trusted.delegate".as_ptr(),
                b"1".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(
            r,
            0,
            "setxattr trusted.delegate on {}: {}",
            unit.dir.display(),
            std::io::Error::last_os_error()
        );
        unit
    }

    fn pids(dir: &Path) -> Vec<i32> {
        let mut out: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(UnitCgroup::pids(&e.path()));
            }
        }
        out
    }

    fn remove(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                UnitCgroup::remove(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = UnitCgroup::pids(&self.dir);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) of a process inside this test's own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        UnitCgroup::remove(&self.dir);
        if self.dir.exists() {
            eprintln!("leftover cgroup {}", self.dir.display());
        }
    }
}

/// The cgroup v2 path of `pid` (`0::` line).
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn containers_live_below_the_delegated_unit_cgroup() {
    if !require_root("containers_live_below_the_delegated_unit_cgroup") {
        return;
    }
    require_images();
    let mount = cgroup2_mount().unwrap_or_else(|| panic!("no cgroup2 mount on this host"));
    let rel = format!("/agent-e2e-unit-{}.service", std::process::id());
    // Declared before the daemon: dropped after it (the agent and its monitors gone first).
    let unit = UnitCgroup::create(mount.join(rel.trim_start_matches('/')));
    let mut d = Daemon::prepare("cgdeleg", "");
    let bind = if mount == Path::new("/sys/fs/cgroup") {
        String::new()
    } else {
        format!("mount --bind {} /sys/fs/cgroup && ", mount.display())
    };
    d.wrapper = vec![
        "unshare".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        format!("{bind}echo $$ > /sys/fs/cgroup{rel}/cgroup.procs && exec \"$@\""),
        "sh".into(),
    ];
    d.start();
    let agent = d.pid().unwrap_or_else(|| panic!("no agent")) as i32;
    assert_eq!(
        cgroup_of(agent),
        format!("{rel}/agent"),
        "the agent is not in its unit's leaf:\n{}",
        d.log_tail()
    );

    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c.yaml", &container_manifest("c", "exec sleep 1000", ""));
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.try_ps_row("c")?["state"] == "running").then_some(())
    });
    let id = d.ps_row("c")["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        d.container_cgroups(),
        vec![format!("{rel}/containers/{id}")],
        "cgroupsPath of the bundle"
    );
    let state = std::fs::read_to_string(d.state.join("exec").join(&id).join("state.json"))
        .unwrap_or_default();
    let st: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
    let pid = st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {state}")) as i32;
    assert_eq!(cgroup_of(pid), format!("{rel}/containers/{id}"));
    for m in d.monitor_pids() {
        assert_eq!(cgroup_of(m), format!("{rel}/agent"), "monitor {m}");
    }
    // Nothing left in the unit's cgroup itself.
    let procs = std::fs::read_to_string(unit.dir.join("cgroup.procs")).unwrap_or_default();
    assert!(procs.trim().is_empty(), "processes in {rel}: {procs}");
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
}
