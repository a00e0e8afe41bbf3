//! Unpacked layers, one per chain id, shared by every image that has them: `layers/<chain-hex>/`.
//!
//! A layer is unpacked into `layers/.tmp-*`, its diff id (sha256 of the uncompressed tar) checked
//! against the image config while it streams, the file system synced, its `layer.json` written,
//! and only then renamed into place. A directory `layers/<hex>/` with a `layer.json` is therefore
//! always a complete, verified layer; a leftover `.tmp-*` is garbage that
//! [`LayerStore::remove_stale_tmp`] removes (the graph calls it under its lock, before loads,
//! pulls and prunes; never at open, where another process may be unpacking).

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Error;
use super::blobs::{fsync_dir, write_atomic};
use super::digest::{Digest, HashingReader};
use super::unpack::{self, Options};

/// Version of `layer.json`; older versions do not exist yet, newer ones are refused.
pub const LAYER_META_VERSION: u32 = 1;

/// After an unpack stopped for want of space, how many more uncompressed bytes are read to
/// tell the whole layer's size (beyond that the error says "more than").
const COUNT_BEYOND: u64 = 256 << 20;

/// The free-space floors (bytes, inodes) of unpacks under `root`
/// ([`unpack::default_min_free`] of its file system's size and inode count; 0 when that cannot
/// be read).
fn min_free(root: &Path) -> (u64, u64) {
    let Ok(s) = nix::sys::statvfs::statvfs(root) else {
        return (0, 0);
    };
    // The casts are needed on 32-bit targets (c_ulong fragment size).
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let (total, files) = (
        (s.blocks() as u64).saturating_mul(s.fragment_size() as u64),
        s.files() as u64,
    );
    (
        unpack::default_min_free(total),
        unpack::default_min_free_inodes(files),
    )
}

/// What `layer.json` records about one unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub version: u32,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes of regular file content in this layer.
    pub size: u64,
}

/// The chain id of a layer on top of `parent` (OCI image spec: `sha256(parent + " " + diff_id)`).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => {
            let mut h = Sha256::new();
            h.update(p.as_str().as_bytes());
            h.update(b" ");
            h.update(diff_id.as_str().as_bytes());
            Digest::from_hasher(h)
        }
    }
}

/// Chain ids of every prefix of `diff_ids` (bottom first).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let c = chain_id(out.last(), d);
        out.push(c);
    }
    out
}

/// The layer store rooted at `<graph>/layers`.
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

impl LayerStore {
    /// Opens (creating) the store.
    pub fn open(root: &Path) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(Error::io("create directory", root))?;
        Ok(LayerStore {
            root: root.to_path_buf(),
        })
    }

    /// Removes unpacks (and removals) a killed process left half-done. Only call it holding the
    /// graph lock: every unpack runs under it, so no `.tmp-*` directory is in use then.
    pub fn remove_stale_tmp(&self) {
        for e in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    fn dir(&self, chain: &Digest) -> PathBuf {
        self.root.join(chain.hex())
    }

    /// The unpacked contents (an overlay lower directory) of a layer.
    pub fn diff_dir(&self, chain: &Digest) -> PathBuf {
        self.dir(chain).join("diff")
    }

    pub fn get(&self, chain: &Digest) -> Result<Option<LayerInfo>, Error> {
        let path = self.dir(chain).join("layer.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path,
                    source: e,
                });
            }
        };
        let info: LayerInfo = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: path.clone(),
            source: e,
        })?;
        if info.version > LAYER_META_VERSION {
            return Err(Error::LayoutVersion {
                path,
                found: info.version.to_string(),
                supported: LAYER_META_VERSION,
            });
        }
        Ok(Some(info))
    }

    /// Unpacks the (possibly compressed) layer `blob` on top of `parent`, unless its chain id is
    /// already there. With `expected_diff_id`, a different diff id rejects the layer; without it
    /// (root filesystem tarballs) the computed one is used.
    pub fn create(
        &self,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
        blob: impl Read,
        what: &str,
    ) -> Result<LayerInfo, Error> {
        if let Some(d) = expected_diff_id
            && let Some(info) = self.get(&chain_id(parent, d))?
        {
            return Ok(info);
        }
        let tmp = self
            .root
            .join(format!(".tmp-{}-{}", std::process::id(), unique()));
        let result = self.unpack_into(&tmp, parent, expected_diff_id, blob, what);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        parent: Option<&Digest>,
        expected: Option<&Digest>,
        blob: impl Read,
        what: &str,
    ) -> Result<LayerInfo, Error> {
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).map_err(Error::io("create directory", &diff))?;
        let (_, plain) = unpack::decompress(blob).map_err(Error::io("decompress", what))?;
        let mut hashing = HashingReader::new(plain);
        let (min_free, min_free_inodes) = min_free(&self.root);
        let opts = Options {
            min_free,
            min_free_inodes,
            ..Options::default()
        };
        let stats = match unpack::unpack_layer(&mut hashing, &diff, opts) {
            Ok(s) => s,
            Err(Error::Storage { mut op, source, .. }) => {
                // The disk filled up (or failed, or reached the floor): free what this unpack
                // wrote, then say how much the whole layer needs (its uncompressed tar size,
                // read on without writing, up to COUNT_BEYOND more bytes: a tar bomb is not
                // decompressed to its end for a figure) against what is free once the partial
                // layer is gone.
                let _ = fs::remove_dir_all(tmp);
                let (needed, available) = if super::is_no_space(&source) {
                    let counted = io::copy(&mut (&mut hashing).take(COUNT_BEYOND), &mut io::sink());
                    let needed = match counted {
                        Ok(n) if n < COUNT_BEYOND => Some(hashing.count()),
                        Ok(_) => {
                            op.push_str(&format!(
                                "; the layer unpacks to more than {} bytes (not counted further)",
                                hashing.count()
                            ));
                            None
                        }
                        Err(_) => None,
                    };
                    (needed, super::pull::available_space(&self.root).ok())
                } else {
                    (None, None)
                };
                return Err(Error::Storage {
                    op: format!("unpacking {what}: {op}"),
                    dir: self.root.clone(),
                    needed,
                    available,
                    source,
                });
            }
            Err(e) => return Err(e),
        };
        if stats.devices_skipped > 0 {
            tracing::warn!(
                layer = what,
                count = stats.devices_skipped,
                first = %stats.skipped_names.join(", "),
                "device nodes in the layer were not created (the container's /dev comes from the runtime; see docs/graph.md)"
            );
        }
        let (diff_id, _) = hashing.finish().map_err(Error::io("read layer", what))?;
        if let Some(exp) = expected
            && *exp != diff_id
        {
            return Err(Error::DigestMismatch {
                what: format!("{what} (uncompressed diff id)"),
                expected: exp.clone(),
                actual: diff_id,
            });
        }
        let chain = chain_id(parent, &diff_id);
        let info = LayerInfo {
            version: LAYER_META_VERSION,
            chain_id: chain.clone(),
            diff_id,
            parent: parent.cloned(),
            size: stats.bytes,
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Json {
            path: tmp.into(),
            source: e,
        })?;
        // Make the unpacked files durable before the layer becomes visible.
        let f = fs::File::open(&diff).map_err(Error::io("open", &diff))?;
        // SAFETY: plain syscall on a valid fd.
        if unsafe { libc::syncfs(f.as_raw_fd()) } < 0 {
            return Err(Error::storage(
                format!("syncing the unpacked {what}"),
                &self.root,
                std::io::Error::last_os_error(),
            ));
        }
        write_atomic(&tmp.join("layer.json"), &json)?;
        let dst = self.dir(&chain);
        if let Err(e) = fs::rename(tmp, &dst) {
            // Someone else committed the same chain id first: theirs is as good as ours.
            if self.get(&chain)?.is_some() {
                let _ = fs::remove_dir_all(tmp);
                return Ok(info);
            }
            return Err(Error::Io {
                op: "rename layer into place",
                path: dst,
                source: e,
            });
        }
        fsync_dir(&self.root)?;
        Ok(info)
    }

    /// Every complete layer.
    pub fn list(&self) -> Result<Vec<LayerInfo>, Error> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)
            .map_err(Error::io("list", &self.root))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(d) = Digest::parse(&format!("sha256:{name}"))
                && let Some(info) = self.get(&d)?
            {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Removes a layer (already gone is success). Its `layer.json` goes first, so a crash halfway
    /// leaves a directory that is no longer a layer and is removed by the next prune.
    pub fn remove(&self, chain: &Digest) -> Result<(), Error> {
        let dir = self.dir(chain);
        let tmp = self
            .root
            .join(format!(".tmp-rm-{}-{}", std::process::id(), unique()));
        match fs::rename(&dir, &tmp) {
            Ok(()) => fs::remove_dir_all(&tmp).map_err(Error::io("remove layer", &tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                op: "remove layer",
                path: dir,
                source: e,
            }),
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    fn tar_with(name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &b"x"[..]).ok();
        b.into_inner().unwrap_or_default()
    }

    #[test]
    fn unpacks_once_and_rejects_wrong_diff_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = LayerStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let t = tar_with("f");
        let wrong = Digest::of(b"wrong");
        let r = store.create(None, Some(&wrong), &t[..], "layer");
        assert!(matches!(r, Err(Error::DigestMismatch { .. })), "{r:?}");
        assert!(store.list().unwrap_or_default().is_empty());
        let right = Digest::of(&t);
        let info = store
            .create(None, Some(&right), &t[..], "layer")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.chain_id, right);
        assert!(store.diff_dir(&right).join("f").is_file());
        // Second create with garbage input is a no-op: the chain id is already there.
        let again = store
            .create(None, Some(&right), &b"not a tar"[..], "layer")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, info);
        store.remove(&right).unwrap_or_else(|e| panic!("{e}"));
        store.remove(&right).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.list().unwrap_or_default().is_empty());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .map(|d| d.flatten().count())
            .into_iter()
            .collect();
        assert_eq!(leftovers, vec![0]);
    }
}

/// A full disk is the state directory's problem, not the layer's: tested on a tiny tmpfs.
#[cfg(test)]
mod disk_full_tests {
    use super::*;
    use crate::driver::graph::blobs::{BlobStore, Expect};

    /// A 1 MiB tmpfs, unmounted on drop.
    struct Tiny {
        dir: tempfile::TempDir,
    }

    impl Tiny {
        fn mount() -> Option<Tiny> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("skipped: needs root to mount a tmpfs");
                return None;
            }
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            nix::mount::mount(
                Some("agent-test-tiny"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=1m"),
            )
            .unwrap_or_else(|e| panic!("mount tmpfs: {e}"));
            Some(Tiny { dir })
        }
    }

    impl Drop for Tiny {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    fn big_tar(bytes: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "big.bin", &vec![7u8; bytes][..]).ok();
        b.into_inner().unwrap_or_default()
    }

    #[test]
    fn unpack_on_a_full_disk_is_a_storage_error_with_figures() {
        let Some(tiny) = Tiny::mount() else { return };
        let root = tiny.dir.path().join("layers");
        let store = LayerStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
        let t = big_tar(3 << 20);
        let err = store
            .create(None, Some(&Digest::of(&t)), &t[..], "layer big")
            .err()
            .unwrap_or_else(|| panic!("3 MiB unpacked into a 1 MiB tmpfs"));
        let msg = err.to_string();
        match &err {
            Error::Storage {
                dir,
                needed,
                available,
                source,
                ..
            } => {
                assert_eq!(dir, &root, "{msg}");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{msg}");
                assert_eq!(*needed, Some(t.len() as u64), "{msg}");
                let a = available.unwrap_or_else(|| panic!("no free space figure: {msg}"));
                assert!(a > 0 && a <= 1 << 20, "{msg}");
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        assert!(!msg.contains("unsafe"), "{msg}");
        assert!(msg.contains(&root.display().to_string()), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        let left: Vec<_> = fs::read_dir(&root)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "partial layer left: {left:?}");
    }

    #[test]
    fn blob_on_a_full_disk_is_a_storage_error_with_figures() {
        let Some(tiny) = Tiny::mount() else { return };
        let root = tiny.dir.path().join("blobs");
        let store = BlobStore::open(&root).unwrap_or_else(|e| panic!("{e}"));
        let data = vec![1u8; 3 << 20];
        let err = store
            .put(
                &data[..],
                Expect {
                    digest: None,
                    size: Some(data.len() as u64),
                },
                "big blob",
            )
            .err()
            .unwrap_or_else(|| panic!("3 MiB stored in a 1 MiB tmpfs"));
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Storage { dir, needed: Some(n), available: Some(_), .. }
                if *dir == root && *n == 3 << 20),
            "{err:?}"
        );
        assert!(msg.contains("need 3145728 bytes"), "{msg}");
        assert_eq!(
            fs::read_dir(store.tmp_dir())
                .map(|d| d.count())
                .unwrap_or(99),
            0,
            "partial blob left"
        );
        assert!(store.list().unwrap_or_default().is_empty());
    }
}
