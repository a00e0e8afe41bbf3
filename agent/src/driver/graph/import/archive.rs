//! Side-loading images from files: OCI image layout (directory or tar), `docker save` archive, or
//! a root filesystem tarball. Tars may be gzip- or zstd-compressed. The kind is recognised from
//! the archive's members: `oci-layout` means an OCI layout, `manifest.json` a docker archive,
//! anything else a root filesystem.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::super::Error;
use super::super::blobs::Expect;
use super::super::digest::Digest;
use super::super::index::Image;
use super::super::reference;
use super::super::store::Graph;
use super::super::unpack::{Compression, decompress};
use super::platform::Platform;
use super::{
    BlobSource, Descriptor, MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
};

/// Largest JSON member (index.json, manifest.json, configs) read into memory from an archive.
pub(crate) const MAX_JSON: u64 = 16 * 1024 * 1024;

/// The kinds of file `agent image load` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    OciDir,
    OciTar,
    DockerArchive,
    RootfsTar,
}

fn fmt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        source_name: path.display().to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn open_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read>>, Error> {
    let f = File::open(path).map_err(Error::io("open", path))?;
    let (_, r) = decompress(f).map_err(Error::io("read", path))?;
    Ok(tar::Archive::new(r))
}

pub(crate) fn member_name(e: &tar::Entry<'_, impl Read>) -> String {
    let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    raw.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Recognises what `path` holds.
pub fn detect(path: &Path) -> Result<ArchiveKind, Error> {
    if path.is_dir() {
        return if path.join("oci-layout").is_file() {
            Ok(ArchiveKind::OciDir)
        } else {
            Err(fmt_err(
                path,
                "a directory must be an OCI image layout (it has no oci-layout file)",
            ))
        };
    }
    let mut ar = open_tar(path)?;
    let mut kind = ArchiveKind::RootfsTar;
    let entries = ar
        .entries()
        .map_err(|e| fmt_err(path, format!("not a tar archive: {e}")))?;
    for e in entries {
        let e = e.map_err(|e| fmt_err(path, format!("not a readable tar archive: {e}")))?;
        match member_name(&e).as_str() {
            "oci-layout" => return Ok(ArchiveKind::OciTar),
            "manifest.json" => kind = ArchiveKind::DockerArchive,
            _ => {}
        }
    }
    Ok(kind)
}

/// What to load from an archive and how to name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load only the image with this tag: an OCI layout's `org.opencontainers.image.ref.name`
    /// (the tag alone, `1`, or a full name ending in `:1`), a docker archive's `RepoTags` entry
    /// (`name:tag`, or the tag alone when one entry has it). Unknown tags are refused with the
    /// list of tags the archive has.
    pub tag: Option<String>,
    /// Name the loaded image with these (image references; `web` is `web:latest`) instead of the
    /// names the archive gives it. Refused when the archive holds several images and no tag
    /// selects one.
    pub names: Vec<String>,
}

impl LoadOptions {
    /// `agent image load --name N`.
    pub fn named(name: Option<&str>) -> LoadOptions {
        LoadOptions {
            tag: None,
            names: name.map(str::to_string).into_iter().collect(),
        }
    }
}

/// Imports the images in `path` (blobs and layers) and returns them for the caller to record.
/// Use [`Graph::load_with`], which records them and undoes a failed load.
pub fn load(graph: &Graph, path: &Path, opts: &LoadOptions) -> Result<Vec<Image>, Error> {
    let names: Vec<String> = opts
        .names
        .iter()
        .map(|n| reference::normalize(n))
        .collect::<Result<_, _>>()?;
    let tag = opts.tag.as_deref();
    let source = path.display().to_string();
    let images = match detect(path)? {
        ArchiveKind::OciDir => {
            let index = read_small(&path.join("index.json"))?;
            let mut src = DirSource {
                root: path.to_path_buf(),
            };
            load_oci(graph, &mut src, &index, tag, &names, &source, path)
        }
        ArchiveKind::OciTar => {
            let members = stream_members(graph, path, true)?;
            let index = members
                .json
                .get("index.json")
                .ok_or_else(|| fmt_err(path, "OCI layout tar without index.json"))?;
            let mut src = StoreSource {
                name: source.clone(),
            };
            load_oci(graph, &mut src, index, tag, &names, &source, path)
        }
        ArchiveKind::DockerArchive => load_docker(graph, path, tag, &names, &source),
        ArchiveKind::RootfsTar => {
            if let Some(t) = tag {
                return Err(fmt_err(
                    path,
                    format!("a root filesystem tarball has no tags (asked for tag {t:?})"),
                ));
            }
            load_rootfs(graph, path, &names, &source).map(|i| vec![i])
        }
    }?;
    Ok(images)
}

/// The tag an OCI `ref.name` annotation carries: the whole value when it is a bare tag, else
/// what follows the last `:` after the last `/` (`reg:5000/web:2` -> `2`).
fn ref_tag(r: &str) -> &str {
    let last = r.rsplit('/').next().unwrap_or(r);
    match last.rsplit_once(':') {
        Some((_, t)) if r.contains('/') || r.contains(':') => t,
        _ => r,
    }
}

/// Whether an image listed with `refs` (its ref.name / RepoTags values) is the one `want` asks
/// for: a value equal to `want`, or whose tag is `want`.
fn tag_matches(refs: &[&str], want: &str) -> bool {
    refs.iter().any(|r| {
        *r == want
            || ref_tag(r) == want
            || (want.contains(':')
                && reference::normalize(r).ok() == reference::normalize(want).ok())
    })
}

/// Refuses a tag the archive does not have, listing the ones it has.
fn unknown_tag(path: &Path, want: &str, have: &[String]) -> Error {
    fmt_err(
        path,
        format!(
            "has no image tagged {want:?}; its tags: {}",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ),
    )
}

fn several_named(path: &Path) -> Error {
    fmt_err(
        path,
        "holds several images: say which one with a tag (`tag:` in the Image manifest) to name it",
    )
}

pub(crate) fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    let f = File::open(path).map_err(Error::io("open", path))?;
    let mut v = Vec::new();
    f.take(MAX_JSON)
        .read_to_end(&mut v)
        .map_err(Error::io("read", path))?;
    Ok(v)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct OciIndex {
    pub(crate) manifests: Vec<Descriptor>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The descriptors of index.json that `tag` selects (all of them without a tag).
pub(crate) fn select_oci<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    path: &Path,
) -> Result<Vec<&'a Descriptor>, Error> {
    if manifests.is_empty() {
        return Err(fmt_err(path, "index.json lists no manifests"));
    }
    let Some(want) = tag else {
        return Ok(manifests.iter().collect());
    };
    let hit = manifests.iter().find(|d| {
        let refs: Vec<&str> = d
            .annotations
            .get(REF_NAME)
            .map(String::as_str)
            .into_iter()
            .collect();
        tag_matches(&refs, want)
    });
    match hit {
        // The same tag twice (a manifest per platform, listed flat): the first.
        Some(d) => Ok(vec![d]),
        None => {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME).cloned())
                .collect();
            Err(unknown_tag(path, want, &have))
        }
    }
}

fn load_oci(
    graph: &Graph,
    src: &mut dyn BlobSource,
    index: &[u8],
    tag: Option<&str>,
    names: &[String],
    source: &str,
    path: &Path,
) -> Result<Vec<Image>, Error> {
    let idx: OciIndex =
        serde_json::from_slice(index).map_err(|e| fmt_err(path, format!("index.json: {e}")))?;
    let chosen = select_oci(&idx.manifests, tag, path)?;
    if !names.is_empty() && chosen.len() > 1 {
        return Err(several_named(path));
    }
    let mut out = Vec::new();
    for desc in chosen {
        let names = if names.is_empty() {
            names_from_annotations(&desc.annotations)
        } else {
            names.to_vec()
        };
        out.push(super::import_manifest(graph, src, desc, names, source)?);
    }
    Ok(out)
}

/// `io.containerd.image.name`, else `org.opencontainers.image.ref.name` when it is a full name.
fn names_from_annotations(a: &BTreeMap<String, String>) -> Vec<String> {
    let full = a.get("io.containerd.image.name").or_else(|| {
        a.get("org.opencontainers.image.ref.name")
            .filter(|r| r.contains('/') || r.contains(':'))
    });
    full.and_then(|n| reference::normalize(n).ok())
        .into_iter()
        .collect()
}

/// Blobs read from an OCI layout directory: verified against their digest and size on the way in.
struct DirSource {
    root: PathBuf,
}

impl BlobSource for DirSource {
    fn ensure(&mut self, graph: &Graph, desc: &Descriptor) -> Result<(), Error> {
        if graph.blobs().contains(&desc.digest) {
            return Ok(());
        }
        let p = self.root.join("blobs/sha256").join(desc.digest.hex());
        let f = File::open(&p).map_err(Error::io("open blob", &p))?;
        let what = p.display().to_string();
        graph.blobs().put(
            f,
            Expect {
                digest: Some(&desc.digest),
                size: Some(desc.size),
            },
            &what,
        )?;
        Ok(())
    }
    fn name(&self) -> String {
        self.root.display().to_string()
    }
}

/// Blobs already streamed into the store from an archive.
struct StoreSource {
    name: String,
}

impl BlobSource for StoreSource {
    fn ensure(&mut self, graph: &Graph, desc: &Descriptor) -> Result<(), Error> {
        if graph.blobs().contains(&desc.digest) {
            Ok(())
        } else {
            Err(Error::Format {
                source_name: self.name.clone(),
                reason: format!("blob {} is missing from the archive", desc.digest),
            })
        }
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

/// What streaming an archive found: small JSON members in memory, other files as blobs.
#[derive(Default)]
struct Members {
    json: HashMap<String, Vec<u8>>,
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
}

/// Streams every member of the archive into the store. In an OCI tar, `blobs/sha256/<hex>`
/// members are checked against their names; other members are hashed as they come.
fn stream_members(graph: &Graph, path: &Path, oci: bool) -> Result<Members, Error> {
    let mut ar = open_tar(path)?;
    let mut m = Members::default();
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
        // Old-style tars mark directories only by a trailing slash on a "regular" entry.
        if !kind.is_file() || name.ends_with('/') || name.is_empty() {
            continue;
        }
        let what = format!("{}:{name}", path.display());
        if oci && let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let d = Digest::parse(&format!("sha256:{hex}"))
                .map_err(|_| fmt_err(path, format!("bad blob name {name}")))?;
            if !graph.blobs().contains(&d) {
                let size = e.size();
                graph.blobs().put(
                    &mut e,
                    Expect {
                        digest: Some(&d),
                        size: Some(size),
                    },
                    &what,
                )?;
            }
            continue;
        }
        if name.ends_with(".json") || name == "repositories" || name == "oci-layout" {
            if e.size() > MAX_JSON {
                return Err(fmt_err(
                    path,
                    format!("{name} is larger than {MAX_JSON} bytes"),
                ));
            }
            let mut v = Vec::new();
            e.read_to_end(&mut v).map_err(Error::io("read", &what))?;
            m.json.insert(name, v);
            continue;
        }
        let size = e.size();
        let (d, size) = graph.blobs().put(
            &mut e,
            Expect {
                digest: None,
                size: Some(size),
            },
            &what,
        )?;
        m.files.insert(name, (d, size));
    }
    Ok(m)
}

pub(crate) fn normalize_rel(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerManifestEntry {
    pub(crate) config: String,
    #[serde(default)]
    pub(crate) repo_tags: Option<Vec<String>>,
    pub(crate) layers: Vec<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OciManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        annotations: BTreeMap::new(),
        platform: None,
    }
}

fn layer_media_type(graph: &Graph, d: &Digest) -> Result<&'static str, Error> {
    let f = graph.blobs().open_blob(d)?;
    let (c, _) = decompress(f).map_err(Error::io("read blob", graph.blobs().path(d)))?;
    Ok(match c {
        Compression::None => MT_OCI_LAYER,
        Compression::Gzip => MT_OCI_LAYER_GZIP,
        Compression::Zstd => MT_OCI_LAYER_ZSTD,
    })
}

/// Builds and stores an OCI manifest for a config and layer blobs already in the store.
pub(crate) fn store_manifest(
    graph: &Graph,
    config: Digest,
    config_size: u64,
    layers: Vec<(Digest, u64)>,
) -> Result<Descriptor, Error> {
    let mut descs = Vec::new();
    for (d, size) in layers {
        let mt = layer_media_type(graph, &d)?;
        descs.push(descriptor(mt, d, size));
    }
    let m = OciManifestOut {
        schema_version: 2,
        media_type: MT_OCI_MANIFEST,
        config: descriptor(MT_OCI_CONFIG, config, config_size),
        layers: descs,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::Format {
        source_name: "manifest".into(),
        reason: e.to_string(),
    })?;
    let d = graph.blobs().put_bytes(&bytes, "generated manifest")?;
    Ok(descriptor(MT_OCI_MANIFEST, d, bytes.len() as u64))
}

/// Keeps the entries of manifest.json that `tag` selects (all without a tag).
pub(crate) fn select_docker(
    entries: &mut Vec<DockerManifestEntry>,
    tag: Option<&str>,
    path: &Path,
) -> Result<(), Error> {
    let Some(want) = tag else {
        return Ok(());
    };
    let have: Vec<String> = entries
        .iter()
        .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
        .collect();
    entries.retain(|e| {
        let refs: Vec<&str> = e.repo_tags.iter().flatten().map(String::as_str).collect();
        tag_matches(&refs, want)
    });
    if entries.is_empty() {
        return Err(unknown_tag(path, want, &have));
    }
    entries.truncate(1);
    Ok(())
}

fn load_docker(
    graph: &Graph,
    path: &Path,
    tag: Option<&str>,
    names: &[String],
    source: &str,
) -> Result<Vec<Image>, Error> {
    let m = stream_members(graph, path, false)?;
    let manifest = m
        .json
        .get("manifest.json")
        .ok_or_else(|| fmt_err(path, "docker archive without manifest.json"))?;
    let mut entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
        .map_err(|e| fmt_err(path, format!("manifest.json: {e}")))?;
    select_docker(&mut entries, tag, path)?;
    if !names.is_empty() && entries.len() > 1 {
        return Err(several_named(path));
    }
    let resolve = |p: &str| -> Option<String> {
        let mut p = p.trim_start_matches("./").to_string();
        for _ in 0..8 {
            match m.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Some(p),
            }
        }
        None
    };
    let mut out = Vec::new();
    for entry in entries {
        let cfg_name = resolve(&entry.config).unwrap_or_default();
        let cfg = m
            .json
            .get(&cfg_name)
            .ok_or_else(|| fmt_err(path, format!("config {} missing", entry.config)))?;
        let cfg_digest = graph.blobs().put_bytes(cfg, "image config")?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let p = resolve(l).unwrap_or_default();
            let (d, s) = m
                .files
                .get(&p)
                .cloned()
                .ok_or_else(|| fmt_err(path, format!("layer {l} missing")))?;
            layers.push((d, s));
        }
        let desc = store_manifest(graph, cfg_digest, cfg.len() as u64, layers)?;
        let names = if names.is_empty() {
            entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| reference::normalize(t).ok())
                .collect()
        } else {
            names.to_vec()
        };
        let mut src = StoreSource {
            name: source.to_string(),
        };
        out.push(super::import_manifest(
            graph, &mut src, &desc, names, source,
        )?);
    }
    Ok(out)
}

fn load_rootfs(graph: &Graph, path: &Path, names: &[String], source: &str) -> Result<Image, Error> {
    let f = File::open(path).map_err(Error::io("open", path))?;
    let len = f.metadata().map_err(Error::io("stat", path))?.len();
    let (blob, size) = graph.blobs().put(
        f,
        Expect {
            digest: None,
            size: Some(len),
        },
        source,
    )?;
    let info = graph
        .layers()
        .create(None, None, graph.blobs().open_blob(&blob)?, source)?;
    let cfg_bytes = rootfs_config(&info.diff_id).map_err(|e| fmt_err(path, e))?;
    let cfg = graph.blobs().put_bytes(&cfg_bytes, "image config")?;
    let desc = store_manifest(graph, cfg, cfg_bytes.len() as u64, vec![(blob, size)])?;
    let mut src = StoreSource {
        name: source.to_string(),
    };
    super::import_manifest(graph, &mut src, &desc, names.to_vec(), source)
}

/// The config made for a root filesystem tarball whose layer has `diff_id` (its digest is the
/// image id: the same tarball always gives the same id).
pub(crate) fn rootfs_config(diff_id: &Digest) -> Result<Vec<u8>, String> {
    let host = Platform::host();
    let config = serde_json::json!({
        "architecture": host.architecture,
        "os": host.os,
        "variant": host.variant,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "agent image load (root filesystem tarball)"}],
    });
    let mut config = config;
    if host.variant.is_none()
        && let Some(o) = config.as_object_mut()
    {
        o.remove("variant");
    }
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}
