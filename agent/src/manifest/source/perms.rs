//! Ownership and mode checks, as sshd's `StrictModes` does for `authorized_keys`: manifests run
//! code as root, so a file that someone other than root can change is refused.
//!
//! Rules: the manifest directory, each file (after following symlinks, as Kubernetes' `..data`
//! layout uses them) and the directory that really holds the file must be owned by root (or by the
//! user the agent runs as) and must not be writable by group or others. A refused file is treated
//! like a file that fails to load: `agent validate` and `agent plan` report it, the daemon's
//! `agent status` shows the reason, and what it described before stays as it was.
//!
//! The same rule holds for what the agent reads on a manifest's word, which runs as root just the
//! same: image archives (`dockerArchive`, `rootfsTar`, an `ociLayout` tar) and OCI layout
//! directories ([`check_archive`]), and env files (`envFiles`, [`check_env_file`]), which feed
//! containers and often hold secrets: those must not be readable by others either (a group
//! may read them).
//!
//! Secret files ([`read_secret`]) are held to more: owned by root (or the agent's user) and
//! closed to group and others entirely, since reading them is the harm.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a checked path is, for the reason given in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A manifest file or the manifest directory.
    Manifest,
    /// An image archive or OCI layout named by a manifest.
    Archive,
    /// The file holding a Secret's value, or its directory.
    Secret,
    /// An env file (`envFiles`) named by a manifest.
    EnvFile,
}

impl Subject {
    fn why(self) -> &'static str {
        match self {
            Subject::Manifest => "manifests run code as root",
            Subject::Archive => "the image it holds runs as root",
            Subject::Secret => "it holds a secret",
            Subject::EnvFile => "its variables reach a container",
        }
    }
}

/// Why a file or directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermError {
    #[error("{path}: refused: owned by uid {uid}, not root; {why} (fix: chown root {path})")]
    Owner {
        path: PathBuf,
        uid: u32,
        why: &'static str,
    },
    #[error(
        "{path}: refused: mode {mode:04o} lets {who} change it; {why} (fix: chmod go-w {path})"
    )]
    Writable {
        path: PathBuf,
        mode: u32,
        who: &'static str,
        why: &'static str,
    },
    #[error(
        "{path}: refused: {problem}; a secret must be a file only root can read \
         (fix: chown root:root {path} && chmod 600 {path})"
    )]
    Secret { path: PathBuf, problem: String },
    /// An env file others may read (they often hold secrets).
    #[error(
        "{path}: refused: mode {mode:04o} lets others read it; env files often hold secrets \
         (fix: chmod o-rwx {path})"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl PermError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PermError::Owner { path, .. }
            | PermError::Writable { path, .. }
            | PermError::Secret { path, .. }
            | PermError::Readable { path, .. }
            | PermError::Io { path, .. } => path,
        }
    }

    /// The message for a report about `file`: without the leading path when it is `file`
    /// itself (the report names it already).
    pub fn about(&self, file: &Path) -> String {
        let text = self.to_string();
        if self.path() == file {
            let prefix = format!("{}: ", file.display());
            if let Some(rest) = text.strip_prefix(&prefix) {
                return rest.to_string();
            }
        }
        text
    }
}

/// Checks the owner and mode of one file or directory.
pub fn check_meta(
    path: &Path,
    meta: &std::fs::Metadata,
    subject: Subject,
) -> Result<(), PermError> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(PermError::Owner {
            path: path.to_path_buf(),
            uid: meta.uid(),
            why: subject.why(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        (false, true) => "others",
        (false, false) => return Ok(()),
    };
    Err(PermError::Writable {
        path: path.to_path_buf(),
        mode,
        who,
        why: subject.why(),
    })
}

fn io(path: &Path, e: &std::io::Error) -> PermError {
    PermError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Checks a directory (the manifest directory).
pub fn check_dir(dir: &Path) -> Result<(), PermError> {
    let meta = std::fs::metadata(dir).map_err(|e| io(dir, &e))?;
    check_meta(dir, &meta, Subject::Manifest)
}

/// Checks the directory that really holds `path` (symlinks resolved): whoever may write it may
/// replace the file.
fn check_parent(path: &Path, subject: Subject) -> Result<(), PermError> {
    let real = std::fs::canonicalize(path).map_err(|e| io(path, &e))?;
    if let Some(parent) = real.parent() {
        let pmeta = std::fs::metadata(parent).map_err(|e| io(parent, &e))?;
        check_meta(parent, &pmeta, subject)?;
    }
    Ok(())
}

/// Checks a manifest file, following symlinks: the target and the directory holding it.
pub fn check_file(path: &Path) -> Result<(), PermError> {
    let meta = std::fs::metadata(path).map_err(|e| io(path, &e))?;
    check_meta(path, &meta, Subject::Manifest)?;
    check_parent(path, Subject::Manifest)
}

/// Checks a file already opened from `path`: the open file itself (so that a rename in between
/// cannot swap in another one) and the directory really holding it.
pub fn check_open(path: &Path, file: &File, subject: Subject) -> Result<(), PermError> {
    let meta = file.metadata().map_err(|e| io(path, &e))?;
    check_meta(path, &meta, subject)?;
    check_parent(path, subject)
}

/// Checks an env file opened from `path` (symlinks followed): [`check_open`] with
/// [`Subject::EnvFile`], and not readable by others.
pub fn check_env_file(path: &Path, file: &File) -> Result<(), PermError> {
    check_open(path, file, Subject::EnvFile)?;
    let mode = file.metadata().map_err(|e| io(path, &e))?.mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Err(PermError::Readable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Checks an image archive a manifest names (`dockerArchive`, `rootfsTar`, an `ociLayout` tar or
/// directory), after following symlinks: the file and the directory really holding it; for an
/// OCI layout directory also what the import reads in it (`oci-layout`, `index.json`, `blobs`,
/// `blobs/sha256` and every blob). A path that does not exist, or that this user may not examine
/// (`agent validate` run as another user), is left to the import, which reports it.
pub fn check_archive(path: &Path) -> Result<(), PermError> {
    let skip = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if skip(&e) => return Ok(()),
        Err(e) => return Err(io(path, &e)),
    };
    check_meta(path, &meta, Subject::Archive)?;
    check_parent(path, Subject::Archive)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let check = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => check_meta(p, &m, Subject::Archive),
        Err(e) if skip(&e) => Ok(()),
        Err(e) => Err(io(p, &e)),
    };
    for member in ["oci-layout", "index.json", "blobs", "blobs/sha256"] {
        check(&path.join(member))?;
    }
    let blobs = path.join("blobs/sha256");
    let entries = match std::fs::read_dir(&blobs) {
        Ok(rd) => rd,
        Err(e) if skip(&e) => return Ok(()),
        Err(e) => return Err(io(&blobs, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(&blobs, &e))?;
        check(&entry.path())?;
    }
    Ok(())
}

/// The largest secret value read (Docker's and Kubernetes' limit is 500 KiB and 1 MiB).
pub const MAX_SECRET_SIZE: u64 = 1024 * 1024;

/// Reads a Secret's value from `path` (symlinks followed): the open file must be a regular file
/// owned by root (or the agent's user) that gives group and others no access at all, at most
/// [`MAX_SECRET_SIZE`] bytes, in a directory only root may change. The error never holds the
/// value.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, PermError> {
    use std::io::Read;
    let secret = |problem: String| PermError::Secret {
        path: path.to_path_buf(),
        problem,
    };
    let file = File::open(path).map_err(|e| io(path, &e))?;
    let meta = file.metadata().map_err(|e| io(path, &e))?;
    if !meta.is_file() {
        return Err(secret("not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(secret(format!("owned by uid {}, not root", meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(secret(format!(
            "mode {mode:04o} lets group or others at it"
        )));
    }
    check_parent(path, Subject::Secret)?;
    if meta.len() > MAX_SECRET_SIZE {
        return Err(secret(format!(
            "{} bytes, more than the {MAX_SECRET_SIZE} a secret may hold",
            meta.len()
        )));
    }
    let mut value = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SECRET_SIZE + 1)
        .read_to_end(&mut value)
        .map_err(|e| io(path, &e))?;
    if value.len() as u64 > MAX_SECRET_SIZE {
        return Err(secret(format!(
            "more than the {MAX_SECRET_SIZE} bytes a secret may hold"
        )));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("skipped: needs root (chown to another user)");
        false
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn modes() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o644);
        check_dir(dir.path()).unwrap();
        check_file(&f).unwrap();
        chmod(&f, 0o664);
        let e = check_file(&f).unwrap_err().to_string();
        assert!(e.contains("mode 0664 lets its group change it"), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        chmod(&f, 0o646);
        let e = check_file(&f).unwrap_err().to_string();
        assert!(e.contains("lets others change it"), "{e}");
        chmod(&f, 0o600);
        chmod(dir.path(), 0o777);
        let e = check_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("lets group and others"), "{e}");
        // The directory really holding the file counts too.
        let e = check_file(&f).unwrap_err().to_string();
        assert!(e.contains("0777"), "{e}");
    }

    #[test]
    fn symlink_target_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let data = dir.path().join("..2024_01");
        std::fs::create_dir(&data).unwrap();
        chmod(&data, 0o755);
        let target = data.join("a.yaml");
        std::fs::write(&target, "x").unwrap();
        chmod(&target, 0o644);
        std::os::unix::fs::symlink("..2024_01", dir.path().join("..data")).unwrap();
        let link = dir.path().join("a.yaml");
        std::os::unix::fs::symlink("..data/a.yaml", &link).unwrap();
        check_file(&link).unwrap();
        chmod(&data, 0o775);
        let e = check_file(&link).unwrap_err().to_string();
        assert!(e.contains("..2024_01"), "{e}");
        chmod(&data, 0o755);
        chmod(&target, 0o666);
        let e = check_file(&link).unwrap_err().to_string();
        assert!(e.contains("a.yaml"), "{e}");
    }

    #[test]
    fn owner() {
        if !root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "x").unwrap();
        chmod(&f, 0o644);
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = check_file(&f).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        assert!(e.contains("chown root"), "{e}");
    }

    #[test]
    fn secrets_readable_by_root_alone() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2").unwrap();
        chmod(&f, 0o600);
        assert_eq!(read_secret(&f).unwrap(), b"hunter2");
        chmod(&f, 0o640);
        let e = read_secret(&f).unwrap_err().to_string();
        assert!(e.contains("mode 0640 lets group or others at it"), "{e}");
        assert!(
            e.contains("chown root:root") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        chmod(&f, 0o400);
        chmod(dir.path(), 0o777);
        let e = read_secret(&f).unwrap_err().to_string();
        assert!(e.contains("it holds a secret"), "{e}");
    }

    #[test]
    fn env_files_must_not_be_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let f = dir.path().join("db.env");
        std::fs::write(&f, "A=1").unwrap();
        chmod(&f, 0o640);
        check_env_file(&f, &File::open(&f).unwrap()).unwrap();
        chmod(&f, 0o644);
        let e = check_env_file(&f, &File::open(&f).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 0644 lets others read it"), "{e}");
        assert!(e.contains("chmod o-rwx"), "{e}");
        chmod(&f, 0o660);
        let e = check_env_file(&f, &File::open(&f).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("its variables reach a container"), "{e}");
    }

    #[test]
    fn archives_and_oci_layouts() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let tar = dir.path().join("docker.tar");
        std::fs::write(&tar, "x").unwrap();
        chmod(&tar, 0o644);
        check_archive(&tar).unwrap();
        check_archive(&dir.path().join("missing.tar")).unwrap();
        chmod(&tar, 0o666);
        let e = check_archive(&tar).unwrap_err().to_string();
        assert!(
            e.contains(
                "mode 0666 lets group and others change it; the image it holds runs as root"
            ),
            "{e}"
        );
        chmod(&tar, 0o644);
        chmod(dir.path(), 0o775);
        let e = check_archive(&tar).unwrap_err().to_string();
        assert!(e.contains("lets its group change it"), "{e}");
        chmod(dir.path(), 0o755);

        let layout = dir.path().join("oci");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for d in [&layout, &layout.join("blobs"), &blobs] {
            chmod(d, 0o755);
        }
        std::fs::write(layout.join("index.json"), "{}").unwrap();
        chmod(&layout.join("index.json"), 0o644);
        let blob = blobs.join("ab".repeat(32));
        std::fs::write(&blob, "b").unwrap();
        chmod(&blob, 0o644);
        check_archive(&layout).unwrap();
        chmod(&blob, 0o646);
        let e = check_archive(&layout).unwrap_err();
        assert_eq!(e.path(), blob.as_path(), "{e}");
        chmod(&blob, 0o644);
        chmod(&layout.join("index.json"), 0o664);
        let e = check_archive(&layout).unwrap_err().to_string();
        assert!(e.contains("index.json"), "{e}");
        chmod(&layout.join("index.json"), 0o644);
        chmod(&blobs, 0o777);
        let e = check_archive(&layout).unwrap_err().to_string();
        assert!(e.contains("sha256: refused"), "{e}");
    }
}
