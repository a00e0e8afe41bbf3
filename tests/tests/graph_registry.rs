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

fn pull_args<'a>(host: &'a str, state: &'a str, reference: &'a str) -> Vec<&'a str> {
    vec![
        "image",
        "pull",
        "-q",
        "--insecure-registry",
        host,
        "--state-dir",
        state,
        reference,
    ]
}

/// Files under `dir` (recursively), for "nothing was left behind" checks.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn corrupted_blob_is_rejected_and_not_stored() {
    if !require_root("corrupted_blob_is_rejected_and_not_stored") {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start();
    reg.push(&imgs.oci_ref(), "test/busybox:v1", false);
    // Flip bytes in the middle of the first layer as the registry stores it (same size).
    let layer = imgs.var("LAYER1_BLOB");
    let path = reg.blob_path(layer);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));

    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let host = reg.host();
    let r = format!("{host}/test/busybox:v1");
    let out = agent(&pull_args(&host, &s(state.path()), &r));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("digest mismatch") && err.contains(layer),
        "{err}"
    );
    assert!(images(state.path()).is_empty());
    let hex = layer.trim_start_matches("sha256:");
    let left: Vec<_> = files_in(&state.path().join("graph/blobs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(hex))
        .collect();
    // (Partial downloads of the other layers, cut short when this one failed, may stay for a
    // later pull to resume; `agent image prune` removes them.)
    assert!(left.is_empty(), "corrupted data left behind: {left:?}");
    agent_ok(&["image", "prune", "--state-dir", &s(state.path())]);
    let tmp = files_in(&state.path().join("graph/blobs/tmp"));
    assert!(tmp.is_empty(), "prune left temporary files: {tmp:?}");
}

/// Writes an OCI layout holding an index with the test image for this host and two manifests for
/// other platforms (own configs, same layers). Returns (layout dir, foreign config digests).
fn multi_platform_layout(imgs: &TestImages, dir: &std::path::Path) -> Vec<String> {
    use agent_e2e::graph::sha256_hex;
    use serde_json::{Value, json};
    let src = imgs.dir.join("oci");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("{e}"));
    for e in std::fs::read_dir(src.join("blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
        std::fs::copy(e.path(), blobs.join(e.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
    let put = |bytes: &[u8]| -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap_or_else(|e| panic!("{e}"));
        format!("sha256:{hex}")
    };
    let read = |digest: &str| -> Value {
        let p = blobs.join(digest.trim_start_matches("sha256:"));
        let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}"))
    };
    let host_manifest = imgs.var("MANIFEST_DIGEST");
    let manifest = read(host_manifest);
    let config = read(imgs.var("CONFIG_DIGEST"));
    let host_arch = config["architecture"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let host_size = std::fs::metadata(blobs.join(host_manifest.trim_start_matches("sha256:")))
        .map(|m| m.len())
        .unwrap_or_default();
    let mut entries = Vec::new();
    let mut foreign = Vec::new();
    let others = [
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
        ("amd64", None),
        ("s390x", None),
    ];
    for (arch, variant) in others.iter().filter(|(a, _)| *a != host_arch).take(2) {
        let mut c = config.clone();
        c["architecture"] = json!(arch);
        if let Some(v) = variant {
            c["variant"] = json!(v);
        }
        let cb = serde_json::to_vec(&c).unwrap_or_default();
        let cd = put(&cb);
        foreign.push(cd.clone());
        let mut m = manifest.clone();
        m["config"]["digest"] = json!(cd);
        m["config"]["size"] = json!(cb.len());
        let mb = serde_json::to_vec(&m).unwrap_or_default();
        let md = put(&mb);
        let mut platform = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": mb.len(), "platform": platform,
        }));
    }
    let mut host_platform = json!({"os": "linux", "architecture": host_arch});
    if let Some(v) = config["variant"].as_str() {
        host_platform["variant"] = json!(v);
    }
    // The host's manifest in the middle: the choice is by platform, not position.
    entries.insert(
        1,
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": host_manifest, "size": host_size, "platform": host_platform,
        }),
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap_or_default();
    let id = put(&index);
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": id, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&top).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    foreign
}

#[test]
fn multi_platform_index_resolves_to_this_host() {
    if !require_root("multi_platform_index_resolves_to_this_host") {
        return;
    }
    let imgs = TestImages::get();
    let layout = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let foreign = multi_platform_layout(&imgs, layout.path());
    let reg = Registry::start();
    reg.push(
        &format!("oci:{}:multi", layout.path().display()),
        "test/multi:v1",
        true,
    );
    let index_digest = reg.digest("test/multi:v1");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let host = reg.host();
    let r = format!("{host}/test/multi:v1");
    agent_ok(&pull_args(&host, &s(state.path()), &r));
    let list = images(state.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], imgs.var("CONFIG_DIGEST"));
    assert_eq!(list[0]["platform"], imgs.var("PLATFORM"));
    // The tag resolved to the index digest; the image records the host's manifest.
    assert_eq!(
        list[0]["source"],
        format!("{host}/test/multi@{index_digest}").as_str()
    );
    let index: serde_json::Value =
        serde_json::from_str(&reg.raw("test/multi:v1")).unwrap_or_else(|e| panic!("{e}"));
    let arch = imgs.var("PLATFORM").split('/').nth(1).unwrap_or_default();
    let host_manifest = index["manifests"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["platform"]["architecture"] == arch))
        .map(|e| e["digest"].clone());
    assert_eq!(Some(list[0]["manifest_digest"].clone()), host_manifest);
    // Only the chosen platform's config was fetched.
    let blobs = state.path().join("graph/blobs/sha256");
    assert!(
        blobs
            .join(index_digest.trim_start_matches("sha256:"))
            .is_file()
    );
    for c in &foreign {
        assert!(
            !blobs.join(c.trim_start_matches("sha256:")).exists(),
            "{c} fetched"
        );
    }
}

#[test]
fn interrupted_pull_resumes_with_range_requests() {
    if !require_root("interrupted_pull_resumes_with_range_requests") {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start();
    reg.push(&imgs.oci_ref(), "test/busybox:v1", false);
    let layer = imgs.var("LAYER1_BLOB");
    let layer_size = std::fs::metadata(reg.blob_path(layer))
        .map(|m| m.len())
        .unwrap_or_default();
    let cut = 256 * 1024;
    assert!(
        layer_size > 3 * cut as u64,
        "test layer too small: {layer_size}"
    );
    let proxy = agent_e2e::graph::CutProxy::start(reg.port, cut, 1);
    let host = proxy.host();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let r = format!("{host}/test/busybox:v1");

    // 1. No retries: the cut connection fails the pull, and the partial download stays.
    let st = s(state.path());
    let mut args = pull_args(&host, &st, &r);
    args.splice(3..3, ["--retries", "0"]);
    let out = agent(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pull through a cut connection succeeded"
    );
    assert!(err.contains("next pull resumes"), "{err}");
    assert_eq!(proxy.cuts_left(), 0);
    let partial = state.path().join("graph/blobs/tmp").join(format!(
        "pull-{}.partial",
        layer.trim_start_matches("sha256:")
    ));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept > 0 && kept < layer_size,
        "partial file has {kept} bytes"
    );

    // 2. Cut once more: this process resumes from the partial file, is cut again, retries
    //    after a backoff and resumes again; the result verifies.
    proxy.set_cuts(1);
    let out = agent_ok(&pull_args(&host, &s(state.path()), &r));
    assert!(out.contains("resumed 2"), "{out}"); // "resumed 262.1kB"-style figure
    assert_eq!(proxy.cuts_left(), 0);
    let ranges: Vec<u64> = proxy
        .requests()
        .iter()
        .filter(|q| q.contains(&layer.trim_start_matches("sha256:").to_string()))
        .filter_map(|q| {
            let v = q.split("range: bytes=").nth(1)?;
            v.split('-').next()?.parse().ok()
        })
        .collect();
    assert!(
        ranges.len() >= 2 && ranges.iter().all(|&o| o > 0),
        "expected two Range requests for the layer, saw offsets {ranges:?}"
    );
    assert_eq!(ranges[0], kept);
    assert!(!partial.exists(), "partial file left after success");
    let list = images(state.path());
    assert_eq!(list[0]["id"], imgs.var("CONFIG_DIGEST"));
    assert!(
        state
            .path()
            .join("graph/blobs/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .is_file()
    );
}

/// Password "s3cret", bcrypt cost 4 (fast), made with Python's `crypt.crypt`.
const ALICE_BCRYPT: &str = "$2b$04$1LHDosotKalN6Gy8kzysVOVoM/EQxZIlZ/FEC2yqze6U9zJrM4Ouu";

#[test]
fn credentials_come_from_a_docker_config_json() {
    if !require_root("credentials_come_from_a_docker_config_json") {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start_with(Some(("alice", "s3cret", ALICE_BCRYPT)));
    reg.push(&imgs.oci_ref(), "private/busybox:v1", false);
    let host = reg.host();
    let r = format!("{host}/private/busybox:v1");
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Without credentials: refused, with a hint where they go. (An empty DOCKER_CONFIG dir keeps
    // the host's own ~/.docker out of the test.)
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(agent_e2e::graph::agent_bin())
        .args(pull_args(&host, &s(state.path()), &r))
        .env("DOCKER_CONFIG", empty.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not authorized") && err.contains("config.json"),
        "{err}"
    );
    // With a config.json naming the registry ("auth" is base64 of "alice:s3cret").
    let cfg = empty.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"http://{host}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let st = s(state.path());
    let mut args = pull_args(&host, &st, &r);
    let c = s(&cfg);
    args.splice(3..3, ["--registry-config", c.as_str()]);
    agent_ok(&args);
    assert_eq!(images(state.path())[0]["id"], imgs.var("CONFIG_DIGEST"));
}

/// A tmpfs of `size` at a unique path (the state directory of a test), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Tmpfs {
        let p = std::env::temp_dir().join(format!("agent-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}")])
            .arg(format!("agent-{tag}"))
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount tmpfs at {}", p.display());
        Tmpfs(p)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn pull_refused_before_downloading_when_the_image_does_not_fit() {
    if !require_root("pull_refused_before_downloading_when_the_image_does_not_fit") {
        return;
    }
    // An image with a 6 MiB layer of random (incompressible) data, made here and pushed.
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = tmp.path().join("root");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let mut random = vec![0u8; 6 << 20];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for b in random.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    std::fs::write(data.join("random.bin"), &random).unwrap_or_else(|e| panic!("{e}"));
    let rootfs = tmp.path().join("rootfs.tar");
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&rootfs)
        .arg("-C")
        .arg(&data)
        .arg(".")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar");
    let build = tmp.path().join("build-state");
    agent_ok(&[
        "image",
        "load",
        "--state-dir",
        &s(&build),
        "--name",
        "big:1",
        &s(&rootfs),
    ]);
    let saved = tmp.path().join("big.tar");
    agent_ok(&[
        "image",
        "save",
        "--state-dir",
        &s(&build),
        "big:1",
        "-o",
        &s(&saved),
    ]);
    let reg = Registry::start();
    reg.push(
        &format!("oci-archive:{}", saved.display()),
        "test/big:1",
        false,
    );
    let layer = images(&build)[0]["layers"][0]["blob"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(layer.len(), 64);

    // Pull through a recording proxy into a 4 MiB state directory.
    let proxy = agent_e2e::graph::CutProxy::start(reg.port, usize::MAX, 0);
    let host = proxy.host();
    let state = Tmpfs::mount("pull-space", "4m");
    let r = format!("{host}/test/big:1");
    let out = agent(&pull_args(&host, &s(&state.0), &r));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let graph = state.0.join("graph");
    assert!(
        err.contains(&format!("not enough free space in {}", graph.display()))
            && err.contains("available"),
        "{err}"
    );
    let need: u64 = err
        .split("need ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'need N bytes' in: {err}"));
    assert!(
        need >= 2 * (6 << 20),
        "needed {need}: blob and unpacked layer"
    );
    // Refused before downloading: the layer was never requested, nothing partial is left.
    let asked: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.contains(&layer))
        .collect();
    assert!(asked.is_empty(), "the layer was requested: {asked:?}");
    let left: Vec<_> = files_in(&graph.join("blobs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&layer) || p.starts_with(graph.join("blobs/tmp")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(images(&state.0).is_empty());

    // With room, the same pull works.
    let ok = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&state.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "remount");
    agent_ok(&pull_args(&host, &s(&state.0), &r));
    assert_eq!(images(&state.0).len(), 1);
}
