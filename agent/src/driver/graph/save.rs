//! `agent image save`: an image as an OCI image layout tar (oci-layout, index.json, blobs), the
//! format `skopeo copy oci-archive:`, `podman load` and this driver's own `load` read. The stored
//! manifest, config and layer blobs are written byte for byte, so saving and loading again gives
//! the same digests.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;

use super::Error;
use super::blobs::fsync_dir;
use super::digest::Digest;
use super::import::Descriptor;
use super::import::platform::Platform;
use super::index::Image;
use super::reference;
use super::store::Graph;

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn tar_io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        op: "write archive",
        path: path.to_path_buf(),
        source: e,
    }
}

/// Writes `image` to `out` (atomically: a temp file next to it, renamed when complete).
pub fn save(graph: &Graph, image: &Image, out: &Path) -> Result<(), Error> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = write(graph, image, &tmp);
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, out).map_err(Error::io("rename into place", out))?;
            fsync_dir(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write(graph: &Graph, image: &Image, path: &Path) -> Result<(), Error> {
    let f = File::create(path).map_err(Error::io("create", path))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755);
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, dir, std::io::empty())
            .map_err(tar_io(path))?;
    }
    let mut digests: Vec<&Digest> = vec![&image.manifest_digest, &image.id];
    digests.extend(image.layers.iter().map(|l| &l.blob));
    let mut seen = std::collections::BTreeSet::new();
    for d in digests {
        if !seen.insert(d.clone()) {
            continue;
        }
        let blob = graph.blobs().open_blob(d)?;
        let len = blob
            .metadata()
            .map_err(Error::io("stat", graph.blobs().path(d)))?
            .len();
        b.append_data(
            &mut header(len, 0o644),
            format!("blobs/sha256/{}", d.hex()),
            blob.take(len),
        )
        .map_err(tar_io(path))?;
    }
    let manifest_size = std::fs::metadata(graph.blobs().path(&image.manifest_digest))
        .map_err(Error::io(
            "stat",
            graph.blobs().path(&image.manifest_digest),
        ))?
        .len();
    let platform = parse_platform(&image.platform);
    let mut indexes = Vec::new();
    let names: Vec<Option<&String>> = if image.names.is_empty() {
        vec![None]
    } else {
        image.names.iter().map(Some).collect()
    };
    for n in names {
        let mut annotations = BTreeMap::new();
        if let Some(n) = n {
            annotations.insert("io.containerd.image.name".to_string(), n.clone());
            let ref_name = reference::tag(n).unwrap_or("latest");
            annotations.insert(
                "org.opencontainers.image.ref.name".to_string(),
                ref_name.to_string(),
            );
        }
        indexes.push(Descriptor {
            media_type: image.manifest_media_type.clone(),
            digest: image.manifest_digest.clone(),
            size: manifest_size,
            annotations,
            platform: Some(platform.clone()),
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::import::MT_OCI_INDEX,
        "manifests": indexes,
    });
    let index = serde_json::to_vec(&index).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    b.append_data(
        &mut header(index.len() as u64, 0o644),
        "index.json",
        &index[..],
    )
    .map_err(tar_io(path))?;
    b.append_data(
        &mut header(layout.len() as u64, 0o644),
        "oci-layout",
        &layout[..],
    )
    .map_err(tar_io(path))?;
    let w = b.into_inner().map_err(tar_io(path))?;
    let f = w.into_inner().map_err(|e| tar_io(path)(e.into_error()))?;
    f.sync_all().map_err(Error::io("fsync", path))
}

fn parse_platform(s: &str) -> Platform {
    let mut it = s.split('/');
    Platform {
        os: it.next().unwrap_or("linux").to_string(),
        architecture: it.next().unwrap_or_default().to_string(),
        variant: it.next().map(str::to_string),
    }
}
