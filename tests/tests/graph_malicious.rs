//! Hostile images through `agent image load`: every one is rejected, no image is recorded, the
//! failed load leaves no blob, temporary file or layer behind, and nothing changes outside the
//! state directory (a sentinel tree beside it is compared before and
//! after). The unpacker's unit tests hold the full corpus; this runs a cross-section end to end,
//! plus what only the whole import path can check (wrong blob digests, wrong diff ids).

use std::path::Path;

use agent_e2e::graph::{Kind, RawTar, TestImages, agent, agent_ok, images, require_root, snapshot};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn malicious_layers_are_rejected_and_nothing_escapes() {
    if !require_root("malicious_layers_are_rejected_and_nothing_escapes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir_all(sentinel.join("sub")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sentinel.join("secret"), b"original").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sentinel.join("sub/file"), b"keep").unwrap_or_else(|e| panic!("{e}"));
    let state = tmp.path().join("state");
    let tars = tmp.path().join("tars");
    std::fs::create_dir_all(&tars).unwrap_or_else(|e| panic!("{e}"));
    let before = snapshot(tmp.path());

    // Paths that reach the sentinel from anywhere inside the state directory.
    let abs = s(&sentinel);
    let rel = format!("{}{}", "../".repeat(20), abs.trim_start_matches('/'));
    let big = vec![b'a'; 2 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot traversal",
            RawTar::default()
                .file(&format!("{rel}/secret"), b"pwned")
                .finish(),
        ),
        (
            "absolute path",
            RawTar::default()
                .file(&format!("{abs}/secret"), b"pwned")
                .finish(),
        ),
        (
            "symlinked parent (absolute)",
            RawTar::default()
                .entry(Kind::Symlink, "evil", &abs, b"", None)
                .file("evil/secret", b"pwned")
                .finish(),
        ),
        (
            "symlinked parent (relative, planted deeper)",
            RawTar::default()
                .entry(Kind::Dir, "d", "", b"", None)
                .entry(Kind::Symlink, "d/l", &rel, b"", None)
                .file("d/l/sub/file", b"pwned")
                .finish(),
        ),
        (
            "hardlink escape",
            RawTar::default()
                .entry(Kind::Hardlink, "h", &format!("{abs}/secret"), b"", None)
                .finish(),
        ),
        (
            "hardlink through a symlink",
            RawTar::default()
                .entry(Kind::Symlink, "s", &abs, b"", None)
                .entry(Kind::Hardlink, "h", "s/secret", b"", None)
                .finish(),
        ),
        (
            "oversized PAX header",
            RawTar::default()
                .entry(Kind::Pax, "p", "", &big, None)
                .file("f", b"x")
                .finish(),
        ),
        (
            "size larger than the archive",
            RawTar::default()
                .entry(Kind::File, "f", "", b"short", Some(1 << 40))
                .finish(),
        ),
    ];
    for (i, (case, bytes)) in cases.iter().enumerate() {
        let file = tars.join(format!("case{i}.tar"));
        std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
        let name = format!("evil/case{i}");
        let out = agent(&[
            "image",
            "load",
            "--state-dir",
            &s(&state),
            "--name",
            &name,
            &s(&file),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: not rejected: {err}");
        assert!(err.contains("agent:"), "{case}: no error message: {err}");
        let why = match *case {
            "dotdot traversal" => "'..' path component",
            "absolute path" => "absolute path",
            "hardlink escape" => "outside the layer",
            "oversized PAX header" => "oversized PAX header",
            "size larger than the archive" => "not a readable tar archive",
            _ => "a parent is a symlink",
        };
        assert!(err.contains(why), "{case}: expected {why:?} in: {err}");
    }
    assert!(images(&state).is_empty(), "an evil image was recorded");
    assert_graph_empty(&state);
    // Nothing outside the state directory changed (the tars dir only got our inputs).
    let after: std::collections::BTreeMap<_, _> = snapshot(tmp.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&state) && !p.starts_with(&tars))
        .collect();
    let before: std::collections::BTreeMap<_, _> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&tars))
        .collect();
    assert_eq!(
        before, after,
        "something outside the state directory changed"
    );
    assert!(!Path::new("/null").exists() && !tmp.path().join("null").exists());
    // No half-unpacked layer is left where an image could use it.
    let layers: Vec<_> = std::fs::read_dir(state.join("graph/layers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(layers.is_empty(), "layers left: {layers:?}");
}

/// Copies the test image's OCI layout to `dir` and lets `edit` change it.
fn edited_layout(imgs: &TestImages, dir: &Path) {
    let src = imgs.dir.join("oci");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap_or_else(|e| panic!("{e}"));
    for f in ["oci-layout", "index.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
    for e in std::fs::read_dir(src.join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn wrong_blob_digest_or_diff_id_is_rejected() {
    if !require_root("wrong_blob_digest_or_diff_id_is_rejected") {
        return;
    }
    use agent_e2e::graph::sha256_hex;
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // 1. A layer blob whose bytes do not match its name.
    let bad_blob = tmp.path().join("bad-blob");
    edited_layout(&imgs, &bad_blob);
    let l2 = bad_blob
        .join("blobs/sha256")
        .join(imgs.var("LAYER2_BLOB").trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&l2).unwrap_or_else(|e| panic!("{e}"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&l2, &bytes).unwrap_or_else(|e| panic!("{e}"));

    // 2. Blobs intact, but the config claims another diff id for layer 3.
    let bad_diff = tmp.path().join("bad-diff");
    edited_layout(&imgs, &bad_diff);
    let blobs = bad_diff.join("blobs/sha256");
    let read = |d: &str| -> serde_json::Value {
        let b = std::fs::read(blobs.join(d.trim_start_matches("sha256:")))
            .unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}"))
    };
    let put = |v: &serde_json::Value| -> (String, usize) {
        let b = serde_json::to_vec(v).unwrap_or_default();
        let h = sha256_hex(&b);
        std::fs::write(blobs.join(&h), &b).unwrap_or_else(|e| panic!("{e}"));
        (format!("sha256:{h}"), b.len())
    };
    let mut cfg = read(imgs.var("CONFIG_DIGEST"));
    cfg["rootfs"]["diff_ids"][2] = serde_json::json!(format!("sha256:{}", "1".repeat(64)));
    let (cd, cs) = put(&cfg);
    let mut man = read(imgs.var("MANIFEST_DIGEST"));
    man["config"]["digest"] = serde_json::json!(cd);
    man["config"]["size"] = serde_json::json!(cs);
    let (md, ms) = put(&man);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(
        bad_diff.join("index.json"),
        serde_json::to_vec(&index).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let state = tmp.path().join("state");
    let stored = state
        .join("graph/blobs/sha256")
        .join(imgs.var("LAYER2_BLOB").trim_start_matches("sha256:"));
    for (layout, expect) in [
        (&bad_blob, imgs.var("LAYER2_BLOB")),
        (&bad_diff, "1111111111"),
    ] {
        let out = agent(&["image", "load", "--state-dir", &s(&state), &s(layout)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", layout.display());
        assert!(
            err.contains("digest mismatch") && err.contains(expect),
            "{err}"
        );
        if layout == &bad_blob {
            // The corrupted blob never entered the store.
            assert!(!stored.exists(), "corrupted blob stored");
        }
    }
    assert!(images(&state).is_empty());
    // The failed loads took back what they had added (the verified blobs, the layers under the
    // bad one): no prune needed.
    assert_graph_empty(&state);
    let pruned = agent_ok(&["image", "prune", "--state-dir", &s(&state)]);
    assert_graph_empty(&state);
    assert!(
        pruned.contains("Removed 0 image(s), 0 layer(s), 0 blob(s), 0 temporary file(s)"),
        "prune found leftovers: {pruned}"
    );
}

/// No blob, temporary file or layer in the graph of `state`.
fn assert_graph_empty(state: &Path) {
    for d in ["graph/blobs/sha256", "graph/blobs/tmp", "graph/layers"] {
        let left: Vec<_> = std::fs::read_dir(state.join(d))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{d}: left behind by failed loads: {left:?}"
        );
    }
}
