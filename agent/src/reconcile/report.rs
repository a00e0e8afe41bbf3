//! What the loop reports: a pass's outcome (`agent apply`), a user request's answer
//! (`agent stop` / `agent start`), the changes in flight (`agent status`), the objects whose
//! last change failed or was skipped because of a failure, with the next retry (`agent ps`,
//! `agent status`), the containers in their stop's grace period (`agent ps`: `stopping`) and
//! those that wait for their start conditions (`agent ps`: `waiting`, `agent status`).
//! The API serves these types; the loop does not know the API.
//!
//! Failures are kept in memory: at start-up the agent plans again and finds them again. An
//! object's failure goes when a change of it succeeds, or when a pass no longer plans a change
//! of it (fixed by hand, or removed from the manifests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// What one reconcile pass did (the answer of `agent apply`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    /// Sequence number of the pass since the agent started.
    pub pass: u64,
    /// Why it ran.
    pub triggers: Vec<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// Each change applied, with its reason.
    pub applied: Vec<String>,
    /// Each change that failed, with its error (retried with backoff).
    pub failed: Vec<String>,
    /// Each change not applied because a change it depended on failed (named).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Manifest files that failed to load.
    pub file_errors: Vec<String>,
}

/// The answer of `agent stop` / `agent start` for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReport {
    pub name: String,
    /// Its state afterwards.
    pub state: String,
    /// False when it already was as asked (stopped, running).
    pub changed: bool,
}

/// A change queued or being applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// `container/web`, `image/busybox:latest`, ...
    pub object: String,
    /// `pull busybox: ...` (the change and its reasons).
    pub change: String,
    /// plan, restart policy, unhealthy, user, agent exit.
    pub cause: String,
    /// Unix milliseconds when it was submitted.
    pub since: i64,
}

/// An object whose last change failed, or was skipped because a change it depended on failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// `container/web`, `image/busybox`, ...
    pub object: String,
    /// `create web failed: host port ... is in use`, or
    /// `create web skipped: import busybox failed: ...`.
    pub error: String,
    /// Not tried: a change it depended on failed (that one is the cause).
    pub skipped: bool,
    /// plan, restart policy, ...
    pub cause: String,
    /// The manifest file that declares the object, when one does.
    pub file: Option<String>,
    /// Unix milliseconds of the first failure in a row, and how many in a row.
    pub since: i64,
    pub attempts: u32,
    /// Unix milliseconds of the next try, when one is scheduled.
    pub retry_at: Option<i64>,
}

/// The changes in flight, the failures and the host problems the loop found, shared by the
/// loop and the applier (which write) and the API (which reads).
#[derive(Debug, Clone, Default)]
pub struct Board {
    inner: Arc<Mutex<BTreeMap<u64, InFlight>>>,
    warnings: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<BTreeMap<String, Failure>>>,
    stopping: Arc<Mutex<BTreeMap<String, Stopping>>>,
    monitor_lost: Arc<Mutex<std::collections::BTreeSet<String>>>,
    waiting: Arc<Mutex<BTreeMap<String, String>>>,
}

/// A container in its stop's grace period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stopping {
    /// Unix milliseconds when the stop signal was sent.
    pub since: i64,
    /// The grace period before SIGKILL, in milliseconds.
    pub grace_ms: u64,
}

/// Removes its container from the board's stopping set when dropped.
pub struct StoppingGuard {
    board: Board,
    name: String,
}

impl Drop for StoppingGuard {
    fn drop(&mut self) {
        relock(&self.board.stopping).remove(&self.name);
    }
}

fn relock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, InFlight>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Work `id` was submitted.
    pub fn add(&self, id: u64, item: InFlight) {
        self.lock().insert(id, item);
    }

    /// Work `id` ended.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Replaces the host problems found at start-up and at each resync (traffic on the
    /// agent's bridges that another firewall would drop, ...).
    pub fn set_warnings(&self, w: Vec<String>) {
        *self.warnings.lock().unwrap_or_else(|e| e.into_inner()) = w;
    }

    /// The host problems last found.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything in flight, oldest first.
    pub fn list(&self) -> Vec<InFlight> {
        self.lock().values().cloned().collect()
    }

    /// Records a failure of `f.object`; a failure in a row keeps its first time and counts.
    pub fn fail(&self, mut f: Failure) {
        let mut all = relock(&self.failures);
        if let Some(old) = all.get(&f.object) {
            f.since = old.since;
            f.attempts = old.attempts.saturating_add(1);
        }
        all.insert(f.object.clone(), f);
    }

    /// A change of `object` succeeded.
    pub fn succeeded(&self, object: &str) {
        relock(&self.failures).remove(object);
    }

    /// Keeps the failures `keep` accepts.
    pub fn retain_failures(&self, keep: impl Fn(&Failure) -> bool) {
        relock(&self.failures).retain(|_, f| keep(f));
    }

    /// The next retry of the failures of cause `cause`.
    pub fn set_retry(&self, cause: &str, at_ms: i64) {
        for f in relock(&self.failures).values_mut() {
            if f.cause == cause {
                f.retry_at = Some(at_ms);
            }
        }
    }

    /// The next retry of `object`'s failure.
    pub fn set_retry_of(&self, object: &str, at_ms: i64) {
        if let Some(f) = relock(&self.failures).get_mut(object) {
            f.retry_at = Some(at_ms);
        }
    }

    /// The failures, by object.
    pub fn failures(&self) -> Vec<Failure> {
        relock(&self.failures).values().cloned().collect()
    }

    /// Container `name` is being stopped (its stop signal sent now, SIGKILL after `grace`)
    /// until the guard is dropped.
    pub fn stopping(&self, name: &str, grace: std::time::Duration) -> StoppingGuard {
        relock(&self.stopping).insert(
            name.to_string(),
            Stopping {
                since: super::pass::now_ms(),
                grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            },
        );
        StoppingGuard {
            board: self.clone(),
            name: name.to_string(),
        }
    }

    /// The containers in their stop's grace period, by name.
    pub fn stopping_now(&self) -> BTreeMap<String, Stopping> {
        relock(&self.stopping).clone()
    }

    /// Replaces the containers found running without their monitor (until their repair ends).
    pub fn set_monitor_lost(&self, names: impl IntoIterator<Item = String>) {
        *relock(&self.monitor_lost) = names.into_iter().collect();
    }

    /// The containers running without their monitor, being repaired.
    pub fn monitor_lost_now(&self) -> std::collections::BTreeSet<String> {
        relock(&self.monitor_lost).clone()
    }

    /// Replaces the containers that wait for their start conditions (`dependsOn`), with why.
    pub fn set_waiting(&self, waiting: BTreeMap<String, String>) {
        *relock(&self.waiting) = waiting;
    }

    /// The containers that wait for their start conditions, by name, with why
    /// (`db not healthy yet`).
    pub fn waiting_now(&self) -> BTreeMap<String, String> {
        relock(&self.waiting).clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn failure(object: &str, since: i64) -> Failure {
        Failure {
            object: object.into(),
            error: "create web failed: port taken".into(),
            skipped: false,
            cause: "plan".into(),
            file: None,
            since,
            attempts: 1,
            retry_at: None,
        }
    }

    #[test]
    fn failures_in_a_row_count_and_keep_their_first_time() {
        let b = Board::default();
        b.fail(failure("container/web", 10));
        b.fail(failure("container/web", 20));
        b.set_retry("plan", 99);
        let f = b.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].since, f[0].attempts, f[0].retry_at),
            (10, 2, Some(99))
        );
        b.succeeded("container/web");
        assert!(b.failures().is_empty());
    }

    #[test]
    fn stopping_lasts_as_long_as_its_guard() {
        let b = Board::default();
        {
            let _g = b.stopping("web", std::time::Duration::from_secs(10));
            assert_eq!(b.stopping_now()["web"].grace_ms, 10_000);
        }
        assert!(b.stopping_now().is_empty());
    }
}
