//! Finishing or undoing half-applied changes.
//!
//! [`super::apply`] journals each container step as an intent in the store (committed before
//! the runtime is touched, cleared with the result). A pass starts by settling every intent left
//! behind, by a step that failed half-way or by an agent that died (kill -9, power loss) in the
//! middle of one:
//!
//! | intent             | found                                  | done                           |
//! |--------------------|----------------------------------------|--------------------------------|
//! | `start-container`  | the process runs                       | finished: recorded running     |
//! |                    | it does not                            | nothing: the row says created or exited and the plan or the restart policy decides |
//! |                    | it does not, the intent is a network or monitor repair's and the row says running | started again (attached first): the repair was cut between its stop and its start |
//! | `remove-container` | anything                               | finished: runtime container, layer and network removed, the row deleted (kept in `removing` when it is being replaced) |
//!
//! A create needs no intent: its row is written first, in state `removing`, so a create cut short
//! is recreated by the planner (which removes what the first attempt made).
//! A recreate is a remove (the row stays `removing`) followed by a create: interrupted anywhere,
//! the planner sees `removing` and recreates. Intents of other kinds (other modules')
//! are left alone.
//!
//! At start-up, [`remount`] mounts the root filesystem of every recorded container again (a
//! host reboot unmounted them; a container restarted by its policy needs it), and after the
//! intents, [`sweep_orphans`] looks for runtime containers and container layers that no
//! container row names.
//!
//! # Containers the store does not account for
//!
//! A container the agent made always has a row before its runtime object exists (see above), so
//! one without a row means the store lost it: `state.db` deleted, emptied, replaced by an older
//! backup. Such a container may be running and its writable layer may hold the only copy of
//! files written inside it, so the agent never deletes it on its own:
//!
//! - [`refuse_lost_store`], before the API or any pass starts: when the store records no container
//!   at all but container bundles or layers are on disk, the agent refuses to start, naming
//!   `state.db`, what was found and the ways out (restore the store from a backup, or start once
//!   with `agent run --remove-orphans`). Refusing is safer than adopting: an adopted container
//!   carries no manifest or config hash, so the planner would create a second one beside it (same
//!   ports, same volumes), and a guess at which manifest it belonged to could be wrong.
//! - [`sweep_orphans`], when the store does record containers: the unknown ones are left as they
//!   are, reported in the log and the event log (`recovery.orphan-kept`).
//! - With `--remove-orphans` (an explicit, one-start choice of the operator), both remove them:
//!   stop (grace, SIGKILL), runtime container, layer and network (`recovery.orphan-removed`).

use std::collections::HashSet;
use std::path::Path;

use serde_json::json;

use super::apply::{Applier, INTENT_REMOVE, INTENT_START};
use super::pass::event;
use super::translate::network::{SharedStore, lock};
use crate::driver::exec::ExecDriver;
use crate::driver::graph::GraphDriver;
use crate::store::{ContainerState, Intent, Store};

/// What was done, one line each, and what failed.
#[derive(Debug, Default)]
pub struct Recovered {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

fn container_name(intent: &Intent) -> Option<&str> {
    intent.object.strip_prefix("container/")
}

/// Settles every pending container intent (see the module docs).
pub fn intents(applier: &Applier, store: &SharedStore) -> Recovered {
    let mut out = Recovered::default();
    let pending = match lock(store).transaction(|tx| tx.pending_intents()) {
        Ok(p) => p,
        Err(e) => {
            out.failed.push(format!("reading pending intents: {e}"));
            return out;
        }
    };
    for intent in pending {
        let (Some(name), Some(id)) = (
            container_name(&intent),
            intent.payload.get("id").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        if ![INTENT_START, INTENT_REMOVE].contains(&intent.kind.as_str()) {
            continue;
        }
        match settle(applier, store, &intent, name, id) {
            Ok(Some(line)) => {
                tracing::info!(intent = %intent.kind, container = name, id, "{line}");
                out.done.push(line);
            }
            Ok(None) => {}
            Err(e) => {
                let line = format!(
                    "interrupted {} of {name} ({id}) not settled: {e}",
                    intent.kind
                );
                tracing::warn!("{line}");
                out.failed.push(line);
            }
        }
    }
    out
}

/// Whether the restart that `intent` journalled started its process (which has exited since):
/// the runtime's start time is not older than the intent.
fn restart_ran(intent: &Intent, info: &crate::driver::exec::ContainerInfo) -> bool {
    let is_restart = intent
        .payload
        .get("restart")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let started = info
        .started_at
        .as_deref()
        .and_then(crate::driver::exec::time::parse)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok());
    is_restart && !info.status.is_running() && started.is_some_and(|s| s >= intent.started_at)
}

/// Whether a start intent journals a network or monitor repair's restart (see
/// [`Applier::repair_network`](super::apply::Applier) and `repair_monitor`).
fn is_repair(intent: &Intent) -> bool {
    intent
        .payload
        .get("repair")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn running_pid(info: &crate::driver::exec::ContainerInfo) -> Option<i32> {
    match info.status {
        crate::driver::exec::ContainerStatus::Running { pid, .. } => Some(pid),
        _ => None,
    }
}

fn settle(
    applier: &Applier,
    store: &SharedStore,
    intent: &Intent,
    name: &str,
    id: &str,
) -> Result<Option<String>, super::apply::ApplyError> {
    let row = lock(store).transaction(|tx| tx.container(name))?;
    let row = row.filter(|r| r.id == id);
    let object = format!("container/{name}");
    let (kind, line, row_update) = match intent.kind.as_str() {
        INTENT_START => match (row, applier.exec.state(id)) {
            (Some(mut r), Ok(info))
                if info.status.is_running()
                    && (r.state != ContainerState::Running
                        || running_pid(&info) != r.runtime.container_pid) =>
            {
                r.state = ContainerState::Running;
                r.started_at = Some(super::pass::now_ms());
                if let crate::driver::exec::ContainerStatus::Running { pid, .. } = info.status {
                    r.runtime.container_pid = Some(pid);
                }
                r.runtime.monitor_pid = info.running_monitor();
                r.exit_code = None;
                (
                    Some("recovery.finish"),
                    Some(format!(
                        "interrupted start of {name} finished: it runs, recorded running"
                    )),
                    Some(r),
                )
            }
            // A restart by policy that ran and exited again before it was recorded: count it
            // and record it running, so that the exit check records the exit and the policy
            // decides with the right count (on-failure's maxRetries holds across crashes).
            (Some(mut r), Ok(info))
                if restart_ran(intent, &info) && r.state == ContainerState::Restarting =>
            {
                r.state = ContainerState::Running;
                r.restart_count = r.restart_count.saturating_add(1);
                r.started_at = Some(intent.started_at);
                r.exit_code = None;
                (
                    Some("recovery.finish"),
                    Some(format!(
                        "interrupted restart of {name} had started (restart {}); its exit is recorded next",
                        r.restart_count
                    )),
                    Some(r),
                )
            }
            // A network repair cut between the stop and the start: start it again (attached
            // first), as the repair would have.
            (Some(r), Ok(info))
                if is_repair(intent)
                    && !info.status.is_running()
                    && r.state == ContainerState::Running =>
            {
                applier.start(store, name)?;
                let what = if intent.payload.get("monitorLost").is_some() {
                    "repair of the lost monitor"
                } else {
                    "network repair"
                };
                // The stop's exit, recorded by the driver before the crash.
                let exit = match &info.status {
                    crate::driver::exec::ContainerStatus::Exited { exit_code, .. } => format!(
                        " (its stop ended it with exit code {exit_code}{})",
                        info.exit_note
                            .as_deref()
                            .map(|n| format!(": {n}"))
                            .unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                (
                    Some("recovery.finish"),
                    Some(format!(
                        "interrupted {what} of {name} finished: attached and started again{exit}"
                    )),
                    None,
                )
            }
            _ => (None, None, None),
        },
        INTENT_REMOVE => {
            let replaced = intent
                .payload
                .get("replaced")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let grace = row
                .as_ref()
                .and_then(|r| super::supervise::grace_of(&r.config));
            applier.discard(id, grace, replaced)?;
            if !replaced {
                super::apply::volumes::remove_anonymous(&applier.state_dir, name)?;
            }
            if !replaced && row.is_some() {
                lock(store).transaction(|tx| tx.delete_container(name).map(|_| ()))?;
            }
            (
                Some("recovery.finish"),
                Some(format!(
                    "interrupted removal of {name} finished: runtime container {id} removed"
                )),
                None,
            )
        }
        _ => return Ok(None),
    };
    lock(store).transaction(|tx| {
        if let Some(r) = &row_update {
            tx.upsert_container(r)?;
        }
        if let (Some(k), Some(l)) = (kind, &line) {
            event(tx, k, &object, json!({"reason": l, "intent": intent.kind}))?;
        }
        tx.finish_intent(intent.id).map(|_| ())
    })?;
    Ok(line)
}

/// Runtime containers (with whether they run) and container layers on disk that no id in
/// `known` names, sorted by id.
fn unaccounted(
    running: impl IntoIterator<Item = (String, bool)>,
    layers: impl IntoIterator<Item = String>,
    known: &HashSet<String>,
) -> Vec<(String, bool)> {
    let mut out: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
    for (id, r) in running {
        *out.entry(id).or_default() |= r;
    }
    for id in layers {
        out.entry(id).or_default();
    }
    out.into_iter()
        .filter(|(id, _)| !known.contains(id))
        .collect()
}

/// Start-up, before the API and the first pass: refuses an empty store while container bundles
/// or layers are on disk, unless `remove_orphans` (see the module docs). Reads the drivers'
/// directories under `state_dir` directly; nothing is changed.
pub fn refuse_lost_store(
    state_dir: &Path,
    store: &mut Store,
    remove_orphans: bool,
) -> Result<(), String> {
    let db = store.path().display().to_string();
    let rows = store
        .transaction(|tx| tx.containers())
        .map_err(|e| format!("{db}: reading containers: {e}"))?;
    if !rows.is_empty() || remove_orphans {
        return Ok(());
    }
    let exec_root = crate::driver::exec::paths::exec_root(state_dir);
    let exec =
        crate::driver::exec::MonitorDriver::new(crate::driver::exec::ExecConfig::new(state_dir));
    let runtime = exec.list().map_err(|e| {
        format!(
            "listing container bundles under {}: {e}",
            exec_root.display()
        )
    })?;
    let layer_root = state_dir.join("graph").join("containers");
    let layers = crate::driver::graph::rootfs::list(&layer_root).map_err(|e| {
        format!(
            "listing container layers under {}: {e}",
            layer_root.display()
        )
    })?;
    if runtime.is_empty() && layers.is_empty() {
        return Ok(());
    }
    let running = runtime.iter().filter(|c| c.status.is_running()).count();
    let mut names: Vec<String> = runtime
        .iter()
        .map(|c| format!("{} ({})", c.name, c.id))
        .collect();
    names.truncate(10);
    if runtime.len() > names.len() {
        names.push(format!("and {} more", runtime.len() - names.len()));
    }
    Err(format!(
        "{db} records no containers, but {} container bundle(s) are under {} ({running} running{}) \
         and {} container layer(s) under {}: the store that accounted for them is missing, empty \
         or was replaced. Refusing to start rather than delete them. Either restore {db} from a \
         backup (the agent must not be running), or start once with `agent run --remove-orphans` \
         to stop and remove these containers with their writable layers (files written inside \
         them are lost); the manifests then create them anew",
        runtime.len(),
        exec_root.display(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        },
        layers.len(),
        layer_root.display(),
    ))
}

/// Runtime containers and container layers that no container row names (start-up only: no step
/// is in flight then): left alone and reported, or removed when `remove` (`agent run
/// --remove-orphans`). See the module docs.
pub fn sweep_orphans(applier: &Applier, store: &SharedStore, remove: bool) -> Recovered {
    let mut out = Recovered::default();
    let known: HashSet<String> = match lock(store).transaction(|tx| tx.containers()) {
        Ok(c) => c.into_iter().map(|c| c.id).collect(),
        Err(e) => {
            out.failed.push(format!("reading containers: {e}"));
            return out;
        }
    };
    let mut runtime = Vec::new();
    match applier.exec.list() {
        Ok(list) => runtime.extend(list.into_iter().map(|c| (c.id, c.status.is_running()))),
        Err(e) => out.failed.push(format!("listing runtime containers: {e}")),
    }
    let mut layers = Vec::new();
    match applier.graph.containers() {
        Ok(list) => layers.extend(list.into_iter().map(|c| c.id)),
        Err(e) => out.failed.push(format!("listing container layers: {e}")),
    }
    for (id, running) in unaccounted(runtime, layers, &known) {
        let what = if running { "running" } else { "not running" };
        if !remove {
            let line = format!(
                "runtime container {id} ({what}) is not in the store; left alone (the agent never \
                 removes what the store does not account for; `agent run --remove-orphans` \
                 removes it)"
            );
            tracing::warn!("{line}");
            let _ = lock(store).transaction(|tx| {
                event(
                    tx,
                    "recovery.orphan-kept",
                    &format!("runtime/{id}"),
                    json!({"reason": line}),
                )
            });
            out.done.push(line);
            continue;
        }
        match applier.discard(&id, None, false) {
            Ok(()) => {
                let line = format!(
                    "orphan runtime container {id} ({what}, no container row) removed \
                     (--remove-orphans)"
                );
                tracing::info!("{line}");
                let _ = lock(store).transaction(|tx| {
                    event(
                        tx,
                        "recovery.orphan-removed",
                        &format!("runtime/{id}"),
                        json!({"reason": line}),
                    )
                });
                out.done.push(line);
            }
            Err(e) => out
                .failed
                .push(format!("removing orphan runtime container {id}: {e}")),
        }
    }
    out
}

/// Mounts the root filesystem of every recorded container that is not mounted (start-up after a
/// host reboot). A container being removed is skipped.
pub fn remount(applier: &Applier, store: &SharedStore) -> Recovered {
    let mut out = Recovered::default();
    let containers = match lock(store).transaction(|tx| tx.containers()) {
        Ok(c) => c,
        Err(e) => {
            out.failed.push(format!("reading containers: {e}"));
            return out;
        }
    };
    let layers: HashSet<String> = match applier.graph.containers() {
        Ok(l) => l.into_iter().map(|c| c.id).collect(),
        Err(e) => {
            out.failed.push(format!("listing container layers: {e}"));
            return out;
        }
    };
    let mut mounted = 0;
    for c in containers {
        if matches!(c.state, ContainerState::Removing | ContainerState::Dead)
            || !layers.contains(&c.id)
            || applier.graph.driver().is_mounted(&c.id).unwrap_or(true)
        {
            continue;
        }
        match applier.graph.driver().mount(&c.id) {
            Ok(_) => mounted += 1,
            Err(e) => out
                .failed
                .push(format!("mounting the root filesystem of {}: {e}", c.name)),
        }
    }
    if mounted > 0 {
        let line = format!("{mounted} container root filesystem(s) mounted again (host reboot)");
        tracing::info!("{line}");
        out.done.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaccounted_keeps_unknown_ids_once_with_their_running_flag() {
        let known: HashSet<String> = ["a".to_string()].into();
        let got = unaccounted(
            [("a".into(), true), ("b".into(), true), ("c".into(), false)],
            ["a".into(), "b".into(), "d".into()],
            &known,
        );
        assert_eq!(
            got,
            vec![
                ("b".to_string(), true),
                ("c".to_string(), false),
                ("d".to_string(), false)
            ]
        );
    }
}
