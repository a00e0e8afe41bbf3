//! Reading one manifest file: the permission rule on the open file, a size cap, the hash, and the
//! file parsed and checked on its own (reused while the path and hash stay the same: the parse
//! cache).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::perms::{self, Subject};
use crate::manifest::load::parse_hashed;
use crate::manifest::{FileResult, MAX_FILE_SIZE};

/// One manifest file as last read.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// Path as listed (in the manifest directory, symlinks not resolved).
    pub path: PathBuf,
    /// Hex SHA-256 of the content (empty when it could not be read).
    pub hash: String,
    /// The whole content (at most [`MAX_FILE_SIZE`] + 1 bytes, enough to tell a file that is too
    /// large), or why it was refused or could not be read.
    pub content: Result<Arc<Vec<u8>>, String>,
    /// The file on its own: its objects, each checked alone, or its problems (checks across
    /// files are [`super::load`]'s job). Shared by every later snapshot while the content stays
    /// the same.
    pub parsed: Arc<FileResult>,
}

/// Equal when path and content are (`parsed` follows from them).
impl PartialEq for ManifestFile {
    fn eq(&self, other: &ManifestFile) -> bool {
        self.path == other.path && self.hash == other.hash && self.content == other.content
    }
}

impl Eq for ManifestFile {}

/// Reads `path` (following symlinks) and parses it: refused when it, or the directory really
/// holding it, may be changed by someone other than root ([`perms`]); checked on the open file.
pub fn read_file(path: &Path) -> ManifestFile {
    read_file_reusing(path, None).0
}

/// [`read_file`], reusing `previous`'s parse when path and content hash are the same. Also
/// returns whether the file was parsed.
pub(crate) fn read_file_reusing(
    path: &Path,
    previous: Option<&ManifestFile>,
) -> (ManifestFile, bool) {
    let content = read_checked(path);
    let hash = match &content {
        Ok(bytes) => hex::encode(Sha256::digest(bytes)),
        Err(_) => String::new(),
    };
    let (parsed, fresh) = match (&content, previous) {
        (Ok(_), Some(p)) if p.path == path && p.hash == hash && p.content.is_ok() => {
            (p.parsed.clone(), false)
        }
        (Ok(bytes), _) => (Arc::new(parse_hashed(path, bytes, hash.clone())), true),
        (Err(e), _) => (Arc::new(FileResult::failed(path, e.clone())), false),
    };
    let file = ManifestFile {
        path: path.to_path_buf(),
        hash,
        content: content.map(Arc::new),
        parsed,
    };
    (file, fresh)
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
