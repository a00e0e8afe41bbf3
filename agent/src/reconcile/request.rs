//! `agent stop`, `agent start` and `agent kill`: a user's requests on one container; and
//! `agent volume rm|prune`'s removal of one volume ([`Action::RemoveVolume`], served the same
//! way through the applier: see [`super::apply::volume_rm`]).
//!
//! While the agent runs, the CLI sends them to the API; the API queues them in [`Requests`] and
//! fires [`Trigger::Request`](super::trigger::Trigger); the loop turns each into a work
//! ([`super::work::Cause::User`]) that the applier runs like any other change, queued behind a
//! change in flight on the same container and beside changes to any other. When no agent runs,
//! the CLI calls [`stop`] and [`start`] itself on the store and the exec driver. Neither holds
//! the store's lock while the container stops or starts, so `agent ps` answers meanwhile.
//!
//! Semantics (Docker's `docker stop` / `docker start`):
//! - `stop` sends the container's stop signal, waits its grace period (or `-t`), then SIGKILL, and
//!   records the container `stopped-by-user`. A stopped-by-user container is never restarted by
//!   its policy while the agent runs; at the next agent start (an agent restart or a host reboot)
//!   `unless-stopped` leaves it stopped and `always` brings it back, as Docker's daemon does at
//!   its restart (see [`super::restart`]). Stopping a container that waits for its restart delay
//!   cancels the restart; stopping one that already exited marks it stopped-by-user all the same
//!   (the user said "keep it down").
//! - `start` starts it again (its exit and stop records are cleared, its restart count and
//!   backoff start over, as a manual `docker start` resets the restart manager). Starting a running
//!   container changes nothing. The start is journalled like the applier's (a `start-container`
//!   intent, see [`super::apply`]): an agent killed between the start and its record leaves the
//!   intent, and the next start-up records the container running; a process found running
//!   already (started before such a crash) is adopted, not started twice.
//! - Neither changes the manifests: the planner keeps a stopped-by-user container stopped, also
//!   across a recreate, until it is started.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::pass::{event, now_ms};
use crate::driver::exec::{ContainerStatus, ExecDriver};
use crate::reconcile::report::ActionReport;
use crate::store::{ContainerRecord, ContainerState, Store};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `agent stop [-t SECS] NAME`.
    Stop {
        name: String,
        grace: Option<Duration>,
    },
    /// `agent start NAME`.
    Start { name: String },
    /// `agent volume rm NAME` (also one per volume of `agent volume prune`): see
    /// [`super::apply::volume_rm`].
    RemoveVolume { name: String },
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Stop { name, .. } | Action::Start { name } | Action::RemoveVolume { name } => {
                name
            }
        }
    }

    /// Whether it acts on a container (a stop or start: pending restarts are cancelled).
    pub fn on_container(&self) -> bool {
        !matches!(self, Action::RemoveVolume { .. })
    }

    /// Refuses it before any work is queued: no such container, or one being removed; a volume
    /// that does not exist, is in use or declared.
    pub fn check(&self, store: &Mutex<Store>, state: &std::path::Path) -> Result<(), RequestError> {
        match self {
            Action::RemoveVolume { name } => {
                super::apply::volume_rm::check(store, state, name).map_err(volume_error)
            }
            _ => request_target(store, self.name()).map(|_| ()),
        }
    }

    /// The answer once its work ended with `result`.
    pub fn answer(
        &self,
        store: &Mutex<Store>,
        result: &Result<super::apply::Applied, String>,
    ) -> Result<ActionReport, RequestError> {
        let name = self.name().to_string();
        match (self, result) {
            // A refusal found by the applier (a race with the check) comes back unchanged.
            (Action::RemoveVolume { .. }, Ok(a)) if !a.changed => {
                Err(RequestError::Refused(a.line.clone()))
            }
            (Action::RemoveVolume { .. }, Ok(_)) => Ok(ActionReport {
                name,
                state: "removed".into(),
                changed: true,
            }),
            (Action::RemoveVolume { .. }, Err(e)) => Err(RequestError::Refused(format!(
                "removing volume {name}: {e}"
            ))),
            (_, Ok(a)) => {
                let state = lock(store)
                    .transaction(|tx| tx.container(&name))
                    .ok()
                    .flatten()
                    .map(|r| r.state.to_string())
                    .unwrap_or_default();
                Ok(ActionReport {
                    name,
                    state,
                    changed: a.changed,
                })
            }
            (_, Err(e)) => Err(RequestError::Failed {
                name,
                error: e.clone(),
            }),
        }
    }
}

fn volume_error(e: super::apply::volume_rm::RmError) -> RequestError {
    use super::apply::volume_rm::RmError;
    match e {
        RmError::NotFound(n) => RequestError::NoVolume(n),
        e => RequestError::Refused(e.to_string()),
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("no such container: {0} (see `agent ps`)")]
    NotFound(String),
    #[error("container {name} is {state}; wait until the agent has finished with it")]
    Busy { name: String, state: ContainerState },
    #[error("container {name}: {error}")]
    Failed { name: String, error: String },
    #[error("the agent is shutting down; the request was not served")]
    ShuttingDown,
    #[error("no such volume: {0} (see `agent volume ls`)")]
    NoVolume(String),
    /// A volume removal refused (in use, declared) or failed; the text says why.
    #[error("{0}")]
    Refused(String),
}

/// A queued request and where its answer goes.
pub struct Pending {
    pub action: Action,
    pub reply: oneshot::Sender<Result<ActionReport, RequestError>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    closed: bool,
}

/// The queue between the API and the pass loop; cheap to clone.
#[derive(Clone, Default)]
pub struct Requests {
    inner: Arc<Mutex<Queue>>,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `action`; the answer arrives once a pass served it (or at once after
    /// [`Requests::close`]).
    pub fn push(&self, action: Action) -> oneshot::Receiver<Result<ActionReport, RequestError>> {
        let (reply, rx) = oneshot::channel();
        let mut q = self.lock();
        if q.closed {
            let _ = reply.send(Err(RequestError::ShuttingDown));
        } else {
            q.pending.push(Pending { action, reply });
        }
        rx
    }

    /// Everything queued, oldest first.
    pub fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut self.lock().pending)
    }

    /// Refuses further requests and answers the queued ones "shutting down".
    pub fn close(&self) {
        let pending = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.pending)
        };
        for p in pending {
            let _ = p.reply.send(Err(RequestError::ShuttingDown));
        }
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

impl Action {
    /// The work that serves it.
    pub fn work(&self) -> super::work::Work {
        use super::work::{Cause, Work};
        use crate::plan::Change;
        match self {
            Action::Stop { name, grace } => Work::container(
                Change::StopContainer { name: name.clone() },
                Cause::User { grace: *grace },
                "agent stop",
            ),
            Action::Start { name } => Work::container(
                Change::StartContainer { name: name.clone() },
                Cause::User { grace: None },
                "agent start",
            ),
            Action::RemoveVolume { name } => Work::container(
                Change::RemoveVolume { name: name.clone() },
                Cause::User { grace: None },
                "agent volume rm",
            ),
        }
    }
}

fn failed(name: &str, e: impl std::fmt::Display) -> RequestError {
    RequestError::Failed {
        name: name.to_string(),
        error: e.to_string(),
    }
}

/// The record of the container a stop or start request names; refused while the agent is
/// removing it.
pub fn request_target(store: &Mutex<Store>, name: &str) -> Result<ContainerRecord, RequestError> {
    let rec = lock(store)
        .transaction(|tx| tx.container(name))
        .map_err(|e| failed(name, e))?
        .ok_or_else(|| RequestError::NotFound(name.to_string()))?;
    match rec.state {
        ContainerState::Removing | ContainerState::Dead => Err(RequestError::Busy {
            name: name.to_string(),
            state: rec.state,
        }),
        _ => Ok(rec),
    }
}

/// The answer to a request that had nothing to do.
fn unchanged(name: &str, state: ContainerState) -> ActionReport {
    ActionReport {
        name: name.to_string(),
        state: state.to_string(),
        changed: false,
    }
}

/// `agent stop`: see the module docs. `grace` overrides the container's stop grace period.
pub fn stop<E: ExecDriver>(
    store: &Mutex<Store>,
    exec: &E,
    name: &str,
    grace: Option<Duration>,
) -> Result<ActionReport, RequestError> {
    let mut rec = request_target(store, name)?;
    let was = rec.state;
    if was == ContainerState::StoppedByUser {
        return Ok(unchanged(name, was));
    }
    // A container recorded as exited may still run when the store lags behind (an exit not
    // noticed yet, a start not recorded): stop whatever runs.
    let running = exec.state(&rec.id).is_ok_and(|i| i.status.is_running());
    if running {
        let grace = grace.or_else(|| super::supervise::grace_of(&rec.config));
        let info = exec.stop(&rec.id, grace).map_err(|e| failed(name, e))?;
        if let ContainerStatus::Exited {
            exit_code,
            signal,
            oom_killed,
        } = info.status
        {
            rec.exit_code = Some(exit_code);
            rec.signal = signal;
            rec.oom_killed = oom_killed;
        }
        rec.finished_at = Some(now_ms());
    }
    rec.state = ContainerState::StoppedByUser;
    rec.health = None;
    let message = json!({"reason": "agent stop", "was": was.as_str(), "exitCode": rec.exit_code});
    let report = record(store, &rec, "container.stop", message, None)?;
    tracing::info!(container = name, was = %was, "stopped by the user (agent stop)");
    Ok(report)
}

/// `agent start`: see the module docs.
pub fn start<E: ExecDriver>(
    store: &Mutex<Store>,
    exec: &E,
    name: &str,
) -> Result<ActionReport, RequestError> {
    let mut rec = request_target(store, name)?;
    let was = rec.state;
    let running = match exec.state(&rec.id).map(|i| i.status) {
        Ok(ContainerStatus::Running { pid, .. }) => Some(pid),
        _ => None,
    };
    if was == ContainerState::Running && running.is_some() {
        return Ok(unchanged(name, was));
    }
    let intent = crate::store::NewIntent {
        kind: super::apply::INTENT_START.into(),
        object: format!("container/{name}"),
        payload: json!({"id": rec.id}),
    };
    let intent = lock(store)
        .transaction(|tx| tx.begin_intent(&intent, now_ms()))
        .map_err(|e| failed(name, e))?;
    let pid = match running {
        Some(pid) => pid,
        None => exec.start(&rec.id).map_err(|e| failed(name, e))?,
    };
    super::apply::debug_pause("start", name);
    rec.state = ContainerState::Running;
    rec.started_at = Some(now_ms());
    rec.runtime.container_pid = Some(pid);
    rec.runtime.monitor_pid = super::apply::monitor_of(exec, &rec.id);
    rec.exit_code = None;
    rec.signal = None;
    rec.oom_killed = false;
    rec.restart_count = 0;
    rec.health = None;
    let message = json!({"reason": "agent start", "was": was.as_str()});
    let report = record(store, &rec, "container.start", message, Some(intent))?;
    tracing::info!(container = name, was = %was, "started by the user (agent start)");
    Ok(report)
}

/// Saves the changed record with its event `kind` and finishes `intent`, in one transaction;
/// the answer says it changed.
/// `agent kill`: sends `signal` to the container's main process and records a `container.kill`
/// event (`reason`, `signal`), as `docker kill` emits its `kill` event. Nothing else changes: a
/// process the signal ends is an exit like any other (its restart policy applies), one that
/// survives it runs on. Served by the API handler directly (a signal is not a change of the
/// container's state, so it needs no work on the queue), or by the CLI when no agent runs.
pub fn kill<E: ExecDriver>(
    store: &Mutex<Store>,
    exec: &E,
    name: &str,
    signal: i32,
) -> Result<ActionReport, RequestError> {
    let rec = request_target(store, name)?;
    exec.kill(&rec.id, signal).map_err(|e| failed(name, e))?;
    let signal_name = nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| signal.to_string());
    let message = json!({"reason": "agent kill", "signal": signal_name});
    lock(store)
        .transaction(|tx| event(tx, "container.kill", &format!("container/{name}"), message))
        .map_err(|e| failed(name, e))?;
    tracing::info!(container = name, signal = %signal_name, "signalled by the user (agent kill)");
    Ok(ActionReport {
        name: name.to_string(),
        state: rec.state.to_string(),
        changed: true,
    })
}

fn record(
    store: &Mutex<Store>,
    rec: &ContainerRecord,
    kind: &str,
    message: serde_json::Value,
    intent: Option<i64>,
) -> Result<ActionReport, RequestError> {
    let name = rec.name.as_str();
    lock(store)
        .transaction(|tx| {
            tx.upsert_container(rec)?;
            if let Some(id) = intent {
                tx.finish_intent(id)?;
            }
            event(tx, kind, &format!("container/{name}"), message)
        })
        .map_err(|e| failed(name, e))?;
    Ok(ActionReport {
        name: name.to_string(),
        state: rec.state.to_string(),
        changed: true,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_answers_after_close() {
        let q = Requests::default();
        let a = q.push(Action::Start { name: "a".into() });
        assert_eq!(q.take().len(), 1);
        drop(a);
        let b = q.push(Action::Stop {
            name: "b".into(),
            grace: None,
        });
        q.close();
        assert_eq!(b.await.unwrap(), Err(RequestError::ShuttingDown));
        let c = q.push(Action::Start { name: "c".into() });
        assert_eq!(c.await.unwrap(), Err(RequestError::ShuttingDown));
        assert!(q.take().is_empty());
    }
}
