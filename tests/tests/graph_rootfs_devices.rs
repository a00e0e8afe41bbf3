//! Issue 16 item 2: root filesystem tarballs made by debootstrap/mmdebstrap hold `./dev/console`,
//! `./dev/null` and friends. They import (the device nodes are skipped with a warning, see
//! docs/graph.md: the runtime mounts its own `/dev`) and a container runs from them; a device
//! node elsewhere in the tarball, and a hard link to it, is not created either. Traversal stays
//! refused (graph_malicious.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::graph::{agent, images};

/// The busybox test root filesystem plus `./dev/console` (5:1), `./dev/null` (1:3), a block
/// device `./opt/sda` (8:0) and a hard link to it, as GNU tar writes them.
fn debootstrap_like(out: &Path) {
    let f = std::fs::File::create(out).expect("create tarball");
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", "/var/lib/agent-test-images/rootfs")
        .expect("add the busybox rootfs");
    let mut dir = |name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, name, std::io::empty())
            .expect("add dir");
    };
    dir("./dev/");
    dir("./opt/");
    for (name, kind, major, minor, mode) in [
        ("./dev/console", tar::EntryType::Char, 5, 1, 0o600),
        ("./dev/null", tar::EntryType::Char, 1, 3, 0o666),
        ("./opt/sda", tar::EntryType::Block, 8, 0, 0o660),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        b.append_data(&mut h, name, std::io::empty())
            .expect("add device");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o660);
    h.set_size(0);
    b.append_link(&mut h, "./opt/sda-link", "./opt/sda")
        .expect("add hard link");
    b.into_inner().expect("finish tarball");
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

#[test]
fn rootfs_tarball_with_device_nodes_imports_and_runs() {
    if !require_root("rootfs_tarball_with_device_nodes_imports_and_runs") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("devnodes", "");
    let tarball = d.dir.path().join("debootstrap.tar");
    debootstrap_like(&tarball);

    // `agent image load` of it: loaded, with one warning naming the skipped nodes.
    let cli_state = d.dir.path().join("cli-state");
    let out = agent(&[
        "image",
        "load",
        "--state-dir",
        &cli_state.to_string_lossy(),
        "--name",
        "deb:1",
        &tarball.to_string_lossy(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "load refused: {err}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("device nodes") && err.contains("dev/console"),
        "no warning about the skipped device nodes: {err}"
    );
    let imgs = images(&cli_state);
    assert_eq!(imgs.len(), 1, "{imgs:?}");

    // The daemon imports it from a manifest and a container runs from it.
    d.start();
    d.write(
        "deb.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: deb\nspec:\n  rootfsTar:\n    path: {}\n---\n\
             apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: deb\nspec:\n  image: deb\n  \
             command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n",
            tarball.display()
        ),
    );
    let row = d.wait_for("deb running", Duration::from_secs(60), || {
        let r = d.ps_row("deb");
        (r["state"] == "running").then_some(r)
    });
    let id = row["id"].as_str().unwrap_or_default().to_string();
    assert!(
        d.sh_in(
            &id,
            "test -x /bin/busybox && test -c /dev/null && echo x > /dev/null"
        ),
        "the container's /dev does not work"
    );
    assert!(
        d.sh_in(
            &id,
            "test ! -e /opt/sda && test ! -e /opt/sda-link && test -d /opt"
        ),
        "a device node of the tarball was created in the container"
    );
    d.stop();
}
