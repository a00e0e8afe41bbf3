//! Issue 19 item 8 (first part): `agent volume ls|inspect` and `agent system df` show the
//! volumes (named, retained after their manifest went, anonymous), their size and users, and the
//! state directory's disk use with what is reclaimable; with the agent running and without.

use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::layout::{Entry, Layout};

fn row<'a>(rows: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    rows.as_array()?.iter().find(|r| r["name"] == name)
}

#[test]
fn volume_ls_inspect_and_system_df() {
    if !require_root("volume_ls_inspect_and_system_df") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("volcmds", "");
    let mut layout = Layout::new(&d.dir.path().join("app"));
    layout.add(
        "1",
        &[
            Entry::dir("data", 1000, 1000, 0o750),
            Entry::file("data/seed.txt", &vec![b'x'; 64 * 1024], 1000, 1000, 0o640),
        ],
        serde_json::json!({"Volumes": {"/data": {}}}),
    );
    d.start();
    let image = format!(
        "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: app\nspec:\n  ociLayout:\n    path: {}\n    tag: \"1\"\n",
        layout.dir.display()
    );
    let ctr = |name: &str, vols: &str| {
        format!(
            "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: app\n  \
             command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n{vols}"
        )
    };
    d.write("image.yaml", &image);
    d.write(
        "keep.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: keep\n---\n{}",
            ctr("user", "  volumes: [{volume: keep, target: /srv}]\n")
        ),
    );
    d.write("anon.yaml", &ctr("anon", ""));
    for n in ["user", "anon"] {
        d.wait_for(&format!("{n} running"), Duration::from_secs(60), || {
            (d.ps_row(n)["state"] == "running").then_some(())
        });
    }
    let rows = d.cli_json(&["volume", "ls"]);
    let keep = row(&rows, "keep").unwrap_or_else(|| panic!("keep missing: {rows}"));
    assert_eq!(keep["kind"], "named");
    assert_eq!(keep["users"], serde_json::json!(["user"]));
    assert_eq!(keep["declared"], true);
    let anon = row(&rows, "anon:/data").unwrap_or_else(|| panic!("anon missing: {rows}"));
    assert_eq!(anon["kind"], "anonymous");
    assert_eq!(anon["users"], serde_json::json!(["anon"]));
    assert!(anon["size"].as_u64().unwrap_or(0) >= 64 * 1024, "{anon}");
    // `user` mounts keep at /srv, so its image /data got an anonymous volume too.
    assert!(row(&rows, "user:/data").is_some(), "{rows}");
    let text = d.cli_ok(&["volume", "ls"]);
    assert!(
        text.starts_with("NAME") && text.contains("anon:/data"),
        "{text}"
    );
    let one = d.cli_ok(&["volume", "inspect", "keep"]);
    assert!(one.contains("\"declared\": true"), "{one}");
    let missing = d.cli(&["volume", "inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(2));

    // The Volume manifest and its user go: the data stays (reclaim: retain), shown as
    // reclaimable.
    d.remove("keep.yaml");
    d.wait_for("user removed", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        d.try_ps_row("user").is_none().then_some(())
    });
    std::fs::write(
        d.state.join("volumes/keep/_data/big"),
        vec![1u8; 256 * 1024],
    )
    .expect("write");
    let rows = d.cli_json(&["volume", "ls"]);
    let keep = row(&rows, "keep").unwrap_or_else(|| panic!("keep missing: {rows}"));
    assert_eq!(keep["declared"], false, "{keep}");
    assert_eq!(keep["users"], serde_json::json!([]));
    let df = d.cli_json(&["system", "df"]);
    let kind = |k: &str| {
        df.as_array()
            .and_then(|a| a.iter().find(|r| r["kind"] == k).cloned())
            .unwrap_or_else(|| panic!("{k} missing: {df}"))
    };
    assert_eq!(kind("images")["count"], 1);
    assert_eq!(kind("images")["active"], 1);
    assert!(
        kind("volumes")["reclaimable"].as_u64().unwrap_or(0) >= 256 * 1024,
        "{df}"
    );
    assert!(kind("layers")["size"].as_u64().unwrap_or(0) > 0, "{df}");
    let text = d.cli_ok(&["system", "df"]);
    assert!(
        text.starts_with("TYPE") && text.contains("volumes"),
        "{text}"
    );

    // Without the agent: read from the store.
    d.stop();
    let rows = d.cli_json(&["volume", "ls"]);
    assert!(
        row(&rows, "keep").is_some() && row(&rows, "anon:/data").is_some(),
        "{rows}"
    );
}
