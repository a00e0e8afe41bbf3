//! End-to-end: `agent kill` records a `container.kill` event (issue 19 item 9), as `docker kill`
//! emits its `kill` event: through the running agent, and on the store when no agent runs. It
//! signalled the process and recorded nothing.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

#[test]
fn agent_kill_records_an_event() {
    if !require_root("agent_kill_records_an_event") {
        return;
    }
    require_images();
    // containers stay when the agent stops: the second kill is made without it
    let mut d = Daemon::prepare_with("killevent", "", false);
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "a.yaml",
        &container_manifest(
            "a",
            "trap 'echo got-usr1' USR1; while true; do sleep 0.1; done",
            "",
        ),
    );
    d.start();
    d.wait_for("a running", Duration::from_secs(60), || {
        (d.try_ps_row("a")?["state"] == "running").then_some(())
    });
    // with the agent: the signal reaches the process, the event is recorded
    assert_eq!(d.cli_ok(&["kill", "-s", "USR1", "a"]), "a\n");
    let kills = d.wait_for("the kill event", Duration::from_secs(10), || {
        let k = d.events_of("a", "container.kill");
        (!k.is_empty()).then_some(k)
    });
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["message"]["signal"], "SIGUSR1", "{kills:?}");
    assert_eq!(kills[0]["message"]["reason"], "agent kill", "{kills:?}");
    d.wait_for("the trap's output", Duration::from_secs(10), || {
        let out = std::process::Command::new(agent_e2e::agent_bin())
            .args(["logs", "a", "--state-dir"])
            .arg(&d.state)
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("got-usr1")
            .then_some(())
    });
    assert_eq!(
        d.try_ps_row("a").map(|r| r["state"].clone()),
        Some("running".into())
    );
    // an unknown name is an error naming it
    let out = d.cli(&["kill", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    // without the agent: signalled through the exec driver, recorded in the store
    d.stop();
    assert_eq!(d.cli_ok(&["kill", "a"]), "a\n");
    let kills = d.events_of("a", "container.kill");
    assert_eq!(kills.len(), 2, "{kills:?}");
    assert_eq!(kills[1]["message"]["signal"], "SIGKILL", "{kills:?}");
}
