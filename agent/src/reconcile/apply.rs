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
//!   `reclaim: delete`;
//! - containers: create (container layer from the graph driver, OCI spec from the effective
//!   config, exec driver create), start, stop, remove, recreate, in-place update of the live
//!   fields, in network modes `none` and `host`.
//! - Not yet: bridge networks and attachments (`networkMode: bridge`, the default, and
//!   `container:`), which need the network driver wired in; such changes fail with an error that
//!   says so, and everything else goes on.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::pass::{event, now_ms};
use crate::driver::exec::spec::{self, ContainerSpec, Mount, MountSource, Rlimit};
use crate::driver::exec::{AnyExecDriver, ExecDriver};
use crate::driver::graph::{Graph, GraphDriver};
use crate::manifest::NetworkMode;
use crate::plan::{self, Change, EffectiveContainer, ImageSource, Step};
use crate::store::{ContainerRecord, ContainerState, ImageRecord, Store, VolumeRecord};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Graph(#[from] crate::driver::graph::Error),
    #[error(transparent)]
    Exec(#[from] crate::driver::exec::Error),
    #[error("{0}")]
    Other(String),
}

/// The drivers a pass applies through.
pub struct Applier {
    pub state_dir: PathBuf,
    pub graph: Graph,
    pub exec: AnyExecDriver,
    pub insecure_registries: Vec<String>,
}

fn volume_dir(state: &Path, name: &str) -> PathBuf {
    state.join("volumes").join(name).join("_data")
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
    pub fn apply(&mut self, store: &mut Store, step: &Step) -> Result<String, ApplyError> {
        let summary = step.summary();
        match &step.change {
            Change::PullImage {
                image,
                reference,
                insecure,
            } => {
                let mut opts = crate::driver::graph::pull::PullOptions::new(reference.clone());
                opts.insecure_registries = self.insecure_registries.clone();
                if *insecure && let Some(host) = reference.split('/').next() {
                    opts.insecure_registries.push(host.to_string());
                }
                let report = crate::driver::graph::pull::pull(&self.graph, &opts)?;
                self.record_image(store, image, &report.image)?;
            }
            Change::ImportImage { image, source } => {
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
                let name = tag.unwrap_or_else(|| image.clone());
                let loaded = self.graph.load(&path, Some(&name))?;
                let img = loaded.first().ok_or_else(|| {
                    ApplyError::Other(format!("{}: no image in it", path.display()))
                })?;
                self.record_image(store, image, img)?;
            }
            Change::RemoveImage { image, .. } => {
                store.transaction(|tx| tx.delete_image(image))?;
            }
            Change::CreateVolume { volume } | Change::UpdateVolume { volume } => {
                let dir = volume_dir(&self.state_dir, &volume.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ApplyError::Other(format!("{}: {e}", dir.display())))?;
                let rec = VolumeRecord {
                    name: volume.name.clone(),
                    driver_path: dir.to_string_lossy().into_owned(),
                    reclaim: plan::store::store_reclaim(volume.reclaim),
                    labels: volume.labels.clone(),
                    created_at: now_ms(),
                };
                store.transaction(|tx| tx.upsert_volume(&rec))?;
            }
            Change::RemoveVolume { name } => {
                let dir = self.state_dir.join("volumes").join(name);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ApplyError::Other(format!("{}: {e}", dir.display()))),
                }
                store.transaction(|tx| tx.delete_volume(name))?;
            }
            Change::CreateNetwork { network } => {
                return Err(ApplyError::Other(format!(
                    "network {}: bridge networks are not wired into the agent yet",
                    network.name
                )));
            }
            Change::RemoveNetwork { name } => {
                store.transaction(|tx| tx.delete_network(name))?;
            }
            Change::CreateContainer {
                config,
                hash,
                keep_stopped,
            } => {
                self.create(store, config, hash.as_ref(), *keep_stopped)?;
            }
            Change::StartContainer { name } => self.start(store, name)?,
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
                let running = store.transaction(|tx| tx.container(&config.name))?;
                if hash.is_none() && running.is_some_and(|r| r.config_hash == new_hash.to_hex()) {
                    return Ok(format!(
                        "{summary} (skipped: unchanged once the image was fetched)"
                    ));
                }
                self.remove(store, &config.name, true)?;
                self.create(store, &config, Some(&new_hash), !*start)?;
                if *start {
                    self.start(store, &config.name)?;
                }
            }
            Change::UpdateContainer { name, live, hash } => {
                let Some(mut rec) = store.transaction(|tx| tx.container(name))? else {
                    return Err(ApplyError::Other(format!("no such container {name}")));
                };
                if let Some(obj) = rec.config.as_object_mut() {
                    obj.insert(
                        "live".into(),
                        serde_json::to_value(live).map_err(|e| ApplyError::Other(e.to_string()))?,
                    );
                }
                rec.config_hash = hash.to_hex();
                store.transaction(|tx| tx.upsert_container(&rec))?;
            }
            Change::RefreshLinks { .. } => {
                return Err(ApplyError::Other(
                    "links need bridge networking, which is not wired into the agent yet".into(),
                ));
            }
        }
        let kind = format!("{:?}.{}", step.change.kind(), step.change.action()).to_lowercase();
        let object = format!(
            "{}/{}",
            format!("{:?}", step.change.kind()).to_lowercase(),
            step.change.name()
        );
        store.transaction(|tx| event(tx, &kind, &object, json!({"reason": summary})))?;
        Ok(summary)
    }

    fn record_image(
        &self,
        store: &mut Store,
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
        store.transaction(|tx| tx.upsert_image(&rec))?;
        Ok(())
    }

    /// The digest the container's image resolved to (fetched earlier in this plan).
    fn digest_for(
        &self,
        store: &mut Store,
        config: &EffectiveContainer,
    ) -> Result<String, ApplyError> {
        if let Some(d) = &config.image.digest {
            return Ok(d.clone());
        }
        store
            .transaction(|tx| tx.image(&config.image.key))?
            .map(|i| i.digest)
            .ok_or_else(|| ApplyError::Other(format!("image {} was not fetched", config.image.key)))
    }

    fn create(
        &mut self,
        store: &mut Store,
        config: &EffectiveContainer,
        hash: Option<&plan::ConfigHash>,
        keep_stopped: bool,
    ) -> Result<(), ApplyError> {
        let digest = self.digest_for(store, config)?;
        let (config, hash) = match hash {
            Some(h) => (config.clone(), *h),
            None => config.with_digest(&digest),
        };
        let name = config.name.clone();
        let network = match &config.fixed.network_mode {
            NetworkMode::None => spec::NetworkMode::None,
            NetworkMode::Host => spec::NetworkMode::Host,
            other => {
                return Err(ApplyError::Other(format!(
                    "container {name}: network mode {other} needs bridge networking, which is not \
                     wired into the agent yet; use networkMode: none or host"
                )));
            }
        };
        let id = new_id(&name);
        self.graph.create_container(&id, &digest)?;
        let rootfs = self.graph.driver().mount(&id)?;
        let mut s = ContainerSpec::new(&id, &name, rootfs);
        let img = self.graph.find(&digest)?;
        let blob = self.graph.blobs().read(&img.id)?;
        s.image = spec::image_config(&blob)
            .map_err(|e| ApplyError::Other(format!("image config: {e}")))?;
        let f = &config.fixed;
        s.entrypoint = f.entrypoint.clone();
        s.command = f.command.clone();
        s.env = f.env.clone();
        s.workdir = f
            .working_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        s.user = f.user.clone();
        s.hostname = Some(f.hostname.clone()).filter(|h| !h.is_empty());
        s.read_only = f.read_only_root_filesystem;
        s.cap_add = f.cap_add.clone();
        s.cap_drop = f.cap_drop.clone();
        s.sysctls = f.sysctls.clone();
        s.network = network;
        for m in &f.mounts {
            let source = match &m.source {
                plan::effective::MountSource::Volume(v) => MountSource::Volume {
                    path: volume_dir(&self.state_dir, v),
                },
                plan::effective::MountSource::Bind(p) => MountSource::Bind { path: p.clone() },
                plan::effective::MountSource::Tmpfs(size) => MountSource::Tmpfs {
                    size: *size,
                    mode: None,
                },
            };
            s.mounts.push(Mount {
                target: m.target.to_string_lossy().into_owned(),
                source,
                read_only: m.read_only,
            });
        }
        for (n, u) in &f.ulimits {
            s.rlimits.push(Rlimit {
                name: n.clone(),
                soft: u.soft.unwrap_or(u64::MAX),
                hard: u.hard.unwrap_or(u64::MAX),
            });
        }
        let live = &config.live;
        let r = &live.resources;
        s.resources.memory = r.memory.map(|b| b.0 as i64);
        s.resources.memory_reservation = r.memory_reservation.map(|b| b.0 as i64);
        s.resources.memory_swap = r.memory_swap.map(|m| match m {
            crate::manifest::MemorySwap::Limit(b) => b.0 as i64,
            crate::manifest::MemorySwap::Unlimited => -1,
        });
        s.resources.cpu_shares = r.cpu_shares;
        s.resources.cpuset_cpus = r.cpuset.clone();
        s.resources.pids = r.pids.map(|p| p as i64);
        if let Some(n) = r.nano_cpus {
            s.resources.cpu_period = Some(100_000);
            s.resources.cpu_quota = Some((n / 10_000) as i64);
        }
        s.stop_signal = live.stop_signal.as_ref().map(|x| x.to_string());
        s.stop_grace = live.stop_grace_period.0;
        self.exec.create(&s)?;
        let mut rec = ContainerRecord::new(
            &name,
            &id,
            plan::store::container_config_value(&config),
            hash.to_hex(),
            &digest,
            now_ms(),
        );
        if keep_stopped {
            rec.state = ContainerState::StoppedByUser;
        }
        store.transaction(|tx| tx.upsert_container(&rec))?;
        Ok(())
    }

    fn start(&mut self, store: &mut Store, name: &str) -> Result<(), ApplyError> {
        let Some(mut rec) = store.transaction(|tx| tx.container(name))? else {
            return Err(ApplyError::Other(format!("no such container {name}")));
        };
        let pid = self.exec.start(&rec.id)?;
        rec.state = ContainerState::Running;
        rec.started_at = Some(now_ms());
        rec.runtime.container_pid = Some(pid);
        rec.exit_code = None;
        store.transaction(|tx| tx.upsert_container(&rec))?;
        Ok(())
    }

    fn stop(&mut self, store: &mut Store, name: &str) -> Result<(), ApplyError> {
        let Some(mut rec) = store.transaction(|tx| tx.container(name))? else {
            return Ok(());
        };
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
        store.transaction(|tx| tx.upsert_container(&rec))?;
        Ok(())
    }

    fn remove(&mut self, store: &mut Store, name: &str, replaced: bool) -> Result<(), ApplyError> {
        let Some(mut rec) = store.transaction(|tx| tx.container(name))? else {
            return Ok(());
        };
        rec.state = ContainerState::Removing;
        store.transaction(|tx| tx.upsert_container(&rec))?;
        let _ = self
            .exec
            .stop(&rec.id, super::supervise::grace_of(&rec.config));
        self.exec.delete(&rec.id)?;
        let _ = self.graph.driver().unmount(&rec.id);
        self.graph.driver().remove(&rec.id)?;
        if !replaced {
            store.transaction(|tx| tx.delete_container(name))?;
        }
        Ok(())
    }
}
