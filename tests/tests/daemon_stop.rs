//! `agent stop` / `agent start` through the running agent (and without it), Docker's meaning
//! of "stopped" for the restart policies, and the default graceful shutdown that leaves
//! containers running. Driven only through manifest files and the CLI.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const LONG: &str = "exec sleep 1000";

fn running(d: &Daemon, names: &[&str]) {
    d.wait_for(
        &format!("{names:?} running"),
        Duration::from_secs(60),
        || {
            names
                .iter()
                .all(|n| d.ps_row(n)["state"] == "running")
                .then_some(())
        },
    );
}

#[test]
fn stop_and_start_follow_docker_restart_policies() {
    if !require_root("stop_and_start_follow_docker_restart_policies") {
        return;
    }
    require_images();
    // The default: containers keep running when the agent exits.
    let mut d = Daemon::prepare_with("stop", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "us.yaml",
        &container_manifest("us", LONG, "  restart: unless-stopped\n"),
    );
    d.write(
        "al.yaml",
        &container_manifest("al", LONG, "  restart: always\n"),
    );
    d.write(
        "keep.yaml",
        &container_manifest("keep", LONG, "  restart: unless-stopped\n"),
    );
    running(&d, &["us", "al", "keep"]);
    let id = |n: &str| d.ps_row(n)["id"].as_str().unwrap_or_default().to_string();
    let (us_id, al_id, keep_id) = (id("us"), id("al"), id("keep"));

    // agent stop through the API: stopped-by-user, and the policies leave them alone.
    let out = d.cli_ok(&["stop", "-t", "1", "us", "al"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["us", "al"]);
    for (n, i) in [("us", &us_id), ("al", &al_id)] {
        assert_eq!(d.ps_row(n)["state"], "stopped-by-user", "{n}");
        assert!(!d.runs(i), "{n} still runs");
        assert_eq!(d.events_of(n, "container.stop").len(), 1, "{n}");
    }
    // Exit watcher ticks, passes: nothing restarts them.
    std::thread::sleep(Duration::from_secs(3));
    d.cli_ok(&["apply"]);
    for n in ["us", "al"] {
        assert_eq!(d.ps_row(n)["state"], "stopped-by-user", "{n}");
        assert!(d.events_of(n, "container.restart").is_empty(), "{n}");
        assert!(
            d.events_of(n, "container.restart-scheduled").is_empty(),
            "{n}"
        );
    }
    // Stopping again changes nothing; an unknown name is an error naming it.
    d.cli_ok(&["stop", "us"]);
    assert_eq!(d.events_of("us", "container.stop").len(), 1);
    let out = d.cli(&["stop", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such container: nosuch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // agent start: running again, same container, restart count 0; then stopped again.
    d.cli_ok(&["start", "us"]);
    let row = d.ps_row("us");
    assert_eq!(row["state"], "running");
    assert_eq!(row["id"], us_id.as_str());
    assert_eq!(row["restarts"], 0);
    assert!(d.runs(&us_id));
    d.cli_ok(&["stop", "us"]);

    // SIGTERM: the agent exits, containers keep running (default, no --stop-containers-on-exit).
    assert!(d.stop().is_some_and(|s| s.success()));
    assert!(d.log_text().contains("containers keep running"));
    assert!(d.runs(&keep_id), "keep stopped with the agent");

    // Agent restart (as after Docker's daemon restart): keep is adopted, unless-stopped us stays
    // stopped, always al comes back.
    d.start();
    d.wait_for("al back", Duration::from_secs(30), || {
        (d.ps_row("al")["state"] == "running").then_some(())
    });
    let row = d.ps_row("keep");
    assert_eq!(row["id"], keep_id.as_str());
    assert_eq!(row["restarts"], 0);
    assert!(d.events_of("keep", "container.exit").is_empty());
    assert!(d.runs(&al_id));
    d.cli_ok(&["apply"]);
    assert_eq!(d.ps_row("us")["state"], "stopped-by-user");
    assert!(!d.runs(&us_id));

    // Without the agent: `agent stop` acts on the store and the driver itself, with the same
    // meaning at the next start.
    d.stop();
    let out = d.cli(&["stop", "keep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    assert!(!d.runs(&keep_id));
    d.start();
    d.cli_ok(&["apply"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.ps_row("keep")["state"], "stopped-by-user");
    assert!(!d.runs(&keep_id));
    d.cli_ok(&["start", "keep"]);
    assert!(d.runs(&keep_id));

    // --stop-containers-on-exit: SIGTERM stops every container before the agent exits, recorded
    // exited (not stopped-by-user), so the policies decide at the next start as after a reboot.
    d.stop();
    d.args(&["--stop-containers-on-exit"]);
    d.start();
    assert!(d.stop().is_some_and(|s| s.success()));
    for (n, i) in [("keep", &keep_id), ("al", &al_id)] {
        assert!(!d.runs(i), "{n} runs after --stop-containers-on-exit");
        assert_eq!(d.ps_row(n)["state"], "exited", "{n}");
    }
    d.args(&[]);
    d.start();
    running(&d, &["keep", "al"]);
    assert_eq!(d.ps_row("us")["state"], "stopped-by-user");
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}
