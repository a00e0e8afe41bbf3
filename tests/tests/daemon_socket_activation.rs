//! Socket activation: `agent run` started by `systemd-socket-activate`, which listens on the API
//! socket and execs the agent on the first connection with the socket as fd 3 and
//! `LISTEN_FDS=1`, `LISTEN_PID` (what systemd does for agent.socket), serves the API on that
//! socket: the connection that activated it (`agent ps`) is answered. The socket is not passed
//! on to the container monitors (neither the descriptor nor the variables), and the agent leaves
//! the socket file to its owner when it stops.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// The socket inode behind `/proc/<pid>/fd/<fd>` (`socket:[N]`).
fn socket_inode(pid: i32, fd: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_string_lossy().into_owned();
    s.starts_with("socket:[").then_some(s)
}

#[test]
fn api_is_served_on_the_socket_systemd_passes() {
    if !require_root("api_is_served_on_the_socket_systemd_passes") {
        return;
    }
    require_images();
    let tool = "systemd-socket-activate";
    assert!(
        Command::new(tool).arg("--version").output().is_ok(),
        "{tool} is missing: apt-get install systemd (scripts/setup.sh installs it)"
    );
    let mut d = Daemon::prepare("sockact", "");
    d.wrapper = vec![
        tool.into(),
        "--listen".into(),
        d.socket.to_string_lossy().into_owned(),
    ];
    // Waits for the socket (systemd-socket-activate's), then `agent ps` activates the agent and
    // must be answered on it.
    d.start();
    let pid = d.pid().unwrap_or_else(|| panic!("no agent")) as i32;
    let passed = socket_inode(pid, "3").unwrap_or_else(|| {
        panic!(
            "fd 3 of the agent is not the passed socket:\n{}",
            d.log_tail()
        )
    });

    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c.yaml", &container_manifest("c", "exec sleep 1000", ""));
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.try_ps_row("c")?["state"] == "running").then_some(())
    });
    let monitors = d.monitor_pids();
    assert!(!monitors.is_empty(), "no monitor of c");
    for m in &monitors {
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{m}/fd"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| socket_inode(*m, &e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !fds.contains(&passed),
            "monitor {m} inherited the API socket {passed}"
        );
        let env = std::fs::read(format!("/proc/{m}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        for var in ["LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES="] {
            assert!(
                !env.split('\0').any(|v| v.starts_with(var)),
                "monitor {m} inherited {var}"
            );
        }
    }
    let ps = d.cli_ok(&["ps"]);
    assert!(
        ps.lines().any(|l| l.split_whitespace().next() == Some("c")),
        "{ps}"
    );

    // The socket is its owner's: still there after the agent stopped.
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
    assert!(
        Path::new(&d.socket).exists(),
        "the agent removed the activated socket {}",
        d.socket.display()
    );
}

/// `systemctl enable --now agent.socket` while the agent runs: systemd puts its own socket at
/// the path the agent bound. The agent, stopped for the restart that hands it the socket, must
/// not remove systemd's file (only the one it bound itself).
#[test]
fn a_socket_put_at_the_path_while_the_agent_runs_is_left_alone() {
    if !require_root("a_socket_put_at_the_path_while_the_agent_runs_is_left_alone") {
        return;
    }
    let mut d = Daemon::prepare("sockrepl", "");
    d.start();
    std::fs::remove_file(&d.socket).unwrap_or_else(|e| panic!("rm {}: {e}", d.socket.display()));
    let theirs = std::os::unix::net::UnixListener::bind(&d.socket)
        .unwrap_or_else(|e| panic!("bind {}: {e}", d.socket.display()));
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
    assert!(
        Path::new(&d.socket).exists(),
        "the agent removed the socket another owner put at {}",
        d.socket.display()
    );
    drop(theirs);

    // Its own socket it still removes.
    let _ = std::fs::remove_file(&d.socket);
    d.start();
    assert!(Path::new(&d.socket).exists());
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "agent exit: {st:?}");
    assert!(
        !Path::new(&d.socket).exists(),
        "the agent left its own socket {}",
        d.socket.display()
    );
}
