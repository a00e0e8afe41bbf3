//! Volumes at container creation: anonymous volumes for the image's declared `Volumes`, and
//! Docker's copy-up of the image's files into a new volume.
//!
//! **Anonymous volumes.** Each path in the image config's `Volumes` that no mount of the
//! container covers (a mount whose target is exactly that path) gets an agent-managed directory
//! `<state>/anonymous-volumes/<container>/<path, '/' written %2F>/_data`, mounted read-write
//! there. It belongs to the container *name*: a recreate of that container (an env edit, a new
//! image) finds the same directory, so the data survives, as `docker compose up` keeps a
//! service's anonymous volumes across recreates. It is removed with the container when the
//! container goes for good (its manifest, or its Container object, removed), which is what
//! `docker rm -v` / `docker compose down -v` do; Docker without `-v` leaves it dangling until a
//! prune, which on an unattended host only fills the disk. Keep data in a named volume (a Volume
//! manifest) to keep it beyond the container.
//!
//! **Copy-up.** When a volume is mounted over a directory of the image and the volume is new
//! (never mounted before: no `populated` marker beside its `_data`) and empty, the image's
//! directory is copied into it first: content, owner, mode, extended attributes (other than
//! overlay's) and mtimes, symlinks as symlinks. Then the marker is written, so this happens once:
//! a volume the application emptied later stays empty. `nocopy: true` on the mount skips the
//! copy (the marker is still written). Anonymous volumes are filled the same way when created.
//! The image directory is found inside the container's root filesystem component by component
//! without following symlinks: a path that goes through a symlink in the image is not copied
//! (a warning says so), so image content can never make the agent copy host files.

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use super::ApplyError;
use crate::driver::exec::spec::{ContainerSpec, Mount, MountSource};
use crate::plan::EffectiveContainer;
use crate::plan::effective::MountSource as Source;

/// Directory of the anonymous volumes under the state directory.
pub const ANONYMOUS_DIR: &str = "anonymous-volumes";

/// Name of the marker beside a volume's `_data` once it was mounted (and filled) the first time.
const POPULATED: &str = "populated";

/// Serialises copy-ups: two containers created at once on one new volume copy it once.
static COPY: Mutex<()> = Mutex::new(());

/// `<state>/anonymous-volumes/<container>`.
pub fn anonymous_root(state: &Path, container: &str) -> PathBuf {
    state.join(ANONYMOUS_DIR).join(container)
}

/// `<state>/anonymous-volumes/<container>/<escaped target>/_data`.
pub fn anonymous_dir(state: &Path, container: &str, target: &Path) -> PathBuf {
    let rel = target.to_string_lossy();
    let escaped = rel
        .trim_start_matches('/')
        .replace('%', "%25")
        .replace('/', "%2F");
    anonymous_root(state, container).join(escaped).join("_data")
}

/// Removes container `name`'s anonymous volumes (gone already is fine).
pub fn remove_anonymous(state: &Path, name: &str) -> Result<(), ApplyError> {
    let dir = anonymous_root(state, name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ApplyError::Other(format!(
            "removing the anonymous volumes {}: {e}",
            dir.display()
        ))),
    }
}

/// The absolute paths the image config (`config.Volumes`) declares, normalised.
pub fn image_volumes(config_blob: &[u8]) -> Vec<PathBuf> {
    let v: serde_json::Value = serde_json::from_slice(config_blob).unwrap_or_default();
    let mut out: Vec<PathBuf> = v["config"]["Volumes"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(|k| crate::plan::effective::normalize_path(Path::new(k)))
                .filter(|p| p.is_absolute() && p.components().count() > 1)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Adds the anonymous volumes to `spec` and fills new volumes from the image in `rootfs`
/// (mounted). Returns one line per volume created or filled, for the log.
pub fn prepare(
    state: &Path,
    config: &EffectiveContainer,
    config_blob: &[u8],
    rootfs: &Path,
    spec: &mut ContainerSpec,
) -> Result<Vec<String>, ApplyError> {
    let mut done = Vec::new();
    let _guard = COPY.lock().unwrap_or_else(|p| p.into_inner());
    for m in &config.fixed.mounts {
        if let Source::Volume(name) = &m.source {
            let data = super::super::translate::spec::volume_dir(state, name);
            if let Some(line) = fill_once(&data, rootfs, &m.target, m.no_copy)? {
                done.push(format!("volume {name}: {line}"));
            }
        }
    }
    for target in image_volumes(config_blob) {
        let covered = spec
            .mounts
            .iter()
            .any(|m| Path::new(&m.target) == target.as_path());
        if covered {
            continue;
        }
        let data = anonymous_dir(state, &config.name, &target);
        std::fs::create_dir_all(&data).map_err(|e| {
            ApplyError::Other(format!(
                "creating the anonymous volume {}: {e}",
                data.display()
            ))
        })?;
        if let Some(line) = fill_once(&data, rootfs, &target, false)? {
            done.push(format!("anonymous volume {}: {line}", target.display()));
        }
        spec.mounts.push(Mount {
            target: target.to_string_lossy().into_owned(),
            source: MountSource::Volume { path: data },
            read_only: false,
        });
    }
    Ok(done)
}

/// Fills `data` from the image's `target` unless it was mounted before (marker), is not
/// empty, or `no_copy`; then marks it. Returns what it did, if anything.
fn fill_once(
    data: &Path,
    rootfs: &Path,
    target: &Path,
    no_copy: bool,
) -> Result<Option<String>, ApplyError> {
    let Some(vol) = data.parent() else {
        return Ok(None);
    };
    let marker = vol.join(POPULATED);
    if marker.exists() {
        return Ok(None);
    }
    let io = |what: &str, p: &Path, e: std::io::Error| {
        ApplyError::Other(format!("{what} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(data).map_err(|e| io("creating volume directory", data, e))?;
    let empty = std::fs::read_dir(data)
        .map_err(|e| io("reading volume directory", data, e))?
        .next()
        .is_none();
    let mut line = None;
    if empty && !no_copy {
        match image_dir(rootfs, target) {
            Ok(Some(src)) => {
                if let Err(e) = crate::driver::graph::rootfs::vfs::copy_tree(&src, data) {
                    // Empty again, unmarked: the next create copies from the start.
                    let _ = std::fs::remove_dir_all(data);
                    let _ = std::fs::create_dir_all(data);
                    return Err(e.into());
                }
                line = Some(format!(
                    "filled from the image's {} (copy-up)",
                    target.display()
                ));
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(volume = %data.display(), target = %target.display(), "not filled from the image: {why}");
            }
        }
    }
    std::fs::write(&marker, b"1\n").map_err(|e| io("writing", &marker, e))?;
    Ok(line)
}

/// The image's directory at `target` inside `rootfs`, walked without following symlinks:
/// `None` when there is nothing there, `Err` when the path goes through a symlink or is not
/// a directory.
fn image_dir(rootfs: &Path, target: &Path) -> Result<Option<PathBuf>, String> {
    let mut p = rootfs.to_path_buf();
    for c in target.components() {
        match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => p.push(n),
            _ => return Err(format!("{} is not a plain path", target.display())),
        }
        match std::fs::symlink_metadata(&p) {
            Err(_) => return Ok(None),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink in the image; not followed",
                    p.strip_prefix(rootfs).unwrap_or(&p).display()
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(format!(
                    "{} is not a directory in the image",
                    p.strip_prefix(rootfs).unwrap_or(&p).display()
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_dirs_are_unique_per_path() {
        let s = Path::new("/s");
        let a = anonymous_dir(s, "db", Path::new("/var/lib/mysql"));
        let b = anonymous_dir(s, "db", Path::new("/var/lib%2Fmysql"));
        assert_eq!(
            a,
            Path::new("/s/anonymous-volumes/db/var%2Flib%2Fmysql/_data")
        );
        assert_ne!(a, b);
    }

    #[test]
    fn image_volumes_are_read_and_normalised() {
        let blob = br#"{"config":{"Volumes":{"/data/":{},"/var/lib/mysql":{},"rel":{},"/":{}}}}"#;
        assert_eq!(
            image_volumes(blob),
            [PathBuf::from("/data"), PathBuf::from("/var/lib/mysql")]
        );
        assert!(image_volumes(b"{}").is_empty());
    }

    #[test]
    fn image_dir_does_not_follow_symlinks() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = d.path();
        std::fs::create_dir_all(root.join("var/lib/x")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            image_dir(root, Path::new("/var/lib/x")),
            Ok(Some(root.join("var/lib/x")))
        );
        assert_eq!(image_dir(root, Path::new("/nothing/here")), Ok(None));
        assert!(image_dir(root, Path::new("/evil")).is_err());
        assert!(image_dir(root, Path::new("/evil/ssl")).is_err());
    }

    #[test]
    fn fill_once_copies_owner_mode_and_content_once() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = d.path().join("rootfs");
        std::fs::create_dir_all(root.join("data/sub")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("data/sub/f"), b"hello").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(root.join("data"), std::fs::Permissions::from_mode(0o750))
            .unwrap_or_else(|e| panic!("{e}"));
        let vol = d.path().join("vol/_data");
        let r = fill_once(&vol, &root, Path::new("/data"), false);
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
        assert_eq!(
            std::fs::read(vol.join("sub/f")).unwrap_or_default(),
            b"hello"
        );
        let m = std::fs::metadata(&vol).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.mode() & 0o7777, 0o750);
        // Once: emptied by the application, not filled again.
        std::fs::remove_dir_all(vol.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            fill_once(&vol, &root, Path::new("/data"), false),
            Ok(None)
        ));
        assert!(!vol.join("sub").exists());
        // nocopy: marked, nothing copied.
        let other = d.path().join("other/_data");
        assert!(matches!(
            fill_once(&other, &root, Path::new("/data"), true),
            Ok(None)
        ));
        assert!(other.join("../populated").exists());
        assert_eq!(std::fs::read_dir(&other).map(|r| r.count()).unwrap_or(9), 0);
    }
}
