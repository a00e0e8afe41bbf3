//! What image id (config digest) an archive or layout on disk would import as, without
//! importing it: how the daemon notices that a layout or archive was rebuilt in place.
//!
//! - OCI layout directory: index.json, the selected manifest (an index resolved for this host)
//!   and its config descriptor; a few small reads.
//! - OCI layout tar, `docker save` archive: one pass over the tar keeping only members up to
//!   16 MiB that can be JSON (index.json, manifest.json, configs, manifest blobs).
//! - Root filesystem tarball: the sha256 of the uncompressed tar (its diff id) and the config
//!   this driver makes from it (see [`super::archive::rootfs_config`]); a whole read.
//!
//! `Ok(None)` means the answer is not knowable without importing (several images and no tag):
//! the caller then does not compare.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::super::Error;
use super::super::digest::{Digest, HashingReader};
use super::archive::{
    ArchiveKind, DockerManifestEntry, MAX_JSON, OciIndex, detect, member_name, normalize_rel,
    open_tar, read_small, rootfs_config, select_docker, select_oci,
};
use super::platform::{self, Platform};
use super::{Descriptor, ManifestDoc};

fn fmt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        source_name: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The image id `path` (with `tag` selecting) would import as.
pub fn image_id(path: &Path, tag: Option<&str>) -> Result<Option<Digest>, Error> {
    match detect(path)? {
        ArchiveKind::OciDir => {
            let index = read_small(&path.join("index.json"))?;
            let blobs = path.join("blobs/sha256");
            oci(path, &index, tag, &mut |d: &Digest| {
                read_small(&blobs.join(d.hex())).ok()
            })
        }
        ArchiveKind::OciTar => {
            let m = small_members(path)?;
            let index = m
                .files
                .get("index.json")
                .ok_or_else(|| fmt_err(path, "OCI layout tar without index.json"))?;
            oci(path, index, tag, &mut |d: &Digest| {
                m.files.get(&format!("blobs/sha256/{}", d.hex())).cloned()
            })
        }
        ArchiveKind::DockerArchive => {
            let m = small_members(path)?;
            let manifest = m
                .files
                .get("manifest.json")
                .ok_or_else(|| fmt_err(path, "docker archive without manifest.json"))?;
            let mut entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
                .map_err(|e| fmt_err(path, format!("manifest.json: {e}")))?;
            select_docker(&mut entries, tag, path)?;
            let [entry] = entries.as_slice() else {
                return Ok(None);
            };
            let mut name = entry.config.trim_start_matches("./").to_string();
            for _ in 0..8 {
                match m.links.get(&name) {
                    Some(t) => name = t.clone(),
                    None => break,
                }
            }
            let cfg = m
                .files
                .get(&name)
                .ok_or_else(|| fmt_err(path, format!("config {} missing", entry.config)))?;
            Ok(Some(Digest::of(cfg)))
        }
        ArchiveKind::RootfsTar => {
            let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
            let (_, plain) =
                super::super::unpack::decompress(f).map_err(Error::io("read", path))?;
            let mut h = HashingReader::new(plain);
            std::io::copy(&mut h, &mut std::io::sink()).map_err(Error::io("read", path))?;
            let (diff_id, _) = h.finish().map_err(Error::io("read", path))?;
            let cfg = rootfs_config(&diff_id).map_err(|e| fmt_err(path, e))?;
            Ok(Some(Digest::of(&cfg)))
        }
    }
}

/// The config digest of the manifest `tag` selects in an OCI index, resolving nested indexes
/// for this host; blobs come from `blob`.
fn oci(
    path: &Path,
    index: &[u8],
    tag: Option<&str>,
    blob: &mut dyn FnMut(&Digest) -> Option<Vec<u8>>,
) -> Result<Option<Digest>, Error> {
    let idx: OciIndex =
        serde_json::from_slice(index).map_err(|e| fmt_err(path, format!("index.json: {e}")))?;
    let chosen = select_oci(&idx.manifests, tag, path)?;
    let [first] = chosen.as_slice() else {
        return Ok(None);
    };
    let mut desc: Descriptor = (*first).clone();
    let host = Platform::host();
    for _ in 0..4 {
        let bytes = blob(&desc.digest)
            .ok_or_else(|| fmt_err(path, format!("blob {} missing", desc.digest)))?;
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| fmt_err(path, format!("manifest {}: {e}", desc.digest)))?;
        if let Some(list) = doc.manifests {
            let plats: Vec<Platform> = list
                .iter()
                .map(|d| d.platform.clone().unwrap_or_default())
                .collect();
            let Some(i) = platform::choose(&host, &plats) else {
                return Ok(None);
            };
            desc = list[i].clone();
            continue;
        }
        return Ok(doc.config.map(|c| c.digest));
    }
    Ok(None)
}

/// Small regular members (JSON candidates) and symlinks/hard links of a tar.
#[derive(Default)]
struct Small {
    files: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

fn small_members(path: &Path) -> Result<Small, Error> {
    let mut ar = open_tar(path)?;
    let mut m = Small::default();
    for e in ar.entries().map_err(|e| fmt_err(path, e.to_string()))? {
        let mut e = e.map_err(|e| fmt_err(path, e.to_string()))?;
        let name = member_name(&e);
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(t)) = e.link_name() {
                let t = t.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() {
                    let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                    normalize_rel(&dir.join(&t))
                } else {
                    t.trim_start_matches("./").to_string()
                };
                m.links.insert(name, resolved);
            }
            continue;
        }
        if !kind.is_file() || name.ends_with('/') || e.size() > MAX_JSON {
            continue;
        }
        let small_blob = name.starts_with("blobs/sha256/") && e.size() <= 4 * 1024 * 1024;
        if name.ends_with(".json") || small_blob {
            let mut v = Vec::new();
            e.read_to_end(&mut v)
                .map_err(Error::io("read", path.join(&name)))?;
            m.files.insert(name, v);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_images_peek_as_they_load() {
        // The busybox test images (scripts/build-test-images.sh), when present.
        let dir = Path::new("/var/lib/agent-test-images");
        let Ok(env) = std::fs::read_to_string(dir.join("digests.env")) else {
            eprintln!("skipped: no test images");
            return;
        };
        let want = env
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_DIGEST="))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        for f in ["oci", "oci.tar", "docker.tar"] {
            let got = image_id(&dir.join(f), None).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(got.map(|d| d.to_string()), Some(want.clone()), "{f}");
        }
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = d.path();
        let g =
            crate::driver::graph::Graph::open(state, Some(crate::driver::graph::DriverKind::Vfs))
                .unwrap_or_else(|e| panic!("{e}"));
        let loaded = g
            .load(&dir.join("rootfs.tar"), Some("r"))
            .unwrap_or_else(|e| panic!("{e}"));
        let got = image_id(&dir.join("rootfs.tar"), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, Some(loaded[0].id.clone()));
    }
}
