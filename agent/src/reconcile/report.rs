//! What the loop reports: a pass's outcome (`agent apply`), a user request's answer
//! (`agent stop` / `agent start`), and the changes in flight (`agent status`). The API serves
//! these types; the loop does not know the API.

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

/// The changes in flight and the host problems the loop found, shared by the loop (which
/// writes) and the API (which reads).
#[derive(Debug, Clone, Default)]
pub struct Board {
    inner: Arc<Mutex<BTreeMap<u64, InFlight>>>,
    warnings: Arc<Mutex<Vec<String>>>,
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
}
