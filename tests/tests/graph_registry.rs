//! Registry pulls against Debian's `docker-registry` on 127.0.0.1 (plain HTTP, listed as an
//! insecure registry), with images pushed by `skopeo`.

use agent_e2e::graph::{Registry, TestImages, agent, agent_ok, images, require_root};

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn pull_by_tag_and_by_digest() {
    if !require_root("pull_by_tag_and_by_digest") {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start();
    reg.push(&imgs.oci_ref(), "test/busybox:v1", false);
    let digest = reg.digest("test/busybox:v1");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let host = reg.host();
    let tag_ref = format!("{host}/test/busybox:v1");

    // Plain HTTP is refused unless the registry is listed as insecure.
    let out = agent(&[
        "image",
        "pull",
        "-q",
        "--retries",
        "0",
        "--state-dir",
        &s(state.path()),
        &tag_ref,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pull over HTTPS from an HTTP registry succeeded"
    );
    assert!(
        err.contains("https://") && err.contains("--insecure-registry"),
        "{err}"
    );

    // By tag: the tag is resolved to the manifest digest and recorded.
    let out = agent_ok(&[
        "image",
        "pull",
        "-q",
        "--insecure-registry",
        &host,
        "--state-dir",
        &s(state.path()),
        &tag_ref,
    ]);
    assert!(out.contains(&digest), "{out}");
    let list = images(state.path());
    assert_eq!(list.len(), 1, "{list:?}");
    let img = &list[0];
    assert_eq!(img["id"], imgs.var("CONFIG_DIGEST"));
    assert_eq!(img["names"][0], tag_ref.as_str());
    assert_eq!(
        img["source"],
        format!("{host}/test/busybox@{digest}").as_str()
    );
    // Same layers (skopeo compresses the uncompressed third layer on push, so compare diff ids),
    // each blob stored under its digest.
    let field = |f: &str| -> Vec<String> {
        img["layers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l[f].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        field("diff_id"),
        ["LAYER1_DIFF_ID", "LAYER2_DIFF_ID", "LAYER3_DIFF_ID"].map(|v| imgs.var(v))
    );
    let blobs = state.path().join("graph/blobs/sha256");
    for l in field("blob") {
        assert!(
            blobs.join(l.trim_start_matches("sha256:")).is_file(),
            "{l} not stored"
        );
    }

    // Pulling again downloads nothing.
    let out = agent_ok(&[
        "image",
        "pull",
        "-q",
        "--insecure-registry",
        &host,
        "--state-dir",
        &s(state.path()),
        &tag_ref,
    ]);
    assert!(out.contains("downloaded 0B"), "{out}");

    // By digest, into a fresh store: the pin is honoured and names the image.
    let state2 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dig_ref = format!("{host}/test/busybox@{digest}");
    agent_ok(&[
        "image",
        "pull",
        "-q",
        "--insecure-registry",
        &host,
        "--state-dir",
        &s(state2.path()),
        &dig_ref,
    ]);
    let list = images(state2.path());
    assert_eq!(list[0]["id"], imgs.var("CONFIG_DIGEST"));
    assert_eq!(list[0]["names"][0], dig_ref.as_str());

    // A pin that the registry does not have is an error, and so is an unknown tag.
    let wrong = format!("{host}/test/busybox@sha256:{}", "0".repeat(64));
    for bad in [wrong.as_str(), &format!("{host}/test/busybox:nope")] {
        let out = agent(&[
            "image",
            "pull",
            "-q",
            "--insecure-registry",
            &host,
            "--state-dir",
            &s(state2.path()),
            bad,
        ]);
        assert!(!out.status.success(), "pull {bad} succeeded");
        assert!(String::from_utf8_lossy(&out.stderr).contains("manifest unknown"));
    }
}
