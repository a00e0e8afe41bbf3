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

/// Marks a blob collection left for the end of the pull that was downloading (see
/// [`Graph::collect_garbage`]).
const GC_PENDING: &str = "gc-pending";

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
        self.flock("lock", true)?.ok_or_else(|| {
            Error::io("lock", &self.root.join("lock"))(std::io::Error::other("busy"))
        })
    }

    /// Takes the pull lock: one pull downloads at a time (two pulls of the same blob never
    /// share a partial file), while imports and container layers go on under the graph lock.
    pub fn pull_lock(&self) -> Result<Lock, Error> {
        self.flock("pull.lock", true)?.ok_or_else(|| {
            Error::io("lock", &self.root.join("pull.lock"))(std::io::Error::other("busy"))
        })
    }

    /// [`Graph::pull_lock`], giving up (`None`) as soon as `stop` says so while another pull
    /// holds it.
    pub fn pull_lock_unless(&self, stop: &dyn Fn() -> bool) -> Result<Option<Lock>, Error> {
        loop {
            if let Some(l) = self.flock("pull.lock", false)? {
                return Ok(Some(l));
            }
            if stop() {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Whether a pull is downloading now (its lock is held).
    fn pulling(&self) -> bool {
        !matches!(self.flock("pull.lock", false), Ok(Some(_)))
    }

    /// An exclusive `flock` on `name` under the graph root; `None` when `wait` is false and
    /// someone else holds it.
    fn flock(&self, name: &str, wait: bool) -> Result<Option<Lock>, Error> {
        let p = self.root.join(name);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Error::io("open", &p))?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: plain syscall on an open fd.
        if unsafe { libc::flock(f.as_raw_fd(), op) } < 0 {
            let e = std::io::Error::last_os_error();
            if !wait && e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(Error::io("lock", &p)(e));
        }
        Ok(Some(Lock { _file: f }))
    }

    /// Loads the images in an OCI layout (dir or tar), docker archive or rootfs tarball: all of
    /// them, or nothing. The images are recorded together once every blob and layer is in place;
    /// when anything fails, the blobs and layers this load added are removed again (they were
    /// not in the store before and no image refers to them), so a failed load leaves the graph
    /// as it found it, without waiting for `agent image prune`.
    pub fn load(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, Error> {
        self.load_with(path, &archive::LoadOptions::named(name))
    }

    /// [`Graph::load`] with a tag to select and names to give (see [`archive::LoadOptions`]).
    pub fn load_with(&self, path: &Path, opts: &archive::LoadOptions) -> Result<Vec<Image>, Error> {
        let _l = self.lock()?;
        self.remove_stale_puts();
        let blobs_before: BTreeSet<Digest> = self.blobs.list()?.into_iter().collect();
        let layers_before: BTreeSet<Digest> = self
            .layers
            .list()?
            .into_iter()
            .map(|l| l.chain_id)
            .collect();
        let result = archive::load(self, path, opts).and_then(|images| {
            let ids: Vec<Digest> = images.iter().map(|i| i.id.clone()).collect();
            self.index.put_all(images)?;
            ids.iter().map(|id| self.index.find(id.as_str())).collect()
        });
        if result.is_err() {
            self.undo_import(&blobs_before, &layers_before);
        }
        result
    }

    /// Removes the layers and blobs that are not in the before sets (what a failed import added:
    /// the index does not refer to them, as nothing was recorded). Best effort: what cannot be
    /// removed now is unreferenced and goes with the next prune.
    fn undo_import(&self, blobs_before: &BTreeSet<Digest>, layers_before: &BTreeSet<Digest>) {
        let mut used: BTreeSet<Digest> = BTreeSet::new();
        if let Ok(images) = self.index.list() {
            for img in images {
                used.insert(img.id);
                used.insert(img.manifest_digest);
                for l in img.layers {
                    used.insert(l.blob);
                    used.insert(l.chain_id);
                }
            }
        } else {
            return; // the index cannot be read: removing anything would be a guess
        }
        for info in self.layers.list().unwrap_or_default() {
            if !layers_before.contains(&info.chain_id)
                && !used.contains(&info.chain_id)
                && let Err(e) = self.layers.remove(&info.chain_id)
            {
                tracing::warn!(layer = %info.chain_id, error = %e, "undoing a failed load");
            }
        }
        // A pull downloading meanwhile put blobs no image names yet: they are not this load's
        // to remove; the pull collects what the load left once it has imported.
        let Ok(Some(_no_pull)) = self.flock("pull.lock", false) else {
            self.defer_blob_collection();
            return;
        };
        for b in self.blobs.list().unwrap_or_default() {
            if !blobs_before.contains(&b)
                && !used.contains(&b)
                && let Err(e) = self.blobs.remove(&b)
            {
                tracing::warn!(blob = %b, error = %e, "undoing a failed load");
            }
        }
    }

    /// Removes `put-*` temporary files and `.tmp-*` layer directories a killed import left
    /// (every import runs under the graph lock, so the caller, holding it, knows none is in
    /// progress; `put-*` files stay while a pull downloads, as it does without the graph lock).
    /// Partial pull downloads stay: the next pull resumes them.
    pub(crate) fn remove_stale_puts(&self) {
        self.layers.remove_stale_tmp();
        if self.pulling() {
            // A pull downloads without the graph lock: its `put-*` files are in use.
            return;
        }
        let tmp = self.blobs.tmp_dir();
        for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("put-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// [`Graph::remove_stale_puts`] for a pull that holds the pull lock and the graph lock:
    /// no other pull downloads, so every `put-*` file is stale.
    pub(crate) fn remove_stale_puts_of_pulls(&self) {
        self.layers.remove_stale_tmp();
        let tmp = self.blobs.tmp_dir();
        for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("put-") {
                let _ = fs::remove_file(e.path());
            }
        }
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
        // A pull's partial downloads are in use while it runs.
        let _p = self.pull_lock()?;
        let _l = self.lock()?;
        self.layers.remove_stale_tmp();
        let containers = self.containers()?;
        let used: BTreeSet<&Digest> = containers.iter().map(|c| &c.image).collect();
        let mut report = PruneReport::default();
        for img in self.index.list()? {
            if !used.contains(&img.id) && (all || img.names.is_empty()) {
                self.index.remove(&img.id)?;
                report.images.push(img.id);
            }
        }
        self.remove_unreferenced(&containers, true, &mut report)?;
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

    /// Removes every layer and blob that no image and no container layer refers to (no image
    /// and no temporary file: partial downloads stay for the next pull). Never waits for a pull
    /// (a removal would otherwise hang for as long as an unrelated download, up to
    /// `registries.pull_timeout`): while one downloads, the blobs it put in the store are named
    /// by no image yet, so blobs stay and the pull collects them when it has imported its image
    /// (see [`Graph::collect_deferred`]); layers go at once (a pull adds its layers under the
    /// graph lock, which this holds).
    pub fn collect_garbage(&self) -> Result<PruneReport, Error> {
        let _l = self.lock()?;
        // Held to the end: no pull starts downloading meanwhile.
        let no_pull = self.flock("pull.lock", false)?;
        let containers = self.containers()?;
        let mut report = PruneReport::default();
        self.remove_unreferenced(&containers, no_pull.is_some(), &mut report)?;
        if no_pull.is_none() {
            self.defer_blob_collection();
        }
        Ok(report)
    }

    /// Called by a pull that holds the pull lock and the graph lock after its import: collects
    /// the blobs a removal left while it downloaded (nothing when none did).
    pub(crate) fn collect_deferred(&self) -> Result<PruneReport, Error> {
        let mut report = PruneReport::default();
        if !self.root.join(GC_PENDING).exists() {
            return Ok(report);
        }
        let containers = self.containers()?;
        self.remove_unreferenced(&containers, true, &mut report)?;
        Ok(report)
    }

    /// Marks that unreferenced blobs were left because a pull was downloading.
    fn defer_blob_collection(&self) {
        let p = self.root.join(GC_PENDING);
        if let Err(e) = fs::write(&p, b"") {
            tracing::warn!(path = %p.display(), error = %e, "cannot mark the blob collection deferred; the next removal does it");
        }
    }

    /// Removes the layers (and with `blobs`, the blobs) no image or container layer refers to;
    /// with `blobs`, also the mark of a deferred collection.
    fn remove_unreferenced(
        &self,
        containers: &[ContainerLayer],
        blobs: bool,
        report: &mut PruneReport,
    ) -> Result<(), Error> {
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
        if !blobs {
            return Ok(());
        }
        for b in self.blobs.list()? {
            if !keep_blobs.contains(&b) {
                self.blobs.remove(&b)?;
                report.blobs += 1;
            }
        }
        match fs::remove_file(self.root.join(GC_PENDING)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.root.join(GC_PENDING))(e))
            }
            _ => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::graph::import::platform::Platform;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A layer whose second entry climbs out of the layer directory.
    fn evil_layer() -> Vec<u8> {
        let mut t = tar_of(&[("ok", b"fine"), ("XX/escape", b"pwned")]);
        // Rename "XX" to ".." in the raw header (tar::Builder refuses to write it).
        let at = 512 + 512; // second header
        t[at..at + 2].copy_from_slice(b"..");
        let mut h = tar::Header::from_byte_slice(&t[at..at + 512]).clone();
        h.set_cksum();
        t[at..at + 512].copy_from_slice(h.as_bytes());
        t
    }

    fn config(diff_ids: &[Digest]) -> Vec<u8> {
        let host = Platform::host();
        serde_json::to_vec(&serde_json::json!({
            "architecture": host.architecture, "os": host.os, "variant": host.variant,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap_or_default()
    }

    /// A docker archive with `images`: (config file, tag, layer files); `files` are the members.
    fn docker_archive(path: &Path, images: &[(&str, &str, &[&str])], files: &[(&str, &[u8])]) {
        let manifest: Vec<serde_json::Value> = images
            .iter()
            .map(|(c, t, l)| serde_json::json!({"Config": c, "RepoTags": [t], "Layers": l}))
            .collect();
        let m = serde_json::to_vec(&manifest).unwrap_or_default();
        let mut all: Vec<(&str, &[u8])> = files.to_vec();
        all.push(("manifest.json", &m));
        fs::write(path, tar_of(&all)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Every file under `dir` (relative), minus the lock.
    fn tree(dir: &Path) -> BTreeSet<String> {
        fn walk(root: &Path, d: &Path, out: &mut BTreeSet<String>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                if rel != "lock" {
                    out.insert(rel);
                }
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn a_failed_load_leaves_the_graph_as_it_was() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = Graph::open(&dir.path().join("state"), Some(DriverKind::Vfs))
            .unwrap_or_else(|e| panic!("{e}"));
        let base = tar_of(&[("etc/base", b"base layer")]);
        let extra = tar_of(&[("etc/extra", b"a layer only the failed load brings")]);
        let evil = evil_layer();
        let (d_base, d_extra, d_evil) = (Digest::of(&base), Digest::of(&extra), Digest::of(&evil));
        let cfg_a = config(std::slice::from_ref(&d_base));
        let cfg_b = config(&[d_base.clone(), d_extra.clone(), d_evil]);
        let cfg_c = config(&[d_base.clone(), d_extra]);

        // First an image with the base layer alone: it stays whatever happens next.
        let good = dir.path().join("good.tar");
        docker_archive(
            &good,
            &[("a.json", "a:1", &["base.tar"])],
            &[("a.json", &cfg_a), ("base.tar", &base)],
        );
        g.load(&good, None).unwrap_or_else(|e| panic!("{e}"));
        let before = tree(g.root());
        let index_before = g.images().unwrap_or_default();

        // Then an archive of two images, the second with an evil top layer: image "c" and the
        // layers under the evil one unpack fine, but the load as a whole fails.
        let bad = dir.path().join("bad.tar");
        docker_archive(
            &bad,
            &[
                ("c.json", "c:1", &["base.tar", "extra.tar"]),
                ("b.json", "b:1", &["base.tar", "extra.tar", "evil.tar"]),
            ],
            &[
                ("b.json", &cfg_b),
                ("c.json", &cfg_c),
                ("base.tar", &base),
                ("extra.tar", &extra),
                ("evil.tar", &evil),
            ],
        );
        let err = g.load(&bad, None).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("'..'")),
            "{err:?}"
        );
        assert_eq!(
            g.images().unwrap_or_default(),
            index_before,
            "index changed"
        );
        assert_eq!(tree(g.root()), before, "the failed load left files behind");
        assert!(!dir.path().join("state/escape").exists());

        // The same archive without the evil image loads, reusing the base layer.
        let fixed = dir.path().join("fixed.tar");
        docker_archive(
            &fixed,
            &[("c.json", "c:1", &["base.tar", "extra.tar"])],
            &[
                ("c.json", &cfg_c),
                ("base.tar", &base),
                ("extra.tar", &extra),
            ],
        );
        let loaded = g.load(&fixed, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].names, vec!["c:1".to_string()]);
        assert_eq!(g.images().map(|i| i.len()).unwrap_or(0), 2);
    }

    #[test]
    fn stale_import_temp_files_go_with_the_next_load() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = Graph::open(&dir.path().join("state"), Some(DriverKind::Vfs))
            .unwrap_or_else(|e| panic!("{e}"));
        let tmp = g.blobs().tmp_dir();
        fs::write(tmp.join("put-1-0"), b"killed import").unwrap_or_else(|e| panic!("{e}"));
        fs::write(tmp.join("pull-ab.partial"), b"resumable").unwrap_or_else(|e| panic!("{e}"));
        let half = g.root().join("layers/.tmp-1-0/diff");
        fs::create_dir_all(&half).unwrap_or_else(|e| panic!("{e}"));
        // Opening the graph (another process may be unpacking) removes nothing.
        let g = Graph::open(&dir.path().join("state"), Some(DriverKind::Vfs))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(half.exists() && tmp.join("put-1-0").exists());
        // A load, under the lock, does.
        let missing = dir.path().join("missing.tar");
        assert!(g.load(&missing, None).is_err());
        assert!(!tmp.join("put-1-0").exists());
        assert!(!g.root().join("layers/.tmp-1-0").exists());
        assert!(tmp.join("pull-ab.partial").exists());
    }

    /// Runs `f` on a thread and fails the test when it has not returned within 20 s (it blocked
    /// on a lock it must not wait for).
    fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("blocked for 20 s: it waited for the pull"))
    }

    #[test]
    fn removing_an_image_does_not_wait_for_a_pull_and_keeps_its_blobs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = dir.path().join("state");
        let g = Graph::open(&state, Some(DriverKind::Vfs)).unwrap_or_else(|e| panic!("{e}"));
        let base = tar_of(&[("etc/base", b"base layer")]);
        let cfg = config(&[Digest::of(&base)]);
        let archive = dir.path().join("a.tar");
        docker_archive(
            &archive,
            &[("a.json", "a:1", &["base.tar"])],
            &[("a.json", &cfg), ("base.tar", &base)],
        );
        g.load(&archive, None).unwrap_or_else(|e| panic!("{e}"));
        let image_blobs = g.blobs().list().unwrap_or_default();
        assert!(!image_blobs.is_empty());

        // A pull downloads (it holds the pull lock) and has put a blob no image names yet.
        let pulling = g.pull_lock().unwrap_or_else(|e| panic!("{e}"));
        let downloaded = g
            .blobs()
            .put_bytes(b"a layer the pull downloaded", "pulled")
            .unwrap_or_else(|e| panic!("{e}"));
        let gc = within_20s(move || {
            let g = Graph::open(&state, Some(DriverKind::Vfs)).unwrap_or_else(|e| panic!("{e}"));
            g.remove_image("a:1").unwrap_or_else(|e| panic!("{e}"));
            g.collect_garbage().unwrap_or_else(|e| panic!("{e}"))
        });
        assert!(g.images().unwrap_or_default().is_empty());
        assert_eq!(gc.layers.len(), 1, "unreferenced layers go at once");
        assert!(g.layers().list().unwrap_or_default().is_empty());
        assert_eq!(gc.blobs, 0, "blobs must wait for the pull");
        assert!(g.blobs().contains(&downloaded));
        assert!(image_blobs.iter().all(|b| g.blobs().contains(b)));

        // Its import done, the pull collects what the removal left.
        let r = g.collect_deferred().unwrap_or_else(|e| panic!("{e}"));
        drop(pulling);
        assert_eq!(r.blobs, image_blobs.len() + 1);
        assert!(g.blobs().list().unwrap_or_default().is_empty());
        // Nothing deferred any more: the next pull's end removes nothing.
        let blob = g
            .blobs()
            .put_bytes(b"resumable data of a failed pull", "pulled")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.collect_deferred().map(|r| r.blobs).ok(), Some(0));
        assert!(g.blobs().contains(&blob));
    }

    #[test]
    fn a_failed_load_leaves_a_downloading_pull_its_blobs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = Graph::open(&dir.path().join("state"), Some(DriverKind::Vfs))
            .unwrap_or_else(|e| panic!("{e}"));
        let pulling = g.pull_lock().unwrap_or_else(|e| panic!("{e}"));
        let downloaded = g
            .blobs()
            .put_bytes(b"a layer the pull downloaded", "pulled")
            .unwrap_or_else(|e| panic!("{e}"));
        let evil = evil_layer();
        let cfg = config(&[Digest::of(&evil)]);
        let bad = dir.path().join("bad.tar");
        docker_archive(
            &bad,
            &[("b.json", "b:1", &["evil.tar"])],
            &[("b.json", &cfg), ("evil.tar", &evil)],
        );
        assert!(g.load(&bad, None).is_err());
        assert!(
            g.blobs().contains(&downloaded),
            "the failed load took the pull's blob"
        );
        drop(pulling);
        // The load's own blobs go with the pull's end (or the next removal).
        assert!(g.collect_deferred().map(|r| r.blobs).unwrap_or(0) >= 1);
    }
}
