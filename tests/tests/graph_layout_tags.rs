//! Issue 19 item 2: an `ociLayout`'s `tag` selects the image by its
//! `org.opencontainers.image.ref.name`; an unknown tag is refused with the tags the layout has;
//! the image is known by its Image manifest's name, never by the tag (two layouts both tagged
//! `1` do not collide as `1:latest`).

use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::graph::{agent, images};
use agent_e2e::layout::{Entry, Layout};

fn image_and_container(name: &str, layout: &std::path::Path, tag: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: {name}\nspec:\n  ociLayout:\n    path: {}\n    tag: \"{tag}\"\n---\n\
         apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {name}\n  \
         command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n",
        layout.display()
    )
}

fn names(state: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = images(state)
        .iter()
        .flat_map(|i| i["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]
fn layout_tag_selects_the_image_and_unknown_tags_are_refused() {
    if !require_root("layout_tag_selects_the_image_and_unknown_tags_are_refused") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("layouttags", "");
    let mut two = Layout::new(&d.dir.path().join("two-tags"));
    let one = two.add(
        "1",
        &[Entry::file("etc/which", b"one\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    let second = two.add(
        "2",
        &[Entry::file("etc/which", b"two\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    assert_ne!(one.config, second.config);
    // Another layout whose only image is also tagged `1`.
    let mut other = Layout::new(&d.dir.path().join("other"));
    let third = other.add(
        "1",
        &[Entry::file("etc/which", b"other\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );

    // The CLI: `--tag` selects, an unknown tag lists the ones there are.
    let cli_state = d.dir.path().join("cli");
    let cs = cli_state.to_string_lossy().into_owned();
    let lp = two.dir.to_string_lossy().into_owned();
    let out = agent(&["image", "load", "--state-dir", &cs, "--tag", "9", &lp]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has no image tagged \"9\"; its tags: 1, 2"),
        "{err}"
    );
    let out = agent(&[
        "image",
        "load",
        "--state-dir",
        &cs,
        "--tag",
        "2",
        "--name",
        "web",
        &lp,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imgs = images(&cli_state);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    assert_eq!(imgs[0]["id"], second.config.as_str());
    assert_eq!(names(&cli_state), ["web:latest"]);

    // The daemon: tag 2 of the two-tag layout, tag 1 of the other layout.
    d.start();
    d.write("web.yaml", &image_and_container("web", &two.dir, "2"));
    d.write("db.yaml", &image_and_container("db", &other.dir, "1"));
    let mut ids = Vec::new();
    for name in ["web", "db"] {
        let row = d.wait_for(&format!("{name} running"), Duration::from_secs(60), || {
            let r = d.ps_row(name);
            (r["state"] == "running").then_some(r)
        });
        ids.push(row["id"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        d.sh_in(&ids[0], "grep -qx two /etc/which"),
        "web does not run tag 2"
    );
    assert!(
        d.sh_in(&ids[1], "grep -qx other /etc/which"),
        "db does not run the other layout"
    );
    let graph_images = images(&d.state);
    let id_of = |n: &str| {
        graph_images
            .iter()
            .find(|i| {
                i["names"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == n))
            })
            .map(|i| i["id"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(id_of("web:latest").as_deref(), Some(second.config.as_str()));
    assert_eq!(id_of("db:latest").as_deref(), Some(third.config.as_str()));
    assert_eq!(
        names(&d.state),
        ["db:latest", "web:latest"],
        "named by the tag?"
    );
    let ls = agent(&["image", "ls", "--state-dir", &d.state.to_string_lossy()]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        !ls.contains("1:latest") && !ls.contains("oci-layout:"),
        "{ls}"
    );

    // An unknown tag is refused with the tags the layout has; nothing more is recorded.
    d.write("bad.yaml", &image_and_container("bad", &two.dir, "3"));
    d.wait_for("unknown tag refused", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        d.log_text()
            .contains("has no image tagged \\\"3\\\"; its tags: 1, 2")
            .then_some(())
    });
    assert_eq!(images(&d.state).len(), 2);
    assert!(d.try_ps_row("bad").is_none_or(|r| r["state"] != "running"));
    d.stop();
}
