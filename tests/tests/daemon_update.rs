//! In-place updates: a manifest edit that only changes live fields (resources, restart policy,
//! health check, stop settings) changes the running container without recreating or restarting
//! it, as `docker update` does. The cgroup files are read from the host, through the container's
//! own entry in `/proc/<pid>/cgroup`, so the test does not share the agent's path logic.

use std::path::PathBuf;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const MIB: u64 = 1 << 20;

fn manifest(resources: &str) -> String {
    container_manifest(
        "lim",
        "exec sleep 1000",
        &format!("  restart: always\n{resources}"),
    )
}

/// The init pid the exec driver recorded for runtime id `id`.
fn pid_of(d: &Daemon, id: &str) -> i32 {
    let path = d.state.join("exec").join(id).join("state.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    v["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {text}")) as i32
}

fn unified_only() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The cgroup directory of process `pid` for `controller` (v1) or the unified one (v2).
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if unified_only() {
            if ctrls.is_empty() {
                return PathBuf::from("/sys/fs/cgroup").join(path);
            }
        } else if ctrls.split(',').any(|c| c == controller) {
            return PathBuf::from("/sys/fs/cgroup").join(ctrls).join(path);
        }
    }
    panic!("no {controller} cgroup for pid {pid} in:\n{text}");
}

/// (memory limit, pids limit, CPU quota per 100 ms) of `pid`'s cgroup; `None` is unlimited.
fn limits(pid: i32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let read = |controller: &str, file: &str| {
        let p = cgroup_dir(pid, controller).join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    let num = |s: &str| s.parse::<i64>().ok().filter(|&n| n >= 0).map(|n| n as u64);
    if unified_only() {
        let cpu = read("cpu", "cpu.max");
        let quota = cpu.split_whitespace().next().unwrap_or("max");
        (
            num(&read("memory", "memory.max")),
            num(&read("pids", "pids.max")),
            num(quota),
        )
    } else {
        let mem = num(&read("memory", "memory.limit_in_bytes")).filter(|&m| m < 1 << 62);
        (
            mem,
            num(&read("pids", "pids.max")),
            num(&read("cpu", "cpu.cfs_quota_us")),
        )
    }
}

/// A daemon running container `lim` with `resources`; its runtime id and init pid.
fn start_lim(tag: &str, resources: &str) -> (Daemon, String, i32) {
    require_images();
    let mut d = Daemon::prepare(tag, "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("lim.yaml", &manifest(resources));
    let row = d.wait_for("lim running", Duration::from_secs(60), || {
        let r = d.ps_row("lim");
        (r["state"] == "running").then_some(r)
    });
    let id = row["id"].as_str().unwrap_or_default().to_string();
    let pid = pid_of(&d, &id);
    (d, id, pid)
}

#[test]
fn resource_edits_change_the_running_container_in_place() {
    if !require_root("resource_edits_change_the_running_container_in_place") {
        return;
    }
    let (d, id, pid) = start_lim(
        "update",
        "  resources: {memory: 64Mi, pids: 50, cpus: 0.5}\n",
    );
    assert_eq!(limits(pid), (Some(64 * MIB), Some(50), Some(50_000)));

    // Raise every limit: applied to the running cgroup, same container, same process.
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 128Mi, pids: 80, cpus: 1.5}\n"),
    );
    d.wait_for("new limits applied", Duration::from_secs(30), || {
        (limits(pid) == (Some(128 * MIB), Some(80), Some(150_000))).then_some(())
    });
    let update = d.wait_for("update event", Duration::from_secs(10), || {
        d.events_of("lim", "container.update").into_iter().next()
    });
    let reason = update["message"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("resources"), "{reason}");
    let row = d.ps_row("lim");
    assert_eq!(row["id"], id.as_str(), "recreated instead of updated");
    assert_eq!(row["restarts"], 0);
    assert_eq!(pid_of(&d, &id), pid, "restarted instead of updated");
    assert!(d.events_of("lim", "container.recreate").is_empty());

    // Lower them again, then drop them: dropped limits become unlimited, as at creation.
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 32Mi, pids: 20, cpus: 0.25}\n"),
    );
    d.wait_for("lowered limits applied", Duration::from_secs(30), || {
        (limits(pid) == (Some(32 * MIB), Some(20), Some(25_000))).then_some(())
    });
    d.write("lim.yaml", &manifest(""));
    d.wait_for("limits removed", Duration::from_secs(30), || {
        (limits(pid) == (None, None, None)).then_some(())
    });
    assert_eq!(pid_of(&d, &id), pid, "restarted instead of updated");

    // The update is recorded in the bundle: a restart keeps the latest limits.
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 48Mi, pids: 30}\n"),
    );
    d.wait_for("limits set again", Duration::from_secs(30), || {
        (limits(pid) == (Some(48 * MIB), Some(30), None)).then_some(())
    });
    d.cli_ok(&["stop", "lim"]);
    d.cli_ok(&["start", "lim"]);
    let pid2 = d.wait_for("lim running again", Duration::from_secs(30), || {
        let r = d.ps_row("lim");
        let p = pid_of(&d, &id);
        (r["state"] == "running" && p != pid).then_some(p)
    });
    assert_eq!(d.ps_row("lim")["id"], id.as_str());
    assert_eq!(limits(pid2), (Some(48 * MIB), Some(30), None));
}

#[test]
fn a_limit_the_kernel_refuses_keeps_the_container_and_is_reported() {
    if !require_root("a_limit_the_kernel_refuses_keeps_the_container_and_is_reported") {
        return;
    }
    let (d, id, pid) = start_lim("update-refused", "  resources: {memory: 64Mi, pids: 50}\n");

    // CPU 1000 does not exist: the kernel refuses the cpuset (on v1 and v2 alike). The other
    // limits of the same edit must not stay half-applied: the dropped pids limit (reset before
    // the new values are written) and the memory limit come back.
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 32Mi, cpuset: \"1000\"}\n"),
    );
    let failed = d.wait_for("update reported as failed", Duration::from_secs(30), || {
        d.events_of("lim", "change.failed").into_iter().next()
    });
    let error = failed["message"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cpuset"), "{error}");
    assert_eq!(d.ps_row("lim")["state"], "running");
    assert_eq!(pid_of(&d, &id), pid);
    // The failed update is retried on its object's backoff, and each try resets the limits
    // before writing them: wait for the restored values rather than read them once.
    d.wait_for("old limits restored", Duration::from_secs(10), || {
        (limits(pid) == (Some(64 * MIB), Some(50), None)).then_some(())
    });

    // Fixed: applied in place.
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 32Mi, pids: 40, cpuset: \"0\"}\n"),
    );
    d.wait_for("fixed limits applied", Duration::from_secs(30), || {
        (limits(pid) == (Some(32 * MIB), Some(40), None)).then_some(())
    });
    let cpus =
        std::fs::read_to_string(cgroup_dir(pid, "cpuset").join("cpuset.cpus")).unwrap_or_default();
    assert_eq!(cpus.trim(), "0");
    assert_eq!(pid_of(&d, &id), pid);
    assert_eq!(d.ps_row("lim")["restarts"], 0);

    // Dropping the cpuset gives the container every CPU its parent cgroup has again.
    let cpuset = cgroup_dir(pid, "cpuset");
    let parent_cpus = || {
        let p = cpuset
            .parent()
            .unwrap_or(&cpuset)
            .join("cpuset.cpus.effective");
        std::fs::read_to_string(&p)
            .or_else(|_| {
                std::fs::read_to_string(cpuset.parent().unwrap_or(&cpuset).join("cpuset.cpus"))
            })
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    d.write(
        "lim.yaml",
        &manifest("  resources: {memory: 32Mi, pids: 40}\n"),
    );
    d.wait_for("cpuset dropped", Duration::from_secs(30), || {
        let now = std::fs::read_to_string(cpuset.join("cpuset.cpus")).ok()?;
        let now = if now.trim().is_empty() {
            // v2: an empty set means the parent's.
            std::fs::read_to_string(cpuset.join("cpuset.cpus.effective")).ok()?
        } else {
            now
        };
        (now.trim() == parent_cpus()).then_some(())
    });
    assert_eq!(pid_of(&d, &id), pid);
}
