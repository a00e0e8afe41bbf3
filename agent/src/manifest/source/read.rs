//! Reading one manifest file: the permission rule on the open file, a size cap, the hash.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::perms::{self, Subject};
use crate::manifest::MAX_FILE_SIZE;

/// One manifest file as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path as listed (in the manifest directory, symlinks not resolved).
    pub path: PathBuf,
    /// Hex SHA-256 of the content (empty when it could not be read).
    pub hash: String,
    /// The whole content (at most [`MAX_FILE_SIZE`] + 1 bytes, enough to tell a file that is too
    /// large), or why it was refused or could not be read.
    pub content: Result<Arc<Vec<u8>>, String>,
}

/// Reads `path` (following symlinks): refused when it, or the directory really holding it, may be
/// changed by someone other than root ([`perms`]); checked on the open file.
pub fn read_file(path: &Path) -> ManifestFile {
    let content = read_checked(path);
    let hash = match &content {
        Ok(bytes) => hex::encode(Sha256::digest(bytes)),
        Err(_) => String::new(),
    };
    ManifestFile {
        path: path.to_path_buf(),
        hash,
        content: content.map(Arc::new),
    }
}

fn read_checked(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read the file: {e}");
    // Non-blocking, so that a FIFO named like a manifest cannot hang the reader.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    if !f.metadata().map_err(cannot)?.is_file() {
        return Err(
            "not a regular file; a manifest is a regular file (or a symlink to one)".into(),
        );
    }
    perms::check_open(path, &f, Subject::Manifest).map_err(|e| e.about(path))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(bytes)
}
