//! The systemd units and the install script in packaging/.

use std::process::Command;

fn unit_text() -> String {
    let p = agent_e2e::workspace_root().join("packaging/agent.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn unit_has_the_settings_the_agent_relies_on() {
    let text = unit_text();
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        "Type=notify",
        "KillMode=process",
        "Restart=on-failure",
        "WatchdogSec=30s",
        "NotifyAccess=main",
    ] {
        assert!(
            settings.contains(&want),
            "{want} missing from agent.service"
        );
    }
}

fn settings(file: &str) -> Vec<String> {
    let p = agent_e2e::workspace_root().join("packaging").join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(str::to_string)
        .collect()
}

/// The socket unit listens where the packaged config.toml puts the socket; restarting the agent
/// leaves it open (not PartOf=), and the service keeps /run/agent, where it lives, when it stops.
#[test]
fn socket_unit_matches_the_config_and_outlives_restarts() {
    let socket = settings("agent.socket");
    let config = settings("config.toml");
    let path = config
        .iter()
        .find_map(|l| l.strip_prefix("socket = "))
        .unwrap_or_else(|| panic!("no socket in config.toml"))
        .trim_matches('"')
        .to_string();
    assert!(
        socket.contains(&format!("ListenStream={path}")),
        "{socket:?}"
    );
    assert!(
        socket.contains(&"SocketMode=0600".to_string()),
        "{socket:?}"
    );
    assert!(
        !socket.iter().any(|l| l.starts_with("PartOf=")),
        "agent.socket is stopped and restarted with the service: {socket:?}"
    );
    let service = settings("agent.service");
    for want in [
        "RuntimeDirectory=agent",
        "RuntimeDirectoryPreserve=yes",
        "Delegate=yes",
    ] {
        assert!(
            service.contains(&want.to_string()),
            "{want} missing from agent.service"
        );
    }
    assert!(path.starts_with("/run/agent/"), "{path}");
}

/// The version of the host's systemd (`systemd-analyze --version`: `systemd 252 (...)`).
fn systemd_version() -> u32 {
    let out = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("systemd-analyze --version: {out:?}"))
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let bin = agent_e2e::agent_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("agent.service");
    let text = unit_text().replace("/usr/bin/agent", &bin.to_string_lossy());
    std::fs::write(&unit, text).expect("write unit");
    let socket = dir.path().join("agent.socket");
    std::fs::copy(
        agent_e2e::workspace_root().join("packaging/agent.socket"),
        &socket,
    )
    .expect("copy socket unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .arg(&socket)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about the host's other units are not ours; only lines naming these units count.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("agent.service") || l.contains("agent.socket"))
        // systemd before 254 does not know DelegateSubgroup= (docs/daemon.md, "cgroups").
        .filter(|l| !(l.contains("DelegateSubgroup") && systemd_version() < 254))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn install_script_is_valid_shell_and_refuses_a_missing_binary() {
    let script = agent_e2e::workspace_root().join("packaging/install.sh");
    let st = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash -n");
    assert!(st.success());
    let out = Command::new("bash")
        .arg(&script)
        .args(["--binary", "/nonexistent/agent", "--no-start"])
        .output()
        .expect("install.sh");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/agent is missing") || stderr.contains("run as root"),
        "{stderr}"
    );
}
