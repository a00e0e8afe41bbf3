//! End-to-end: monitors outlive the agent process that started them (root).
//!
//! The "agent" here is this test binary re-run in a helper mode: it starts two containers through
//! the exec driver (as the daemon will) and is then killed with SIGKILL. One container keeps
//! running, the other exits while no agent is alive. A new driver instance ("the agent starting
//! again") must find the first one still running with the same process (never restarted) and the
//! second one's exit code recorded by its monitor.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::driver::exec::{ContainerStatus, ExecConfig, ExecDriver, MonitorDriver, state};
use agent_e2e::exec::{Fixture, exited, require_root};
use agent_e2e::graph::agent_bin;

const HELPER_ENV: &str = "AGENT_EXEC_RESTART_HELPER";

/// Helper mode: start the containers named in the environment, report, then wait to be killed.
fn helper(spec: &str) {
    let mut parts = spec.split('|');
    let state_dir = PathBuf::from(parts.next().unwrap_or_default());
    let cgroup_parent = parts.next().unwrap_or_default().to_string();
    let driver = MonitorDriver::new(ExecConfig {
        state_dir,
        agent_binary: agent_bin(),
        cgroup_parent,
        cdi_dirs: Vec::new(),
    });
    for id in parts {
        let pid = driver
            .start(id)
            .unwrap_or_else(|e| panic!("helper start {id}: {e}"));
        println!("started {id} {pid}");
    }
    println!("all-started");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Kills the helper ("the agent") with SIGKILL when dropped, also when the test fails.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling the helper process this test spawned.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn monitors_survive_the_agent_and_record_exits_meanwhile() {
    if let Ok(spec) = std::env::var(HELPER_ENV) {
        return helper(&spec);
    }
    if !require_root("monitors_survive_the_agent_and_record_exits_meanwhile") {
        return;
    }
    let mut f = Fixture::new("restart");
    let mut long = f.spec("long");
    long.command = Some(vec!["sleep".into(), "1000".into()]);
    f.driver.create(&long).unwrap_or_else(|e| panic!("{e}"));
    let mut short = f.spec("short");
    short.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo started; sleep 2; echo done; exit 7".into(),
    ]);
    f.driver.create(&short).unwrap_or_else(|e| panic!("{e}"));

    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let arg = format!(
        "{}|{}|{}|{}",
        f.state.display(),
        f.cgroup_parent,
        long.id,
        short.id
    );
    let mut agent = Command::new(exe)
        .args([
            "--exact",
            "monitors_survive_the_agent_and_record_exits_meanwhile",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn helper: {e}"));
    let stdout = agent.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let guard = KillOnDrop(agent.id() as i32);
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        // the test harness may print on the same line before ours
        if let Some(at) = line.find("started ") {
            pids.push(line[at + 8..].to_string());
        }
        if line.ends_with("all-started") {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "helper did not start both: {pids:?}");
    let before = f.driver.state(&long.id).unwrap_or_else(|e| panic!("{e}"));
    let ContainerStatus::Running { pid: long_pid, .. } = before.status else {
        panic!("long is not running: {before:?}");
    };
    let long_start = state::process_start(long_pid);

    // The agent dies hard.
    drop(guard);
    let _ = agent.wait();

    // The monitors are in their own sessions, not children of the dead agent.
    for id in [&long.id, &short.id] {
        let st = state::ContainerState::load(&f.dir(id))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no state for {id}"));
        let mpid = st
            .monitor_pid
            .unwrap_or_else(|| panic!("no monitor pid for {id}"));
        // SAFETY: getsid has no preconditions.
        assert_eq!(
            unsafe { libc::getsid(mpid) },
            mpid,
            "monitor of {id} leads its session"
        );
        assert!(
            state::is_same_process(mpid, st.monitor_start),
            "monitor of {id} died with the agent"
        );
        // It waits as the re-executed, lean half (same pid, still the container's parent). The
        // monitor answers the driver before it re-executes, so on a loaded machine the exec may
        // still be under way: give it a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cmdline = std::fs::read(format!("/proc/{mpid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("--wait-pid") {
                // ... and that half is the small `agent-monitor-wait` beside the agent binary.
                let exe = std::fs::read_link(format!("/proc/{mpid}/exe")).unwrap_or_default();
                assert_eq!(
                    exe.file_name().and_then(|n| n.to_str()),
                    Some("agent-monitor-wait"),
                    "monitor of {id} waits in {exe:?}: {cmdline}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "monitor of {id} never re-executed into its waiting half: {cmdline}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // The short container exits while nobody but its monitor watches.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = state::ContainerState::load(&f.dir(&short.id))
            .ok()
            .flatten();
        if st
            .as_ref()
            .is_some_and(|s| s.status == state::Status::Exited)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "short never recorded its exit: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // "The agent starts again": a fresh driver adopts what is there.
    let fresh = MonitorDriver::new(ExecConfig {
        state_dir: f.state.clone(),
        agent_binary: agent_bin(),
        cgroup_parent: f.cgroup_parent.clone(),
        cdi_dirs: Vec::new(),
    });
    let list = fresh.list().unwrap_or_else(|e| panic!("{e}"));
    let long_now = list
        .iter()
        .find(|c| c.id == long.id)
        .unwrap_or_else(|| panic!("{list:?}"));
    match long_now.status {
        ContainerStatus::Running { pid, monitored } => {
            assert_eq!(pid, long_pid, "long was restarted");
            assert_eq!(state::process_start(pid), long_start, "long was restarted");
            assert!(monitored);
        }
        ref other => panic!("long: {other:?}"),
    }
    assert_eq!(long_now.started_at, before.started_at);
    let short_now = list
        .iter()
        .find(|c| c.id == short.id)
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(exited(&short_now.status, "short"), (7, None, false));
    assert_eq!(f.log_text(&short.id), "started\ndone\n");
    // and the adopted one can be stopped normally
    let info = fresh
        .stop(&long.id, Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!info.status.is_running());
}

/// The container's cgroup directories that exist (every v1 hierarchy, or the v2 one).
fn cgroup_dirs(f: &Fixture, id: &str) -> Vec<PathBuf> {
    let rel = format!("{}/{}", f.cgroup_parent.trim_start_matches('/'), id);
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    roots
        .into_iter()
        .map(|r| r.join(&rel))
        .filter(|d| d.is_dir())
        .collect()
}

#[test]
fn delete_after_the_monitor_was_killed_removes_the_cgroup() {
    if !require_root("delete_after_the_monitor_was_killed_removes_the_cgroup") {
        return;
    }
    let mut f = Fixture::new("orphan");
    orphan_then_delete(&mut f, "orphan", false);
    // libcontainer's own record gone too (a monitor killed in the middle of a start): the
    // driver removes the cgroup directories itself.
    orphan_then_delete(&mut f, "norecord", true);
}

/// Starts `name`, kills its monitor and then the container, optionally removes libcontainer's
/// record, deletes it through the driver and checks that nothing is left.
fn orphan_then_delete(f: &mut Fixture, name: &str, drop_libcontainer_record: bool) {
    let mut s = f.spec(name);
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);
    assert!(
        !cgroup_dirs(f, &id).is_empty(),
        "no cgroup for a running container"
    );
    let st = state::ContainerState::load(&f.dir(&id))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    // The monitor dies first (as in a crash or an OOM kill of the monitor), then the container.
    let monitor = st.monitor_pid.unwrap_or_else(|| panic!("no monitor pid"));
    // SAFETY: signalling a pid this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let pid = st.pid.unwrap_or_else(|| panic!("no pid"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{monitor}")).exists()
        && std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "monitor {monitor} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while f.driver.state(&id).is_ok_and(|i| i.status.is_running()) {
        assert!(Instant::now() < deadline, "container {pid} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    if drop_libcontainer_record {
        let record = f.dir(&id).join(agent::driver::exec::monitor::RUNTIME_DIR);
        std::fs::remove_dir_all(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
    }
    f.driver
        .delete(&id)
        .unwrap_or_else(|e| panic!("delete: {e}"));
    assert!(!f.dir(&id).exists(), "state directory left");
    assert_eq!(
        cgroup_dirs(f, &id),
        Vec::<PathBuf>::new(),
        "cgroup left behind"
    );
}
