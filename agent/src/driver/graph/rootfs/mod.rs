//! Container layers: the writable root filesystem of a container on top of an image's layers.
//!
//! [`GraphDriver`] is the trait, [`AnyDriver`] the closed set of implementations ([`Overlay`]:
//! kernel overlayfs; [`Vfs`]: a full copy, for kernels or file systems without overlay), and
//! [`select`] picks one: the configured one, or overlay when a probe mount works, else vfs.
//!
//! Each container layer is `containers/<id>/` with a `layer.json` ([`ContainerLayer`], format
//! version one) naming its driver, image and lower layer directories, so that mount, diff and
//! remove need nothing else.

pub mod overlay;
pub mod tarwrite;
pub mod vfs;

#[cfg(test)]
mod conformance;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Error;
use super::blobs::write_atomic;
use super::digest::Digest;
pub use overlay::Overlay;
pub use vfs::Vfs;

/// Version of a container layer's `layer.json`.
pub const CONTAINER_META_VERSION: u32 = 1;

/// The implementations, as named in config and on the command line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Overlay,
    Vfs,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Vfs => "vfs",
        }
    }
}

/// What a container layer records about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerLayer {
    pub version: u32,
    pub id: String,
    pub driver: DriverKind,
    /// The image id (config digest) it was created from.
    pub image: Digest,
    /// The image's unpacked layer directories, bottom first.
    pub lowers: Vec<PathBuf>,
}

/// Operations on container layers. Ids are 1-64 characters of `[A-Za-z0-9_.-]`.
pub trait GraphDriver {
    fn kind(&self) -> DriverKind;
    /// Creates the container layer `id` on `lowers` (bottom first) of `image`.
    fn create(&self, id: &str, image: &Digest, lowers: &[PathBuf])
    -> Result<ContainerLayer, Error>;
    /// Makes the root filesystem available and returns its path; mounting twice is fine.
    fn mount(&self, id: &str) -> Result<PathBuf, Error>;
    /// Unmounts; not mounted is success.
    fn unmount(&self, id: &str) -> Result<(), Error>;
    /// Writes the container's changes against its image as an uncompressed OCI layer tar.
    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<(), Error>;
    /// Unmounts and deletes; already gone is success.
    fn remove(&self, id: &str) -> Result<(), Error>;
    /// Whether the root filesystem is mounted now (always true for vfs once created).
    fn is_mounted(&self, id: &str) -> Result<bool, Error>;
}

/// The closed set of graph drivers.
#[derive(Debug, Clone)]
pub enum AnyDriver {
    Overlay(Overlay),
    Vfs(Vfs),
}

impl AnyDriver {
    fn inner(&self) -> &dyn GraphDriver {
        match self {
            AnyDriver::Overlay(d) => d,
            AnyDriver::Vfs(d) => d,
        }
    }
}

impl GraphDriver for AnyDriver {
    fn kind(&self) -> DriverKind {
        self.inner().kind()
    }
    fn create(
        &self,
        id: &str,
        image: &Digest,
        lowers: &[PathBuf],
    ) -> Result<ContainerLayer, Error> {
        self.inner().create(id, image, lowers)
    }
    fn mount(&self, id: &str) -> Result<PathBuf, Error> {
        self.inner().mount(id)
    }
    fn unmount(&self, id: &str) -> Result<(), Error> {
        self.inner().unmount(id)
    }
    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<(), Error> {
        self.inner().diff(id, out)
    }
    fn remove(&self, id: &str) -> Result<(), Error> {
        self.inner().remove(id)
    }
    fn is_mounted(&self, id: &str) -> Result<bool, Error> {
        self.inner().is_mounted(id)
    }
}

/// Picks the driver: `want` if given (an error if the host cannot do it), else overlay when a
/// probe mount under `containers_root` works, else vfs.
pub fn select(containers_root: &Path, want: Option<DriverKind>) -> Result<AnyDriver, Error> {
    fs::create_dir_all(containers_root).map_err(Error::io("create directory", containers_root))?;
    match want {
        Some(DriverKind::Vfs) => Ok(AnyDriver::Vfs(Vfs::new(containers_root))),
        Some(DriverKind::Overlay) => {
            overlay::probe(containers_root)?;
            Ok(AnyDriver::Overlay(Overlay::new(containers_root)))
        }
        None => match overlay::probe(containers_root) {
            Ok(()) => Ok(AnyDriver::Overlay(Overlay::new(containers_root))),
            Err(e) => {
                tracing::info!("graph driver: overlay not usable ({e}); using vfs");
                Ok(AnyDriver::Vfs(Vfs::new(containers_root)))
            }
        },
    }
}

/// Checks a container layer id (it becomes a directory name).
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadContainerId(id.to_string()))
    }
}

/// Every container layer under `root` (any driver).
pub fn list(root: &Path) -> Result<Vec<ContainerLayer>, Error> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Io {
                op: "list",
                path: root.into(),
                source: e,
            });
        }
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if check_id(&name).is_ok()
            && let Some(c) = read_meta(root, &name)?
        {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

pub(crate) fn read_meta(root: &Path, id: &str) -> Result<Option<ContainerLayer>, Error> {
    let path = root.join(id).join("layer.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                op: "read",
                path,
                source: e,
            });
        }
    };
    let c: ContainerLayer = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    if c.version > CONTAINER_META_VERSION {
        return Err(Error::LayoutVersion {
            path,
            found: c.version.to_string(),
            supported: CONTAINER_META_VERSION,
        });
    }
    Ok(Some(c))
}

/// Loads a layer's metadata, checking it belongs to `kind`.
pub(crate) fn meta_for(root: &Path, id: &str, kind: DriverKind) -> Result<ContainerLayer, Error> {
    check_id(id)?;
    let c = read_meta(root, id)?.ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
    if c.driver != kind {
        return Err(Error::DriverUnavailable {
            driver: kind.as_str(),
            reason: format!(
                "container layer {id} was created by the {} driver",
                c.driver.as_str()
            ),
        });
    }
    Ok(c)
}

/// Creates `containers/<id>/` with `subdirs` and writes its metadata last (a directory without
/// `layer.json` is an unfinished create, removed by `remove`).
pub(crate) fn create_dir(
    root: &Path,
    meta: &ContainerLayer,
    subdirs: &[&str],
) -> Result<PathBuf, Error> {
    check_id(&meta.id)?;
    let dir = root.join(&meta.id);
    if dir.join("layer.json").exists() {
        return Err(Error::ContainerExists(meta.id.clone()));
    }
    for s in subdirs {
        let d = dir.join(s);
        fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
    }
    Ok(dir)
}

pub(crate) fn write_meta(root: &Path, meta: &ContainerLayer) -> Result<(), Error> {
    let path = root.join(&meta.id).join("layer.json");
    let json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    write_atomic(&path, &json)
}

/// Deletes `containers/<id>` (gone already is success).
pub(crate) fn remove_dir(root: &Path, id: &str) -> Result<(), Error> {
    check_id(id)?;
    let dir = root.join(id);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            op: "remove container layer",
            path: dir,
            source: e,
        }),
    }
}
