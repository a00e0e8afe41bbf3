//! `agent system reset`: once the agent removed every container, the default network's bridge,
//! the instance's firewall table or chains and its host accept rules go too (the agent keeps
//! them while it runs, as Docker keeps docker0); `--state` deletes the state directory. Refused
//! while the agent runs and while the store still records containers, so a reset never removes
//! a running container's network behind the agent's back.

use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn bridge_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The firewall rules of this fixture's instance, in whichever backend it uses (nft table
/// `ip <instance>` or iptables chains named after it, and the host accept rules that carry it).
fn firewall_mentions(instance: &str) -> bool {
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let ipt = Command::new("iptables-save")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    nft.lines()
        .any(|l| l.trim() == format!("table ip {instance}"))
        || ipt.to_lowercase().contains(&instance.to_lowercase())
}

#[test]
fn reset_removes_default_bridge_firewall_and_state_once_no_container_is_left() {
    if !require_root("reset_removes_default_bridge_firewall_and_state_once_no_container_is_left") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("reset", "");
    d.write("image.yaml", BUSYBOX_IMAGE);
    // No `networkMode: none`: the container joins the default network.
    let c = container_manifest("c", "exec sleep 100000", "").replace("  networkMode: none\n", "");
    d.write("c.yaml", &c);
    d.start();
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.try_ps_row("c")?["state"] == "running").then_some(())
    });
    assert!(
        bridge_exists(&d.bridge),
        "default bridge {} missing",
        d.bridge
    );
    assert!(
        firewall_mentions(&d.net.instance),
        "no firewall rules for the instance"
    );

    // While the agent runs: refused, nothing removed.
    let out = d.cli(&["system", "reset"]);
    assert!(
        !out.status.success(),
        "reset while the agent runs succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is running"), "stderr: {err}");
    assert!(bridge_exists(&d.bridge));

    // Agent stopped, container still recorded: refused, naming it.
    d.stop();
    let out = d.cli(&["system", "reset"]);
    assert!(
        !out.status.success(),
        "reset with a recorded container succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c") && err.contains("container"),
        "stderr: {err}"
    );
    assert!(
        bridge_exists(&d.bridge),
        "reset removed a bridge a container still uses"
    );

    // The agent removes the container (one mutation path); then reset takes the rest.
    d.start();
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
    assert!(
        bridge_exists(&d.bridge),
        "the agent is expected to keep its default bridge (else this test shows nothing)"
    );
    let out = d.cli_ok(&["system", "reset", "--state"]);
    assert!(out.contains("removed"), "stdout: {out}");
    assert!(
        !bridge_exists(&d.bridge),
        "default bridge {} still there",
        d.bridge
    );
    assert!(
        !firewall_mentions(&d.net.instance),
        "firewall rules of instance {} still there",
        d.net.instance
    );
    assert!(!d.state.exists(), "{} still there", d.state.display());

    // Nothing left to reset: a no-op, not an error.
    let out = d.cli_ok(&["system", "reset"]);
    assert!(out.contains("nothing to reset"), "stdout: {out}");
}
