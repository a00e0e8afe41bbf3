//! Works the plan does not make: the restart policy's restart, the stop of an unhealthy
//! container, `agent stop` / `agent start`, the stop at the agent's exit, network drift repair,
//! the repair of a container whose monitor is gone; and the dispatch of every work to its
//! handler.

use serde_json::json;

use super::{Applied, Applier, ApplyError, INTENT_START, debug_panic, debug_pause, new_intent};
use crate::driver::exec::{ContainerStatus, ExecDriver};
use crate::plan::{Change, EffectiveContainer};
use crate::reconcile::pass::{event, now_ms};
use crate::reconcile::translate::network::{SharedStore, lock};
use crate::reconcile::work::{Cause, Work};
use crate::store::ContainerState;

impl Applier {
    /// Applies one work (see [`super::work`]): a planned step, or a change decided by the
    /// restart policy, a health check, a user or the agent's exit. The only way the agent
    /// changes containers, networks, volumes and images.
    pub fn apply_work(&self, store: &SharedStore, work: &Work) -> Result<Applied, ApplyError> {
        debug_panic(work);
        let name = work.step.change.name();
        match (&work.step.change, &work.cause) {
            (Change::StopContainer { .. }, Cause::User { grace }) => {
                let rec = lock(store).transaction(|tx| tx.container(name))?;
                let _stopping = rec.and_then(|rec| {
                    let g = grace.or_else(|| crate::reconcile::supervise::grace_of(&rec.config));
                    self.begin_stop(store, name, &rec.id, g, "agent stop")
                });
                let r = crate::reconcile::request::stop(store, &self.exec, name, *grace)
                    .map_err(|e| ApplyError::Other(e.to_string()))?;
                Ok(Applied {
                    line: format!("agent stop {name}: {}", r.state),
                    changed: r.changed,
                })
            }
            (Change::StartContainer { .. }, Cause::User { .. }) => {
                self.attach_if_stopped(store, name)?;
                let r = crate::reconcile::request::start(store, &self.exec, name)
                    .map_err(|e| ApplyError::Other(e.to_string()))?;
                Ok(Applied {
                    line: format!("agent start {name}: {}", r.state),
                    changed: r.changed,
                })
            }
            (Change::StopContainer { .. }, Cause::Unhealthy) => self.stop_unhealthy(store, name),
            (Change::StopContainer { .. }, Cause::AgentExit) => {
                self.stop(store, name)?;
                let object = format!("container/{name}");
                lock(store).transaction(|tx| {
                    event(
                        tx,
                        "container.stop",
                        &object,
                        json!({"reason": "agent exit (stop_containers_on_exit)"}),
                    )
                })?;
                Ok(Applied::from(format!(
                    "stopped {name} (stop_containers_on_exit)"
                )))
            }
            (Change::RemoveVolume { .. }, Cause::User { .. }) => {
                self.remove_volume_by_user(store, name)
            }
            (Change::RestartContainer { .. }, _) => self.restart(store, name),
            (Change::RepairNetwork { .. }, cause) => self.repair_network(store, name, cause),
            (Change::RepairMonitor { .. }, _) => self.repair_monitor(store, name),
            _ => self.apply(store, &work.step).map(Applied::from),
        }
    }

    /// A stop for a failed health check: the process is stopped (signal, grace, SIGKILL) and its
    /// exit then handled like any other, by the restart policy.
    fn stop_unhealthy(&self, store: &SharedStore, name: &str) -> Result<Applied, ApplyError> {
        let Some(rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(Applied::unchanged(format!("{name} is gone")));
        };
        if rec.state != ContainerState::Running
            || !self
                .exec
                .state(&rec.id)
                .is_ok_and(|i| i.status.is_running())
        {
            return Ok(Applied::unchanged(format!("{name} is not running")));
        }
        lock(store).transaction(|tx| {
            event(
                tx,
                "container.unhealthy-stop",
                &format!("container/{name}"),
                json!({"reason": "unhealthy; its restart policy restarts it"}),
            )
        })?;
        let grace = crate::reconcile::supervise::grace_of(&rec.config);
        let _stopping = self.begin_stop(store, name, &rec.id, grace, "unhealthy");
        self.exec
            .stop(&rec.id, crate::reconcile::supervise::grace_of(&rec.config))?;
        Ok(Applied::from(format!("stopped unhealthy {name}")))
    }

    /// Attaches the network of a stopped bridge-mode container again (same address).
    fn attach_if_stopped(&self, store: &SharedStore, name: &str) -> Result<(), ApplyError> {
        let Some(rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(());
        };
        if let Ok(config) = serde_json::from_value::<EffectiveContainer>(rec.config.clone())
            && crate::reconcile::translate::network::uses_driver(&config)
            && let Ok(net) = &self.net
        {
            net.ensure_attached(store, &self.state_dir, &rec.id, &config)?;
        }
        Ok(())
    }

    /// The restart policy's restart of an exited container: its network first (detached by a
    /// stop, or gone with a reboot), then a journalled start; the restart count grows by one.
    pub(super) fn restart(&self, store: &SharedStore, name: &str) -> Result<Applied, ApplyError> {
        let Some(rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(Applied::unchanged(format!("{name} is gone")));
        };
        if rec.state != ContainerState::Restarting {
            return Ok(Applied::unchanged(format!(
                "{name} is {}: no restart",
                rec.state
            )));
        }
        self.attach_if_stopped(store, name)?;
        let pid = self.start_journalled(store, name, &rec.id, true)?;
        let mut rec = rec;
        rec.state = ContainerState::Running;
        rec.restart_count = rec.restart_count.saturating_add(1);
        rec.started_at = Some(now_ms());
        rec.runtime.container_pid = Some(pid.pid);
        rec.runtime.monitor_pid = super::monitor_of(&self.exec, &rec.id);
        rec.exit_code = None;
        rec.signal = None;
        rec.oom_killed = false;
        let count = rec.restart_count;
        lock(store).transaction(|tx| {
            tx.upsert_container(&rec)?;
            tx.finish_intent(pid.intent)?;
            event(
                tx,
                "container.restart",
                &format!("container/{name}"),
                json!({"restartCount": count}),
            )
        })?;
        tracing::info!(container = %name, restarts = count, "container restarted");
        Ok(Applied::from(format!("restarted {name}")))
    }

    /// Drift repair of a bridge-mode container's network ([`Change::RepairNetwork`]): a missing
    /// bridge or veth is put back inside its namespace (the process keeps running); a namespace
    /// that is gone is made again under the same address and ports, and a running container is
    /// stopped and started into it. That restart is journalled as a start intent (payload
    /// `"repair": true`) taken before the stop: recovery starts the container when a crash cuts
    /// it between the stop and the start, and adopts the process when it cut after the start.
    pub(super) fn repair_network(
        &self,
        store: &SharedStore,
        name: &str,
        cause: &Cause,
    ) -> Result<Applied, ApplyError> {
        let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(Applied::unchanged(format!("{name} is gone")));
        };
        if !matches!(
            rec.state,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Created
        ) {
            return Ok(Applied::unchanged(format!(
                "{name} is {}: no network to repair",
                rec.state
            )));
        }
        let config = serde_json::from_value::<EffectiveContainer>(rec.config.clone())
            .map_err(|e| ApplyError::Other(format!("{name}: its recorded config: {e}")))?;
        if !crate::reconcile::translate::network::uses_driver(&config) {
            return Ok(Applied::unchanged(format!("{name} is not in bridge mode")));
        }
        let net = self.net()?;
        let running = self
            .exec
            .state(&rec.id)
            .is_ok_and(|i| i.status.is_running());
        let line = match net.driver().repair(&rec.id).map_err(|e| {
            ApplyError::Network(crate::reconcile::translate::network::NetError::from(e))
        })? {
            crate::driver::network::Repair::Intact => {
                return Ok(Applied::unchanged(format!("network of {name} is intact")));
            }
            crate::driver::network::Repair::Repaired(what) => {
                format!("repaired network of {name}: {}", what.join(", "))
            }
            _ if !running => {
                let what = net
                    .ensure_attached(store, &self.state_dir, &rec.id, &config)?
                    .unwrap_or_default();
                format!("network of {name}: {what}")
            }
            _ => {
                let intent = lock(store).transaction(|tx| {
                    tx.begin_intent(
                        &new_intent(
                            INTENT_START,
                            name,
                            json!({"id": rec.id, "restart": false, "repair": true}),
                        ),
                        now_ms(),
                    )
                })?;
                self.exec
                    .stop(&rec.id, crate::reconcile::supervise::grace_of(&rec.config))?;
                let what = net
                    .ensure_attached(store, &self.state_dir, &rec.id, &config)?
                    .unwrap_or_default();
                let pid = self.start_or_adopt(name, &rec.id)?;
                rec.state = ContainerState::Running;
                rec.runtime.container_pid = Some(pid);
                rec.runtime.monitor_pid = super::monitor_of(&self.exec, &rec.id);
                rec.started_at = Some(now_ms());
                rec.exit_code = None;
                rec.signal = None;
                lock(store).transaction(|tx| {
                    tx.upsert_container(&rec)?;
                    tx.finish_intent(intent)
                })?;
                tracing::warn!(container = %name, "network namespace was gone: attached again and restarted");
                format!("network of {name} was gone: {what}; restarted")
            }
        };
        tracing::warn!(repair = %line, cause = %cause, "network drift repaired");
        lock(store).transaction(|tx| {
            event(
                tx,
                "network.repair",
                &format!("container/{name}"),
                json!({"reason": line, "cause": cause.to_string()}),
            )
        })?;
        Ok(Applied::from(line))
    }

    /// A running container whose monitor is gone ([`Change::RepairMonitor`], cause monitor
    /// lost): stopped (its stop signal, grace, SIGKILL; the exec driver reads the real exit
    /// status as the process's tracer and records it, since no monitor will) and started again
    /// at once under a new monitor, whatever its restart policy: the stop is the agent's repair,
    /// not an exit of the container, and is not counted as a restart. The exit is recorded as an
    /// event `container.exit` with cause `monitor lost` and how its status was read; the start
    /// is journalled by a start intent (payload `"repair": true, "monitorLost": true`) taken
    /// before the stop: recovery starts the container when a crash cuts between the stop and
    /// the start, and a crash before the stop ends leaves it running without its monitor, which
    /// start-up finds and repairs again.
    pub(super) fn repair_monitor(
        &self,
        store: &SharedStore,
        name: &str,
    ) -> Result<Applied, ApplyError> {
        let Some(mut rec) = lock(store).transaction(|tx| tx.container(name))? else {
            return Ok(Applied::unchanged(format!("{name} is gone")));
        };
        if rec.state != ContainerState::Running {
            return Ok(Applied::unchanged(format!(
                "{name} is {}: no monitor to repair",
                rec.state
            )));
        }
        match self.exec.state(&rec.id)?.status {
            ContainerStatus::Running {
                monitored: false, ..
            } => {}
            ContainerStatus::Running { .. } | ContainerStatus::Paused { .. } => {
                return Ok(Applied::unchanged(format!(
                    "the monitor of {name} is alive"
                )));
            }
            _ => {
                return Ok(Applied::unchanged(format!(
                    "{name} no longer runs: its exit is handled by the exit check"
                )));
            }
        }
        let object = format!("container/{name}");
        let intent = lock(store).transaction(|tx| {
            tx.begin_intent(
                &new_intent(
                    INTENT_START,
                    name,
                    json!({"id": rec.id, "restart": false, "repair": true, "monitorLost": true}),
                ),
                now_ms(),
            )
        })?;
        let grace = crate::reconcile::supervise::grace_of(&rec.config);
        let stopped = {
            let _stopping = self.begin_stop(store, name, &rec.id, grace, "monitor lost");
            self.exec.stop(&rec.id, grace)?
        };
        let (exit_code, signal, how) = match &stopped.status {
            ContainerStatus::Exited {
                exit_code, signal, ..
            } => (*exit_code, *signal, stopped.exit_note.clone()),
            other => (
                crate::reconcile::restart::LOST_EXIT_CODE,
                None,
                Some(format!("after the stop: {other:?}")),
            ),
        };
        let how = how.unwrap_or_else(|| "stopped by the agent".into());
        lock(store).transaction(|tx| {
            event(
                tx,
                "container.exit",
                &object,
                json!({"exitCode": exit_code, "signal": signal, "cause": "monitor lost", "reason": how}),
            )
        })?;
        tracing::warn!(container = %name, exit_code, how = %how, "container whose monitor was gone stopped; starting it under a new monitor");
        debug_pause("monitor-repair", name);
        self.attach_if_stopped(store, name)?;
        let pid = self.start_or_adopt(name, &rec.id)?;
        rec.state = ContainerState::Running;
        rec.runtime.container_pid = Some(pid);
        rec.runtime.monitor_pid = super::monitor_of(&self.exec, &rec.id);
        rec.started_at = Some(now_ms());
        rec.exit_code = None;
        rec.signal = None;
        rec.oom_killed = false;
        rec.health = None;
        let line = format!(
            "{name} ran without its monitor: stopped (exit code {exit_code}) and started under a new monitor"
        );
        lock(store).transaction(|tx| {
            tx.upsert_container(&rec)?;
            tx.finish_intent(intent)?;
            event(
                tx,
                "container.monitor-repaired",
                &object,
                json!({"reason": line, "cause": "monitor lost", "exitCode": exit_code}),
            )
        })?;
        tracing::warn!(container = %name, pid, "supervised again under a new monitor");
        Ok(Applied::from(line))
    }
}
