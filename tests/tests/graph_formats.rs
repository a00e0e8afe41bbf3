//! Every image source `agent image load` takes, from the test image builder's outputs: an OCI
//! layout directory and tar, a `docker save` archive and a root filesystem tarball
//! (`docker import`), each also gzip- and zstd-compressed as a whole (`gzip`, `zstd` from Debian).
//! The OCI image itself has a gzip, a zstd and an uncompressed layer and a whiteout and an opaque
//! directory in its last layer. Each load must give a root filesystem with the content of every
//! layer and the deletions applied.

use std::path::Path;
use std::process::Command;

use agent::driver::graph::{DriverKind, Graph, GraphDriver};
use agent_e2e::graph::{TestImages, agent_ok, images, require_root};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `cmd -c <src> > <dst>` (gzip -n / zstd -q).
fn compress(tool: &str, src: &Path, dst: &Path) {
    let out = Command::new(tool)
        .args(if tool == "gzip" {
            vec!["-n", "-c"]
        } else {
            vec!["-q", "-c"]
        })
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(out.status.success(), "{tool} failed");
    std::fs::write(dst, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
}

/// Removes the container layer on drop.
struct Layer<'g>(&'g Graph, String);

impl Drop for Layer<'_> {
    fn drop(&mut self) {
        let _ = self.0.driver().remove(&self.1);
    }
}

#[test]
fn every_source_format_loads_with_all_layers_applied() {
    if !require_root("every_source_format_loads_with_all_layers_applied") {
        return;
    }
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut sources: Vec<(String, std::path::PathBuf, Option<&str>)> = vec![
        ("oci dir".into(), imgs.dir.join("oci"), None),
        ("oci tar".into(), imgs.dir.join("oci.tar"), None),
        ("docker archive".into(), imgs.dir.join("docker.tar"), None),
        (
            "rootfs tarball".into(),
            imgs.dir.join("rootfs.tar"),
            Some("imported:1"),
        ),
    ];
    for (base, name) in [
        ("oci.tar", None),
        ("docker.tar", None),
        ("rootfs.tar", Some("imported:1")),
    ] {
        for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
            let dst = tmp.path().join(format!("{base}.{ext}"));
            compress(tool, &imgs.dir.join(base), &dst);
            sources.push((format!("{base}.{ext}"), dst, name));
        }
    }
    let busybox = std::fs::read("/bin/busybox").unwrap_or_default();
    for (i, (what, path, name)) in sources.iter().enumerate() {
        let state = tmp.path().join(format!("state{i}"));
        let mut args = vec!["image", "load", "--state-dir"];
        let st = s(&state);
        let p = s(path);
        args.push(&st);
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        args.push(&p);
        let out = agent_ok(&args);
        let list = images(&state);
        assert_eq!(list.len(), 1, "{what}: {out} {list:?}");
        let img = &list[0];
        let want_name = name.unwrap_or("agent-test/busybox:latest");
        assert_eq!(img["names"][0], want_name, "{what}");
        let layers = img["layers"].as_array().map(|a| a.len()).unwrap_or(0);
        if name.is_some() {
            assert_eq!(layers, 1, "{what}: a root filesystem tarball is one layer");
        } else {
            assert_eq!(img["id"], imgs.var("CONFIG_DIGEST"), "{what}");
            assert_eq!(layers, 3, "{what}");
        }

        // The root filesystem a container gets.
        let graph = Graph::open(&state, Some(DriverKind::Vfs)).unwrap_or_else(|e| panic!("{e}"));
        let id = format!("fmt{i}-{}", std::process::id());
        graph
            .create_container(&id, want_name)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let _layer = Layer(&graph, id.clone());
        let root = graph
            .driver()
            .mount(&id)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            std::fs::read(root.join("bin/busybox")).ok().as_ref(),
            Some(&busybox),
            "{what}: layer 1"
        );
        assert!(root.join("etc/motd").is_file(), "{what}: layer 2 (zstd)");
        assert!(root.join("etc/layer3").is_file(), "{what}: layer 3");
        assert!(root.join("data/kept.txt").is_file(), "{what}");
        assert!(
            !root.join("data/removed.txt").exists(),
            "{what}: whiteout not applied"
        );
        assert!(
            root.join("opaque/new.txt").is_file() && !root.join("opaque/old1.txt").exists(),
            "{what}: opaque directory not applied"
        );
        use std::os::unix::fs::MetadataExt;
        let owned = std::fs::symlink_metadata(root.join("home/user/owned"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            (owned.uid(), owned.gid(), owned.mode() & 0o7777),
            (1000, 1000, 0o640),
            "{what}: ownership"
        );
    }
}
