//! Pulls the latest plan no longer makes are cancelled ([`crate::reconcile::apply::pulls`]):
//! their image left every manifest, or its manifest names another reference now. A cancelled
//! pull is neither a failure of its object (no backoff, nothing on the board) nor a success: an
//! event `change.cancelled`, a line among the skipped of the passes that waited for it, and a
//! new pass at once, which clears what was skipped after it from the board.

use serde_json::json;

use super::Engine;
use crate::plan::{Change, Step};
use crate::reconcile::pass;
use crate::reconcile::queue::Done;
use crate::reconcile::translate::network::lock;
use crate::reconcile::trigger::Trigger;

impl Engine {
    /// Cancels the pulls pending that `steps` (the latest plan) does not make again.
    pub(super) fn cancel_unplanned_pulls(&mut self, steps: &[Step]) {
        let Some(applier) = &self.p.applier else {
            return;
        };
        for (id, (_, change)) in &self.pending {
            if !matches!(change, Change::PullImage { .. })
                || self.cancelled.contains(id)
                || steps.iter().any(|s| s.change == *change)
            {
                continue;
            }
            if applier.pulls.cancel(change.name()) {
                tracing::info!(
                    image = change.name(),
                    "cancelling its pull: the manifests no longer ask for it"
                );
                self.cancelled.insert(*id);
            }
        }
    }

    /// Shutdown: every pull stops (what it downloaded stays; the next start resumes it).
    pub(super) fn cancel_all_pulls(&mut self) {
        let Some(applier) = &self.p.applier else {
            return;
        };
        for (id, (_, change)) in &self.pending {
            if matches!(change, Change::PullImage { .. }) && applier.pulls.cancel(change.name()) {
                self.cancelled.insert(*id);
            }
        }
    }

    /// Whether `done` is a pull this loop cancelled (and not one that finished first).
    pub(super) fn was_cancelled(&mut self, done: &Done) -> bool {
        self.cancelled.remove(&done.id) && done.result.is_err() && done.skipped.is_none()
    }

    /// Records the end of a cancelled pull.
    pub(super) fn on_cancelled(&self, done: &Done) {
        let error = done.result.as_ref().err().cloned().unwrap_or_default();
        tracing::info!(change = %done.work.summary(), "pull cancelled");
        let _ = lock(&self.p.store).transaction(|tx| {
            pass::event(
                tx,
                "change.cancelled",
                &done.key,
                json!({"reason": done.work.summary(), "error": error}),
            )
        });
        if !self.p.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            self.p.triggers.fire(Trigger::Deferred);
        }
    }
}
