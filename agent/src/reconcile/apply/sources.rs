//! Which fetched images' sources changed since they were fetched (before each plan): an
//! archive or OCI layout rebuilt at the same path (and tag), a registry tag that `agent image
//! pull` moved to another digest. Each becomes an [`ImageChange`] in the actual state; the plan
//! then fetches the image again and recreates its users on the new digest, with a reason naming
//! the old and new digests.
//!
//! Cost: a file source is looked at again only when its `stat` (device, inode, size, mtime,
//! ctime; for a layout directory those of its `index.json`) differs from the last look, kept in
//! memory. After an agent start, a file not modified since the image was added to the graph
//! is taken as unchanged without reading it; otherwise it is read once
//! ([`crate::driver::graph::import::peek`]: a few small files for a layout directory, one pass
//! over a tar). A registry image is compared with what the graph's name for it points at (no
//! network).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::driver::graph::Graph;
use crate::driver::graph::import::peek;
use crate::plan::diff::short_digest;
use crate::plan::{Actual, Desired, ImageChange, ImageSource};

/// `stat` of what a file source's content is judged by.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

/// (path, tag) -> (stamp, image id at that stamp).
type Cache = HashMap<(PathBuf, Option<String>), (Stamp, String)>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn stamp(path: &Path) -> Option<Stamp> {
    let p = if path.is_dir() {
        path.join("index.json")
    } else {
        path.to_path_buf()
    };
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// The changed images among those `wanted` and `actual` both have.
pub fn changed(graph: &Graph, wanted: &Desired, actual: &Actual) -> BTreeMap<String, ImageChange> {
    let mut out = BTreeMap::new();
    for (key, e) in &wanted.images {
        let Some(old) = actual.images.get(key) else {
            continue;
        };
        if e.origin.frozen {
            continue;
        }
        let found = match &e.value.source {
            ImageSource::Registry { reference, .. } => registry(graph, reference, old),
            ImageSource::OciLayout { path, tag } => {
                file(graph, "layout", path, tag.as_deref(), old)
            }
            ImageSource::DockerArchive { path, tag } => {
                file(graph, "archive", path, tag.as_deref(), old)
            }
            ImageSource::RootfsTar { path } => file(graph, "tarball", path, None, old),
        };
        if let Some(c) = found {
            out.insert(key.clone(), c);
        }
    }
    out
}

fn registry(graph: &Graph, reference: &str, old: &str) -> Option<ImageChange> {
    if reference.contains('@') {
        return None; // pinned by digest
    }
    let img = graph.find(reference).ok()?;
    let new = img.id.to_string();
    (new != old).then(|| ImageChange {
        reason: format!(
            "{reference} now points at {} (was {}; moved by agent image pull)",
            short_digest(&new),
            short_digest(old)
        ),
        digest: new,
    })
}

fn file(
    graph: &Graph,
    what: &str,
    path: &Path,
    tag: Option<&str>,
    old: &str,
) -> Option<ImageChange> {
    let st = stamp(path)?;
    let key = (path.to_path_buf(), tag.map(str::to_string));
    let cached = cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let new = match cached {
        Some((s, id)) if s == st => id,
        None if unchanged_since_added(graph, old, st) => old.to_string(),
        _ => match peek::image_id(path, tag) {
            Ok(Some(id)) => id.to_string(),
            Ok(None) => return None,
            Err(e) => {
                // Caught mid-write, or broken: the next look (or the import) will tell.
                tracing::debug!(path = %path.display(), error = %e, "cannot tell which image the source holds now");
                return None;
            }
        },
    };
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (st, new.clone()));
    (new != old).then(|| ImageChange {
        reason: format!(
            "{what} {} changed on disk: {} -> {}",
            path.display(),
            short_digest(old),
            short_digest(&new)
        ),
        digest: new,
    })
}

/// Whether the source was last changed (mtime and ctime) before image `old` was added.
fn unchanged_since_added(graph: &Graph, old: &str, st: Stamp) -> bool {
    let Ok(img) = graph.find(old) else {
        return false;
    };
    let added = i64::try_from(img.added).unwrap_or(i64::MAX);
    st.3 < added && st.5 < added
}
