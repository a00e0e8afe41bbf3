//! `healthcheck.onUnhealthy` (issue 16 item 5): `restart` (the default) stops an unhealthy
//! container so that its restart policy brings it back; `none` only reports it, as Docker and
//! Compose do. The field is updated in place: switching it to `restart` on an unhealthy
//! container keeps the same container (no recreate) and stops it then. Driven through files and
//! the CLI.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// A container whose check always fails, with `restart: always`; `on` is `onUnhealthy`'s line.
fn sick(name: &str, on: &str) -> String {
    container_manifest(
        name,
        "exec sleep 1000",
        &format!(
            "  restart: always\n  healthcheck:\n    command: [\"/bin/false\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 1\n{on}"
        ),
    )
}

fn agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(agent_e2e::agent_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agent")
}

#[test]
fn on_unhealthy_none_only_reports_and_restart_is_updated_in_place() {
    if !require_root("on_unhealthy_none_only_reports_and_restart_is_updated_in_place") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("onunh", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("calm.yaml", &sick("calm", "    onUnhealthy: none\n"));
    d.wait_for("calm unhealthy", Duration::from_secs(60), || {
        (d.ps_row("calm")["health"] == "unhealthy").then_some(())
    });
    let calm_id = d.ps_row("calm")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The same check with the default, written after calm was already unhealthy: by the time
    // it has been stopped for being unhealthy and restarted, calm's unhealthy state has long
    // been seen by the loop.
    d.write("hasty.yaml", &sick("hasty", ""));
    d.wait_for("hasty restarted", Duration::from_secs(60), || {
        (d.ps_row("hasty")["restarts"].as_u64() >= Some(1)).then_some(())
    });
    assert!(!d.events_of("hasty", "container.unhealthy-stop").is_empty());
    let calm = d.ps_row("calm");
    assert_eq!(calm["state"], "running", "{calm}");
    assert_eq!(calm["health"], "unhealthy", "{calm}");
    assert_eq!(calm["restarts"], 0, "{calm}");
    assert_eq!(calm["id"], calm_id.as_str(), "{calm}");
    assert!(
        d.events_of("calm", "container.unhealthy-stop").is_empty(),
        "{:?}",
        d.events_of("calm", "container")
    );

    // Plan (of a copy of the directory with the edit): an in-place update naming the field.
    let edited = d.dir.path().join("edited");
    std::fs::create_dir(&edited).expect("mkdir");
    for f in ["image.yaml", "hasty.yaml"] {
        std::fs::copy(d.path(f), edited.join(f)).expect("copy");
    }
    std::fs::write(
        edited.join("calm.yaml"),
        sick("calm", "    onUnhealthy: restart\n"),
    )
    .expect("write");
    let out = agent(&[
        "plan",
        &edited.to_string_lossy(),
        "--state-dir",
        &d.state.to_string_lossy(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("~ update calm")
            && text.contains("healthcheck.onUnhealthy none -> restart")
            && !text.contains("recreate"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.write("calm.yaml", &sick("calm", "    onUnhealthy: restart\n"));
    // Applied: the same container is stopped for being unhealthy, then restarted.
    d.wait_for(
        "calm stopped for being unhealthy",
        Duration::from_secs(60),
        || (!d.events_of("calm", "container.unhealthy-stop").is_empty()).then_some(()),
    );
    d.wait_for("calm restarted", Duration::from_secs(60), || {
        (d.ps_row("calm")["restarts"].as_u64() >= Some(1)).then_some(())
    });
    assert_eq!(d.ps_row("calm")["id"], calm_id.as_str());
    assert!(d.events_of("calm", "container.recreate").is_empty());

    // A value that is neither is refused with its place and the allowed values.
    std::fs::write(
        d.dir.path().join("bad.yaml"),
        sick("bad", "    onUnhealthy: reboot\n"),
    )
    .expect("write");
    let out = agent(&["validate", &d.dir.path().join("bad.yaml").to_string_lossy()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bad.yaml:16") && text.contains("restart") && text.contains("none"),
        "{text}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}
