//! Round trips: `agent image save` then `agent image load` keeps every digest; an image saved
//! here loads in `skopeo`, and images `skopeo` writes load here.

use std::path::Path;

use agent_e2e::graph::{TestImages, agent_ok, images, require_root, sha256_hex, skopeo};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// (id, manifest digest, [(blob, diff id)]) of the only image under `state`.
fn digests(state: &Path) -> (String, String, Vec<(String, String)>) {
    let list = images(state);
    assert_eq!(list.len(), 1, "{list:?}");
    let i = &list[0];
    let layers = i["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| (l["blob"].to_string(), l["diff_id"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    (
        i["id"].to_string(),
        i["manifest_digest"].to_string(),
        layers,
    )
}

#[test]
fn save_then_load_keeps_every_digest() {
    if !require_root("save_then_load_keeps_every_digest") {
        return;
    }
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for source in ["oci", "docker.tar"] {
        let (a, b) = (
            tmp.path().join(format!("a-{source}")),
            tmp.path().join(format!("b-{source}")),
        );
        let saved = tmp.path().join(format!("saved-{source}.tar"));
        agent_ok(&[
            "image",
            "load",
            "--state-dir",
            &s(&a),
            &s(&imgs.dir.join(source)),
        ]);
        agent_ok(&[
            "image",
            "save",
            "--state-dir",
            &s(&a),
            "agent-test/busybox:latest",
            "-o",
            &s(&saved),
        ]);
        agent_ok(&["image", "load", "--state-dir", &s(&b), &s(&saved)]);
        let (da, db) = (digests(&a), digests(&b));
        assert_eq!(da, db, "{source}: digests changed in save/load");
        assert_eq!(da.0, format!("\"{}\"", imgs.var("CONFIG_DIGEST")));
        assert_eq!(images(&b)[0]["names"][0], "agent-test/busybox:latest");
    }
}

#[test]
fn an_image_saved_here_loads_in_skopeo() {
    if !require_root("an_image_saved_here_loads_in_skopeo") {
        return;
    }
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for source in ["oci", "docker.tar"] {
        let state = tmp.path().join(format!("st-{source}"));
        let saved = tmp.path().join(format!("saved-{source}.tar"));
        let out = tmp.path().join(format!("skopeo-{source}"));
        agent_ok(&[
            "image",
            "load",
            "--state-dir",
            &s(&state),
            &s(&imgs.dir.join(source)),
        ]);
        agent_ok(&[
            "image",
            "save",
            "--state-dir",
            &s(&state),
            "agent-test/busybox:latest",
            "-o",
            &s(&saved),
        ]);
        let (id, manifest, layers) = digests(&state);
        // skopeo reads the archive, copies it unchanged (or fails) and inspects it.
        skopeo(&[
            "copy",
            "--quiet",
            "--preserve-digests",
            &format!("oci-archive:{}", saved.display()),
            &format!("oci:{}:copied", out.display()),
        ]);
        let oci = format!("oci:{}:copied", out.display());
        let raw = skopeo(&["inspect", "--raw", &oci]);
        assert_eq!(
            format!("\"sha256:{}\"", sha256_hex(raw.as_bytes())),
            manifest
        );
        let config = skopeo(&["inspect", "--config", "--raw", &oci]);
        assert_eq!(format!("\"sha256:{}\"", sha256_hex(config.as_bytes())), id);
        let info: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", &oci])).unwrap_or_else(|e| panic!("{e}"));
        let sk_layers: Vec<String> = info["Layers"]
            .as_array()
            .map(|a| a.iter().map(|l| l.to_string()).collect())
            .unwrap_or_default();
        let ours: Vec<String> = layers.into_iter().map(|(b, _)| b).collect();
        assert_eq!(sk_layers, ours, "{source}");
    }
}

#[test]
fn images_written_by_skopeo_load_here() {
    if !require_root("images_written_by_skopeo_load_here") {
        return;
    }
    let imgs = TestImages::get();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let oci_archive = tmp.path().join("sk-oci.tar");
    let docker_archive = tmp.path().join("sk-docker.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        &imgs.oci_ref(),
        &format!("oci-archive:{}:sk/oci:1", oci_archive.display()),
    ]);
    // skopeo cannot put zstd layers into a docker archive; it rewrites the docker archive the
    // builder made (uncompressed layers) instead.
    skopeo(&[
        "copy",
        "--quiet",
        &format!("docker-archive:{}", imgs.dir.join("docker.tar").display()),
        &format!("docker-archive:{}:sk/docker:1", docker_archive.display()),
    ]);
    for (file, name) in [(&oci_archive, "sk/oci:1"), (&docker_archive, "sk/docker:1")] {
        let state = tmp
            .path()
            .join(format!("st-{}", name.replace(['/', ':'], "-")));
        agent_ok(&["image", "load", "--state-dir", &s(&state), &s(file)]);
        let list = images(&state);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["id"], imgs.var("CONFIG_DIGEST"), "{name}");
        assert_eq!(list[0]["names"][0], name);
        let diff_ids: Vec<String> = list[0]["layers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["diff_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            diff_ids,
            ["LAYER1_DIFF_ID", "LAYER2_DIFF_ID", "LAYER3_DIFF_ID"].map(|v| imgs.var(v))
        );
    }
}
