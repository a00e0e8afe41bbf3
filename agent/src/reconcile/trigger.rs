//! Triggers and their coalescing: one reconcile pass at a time, every trigger that arrives while a
//! pass runs folded into the next one.
//!
//! Anything may fire a [`Trigger`] through a cloned [`Triggers`] handle: the watcher (files
//! changed), the exec driver's exit watcher, the health prober, the resync timer, the restart
//! backoff timers, the API (`agent apply`) and start-up. The single loop that runs passes takes
//! everything pending as one [`Batch`] with [`TriggerQueue::next_batch`]; a thousand triggers
//! during a slow pass cost one more pass, not a thousand. A caller that needs to know when its
//! request was served ([`Triggers::fire_and_wait`], used by `agent apply`) gets the outcome of the
//! first pass that *started after* its request, so it always sees its own change applied.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};

/// Why a pass runs. Equal triggers pending at once are merged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum Trigger {
    /// The agent started.
    Startup,
    /// Manifest files were added, changed or removed.
    Files,
    /// A container's process exited.
    ContainerExit(String),
    /// A container's health status changed.
    Health(String),
    /// A container's restart backoff expired.
    RestartDue(String),
    /// The periodic resync timer.
    Resync,
    /// Changes of the last pass failed: try again (after a backoff delay).
    Retry,
    /// `agent apply` (or another API request).
    Api,
    /// `agent stop` / `agent start`: queued requests to serve (see [`super::request`]).
    Request,
    /// Planned changes waited for a busy object, which is free now: plan them again.
    Deferred,
    /// A container that others wait for (`dependsOn`) changed (health, exit, start): plan
    /// again, so that what waits for it may go.
    Dependency(String),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Startup => f.write_str("start-up"),
            Trigger::Files => f.write_str("manifest files changed"),
            Trigger::ContainerExit(n) => write!(f, "container {n} exited"),
            Trigger::Health(n) => write!(f, "container {n} health changed"),
            Trigger::RestartDue(n) => write!(f, "restart of {n} due"),
            Trigger::Resync => f.write_str("periodic resync"),
            Trigger::Retry => f.write_str("retry of failed changes"),
            Trigger::Api => f.write_str("API request"),
            Trigger::Request => f.write_str("agent stop/start request"),
            Trigger::Deferred => f.write_str("changes that waited for a busy object"),
            Trigger::Dependency(n) => write!(f, "container {n}, which others wait for, changed"),
        }
    }
}

struct Pending<T> {
    triggers: BTreeSet<Trigger>,
    waiters: Vec<oneshot::Sender<T>>,
    closed: bool,
}

struct Shared<T> {
    pending: Mutex<Pending<T>>,
    notify: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Pending<T>> {
        // A panic while holding this lock leaves plain data behind; keep going with it.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side; cheap to clone. `T` is what a finished pass reports to waiters.
pub struct Triggers<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Triggers<T> {
    fn clone(&self) -> Self {
        Triggers {
            shared: self.shared.clone(),
        }
    }
}

/// The receiving side, owned by the loop that runs passes.
pub struct TriggerQueue<T> {
    shared: Arc<Shared<T>>,
}

/// Everything that was pending when a pass started.
pub struct Batch<T> {
    pub triggers: BTreeSet<Trigger>,
    pub started: Instant,
    waiters: Vec<oneshot::Sender<T>>,
}

/// A new queue and its first sender.
pub fn channel<T>() -> (Triggers<T>, TriggerQueue<T>) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            triggers: BTreeSet::new(),
            waiters: Vec::new(),
            closed: false,
        }),
        notify: Notify::new(),
    });
    (
        Triggers {
            shared: shared.clone(),
        },
        TriggerQueue { shared },
    )
}

impl<T> Triggers<T> {
    /// Asks for a pass. Returns at once.
    pub fn fire(&self, trigger: Trigger) {
        let mut p = self.shared.lock();
        if p.closed {
            return;
        }
        p.triggers.insert(trigger);
        drop(p);
        self.shared.notify.notify_one();
    }

    /// Asks for a pass and returns a receiver for its outcome. The receiver errors when the agent
    /// shuts down before serving the request.
    pub fn fire_and_wait(&self, trigger: Trigger) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let mut p = self.shared.lock();
        if p.closed {
            return rx; // tx dropped: the receiver sees the shutdown
        }
        p.triggers.insert(trigger);
        p.waiters.push(tx);
        drop(p);
        self.shared.notify.notify_one();
        rx
    }

    /// Fires `trigger` at `at` (restart backoff, health probes). Needs a tokio runtime.
    pub fn fire_at(&self, trigger: Trigger, at: tokio::time::Instant)
    where
        T: Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            me.fire(trigger);
        });
    }

    /// No more passes: the loop's next [`TriggerQueue::next_batch`] returns `None` and pending
    /// waiters are told the agent is shutting down.
    pub fn close(&self) {
        let mut p = self.shared.lock();
        p.closed = true;
        p.triggers.clear();
        p.waiters.clear();
        drop(p);
        self.shared.notify.notify_one();
    }
}

impl<T> TriggerQueue<T> {
    /// A sender for this queue.
    pub fn sender(&self) -> Triggers<T> {
        Triggers {
            shared: self.shared.clone(),
        }
    }

    /// Waits until at least one trigger is pending and takes all of them. `None` after
    /// [`Triggers::close`].
    pub async fn next_batch(&mut self) -> Option<Batch<T>> {
        loop {
            {
                let mut p = self.shared.lock();
                if p.closed {
                    return None;
                }
                if !p.triggers.is_empty() {
                    return Some(Batch {
                        triggers: std::mem::take(&mut p.triggers),
                        started: Instant::now(),
                        waiters: std::mem::take(&mut p.waiters),
                    });
                }
            }
            self.shared.notify.notified().await;
        }
    }
}

impl<T: Clone> Batch<T> {
    /// Reports the pass's outcome to everyone who waited for it.
    pub fn complete(self, outcome: T) {
        for w in self.waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

impl<T> Batch<T> {
    /// Takes the waiters, to answer them later (when the pass's works have ended).
    pub fn take_waiters(&mut self) -> Vec<oneshot::Sender<T>> {
        std::mem::take(&mut self.waiters)
    }

    /// "start-up, manifest files changed" for logs and events.
    pub fn describe(&self) -> String {
        self.triggers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn triggers_during_a_pass_coalesce_into_one_more_pass() {
        let (tx, mut q) = channel::<u32>();
        tx.fire(Trigger::Startup);
        let passes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (p2, s2) = (passes.clone(), seen.clone());
        let runner = tokio::spawn(async move {
            while let Some(batch) = q.next_batch().await {
                let n = p2.fetch_add(1, Ordering::SeqCst) as u32 + 1;
                s2.lock().unwrap().push(batch.triggers.clone());
                // A slow pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
                batch.complete(n);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await; // pass 1 is running
        for i in 0..1000 {
            tx.fire(Trigger::ContainerExit(format!("c{}", i % 3)));
            tx.fire(Trigger::Files);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 2);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], BTreeSet::from([Trigger::Startup]));
        assert_eq!(
            seen[1],
            BTreeSet::from([
                Trigger::Files,
                Trigger::ContainerExit("c0".into()),
                Trigger::ContainerExit("c1".into()),
                Trigger::ContainerExit("c2".into()),
            ])
        );
        tx.close();
        runner.await.unwrap();
    }

    #[tokio::test]
    async fn waiters_get_a_pass_that_started_after_their_request() {
        let (tx, mut q) = channel::<u32>();
        let runner = tokio::spawn(async move {
            let mut n = 0;
            while let Some(batch) = q.next_batch().await {
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                batch.complete(n);
            }
        });
        tx.fire(Trigger::Startup);
        tokio::time::sleep(Duration::from_millis(10)).await; // pass 1 running
        let w = tx.fire_and_wait(Trigger::Api);
        assert_eq!(w.await.unwrap(), 2);
        let w = tx.fire_and_wait(Trigger::Api);
        assert_eq!(w.await.unwrap(), 3);
        tx.close();
        runner.await.unwrap();
    }

    #[tokio::test]
    async fn close_ends_the_loop_and_fails_waiters() {
        let (tx, mut q) = channel::<u32>();
        let w = tx.fire_and_wait(Trigger::Api);
        tx.close();
        assert!(q.next_batch().await.is_none());
        assert!(w.await.is_err());
        // Firing after close is ignored, waiting after close fails at once.
        tx.fire(Trigger::Files);
        assert!(tx.fire_and_wait(Trigger::Api).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn fire_at_fires_later() {
        let (tx, mut q) = channel::<()>();
        let start = tokio::time::Instant::now();
        tx.fire_at(
            Trigger::RestartDue("web".into()),
            start + Duration::from_millis(800),
        );
        let b = q.next_batch().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(800));
        assert_eq!(b.describe(), "restart of web due");
    }
}
