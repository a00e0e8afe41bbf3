//! End-to-end: `metadata.labels` (issue 17 item 9). They reach a new container as OCI
//! annotations (the exec driver's `config.json`), `agent inspect` and `agent ps -o json` show
//! them, `agent ps --filter label=KEY[=VALUE]` selects by them, and a change of a label is
//! recorded in place: same container, same process, an update event naming the label (it used to
//! recreate the container, and the annotations were dropped).

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn labelled(name: &str, labels: &str) -> String {
    container_manifest(name, "exec sleep 1000", "").replace(
        &format!("  name: {name}\n"),
        &format!("  name: {name}\n  labels: {labels}\n"),
    )
}

fn names(d: &Daemon, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let v = d.cli_json(&args);
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("ps: {v}"))
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[test]
fn labels_are_annotations_filters_and_live() {
    if !require_root("labels_are_annotations_filters_and_live") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("labels", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("lab.yaml", &labelled("lab", "{app: shop, tier: web}"));
    d.write("other.yaml", &labelled("other", "{app: blog}"));
    d.write(
        "plain.yaml",
        &container_manifest("plain", "exec sleep 1000", ""),
    );
    d.start();
    for n in ["lab", "other", "plain"] {
        d.wait_for(&format!("{n} running"), Duration::from_secs(60), || {
            (d.try_ps_row(n)?["state"] == "running").then_some(())
        });
    }
    let first = d.ps_row("lab");
    let id = first["id"].as_str().unwrap_or_default().to_string();

    // OCI annotations of the created container.
    let config = d.state.join("exec").join(&id).join("config.json");
    let oci: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(oci["annotations"]["app"], "shop", "{}", oci["annotations"]);
    assert_eq!(oci["annotations"]["tier"], "web", "{}", oci["annotations"]);

    // inspect and ps show them; ps filters by them.
    let inspect: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["inspect", "lab"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inspect["labels"]["tier"], "web", "{inspect}");
    assert_eq!(first["labels"]["app"], "shop", "{first}");
    assert_eq!(names(&d, &["label=app"]), ["lab", "other"]);
    assert_eq!(names(&d, &["label=app=shop"]), ["lab"]);
    assert_eq!(names(&d, &["label=app", "label=tier=web"]), ["lab"]);
    assert!(names(&d, &["label=app=none"]).is_empty());
    let bad = d.cli(&["ps", "--filter", "color=red"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("label=KEY"),
        "{bad:?}"
    );

    // A label change: recorded in place, no new container, no restart.
    d.write("lab.yaml", &labelled("lab", "{app: shop, tier: db}"));
    d.wait_for("tier=db recorded", Duration::from_secs(60), || {
        (names(&d, &["label=tier=db"]) == ["lab"]).then_some(())
    });
    let after = d.ps_row("lab");
    assert_eq!(after["id"], first["id"], "recreated: {after}");
    assert_eq!(
        after["started_at"], first["started_at"],
        "restarted: {after}"
    );
    assert!(d.events_of("lab", "container.recreate").is_empty());
    let update = d.events_of("lab", "container.update");
    assert!(
        update
            .iter()
            .any(|e| e.to_string().contains("labels.tier web -> db")),
        "{update:?}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["inspect", "lab"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inspect["labels"]["tier"], "db", "{inspect}");
}
