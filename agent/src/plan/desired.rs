//! The desired state: every object the manifest files ask for, in effective form, with the file
//! it came from and whether that file's latest version failed to load.
//!
//! # Contract for the caller (the daemon, `agent plan`)
//!
//! [`Desired::build`] takes one [`FileInput`] per manifest file the caller knows of, from the
//! directory listing *and* from the store's `manifest_files` table:
//! - [`FileState::Loaded`]: the file's current version loaded; its objects are desired.
//! - [`FileState::Failed`]: the latest version did not load (bad YAML, a failed check, or the
//!   file could not be read). Pass the objects of its last good version (the store's
//!   `manifest_files.objects`, see [`super::store`]); they stay desired, **frozen**: the plan
//!   never touches them, and nothing they use (image, volume, network, link target) is removed.
//! - [`FileState::Deleted`]: the caller *saw* the file go (a watcher delete/rename event, or a
//!   successful listing of the directory that no longer shows it). Only now are its objects
//!   removed.
//!
//! A file the caller does not mention at all is "missing, reason unknown": objects that the
//! store says it owned are kept and reported as held (see [`super::Plan::held`]), never removed.
//! So a directory that cannot be read, or a mount that has not come up and shows an empty
//! directory, must be passed as `Failed` (or left out), never as an empty list of deletions.
//! An object that no file owns (not in any `manifest_files` row) and that no file asks for is
//! removed: it is a leftover of an earlier, interrupted removal.
//!
//! A container whose `image` is a bare name that no Image manifest declares any more (the last
//! good version of a failing file, or one never applied, whose Image's file was deleted) is
//! frozen too, kept as it runs with what it runs on: a bare name is never read as
//! `docker.io/library/<name>:latest` (validation refuses such a name in a file that loads).
//!
//! If two files define the same name (validation forbids it among loaded files, but a failed
//! file's last good version may still hold an object that moved to another file), the loaded
//! file wins and the object is no longer frozen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::effective::{
    self, EffectiveContainer, EffectiveImage, EffectiveNetwork, EffectiveVolume, ImageSource,
};
use super::hash::ConfigHash;
use crate::manifest::{Kind, Loaded, Manifest};

/// Image key -> digest, as the store recorded the fetches ([`super::Actual::resolutions`]).
pub type Resolutions = HashMap<String, String>;

/// What the caller knows about one manifest file.
#[derive(Debug, Clone)]
pub struct FileInput {
    pub path: PathBuf,
    pub state: FileState,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub enum FileState {
    Loaded(Vec<Manifest>),
    Failed {
        error: String,
        last_good: Vec<Manifest>,
    },
    Deleted,
}

/// The status of a file as the plan reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum FileStatus {
    Loaded,
    Failed { error: String },
    Deleted,
}

/// Where a desired object comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    /// From the last good version of a file that now fails to load: the plan leaves it alone.
    pub frozen: bool,
}

/// A desired object and its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub value: T,
    pub origin: Origin,
}

/// A desired container with its precomputed hash (`None` while its image digest is unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredContainer {
    pub config: EffectiveContainer,
    pub hash: Option<ConfigHash>,
}

/// Everything the manifest files ask for. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub files: BTreeMap<PathBuf, FileStatus>,
    /// By image key.
    pub images: BTreeMap<String, Entry<EffectiveImage>>,
    pub volumes: BTreeMap<String, Entry<EffectiveVolume>>,
    pub networks: BTreeMap<String, Entry<EffectiveNetwork>>,
    pub containers: BTreeMap<String, Entry<DesiredContainer>>,
}

impl Desired {
    /// Builds the desired state; `resolutions` gives the digest of every image fetched so far.
    pub fn build(mut inputs: Vec<FileInput>, resolutions: &Resolutions) -> Desired {
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        let mut files = BTreeMap::new();
        // (kind, name) -> (manifest, origin); loaded beats frozen, then path order.
        let mut chosen: HashMap<(Kind, &str), (&Manifest, Origin)> = HashMap::new();
        let mut order: Vec<(Kind, &str)> = Vec::new();
        for input in &inputs {
            let file: Arc<Path> = Arc::from(input.path.as_path());
            let (objects, frozen, status): (&[Manifest], bool, FileStatus) = match &input.state {
                FileState::Loaded(objs) => (objs, false, FileStatus::Loaded),
                FileState::Failed { error, last_good } => (
                    last_good,
                    true,
                    FileStatus::Failed {
                        error: error.clone(),
                    },
                ),
                FileState::Deleted => (&[], false, FileStatus::Deleted),
            };
            files.insert(input.path.clone(), status);
            for m in objects {
                let key = (m.kind(), m.name());
                let origin = Origin {
                    file: file.clone(),
                    frozen,
                };
                match chosen.get(&key) {
                    None => {
                        order.push(key);
                        chosen.insert(key, (m, origin));
                    }
                    Some((_, existing)) if existing.frozen && !frozen => {
                        chosen.insert(key, (m, origin));
                    }
                    Some(_) => {}
                }
            }
        }

        let mut d = Desired {
            files,
            ..Desired::default()
        };
        // Image manifests first: containers name them.
        let mut image_key_of: HashMap<&str, String> = HashMap::new();
        for key in &order {
            if let Some((Manifest::Image(m), origin)) = chosen.get(key) {
                let img = EffectiveImage::from_manifest(m);
                image_key_of.insert(m.metadata.name.as_str(), img.key.clone());
                add_image(&mut d.images, img, origin);
            }
        }
        let mut containers: HashMap<String, EffectiveContainer> = HashMap::new();
        let mut origins: HashMap<String, Origin> = HashMap::new();
        let mut read_only_from: HashMap<String, BTreeSet<String>> = HashMap::new();
        for key in &order {
            let Some((m, origin)) = chosen.get(key) else {
                continue;
            };
            match m {
                Manifest::Image(_) | Manifest::Secret(_) => {}
                Manifest::Volume(v) => {
                    d.volumes.insert(
                        v.metadata.name.clone(),
                        Entry {
                            value: EffectiveVolume::from_manifest(v),
                            origin: origin.clone(),
                        },
                    );
                }
                Manifest::Network(n) => {
                    d.networks.insert(
                        n.metadata.name.clone(),
                        Entry {
                            value: EffectiveNetwork::from_manifest(n),
                            origin: origin.clone(),
                        },
                    );
                }
                Manifest::Container(c) => {
                    let mut origin = origin.clone();
                    let image_key = match image_key_of.get(c.spec.image.as_str()) {
                        Some(k) => k.clone(),
                        // A bare name is an Image manifest's (validation refuses one that names
                        // none). Here its manifest is gone while the container's file still asks
                        // for it (the last good version of a file that fails now): never read as
                        // docker.io's `<name>:latest` (a pull from the internet and a recreate);
                        // the container is frozen, kept as it runs.
                        None if !c.spec.image.contains(['/', ':', '@']) => {
                            origin.frozen = true;
                            c.spec.image.clone()
                        }
                        None => {
                            let source = ImageSource::registry(&c.spec.image);
                            let img = EffectiveImage {
                                key: source.key(),
                                names: Vec::new(),
                                source,
                            };
                            let k = img.key.clone();
                            add_image(&mut d.images, img, &origin);
                            k
                        }
                    };
                    let ro: BTreeSet<String> = c
                        .spec
                        .volumes_from
                        .iter()
                        .filter(|v| v.read_only)
                        .map(|v| v.container.clone())
                        .collect();
                    if !ro.is_empty() {
                        read_only_from.insert(c.metadata.name.clone(), ro);
                    }
                    let mut eff = effective::canonicalise(c, image_key);
                    eff.fixed
                        .secrets
                        .resolve(|n| match chosen.get(&(Kind::Secret, n)) {
                            Some((Manifest::Secret(s), _)) => {
                                Some(effective::secret::SecretValue {
                                    file: s.spec.file.clone(),
                                    digest: s.digest.clone(),
                                })
                            }
                            _ => None,
                        });
                    origins.insert(eff.name.clone(), origin);
                    containers.insert(eff.name.clone(), eff);
                }
            }
        }
        effective::fold_volumes_from(&mut containers, &read_only_from);
        for (name, mut config) in containers {
            config.image.digest = resolutions.get(&config.image.key).cloned();
            let hash = config.hash();
            let Some(origin) = origins.remove(&name) else {
                continue;
            };
            d.containers.insert(
                name,
                Entry {
                    value: DesiredContainer { config, hash },
                    origin,
                },
            );
        }
        d
    }

    /// Whether `(kind, name)` is desired.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Image => self.images.contains_key(name),
            Kind::Volume => self.volumes.contains_key(name),
            Kind::Network => self.networks.contains_key(name),
            Kind::Container => self.containers.contains_key(name),
            Kind::Secret => false,
        }
    }
}

/// Adds an image; an image several manifests or containers need is frozen only if all of them
/// are, and `insecure` if any Image manifest says so.
fn add_image(
    images: &mut BTreeMap<String, Entry<EffectiveImage>>,
    img: EffectiveImage,
    origin: &Origin,
) {
    match images.get_mut(&img.key) {
        None => {
            images.insert(
                img.key.clone(),
                Entry {
                    value: img,
                    origin: origin.clone(),
                },
            );
        }
        Some(existing) => {
            for n in img.names {
                if !existing.value.names.contains(&n) {
                    existing.value.names.push(n);
                    existing.value.names.sort();
                }
            }
            if let (
                ImageSource::Registry { insecure, .. },
                ImageSource::Registry { insecure: new, .. },
            ) = (&mut existing.value.source, &img.source)
            {
                *insecure |= *new;
            }
            if existing.origin.frozen && !origin.frozen {
                existing.origin = origin.clone();
            }
        }
    }
}

/// File inputs from a directory load: each valid file is `Loaded`; each failing file is
/// `Failed` with the last good objects `last_good` returns for its path (empty if none).
pub fn inputs_from_loaded(
    loaded: &Loaded,
    mut last_good: impl FnMut(&Path) -> Vec<Manifest>,
) -> Vec<FileInput> {
    loaded
        .files
        .iter()
        .map(|f| FileInput {
            path: f.path.clone(),
            state: match &f.outcome {
                Ok(objects) => {
                    FileState::Loaded(objects.iter().map(|o| o.manifest.clone()).collect())
                }
                Err(diags) => FileState::Failed {
                    error: diags
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                    last_good: last_good(&f.path),
                },
            },
        })
        .collect()
}
