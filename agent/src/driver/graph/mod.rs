//! Graph driver: content-addressed blobs, layers, overlay/vfs mounts, archive import and export.
//!
//! On-disk layout under the state directory (format version 1, see [`store::LAYOUT_VERSION`]):
//!
//! ```text
//! graph/version                     layout version ("1")
//! graph/blobs/sha256/<hex>          every blob (manifests, configs, compressed layers), verified
//! graph/blobs/tmp/                  partial downloads and imports (never read as blobs)
//! graph/layers/<chain-hex>/diff/    one unpacked layer per chain id, shared by every image
//! graph/layers/<chain-hex>/layer.json  diff id, parent chain id, size
//! graph/images.json                 the image index (see [`index::ImageIndex`])
//! graph/containers/<id>/            container layers (overlay: upper, work, merged; vfs: rootfs)
//! ```
//!
//! Entry points: [`store::Graph`] (open a state directory, import, list, remove, prune, save),
//! [`rootfs::GraphDriver`] (container layers), [`unpack::unpack_layer`] (hostile-input-safe layer
//! extraction).

pub mod blobs;
pub mod digest;
pub mod import;
pub mod index;
pub mod layers;
pub mod pull;
pub mod reference;
pub mod rootfs;
pub mod save;
pub mod store;
pub mod unpack;

use std::path::PathBuf;

pub use digest::Digest;
pub use index::{Image, ImageIndex, JsonImageIndex};
pub use rootfs::{AnyDriver, DriverKind, GraphDriver};
pub use store::Graph;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid digest {value:?}: {reason}")]
    BadDigest { value: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}; the data was not stored")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// The state directory's file system failed or filled up (ENOSPC, EDQUOT, EIO, EROFS, ...):
    /// not the input's fault. With `needed`/`available` when the disk is full.
    #[error("{op}: {source}; {}", storage_hint(.dir, .needed, .available))]
    Storage {
        op: String,
        dir: PathBuf,
        needed: Option<u64>,
        available: Option<u64>,
        #[source]
        source: std::io::Error,
    },
    #[error("unsafe layer entry {entry:?}: {reason}; the layer was rejected")]
    UnsafeEntry { entry: String, reason: String },
    #[error("reading layer tar: {0}")]
    Tar(String),
    #[error("{source_name}: {reason}")]
    Format { source_name: String, reason: String },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid image reference {value:?}: {reason}")]
    BadReference { value: String, reason: String },
    #[error("no such image: {0} (see `agent image ls`)")]
    ImageNotFound(String),
    #[error("image {image} is in use by container layer(s) {users:?}; remove them first")]
    ImageInUse { image: String, users: Vec<String> },
    #[error("no such container layer: {0}")]
    ContainerNotFound(String),
    #[error("container layer {0} already exists")]
    ContainerExists(String),
    #[error(
        "invalid container layer id {0:?}: use 1-64 characters from [A-Za-z0-9_.-], not starting with '.'"
    )]
    BadContainerId(String),
    #[error("{what} {target}: {source}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("graph driver {driver} is not available here: {reason}")]
    DriverUnavailable {
        driver: &'static str,
        reason: String,
    },
    #[error(
        "{path} has a graph layout version {found}; this agent understands version {supported}"
    )]
    LayoutVersion {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    #[error("registry {reference}: {reason}")]
    Registry { reference: String, reason: String },
    #[error("not enough free space in {path}: need {needed} bytes, {available} available")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
}

/// The advice part of [`Error::Storage`].
fn storage_hint(dir: &std::path::Path, needed: &Option<u64>, available: &Option<u64>) -> String {
    match (needed, available) {
        (Some(n), Some(a)) => format!(
            "not enough free space in {}: need {n} bytes, {a} available \
             (free space there or use another --state-dir)",
            dir.display()
        ),
        (Some(n), None) => format!("not enough free space in {}: need {n} bytes", dir.display()),
        (None, Some(a)) => format!(
            "not enough free space in {}: {a} bytes available (free space there or use another \
             --state-dir)",
            dir.display()
        ),
        _ => format!("I/O error in the state directory {}", dir.display()),
    }
}

/// Whether an OS error is the state directory's file system failing or filling up rather than
/// something the input asked for.
pub fn is_storage_errno(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EIO
                | libc::EROFS
                | libc::ENOMEM
                | libc::EMFILE
                | libc::ENFILE
                | libc::EUCLEAN
        )
    )
}

/// Whether an OS error means "the disk (or quota) is full".
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

impl Error {
    /// A [`Error::Storage`] without space figures (the caller may add them).
    pub(crate) fn storage(
        op: impl Into<String>,
        dir: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Storage {
            op: op.into(),
            dir: dir.into(),
            needed: None,
            available: None,
            source,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
