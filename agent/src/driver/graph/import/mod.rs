//! Importing images: OCI image layouts (directory or tar), `docker save` archives and root file
//! system tarballs. Every blob goes through the verifying blob store, every layer through the
//! safe unpacker. [`import_manifest`] does not record the image: the caller records everything it
//! imported in one [`super::index::ImageIndex::put_all`] once all of it is in place, so a failed
//! import records nothing (and [`super::Graph::load`] also removes the blobs and layers it added).

pub mod archive;
pub mod peek;
pub mod platform;

use std::collections::BTreeMap;

use super::Error;
use super::digest::Digest;
use super::index::{Image, ImageLayer};
use super::layers::chain_id;
use super::store::Graph;
use platform::Platform;

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Layer media types this driver unpacks (compression is detected from the bytes anyway).
const LAYER_TYPES: &[&str] = &[
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
];

/// An OCI content descriptor (the fields this driver uses).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An image index / manifest list, or a manifest: which one is told by `manifests` vs `layers`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDoc {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// The parts of an image config this driver needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfigDoc {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

/// Makes sure the blob a descriptor names is in the store (copying and verifying it from the
/// source if needed).
pub trait BlobSource {
    fn ensure(&mut self, graph: &Graph, desc: &Descriptor) -> Result<(), Error>;
    /// Names this source for error messages.
    fn name(&self) -> String;
}

fn fmt_err(src: &dyn BlobSource, reason: impl Into<String>) -> Error {
    Error::Format {
        source_name: src.name(),
        reason: reason.into(),
    }
}

/// Resolves `desc` (an index or a manifest) to a manifest for this host, brings in its config and
/// layers, unpacks the layers and returns the image (named `names`) for the caller to record.
pub fn import_manifest(
    graph: &Graph,
    src: &mut dyn BlobSource,
    desc: &Descriptor,
    names: Vec<String>,
    source: &str,
) -> Result<Image, Error> {
    let host = Platform::host();
    let mut desc = desc.clone();
    for _depth in 0..4 {
        src.ensure(graph, &desc)?;
        let bytes = graph.blobs().read(&desc.digest)?;
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| fmt_err(src, format!("manifest {}: {e}", desc.digest)))?;
        if let Some(list) = doc.manifests {
            let plats: Vec<Platform> = list
                .iter()
                .map(|d| d.platform.clone().unwrap_or_default())
                .collect();
            let i = platform::choose(&host, &plats).ok_or_else(|| {
                let have: Vec<String> = plats.iter().map(|p| p.to_string()).collect();
                fmt_err(
                    src,
                    format!(
                        "index {} has no manifest for {host}; it has: {}",
                        desc.digest,
                        have.join(", ")
                    ),
                )
            })?;
            desc = list[i].clone();
            continue;
        }
        let media_type = doc
            .media_type
            .clone()
            .unwrap_or_else(|| desc.media_type.clone());
        return import_single(graph, src, &desc.digest, &media_type, doc, names, source);
    }
    Err(fmt_err(src, "image indexes nested more than 4 deep"))
}

fn import_single(
    graph: &Graph,
    src: &mut dyn BlobSource,
    manifest_digest: &Digest,
    media_type: &str,
    doc: ManifestDoc,
    names: Vec<String>,
    source: &str,
) -> Result<Image, Error> {
    let config = doc
        .config
        .ok_or_else(|| fmt_err(src, format!("manifest {manifest_digest} has no config")))?;
    let layers = doc.layers.unwrap_or_default();
    if layers.is_empty() {
        // What a layout caught half-written between two build steps looks like; no runtime
        // can start a container without a root filesystem either.
        return Err(fmt_err(
            src,
            format!(
                "manifest {manifest_digest} lists no layers; the image was not recorded (a layout still being written?)"
            ),
        ));
    }
    src.ensure(graph, &config)?;
    let cfg_bytes = graph.blobs().read(&config.digest)?;
    let cfg: ConfigDoc = serde_json::from_slice(&cfg_bytes)
        .map_err(|e| fmt_err(src, format!("image config {}: {e}", config.digest)))?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(fmt_err(
            src,
            format!(
                "manifest has {} layers but the config lists {} diff ids",
                layers.len(),
                cfg.rootfs.diff_ids.len()
            ),
        ));
    }
    let plat = Platform {
        os: cfg.os.clone(),
        architecture: cfg.architecture.clone(),
        variant: cfg.variant.clone(),
    };
    if Platform::host().rank(&plat).is_none() {
        return Err(fmt_err(
            src,
            format!("image is for {plat}, this host is {}", Platform::host()),
        ));
    }
    let mut out = Vec::with_capacity(layers.len());
    let mut parent: Option<Digest> = None;
    for (layer, diff_id) in layers.iter().zip(&cfg.rootfs.diff_ids) {
        if !layer.media_type.is_empty() && !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(fmt_err(
                src,
                format!(
                    "layer {} has unsupported media type {}",
                    layer.digest, layer.media_type
                ),
            ));
        }
        let chain = chain_id(parent.as_ref(), diff_id);
        src.ensure(graph, layer)?;
        if graph.layers().get(&chain)?.is_none() {
            let blob = graph.blobs().open_blob(&layer.digest)?;
            graph.layers().create(
                parent.as_ref(),
                Some(diff_id),
                blob,
                &format!("layer {}", layer.digest),
            )?;
        }
        out.push(ImageLayer {
            blob: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            size: layer.size,
            diff_id: diff_id.clone(),
            chain_id: chain.clone(),
        });
        parent = Some(chain);
    }
    let image = Image {
        id: config.digest.clone(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: if media_type.is_empty() {
            MT_OCI_MANIFEST.into()
        } else {
            media_type.into()
        },
        names,
        layers: out,
        platform: plat.normalized().to_string(),
        source: source.to_string(),
        added: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    Ok(image)
}
