//! Issue 19 item 4: a layout caught half-written (index.json already naming a manifest whose
//! layers are not listed yet, or whose layer blob is not there yet) is never recorded: the
//! import verifies every referenced blob and wants a config and layers, leaves nothing, and the
//! next try (once the build finished) imports the complete image and the container runs.

use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::graph::{agent, images};
use agent_e2e::layout::{Entry, Layout};

#[test]
fn a_half_written_layout_is_not_recorded_and_the_finished_one_is_used() {
    if !require_root("a_half_written_layout_is_not_recorded_and_the_finished_one_is_used") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("halfwritten", "");
    let mut layout = Layout::new(&d.dir.path().join("app"));

    // Step 1 of a build: a config without a command and a manifest without layers, listed.
    let cfg = layout.blob(
        serde_json::to_vec(&serde_json::json!({
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap_or_default()
        .as_slice(),
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 100},
        "layers": []
    }))
    .unwrap_or_default();
    let size = {
        let c = std::fs::read(layout.dir.join("blobs/sha256").join(&cfg[7..])).unwrap_or_default();
        c.len()
    };
    let manifest =
        String::from_utf8_lossy(&manifest).replace("\"size\":100", &format!("\"size\":{size}"));
    let mdigest = layout.blob(manifest.as_bytes());
    layout.write_index_of(&[serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": mdigest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "1"},
    })]);
    let lp = layout.dir.to_string_lossy().into_owned();
    let cli_state = d.dir.path().join("cli");
    let cs = cli_state.to_string_lossy().into_owned();
    let out = agent(&["image", "load", "--state-dir", &cs, &lp]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a zero-layer image was loaded: {err}"
    );
    assert!(err.contains("lists no layers"), "{err}");
    assert!(images(&cli_state).is_empty());

    d.start();
    d.write(
        "app.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: app\nspec:\n  ociLayout:\n    path: {lp}\n    tag: \"1\"\n---\n\
             apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: app\nspec:\n  image: app\n  \
             command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n"
        ),
    );
    d.wait_for(
        "the half-written import refused",
        Duration::from_secs(60),
        || d.log_text().contains("lists no layers").then_some(()),
    );
    assert!(
        images(&d.state).is_empty(),
        "a half-written image was recorded"
    );

    // Step 2: the index names the full image but one layer blob is still being written.
    let added = layout.add(
        "1",
        &[Entry::file("etc/which", b"done\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    let blob = layout.dir.join("blobs/sha256").join(&added.layer[7..]);
    let full = std::fs::read(&blob).unwrap_or_default();
    std::fs::remove_file(&blob).unwrap_or_else(|e| panic!("{e}"));
    d.wait_for(
        "the import with a missing blob refused",
        Duration::from_secs(60),
        || {
            let _ = d.cli(&["apply"]);
            d.log_text().contains(&added.layer[7..]).then_some(())
        },
    );
    assert!(
        images(&d.state).is_empty(),
        "an image with a missing blob was recorded"
    );

    // The build finishes: the next try imports it and the container runs it.
    std::fs::write(&blob, &full).unwrap_or_else(|e| panic!("{e}"));
    let row = d.wait_for("app running", Duration::from_secs(90), || {
        let _ = d.cli(&["apply"]);
        let r = d.ps_row("app");
        (r["state"] == "running").then_some(r)
    });
    let id = row["id"].as_str().unwrap_or_default();
    assert!(d.sh_in(id, "grep -qx done /etc/which"));
    let imgs = images(&d.state);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    assert_eq!(imgs[0]["id"], added.config.as_str());
    d.stop();
}
