//! Restart policies, backoff and health checks in the running agent, with real containers from
//! manifest files (busybox test image, `networkMode: none`), observed through the CLI only.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::{Value, json};

fn daemon(tag: &str) -> Daemon {
    require_images();
    // Short backoff cap and reset so the test sees growth, the cap and the reset quickly.
    let mut d = Daemon::prepare(
        tag,
        "[restart]\nstart = \"100ms\"\nfactor = 2.0\ncap = \"800ms\"\nreset_after = \"1500ms\"\n",
    );
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d
}

#[test]
fn policies_backoff_growth_cap_and_reset() {
    if !require_root("policies_backoff_growth_cap_and_reset") {
        return;
    }
    let mut d = daemon("restart");
    d.write(
        "crash.yaml",
        &container_manifest("crash", "exit 3", "  restart: always\n"),
    );
    d.write(
        "slow.yaml",
        &container_manifest("slow", "sleep 2; exit 1", "  restart: always\n"),
    );
    d.write(
        "twice.yaml",
        &container_manifest(
            "twice",
            "exit 1",
            "  restart: {policy: on-failure, maxRetries: 2}\n",
        ),
    );
    d.write(
        "clean.yaml",
        &container_manifest("clean", "exit 0", "  restart: on-failure\n"),
    );
    d.write(
        "never.yaml",
        &container_manifest("never", "exit 1", "  restart: \"no\"\n"),
    );
    d.write(
        "unless.yaml",
        &container_manifest("unless", "exit 7", "  restart: unless-stopped\n"),
    );

    // crash: always, quick exits: the delays double up to the cap.
    let delays = d.wait_for("6 restarts of crash", Duration::from_secs(60), || {
        let ev = d.events_of("crash", "container.restart-scheduled");
        (ev.len() >= 6).then(|| {
            ev.iter()
                .map(|e| e["message"]["delayMs"].as_u64())
                .collect::<Vec<_>>()
        })
    });
    assert_eq!(
        delays[..6],
        [
            Some(100),
            Some(200),
            Some(400),
            Some(800),
            Some(800),
            Some(800)
        ]
    );
    assert!(d.ps_row("crash")["restarts"].as_u64().unwrap_or(0) >= 5);

    // slow: each run lasts 2 s >= reset_after: the delay stays at the start. On a loaded
    // machine its first run can end before the agent is up; start-up then restarts it at once
    // (delay 0, like crash above), so the first delay is 0 or 100 and every later one is 100.
    let delays = d.wait_for("4 restarts of slow", Duration::from_secs(40), || {
        let ev = d.events_of("slow", "container.restart-scheduled");
        (ev.len() >= 4).then(|| {
            ev.iter()
                .map(|e| e["message"]["delayMs"].as_u64())
                .collect::<Vec<_>>()
        })
    });
    assert!(matches!(delays[0], Some(0) | Some(100)), "{delays:?}");
    assert_eq!(
        delays[1..4],
        [Some(100), Some(100), Some(100)],
        "{delays:?}"
    );

    // twice: on-failure:2 restarts exactly twice, then gives up.
    let stays = d.wait_for("twice gives up", Duration::from_secs(30), || {
        d.events_of("twice", "container.stays-exited")
            .first()
            .cloned()
    });
    assert!(
        stays["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gave up after 2 restart(s)")),
        "{stays}"
    );
    assert_eq!(d.events_of("twice", "container.restart").len(), 2);
    let row = d.ps_row("twice");
    assert_eq!(row["state"], "exited");
    assert_eq!(row["exit_code"], 1);
    assert_eq!(row["restarts"], 2);

    // clean: on-failure and exit 0: not restarted. never: policy no.
    for (name, code, why) in [
        ("clean", 0, "exited with code 0"),
        ("never", 1, "restart policy is no"),
    ] {
        let stays = d.wait_for(name, Duration::from_secs(20), || {
            d.events_of(name, "container.stays-exited").first().cloned()
        });
        assert!(
            stays["message"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(why)),
            "{stays}"
        );
        let row = d.ps_row(name);
        assert_eq!(row["state"], "exited");
        assert_eq!(row["exit_code"], code);
        assert_eq!(row["restarts"], 0);
    }

    // unless-stopped restarts like always.
    d.wait_for("unless restarted", Duration::from_secs(20), || {
        (d.events_of("unless", "container.restart").len() >= 2).then_some(())
    });
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}

#[test]
fn agent_kill_9_adopts_running_and_records_exits_while_down() {
    if !require_root("agent_kill_9_adopts_running_and_records_exits_while_down") {
        return;
    }
    let mut d = daemon("adopt");
    d.write(
        "long.yaml",
        &container_manifest("long", "exec sleep 1000", "  restart: always\n"),
    );
    d.write(
        "brief.yaml",
        &container_manifest("brief", "sleep 4; exit 5", "  restart: always\n"),
    );
    d.write(
        "once.yaml",
        &container_manifest("once", "sleep 4; exit 6", "  restart: \"no\"\n"),
    );
    d.wait_for("all running", Duration::from_secs(60), || {
        ["long", "brief", "once"]
            .iter()
            .all(|n| d.ps_row(n)["state"] == "running")
            .then_some(())
    });
    let long_id = d.ps_row("long")["id"].clone();
    // kill -9 the agent: the monitors live on; brief and once exit while it is down.
    d.stop_with(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(5));
    d.start();
    d.wait_for("exits recorded", Duration::from_secs(20), || {
        (!d.events_of("brief", "container.exit").is_empty()
            && !d.events_of("once", "container.exit").is_empty())
        .then_some(())
    });
    // long was adopted: same container, no restart, no exit recorded.
    let row = d.ps_row("long");
    assert_eq!(row["id"], long_id);
    assert_eq!(row["state"], "running");
    assert_eq!(row["restarts"], 0);
    assert!(d.events_of("long", "container.exit").is_empty());
    // brief (always) came back; once (no) stays exited with its code.
    assert_eq!(
        d.events_of("brief", "container.exit")[0]["message"]["exitCode"],
        5
    );
    d.wait_for("brief restarted", Duration::from_secs(20), || {
        (!d.events_of("brief", "container.restart").is_empty()).then_some(())
    });
    let row = d.ps_row("once");
    assert_eq!(row["state"], "exited");
    assert_eq!(row["exit_code"], 6);
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}

#[test]
fn unhealthy_containers_restart_per_policy() {
    if !require_root("unhealthy_containers_restart_per_policy") {
        return;
    }
    let mut d = daemon("health");
    // Healthy for ~3 s after each start, then the check fails.
    let script = "touch /tmp/ok; sleep 3; rm /tmp/ok; exec sleep 1000";
    let check = "  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ok\"]\n    interval: 500ms\n    timeout: 2s\n    retries: 2\n";
    d.write(
        "sick.yaml",
        &container_manifest("sick", script, &format!("  restart: always\n{check}")),
    );
    d.write(
        "kept.yaml",
        &container_manifest("kept", script, &format!("  restart: \"no\"\n{check}")),
    );
    d.wait_for("sick healthy", Duration::from_secs(60), || {
        (d.ps_row("sick")["health"] == "healthy").then_some(())
    });
    // Unhealthy: stopped and restarted by its policy, healthy again afterwards.
    d.wait_for("sick stopped as unhealthy", Duration::from_secs(20), || {
        (!d.events_of("sick", "container.unhealthy-stop").is_empty()).then_some(())
    });
    d.wait_for("sick healthy again", Duration::from_secs(30), || {
        let row = d.ps_row("sick");
        (row["health"] == "healthy" && row["restarts"] == 1).then_some(())
    });
    // Policy no: left running, shown unhealthy.
    d.wait_for("kept unhealthy", Duration::from_secs(20), || {
        (d.ps_row("kept")["health"] == "unhealthy").then_some(())
    });
    assert_eq!(d.ps_row("kept")["state"], "running");
    assert!(d.events_of("kept", "container.unhealthy-stop").is_empty());
    let health: Vec<Value> = d
        .events_of("kept", "container.health")
        .iter()
        .map(|e| e["message"]["status"].clone())
        .collect();
    assert_eq!(health, [json!("healthy"), json!("unhealthy")]);
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}
