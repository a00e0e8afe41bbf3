//! Manifest files to running containers, through files and the CLI only: add, change (recreate
//! with its reason), break (its container keeps running), fix, remove (volume data kept).

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

const VOLUME: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\nspec:\n  reclaim: retain\n";

fn app(level: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: app\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"echo $LEVEL >> /data/log; exec sleep 1000\"]\n  env: {{LEVEL: {level}}}\n  networkMode: none\n  volumes:\n    - {{volume: data, target: /data}}\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

#[test]
fn add_change_break_fix_remove() {
    if !require_root("add_change_break_fix_remove") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("containers", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("volume.yaml", VOLUME);
    d.write("app.yaml", &app("one"));
    let first = d.wait_for("app running", Duration::from_secs(60), || {
        let r = d.try_ps_row("app")?;
        (r["state"] == "running").then_some(r)
    });
    let data = d.state.join("volumes/data/_data/log");
    d.wait_for("volume written", Duration::from_secs(10), || {
        (std::fs::read_to_string(&data).ok()? == "one\n").then_some(())
    });

    // Change: recreated, with the field in the reason.
    d.write("app.yaml", &app("two"));
    let second = d.wait_for("app recreated", Duration::from_secs(30), || {
        let r = d.try_ps_row("app")?;
        (r["state"] == "running" && r["id"] != first["id"]).then_some(r)
    });
    let recreate = d
        .events()
        .into_iter()
        .find(|e| e["kind"] == "container.recreate")
        .expect("recreate event");
    let reason = recreate["message"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("recreate app") && reason.contains("env.LEVEL"),
        "{reason}"
    );
    d.wait_for(
        "volume kept across recreate",
        Duration::from_secs(10),
        || (std::fs::read_to_string(&data).ok()? == "one\ntwo\n").then_some(()),
    );

    // Break the file: the container keeps running, status names file:line.
    d.write(
        "app.yaml",
        &app("three").replace("restart: always", "restart: sometimes"),
    );
    d.wait_for("app.yaml broken", Duration::from_secs(10), || {
        let f = d.file_status("app.yaml")?;
        (f["status"] == "error").then_some(())
    });
    let f = d.file_status("app.yaml").expect("status");
    assert!(
        f["error"]
            .as_str()
            .unwrap_or_default()
            .contains("app.yaml:12:"),
        "{f}"
    );
    let r = d.try_ps_row("app").expect("app");
    assert_eq!(r["id"], second["id"]);
    assert_eq!(r["state"], "running");

    // Fix it again.
    d.write("app.yaml", &app("three"));
    d.wait_for("app recreated again", Duration::from_secs(30), || {
        let r = d.try_ps_row("app")?;
        (r["state"] == "running" && r["id"] != second["id"]).then_some(())
    });
    assert_eq!(d.cli(&["status"]).status.code(), Some(0));

    // Remove: the container goes, the volume's data stays.
    d.remove("app.yaml");
    d.wait_for("app removed", Duration::from_secs(30), || {
        d.try_ps_row("app").is_none().then_some(())
    });
    d.remove("volume.yaml");
    d.remove("image.yaml");
    let out = d.cli_ok(&["apply"]);
    assert!(out.contains("0 failed"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&data).expect("data kept"),
        "one\ntwo\nthree\n"
    );
}
