//! Secret values at the intake: every load holds each Secret's file to [`perms::read_secret`]
//! (root-owned, no access for group or others; a refused file fails its manifest file at
//! `spec.file`, for `agent validate` too), and [`seal`] puts a keyed digest of the value in the
//! Secret's [`SecretManifest::digest`](crate::manifest::SecretManifest::digest).
//!
//! The digest is `sha256:` + SHA-256 over the host's secret key ([`host_key`]: 32 random bytes
//! in `<state>/secret.key`, mode 0600, made once) followed by the value. Unkeyed, the digest of
//! a short password kept in the store could be found by trying candidates; keyed, it tells only
//! whether the value changed. The value itself stays in memory only while it is hashed.
//!
//! [`check`] also says which values could not be an environment variable ([`EnvUnfit`]: not
//! UTF-8, a NUL byte, longer than `execve` takes), as the exec driver reads them for
//! `secretEnv` (one trailing newline dropped); the intake fails a container that names such a
//! secret in `secretEnv` ([`super::load_files`]), so that a replacement is not found unable to
//! start only after its predecessor stopped.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::perms;
use crate::manifest::node::Step::Key;
use crate::manifest::{FileResult, Loaded, Manifest};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "secret.key";

/// The host's secret key, `<state_dir>/secret.key`. Made (32 bytes from the kernel's random
/// source, mode 0600) when missing and `create` is set; without `create` a missing key is
/// `Ok(None)` (`agent plan` against a state directory the daemon never ran in).
pub fn host_key(state_dir: &Path, create: bool) -> std::io::Result<Option<Vec<u8>>> {
    let path = state_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => return Ok(Some(k)),
        Ok(k) => {
            return Err(std::io::Error::other(format!(
                "{}: {} bytes, expected 32 (remove it to make a new key; every container \
                 using a secret is then recreated once)",
                path.display(),
                k.len()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ));
        }
    }
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let tmp: PathBuf = state_dir.join(format!(".{KEY_FILE}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(state_dir)?.sync_all()?;
    Ok(Some(key))
}

/// The keyed digest of a value.
pub fn digest(key: &[u8], value: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(value);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Why a secret's value cannot be an environment variable (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvUnfit {
    NotUtf8,
    Nul,
    /// Its length in bytes (one trailing newline dropped).
    Long(usize),
}

/// What the intake keeps of a secret's value for the `secretEnv` check: never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvFacts {
    utf8: bool,
    nul: bool,
    /// Bytes, one trailing newline dropped (as the exec driver drops it).
    len: usize,
}

impl EnvFacts {
    /// Of a value as read from the secret's file.
    pub fn of(value: &[u8]) -> EnvFacts {
        let text = value.strip_suffix(b"\n").unwrap_or(value);
        EnvFacts {
            utf8: std::str::from_utf8(text).is_ok(),
            nul: text.contains(&0),
            len: text.len(),
        }
    }

    /// Why the value cannot be environment variable `var` (`None`: it can).
    pub fn unfit(&self, var: &str) -> Option<EnvUnfit> {
        if !self.utf8 {
            Some(EnvUnfit::NotUtf8)
        } else if self.nul {
            Some(EnvUnfit::Nul)
        } else if var.len() + 1 + self.len >= crate::manifest::validate::object::MAX_ARG_STRLEN {
            Some(EnvUnfit::Long(var.len() + 1 + self.len))
        } else {
            None
        }
    }
}

impl std::fmt::Display for EnvUnfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvUnfit::NotUtf8 => f.write_str("its value is not UTF-8 text"),
            EnvUnfit::Nul => f.write_str("its value holds a NUL byte"),
            EnvUnfit::Long(n) => write!(
                f,
                "it is {n} bytes long with the variable's name: the kernel takes at most {} bytes in one KEY=VALUE \
                 string (MAX_ARG_STRLEN)",
                crate::manifest::validate::object::MAX_ARG_STRLEN - 1
            ),
        }
    }
}

/// Reads every Secret of `file` (checking its permissions); with `key`, records each value's
/// digest. A refused or unreadable secret file fails `file` at `spec.file`. Returns what it
/// read, by secret name ([`EnvFacts`]).
pub fn check(file: &mut FileResult, key: Option<&[u8]>) -> Vec<(String, EnvFacts)> {
    let mut read_ok = Vec::new();
    let Ok(objects) = &mut file.outcome else {
        return read_ok;
    };
    let mut found = Vec::new();
    for obj in objects.iter_mut() {
        let Manifest::Secret(secret) = &mut obj.manifest else {
            continue;
        };
        let path = secret.spec.file.clone();
        let read = perms::read_secret(&path);
        secret.digest = match &read {
            Ok(value) => key.map(|k| digest(k, value)),
            Err(_) => None,
        };
        if let Ok(value) = &read {
            read_ok.push((secret.metadata.name.clone(), EnvFacts::of(value)));
        }
        if let Err(e) = read {
            found.push(crate::manifest::validate::diag(
                obj,
                &[Key("spec"), Key("file")],
                format!("secret file {}: {}", path.display(), e.about(&path)),
            ));
        }
    }
    if !found.is_empty() {
        file.outcome = Err(found);
    }
    read_ok
}

/// Records the digest of every Secret's value in `loaded` under the host key (see the module
/// docs); a file whose secret cannot be read now fails.
pub fn seal(loaded: &mut Loaded, key: &[u8]) {
    for file in &mut loaded.files {
        check(file, Some(key));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_and_digests_are_keyed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(host_key(dir.path(), false).unwrap().is_none());
        let k = host_key(dir.path(), true).unwrap().unwrap();
        assert_eq!(host_key(dir.path(), false).unwrap(), Some(k.clone()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let d = digest(&k, b"pw");
        assert_ne!(d, digest(&[0u8; 32], b"pw"));
        assert_ne!(d, digest(&k, b"pw2"));
        assert!(!d.contains("pw"));
    }
}
