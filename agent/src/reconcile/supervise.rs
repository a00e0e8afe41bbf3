//! Container supervision: noticing exits, recording them, and restarting per policy with backoff.
//!
//! The store is the agent's record, the exec driver (`agent monitor` state files) the truth about
//! processes. [`Supervisor::check`] compares the two for every container the store has as
//! `running` or `restarting`:
//! - still running: nothing (at start-up this is the adoption: no restart, no new process);
//! - exited: the exit (code, signal, OOM kill, time) is recorded with a `container.exit` event,
//!   then the restart policy decides ([`super::restart`]). A restart is not done on the spot: the
//!   container is marked `restarting` and the loop's timer gets a deadline after its backoff
//!   delay, so a crash loop never blocks anything;
//! - gone without a recorded exit (monitor killed, host rebooted): recorded as exit code 255
//!   ([`super::restart::LOST_EXIT_CODE`]), as Docker does.
//!
//! Checks are per container when an exit event names one, for all containers at start-up and
//! resync. The restart itself is a work ([`Change::RestartContainer`](crate::plan::Change),
//! cause restart policy) that the loop submits when the delay is over and the applier runs like
//! any other change. The restart policy and the health check come from the store's effective
//! config (`live.restart`, `live.healthcheck`), read
//! leniently: a config the supervisor cannot read means policy `no`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::pass::{event, now_ms};
use super::restart::{Backoff, Decision, ExitFacts, LOST_EXIT_CODE, Occasion, RestartPolicy};
use crate::daemon::config::BackoffConfig;
use crate::driver::exec::{AnyExecDriver, ContainerStatus, ExecDriver};
use crate::manifest;
use crate::store::{ContainerRecord, ContainerState, Store};

impl From<&manifest::RestartPolicy> for RestartPolicy {
    fn from(p: &manifest::RestartPolicy) -> Self {
        match p {
            manifest::RestartPolicy::No => RestartPolicy::No,
            manifest::RestartPolicy::Always => RestartPolicy::Always,
            manifest::RestartPolicy::OnFailure { max_retries } => RestartPolicy::OnFailure {
                max_retries: *max_retries,
            },
            manifest::RestartPolicy::UnlessStopped => RestartPolicy::UnlessStopped,
        }
    }
}

/// The restart policy in a stored effective config (`live.restart`); `no` when unreadable.
pub fn policy_of(config: &Value) -> RestartPolicy {
    config
        .get("live")
        .and_then(|l| l.get("restart"))
        .and_then(|r| serde_json::from_value::<manifest::RestartPolicy>(r.clone()).ok())
        .map(|p| RestartPolicy::from(&p))
        .unwrap_or_default()
}

/// `live.healthcheck.onUnhealthy` of a stored effective config (`restart` when absent).
pub fn on_unhealthy_of(config: &Value) -> manifest::OnUnhealthy {
    config
        .get("live")
        .and_then(|l| l.get("healthcheck"))
        .and_then(|h| h.get("onUnhealthy"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The stop grace period in a stored effective config (`live.stopGracePeriod`).
pub fn grace_of(config: &Value) -> Option<Duration> {
    config
        .get("live")
        .and_then(|l| l.get("stopGracePeriod"))
        .and_then(|g| serde_json::from_value::<manifest::Duration>(g.clone()).ok())
        .map(|d| d.0)
}

/// What a check found and did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Recorded an exit; `restart_in` when the policy restarts it after that delay (the loop
    /// schedules a [`Change::RestartContainer`](crate::plan::Change) work then).
    Exited {
        name: String,
        exit_code: i32,
        restart_in: Option<Duration>,
        reason: String,
    },
}

/// Per-container restart backoff; lives as long as the agent, owned by the loop.
pub struct Supervisor {
    exec: AnyExecDriver,
    backoff: BackoffConfig,
    backoffs: HashMap<String, Backoff>,
}

fn ms_of(rfc3339: Option<&str>) -> Option<i64> {
    let t = crate::driver::exec::time::parse(rfc3339?)?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    pub fn new(exec: AnyExecDriver, backoff: BackoffConfig) -> Supervisor {
        Supervisor {
            exec,
            backoff,
            backoffs: HashMap::new(),
        }
    }

    pub fn exec(&self) -> &AnyExecDriver {
        &self.exec
    }

    /// Forgets the backoff of a container (recreated, started or removed by the plan or a user).
    pub fn forget(&mut self, name: &str) {
        self.backoffs.remove(name);
    }

    /// The next delay after a restart of `name` failed (it counts as a run of no length).
    pub fn failed_restart_delay(&mut self, name: &str) -> Duration {
        self.backoffs
            .entry(name.to_string())
            .or_default()
            .next_delay(&self.backoff, Duration::ZERO)
    }

    /// Compares the store with the processes and records every exit (see module docs): all
    /// containers, or only `only`. The store is locked per transaction, never across a read of
    /// the exec driver.
    pub fn check(
        &mut self,
        store: &Mutex<Store>,
        occasion: Occasion,
        only: Option<&str>,
    ) -> crate::store::Result<Vec<Finding>> {
        let containers = match only {
            Some(name) => lock(store)
                .transaction(|tx| tx.container(name))?
                .into_iter()
                .collect(),
            None => lock(store).transaction(|tx| tx.containers())?,
        };
        let mut findings = Vec::new();
        for c in containers {
            match c.state {
                ContainerState::Running => {}
                // A container left `restarting` by an agent that went down: restart it now.
                ContainerState::Restarting if occasion == Occasion::AgentStart => {
                    findings.push(Finding::Exited {
                        name: c.name.clone(),
                        exit_code: c.exit_code.unwrap_or(LOST_EXIT_CODE),
                        restart_in: Some(Duration::ZERO),
                        reason: "left restarting by the agent's last run".into(),
                    });
                    continue;
                }
                // Exited or stopped before the agent went down: at start-up the policy may
                // bring it back (`always` even after `agent stop`).
                ContainerState::Exited | ContainerState::StoppedByUser
                    if occasion == Occasion::AgentStart =>
                {
                    if let Some(f) = self.decide(store, c, occasion, false)? {
                        findings.push(f);
                    }
                    continue;
                }
                _ => continue,
            }
            let info = match self.exec.state(&c.id) {
                Ok(info) => info,
                Err(crate::driver::exec::Error::NotFound(_)) => {
                    crate::driver::exec::ContainerInfo {
                        status: ContainerStatus::Unknown {
                            reason: "its runtime state is gone".into(),
                        },
                        id: c.id.clone(),
                        name: c.name.clone(),
                        created_at: String::new(),
                        started_at: None,
                        finished_at: None,
                        exit_note: None,
                        monitor_pid: None,
                    }
                }
                Err(e) => {
                    tracing::warn!(container = %c.name, error = %e, "cannot read container state");
                    continue;
                }
            };
            let status = info.status.clone();
            let (exit_code, signal, oom, finished) = match &status {
                ContainerStatus::Running { .. } | ContainerStatus::Paused { .. } => continue,
                ContainerStatus::Created => continue,
                ContainerStatus::Exited {
                    exit_code,
                    signal,
                    oom_killed,
                } => (
                    *exit_code,
                    *signal,
                    *oom_killed,
                    ms_of(info.finished_at.as_deref()),
                ),
                ContainerStatus::Failed { .. } | ContainerStatus::Unknown { .. } => {
                    (LOST_EXIT_CODE, None, false, None)
                }
            };
            let mut rec = c.clone();
            rec.state = ContainerState::Exited;
            rec.exit_code = Some(exit_code);
            rec.signal = signal;
            rec.oom_killed = oom;
            rec.finished_at = Some(finished.unwrap_or_else(now_ms));
            rec.health = None;
            let detail = match &status {
                ContainerStatus::Unknown { reason } => {
                    json!({"exitCode": exit_code, "lost": reason})
                }
                ContainerStatus::Failed { error } => json!({"exitCode": exit_code, "lost": error}),
                _ => match &info.exit_note {
                    // Stopped by the driver after its monitor was lost (`agent stop`).
                    Some(note) => {
                        json!({"exitCode": exit_code, "signal": signal, "oomKilled": oom, "reason": note})
                    }
                    None => json!({"exitCode": exit_code, "signal": signal, "oomKilled": oom}),
                },
            };
            lock(store).transaction(|tx| {
                tx.upsert_container(&rec)?;
                event(
                    tx,
                    "container.exit",
                    &format!("container/{}", rec.name),
                    detail,
                )
            })?;
            tracing::info!(container = %rec.name, exit_code, "container exited");
            if let Some(f) = self.decide(store, rec, occasion, true)? {
                findings.push(f);
            }
        }
        Ok(findings)
    }

    /// Applies the restart policy to an exited container record; `just_exited`: its exit was
    /// recorded just now (not before the agent went down).
    fn decide(
        &mut self,
        store: &Mutex<Store>,
        mut rec: ContainerRecord,
        occasion: Occasion,
        just_exited: bool,
    ) -> crate::store::Result<Option<Finding>> {
        let policy = policy_of(&rec.config);
        let facts = ExitFacts {
            exit_code: rec.exit_code.unwrap_or(LOST_EXIT_CODE),
            manually_stopped: rec.state == ContainerState::StoppedByUser,
            restart_count: rec.restart_count,
        };
        let exit_code = facts.exit_code;
        match policy.decide(occasion, facts) {
            Decision::Stay(reason) => {
                if just_exited {
                    lock(store).transaction(|tx| {
                        event(
                            tx,
                            "container.stays-exited",
                            &format!("container/{}", rec.name),
                            json!({"reason": reason}),
                        )
                    })?;
                }
                Ok(just_exited.then_some(Finding::Exited {
                    name: rec.name,
                    exit_code,
                    restart_in: None,
                    reason,
                }))
            }
            Decision::Restart => {
                let ran_for = match (rec.started_at, rec.finished_at) {
                    (Some(s), Some(f)) if f > s => Duration::from_millis((f - s).unsigned_abs()),
                    _ => Duration::ZERO,
                };
                let delay = if occasion == Occasion::AgentStart {
                    // Boot: bring it back at once (in dependency order: see the loop).
                    Duration::ZERO
                } else {
                    self.backoffs
                        .entry(rec.name.clone())
                        .or_default()
                        .next_delay(&self.backoff, ran_for)
                };
                rec.state = ContainerState::Restarting;
                let reason = format!(
                    "restart policy {policy}: restart in {}",
                    super::restart::delay_text(delay)
                );
                lock(store).transaction(|tx| {
                    tx.upsert_container(&rec)?;
                    event(
                        tx,
                        "container.restart-scheduled",
                        &format!("container/{}", rec.name),
                        json!({"reason": reason, "delayMs": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)}),
                    )
                })?;
                Ok(Some(Finding::Exited {
                    name: rec.name,
                    exit_code,
                    restart_in: Some(delay),
                    reason,
                }))
            }
        }
    }

    /// Whether container `name` runs `unhealthy` with a policy that restarts it and
    /// `healthcheck.onUnhealthy: restart`: then it is to be stopped
    /// ([`Cause::Unhealthy`](super::work::Cause)); its exit is handled like any other. With
    /// `onUnhealthy: none` it is only reported, as Docker does.
    pub fn needs_unhealthy_stop(&self, store: &Mutex<Store>, name: &str) -> bool {
        let Ok(Some(c)) = lock(store).transaction(|tx| tx.container(name)) else {
            return false;
        };
        c.state == ContainerState::Running
            && c.health == Some(crate::store::HealthStatus::Unhealthy)
            && policy_of(&c.config).restarts_unhealthy()
            && on_unhealthy_of(&c.config) == manifest::OnUnhealthy::Restart
            && self.exec.state(&c.id).is_ok_and(|i| i.status.is_running())
    }

    /// The containers recorded `running` whose process runs without its monitor (killed from
    /// outside): their output is no longer logged and their exit code would be lost. All, or
    /// only `only`.
    pub fn unmonitored(&self, store: &Mutex<Store>, only: Option<&str>) -> Vec<String> {
        let containers = match only {
            Some(name) => lock(store)
                .transaction(|tx| tx.container(name))
                .map(|c| c.into_iter().collect::<Vec<_>>()),
            None => lock(store).transaction(|tx| tx.containers()),
        };
        let Ok(containers) = containers else {
            return Vec::new();
        };
        containers
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter(|c| {
                matches!(
                    self.exec.state(&c.id).map(|i| i.status),
                    Ok(ContainerStatus::Running {
                        monitored: false,
                        ..
                    })
                )
            })
            .map(|c| c.name)
            .collect()
    }

    /// The containers recorded `restarting` (waiting for their restart delay).
    pub fn restarting(store: &Mutex<Store>) -> crate::store::Result<Vec<ContainerRecord>> {
        Ok(lock(store)
            .transaction(|tx| tx.containers())?
            .into_iter()
            .filter(|c| c.state == ContainerState::Restarting)
            .collect())
    }
}

/// Dependency level of each container from its stored effective config: 0 without
/// dependencies, else one more than its deepest dependency (a cycle, which validation refuses,
/// counts as no dependency).
pub fn dependency_levels(containers: &[ContainerRecord]) -> HashMap<String, u32> {
    let deps: HashMap<&str, Vec<String>> = containers
        .iter()
        .map(|c| {
            let d = serde_json::from_value::<crate::plan::EffectiveContainer>(c.config.clone())
                .map(|cfg| cfg.dependencies().iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            (c.name.as_str(), d)
        })
        .collect();
    fn level<'a>(
        n: &'a str,
        deps: &'a HashMap<&str, Vec<String>>,
        memo: &mut HashMap<String, u32>,
        visiting: &mut Vec<&'a str>,
    ) -> u32 {
        if let Some(l) = memo.get(n) {
            return *l;
        }
        if visiting.contains(&n) {
            return 0;
        }
        visiting.push(n);
        let l = deps
            .get(n)
            .map(|ds| {
                ds.iter()
                    .filter(|d| deps.contains_key(d.as_str()))
                    .map(|d| level(d, deps, memo, visiting) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        visiting.pop();
        memo.insert(n.to_string(), l);
        l
    }
    let mut memo = HashMap::new();
    for c in containers {
        level(&c.name, &deps, &mut memo, &mut Vec::new());
    }
    memo
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Container records with the effective configs of `specs` (name, spec lines).
    fn records(specs: &[(&str, &str)]) -> Vec<ContainerRecord> {
        let text: String = specs
            .iter()
            .map(|(n, extra)| {
                format!(
                    "---\napiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {n}\nspec:\n  image: 127.0.0.1:5000/busybox\n  networkMode: none\n{extra}"
                )
            })
            .collect();
        let loaded =
            manifest::Loaded::from_sources(vec![("/m/all.yaml".into(), text.into_bytes())]);
        let objects: Vec<manifest::Manifest> = match &loaded.files[0].outcome {
            Ok(o) => o.iter().map(|o| o.manifest.clone()).collect(),
            Err(e) => panic!("{e:?}"),
        };
        let inputs = vec![crate::plan::FileInput {
            path: "/m/all.yaml".into(),
            state: crate::plan::FileState::Loaded(objects),
        }];
        let desired =
            crate::plan::Desired::build(inputs, &crate::plan::Actual::default().resolutions());
        desired
            .containers
            .iter()
            .map(|(n, e)| {
                ContainerRecord::new(
                    n,
                    format!("{n}-1"),
                    crate::plan::store::container_config_value(&e.value.config),
                    "h",
                    "sha256:ab",
                    1,
                )
            })
            .collect()
    }

    #[test]
    fn dependency_levels_put_targets_first() {
        let recs = records(&[
            ("app", "  volumesFrom: [data]\n"),
            ("data", "  volumesFrom: [base]\n"),
            ("base", ""),
            ("side", ""),
            ("top", "  volumesFrom: [app, side]\n"),
        ]);
        assert_eq!(recs.len(), 5);
        let l = dependency_levels(&recs);
        assert_eq!(l["base"], 0);
        assert_eq!(l["side"], 0);
        assert_eq!(l["data"], 1);
        assert_eq!(l["app"], 2);
        assert_eq!(l["top"], 3);
        // An unreadable config has no known dependencies.
        let mut recs = recs;
        recs[0].config = json!({"garbage": true});
        assert!(dependency_levels(&recs).values().all(|v| *v <= 3));
    }

    #[test]
    fn policy_from_stored_config() {
        let c = json!({"live": {"restart": {"policy": "on-failure", "maxRetries": 3}, "stopGracePeriod": "5s"}});
        let p = policy_of(&c);
        assert!(
            p == RestartPolicy::OnFailure {
                max_retries: Some(3)
            },
            "{p:?} from {}",
            serde_json::to_string(&manifest::RestartPolicy::OnFailure {
                max_retries: Some(3)
            })
            .unwrap()
        );
        assert_eq!(grace_of(&c), Some(Duration::from_secs(5)));
        assert_eq!(policy_of(&json!({})), RestartPolicy::No);
        assert_eq!(
            policy_of(&json!({"live": {"restart": "always"}})),
            RestartPolicy::Always
        );
    }
}
