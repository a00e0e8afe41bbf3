//! Hostile image configs through the daemon: the image is untrusted, the manifest that names it
//! is not. An image `Volumes` entry at `/proc` (or inside it) would put an anonymous volume, a
//! directory the container fills and keeps across restarts, in place of the runtime's procfs; an
//! `Env` entry with a NUL or an empty name, or an entrypoint argument with a NUL, cannot be
//! given to a process as written. Each container is refused with an error that names the
//! field and the value, and the agent goes on running the others.

use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::layout::Layout;

fn pair(layout: &Layout, tag: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: i{tag}\nspec:\n  ociLayout:\n    \
         path: {}\n    tag: \"{tag}\"\n---\napiVersion: agent/v1\nkind: Container\nmetadata:\n  \
         name: c{tag}\nspec:\n  image: i{tag}\n  networkMode: none\n  stopGracePeriod: 1s\n---\n",
        layout.dir.display()
    )
}

#[test]
fn hostile_image_configs_are_refused_with_the_reason() {
    if !require_root("hostile_image_configs_are_refused_with_the_reason") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("hostcfg", "");
    let mut layout = Layout::new(&d.dir.path().join("img"));
    let sleep = serde_json::json!(["sleep", "1000"]);
    let cases = [
        (
            "proc",
            serde_json::json!({"Volumes": {"/proc": {}}, "Cmd": sleep}),
            "nothing may be mounted at /proc",
        ),
        (
            "procsys",
            serde_json::json!({"Volumes": {"/proc/sys": {}}, "Cmd": sleep}),
            "nothing may be mounted at /proc",
        ),
        (
            "envnul",
            serde_json::json!({"Env": ["A=b\u{0}c"], "Cmd": sleep}),
            "environment entry",
        ),
        (
            "envempty",
            serde_json::json!({"Env": ["=x"], "Cmd": sleep}),
            "has an empty name",
        ),
        (
            "argnul",
            serde_json::json!({"Entrypoint": ["/bin/sh", "-c", "sleep 1000\u{0}; echo hidden"]}),
            "contains a NUL byte",
        ),
        ("good", serde_json::json!({"Cmd": sleep}), ""),
    ];
    let mut text = String::new();
    for (tag, config, _) in &cases {
        layout.add(tag, &[], config.clone());
        text.push_str(&pair(&layout, tag));
    }
    d.start();
    d.write("all.yaml", &text);
    d.wait_for("cgood running", Duration::from_secs(60), || {
        (d.try_ps_row("cgood")?["state"] == "running").then_some(())
    });
    for (tag, _, why) in cases.iter().filter(|c| c.0 != "good") {
        let name = format!("c{tag}");
        let failed = d.wait_for(&format!("{name} refused"), Duration::from_secs(60), || {
            d.events_of(&name, "change.failed").into_iter().next()
        });
        let error = failed["message"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{name}: expected {why:?} in: {error}");
        let row = d.try_ps_row(&name);
        assert!(
            row.as_ref().is_none_or(|r| r["state"] != "running"),
            "{name} runs: {row:?}"
        );
    }
    // The agent is still there and the good container untouched.
    assert_eq!(d.ps_row("cgood")["state"], "running");
}
