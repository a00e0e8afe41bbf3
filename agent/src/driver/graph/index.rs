//! The image index: which images exist, their names, manifest, config and layers.
//!
//! For now a JSON file (`graph/images.json`, written atomically) behind the small [`ImageIndex`]
//! trait, so that the SQLite store can replace it later without touching callers. Format version
//! 1; a file with a newer version is refused rather than half-understood.

use std::fs;
use std::path::{Path, PathBuf};

use super::Error;
use super::blobs::write_atomic;
use super::digest::Digest;

/// Version of `images.json`.
pub const INDEX_VERSION: u32 = 1;

/// One layer of an image as the manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageLayer {
    /// Digest of the blob as stored (compressed or not).
    pub blob: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// An image: identified by its config digest (as Docker's image id), reached by its names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// The config digest.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// Normalised names (`repo:tag`) pointing at this image.
    pub names: Vec<String>,
    /// Bottom layer first.
    pub layers: Vec<ImageLayer>,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
    /// Where it came from: a file path or registry reference.
    pub source: String,
    /// Seconds since the epoch when it was added.
    pub added: u64,
}

impl Image {
    /// Sum of the stored blob sizes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The top layer's chain id (what a container layer is created on), if any.
    pub fn top_chain(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// Where images are recorded. `put` moves each name of the new image away from any other image
/// (a name points at one image, as in Docker).
pub trait ImageIndex {
    fn list(&self) -> Result<Vec<Image>, Error>;
    fn put(&self, image: Image) -> Result<(), Error>;
    /// Records several images at once: all of them or (on error) none. The default puts them one
    /// by one; implementations that can write them in one transaction do.
    fn put_all(&self, images: Vec<Image>) -> Result<(), Error> {
        for i in images {
            self.put(i)?;
        }
        Ok(())
    }
    /// Removes an image by id; gone already is success.
    fn remove(&self, id: &Digest) -> Result<(), Error>;
    /// Removes one name; returns whether it existed.
    fn untag(&self, name: &str) -> Result<bool, Error>;

    /// Finds an image by name (normalised), full id or manifest digest, or unique id prefix.
    fn find(&self, what: &str) -> Result<Image, Error> {
        let images = self.list()?;
        let name = super::reference::normalize(what).ok();
        if let Some(img) = images.iter().find(|i| {
            name.as_deref()
                .is_some_and(|n| i.names.iter().any(|x| x == n))
                || i.id.as_str() == what
                || i.manifest_digest.as_str() == what
        }) {
            return Ok(img.clone());
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex))
                .collect();
            if hits.len() == 1 {
                return Ok(hits[0].clone());
            }
        }
        Err(Error::ImageNotFound(what.to_string()))
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<Image>,
}

/// [`ImageIndex`] in one JSON file. Callers serialise writers (the [`super::Graph`] lock).
#[derive(Debug, Clone)]
pub struct JsonImageIndex {
    path: PathBuf,
}

impl JsonImageIndex {
    pub fn open(path: &Path) -> Self {
        JsonImageIndex {
            path: path.to_path_buf(),
        }
    }

    fn load(&self) -> Result<IndexFile, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(IndexFile {
                    version: INDEX_VERSION,
                    images: Vec::new(),
                });
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path: self.path.clone(),
                    source: e,
                });
            }
        };
        let f: IndexFile = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: self.path.clone(),
            source: e,
        })?;
        if f.version > INDEX_VERSION {
            return Err(Error::LayoutVersion {
                path: self.path.clone(),
                found: f.version.to_string(),
                supported: INDEX_VERSION,
            });
        }
        Ok(f)
    }

    fn save(&self, f: &IndexFile) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(f).map_err(|e| Error::Json {
            path: self.path.clone(),
            source: e,
        })?;
        write_atomic(&self.path, &bytes)
    }
}

impl ImageIndex for JsonImageIndex {
    fn list(&self) -> Result<Vec<Image>, Error> {
        Ok(self.load()?.images)
    }

    fn put(&self, image: Image) -> Result<(), Error> {
        self.put_all(vec![image])
    }

    /// One atomic rewrite of the file for all of them.
    fn put_all(&self, images: Vec<Image>) -> Result<(), Error> {
        let mut f = self.load()?;
        for mut image in images {
            for other in f.images.iter_mut() {
                other.names.retain(|n| !image.names.contains(n));
            }
            if let Some(existing) = f.images.iter_mut().find(|i| i.id == image.id) {
                for n in existing.names.drain(..) {
                    if !image.names.contains(&n) {
                        image.names.push(n);
                    }
                }
                image.added = existing.added.min(image.added);
                *existing = image;
            } else {
                f.images.push(image);
            }
        }
        f.images.iter_mut().for_each(|i| i.names.sort());
        self.save(&f)
    }

    fn remove(&self, id: &Digest) -> Result<(), Error> {
        let mut f = self.load()?;
        let before = f.images.len();
        f.images.retain(|i| i.id != *id);
        if f.images.len() != before {
            self.save(&f)
        } else {
            Ok(())
        }
    }

    fn untag(&self, name: &str) -> Result<bool, Error> {
        let mut f = self.load()?;
        let mut found = false;
        for i in f.images.iter_mut() {
            let before = i.names.len();
            i.names.retain(|n| n != name);
            found |= i.names.len() != before;
        }
        if found {
            self.save(&f)?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(seed: &str, names: &[&str]) -> Image {
        Image {
            id: Digest::of(seed.as_bytes()),
            manifest_digest: Digest::of(format!("m{seed}").as_bytes()),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            layers: Vec::new(),
            platform: "linux/amd64".into(),
            source: "test".into(),
            added: 1,
        }
    }

    #[test]
    fn names_move_and_find_works() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let idx = JsonImageIndex::open(&dir.path().join("images.json"));
        idx.put(img("a", &["x:latest"]))
            .unwrap_or_else(|e| panic!("{e}"));
        idx.put(img("b", &["x:latest", "y:1"]))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = idx
            .find(Digest::of(b"a").as_str())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(a.names.is_empty());
        assert_eq!(idx.find("x").map(|i| i.id).ok(), Some(Digest::of(b"b")));
        assert_eq!(
            idx.find(&Digest::of(b"b").hex()[..8]).map(|i| i.id).ok(),
            Some(Digest::of(b"b"))
        );
        assert!(matches!(idx.find("nope"), Err(Error::ImageNotFound(_))));
        assert!(idx.untag("y:1").unwrap_or(false));
        idx.remove(&Digest::of(b"a"))
            .unwrap_or_else(|e| panic!("{e}"));
        idx.remove(&Digest::of(b"a"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idx.list().map(|l| l.len()).unwrap_or(0), 1);
    }
}
