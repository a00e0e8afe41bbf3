//! The plan's vocabulary: typed changes, each step with its reasons, and the objects held back.

use serde::Serialize;

use super::effective::{
    EffectiveContainer, EffectiveNetwork, EffectiveVolume, ImageSource, LiveConfig,
};
use super::hash::ConfigHash;
use crate::manifest::Kind;

/// One operation. The daemon applies them in the plan's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Pull a registry image and record `image` (the key) -> digest.
    PullImage {
        image: String,
        reference: String,
        insecure: bool,
    },
    /// Import an image from a host path and record `image` (the key) -> digest.
    ImportImage {
        image: String,
        source: ImageSource,
        /// The Image manifests' names: what the graph calls the image (`agent image ls`).
        names: Vec<String>,
    },
    CreateVolume {
        volume: EffectiveVolume,
    },
    /// Update the volume's record (reclaim, labels); the data is not touched.
    UpdateVolume {
        volume: EffectiveVolume,
    },
    /// Delete the volume and its data (only for `reclaim: delete`).
    RemoveVolume {
        name: String,
    },
    CreateNetwork {
        network: EffectiveNetwork,
    },
    RemoveNetwork {
        name: String,
    },
    /// Create the container. `hash` is `None` while the image digest is not known: the daemon
    /// takes the digest its fetch recorded ([`EffectiveContainer::with_digest`]). With
    /// `keep_stopped` it replaces a container the user had stopped: record the new one
    /// stopped-by-user and do not start it (otherwise a [`Change::StartContainer`] follows).
    CreateContainer {
        config: EffectiveContainer,
        hash: Option<ConfigHash>,
        keep_stopped: bool,
    },
    StartContainer {
        name: String,
    },
    /// Start an exited container again under its restart policy (the restart count grows by
    /// one; its network is attached again first). Never planned from manifests: the supervision
    /// of exits decides it (see `reconcile::supervise`).
    RestartContainer {
        name: String,
    },
    /// Stop it (its stop signal, the grace period, SIGKILL).
    StopContainer {
        name: String,
    },
    /// Remove a stopped container. With `replaced`, the same name is created again later in
    /// this plan (its network is recreated): keep its store row (address, port bindings) for
    /// the new one, but drop its outgoing links; the create records the new config's links.
    RemoveContainer {
        name: String,
        replaced: bool,
    },
    /// Stop, remove and create it again with `config`; start the new one if `start` (false
    /// when the user had stopped the old one: the new one is recorded stopped-by-user). With
    /// `hash: None` (image digest known after the fetch) the daemon skips it if the config with
    /// the fetched digest hashes to what runs.
    RecreateContainer {
        config: EffectiveContainer,
        hash: Option<ConfigHash>,
        start: bool,
    },
    /// Apply the live fields (restart policy, cgroup limits, health check, stop settings) to
    /// the existing container and record `hash`.
    UpdateContainer {
        name: String,
        live: LiveConfig,
        hash: ConfigHash,
    },
    /// Rewrite the `/etc/hosts` entries of `name` for its link targets `targets`, which were
    /// recreated. (Link environment variables of a running process cannot change, as in Docker.)
    RefreshLinks {
        name: String,
        targets: Vec<String>,
    },
    /// Put back the network of a running bridge-mode container that drifted: a missing bridge or
    /// veth is created again in its namespace (the container keeps running); a namespace that
    /// is gone is made again and the container restarted into it. Never planned from
    /// manifests: drift repair decides it (`reconcile::engine`).
    RepairNetwork {
        name: String,
    },
    /// Bring a running container whose monitor is gone (killed from outside) back under a
    /// monitor: stop it (its stop signal, the grace period, SIGKILL; the exit status read by
    /// the exec driver) and start it again under a new one. Never planned from manifests: the
    /// supervision of monitors decides it (`reconcile::engine`).
    RepairMonitor {
        name: String,
    },
    /// Forget an image reference no desired object uses (its blobs go with the last reference).
    RemoveImage {
        image: String,
        digest: String,
    },
}

impl Change {
    /// The kind of object changed.
    pub fn kind(&self) -> Kind {
        match self {
            Change::PullImage { .. } | Change::ImportImage { .. } | Change::RemoveImage { .. } => {
                Kind::Image
            }
            Change::CreateVolume { .. }
            | Change::UpdateVolume { .. }
            | Change::RemoveVolume { .. } => Kind::Volume,
            Change::CreateNetwork { .. } | Change::RemoveNetwork { .. } => Kind::Network,
            _ => Kind::Container,
        }
    }

    /// The object's name (an image's key).
    pub fn name(&self) -> &str {
        match self {
            Change::PullImage { image, .. }
            | Change::ImportImage { image, .. }
            | Change::RemoveImage { image, .. } => image,
            Change::CreateVolume { volume } | Change::UpdateVolume { volume } => &volume.name,
            Change::CreateNetwork { network } => &network.name,
            Change::CreateContainer { config, .. } | Change::RecreateContainer { config, .. } => {
                &config.name
            }
            Change::RemoveVolume { name }
            | Change::RemoveNetwork { name }
            | Change::StartContainer { name }
            | Change::RestartContainer { name }
            | Change::StopContainer { name }
            | Change::RemoveContainer { name, .. }
            | Change::UpdateContainer { name, .. }
            | Change::RefreshLinks { name, .. }
            | Change::RepairNetwork { name }
            | Change::RepairMonitor { name } => name,
        }
    }

    /// The verb shown in the plan and used as `action` in JSON.
    pub fn action(&self) -> &'static str {
        match self {
            Change::PullImage { .. } => "pull",
            Change::ImportImage { .. } => "import",
            Change::CreateVolume { .. }
            | Change::CreateNetwork { .. }
            | Change::CreateContainer { .. } => "create",
            Change::UpdateVolume { .. } | Change::UpdateContainer { .. } => "update",
            Change::RemoveVolume { .. }
            | Change::RemoveNetwork { .. }
            | Change::RemoveContainer { .. }
            | Change::RemoveImage { .. } => "remove",
            Change::StartContainer { .. } => "start",
            Change::RestartContainer { .. } => "restart",
            Change::StopContainer { .. } => "stop",
            Change::RecreateContainer { .. } => "recreate",
            Change::RefreshLinks { .. } => "refresh-links",
            Change::RepairNetwork { .. } => "repair-network",
            Change::RepairMonitor { .. } => "repair-monitor",
        }
    }

    /// Terraform-like marker: `+` adds, `~` changes in place, `-` removes, `-/+` replaces.
    pub fn marker(&self) -> &'static str {
        match self.action() {
            "pull" | "import" | "create" => "+",
            "remove" => "-",
            "recreate" => "-/+",
            _ => "~",
        }
    }

    /// Whether this change touches a container (what the download-then-kill rule orders).
    pub fn stops_or_replaces(&self) -> bool {
        matches!(
            self,
            Change::StopContainer { .. }
                | Change::RemoveContainer { .. }
                | Change::RecreateContainer { .. }
        )
    }
}

/// A change with its reasons (field-level: `env.LOG_LEVEL changed`, `restart no -> always`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub change: Change,
    pub reasons: Vec<String>,
}

impl Step {
    /// `recreate web: env.LOG_LEVEL changed; image sha256:ab12.. -> sha256:cd34..`
    pub fn summary(&self) -> String {
        let mut s = format!("{} {}", self.change.action(), self.change.name());
        if !self.reasons.is_empty() {
            s.push_str(": ");
            s.push_str(&self.reasons.join("; "));
        }
        s
    }
}

/// Something the plan leaves alone on purpose, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The object's kind, or `None` for a whole file.
    pub kind: Option<Kind>,
    /// The object's name (an image's key), or the file's path.
    pub name: String,
    pub reason: String,
}

/// The ordered changes that make the actual state equal to the desired one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Objects kept as they are: frozen by a failing file, owned by a file whose deletion was not
    /// seen, volumes kept by `reclaim: retain`, objects a kept container still uses.
    pub held: Vec<Held>,
    /// Containers whose create, recreate, start or restart waits for their `dependsOn`
    /// conditions ([`super::depends`]), by name.
    pub waiting: Vec<super::depends::Waiting>,
}

impl Plan {
    /// No change pending (held objects do not count).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many steps add, change, replace and remove something.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.steps {
            match s.change.marker() {
                "+" => c.add += 1,
                "-" => c.remove += 1,
                "-/+" => c.replace += 1,
                _ => c.change += 1,
            }
        }
        c
    }
}

/// Step counts by marker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub remove: usize,
}
