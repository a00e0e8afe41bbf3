//! The conformance suite every graph driver runs (as containerd's snapshotter test suite): the
//! same cases against `overlay` and `vfs`. Needs root (ownership, mounts); skips otherwise.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::super::digest::Digest;
use super::super::layers::LayerStore;
use super::*;

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the running kernel knows overlayfs (built in, or loaded as a module).
fn kernel_has_overlay() -> bool {
    fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("overlay")))
        || Path::new("/sys/module/overlay").exists()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    super::super::unpack::fsops::fgetxattr(std::os::fd::AsRawFd::as_raw_fd(&f), &n)
        .ok()
        .flatten()
}

fn tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, name, *d).ok();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).ok();
            }
        }
    }
    b.into_inner().unwrap_or_default()
}

/// Removes the container layers on drop, even when an assertion failed.
struct Cleanup<'a> {
    driver: &'a AnyDriver,
    ids: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.driver.remove(id);
        }
    }
}

fn must<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn image_layers(store: &LayerStore) -> Vec<PathBuf> {
    let l1 = tar(&[
        ("etc", None),
        ("etc/a", Some(b"A")),
        ("etc/b", Some(b"B")),
        ("data", None),
        ("data/keep", Some(b"keep")),
        ("data/del", Some(b"del")),
        ("opq", None),
        ("opq/old", Some(b"old")),
        ("gone", None),
        ("gone/x", Some(b"x")),
        ("gone/y", Some(b"y")),
        ("dropped", None),
        ("dropped/z", Some(b"z")),
    ]);
    let l2 = tar(&[
        ("data/.wh.del", Some(b"")),
        ("opq", None),
        ("opq/.wh..wh..opq", Some(b"")),
        ("opq/new", Some(b"new")),
    ]);
    let i1 = must(store.create(None, Some(&Digest::of(&l1)), &l1[..], "l1"));
    let i2 = must(store.create(Some(&i1.chain_id), Some(&Digest::of(&l2)), &l2[..], "l2"));
    vec![store.diff_dir(&i1.chain_id), store.diff_dir(&i2.chain_id)]
}

fn names_in(tar_bytes: &[u8]) -> BTreeSet<String> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = BTreeSet::new();
    for e in a.entries().into_iter().flatten().flatten() {
        out.insert(
            String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string(),
        );
    }
    out
}

fn check_image_view(root: &Path) {
    assert_eq!(fs::read(root.join("etc/a")).unwrap_or_default(), b"A");
    assert!(root.join("data/keep").exists());
    assert!(!root.join("data/del").exists(), "whiteout not honoured");
    assert!(
        !root.join("opq/old").exists(),
        "opaque directory not honoured"
    );
    assert_eq!(fs::read(root.join("opq/new")).unwrap_or_default(), b"new");
}

fn suite(kind: DriverKind) {
    if !is_root() {
        println!("skipping {kind:?} conformance: needs root");
        return;
    }
    let dir = must(tempfile::tempdir().map_err(Error::io("tempdir", "/tmp")));
    let store = must(LayerStore::open(&dir.path().join("layers")));
    let driver = match select(&dir.path().join("containers"), Some(kind)) {
        Ok(d) => d,
        // Only a kernel without overlayfs may skip the overlay run; where the kernel has it, the
        // driver must work.
        Err(e) if kind == DriverKind::Overlay && !kernel_has_overlay() => {
            println!("skipping {kind:?} conformance: {e}");
            return;
        }
        Err(e) => panic!("{kind:?} driver unavailable: {e}"),
    };
    assert_eq!(driver.kind(), kind);
    let mut cleanup = Cleanup {
        driver: &driver,
        ids: vec!["c1".into(), "c2".into()],
    };
    let lowers = image_layers(&store);
    let image = Digest::of(b"image");

    assert!(matches!(
        driver.create("../x", &image, &lowers),
        Err(Error::BadContainerId(_))
    ));
    must(driver.create("c1", &image, &lowers));
    assert!(matches!(
        driver.create("c1", &image, &lowers),
        Err(Error::ContainerExists(_))
    ));
    let root = must(driver.mount("c1"));
    assert_eq!(
        must(driver.mount("c1")),
        root,
        "second mount returns the same path"
    );
    assert!(must(driver.is_mounted("c1")));
    check_image_view(&root);

    // Change things: add, modify, delete, new directory.
    must(fs::write(root.join("new.txt"), b"new file").map_err(Error::io("write", &root)));
    must(fs::write(root.join("etc/a"), b"AAAA").map_err(Error::io("write", &root)));
    must(fs::remove_file(root.join("data/keep")).map_err(Error::io("remove", &root)));
    must(fs::create_dir(root.join("newdir")).map_err(Error::io("mkdir", &root)));
    must(fs::write(root.join("newdir/f"), b"f").map_err(Error::io("write", &root)));
    // A directory replaced by a new one of the same name, and one removed altogether.
    must(fs::remove_dir_all(root.join("gone")).map_err(Error::io("rm -r", &root)));
    must(fs::create_dir(root.join("gone")).map_err(Error::io("mkdir", &root)));
    must(fs::write(root.join("gone/fresh"), b"fresh").map_err(Error::io("write", &root)));
    must(fs::remove_dir_all(root.join("dropped")).map_err(Error::io("rm -r", &root)));
    // Metadata: a new file with owner, setuid mode and an xattr; a hard link; a lower file whose
    // mode alone changes.
    let owned = root.join("newdir/owned");
    must(fs::write(&owned, b"o").map_err(Error::io("write", &owned)));
    must(
        std::os::unix::fs::chown(&owned, Some(1234), Some(5678))
            .map_err(Error::io("chown", &owned)),
    );
    must(
        fs::set_permissions(&owned, std::os::unix::fs::PermissionsExt::from_mode(0o4750))
            .map_err(Error::io("chmod", &owned)),
    );
    {
        let f = must(fs::File::open(&owned).map_err(Error::io("open", &owned)));
        let n = std::ffi::CString::new("user.agent.test").unwrap_or_default();
        must(
            super::super::unpack::fsops::fsetxattr(std::os::fd::AsRawFd::as_raw_fd(&f), &n, b"hi")
                .map_err(Error::io("setxattr", &owned)),
        );
    }
    must(
        fs::hard_link(root.join("newdir/f"), root.join("newdir/f-link"))
            .map_err(Error::io("link", &root)),
    );
    must(
        fs::set_permissions(
            root.join("opq/new"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(Error::io("chmod", &root)),
    );

    let mut diff = Vec::new();
    must(driver.diff("c1", &mut diff));
    let names = names_in(&diff);
    for want in [
        "new.txt",
        "etc/a",
        "data/.wh.keep",
        "newdir",
        "newdir/f",
        "newdir/f-link",
        "newdir/owned",
        "gone/fresh",
        ".wh.dropped",
        "opq/new",
    ] {
        assert!(
            names.contains(want),
            "{kind:?} diff lacks {want}: {names:?}"
        );
    }
    for unwanted in ["etc/b", "data/del", "opq/old", "gone/x"] {
        assert!(
            !names.contains(unwanted),
            "{kind:?} diff has unchanged {unwanted}: {names:?}"
        );
    }

    // The diff, applied as a layer on the same image, reproduces the container's view.
    let top = must(store.create(None, None, &diff[..], "diff"));
    let mut lowers2 = lowers.clone();
    lowers2.push(store.diff_dir(&top.chain_id));
    must(driver.create("c2", &image, &lowers2));
    let root2 = must(driver.mount("c2"));
    assert_eq!(fs::read(root2.join("etc/a")).unwrap_or_default(), b"AAAA");
    assert_eq!(
        fs::read(root2.join("new.txt")).unwrap_or_default(),
        b"new file"
    );
    assert_eq!(fs::read(root2.join("newdir/f")).unwrap_or_default(), b"f");
    assert!(
        !root2.join("data/keep").exists(),
        "deletion lost in the diff"
    );
    assert!(!root2.join("data/del").exists());
    assert_eq!(fs::read(root2.join("etc/b")).unwrap_or_default(), b"B");
    // The replaced directory holds only what is new; the removed one is gone.
    assert_eq!(
        fs::read(root2.join("gone/fresh")).unwrap_or_default(),
        b"fresh"
    );
    assert!(
        !root2.join("gone/x").exists() && !root2.join("gone/y").exists(),
        "{kind:?}: old contents of a replaced directory came back"
    );
    assert!(
        !root2.join("dropped").exists(),
        "{kind:?}: removed directory came back"
    );
    // Metadata survives diff and apply.
    let md =
        must(fs::symlink_metadata(root2.join("newdir/owned")).map_err(Error::io("stat", &root2)));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 5678, 0o4750),
        "{kind:?}"
    );
    assert_eq!(
        xattr(&root2.join("newdir/owned"), "user.agent.test").as_deref(),
        Some(&b"hi"[..]),
        "{kind:?}"
    );
    let (a, b) = (
        must(fs::metadata(root2.join("newdir/f")).map_err(Error::io("stat", &root2))),
        must(fs::metadata(root2.join("newdir/f-link")).map_err(Error::io("stat", &root2))),
    );
    if kind == DriverKind::Vfs {
        // vfs copies the layers into one tree, so the link is a link there too (overlay shows a
        // lower file's hard links as separate inodes unless the index feature is on).
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "hard link lost");
    }
    assert_eq!(
        fs::read(root2.join("newdir/f-link")).unwrap_or_default(),
        b"f"
    );
    // In the layer made from the diff, the two names are one file.
    let layer = store.diff_dir(&top.chain_id);
    let (a, b) = (
        must(fs::metadata(layer.join("newdir/f")).map_err(Error::io("stat", &layer))),
        must(fs::metadata(layer.join("newdir/f-link")).map_err(Error::io("stat", &layer))),
    );
    assert_eq!(a.ino(), b.ino(), "{kind:?}: hard link lost in the diff");
    let new_md =
        must(fs::symlink_metadata(root2.join("opq/new")).map_err(Error::io("stat", &root2)));
    assert_eq!(
        new_md.mode() & 0o7777,
        0o600,
        "{kind:?}: mode-only change lost"
    );

    must(driver.unmount("c1"));
    must(driver.unmount("c1"));
    if kind == DriverKind::Overlay {
        assert!(!must(driver.is_mounted("c1")));
    }
    // Remounting keeps the changes.
    let root = must(driver.mount("c1"));
    assert_eq!(
        fs::read(root.join("new.txt")).unwrap_or_default(),
        b"new file"
    );
    for id in ["c1", "c2"] {
        must(driver.remove(id));
        must(driver.remove(id));
        assert!(matches!(driver.mount(id), Err(Error::ContainerNotFound(_))));
    }
    assert!(
        list(&dir.path().join("containers"))
            .map(|l| l.is_empty())
            .unwrap_or(false)
    );
    cleanup.ids.clear();
}

#[test]
fn overlay_conformance() {
    suite(DriverKind::Overlay);
}

#[test]
fn vfs_conformance() {
    suite(DriverKind::Vfs);
}
