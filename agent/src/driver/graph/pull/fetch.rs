//! Downloading one blob into the verified blob store, resumably.
//!
//! A blob streams into `blobs/tmp/pull-<hex>.partial` (one fixed name per digest, so a later
//! pull finds what an earlier, interrupted one left), hashed as it is written; no layer is ever
//! held in memory. When a transfer breaks, the next attempt, in this process after a backoff or
//! in a later `agent image pull`, asks for the rest with an HTTP `Range: bytes=<n>-` request; a
//! registry that answers with the whole blob instead (200) simply restarts it. The finished file
//! is checked against the descriptor's size and digest and only then renamed into
//! `blobs/sha256/` (fsynced), so resuming can never let unverified bytes into the store. If a
//! resumed blob fails the digest check, the partial data is thrown away and the blob is fetched
//! once more from the start before the pull is given up.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::super::Error;
use super::super::blobs::BlobStore;
use super::super::digest::Digest;
use super::super::import::Descriptor;
use super::retry::RetryPolicy;

/// Why one attempt failed.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Worth retrying: connection reset, timeout, 5xx, 429.
    Transient(String),
    /// Retrying cannot help (404, 401, a digest mismatch, a full disk).
    Fatal(Error),
}

/// Sorts a registry client error into retryable or not.
pub(super) fn classify(reference: &str, e: OciDistributionError) -> Attempt {
    match e {
        OciDistributionError::RequestError(e) => Attempt::Transient(describe_reqwest(&e)),
        OciDistributionError::IoError(e) => Attempt::Transient(e.to_string()),
        OciDistributionError::ServerError { code, message, url }
            if code >= 500 || code == 429 || code == 408 =>
        {
            Attempt::Transient(format!("{url}: HTTP {code} {}", message.trim()))
        }
        OciDistributionError::UnauthorizedError { url } => Attempt::Fatal(Error::Registry {
            reference: reference.to_string(),
            reason: format!(
                "{url}: not authorized; add credentials for this registry to the Docker-style \
                 config.json (--registry-config, $DOCKER_CONFIG or ~/.docker/config.json)"
            ),
        }),
        other => Attempt::Fatal(Error::Registry {
            reference: reference.to_string(),
            reason: other.to_string(),
        }),
    }
}

/// reqwest's Display hides the cause ("error sending request"); show the whole chain.
fn describe_reqwest(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// What [`Fetcher::blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Already in the store (verified when it was stored).
    Present,
    /// Downloaded `bytes` in this pull; `resumed_from` bytes came from an earlier partial file.
    Downloaded { bytes: u64, resumed_from: u64 },
}

/// Fetches blobs of one repository into the store.
#[derive(Clone)]
pub(super) struct Fetcher {
    pub client: Client,
    pub reference: Reference,
    pub store: BlobStore,
    pub policy: RetryPolicy,
}

/// The partial file of one blob and the hash of what it holds.
struct Partial {
    path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens (creating) the partial file and hashes what an earlier attempt left in it.
    fn open(path: PathBuf, size: u64) -> Result<Partial, Error> {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("open partial download", &path))?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(Error::io("read partial download", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        let mut p = Partial {
            path,
            file,
            hasher,
            len,
        };
        if p.len > size {
            p.reset()?;
        }
        Ok(p)
    }

    fn reset(&mut self) -> Result<(), Error> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .map_err(Error::io("truncate partial download", &self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write_all(bytes).map_err(|e| {
            let dir = self.path.parent().unwrap_or(&self.path);
            Error::storage(
                format!("writing partial download {}", self.path.display()),
                dir,
                e,
            )
        })?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }
}

impl Fetcher {
    fn name(&self) -> String {
        self.reference.whole()
    }

    /// Makes sure the blob `desc` names is in the store, downloading (and resuming) it.
    pub async fn blob(&self, desc: &Descriptor, bar: &ProgressBar) -> Result<Fetched, Error> {
        let digest = &desc.digest;
        let size = desc.size;
        bar.set_length(size);
        if self.store.contains(digest) {
            bar.set_position(size);
            return Ok(Fetched::Present);
        }
        let path = self
            .store
            .tmp_dir()
            .join(format!("pull-{}.partial", digest.hex()));
        let mut part = Partial::open(path.clone(), size)?;
        let resumed_from = part.len;
        let mut retried = 0u32;
        let mut restarted = false;
        loop {
            if part.len < size {
                match self.attempt(desc, &mut part, bar).await {
                    Ok(()) => {}
                    Err(Attempt::Transient(reason)) => {
                        if retried >= self.policy.retries {
                            return Err(Error::Registry {
                                reference: self.name(),
                                reason: format!(
                                    "blob {digest}: {reason}; gave up after {} attempt(s). The {} \
                                     of {size} bytes received are kept in {} and the next pull \
                                     resumes from there",
                                    retried + 1,
                                    part.len,
                                    path.display()
                                ),
                            });
                        }
                        let delay = self.policy.delay(retried);
                        tracing::warn!(
                            blob = %digest, attempt = retried + 1, ?delay,
                            "download interrupted ({reason}); retrying from byte {}", part.len
                        );
                        retried += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    Err(Attempt::Fatal(mut e)) => {
                        drop(part);
                        let _ = fs::remove_file(&path);
                        if let Error::Storage {
                            needed,
                            available,
                            source,
                            ..
                        } = &mut e
                            && super::super::is_no_space(source)
                        {
                            *needed = Some(size);
                            *available = super::available_space(&self.store.tmp_dir()).ok();
                        }
                        return Err(e);
                    }
                }
            }
            let actual = part.digest();
            if actual != *digest {
                part.reset()?;
                if resumed_from > 0 && !restarted {
                    tracing::warn!(blob = %digest, "resumed download does not verify; fetching it again from the start");
                    restarted = true;
                    continue;
                }
                drop(part);
                let _ = fs::remove_file(&path);
                return Err(Error::DigestMismatch {
                    what: format!("blob from {}", self.name()),
                    expected: digest.clone(),
                    actual,
                });
            }
            let Partial { file, len, .. } = part;
            self.store.commit(file, &path, digest)?;
            bar.set_position(size);
            return Ok(Fetched::Downloaded {
                bytes: len - resumed_from.min(len),
                resumed_from,
            });
        }
    }

    /// One request: the whole blob, or the rest of it from `part.len`.
    async fn attempt(
        &self,
        desc: &Descriptor,
        part: &mut Partial,
        bar: &ProgressBar,
    ) -> Result<(), Attempt> {
        let name = self.name();
        let digest = desc.digest.as_str();
        let size = desc.size;
        let sized = if part.len == 0 {
            self.client
                .pull_blob_stream(&self.reference, digest)
                .await
                .map_err(|e| classify(&name, e))?
        } else {
            match self
                .client
                .pull_blob_stream_partial(&self.reference, digest, part.len, None)
                .await
                .map_err(|e| classify(&name, e))?
            {
                oci_client::client::BlobResponse::Partial(s) => s,
                oci_client::client::BlobResponse::Full(s) => {
                    tracing::info!(blob = %digest, "registry ignored the Range request; restarting the blob");
                    part.reset().map_err(Attempt::Fatal)?;
                    s
                }
            }
        };
        bar.set_position(part.len);
        let mut stream = sized.stream;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let total = part.len + bytes.len() as u64;
                    if total > size {
                        return Err(Attempt::Fatal(Error::SizeMismatch {
                            what: format!("blob {digest} from {name}"),
                            expected: size,
                            actual: total,
                        }));
                    }
                    part.append(&bytes).map_err(Attempt::Fatal)?;
                    bar.set_position(part.len);
                }
                // oci-client's own check fails at the very end of a corrupted blob; the digest
                // comparison in `blob` reports that one with both digests.
                Err(_) if part.len == size => break,
                Err(e) => return Err(Attempt::Transient(e.to_string())),
            }
        }
        if part.len < size {
            return Err(Attempt::Transient(format!(
                "connection ended after {} of {size} bytes",
                part.len
            )));
        }
        Ok(())
    }
}
