//! The actual state: what the store recorded, in the same effective types as the desired state,
//! so that a diff compares two values of one type.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::desired::Resolutions;
use super::effective::{EffectiveContainer, EffectiveNetwork, EffectiveVolume};
use super::hash::ConfigHash;
use crate::manifest::Kind;
use crate::store::{ContainerState, HealthStatus};

/// A container as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualContainer {
    /// `None` when the recorded config cannot be read as this agent's effective config (written
    /// by another version, or damaged): the container is recreated.
    pub config: Option<EffectiveContainer>,
    /// Recomputed from `config` (not the stored hash, so a change of the JSON spelling between
    /// versions does not recreate containers).
    pub hash: Option<ConfigHash>,
    pub state: ContainerState,
    /// What `dependsOn` conditions read ([`super::depends`]): the last exit code, the health
    /// status, the Unix milliseconds of the last start.
    pub exit_code: Option<i32>,
    pub health: Option<HealthStatus>,
    pub started_at: Option<i64>,
}

impl ActualContainer {
    pub fn new(config: Option<EffectiveContainer>, state: ContainerState) -> ActualContainer {
        let hash = config.as_ref().and_then(EffectiveContainer::hash);
        ActualContainer {
            config,
            hash,
            state,
            exit_code: None,
            health: None,
            started_at: None,
        }
    }
}

/// A network as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualNetwork {
    /// `None` when the recorded config cannot be read: the network is recreated.
    pub config: Option<EffectiveNetwork>,
}

/// A fetched image whose source now holds another image: a layout or archive rebuilt in place,
/// a registry tag moved by `agent image pull`. Found by the daemon (I/O) before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    /// The digest the source holds now.
    pub digest: String,
    /// Why, for the plan (`layout /x changed on disk: sha256:.. -> sha256:..`).
    pub reason: String,
}

/// Everything the host has, by name (images by key).
#[derive(Debug, Clone, Default)]
pub struct Actual {
    /// Image key -> digest.
    pub images: BTreeMap<String, String>,
    /// Fetched images whose source changed (by key): fetched again, their users recreated on
    /// the new digest.
    pub changed_images: BTreeMap<String, ImageChange>,
    pub volumes: BTreeMap<String, EffectiveVolume>,
    pub networks: BTreeMap<String, ActualNetwork>,
    pub containers: BTreeMap<String, ActualContainer>,
    /// Which manifest file last applied each object (from the store's `manifest_files`); keyed
    /// by [`super::store::owner_key`]: images by key, everything else by name.
    pub owners: HashMap<(Kind, String), Arc<Path>>,
}

impl Actual {
    /// The digests of the fetched images, for [`super::Desired::build`].
    pub fn resolutions(&self) -> Resolutions {
        self.images
            .iter()
            .map(|(k, d)| {
                let d = self.changed_images.get(k).map_or(d, |c| &c.digest);
                (k.clone(), d.clone())
            })
            .collect()
    }

    /// The file that owns `(kind, name)`, if any.
    pub fn owner(&self, kind: Kind, name: &str) -> Option<&Arc<Path>> {
        self.owners.get(&(kind, name.to_string()))
    }
}
