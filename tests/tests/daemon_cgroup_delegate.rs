//! Under systemd with `Delegate=yes` (packaging/agent.service) the containers' cgroups live
//! inside the unit's cgroup (driver/exec/delegate.rs).
//!
//! cgroup v2: the agent moves itself into the leaf `<unit>/agent` and creates the containers
//! below `<unit>/containers`. This host is hybrid (v1 controllers, a cgroup2 mount beside them),
//! so the agent runs in a private mount namespace with that cgroup2 mount bound over
//! `/sys/fs/cgroup` (as exec_cgroup_v2.rs does), so that it sees a v2-only host, and is started
//! in a cgroup this test made and marked as delegated the way systemd marks a unit's cgroup
//! (`trusted.delegate=1`), standing in for `/system.slice/agent.service`. On a v2-only host it
//! runs directly. The cgroup2 mount here offers the `hugetlb` controller, which libcontainer
//! enables on its way down to the container's cgroup: that fails while a process lives in the
//! unit's cgroup itself, so the container only starts if the agent left it first.
//!
//! cgroup v1 / hybrid: systemd puts the unit's processes into `<unit>` of its own hierarchy (the
//! unified one on a hybrid host, marked there) and of the v1 controller hierarchies it manages;
//! the containers' v1 cgroups go to `<unit>/containers/<id>`. The stand-in: the same cgroup in
//! the unified hierarchy (marked), `name=systemd` and systemd's controllers (cpu, cpuacct, blkio,
//! memory, devices, pids). On a v2-only host there are no v1 hierarchies and that test says so
//! and checks nothing.

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

/// Every cgroup hierarchy's mount point (v1 and v2).
fn cgroup_roots() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f.get(2), Some(&"cgroup") | Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The test's stand-in for a unit's cgroup `rel` (`/agent-e2e-unit-<pid>-<tag>.service`), made
/// in the hierarchies given and marked as delegated in one of them. Dropping it kills whatever
/// is left below `rel` in any hierarchy and removes those cgroups (libcontainer makes the
/// containers' ones in every v1 hierarchy, also those the test did not make `rel` in).
struct UnitCgroup {
    rel: String,
}

impl UnitCgroup {
    /// Makes `rel` under each of `roots` and marks it `trusted.delegate=1` under `marked`.
    fn create(rel: &str, roots: &[PathBuf], marked: &Path) -> UnitCgroup {
        let unit = UnitCgroup {
            rel: rel.to_string(),
        };
        for r in roots {
            let dir = unit.dir(r);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        let dir = unit.dir(marked);
        let path = std::ffi::CString::new(dir.to_string_lossy().as_bytes())
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
            dir.display(),
            std::io::Error::last_os_error()
        );
        unit
    }

    /// `rel` under hierarchy `root`.
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.rel.trim_start_matches('/'))
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
        let dirs: Vec<PathBuf> = cgroup_roots()
            .iter()
            .map(|r| self.dir(r))
            .filter(|d| d.is_dir())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids: Vec<i32> = dirs.iter().flat_map(|d| UnitCgroup::pids(d)).collect();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for d in &dirs {
                if d.join("freezer.state").is_file() {
                    let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                }
            }
            for p in pids {
                // SAFETY: kill(2) of a process inside this test's own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in &dirs {
            UnitCgroup::remove(d);
            if d.exists() {
                eprintln!("leftover cgroup {}", d.display());
            }
        }
    }
}

/// The cgroup of `pid` in the hierarchy of /proc/PID/cgroup's line `prefix` (`0::`,
/// `4:memory:`); the hierarchy number is ignored.
fn cgroup_in(pid: i32, controllers: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let _n = f.next()?;
            (f.next()? == controllers).then(|| f.next().map(str::to_string))?
        })
        .unwrap_or_default()
}

/// A daemon on a cgroup v2 view of the host, started in cgroup `start_in`: the stand-in unit
/// cgroup itself, or its leaf `agent` as `DelegateSubgroup=agent` does.
fn v2_daemon(tag: &str, mount: &Path, start_in: &str) -> Daemon {
    let mut d = Daemon::prepare(tag, "");
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
        format!(
            "{bind}mkdir -p /sys/fs/cgroup{start_in} && \
             echo $$ > /sys/fs/cgroup{start_in}/cgroup.procs && exec \"$@\""
        ),
        "sh".into(),
    ];
    d
}

/// systemd 254+ with `DelegateSubgroup=agent` starts the agent in `<unit>/agent`: the
/// containers go below `<unit>/containers`, and what an earlier version left in `<unit>` itself
/// moves into the leaf (else libcontainer could not enable the controllers for the containers).
#[test]
fn containers_live_below_the_delegated_unit_cgroup_on_cgroup_v2() {
    if !require_root("containers_live_below_the_delegated_unit_cgroup_on_cgroup_v2") {
        return;
    }
    require_images();
    let mount = cgroup2_mount().unwrap_or_else(|| panic!("no cgroup2 mount on this host"));
    let rel = format!("/agent-e2e-unit-{}-v2.service", std::process::id());
    // Declared before the daemon: dropped after it (the agent and its monitors gone first).
    let unit = UnitCgroup::create(&rel, std::slice::from_ref(&mount), &mount);
    // A process left in the unit's cgroup (a monitor of an earlier version).
    let mut stray = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap_or_else(|e| panic!("sleep: {e}"));
    std::fs::write(
        unit.dir(&mount).join("cgroup.procs"),
        stray.id().to_string(),
    )
    .unwrap_or_else(|e| panic!("moving sleep into {rel}: {e}"));
    let mut d = v2_daemon("cgdeleg", &mount, &format!("{rel}/agent"));
    d.start();
    let agent = d.pid().unwrap_or_else(|| panic!("no agent")) as i32;
    assert_eq!(
        cgroup_in(agent, ""),
        format!("{rel}/agent"),
        "the agent is not in its unit's leaf:\n{}",
        d.log_tail()
    );
    assert_eq!(
        cgroup_in(stray.id() as i32, ""),
        format!("{rel}/agent"),
        "the process left in the unit's cgroup was not moved into the leaf"
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
    assert_eq!(cgroup_in(pid, ""), format!("{rel}/containers/{id}"));
    for m in d.monitor_pids() {
        assert_eq!(cgroup_in(m, ""), format!("{rel}/agent"), "monitor {m}");
    }
    // Nothing left in the unit's cgroup itself.
    let procs = std::fs::read_to_string(unit.dir(&mount).join("cgroup.procs")).unwrap_or_default();
    assert!(procs.trim().is_empty(), "processes in {rel}: {procs}");
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
    let _ = stray.kill();
    let _ = stray.wait();
}

/// systemd before 254 ignores `DelegateSubgroup=` and starts the agent in `<unit>` itself,
/// and so every later start: the agent must leave the unit's `cgroup.subtree_control` empty
/// (containers below `/agent`), else the next start of the unit (a restart, an upgrade) fails
/// with EBUSY while containers run.
#[test]
fn started_in_the_unit_cgroup_itself_containers_stay_outside_on_cgroup_v2() {
    if !require_root("started_in_the_unit_cgroup_itself_containers_stay_outside_on_cgroup_v2") {
        return;
    }
    require_images();
    let mount = cgroup2_mount().unwrap_or_else(|| panic!("no cgroup2 mount on this host"));
    let rel = format!("/agent-e2e-unit-{}-v2old.service", std::process::id());
    let unit = UnitCgroup::create(&rel, std::slice::from_ref(&mount), &mount);
    let mut d = v2_daemon("cgdeleg0", &mount, &rel);
    d.start();
    let agent = d.pid().unwrap_or_else(|| panic!("no agent")) as i32;
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c.yaml", &container_manifest("c", "exec sleep 1000", ""));
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.try_ps_row("c")?["state"] == "running").then_some(())
    });
    let id = d.ps_row("c")["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        d.container_cgroups(),
        vec![format!("/agent/{id}")],
        "cgroupsPath of the bundle"
    );
    assert_eq!(
        cgroup_in(agent, ""),
        rel,
        "the agent left the unit's cgroup"
    );
    let control = std::fs::read_to_string(unit.dir(&mount).join("cgroup.subtree_control"))
        .unwrap_or_default();
    assert_eq!(
        control.trim(),
        "",
        "controllers enabled in {rel}: its next start would fail"
    );
    // What systemd does at the next start: put a new process into the unit's cgroup.
    let mut next = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap_or_else(|e| panic!("sleep: {e}"));
    let attach = std::fs::write(unit.dir(&mount).join("cgroup.procs"), next.id().to_string());
    let _ = next.kill();
    let _ = next.wait();
    assert!(
        attach.is_ok(),
        "a new process cannot join {rel}: {attach:?}"
    );
    assert!(
        d.log_tail().contains("outside the unit's delegated cgroup"),
        "no warning:\n{}",
        d.log_tail()
    );
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
}

/// Systemd's controllers in cgroup v1 (those a unit with `Delegate=yes` gets a cgroup in).
const SYSTEMD_V1: &[&str] = &["cpu", "cpuacct", "blkio", "memory", "devices", "pids"];

#[test]
fn containers_live_below_the_delegated_unit_cgroup_on_cgroup_v1_hybrid() {
    if !require_root("containers_live_below_the_delegated_unit_cgroup_on_cgroup_v1_hybrid") {
        return;
    }
    require_images();
    let base = Path::new("/sys/fs/cgroup");
    let unified = base.join("unified");
    let systemd = base.join("systemd");
    if !systemd.join("cgroup.procs").is_file() || !unified.join("cgroup.procs").is_file() {
        eprintln!(
            "not a cgroup v1 hybrid host (no {} and {}): nothing to check",
            systemd.display(),
            unified.display()
        );
        return;
    }
    let rel = format!("/agent-e2e-unit-{}-v1.service", std::process::id());
    let mut roots = vec![unified.clone(), systemd.clone()];
    roots.extend(
        SYSTEMD_V1
            .iter()
            .map(|c| base.join(c))
            .filter(|d| d.join("cgroup.procs").is_file()),
    );
    // Declared before the daemon: dropped after it (the agent and its monitors gone first).
    let unit = UnitCgroup::create(&rel, &roots, &unified);
    let mut d = Daemon::prepare("cgdeleg1", "");
    let enter: Vec<String> = roots
        .iter()
        .map(|r| format!("echo $$ > {}/cgroup.procs && ", unit.dir(r).display()))
        .collect();
    d.wrapper = vec![
        "sh".into(),
        "-c".into(),
        format!("{}exec \"$@\"", enter.concat()),
        "sh".into(),
    ];
    d.start();
    let agent = d.pid().unwrap_or_else(|| panic!("no agent")) as i32;
    // Nothing to move on v1: the agent stays where systemd put it.
    assert_eq!(cgroup_in(agent, ""), rel, "{}", d.log_tail());

    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c.yaml", &container_manifest("c", "exec sleep 1000", ""));
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.try_ps_row("c")?["state"] == "running").then_some(())
    });
    let id = d.ps_row("c")["id"].as_str().unwrap_or_default().to_string();
    let want = format!("{rel}/containers/{id}");
    assert_eq!(
        d.container_cgroups(),
        vec![want.clone()],
        "cgroupsPath of the bundle:\n{}",
        d.log_tail()
    );
    let state = std::fs::read_to_string(d.state.join("exec").join(&id).join("state.json"))
        .unwrap_or_default();
    let st: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
    let pid = st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {state}")) as i32;
    for c in SYSTEMD_V1 {
        assert_eq!(cgroup_in(pid, c), want, "the container's {c} cgroup");
    }
    for m in d.monitor_pids() {
        assert_eq!(cgroup_in(m, "memory"), rel, "monitor {m}");
    }
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
    drop(unit);
}
