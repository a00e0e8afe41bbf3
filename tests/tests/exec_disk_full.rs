//! A full disk under running containers (root): the monitors survive it.
//!
//! The containers' directories (`<state>/exec`: logs, `state.json`, the monitor's files) are a
//! small tmpfs of the test's own, mounted over the fixture's `exec` directory and unmounted in
//! `Drop`. Two containers print a numbered 1 KiB line every 20 ms. The test fills the tmpfs and checks
//! that:
//! - both monitors live on while their log writes fail (the old monitor panicked in an
//!   `eprintln!` at the first failed write and left its container unmonitored);
//! - once space is freed, logging resumes with a record `agent: N log lines dropped (No space left
//!   on device ...)` followed by new lines;
//! - with the disk full again, a container's exit (code 7 from a TERM trap) is recorded at once
//!   from the space its monitor reserved;
//! - when that reserve is gone too and the record cannot be written, the monitor keeps its
//!   container's exit and retries: the exit is recorded once the write can succeed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::driver::exec::monitor::monitor_alive;
use agent::driver::exec::state::{ContainerState, RESERVE_FILE, Status};
use agent::driver::exec::{ContainerStatus, ExecDriver, paths};
use agent_e2e::exec::{Fixture, exited, require_root};

/// A numbered line of ~1 KiB every 20 ms (long lines use up the slack of the log file's last
/// page at once, so records are really dropped while the disk is full); TERM ends it with 7.
const CHATTY: &str = "trap 'echo bye; exit 7' TERM; pad=$(printf '%01000d' 0); i=0; \
                      while :; do echo \"line $i $pad\"; i=$((i+1)); sleep 0.02; done";

/// The tmpfs over `<state>/exec`; `Drop` unmounts it (after the fixture's own `Drop` killed and
/// deleted the containers) and removes the fixture's state directory.
struct Tmpfs {
    mnt: PathBuf,
    state: PathBuf,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut ok = false;
        for _ in 0..50 {
            ok = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !ok {
            eprintln!("{}: busy, unmounting lazily", self.mnt.display());
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Fields drop in order: space freed (`Drop` of `World`), containers gone (`fx`), then the tmpfs.
struct World {
    fx: Fixture,
    tmpfs: Tmpfs,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(filler(&self.tmpfs.mnt));
    }
}

fn filler(mnt: &Path) -> PathBuf {
    mnt.join("filler")
}

/// Fills the tmpfs to the last byte (appending to the filler file until ENOSPC).
fn fill(mnt: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler(mnt))
        .unwrap_or_else(|e| panic!("filler: {e}"));
    let block = vec![0u8; 64 * 1024];
    let mut chunk = block.len();
    loop {
        match f.write(&block[..chunk]) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if chunk == 1 {
                    break;
                }
                chunk = (chunk / 2).max(1);
            }
            Err(e) => panic!("filling {}: {e}", mnt.display()),
        }
    }
}

fn free(mnt: &Path) {
    std::fs::remove_file(filler(mnt)).unwrap_or_else(|e| panic!("remove filler: {e}"));
}

fn pid_of(w: &World, id: &str) -> i32 {
    match w.fx.driver.state(id).map(|i| i.status) {
        Ok(ContainerStatus::Running { pid, .. }) => pid,
        other => panic!("{id} is not running: {other:?}"),
    }
}

/// Waits until the driver reports `id` exited (not "unknown": the monitor has not recorded it).
fn wait_exited(w: &World, id: &str, timeout: Duration) -> ContainerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status =
            w.fx.driver
                .state(id)
                .map(|i| i.status)
                .unwrap_or_else(|e| panic!("state {id}: {e}"));
        if matches!(status, ContainerStatus::Exited { .. }) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not recorded exited after {timeout:?}: {status:?}\nmonitor log: {}",
            monitor_log(w, id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid, 0) != 0 }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn monitor_log(w: &World, id: &str) -> String {
    std::fs::read_to_string(w.fx.dir(id).join("monitor.log")).unwrap_or_default()
}

/// Checks that the monitor of `id` is alive and did not panic.
fn monitored(w: &World, id: &str) {
    let mlog = monitor_log(w, id);
    assert!(
        !mlog.contains("panicked"),
        "monitor of {id} panicked:\n{mlog}"
    );
    match w.fx.driver.state(id).map(|i| i.status) {
        Ok(ContainerStatus::Running {
            monitored: true, ..
        }) => {}
        other => panic!("{id} is not running under its monitor: {other:?}\n{mlog}"),
    }
}

/// The `N` of `agent: N log lines dropped (...)` in the log of `id`, and the line after it.
fn dropped_marker(w: &World, id: &str) -> Option<(u64, String)> {
    let dir = paths::container_dir(&w.fx.state, id);
    let recs = agent::driver::exec::logs::read(&dir, &Default::default()).ok()?;
    let at = recs.iter().position(|r| r.log.starts_with("agent: "))?;
    let n = recs[at]
        .log
        .strip_prefix("agent: ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    assert!(
        recs[at]
            .log
            .contains("log lines dropped (No space left on device"),
        "{:?}",
        recs[at]
    );
    Some((n, recs.get(at + 1)?.log.clone()))
}

#[test]
fn monitors_survive_a_full_disk_and_record_the_exit() {
    if !require_root("monitors_survive_a_full_disk_and_record_the_exit") {
        return;
    }
    let fx = Fixture::new("diskfull");
    let mnt = paths::exec_root(&fx.state);
    std::fs::create_dir_all(&mnt).unwrap_or_else(|e| panic!("{}: {e}", mnt.display()));
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m,mode=0700",
            "agent-test-diskfull",
        ])
        .arg(&mnt)
        .output()
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(
        out.status.success(),
        "mount tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let state = fx.state.clone();
    let mut w = World {
        fx,
        tmpfs: Tmpfs {
            mnt: mnt.clone(),
            state,
        },
    };
    let mut ids = Vec::new();
    for name in ["reserved", "retried"] {
        let mut spec = w.fx.spec(name);
        spec.command = Some(vec!["/bin/sh".into(), "-c".into(), CHATTY.into()]);
        ids.push(w.fx.run(&spec));
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    for id in &ids {
        w.fx.wait_log(id, "line 3 ");
        assert!(w.fx.dir(id).join(RESERVE_FILE).is_file());
    }

    // Full: lines are dropped, the monitors live on.
    fill(&mnt);
    std::thread::sleep(Duration::from_secs(1));
    for id in &ids {
        monitored(&w, id);
    }

    // Space again: the marker, then new lines.
    free(&mnt);
    for id in &ids {
        wait_until(
            &format!("{id}: marker and new lines"),
            Duration::from_secs(10),
            || dropped_marker(&w, id).is_some(),
        );
        let (n, next) = dropped_marker(&w, id).unwrap_or_default();
        assert!(n >= 1, "{id}: {n} dropped");
        assert!(
            next.starts_with("line "),
            "{id}: after the marker: {next:?}"
        );
        monitored(&w, id);
    }

    // Full again; `a` ends: its exit is recorded from the reserved space.
    fill(&mnt);
    let pid = pid_of(&w, &a);
    // SAFETY: kill(2) of the container's init, which traps TERM and exits 7.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = wait_exited(&w, &a, Duration::from_secs(20));
    assert_eq!(
        exited(&status, "a on a full disk"),
        (7, None, false),
        "monitor log: {}",
        monitor_log(&w, &a)
    );

    // `b` ends with no reserve left and every write of its record failing: the monitor holds
    // the exit and retries until it can write. Freeing the runtime state right before the write
    // gives the record a page even on a full tmpfs, so the failure is made certain with a
    // directory where the record's temporary file goes (EISDIR), removed with the filler.
    let dir_b = w.fx.dir(&b);
    std::fs::remove_file(dir_b.join(RESERVE_FILE))
        .unwrap_or_else(|e| panic!("remove reserve of {b}: {e}"));
    let monitor_b = ContainerState::load(&dir_b)
        .ok()
        .flatten()
        .and_then(|s| s.monitor_pid)
        .unwrap_or_else(|| panic!("no monitor pid of {b}"));
    let blocker = dir_b.join(format!(".state.json.tmp-{monitor_b}"));
    std::fs::create_dir(&blocker).unwrap_or_else(|e| panic!("{}: {e}", blocker.display()));
    fill(&mnt);
    let pid = pid_of(&w, &b);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("b's init gone", Duration::from_secs(20), || {
        process_gone(pid)
    });
    // Give the monitor time to fail a few times (it cannot succeed).
    std::thread::sleep(Duration::from_secs(1));
    assert!(monitor_alive(&dir_b), "the monitor of b gave up");
    let st = ContainerState::load(&dir_b)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state of b"));
    assert_eq!(
        st.status,
        Status::Running,
        "nothing could be written: {st:?}"
    );
    free(&mnt);
    std::fs::remove_dir(&blocker).unwrap_or_else(|e| panic!("{}: {e}", blocker.display()));
    let status = wait_exited(&w, &b, Duration::from_secs(20));
    assert_eq!(
        exited(&status, "b after space returned"),
        (7, None, false),
        "monitor log: {}",
        monitor_log(&w, &b)
    );
    wait_until("b's monitor ended", Duration::from_secs(10), || {
        !monitor_alive(&dir_b)
    });
    for id in &ids {
        let mlog = monitor_log(&w, id);
        assert!(!mlog.contains("panicked"), "monitor of {id}:\n{mlog}");
    }
}
