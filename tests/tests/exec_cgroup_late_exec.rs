//! End-to-end: deleting a container leaves no cgroup behind when an `agent exec` was starting as
//! the container ended (root).
//!
//! libcontainer's tenant (the exec'd process) checks that the container runs, then adds itself to
//! the container's cgroup, and on cgroup v1 makes the cgroup's directory in every hierarchy to do
//! so. An exec (a health check every second) that checked just before the init exited makes the
//! cgroup again after the monitor removed it; the exec then fails (the namespaces are gone) and
//! the empty cgroup stayed in every hierarchy once the container was deleted: seen after
//! `tests/tests/convert_compose_stack.rs` (`db` recreated and removed), about one run in eight.
//!
//! The first test plays the late exec with a process that announces itself as `agent exec` does
//! (`<dir>/exec-<pid>.json`) and a second later makes the container's cgroup directories, as
//! libcontainer's tenant does: the delete must wait for it and then remove them. The second
//! runs real `agent exec`s into a container that is killed and deleted meanwhile.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent::driver::exec::paths;
use agent_e2e::exec::{Fixture, require_root};
use agent_e2e::graph::agent_bin;

/// The container's cgroup directories that exist now: every hierarchy under /sys/fs/cgroup.
fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    roots
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

#[test]
fn delete_waits_for_a_late_exec_and_removes_the_cgroup_it_made_again() {
    if !require_root("delete_waits_for_a_late_exec_and_removes_the_cgroup_it_made_again") {
        return;
    }
    let mut f = Fixture::new("late-exec");
    let mut s = f.spec("late");
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);
    let dir = f.dir(&id);
    let cg = paths::cgroups_path_of(&dir).unwrap_or_else(|e| panic!("cgroups path: {e}"));
    assert!(
        cg.starts_with(&f.cgroup_parent),
        "{cg} is under the test's parent {} (removed in Drop)",
        f.cgroup_parent
    );
    let dirs = cgroup_dirs(&cg);
    assert!(!dirs.is_empty(), "the running container has no cgroup {cg}");

    // The late exec: announced now, makes the cgroup again after the container is gone.
    let mut late = Command::new("/bin/sh")
        .arg("-c")
        .arg("sleep 1; for d in \"$@\"; do mkdir -p \"$d\"; done; rm -f \"$MARK/exec-$$.json\"")
        .arg("late-exec")
        .args(&dirs)
        .env("MARK", &dir)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the late exec: {e}"));
    std::fs::write(dir.join(format!("exec-{}.json", late.id())), b"")
        .unwrap_or_else(|e| panic!("announce the late exec: {e}"));

    f.kill_and_delete(&id);
    let status = late.wait().unwrap_or_else(|e| panic!("late exec: {e}"));
    assert!(status.success(), "the late exec failed: {status}");

    assert!(!dir.exists(), "{} is left", dir.display());
    let left: Vec<PathBuf> = dirs.into_iter().filter(|d| Path::new(d).exists()).collect();
    assert!(
        left.is_empty(),
        "cgroup directories left after the delete: {left:?}"
    );
}

#[test]
fn deleting_a_container_during_execs_leaves_no_cgroup() {
    if !require_root("deleting_a_container_during_execs_leaves_no_cgroup") {
        return;
    }
    let mut f = Fixture::new("exec-race");
    let mut left = Vec::new();
    for round in 0..8u64 {
        let mut s = f.spec(&format!("race{round}"));
        s.command = Some(vec!["sleep".into(), "1000".into()]);
        let id = f.run(&s);
        let cg = paths::cgroups_path_of(&f.dir(&id)).unwrap_or_else(|e| panic!("{e}"));
        let dirs = cgroup_dirs(&cg);
        let execs: Vec<_> = (0..6)
            .map(|_| {
                Command::new(agent_bin())
                    .arg("exec")
                    .arg("--state-dir")
                    .arg(&f.state)
                    .args([id.as_str(), "--", "true"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("spawn agent exec: {e}"))
            })
            .collect();
        // Different moments of the execs' start (not a timed assertion: any moment must do).
        std::thread::sleep(Duration::from_millis(5 * (round % 5)));
        f.kill_and_delete(&id);
        for mut e in execs {
            let _ = e.wait();
        }
        left.extend(dirs.into_iter().filter(|d| d.exists()));
    }
    assert!(left.is_empty(), "cgroup directories left: {left:?}");
}
