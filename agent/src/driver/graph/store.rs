//! [`Graph`]: the image store as a whole, the one type the rest of the agent talks to. It owns the
//! blob store, the layer store, the image index and the container-layer driver under
//! `<state>/graph`, and serialises changing operations with an exclusive `flock` on
//! `graph/lock` (readers of the index see complete files thanks to atomic writes).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Error;
use super::blobs::{BlobStore, write_atomic};
use super::digest::Digest;
use super::import::archive;
use super::index::{Image, ImageIndex, JsonImageIndex};
use super::layers::LayerStore;
use super::rootfs::{self, AnyDriver, ContainerLayer, DriverKind, GraphDriver};

/// Version of the `graph/` directory layout.
pub const LAYOUT_VERSION: u32 = 1;

/// The image store under `<state>/graph`.
pub struct Graph {
    root: PathBuf,
    blobs: BlobStore,
    layers: LayerStore,
    index: Box<dyn ImageIndex + Send + Sync>,
    driver: AnyDriver,
}

/// An exclusive lock on the graph, released on drop.
pub struct Lock {
    _file: File,
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub images: Vec<Digest>,
    pub layers: Vec<Digest>,
    pub blobs: usize,
    /// Leftover temporary files (partial downloads of pulls that failed, interrupted imports).
    pub temp_files: usize,
}

impl Graph {
    /// Opens (creating) the graph under `state_dir`, with the driver `want` (or detected).
    pub fn open(state_dir: &Path, want: Option<DriverKind>) -> Result<Graph, Error> {
        let root = state_dir.join("graph");
        fs::create_dir_all(&root).map_err(Error::io("create directory", &root))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("chmod", &root))?;
        let vfile = root.join("version");
        match fs::read_to_string(&vfile) {
            Ok(v) if v.trim() == LAYOUT_VERSION.to_string() => {}
            Ok(v) => {
                return Err(Error::LayoutVersion {
                    path: vfile,
                    found: v.trim().to_string(),
                    supported: LAYOUT_VERSION,
                });
            }
            Err(_) => write_atomic(&vfile, format!("{LAYOUT_VERSION}\n").as_bytes())?,
        }
        let blobs = BlobStore::open(&root.join("blobs"))?;
        let layers = LayerStore::open(&root.join("layers"))?;
        let index = Box::new(JsonImageIndex::open(&root.join("images.json")));
        let driver = rootfs::select(&root.join("containers"), want)?;
        Ok(Graph {
            root,
            blobs,
            layers,
            index,
            driver,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }
    pub fn index(&self) -> &dyn ImageIndex {
        self.index.as_ref()
    }
    pub fn driver(&self) -> &AnyDriver {
        &self.driver
    }

    /// Takes the exclusive graph lock (blocking until other agent processes release it).
    pub fn lock(&self) -> Result<Lock, Error> {
        let p = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Error::io("open", &p))?;
        // SAFETY: plain syscall on an open fd.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(Error::io("lock", &p)(std::io::Error::last_os_error()));
        }
        Ok(Lock { _file: f })
    }

    /// Loads the images in an OCI layout (dir or tar), docker archive or rootfs tarball.
    pub fn load(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, Error> {
        let _l = self.lock()?;
        archive::load(self, path, name)
    }

    pub fn images(&self) -> Result<Vec<Image>, Error> {
        self.index.list()
    }

    /// Finds an image by name, id, manifest digest or id prefix.
    pub fn find(&self, what: &str) -> Result<Image, Error> {
        self.index.find(what)
    }

    /// Writes an image as an OCI layout tar.
    pub fn save(&self, what: &str, out: &Path) -> Result<Image, Error> {
        let img = self.find(what)?;
        super::save::save(self, &img, out)?;
        Ok(img)
    }

    /// Container layers (every driver's).
    pub fn containers(&self) -> Result<Vec<ContainerLayer>, Error> {
        rootfs::list(&self.root.join("containers"))
    }

    /// Removes a name, or the image when `what` is an id or its last name. Refused while a
    /// container layer uses the image.
    pub fn remove_image(&self, what: &str) -> Result<Image, Error> {
        let _l = self.lock()?;
        let img = self.find(what)?;
        let by_name = super::reference::normalize(what)
            .ok()
            .filter(|n| img.names.contains(n));
        if let Some(n) = &by_name
            && img.names.len() > 1
        {
            self.index.untag(n)?;
            return Ok(img);
        }
        let users: Vec<String> = self
            .containers()?
            .into_iter()
            .filter(|c| c.image == img.id)
            .map(|c| c.id)
            .collect();
        if !users.is_empty() {
            return Err(Error::ImageInUse {
                image: what.to_string(),
                users,
            });
        }
        self.index.remove(&img.id)?;
        Ok(img)
    }

    /// Removes images without names that no container uses (all unused images with `all`), then
    /// every layer and blob no remaining image or container references, and leftover temporary
    /// files (partial downloads a later pull would have resumed).
    pub fn prune(&self, all: bool) -> Result<PruneReport, Error> {
        let _l = self.lock()?;
        let containers = self.containers()?;
        let used: BTreeSet<&Digest> = containers.iter().map(|c| &c.image).collect();
        let mut report = PruneReport::default();
        for img in self.index.list()? {
            if !used.contains(&img.id) && (all || img.names.is_empty()) {
                self.index.remove(&img.id)?;
                report.images.push(img.id);
            }
        }
        let images = self.index.list()?;
        let mut keep_layers: BTreeSet<PathBuf> = containers
            .iter()
            .flat_map(|c| c.lowers.iter().cloned())
            .collect();
        let mut keep_blobs = BTreeSet::new();
        for img in &images {
            keep_blobs.insert(img.id.clone());
            keep_blobs.insert(img.manifest_digest.clone());
            for l in &img.layers {
                keep_blobs.insert(l.blob.clone());
                keep_layers.insert(self.layers.diff_dir(&l.chain_id));
            }
        }
        for info in self.layers.list()? {
            if !keep_layers.contains(&self.layers.diff_dir(&info.chain_id)) {
                self.layers.remove(&info.chain_id)?;
                report.layers.push(info.chain_id);
            }
        }
        for b in self.blobs.list()? {
            if !keep_blobs.contains(&b) {
                self.blobs.remove(&b)?;
                report.blobs += 1;
            }
        }
        // Every pull and import holds the lock, so nothing in blobs/tmp is in use now.
        let tmp = self.blobs.tmp_dir();
        for e in fs::read_dir(&tmp).map_err(Error::io("list", &tmp))? {
            let p = e.map_err(Error::io("list", &tmp))?.path();
            match fs::remove_file(&p) {
                Ok(()) => report.temp_files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove temporary file", &p)(e)),
            }
        }
        Ok(report)
    }

    /// Creates container layer `id` on image `what` with the selected driver.
    pub fn create_container(&self, id: &str, what: &str) -> Result<ContainerLayer, Error> {
        let img = self.find(what)?;
        let lowers: Vec<PathBuf> = img
            .layers
            .iter()
            .map(|l| self.layers.diff_dir(&l.chain_id))
            .collect();
        for (l, dir) in img.layers.iter().zip(&lowers) {
            if !dir.is_dir() {
                return Err(Error::Format {
                    source_name: img.id.to_string(),
                    reason: format!("layer {} is not unpacked; load the image again", l.chain_id),
                });
            }
        }
        self.driver.create(id, &img.id, &lowers)
    }

    /// Writes the container's whole root filesystem as a tar (mounting it for the duration when
    /// it is not mounted).
    pub fn export(&self, id: &str, out: &mut dyn Write) -> Result<(), Error> {
        let was_mounted = self.driver.is_mounted(id)?;
        let root = self.driver.mount(id)?;
        let mut t = rootfs::tarwrite::TarOut::new(out);
        let r = rootfs::tarwrite::write_tree(&root, &mut t).and_then(|()| t.finish());
        if !was_mounted {
            self.driver.unmount(id)?;
        }
        r
    }
}
