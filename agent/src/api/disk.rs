//! What `agent volume ls|inspect` and `agent system df` show: volumes (named and anonymous) with
//! their size, users and whether a manifest declares them; the state directory's disk use by
//! kind (images, layers, containers, volumes, logs) and what could be reclaimed. Computed from a
//! store transaction and the state directory, the same way by the running agent (API) and,
//! when it is not running, by the CLI from the store.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::plan::EffectiveContainer;
use crate::plan::effective::MountSource;
use crate::reconcile::apply::volumes::ANONYMOUS_DIR;
use crate::store::{Result, Tx};

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    /// The volume's name; an anonymous one is `<container>:<path>`.
    pub name: String,
    /// `named` or `anonymous`.
    pub kind: String,
    /// Host directory of the data.
    pub path: String,
    /// Bytes on disk (allocated blocks; hard links counted once).
    pub size: u64,
    /// Containers that mount it.
    pub users: Vec<String>,
    /// Whether a manifest file declares it (a Volume manifest; for an anonymous volume, its
    /// container).
    pub declared: bool,
    /// `retain` or `delete` (named volumes the store records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim: Option<String>,
    /// The Volume manifest's labels, as the store records them (`agent volume prune --filter`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One kind of `agent system df`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DfRow {
    pub kind: String,
    pub count: u64,
    /// How many are in use.
    pub active: u64,
    pub size: u64,
    /// What removing the unused ones would free (an estimate for images: their layer blobs).
    pub reclaimable: u64,
}

/// Bytes allocated under `p` (not following symlinks; each inode once).
pub fn du(p: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        let mut n = m.blocks() * 512;
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                n += walk(&e.path(), seen);
            }
        }
        n
    }
    walk(p, &mut HashSet::new())
}

fn containers(tx: &Tx<'_>) -> Result<Vec<(String, Option<EffectiveContainer>, String)>> {
    Ok(tx
        .containers()?
        .into_iter()
        .map(|r| {
            let cfg = serde_json::from_value::<EffectiveContainer>(r.config.clone()).ok();
            (r.name, cfg, r.image_digest)
        })
        .collect())
}

/// Names of the Volume and Container objects the recorded manifest files declare.
fn declared(tx: &Tx<'_>) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut vols, mut ctrs) = (BTreeSet::new(), BTreeSet::new());
    for f in tx.manifest_files()? {
        let objects: Vec<Manifest> = serde_json::from_value(f.objects).unwrap_or_default();
        for o in objects {
            match o {
                Manifest::Volume(v) => {
                    vols.insert(v.metadata.name);
                }
                Manifest::Container(c) => {
                    ctrs.insert(c.metadata.name);
                }
                _ => {}
            }
        }
    }
    Ok((vols, ctrs))
}

/// Every volume: the store's named volumes, named volume directories it does not record, and
/// the anonymous volumes.
pub fn volumes(tx: &Tx<'_>, state: &Path) -> Result<Vec<VolumeRow>> {
    let ctrs = containers(tx)?;
    let (declared_vols, declared_ctrs) = declared(tx)?;
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, cfg, _) in &ctrs {
        for m in cfg.iter().flat_map(|c| &c.fixed.mounts) {
            if let MountSource::Volume(v) = &m.source {
                users.entry(v.clone()).or_default().push(name.clone());
            }
        }
    }
    let mut rows: BTreeMap<String, VolumeRow> = BTreeMap::new();
    for v in tx.volumes()? {
        rows.insert(
            v.name.clone(),
            VolumeRow {
                path: v.driver_path.clone(),
                size: du(Path::new(&v.driver_path)),
                users: users.get(&v.name).cloned().unwrap_or_default(),
                declared: declared_vols.contains(&v.name),
                reclaim: Some(format!("{:?}", v.reclaim).to_lowercase()),
                labels: v.labels.clone(),
                kind: "named".into(),
                name: v.name,
            },
        );
    }
    for e in std::fs::read_dir(state.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if rows.contains_key(&name) {
            continue;
        }
        let data = e.path().join("_data");
        rows.insert(
            name.clone(),
            VolumeRow {
                path: data.to_string_lossy().into_owned(),
                size: du(&data),
                users: users.get(&name).cloned().unwrap_or_default(),
                declared: declared_vols.contains(&name),
                reclaim: None,
                labels: BTreeMap::new(),
                kind: "named".into(),
                name,
            },
        );
    }
    let mut out: Vec<VolumeRow> = rows.into_values().collect();
    let anon = state.join(ANONYMOUS_DIR);
    for c in std::fs::read_dir(&anon).into_iter().flatten().flatten() {
        let container = c.file_name().to_string_lossy().into_owned();
        let exists = ctrs.iter().any(|(n, _, _)| *n == container);
        for v in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            let target = format!(
                "/{}",
                v.file_name()
                    .to_string_lossy()
                    .replace("%2F", "/")
                    .replace("%25", "%")
            );
            let data = v.path().join("_data");
            out.push(VolumeRow {
                name: format!("{container}:{target}"),
                kind: "anonymous".into(),
                path: data.to_string_lossy().into_owned(),
                size: du(&data),
                users: if exists {
                    vec![container.clone()]
                } else {
                    Vec::new()
                },
                declared: declared_ctrs.contains(&container),
                reclaim: None,
                labels: BTreeMap::new(),
            });
        }
    }
    Ok(out)
}

/// `agent system df`.
pub fn df(tx: &Tx<'_>, state: &Path) -> Result<Vec<DfRow>> {
    let ctrs = containers(tx)?;
    let in_use: BTreeSet<&str> = ctrs.iter().map(|(_, _, d)| d.as_str()).collect();
    let graph = state.join("graph");
    let images = crate::driver::graph::JsonImageIndex::open(&graph.join("images.json"));
    let images = crate::driver::graph::ImageIndex::list(&images).unwrap_or_default();
    let active = images
        .iter()
        .filter(|i| in_use.contains(i.id.as_str()))
        .count() as u64;
    let unused: u64 = images
        .iter()
        .filter(|i| !in_use.contains(i.id.as_str()))
        .map(|i| i.size())
        .sum();
    let layer_dirs = std::fs::read_dir(graph.join("layers"))
        .map(|r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count() as u64
        })
        .unwrap_or(0);
    let vols = volumes(tx, state)?;
    let vol_free: u64 = vols
        .iter()
        .filter(|v| v.users.is_empty() && !v.declared)
        .map(|v| v.size)
        .sum();
    let exec = crate::driver::exec::paths::exec_root(state);
    let mut logs = 0;
    for e in std::fs::read_dir(&exec).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().contains(".log") {
                logs += du(&f.path());
            }
        }
    }
    Ok(vec![
        DfRow {
            kind: "images".into(),
            count: images.len() as u64,
            active,
            size: du(&graph.join("blobs")),
            reclaimable: unused,
        },
        DfRow {
            kind: "layers".into(),
            count: layer_dirs,
            active: layer_dirs,
            size: du(&graph.join("layers")),
            reclaimable: 0,
        },
        DfRow {
            kind: "containers".into(),
            count: ctrs.len() as u64,
            active: ctrs.len() as u64,
            size: du(&graph.join("containers")),
            reclaimable: 0,
        },
        DfRow {
            kind: "volumes".into(),
            count: vols.len() as u64,
            active: vols.iter().filter(|v| !v.users.is_empty()).count() as u64,
            size: vols.iter().map(|v| v.size).sum(),
            reclaimable: vol_free,
        },
        DfRow {
            kind: "logs".into(),
            count: 0,
            active: 0,
            size: logs,
            reclaimable: 0,
        },
    ])
}
