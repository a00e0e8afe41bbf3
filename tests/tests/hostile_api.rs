//! The API socket against a local unprivileged user: the socket is `0600`, and when its mode is
//! wrong anyway (a unit's `SocketMode=0666`, a `chmod` by hand, a connection made in the instant
//! between `bind` and `chmod`) the agent still serves nobody but root, by the peer's credentials.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use agent_e2e::agent_bin;
use agent_e2e::daemon::{Daemon, require_root};

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

#[test]
fn a_user_other_than_root_is_refused_even_on_a_world_writable_socket() {
    if !require_root("a_user_other_than_root_is_refused_even_on_a_world_writable_socket") {
        return;
    }
    let mut d = Daemon::prepare("apipeer", "");
    d.start();
    d.cli_ok(&["ps"]);
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // The mistake: everyone may connect.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = Command::new(agent_bin())
        .arg("ps")
        .arg("--socket")
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .env("RUST_LOG", "off")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run agent ps as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "nobody was served by the agent's API:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Root still is, and the agent said why it closed the other connection.
    d.cli_ok(&["ps"]);
    let log = d.log_text();
    assert!(
        log.contains("connection refused") && log.contains(&format!("uid {NOBODY}")),
        "no warning about the refused peer in the log:\n{}",
        d.log_tail()
    );
}
