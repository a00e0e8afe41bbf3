//! Applying a plan's steps through the drivers, each recorded in the store and the event log.
//!
//! Every step is applied on its own: a failed step is reported (and retried by the next pass,
//! which plans it again) without stopping unrelated steps. Writes follow the store's rules: the
//! container row is written when the runtime object exists, the event after each step.
//!
//! What is wired in this version:
//! - images: import of OCI layouts, `docker save` archives and root filesystem tarballs, registry
//!   pulls (the config's `registries.insecure` applies); the config digest is recorded as the
//!   image's digest;
//! - volumes: a directory per volume under `<state>/volumes/<name>/_data`, kept on removal unless
//!   `reclaim: delete`; a removal (that one, `agent volume rm|prune`) is journalled, see
//!   [`volume_rm`];
//! - containers: create (container layer from the graph driver, OCI spec from the effective
//!   config, exec driver create), start, stop, remove, recreate, in-place update of the live
//!   fields, in every network mode (see [`super::network`]);
//! - networks: `Network` manifests become bridges through the network driver; links are
//!   refreshed when their target is recreated.
//!
//! Container creation writes the store row first, in state `removing` (so that a crash before
//! the runtime object exists makes the next pass recreate it), then attaches the network (the
//! driver's address records hang off the row), creates the runtime object and writes the row's
//! final state. The store is locked for one transaction at a time, never across a driver call:
//! the network driver's records live in the same store.
//!
//! Starting and removing a container are journalled: an intent (`start-container`,
//! `remove-container`, with the runtime id) is committed before the runtime is touched and
//! cleared in the transaction that records the result. An intent still there when the next pass
//! starts belongs to a step that failed half-way or to an agent that died in the middle; the pass
//! finishes it first (see [`super::recover`]). Creation needs no intent: its `removing` row is the
//! journal, and the planner recreates such a container.
//!
//! `AGENT_DEBUG_STEP_DELAY_MS` (a debugging aid used by the crash tests) makes every container
//! create, start (also `agent start`'s) and remove pause that long half-way, after the runtime
//! was changed and before the store records it: the window a crash leaves half-applied.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::pass::{event, now_ms};
use super::translate::network::{Net, NetError, SharedStore, lock};
use super::work::Work;

pub mod pulls;
pub mod sources;
mod supervision;
pub mod volume_rm;
pub mod volumes;
use crate::driver::exec::spec::{self, ContainerSpec};
use crate::driver::exec::{AnyExecDriver, ExecDriver, LiveUpdate};
use crate::driver::graph::{Graph, GraphDriver};
use crate::plan::{self, Change, EffectiveContainer, ImageSource, Step};
use crate::store::{ContainerRecord, ContainerState, ImageRecord, NewIntent, VolumeRecord};

/// The grace period shown when a config names none (the exec driver's default).
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Intent kinds of container steps (object `container/NAME`). Payload `{"id": runtime id}`.
pub const INTENT_START: &str = "start-container";
/// Payload `{"id": .., "replaced": bool}`.
pub const INTENT_REMOVE: &str = "remove-container";

fn new_intent(kind: &str, name: &str, payload: serde_json::Value) -> NewIntent {
    NewIntent {
        kind: kind.into(),
        object: format!("container/{name}"),
        payload,
    }
}

/// `AGENT_DEBUG_STEP_DELAY_MS`: see the module docs (also used by `agent start`).
/// The monitor of running container `id`, for the store's `monitor_pid` (read from its
/// state file; `None` when it does not run).
pub(crate) fn monitor_of(exec: &impl ExecDriver, id: &str) -> Option<i32> {
    exec.state(id).ok().and_then(|i| i.running_monitor())
}

pub(super) fn debug_pause(step: &str, name: &str) {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("AGENT_DEBUG_STEP_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(d) = delay {
        tracing::info!(step, container = name, delay = ?d, "debug: pausing half-way (AGENT_DEBUG_STEP_DELAY_MS)");
        std::thread::sleep(*d);
    }
}

/// What applying a work did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub line: String,
    /// False when there was nothing to do (`agent start` of a running container).
    pub changed: bool,
}

impl From<String> for Applied {
    fn from(line: String) -> Applied {
        Applied {
            line,
            changed: true,
        }
    }
}

impl Applied {
    fn unchanged(line: String) -> Applied {
        Applied {
            line,
            changed: false,
        }
    }
}

/// A started process and the open intent of its start.
struct Started {
    pid: i32,
    intent: i64,
}

/// `AGENT_DEBUG_PANIC_CONTAINER` (a test hook): applying any work on the container of that
/// name panics, as a bug would. The work fails; the agent must live on.
fn debug_panic(work: &Work) {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| std::env::var("AGENT_DEBUG_PANIC_CONTAINER").ok());
    if work.step.change.kind() == crate::manifest::Kind::Container
        && name.as_deref() == Some(work.step.change.name())
    {
        panic!(
            "AGENT_DEBUG_PANIC_CONTAINER: applying {}",
            work.step.summary()
        );
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Graph(#[from] crate::driver::graph::Error),
    #[error(transparent)]
    Exec(#[from] crate::driver::exec::Error),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error("{0}")]
    Other(String),
}

/// The drivers a pass applies through.
pub struct Applier {
    pub state_dir: PathBuf,
    pub graph: Graph,
    pub exec: AnyExecDriver,
    /// Registry settings of the config (insecure registries, pull deadline, read timeout).
    pub registries: crate::daemon::config::RegistriesConfig,
    /// The network driver; `Err` says why it is unavailable (bridge-mode changes fail with it).
    pub net: Result<Arc<Net>, String>,
    /// Where a stop in its grace period shows (`agent ps`: `stopping`).
    pub board: super::report::Board,
    /// The config's defaults of the containers' logs.
    pub container_logs: crate::daemon::config::ContainerLogsConfig,
    /// The registry pulls running, for the loop to cancel those no longer wanted.
    pub pulls: pulls::Pulls,
}

/// A new runtime id for container `name`: the name and 12 hex digits (unique per creation).
fn new_id(name: &str) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(now_ms().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let hex = hex::encode(h.finalize());
    let base: String = name.chars().take(48).collect();
    format!("{base}-{}", &hex[..12])
}

impl Applier {
    /// Applies one step; returns a line for the pass report.
    pub fn apply(&self, store: &SharedStore, step: &Step) -> Result<String, ApplyError> {
        let summary = step.summary();
        match &step.change {
            Change::PullImage {
                image,
                reference,
                insecure,
            } => {
                let mut opts = crate::driver::graph::pull::PullOptions::new(reference.clone());
                opts.insecure_registries = self.registries.insecure.clone();
                opts.credential_helpers = self.registries.credential_helpers.clone();
                opts.mirrors = self.registries.mirrors.clone();
                opts.deadline = Some(self.registries.pull_timeout);
                opts.read_timeout = self.registries.read_timeout;
                opts.progress = false;
                if *insecure && let Some(host) = reference.split('/').next() {
                    opts.insecure_registries.push(host.to_string());
                }
                opts.cancel = Some(self.pulls.start(image));
                let started = std::time::Instant::now();
                let pulled = crate::driver::graph::pull::pull(&self.graph, &opts);
                self.pulls.end(image);
                crate::metrics::global().pull(
                    pulled.is_ok(),
                    pulled.as_ref().map_or(0, |r| r.downloaded),
                    started.elapsed(),
                );
                let report = pulled?;
                self.record_image(store, image, &report.image)?;
            }
            Change::ImportImage {
                image,
                source,
                names,
            } => {
                let (path, tag) = match source {
                    ImageSource::OciLayout { path, tag }
                    | ImageSource::DockerArchive { path, tag } => (path.clone(), tag.clone()),
                    ImageSource::RootfsTar { path } => (path.clone(), None),
                    ImageSource::Registry { .. } => {
                        return Err(ApplyError::Other(format!(
                            "{image}: a registry image is pulled, not imported"
                        )));
                    }
                };
                // The tag selects; the image is known by its manifests' names, never the tag.
                let opts = crate::driver::graph::import::archive::LoadOptions {
                    tag,
                    names: names.clone(),
                };
                let loaded = self.graph.load_with(&path, &opts)?;
                let img = loaded.first().ok_or_else(|| {
                    ApplyError::Other(format!("{}: no image in it", path.display()))
                })?;
                self.record_image(store, image, img)?;
            }
            Change::RemoveImage { image, digest } => {
                let shared = lock(store).transaction(|tx| {
                    tx.delete_image(image)?;
                    Ok::<_, crate::store::Error>(
                        tx.images()?.into_iter().any(|i| i.digest == *digest),
                    )
                })?;
                if !shared {
                    self.forget_image(digest)?;
                }
            }
            Change::CreateVolume { volume } | Change::UpdateVolume { volume } => {
                let dir = super::translate::spec::volume_dir(&self.state_dir, &volume.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ApplyError::Other(format!("{}: {e}", dir.display())))?;
                let rec = VolumeRecord {
                    name: volume.name.clone(),
                    driver_path: dir.to_string_lossy().into_owned(),
                    reclaim: plan::store::store_reclaim(volume.reclaim),
                    labels: volume.labels.clone(),
                    created_at: now_ms(),
                };
                lock(store).transaction(|tx| tx.upsert_volume(&rec))?;
            }
            Change::RemoveVolume { name } => {
                // Journalled (see [`volume_rm`]); gone already is success.
                match volume_rm::remove(store, &self.state_dir, name, false) {
                    Ok(_) | Err(volume_rm::RmError::NotFound(_)) => {}
                    Err(volume_rm::RmError::Refused(e)) => return Err(ApplyError::Other(e)),
                    Err(volume_rm::RmError::Failed(e)) => return Err(e),
                }
            }
            Change::CreateNetwork { network } => {
                self.net()?.create_network(network)?;
                // The driver recorded its keys; the planner reads the whole effective network.
                let rec = crate::store::NetworkRecord {
                    name: network.name.clone(),
                    bridge: network.bridge.clone(),
                    subnet: network.subnet.to_string(),
                    gateway: Some(network.gateway),
                    config: plan::store::network_config_value(network),
                    created_at: now_ms(),
                };
                lock(store).transaction(|tx| tx.upsert_network(&rec))?;
            }
            Change::RemoveNetwork { name } => {
                self.net()?.remove_network(name)?;
                lock(store).transaction(|tx| tx.delete_network(name))?;
            }
            Change::CreateContainer {
                config,
                hash,
                keep_stopped,
            } => {
                self.create(store, config, hash.as_ref(), *keep_stopped)?;
            }
            Change::StartContainer { name } => self.start(store, name)?,
            Change::RestartContainer { name } => {
                self.restart(store, name)?;
            }
            Change::StopContainer { name } => self.stop(store, name)?,
            Change::RemoveContainer { name, replaced } => self.remove(store, name, *replaced)?,
            Change::RecreateContainer {
                config,
                hash,
                start,
            } => {
                let digest = self.digest_for(store, config)?;
                let (config, new_hash) = match hash {
                    Some(h) => (config.clone(), *h),
                    None => config.with_digest(&digest),
                };
                let running = lock(store).transaction(|tx| tx.container(&config.name))?;
                if hash.is_none()
                    && running
                        .as_ref()
                        .is_some_and(|r| r.config_hash == new_hash.to_hex())
                {
                    return Ok(format!(
                        "{summary} (skipped: unchanged once the image was fetched)"
                    ));
                }
                let old_digest = running.as_ref().map(|r| r.image_digest.clone());
                self.remove(store, &config.name, true)?;
                self.create(store, &config, Some(&new_hash), !*start)?;
                if *start {
                    self.start(store, &config.name)?;
                }
                // The image it ran before, replaced (a rebuilt source, a moved tag) and recorded
                // by no key any more: gone from the graph with its unshared layers.
                if let Some(old) = old_digest.filter(|o| *o != digest) {
                    let recorded = lock(store).transaction(|tx| {
                        Ok::<_, crate::store::Error>(
                            tx.images()?.into_iter().any(|i| i.digest == old),
                        )
                    })?;
                    if !recorded && let Err(e) = self.forget_image(&old) {
                        tracing::warn!(image = %old, error = %e, "removing the replaced image");
                    }
                }
                let sharers = self.recreate_sharers(store, &config.name)?;
                if !sharers.is_empty() {
                    let line = format!(
                        "{summary}; recreated {} too: {} its network namespace",
                        sharers.join(", "),
                        if sharers.len() == 1 {
                            "it shares"
                        } else {
                            "they share"
                        }
                    );
                    let object = format!("container/{}", config.name);
                    lock(store).transaction(|tx| {
                        event(tx, "container.recreate", &object, json!({"reason": line}))
                    })?;
                    return Ok(line);
                }
            }
            Change::UpdateContainer { name, live, hash } => {
                let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
                    return Err(ApplyError::Other(format!("no such container {name}")));
                };
                // Limits first: if the kernel refuses them (memory below what the container
                // uses), the record keeps the old config and the pass retries with backoff.
                match self.exec.update(&rec.id, &LiveUpdate::from(live)) {
                    Ok(()) | Err(crate::driver::exec::Error::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                // DNS aliases: the network driver's records (the container runs on).
                let old_aliases: std::collections::BTreeMap<String, Vec<String>> = rec
                    .config
                    .get("live")
                    .and_then(|l| l.get("aliases"))
                    .and_then(|a| serde_json::from_value(a.clone()).ok())
                    .unwrap_or_default();
                if old_aliases != live.aliases {
                    self.net()?.update_aliases(&rec.id, &live.aliases)?;
                }
                if let Some(obj) = rec.config.as_object_mut() {
                    obj.insert(
                        "live".into(),
                        serde_json::to_value(live).map_err(|e| ApplyError::Other(e.to_string()))?,
                    );
                }
                rec.config_hash = hash.to_hex();
                lock(store).transaction(|tx| tx.upsert_container(&rec))?;
            }
            Change::RefreshLinks { name, .. } => {
                self.net()?.refresh_links(store, &self.state_dir, name)?;
            }
            Change::RepairNetwork { name } => {
                let cause = super::work::Cause::NetworkDrift;
                return self.repair_network(store, name, &cause).map(|a| a.line);
            }
            Change::RepairMonitor { name } => {
                return self.repair_monitor(store, name).map(|a| a.line);
            }
        }
        let kind = format!("{:?}.{}", step.change.kind(), step.change.action()).to_lowercase();
        let object = format!(
            "{}/{}",
            format!("{:?}", step.change.kind()).to_lowercase(),
            step.change.name()
        );
        lock(store).transaction(|tx| event(tx, &kind, &object, json!({"reason": summary})))?;
        Ok(summary)
    }

    fn record_image(
        &self,
        store: &SharedStore,
        key: &str,
        img: &crate::driver::graph::Image,
    ) -> Result<(), ApplyError> {
        let config = self
            .graph
            .blobs()
            .read(&img.id)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let rec = ImageRecord {
            reference: key.to_string(),
            digest: img.id.to_string(),
            config,
            size: img.size(),
            created_at: now_ms(),
        };
        lock(store).transaction(|tx| tx.upsert_image(&rec))?;
        Ok(())
    }

    /// Removes image `digest` from the graph (no other key records it) and every layer and blob
    /// nothing refers to any more. An image a container layer still uses stays (the graph
    /// refuses); it goes with the next removal once that container is gone.
    fn forget_image(&self, digest: &str) -> Result<(), ApplyError> {
        use crate::driver::graph::Error as G;
        match self.graph.remove_image(digest) {
            Ok(_) | Err(G::ImageNotFound(_)) => {}
            Err(G::ImageInUse { users, .. }) => {
                tracing::info!(
                    image = digest,
                    ?users,
                    "image kept: container layers use it"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let gc = self.graph.collect_garbage()?;
        tracing::info!(
            image = digest,
            layers = gc.layers.len(),
            blobs = gc.blobs,
            "image removed from the graph"
        );
        Ok(())
    }

    /// The digest the container's image resolved to (fetched earlier in this plan).
    fn digest_for(
        &self,
        store: &SharedStore,
        config: &EffectiveContainer,
    ) -> Result<String, ApplyError> {
        if let Some(d) = &config.image.digest {
            return Ok(d.clone());
        }
        lock(store)
            .transaction(|tx| tx.image(&config.image.key))?
            .map(|i| i.digest)
            .ok_or_else(|| ApplyError::Other(format!("image {} was not fetched", config.image.key)))
    }

    fn create(
        &self,
        store: &SharedStore,
        config: &EffectiveContainer,
        hash: Option<&plan::ConfigHash>,
        keep_stopped: bool,
    ) -> Result<(), ApplyError> {
        let digest = self.digest_for(store, config)?;
        let (config, hash) = match hash {
            Some(h) => (config.clone(), *h),
            None => config.with_digest(&digest),
        };
        let config = super::translate::spec::read_env_files(config).map_err(ApplyError::Other)?;
        let name = config.name.clone();
        if super::translate::network::uses_driver(&config) {
            self.net()?;
        }
        let id = new_id(&name);
        let prior = lock(store).transaction(|tx| tx.container(&name))?;
        // The row first, as `removing` until the runtime object exists (see the module docs);
        // a recreated container's row keeps its name, so its address and ports carry over.
        let mut rec = ContainerRecord::new(
            &name,
            &id,
            plan::store::container_config_value(&config),
            hash.to_hex(),
            &digest,
            now_ms(),
        );
        rec.state = ContainerState::Removing;
        lock(store).transaction(|tx| tx.upsert_container(&rec))?;
        match self.create_runtime(store, &id, &config, &digest) {
            Ok(netns) => {
                debug_pause("create", &name);
                rec.state = if keep_stopped {
                    ContainerState::StoppedByUser
                } else {
                    ContainerState::Created
                };
                rec.runtime.netns_path = netns.map(|p| p.to_string_lossy().into_owned());
                lock(store).transaction(|tx| tx.upsert_container(&rec))?;
                Ok(())
            }
            Err(e) => {
                let _ = self.exec.delete(&id);
                let _ = self.graph.driver().unmount(&id);
                let _ = self.graph.driver().remove(&id);
                if let Ok(net) = &self.net {
                    let undo = if prior.is_some() {
                        net.detach(&id)
                    } else {
                        net.release(&id)
                    };
                    if let Err(u) = undo {
                        tracing::warn!(container = %name, error = %u, "undoing a failed create");
                    }
                }
                if prior.is_none() {
                    lock(store).transaction(|tx| tx.delete_container(&name))?;
                }
                Err(e)
            }
        }
    }

    /// Root filesystem, network and runtime object of a container whose row is written;
    /// returns the network namespace it joins.
    fn create_runtime(
        &self,
        store: &SharedStore,
        id: &str,
        config: &EffectiveContainer,
        digest: &str,
    ) -> Result<Option<PathBuf>, ApplyError> {
        let name = config.name.clone();
        let wiring = match &self.net {
            Ok(net) => net.wire(store, id, config)?,
            Err(_) => {
                // Without the driver only `none` and `host` work (checked by the caller).
                let network = match config.fixed.network_mode {
                    crate::manifest::NetworkMode::Host => spec::NetworkMode::Host,
                    _ => spec::NetworkMode::None,
                };
                super::translate::network::Wiring {
                    network,
                    hosts: None,
                    resolv_conf: None,
                    env: Vec::new(),
                    netns: None,
                    summary: String::new(),
                }
            }
        };
        if !wiring.summary.is_empty() {
            tracing::info!(container = %name, network = %wiring.summary, "attached");
        }
        let (id, digest) = (id.to_string(), digest.to_string());
        self.graph.create_container(&id, &digest)?;
        let rootfs = self.graph.driver().mount(&id)?;
        let mut s = ContainerSpec::new(&id, &name, rootfs.clone());
        let img = self.graph.find(&digest)?;
        let blob = self.graph.blobs().read(&img.id)?;
        s.image = spec::image_config(&blob)
            .map_err(|e| ApplyError::Other(format!("image config: {e}")))?;
        let mut s = super::translate::spec::container_spec(s, config, &wiring, &self.state_dir);
        s.log = super::translate::spec::log_config(&s, config, &self.container_logs);
        for line in volumes::prepare(&self.state_dir, config, &blob, &rootfs, &mut s)? {
            tracing::info!(container = %name, "{line}");
        }
        self.exec.create(&s)?;
        Ok(wiring.netns)
    }

    /// Recreates the running containers in network mode `container:<target>` after `target`
    /// was recreated: they hold its old namespace, which is gone (Docker leaves them without a
    /// network until restarted by hand). Returns their names.
    fn recreate_sharers(
        &self,
        store: &SharedStore,
        target: &str,
    ) -> Result<Vec<String>, ApplyError> {
        let mode = crate::manifest::NetworkMode::Container(target.to_string());
        let all = lock(store).transaction(|tx| tx.containers())?;
        let mut done = Vec::new();
        for rec in all {
            let Ok(cfg) = serde_json::from_value::<EffectiveContainer>(rec.config.clone()) else {
                continue;
            };
            if cfg.fixed.network_mode != mode
                || !matches!(
                    rec.state,
                    ContainerState::Running | ContainerState::Restarting | ContainerState::Created
                )
            {
                continue;
            }
            let start = rec.state != ContainerState::Created;
            self.remove(store, &rec.name, true)?;
            self.create(store, &cfg, None, false)?;
            if start {
                self.start(store, &rec.name)?;
            }
            done.push(rec.name);
        }
        Ok(done)
    }

    fn net(&self) -> Result<&Net, ApplyError> {
        self.net.as_deref().map_err(|e| {
            ApplyError::Other(format!(
                "bridge networking is unavailable: the network driver did not start: {e}"
            ))
        })
    }

    /// Starts a created or stopped container (attached again first in bridge mode) under a
    /// start intent, and records it running.
    pub(crate) fn start(&self, store: &SharedStore, name: &str) -> Result<(), ApplyError> {
        let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Err(ApplyError::Other(format!("no such container {name}")));
        };
        // A stopped bridge-mode container was detached: attach it again (same address).
        if let Ok(config) = serde_json::from_value::<EffectiveContainer>(rec.config.clone())
            && super::translate::network::uses_driver(&config)
        {
            self.net()?
                .ensure_attached(store, &self.state_dir, &rec.id, &config)?;
        }
        let started = self.start_journalled(store, name, &rec.id, false)?;
        rec.state = ContainerState::Running;
        rec.started_at = Some(now_ms());
        rec.runtime.container_pid = Some(started.pid);
        rec.runtime.monitor_pid = monitor_of(&self.exec, &rec.id);
        rec.exit_code = None;
        lock(store).transaction(|tx| {
            tx.upsert_container(&rec)?;
            tx.finish_intent(started.intent)
        })?;
        Ok(())
    }

    /// Starts runtime container `id` of `name` under a `start-container` intent (payload
    /// `{"id", "restart"}`; left open for
    /// the caller's record): adopts the process if it runs already (started by an agent killed
    /// before it could record that).
    fn start_journalled(
        &self,
        store: &SharedStore,
        name: &str,
        id: &str,
        restart: bool,
    ) -> Result<Started, ApplyError> {
        // `restart`: the restart policy's start, counted by recovery when a crash cuts it.
        let intent = lock(store).transaction(|tx| {
            tx.begin_intent(
                &new_intent(INTENT_START, name, json!({"id": id, "restart": restart})),
                now_ms(),
            )
        })?;
        let pid = self.start_or_adopt(name, id)?;
        Ok(Started { pid, intent })
    }

    /// Starts runtime container `id`, or adopts its process when it runs already (started by an
    /// agent killed before it could record that). The caller holds a start intent.
    fn start_or_adopt(&self, name: &str, id: &str) -> Result<i32, ApplyError> {
        let running = match self.exec.state(id) {
            Ok(crate::driver::exec::ContainerInfo {
                status: crate::driver::exec::ContainerStatus::Running { pid, .. },
                ..
            }) => Some(pid),
            _ => None,
        };
        let pid = match running {
            Some(pid) => {
                tracing::info!(container = %name, pid, "already running (started before a crash); adopted");
                pid
            }
            None => self.exec.start(id)?,
        };
        debug_pause("start", name);
        Ok(pid)
    }

    /// The beginning of a stop of a running container: logged, an event `container.stopping`
    /// (with `why` and the grace period), and `stopping` in `agent ps` until the guard is
    /// dropped. `None` when it does not run (nothing to wait for).
    pub(super) fn begin_stop(
        &self,
        store: &SharedStore,
        name: &str,
        id: &str,
        grace: Option<std::time::Duration>,
        why: &str,
    ) -> Option<super::report::StoppingGuard> {
        if !self.exec.state(id).is_ok_and(|i| i.status.is_running()) {
            return None;
        }
        let grace = grace.unwrap_or(DEFAULT_GRACE);
        tracing::info!(container = %name, grace = %crate::manifest::units::Duration(grace), why, "stopping: stop signal sent, SIGKILL when the grace period is over");
        let object = format!("container/{name}");
        let _ = lock(store).transaction(|tx| {
            event(
                tx,
                "container.stopping",
                &object,
                json!({"reason": why, "graceMs": u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)}),
            )
        });
        Some(self.board.stopping(name, grace))
    }

    fn stop(&self, store: &SharedStore, name: &str) -> Result<(), ApplyError> {
        let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(());
        };
        let grace = super::supervise::grace_of(&rec.config);
        let _stopping = self.begin_stop(store, name, &rec.id, grace, "stop");
        let info = self
            .exec
            .stop(&rec.id, super::supervise::grace_of(&rec.config))?;
        if let crate::driver::exec::ContainerStatus::Exited {
            exit_code, signal, ..
        } = info.status
        {
            rec.exit_code = Some(exit_code);
            rec.signal = signal;
        }
        rec.state = ContainerState::Exited;
        rec.finished_at = Some(now_ms());
        rec.health = None;
        lock(store).transaction(|tx| tx.upsert_container(&rec))?;
        // Its namespace, veths and port rules go; the address stays reserved for its start.
        if let Ok(net) = &self.net {
            net.detach(&rec.id)?;
        }
        Ok(())
    }

    fn remove(&self, store: &SharedStore, name: &str, replaced: bool) -> Result<(), ApplyError> {
        let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(());
        };
        rec.state = ContainerState::Removing;
        let intent = lock(store).transaction(|tx| {
            tx.upsert_container(&rec)?;
            tx.begin_intent(
                &new_intent(
                    INTENT_REMOVE,
                    name,
                    json!({"id": rec.id, "replaced": replaced}),
                ),
                now_ms(),
            )
        })?;
        let stopping = self.begin_stop(
            store,
            name,
            &rec.id,
            super::supervise::grace_of(&rec.config),
            if replaced { "recreate" } else { "remove" },
        );
        self.discard(&rec.id, super::supervise::grace_of(&rec.config), replaced)?;
        drop(stopping);
        debug_pause("remove", name);
        // After the pause: a crash here leaves the intent, and recovery removes them.
        if !replaced {
            volumes::remove_anonymous(&self.state_dir, name)?;
        }
        lock(store).transaction(|tx| {
            if !replaced {
                tx.delete_container(name)?;
            }
            tx.finish_intent(intent)
        })?;
        Ok(())
    }

    /// Stops (grace, then SIGKILL) and deletes runtime container `id`, its root filesystem
    /// layer and its network (kept reserved for the replacement when `replaced`: the new
    /// container takes over the address and ports of the same row). Whatever is already gone is
    /// skipped.
    pub fn discard(
        &self,
        id: &str,
        grace: Option<std::time::Duration>,
        replaced: bool,
    ) -> Result<(), ApplyError> {
        let _ = self.exec.stop(id, grace);
        self.exec.delete(id)?;
        let _ = self.graph.driver().unmount(id);
        self.graph.driver().remove(id)?;
        if let Ok(net) = &self.net {
            if replaced {
                net.detach(id)?;
            } else {
                net.release(id)?;
            }
        }
        Ok(())
    }
}
