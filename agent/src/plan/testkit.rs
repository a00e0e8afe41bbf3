//! Test support: manifests from YAML snippets and a simulated daemon that applies plans to an
//! [`Actual`] the way the real one records its results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;
use crate::manifest::{Loaded, Manifest};
use crate::store::ContainerState;

/// Loads `(file, yaml)` pairs; panics with the diagnostics if any is invalid.
pub fn manifests(files: &[(&str, &str)]) -> Vec<(PathBuf, Vec<Manifest>)> {
    let loaded = Loaded::from_sources(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec())),
    );
    let problems: Vec<String> = loaded.diagnostics().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "invalid test manifests: {problems:#?}");
    loaded
        .files
        .iter()
        .map(|f| {
            let objs = f
                .outcome
                .as_ref()
                .map(|o| o.iter().map(|o| o.manifest.clone()).collect())
                .unwrap_or_default();
            (f.path.clone(), objs)
        })
        .collect()
}

/// Every file loaded.
pub fn loaded_inputs(files: &[(&str, &str)]) -> Vec<FileInput> {
    manifests(files)
        .into_iter()
        .map(|(path, objs)| FileInput {
            path,
            state: FileState::Loaded(objs),
        })
        .collect()
}

/// A container document.
pub fn container(name: &str, spec: &str) -> String {
    let mut s = format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: 127.0.0.1:5000/busybox\n"
    );
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("  ");
        s.push_str(line.trim_start_matches(' '));
        s.push('\n');
    }
    s
}

/// A volume document.
pub fn volume(name: &str, reclaim: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: {name}\nspec:\n  reclaim: {reclaim}\n"
    )
}

/// A network document.
pub fn network(name: &str, subnet: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}\n"
    )
}

/// The digest the simulated fetch gives an image key.
pub fn digest_of(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// Builds the desired state against `actual`'s resolutions.
pub fn desired(inputs: &[FileInput], actual: &Actual) -> Desired {
    Desired::build(inputs.to_vec(), &actual.resolutions())
}

/// Applies `plan` as the daemon does, then records file ownership as the daemon does after a
/// pass (loaded files own their objects, deleted files are forgotten, failed files keep theirs).
pub fn apply(actual: &mut Actual, plan: &Plan, inputs: &[FileInput]) {
    for step in &plan.steps {
        apply_change(actual, &step.change);
    }
    for input in inputs {
        let file: Arc<Path> = Arc::from(input.path.as_path());
        match &input.state {
            FileState::Loaded(objs) => {
                actual.owners.retain(|_, f| **f != *file);
                for m in objs {
                    actual.owners.insert(store::owner_key(m), file.clone());
                }
            }
            FileState::Deleted => actual.owners.retain(|_, f| **f != *file),
            FileState::Failed { .. } => {}
        }
    }
}

fn resolved(actual: &Actual, config: &EffectiveContainer) -> Result<EffectiveContainer, String> {
    match actual.images.get(&config.image.key) {
        Some(d) => Ok(config.with_digest(d).0),
        None => Err(format!(
            "container {} created before its image {} was fetched",
            config.name, config.image.key
        )),
    }
}

/// Applies one change; panics on a change that the real daemon could not apply.
pub fn apply_change(actual: &mut Actual, change: &Change) {
    if let Err(e) = try_apply_change(actual, change) {
        panic!("{e}");
    }
}

/// Applies one change; an error for a change that the real daemon could not apply (so the
/// ordering rules are checked too).
pub fn try_apply_change(actual: &mut Actual, change: &Change) -> Result<(), String> {
    macro_rules! ensure {
        ($cond:expr, $($arg:tt)+) => {
            if !$cond {
                return Err(format!($($arg)+));
            }
        };
    }
    match change {
        Change::PullImage { image, .. } | Change::ImportImage { image, .. } => {
            actual.images.insert(image.clone(), digest_of(image));
        }
        Change::CreateVolume { volume } | Change::UpdateVolume { volume } => {
            actual.volumes.insert(volume.name.clone(), volume.clone());
        }
        Change::RemoveVolume { name } => {
            ensure!(
                actual.volumes.remove(name).is_some(),
                "remove of absent volume {name}"
            );
        }
        Change::CreateNetwork { network } => {
            ensure!(
                !actual.networks.contains_key(&network.name),
                "network {} created twice",
                network.name
            );
            actual.networks.insert(
                network.name.clone(),
                ActualNetwork {
                    config: Some(network.clone()),
                },
            );
        }
        Change::RemoveNetwork { name } => {
            let users: Vec<&String> = actual
                .containers
                .iter()
                .filter(|(_, c)| {
                    c.config
                        .as_ref()
                        .is_some_and(|c| c.fixed.networks.contains(name))
                })
                .map(|(n, _)| n)
                .collect();
            ensure!(
                users.is_empty(),
                "network {name} removed while {users:?} use it"
            );
            ensure!(
                actual.networks.remove(name).is_some(),
                "remove of absent network {name}"
            );
        }
        Change::CreateContainer {
            config,
            keep_stopped,
            ..
        } => {
            ensure!(
                !actual.containers.contains_key(&config.name),
                "container {} created twice",
                config.name
            );
            let config = resolved(actual, config)?;
            let state = if *keep_stopped {
                ContainerState::StoppedByUser
            } else {
                ContainerState::Created
            };
            actual.containers.insert(
                config.name.clone(),
                ActualContainer::new(Some(config), state),
            );
        }
        Change::StartContainer { name } | Change::RestartContainer { name } => {
            let c = actual
                .containers
                .get_mut(name)
                .ok_or(format!("start of absent container {name}"))?;
            c.state = ContainerState::Running;
        }
        Change::StopContainer { name } => {
            let c = actual
                .containers
                .get_mut(name)
                .ok_or(format!("stop of absent container {name}"))?;
            c.state = ContainerState::Exited;
        }
        Change::RemoveContainer { name, replaced } => {
            let users: Vec<&String> = actual
                .containers
                .iter()
                .filter(|(n, c)| {
                    *n != name
                        && c.config
                            .as_ref()
                            .is_some_and(|c| c.dependencies().contains(&name.as_str()))
                })
                .map(|(n, _)| n)
                .collect();
            ensure!(
                *replaced || users.is_empty(),
                "container {name} removed while {users:?} use it"
            );
            ensure!(
                actual.containers.remove(name).is_some(),
                "remove of absent container {name}"
            );
        }
        Change::RecreateContainer {
            config,
            hash,
            start,
            ..
        } => {
            let new = resolved(actual, config)?;
            let old = actual
                .containers
                .get(&config.name)
                .ok_or(format!("recreate of absent container {}", config.name))?;
            if hash.is_none() && old.hash.is_some() && old.hash == new.hash() {
                return Ok(()); // pending recreate whose fetched digest changed nothing
            }
            let state = if *start {
                ContainerState::Running
            } else {
                ContainerState::StoppedByUser
            };
            actual
                .containers
                .insert(config.name.clone(), ActualContainer::new(Some(new), state));
        }
        Change::UpdateContainer { name, live, hash } => {
            let c = actual
                .containers
                .get_mut(name)
                .ok_or(format!("update of absent container {name}"))?;
            let mut cfg = c
                .config
                .clone()
                .ok_or(format!("update of unreadable config {name}"))?;
            cfg.live = live.clone();
            ensure!(cfg.hash().as_ref() == Some(hash), "update hash of {name}");
            *c = ActualContainer::new(Some(cfg), c.state);
        }
        Change::RefreshLinks { name, .. }
        | Change::RepairNetwork { name }
        | Change::RepairMonitor { name } => {
            ensure!(
                actual.containers.contains_key(name),
                "refresh of absent {name}"
            );
        }
        Change::RemoveImage { image, .. } => {
            ensure!(
                actual.images.remove(image).is_some(),
                "remove of absent image {image}"
            );
        }
    }
    Ok(())
}
