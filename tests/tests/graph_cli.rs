//! The image commands around a container layer, for both graph drivers: `agent image rm` is
//! refused while a container layer uses the image, `agent image prune --all` keeps it,
//! `agent export` writes the container's whole root filesystem (image layers with their
//! whiteouts applied, plus the container's own changes), and once the container layer is gone
//! `rm` and `prune` leave an empty graph.

use std::collections::BTreeMap;
use std::path::Path;

use agent::driver::graph::{DriverKind, Graph, GraphDriver};
use agent_e2e::graph::{TestImages, agent, agent_ok, images, require_root};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Removes the container layer (unmounting it) on drop, even when an assertion failed.
struct Layer<'g> {
    graph: &'g Graph,
    id: String,
}

impl Drop for Layer<'_> {
    fn drop(&mut self) {
        let _ = self.graph.driver().remove(&self.id);
    }
}

/// Path -> (entry type byte, contents) of every entry of a tar.
fn tar_entries(bytes: &[u8]) -> BTreeMap<String, (u8, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap_or_else(|e| panic!("{e}")) {
        let mut e = e.unwrap_or_else(|e| panic!("{e}"));
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let kind = e.header().entry_type().as_byte();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap_or_else(|e| panic!("{e}"));
        out.insert(name, (kind, data));
    }
    out
}

fn tree_empty(state: &Path, dir: &str) -> Vec<String> {
    std::fs::read_dir(state.join(dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn lifecycle(kind: DriverKind, flag: &str) {
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = tmp.path().join("state");
    let st = s(&state);
    let name = "agent-test/busybox:latest";
    agent_ok(&[
        "image",
        "load",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
        &s(&imgs.dir.join("oci.tar")),
    ]);
    let graph = Graph::open(&state, Some(kind)).unwrap_or_else(|e| panic!("{e}"));
    let id = format!("cli-{flag}-{}", std::process::id());
    graph
        .create_container(&id, name)
        .unwrap_or_else(|e| panic!("create layer: {e}"));
    let layer = Layer {
        graph: &graph,
        id: id.clone(),
    };
    // The container changes its root filesystem.
    let root = graph.driver().mount(&id).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("hello.txt"), b"from the container").unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(root.join("etc/motd")).unwrap_or_else(|e| panic!("{e}"));
    graph
        .driver()
        .unmount(&id)
        .unwrap_or_else(|e| panic!("{e}"));

    // In use: rm refused, prune --all keeps it.
    let out = agent(&[
        "image",
        "rm",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
        name,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{kind:?}: rm of a used image: {err}"
    );
    assert!(err.contains("in use") && err.contains(&id), "{err}");
    let pruned = agent_ok(&[
        "image",
        "prune",
        "--all",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
    ]);
    assert!(
        pruned.contains("Removed 0 image(s), 0 layer(s), 0 blob(s)"),
        "{pruned}"
    );
    assert_eq!(images(&state).len(), 1);

    // Export: the merged view, to a file and to standard output alike.
    let file = tmp.path().join("export.tar");
    agent_ok(&[
        "export",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
        &id,
        "-o",
        &s(&file),
    ]);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
    let stdout = agent(&[
        "export",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
        &id,
        "-o",
        "-",
    ]);
    assert!(stdout.status.success());
    assert_eq!(
        tar_entries(&stdout.stdout),
        tar_entries(&bytes),
        "{kind:?}: -o - differs"
    );
    let entries = tar_entries(&bytes);
    let busybox = std::fs::read("/bin/busybox").unwrap_or_default();
    assert_eq!(
        entries.get("bin/busybox").map(|e| &e.1),
        Some(&busybox),
        "{kind:?}"
    );
    assert_eq!(
        entries.get("hello.txt").map(|e| e.1.as_slice()),
        Some(&b"from the container"[..])
    );
    assert!(entries.contains_key("etc/layer3") && entries.contains_key("opaque/new.txt"));
    for gone in [
        "etc/motd",
        "data/removed.txt",
        "opaque/old1.txt",
        "opaque/sub",
    ] {
        assert!(
            !entries.contains_key(gone),
            "{kind:?}: export has deleted {gone}"
        );
    }
    assert!(
        !entries.keys().any(|k| k.contains(".wh.")),
        "{kind:?}: whiteouts in an export"
    );
    // the hard link of the image stays a hard link: one name a file ('0'), the other a link
    let mut kinds = [
        entries.get("data/hardlink").map(|e| e.0),
        entries.get("data/kept.txt").map(|e| e.0),
    ];
    kinds.sort();
    assert_eq!(kinds, [Some(b'0'), Some(b'1')], "{kind:?}");
    if kind == DriverKind::Overlay {
        // export mounted the unmounted layer for the duration only
        assert!(
            !graph.driver().is_mounted(&id).unwrap_or(true),
            "left mounted"
        );
    }

    // Container gone: rm works and prune empties the graph.
    drop(layer);
    agent_ok(&[
        "image",
        "rm",
        "--state-dir",
        &st,
        "--graph-driver",
        flag,
        name,
    ]);
    assert!(images(&state).is_empty());
    let pruned = agent_ok(&["image", "prune", "--state-dir", &st, "--graph-driver", flag]);
    assert!(
        pruned.contains("Removed 0 image(s), 3 layer(s)"),
        "{pruned}"
    );
    for d in [
        "graph/layers",
        "graph/blobs/sha256",
        "graph/blobs/tmp",
        "graph/containers",
    ] {
        let left = tree_empty(&state, d);
        assert!(left.is_empty(), "{kind:?}: {d} after prune: {left:?}");
    }
}

#[test]
fn rm_prune_and_export_around_a_container_layer_overlay() {
    if !require_root("rm_prune_and_export_around_a_container_layer_overlay") {
        return;
    }
    lifecycle(DriverKind::Overlay, "overlay");
}

#[test]
fn rm_prune_and_export_around_a_container_layer_vfs() {
    if !require_root("rm_prune_and_export_around_a_container_layer_vfs") {
        return;
    }
    lifecycle(DriverKind::Vfs, "vfs");
}
