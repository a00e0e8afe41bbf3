//! The overlay driver: `containers/<id>/{upper,work,merged}` and a kernel overlayfs mount with
//! the image's layer directories as lowerdirs. The diff is the upper directory, with overlay
//! whiteouts (char 0:0, `trusted.overlay.opaque`) turned back into OCI whiteouts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::super::Error;
use super::super::digest::Digest;
use super::tarwrite::{TarOut, write_overlay_diff};
use super::{ContainerLayer, DriverKind, GraphDriver};

/// Longest mount option string the kernel takes in one page, with room to spare.
const MAX_OPTIONS: usize = 4000;

#[derive(Debug, Clone)]
pub struct Overlay {
    root: PathBuf,
}

impl Overlay {
    pub fn new(root: &Path) -> Self {
        Overlay {
            root: root.to_path_buf(),
        }
    }

    fn merged(&self, id: &str) -> PathBuf {
        self.root.join(id).join("merged")
    }

    fn options(&self, c: &ContainerLayer) -> Result<String, Error> {
        let dir = self.root.join(&c.id);
        let mut lowers: Vec<String> = c.lowers.iter().rev().map(|p| escape(p)).collect();
        if lowers.is_empty() {
            lowers.push(escape(&dir.join("empty")));
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            escape(&dir.join("upper")),
            escape(&dir.join("work"))
        );
        if opts.len() > MAX_OPTIONS {
            return Err(Error::DriverUnavailable {
                driver: "overlay",
                reason: format!(
                    "mount options for {} are {} bytes (limit {MAX_OPTIONS}): too many layers or too long a state directory path",
                    c.id,
                    opts.len()
                ),
            });
        }
        Ok(opts)
    }
}

/// Escapes the characters overlayfs treats specially in lowerdir lists.
fn escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Whether `path` is the root of a mount (a different device than its parent).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let (Ok(a), Some(Ok(b))) = (
        fs::symlink_metadata(path),
        path.parent().map(fs::symlink_metadata),
    ) else {
        return false;
    };
    a.dev() != b.dev() || a.ino() == b.ino()
}

/// Checks that overlayfs works here by mounting a tiny one under `root`.
pub fn probe(root: &Path) -> Result<(), Error> {
    let unavailable = |reason: String| Error::DriverUnavailable {
        driver: "overlay",
        reason,
    };
    let fss = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fss
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Err(unavailable(
            "the kernel does not list overlay in /proc/filesystems".into(),
        ));
    }
    let dir = root.join(format!(".probe-{}", std::process::id()));
    let result = (|| {
        for d in ["l", "u", "w", "m"] {
            fs::create_dir_all(dir.join(d))
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            escape(&dir.join("l")),
            escape(&dir.join("u")),
            escape(&dir.join("w"))
        );
        mount(
            Some("overlay"),
            &dir.join("m"),
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| unavailable(format!("probe mount under {} failed: {e}", root.display())))?;
        umount2(&dir.join("m"), MntFlags::MNT_DETACH)
            .map_err(|e| unavailable(format!("probe unmount failed: {e}")))
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

impl GraphDriver for Overlay {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }

    fn create(
        &self,
        id: &str,
        image: &Digest,
        lowers: &[PathBuf],
    ) -> Result<ContainerLayer, Error> {
        let meta = ContainerLayer {
            version: super::CONTAINER_META_VERSION,
            id: id.to_string(),
            driver: DriverKind::Overlay,
            image: image.clone(),
            lowers: lowers.to_vec(),
        };
        super::create_dir(&self.root, &meta, &["upper", "work", "merged", "empty"])?;
        self.options(&meta)?;
        super::write_meta(&self.root, &meta)?;
        Ok(meta)
    }

    fn mount(&self, id: &str) -> Result<PathBuf, Error> {
        let c = super::meta_for(&self.root, id, DriverKind::Overlay)?;
        let merged = self.merged(id);
        if is_mount_point(&merged) {
            return Ok(merged);
        }
        let opts = self.options(&c)?;
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| Error::Mount {
            what: "mount overlay on",
            target: merged.clone(),
            source: e,
        })?;
        Ok(merged)
    }

    fn unmount(&self, id: &str) -> Result<(), Error> {
        super::check_id(id)?;
        let merged = self.merged(id);
        if !is_mount_point(&merged) {
            return Ok(());
        }
        match umount2(&merged, MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::Mount {
                what: "unmount",
                target: merged,
                source: e,
            }),
        }
    }

    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<(), Error> {
        super::meta_for(&self.root, id, DriverKind::Overlay)?;
        let mut t = TarOut::new(out);
        write_overlay_diff(&self.root.join(id).join("upper"), &mut t)?;
        t.finish()
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        super::check_id(id)?;
        let merged = self.merged(id);
        if is_mount_point(&merged) {
            umount2(&merged, MntFlags::MNT_DETACH).map_err(|e| Error::Mount {
                what: "unmount",
                target: merged.clone(),
                source: e,
            })?;
        }
        super::remove_dir(&self.root, id)
    }

    fn is_mounted(&self, id: &str) -> Result<bool, Error> {
        super::check_id(id)?;
        Ok(is_mount_point(&self.merged(id)))
    }
}
