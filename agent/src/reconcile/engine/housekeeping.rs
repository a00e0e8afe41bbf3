//! The loop's housekeeping, apart from passes and works: recovery and network clean-up at
//! start-up, network drift found (its repair is a work), containers found running without their
//! monitor (their repair is a work), host problems for `agent status` (another firewall
//! dropping the bridges' traffic, a host interface overlapping a network's subnet), and stopping every container at exit when configured.

use serde_json::json;

use super::{Engine, Queue, apply_fn};
use crate::driver::network::Drift;
use crate::manifest::Kind;
use crate::plan::Change;
use crate::reconcile::pass;
use crate::reconcile::report::PassReport;
use crate::reconcile::translate::network::lock;
use crate::reconcile::work::{Cause, Work};

impl Engine {
    /// Settles the intents a failed step or a crash left, and orphans (see [`super::recover`]).
    pub(super) fn recover(&mut self, report: &mut PassReport) {
        let Some(applier) = self.p.applier.as_deref() else {
            return;
        };
        let store = &self.p.store;
        let mut r = crate::reconcile::recover::remount(applier, store);
        let i = crate::reconcile::recover::intents(applier, store);
        r.done.extend(i.done);
        r.failed.extend(i.failed);
        let (done, failed) = crate::reconcile::apply::volume_rm::recover(store, &applier.state_dir);
        r.done.extend(done);
        r.failed.extend(failed);
        let o =
            crate::reconcile::recover::sweep_orphans(applier, store, self.p.config.remove_orphans);
        r.done.extend(o.done);
        r.failed.extend(o.failed);
        report.applied.extend(r.done);
        report.failed.extend(r.failed);
    }

    /// Start-up: the network driver removes what no recorded container accounts for.
    pub(super) fn network_startup(&mut self, report: &mut PassReport) {
        let Some(Ok(net)) = self.p.applier.as_ref().map(|a| a.net.clone()) else {
            return;
        };
        let r = net.startup(&self.p.store);
        for line in &r.removed {
            tracing::info!(removed = %line, "network start-up cleanup");
        }
        report.applied.extend(
            r.removed
                .into_iter()
                .map(|l| format!("network cleanup: removed {l}")),
        );
        report.failed.extend(
            r.failures
                .into_iter()
                .map(|l| format!("network cleanup: {l}")),
        );
    }

    /// Containers that run without their monitor (killed from outside; all, or only `only`):
    /// a warning and an event `container.monitor-lost` when first seen, `monitor-lost` in
    /// `agent ps` and a line in `agent status` while it lasts, and a
    /// [`Change::RepairMonitor`] work each (cause monitor lost), unless a work on it is in
    /// flight (it is checked again when that ends) or its last repair failed (it waits out
    /// its backoff; the retry's pass checks all). Called for a container whose monitor ended
    /// (the exit watcher's pidfd, [`crate::reconcile::exits`]), and for all at start-up (a
    /// monitor that died while the agent was down) and at each resync (the backstop).
    pub(super) fn repair_monitors(&mut self, only: Option<&str>) {
        let found = self.p.supervisor.unmonitored(&self.p.store, only);
        self.unmonitored
            .retain(|n| only.is_some_and(|o| o != n) || found.contains(n));
        let now = std::time::Instant::now();
        for name in found {
            if !self.unmonitored.contains(&name) {
                tracing::warn!(container = %name, "its monitor process is gone (killed from outside): its output is not logged and its exit would be lost; stopping it and starting it again under a new monitor");
                let _ = lock(&self.p.store).transaction(|tx| {
                    pass::event(
                        tx,
                        "container.monitor-lost",
                        &format!("container/{name}"),
                        json!({"reason": "its monitor process is gone; it is stopped and started again under a new monitor", "cause": Cause::MonitorLost.to_string()}),
                    )
                });
                self.unmonitored.push(name.clone());
            }
            let key = crate::reconcile::work::key(Kind::Container, &name);
            if self.queue.busy(&key) {
                self.recheck.insert(name);
                continue;
            }
            if self.failing.held(&key, now).is_some() {
                continue;
            }
            self.submit_one(Work::container(
                Change::RepairMonitor { name },
                Cause::MonitorLost,
                "its monitor process is gone",
            ));
        }
        self.p
            .board
            .set_monitor_lost(self.unmonitored.iter().cloned());
        self.publish_warnings();
    }

    pub(super) fn publish_warnings(&self) {
        let mut w = self.forward_problems.clone();
        w.extend(self.unmonitored.iter().map(|n| {
            format!(
                "container {n} runs without its monitor (killed from outside): it is being \
                 stopped and started again under a new monitor"
            )
        }));
        self.p.board.set_warnings(w);
    }

    /// Host problems for `agent status`: traffic on the agent's bridges that another firewall
    /// (Docker's FORWARD policy DROP, another nftables table, firewalld) would drop, and
    /// networks whose subnet another interface of the host has come to overlap. Bridges a
    /// reloaded firewalld forgot are put back in its trusted zone first.
    pub(super) fn host_warnings(&mut self) {
        let Some(Ok(net)) = self.p.applier.as_ref().map(|a| &a.net) else {
            return;
        };
        // A firewalld reload forgets the bridges' zone: put them back first.
        if let Err(e) = net.driver().refresh_firewalld() {
            tracing::warn!(error = %e, "firewalld: adding the bridges to the trusted zone again");
        }
        match net.driver().host_problems() {
            Ok(w) => {
                for line in &w {
                    tracing::warn!(problem = %line, "host problem for the agent's networks");
                }
                self.forward_problems = w;
                self.publish_warnings();
            }
            Err(e) => tracing::debug!(error = %e, "cannot check the host's forwarding rules"),
        }
    }

    /// Drift: the network of every running bridge-mode container checked (changing nothing);
    /// each one that drifted gets a [`Change::RepairNetwork`] work, cause network drift or netns
    /// gone, added to the pass `open`. Containers with a work in flight are left to it (a
    /// container being created or stopped looks like drift), and all are while a network is
    /// being changed; a container whose last change failed waits out its backoff.
    pub(super) fn network_repair(&mut self, open: &mut super::OpenReport) {
        let Some(applier) = self.p.applier.as_ref() else {
            return;
        };
        let Ok(net) = &applier.net else {
            return;
        };
        if self.queue.in_flight_where(|k| k.starts_with("network/")) > 0 {
            return;
        }
        let (queue, failing, now) = (&self.queue, &self.failing, std::time::Instant::now());
        let busy = |name: &str| {
            let k = crate::reconcile::work::key(Kind::Container, name);
            queue.busy(&k) || failing.held(&k, now).is_some()
        };
        let (found, failed) = net.drift(&self.p.store, &busy);
        open.report.failed.extend(failed);
        let works: Vec<Work> = found
            .into_iter()
            .map(|(name, drift)| {
                let (cause, what) = match drift {
                    Drift::NamespaceGone => (
                        Cause::NetnsGone,
                        "its network namespace is gone".to_string(),
                    ),
                    Drift::NotAttached => (Cause::NetworkDrift, "it is not attached".to_string()),
                    Drift::Missing(m) => (Cause::NetworkDrift, format!("missing {}", m.join(", "))),
                    Drift::Intact => (Cause::NetworkDrift, String::new()),
                };
                Work::container(Change::RepairNetwork { name }, cause, what)
            })
            .collect();
        for w in works {
            let id = self.submit_one(w);
            open.outstanding.insert(id);
        }
    }

    /// `stop_containers_on_exit`: stops every running container (in parallel: stop signal,
    /// grace, SIGKILL) and records it exited; the restart policy decides at the next start.
    pub async fn stop_all(&mut self) {
        let Some(applier) = self.p.applier.clone() else {
            return;
        };
        let running: Vec<String> = lock(&self.p.store)
            .transaction(|tx| tx.containers())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                matches!(
                    c.state,
                    crate::store::ContainerState::Running
                        | crate::store::ContainerState::Restarting
                )
            })
            .map(|c| c.name)
            .collect();
        let apply = apply_fn(Some(applier), self.p.store.clone());
        let (mut q, mut rx) = Queue::new(apply, running.len().max(1));
        for name in running {
            q.submit_one(Work::container(
                Change::StopContainer { name },
                Cause::AgentExit,
                "agent exit (stop_containers_on_exit)",
            ));
        }
        while q.in_flight() > 0 {
            let Some(d) = rx.recv().await else { break };
            q.finish(&d);
            match &d.result {
                Ok(a) => tracing::info!(change = %a.line, "stopped"),
                Err(e) => {
                    tracing::warn!(container = %d.work.step.change.name(), error = %e, "cannot stop")
                }
            }
        }
    }
}
