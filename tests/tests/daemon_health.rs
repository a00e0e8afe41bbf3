//! A health probe that exceeds its timeout counts as a failure and is killed (with whatever it
//! started inside the container), so slow probes never pile up. Driven through files and the
//! CLI; the processes are counted inside the container.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

#[test]
fn probe_over_its_timeout_is_killed_and_fails() {
    if !require_root("probe_over_its_timeout_is_killed_and_fails") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("probe", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // Each probe starts a 30 s sleep; timeout 1 s, every 500 ms. Policy no: it stays running
    // and unhealthy, and probes go on.
    let check = "  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"sleep 30\"]\n    interval: 500ms\n    timeout: 1s\n    retries: 2\n";
    d.write(
        "slow.yaml",
        &container_manifest(
            "slow",
            "exec sleep 1000",
            &format!("  restart: \"no\"\n{check}"),
        ),
    );
    d.wait_for("slow unhealthy", Duration::from_secs(60), || {
        (d.ps_row("slow")["health"] == "unhealthy").then_some(())
    });
    let health = d.events_of("slow", "container.health");
    let last = health.last().expect("health events");
    assert_eq!(last["message"]["status"], "unhealthy");
    assert_eq!(last["message"]["error"], "timed out");
    // Several more probes time out meanwhile; at most the one in flight is left.
    std::thread::sleep(Duration::from_secs(5));
    let id = d.ps_row("slow")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(d.ps_row("slow")["state"], "running");
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&d.state)
        .args([&id, "--", "/bin/ps", "-o", "pid,args"])
        .env("RUST_LOG", "off")
        .output()
        .expect("agent exec ps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let sleeps = text.lines().filter(|l| l.contains("sleep 30")).count();
    assert!(sleeps <= 1, "timed-out probes left running:\n{text}");
    std::fs::remove_file(d.path("slow.yaml")).expect("rm");
    d.wait_for("slow removed", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        (d.ps_row("slow").is_null()).then_some(())
    });
}
