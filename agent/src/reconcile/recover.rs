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
//! intents, [`sweep_orphans`] removes runtime containers and container
//! layers that no container row names (made by a step whose intent was lost with a damaged
//! store, say), so that a crash never leaves a duplicate container behind.

use std::collections::HashSet;

use serde_json::json;

use super::apply::{Applier, INTENT_REMOVE, INTENT_START};
use super::network::{SharedStore, lock};
use super::pass::event;
use crate::driver::exec::ExecDriver;
use crate::driver::graph::GraphDriver;
use crate::store::{ContainerState, Intent};

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
pub fn intents(applier: &mut Applier, store: &SharedStore) -> Recovered {
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

fn settle(
    applier: &mut Applier,
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
                if info.status.is_running() && r.state != ContainerState::Running =>
            {
                r.state = ContainerState::Running;
                r.started_at = Some(super::pass::now_ms());
                if let crate::driver::exec::ContainerStatus::Running { pid, .. } = info.status {
                    r.runtime.container_pid = Some(pid);
                }
                r.exit_code = None;
                (
                    Some("recovery.finish"),
                    Some(format!(
                        "interrupted start of {name} finished: it runs, recorded running"
                    )),
                    Some(r),
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

/// Removes runtime containers and container layers that no container row names (start-up
/// only: no step is in flight then).
pub fn sweep_orphans(applier: &mut Applier, store: &SharedStore) -> Recovered {
    let mut out = Recovered::default();
    let known: HashSet<String> = match lock(store).transaction(|tx| tx.containers()) {
        Ok(c) => c.into_iter().map(|c| c.id).collect(),
        Err(e) => {
            out.failed.push(format!("reading containers: {e}"));
            return out;
        }
    };
    let mut ids: Vec<String> = Vec::new();
    match applier.exec.list() {
        Ok(list) => ids.extend(list.into_iter().map(|c| c.id)),
        Err(e) => out.failed.push(format!("listing runtime containers: {e}")),
    }
    match applier.graph.containers() {
        Ok(list) => ids.extend(list.into_iter().map(|c| c.id)),
        Err(e) => out.failed.push(format!("listing container layers: {e}")),
    }
    ids.sort();
    ids.dedup();
    for id in ids.into_iter().filter(|id| !known.contains(id)) {
        match applier.discard(&id, None, false) {
            Ok(()) => {
                let line = format!("orphan runtime container {id} (no container row) removed");
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
pub fn remount(applier: &mut Applier, store: &SharedStore) -> Recovered {
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
