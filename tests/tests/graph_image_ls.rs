//! Issue 16 item 10: `agent image ls` shows the Image manifests' names (not `1:latest` or
//! `rootfs-tar:/path:latest`) in aligned columns and creates no state directory; when the last
//! manifest using an image is gone, the "image removed" event means it: the image, its layers
//! and blobs are gone from `graph/`.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use agent_e2e::graph::agent;

fn ls(state: &std::path::Path) -> String {
    let out = agent(&["image", "ls", "--state-dir", &state.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn image_ls_shows_manifest_names_aligned_and_removal_frees_the_graph() {
    if !require_root("image_ls_shows_manifest_names_aligned_and_removal_frees_the_graph") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("imagels", "");

    // No state directory yet: an empty listing, and still no state directory.
    let text = ls(&d.state);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("NAME"), "{text}");
    assert!(!d.state.exists(), "image ls created the state directory");

    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "rootfs.yaml",
        "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: plain-rootfs\nspec:\n  rootfsTar:\n    path: /var/lib/agent-test-images/rootfs.tar\n",
    );
    d.write("c.yaml", &container_manifest("c", "sleep 1000", ""));
    d.wait_for("c running", Duration::from_secs(60), || {
        (d.ps_row("c")["state"] == "running").then_some(())
    });
    d.wait_for("both images", Duration::from_secs(60), || {
        let t = ls(&d.state);
        (t.lines().count() == 3).then_some(())
    });
    let text = ls(&d.state);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("busybox:latest "), "{text}");
    assert!(lines[2].starts_with("plain-rootfs:latest "), "{text}");
    assert!(
        !text.contains("rootfs-tar:") && !text.contains("docker-archive:"),
        "{text}"
    );
    // Aligned: every column starts at the same offset on every line.
    let starts = |l: &str| -> Vec<usize> {
        let b = l.as_bytes();
        (1..b.len())
            .filter(|&i| b[i] != b' ' && b[i - 1] == b' ' && i >= 2 && b[i - 2] == b' ')
            .collect()
    };
    let header = starts(lines[0]);
    assert_eq!(header.len(), 4, "{text}");
    for l in &lines[1..] {
        let s = starts(l);
        // ID, MANIFEST and PLATFORM are left-aligned; SIZE right-aligned (ends where it does).
        for col in [0, 1, 3] {
            let at = header[col];
            assert!(
                s.contains(&at),
                "column {col} not at {at} in {l:?}:\n{text}"
            );
        }
        assert_eq!(l.find("  linux/"), lines[0].find("  PLATFORM"), "{text}");
    }

    // Every manifest gone: containers, images, layers and blobs go.
    d.remove_all_and_wait(Duration::from_secs(60));
    let graph = d.state.join("graph");
    d.wait_for(
        "images removed from the graph",
        Duration::from_secs(60),
        || {
            let _ = d.cli(&["apply"]);
            (ls(&d.state).lines().count() == 1).then_some(())
        },
    );
    let removed: Vec<_> = d
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "image.remove")
        .collect();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        entries(&graph.join("layers"))
            .iter()
            .all(|n| n.starts_with('.')),
        "layers left: {:?}",
        entries(&graph.join("layers"))
    );
    assert_eq!(
        entries(&graph.join("blobs/sha256")),
        Vec::<String>::new(),
        "blobs left"
    );
    d.stop();
}
