//! Writing the converted manifests: each document is serialized from the agent's own types
//! (serde-saphyr), with a header comment naming the compose file and listing what of that part
//! was not carried over. One file per object (`container-web.yaml`, `volume-shop-data.yaml`) in a
//! directory, never overwriting an existing file unless asked, or one multi-document stream.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Conversion, Converted, Note};
use crate::manifest::{ApiVersion, Kind, Manifest, Metadata};

/// The document in the order people write it: apiVersion, kind, metadata, spec.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Doc<'a, T: Serialize> {
    api_version: ApiVersion,
    kind: Kind,
    metadata: &'a Metadata,
    spec: &'a T,
}

fn yaml<T: Serialize>(kind: Kind, metadata: &Metadata, spec: &T) -> String {
    let doc = Doc {
        api_version: ApiVersion::V1,
        kind,
        metadata,
        spec,
    };
    let mut text =
        serde_saphyr::to_string(&doc).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The file name of an object: `<kind>-<name>.yaml`.
pub fn file_name(m: &Manifest) -> String {
    format!(
        "{}-{}.yaml",
        m.kind().as_str().to_ascii_lowercase(),
        m.name()
    )
}

/// One document with its header comment; `notes` are the not-carried-over notes of its part.
pub fn document_with(o: &Converted, notes: &[&Note]) -> String {
    let mut out = format!(
        "# Converted by `agent convert compose` from {} ({}, line {}).\n",
        o.file.display(),
        o.from,
        o.line
    );
    if !notes.is_empty() {
        out.push_str("# Not carried over:\n");
        for n in notes {
            out.push_str(&format!(
                "#   {}:{}:{}: {}: {}\n",
                n.file.display(),
                n.line,
                n.col,
                n.key,
                n.message
                    .strip_prefix("not carried over: ")
                    .unwrap_or(&n.message)
                    .replace('\n', " ")
            ));
        }
    }
    out.push_str(&match &o.manifest {
        Manifest::Container(c) => yaml(Kind::Container, &c.metadata, &c.spec),
        Manifest::Volume(v) => yaml(Kind::Volume, &v.metadata, &v.spec),
        Manifest::Network(n) => yaml(Kind::Network, &n.metadata, &n.spec),
        Manifest::Secret(s) => yaml(Kind::Secret, &s.metadata, &s.spec),
        Manifest::Image(i) => yaml(Kind::Image, &i.metadata, &i.spec),
    });
    out
}

/// One document with its header comment and no notes.
pub fn document(o: &Converted) -> String {
    document_with(o, &[])
}

/// The notes that belong to object `o` (its service's keys, for a container).
fn notes_of<'a>(c: &'a Conversion, o: &Converted) -> Vec<&'a Note> {
    let prefix = format!("{}.", o.from);
    c.not_carried
        .iter()
        .filter(|n| n.key == o.from || n.key.starts_with(&prefix))
        .collect()
}

/// Every document as one stream (`---` between documents).
pub fn stream(c: &Conversion) -> String {
    let docs: Vec<String> = c
        .objects
        .iter()
        .map(|o| document_with(o, &notes_of(c, o)))
        .collect();
    docs.join("---\n")
}

/// Why files were not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to overwrite {}; pass --force to replace them", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists(Vec<PathBuf>),
}

/// Writes one file per object into `dir` (made if missing), mode 0644. When any target exists
/// and `force` is false nothing is written. Returns the paths written.
pub fn write_dir(c: &Conversion, dir: &Path, force: bool) -> Result<Vec<PathBuf>, WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    let files: Vec<(PathBuf, String)> = c
        .objects
        .iter()
        .map(|o| {
            (
                dir.join(file_name(&o.manifest)),
                document_with(o, &notes_of(c, o)),
            )
        })
        .collect();
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|(p, _)| p.symlink_metadata().is_ok())
            .map(|(p, _)| p.clone())
            .collect();
        if !existing.is_empty() {
            return Err(WriteError::Exists(existing));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io(dir))?;
    let mut written = Vec::new();
    for (path, text) in files {
        // Write a temporary file beside it, then rename: a reader (the agent watching this
        // directory) never sees half a file. Dotfiles are ignored by the agent.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}
