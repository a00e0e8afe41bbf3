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
    assert_eq!(missing.status.code(), Some(1));

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

fn volume(name: &str, labels: &str) -> String {
    format!("apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: {name}\n{labels}---\n")
}

fn names(rows: &serde_json::Value) -> Vec<String> {
    rows.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 19 item 8 (second part): `agent volume rm` removes an unused volume (directory and
/// store row) and refuses one in use (naming the container, running or stopped) or still
/// declared (naming the file); `agent volume prune` removes only unused ones (label filter,
/// anonymous volumes of containers gone for good), prints the bytes reclaimed, and the data of an
/// in-use volume survives it; with the agent stopped the same holds (in-process removal). On the
/// old code `volume rm|prune` do not exist.
#[test]
fn volume_rm_and_prune() {
    if !require_root("volume_rm_and_prune") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("volrm", "");
    d.start();
    d.write("image.yaml", agent_e2e::daemon::BUSYBOX_IMAGE);
    let user = agent_e2e::daemon::container_manifest(
        "user",
        "sleep 1000",
        "  volumes: [{volume: used, target: /data}]\n",
    );
    let all = format!(
        "{}{}{}{}{}{}",
        volume("used", ""),
        volume("spare", ""),
        volume("old", ""),
        volume("cache1", "  labels: {tier: cache}\n"),
        volume("other", ""),
        user
    );
    d.write("vols.yaml", &all);
    d.wait_for("user running", Duration::from_secs(60), || {
        (d.ps_row("user")["state"] == "running").then_some(())
    });
    // old, cache1 and other lose their manifest: kept (reclaim: retain), unused, undeclared.
    d.write(
        "vols.yaml",
        &format!("{}{}{}", volume("used", ""), volume("spare", ""), user),
    );
    d.wait_for("old undeclared", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let rows = d.cli_json(&["volume", "ls"]);
        (row(&rows, "old").is_some_and(|r| r["declared"] == false)).then_some(())
    });
    let state = d.state.clone();
    let data = |n: &str| state.join("volumes").join(n).join("_data");
    std::fs::write(data("used").join("keep.txt"), b"precious").expect("write");
    std::fs::write(data("old").join("f"), vec![1u8; 64 * 1024]).expect("write");
    std::fs::write(data("cache1").join("f"), vec![1u8; 128 * 1024]).expect("write");
    std::fs::write(data("other").join("f"), vec![1u8; 256 * 1024]).expect("write");
    // An anonymous volume whose container is gone for good (left by a crash, say).
    let ghost = d.state.join("anonymous-volumes/ghost/srv/_data");
    std::fs::create_dir_all(&ghost).expect("mkdir");
    std::fs::write(ghost.join("f"), vec![1u8; 32 * 1024]).expect("write");

    // In use: refused, naming the container; running and stopped alike.
    let refused = |d: &Daemon, name: &str, needle: &str| {
        let out = d.cli(&["volume", "rm", name]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "rm {name} succeeded: {err}");
        assert!(err.contains(needle), "rm {name}: {err}");
    };
    refused(&d, "used", "user");
    d.cli_ok(&["stop", "user"]);
    refused(&d, "used", "user");
    // Declared but unused: refused, naming the file.
    refused(&d, "spare", "vols.yaml");
    refused(&d, "nope", "no such volume");
    assert!(data("spare").exists());

    // Unused: directory and row gone, event recorded.
    let out = d.cli_ok(&["volume", "rm", "old"]);
    assert_eq!(out.trim(), "old");
    assert!(!d.state.join("volumes/old").exists());
    let rows = d.cli_json(&["volume", "ls"]);
    assert!(row(&rows, "old").is_none(), "{rows}");
    assert!(
        d.events()
            .iter()
            .any(|e| e["kind"] == "volume.remove" && e["object"] == "volume/old"),
        "no volume.remove event"
    );

    // Prune with a label filter: only cache1.
    let pruned = d.cli_json(&["volume", "prune", "--filter", "label=tier=cache"]);
    assert_eq!(pruned["deleted"], serde_json::json!(["cache1"]), "{pruned}");
    assert!(
        pruned["reclaimed"].as_u64().unwrap_or(0) >= 128 * 1024,
        "{pruned}"
    );
    assert!(data("other").exists());
    // Prune (no terminal: no question): other and the ghost's anonymous volume; not used,
    // not spare.
    let text = d.cli_ok(&["volume", "prune"]);
    assert!(
        text.contains("other") && text.contains("ghost:/srv"),
        "{text}"
    );
    let bytes: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Total reclaimed space: ")?
                .split('(')
                .nth(1)?
                .strip_suffix(" bytes)")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no total: {text}"));
    assert!(bytes >= (256 + 32) * 1024, "{text}");
    assert!(!data("other").exists() && !ghost.exists());
    assert!(!d.state.join("anonymous-volumes/ghost").exists());
    assert_eq!(
        std::fs::read(data("used").join("keep.txt")).unwrap_or_default(),
        b"precious"
    );
    let left = names(&d.cli_json(&["volume", "ls"]));
    assert!(
        left.contains(&"used".to_string()) && left.contains(&"spare".to_string()),
        "{left:?}"
    );

    // Without the agent: the same refusals and removals, in process.
    d.write(
        "vols.yaml",
        &format!("{}{}{}", volume("used", ""), volume("late", ""), user),
    );
    d.wait_for("spare undeclared", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let rows = d.cli_json(&["volume", "ls"]);
        (row(&rows, "spare").is_some_and(|r| r["declared"] == false)).then_some(())
    });
    d.stop();
    refused(&d, "used", "user");
    refused(&d, "late", "vols.yaml");
    let out = d.cli(&["volume", "rm", "spare"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.state.join("volumes/spare").exists());
    assert_eq!(
        std::fs::read(data("used").join("keep.txt")).unwrap_or_default(),
        b"precious"
    );
}

/// A kill -9 in the middle of `agent volume rm` (after the directory went to the trash, before
/// the store recorded it) leaves no half state: the next start completes the removal (row
/// deleted, trash emptied). On the old code there is no journalled removal to complete.
#[test]
fn volume_rm_interrupted_is_completed_at_start() {
    if !require_root("volume_rm_interrupted_is_completed_at_start") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("volrmkill", "");
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "30000");
    d.start();
    d.write("v.yaml", &volume("doomed", ""));
    d.wait_for("doomed created", Duration::from_secs(60), || {
        let rows = d.cli_json(&["volume", "ls"]);
        row(&rows, "doomed").map(|_| ())
    });
    d.remove("v.yaml");
    d.wait_for("doomed undeclared", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let rows = d.cli_json(&["volume", "ls"]);
        (row(&rows, "doomed").is_some_and(|r| r["declared"] == false)).then_some(())
    });
    let mut rm = std::process::Command::new(agent_e2e::agent_bin())
        .args(["volume", "rm", "doomed", "--socket"])
        .arg(&d.socket)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--config")
        .arg(&d.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rm");
    let trash = d.state.join("volumes-trash");
    d.wait_for("moved to the trash", Duration::from_secs(20), || {
        std::fs::read_dir(&trash)
            .ok()
            .and_then(|mut r| r.next())
            .map(|_| ())
    });
    d.stop_with(libc::SIGKILL);
    let _ = rm.wait();
    assert!(!d.state.join("volumes/doomed").exists());
    d.clear_env();
    d.start();
    d.wait_for("removal completed", Duration::from_secs(60), || {
        let rows = d.cli_json(&["volume", "ls"]);
        row(&rows, "doomed").is_none().then_some(())
    });
    assert_eq!(
        std::fs::read_dir(&trash).map(|r| r.count()).unwrap_or(0),
        0,
        "trash left"
    );
    assert!(
        d.events()
            .iter()
            .any(|e| e["kind"] == "volume.remove" && e["object"] == "volume/doomed"),
        "no volume.remove event"
    );
}
