//! End-to-end: `init: true` (issue 17 item 4) runs the agent's embedded static init as the
//! container's process 1 in the busybox image (no C library in it):
//! - it reaps an orphan the command leaves behind: a shell starts `sleep 1` in a subshell that
//!   exits, then execs `sleep 1000`, which never waits. Without init the orphan stays a zombie
//!   (`State: Z` in the container's `/proc`); with init it is gone;
//! - it forwards the stop signal to the command: a shell that traps TERM and exits 7 ends with
//!   code 7 when `agent stop -t 60` stops it (an init that dropped the signal would be killed
//!   after 60 s: 137);
//! - the command's exit code becomes the container's;
//! - it is bind-mounted read-only at /sbin/agent-init;
//! - switching `init` on recreates the container, with the reason `init false -> true`.
//!
//! Fails on the old code: the field was unknown, validate refused the manifests.

use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const ORPHAN: &str = "(sleep 1 & echo orphan=$!); exec sleep 1000";

fn exec(d: &Daemon, name: &str, script: &str) -> (bool, String) {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&d.state)
        .args([name, "--", "/bin/sh", "-c", script])
        .env("RUST_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("agent exec: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The orphan's pid (inside the container), from the container's output.
fn orphan_pid(d: &Daemon, name: &str) -> String {
    d.wait_for(
        &format!("{name}'s orphan pid"),
        Duration::from_secs(60),
        || {
            let text = logs(d, name);
            text.lines()
                .find_map(|l| l.trim().strip_prefix("orphan=").map(str::to_string))
        },
    )
}

fn running(d: &Daemon, name: &str) -> String {
    d.wait_for(&format!("{name} running"), Duration::from_secs(60), || {
        let row = d.try_ps_row(name)?;
        (row["state"] == "running").then(|| row["id"].as_str().map(str::to_string))?
    })
}

#[test]
fn init_reaps_zombies_forwards_signals_and_carries_the_exit_code() {
    if !require_root("init_reaps_zombies_forwards_signals_and_carries_the_exit_code") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("init", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("bare.yaml", &container_manifest("bare", ORPHAN, ""));
    d.write(
        "reaped.yaml",
        &container_manifest("reaped", ORPHAN, "  init: true\n"),
    );
    d.write(
        "trapper.yaml",
        &container_manifest(
            "trapper",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 1; done",
            "  init: true\n",
        ),
    );
    d.write(
        "three.yaml",
        &container_manifest("three", "sleep 1; exit 3", "  init: true\n"),
    );
    d.start();
    let bare_id = running(&d, "bare");
    running(&d, "reaped");
    running(&d, "trapper");

    // Without init the orphan becomes a zombie of `sleep 1000` (process 1) and stays one.
    let pid = orphan_pid(&d, "bare");
    d.wait_for("a zombie in bare", Duration::from_secs(60), || {
        let (_, out) = exec(&d, "bare", &format!("cat /proc/{pid}/status"));
        out.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
            .then_some(())
    });

    // With init, process 1 is the init and the orphan is reaped once it exits.
    let (ok, cmdline) = exec(&d, "reaped", "tr '\\0' ' ' < /proc/1/cmdline");
    assert!(ok, "{cmdline}");
    assert!(
        cmdline.starts_with("/sbin/agent-init -- /bin/sh -c"),
        "process 1: {cmdline}"
    );
    let pid = orphan_pid(&d, "reaped");
    d.wait_for(
        "the orphan reaped in reaped",
        Duration::from_secs(60),
        || {
            let (ok, _) = exec(&d, "reaped", &format!("test -e /proc/{pid}"));
            (!ok).then_some(())
        },
    );
    let (_, zombies) = exec(
        &d,
        "reaped",
        "grep -l '^State:.*Z' /proc/[0-9]*/status; true",
    );
    assert_eq!(zombies.trim(), "", "zombies with init");
    // Read-only, a static executable that runs without the image's libraries.
    let (ok, out) = exec(&d, "reaped", "echo x > /sbin/agent-init");
    assert!(!ok, "/sbin/agent-init is writable: {out}");

    // The stop signal reaches the command through the init; its exit code is the container's.
    d.wait_for("trapper ready", Duration::from_secs(60), || {
        logs(&d, "trapper").contains("ready").then_some(())
    });
    d.cli_ok(&["stop", "-t", "60", "trapper"]);
    let row = d.wait_for("trapper stopped", Duration::from_secs(90), || {
        let row = d.ps_row("trapper");
        (row["state"] == "stopped-by-user").then_some(row)
    });
    assert_eq!(row["exit_code"], 7, "{row}");
    assert!(logs(&d, "trapper").contains("got TERM"));

    let row = d.wait_for("three exited", Duration::from_secs(60), || {
        let row = d.try_ps_row("three")?;
        (row["state"] == "exited").then_some(row)
    });
    assert_eq!(row["exit_code"], 3, "{row}");

    // Turning init on is a new container.
    d.write(
        "bare.yaml",
        &container_manifest("bare", ORPHAN, "  init: true\n"),
    );
    d.wait_for("bare recreated", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let row = d.try_ps_row("bare")?;
        (row["state"] == "running" && row["id"].as_str() != Some(bare_id.as_str())).then_some(())
    });
    let events = d.cli_ok(&["events", "-n", "10000"]);
    assert!(events.contains("init false -> true"), "{events}");
    d.remove_all_and_wait(Duration::from_secs(60));
}
