//! The content-addressed blob store: `blobs/sha256/<hex>`.
//!
//! A blob is written to a temporary file under `blobs/tmp/`, hashed while it streams, fsynced,
//! and only then renamed to its digest's name (and the directory fsynced). A blob whose digest or
//! size does not match what the caller expected is deleted and never becomes visible, so a file
//! under `blobs/sha256/` is always exactly the bytes its name says.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Error;
use super::digest::{Digest, HashingWriter};

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The blob store rooted at `<graph>/blobs`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// What the caller knows about a blob before writing it.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    pub digest: Option<&'a Digest>,
    pub size: Option<u64>,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        for d in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    /// The directory for temporary files of this store (same filesystem as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Streams `reader` into the store. With `expect.digest`, a mismatch is an error and nothing is
    /// stored; with `expect.size`, so is a size mismatch (checked after streaming, and reading stops
    /// one byte past the expected size so an endless stream cannot fill the disk).
    pub fn put(
        &self,
        reader: impl Read,
        expect: Expect<'_>,
        what: &str,
    ) -> Result<(Digest, u64), Error> {
        let tmp = self.tmp_path("put");
        match self.put_inner(reader, &expect, what, &tmp) {
            Ok(r) => Ok(r),
            Err(mut e) => {
                let _ = fs::remove_file(&tmp);
                if let Error::Storage {
                    available, source, ..
                } = &mut e
                    && super::is_no_space(source)
                {
                    *available = super::pull::available_space(&self.root).ok();
                }
                Err(e)
            }
        }
    }

    fn put_inner(
        &self,
        reader: impl Read,
        expect: &Expect<'_>,
        what: &str,
        tmp: &Path,
    ) -> Result<(Digest, u64), Error> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(Error::io("create", tmp))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        let limit = expect.size.map(|s| s.saturating_add(1)).unwrap_or(u64::MAX);
        let mut reader = reader.take(limit);
        let mut buf = vec![0u8; 256 * 1024];
        // Read errors are the source's; write errors are this store's file system's.
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Io {
                        op: "stream blob",
                        path: PathBuf::from(what),
                        source: e,
                    });
                }
            };
            w.write_all(&buf[..n])
                .map_err(|e| self.write_error(what, e, expect.size))?;
        }
        let (digest, size, buf) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| self.write_error(what, e.into_error(), expect.size))?;
        if let Some(expected) = expect.size
            && expected != size
        {
            return Err(Error::SizeMismatch {
                what: what.to_string(),
                expected,
                actual: size,
            });
        }
        if let Some(expected) = expect.digest
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        self.commit(file, tmp, &digest)?;
        Ok((digest, size))
    }

    /// The error for a failed write into the store: with the space figures when the disk is full.
    fn write_error(&self, what: &str, e: io::Error, size: Option<u64>) -> Error {
        let full = super::is_no_space(&e);
        Error::Storage {
            op: format!("storing blob {what}"),
            dir: self.root.clone(),
            needed: if full { size } else { None },
            available: None, // filled in by `put` once the partial file is gone
            source: e,
        }
    }

    /// Stores a small in-memory blob (manifests, configs).
    pub fn put_bytes(&self, bytes: &[u8], what: &str) -> Result<Digest, Error> {
        let digest = Digest::of(bytes);
        if !self.contains(&digest) {
            self.put(
                bytes,
                Expect {
                    digest: Some(&digest),
                    size: Some(bytes.len() as u64),
                },
                what,
            )?;
        }
        Ok(digest)
    }

    /// Moves an fsynced-or-not temp file already hashed to `digest` into place durably.
    pub(crate) fn commit(&self, file: File, tmp: &Path, digest: &Digest) -> Result<(), Error> {
        file.sync_all()
            .map_err(|e| Error::storage(format!("fsync {}", tmp.display()), &self.root, e))?;
        drop(file);
        let dst = self.path(digest);
        fs::rename(tmp, &dst).map_err(Error::io("rename into place", &dst))?;
        fsync_dir(&self.root.join("sha256"))
    }

    /// Reads a whole (small) blob and checks its digest again: JSON documents are parsed from the
    /// bytes returned here, so a blob corrupted on disk after it was stored is caught.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(Error::io("read blob", &path))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.path(digest);
        File::open(&path).map_err(Error::io("open blob", &path))
    }

    /// Removes a blob; a blob already gone is success.
    pub fn remove(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                op: "remove blob",
                path,
                source: e,
            }),
        }
    }

    /// Every stored blob (file names that are not valid digests are skipped).
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let e = e.map_err(Error::io("list", &dir))?;
            if let Some(name) = e.file_name().to_str()
                && let Ok(d) = Digest::parse(&format!("sha256:{name}"))
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// A fresh temp path under `blobs/tmp/` (unique per process and call).
    pub fn tmp_path(&self, tag: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{tag}-{}-{n}", std::process::id()))
    }
}

/// fsyncs a directory so that a rename or create inside it survives power loss.
pub fn fsync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = BlobStore::open(&dir.path().join("blobs")).unwrap_or_else(|e| panic!("{e}"));
        (dir, s)
    }

    #[test]
    fn stores_verified_blob() {
        let (_d, s) = store();
        let data = b"hello blob".to_vec();
        let want = Digest::of(&data);
        let (got, size) = s
            .put(
                &data[..],
                Expect {
                    digest: Some(&want),
                    size: Some(10),
                },
                "test",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.clone(), size), (want.clone(), 10));
        assert_eq!(s.read(&want).unwrap_or_default(), data);
        assert_eq!(s.list().unwrap_or_default(), vec![want]);
    }

    #[test]
    fn mismatched_digest_or_size_is_never_stored() {
        let (_d, s) = store();
        let wrong = Digest::of(b"something else");
        let err = s.put(
            &b"payload"[..],
            Expect {
                digest: Some(&wrong),
                size: None,
            },
            "x",
        );
        assert!(matches!(err, Err(Error::DigestMismatch { .. })), "{err:?}");
        let err = s.put(
            &b"payload"[..],
            Expect {
                digest: None,
                size: Some(3),
            },
            "x",
        );
        assert!(matches!(err, Err(Error::SizeMismatch { .. })), "{err:?}");
        assert!(s.list().unwrap_or_default().is_empty());
        assert_eq!(
            fs::read_dir(s.tmp_dir()).map(|d| d.count()).unwrap_or(99),
            0,
            "temp files left"
        );
        assert!(!s.contains(&Digest::of(b"payload")));
    }

    #[test]
    fn corrupted_blob_on_disk_is_detected_on_read() {
        let (_d, s) = store();
        let d = s
            .put_bytes(b"{\"a\":1}", "cfg")
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(s.path(&d), b"{\"a\":2}").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(s.read(&d), Err(Error::DigestMismatch { .. })));
    }

    #[test]
    fn remove_missing_is_success() {
        let (_d, s) = store();
        assert!(s.remove(&Digest::of(b"nope")).is_ok());
    }
}
