//! A host reboot: the agent, every `agent monitor` and every container die at once without a
//! recorded exit, and container root filesystems are unmounted. At the next start, containers
//! with restart `always` and `unless-stopped` (not stopped with `agent stop`) come back, link
//! and volumesFrom targets before their users; `no` stays down. Driven through files and the
//! CLI; the start order is read from the event log.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::Value;

const LONG: &str = "exec sleep 1000";
const VOLUME: &str = "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: rb-data\nspec: {}\n";

#[test]
fn reboot_brings_containers_back_in_dependency_order() {
    if !require_root("reboot_brings_containers_back_in_dependency_order") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("reboot", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("volume.yaml", VOLUME);
    // Names chosen so that alphabetical order is not dependency order.
    let specs: [(&str, &str); 7] = [
        (
            "base",
            "  restart: always\n  volumes: [{volume: rb-data, target: /data}]\n",
        ),
        ("app", "  restart: unless-stopped\n  volumesFrom: [base]\n"),
        ("aaa", "  restart: always\n  volumesFrom: [app, side]\n"),
        ("side", "  restart: unless-stopped\n"),
        ("mid", "  restart: always\n  volumesFrom: [app]\n"),
        ("held", "  restart: unless-stopped\n"),
        ("once", "  restart: \"no\"\n"),
    ];
    for (n, extra) in specs {
        d.write(&format!("{n}.yaml"), &container_manifest(n, LONG, extra));
    }
    // And one on the default bridge network, whose namespace and veth the reboot takes away.
    d.write(
        "net1.yaml",
        &container_manifest(
            "net1",
            LONG,
            "  restart: always
",
        )
        .replace(
            "  networkMode: none
",
            "",
        ),
    );
    d.wait_for("all running", Duration::from_secs(90), || {
        specs
            .iter()
            .map(|(n, _)| *n)
            .chain(["net1"])
            .all(|n| d.ps_row(n)["state"] == "running")
            .then_some(())
    });
    let net1_id = d.ps_row("net1")["id"].as_str().unwrap_or("").to_string();
    assert!(d.sh_in(&net1_id, "grep -q eth0 /proc/net/dev"));
    d.cli_ok(&["stop", "held"]);
    let ids: Vec<(String, String)> = specs
        .iter()
        .map(|(n, _)| {
            (
                n.to_string(),
                d.ps_row(n)["id"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let last_event = d
        .events()
        .last()
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .unwrap_or(0);

    // The reboot.
    d.stop_with(libc::SIGKILL);
    d.simulate_reboot();
    for (n, id) in &ids {
        assert!(!d.runs(id), "{n} survived the reboot");
    }
    d.start();

    let back = ["base", "app", "aaa", "side", "mid", "net1"];
    d.wait_for("containers back", Duration::from_secs(60), || {
        back.iter()
            .all(|n| d.ps_row(n)["state"] == "running")
            .then_some(())
    });
    for (n, id) in &ids {
        if back.contains(&n.as_str()) {
            // `agent exec` may miss a container in the instant it starts: allow a moment.
            d.wait_for(&format!("{n} runs"), Duration::from_secs(10), || {
                d.runs(id).then_some(())
            });
        }
    }
    // The bridge container is attached again (same id, an interface and an address).
    assert!(d.sh_in(&net1_id, "grep -q eth0 /proc/net/dev"));
    let inspect: Value = serde_json::from_str(&d.cli_ok(&["inspect", "net1"])).expect("inspect");
    assert!(
        inspect["addresses"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{inspect}"
    );
    // The order of the restarts.
    let restarts: Vec<String> = d
        .events()
        .into_iter()
        .filter(|e| e["id"].as_i64().unwrap_or(0) > last_event && e["kind"] == "container.restart")
        .filter_map(|e| {
            e["object"]
                .as_str()
                .and_then(|o| o.strip_prefix("container/"))
                .map(str::to_string)
        })
        .collect();
    let pos = |n: &str| {
        restarts
            .iter()
            .position(|r| r == n)
            .unwrap_or_else(|| panic!("{n} not restarted: {restarts:?}"))
    };
    assert_eq!(restarts.len(), back.len(), "{restarts:?}");
    assert!(pos("base") < pos("app"), "{restarts:?}");
    assert!(pos("app") < pos("mid"), "{restarts:?}");
    assert!(pos("app") < pos("aaa"), "{restarts:?}");
    assert!(pos("side") < pos("aaa"), "{restarts:?}");
    // The exits were recorded as lost with the host (255), as Docker does.
    let exit: Vec<Value> = d.events_of("base", "container.exit");
    assert_eq!(
        exit.last().map(|e| e["message"]["exitCode"].clone()),
        Some(255.into())
    );
    // Stopped by the user (unless-stopped) and policy no stay down.
    assert_eq!(d.ps_row("held")["state"], "stopped-by-user");
    let once = d.ps_row("once");
    assert_eq!(once["state"], "exited");
    assert_eq!(once["exit_code"], 255);
    // The volume's data directory is shared along the volumesFrom chain after the reboot too.
    let id_of = |n: &str| {
        ids.iter()
            .find(|(x, _)| x == n)
            .map(|(_, i)| i.clone())
            .unwrap_or_default()
    };
    assert!(d.sh_in(&id_of("base"), "echo hi > /data/f"));
    assert!(d.sh_in(&id_of("aaa"), "test \"$(cat /data/f)\" = hi"));

    d.remove_all_and_wait(Duration::from_secs(60));
}
