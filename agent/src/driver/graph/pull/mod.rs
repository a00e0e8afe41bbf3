//! Pulling images from a registry (OCI distribution API, Docker registry v2) with `oci-client`.
//!
//! A pull, in order:
//! 1. parses the reference (`[host[:port]/]repo[:tag][@sha256:..]`, Docker Hub by default) and
//!    walks the registry's mirrors in order, then the registry itself ([`mirror`]); for each,
//!    finds credentials ([`auth`]: `config.json`, credential helpers the agent's config allows
//!    ([`helper`]), identity tokens ([`identity`])) and talks plain HTTP only when the host
//!    (`host:port` exactly as in the reference) is in the insecure-registry list or the mirror is
//!    an `http://` one, HTTPS otherwise; steps 2-4 run against that endpoint, and a mirror that
//!    fails hands over to the next;
//! 2. fetches the manifest the tag or digest names (Docker v2 schema2 or OCI manifest, or an
//!    index / manifest list, resolved for this host's platform with the ARM variant rules of
//!    [`platform`](super::import::platform)). A digest in the reference is a pin: the bytes must
//!    hash to it. A tag is resolved to the digest of what it pointed at, and that digest is
//!    recorded in the image's `source` (`host/repo@sha256:..`). Manifests and indexes are read
//!    with a running count and refused past 4 MiB ([`manifest`], Docker's limit too);
//! 3. fetches the config (refused if its descriptor says more than 8 MiB; the download stops at
//!    the descriptor's size), then checks free space under the graph (statvfs) for the blobs still
//!    missing plus their unpacked layers (estimated as at least the compressed size, a lower
//!    bound: an unpacked layer is rarely smaller than its compressed form) and refuses with both
//!    figures when they do not fit;
//! 4. downloads the missing layers a few at a time ([`fetch`]: streamed to disk, verified, retried
//!    with backoff and jitter ([`retry`]), resumed with HTTP Range requests); blobs already in the
//!    store are not fetched again;
//! 5. hands the manifest to the same import path archives use (unpack once per chain id, record
//!    the image).
//!
//! The download holds the pull lock (one pull downloads at a time, so two pulls of the same blob
//! never share a partial file) and not the graph lock, which only the import at the end takes:
//! a slow registry never holds up an import of another image.
//! [`pull`] runs its own tokio runtime and must be called outside one (the daemon calls it from
//! `spawn_blocking`).

pub mod auth;
pub mod fetch;
pub mod helper;
pub mod identity;
pub mod manifest;
pub mod mirror;
pub mod retry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::Error;
use super::digest::Digest;
use super::import::platform::{self, Platform};
use super::import::{
    self, BlobSource, ConfigDoc, Descriptor, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX,
    MT_OCI_MANIFEST,
};
use super::index::Image;
use super::layers::chain_id;
use super::store::Graph;
use fetch::{Attempt, Fetched, Fetcher};
pub use retry::RetryPolicy;

/// Manifests and indexes larger than this are refused (real ones are a few kB; Docker's cap).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// Image configs larger than this are refused (real ones are a few kB to a few hundred).
pub const MAX_CONFIG: u64 = 8 * 1024 * 1024;
/// Default per-read timeout of registry requests (`agent image pull --timeout`,
/// `registries.read_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Manifest media types asked for, in order of preference.
const ACCEPT: &[&str] = &[
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
];

/// What to pull and how.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The image reference, as for `docker pull`.
    pub reference: String,
    /// Registries (`host:port` as written in references) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// A Docker-style `config.json` with credentials (default: Docker's locations).
    pub registry_config: Option<PathBuf>,
    /// Credential helpers (`docker-credential-<name>`) that `config.json` may name and the pull
    /// may run (`registries.credential_helpers`); any other is refused.
    pub credential_helpers: Vec<String>,
    /// Mirrors per registry (`registries.mirrors`), tried in order before the registry.
    pub mirrors: BTreeMap<String, Vec<String>>,
    pub retry: RetryPolicy,
    /// Draw progress bars on standard error (only when it is a terminal).
    pub progress: bool,
    /// Layers downloaded at the same time.
    pub concurrency: usize,
    /// Longest time the whole download may take (`None`: no limit). What was downloaded and
    /// verified stays, so the next pull resumes.
    pub deadline: Option<Duration>,
    /// Longest wait for the next bytes from the registry (token requests included).
    pub read_timeout: Duration,
    /// Set by someone else to stop the download (the image is no longer wanted): the pull ends
    /// with [`CANCELLED`] within a tenth of a second; what was downloaded stays, as after a
    /// timeout. Also while it waits for another pull's lock.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The start of the reason of a pull stopped through [`PullOptions::cancel`].
pub const CANCELLED: &str = "cancelled";

impl PullOptions {
    pub fn new(reference: impl Into<String>) -> Self {
        PullOptions {
            reference: reference.into(),
            insecure_registries: Vec::new(),
            registry_config: None,
            credential_helpers: Vec::new(),
            mirrors: BTreeMap::new(),
            retry: RetryPolicy::default(),
            progress: true,
            concurrency: 3,
            deadline: None,
            read_timeout: DEFAULT_TIMEOUT,
            cancel: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub image: Image,
    /// `host/repo@sha256:..`: what the reference resolved to (index or manifest digest).
    pub resolved: String,
    /// Bytes downloaded by this pull (not counting resumed partial data).
    pub downloaded: u64,
    /// Bytes that an earlier, interrupted pull had left and this one reused.
    pub resumed: u64,
    /// Blobs that were already in the store and not fetched.
    pub present: usize,
}

/// Pulls `opts.reference` into `graph`. Blocks; call it outside any async runtime.
pub fn pull(graph: &Graph, opts: &PullOptions) -> Result<PullReport, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("start the pull runtime", graph.root()))?;
    // Downloading holds the pull lock only, so that imports and other graph work go on; the
    // graph lock is taken for the import (unpack, record) at the end.
    let is_cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    };
    let cancelled_error = || Error::Registry {
        reference: opts.reference.clone(),
        reason: format!("{CANCELLED}: what was downloaded is kept and a later pull resumes"),
    };
    let Some(_pulling) = graph.pull_lock_unless(&is_cancelled)? else {
        return Err(cancelled_error());
    };
    {
        let _lock = graph.lock()?;
        graph.remove_stale_puts_of_pulls();
    }
    let fetch = async {
        match opts.deadline {
            Some(d) => tokio::time::timeout(d, fetch_all(graph, opts))
                .await
                .map_err(|_| Error::Registry {
                    reference: opts.reference.clone(),
                    reason: format!(
                        "the pull did not finish within {} (registries.pull_timeout); what was \
                         downloaded is kept and the next try resumes",
                        crate::manifest::units::Duration(d)
                    ),
                })?,
            None => fetch_all(graph, opts).await,
        }
    };
    let resolved = rt.block_on(async {
        tokio::select! {
            r = fetch => r,
            () = cancelled(opts.cancel.as_deref()) => Err(cancelled_error()),
        }
    })?;
    let _lock = graph.lock()?;
    let mut src = InStore {
        name: resolved.reference.clone(),
    };
    let image = import::import_manifest(
        graph,
        &mut src,
        &resolved.manifest,
        vec![resolved.name.clone()],
        &resolved.source,
    )?;
    graph.index().put(image.clone())?;
    let image = graph.index().find(image.id.as_str())?;
    match graph.collect_deferred() {
        Ok(r) if r.blobs > 0 => {
            tracing::info!(
                blobs = r.blobs,
                "blobs a removal left while this pull downloaded are removed"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot remove the blobs a removal left; the next removal does")
        }
    }
    Ok(PullReport {
        image,
        resolved: resolved.source,
        downloaded: resolved.downloaded,
        resumed: resolved.resumed,
        present: resolved.present,
    })
}

/// Resolves once `cancel` is set (never without one).
async fn cancelled(cancel: Option<&AtomicBool>) {
    let Some(flag) = cancel else {
        return std::future::pending().await;
    };
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything fetched, ready to import.
struct Resolved {
    reference: String,
    name: String,
    source: String,
    manifest: Descriptor,
    downloaded: u64,
    resumed: u64,
    present: usize,
}

/// After [`fetch_all`], every blob the import asks for is in the store already.
struct InStore {
    name: String,
}

impl BlobSource for InStore {
    fn ensure(&mut self, graph: &Graph, desc: &Descriptor) -> Result<(), Error> {
        if graph.blobs().contains(&desc.digest) {
            Ok(())
        } else {
            Err(Error::Format {
                source_name: self.name.clone(),
                reason: format!("blob {} was not downloaded", desc.digest),
            })
        }
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

fn parse_reference(value: &str) -> Result<Reference, Error> {
    value.parse::<Reference>().map_err(|e| Error::BadReference {
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// The name the local index gives a pulled image: Docker Hub's `library/` and host dropped
/// (`busybox:latest`), other registries kept (`127.0.0.1:5000/test/busybox:v1`); a digest pin
/// gives `repo@sha256:..`.
pub fn local_name(r: &Reference) -> String {
    let repo = if r.registry() == "docker.io" {
        r.repository()
            .strip_prefix("library/")
            .unwrap_or(r.repository())
            .to_string()
    } else {
        format!("{}/{}", r.registry(), r.repository())
    };
    match (r.digest(), r.tag()) {
        (Some(d), _) => format!("{repo}@{d}"),
        (None, Some(t)) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    }
}

/// Runs `f` until it succeeds, fails for good, or the retries are used up.
async fn with_retry<T, F, Fut>(policy: &RetryPolicy, what: &str, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Transient(reason)) if attempt >= policy.retries => {
                return Err(Error::Registry {
                    reference: what.to_string(),
                    reason: format!("{reason}; gave up after {} attempt(s)", attempt + 1),
                });
            }
            Err(Attempt::Transient(reason)) => {
                let delay = policy.delay(attempt);
                tracing::warn!(what, attempt = attempt + 1, ?delay, "{reason}; retrying");
                attempt += 1;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A parsed manifest or index with its descriptor.
struct Doc {
    desc: Descriptor,
    doc: import::ManifestDoc,
}

/// Fetches the manifest `r` names (by tag or digest), verifies it against `expect` (a pin) and
/// stores it.
async fn fetch_manifest(
    reg: &manifest::Registry<'_>,
    r: &Reference,
    expect: Option<&Digest>,
    graph: &Graph,
    policy: &RetryPolicy,
) -> Result<Doc, Error> {
    let name = r.whole();
    let bytes = with_retry(policy, &name, || {
        manifest::get(reg, r, ACCEPT, MAX_MANIFEST)
    })
    .await?;
    let bad = |reason: String| Error::Registry {
        reference: name.clone(),
        reason,
    };
    let digest = Digest::of(&bytes);
    if let Some(want) = expect
        && *want != digest
    {
        return Err(Error::DigestMismatch {
            what: format!("manifest {name}"),
            expected: want.clone(),
            actual: digest,
        });
    }
    let (doc, media_type) =
        manifest::parse(&bytes).map_err(|e| bad(format!("manifest {digest}: {e}")))?;
    graph
        .blobs()
        .put_bytes(&bytes, &format!("manifest {name}"))?;
    Ok(Doc {
        desc: Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        },
        doc,
    })
}

/// The entry of an index that fits `host` best.
pub fn pick_manifest(
    host: &Platform,
    index_digest: &Digest,
    entries: &[Descriptor],
) -> Result<Descriptor, String> {
    let plats: Vec<Platform> = entries
        .iter()
        .map(|d| d.platform.clone().unwrap_or_default())
        .collect();
    let i = platform::choose(host, &plats).ok_or_else(|| {
        let have: Vec<String> = plats.iter().map(|p| p.to_string()).collect();
        format!(
            "index {index_digest} has no manifest for {host}; it has: {}",
            have.join(", ")
        )
    })?;
    Ok(entries[i].clone())
}

/// Free bytes for unprivileged use under `path`.
pub fn available_space(path: &Path) -> Result<u64, Error> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| Error::Io {
        op: "statvfs",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// Refuses when `needed` bytes do not fit under `path`.
pub fn check_space(path: &Path, needed: u64) -> Result<(), Error> {
    let available = available_space(path)?;
    if needed > available {
        return Err(Error::NoSpace {
            path: path.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Where one attempt fetches from: a mirror or the registry itself.
struct Endpoint {
    /// `host[:port]`.
    host: String,
    plain_http: bool,
    /// `Some(url)` for a mirror.
    mirror: Option<String>,
}

/// Tries the mirrors of the reference's registry in order, then the registry.
async fn fetch_all(graph: &Graph, opts: &PullOptions) -> Result<Resolved, Error> {
    let r = parse_reference(&opts.reference)?;
    let mirrors =
        mirror::for_registry(&opts.mirrors, r.registry()).map_err(|reason| Error::Registry {
            reference: r.whole(),
            reason,
        })?;
    let mut failed: Vec<String> = Vec::new();
    for m in mirrors {
        let url = m.url.clone();
        let ep = Endpoint {
            host: m.host,
            plain_http: m.plain_http,
            mirror: Some(m.url),
        };
        match fetch_from(graph, opts, &r, &ep).await {
            Ok(res) => {
                tracing::info!(reference = %r.whole(), mirror = %url, "pulled from a mirror");
                return Ok(res);
            }
            Err(e @ Error::NoSpace { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(reference = %r.whole(), mirror = %url, "mirror failed: {e}; trying the next");
                failed.push(format!("mirror {url}: {e}"));
            }
        }
    }
    let registry = r.resolve_registry().to_string();
    let upstream = Endpoint {
        host: r.registry().to_string(),
        plain_http: opts
            .insecure_registries
            .iter()
            .any(|h| *h == registry || *h == r.registry()),
        mirror: None,
    };
    match fetch_from(graph, opts, &r, &upstream).await {
        Err(Error::Registry { reference, reason }) if !failed.is_empty() => Err(Error::Registry {
            reference,
            reason: format!("{reason} (after its mirrors failed: {})", failed.join("; ")),
        }),
        other => other,
    }
}

/// `r` as served by `ep`: the same repository, tag and digest under the endpoint's host.
fn at_endpoint(r: &Reference, ep: &Endpoint) -> Result<Reference, Error> {
    if ep.mirror.is_none() {
        return Ok(r.clone());
    }
    let mut s = format!("{}/{}", ep.host, r.repository());
    if let Some(t) = r.tag() {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = r.digest() {
        s.push('@');
        s.push_str(d);
    }
    parse_reference(&s)
}

/// The registry credentials for `host` (after the credential helpers and identity tokens).
async fn registry_auth(
    opts: &PullOptions,
    http: &reqwest::Client,
    er: &Reference,
    scheme: &str,
) -> Result<RegistryAuth, Error> {
    let found = auth::find(
        opts.registry_config.as_deref(),
        er.registry(),
        &opts.credential_helpers,
    )?;
    Ok(match found {
        auth::Found::Nothing => RegistryAuth::Anonymous,
        auth::Found::Basic(c) => RegistryAuth::Basic(c.username, c.password),
        auth::Found::IdentityToken(t) => {
            let base = format!("{scheme}://{}", er.resolve_registry());
            let token = identity::exchange(http, &base, er.repository(), &t.0, opts.read_timeout)
                .await
                .map_err(|reason| Error::Registry {
                    reference: er.whole(),
                    reason,
                })?;
            RegistryAuth::Bearer(token)
        }
    })
}

/// Fetches everything `r` needs from one endpoint.
async fn fetch_from(
    graph: &Graph,
    opts: &PullOptions,
    r: &Reference,
    ep: &Endpoint,
) -> Result<Resolved, Error> {
    let er = at_endpoint(r, ep)?;
    let registry = er.resolve_registry().to_string();
    let scheme = if ep.plain_http { "http" } else { "https" };
    let retry = match ep.mirror {
        Some(_) => RetryPolicy {
            retries: opts.retry.retries.min(1),
            ..opts.retry
        },
        None => opts.retry,
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(opts.read_timeout)
        .build()
        .map_err(|e| Error::Registry {
            reference: r.whole(),
            reason: format!("cannot set up the HTTP client: {e}"),
        })?;
    let auth = registry_auth(opts, &http, &er, scheme).await?;
    let client = Client::new(ClientConfig {
        protocol: if ep.plain_http {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(opts.read_timeout),
        ..Default::default()
    });
    let reg = manifest::Registry {
        client: &client,
        http: &http,
        auth: &auth,
        scheme,
        timeout: opts.read_timeout,
    };
    let pin = r.digest().map(Digest::parse).transpose()?;
    let top = fetch_manifest(&reg, &er, pin.as_ref(), graph, &retry)
        .await
        .map_err(|e| match e {
            Error::Registry { reference, reason }
                if !ep.plain_http
                    && ep.mirror.is_none()
                    && reason.contains("error sending request") =>
            {
                Error::Registry {
                    reference,
                    reason: format!(
                        "{reason}. If {} serves plain HTTP, list it as an insecure registry \
                         (--insecure-registry {})",
                        r.registry(),
                        r.registry()
                    ),
                }
            }
            e => e,
        })?;
    let source = format!("{}/{}@{}", r.registry(), r.repository(), top.desc.digest);
    let host = Platform::host();
    let mut cur = top;
    for _depth in 0..4 {
        let Some(entries) = cur.doc.manifests.as_deref() else {
            break;
        };
        let chosen =
            pick_manifest(&host, &cur.desc.digest, entries).map_err(|reason| Error::Registry {
                reference: r.whole(),
                reason,
            })?;
        let child = Reference::with_digest(
            er.registry().to_string(),
            er.repository().to_string(),
            chosen.digest.to_string(),
        );
        let mut next = fetch_manifest(&reg, &child, Some(&chosen.digest), graph, &retry).await?;
        next.desc.platform = chosen.platform.clone();
        cur = next;
    }
    if cur.doc.manifests.is_some() {
        return Err(Error::Registry {
            reference: r.whole(),
            reason: "image indexes nested more than 4 deep".into(),
        });
    }
    let repo = Reference::with_digest(
        er.registry().to_string(),
        er.repository().to_string(),
        cur.desc.digest.to_string(),
    );
    let fetcher = Arc::new(Fetcher {
        client,
        reference: repo,
        store: graph.blobs().clone(),
        policy: retry,
    });
    let config = cur.doc.config.clone().ok_or_else(|| Error::Registry {
        reference: r.whole(),
        reason: format!("manifest {} has no config", cur.desc.digest),
    })?;
    let layers = cur.doc.layers.clone().unwrap_or_default();
    let mut report = (0u64, 0u64, 0usize);
    let mut tally = |f: Fetched| match f {
        Fetched::Present => report.2 += 1,
        Fetched::Downloaded {
            bytes,
            resumed_from,
        } => {
            report.0 += bytes;
            report.1 += resumed_from;
        }
    };
    tally(fetcher.blob(&config, &ProgressBar::hidden()).await?);
    let cfg: ConfigDoc =
        serde_json::from_slice(&graph.blobs().read(&config.digest)?).map_err(|e| {
            Error::Registry {
                reference: r.whole(),
                reason: format!("image config {}: {e}", config.digest),
            }
        })?;

    // Space: missing blobs plus, for layers not yet unpacked, at least their compressed size.
    let mut needed = 0u64;
    let mut parent: Option<Digest> = None;
    for (i, l) in layers.iter().enumerate() {
        if !graph.blobs().contains(&l.digest) {
            needed = needed.saturating_add(l.size);
        }
        if let Some(diff_id) = cfg.rootfs.diff_ids.get(i) {
            let chain = chain_id(parent.as_ref(), diff_id);
            if graph.layers().get(&chain)?.is_none() {
                needed = needed.saturating_add(l.size);
            }
            parent = Some(chain);
        }
    }
    check_space(graph.root(), needed)?;

    let show = opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi = MultiProgress::with_draw_target(if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for l in layers {
        let bar = multi.add(ProgressBar::new(l.size));
        bar.set_style(progress_style());
        bar.set_prefix(l.digest.hex()[..12].to_string());
        let (f, sem) = (fetcher.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = f.blob(&l, &bar).await;
            bar.finish();
            r
        });
    }
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(f)) => tally(f),
            Ok(Err(e)) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_err.get_or_insert(Error::Registry {
                    reference: r.whole(),
                    reason: format!("download task failed: {e}"),
                });
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Resolved {
        reference: r.whole(),
        name: super::reference::normalize(&local_name(r))?,
        source,
        manifest: cur.desc,
        downloaded: report.0,
        resumed: report.1,
        present: report.2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plat: &str, n: u8) -> Descriptor {
        let mut it = plat.split('/');
        Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: Default::default(),
            platform: Some(Platform {
                os: it.next().unwrap_or_default().into(),
                architecture: it.next().unwrap_or_default().into(),
                variant: it.next().map(str::to_string),
            }),
        }
    }

    #[test]
    fn picks_the_host_manifest_including_arm_variants() {
        let idx = Digest::of(b"index");
        let entries = vec![
            entry("linux/amd64", 1),
            entry("linux/arm/v6", 2),
            entry("linux/arm/v7", 3),
            entry("linux/arm64/v8", 4),
        ];
        let pick = |h: &str| {
            pick_manifest(&entry(h, 0).platform.unwrap_or_default(), &idx, &entries)
                .map(|d| d.digest)
        };
        assert_eq!(pick("linux/amd64"), Ok(Digest::of(&[1])));
        assert_eq!(pick("linux/arm/v7"), Ok(Digest::of(&[3])));
        assert_eq!(pick("linux/arm/v6"), Ok(Digest::of(&[2])));
        assert_eq!(pick("linux/arm64"), Ok(Digest::of(&[4])));
        let e = pick("linux/s390x").err().unwrap_or_default();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/arm/v7"),
            "{e}"
        );
    }

    #[test]
    fn local_names() {
        let n = |s: &str| parse_reference(s).map(|r| local_name(&r)).ok();
        assert_eq!(n("busybox").as_deref(), Some("busybox:latest"));
        assert_eq!(
            n("127.0.0.1:5000/test/bb:v1").as_deref(),
            Some("127.0.0.1:5000/test/bb:v1")
        );
        let d = Digest::of(b"x");
        assert_eq!(
            n(&format!("127.0.0.1:5000/bb@{d}")),
            Some(format!("127.0.0.1:5000/bb@{d}"))
        );
        assert!(parse_reference("no spaces allowed").is_err());
    }

    #[test]
    fn refuses_when_space_is_short() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(check_space(d.path(), 1).is_ok());
        let e = check_space(d.path(), u64::MAX)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("need 18446744073709551615 bytes") && e.contains("available"),
            "{e}"
        );
    }
}
