//! Issue 15 item 15: the image archives manifests name (`dockerArchive`, `ociLayout`,
//! `rootfsTar`) are held to the manifest files' ownership and mode rule. `agent validate` refuses
//! a writable archive first, at the manifest's `path` field (file:line); the running agent
//! refuses the file (its last good version stays in force) and says why in `agent status`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::manifest::validate;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An Image from `path` (the `path:` value is on line 7, column 11) and a Volume in one file.
fn image_file(kind: &str, path: &Path) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: img\nspec:\n  {kind}:\n    path: {}\n---\napiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: keep\n",
        path.display()
    )
}

#[test]
fn validate_refuses_writable_archives_at_the_path_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("images");
    let manifests = tmp.path().join("m");
    for d in [&store, &manifests] {
        std::fs::create_dir(d).expect("mkdir");
        chmod(d, 0o755);
    }
    let file = manifests.join("img.yaml");
    let write = |text: &str| {
        std::fs::write(&file, text).expect("write");
        chmod(&file, 0o644);
    };

    // A docker archive every user may write.
    let tar = store.join("docker.tar");
    std::fs::write(&tar, "not read").expect("write");
    chmod(&tar, 0o666);
    write(&image_file("dockerArchive", &tar));
    let (code, out, err) = validate(&[&manifests]);
    assert_eq!(code, 1, "{out}{err}");
    let want = format!(
        "img.yaml:7:11: spec.dockerArchive.path: image archive {}: refused: mode 0666 lets group and others change it",
        tar.display()
    );
    assert!(out.contains(&want), "{out}");
    assert!(
        out.contains(&format!("(fix: chmod go-w {})", tar.display())),
        "{out}"
    );
    chmod(&tar, 0o644);
    let (code, out, err) = validate(&[&manifests]);
    assert_eq!(code, 0, "{out}{err}");

    // A rootfs tarball in a group-writable directory.
    chmod(&store, 0o775);
    write(&image_file("rootfsTar", &tar));
    let (code, out, _) = validate(&[&manifests]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("img.yaml:7:11: spec.rootfsTar.path: image archive")
            && out.contains(&format!(
                "{}: refused: mode 0775 lets its group change it",
                store.display()
            )),
        "{out}"
    );
    chmod(&store, 0o755);

    // An OCI layout directory: a writable blob in it.
    let layout = store.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    for d in [&layout, &layout.join("blobs"), &blobs] {
        chmod(d, 0o755);
    }
    std::fs::write(layout.join("index.json"), "{}").expect("write");
    chmod(&layout.join("index.json"), 0o644);
    let blob = blobs.join("ab".repeat(32));
    std::fs::write(&blob, "b").expect("write");
    chmod(&blob, 0o646);
    write(&image_file("ociLayout", &layout));
    let (code, out, _) = validate(&[&manifests]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("img.yaml:7:11: spec.ociLayout.path: image archive")
            && out.contains(&format!(
                "{}: refused: mode 0646 lets others change it",
                blob.display()
            )),
        "{out}"
    );
    chmod(&blob, 0o644);
    let (code, out, err) = validate(&[&manifests]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn daemon_refuses_a_writable_archive_and_keeps_the_last_good_version() {
    if !require_root("daemon_refuses_a_writable_archive_and_keeps_the_last_good_version") {
        return;
    }
    require_images();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("images");
    std::fs::create_dir(&store).expect("mkdir");
    chmod(&store, 0o755);
    let tar = store.join("docker.tar");
    std::fs::copy("/var/lib/agent-test-images/docker.tar", &tar).expect("copy the test image");
    chmod(&tar, 0o644);

    let mut d = Daemon::prepare("archperm", "");
    d.start();
    d.write("img.yaml", &image_file("dockerArchive", &tar));
    d.wait_for("img.yaml loaded", Duration::from_secs(60), || {
        d.file_status("img.yaml").filter(|s| s["status"] == "ok")
    });

    chmod(&tar, 0o666);
    // A chmod of the archive changes nothing in the manifest directory: `agent apply` loads again.
    let err = d.wait_for("img.yaml refused", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let s = d.file_status("img.yaml")?;
        (s["status"] == "error").then(|| s["error"].as_str().unwrap_or_default().to_string())
    });
    let want = format!(
        "img.yaml:7:11: spec.dockerArchive.path: image archive {}: refused: mode 0666 lets group and others change it",
        tar.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    // The file's last good version stays in force: its volume is not removed.
    assert!(
        !d.events().iter().any(|e| e["kind"] == "volume.remove"),
        "the refused file's objects were removed"
    );

    chmod(&tar, 0o644);
    d.wait_for("img.yaml accepted again", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        d.file_status("img.yaml").filter(|s| s["status"] == "ok")
    });
    d.stop();
}
