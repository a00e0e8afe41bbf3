//! The health prober: runs each running container's health-check command (through the exec
//! driver, inside the container) on its schedule and feeds the results to the
//! [`super::health::Health`] state machine.
//!
//! One task ticks every 500 ms and starts the probes that are due, each on the blocking pool with
//! its timeout (a probe that times out counts as a failure; its process is left to finish on its
//! own, as the exec driver cannot cancel it). A status change is written to the store
//! (`containers.health_status`, a `container.health` event) and fires
//! [`Trigger::Health`](super::trigger::Trigger): the next pass stops an `unhealthy` container whose
//! restart policy restarts (every policy but `no`), and the exit is then handled like any other.
//! The set of probed containers is refreshed by every pass ([`Prober::sync`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::health::{Health, HealthStatus, HealthTiming, ProbeResult};
use super::pass::{event, now_ms};
use super::trigger::{Trigger, Triggers};
use crate::api::types::PassReport;
use crate::driver::exec::{AnyExecDriver, ExecDriver, ExecRequest, ExecStdio};
use crate::manifest;
use crate::store::{self, ContainerState, Store};

/// The health check in a stored effective config (`live.healthcheck`).
pub fn healthcheck_of(config: &Value) -> Option<(Vec<String>, HealthTiming)> {
    let h = config.get("live")?.get("healthcheck")?;
    let h: manifest::Healthcheck = serde_json::from_value(h.clone()).ok()?;
    if h.command.is_empty() {
        return None;
    }
    Some((
        h.command,
        HealthTiming {
            interval: h.interval.0,
            timeout: h.timeout.0,
            retries: h.retries,
            start_period: h.start_period.0,
        },
    ))
}

struct Target {
    id: String,
    started_at: Option<i64>,
    command: Vec<String>,
    health: Health,
    running: bool,
}

/// The probed containers, shared by the passes and the prober task.
#[derive(Clone, Default)]
pub struct Prober {
    targets: Arc<Mutex<HashMap<String, Target>>>,
}

impl Prober {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Target>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the probed set equal to the running containers with a health check. A container
    /// that (re)started since the last sync starts over in `starting`.
    pub fn sync(&self, store: &mut Store) -> store::Result<()> {
        let containers = store.transaction(|tx| tx.containers())?;
        let mut targets = self.lock();
        let mut keep = Vec::new();
        for c in containers {
            if c.state != ContainerState::Running {
                continue;
            }
            let Some((command, timing)) = healthcheck_of(&c.config) else {
                continue;
            };
            keep.push(c.name.clone());
            let fresh = targets
                .get(&c.name)
                .is_none_or(|t| t.id != c.id || t.started_at != c.started_at);
            if fresh {
                // The monotonic start: now minus how long ago the store says it started.
                let ago = c
                    .started_at
                    .map(|s| Duration::from_millis((now_ms() - s).max(0).unsigned_abs()))
                    .unwrap_or_default();
                let started = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
                targets.insert(
                    c.name.clone(),
                    Target {
                        id: c.id.clone(),
                        started_at: c.started_at,
                        command,
                        health: Health::new(timing, started),
                        running: false,
                    },
                );
                if c.health != Some(store::HealthStatus::Starting) {
                    let mut rec = c.clone();
                    rec.health = Some(store::HealthStatus::Starting);
                    store.transaction(|tx| tx.upsert_container(&rec))?;
                }
            } else if let Some(t) = targets.get_mut(&c.name) {
                t.health.set_timing(timing, Instant::now());
                t.command = command;
            }
        }
        targets.retain(|name, _| keep.contains(name));
        Ok(())
    }

    /// Starts the prober task.
    pub fn spawn(
        &self,
        exec: Arc<AnyExecDriver>,
        store: Arc<Mutex<Store>>,
        triggers: Triggers<PassReport>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let due: Vec<(String, String, Vec<String>, Duration)> = {
                    let mut targets = me.lock();
                    targets
                        .iter_mut()
                        .filter(|(_, t)| !t.running && t.health.next_probe_at() <= now)
                        .map(|(n, t)| {
                            t.running = true;
                            (
                                n.clone(),
                                t.id.clone(),
                                t.command.clone(),
                                t.health.timeout(),
                            )
                        })
                        .collect()
                };
                for (name, id, command, timeout) in due {
                    let (me, exec, store, triggers) =
                        (me.clone(), exec.clone(), store.clone(), triggers.clone());
                    tokio::spawn(async move {
                        let start = Instant::now();
                        let result = probe(exec, id, command, timeout).await;
                        me.record(&name, result, start, &store, &triggers);
                    });
                }
            }
        });
    }

    fn record(
        &self,
        name: &str,
        result: ProbeResult,
        start: Instant,
        store: &Arc<Mutex<Store>>,
        triggers: &Triggers<PassReport>,
    ) {
        let changed = {
            let mut targets = self.lock();
            let Some(t) = targets.get_mut(name) else {
                return;
            };
            t.running = false;
            t.health.record(result.clone(), start, Instant::now())
        };
        let Some(status) = changed else {
            return;
        };
        let st = match status {
            HealthStatus::Starting => store::HealthStatus::Starting,
            HealthStatus::Healthy => store::HealthStatus::Healthy,
            HealthStatus::Unhealthy => store::HealthStatus::Unhealthy,
        };
        let detail = match &result {
            ProbeResult::Passed => json!({"status": status}),
            ProbeResult::Failed { exit_code, output } => {
                json!({"status": status, "exitCode": exit_code, "output": output})
            }
            ProbeResult::TimedOut => json!({"status": status, "error": "timed out"}),
            ProbeResult::Error(e) => json!({"status": status, "error": e}),
        };
        let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
        let res = s.transaction(|tx| {
            if let Some(mut c) = tx.container(name)? {
                c.health = Some(st);
                tx.upsert_container(&c)?;
            }
            event(tx, "container.health", &format!("container/{name}"), detail)
        });
        drop(s);
        if let Err(e) = res {
            tracing::warn!(container = name, error = %e, "cannot record health");
        }
        tracing::info!(container = name, status = %status, "health changed");
        triggers.fire(Trigger::Health(name.to_string()));
    }
}

async fn probe(
    exec: Arc<AnyExecDriver>,
    id: String,
    command: Vec<String>,
    timeout: Duration,
) -> ProbeResult {
    let req = ExecRequest {
        argv: command,
        ..ExecRequest::default()
    };
    let job = tokio::task::spawn_blocking(move || exec.exec(&id, &req, ExecStdio::Capture));
    match tokio::time::timeout(timeout, job).await {
        Err(_) => ProbeResult::TimedOut,
        Ok(Err(e)) => ProbeResult::Error(e.to_string()),
        Ok(Ok(Err(e))) => ProbeResult::Error(e.to_string()),
        Ok(Ok(Ok(out))) if out.exit_code == 0 => ProbeResult::Passed,
        Ok(Ok(Ok(out))) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail: String = text
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            ProbeResult::Failed {
                exit_code: out.exit_code,
                output: tail,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_from_stored_config() {
        let c = json!({"live": {"healthcheck": {"command": ["/bin/true"], "interval": "2s", "timeout": "1s", "retries": 2, "startPeriod": "5s"}}});
        let (cmd, t) = healthcheck_of(&c).unwrap();
        assert_eq!(cmd, ["/bin/true"]);
        assert_eq!(t.interval, Duration::from_secs(2));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.retries, 2);
        assert_eq!(t.start_period, Duration::from_secs(5));
        assert!(healthcheck_of(&json!({"live": {}})).is_none());
    }
}
