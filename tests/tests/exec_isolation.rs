//! End-to-end: what a default container cannot do to its host (root). Each case ran on the code
//! before its fix and got through (issue 15): ids that mean "unchanged" to setresuid, writable
//! cgroup files, `capAdd: [ALL]` beyond the agent's bounding set, writable submounts under a
//! read-only bind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent::driver::exec::spec::{Mount, MountSource};
use agent_e2e::exec::{Fixture, exited, require_root};

/// The create error of `spec`, panicking when the driver accepts it.
fn create_err(f: &Fixture, spec: &agent::driver::exec::spec::ContainerSpec) -> String {
    match f.driver.create(spec) {
        Ok(()) => panic!("{}: created, want a refusal", spec.name),
        Err(e) => e.to_string(),
    }
}

/// `(uid_t)-1` is "leave unchanged" to setresuid: a user 4294967295 ran as root. Ids above
/// 2147483647 are refused from the manifest's `user` (see tests/bad/65-*), the image's `User`, a
/// passwd entry inside the image, and `agent exec -u`.
#[test]
fn user_ids_above_2147483647_are_refused() {
    if !require_root("user_ids_above_2147483647_are_refused") {
        return;
    }
    let mut f = Fixture::new("bigid");
    let rule = "0-2147483647";

    let mut s = f.spec("spec-user");
    s.user = Some("4294967295".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("4294967295"), "{e}");
    s.user = Some("0:4294967295".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule), "{e}");

    let mut s = f.spec("image-user");
    if let Some(c) = s.image.as_mut() {
        c.set_user(Some("4294967295".into()));
    }
    let e = create_err(&f, &s);
    assert!(e.contains(rule), "{e}");

    let mut s = f.spec("passwd-user");
    let passwd = s.rootfs.join("etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap_or_default();
    text.push_str("evil:x:4294967295:0:evil:/:/bin/sh\nevilgrp:x:1000:4294967295::/:/bin/sh\n");
    std::fs::write(&passwd, &text).unwrap_or_else(|e| panic!("{}: {e}", passwd.display()));
    s.user = Some("evil".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("uid 4294967295"), "{e}");
    s.user = Some("evilgrp".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("gid 4294967295"), "{e}");

    // agent exec -u, into a running container whose image has the same passwd entry
    let mut s = f.spec("box");
    let passwd = s.rootfs.join("etc/passwd");
    std::fs::write(&passwd, &text).unwrap_or_else(|e| panic!("{}: {e}", passwd.display()));
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    f.run(&s);
    for user in ["4294967295", "evil", "1000:4294967295", "99999999999"] {
        let out = f.agent(&["exec", "-u", user, "box", "--", "id", "-u"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty() && stderr.contains(rule),
            "exec -u {user}: {:?} stdout {:?} stderr {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // the largest id is still fine
    let out = f.agent(&["exec", "-u", "2147483647", "box", "--", "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2147483647\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `/bin/sh -c script` in container `name` through `agent exec`: (exit code, stdout,
/// stderr).
fn sh(f: &Fixture, name: &str, script: &str) -> (Option<i32>, String, String) {
    let out = f.agent(&["exec", name, "--", "/bin/sh", "-c", script]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The container's cgroup directory in the host's v1 `controller` hierarchy.
fn host_cgroup(f: &Fixture, controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(f.cgroup_parent.trim_start_matches('/'))
        .join(id)
}

/// The mounts a process sees, from its mountinfo: (mount point, per-mount options). A later
/// mount at or above a path hides what was mounted there before.
fn visible_mounts(mountinfo: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(point), Some(opts)) = (f.get(4), f.get(5)) else {
            continue;
        };
        out.retain(|(p, _)| !Path::new(p).starts_with(point));
        out.push((point.to_string(), opts.to_string()));
    }
    out
}

/// Waits up to 10 s until the monitor of `id` has exited: it records the exit before it lets go
/// of its lock, and a start before that finds the lock taken ("already running").
fn wait_monitor_gone(f: &Fixture, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while agent::driver::exec::monitor::monitor_alive(&f.dir(id)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor of {id} lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_cgroup_v2_only() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// On cgroup v1, libcontainer's own cgroup mount bound every hierarchy read-write (and
/// `name=systemd` at the host's root): `echo -1 > memory.limit_in_bytes` lifted the limit. A
/// default container now sees read-only binds of its own cgroups only; a child cgroup (which it
/// can no longer make) is removed recursively on the next start and on delete.
#[test]
fn cgroup_files_are_read_only_and_show_only_the_container() {
    if !require_root("cgroup_files_are_read_only_and_show_only_the_container") {
        return;
    }
    if is_cgroup_v2_only() {
        eprintln!("skipped: a cgroup v1 test (the v2 mounts are checked by exec_cgroup_v2.rs)");
        return;
    }
    let mut f = Fixture::new("cgro");
    let mut s = f.spec("cg");
    s.resources.memory = Some(32 << 20);
    s.resources.pids = Some(50);
    s.resources.cpu_quota = Some(50_000);
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);

    // the container's own limits are what it sees
    let (_, limit, err) = sh(&f, "cg", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(limit, "33554432\n", "{err}");
    // and it cannot change them
    // (values the kernel would take: memory stays below memory+swap, 64 MiB)
    for (file, value, want) in [
        ("memory/memory.limit_in_bytes", "41943040", "33554432"),
        ("pids/pids.max", "max", "50"),
        ("cpu/cpu.cfs_quota_us", "-1", "50000"),
    ] {
        let (code, out, err) = sh(&f, "cg", &format!("echo {value} > /sys/fs/cgroup/{file}"));
        assert_ne!(code, Some(0), "writing {file} succeeded: {out}{err}");
        let (controller, name) = file.split_once('/').unwrap_or_default();
        let host = host_cgroup(&f, controller, &id).join(name);
        let value = std::fs::read_to_string(&host).unwrap_or_default();
        assert_eq!(value.trim(), want, "{}", host.display());
    }
    // no cgroup directory of anyone else, no named or unified hierarchy, no release_agent
    let (_, dirs, err) = sh(&f, "cg", "find /sys/fs/cgroup/ -mindepth 2 -type d");
    assert_eq!(dirs, "", "{err}");
    let (_, top, _) = sh(&f, "cg", "ls /sys/fs/cgroup");
    assert!(top.contains("memory") && top.contains("devices"), "{top}");
    assert!(
        !top.contains("systemd") && !top.contains("unified"),
        "{top}"
    );
    let (_, ra, _) = sh(&f, "cg", "find /sys/fs/cgroup/ -name release_agent");
    assert_eq!(ra, "");
    // every mount at or below /sys/fs/cgroup that the container can see is read-only (the
    // read-only bind of the tmpfs covers the tmpfs and the binds made in it)
    let (_, mi, _) = sh(&f, "cg", "cat /proc/self/mountinfo");
    let visible = visible_mounts(&mi);
    let cg_mounts: Vec<&(String, String)> = visible
        .iter()
        .filter(|(p, _)| p.starts_with("/sys/fs/cgroup"))
        .collect();
    assert!(cg_mounts.len() > 3, "{mi}");
    for (p, opts) in &cg_mounts {
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "{p} is writable: {opts}\n{mi}"
        );
    }
    // no child cgroups from inside
    let (code, _, _) = sh(&f, "cg", "mkdir /sys/fs/cgroup/devices/x");
    assert_ne!(code, Some(0), "mkdir of a child cgroup succeeded");
    assert!(!host_cgroup(&f, "devices", &id).join("x").exists());

    // A child cgroup made from outside (as a container given SYS_ADMIN could): the next start
    // works and delete removes it, in every hierarchy.
    for c in ["devices", "memory"] {
        let child = host_cgroup(&f, c, &id).join("x/y");
        std::fs::create_dir_all(&child).unwrap_or_else(|e| panic!("{}: {e}", child.display()));
    }
    f.driver
        .kill(&id, libc::SIGKILL)
        .unwrap_or_else(|e| panic!("kill: {e}"));
    f.wait_exit(&id, Duration::from_secs(10));
    wait_monitor_gone(&f, &id);
    f.driver
        .start(&id)
        .unwrap_or_else(|e| panic!("start after a child cgroup was left: {e}"));
    let (_, limit, err) = sh(&f, "cg", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(limit, "33554432\n", "{err}");
    let child = host_cgroup(&f, "devices", &id).join("x/y");
    std::fs::create_dir_all(&child).unwrap_or_else(|e| panic!("{}: {e}", child.display()));
    f.kill_and_delete(&id);
    for c in ["devices", "memory", "pids", "cpu"] {
        let d = host_cgroup(&f, c, &id);
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// The `CapBnd:` bits of a `/proc/<pid>/status` text.
fn cap_bounding(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// `capAdd: [ALL]` asked for capabilities the agent itself lacks (here SYS_RESOURCE) and failed
/// with `capset: Operation not permitted`; ALL is now the agent's own bounding set.
#[test]
fn cap_add_all_is_the_agents_bounding_set() {
    if !require_root("cap_add_all_is_the_agents_bounding_set") {
        return;
    }
    let ours = cap_bounding(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
        .unwrap_or_else(|| panic!("no CapBnd in /proc/self/status"));
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let full = (1u64 << (last_cap + 1)) - 1;
    if ours & full == full {
        eprintln!("note: this process has every capability; the test shows only that ALL works");
    }
    let mut f = Fixture::new("capall");
    let mut s = f.spec("all");
    s.cap_add = vec!["ALL".into()];
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "grep CapBnd /proc/self/status"]);
    assert_eq!(exited(&st, "all"), (0, None, false), "{log}");
    assert_eq!(cap_bounding(&log), Some(ours & full), "{log}");
}

/// A tmpfs mounted on the host below a test's bind source; unmounted (lazily) and removed in
/// `Drop`, even when the test fails.
struct HostSubmount {
    dir: PathBuf,
    sub: PathBuf,
}

impl HostSubmount {
    fn new(test: &str) -> HostSubmount {
        let dir = PathBuf::from(format!("/tmp/agent-{test}-{}", std::process::id()));
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
        let guard = HostSubmount { dir, sub };
        nix::mount::mount(
            Some("tmpfs"),
            &guard.sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", guard.sub.display()));
        guard
    }
}

impl Drop for HostSubmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.sub, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `readOnly: true` made only the top of a bind read-only: a mount below the source stayed
/// writable from inside. Read-only binds are now read-only recursively (`rro`).
#[test]
fn read_only_binds_are_read_only_recursively() {
    if !require_root("read_only_binds_are_read_only_recursively") {
        return;
    }
    let host = HostSubmount::new("rro");
    let mut f = Fixture::new("rro");
    let mut s = f.spec("rro");
    s.mounts = vec![Mount {
        target: "/conf".into(),
        source: MountSource::Bind {
            path: host.dir.clone(),
        },
        read_only: true,
    }];
    let (st, log) = f.run_to_end(
        s,
        &[
            "/bin/sh",
            "-c",
            "echo x > /conf/top && echo wrote-top; echo x > /conf/sub/f && echo wrote-sub; \
             grep ' /conf' /proc/self/mountinfo; exit 0",
        ],
    );
    assert_eq!(exited(&st, "rro").0, 0, "{log}");
    assert!(!log.contains("wrote-top"), "{log}");
    assert!(
        !log.contains("wrote-sub"),
        "the submount is writable: {log}"
    );
    assert!(!host.sub.join("f").exists());
    let mounts: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|p| p.starts_with("/conf"))
        })
        .collect();
    assert_eq!(mounts.len(), 2, "{log}");
    for l in mounts {
        let opts = l.split_whitespace().nth(5).unwrap_or("");
        assert!(opts.split(',').any(|o| o == "ro"), "writable: {l}");
    }
}

/// `network: host` binds the host's `/sys` (sysfs of another network namespace cannot be
/// mounted): read-only recursively, so no mount below it (debugfs, bpf, securityfs) is writable,
/// and the cgroup tmpfs over it still shows only the container's own cgroups.
#[test]
fn host_network_sys_is_read_only_recursively() {
    if !require_root("host_network_sys_is_read_only_recursively") {
        return;
    }
    let mut f = Fixture::new("hostsys");
    let mut s = f.spec("hostsys");
    s.network = agent::driver::exec::spec::NetworkMode::Host;
    let (st, log) = f.run_to_end(s, &["cat", "/proc/self/mountinfo"]);
    assert_eq!(exited(&st, "hostsys").0, 0, "{log}");
    let visible = visible_mounts(&log);
    let sys: Vec<&(String, String)> = visible
        .iter()
        .filter(|(p, _)| p == "/sys" || p.starts_with("/sys/"))
        .collect();
    assert!(!sys.is_empty(), "{log}");
    for (p, opts) in sys {
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "{p} is writable: {opts}\n{log}"
        );
    }
    assert!(
        !visible.iter().any(|(p, _)| p == "/sys/fs/cgroup/systemd"),
        "{log}"
    );
}
