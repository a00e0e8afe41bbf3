//! The one intake of manifest files, used by the daemon, `agent plan` and `agent validate`
//! alike (kubelet's `sourceFile` is the model: list, filter, check, read, parse).
//!
//! - [`list`]: which directory entries count ([`is_manifest_name`]: `*.yaml` / `*.yml`, no
//!   dotfiles, no editor swap or backup files, no subdirectories).
//! - [`perms`]: who may have written what the agent reads (sshd's `StrictModes`: owned by root
//!   or the agent's user, not writable by group or others), for manifest files, their directory
//!   and the image archives they name (checked in [`load`] and [`load_paths`] every time, so a
//!   refused archive fails its manifest file at the `path` field, for `agent validate` too).
//! - [`secrets`]: the file of every Secret is read on every load, held to
//!   [`perms::read_secret`] (a refused one fails its manifest file at `spec.file`), and
//!   [`secrets::seal`] records a keyed digest of its value.
//! - [`read_file`]: one file read whole (capped at [`MAX_FILE_SIZE`] + 1 bytes), permission
//!   checked on the open file, hashed, parsed and checked on its own. The parse cache: the
//!   watcher's [`Scanner`] re-reads only files whose metadata changed or that had an event, and
//!   re-parses only files whose path and SHA-256 differ from its last snapshot; [`load`] then
//!   runs only the checks across files.
//! - [`scan`]: what changed since the last [`Snapshot`], read only when the content may be new,
//!   taken only once complete ([`Scanner`]); [`watch`]: the daemon's [`Watcher`] thread that
//!   feeds it inotify events and publishes snapshots.
//! - [`load`] / [`load_paths`]: files to a [`Loaded`] (each file parsed and checked on its own,
//!   then all files checked together); both read the env files containers name
//!   ([`super::envfile`]) on every load.
//!
//! [`MAX_FILE_SIZE`]: crate::manifest::MAX_FILE_SIZE

mod list;
pub mod perms;
mod read;
pub mod scan;
pub mod secrets;
pub mod watch;

use std::path::{Path, PathBuf};

pub use list::{FileKey, Listing, is_manifest_name, list};
pub use read::{ManifestFile, read_file};
pub use scan::{Changes, Hint, Scanner, Snapshot, WatchTiming};
pub use watch::Watcher;

use super::{Error, FileResult, ImageSpec, Loaded, Manifest};

/// Loads a watcher snapshot: every file's objects or problems, checked together. Each file was
/// parsed when it was read (and only when its content changed), so this re-parses nothing; the
/// checks across files (duplicate names, dangling references, cycles, conflicts) run over the
/// whole set every time.
pub fn load(snapshot: &Snapshot) -> Loaded {
    load_files(snapshot.files.values())
}

/// Loads files already read: a file that was refused or could not be read fails with that reason
/// at its line 1.
pub fn load_files<'a>(files: impl IntoIterator<Item = &'a ManifestFile>) -> Loaded {
    let mut values = std::collections::HashMap::new();
    let mut results: Vec<FileResult> = files
        .into_iter()
        .map(|f| {
            let mut result = (*f.parsed).clone();
            check_archives(&mut result);
            values.extend(secrets::check(&mut result, None));
            read_env_files(&mut result);
            result
        })
        .collect();
    for result in &mut results {
        check_secret_env(result, &values);
    }
    Loaded::from_files(results)
}

/// Fails a file whose container names in `secretEnv` a secret whose value cannot be an
/// environment variable ([`secrets::EnvFacts`]; `values` by secret name), at that
/// `secretEnv` entry. A secret no file declares is reported by the checks across files.
fn check_secret_env(
    file: &mut FileResult,
    values: &std::collections::HashMap<String, secrets::EnvFacts>,
) {
    use crate::manifest::node::Step::Key;
    let Ok(objects) = &file.outcome else {
        return;
    };
    let mut found = Vec::new();
    for obj in objects {
        let Manifest::Container(c) = &obj.manifest else {
            continue;
        };
        for (var, name) in &c.spec.secret_env {
            if let Some(why) = values.get(name).and_then(|v| v.unfit(var)) {
                found.push(super::validate::diag(
                    obj,
                    &[Key("spec"), Key("secretEnv"), Key(var)],
                    format!(
                        "secret {name} cannot be environment variable {var}: {why}; give it \
                         as a file instead (secrets)"
                    ),
                ));
            }
        }
    }
    if !found.is_empty() {
        file.outcome = Err(found);
    }
}

/// Holds the image archives a file's Image objects name to the permission rule
/// ([`perms::check_archive`]), on every load: an archive can change hands without its manifest
/// changing. A refused archive fails its file at the `path` field (file:line), so `agent
/// validate` refuses first and the daemon keeps the file's last good version; the Image's name
/// stays declared, so references to it are not reported as dangling.
fn check_archives(file: &mut FileResult) {
    use crate::manifest::node::Step::Key;
    let Ok(objects) = &file.outcome else {
        return;
    };
    let mut found = Vec::new();
    for obj in objects {
        let Manifest::Image(image) = &obj.manifest else {
            continue;
        };
        let (field, path) = match &image.spec {
            ImageSpec::Registry(_) => continue,
            ImageSpec::OciLayout(a) => ("ociLayout", &a.path),
            ImageSpec::DockerArchive(a) => ("dockerArchive", &a.path),
            ImageSpec::RootfsTar(r) => ("rootfsTar", &r.path),
        };
        if let Err(e) = perms::check_archive(path) {
            found.push(super::validate::diag(
                obj,
                &[Key("spec"), Key(field), Key("path")],
                format!("image archive {}: {}", path.display(), e.about(path)),
            ));
        }
    }
    if !found.is_empty() {
        file.outcome = Err(found);
    }
}

/// Reads the env files (`envFiles`) of a file's containers into their `env_file_data`, on
/// every load: their content can change without the manifest changing, and they may lie outside
/// the watched directory (so a change is noticed at the next full pass: a file event in the
/// directory, the resync, `agent apply`). A missing, unreadable, refused or unparsable env file
/// fails the manifest file at the `envFiles` entry (file:line:col), as an archive does.
fn read_env_files(file: &mut FileResult) {
    use crate::manifest::node::Step::{Index, Key};
    let Ok(objects) = &mut file.outcome else {
        return;
    };
    let dir = file
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut found = Vec::new();
    for obj in objects.iter_mut() {
        let Manifest::Container(c) = &obj.manifest else {
            continue;
        };
        let mut data = Vec::new();
        for (i, path) in c.spec.env_files.iter().enumerate() {
            let resolved = super::envfile::resolve(&dir, path);
            match super::envfile::read(path, &resolved) {
                Ok(d) => data.push(d),
                Err(e) => found.push(super::validate::diag(
                    obj,
                    &[Key("spec"), Key("envFiles"), Index(i)],
                    format!("{}: {e}", super::envfile::describe(path, &resolved)),
                )),
            }
        }
        if let Manifest::Container(c) = &mut obj.manifest {
            c.spec.env_file_data = data;
        }
    }
    if !found.is_empty() {
        file.outcome = Err(found);
    }
}

/// Loads every manifest file of a directory (not recursive) and checks them together.
pub fn load_dir(dir: &Path) -> Result<Loaded, Error> {
    load_paths(&[dir.to_path_buf()])
}

/// Loads files and directories, read like the daemon reads its directory: a directory must pass
/// the permission rule and contributes its manifest files ([`is_manifest_name`]); a file named
/// directly is read whatever its name. Paths that do not exist or cannot be listed, and refused
/// directories, are errors; unreadable, refused or bad files become failing [`FileResult`]s.
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, Error> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in paths {
        let read_err = |source| Error::Read {
            path: p.clone(),
            source,
        };
        let meta = std::fs::metadata(p).map_err(read_err)?;
        if meta.is_dir() {
            perms::check_dir(p)?;
            files.extend(list(p).map_err(read_err)?.into_keys().map(|n| p.join(n)));
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files.dedup();
    let read: Vec<ManifestFile> = files.iter().map(|p| read_file(p)).collect();
    Ok(load_files(&read))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
